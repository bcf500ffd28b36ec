// A microbatch's positions grouped by token id, built on the host from the tokens it already
// holds: what lets the embedding's weight-gradient run one thread per (token, channel) instead
// of one per channel, still adding each token's positions in order (encoder.h). Plain host code.
#ifndef STAGEHAND_OPS_CUDA_TOKEN_GROUPS_H_
#define STAGEHAND_OPS_CUDA_TOKEN_GROUPS_H_

#include <cstdint>
#include <vector>

namespace stagehand::ops::cuda {

struct TokenGroups {
  std::vector<int32_t> order;   // (n) positions sorted by (token, position)
  std::vector<int32_t> starts;  // (groups + 1) where each group begins in `order`; last = n
  std::vector<int32_t> ids;     // (groups) the token of each group, ascending
  int groups() const { return static_cast<int>(ids.size()); }
};

// Groups positions 0 .. n-1 by tokens[position] (ids in [0, vocab)): a counting sort, stable,
// so each group lists its positions in increasing order. O(n + vocab).
TokenGroups GroupPositionsByToken(const int32_t* tokens, int64_t n, int vocab);

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_TOKEN_GROUPS_H_
