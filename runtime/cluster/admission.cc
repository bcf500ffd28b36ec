// Admission rules of the cluster.
#include "runtime/cluster/admission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

std::string RefuseJoin(const JoinClaim& claim, const JoinRules& rules, const std::set<int>& joined,
                       bool closed) {
  if (claim.token != rules.token) return "wrong join token";
  if (claim.world_size != rules.world_size) {
    return absl::StrCat("world size ", claim.world_size, " != ", rules.world_size);
  }
  if (claim.rank < 0 || claim.rank >= rules.world_size)
    return absl::StrCat("rank ", claim.rank, " out of range");
  if (joined.count(claim.rank) > 0) return absl::StrCat("rank ", claim.rank, " already joined");
  if (claim.config != rules.config) {
    return absl::StrCat("configuration differs from rank 0's: '", claim.config, "' vs '",
                        rules.config, "'");
  }
  if (claim.start_step != rules.resumed_step) {
    return absl::StrCat("it resumes after step ", claim.start_step, ", rank 0 after step ",
                        rules.resumed_step, " (different checkpoints?)");
  }
  if (closed) return "the cluster is no longer admitting workers";
  return "";
}

std::string CheckCheckpointPart(int rank, int64_t step, const CheckpointPartClaim& part,
                                const std::vector<int>& stages) {
  if (!part.error.empty()) return part.error;
  if (part.rank != rank || part.step != step) {
    return absl::StrCat("answered as rank ", part.rank, " for step ", part.step);
  }
  const size_t n = part.files.size();
  if (part.stages.size() != n || part.num_bytes != n || part.num_crc32 != n) {
    return "shard lists of different lengths";
  }
  std::vector<int> sorted = part.stages;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != stages) return "shards of stages it does not hold";
  for (size_t i = 0; i < n; ++i) {
    if (part.files[i] != absl::StrCat("stage_", part.stages[i], ".safetensors")) {
      return absl::StrCat("unexpected shard file name '", part.files[i], "'");
    }
  }
  return "";
}

std::string RefuseEvalOrder(int64_t step, int batches, int64_t steps, int eval_batches) {
  if (step >= 0 && step <= steps && batches == eval_batches) return "";
  return absl::StrCat("refused an evaluation order for step ", step, " over ", batches,
                      " batches (this rank runs steps 0..", steps, " over ", eval_batches, ")");
}

std::string RefuseCheckpointOrder(int64_t step, const std::string& dir, int64_t steps,
                                  const std::string& checkpoint_dir,
                                  const std::string& expected_dir) {
  if (!checkpoint_dir.empty() && step >= 1 && step <= steps && dir == expected_dir) return "";
  return absl::StrCat("refused a checkpoint order for step ", step, " into '", dir,
                      "' (this rank writes checkpoints of steps 1..", steps, " under '",
                      checkpoint_dir, "')");
}

void HeldOutRound::Begin(int64_t step) {
  step_ = step;
  answered_.clear();
}

std::string HeldOutRound::Admit(int rank, int64_t step, bool has_loss, double loss,
                                const std::string& error) {
  if (step_ < 0 || step != step_ || answered_.count(rank) > 0) {
    return absl::StrCat("rank ", rank, " sent a held-out result for step ", step,
                        " that was not asked for (evaluation running: ",
                        step_ >= 0 ? absl::StrCat("after step ", step_) : std::string("none"), ")");
  }
  if (!error.empty()) {
    return absl::StrCat("held-out evaluation after step ", step, " failed on rank ", rank, ": ",
                        error);
  }
  if (has_loss != (rank == last_rank_)) {
    return absl::StrCat("rank ", rank, " sent a held-out result ", has_loss ? "with" : "without",
                        " a loss; only rank ", last_rank_, ", which holds the last chunk, has one");
  }
  answered_[rank] = has_loss ? loss : 0.0;
  return "";
}

double HeldOutRound::Finish() {
  const double loss = answered_.at(last_rank_);
  step_ = -1;
  answered_.clear();
  return loss;
}

std::vector<int> HeldOutRound::Missing() const {
  std::vector<int> missing;
  for (int rank = 0; rank < world_size_; ++rank) {
    if (answered_.count(rank) == 0) missing.push_back(rank);
  }
  return missing;
}

}  // namespace stagehand::runtime
