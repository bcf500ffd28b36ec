// One member's bytes shared with its whole group through a Gloo rendezvous store: how an NCCL
// group's ncclUniqueId reaches its members over the same store Gloo's rendezvous uses (the
// cluster's control plane, signed by AuthenticatedStore, or a shared folder). Plain C++: tested
// in the CPU build; runtime/collectives/nccl_collective.h calls it with ncclGetUniqueId.
#ifndef STAGEHAND_RUNTIME_COLLECTIVES_STORE_EXCHANGE_H_
#define STAGEHAND_RUNTIME_COLLECTIVES_STORE_EXCHANGE_H_

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace stagehand::runtime {

// Member 0 calls `make` and sets its bytes under `key`; every member (member 0 included)
// returns the bytes set there. Errors, each naming the key:
// - InvalidArgument: a value of other than `expected_bytes` bytes (a peer of another build, or
//   a forged entry), or member < 0;
// - DeadlineExceeded: nothing set within `timeout` (member 0 is not up);
// - Unavailable: the store failed or refused the entry (AuthenticatedStore: not signed with
//   the launch's secret);
// - `make`'s own error, on member 0.
absl::StatusOr<std::vector<char>> ShareFromMemberZero(
    gloo::rendezvous::Store& store, const std::string& key, int member, size_t expected_bytes,
    const std::function<absl::StatusOr<std::vector<char>>()>& make,
    std::chrono::milliseconds timeout);

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_COLLECTIVES_STORE_EXCHANGE_H_
