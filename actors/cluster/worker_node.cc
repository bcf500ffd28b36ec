// WorkerNode: building a worker's share of the pipeline and living through the run.
#include "actors/cluster/worker_node.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/cluster/cluster_comm.h"
#include "actors/cluster/cluster_messages.h"
#include "actors/cluster/coordinator.h"
#include "actors/cluster/gates.h"
#include "actors/cluster/placement.h"
#include "actors/cluster/trace_steps.h"
#include "actors/lane.h"
#include "actors/stage_actor.h"
#include "actors/step_driver.h"
#include "caf/io/all.hpp"
#include "models/gpt_chunk.h"
#include "runtime/data/text_corpus.h"
#include "runtime/io/safetensors.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/held_out_pass.h"
#include "runtime/transport/ucx_transport.h"

namespace stagehand::actors::cluster {
namespace {

// What this worker's lanes are doing, for heartbeats and the death report.
class ActionLog {
 public:
  void Set(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    last_ = std::move(what);
  }
  std::string Get() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::string last_;
};

// A StageWork that records each action it starts in an ActionLog, then runs it.
class RecordingStageWork : public runtime::StageWork {
 public:
  RecordingStageWork(std::unique_ptr<runtime::StageWork> inner, int stage, ActionLog* log,
                     int64_t kill_at_step)
      : inner_(std::move(inner)), stage_(stage), log_(log), kill_at_step_(kill_at_step) {}
  void BeginStep(int64_t step) override {
    step_ = step;
    Note("begin step", -1, -1);
    inner_->BeginStep(step);
  }
  absl::Status Forward(int c, int mb, const runtime::Payload* in, runtime::Payload* out,
                       double* loss) override {
    Note("F", c, mb);
    if (step_ == kill_at_step_ && mb == 1) {  // the restart test's fault: mid-step, no goodbye
      std::fflush(stdout);
      raise(SIGKILL);
    }
    return inner_->Forward(c, mb, in, out, loss);
  }
  absl::Status BackwardInput(int c, int mb, const runtime::Payload* g, runtime::Payload* out) override {
    Note("I", c, mb);
    return inner_->BackwardInput(c, mb, g, out);
  }
  absl::Status BackwardWeights(int c, int mb) override {
    Note("W", c, mb);
    return inner_->BackwardWeights(c, mb);
  }
  absl::Status Backward(int c, int mb, const runtime::Payload* g, runtime::Payload* out) override {
    Note("B", c, mb);
    return inner_->Backward(c, mb, g, out);
  }
  std::map<int, std::map<std::string, runtime::Payload>> TiedGradients() override {
    Note("tied-gradient gather", -1, -1);
    return inner_->TiedGradients();
  }
  void SetTiedGradients(const std::map<int, std::map<std::string, runtime::Payload>>& s) override {
    inner_->SetTiedGradients(s);
  }
  std::map<int, std::vector<double>> SquaredNorms() override {
    Note("gradient norms", -1, -1);
    return inner_->SquaredNorms();
  }
  void ApplyOptimizer(double scale, int step) override {
    Note("optimizer", -1, -1);
    inner_->ApplyOptimizer(scale, step);
  }

 private:
  void Note(const char* what, int c, int mb) {
    log_->Set(c < 0 ? absl::StrCat("s", stage_, " ", what, " (step ", step_, ")")
                    : absl::StrCat("s", stage_, " ", what, " c", c, " mb", mb, " (step ", step_, ")"));
  }
  std::unique_ptr<runtime::StageWork> inner_;
  int stage_;
  ActionLog* log_;
  int64_t kill_at_step_;
  int64_t step_ = 0;
};

// The pieces of a worker that must outlive RunWorker's stack frame until the process
// ends: actors refer to lanes, works and the transport. Deliberately never destroyed; the
// process exits right after RunWorker returns.
struct Node {
  std::unique_ptr<runtime::WindowSampler> sampler;
  std::unique_ptr<runtime::WindowSampler> held_out;  // as tools/launch draws held-out batches
  std::map<int, std::unique_ptr<runtime::Chunk>> chunks;  // global chunk index -> chunk
  std::vector<runtime::OptimizerState> optimizer_states;  // by global chunk index
  std::vector<runtime::ChunkState> chunk_states;          // this rank's, for checkpoints
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  std::vector<std::unique_ptr<Lane>> lanes;
  std::unique_ptr<runtime::UcxTransport> transport;
  std::unique_ptr<runtime::trace::TraceRecorder> trace;  // when tracing
  PayloadPool pool;
  std::unique_ptr<caf::actor_system_config> config;
  std::unique_ptr<caf::actor_system> system;
  ActionLog log;
};

absl::StatusOr<caf::actor> ConnectToCoordinator(caf::actor_system& sys, const WorkerOptions& o) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1e3));
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    caf::expected<caf::actor> a =
        sys.middleman().remote_actor(o.coordinator_host, static_cast<uint16_t>(o.coordinator_port));
    if (a) return *a;
    last = sys.render(a.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("could not reach the coordinator at ", o.coordinator_host,
                                             ":", o.coordinator_port, " within ", o.join_timeout_s,
                                             " s: ", last));
}

// This rank's shards of the checkpoint of `order.step`, written into `order.dir` (checked:
// it must be this run's temporary folder of that step).
CheckpointPart WriteCheckpointPart(const Node& node, const WorkerOptions& o, const CheckpointOrder& order) {
  CheckpointPart part;
  part.rank = o.rank;
  part.step = order.step;
  const std::string expected =
      absl::StrCat(o.checkpoint_dir, "/.", runtime::CheckpointDirName(order.step), ".tmp");
  if (o.checkpoint_dir.empty() || order.step < 1 || order.step > o.steps || order.dir != expected) {
    part.error = absl::StrCat("refused a checkpoint order for step ", order.step, " into '", order.dir,
                              "' (this rank writes checkpoints of steps 1..", o.steps, " under '",
                              o.checkpoint_dir, "')");
    return part;
  }
  absl::StatusOr<std::vector<runtime::ShardRecord>> shards = runtime::WriteCheckpointShards(order.dir, node.chunk_states);
  if (!shards.ok()) {
    part.error = std::string(shards.status().message());
    return part;
  }
  for (const runtime::ShardRecord& r : *shards) {
    part.files.push_back(r.file);
    part.stages.push_back(r.stage);
    part.bytes.push_back(r.bytes);
    part.crc32.push_back(r.crc32);
  }
  return part;
}

absl::Status SaveParameters(const Node& node, const WorkerOptions& o) {
  if (o.save_params.empty()) return absl::OkStatus();
  std::vector<runtime::Chunk*> held;
  for (const auto& [c, chunk] : node.chunks) held.push_back(chunk.get());
  return runtime::WriteSafetensors(RankFile(o.save_params, o.rank), runtime::CollectParameters(held));
}

// This rank's trace, once every local send has completed (its comm actors are the last
// writers: a send's completion may be handled after the last step ended).
absl::Status WriteTrace(const Node& node, const WorkerOptions& o, const std::vector<caf::actor>& comms,
                        caf::scoped_actor& self) {
  if (node.trace == nullptr) return absl::OkStatus();
  absl::Status status;
  for (const caf::actor& comm : comms) {
    self->request(comm, std::chrono::seconds(10), drained_atom::value)
        .receive([](caf::ok_atom) {},
                 [&](caf::error& e) {
                   status = absl::DeadlineExceededError(absl::StrCat(
                       "sends still in flight after the run, trace not written: ", self->system().render(e)));
                 });
    if (!status.ok()) return status;
  }
  const runtime::trace::Trace trace = node.trace->Collect();
  if (absl::Status s = runtime::trace::WriteChromeJsonFile(trace, o.trace); !s.ok()) return s;
  std::printf("rank %d: trace: %zu events written to %s\n", o.rank, trace.spans.size(), o.trace.c_str());
  return absl::OkStatus();
}

}  // namespace

std::string RankFile(const std::string& path, int rank) {
  const std::string ext = ".safetensors";
  if (absl::EndsWith(path, ext)) {
    return absl::StrCat(path.substr(0, path.size() - ext.size()), ".rank", rank, ext);
  }
  return absl::StrCat(path, ".rank", rank);
}

absl::Status RunWorker(const WorkerOptions& o) {
  const std::string me = absl::StrCat("rank ", o.rank);
  // 1. The step and this rank's stages and chunks.
  if (o.planner == nullptr || o.dataset == nullptr) {
    return absl::InvalidArgumentError("RunWorker needs a planner and a dataset");
  }
  const runtime::PlannerDefinition* planner = o.planner;
  absl::StatusOr<runtime::StepSpec> spec_or = planner->MakeSpec(o.planner_options);
  if (!spec_or.ok()) return spec_or.status();
  const runtime::StepSpec spec = *spec_or;
  const int P = spec.num_stages;
  if (o.world_size < 1 || o.world_size > P || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", o.rank, " of ", o.world_size,
                                                   " workers for ", P, " stages: need 1 <= workers <= stages"));
  }
  const std::vector<int> stages = StagesOfRank(P, o.world_size, o.rank);
  auto* node = new Node();  // never freed: see Node
  node->sampler = std::make_unique<runtime::WindowSampler>(runtime::MakeSampler(
      o.dataset->train, o.chunk.micro_batch_size, o.chunk.seq_len, spec.num_microbatches, o.model.seed));
  node->held_out = std::make_unique<runtime::WindowSampler>(runtime::MakeHeldOutSampler(
      o.dataset->validation, o.chunk.micro_batch_size, o.chunk.seq_len, o.model.seed));
  models::ChunkOptions chunk_options = o.chunk;
  chunk_options.num_microbatches = spec.num_microbatches;
  absl::StatusOr<std::vector<models::ChunkSpec>> cuts =
      models::CutLayers(static_cast<int>(o.model.layers.size()), spec.num_chunks);
  if (!cuts.ok()) return cuts.status();
  for (int c = 0; c < spec.num_chunks; ++c) {
    if (spec.chunk_to_stage[c] < stages.front() || spec.chunk_to_stage[c] > stages.back()) continue;
    absl::StatusOr<std::unique_ptr<runtime::Chunk>> chunk =
        runtime::Chunk::Create(o.model, (*cuts)[c], chunk_options);
    if (!chunk.ok()) return chunk.status();
    node->chunks[c] = std::move(*chunk);
  }
  // AdamW moments where checkpoints find them; then the checkpoint to continue from.
  runtime::OptimizerConfig optimizer = o.optimizer;
  node->optimizer_states.resize(spec.num_chunks);
  optimizer.states = &node->optimizer_states;
  for (const auto& [c, chunk] : node->chunks) {
    node->chunk_states.push_back({chunk.get(), &node->optimizer_states[c], spec.chunk_to_stage[c]});
  }
  int64_t start_step = 0;
  if (!o.resume_dir.empty()) {
    absl::StatusOr<runtime::CheckpointInfo> info = runtime::VerifyCheckpoint(o.resume_dir);
    if (!info.ok()) return info.status();
    if (absl::Status s = runtime::RestoreCheckpointPart(*info, node->chunk_states, /*with_optimizer=*/true);
        !s.ok()) {
      return s;
    }
    start_step = info->meta.step;
    std::printf("%s: resumed from %s (step %lld)\n", me.c_str(), info->dir.c_str(),
                static_cast<long long>(start_step));
    std::fflush(stdout);
  }
  absl::StatusOr<std::unique_ptr<runtime::UcxTransport>> transport = runtime::UcxTransport::Create();
  if (!transport.ok()) return transport.status();
  node->transport = std::move(*transport);

  const int64_t wte_floats = int64_t{o.model.vocab_size} * o.model.d_model;

  // Tracing: a recorder for the whole step (P, C, M), of which this rank writes only its
  // stages' lanes; activation bytes are known for its own chunks only (the only ones its
  // memory counters count).
  runtime::trace::TraceRecorder* trace = nullptr;
  if (!o.trace.empty()) {
    node->trace = std::make_unique<runtime::trace::TraceRecorder>(me);
    trace = node->trace.get();
    if (absl::Status s = trace->Configure(P, spec.num_chunks, spec.num_microbatches); !s.ok()) return s;
    std::vector<int64_t> activation_bytes(spec.num_chunks, 0);
    for (const auto& [c, chunk] : node->chunks) {
      activation_bytes[c] = chunk->activation_floats_per_microbatch() * int64_t{sizeof(float)};
    }
    trace->SetActivationBytes(std::move(activation_bytes));
  }

  // 2. The actor system; rank 0 publishes the coordinator.
  node->config = std::make_unique<caf::actor_system_config>();
  ConfigureClusterSystem(*node->config);
  node->config->set("scheduler.max-threads", size_t{2});
  node->system = std::make_unique<caf::actor_system>(*node->config);
  caf::actor_system& sys = *node->system;
  if (o.rank == 0) {
    CoordinatorOptions co;
    co.token = o.token;
    co.world_size = o.world_size;
    co.config = o.config_text;
    co.spec = spec;
    co.wte_floats = wte_floats;
    co.first_step = start_step + 1;
    co.steps = o.steps;
    co.stop_after = o.stop_after;
    co.log_every = o.log_every;
    co.hang_timeout_s = o.hang_timeout_s;
    co.eval_batches = o.eval_batches;
    co.eval_every = o.eval_every;
    co.checkpoint_dir = o.checkpoint_dir;
    co.checkpoint_every = o.checkpoint_every;
    co.keep_checkpoints = o.keep_checkpoints;
    co.meta = o.checkpoint_meta;
    co.trace = trace;
    caf::actor driver = sys.spawn(StepDriver, spec, o.optimizer.grad_clip);
    caf::actor coordinator = sys.spawn(Coordinator, co, driver);
    caf::expected<uint16_t> port = sys.middleman().publish(
        coordinator, static_cast<uint16_t>(o.coordinator_port), o.bind.c_str(), true);
    if (!port) {
      return absl::UnavailableError(absl::StrCat("could not publish the coordinator on ", o.bind, ":",
                                                 o.coordinator_port, ": ", sys.render(port.error())));
    }
  }

  // 3. Join.
  absl::StatusOr<caf::actor> coordinator = ConnectToCoordinator(sys, o);
  if (!coordinator.ok()) return coordinator.status();
  caf::scoped_actor self{sys};
  self->monitor(*coordinator);
  const caf::actor self_handle = caf::actor_cast<caf::actor>(self.ptr());
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  JoinRequest join{o.token, o.rank, o.world_size, o.config_text, host, static_cast<int64_t>(getpid()),
                   self_handle, node->transport->address(), start_step};
  JoinReply reply;
  absl::Status status;
  self->request(*coordinator, std::chrono::seconds(30), join)
      .receive([&](JoinReply& r) { reply = std::move(r); },
               [&](caf::error& e) { status = absl::UnavailableError(sys.render(e)); });
  if (!status.ok()) return status;
  if (!reply.accepted) {
    return absl::PermissionDeniedError(absl::StrCat("the coordinator rejected ", me, ": ", reply.reason));
  }

  // 4. This rank's stages: lane, work, comm, stage actor and gate each.
  const int64_t tensor_floats =
      int64_t{o.chunk.micro_batch_size} * o.chunk.seq_len * o.model.d_model;
  Registration reg{o.rank, stages, {}, {}};
  std::vector<caf::actor> local_stages(P);
  std::vector<caf::actor> comms;
  // Traced, rank > 0: the rank's step boundaries (trace_steps.h) stand between its stages
  // and the driver.
  caf::actor trace_steps;
  if (trace != nullptr && o.rank != 0) {
    trace_steps = sys.spawn(TraceSteps, TraceStepsInit{trace, static_cast<int>(stages.size()), reply.driver});
  }
  for (int s : stages) {
    std::map<int, runtime::Chunk*> held;
    for (const auto& [c, chunk] : node->chunks) {
      if (spec.chunk_to_stage[c] == s) held[c] = chunk.get();
    }
    node->works.push_back(std::make_unique<RecordingStageWork>(
        std::make_unique<runtime::ModelStageWork>(held, spec.num_chunks, node->sampler.get(),
                                                  spec.num_microbatches, optimizer),
        s, &node->log, o.kill_at_step));
    node->lanes.push_back(std::make_unique<Lane>(Lane::Mode::kThread));
    ClusterCommInit ci{o.rank, s, spec, tensor_floats, node->transport.get(), &node->pool, caf::actor{},
                       self_handle, o.withhold_receive};
    ci.trace = trace ? trace->send(s) : nullptr;
    StageActorInit si{s, spec, planner, node->lanes.back().get(), node->works.back().get(),
                      trace_steps ? trace_steps : reply.driver, caf::actor{}, trace};
    // The stage needs its comm and the comm its stage: the comm starts by waiting for the
    // stage's handle, then becomes a ClusterComm.
    caf::actor comm = sys.spawn([ci](caf::stateful_actor<ClusterCommState>* c) mutable {
      return caf::behavior{[=](caf::actor stage) mutable {
        ci.stage_actor = stage;
        c->become(ClusterComm(c, ci));
      }};
    });
    si.comm = comm;
    caf::actor stage = sys.spawn(StageActor, si);
    caf::anon_send(comm, stage);
    local_stages[s] = stage;
    comms.push_back(comm);
    caf::actor gate = sys.spawn(StageGate, StageGateInit{o.rank, s, spec, wte_floats, stage, comm, reply.driver,
                                                         self_handle, trace_steps});
    reg.gates.push_back(gate);
    reg.comms.push_back(comm);
  }
  for (const caf::actor& comm : comms) caf::anon_send(comm, local_stages);
  self->send(*coordinator, reg);

  // 5. The peer table; UCX endpoints to every other rank.
  PeerTable table;
  bool got_table = false;
  std::string abort_reason;
  self->receive(
      [&](PeerTable& t) {
        table = std::move(t);
        got_table = true;
      },
      [&](const ClusterAbort& a) { abort_reason = a.reason; },
      [&](caf::down_msg&) { abort_reason = "lost the coordinator before the peer table arrived"; },
      caf::after(std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1e3))) >>
          [&] { abort_reason = "no peer table from the coordinator"; });
  if (!got_table) return absl::AbortedError(absl::StrCat(me, ": ", abort_reason));
  if (static_cast<int>(table.ucx_addresses.size()) != o.world_size ||
      static_cast<int>(table.stage_rank.size()) != P || static_cast<int>(table.stage_comms.size()) != P) {
    return absl::DataLossError(absl::StrCat(me, ": malformed peer table from the coordinator"));
  }
  for (int r = 0; r < o.world_size; ++r) {
    if (r == o.rank) continue;
    if (absl::Status s = node->transport->Connect(r, table.ucx_addresses[r]); !s.ok()) return s;
  }
  for (const caf::actor& comm : comms) caf::anon_send(comm, table);

  // The held-out pass runs on a thread of its own between steps (the stages are idle then),
  // so that this loop keeps sending heartbeats and hears an abort; it hands its result
  // back to this loop, which answers the coordinator.
  runtime::HeldOutPassInit pass;
  pass.rank = o.rank;
  for (int c = 0; c < spec.num_chunks; ++c) pass.chunk_rank.push_back(table.stage_rank[spec.chunk_to_stage[c]]);
  for (const auto& [c, chunk] : node->chunks) pass.chunks[c] = chunk.get();
  pass.sampler = node->held_out.get();
  pass.transport = node->transport.get();
  pass.tensor_floats = tensor_floats;
  pass.note = [node](const std::string& what) { node->log.Set(what); };
  std::atomic<bool> stop_eval{false}, eval_finished{false};
  pass.stop = &stop_eval;
  std::thread eval_thread;
  int64_t eval_step = -1;  // the evaluation running on eval_thread, -1: none
  auto start_evaluation = [&](const EvalOrder& order) -> std::string {
    if (eval_step >= 0) return absl::StrCat("the evaluation after step ", eval_step, " is still running");
    if (order.step < 0 || order.step > o.steps || order.batches != o.eval_batches) {
      return absl::StrCat("refused an evaluation order for step ", order.step, " over ", order.batches,
                          " batches (this rank runs steps 0..", o.steps, " over ", o.eval_batches, ")");
    }
    if (eval_thread.joinable()) eval_thread.join();
    eval_step = order.step;
    eval_finished = false;
    eval_thread = std::thread([&, order] {
      absl::StatusOr<std::optional<double>> loss = runtime::RunHeldOutPass(pass, order.step, order.batches);
      EvalResult result{o.rank, order.step, "", false, 0.0};
      if (!loss.ok()) {
        result.error = std::string(loss.status().message());
      } else if (loss->has_value()) {
        result.has_loss = true;
        result.loss = **loss;
      }
      eval_finished = true;
      caf::anon_send(self_handle, eval_done_atom::value, result);
    });
    return "";
  };
  self->send(*coordinator, ready_atom::value, o.rank);

  // 6. Live: heartbeats until finish or abort.
  enum class End { kRunning, kFinished, kAborted } end = End::kRunning;
  auto next_beat = std::chrono::steady_clock::now();
  auto beat = [&] {
    if (std::chrono::steady_clock::now() < next_beat) return;
    self->send(*coordinator, Heartbeat{o.rank, node->log.Get()});
    next_beat = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  };
  while (end == End::kRunning) {
    beat();
    self->receive(
        [&](finish_atom) -> caf::ok_atom {
          if (absl::Status s = SaveParameters(*node, o); !s.ok()) {
            abort_reason = absl::StrCat(me, ": saving parameters failed: ", s.message());
            end = End::kAborted;
          } else {
            end = End::kFinished;
          }
          return caf::ok_atom::value;
        },
        [&](const CheckpointOrder& order) -> CheckpointPart {
          return WriteCheckpointPart(*node, o, order);
        },
        [&](const EvalOrder& order) {
          if (std::string refused = start_evaluation(order); !refused.empty()) {
            self->send(*coordinator, EvalResult{o.rank, order.step, refused, false, 0.0});
          }
        },
        [&](eval_done_atom, EvalResult& result) {
          if (!eval_finished || result.step != eval_step) return;  // not our thread's
          eval_thread.join();
          eval_step = -1;
          self->send(*coordinator, result);
        },
        [&](const ClusterAbort& a) {
          abort_reason = a.reason;
          end = End::kAborted;
          // A verdict of this rank's own actors: tell everyone, through the coordinator.
          if (self->current_sender() != coordinator->address()) self->send(*coordinator, a);
        },
        [&](caf::down_msg& down) {
          abort_reason = absl::StrCat(me, ": lost the coordinator (rank 0 at ", o.coordinator_host, ":",
                                      o.coordinator_port, "): ", sys.render(down.reason));
          end = End::kAborted;
        },
        caf::after(std::chrono::milliseconds(250)) >> [&] {});
  }
  stop_eval = true;  // a pass still waiting gives up; one still computing ends its batch
  if (eval_thread.joinable()) eval_thread.join();
  if (end == End::kFinished) {
    if (!o.save_params.empty()) std::printf("%s: saved parameters to %s\n", me.c_str(), RankFile(o.save_params, o.rank).c_str());
    absl::Status traced = WriteTrace(*node, o, comms, self);
    std::fflush(stdout);
    if (!traced.ok()) return absl::Status(traced.code(), absl::StrCat(me, ": ", traced.message()));
    // Ranks other than 0 stay until rank 0 leaves (it leaves once every rank has saved),
    // so that the coordinator never mistakes a finished rank for a lost one.
    if (o.rank != 0) {
      self->receive([&](caf::down_msg&) {}, caf::after(std::chrono::seconds(10)) >> [&] {});
    }
    return absl::OkStatus();
  }
  // Give the abort a moment to reach the coordinator and the other ranks.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return absl::AbortedError(abort_reason);
}

}  // namespace stagehand::actors::cluster
