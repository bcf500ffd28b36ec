// ControlPlaneStore: a Gloo rendezvous store kept by rank 0's coordinator and reached over
// the cluster's CAF control plane, so that --dp's Gloo groups need no shared file system
// (under Slurm or a hostfile). Wrap it in runtime/collectives' AuthenticatedStore: the values
// are then signed with the join token. Not a general key-value service: the coordinator keeps
// at most a few bounded entries per rank (runtime/cluster/rendezvous_table.h), only from joined
// ranks, and only until every rank is connected.
#ifndef STAGEHAND_ACTORS_CLUSTER_CONTROL_PLANE_STORE_H_
#define STAGEHAND_ACTORS_CLUSTER_CONTROL_PLANE_STORE_H_

#include <chrono>
#include <string>
#include <vector>

#include "actors/cluster/cluster_interfaces.h"
#include "caf/all.hpp"
#include "gloo/rendezvous/store.h"

namespace stagehand::actors::cluster {

class ControlPlaneStore : public gloo::rendezvous::Store {
 public:
  // `self` is the worker's own actor (the coordinator accepts entries from joined workers
  // only); it must outlive the store and be used by one thread at a time. `timeout` bounds
  // each wait for entries.
  ControlPlaneStore(caf::scoped_actor& self, coordinator_actor coordinator, int rank,
                    std::chrono::milliseconds timeout)
      : self_(self), coordinator_(std::move(coordinator)), rank_(rank), timeout_(timeout) {}

  // Each throws gloo::Exception (which GlooCollective turns into a status) when the
  // coordinator refuses or cannot be reached.
  void set(const std::string& key, const std::vector<char>& data) override;
  // Waits for the entry first, as Gloo's blocking stores do.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  // Whether `key` is set; its value in `value` when so.
  bool Fetch(const std::string& key, std::vector<char>* value);

  caf::scoped_actor& self_;
  coordinator_actor coordinator_;
  int rank_;
  std::chrono::milliseconds timeout_;
};

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_CONTROL_PLANE_STORE_H_
