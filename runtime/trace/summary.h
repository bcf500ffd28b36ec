// Summary of a Trace: per stage busy and bubble fractions, transfer time exposed and hidden
// under compute, activation memory peaks, the step time, and the critical path of a step
// (the chain of actions and transfers that set its length).
// Not a renderer (html.h) and not a cost model: it measures what the trace shows.
//
// Definitions (every figure is over all steps of the trace unless it says "per step"):
//   step time        a step's span (RunStep's wall time; the simulator's makespan).
//   pipeline window  of a step: first F/I/W/B begin to last F/I/W/B end, any stage.
//   busy             F/I/W/B time of the stage / step time (launch's busy fraction).
//   bubble           1 - F/I/W/B time of the stage / pipeline window (1F1B with unit costs:
//                    (P-1)/(M+P-1), e.g. 3/11 at P=4, M=8).
//   transfer         the union of the stage's send and receive spans;
//   hidden           the part of it under the stage's own compute; exposed = the rest;
//   overlap          hidden / transfer.
//   waits            time in which some action of the stage was ready but not started (the
//                    union of its actions' ready-to-started intervals, Span::wait_us; with
//                    sub-steps, each sub-step's, so an action's own sub-steps are no wait).
//   lane gap         between two consecutive actions on a stage's compute lane (one step)
//                    where the second was ready before the first ended: the idle time
//                    between them, the runtime's own cost of starting the next action
//                    (median over all such pairs; dependency waits are not counted).
//   all-to-all (a2a) the union of the stage's a2a spans (MoE dispatch / combine sub-steps);
//   hidden a2a       the part of it under the same stage's compute lane (another microbatch's
//                    sub-steps: the overlap of fine-grained callables); exposed = the rest.
#ifndef STAGEHAND_RUNTIME_TRACE_SUMMARY_H_
#define STAGEHAND_RUNTIME_TRACE_SUMMARY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/action.h"
#include "runtime/trace/trace.h"

namespace stagehand::runtime::trace {

struct StageSummary {
  int stage = 0;
  double compute_us = 0;  // F/I/W/B
  double busy_fraction = 0;
  double bubble_fraction = 0;
  double wait_us = 0;  // time some action of it was ready and not started (union)
  double transfer_us = 0;
  double exposed_transfer_us = 0;
  double hidden_transfer_us = 0;
  double overlap_fraction = 0;  // 0 when it has no transfers
  double a2a_us = 0;            // all-to-all: its a2a lane's busy time
  double hidden_a2a_us = 0;     // the part of a2a_us under its own compute
  int peak_activations = 0;
  int64_t peak_activation_bytes = 0;
};

// One link of a critical path: an action (or one sub-step of it: layer >= 0; all_to_all
// for a dispatch / combine on the a2a lane), or a transfer (from `stage` to `to_stage`,
// spanning the producer's end to the arrival), with the wait before it started.
struct CriticalLink {
  bool transfer = false;
  bool all_to_all = false;
  int layer = -1;
  SubStepKind part = SubStepKind::kRest;
  int stage = 0;
  int to_stage = -1;
  ActionKind kind = ActionKind::kForward;
  int chunk = 0;
  int microbatch = 0;
  double begin_us = 0;
  double end_us = 0;
  double wait_before_us = 0;  // gap between what it waited for and its begin
};

struct CriticalPath {
  int64_t step = 0;
  double length_us = 0;  // step begin to the last F/I/W/B end
  // Adding up to length_us (a2a_us: dispatch / combine sub-steps on the path).
  double compute_us = 0, transfer_us = 0, a2a_us = 0, wait_us = 0;
  std::vector<CriticalLink> links;  // in time order
};

// One step's length (a StepSpan, or first to last span of the step).
struct StepTime {
  int64_t step = 0;
  double length_us = 0;
  double pipeline_window_us = 0;
  bool warmup = false;   // excluded from the median and spread
  int microbatches = 0;  // its M: distinct microbatches of its F actions (a ramp-up varies it)
};

// The step times without the warm-up steps (all steps if that leaves none).
struct StepStatistics {
  int num_steps = 0;     // counted
  int warmup_steps = 0;  // excluded
  double median_us = 0;
  double min_us = 0, max_us = 0;  // spread = max - min
};

struct TraceSummary {
  // num_microbatches: the trace's M; under a batch-size ramp-up the most of any step (each
  // step's own is in step_times).
  int num_stages = 0, num_chunks = 0, num_microbatches = 0;
  bool virtual_time = false;
  int num_steps = 0;
  double step_time_us = 0;        // mean over steps
  double pipeline_window_us = 0;  // mean over steps
  std::vector<StageSummary> stages;
  double bubble_fraction = 0;      // mean over stages
  double exposed_transfer_us = 0;  // summed over stages
  double hidden_transfer_us = 0;   // summed over stages
  double overlap_fraction = 0;     // hidden / (hidden + exposed), over all stages
  // All-to-all (MoE dispatch / combine sub-steps), summed over stages and steps (divide by
  // num_steps for per step), and the part under the same stage's compute.
  double a2a_us = 0;
  double hidden_a2a_us = 0;
  double a2a_hidden_fraction() const { return a2a_us > 0 ? hidden_a2a_us / a2a_us : 0; }
  // Data parallelism (REDUCE_GRAD spans, summed over stages and steps): their time, and the
  // part of it while some stage of the same step still ran a backward action (I, W, B).
  double grad_reduction_us = 0;
  double hidden_grad_reduction_us = 0;
  CriticalPath critical_path;
  std::vector<StepTime> step_times;  // in step order
  StepStatistics step_statistics;
  // Lane gaps (see the definitions): how many pairs, and their median; -1 with none (the
  // trace has no ready times, or runs sub-steps).
  int lane_gaps = 0;
  double lane_gap_median_us = -1;
  // The trace's stages ran on a CPU with fewer cores than stages: busy fractions of
  // different stages overlap in time (their compute shared cores).
  bool fewer_cores_than_stages = false;
};

struct SummaryOptions {
  int64_t critical_path_step = -1;  // the step whose critical path to find; -1 = the last
  // The first steps left out of the median and spread (they include warm-up: allocation,
  // first-touch, thread start-up); 0 keeps every step. Never leaves no step.
  int warmup_steps = 1;
  int cpu_cores = 0;  // the host's cores for the fewer-cores note; 0 = this machine's
};

// The lane gaps of `trace` (see the definitions at the top), in no particular order.
std::vector<double> LaneGaps(const Trace& trace);
// How many lane gaps `trace` has and their median (-1 with none): TraceSummary's figures.
struct LaneGapMedian {
  int pairs = 0;
  double median_us = -1;
};
LaneGapMedian MedianLaneGap(const Trace& trace);

// InvalidArgument if the trace has no compute span (nothing to summarise) or the asked
// step is not in it.
absl::StatusOr<TraceSummary> Summarize(const Trace& trace, const SummaryOptions& options = {});

// Median and spread of `steps` less the first `warmup_steps` (fewer if that leaves none);
// marks the excluded ones.
StepStatistics ComputeStepStatistics(std::vector<StepTime>* steps, int warmup_steps);

// The fewest and most microbatches of any step (equal unless a batch-size ramp-up).
std::pair<int, int> MicrobatchRange(const TraceSummary& summary);

// "step  time ms  window ms" per step (with "M=2" when steps' M differ), warm-up steps marked,
// long tables elided.
std::string FormatStepTable(const TraceSummary& summary);

// tools/trace compare: two summaries side by side (median step time and spread, bubble,
// exposed transfer, peak memory) and whether the difference of the medians exceeds the
// run-to-run noise (their min-max ranges do not overlap), with too few steps said so.
std::string FormatComparison(const TraceSummary& a, const std::string& a_name,
                             const TraceSummary& b, const std::string& b_name);

// The all-to-all lines of the summary: per step, summed over stages, and hidden under the
// same stage's compute, then a row per stage; "" when the trace has no a2a spans.
std::string FormatAllToAll(const TraceSummary& summary);

// What the all-to-all overlap benchmarks read from a run's trace (its warm-up steps already
// out: WithoutFirstSteps): the median step time, the all-to-all per step summed over stages
// and the share of it under the same stage's compute (Summarize's), those lines
// (FormatAllToAll), and the median F experts sub-step's compute (robust to a loaded host).
struct AllToAllOverlap {
  double step_ms = 0;
  double a2a_ms_per_step = 0;
  double hidden_fraction = 0;
  double experts_us = 0;  // 0: no F experts sub-step in the trace
  std::string table;
};
absl::StatusOr<AllToAllOverlap> MeasureAllToAllOverlap(const Trace& trace);

// The report tools/trace prints: a header, a table per stage, a launch-style line
// ("busy s0 0.40 s1 ..."), and the critical path, long runs of it elided.
std::string FormatSummary(const TraceSummary& summary);

// --- The phases of --log_timers (runtime/train/timers.h), as the trace shows them: per
// stage, the summed durations of its compute spans by kind, over every step of the trace, and
// its transfers exposed: for each F/I/B, the lane's idle time before it (since the stage's
// previous compute span of the step, or the step's begin) while its transferred input was in
// flight (its receive span, from the sender's hand-off to the arrival; ExposedTransferWait).
// The launcher's timers measure the same events, so the two agree (actors/rerun_step_test).
// Not the summary's exposed_transfer_us (transfer time not under the stage's own compute,
// whether or not the stage had anything else to do).
struct StagePhaseTimes {
  int stage = 0;
  double forward_us = 0;            // F
  double backward_input_us = 0;     // I and fused B
  double backward_weight_us = 0;    // W
  double transfers_exposed_us = 0;  // lane idle while the next action's input was in flight
  double optimizer_us = 0;          // OPTIM
};
std::vector<StagePhaseTimes> PhaseTimesOf(const Trace& trace);
// "phase times (ms, as --log_timers): forward 12.3 (min 2.9, max 3.3 per stage) ..." lines.
std::string FormatPhaseTimes(const std::vector<StagePhaseTimes>& times);

}  // namespace stagehand::runtime::trace

#endif  // STAGEHAND_RUNTIME_TRACE_SUMMARY_H_
