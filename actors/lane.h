// Lane: where a stage's work runs so that its actor never blocks: a worker thread with its
// own FIFO queue (or, for deterministic tests, inline in the caller). Completion is
// reported by the job itself (it sends a message). Not a thread pool: one lane, one thread.
// A threaded lane may fix the OpenMP team size of its jobs' parallel regions, so that lanes
// sharing a few cores do not each open a team as wide as the machine.
#ifndef STAGEHAND_ACTORS_LANE_H_
#define STAGEHAND_ACTORS_LANE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace stagehand::actors {

class Lane {
 public:
  enum class Mode { kThread, kInline };
  // omp_threads > 0: the lane's thread runs its jobs' OpenMP regions with that many threads
  // (omp_set_num_threads on that thread only); 0: OpenMP's default. Inline lanes leave the
  // caller's setting alone.
  explicit Lane(Mode mode = Mode::kThread, int omp_threads = 0);
  ~Lane();  // drains the queue, then joins
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // Runs `job` after every job posted before it.
  void Post(std::function<void()> job);
  // Runs `job` in ticket order: after the job of ticket - 1 (tickets count from 0 over the
  // lane's life), however the posts race. For a stage that queues its next action behind the
  // running one (PipelineOptions::lane_depth): its order to run reaches the action's
  // microbatch actor, which posts the job, so two actions' posts may arrive in either order. A
  // ticket's job waits for every lower ticket; Post's jobs go behind what is already runnable.
  void PostInOrder(uint64_t ticket, std::function<void()> job);

 private:
  void Loop();
  // Moves jobs whose turn has come from waiting_ to the runnable queue (mu_ held, or inline).
  void Release();
  Mode mode_;
  int omp_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<uint64_t, std::function<void()>> waiting_;  // tickets posted ahead of their turn
  uint64_t next_ticket_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_LANE_H_
