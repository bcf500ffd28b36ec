// GroupPositionsByToken: a stable counting sort.
#include "ops/cuda/token_groups.h"

namespace stagehand::ops::cuda {

TokenGroups GroupPositionsByToken(const int32_t* tokens, int64_t n, int vocab) {
  std::vector<int32_t> count(vocab + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++count[tokens[i] + 1];
  TokenGroups groups;
  for (int id = 0; id < vocab; ++id) {
    if (count[id + 1] == 0) continue;
    groups.ids.push_back(id);
  }
  for (int id = 0; id < vocab; ++id) count[id + 1] += count[id];  // count[id]: first slot of id
  groups.order.resize(n);
  std::vector<int32_t> next(count.begin(), count.end() - 1);
  for (int64_t i = 0; i < n; ++i) groups.order[next[tokens[i]]++] = static_cast<int32_t>(i);
  for (int id : groups.ids) groups.starts.push_back(count[id]);
  groups.starts.push_back(static_cast<int32_t>(n));
  return groups;
}

}  // namespace stagehand::ops::cuda
