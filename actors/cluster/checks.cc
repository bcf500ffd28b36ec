// Checks of network messages.
#include "actors/cluster/checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/action.h"

namespace stagehand::actors::cluster {

namespace {

// A variable-length tensor: whole rows of B * C floats, at least one, at most the bound.
std::string CheckVariableSize(int64_t floats, const NoticeRules& r) {
  if (floats <= 0 || floats > r.tensor_floats) {
    return absl::StrCat(floats, " floats outside (0, ", r.tensor_floats,
                        "] (B * seq_len * d_model) for a variable-length tensor");
  }
  if (floats % r.row_floats != 0) {
    return absl::StrCat(floats, " floats are not a whole number of tokens of ", r.row_floats,
                        " floats (B * d_model)");
  }
  return "";
}

}  // namespace

std::string CheckNoticeFields(const TransferNotice& n, const NoticeRules& r) {
  const runtime::StepSpec& spec = r.spec;
  const int P = spec.num_stages;
  if (n.from_stage < 0 || n.from_stage >= P) {
    return absl::StrCat("source stage ", n.from_stage, " out of range [0, ", P, ")");
  }
  if (static_cast<int>(r.stage_rank.size()) != P) return "notice before the peer table";
  if (r.stage_rank[n.from_stage] != n.from_rank) {
    return absl::StrCat("stage ", n.from_stage, " lives on rank ", r.stage_rank[n.from_stage],
                        ", not rank ", n.from_rank);
  }
  if (n.to_stage != r.stage)
    return absl::StrCat("addressed to stage ", n.to_stage, ", this is stage ", r.stage);
  if (n.chunk < 0 || n.chunk >= spec.num_chunks || spec.chunk_to_stage[n.chunk] != r.stage) {
    return absl::StrCat("chunk ", n.chunk, " is not held here");
  }
  if (n.microbatch < 0 || n.microbatch >= spec.num_microbatches) {
    return absl::StrCat("microbatch ", n.microbatch, " out of range [0, ", spec.num_microbatches,
                        ")");
  }
  const bool forward = n.kind == runtime::ActionKind::kForward;
  if (!forward && n.kind != runtime::ActionKind::kBackwardInput) {
    return absl::StrCat("kind ", static_cast<int>(n.kind), " (", runtime::ActionKindName(n.kind),
                        ") is neither an activation nor a gradient");
  }
  // An activation comes from the chunk before, a gradient from the chunk after.
  const int source_chunk = forward ? n.chunk - 1 : n.chunk + 1;
  if (source_chunk < 0 || source_chunk >= spec.num_chunks ||
      spec.chunk_to_stage[source_chunk] != n.from_stage) {
    return absl::StrCat(forward ? "an activation" : "a gradient", " for chunk ", n.chunk,
                        " cannot come from stage ", n.from_stage);
  }
  if (r.row_floats > 0) return CheckVariableSize(n.floats, r);
  if (n.floats != r.tensor_floats) {
    return absl::StrCat(n.floats, " floats where the model's tensors have ", r.tensor_floats);
  }
  return "";
}

std::string CheckSquaredNorms(const SquaredNorms& n, const runtime::StepSpec& spec) {
  for (const auto& [chunk, values] : n.norms) {
    if (chunk < 0 || chunk >= spec.num_chunks || spec.chunk_to_stage[chunk] != n.stage) {
      return absl::StrCat("chunk ", chunk, " is not held by stage ", n.stage);
    }
    for (size_t i = 0; i < values.size(); ++i) {
      // NaN and Inf pass: the rerun state machine (runtime/train/rerun.h) judges them.
      if (values[i] < 0) {
        return absl::StrCat("squared norm ", i, " of chunk ", chunk, " is ", values[i]);
      }
    }
    auto non_finite = n.non_finite.find(chunk);
    if (non_finite != n.non_finite.end()) {
      for (int i : non_finite->second) {
        if (i < 0 || i >= static_cast<int>(values.size())) {
          return absl::StrCat("non-finite index ", i, " of chunk ", chunk, " is out of range");
        }
      }
    }
    auto names = n.names.find(chunk);
    if (names != n.names.end() && names->second.size() != values.size()) {
      return absl::StrCat(names->second.size(), " tensor names for ", values.size(),
                          " squared norms of chunk ", chunk);
    }
  }
  return "";
}

}  // namespace stagehand::actors::cluster
