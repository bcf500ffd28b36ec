// Registration of the actor runtime's message types.
#include "actors/messages.h"

#include <cmath>
#include <limits>

namespace stagehand::actors {

std::vector<int> SendableDoubles(std::vector<double>& values) {
  std::vector<int> indices;
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i])) continue;
    indices.push_back(static_cast<int>(i));
    values[i] = 0.0;
  }
  return indices;
}

void RestoreNonFinite(std::vector<double>& values, const std::vector<int>& indices) {
  for (int i : indices) {
    if (i >= 0 && i < static_cast<int>(values.size())) {
      values[i] = std::numeric_limits<double>::quiet_NaN();
    }
  }
}

void RegisterMessageTypes(caf::actor_system_config& config) {
  config.add_message_type<TensorMessage>("TensorMessage");
  config.add_message_type<ComputeDone>("ComputeDone");
  config.add_message_type<SubStepRun>("SubStepRun");
  config.add_message_type<SubStepDone>("SubStepDone");
  config.add_message_type<ShipOrder>("ShipOrder");
  config.add_message_type<StageStatus>("StageStatus");
  config.add_message_type<StageDone>("StageDone");
  config.add_message_type<TiedGradients>("TiedGradients");
  config.add_message_type<SquaredNorms>("SquaredNorms");
  config.add_message_type<OptimizerDone>("OptimizerDone");
  config.add_message_type<GradReduced>("GradReduced");
  config.add_message_type<GradPartsDone>("GradPartsDone");
  config.add_message_type<LossesGathered>("LossesGathered");
  config.add_message_type<GradientsDiscarded>("GradientsDiscarded");
  config.add_message_type<StepOutcome>("StepOutcome");
}

}  // namespace stagehand::actors
