// Cores and OpenMP threads: how many cores this process may run on, and how many OpenMP threads
// each of several sharers of them gets (worker processes on one host, compute lanes in one
// process) so that together they do not oversubscribe the cores, as torchrun does for its
// workers. Results never depend on it: the ops split work by shape, never by thread count.
#ifndef STAGEHAND_RUNTIME_UTIL_CORES_H_
#define STAGEHAND_RUNTIME_UTIL_CORES_H_

namespace stagehand::runtime {

// The cores this process may run on (its affinity mask), at least 1.
int AllowedCores();

// OpenMP threads for each of `sharers` sharing `cores` when the user set no OMP_NUM_THREADS
// (`user_threads` null or empty): cores / sharers, at least 1. 0: leave OpenMP's default (a
// single sharer, or the user's setting).
int SplitCores(int sharers, int cores, const char* user_threads);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_UTIL_CORES_H_
