// tools/reference_batch: writes what a reference implementation needs to check our model on
// one batch (the canonical model config, the initial weights under Hugging Face names, one
// batch of tokens and targets), and prints our loss on it in float64 and float32. Used by
// tools/torch_parity.sh against tools/torch_reference.py. Not a training tool.
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/gpt_chunk.h"
#include "models/model_config.h"
#include "runtime/checkpoint/hf_llama.h"
#include "runtime/io/user_path.h"
#include "runtime/train/training.h"
#include "runtime/util/status_macros.h"

ABSL_FLAG(std::string, model_config, "", "the model config JSON file");
ABSL_FLAG(std::string, out, "", "folder to write config.json, weights.safetensors, batch.json");
ABSL_FLAG(int, seq_len, 32, "tokens per sequence");
ABSL_FLAG(int, batch, 2, "sequences");
ABSL_FLAG(uint64_t, seed, 1337, "initialisation and batch seed");

namespace stagehand {
namespace {

absl::Status Run() {
  const std::string out = runtime::ResolveUserPath(absl::GetFlag(FLAGS_out));
  ASSIGN_OR_RETURN(
      models::GptConfig config,
      models::LoadModelConfig(runtime::ResolveUserPath(absl::GetFlag(FLAGS_model_config))));
  config.seed = absl::GetFlag(FLAGS_seed);
  const int B = absl::GetFlag(FLAGS_batch), T = absl::GetFlag(FLAGS_seq_len);
  const models::ChunkSpec whole{0, static_cast<int>(config.layers.size()), true, true};
  ASSIGN_OR_RETURN(auto f32, models::GptChunk<float>::Create(config, whole, {B, T, 1}));
  ASSIGN_OR_RETURN(auto f64, models::GptChunk<double>::Create(config, whole, {B, T, 1}));
  // The float64 model holds the float32 model's values exactly.
  for (int64_t i = 0; i < f32->params().size(); ++i)
    f64->params().values()[i] = f32->params().values()[i];
  std::mt19937_64 rng(config.seed);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = static_cast<int32_t>(rng() % config.vocab_size);
    targets[i] = static_cast<int32_t>(rng() % config.vocab_size);
  }
  RETURN_IF_ERROR(f32->Forward(0, tokens.data(), nullptr, targets.data()));
  RETURN_IF_ERROR(f64->Forward(0, tokens.data(), nullptr, targets.data()));
  std::ofstream(out + "/config.json") << models::ModelConfigToJson(config).dump(2) << "\n";
  nlohmann::json batch = {{"batch", B}, {"seq_len", T}, {"tokens", tokens}, {"targets", targets}};
  std::ofstream(out + "/batch.json") << batch.dump() << "\n";
  RETURN_IF_ERROR(runtime::ExportHf(out + "/weights.safetensors", {f32.get()}, config));
  std::printf("stagehand loss float64 %.12f float32 %.12f\n", f64->loss(0), f32->loss(0));
  return absl::OkStatus();
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::Status s = stagehand::Run(); !s.ok()) {
    std::fprintf(stderr, "reference_batch: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
