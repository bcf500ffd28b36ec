// AllowedCores and SplitCores: see cores.h.
#include "runtime/util/cores.h"

#include <sched.h>

#include <algorithm>

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

}  // namespace stagehand::runtime
