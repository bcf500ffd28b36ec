// What the cluster admits from the network, decided without actors: a worker's join, its
// part of a checkpoint, its answer to a held-out evaluation, and (on the worker) the
// coordinator's orders. Each returns "" to admit, else what is wrong, for an error the
// caller prefixes with the sender. Not the sender check (that needs the actor's current
// sender) and not transfer or gradient checks (checks.h).
#ifndef STAGEHAND_RUNTIME_CLUSTER_ADMISSION_H_
#define STAGEHAND_RUNTIME_CLUSTER_ADMISSION_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace stagehand::runtime {

// --- Join: the coordinator's rules, and what a worker claims.
struct JoinRules {
  std::string token;
  int world_size = 1;
  std::string config;        // every worker must present the same text
  int64_t resumed_step = 0;  // rank 0's restored step
};
struct JoinClaim {
  std::string token;
  int rank = 0;
  int world_size = 0;
  std::string config;
  int64_t start_step = 0;
};
// `joined`: the ranks admitted so far; `closed`: the run stops or every rank is ready.
std::string RefuseJoin(const JoinClaim& claim, const JoinRules& rules, const std::set<int>& joined,
                       bool closed);

// --- Checkpoint parts: rank `rank`'s answer to the order for step `step`.
struct CheckpointPartClaim {
  int rank = 0;
  int64_t step = 0;
  std::string error;               // the rank's own failure, if any
  std::vector<std::string> files;  // per shard: "stage_<S>.safetensors"
  std::vector<int> stages;
  size_t num_bytes = 0;  // lengths of the bytes and crc32 lists
  size_t num_crc32 = 0;
};
// `stages`: the stages rank `rank` holds (placement.h).
std::string CheckCheckpointPart(int rank, int64_t step, const CheckpointPartClaim& part,
                                const std::vector<int>& stages);

// --- The coordinator's orders, as a worker admits them.
// An evaluation after step `step` over `batches` batches, for a run of `steps` steps over
// `eval_batches` batches.
std::string RefuseEvalOrder(int64_t step, int batches, int64_t steps, int eval_batches);
// A checkpoint of step `step` into `dir`, which must be `checkpoint_dir`'s temporary
// folder of that step (`expected_dir`).
std::string RefuseCheckpointOrder(int64_t step, const std::string& dir, int64_t steps,
                                  const std::string& checkpoint_dir,
                                  const std::string& expected_dir);

// --- One held-out evaluation: every rank answers once; the rank holding the last chunk
// answers with the loss, the others without.
class HeldOutRound {
 public:
  HeldOutRound(int world_size, int last_rank) : world_size_(world_size), last_rank_(last_rank) {}

  void Begin(int64_t step);
  bool running() const { return step_ >= 0; }
  int64_t step() const { return step_; }  // -1: none running

  // Admits rank `rank`'s answer for `step`; "" when admitted, else the run's error.
  std::string Admit(int rank, int64_t step, bool has_loss, double loss, const std::string& error);
  bool complete() const { return static_cast<int>(answered_.size()) == world_size_; }
  // The last rank's loss, once complete; ends the round.
  double Finish();
  // Ranks that have not answered yet.
  std::vector<int> Missing() const;

 private:
  int world_size_;
  int last_rank_;
  int64_t step_ = -1;
  std::map<int, double> answered_;  // rank -> loss (0 for ranks without one)
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_ADMISSION_H_
