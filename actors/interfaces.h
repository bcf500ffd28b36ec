// The typed message interfaces (CAF 0.17 typed_actor) of the step protocol: which actor
// takes which message, declared once. A sender holds the narrowest interface it sends to
// (a stage's microbatch actors hold `tensor_inbox` for its comm), so that the compiler
// refuses a message the receiver does not take. Not behaviour: the actors implement these
// beside this file; the cluster's interfaces are cluster/cluster_interfaces.h.
#ifndef STAGEHAND_ACTORS_INTERFACES_H_
#define STAGEHAND_ACTORS_INTERFACES_H_

#include <vector>

#include "actors/atoms.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "runtime/action.h"

namespace stagehand::actors {

// Takes tensors: a stage actor (inputs for its chunks), a comm actor (outputs to deliver).
using tensor_inbox = caf::typed_actor<caf::reacts_to<TensorMessage>>;

// What a step driver sends a stage: the StageActor itself, or (cluster) its StageGate.
// In order: begin step `step`; answer with a StageStatus of probe wave `wave`; send your
// tied gradients; take their sums and send your squared norms; apply AdamW (clip scale, step);
// zero this step's gradients instead (a rerun or a skip); run step `step` again, same data.
using stage_control =
    caf::typed_actor<caf::reacts_to<start_atom, int64_t>, caf::reacts_to<probe_atom, int>,
                     caf::reacts_to<tied_atom>, caf::reacts_to<tied_atom, TiedGradients>,
                     caf::reacts_to<optim_atom, double, int>, caf::reacts_to<discard_atom>,
                     caf::reacts_to<rerun_atom, int64_t>>;

// A stage actor: driver orders, tensors, its microbatch actors' completions and its
// reduction lane's (data parallelism).
using stage_actor =
    stage_control::extend<caf::reacts_to<TensorMessage>, caf::reacts_to<ComputeDone>,
                          caf::reacts_to<GradReduced>, caf::reacts_to<LossesGathered>,
                          caf::reacts_to<SubStepDone>, caf::reacts_to<GradPartsDone>>;

// What a stage sends its driver: the StepDriver, or (cluster) the DriverGate or TraceSteps
// that stand in front of it.
using stage_reports =
    caf::typed_actor<caf::reacts_to<StageStatus>, caf::reacts_to<StageDone>,
                     caf::reacts_to<TiedGradients>, caf::reacts_to<SquaredNorms>,
                     caf::reacts_to<OptimizerDone>, caf::reacts_to<GradientsDiscarded>>;

// The step driver: runs one step on request (answering its outcome) and collects the
// stages' reports; it is given the stages, by stage, once, and (resumed runs) the applied
// steps' losses for the rerun state machine's spike check.
using step_driver_actor =
    stage_reports::extend<caf::replies_to<step_atom, int64_t>::with<StepOutcome>,
                          caf::reacts_to<std::vector<stage_control>>,
                          caf::reacts_to<history_atom, std::vector<double>>>;

// A microbatch actor: an input (activation or gradient); its stage's order to run a compute
// action (with its ticket on the stage's lane: Lane::PostInOrder); its lane's completion (with the
// output); its stage's order to hand the output on.
using microbatch_actor = caf::typed_actor<
    caf::reacts_to<TensorMessage>, caf::reacts_to<run_atom, runtime::ActionKind, uint64_t>,
    caf::reacts_to<ComputeDone, std::vector<float>>, caf::reacts_to<ship_atom, ShipOrder>,
    caf::reacts_to<run_atom, SubStepRun>, caf::reacts_to<SubStepDone, std::vector<float>>>;

// The one-process transfer lane of a stage: tensors to deliver, and (once) the destination
// stages, by stage.
using comm_actor = tensor_inbox::extend<caf::reacts_to<std::vector<tensor_inbox>>>;

}  // namespace stagehand::actors

#endif  // STAGEHAND_ACTORS_INTERFACES_H_
