// RendezvousTable: set-once entries with bounds.
#include "runtime/cluster/rendezvous_table.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace stagehand::runtime {

std::string RendezvousTable::Set(int rank, const std::string& key, std::string value) {
  if (rank < 0 || rank >= world_size_) {
    return absl::StrCat("rendezvous entry from rank ", rank, " of ", world_size_);
  }
  if (key.empty() || key.size() > kRendezvousMaxKeyBytes) {
    return absl::StrCat("rendezvous key of ", key.size(), " bytes (1 to ", kRendezvousMaxKeyBytes,
                        " allowed)");
  }
  if (value.size() > kRendezvousMaxValueBytes) {
    return absl::StrCat("rendezvous entry '", key, "' of ", value.size(), " bytes (at most ",
                        kRendezvousMaxValueBytes, ")");
  }
  if (entries_.count(key) > 0) {
    return absl::StrCat("rendezvous entry '", key, "' was set before (entries are set once)");
  }
  int& count = set_by_rank_[rank];
  if (count >= kRendezvousEntriesPerRank) {
    return absl::StrCat("rank ", rank, " set more than ", kRendezvousEntriesPerRank,
                        " rendezvous entries");
  }
  ++count;
  entries_.emplace(key, std::move(value));
  return "";
}

const std::string* RendezvousTable::Get(const std::string& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

}  // namespace stagehand::runtime
