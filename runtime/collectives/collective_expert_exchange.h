// CollectiveExpertExchange: an MoE chunk's expert all-to-all (models/expert_exchange.h) over
// a Collective of the expert-parallel group (in-process or Gloo). A plain adapter: no
// algorithm of its own.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_EXPERT_EXCHANGE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_EXPERT_EXCHANGE_H_

#include <cstdint>
#include <vector>

#include "models/expert_exchange.h"
#include "runtime/collectives/collective.h"

namespace stagehand::runtime {

class CollectiveExpertExchange : public models::ExpertExchange {
 public:
  // `group` (not owned) must outlive this.
  explicit CollectiveExpertExchange(Collective* group) : group_(group) {}
  int member() const override { return group_->member(); }
  int size() const override { return group_->size(); }
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts) override {
    return group_->AllToAllV(in, send_counts, out, recv_counts);
  }

 private:
  Collective* group_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_COLLECTIVE_EXPERT_EXCHANGE_H_
