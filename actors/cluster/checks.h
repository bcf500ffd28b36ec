// Checks of what arrives from the network, before it is used: transfer notices (stages,
// ranks, chunk, microbatch, kind, size) and squared norms (tied gradients:
// runtime/cluster/tied_shapes.h). Pure functions of the message and what this process knows, so
// they are tested without actors; each returns "" when the message is fine, else what is wrong with
// it, for an error that the caller prefixes with the sender. Not the sender check (that needs the
// actor's current sender) and not step ordering (ClusterComm and the gates keep the step).
#ifndef STAGEHAND_ACTORS_CLUSTER_CHECKS_H_
#define STAGEHAND_ACTORS_CLUSTER_CHECKS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/messages.h"
#include "runtime/step_spec.h"

namespace stagehand::actors::cluster {

// What a stage's comm knows about the transfers it may receive.
struct NoticeRules {
  runtime::StepSpec spec;
  int stage = 0;                // the receiving stage
  int64_t tensor_floats = 0;    // B * T * C: every activation and gradient (fixed lengths)
  std::vector<int> stage_rank;  // stage -> rank, from the peer table
  // B * C under --seq_len_policy=variable (0: fixed lengths): a tensor of microbatch length
  // T_m has T_m * row_floats floats, 1 <= T_m <= seq_len, and tensor_floats is then the
  // bound B * seq_len * C. The size rides in the notice; there is no handshake.
  int64_t row_floats = 0;
};
std::string CheckNoticeFields(const TransferNotice& notice, const NoticeRules& rules);

// Squared norms must be finite and not negative, for chunks of `stage`.
std::string CheckSquaredNorms(const SquaredNorms& norms, const runtime::StepSpec& spec);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CHECKS_H_
