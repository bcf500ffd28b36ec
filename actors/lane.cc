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

void Lane::Release() {
  for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_ticket_;
       it = waiting_.erase(it)) {
    jobs_.push_back(std::move(it->second));
    ++next_ticket_;
  }
}

void Lane::PostInOrder(uint64_t ticket, std::function<void()> job) {
  if (mode_ == Mode::kInline) {
    waiting_.emplace(ticket, std::move(job));
    Release();
    while (!jobs_.empty()) {  // run what became runnable, in order
      std::function<void()> next = std::move(jobs_.front());
      jobs_.pop_front();
      next();
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_.emplace(ticket, std::move(job));
    Release();
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
