// LatencyCollective: sleep for the modelled link, then the wrapped call. The bytes counted are
// what this member sends, as InProcessGroup counts them.
#include "runtime/collectives/latency_collective.h"

#include <chrono>
#include <thread>

namespace stagehand::runtime {

double LatencyCollective::LinkMicros(int64_t bytes) const {
  return latency_us_ + (gbps_ > 0 ? bytes * 8.0 / (gbps_ * 1e3) : 0.0);
}

void LatencyCollective::Wait(int64_t bytes) const {
  const double us = LinkMicros(bytes);
  if (us > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(us));
}

absl::Status LatencyCollective::ReduceScatterSum(absl::Span<const float> in,
                                                 absl::Span<float> shard) {
  Wait(static_cast<int64_t>((in.size() - shard.size()) * sizeof(float)));
  return inner_->ReduceScatterSum(in, shard);
}

absl::Status LatencyCollective::AllGather(absl::Span<const float> shard, absl::Span<float> out) {
  Wait(static_cast<int64_t>(shard.size() * sizeof(float)));
  return inner_->AllGather(shard, out);
}

absl::Status LatencyCollective::AllToAllV(absl::Span<const float> in,
                                          const std::vector<int64_t>& send_counts,
                                          absl::Span<float> out,
                                          const std::vector<int64_t>& recv_counts) {
  Wait(static_cast<int64_t>(in.size() * sizeof(float)));
  return inner_->AllToAllV(in, send_counts, out, recv_counts);
}

absl::Status LatencyCollective::AllGatherScalar(double value, std::vector<double>* values) {
  Wait(sizeof(double));
  return inner_->AllGatherScalar(value, values);
}

}  // namespace stagehand::runtime
