// Lane: one worker thread draining a FIFO of jobs.
#include "actors/lane.h"

#include <omp.h>

namespace stagehand::actors {

Lane::Lane(Mode mode, int omp_threads) : mode_(mode), omp_threads_(omp_threads) {
  if (mode_ == Mode::kThread) thread_ = std::thread([this] { Loop(); });
}

Lane::~Lane() {
  if (mode_ != Mode::kThread) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void Lane::Post(std::function<void()> job) {
  if (mode_ == Mode::kInline) {
    job();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Lane::Loop() {
  if (omp_threads_ > 0) omp_set_num_threads(omp_threads_);
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace stagehand::actors
