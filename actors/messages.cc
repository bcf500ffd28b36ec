// Registration of the actor runtime's message types.
#include "actors/messages.h"

namespace stagehand::actors {

void RegisterMessageTypes(caf::actor_system_config& config) {
  config.add_message_type<TensorMessage>("TensorMessage");
  config.add_message_type<ComputeDone>("ComputeDone");
  config.add_message_type<ShipOrder>("ShipOrder");
  config.add_message_type<StageStatus>("StageStatus");
  config.add_message_type<StageDone>("StageDone");
  config.add_message_type<TiedGradients>("TiedGradients");
  config.add_message_type<SquaredNorms>("SquaredNorms");
  config.add_message_type<OptimizerDone>("OptimizerDone");
  config.add_message_type<GradReduced>("GradReduced");
  config.add_message_type<StepOutcome>("StepOutcome");
}

}  // namespace stagehand::actors
