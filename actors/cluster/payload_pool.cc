// PayloadPool: a free list per buffer size under one mutex.
#include "actors/cluster/payload_pool.h"

#include <utility>

namespace stagehand::actors::cluster {

std::vector<float> PayloadPool::Take(size_t floats) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++taken_;
    auto it = free_.find(floats);
    if (it != free_.end() && !it->second.empty()) {
      std::vector<float> buffer = std::move(it->second.back());
      it->second.pop_back();
      ++reused_;
      return buffer;
    }
  }
  return std::vector<float>(floats);  // the first time only: value-initialised by std::vector
}

void PayloadPool::Give(std::vector<float> buffer) {
  if (buffer.empty()) return;
  std::vector<float> drop;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::vector<float>>& list = free_[buffer.size()];
  if (list.size() < max_per_size_) {
    list.push_back(std::move(buffer));
  } else {
    drop = std::move(buffer);
  }
}

int64_t PayloadPool::reused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reused_;
}

int64_t PayloadPool::taken() const {
  std::lock_guard<std::mutex> lock(mu_);
  return taken_;
}

}  // namespace stagehand::actors::cluster
