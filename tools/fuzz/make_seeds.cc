// Writes the fuzz targets' seed corpora from the tools' own writers (a checkpoint and its
// shards, a simulated trace, llm.c and Megatron corpora), into the corpus folders beside
// each target: `bazel run //tools/fuzz:make_seeds -- $PWD`. Not run by tests; the seeds
// are committed. The regression inputs (one per defect) are written by hand beside them.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "runtime/data/llmc_shard.h"
#include "runtime/data/megatron_indexed.h"
#include "runtime/planner.h"
#include "runtime/simulator.h"
#include "runtime/trace/chrome_json.h"
#include "runtime/trace/from_simulation.h"

namespace stagehand {
namespace {
namespace fs = std::filesystem;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void Put(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The checkpoint manifest_fuzz rebuilds (same model, same seed): its manifest and a shard.
void CheckpointSeeds(const std::string& repo, const std::string& tmp) {
  auto built =
      runtime::BuildChunks(models::UniformGpt(2, 8, 2, 16, 8, 3), 2, models::ChunkOptions{1, 8, 1});
  std::vector<runtime::OptimizerState> states(2);
  std::vector<runtime::ChunkState> parts;
  for (size_t k = 0; k < built->size(); ++k) parts.push_back({(*built)[k].get(), &states[k], 0});
  runtime::CheckpointMeta meta;
  meta.step = 2;
  meta.model = models::UniformGpt(2, 8, 2, 16, 8, 3);
  absl::StatusOr<std::string> dir = runtime::WriteCheckpoint(tmp + "/ckpt", meta, parts);
  if (!dir.ok()) return;
  Put(repo + "/runtime/checkpoint/manifest_fuzz_corpus/seed_manifest.json",
      Read(*dir + "/manifest.json"));
  Put(repo + "/runtime/io/safetensors_fuzz_corpus/seed_checkpoint_shard",
      Read(*dir + "/stage_0.safetensors"));
}

void TraceSeeds(const std::string& repo) {
  for (const char* name : {"1f1b", "zb_v", "interleaved"}) {
    auto def = runtime::PlannerRegistry::Default().Get(name);
    if (!def.ok()) continue;
    auto spec = (*def)->MakeSpec({2, 4, 0});
    if (!spec.ok()) continue;
    runtime::CostModel cost;
    cost.transfer = 0.5;
    auto sim = runtime::SimulateSpec(**def, *spec, cost);
    if (!sim.ok()) continue;
    Put(repo + "/runtime/trace/chrome_json_fuzz_corpus/seed_" + name + ".json",
        runtime::trace::ToChromeJson(runtime::trace::TraceFromSimulation(*sim, *spec)));
  }
}

void CorpusSeeds(const std::string& repo, const std::string& tmp) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 300; ++i) tokens.push_back((i * 7919) % 50257);
  if (runtime::WriteLlmcShard(tmp + "/shard.bin", tokens).ok()) {
    Put(repo + "/runtime/data/llmc_shard_fuzz_corpus/seed_shard", Read(tmp + "/shard.bin"));
  }
  for (auto [dtype, name] : {std::pair{runtime::MegatronDtype::kUint16, "uint16"},
                             std::pair{runtime::MegatronDtype::kInt32, "int32"}}) {
    if (!runtime::WriteMegatronIndexed(tmp + "/mm", {{1, 2, 3}, {4, 5}, {6}}, dtype).ok()) continue;
    Put(repo + "/runtime/data/megatron_indexed_fuzz_corpus/seed_" + name,
        Read(tmp + "/mm.idx") + "--BIN--\n" + Read(tmp + "/mm.bin"));
  }
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds REPO_ROOT\n");
    return 2;
  }
  const std::string tmp = std::filesystem::temp_directory_path().string() + "/stagehand_seeds";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  stagehand::CheckpointSeeds(argv[1], tmp);
  stagehand::TraceSeeds(argv[1]);
  stagehand::CorpusSeeds(argv[1], tmp);
  std::printf("seeds written under %s\n", argv[1]);
  return 0;
}
