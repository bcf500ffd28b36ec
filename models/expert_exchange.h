// ExpertExchange: the all-to-all that an MoE layer's dispatch and combine go through under
// expert parallelism (--ep): the members of one expert-parallel group trade expert rows.
// Only the interface lives here (models/ knows no collectives); runtime/collectives adapts a
// Collective's AllToAllV to it. Not an algorithm of its own and not a transport.
#ifndef STAGEHAND_MODELS_EXPERT_EXCHANGE_H_
#define STAGEHAND_MODELS_EXPERT_EXCHANGE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace stagehand::models {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // This member's index in its expert-parallel group, and the group's size (E / size experts
  // of every MoE layer live on each member: member m holds experts [m E/size, (m+1) E/size)).
  virtual int member() const = 0;
  virtual int size() const = 0;
  // `in` holds send_counts[j] floats for member j, in member order; `out` receives
  // recv_counts[j] floats from member j, in member order. Every member of the group calls the
  // same exchanges in the same order (as with any collective); counts must agree pairwise.
  virtual absl::Status AllToAllV(absl::Span<const float> in,
                                 const std::vector<int64_t>& send_counts, absl::Span<float> out,
                                 const std::vector<int64_t>& recv_counts) = 0;
};

}  // namespace stagehand::models

#endif  // STAGEHAND_MODELS_EXPERT_EXCHANGE_H_
