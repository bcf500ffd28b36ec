// Pipeline: spawning and tearing down the actors of one process.
#include "actors/pipeline.h"

#include <chrono>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "actors/stage_actor.h"
#include "actors/step_driver.h"
#include "caf/scheduler/test_coordinator.hpp"
#include "runtime/train/timers.h"

namespace stagehand::actors {

bool RunsSubSteps(const runtime::PlannerDefinition& planner, const runtime::StageWork& work,
                  bool always) {
  return runtime::RunsSubSteps(planner, work.SubStepLayoutOf(), always);
}

Pipeline::Pipeline(const PipelineOptions& options,
                   std::vector<std::unique_ptr<runtime::StageWork>> works)
    : options_(options), works_(std::move(works)) {}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(
    const PipelineOptions& options, std::vector<std::unique_ptr<runtime::StageWork>> works) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (absl::Status s = runtime::ValidateStepSpec(options.spec); !s.ok()) return s;
  const int P = options.spec.num_stages;
  if (options.replicas < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--dp=", options.replicas, ": must be >= 1"));
  }
  if (options.replicas > 1 && options.deterministic) {
    return absl::InvalidArgumentError(
        "data parallelism needs threaded lanes: its collectives block until every replica "
        "arrives (not available in deterministic mode)");
  }
  if (static_cast<int>(works.size()) != P * options.replicas) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline of ", P, " stages x ",
                                                   options.replicas, " replicas given ",
                                                   works.size(), " stage works"));
  }
  if (options.lane_depth < 1 || options.lane_depth > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("lane depth ", options.lane_depth, ": must be in [1, 8]"));
  }
  if (options.link.latency_us < 0 || options.link.gbps < 0) {
    return absl::InvalidArgumentError("link latency and bandwidth must not be negative");
  }
  if (options.trace != nullptr) {
    const runtime::StepSpec& spec = options.spec;
    if (absl::Status s = options.trace->Configure(P, spec.num_chunks, spec.num_microbatches);
        !s.ok()) {
      return s;
    }
  }
  std::unique_ptr<Pipeline> p(new Pipeline(options, std::move(works)));
  p->config_ = std::make_unique<caf::actor_system_config>();
  RegisterMessageTypes(*p->config_);
  if (options.deterministic) {
    p->config_->set("scheduler.policy", caf::atom("testing"));
  } else {
    p->config_->set("scheduler.max-threads", static_cast<size_t>(options.scheduler_threads));
  }
  p->system_ = std::make_unique<caf::actor_system>(*p->config_);
  for (int d = 0; d < options.replicas; ++d) p->SpawnReplica(d);
  return p;
}

// One replica's driver, stages (with their lanes, transfer lanes and, with data parallelism,
// reduction lanes), wired to each other only: replicas meet in their stage works' collectives.
void Pipeline::SpawnReplica(int replica) {
  caf::actor_system& sys = *system_;
  const int P = options_.spec.num_stages;
  const Lane::Mode mode = options_.deterministic ? Lane::Mode::kInline : Lane::Mode::kThread;
  runtime::trace::TraceRecorder* trace = replica == 0 ? options_.trace : nullptr;
  const step_driver_actor driver =
      sys.spawn(StepDriver, options_.spec, options_.grad_clip, options_.rerun, std::vector<int>{});
  drivers_.push_back(driver);
  std::vector<stage_actor> stages;
  std::vector<comm_actor> comms;
  for (int s = 0; s < P; ++s) {
    const int index = replica * P + s;
    lanes_.push_back(std::make_unique<Lane>(mode, options_.lane_omp_threads));
    Lane* reduce_lane = nullptr;
    if (options_.replicas > 1) {
      reduce_lanes_.push_back(std::make_unique<Lane>(mode, options_.lane_omp_threads));
      reduce_lane = reduce_lanes_.back().get();
    }
    comms.push_back(sys.spawn(CommActor, options_.link, trace ? trace->send(s) : nullptr));
    StageActorInit init{s,
                        options_.spec,
                        options_.planner,
                        lanes_.back().get(),
                        works_[index].get(),
                        driver,
                        comms.back(),
                        trace,
                        options_.specs};
    init.reduce_lane = reduce_lane;
    init.grad_bucket_mb = options_.grad_bucket_mb;
    init.reduction_start = options_.reduction_start;
    init.lane_depth = options_.deterministic ? 1 : options_.lane_depth;
    if (RunsSubSteps(*options_.planner, *works_[index], options_.moe_sub_steps)) {
      sub_step_lanes_.push_back(std::make_unique<Lane>(mode, options_.lane_omp_threads));
      init.sub_steps = works_[index]->SubStepLayoutOf();
      init.sub_step_lane = sub_step_lanes_.back().get();
      init.ordered_communication = options_.ordered_communication;
    }
    stages.push_back(sys.spawn(StageActor, init));
  }
  const std::vector<tensor_inbox> destinations(stages.begin(), stages.end());
  for (const comm_actor& comm : comms) caf::anon_send(comm, destinations);
  caf::anon_send(driver, std::vector<stage_control>(stages.begin(), stages.end()));
  stages_.insert(stages_.end(), stages.begin(), stages.end());
  comms_.insert(comms_.end(), comms.begin(), comms.end());
}

Pipeline::~Pipeline() {
  if (system_ == nullptr) return;
  for (const stage_actor& a : stages_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (const comm_actor& a : comms_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (const step_driver_actor& a : drivers_)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  stages_.clear();
  comms_.clear();
  drivers_.clear();
  if (options_.deterministic) {
    dynamic_cast<caf::scheduler::test_coordinator&>(system_->scheduler()).run();
  } else {
    system_->await_all_actors_done();
  }
  // Drains queued jobs: the stage works are still alive. A replica's reduction blocked in
  // its collective would wait forever for one that is gone: abort the groups first.
  for (runtime::InProcessGroup* group : options_.groups) group->Abort("the pipeline shut down");
  reduce_lanes_.clear();
  sub_step_lanes_.clear();
  lanes_.clear();
  // A work that completes later (a GPU stream) may still hold completions of the last jobs,
  // which send to actors: destroy it (it runs them first) while the actor system is alive.
  works_.clear();
}

StepOutcome Pipeline::RunReplicaStep(int replica, int64_t step) {
  StepOutcome outcome;
  caf::scoped_actor self{*system_};
  self->request(drivers_[replica], caf::infinite, step_atom::value, step)
      .receive([&](StepOutcome& out) { outcome = std::move(out); },
               [&](caf::error& e) { outcome.error = system_->render(e); });
  // A failed replica must not leave the others waiting in a collective for it.
  if (!outcome.error.empty()) {
    for (runtime::InProcessGroup* group : options_.groups) {
      group->Abort(absl::StrCat("replica ", replica, " failed"));
    }
  }
  return outcome;
}

absl::Status Pipeline::OnEveryStage(const std::function<absl::Status(runtime::StageWork&)>& job) {
  if (options_.deterministic) {
    return absl::FailedPreconditionError("OnEveryStage is not available in deterministic mode");
  }
  if (broken_) return absl::FailedPreconditionError("the pipeline failed in an earlier step");
  std::vector<std::promise<absl::Status>> done(works_.size());
  for (size_t i = 0; i < works_.size(); ++i) {
    lanes_[i]->Post(
        [&job, work = works_[i].get(), promise = &done[i]] { promise->set_value(job(*work)); });
  }
  absl::Status first;
  const int P = options_.spec.num_stages;
  for (size_t i = 0; i < done.size(); ++i) {
    const absl::Status s = done[i].get_future().get();
    if (!s.ok() && first.ok()) {
      first = absl::Status(s.code(),
                           absl::StrCat("replica ", i / P, " stage ", i % P, ": ", s.message()));
      for (runtime::InProcessGroup* group : options_.groups) group->Abort(first.ToString());
    }
  }
  if (!first.ok()) broken_ = true;
  return first;
}

absl::StatusOr<int64_t> Pipeline::OptimizerStateBytes(int stage) {
  if (stage < 0 || stage >= options_.spec.num_stages) {
    return absl::InvalidArgumentError(absl::StrCat("no stage ", stage));
  }
  std::promise<int64_t> bytes;
  lanes_[stage]->Post(
      [&bytes, work = works_[stage].get()] { bytes.set_value(work->OptimizerStateBytes()); });
  return bytes.get_future().get();
}

void Pipeline::SeedLossHistory(const std::vector<double>& losses) {
  for (const step_driver_actor& driver : drivers_)
    caf::anon_send(driver, history_atom::value, losses);
}

absl::StatusOr<StepOutcome> Pipeline::RunStep(int64_t step) {
  if (options_.deterministic) {
    return absl::FailedPreconditionError("RunStep is not available in deterministic mode");
  }
  if (broken_) return absl::FailedPreconditionError("the pipeline failed in an earlier step");
  const auto start = std::chrono::steady_clock::now();
  if (options_.trace) options_.trace->StepBegan(step, runtime::trace::ToNanos(start));
  // Replicas run the step together (their reductions wait for each other): one waiting
  // thread per further replica.
  const int D = options_.replicas;
  std::vector<StepOutcome> outcomes(D);
  std::vector<std::thread> waiters;
  for (int d = 1; d < D; ++d) {
    waiters.emplace_back([this, d, step, &outcomes] { outcomes[d] = RunReplicaStep(d, step); });
  }
  outcomes[0] = RunReplicaStep(0, step);
  for (std::thread& t : waiters) t.join();
  for (int d = 0; d < D; ++d) {
    if (!outcomes[d].error.empty()) {
      broken_ = true;
      return absl::AbortedError(D == 1 ? outcomes[d].error
                                       : absl::StrCat("replica ", d, ": ", outcomes[d].error));
    }
  }
  // Every replica's driver saw the same D x M losses (gathered by the loss stages) and the
  // same summed gradients: replica 0's outcome is the step's.
  // --log_timers covers every replica: each stage of each replica, in the grid's rank order
  // (runtime/train/timers.h: RankOrder, PhaseTimers::Grid).
  std::vector<std::vector<std::vector<double>>> phases;
  for (const StepOutcome& o : outcomes) phases.push_back(o.phase_seconds);
  StepOutcome outcome = std::move(outcomes[0]);
  if (D > 1) outcome.phase_seconds = runtime::RankOrder(phases);
  const auto end = std::chrono::steady_clock::now();
  outcome.seconds = std::chrono::duration<double>(end - start).count();
  if (options_.trace) options_.trace->StepEnded(step, runtime::trace::ToNanos(end));
  if (options_.after_step) options_.after_step();
  return outcome;
}

}  // namespace stagehand::actors
