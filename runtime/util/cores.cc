// AllowedCores and SplitCores: see cores.h.
#include "runtime/util/cores.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace stagehand::runtime {

int AllowedCores() {
  cpu_set_t allowed;
  return sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? std::max(1, CPU_COUNT(&allowed))
                                                              : 1;
}

int SplitCores(int sharers, int cores, const char* user_threads) {
  if (sharers < 2 || (user_threads != nullptr && *user_threads != '\0')) return 0;
  return std::max(1, cores / sharers);
}

namespace {

// A fixed amount of float multiply-adds over an array that stays in L1 (no memory traffic),
// about 40 ms on one core, returning its seconds; the result goes to `sink` so the loop is not
// optimised away.
double TimeArithmetic(float* sink) {
  constexpr int kFloats = 2048, kRounds = 400000;
  std::vector<float> a(kFloats, 1.0f), b(kFloats, 0.999f);
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < kRounds; ++r) {
    for (int i = 0; i < kFloats; ++i) a[i] = a[i] * b[i] + 0.001f;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  *sink = a[kFloats / 2];
  return seconds;
}

}  // namespace

double MeasuredParallelThroughput(int threads) {
  threads = std::max(1, threads);
  float warm = 0;
  std::thread([&] { TimeArithmetic(&warm); }).join();  // the clock up to speed, code in cache
  // Alone and together, alternated, five times each: the median of each.
  std::vector<double> alone, together;
  for (int attempt = 0; attempt < 5; ++attempt) {
    float sink = 0;  // on a thread of its own, as the others (not this caller's thread)
    std::thread([&] { alone.push_back(TimeArithmetic(&sink)); }).join();
    std::vector<double> seconds(threads);
    std::vector<float> sinks(threads);
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([&, t] { seconds[t] = TimeArithmetic(&sinks[t]); });
    }
    for (std::thread& t : running) t.join();
    together.push_back(*std::max_element(seconds.begin(), seconds.end()));
  }
  std::sort(alone.begin(), alone.end());
  std::sort(together.begin(), together.end());
  return together[2] > 0 ? threads * alone[2] / together[2] : 0.0;
}

std::string DescribeHostParallelism(int threads) {
  char line[160];
  std::snprintf(line, sizeof(line),
                "host: %d cores allowed; %d threads of float multiply-adds at once ran at %.2f "
                "cores' worth",
                AllowedCores(), threads, MeasuredParallelThroughput(threads));
  return line;
}

}  // namespace stagehand::runtime
