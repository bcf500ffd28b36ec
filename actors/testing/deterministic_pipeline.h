// A deterministic pipeline (Pipeline built with deterministic = true) opened for a test: its
// test coordinator, which runs one message at a time and fires the link's delayed deliveries
// only when told, and its stage actors' states, to inspect between messages. Not a fixture.
#ifndef STAGEHAND_ACTORS_TESTING_DETERMINISTIC_PIPELINE_H_
#define STAGEHAND_ACTORS_TESTING_DETERMINISTIC_PIPELINE_H_

#include <vector>

#include "actors/pipeline.h"
#include "actors/stage_actor.h"
#include "caf/scheduler/test_coordinator.hpp"

namespace stagehand::actors::testing {

struct OpenedPipeline {
  caf::scheduler::test_coordinator* coordinator = nullptr;
  std::vector<stage_actor::stateful_pointer<StageActorState>> stages;  // by stage
};

// Delivers the set-up messages (stage lists), then returns the coordinator and the stage
// actors' states (null where a stage is not a StageActor, which a test should assert).
inline OpenedPipeline Open(Pipeline& pipeline) {
  OpenedPipeline opened;
  opened.coordinator =
      &dynamic_cast<caf::scheduler::test_coordinator&>(pipeline.system().scheduler());
  opened.coordinator->run();
  for (const stage_actor& handle : pipeline.stages()) {
    opened.stages.push_back(dynamic_cast<stage_actor::stateful_pointer<StageActorState>>(
        caf::actor_cast<caf::abstract_actor*>(handle)));
  }
  return opened;
}

}  // namespace stagehand::actors::testing

#endif  // STAGEHAND_ACTORS_TESTING_DETERMINISTIC_PIPELINE_H_
