// BuildModelPipeline: chunks placed on stages by the planner's StepSpec.
#include "actors/model_pipeline.h"

#include <map>

#include "absl/strings/str_cat.h"

#include "runtime/train/stage_work.h"

namespace stagehand::actors {

std::vector<runtime::Chunk*> ModelPipeline::chunk_pointers() const {
  std::vector<runtime::Chunk*> out;
  for (const auto& c : chunks) out.push_back(c.get());
  return out;
}

absl::StatusOr<ModelPipeline> BuildModelPipeline(const ModelPipelineOptions& options,
                                                 const runtime::WindowSampler* sampler) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
  if (absl::Status s = runtime::ValidatePlannerOptions(options.planner_options); !s.ok()) return s;
  absl::StatusOr<runtime::StepSpec> spec = options.planner->MakeSpec(options.planner_options);
  if (!spec.ok()) return spec.status();
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

absl::StatusOr<std::unique_ptr<Pipeline>> BuildPipelineOn(const ModelPipelineOptions& options,
                                                          const runtime::WindowSampler* sampler,
                                                          const std::vector<runtime::Chunk*>& chunks) {
  if (options.planner == nullptr) return absl::InvalidArgumentError("no planner given");
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
      return absl::InvalidArgumentError(absl::StrCat("the chunks hold ", chunk->options().num_microbatches,
                                                     " microbatches, the plan needs ", spec->num_microbatches));
    }
  }
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int s = 0; s < spec->num_stages; ++s) {
    std::map<int, runtime::Chunk*> held;
    for (int c = 0; c < spec->num_chunks; ++c) {
      if (spec->chunk_to_stage[c] == s) held[c] = chunks[c];
    }
    auto faults = options.faults.find(s);
    works.push_back(std::make_unique<runtime::ModelStageWork>(
        held, spec->num_chunks, sampler, spec->num_microbatches, options.optimizer,
        faults == options.faults.end() ? runtime::StageFaults{} : faults->second));
    if (s == options.slow_stage.stage) {
      works.back() = std::make_unique<runtime::SlowStageWork>(std::move(works.back()),
                                                              options.slow_stage.factor);
    }
  }
  PipelineOptions po;
  po.planner = options.planner;
  po.spec = *spec;
  po.link = options.link;
  po.grad_clip = options.optimizer.grad_clip;
  po.rerun = options.rerun;
  po.deterministic = options.deterministic;
  po.trace = options.trace;
  po.specs = options.specs;
  if (options.specs != nullptr &&
      options.specs->full().num_microbatches != spec->num_microbatches) {
    return absl::InvalidArgumentError(absl::StrCat("the ramp-up's full step has ",
                                                   options.specs->full().num_microbatches,
                                                   " microbatches, the plan ", spec->num_microbatches));
  }
  if (options.trace != nullptr) {
    std::vector<int64_t> activation_bytes;
    for (runtime::Chunk* chunk : chunks) {
      activation_bytes.push_back(chunk->activation_floats_per_microbatch() * int64_t{sizeof(float)});
    }
    options.trace->SetActivationBytes(std::move(activation_bytes));
  }
  return Pipeline::Create(po, std::move(works));
}

absl::StatusOr<std::unique_ptr<Pipeline>> BuildSyntheticPipeline(
    const runtime::PlannerDefinition* planner, const runtime::PlannerOptions& planner_options,
    const runtime::SyntheticDurations& durations, const LinkModel& link, bool deterministic,
    runtime::trace::TraceRecorder* trace) {
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
  return Pipeline::Create(po, std::move(works));
}

}  // namespace stagehand::actors
