// Pipeline: spawning and tearing down the actors of one process.
#include "actors/pipeline.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "caf/scheduler/test_coordinator.hpp"
#include "actors/stage_actor.h"
#include "actors/step_driver.h"

namespace stagehand::actors {

Pipeline::Pipeline(const PipelineOptions& options,
                   std::vector<std::unique_ptr<runtime::StageWork>> works)
    : options_(options), works_(std::move(works)) {}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Create(
    const PipelineOptions& options, std::vector<std::unique_ptr<runtime::StageWork>> works) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (absl::Status s = runtime::ValidateStepSpec(options.spec); !s.ok()) return s;
  const int P = options.spec.num_stages;
  if (static_cast<int>(works.size()) != P) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline of ", P, " stages given ", works.size(), " stage works"));
  }
  if (options.link.latency_us < 0 || options.link.gbps < 0) {
    return absl::InvalidArgumentError("link latency and bandwidth must not be negative");
  }
  if (options.trace != nullptr) {
    const runtime::StepSpec& spec = options.spec;
    if (absl::Status s = options.trace->Configure(P, spec.num_chunks, spec.num_microbatches); !s.ok()) {
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
  caf::actor_system& sys = *p->system_;
  const Lane::Mode mode = options.deterministic ? Lane::Mode::kInline : Lane::Mode::kThread;
  p->driver_ = sys.spawn(StepDriver, options.spec, options.grad_clip, options.rerun, std::vector<int>{});
  for (int s = 0; s < P; ++s) {
    p->lanes_.push_back(std::make_unique<Lane>(mode));
    p->comms_.push_back(sys.spawn(CommActor, options.link,
                                  options.trace ? options.trace->send(s) : nullptr));
    StageActorInit init{s, options.spec, options.planner, p->lanes_[s].get(), p->works_[s].get(),
                        p->driver_, p->comms_[s], options.trace, options.specs};
    p->stages_.push_back(sys.spawn(StageActor, init));
  }
  const std::vector<tensor_inbox> destinations(p->stages_.begin(), p->stages_.end());
  for (const comm_actor& comm : p->comms_) caf::anon_send(comm, destinations);
  caf::anon_send(p->driver_, std::vector<stage_control>(p->stages_.begin(), p->stages_.end()));
  return p;
}

Pipeline::~Pipeline() {
  if (system_ == nullptr) return;
  for (const stage_actor& a : stages_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (const comm_actor& a : comms_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(driver_, caf::exit_reason::user_shutdown);
  stages_.clear();
  comms_.clear();
  driver_ = step_driver_actor{};
  if (options_.deterministic) {
    dynamic_cast<caf::scheduler::test_coordinator&>(system_->scheduler()).run();
  } else {
    system_->await_all_actors_done();
  }
  lanes_.clear();  // drains queued jobs: the stage works are still alive
}

void Pipeline::SeedLossHistory(const std::vector<double>& losses) {
  caf::anon_send(driver_, history_atom::value, losses);
}

absl::StatusOr<StepOutcome> Pipeline::RunStep(int64_t step) {
  if (options_.deterministic) {
    return absl::FailedPreconditionError("RunStep is not available in deterministic mode");
  }
  if (broken_) return absl::FailedPreconditionError("the pipeline failed in an earlier step");
  StepOutcome outcome;
  const auto start = std::chrono::steady_clock::now();
  if (options_.trace) options_.trace->StepBegan(step, runtime::trace::ToNanos(start));
  caf::scoped_actor self{*system_};
  self->request(driver_, caf::infinite, step_atom::value, step)
      .receive([&](StepOutcome& out) { outcome = std::move(out); },
               [&](caf::error& e) { outcome.error = system_->render(e); });
  if (!outcome.error.empty()) {
    broken_ = true;
    return absl::AbortedError(outcome.error);
  }
  const auto end = std::chrono::steady_clock::now();
  outcome.seconds = std::chrono::duration<double>(end - start).count();
  if (options_.trace) options_.trace->StepEnded(step, runtime::trace::ToNanos(end));
  return outcome;
}

}  // namespace stagehand::actors
