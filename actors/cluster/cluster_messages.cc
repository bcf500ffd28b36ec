// Registration of the cluster's message types, beside the step protocol's.
#include "actors/cluster/cluster_messages.h"

#include "actors/messages.h"
#include "caf/io/middleman.hpp"

namespace stagehand::actors::cluster {

void RegisterClusterMessageTypes(caf::actor_system_config& config) {
  RegisterMessageTypes(config);
  config.add_message_type<JoinRequest>("JoinRequest");
  config.add_message_type<JoinReply>("JoinReply");
  config.add_message_type<Registration>("Registration");
  config.add_message_type<PeerTable>("PeerTable");
  config.add_message_type<TransferNotice>("TransferNotice");
  config.add_message_type<CheckpointOrder>("CheckpointOrder");
  config.add_message_type<CheckpointPart>("CheckpointPart");
  config.add_message_type<EvalOrder>("EvalOrder");
  config.add_message_type<EvalResult>("EvalResult");
  config.add_message_type<Heartbeat>("Heartbeat");
  config.add_message_type<ClusterAbort>("ClusterAbort");
  config.add_message_type<StageReport>("StageReport");
  config.add_message_type<std::vector<stage_control>>("std::vector<stage_control>");
  config.add_message_type<std::vector<stage_actor>>("std::vector<stage_actor>");
}

void ConfigureClusterSystem(caf::actor_system_config& config) {
  RegisterClusterMessageTypes(config);
  config.load<caf::io::middleman>();
  // Messages between workers go through rank 0's connection; no worker opens a CAF port of
  // its own for direct ones (only rank 0 publishes, on loopback behind its gate).
  config.set("middleman.enable-automatic-connections", false);
}

}  // namespace stagehand::actors::cluster
