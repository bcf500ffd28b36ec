// Lane: where a stage's work runs so that its actor never blocks: a worker thread with its
// own FIFO queue (or, for deterministic tests, inline in the caller). Completion is
// reported by the job itself (it sends a message). Not a thread pool: one lane, one thread.
#ifndef STAGEHAND_ACTORS_LANE_H_
#define STAGEHAND_ACTORS_LANE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace stagehand::actors {

class Lane {
 public:
  enum class Mode { kThread, kInline };
  explicit Lane(Mode mode = Mode::kThread);
  ~Lane();  // drains the queue, then joins
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // Runs `job` after every job posted before it.
  void Post(std::function<void()> job);

 private:
  void Loop();
  Mode mode_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_LANE_H_
