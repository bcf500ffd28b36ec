// tools/cuda_train_benchmark: tokens/s, MFU and peak memory of GPT-2 124M training steps on a
// GPU through the stage work `launch --device=cuda` runs (runtime/train/cuda_stage_work.h): F,
// B and W of every microbatch, the tied-gradient fold, the squared norms, the clip and AdamW.
// The largest microbatch up to --micro_batch_size that fits is used. tools/run_gpu_checks.sh
// prints its figures beside PyTorch's (tools/torch_gpt2_step.py) on the same model and batch.
// A benchmark (tags "benchmark", "gpu"), not a training run.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/gpt_config.h"
#include "ops/cuda/device.h"
#include "runtime/data/text_corpus.h"
#include "runtime/train/cuda_stage_work.h"
#include "runtime/train/optimizer.h"
#include "runtime/train/training.h"
#include "runtime/util/status_macros.h"

ABSL_FLAG(int, micro_batch_size, 16, "the largest B tried; halved until a step fits");
ABSL_FLAG(int, seq_len, 1024, "tokens per sequence (T)");
ABSL_FLAG(int, microbatches, 1, "microbatches per step (M)");
ABSL_FLAG(int, timed_steps, 10, "timed steps after two warm-up steps; the median is reported");
ABSL_FLAG(double, peak_tflops, 989, "the GPU's dense bf16 peak for MFU (H100/H200 SXM: 989)");

namespace stagehand {
namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double step_seconds = 0;
  double loss = 0;
  int64_t peak_bytes = 0;
};

// Steps of GPT-2 124M at microbatch size B on the device; ResourceExhausted when B does not fit.
absl::StatusOr<Result> Measure(const models::GptConfig& model, int B, int T, int M, int steps) {
  models::ChunkOptions options;
  options.micro_batch_size = B;
  options.seq_len = T;
  options.num_microbatches = M;
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<runtime::Chunk>> chunks,
                   runtime::BuildChunks(model, 1, options));
  std::vector<int32_t> tokens(size_t{16} << 20);
  std::mt19937_64 random(model.seed);
  std::uniform_int_distribution<int32_t> id(0, model.vocab_size - 1);
  for (int32_t& t : tokens) t = id(random);
  runtime::WindowSampler sampler(&tokens, B, T, model.seed);
  runtime::OptimizerConfig optimizer;
  optimizer.adamw.learning_rate = 6e-4;
  optimizer.adamw.weight_decay = 0.1;
  optimizer.grad_clip = 1.0;
  runtime::CudaStageOptions device;
  device.mirror_to_host = false;  // nothing reads the host copy here
  ASSIGN_OR_RETURN(
      std::unique_ptr<runtime::CudaStageWork> work,
      runtime::CudaStageWork::Create({{0, chunks[0].get()}}, 1, &sampler, M, optimizer, device));
  std::vector<double> seconds;
  Result result;
  for (int step = 1; step <= steps + 2; ++step) {
    const Clock::time_point start = Clock::now();
    work->BeginStep(step, M);
    double loss = 0;
    // Each call only enqueues (StageWork::CompletesLater); its completion writes the loss.
    std::vector<double> losses(M, 0.0);
    runtime::Payload none;
    std::vector<std::future<absl::Status>> completions;
    const auto complete = [&](absl::Status enqueued) -> absl::Status {
      RETURN_IF_ERROR(enqueued);
      auto promise = std::make_shared<std::promise<absl::Status>>();
      completions.push_back(promise->get_future());
      work->OnComplete(
          [promise](absl::Status status, int64_t, int64_t) { promise->set_value(status); });
      return absl::OkStatus();
    };
    for (int mb = 0; mb < M; ++mb) {
      RETURN_IF_ERROR(complete(work->Forward(0, mb, nullptr, &none, &losses[mb])));
      RETURN_IF_ERROR(complete(work->Backward(0, mb, nullptr, &none)));
    }
    for (std::future<absl::Status>& done : completions) RETURN_IF_ERROR(done.get());
    for (double mb_loss : losses) loss += mb_loss;
    work->TiedGradients();
    double norm = 0;
    const double scale =
        runtime::ClipScaleFromSquaredNorms(work->SquaredNorms(), optimizer.grad_clip, &norm);
    work->ApplyOptimizer(scale, step);  // waits for the stream
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "B=%d step %d%s loss %.4f norm %.3f %.1f ms\n", B, step,
                 step <= 2 ? " (warm-up)" : "", loss, norm, elapsed * 1e3);
    if (step > 2) seconds.push_back(elapsed);
    result.loss = loss;
  }
  RETURN_IF_ERROR(work->deferred_status());  // the phases that return no status
  std::sort(seconds.begin(), seconds.end());
  result.step_seconds = seconds[seconds.size() / 2];
  result.peak_bytes = work->MemoryStats().peak_in_use_bytes;
  return result;
}

int Run() {
  const absl::StatusOr<ops::cuda::DeviceInfo> info = ops::cuda::ProbeDevice();
  if (!info.ok()) {
    std::printf("bench skipped: %s\n", std::string(info.status().message()).c_str());
    return 0;
  }
  std::printf("device: %s\n", ops::cuda::DescribeDevice(*info).c_str());
  const models::GptConfig model = models::Gpt2Small(1337);
  const int T = absl::GetFlag(FLAGS_seq_len), M = absl::GetFlag(FLAGS_microbatches);
  const int steps = absl::GetFlag(FLAGS_timed_steps);
  if (T < 1 || T > model.max_seq_len || M < 1 || steps < 1) {
    std::fprintf(stderr,
                 "cuda_train_benchmark: error: --seq_len in [1, %d], --microbatches and "
                 "--timed_steps >= 1\n",
                 model.max_seq_len);
    return 2;
  }
  for (int B = absl::GetFlag(FLAGS_micro_batch_size); B >= 1; B /= 2) {
    absl::StatusOr<Result> r = Measure(model, B, T, M, steps);
    if (!r.ok() && r.status().code() == absl::StatusCode::kResourceExhausted) {
      std::printf("B=%d does not fit: %s\n", B, std::string(r.status().message()).c_str());
      continue;
    }
    if (!r.ok()) {
      std::printf("bench failed: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    int64_t params = 0;  // tied wte counted once
    for (const models::ParamInfo& info :
         (*runtime::BuildChunks(model, 1, models::ChunkOptions{}))[0]->params().infos()) {
      params += info.size;
    }
    const double L = model.layers.size(), C = model.d_model;
    const double flops_per_token = 6.0 * params + 6.0 * L * C * T;
    const double tokens = double(B) * T * M;
    const double tokens_per_second = tokens / r->step_seconds;
    const double tflops = flops_per_token * tokens_per_second / 1e12;
    std::printf(
        "gpt2_124m: B=%d T=%d M=%d N=%lld: step %.1f ms, tokens/s %.0f, MFU %.1f%% of "
        "%.0f TFLOP/s (6N + 6LCT FLOPs a token), peak memory %.2f GiB, loss %.4f\n",
        B, T, M, static_cast<long long>(params), r->step_seconds * 1e3, tokens_per_second,
        100.0 * tflops / absl::GetFlag(FLAGS_peak_tflops), absl::GetFlag(FLAGS_peak_tflops),
        r->peak_bytes / double(1 << 30), r->loss);
    std::printf("bench gpt2_124m_step ms=%.3f tflops=%.1f\n", r->step_seconds * 1e3, tflops);
    std::printf("stagehand B=%d T=%d tokens/s %.1f\n", B, T, tokens_per_second);
    return 0;
  }
  std::printf("bench failed: not even B=1 fits\n");
  return 1;
}

}  // namespace
}  // namespace stagehand

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Times GPT-2 124M training steps on a GPU (tokens/s, MFU).");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "cuda_train_benchmark: error: unexpected argument '%s'\n", rest[1]);
    return 2;
  }
  return stagehand::Run();
}
