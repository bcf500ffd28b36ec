// PayloadPool: recycled tensor buffers for the cluster's data plane. A receive takes a
// buffer of the tensor's size (no allocation, no zero-fill, its pages already mapped) and
// UCX writes straight into it; a finished send gives its buffer back. In a pipeline every
// stage sends as many tensors as it receives (activations one way, gradients the other,
// all B*T*C floats), so in steady state receives allocate nothing.
// Not a general allocator: buffers are std::vector<float> (runtime::Payload), kept by size.
#ifndef STAGEHAND_ACTORS_CLUSTER_PAYLOAD_POOL_H_
#define STAGEHAND_ACTORS_CLUSTER_PAYLOAD_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace stagehand::actors::cluster {

class PayloadPool {
 public:
  // Keeps at most `max_per_size` free buffers of each size (more are freed).
  explicit PayloadPool(size_t max_per_size = 32) : max_per_size_(max_per_size) {}
  PayloadPool(const PayloadPool&) = delete;
  PayloadPool& operator=(const PayloadPool&) = delete;

  // A buffer of exactly `floats` floats: a recycled one (contents unspecified) when there
  // is one, else a new one. Thread-safe.
  std::vector<float> Take(size_t floats);
  // Keeps `buffer` for a later Take of its size. Thread-safe.
  void Give(std::vector<float> buffer);

  // Takes served by a recycled buffer, and all takes (for tests and benchmarks).
  int64_t reused() const;
  int64_t taken() const;

 private:
  const size_t max_per_size_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<std::vector<float>>> free_;  // size -> free buffers
  int64_t reused_ = 0, taken_ = 0;
};

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_PAYLOAD_POOL_H_
