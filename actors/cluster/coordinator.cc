// Coordinator behaviour.
#include "actors/cluster/coordinator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/cluster/gates.h"
#include "actors/cluster/placement.h"
#include "runtime/io/loss_curve.h"

namespace stagehand::actors::cluster {
namespace {

using Self = caf::stateful_actor<CoordinatorState>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using eval_hang_atom = caf::atom_constant<caf::atom("evalhang")>;

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

void RunStep(Self* self, int64_t step);

// Every other rank saves and says so before rank 0 (the coordinator's node) leaves. Rank 0
// leaves last; its leaving is not a loss.
void Finish(Self* self) {
  auto& st = self->state;
  if (st.last_step < st.options.steps) {
    std::printf("stopped after step %lld of %lld (--exit_after); continue with --resume\n",
                static_cast<long long>(st.last_step), static_cast<long long>(st.options.steps));
  } else if (!st.validation.empty()) {
    std::printf("held-out loss after %lld steps %.4f (from %.4f)\n", static_cast<long long>(st.options.steps),
                st.validation.back().second, st.validation.front().second);
  }
  if (!st.options.checkpoint_dir.empty()) {
    runtime::LossCurve curve;
    curve.title = absl::StrFormat("%s: %zu layers, d_model %d, %s tokens",
                                  st.options.meta.run.value("data", nlohmann::json::object()).value("path", ""),
                                  st.options.meta.model.layers.size(), st.options.meta.model.d_model,
                                  st.options.meta.tokenizer.kind);
    for (size_t i = 0; i < st.losses.size(); ++i) curve.train.emplace_back(i + 1, st.losses[i]);
    curve.validation = st.validation;
    const std::string svg = st.options.checkpoint_dir + "/loss_curve.svg";
    if (absl::Status s = runtime::WriteLossCurveSvg(svg, curve); !s.ok()) {
      StopAll(self, std::string(s.message()));
      return;
    }
    std::printf("loss curve: %s\n", svg.c_str());
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
              StopAll(self, absl::StrCat("rank ", rank, " did not finish: ", self->system().render(e)));
            });
  }
}

// Empty when `part` is rank `rank`'s valid answer to the order of step `step`.
std::string CheckPart(Self* self, int rank, int64_t step, const CheckpointPart& part) {
  const auto& st = self->state;
  if (!part.error.empty()) return part.error;
  if (part.rank != rank || part.step != step) {
    return absl::StrCat("answered as rank ", part.rank, " for step ", part.step);
  }
  const size_t n = part.files.size();
  if (part.stages.size() != n || part.bytes.size() != n || part.crc32.size() != n) {
    return "shard lists of different lengths";
  }
  std::vector<int> stages = part.stages;
  std::sort(stages.begin(), stages.end());
  if (stages != StagesOfRank(st.options.spec.num_stages, st.options.world_size, rank)) {
    return "shards of stages it does not hold";
  }
  for (size_t i = 0; i < n; ++i) {
    if (part.files[i] != absl::StrCat("stage_", part.stages[i], ".safetensors")) {
      return absl::StrCat("unexpected shard file name '", part.files[i], "'");
    }
  }
  return "";
}

void OnCheckpointPart(Self* self, int rank, int64_t step, CheckpointPart& part) {
  auto& st = self->state;
  if (st.stopping) return;
  if (std::string bad = CheckPart(self, rank, step, part); !bad.empty()) {
    StopAll(self, absl::StrCat("rank ", rank, " (", NodeOf(self), ") did not write its part of the checkpoint of step ",
                               step, ": ", bad));
    return;
  }
  st.parts[rank] = std::move(part);
  if (static_cast<int>(st.parts.size()) < st.options.world_size) return;
  std::vector<runtime::ShardRecord> records;
  for (const auto& [r, p] : st.parts) {
    for (size_t i = 0; i < p.files.size(); ++i) records.push_back({p.files[i], p.stages[i], p.bytes[i], p.crc32[i]});
  }
  runtime::CheckpointMeta meta = st.options.meta;
  meta.step = step;
  meta.run["history"]["train_loss"] = st.losses;
  nlohmann::json validation = nlohmann::json::array();
  for (const auto& [s, loss] : st.validation) validation.push_back({s, loss});
  meta.run["history"]["validation_loss"] = validation;
  absl::StatusOr<std::string> dir =
      runtime::CommitCheckpoint(st.options.checkpoint_dir, meta, records, st.options.keep_checkpoints);
  if (!dir.ok()) {
    StopAll(self, absl::StrCat("checkpoint of step ", step, ": ", dir.status().message()));
    return;
  }
  std::printf("checkpoint: step %lld in %s\n", static_cast<long long>(step), dir->c_str());
  std::fflush(stdout);
  std::function<void()> next = std::move(st.after_checkpoint);
  st.after_checkpoint = nullptr;
  next();
}

// Asks every rank for its shards of step `step`, commits, then runs `next`.
void Checkpoint(Self* self, int64_t step, std::function<void()> next) {
  auto& st = self->state;
  absl::StatusOr<std::string> tmp = runtime::BeginCheckpoint(st.options.checkpoint_dir, step);
  if (!tmp.ok()) {
    StopAll(self, absl::StrCat("checkpoint of step ", step, ": ", tmp.status().message()));
    return;
  }
  st.parts.clear();
  st.after_checkpoint = std::move(next);
  for (const auto& [rank, join] : st.joined) {
    self->request(join.worker, std::chrono::seconds(600), CheckpointOrder{step, *tmp})
        .then([=](CheckpointPart& part) { OnCheckpointPart(self, rank, step, part); },
              [=](caf::error& e) {
                StopAll(self, absl::StrCat("rank ", rank, " did not write its part of the checkpoint of step ",
                                           step, ": ", self->system().render(e)));
              });
  }
}

bool CheckpointDue(const CoordinatorState& st, int64_t step) {
  if (st.options.checkpoint_dir.empty()) return false;
  return step == st.last_step || (st.options.checkpoint_every > 0 && step % st.options.checkpoint_every == 0);
}

bool EvalDue(const CoordinatorState& st, int64_t step) {
  if (st.options.eval_batches <= 0) return false;
  return step == st.options.steps || (st.options.eval_every > 0 && step % st.options.eval_every == 0);
}

// Orders every rank to run its part of the held-out pass after step `step` (0: before
// training); the answers go to OnEvalResult, which then runs `next`.
void Evaluate(Self* self, int64_t step, std::function<void()> next) {
  auto& st = self->state;
  if (st.stopping) return;
  st.eval_step = step;
  st.eval_results.clear();
  st.after_eval = std::move(next);
  for (const auto& [rank, join] : st.joined) self->send(join.worker, EvalOrder{step, st.options.eval_batches});
  self->delayed_send(self, std::chrono::milliseconds(static_cast<int64_t>(st.options.hang_timeout_s * 1e3)),
                     eval_hang_atom::value, step);
}

void OnEvalResult(Self* self, EvalResult& r) {
  auto& st = self->state;
  if (st.stopping) return;
  if (!FromRank(self, r.rank)) {
    StopAll(self, absl::StrCat("refused a held-out result for rank ", r.rank, " from ", NodeOf(self),
                               ": not that rank's worker"));
    return;
  }
  if (!st.after_eval || r.step != st.eval_step || st.eval_results.count(r.rank) > 0) {
    StopAll(self, absl::StrCat("rank ", r.rank, " sent a held-out result for step ", r.step,
                               " that was not asked for (evaluation running: ",
                               st.after_eval ? absl::StrCat("after step ", st.eval_step) : std::string("none"), ")"));
    return;
  }
  if (!r.error.empty()) {
    StopAll(self, absl::StrCat("held-out evaluation after step ", r.step, " failed on rank ", r.rank, ": ", r.error));
    return;
  }
  const int last_rank = st.stage_rank.at(st.options.spec.chunk_to_stage.back());
  if (r.has_loss != (r.rank == last_rank)) {
    StopAll(self, absl::StrCat("rank ", r.rank, " sent a held-out result ", r.has_loss ? "with" : "without",
                               " a loss; only rank ", last_rank, ", which holds the last chunk, has one"));
    return;
  }
  st.eval_results[r.rank] = r;
  if (static_cast<int>(st.eval_results.size()) < st.options.world_size) return;
  const double loss = st.eval_results.at(last_rank).loss;
  st.validation.emplace_back(r.step, loss);
  if (r.step == 0) {
    std::printf("held-out loss before training %.4f bits %a\n", loss, loss);
  } else {
    std::printf("step %lld held-out loss %.4f bits %a\n", static_cast<long long>(r.step), loss, loss);
  }
  std::fflush(stdout);
  std::function<void()> next = std::move(st.after_eval);
  st.after_eval = nullptr;
  st.eval_step = -1;
  next();
}

void OnEvalHang(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping || !st.after_eval || st.eval_step != step) return;
  std::string report = absl::StrFormat("held-out evaluation after step %d did not finish within --hang_timeout=%gs:",
                                       step, st.options.hang_timeout_s);
  for (int rank = 0; rank < st.options.world_size; ++rank) {
    if (st.eval_results.count(rank) > 0) continue;
    absl::StrAppend(&report, "\n  rank ", rank, " has not answered (last action: ", LastAction(self, rank), ")");
  }
  StopAll(self, report);
}

void RunStep(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  st.step = step;
  st.running = true;
  self->delayed_send(self, std::chrono::milliseconds(static_cast<int64_t>(st.options.hang_timeout_s * 1e3)),
                     hang_atom::value, step);
  if (st.options.trace) st.options.trace->StepBegan(step, runtime::trace::NowNanos());
  self->request(st.driver, caf::infinite, step_atom::value, step)
      .then([=](StepOutcome& out) {
        auto& st = self->state;
        if (st.stopping) return;
        st.running = false;
        if (st.options.trace && out.error.empty()) st.options.trace->StepEnded(step, runtime::trace::NowNanos());
        if (!out.error.empty()) {
          StopAll(self, absl::StrCat("step ", step, " failed: ", out.error));
          return;
        }
        st.losses.resize(step - 1);
        st.losses.push_back(out.loss);
        if (step % st.options.log_every == 0 || step == st.last_step) {
          std::printf("step %lld loss %.6f grad_norm %.6f bits %a\n", static_cast<long long>(step),
                      out.loss, out.grad_norm, out.loss);
          std::fflush(stdout);
        }
        auto next = [=] {
          if (step < self->state.last_step) {
            RunStep(self, step + 1);
          } else {
            Finish(self);
          }
        };
        auto checkpoint_then_next = [=] {
          if (CheckpointDue(self->state, step)) {
            Checkpoint(self, step, next);
          } else {
            next();
          }
        };
        if (EvalDue(st, step)) {
          Evaluate(self, step, checkpoint_then_next);  // the checkpoint records its loss
        } else {
          checkpoint_then_next();
        }
      },
      [=](caf::error& e) { StopAll(self, absl::StrCat("step ", step, ": ", self->system().render(e))); });
}

void OnHangCheck(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  if (step > 0) {
    if (!st.running || step != st.step) return;
    st.reports.clear();
    for (const caf::actor& gate : st.stage_gates) self->send(gate, probe_atom::value, kHangProbeWave);
    self->delayed_send(self, std::chrono::seconds(2), hang_atom::value, -step);
    return;
  }
  std::string report = absl::StrFormat(
      "step %d did not finish within --hang_timeout=%gs; per rank, what each stage waits for:",
      -step, st.options.hang_timeout_s);
  std::map<int, std::map<int, std::vector<std::string>>> by_rank;  // rank -> stage -> lines
  for (const StageReport& r : st.reports) {
    const int rank = st.stage_rank.at(r.stage);
    by_rank[rank][r.stage].push_back(r.rank < 0 ? r.text : "transfers: " + r.text);
  }
  for (int rank = 0; rank < st.options.world_size; ++rank) {
    absl::StrAppend(&report, "\n  rank ", rank, " (last action: ", LastAction(self, rank), ")");
    for (int s = 0; s < st.options.spec.num_stages; ++s) {
      if (st.stage_rank[s] != rank) continue;
      auto it = by_rank[rank].find(s);
      if (it == by_rank[rank].end()) {
        absl::StrAppend(&report, "\n    stage ", s, ": no answer to the probe");
        continue;
      }
      for (const std::string& line : it->second) absl::StrAppend(&report, "\n    stage ", s, ": ", line);
    }
  }
  StopAll(self, report);
}

void OnJoin(Self* self, JoinRequest& req, JoinReply& reply) {
  auto& st = self->state;
  const std::string who = absl::StrCat("node ", NodeOf(self), " (host ", req.host, ", pid ",
                                       req.pid, ", claims rank ", req.rank, ")");
  if (req.token != st.options.token) {
    reply.reason = "wrong join token";
  } else if (req.world_size != st.options.world_size) {
    reply.reason = absl::StrCat("world size ", req.world_size, " != ", st.options.world_size);
  } else if (req.rank < 0 || req.rank >= st.options.world_size) {
    reply.reason = absl::StrCat("rank ", req.rank, " out of range");
  } else if (st.joined.count(req.rank) > 0) {
    reply.reason = absl::StrCat("rank ", req.rank, " already joined");
  } else if (req.config != st.options.config) {
    reply.reason = absl::StrCat("configuration differs from rank 0's: '", req.config, "' vs '",
                                st.options.config, "'");
  } else if (req.start_step + 1 != st.options.first_step) {
    reply.reason = absl::StrCat("it resumes after step ", req.start_step, ", rank 0 after step ",
                                st.options.first_step - 1, " (different checkpoints?)");
  } else if (st.stopping || st.ready.size() == static_cast<size_t>(st.options.world_size)) {
    reply.reason = "the cluster is no longer admitting workers";
  }
  if (!reply.reason.empty()) {
    std::fprintf(stderr, "cluster: rejected a join from %s: %s\n", who.c_str(), reply.reason.c_str());
    std::fflush(stderr);
    return;
  }
  reply.accepted = true;
  reply.driver = st.driver_gate;
  st.joined[req.rank] = req;
  st.last_heartbeat[req.rank] = std::chrono::steady_clock::now();
  self->monitor(req.worker);
}

void OnRegistration(Self* self, Registration& reg) {
  auto& st = self->state;
  const int P = st.options.spec.num_stages, N = st.options.world_size;
  std::vector<int> expected = StagesOfRank(P, N, reg.rank);
  if (!FromRank(self, reg.rank) || reg.stages != expected ||
      reg.gates.size() != expected.size() || reg.comms.size() != expected.size()) {
    StopAll(self, absl::StrCat("bad registration from ", NodeOf(self), " for rank ", reg.rank));
    return;
  }
  st.registered[reg.rank] = reg;
  if (static_cast<int>(st.registered.size()) < N) return;
  PeerTable table;
  table.stage_rank.assign(P, -1);
  table.stage_comms.resize(P);
  st.stage_gates.assign(P, caf::actor{});
  for (const auto& [rank, r] : st.registered) {
    for (size_t i = 0; i < r.stages.size(); ++i) {
      table.stage_rank[r.stages[i]] = rank;
      table.stage_comms[r.stages[i]] = r.comms[i];
      st.stage_gates[r.stages[i]] = r.gates[i];
    }
  }
  for (int rank = 0; rank < N; ++rank) table.ucx_addresses.push_back(st.joined[rank].ucx_address);
  st.stage_rank = table.stage_rank;
  for (const auto& [rank, join] : st.joined) self->send(join.worker, table);
}

}  // namespace

caf::behavior Coordinator(Self* self, CoordinatorOptions options, caf::actor driver) {
  auto& st = self->state;
  st.options = std::move(options);
  st.driver = std::move(driver);
  st.last_step = st.options.stop_after > 0 && st.options.stop_after < st.options.steps ? st.options.stop_after
                                                                                       : st.options.steps;
  const nlohmann::json& history = st.options.meta.run.value("history", nlohmann::json::object());
  for (const nlohmann::json& loss : history.value("train_loss", nlohmann::json::array())) {
    if (loss.is_number() && static_cast<int64_t>(st.losses.size()) + 1 < st.options.first_step) {
      st.losses.push_back(loss.get<double>());
    }
  }
  for (const nlohmann::json& point : history.value("validation_loss", nlohmann::json::array())) {
    if (point.is_array() && point.size() == 2 && point[0].is_number_integer() && point[1].is_number() &&
        point[0].get<int64_t>() < st.options.first_step) {
      st.validation.emplace_back(point[0].get<int64_t>(), point[1].get<double>());
    }
  }
  st.driver_gate = self->spawn(DriverGate, DriverGateInit{st.options.spec, st.options.wte_floats, st.driver,
                                                          caf::actor_cast<caf::actor>(self)});
  self->set_down_handler([=](caf::down_msg& down) {
    auto& st = self->state;
    for (const auto& [rank, join] : st.joined) {
      if (join.worker.address() != down.source) continue;
      if (st.stopping || st.finished.count(rank) > 0) return;
      StopAll(self, absl::StrCat("rank ", rank, " (host ", join.host, ", pid ", join.pid,
                                 ") was lost: its connection closed during step ", st.step,
                                 "; its last action: ", LastAction(self, rank)));
      return;
    }
  });
  self->delayed_send(self, std::chrono::seconds(1), check_atom::value);
  return {
      [=](JoinRequest& req) -> JoinReply {
        JoinReply reply;
        OnJoin(self, req, reply);
        return reply;
      },
      [=](Registration& reg) { OnRegistration(self, reg); },
      [=](ready_atom, int rank) {
        auto& st = self->state;
        if (!FromRank(self, rank)) {
          StopAll(self, absl::StrCat("refused a ready message for rank ", rank, " from ", NodeOf(self),
                                     ": not that rank's worker"));
          return;
        }
        st.ready.insert(rank);
        if (static_cast<int>(st.ready.size()) < st.options.world_size) return;
        std::printf("cluster: %d workers joined and connected; running steps %lld..%lld\n",
                    st.options.world_size, static_cast<long long>(st.options.first_step),
                    static_cast<long long>(st.last_step));
        std::fflush(stdout);
        self->send(st.driver, st.stage_gates);
        if (st.options.first_step > st.last_step) {
          Finish(self);  // resumed from the run's last step: nothing left but saving
          return;
        }
        const int64_t first = st.options.first_step;
        if (first == 1 && st.options.eval_batches > 0) {
          Evaluate(self, 0, [=] { RunStep(self, first); });  // the held-out loss before training
        } else {
          RunStep(self, first);
        }
      },
      [=](const Heartbeat& beat) {
        auto& st = self->state;
        if (!FromRank(self, beat.rank)) {
          StopAll(self, absl::StrCat("refused a heartbeat for rank ", beat.rank, " from ", NodeOf(self),
                                     ": not that rank's worker"));
          return;
        }
        st.last_action[beat.rank] = beat.last_action;
        st.last_heartbeat[beat.rank] = std::chrono::steady_clock::now();
      },
      [=](check_atom) {
        auto& st = self->state;
        if (st.stopping) return;
        const auto now = std::chrono::steady_clock::now();
        if (st.after_checkpoint) {
          // Ranks writing shards send no heartbeats; a lost connection still shows at once.
          for (auto& [rank, when] : st.last_heartbeat) when = now;
        }
        for (const auto& [rank, when] : st.last_heartbeat) {
          double silent = std::chrono::duration<double>(now - when).count();
          if (silent > st.options.heartbeat_timeout_s && st.finished.count(rank) == 0) {
            StopAll(self, absl::StrFormat("rank %d sent no heartbeat for %.1f s; its last action: %s",
                                          rank, silent, LastAction(self, rank)));
            return;
          }
        }
        self->delayed_send(self, std::chrono::seconds(1), check_atom::value);
      },
      [=](hang_atom, int64_t step) { OnHangCheck(self, step); },
      [=](eval_hang_atom, int64_t step) { OnEvalHang(self, step); },
      [=](EvalResult& result) { OnEvalResult(self, result); },
      [=](StageReport& report) { self->state.reports.push_back(std::move(report)); },
      [=](const ClusterAbort& abort) { StopAll(self, abort.reason); },
      [=](caf::ok_atom) {},  // rank 0's answer to finish_atom
  };
}

}  // namespace stagehand::actors::cluster
