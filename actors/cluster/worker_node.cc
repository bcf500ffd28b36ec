// WorkerNode: building a worker's share of the pipeline and living through the run.
#include "actors/cluster/worker_node.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
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
#include "actors/cluster/control_plane_store.h"
#include "actors/cluster/coordinator.h"
#include "actors/cluster/gates.h"
#include "actors/cluster/trace_steps.h"
#include "actors/lane.h"
#include "actors/pipeline.h"
#include "actors/stage_actor.h"
#include "actors/step_driver.h"
#include "caf/io/all.hpp"
#include "models/gpt_chunk.h"
#include "runtime/checkpoint/hf_llama.h"
#include "runtime/cluster/admission.h"
#include "runtime/cluster/auth_gate.h"
#include "runtime/cluster/placement.h"
#include "runtime/collectives/authenticated_store.h"
#include "runtime/collectives/collective_expert_exchange.h"
#include "runtime/collectives/gloo_collective.h"
#include "runtime/collectives/latency_collective.h"
#include "runtime/data/text_corpus.h"
#include "runtime/grid/rank_grid.h"
#include "runtime/io/safetensors.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/recorder.h"
#include "runtime/train/expert_gather.h"
#include "runtime/train/expert_layout.h"
#include "runtime/train/forwarding_stage_work.h"
#include "runtime/train/held_out_pass.h"
#include "runtime/train/stage_work.h"
#include "runtime/transport/net_device.h"
#include "runtime/transport/ucx_transport.h"
#include "runtime/util/status_macros.h"

#ifdef STAGEHAND_CUDA
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/device.h"
#include "runtime/collectives/nccl_collective.h"
#include "runtime/train/cuda_stage_work.h"
#endif

namespace stagehand::actors::cluster {
namespace {

// The floats of wte, which the embedding and a tied head share (the gates check tied
// gradients against it); 0 when the head has its own weight and nothing is tied.
int64_t TiedWteFloats(const models::GptConfig& model) {
  return model.tied_head ? int64_t{model.vocab_size} * model.d_model : 0;
}

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
class RecordingStageWork : public runtime::ForwardingStageWork {
 public:
  RecordingStageWork(std::unique_ptr<runtime::StageWork> inner, int stage, ActionLog* log,
                     int64_t kill_at_step)
      : ForwardingStageWork(std::move(inner)),
        stage_(stage),
        log_(log),
        kill_at_step_(kill_at_step) {}
  void BeginStep(int64_t step, int num_microbatches) override {
    step_ = step;
    Note("begin step", -1, -1);
    inner().BeginStep(step, num_microbatches);
  }
  absl::Status Forward(int c, int mb, const runtime::Payload* in, runtime::Payload* out,
                       double* loss) override {
    Note("F", c, mb);
    MaybeKill(mb);
    return inner().Forward(c, mb, in, out, loss);
  }
  absl::Status RunSubStep(const runtime::SubStepOrder& order, const runtime::Payload* input,
                          runtime::Payload* output, double* loss) override {
    const runtime::Action& a = order.step.action;
    if (order.index == 0) {  // the communication lane's sub-steps leave the log to compute
      Note(runtime::ActionKindName(a.kind), a.chunk, a.microbatch);
      if (a.kind == runtime::ActionKind::kForward) MaybeKill(a.microbatch);
    }
    return inner().RunSubStep(order, input, output, loss);
  }
  absl::Status BackwardInput(int c, int mb, const runtime::Payload* g,
                             runtime::Payload* out) override {
    Note("I", c, mb);
    return inner().BackwardInput(c, mb, g, out);
  }
  absl::Status BackwardWeights(int c, int mb) override {
    Note("W", c, mb);
    return inner().BackwardWeights(c, mb);
  }
  absl::Status Backward(int c, int mb, const runtime::Payload* g, runtime::Payload* out) override {
    Note("B", c, mb);
    return inner().Backward(c, mb, g, out);
  }
  runtime::TiedGradientMap TiedGradients() override {
    Note("tied-gradient gather", -1, -1);
    return inner().TiedGradients();
  }
  std::map<int, std::vector<double>> SquaredNorms() override {
    Note("gradient norms", -1, -1);
    return inner().SquaredNorms();
  }
  void ApplyOptimizer(double scale, int step) override {
    Note("optimizer", -1, -1);
    inner().ApplyOptimizer(scale, step);
  }
  // ReduceGradients runs on the reduction lane, beside compute: the log keeps the compute
  // lane's last action (the inner work's, through ForwardingStageWork).
  void DiscardGradients() override {
    Note("discard gradients", -1, -1);
    inner().DiscardGradients();
  }

 private:
  void MaybeKill(int mb) {
    if (step_ == kill_at_step_ && mb == 1) {  // the restart test's fault: mid-step, no goodbye
      std::fflush(stdout);
      raise(SIGKILL);
    }
  }
  void Note(absl::string_view what, int c, int mb) {
    log_->Set(
        c < 0 ? absl::StrCat("s", stage_, " ", what, " (step ", step_, ")")
              : absl::StrCat("s", stage_, " ", what, " c", c, " mb", mb, " (step ", step_, ")"));
  }
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
  std::unique_ptr<runtime::WindowSampler> held_out;       // as tools/launch draws held-out batches
  std::map<int, std::unique_ptr<runtime::Chunk>> chunks;  // global chunk index -> chunk
  std::vector<runtime::OptimizerState> optimizer_states;  // by global chunk index
  std::vector<runtime::ChunkState> chunk_states;          // this rank's, for checkpoints
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  std::vector<std::unique_ptr<Lane>> lanes;
  std::vector<std::unique_ptr<Lane>> sub_step_lanes;  // stages whose MoE actions run as sub-steps
  // --dp: this rank's replica and its stage's data-parallel group (Gloo), used by the stage's
  // reduction lane.
  int replica = 0;
  std::unique_ptr<runtime::Collective> dp_group;
  // --ep: this rank's seat, its stage's expert-parallel group (Gloo) and the exchange its
  // chunks use; the expert-data-parallel group (the ranks holding the same experts of the
  // stage; none when edp = 1) that sums the experts' gradients.
  runtime::ExpertSeat seat;
  std::unique_ptr<runtime::Collective> ep_group;
  std::unique_ptr<runtime::CollectiveExpertExchange> ep_exchange;
  std::unique_ptr<runtime::Collective> edp_group;
  // --ep: `chunks` hold this member's experts only; on replica 0's ranks these hold every
  // expert (and their AdamW moments), gathered over the ep group for what must see the whole
  // model: checkpoints and held-out passes.
  std::map<int, std::unique_ptr<runtime::Chunk>> whole_chunks;
  std::vector<runtime::OptimizerState> whole_states;  // by global chunk index
  std::vector<runtime::ChunkState> whole_chunk_states;
  std::vector<std::unique_ptr<Lane>> reduce_lanes;
  std::unique_ptr<runtime::UcxTransport> transport;
  std::unique_ptr<runtime::cluster::AuthGate> gate;         // rank 0: the public control port
  std::unique_ptr<runtime::cluster::AuthGate> client_gate;  // this rank's way to the gate
  uint16_t caf_port = 0;  // rank 0: CAF's loopback port, open while workers join
  std::unique_ptr<runtime::trace::TraceRecorder> trace;  // when tracing
  PayloadPool pool;
  std::unique_ptr<caf::actor_system_config> config;
  std::unique_ptr<caf::actor_system> system;
  ActionLog log;
  std::shared_ptr<const runtime::StepSpecs> specs;  // --rampup_batch_size's; null: one M
  // --device=cuda: this rank's GPU, its stages' works on it (by stage, taken by AddStageWork)
  // and, with --dp, its stage's NCCL group for the gradient buckets (the Gloo dp_group still
  // gathers the losses).
  int gpu = -1;
  std::map<int, std::unique_ptr<runtime::StageWork>> device_works;
#ifdef STAGEHAND_CUDA
  std::unique_ptr<runtime::NcclCollective> dp_device_group;
#endif
};

// The worker's handle as the coordinator and its own actors address it. The worker is the
// blocking actor of RunWorker's thread (CAF 0.17 has no typed blocking actor): its receive
// loops (ConnectPeers, Live) take exactly what worker_actor declares.
worker_actor WorkerHandle(caf::scoped_actor& self) {
  return caf::actor_cast<worker_actor>(self.ptr());
}

// Control-plane hooks. CAF's middleman listens on loopback only; rank 0's gate holds the public
// port and relays a connection to it only after the peer proved the join token
// (runtime/cluster/auth_gate.h), so no unauthenticated byte reaches CAF's parser. Every rank's
// CAF connects through its own client side on loopback, which proves the token to the gate.
void GateLog(const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }

absl::Status StartCoordinatorGate(const WorkerOptions& o, uint16_t caf_port, Node& node) {
  runtime::cluster::AuthGateOptions g;
  g.role = runtime::cluster::AuthGateOptions::Role::kGate;
  g.token = o.token;
  g.listen_host = o.bind;
  g.listen_port = o.coordinator_port;
  g.target_port = caf_port;
  g.log = GateLog;
  absl::StatusOr<std::unique_ptr<runtime::cluster::AuthGate>> gate =
      runtime::cluster::AuthGate::Start(g);
  if (!gate.ok()) {
    return absl::UnavailableError(
        absl::StrCat("could not open the coordinator's gate: ", gate.status().message()));
  }
  node.gate = std::move(*gate);
  std::fprintf(stderr,
               "control plane: gate on %s:%d checks the join token before CAF reads a byte; CAF's "
               "middleman listens on 127.0.0.1:%d only\n",
               o.bind.c_str(), node.gate->port(), static_cast<int>(caf_port));
  return absl::OkStatus();
}

// Once every rank has joined, no new control-plane connection is needed (a restart starts
// every worker again): rank 0 stops CAF's loopback listener, so that local processes can reach
// CAF only while the run is joining.
void CloseCafPort(caf::actor_system& sys, const coordinator_actor& coordinator, Node& node) {
  if (caf::expected<void> done = sys.middleman().unpublish(coordinator, node.caf_port); !done) {
    std::fprintf(stderr, "control plane: could not close CAF's port 127.0.0.1:%d: %s\n",
                 static_cast<int>(node.caf_port), sys.render(done.error()).c_str());
    return;
  }
  std::fprintf(stderr, "control plane: every rank joined; CAF's port 127.0.0.1:%d is closed\n",
               static_cast<int>(node.caf_port));
}

absl::StatusOr<int> StartClientGate(const WorkerOptions& o, Node& node) {
  runtime::cluster::AuthGateOptions g;
  g.role = runtime::cluster::AuthGateOptions::Role::kClient;
  g.token = o.token;
  g.target_host = o.coordinator_host;
  g.target_port = o.coordinator_port;
  g.single_use = true;
  g.log = GateLog;
  ASSIGN_OR_RETURN(node.client_gate, runtime::cluster::AuthGate::Start(g));
  return node.client_gate->port();
}

absl::StatusOr<coordinator_actor> ConnectToCoordinator(caf::actor_system& sys,
                                                       const WorkerOptions& o, Node& node) {
  ASSIGN_OR_RETURN(const int local_port, StartClientGate(o, node));
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1e3));
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    caf::expected<coordinator_actor> a = sys.middleman().remote_actor<coordinator_actor>(
        "127.0.0.1", static_cast<uint16_t>(local_port));
    if (a) return *a;
    last = sys.render(a.error());
    // A gate that refused our token (or is not a Stagehand gate) will refuse it again.
    if (absl::Status refused = node.client_gate->last_refusal();
        absl::IsPermissionDenied(refused) || absl::IsInvalidArgument(refused)) {
      return absl::Status(refused.code(), absl::StrCat("rank ", o.rank, ": ", refused.message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("could not reach the coordinator at ",
                                             o.coordinator_host, ":", o.coordinator_port,
                                             " within ", o.join_timeout_s, " s: ", last));
}

// --ep > 1: node.whole_chunks (with `moments`, node.whole_states too) from this rank's chunks and
// its ep group's other members'. A collective of the ep group, called by its members at the same
// point between steps; only by replica 0's group (edp index 0), the one whose whole chunks are
// read (the others return at once).
absl::Status GatherWholeChunks(Node& node, bool moments) {
  if (node.ep_group == nullptr || node.seat.edp != 0) return absl::OkStatus();
  for (const auto& [c, chunk] : node.chunks) {
    auto whole = node.whole_chunks.find(c);  // replica 0's ranks only: the others hand over
    runtime::Chunk* to = whole == node.whole_chunks.end() ? nullptr : whole->second.get();
    RETURN_IF_ERROR(runtime::GatherExperts(*node.ep_group, *chunk, &node.optimizer_states[c], to,
                                           to != nullptr ? &node.whole_states[c] : nullptr,
                                           moments));
  }
  return absl::OkStatus();
}

// This rank's shards of the checkpoint of `order.step`, written into `order.dir` (checked:
// it must be this run's temporary folder of that step).
CheckpointPart WriteCheckpointPart(Node& node, const WorkerOptions& o,
                                   const CheckpointOrder& order) {
  CheckpointPart part;
  part.rank = o.rank;
  part.step = order.step;
  const std::string expected =
      absl::StrCat(o.checkpoint_dir, "/.", runtime::CheckpointDirName(order.step), ".tmp");
  part.error = runtime::RefuseCheckpointOrder(order.step, order.dir, o.loop.steps, o.checkpoint_dir,
                                              expected);
  if (!part.error.empty()) return part;
  // --zero=1: every replica gathers its stages' full moments (a collective of each stage's
  // dp group: all replicas must take part; the step loop waits for the checkpoint, so the
  // reduction lanes are idle), replica 0 writes them, and every replica drops them after.
  for (const auto& work : node.works) {
    if (absl::Status s = work->ExportOptimizerState(); !s.ok()) {
      part.error = absl::StrCat("gathering the optimizer state: ", s.message());
      return part;
    }
  }
  // --ep: the whole experts and their moments, gathered by replica 0's ep group.
  if (absl::Status s = GatherWholeChunks(node, /*moments=*/true); !s.ok()) {
    part.error = absl::StrCat("gathering the experts: ", s.message());
    return part;
  }
  // Replicas hold the same weights and moments: replica 0's ranks write the shards.
  absl::StatusOr<std::vector<runtime::ShardRecord>> shards =
      node.replica == 0 ? runtime::WriteCheckpointShards(
                              order.dir, o.ep > 1 ? node.whole_chunk_states : node.chunk_states)
                        : std::vector<runtime::ShardRecord>{};
  for (const auto& work : node.works) work->ReleaseExportedOptimizerState();
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

// --save_params, and this rank's part of --export: its chunks' parameters by name (--ep: its
// member's experts; the ranks' files together hold every expert, as --export merges them).
absl::Status SaveParameters(const Node& node, const WorkerOptions& o) {
  std::vector<runtime::Chunk*> held;
  for (const auto& [c, chunk] : node.chunks) held.push_back(chunk.get());
  for (const std::string& path : {o.save_params, o.export_part}) {
    if (path.empty()) continue;
    RETURN_IF_ERROR(runtime::WriteSafetensors(runtime::RankFile(path, o.rank),
                                              runtime::CollectParameters(held)));
  }
  return absl::OkStatus();
}

// This rank's trace, once every local send has completed (its comm actors are the last
// writers: a send's completion may be handled after the last step ended).
absl::Status WriteTrace(const Node& node, const WorkerOptions& o,
                        const std::vector<cluster_comm_actor>& comms, caf::scoped_actor& self) {
  if (node.trace == nullptr) return absl::OkStatus();
  absl::Status status;
  for (const cluster_comm_actor& comm : comms) {
    self->request(comm, std::chrono::seconds(10), drained_atom::value)
        .receive([](caf::ok_atom) {},
                 [&](caf::error& e) {
                   status = absl::DeadlineExceededError(
                       absl::StrCat("sends still in flight after the run, trace not written: ",
                                    self->system().render(e)));
                 });
    if (!status.ok()) return status;
  }
  const runtime::trace::Trace trace = node.trace->Collect();
  if (absl::Status s = runtime::trace::WriteChromeJsonFile(trace, o.trace); !s.ok()) return s;
  std::printf("rank %d: trace: %zu events written to %s\n", o.rank, trace.spans.size(),
              o.trace.c_str());
  return absl::OkStatus();
}

// 1. This rank's samplers, chunks and optimizer states.
absl::Status BuildChunks(const WorkerOptions& o, const runtime::StepSpec& spec,
                         const std::vector<int>& stages, Node& node) {
  // --dp: a step draws dp x M microbatches, replica d the d-th M of them (as one process).
  node.sampler = std::make_unique<runtime::WindowSampler>(
      runtime::MakeSampler(o.dataset->train, o.chunk.micro_batch_size, o.chunk.seq_len,
                           spec.num_microbatches * o.dp, o.model.seed));
  node.sampler->SetSeqLenPolicy(o.seq_len_policy, o.microbatch_tokens);
  if (o.microbatches.has_value() && o.microbatches->ramping()) {  // as tools/launch
    node.sampler->SetFirstMicrobatches(
        o.microbatches->FirstMicrobatches(o.loop.steps, o.chunk.micro_batch_size));
  }
  node.held_out = std::make_unique<runtime::WindowSampler>(runtime::MakeHeldOutSampler(
      o.dataset->validation, o.chunk.micro_batch_size, o.chunk.seq_len, o.model.seed));
  models::ChunkOptions chunk_options = o.chunk;
  chunk_options.num_microbatches = spec.num_microbatches * o.dp;  // the loss is over dp x M
  ASSIGN_OR_RETURN(std::vector<models::ChunkSpec> cuts,
                   runtime::CutModel(o.model, spec.num_chunks, o.partition, o.chunk.seq_len));
  models::ChunkOptions shard_options =
      chunk_options;  // --ep: this member's experts, as one process
  if (o.ep > 1) {
    ASSIGN_OR_RETURN(node.seat, runtime::ExpertSeatOf(o.dp, o.ep, spec.num_stages, node.replica));
    shard_options.expert_shard = {node.seat.member, o.ep};
  }
  node.optimizer_states.resize(spec.num_chunks);
  node.whole_states.resize(spec.num_chunks);
  for (int c = 0; c < spec.num_chunks; ++c) {
    if (spec.chunk_to_stage[c] < stages.front() || spec.chunk_to_stage[c] > stages.back()) continue;
    ASSIGN_OR_RETURN(node.chunks[c], runtime::Chunk::Create(o.model, cuts[c], shard_options));
    // AdamW moments where checkpoints find them.
    node.chunk_states.push_back(
        {node.chunks[c].get(), &node.optimizer_states[c], spec.chunk_to_stage[c]});
    if (o.ep == 1 || node.replica != 0) continue;  // replica 0 evaluates and writes checkpoints
    ASSIGN_OR_RETURN(node.whole_chunks[c], runtime::Chunk::Create(o.model, cuts[c], chunk_options));
    node.whole_chunk_states.push_back(
        {node.whole_chunks[c].get(), &node.whole_states[c], spec.chunk_to_stage[c]});
  }
  return absl::OkStatus();
}

// Sets this rank's parameters from a Hugging Face file (GPT-2 or Llama names): the tensors of its
// chunks only (the other ranks load theirs).
absl::Status ImportOwnChunks(const std::string& path, const Node& node) {
  ASSIGN_OR_RETURN(auto hf, runtime::ReadSafetensors(path));
  ASSIGN_OR_RETURN(auto ours,
                   runtime::FromHf(std::move(hf), node.chunks.begin()->second->config()));
  std::vector<runtime::Chunk*> held;
  std::map<std::string, runtime::NamedTensor> wanted;
  for (const auto& [c, chunk] : node.chunks) {
    held.push_back(chunk.get());
    for (const models::ParamInfo& info : chunk->params().infos()) {
      auto it = ours.find(info.name);
      if (it != ours.end()) wanted[info.name] = it->second;
    }
  }
  if (absl::Status s = runtime::AssignParameters(held, wanted); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

// 2. The initial weights: the checkpoint to continue from, a Hugging Face file, or the
// seeded initialisation. Returns the restored step (0: none).
absl::StatusOr<int64_t> InitialWeights(const WorkerOptions& o, const std::string& me, Node& node) {
  if (o.resume_dir.empty()) {
    if (!o.init_from.empty()) {
      RETURN_IF_ERROR(ImportOwnChunks(o.init_from, node));
      std::printf("%s: initial weights from %s\n", me.c_str(), o.init_from.c_str());
      std::fflush(stdout);
    }
    return 0;
  }
  ASSIGN_OR_RETURN(runtime::CheckpointInfo info, runtime::VerifyCheckpoint(o.resume_dir));
  RETURN_IF_ERROR(runtime::RestoreCheckpointPart(info, node.chunk_states, /*with_optimizer=*/true));
  std::printf("%s: resumed from %s (step %lld)\n", me.c_str(), info.dir.c_str(),
              static_cast<long long>(info.meta.step));
  std::fflush(stdout);
  return info.meta.step;
}

// 3. Tracing: a recorder for the whole step (P, C, M), of which this rank writes only its
// stages' lanes; activation bytes are known for its own chunks only (the only ones its
// memory counters count). Null when not tracing.
absl::StatusOr<runtime::trace::TraceRecorder*> StartTrace(const WorkerOptions& o,
                                                          const std::string& me,
                                                          const runtime::StepSpec& spec,
                                                          Node& node) {
  if (o.trace.empty()) return nullptr;
  node.trace = std::make_unique<runtime::trace::TraceRecorder>(me);
  runtime::trace::TraceRecorder* trace = node.trace.get();
  RETURN_IF_ERROR(trace->Configure(spec.num_stages, spec.num_chunks, spec.num_microbatches));
  std::vector<int64_t> activation_bytes(spec.num_chunks, 0);
  for (const auto& [c, chunk] : node.chunks) {
    activation_bytes[c] = chunk->activation_floats_per_microbatch() * int64_t{sizeof(float)};
  }
  trace->SetActivationBytes(std::move(activation_bytes));
  return trace;
}

// 4. Rank 0: the step driver and the coordinator, published on loopback (the gate relays the
// other ranks to it); returns CAF's port.
absl::StatusOr<uint16_t> PublishCoordinator(const WorkerOptions& o, const runtime::StepSpec& spec,
                                            const runtime::ClusterLayout& layout,
                                            std::shared_ptr<const runtime::StepSpecs> specs,
                                            int64_t start_step,
                                            runtime::trace::TraceRecorder* trace,
                                            caf::actor_system& sys) {
  CoordinatorOptions co;
  co.token = o.token;
  co.world_size = o.world_size;
  co.dp = o.dp;
  co.config = o.config_text;
  co.spec = spec;
  co.specs = std::move(specs);
  co.micro_batch_size = o.chunk.micro_batch_size;
  co.wte_floats = TiedWteFloats(o.model);
  co.loop = o.loop;
  co.resumed_step = start_step;
  co.hang_timeout_s = o.hang_timeout_s;
  co.eval_batches = o.eval_batches;
  co.checkpoint_dir = o.checkpoint_dir;
  co.keep_checkpoints = o.keep_checkpoints;
  co.meta = o.checkpoint_meta;
  co.trace = trace;
  co.log_timers = o.log_timers;
  std::vector<step_driver_actor> drivers;  // one per replica, as in one process
  for (int d = 0; d < o.dp; ++d) {
    drivers.push_back(
        sys.spawn(StepDriver, spec, o.optimizer.grad_clip, o.rerun, layout.StageRanks(d)));
  }
  coordinator_actor coordinator = sys.spawn(Coordinator, co, std::move(drivers));
  caf::expected<uint16_t> port = sys.middleman().publish(coordinator, 0, "127.0.0.1", true);
  if (!port) {
    return absl::UnavailableError(
        absl::StrCat("could not publish the coordinator on 127.0.0.1: ", sys.render(port.error())));
  }
  return *port;
}

// 5. Join with the launch's token; the reply names the driver's gate.
absl::StatusOr<JoinReply> Join(const WorkerOptions& o, const std::string& me, int64_t start_step,
                               const coordinator_actor& coordinator, Node& node,
                               caf::scoped_actor& self) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  JoinRequest join{o.token,
                   o.rank,
                   o.world_size,
                   o.config_text,
                   host,
                   static_cast<int64_t>(getpid()),
                   WorkerHandle(self),
                   node.transport->address(),
                   start_step};
  JoinReply reply;
  absl::Status status;
  self->request(coordinator, std::chrono::seconds(30), join)
      .receive([&](JoinReply& r) { reply = std::move(r); },
               [&](caf::error& e) { status = absl::UnavailableError(self->system().render(e)); });
  RETURN_IF_ERROR(status);
  if (!reply.accepted) {
    return absl::PermissionDeniedError(
        absl::StrCat("the coordinator rejected ", me, ": ", reply.reason));
  }
  return reply;
}

// What SpawnStages built: the registration for the coordinator and this rank's comms.
struct LocalStages {
  Registration reg;
  std::vector<cluster_comm_actor> comms;
};

// Variable lengths: a transfer is T_m tokens of B x C floats, its notice carrying its size
// (ClusterCommInit::row_floats); 0 under fixed lengths.
int64_t TransferRowFloats(const WorkerOptions& o, const Node& node) {
  if (!node.sampler->variable_lengths()) return 0;
  return int64_t{o.chunk.micro_batch_size} * o.model.d_model;
}

// 6. This rank's stages: lane, work, comm, stage actor and gate each.
// Stage `s`'s work on this rank (its chunks, with the one-process data- and expert-parallel
// placement) and its lanes, appended to node.works, node.lanes and (--dp: REDUCE_GRAD of the
// stage's buckets runs there) node.reduce_lanes.
void AddStageWork(const WorkerOptions& o, const runtime::StepSpec& spec, int s,
                  const runtime::OptimizerConfig& optimizer, Node& node) {
  std::map<int, runtime::Chunk*> held;
  for (const auto& [c, chunk] : node.chunks) {
    if (spec.chunk_to_stage[c] == s) held[c] = chunk.get();
  }
  runtime::DataParallelPlace place{node.replica, o.dp, node.dp_group.get(), o.zero};
  place.expert_group = node.ep_group.get();  // --ep: as in one process (model_pipeline.cc)
  place.expert_data_group = node.edp_group.get();
  std::unique_ptr<runtime::StageWork> work;
  if (auto device = node.device_works.find(s); device != node.device_works.end()) {
    work = std::move(device->second);  // --device=cuda (AddDeviceWorks)
    node.device_works.erase(device);
  } else {
    work = std::make_unique<runtime::ModelStageWork>(held, spec.num_chunks, node.sampler.get(),
                                                     spec.num_microbatches, optimizer,
                                                     runtime::StageFaultsOf(o.faults, s), place);
  }
  node.works.push_back(
      std::make_unique<RecordingStageWork>(std::move(work), s, &node.log, o.faults.kill_at_step));
  node.lanes.push_back(std::make_unique<Lane>(Lane::Mode::kThread));
  if (o.dp > 1) node.reduce_lanes.push_back(std::make_unique<Lane>(Lane::Mode::kThread));
}

// The optimizer of this rank's stage works, its AdamW moments kept in node.optimizer_states.
runtime::OptimizerConfig OptimizerOf(const WorkerOptions& o, Node& node) {
  runtime::OptimizerConfig optimizer = o.optimizer;
  optimizer.states = &node.optimizer_states;
  return optimizer;
}

// --device=cuda: this rank's GPU (local rank modulo the GPUs it sees), said once.
absl::Status ChooseGpu(const WorkerOptions& o, const std::string& me, Node& node) {
  if (o.device != "cuda") return absl::OkStatus();
#ifdef STAGEHAND_CUDA
  ASSIGN_OR_RETURN(const ops::cuda::DeviceInfo probe, ops::cuda::ProbeDevice());
  node.gpu = o.local_rank % probe.device_count;
  CUDA_RETURN_IF_ERROR(cudaSetDevice(node.gpu));
  ASSIGN_OR_RETURN(const ops::cuda::DeviceInfo info, ops::cuda::ProbeDevice());
  std::printf("%s: GPU %d of %d (local rank %d): %s\n", me.c_str(), node.gpu, probe.device_count,
              o.local_rank, ops::cuda::DescribeDevice(info).c_str());
  std::fflush(stdout);
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError(
      absl::StrCat(me,
                   ": --device=cuda: this worker was built without CUDA (build with "
                   "--config=cuda)"));
#endif
}

// --device=cuda: this rank's stages' works on its GPU, for AddStageWork to take. Activations
// leave and enter through the host (no device hand-off between processes); --dp sums buckets
// over the stage's NCCL group.
absl::Status AddDeviceWorks(const WorkerOptions& o, const runtime::StepSpec& spec,
                            const std::vector<int>& stages,
                            const runtime::OptimizerConfig& optimizer, Node& node) {
  if (o.device != "cuda") return absl::OkStatus();
#ifdef STAGEHAND_CUDA
  for (int s : stages) {
    std::map<int, runtime::Chunk*> held;
    for (const auto& [c, chunk] : node.chunks) {
      if (spec.chunk_to_stage[c] == s) held[c] = chunk.get();
    }
    runtime::CudaStageOptions options;
    options.device = node.gpu;
    if (o.dp > 1) {
      options.data_parallel = {node.replica, o.dp, node.dp_group.get(), node.dp_device_group.get(),
                               o.zero};
    }
    ASSIGN_OR_RETURN(std::unique_ptr<runtime::CudaStageWork> work,
                     runtime::CudaStageWork::Create(held, spec.num_chunks, node.sampler.get(),
                                                    spec.num_microbatches, optimizer, options));
    node.device_works[s] = std::move(work);
  }
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError("--device=cuda: a worker built without CUDA");
#endif
}

// Stage `s`'s transfers over this rank's UCX transport.
ClusterCommInit CommInitOf(const WorkerOptions& o, const runtime::StepSpec& spec, int s, Node& node,
                           const worker_actor& self_handle, runtime::trace::TraceRecorder* trace) {
  const int64_t tensor_floats =
      int64_t{o.chunk.micro_batch_size} * o.chunk.seq_len * o.model.d_model;
  ClusterCommInit ci{o.rank,
                     s,
                     spec,
                     tensor_floats,
                     node.transport.get(),
                     &node.pool,
                     self_handle,
                     o.faults.withhold_receive};
  ci.trace = trace ? trace->send(s) : nullptr;
  ci.row_floats = TransferRowFloats(o, node);
  return ci;
}

LocalStages SpawnStages(const WorkerOptions& o, const runtime::StepSpec& spec,
                        const std::vector<int>& stages, const JoinReply& reply,
                        runtime::trace::TraceRecorder* trace, Node& node, caf::scoped_actor& self) {
  caf::actor_system& sys = *node.system;
  const worker_actor self_handle = WorkerHandle(self);
  const int64_t wte_floats = TiedWteFloats(o.model);
  const runtime::OptimizerConfig optimizer = OptimizerOf(o, node);
  LocalStages out{Registration{o.rank, stages, {}, {}}, {}};
  std::vector<stage_actor> local_stages(spec.num_stages);
  // Traced, rank > 0: the rank's step boundaries (trace_steps.h) stand between its stages
  // and the driver.
  trace_steps_actor trace_steps;
  if (trace != nullptr && o.rank != 0) {
    trace_steps =
        sys.spawn(TraceSteps, TraceStepsInit{trace, static_cast<int>(stages.size()), reply.driver});
  }
  for (int s : stages) {
    AddStageWork(o, spec, s, optimizer, node);
    const ClusterCommInit ci = CommInitOf(o, spec, s, node, self_handle, trace);
    const stage_reports driver =
        trace_steps ? stage_reports{trace_steps} : stage_reports{reply.driver};
    StageActorInit si{s,
                      spec,
                      o.planner,
                      node.lanes.back().get(),
                      node.works.back().get(),
                      driver,
                      tensor_inbox{},
                      trace,
                      node.specs};
    si.reduce_lane = o.dp > 1 ? node.reduce_lanes.back().get() : nullptr;
    si.grad_bucket_mb = o.grad_bucket_mb;
    si.lane_depth = o.lane_depth;
    // MoE sub-steps as in one process (actors/pipeline.cc).
    if (RunsSubSteps(*o.planner, *node.works.back(), o.moe_sub_steps)) {
      node.sub_step_lanes.push_back(std::make_unique<Lane>(Lane::Mode::kThread));
      si.sub_steps = node.works.back()->SubStepLayoutOf();
      si.sub_step_lane = node.sub_step_lanes.back().get();
      si.ordered_communication = o.ep > 1;  // the ep group's all-to-alls on that lane
    }
    // The stage needs its comm and the comm its stage: the comm learns its stage from the
    // rank's stage table, sent below before anything else.
    cluster_comm_actor comm = sys.spawn(ClusterComm, ci);
    si.comm = comm;
    stage_actor stage = sys.spawn(StageActor, si);
    local_stages[s] = stage;
    out.comms.push_back(comm);
    StageGateInit gi{o.rank,       s,           spec,       wte_floats, stage, comm,
                     reply.driver, self_handle, trace_steps};
    gi.replica = node.replica;
    out.reg.gates.push_back(sys.spawn(StageGate, gi));
    out.reg.comms.push_back(comm);
  }
  for (const cluster_comm_actor& comm : out.comms) caf::anon_send(comm, local_stages);
  return out;
}

// 7. The peer table; UCX endpoints to every other rank.
absl::StatusOr<PeerTable> ConnectPeers(const WorkerOptions& o, const std::string& me,
                                       int num_stages, const std::vector<cluster_comm_actor>& comms,
                                       Node& node, caf::scoped_actor& self) {
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
      static_cast<int>(table.stage_rank.size()) != num_stages ||
      static_cast<int>(table.stage_comms.size()) != num_stages) {
    return absl::DataLossError(absl::StrCat(me, ": malformed peer table from the coordinator"));
  }
  for (int r = 0; r < o.world_size; ++r) {
    if (r == o.rank) continue;
    RETURN_IF_ERROR(node.transport->Connect(r, table.ucx_addresses[r]));
  }
  for (const cluster_comm_actor& comm : comms) caf::anon_send(comm, table);
  return table;
}

// The held-out pass on a thread of its own between steps (the stages are idle then), so
// that the worker's loop keeps sending heartbeats and hears an abort; the thread hands its
// result back to that loop (eval_done_atom), which answers the coordinator.
// With --dp, replica 0's ranks evaluate (replicas hold the same weights); the others answer
// at once, without a loss.
class HeldOutRunner {
 public:
  // `gather` runs before each pass, on every rank (--ep: a collective that fills the whole
  // chunks the pass reads).
  HeldOutRunner(const WorkerOptions& o, runtime::HeldOutPassInit pass, worker_actor owner,
                bool evaluates, std::function<absl::Status()> gather)
      : o_(o),
        pass_(std::move(pass)),
        owner_(std::move(owner)),
        evaluates_(evaluates),
        gather_(std::move(gather)) {
    pass_.stop = &stop_;
  }
  ~HeldOutRunner() { Stop(); }

  // Starts the evaluation `order` asks for; returns why not when it is refused.
  std::string Start(const EvalOrder& order) {
    if (step_ >= 0) return absl::StrCat("the evaluation after step ", step_, " is still running");
    if (std::string refused =
            runtime::RefuseEvalOrder(order.step, order.batches, o_.loop.steps, o_.eval_batches);
        !refused.empty()) {
      return refused;
    }
    if (thread_.joinable()) thread_.join();
    if (absl::Status s = gather_(); !s.ok()) {
      return absl::StrCat("gathering the experts for the held-out pass: ", s.message());
    }
    step_ = order.step;
    if (!evaluates_) {
      finished_ = true;
      caf::anon_send(owner_, eval_done_atom::value,
                     EvalResult{o_.rank, order.step, "", false, 0.0});
      return "";
    }
    finished_ = false;
    thread_ = std::thread([this, order] {
      absl::StatusOr<std::optional<double>> loss =
          runtime::RunHeldOutPass(pass_, order.step, order.batches);
      EvalResult result{o_.rank, order.step, "", false, 0.0};
      if (!loss.ok()) {
        result.error = std::string(loss.status().message());
      } else if (loss->has_value()) {
        result.has_loss = true;
        result.loss = **loss;
      }
      finished_ = true;
      caf::anon_send(owner_, eval_done_atom::value, result);
    });
    return "";
  }
  // Whether `result` is the running thread's answer; if so the thread is joined.
  bool Done(const EvalResult& result) {
    if (!finished_ || result.step != step_) return false;
    if (thread_.joinable()) thread_.join();
    step_ = -1;
    return true;
  }
  // A pass still waiting gives up; one still computing ends its batch.
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  const WorkerOptions& o_;
  runtime::HeldOutPassInit pass_;
  worker_actor owner_;
  bool evaluates_;
  std::function<absl::Status()> gather_;
  std::atomic<bool> stop_{false}, finished_{false};
  std::thread thread_;
  int64_t step_ = -1;  // the evaluation running on thread_, -1: none
};

runtime::HeldOutPassInit HeldOutPass(const WorkerOptions& o, const runtime::StepSpec& spec,
                                     const PeerTable& table, Node& node) {
  runtime::HeldOutPassInit pass;
  pass.rank = o.rank;
  for (int c = 0; c < spec.num_chunks; ++c)
    pass.chunk_rank.push_back(table.stage_rank[spec.chunk_to_stage[c]]);
  for (const auto& [c, chunk] : o.ep > 1 ? node.whole_chunks : node.chunks) {
    pass.chunks[c] = chunk.get();  // --ep: the whole experts, gathered before each pass
  }
  pass.sampler = node.held_out.get();
  pass.transport = node.transport.get();
  pass.tensor_floats = int64_t{o.chunk.micro_batch_size} * o.chunk.seq_len * o.model.d_model;
  Node* n = &node;
  pass.note = [n](const std::string& what) { n->log.Set(what); };
  return pass;
}

// 8. Live: heartbeats, checkpoint and evaluation orders until finish or abort. Returns
// the abort's reason, or "" when the run finished.
std::string Live(const WorkerOptions& o, const std::string& me,
                 const coordinator_actor& coordinator, HeldOutRunner& held_out, Node& node,
                 caf::scoped_actor& self) {
  enum class End { kRunning, kFinished, kAborted } end = End::kRunning;
  std::string abort_reason;
  auto next_beat = std::chrono::steady_clock::now();
  while (end == End::kRunning) {
    if (std::chrono::steady_clock::now() >= next_beat) {
      self->send(coordinator, Heartbeat{o.rank, node.log.Get()});
      next_beat = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    }
    self->receive(
        [&](finish_atom) -> caf::ok_atom {
          if (absl::Status s = SaveParameters(node, o); !s.ok()) {
            abort_reason = absl::StrCat(me, ": saving parameters failed: ", s.message());
            end = End::kAborted;
          } else {
            end = End::kFinished;
          }
          return caf::ok_atom::value;
        },
        [&](const CheckpointOrder& order) -> CheckpointPart {
          return WriteCheckpointPart(node, o, order);
        },
        [&](const EvalOrder& order) {
          if (std::string refused = held_out.Start(order); !refused.empty()) {
            self->send(coordinator, EvalResult{o.rank, order.step, refused, false, 0.0});
          }
        },
        [&](eval_done_atom, EvalResult& result) {
          if (held_out.Done(result)) self->send(coordinator, result);  // else not our thread's
        },
        [&](const ClusterAbort& a) {
          abort_reason = a.reason;
          end = End::kAborted;
          // A verdict of this rank's own actors: tell everyone, through the coordinator.
          if (self->current_sender() != coordinator.address()) self->send(coordinator, a);
        },
        [&](caf::down_msg& down) {
          abort_reason =
              absl::StrCat(me, ": lost the coordinator (rank 0 at ", o.coordinator_host, ":",
                           o.coordinator_port, "): ", self->system().render(down.reason));
          end = End::kAborted;
        },
        caf::after(std::chrono::milliseconds(250)) >> [&] {});
  }
  held_out.Stop();
  return end == End::kFinished ? std::string() : abort_reason;
}

// --dp: the optimizer state this rank holds at the end (its stages' AdamW moments; --zero=1
// keeps 1/dp of them, --ep its member's experts only) and what it would hold unsharded (two
// floats per parameter of its stages, every expert included).
void PrintOptimizerState(const WorkerOptions& o, const std::string& me, const Node& node) {
  if (o.dp < 2) return;
  int64_t held = 0;
  int64_t floats = 0;
  for (const auto& work : node.works) held += work->OptimizerStateBytes();
  for (const auto& [c, chunk] : node.chunks) {
    floats += chunk->params().size();
    for (const models::ParamInfo& info : chunk->params().infos()) {
      if (info.expert >= 0) floats += int64_t{o.ep - 1} * info.size;  // the other members'
    }
  }
  const std::string how = runtime::OptimizerStateSharding(o.dp, o.ep, o.zero);
  std::printf("%s: optimizer state (AdamW moments held%s): %.3f MiB (unsharded %.3f MiB)\n",
              me.c_str(), how.c_str(), held / 1048576.0, 2.0 * floats * sizeof(float) / 1048576.0);
}

// 9. Leave after a finished run: the outputs, then (ranks other than 0) wait until rank 0
// leaves (it leaves once every rank has saved), so that the coordinator never mistakes a
// finished rank for a lost one.
absl::Status Leave(const WorkerOptions& o, const std::string& me,
                   const std::vector<cluster_comm_actor>& comms, const Node& node,
                   caf::scoped_actor& self) {
  if (!o.save_params.empty()) {
    std::printf("%s: saved parameters to %s\n", me.c_str(),
                runtime::RankFile(o.save_params, o.rank).c_str());
  }
  PrintOptimizerState(o, me, node);
  absl::Status traced = WriteTrace(node, o, comms, self);
  std::fflush(stdout);
  if (!traced.ok()) return absl::Status(traced.code(), absl::StrCat(me, ": ", traced.message()));
  if (o.rank != 0) {
    self->receive([&](caf::down_msg&) {}, caf::after(std::chrono::seconds(10)) >> [&] {});
  }
  return absl::OkStatus();
}

// UCX listens only on the interface this host reaches the coordinator through (lo on one host).
absl::StatusOr<std::string> DataPlaneDevice(const WorkerOptions& o) {
  absl::StatusOr<std::string> device = runtime::NetDeviceToward(o.coordinator_host);
  if (!device.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot tell which network interface leads to the coordinator host ",
                     o.coordinator_host, " (UCX would listen there): ", device.status().message()));
  }
  return *device;
}

// Where this rank's Gloo pairs listen: rank 0 on --bind when it names one address, every
// other rank (and rank 0 bound to every interface) on the address it reaches the coordinator
// from -- never on every interface.
absl::StatusOr<std::string> CollectiveAddress(const WorkerOptions& o) {
  if (o.rank == 0 && o.bind != "0.0.0.0" && o.bind != "::" && !o.bind.empty()) return o.bind;
  absl::StatusOr<std::string> address = runtime::SourceAddressToward(o.coordinator_host);
  if (!address.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot tell this host's address toward the ", "coordinator host ", o.coordinator_host,
        " (Gloo would listen there): ", address.status().message()));
  }
  return *address;
}

// A connected group with the modelled link of --link_latency_us / --link_gbps, if any.
std::unique_ptr<runtime::Collective> WithModelledLink(const WorkerOptions& o,
                                                      std::unique_ptr<runtime::Collective> group) {
  if (o.collective_latency_us == 0 && o.collective_gbps == 0) return group;
  return std::make_unique<runtime::LatencyCollective>(std::move(group), o.collective_latency_us,
                                                      o.collective_gbps);
}

// A group of `size` ranks (Gloo over TCP), this rank its member `member`, met under `name`; the
// rendezvous entries are signed with the join token and kept by the coordinator. `what` names
// the group in errors.
absl::StatusOr<std::unique_ptr<runtime::Collective>> ConnectGlooGroup(
    const WorkerOptions& o, const std::string& name, int member, int size, const std::string& what,
    const coordinator_actor& coordinator, caf::scoped_actor& self) {
  runtime::GlooGroupOptions group;
  group.name = name;
  group.member = member;
  group.size = size;
  ASSIGN_OR_RETURN(group.bind_host, CollectiveAddress(o));
  group.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1e3));
  ControlPlaneStore store(self, coordinator, o.rank, group.timeout);
  runtime::AuthenticatedStore signed_store(store, o.token);
  absl::StatusOr<std::unique_ptr<runtime::GlooCollective>> connected =
      runtime::GlooCollective::Connect(signed_store, group);
  if (!connected.ok()) {
    return absl::Status(connected.status().code(), absl::StrCat("rank ", o.rank, ": ", what, ": ",
                                                                connected.status().message()));
  }
  return WithModelledLink(o, *std::move(connected));
}

// 5b. --dp: this stage's data-parallel group (its replicas).
absl::Status ConnectDataParallelGroup(const WorkerOptions& o, const runtime::ClusterLayout& layout,
                                      const coordinator_actor& coordinator, Node& node,
                                      caf::scoped_actor& self) {
  if (o.dp == 1) return absl::OkStatus();
  const int stage = layout.Stages(o.rank).front();
  ASSIGN_OR_RETURN(
      node.dp_group,
      ConnectGlooGroup(o, absl::StrCat("dp.s", stage), node.replica, o.dp,
                       absl::StrCat("data-parallel group of stage ", stage), coordinator, self));
#ifdef STAGEHAND_CUDA
  if (o.device == "cuda") {  // the gradient buckets: NCCL, its id through the signed store
    runtime::NcclGroupOptions group;
    group.name = absl::StrCat("nccl.dp.s", stage);
    group.member = node.replica;
    group.size = o.dp;
    group.device = node.gpu;
    group.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.join_timeout_s * 1e3));
    ControlPlaneStore store(self, coordinator, o.rank, group.timeout);
    runtime::AuthenticatedStore signed_store(store, o.token);
    absl::StatusOr<std::unique_ptr<runtime::NcclCollective>> nccl =
        runtime::NcclCollective::Connect(signed_store, group);
    if (!nccl.ok()) {
      return absl::Status(nccl.status().code(),
                          absl::StrCat("rank ", o.rank, ": NCCL data-parallel group of stage ",
                                       stage, ": ", nccl.status().message()));
    }
    node.dp_device_group = *std::move(nccl);
  }
#endif
  return absl::OkStatus();
}

// 5c. --ep: this stage's expert-parallel group (member node.seat.member of the ep group
// node.seat.edp), set on this rank's chunks, and with edp > 1 its expert-data-parallel group
// (member node.seat.edp of the ranks holding member node.seat.member's experts).
absl::Status ConnectExpertParallelGroup(const WorkerOptions& o,
                                        const runtime::ClusterLayout& layout,
                                        const coordinator_actor& coordinator, Node& node,
                                        caf::scoped_actor& self) {
  if (o.ep == 1) return absl::OkStatus();
  const int stage = layout.Stages(o.rank).front();
  const runtime::ExpertSeat& seat = node.seat;
  ASSIGN_OR_RETURN(
      node.ep_group,
      ConnectGlooGroup(o, absl::StrCat("ep.s", stage, ".g", seat.edp), seat.member, o.ep,
                       absl::StrCat("expert-parallel group of stage ", stage), coordinator, self));
  node.ep_exchange = std::make_unique<runtime::CollectiveExpertExchange>(node.ep_group.get());
  for (auto& [index, chunk] : node.chunks) {
    RETURN_IF_ERROR(chunk->SetExpertExchange(node.ep_exchange.get()));
  }
  if (o.dp / o.ep == 1) return absl::OkStatus();  // each expert held once per stage
  ASSIGN_OR_RETURN(
      node.edp_group,
      ConnectGlooGroup(o, absl::StrCat("edp.s", stage, ".m", seat.member), seat.edp, o.dp / o.ep,
                       absl::StrCat("expert-data-parallel group of stage ", stage), coordinator,
                       self));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunWorker(const WorkerOptions& o) {
  const std::string me = absl::StrCat("rank ", o.rank);
  if (o.planner == nullptr || o.dataset == nullptr) {
    return absl::InvalidArgumentError("RunWorker needs a planner and a dataset");
  }
  ASSIGN_OR_RETURN(const runtime::StepSpec spec, o.planner->MakeSpec(o.planner_options));
  const int P = spec.num_stages;
  absl::StatusOr<runtime::ClusterLayout> layout =
      runtime::ClusterLayout::Create(P, o.world_size, o.dp);
  if (!layout.ok() || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", o.rank, " of ", o.world_size, ": ",
                     layout.ok() ? "no such rank" : layout.status().message()));
  }
  const std::vector<int> stages = layout->Stages(o.rank);
  auto* node = new Node();  // never freed: see Node
  node->replica = layout->Replica(o.rank);
  if (o.microbatches.has_value() && o.microbatches->ramping()) {
    ASSIGN_OR_RETURN(runtime::StepSpecs specs,
                     runtime::StepSpecs::Create(*o.planner, o.planner_options, *o.microbatches));
    node->specs = std::make_shared<const runtime::StepSpecs>(std::move(specs));
  }
  RETURN_IF_ERROR(ChooseGpu(o, me, *node));
  RETURN_IF_ERROR(BuildChunks(o, spec, stages, *node));
  ASSIGN_OR_RETURN(const int64_t start_step, InitialWeights(o, me, *node));
  ASSIGN_OR_RETURN(const std::string device, DataPlaneDevice(o));
  // Tags keyed by the join token: only processes holding it can address a receive here.
  ASSIGN_OR_RETURN(node->transport, runtime::UcxTransport::Create(device, o.token));
  // --dp: replica 0's ranks trace (one pipeline's trace, as in one process).
  runtime::trace::TraceRecorder* trace = nullptr;
  if (node->replica == 0) {
    ASSIGN_OR_RETURN(trace, StartTrace(o, me, spec, *node));
  }

  node->config = std::make_unique<caf::actor_system_config>();
  ConfigureClusterSystem(*node->config);
  node->config->set("scheduler.max-threads", size_t{2});
  node->system = std::make_unique<caf::actor_system>(*node->config);
  if (o.rank == 0) {
    ASSIGN_OR_RETURN(node->caf_port, PublishCoordinator(o, spec, *layout, node->specs, start_step,
                                                        trace, *node->system));
    RETURN_IF_ERROR(StartCoordinatorGate(o, node->caf_port, *node));
  }

  ASSIGN_OR_RETURN(coordinator_actor coordinator, ConnectToCoordinator(*node->system, o, *node));
  caf::scoped_actor self{*node->system};
  self->monitor(coordinator);
  ASSIGN_OR_RETURN(JoinReply reply, Join(o, me, start_step, coordinator, *node, self));
  RETURN_IF_ERROR(ConnectDataParallelGroup(o, *layout, coordinator, *node, self));
  RETURN_IF_ERROR(ConnectExpertParallelGroup(o, *layout, coordinator, *node, self));
  RETURN_IF_ERROR(AddDeviceWorks(o, spec, stages, OptimizerOf(o, *node), *node));
  LocalStages local = SpawnStages(o, spec, stages, reply, trace, *node, self);
  self->send(coordinator, local.reg);
  ASSIGN_OR_RETURN(PeerTable table, ConnectPeers(o, me, P, local.comms, *node, self));
  if (o.rank == 0) CloseCafPort(*node->system, coordinator, *node);
  HeldOutRunner held_out(o, HeldOutPass(o, spec, table, *node), WorkerHandle(self),
                         /*evaluates=*/node->replica == 0,
                         [node] { return GatherWholeChunks(*node, /*moments=*/false); });
  self->send(coordinator, ready_atom::value, o.rank);

  if (std::string abort_reason = Live(o, me, coordinator, held_out, *node, self);
      !abort_reason.empty()) {
    // Give the abort a moment to reach the coordinator and the other ranks.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return absl::AbortedError(abort_reason);
  }
  return Leave(o, me, local.comms, *node, self);
}

}  // namespace stagehand::actors::cluster
