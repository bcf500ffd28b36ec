// ControlPlaneStore: set and get as requests to the coordinator; waits poll it.
#include "actors/cluster/control_plane_store.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"

namespace stagehand::actors::cluster {
namespace {

constexpr std::chrono::seconds kRequestTimeout{10};
constexpr std::chrono::milliseconds kPollInterval{10};

}  // namespace

void ControlPlaneStore::set(const std::string& key, const std::vector<char>& data) {
  std::string error;
  self_
      ->request(coordinator_, kRequestTimeout, store_set_atom::value, rank_, key,
                std::string(data.begin(), data.end()))
      .receive([&](const std::string& refusal) { error = refusal; },
               [&](caf::error& e) { error = self_->system().render(e); });
  if (!error.empty()) {
    throw ::gloo::Exception(absl::StrCat("rendezvous entry '", key, "': ", error));
  }
}

bool ControlPlaneStore::Fetch(const std::string& key, std::vector<char>* value) {
  bool found = false;
  std::string error;
  self_->request(coordinator_, kRequestTimeout, store_get_atom::value, rank_, key)
      .receive(
          [&](bool is_set, const std::string& bytes) {
            found = is_set;
            if (found && value != nullptr) value->assign(bytes.begin(), bytes.end());
          },
          [&](caf::error& e) { error = self_->system().render(e); });
  if (!error.empty()) {
    throw ::gloo::Exception(absl::StrCat("rendezvous entry '", key, "': ", error));
  }
  return found;
}

std::vector<char> ControlPlaneStore::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> value;
  if (!Fetch(key, &value)) {
    throw ::gloo::Exception(absl::StrCat("rendezvous entry '", key, "' vanished"));
  }
  return value;
}

void ControlPlaneStore::wait(const std::vector<std::string>& keys,
                             const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string& key : keys) {
    while (!Fetch(key, nullptr)) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw ::gloo::IoException(
            absl::StrCat("rendezvous entry '", key, "' not set within ", timeout.count(), " ms"));
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
}

}  // namespace stagehand::actors::cluster
