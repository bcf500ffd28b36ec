// Coordinator behaviour.
#include "actors/cluster/coordinator.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "actors/cluster/gates.h"
#include "actors/cluster/placement.h"

namespace stagehand::actors::cluster {
namespace {

using Self = caf::stateful_actor<CoordinatorState>;
using check_atom = caf::atom_constant<caf::atom("check")>;

std::string NodeOf(Self* self) {
  caf::strong_actor_ptr sender = self->current_sender();
  return sender ? caf::to_string(sender->node()) : std::string("an anonymous sender");
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

void RunStep(Self* self, int64_t step) {
  auto& st = self->state;
  if (st.stopping) return;
  st.step = step;
  st.running = true;
  self->delayed_send(self, std::chrono::milliseconds(static_cast<int64_t>(st.options.hang_timeout_s * 1e3)),
                     hang_atom::value, step);
  self->request(st.driver, caf::infinite, step_atom::value, step)
      .then([=](StepOutcome& out) {
        auto& st = self->state;
        if (st.stopping) return;
        st.running = false;
        if (!out.error.empty()) {
          StopAll(self, absl::StrCat("step ", step, " failed: ", out.error));
          return;
        }
        std::printf("step %lld loss %.6f grad_norm %.6f bits %a\n", static_cast<long long>(step),
                    out.loss, out.grad_norm, out.loss);
        std::fflush(stdout);
        if (step < st.options.steps) {
          RunStep(self, step + 1);
          return;
        }
        // Every other rank saves and says so before rank 0 (the coordinator's node) leaves.
        // Rank 0 leaves last; its leaving is not a loss.
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
  if (st.joined.count(reg.rank) == 0 || reg.stages != expected ||
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
  st.driver_gate = self->spawn(DriverGate, DriverGateInit{st.options.spec, st.driver,
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
        st.ready.insert(rank);
        if (static_cast<int>(st.ready.size()) < st.options.world_size) return;
        std::printf("cluster: %d workers joined and connected; running steps %lld..%lld\n",
                    st.options.world_size, static_cast<long long>(st.options.first_step),
                    static_cast<long long>(st.options.steps));
        std::fflush(stdout);
        self->send(st.driver, st.stage_gates);
        RunStep(self, st.options.first_step);
      },
      [=](const Heartbeat& beat) {
        auto& st = self->state;
        if (st.joined.count(beat.rank) == 0) return;
        st.last_action[beat.rank] = beat.last_action;
        st.last_heartbeat[beat.rank] = std::chrono::steady_clock::now();
      },
      [=](check_atom) {
        auto& st = self->state;
        if (st.stopping) return;
        const auto now = std::chrono::steady_clock::now();
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
      [=](StageReport& report) { self->state.reports.push_back(std::move(report)); },
      [=](const ClusterAbort& abort) { StopAll(self, abort.reason); },
      [=](caf::ok_atom) {},  // rank 0's answer to finish_atom
  };
}

}  // namespace stagehand::actors::cluster
