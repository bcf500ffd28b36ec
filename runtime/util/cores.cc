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
// about 10 ms on one core, returning its seconds; the result goes to `sink` so the loop is not
// optimised away.
double TimeArithmetic(float* sink) {
  constexpr int kFloats = 2048, kRounds = 100000;
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
  TimeArithmetic(&warm);  // the clock up to speed, the code in cache
  std::vector<double> ratios;
  for (int attempt = 0; attempt < 3; ++attempt) {
    float sink = 0;
    const double alone = TimeArithmetic(&sink);
    std::vector<double> seconds(threads);
    std::vector<float> sinks(threads);
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
      running.emplace_back([&, t] { seconds[t] = TimeArithmetic(&sinks[t]); });
    }
    for (std::thread& t : running) t.join();
    const double slowest = *std::max_element(seconds.begin(), seconds.end());
    ratios.push_back(slowest > 0 ? threads * alone / slowest : 0.0);
  }
  std::sort(ratios.begin(), ratios.end());
  return ratios[1];  // the median of three
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
