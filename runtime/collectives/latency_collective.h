// LatencyCollective: a Collective that adds a modelled link to another one. Every call waits
// `latency_us` plus its bytes at `gbps` (0: unlimited) on the calling thread, then runs the
// wrapped collective: what --link_latency_us / --link_gbps do to the collectives of a cluster
// run (gradient reduction, expert all-to-alls), as InProcessGroup does in one process. Not a
// network emulator: the real link's time comes on top.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_LATENCY_COLLECTIVE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_LATENCY_COLLECTIVE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/collectives/collective.h"

namespace stagehand::runtime {

class LatencyCollective : public Collective {
 public:
  // Takes `inner` over. `latency_us` and `gbps` must not be negative.
  LatencyCollective(std::unique_ptr<Collective> inner, double latency_us, double gbps)
      : inner_(std::move(inner)), latency_us_(latency_us), gbps_(gbps) {}
  int member() const override { return inner_->member(); }
  int size() const override { return inner_->size(); }
  absl::Status ReduceScatterSum(absl::Span<const float> in, absl::Span<float> shard) override;
  absl::Status AllGather(absl::Span<const float> shard, absl::Span<float> out) override;
  absl::Status AllToAllV(absl::Span<const float> in, const std::vector<int64_t>& send_counts,
                         absl::Span<float> out, const std::vector<int64_t>& recv_counts) override;
  absl::Status AllGatherScalar(double value, std::vector<double>* values) override;

  // The modelled time of one call moving `bytes` from this member, in microseconds.
  double LinkMicros(int64_t bytes) const;

 private:
  void Wait(int64_t bytes) const;

  std::unique_ptr<Collective> inner_;
  const double latency_us_, gbps_;
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_LATENCY_COLLECTIVE_H_
