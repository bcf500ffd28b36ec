// RendezvousTable: the key-value entries rank 0's coordinator keeps for the Gloo groups'
// rendezvous (the store that runs over the CAF control plane, actors/cluster/
// control_plane_store.h). Each key is set once, by one joined rank; keys, values and the
// number of entries are bounded, so a peer cannot make rank 0 allocate without limit.
// Not a signature check: AuthenticatedStore (runtime/collectives) signs the values.
#ifndef STAGEHAND_RUNTIME_CLUSTER_RENDEZVOUS_TABLE_H_
#define STAGEHAND_RUNTIME_CLUSTER_RENDEZVOUS_TABLE_H_

#include <cstddef>
#include <map>
#include <string>

namespace stagehand::runtime {

inline constexpr size_t kRendezvousMaxKeyBytes = 512;
inline constexpr size_t kRendezvousMaxValueBytes = size_t{1} << 20;
inline constexpr int kRendezvousEntriesPerRank = 16;

class RendezvousTable {
 public:
  // At most kRendezvousEntriesPerRank entries per rank of `world_size`.
  explicit RendezvousTable(int world_size) : world_size_(world_size) {}

  // Sets `key` for rank `rank`; "" when stored, else why it was refused (a key set before, a
  // rank out of range, a key or value too long, too many entries).
  std::string Set(int rank, const std::string& key, std::string value);
  // The value of `key`; null while no rank has set it.
  const std::string* Get(const std::string& key) const;
  size_t size() const { return entries_.size(); }

 private:
  int world_size_;
  std::map<std::string, std::string> entries_;
  std::map<int, int> set_by_rank_;  // rank -> entries it set
};

}  // namespace stagehand::runtime

#endif  // STAGEHAND_RUNTIME_CLUSTER_RENDEZVOUS_TABLE_H_
