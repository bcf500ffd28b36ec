// Coordinator: rank 0's published actor. Admits workers that present the launch's join
// token (and the same configuration), hands out the peer table, runs the steps through
// the StepDriver, watches every worker (CAF down messages and heartbeats), reports hangs
// and stops the whole cluster when a rank is lost. Not a scheduler and not a trainer.
#ifndef STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
#define STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/cluster/cluster_messages.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/step_spec.h"

namespace stagehand::actors::cluster {

struct CoordinatorOptions {
  std::string token;
  int world_size = 1;
  std::string config;          // every worker must present the same text
  runtime::StepSpec spec;
  int64_t first_step = 1;
  int64_t steps = 1;           // last step to run
  double hang_timeout_s = 60;  // a step running longer is reported, then the run stops
  double heartbeat_timeout_s = 8;
};

struct CoordinatorState {
  CoordinatorOptions options;
  caf::actor driver;
  caf::actor driver_gate;
  std::map<int, JoinRequest> joined;        // rank -> join
  std::map<int, Registration> registered;   // rank -> actors
  std::set<int> ready;
  std::set<int> finished;                   // ranks that saved and may leave
  std::map<int, std::string> last_action;   // rank -> from its heartbeats
  std::map<int, std::chrono::steady_clock::time_point> last_heartbeat;
  std::vector<int> stage_rank;
  std::vector<caf::actor> stage_gates;
  int64_t step = 0;
  bool running = false;
  bool stopping = false;
  std::vector<StageReport> reports;         // hang probe answers
};

// `driver` is the StepDriver (this process); the gate is spawned by the coordinator.
caf::behavior Coordinator(caf::stateful_actor<CoordinatorState>* self, CoordinatorOptions options,
                          caf::actor driver);

}  // namespace stagehand::actors::cluster

#endif  // STAGEHAND_ACTORS_CLUSTER_COORDINATOR_H_
