// ShareFromMemberZero: set by member 0, waited for and read by all; Gloo's exceptions become
// statuses.
#include "runtime/collectives/store_exchange.h"

#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/store.h"
#include "runtime/util/status_macros.h"

namespace stagehand::runtime {

absl::StatusOr<std::vector<char>> ShareFromMemberZero(
    gloo::rendezvous::Store& store, const std::string& key, int member, size_t expected_bytes,
    const std::function<absl::StatusOr<std::vector<char>>()>& make,
    std::chrono::milliseconds timeout) {
  if (member < 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", key, "': member ", member));
  }
  if (member == 0) {
    ASSIGN_OR_RETURN(std::vector<char> bytes, make());
    if (bytes.size() != expected_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("'", key, "': member 0 made ", bytes.size(),
                                                     " bytes, expected ", expected_bytes));
    }
    try {
      store.set(key, bytes);
    } catch (const gloo::Exception& e) {
      return absl::UnavailableError(absl::StrCat("'", key, "': the store refused it: ", e.what()));
    }
  }
  std::vector<char> bytes;
  try {
    store.wait({key}, timeout);
  } catch (const gloo::IoException& e) {
    return absl::DeadlineExceededError(absl::StrCat(
        "'", key, "': member 0 published nothing within ", timeout.count(), " ms: ", e.what()));
  } catch (const gloo::Exception& e) {
    return absl::UnavailableError(absl::StrCat("'", key, "': waiting failed: ", e.what()));
  }
  try {
    bytes = store.get(key);
  } catch (const gloo::Exception& e) {
    return absl::UnavailableError(absl::StrCat("'", key, "': ", e.what()));
  }
  if (bytes.size() != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("'", key, "': member 0 published ", bytes.size(),
                                                   " bytes, expected ", expected_bytes));
  }
  return bytes;
}

}  // namespace stagehand::runtime
