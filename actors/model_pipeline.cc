// BuildModelPipeline: chunks placed on stages by the planner's StepSpec.
#include "actors/model_pipeline.h"

#include <map>

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
  std::vector<std::unique_ptr<runtime::StageWork>> works;
  for (int s = 0; s < spec->num_stages; ++s) {
    std::map<int, runtime::Chunk*> held;
    for (int c = 0; c < spec->num_chunks; ++c) {
      if (spec->chunk_to_stage[c] == s) held[c] = out.chunks[c].get();
    }
    works.push_back(std::make_unique<runtime::ModelStageWork>(
        held, spec->num_chunks, sampler, spec->num_microbatches, options.optimizer));
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
  po.deterministic = options.deterministic;
  po.trace = options.trace;
  if (options.trace != nullptr) {
    std::vector<int64_t> activation_bytes;
    for (const auto& chunk : out.chunks) {
      activation_bytes.push_back(chunk->activation_floats_per_microbatch() * int64_t{sizeof(float)});
    }
    options.trace->SetActivationBytes(std::move(activation_bytes));
  }
  absl::StatusOr<std::unique_ptr<Pipeline>> pipeline = Pipeline::Create(po, std::move(works));
  if (!pipeline.ok()) return pipeline.status();
  out.pipeline = std::move(*pipeline);
  return out;
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
