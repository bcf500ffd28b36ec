// Coordinator behaviour.
#include "actors/cluster/coordinator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/cluster/gates.h"
#include "runtime/cluster/admission.h"
#include "runtime/cluster/placement.h"
#include "runtime/cluster/status_line.h"
#include "runtime/io/loss_curve.h"

namespace stagehand::actors::cluster {
namespace {

using Self = coordinator_actor::stateful_base<CoordinatorState>;

std::string NodeOf(Self* self) {
  caf::strong_actor_ptr sender = self->current_sender();
  return sender ? caf::to_string(sender->node()) : std::string("an anonymous sender");
}

// Whether the current message comes from rank `rank`'s worker actor (by node and id).
bool FromRank(Self* self, int rank) {
  auto it = self->state.joined.find(rank);
  caf::strong_actor_ptr sender = self->current_sender();
  return it != self->state.joined.end() && sender != nullptr && it->second.worker != nullptr &&
         sender->id() == it->second.worker.id() && sender->node() == it->second.worker.node();
}

std::string LastAction(Self* self, int rank) {
  auto it = self->state.last_action.find(rank);
  return it == self->state.last_action.end() || it->second.empty() ? "none reported" : it->second;
}

void StopAll(Self* self, const std::string& reason) {
  auto& st = self->state;
  if (st.stopping) return;
  st.stopping = true;
  st.running = false;
  std::fprintf(stderr, "cluster: error: %s\n", reason.c_str());
  std::fflush(stderr);
  for (const auto& [rank, join] : st.joined) self->send(join.worker, ClusterAbort{reason});
}

// One machine-readable line for the launcher (runtime/cluster/status_line.h).
void PrintStatus(const runtime::ClusterStatus& status) {
  std::printf("%s\n", runtime::FormatStatusLine(status).c_str());
  std::fflush(stdout);
}

void Advance(Self* self, runtime::TrainAction next);

// Every other rank saves and says so before rank 0 (the coordinator's node) leaves. Rank 0
// leaves last; its leaving is not a loss.
void Finish(Self* self) {
  auto& st = self->state;
  if (const std::string end = st.loop->EndLine(); !end.empty()) std::printf("%s\n", end.c_str());
  if (!st.options.checkpoint_dir.empty()) {
    const runtime::CheckpointMeta& meta = st.options.meta;
    absl::StatusOr<std::string> svg = runtime::WriteLossCurve(
        *st.loop, st.options.checkpoint_dir,
        runtime::LossCurveTitle(meta.run.value("data", nlohmann::json::object()).value("path", ""),
                                meta.model.layers.size(), meta.model.d_model, meta.tokenizer.kind));
    if (!svg.ok()) {
      StopAll(self, std::string(svg.status().message()));
      return;
    }
    std::printf("loss curve: %s\n", svg->c_str());
  }
  std::fflush(stdout);
  auto rank0 = st.joined.at(0).worker;
  auto finish_rank0 = [=] {
    self->state.finished.insert(0);
    self->send(rank0, finish_atom::value);
  };
  if (st.joined.size() == 1) finish_rank0();
  for (const auto& [rank, join] : st.joined) {
    if (rank == 0) continue;
    self->request(join.worker, std::chrono::seconds(120), finish_atom::value)
        .then(
            [=](caf::ok_atom) {
              auto& st = self->state;
              st.finished.insert(rank);
              if (st.finished.size() + 1 == st.joined.size()) finish_rank0();
            },
            [=](caf::error& e) {
              StopAll(self,
                      absl::StrCat("rank ", rank, " did not finish: ", self->system().render(e)));
            });
  }
}

// Empty when `part` is rank `rank`'s valid answer to the order of step `step`.
std::string CheckPart(Self* self, int rank, int64_t step, const CheckpointPart& part) {
  const auto& st = self->state;
  // Replicas hold the same weights and moments: replica 0's ranks write the shards.
  const std::vector<int> stages =
      st.layout->Replica(rank) == 0 ? st.layout->Stages(rank) : std::vector<int>{};
  return runtime::CheckCheckpointPart(rank, step,
                                      {part.rank, part.step, part.error, part.files, part.stages,
                                       part.bytes.size(), part.crc32.size()},
                                      stages);
}

void OnCheckpointPart(Self* self, int rank, int64_t step, CheckpointPart& part) {
  auto& st = self->state;
  if (st.stopping) return;
  if (std::string bad = CheckPart(self, rank, step, part); !bad.empty()) {
    StopAll(self,
            absl::StrCat("rank ", rank, " (", NodeOf(self),
                         ") did not write its part of the checkpoint of step ", step, ": ", bad));
    return;
  }
  st.parts[rank] = std::move(part);
  if (static_cast<int>(st.parts.size()) < st.options.world_size) return;
  std::vector<runtime::ShardRecord> records;
  for (const auto& [r, p] : st.parts) {
    for (size_t i = 0; i < p.files.size(); ++i)
      records.push_back({p.files[i], p.stages[i], p.bytes[i], p.crc32[i]});
  }
  runtime::CheckpointMeta meta = st.options.meta;
  meta.step = step;
  meta.run["history"] = runtime::LossHistoryToJson(st.loop->history());
  absl::StatusOr<std::string> dir = runtime::CommitCheckpoint(st.options.checkpoint_dir, meta,
                                                              records, st.options.keep_checkpoints);
  if (!dir.ok()) {
    StopAll(self, absl::StrCat("checkpoint of step ", step, ": ", dir.status().message()));
    return;
  }
  std::printf("checkpoint: step %lld in %s\n", static_cast<long long>(step), dir->c_str());
  PrintStatus({runtime::ClusterEvent::kCheckpoint, step});
  st.checkpoint_step = -1;
  Advance(self, st.loop->Checkpointed(step));
}

// Asks every rank for its shards of step `step`; OnCheckpointPart commits.
void Checkpoint(Self* self, int64_t step) {
  auto& st = self->state;
  absl::StatusOr<std::string> tmp = runtime::BeginCheckpoint(st.options.checkpoint_dir, step);
  if (!tmp.ok()) {
    StopAll(self, absl::StrCat("checkpoint of step ", step, ": ", tmp.status().message()));
    return;
  }
  st.parts.clear();
  st.checkpoint_step = step;
  for (const auto& [rank, join] : st.joined) {
    self->request(join.worker, std::chrono::seconds(600), CheckpointOrder{step, *tmp})
        .then([=](CheckpointPart& part) { OnCheckpointPart(self, rank, step, part); },
              [=](caf::error& e) {
                StopAll(self, absl::StrCat("rank ", rank,
                                           " did not write its part of the checkpoint of step ",
                                           step, ": ", self->system().render(e)));
              });
  }
}

// Orders every rank to run its part of the held-out pass after step `step` (0: before
// training); the answers go to OnEvalResult.
void Evaluate(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  st.held_out->Begin(step);
  st.eval_began = std::chrono::steady_clock::now();
  for (const auto& [rank, join] : st.joined)
    self->send(join.worker, EvalOrder{step, st.options.eval_batches});
  self->delayed_send(
      self, std::chrono::milliseconds(static_cast<int64_t>(st.options.hang_timeout_s * 1e3)),
      eval_hang_atom::value, step);
}

void OnEvalResult(Self* self, EvalResult& r) {
  auto& st = self->state;
  if (st.stopping) return;
  if (!FromRank(self, r.rank)) {
    StopAll(self, absl::StrCat("refused a held-out result for rank ", r.rank, " from ",
                               NodeOf(self), ": not that rank's worker"));
    return;
  }
  if (std::string bad = st.held_out->Admit(r.rank, r.step, r.has_loss, r.loss, r.error);
      !bad.empty()) {
    StopAll(self, bad);
    return;
  }
  if (!st.held_out->complete()) return;
  const double loss = st.held_out->Finish();
  if (st.timers) {  // as tools/launch: the pass's wall time, on stage 0 (it holds chunk 0)
    st.timers->Add(
        0, runtime::TimerPhase::kEvaluation,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - st.eval_began).count());
  }
  std::printf("%s bits %a\n", runtime::HeldOutLine(r.step, loss).c_str(), loss);
  std::fflush(stdout);
  Advance(self, st.loop->Evaluated(r.step, loss));
}

void OnEvalHang(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping || !st.held_out->running() || st.held_out->step() != step) return;
  std::string report = absl::StrFormat(
      "held-out evaluation after step %d did not finish within --hang_timeout=%gs:", step,
      st.options.hang_timeout_s);
  for (int rank : st.held_out->Missing()) {
    absl::StrAppend(&report, "\n  rank ", rank,
                    " has not answered (last action: ", LastAction(self, rank), ")");
  }
  StopAll(self, report);
}

// --log_timers: adds the step's phase seconds; prints the report with the step line.
void TimeStep(Self* self, int64_t step, bool report) {
  auto& st = self->state;
  if (!st.timers) return;
  // Every replica's stages, in the grid's rank order (PhaseTimers::Grid).
  std::vector<std::vector<std::vector<double>>> phases;
  for (const StepOutcome& o : st.outcomes) phases.push_back(o.phase_seconds);
  std::vector<runtime::PhaseSeconds> per_stage;
  for (const std::vector<double>& v : runtime::RankOrder(phases)) {
    runtime::PhaseSeconds p{};
    std::copy_n(v.begin(), std::min<size_t>(v.size(), p.size()), p.begin());
    per_stage.push_back(p);
  }
  st.timers->AddStep(per_stage);
  if (!report) return;
  for (const std::string& line : st.timers->Report(st.timers_from, step))
    std::printf("%s\n", line.c_str());
  st.timers->Reset();
  st.timers_from = step + 1;
}

void OnStepOutcome(Self* self, int64_t step, int replica, StepOutcome& out);

void RunStep(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  st.step = step;
  st.running = true;
  if (st.options.specs) {
    const std::string ramp = st.options.specs->RampLine(step, st.loop->first_step(),
                                                        st.options.micro_batch_size, st.options.dp);
    if (!ramp.empty()) std::printf("%s\n", ramp.c_str());
  }
  self->delayed_send(
      self, std::chrono::milliseconds(static_cast<int64_t>(st.options.hang_timeout_s * 1e3)),
      hang_atom::value, step);
  if (st.options.trace) st.options.trace->StepBegan(step, runtime::trace::NowNanos());
  // Every replica's driver runs the step (their stages meet in the collectives); each sees
  // the same D x M losses and the same summed gradients, so replica 0's outcome is the step's.
  st.outcomes.assign(st.drivers.size(), StepOutcome{});
  st.outcomes_pending = static_cast<int>(st.drivers.size());
  for (int d = 0; d < static_cast<int>(st.drivers.size()); ++d) {
    self->request(st.drivers[d], caf::infinite, step_atom::value, step)
        .then([=](StepOutcome& out) { OnStepOutcome(self, step, d, out); },
              [=](caf::error& e) {
                StopAll(self, absl::StrCat("step ", step, ": ", self->system().render(e)));
              });
  }
}

void OnStepOutcome(Self* self, int64_t step, int replica, StepOutcome& reported) {
  auto& st = self->state;
  if (st.stopping || step != st.step) return;
  if (!reported.error.empty()) {
    StopAll(self, absl::StrCat("step ", step, " failed",
                               st.drivers.size() > 1 ? absl::StrCat(" in replica ", replica) : "",
                               ": ", reported.error));
    return;
  }
  st.outcomes[replica] = std::move(reported);
  if (--st.outcomes_pending > 0) return;
  const StepOutcome& out = st.outcomes[0];
  st.running = false;
  if (st.options.trace) st.options.trace->StepEnded(step, runtime::trace::NowNanos());
  for (const std::string& note : out.notes) std::printf("%s\n", note.c_str());
  const runtime::TrainAction next = st.loop->StepFinished(step, out.loss, /*stop_requested=*/false);
  if (out.skipped) {
    std::printf("step %lld skipped (no update)\n", static_cast<long long>(step));
  } else if (st.loop->LogDue(step)) {
    std::printf("step %lld loss %.6f grad_norm %.6f bits %a\n", static_cast<long long>(step),
                out.loss, out.grad_norm, out.loss);
  }
  TimeStep(self, step, !out.skipped && st.loop->LogDue(step));
  std::fflush(stdout);
  Advance(self, next);
}

// Carries out the training loop's next phase (runtime/train/train_loop.h).
void Advance(Self* self, runtime::TrainAction next) {
  switch (next.phase) {
    case runtime::TrainPhase::kEvaluate:
      return Evaluate(self, next.step);
    case runtime::TrainPhase::kStep:
      return RunStep(self, next.step);
    case runtime::TrainPhase::kCheckpoint:
      return Checkpoint(self, next.step);
    case runtime::TrainPhase::kFinish:
      return Finish(self);
  }
}

void OnHangCheck(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  if (step > 0) {
    if (!st.running || step != st.step) return;
    st.reports.clear();
    for (const auto& replica : st.stage_gates) {
      for (const stage_gate_actor& gate : replica)
        self->send(gate, probe_atom::value, kHangProbeWave);
    }
    self->delayed_send(self, std::chrono::seconds(2), hang_atom::value, -step);
    return;
  }
  std::string report = absl::StrFormat(
      "step %d did not finish within --hang_timeout=%gs; per rank, what each stage waits for:",
      -step, st.options.hang_timeout_s);
  std::map<int, std::map<int, std::vector<std::string>>> by_rank;  // rank -> stage -> lines
  for (const StageReport& r : st.reports) {
    if (r.replica < 0 || r.replica >= st.layout->dp() || r.stage < 0 ||
        r.stage >= st.options.spec.num_stages) {
      continue;  // the gates checked both; a report out of range names no stage
    }
    const int rank = st.layout->StageRanks(r.replica)[r.stage];
    // A stage's transfers first, then what its actors wait for, whichever answered first.
    std::vector<std::string>& lines = by_rank[rank][r.stage];
    if (r.rank < 0) {
      lines.push_back(r.text);
    } else {
      lines.insert(lines.begin(), "transfers: " + r.text);
    }
  }
  for (int rank = 0; rank < st.options.world_size; ++rank) {
    absl::StrAppend(&report, "\n  rank ", rank, " (last action: ", LastAction(self, rank), ")");
    for (int s : st.layout->Stages(rank)) {
      auto it = by_rank[rank].find(s);
      if (it == by_rank[rank].end()) {
        absl::StrAppend(&report, "\n    stage ", s, ": no answer to the probe");
        continue;
      }
      for (const std::string& line : it->second)
        absl::StrAppend(&report, "\n    stage ", s, ": ", line);
    }
  }
  StopAll(self, report);
}

void OnJoin(Self* self, JoinRequest& req, JoinReply& reply) {
  auto& st = self->state;
  const std::string who = absl::StrCat("node ", NodeOf(self), " (host ", req.host, ", pid ",
                                       req.pid, ", claims rank ", req.rank, ")");
  std::set<int> joined;
  for (const auto& [rank, join] : st.joined) joined.insert(rank);
  reply.reason = runtime::RefuseJoin(
      {req.token, req.rank, req.world_size, req.config, req.start_step},
      {st.options.token, st.options.world_size, st.options.config, st.options.resumed_step}, joined,
      st.stopping || st.ready.size() == static_cast<size_t>(st.options.world_size));
  if (!reply.reason.empty()) {
    std::fprintf(stderr, "cluster: rejected a join from %s: %s\n", who.c_str(),
                 reply.reason.c_str());
    std::fflush(stderr);
    return;
  }
  reply.accepted = true;
  reply.driver = st.driver_gates[st.layout->Replica(req.rank)];
  st.joined[req.rank] = req;
  st.last_heartbeat[req.rank] = std::chrono::steady_clock::now();
  self->monitor(req.worker);
}

// Once every rank registered: each rank gets its replica's peer table (where that replica's
// stages live; transfers never cross replicas), with every rank's UCX address.
void OnRegistration(Self* self, Registration& reg) {
  auto& st = self->state;
  const int P = st.options.spec.num_stages, N = st.options.world_size, D = st.layout->dp();
  if (!FromRank(self, reg.rank) || reg.stages != st.layout->Stages(reg.rank) ||
      reg.gates.size() != reg.stages.size() || reg.comms.size() != reg.stages.size()) {
    StopAll(self, absl::StrCat("bad registration from ", NodeOf(self), " for rank ", reg.rank));
    return;
  }
  st.registered[reg.rank] = reg;
  if (static_cast<int>(st.registered.size()) < N) return;
  std::vector<PeerTable> tables(D);
  st.stage_gates.assign(D, std::vector<stage_gate_actor>(P));
  for (int d = 0; d < D; ++d) {
    tables[d].stage_rank = st.layout->StageRanks(d);
    tables[d].stage_comms.resize(P);
  }
  for (const auto& [rank, r] : st.registered) {
    const int d = st.layout->Replica(rank);
    for (size_t i = 0; i < r.stages.size(); ++i) {
      tables[d].stage_comms[r.stages[i]] = r.comms[i];
      st.stage_gates[d][r.stages[i]] = r.gates[i];
    }
  }
  for (PeerTable& table : tables) {
    for (int rank = 0; rank < N; ++rank) table.ucx_addresses.push_back(st.joined[rank].ucx_address);
  }
  for (const auto& [rank, join] : st.joined) {
    self->send(join.worker, tables[st.layout->Replica(rank)]);
  }
}

void OnDown(Self* self, const caf::down_msg& down) {
  auto& st = self->state;
  for (const auto& [rank, join] : st.joined) {
    if (join.worker.address() != down.source) continue;
    if (st.stopping || st.finished.count(rank) > 0) return;
    PrintStatus({runtime::ClusterEvent::kRankLost, st.step, rank, LastAction(self, rank)});
    StopAll(self, absl::StrCat("rank ", rank, " (host ", join.host, ", pid ", join.pid,
                               ") was lost: its connection closed during step ", st.step,
                               "; its last action: ", LastAction(self, rank)));
    return;
  }
}

// Once every rank is ready, the training loop starts.
void OnReady(Self* self, int rank) {
  auto& st = self->state;
  if (!FromRank(self, rank)) {
    StopAll(self, absl::StrCat("refused a ready message for rank ", rank, " from ", NodeOf(self),
                               ": not that rank's worker"));
    return;
  }
  st.ready.insert(rank);
  if (static_cast<int>(st.ready.size()) < st.options.world_size) return;
  std::printf("cluster: %d workers joined and connected; running steps %lld..%lld\n",
              st.options.world_size, static_cast<long long>(st.loop->first_step()),
              static_cast<long long>(st.loop->last_step()));
  PrintStatus({runtime::ClusterEvent::kClusterUp});
  for (size_t d = 0; d < st.drivers.size(); ++d) {
    self->send(st.drivers[d],
               std::vector<stage_control>(st.stage_gates[d].begin(), st.stage_gates[d].end()));
    self->send(st.drivers[d], history_atom::value, st.loop->history().train);  // spike checks
  }
  Advance(self, st.loop->Start());  // a resumed run at its last step only saves
}

void OnHeartbeat(Self* self, const Heartbeat& beat) {
  auto& st = self->state;
  if (!FromRank(self, beat.rank)) {
    StopAll(self, absl::StrCat("refused a heartbeat for rank ", beat.rank, " from ", NodeOf(self),
                               ": not that rank's worker"));
    return;
  }
  st.last_action[beat.rank] = beat.last_action;
  st.last_heartbeat[beat.rank] = std::chrono::steady_clock::now();
}

// Every second: a rank silent for longer than the heartbeat timeout is lost.
void OnHeartbeatCheck(Self* self) {
  auto& st = self->state;
  if (st.stopping) return;
  const auto now = std::chrono::steady_clock::now();
  if (st.checkpoint_step >= 0) {
    // Ranks writing shards send no heartbeats; a lost connection still shows at once.
    for (auto& [rank, when] : st.last_heartbeat) when = now;
  }
  for (const auto& [rank, when] : st.last_heartbeat) {
    double silent = std::chrono::duration<double>(now - when).count();
    if (silent > st.options.heartbeat_timeout_s && st.finished.count(rank) == 0) {
      PrintStatus({runtime::ClusterEvent::kRankLost, st.step, rank, LastAction(self, rank)});
      StopAll(self, absl::StrFormat("rank %d sent no heartbeat for %.1f s; its last action: %s",
                                    rank, silent, LastAction(self, rank)));
      return;
    }
  }
  self->delayed_send(self, std::chrono::seconds(1), check_atom::value);
}

// A Gloo rendezvous entry from a joined rank, until every rank is ready (the groups connect
// before that): the key-value table bounds what it keeps.
std::string OnStoreSet(Self* self, int rank, const std::string& key, std::string& value) {
  auto& st = self->state;
  if (!FromRank(self, rank)) {
    return absl::StrCat("refused a rendezvous entry for rank ", rank, " from ", NodeOf(self),
                        ": not that rank's worker");
  }
  if (st.ready.size() == static_cast<size_t>(st.options.world_size)) {
    return "refused a rendezvous entry: every rank is connected already";
  }
  return st.rendezvous->Set(rank, key, std::move(value));
}

caf::result<bool, std::string> OnStoreGet(Self* self, int rank, const std::string& key) {
  if (!FromRank(self, rank)) return {false, std::string()};
  const std::string* value = self->state.rendezvous->Get(key);
  if (value == nullptr) return {false, std::string()};
  return {true, *value};
}

// Each replica's driver gate (its stages report through it).
void SpawnDriverGates(Self* self) {
  auto& st = self->state;
  for (size_t d = 0; d < st.drivers.size(); ++d) {
    DriverGateInit init{st.options.spec, st.options.wte_floats, st.drivers[d],
                        caf::actor_cast<coordinator_actor>(self), st.options.specs};
    init.replica = static_cast<int>(d);
    init.dp = st.layout->dp();
    st.driver_gates.push_back(self->spawn(DriverGate, init));
  }
}

}  // namespace

coordinator_actor::behavior_type Coordinator(Self* self, CoordinatorOptions options,
                                             std::vector<step_driver_actor> drivers) {
  auto& st = self->state;
  st.options = std::move(options);
  st.drivers = std::move(drivers);
  // Checked by the worker before it spawned us: the layout exists and one driver per replica.
  st.layout.emplace(*runtime::ClusterLayout::Create(st.options.spec.num_stages,
                                                    st.options.world_size, st.options.dp));
  st.rendezvous.emplace(st.options.world_size);
  st.held_out.emplace(st.options.world_size,
                      st.layout->StageRanks(0)[st.options.spec.chunk_to_stage.back()]);
  if (st.options.log_timers) {
    // Every replica's stages: with one replica its stages' ranks, else the whole grid.
    st.timers.emplace(st.layout->dp() > 1
                          ? runtime::PhaseTimers::Grid(st.layout->dp(), st.options.spec.num_stages)
                          : runtime::PhaseTimers(st.layout->StageRanks(0)));
    st.timers_from = st.options.resumed_step + 1;
  }
  st.loop.emplace(st.options.loop, st.options.resumed_step,
                  runtime::LossHistoryFromRunJson(st.options.meta.run, st.options.resumed_step));
  SpawnDriverGates(self);
  self->set_down_handler([=](caf::down_msg& down) { OnDown(self, down); });
  self->delayed_send(self, std::chrono::seconds(1), check_atom::value);
  return {
      [=](JoinRequest& req) -> JoinReply {
        JoinReply reply;
        OnJoin(self, req, reply);
        return reply;
      },
      [=](Registration& reg) { OnRegistration(self, reg); },
      [=](ready_atom, int rank) { OnReady(self, rank); },
      [=](const Heartbeat& beat) { OnHeartbeat(self, beat); },
      [=](check_atom) { OnHeartbeatCheck(self); },
      [=](hang_atom, int64_t step) { OnHangCheck(self, step); },
      [=](eval_hang_atom, int64_t step) { OnEvalHang(self, step); },
      [=](EvalResult& result) { OnEvalResult(self, result); },
      [=](StageReport& report) { self->state.reports.push_back(std::move(report)); },
      [=](const ClusterAbort& abort) { StopAll(self, abort.reason); },
      [=](caf::ok_atom) {},  // rank 0's answer to finish_atom
      [=](store_set_atom, int rank, const std::string& key, std::string& value) -> std::string {
        return OnStoreSet(self, rank, key, value);
      },
      [=](store_get_atom, int rank, const std::string& key) -> caf::result<bool, std::string> {
        return OnStoreGet(self, rank, key);
      },
  };
}

}  // namespace stagehand::actors::cluster
