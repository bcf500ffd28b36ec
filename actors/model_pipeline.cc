// BuildModelPipeline: chunks placed on stages by the planner's StepSpec.
#include "actors/model_pipeline.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "runtime/train/expert_gather.h"
#include "runtime/train/expert_layout.h"
#include "runtime/train/stage_work.h"
#include "runtime/util/status_macros.h"

namespace stagehand::actors {

std::vector<runtime::Chunk*> ModelPipeline::chunk_pointers() const {
  std::vector<runtime::Chunk*> out;
  for (const auto& c : chunks) out.push_back(c.get());
  return out;
}

std::vector<runtime::Chunk*> ModelPipeline::ReplicaChunks(int d) const {
  if (!expert_view && d == 0) return chunk_pointers();
  std::vector<runtime::Chunk*> out;
  for (const auto& c : replica_chunks[expert_view ? d : d - 1]) out.push_back(c.get());
  return out;
}

namespace {

using runtime::CopyHeldMoments;
using runtime::CopyHeldTensors;
using runtime::HoldsMoments;

// --ep > 1: every tensor of `replicas` (those of edp group 0, which hold every expert between
// them) into `whole`, chunk by chunk, by name.
void GatherExpertShards(const std::vector<std::vector<runtime::Chunk*>>& replicas,
                        const std::vector<runtime::Chunk*>& whole) {
  for (const std::vector<runtime::Chunk*>& replica : replicas) {
    for (size_t k = 0; k < whole.size(); ++k) {
      const models::ParameterSet<float>& from = replica[k]->params();
      CopyHeldTensors(from, from.values(), whole[k]->params(), whole[k]->params().values());
    }
  }
}

}  // namespace

void ModelPipeline::SyncReplicas() {
  for (size_t d = 0; d < replica_chunks.size(); ++d) {
    for (size_t k = 0; k < chunks.size(); ++k) {
      const models::ParameterSet<float>& from = chunks[k]->params();
      models::ParameterSet<float>& to = replica_chunks[d][k]->params();
      if (!expert_view) {
        std::copy(from.values(), from.values() + from.size(), to.values());
        continue;
      }
      CopyHeldTensors(from, from.values(), to, to.values());
      if (states != nullptr && HoldsMoments((*states)[k], from.size())) {
        CopyHeldMoments(from, (*states)[k], to, (*replica_states[d])[k]);
      }
    }
    if (states != nullptr && !expert_view) *replica_states[d] = *states;
  }
  if (expert_view && states != nullptr) {
    for (runtime::OptimizerState& state : *states) state = {};  // handed to the replicas
  }
}

absl::Status ModelPipeline::WithFullOptimizerState(const std::function<absl::Status()>& use) {
  RETURN_IF_ERROR(
      pipeline->OnEveryStage([](runtime::StageWork& work) { return work.ExportOptimizerState(); }));
  if (expert_view && states != nullptr) {
    const int ep = expert_groups.front().group->size();
    for (int d = 0; d < ep; ++d) {
      for (size_t k = 0; k < chunks.size(); ++k) {
        const models::ParameterSet<float>& from = replica_chunks[d][k]->params();
        const runtime::OptimizerState& moments = (*replica_states[d])[k];
        if (!HoldsMoments(moments, from.size())) continue;  // no update yet
        CopyHeldMoments(from, moments, chunks[k]->params(), (*states)[k]);
      }
    }
  }
  const absl::Status used = use();
  if (expert_view && states != nullptr) {
    for (runtime::OptimizerState& state : *states) state = {};  // written: not kept
  }
  RETURN_IF_ERROR(pipeline->OnEveryStage([](runtime::StageWork& work) {
    work.ReleaseExportedOptimizerState();
    return absl::OkStatus();
  }));
  return used;
}

namespace {

using runtime::ExpertSeat;

// --ep > 1: every replica's seat in the rank grid's ep x edp split of dp.
absl::StatusOr<std::vector<ExpertSeat>> ExpertSeats(const ModelPipelineOptions& options, int P) {
  std::vector<ExpertSeat> seats;
  for (int d = 0; d < options.dp; ++d) {
    ASSIGN_OR_RETURN(const ExpertSeat seat, runtime::ExpertSeatOf(options.dp, options.ep, P, d));
    seats.push_back(seat);
  }
  return seats;
}

// The groups of every stage: expert-parallel (stage s, edp g) at s * edp + g; expert-data-
// parallel (stage s, member m) at s * ep + m, only when edp > 1.
void MakeExpertGroups(const ModelPipelineOptions& options, int P, ModelPipeline& out) {
  const int ep = options.ep, edp = options.dp / options.ep;
  const LinkModel& link = options.link;
  for (int i = 0; i < P * edp; ++i) {
    out.expert_groups.push_back(runtime::MakeInProcessGroup(ep, link.latency_us, link.gbps));
  }
  for (int i = 0; edp > 1 && i < P * ep; ++i) {
    out.expert_data_groups.push_back(runtime::MakeInProcessGroup(edp, link.latency_us, link.gbps));
  }
}

// Replica d's stage `s` seat in the data-parallel and (--ep > 1: `seat`) expert groups.
runtime::DataParallelPlace PlaceOf(const ModelPipelineOptions& options, int d, int s,
                                   const ExpertSeat* seat, ModelPipeline& out) {
  runtime::DataParallelPlace place{d, options.dp, out.groups[s].members[d].get(), options.zero};
  if (seat == nullptr) return place;
  const int ep = options.ep, edp = options.dp / options.ep;
  place.expert_group = out.expert_groups[s * edp + seat->edp].members[seat->member].get();
  if (edp > 1) {
    place.expert_data_group =
        out.expert_data_groups[s * ep + seat->member].members[seat->edp].get();
  }
  return place;
}

// What every model pipeline shares: the plan, links, checks, trace, and under a batch-size
// ramp-up each step's spec (whose full step must be `spec`).
absl::StatusOr<PipelineOptions> PipelineOptionsOf(const ModelPipelineOptions& options,
                                                  const runtime::StepSpec& spec) {
  if (options.specs != nullptr && options.specs->full().num_microbatches != spec.num_microbatches) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ramp-up's full step has ", options.specs->full().num_microbatches,
                     " microbatches, the plan ", spec.num_microbatches));
  }
  PipelineOptions po;
  po.planner = options.planner;
  po.spec = spec;
  po.specs = options.specs;
  po.link = options.link;
  po.grad_clip = options.optimizer.grad_clip;
  po.rerun = options.rerun;
  po.deterministic = options.deterministic;
  po.lane_omp_threads = options.lane_omp_threads;
  po.lane_depth = options.lane_depth;
  po.trace = options.trace;
  po.moe_sub_steps = options.moe_sub_steps;
  return po;
}

// Stage `s`'s work over the chunks it holds of `chunks` (one replica's, in model order): the
// caller's factory's, or the CPU's ModelStageWork with its test faults and --slow_stage.
absl::StatusOr<std::unique_ptr<runtime::StageWork>> StageWorkOf(
    const ModelPipelineOptions& options, const runtime::StepSpec& spec, int s,
    const std::vector<runtime::Chunk*>& chunks, const runtime::WindowSampler* sampler,
    const runtime::OptimizerConfig& optimizer, const runtime::DataParallelPlace& place) {
  std::map<int, runtime::Chunk*> held;
  for (int c = 0; c < spec.num_chunks; ++c) {
    if (spec.chunk_to_stage[c] == s) held[c] = chunks[c];
  }
  auto faults = options.faults.find(s);
  const runtime::StageFaults stage_faults =
      faults == options.faults.end() ? runtime::StageFaults{} : faults->second;
  if (options.stage_work) {
    if (options.slow_stage.stage >= 0 || stage_faults.flip_at_step != 0 ||
        stage_faults.nan_at_step != 0 || stage_faults.slow_forward_ms != 0) {
      return absl::UnimplementedError(
          "--slow_stage and STAGEHAND_FAULTS act on the CPU's stage work only");
    }
    return options.stage_work(ModelPipelineOptions::StageWorkSpec{
        s, std::move(held), spec.num_chunks, sampler, spec.num_microbatches, optimizer, place});
  }
  std::unique_ptr<runtime::StageWork> work = std::make_unique<runtime::ModelStageWork>(
      held, spec.num_chunks, sampler, spec.num_microbatches, optimizer, stage_faults, place);
  if (s == options.slow_stage.stage) {
    work = std::make_unique<runtime::SlowStageWork>(std::move(work), options.slow_stage.factor);
  }
  return work;
}

// One replica's stage works over `chunks` (this replica's, in model order).
absl::StatusOr<std::vector<std::unique_ptr<runtime::StageWork>>> ReplicaWorks(
    const ModelPipelineOptions& options, const runtime::StepSpec& spec,
    const std::vector<std::unique_ptr<runtime::Chunk>>& chunks,
    const runtime::WindowSampler* sampler, runtime::OptimizerConfig optimizer, int replica,
    const ExpertSeat* seat, ModelPipeline& out) {
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  std::vector<runtime::Chunk*> raw;
  for (const auto& chunk : chunks) raw.push_back(chunk.get());
  for (int s = 0; s < spec.num_stages; ++s) {
    ASSIGN_OR_RETURN(std::unique_ptr<runtime::StageWork> work,
                     StageWorkOf(options, spec, s, raw, sampler, optimizer,
                                 PlaceOf(options, replica, s, seat, out)));
    works.push_back(std::move(work));
  }
  return works;
}

// --ep > 1: replica d's exchange on each stage (over its member of the stage's expert-parallel
// group), set on its chunks of that stage.
absl::Status ConnectExpertExchanges(const ModelPipelineOptions& options,
                                    const runtime::StepSpec& spec, const ExpertSeat& seat,
                                    const std::vector<std::unique_ptr<runtime::Chunk>>& chunks,
                                    ModelPipeline& out) {
  const int edp = options.dp / options.ep;
  for (int s = 0; s < spec.num_stages; ++s) {
    out.expert_exchanges.push_back(std::make_unique<runtime::CollectiveExpertExchange>(
        out.expert_groups[s * edp + seat.edp].members[seat.member].get()));
    for (int c = 0; c < spec.num_chunks; ++c) {
      if (spec.chunk_to_stage[c] != s) continue;
      RETURN_IF_ERROR(chunks[c]->SetExpertExchange(out.expert_exchanges.back().get()));
    }
  }
  return absl::OkStatus();
}

// Replica d's chunks (with --ep > 1, holding its member's experts) and its stage works.
absl::Status AddReplica(const ModelPipelineOptions& options, const runtime::WindowSampler* sampler,
                        const runtime::StepSpec& spec, int d, const ExpertSeat* seat,
                        ModelPipeline& out,
                        std::vector<std::unique_ptr<runtime::StageWork>>& works) {
  models::ChunkOptions chunk_options = options.chunk;  // the loss: the mean over D x M
  chunk_options.num_microbatches = spec.num_microbatches * options.dp;
  if (seat != nullptr) chunk_options.expert_shard = {seat->member, options.ep};
  ASSIGN_OR_RETURN(
      std::vector<std::unique_ptr<runtime::Chunk>> chunks,
      runtime::BuildChunks(options.model, spec.num_chunks, chunk_options, options.partition));
  if (seat != nullptr) RETURN_IF_ERROR(ConnectExpertExchanges(options, spec, *seat, chunks, out));
  runtime::OptimizerConfig optimizer = options.optimizer;
  if (d == 0 && !out.expert_view) {
    out.chunks = std::move(chunks);
  } else {
    out.replica_chunks.push_back(std::move(chunks));
    out.replica_states.push_back(std::make_unique<std::vector<runtime::OptimizerState>>());
    optimizer.states = out.replica_states.back().get();
  }
  const auto& held = d == 0 && !out.expert_view ? out.chunks : out.replica_chunks.back();
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<runtime::StageWork>> replica_works,
                   ReplicaWorks(options, spec, held, sampler, optimizer, d, seat, out));
  for (auto& work : replica_works) works.push_back(std::move(work));
  return absl::OkStatus();
}

// --dp > 1: D replicas' chunks and stage works (replica-major), one collective group per
// stage, and the pipeline that runs them as actors. --ep > 1: the expert groups, and the
// whole model `chunks` beside the replicas (expert_view).
absl::StatusOr<ModelPipeline> BuildDataParallelPipeline(const ModelPipelineOptions& options,
                                                        const runtime::WindowSampler* sampler,
                                                        const runtime::StepSpec& spec) {
  ModelPipeline out;
  out.states = options.optimizer.states;
  for (int s = 0; s < spec.num_stages; ++s) {
    // --link_latency_us / --link_gbps apply to the replicas' collectives too.
    out.groups.push_back(
        runtime::MakeInProcessGroup(options.dp, options.link.latency_us, options.link.gbps));
  }
  std::vector<ExpertSeat> seats;
  if (options.ep > 1) {
    ASSIGN_OR_RETURN(seats, ExpertSeats(options, spec.num_stages));
    MakeExpertGroups(options, spec.num_stages, out);
    out.expert_view = true;
    models::ChunkOptions chunk_options = options.chunk;
    chunk_options.num_microbatches = spec.num_microbatches * options.dp;
    ASSIGN_OR_RETURN(out.chunks, runtime::BuildChunks(options.model, spec.num_chunks, chunk_options,
                                                      options.partition));
    if (out.states != nullptr) out.states->resize(spec.num_chunks);
  }
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int d = 0; d < options.dp; ++d) {
    RETURN_IF_ERROR(
        AddReplica(options, sampler, spec, d, seats.empty() ? nullptr : &seats[d], out, works));
  }
  ASSIGN_OR_RETURN(PipelineOptions po, PipelineOptionsOf(options, spec));
  if (out.expert_view) {  // ep varies fastest: replicas 0 .. ep - 1 form edp group 0
    std::vector<std::vector<runtime::Chunk*>> replicas;
    for (int d = 0; d < options.ep; ++d) replicas.push_back(out.ReplicaChunks(d));
    po.after_step = [replicas, whole = out.chunk_pointers()] {
      GatherExpertShards(replicas, whole);
    };
  }
  po.replicas = options.dp;
  po.ordered_communication = options.ep > 1;
  po.grad_bucket_mb = options.grad_bucket_mb;
  po.reduction_start = options.reduction_start;
  for (const auto& group : out.groups) po.groups.push_back(group.group.get());
  for (const auto& group : out.expert_groups) po.groups.push_back(group.group.get());
  for (const auto& group : out.expert_data_groups) po.groups.push_back(group.group.get());
  if (options.trace != nullptr) {
    std::vector<int64_t> activation_bytes;
    for (const auto& chunk : out.chunks) {
      activation_bytes.push_back(chunk->activation_floats_per_microbatch() *
                                 int64_t{sizeof(float)});
    }
    options.trace->SetActivationBytes(std::move(activation_bytes));
  }
  ASSIGN_OR_RETURN(out.pipeline, Pipeline::Create(po, std::move(works)));
  return out;
}

}  // namespace

absl::Status ValidateExpertParallelism(const models::GptConfig& model, int dp, int ep) {
  if (ep < 1) return absl::InvalidArgumentError(absl::StrCat("--ep=", ep, ": must be >= 1"));
  if (ep == 1) return absl::OkStatus();
  if (dp % ep != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ep=", ep, " must divide --dp=", dp,
                     ": expert-parallel groups are carved out of the data-parallel replicas"));
  }
  bool any_moe = false;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const models::LayerSpec& layer = model.layers[l];
    if (layer.mlp != models::MlpKind::kMoe) continue;
    any_moe = true;
    if (layer.moe.num_experts % ep != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ep=", ep, " must divide every MoE layer's experts; layer ", l, " has ",
                       layer.moe.num_experts));
    }
  }
  if (!any_moe) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--ep=", ep, ": the model has no MoE layer (mlp: moe) whose experts could be split"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelPipeline> BuildModelPipeline(const ModelPipelineOptions& options,
                                                 const runtime::WindowSampler* sampler) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (absl::Status s = runtime::ValidatePlannerOptions(options.planner_options); !s.ok()) return s;
  absl::StatusOr<runtime::StepSpec> spec = options.planner->MakeSpec(options.planner_options);
  if (!spec.ok()) return spec.status();
  if (options.dp < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--dp=", options.dp, ": must be >= 1"));
  }
  if (options.zero != 0 && options.zero != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--zero=", options.zero, ": must be 0 or 1"));
  }
  if (options.zero == 1 && options.dp < 2) {
    return absl::InvalidArgumentError(
        "--zero=1 shards the optimizer over the --dp replicas: it needs --dp >= 2");
  }
  RETURN_IF_ERROR(ValidateExpertParallelism(options.model, options.dp, options.ep));
  if (options.dp > 1) return BuildDataParallelPipeline(options, sampler, *spec);
  models::ChunkOptions chunk_options = options.chunk;
  chunk_options.num_microbatches = spec->num_microbatches;
  ModelPipeline out;
  absl::StatusOr<std::vector<std::unique_ptr<runtime::Chunk>>> chunks =
      runtime::BuildChunks(options.model, spec->num_chunks, chunk_options, options.partition);
  if (!chunks.ok()) return chunks.status();
  out.chunks = std::move(*chunks);
  absl::StatusOr<std::unique_ptr<Pipeline>> pipeline =
      BuildPipelineOn(options, sampler, out.chunk_pointers());
  if (!pipeline.ok()) return pipeline.status();
  out.pipeline = std::move(*pipeline);
  return out;
}

absl::StatusOr<std::unique_ptr<Pipeline>> BuildPipelineOn(
    const ModelPipelineOptions& options, const runtime::WindowSampler* sampler,
    const std::vector<runtime::Chunk*>& chunks) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (options.dp != 1) {
    return absl::UnimplementedError("a pipeline on given chunks (batch ramp-up) has no --dp yet");
  }
  if (absl::Status s = runtime::ValidatePlannerOptions(options.planner_options); !s.ok()) return s;
  absl::StatusOr<runtime::StepSpec> spec = options.planner->MakeSpec(options.planner_options);
  if (!spec.ok()) return spec.status();
  if (spec->num_chunks != static_cast<int>(chunks.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the plan for ", spec->num_microbatches,
                                                   " microbatches has ", spec->num_chunks,
                                                   " chunks, the model ", chunks.size()));
  }
  for (runtime::Chunk* chunk : chunks) {
    if (chunk->options().num_microbatches < spec->num_microbatches) {
      return absl::InvalidArgumentError(
          absl::StrCat("the chunks hold ", chunk->options().num_microbatches,
                       " microbatches, the plan needs ", spec->num_microbatches));
    }
  }
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int s = 0; s < spec->num_stages; ++s) {
    ASSIGN_OR_RETURN(std::unique_ptr<runtime::StageWork> work,
                     StageWorkOf(options, *spec, s, chunks, sampler, options.optimizer, {}));
    works.push_back(std::move(work));
  }
  ASSIGN_OR_RETURN(PipelineOptions po, PipelineOptionsOf(options, *spec));
  if (options.trace != nullptr) {
    // Each chunk's bytes as its stage's work holds them (a GPU's), else the float activations.
    std::vector<int64_t> activation_bytes;
    for (int c = 0; c < static_cast<int>(chunks.size()); ++c) {
      const int64_t device = works[spec->chunk_to_stage[c]]->ActivationBytes(c);
      activation_bytes.push_back(device >= 0 ? device
                                             : chunks[c]->activation_floats_per_microbatch() *
                                                   int64_t{sizeof(float)});
    }
    options.trace->SetActivationBytes(std::move(activation_bytes));
  }
  return Pipeline::Create(po, std::move(works));
}

absl::StatusOr<std::unique_ptr<Pipeline>> BuildSyntheticPipeline(
    const runtime::PlannerDefinition* planner, const runtime::PlannerOptions& planner_options,
    const runtime::SyntheticDurations& durations, const LinkModel& link, bool deterministic,
    runtime::trace::TraceRecorder* trace, int lane_depth) {
  if (planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (absl::Status s = runtime::ValidatePlannerOptions(planner_options); !s.ok()) return s;
  absl::StatusOr<runtime::StepSpec> spec = planner->MakeSpec(planner_options);
  if (!spec.ok()) return spec.status();
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int s = 0; s < spec->num_stages; ++s) {
    works.push_back(std::make_unique<runtime::SyntheticStageWork>(durations, spec->num_chunks));
  }
  PipelineOptions po;
  po.planner = planner;
  po.spec = *spec;
  po.link = link;
  po.deterministic = deterministic;
  po.trace = trace;
  po.lane_depth = lane_depth;
  return Pipeline::Create(po, std::move(works));
}

}  // namespace stagehand::actors
