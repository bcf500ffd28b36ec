// Cores and OpenMP threads: how many cores this process may run on, and how many OpenMP threads
// each of several sharers of them gets (worker processes on one host, compute lanes in one
// process) so that together they do not oversubscribe the cores, as torchrun does for its
// workers. Results never depend on it: the ops split work by shape, never by thread count.
#ifndef STAGEHAND_RUNTIME_UTIL_CORES_H_
#define STAGEHAND_RUNTIME_UTIL_CORES_H_

#include <string>

namespace stagehand::runtime {

// The cores this process may run on (its affinity mask), at least 1.
int AllowedCores();

// OpenMP threads for each of `sharers` sharing `cores` when the user set no OMP_NUM_THREADS
// (`user_threads` null or empty): cores / sharers, at least 1. 0: leave OpenMP's default (a
// single sharer, or the user's setting).
int SplitCores(int sharers, int cores, const char* user_threads);

// How many cores' worth of float arithmetic `threads` threads get together on this host: the
// same multiply-add loop timed on one thread, then on `threads` at once; threads x (one
// thread's time / the slowest thread's time), each the median of five. About `threads` where each has a
// core; about 1 where the "cores" are hyperthreads of one core or the host time-slices them.
// Benchmarks print it beside overlap figures: compute lanes that share less than a core each
// finish at the pace the OS gives them. Takes about half a second.
double MeasuredParallelThroughput(int threads);

// A line for benchmarks that run `threads` compute lanes: "host: 2 cores allowed; 4 threads of
// float multiply-adds at once ran at 1.04 cores' worth (MeasuredParallelThroughput)".
std::string DescribeHostParallelism(int threads);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_UTIL_CORES_H_
