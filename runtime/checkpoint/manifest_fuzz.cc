// libFuzzer target: a checkpoint manifest, beside real shards, through what --resume and
// generate do: find the newest valid checkpoint (behind an older good one), verify it,
// restore it into a model. Not a test of training.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "runtime/checkpoint/checkpoint.h"
#include "tools/fuzz/fuzz_file.h"

namespace {

using namespace stagehand;

struct Fixture {
  std::string root;
  std::vector<std::unique_ptr<runtime::Chunk>> chunks;
  std::vector<runtime::OptimizerState> states;
  std::vector<runtime::ChunkState> Parts() {
    std::vector<runtime::ChunkState> out;
    for (size_t k = 0; k < chunks.size(); ++k) out.push_back({chunks[k].get(), &states[k], 0});
    return out;
  }
};

// The model of the seed corpus: step_00000001 and step_00000002 written by WriteCheckpoint.
Fixture& Get() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->root = fuzz::FuzzDir() + "/ckpt";
    auto built = runtime::BuildChunks(models::UniformGpt(2, 8, 2, 16, 8, 3), 2,
                                      models::ChunkOptions{1, 8, 1});
    if (!built.ok()) std::abort();
    fx->chunks = std::move(*built);
    fx->states.resize(fx->chunks.size());
    for (int64_t step : {1, 2}) {
      runtime::CheckpointMeta meta;
      meta.step = step;
      meta.model = models::UniformGpt(2, 8, 2, 16, 8, 3);
      if (!runtime::WriteCheckpoint(fx->root, meta, fx->Parts()).ok()) std::abort();
    }
    return fx;
  }();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& f = Get();
  const std::string dir = f.root + "/step_00000002";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/manifest.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  std::vector<std::string> skipped;
  absl::StatusOr<runtime::CheckpointInfo> info = runtime::FindLatestCheckpoint(f.root, &skipped);
  if (!info.ok()) std::abort();  // step 1 is good: a bad newest manifest must not hide it
  (void)runtime::RestoreCheckpoint(*info, f.Parts(), /*with_optimizer=*/true);
  (void)runtime::RestoreCheckpointPart(*info, {f.Parts()[1]}, /*with_optimizer=*/false);
  return 0;
}
