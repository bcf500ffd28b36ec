// ClusterComm behaviour.
#include "actors/cluster/cluster_comm.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/cluster/checks.h"
#include "actors/messages.h"
#include "runtime/action.h"

namespace stagehand::actors::cluster {
namespace {

using Self = cluster_comm_actor::stateful_base<ClusterCommState>;
using runtime::ActionKind;

void Abort(Self* self, const std::string& why) {
  const auto& in = self->state.init;
  self->send(in.supervisor,
             ClusterAbort{absl::StrCat("rank ", in.rank, " stage ", in.stage, ": ", why)});
}

std::string Describe(const TransferNotice& n) {
  const bool forward = n.kind == ActionKind::kForward;
  return absl::StrCat(forward ? "activation" : "gradient", " c", n.chunk, " mb", n.microbatch, " s",
                      n.from_stage, "->s", n.to_stage, " (from rank ", n.from_rank, ", ",
                      n.floats * 4, " bytes, tag ", n.tag, ", step ", n.step, ")");
}

// Empty when `n` is a notice this stage may act on; otherwise what is wrong with it.
std::string Check(Self* self, const TransferNotice& n, bool check_sender) {
  const auto& st = self->state;
  if (std::string bad =
          CheckNoticeFields(n, NoticeRules{st.init.spec, st.init.stage, st.init.tensor_floats,
                                           st.peers.stage_rank, st.init.row_floats});
      !bad.empty()) {
    return bad;
  }
  // Compared by (node, id): a remote actor may be seen through more than one proxy object.
  const caf::strong_actor_ptr sender = self->current_sender();
  const cluster_comm_actor& comm = st.peers.stage_comms[n.from_stage];
  if (check_sender && (sender == nullptr || comm == nullptr || sender->id() != comm.id() ||
                       sender->node() != comm.node())) {
    return absl::StrCat("the sender is not the comm actor of stage ", n.from_stage);
  }
  if (st.receiving.count(n.tag) > 0)
    return absl::StrCat("tag ", n.tag, " is already being received");
  return "";
}

// `noticed_ns`: when the notice arrived here, i.e. when this rank learnt that the producer had
// finished the tensor (the transfers-exposed timer's "in flight since", on this rank's clock).
void PostReceive(Self* self, const TransferNotice& n, int64_t noticed_ns) {
  auto& st = self->state;
  if (++st.notices == st.init.drop_notice) {
    st.receiving[n.tag] = Describe(n) + " [receive withheld by the test hook]";
    return;
  }
  st.receiving[n.tag] = Describe(n);
  // A recycled buffer (no allocation, no zero-fill): UCX writes the tensor straight into
  // it and it travels on to the stage actor without a copy.
  auto buffer =
      std::make_shared<std::vector<float>>(st.init.pool->Take(static_cast<size_t>(n.floats)));
  cluster_comm_actor me = caf::actor_cast<cluster_comm_actor>(self);
  st.init.transport->Receive(
      n.tag, buffer->data(), buffer->size() * sizeof(float),
      [me, n, buffer, noticed_ns](absl::Status s) {
        caf::anon_send(me, received_atom::value, n.tag, std::string(s.message()), s.ok(),
                       TensorMessage{n.kind, n.from_stage, n.to_stage, n.chunk, n.microbatch, false,
                                     std::move(*buffer), noticed_ns});
      });
}

// `replay`: a notice kept from before this step's start (its sender was checked then).
// `noticed_ns`: when it arrived (a replayed one: when it first arrived).
void OnNotice(Self* self, const TransferNotice& n, bool replay, int64_t noticed_ns) {
  auto& st = self->state;
  if (std::string bad = Check(self, n, !replay); !bad.empty()) {
    caf::strong_actor_ptr sender = self->current_sender();
    Abort(self, absl::StrCat("bad transfer notice from rank ", n.from_rank, " (",
                             sender ? caf::to_string(sender->node()) : std::string("anonymous"),
                             "): ", bad));
    return;
  }
  // The sender started the next step before our start arrived; before our first start (step
  // 0), the next step is whichever the run begins or resumes at, checked on replay.
  if (n.step == st.step + 1 || st.step == 0) {
    st.early.push_back(n);
    st.early_noticed_ns.push_back(runtime::trace::NowNanos());
    return;
  }
  if (n.step != st.step) {
    Abort(self, absl::StrCat("transfer notice for step ", n.step, " during step ", st.step, ": ",
                             Describe(n)));
    return;
  }
  PostReceive(self, n, noticed_ns);
}

void OnOutgoing(Self* self, TensorMessage& msg) {
  auto& st = self->state;
  const int P = st.init.spec.num_stages;
  if (msg.to_stage < 0 || msg.to_stage >= P) {
    Abort(self, absl::StrCat("tensor for stage ", msg.to_stage, " out of range"));
    return;
  }
  const ActionKind kind =
      msg.kind == ActionKind::kForward ? ActionKind::kSendForward : ActionKind::kSendBackward;
  const int64_t bytes = static_cast<int64_t>(msg.payload.size() * sizeof(float));
  if (msg.to_stage < static_cast<int>(st.local_stages.size()) && st.local_stages[msg.to_stage]) {
    const int64_t now = runtime::trace::NowNanos();
    msg.handed_off_ns = now;
    if (st.init.trace) {
      st.init.trace->RecordInStep(st.step, kind, msg.to_stage, msg.chunk, msg.microbatch, bytes,
                                  now, now);
    }
    self->send(st.local_stages[msg.to_stage], std::move(msg));
    return;
  }
  TransferNotice n{st.step,
                   st.init.rank,
                   (uint64_t(st.init.stage) << 40) | st.next_sequence++,
                   static_cast<int64_t>(msg.payload.size()),
                   msg.kind,
                   msg.from_stage,
                   msg.to_stage,
                   msg.chunk,
                   msg.microbatch};
  const int peer = st.peers.stage_rank.at(msg.to_stage);
  st.sending[n.tag] = Describe(n);
  if (st.init.trace) {
    st.traced[n.tag] = TracedSend{
        st.step, kind, msg.to_stage, msg.chunk, msg.microbatch, bytes, runtime::trace::NowNanos()};
  }
  auto payload = std::make_shared<std::vector<float>>(std::move(msg.payload));
  cluster_comm_actor me = caf::actor_cast<cluster_comm_actor>(self);
  st.init.transport->Send(peer, n.tag, payload->data(), payload->size() * sizeof(float),
                          [me, tag = n.tag, payload, pool = st.init.pool](absl::Status s) {
                            // UCX reports the send complete now (this is its progress thread).
                            const int64_t done_ns = runtime::trace::NowNanos();
                            pool->Give(std::move(*payload));  // the next receive's buffer
                            caf::anon_send(me, sent_atom::value, tag, std::string(s.message()),
                                           s.ok(), done_ns);
                          });
  self->send(st.peers.stage_comms.at(msg.to_stage), n);
}

// UCX messages no receive matches (a process without the launch's secret, or an unknown
// transfer) are dropped, each logged, and cost at most two steps' worth of this run's tensors
// (runtime/transport/ucx_transport.h). A member's payload that arrives before its notice is
// posted is held and still delivered. Every comm of the rank sets the same limits.
void LimitUnmatchedMessages(const ClusterCommInit& in) {
  if (in.transport == nullptr || in.tensor_floats <= 0) return;
  runtime::UnexpectedMessageLimits limits;
  limits.max_message_bytes = static_cast<size_t>(in.tensor_floats) * sizeof(float);
  limits.max_held_bytes = limits.max_message_bytes * 2 * 2 *
                          static_cast<size_t>(std::max(1, in.spec.num_microbatches)) *
                          static_cast<size_t>(std::max(1, in.spec.num_chunks));
  limits.on_drop = [rank = in.rank](const std::string& line) {
    std::fprintf(stderr, "rank %d: %s\n", rank, line.c_str());
  };
  in.transport->SetUnexpectedMessageLimits(std::move(limits));
}

}  // namespace

cluster_comm_actor::behavior_type ClusterComm(Self* self, ClusterCommInit init) {
  self->state.init = std::move(init);
  LimitUnmatchedMessages(self->state.init);
  return {
      [=](const std::vector<stage_actor>& local_stages) {
        self->state.local_stages = local_stages;
      },
      [=](const PeerTable& peers) { self->state.peers = peers; },
      [=](start_atom, int64_t step) {
        auto& st = self->state;
        st.step = step;
        std::vector<TransferNotice> early = std::move(st.early);
        std::vector<int64_t> noticed = std::move(st.early_noticed_ns);
        st.early.clear();
        st.early_noticed_ns.clear();
        for (size_t i = 0; i < early.size(); ++i) OnNotice(self, early[i], true, noticed[i]);
      },
      [=](TensorMessage& msg) { OnOutgoing(self, msg); },
      [=](const TransferNotice& n) { OnNotice(self, n, false, runtime::trace::NowNanos()); },
      [=](sent_atom, uint64_t tag, const std::string& error, bool ok, int64_t done_ns) {
        auto& st = self->state;
        if (!ok) Abort(self, absl::StrCat("UCX send of ", st.sending[tag], " failed: ", error));
        st.sending.erase(tag);
        if (auto it = st.traced.find(tag); it != st.traced.end()) {
          // Tagged with the step it was sent in: the completion may be handled after this
          // rank's step ended.
          const TracedSend& t = it->second;
          if (ok) {
            st.init.trace->RecordInStep(t.step, t.kind, t.to_stage, t.chunk, t.microbatch, t.bytes,
                                        t.begin_ns, done_ns);
          }
          st.traced.erase(it);
        }
        if (st.sending.empty()) {
          for (auto& waiter : st.drain_waiters) waiter.deliver(caf::ok_atom::value);
          st.drain_waiters.clear();
        }
      },
      [=](drained_atom) -> caf::result<caf::ok_atom> {
        auto& st = self->state;
        if (st.sending.empty()) return caf::ok_atom::value;
        st.drain_waiters.push_back(self->make_response_promise<caf::ok_atom>());
        return st.drain_waiters.back();
      },
      [=](received_atom, uint64_t tag, const std::string& error, bool ok, TensorMessage& msg) {
        auto& st = self->state;
        if (!ok) {
          Abort(self, absl::StrCat("UCX receive of ", st.receiving[tag], " failed: ", error));
          return;
        }
        st.receiving.erase(tag);
        self->send(st.local_stages.at(st.init.stage), std::move(msg));
      },
      [=](pending_atom) -> std::string {
        auto& st = self->state;
        std::vector<std::string> lines;
        for (const auto& [tag, what] : st.receiving) lines.push_back("receiving " + what);
        for (const auto& [tag, what] : st.sending) lines.push_back("sending " + what);
        if (lines.empty()) return "no transfers in flight";
        return absl::StrJoin(lines, "; ");
      },
  };
}

}  // namespace stagehand::actors::cluster
