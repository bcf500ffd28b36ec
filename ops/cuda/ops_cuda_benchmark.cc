// Times the CUDA ops at GPT-2 124M shapes (B=8, T=1024, C=768, 12 heads, vocabulary 50304) with
// CUDA events, and prints one "bench <op> ms=<median> tflops=<rate>" line per op. A benchmark
// binary (tag "benchmark"), not a test and not the end-to-end throughput of training.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/device.h"
#include "ops/cuda/gelu.h"
#include "ops/cuda/head.h"
#include "ops/cuda/layernorm.h"
#include "ops/cuda/linear.h"
#include "ops/cuda/matmul.h"

namespace stagehand::ops::cuda {
namespace {

constexpr int B = 8, T = 1024, C = 768, NH = 12, V = 50257, Vp = 50304;
constexpr int N = B * T;
constexpr int kRepeats = 20;

// Zero-filled device memory, freed at exit (a benchmark: errors end the program).
void* DeviceZeros(size_t bytes) {
  void* pointer = nullptr;
  if (cudaMalloc(&pointer, bytes) != cudaSuccess || cudaMemset(pointer, 0, bytes) != cudaSuccess) {
    std::printf("bench failed: cudaMalloc of %zu bytes\n", bytes);
    std::exit(1);
  }
  return pointer;
}

// Median milliseconds of `op` over kRepeats runs after one warm-up; prints the bench line.
void Time(const char* name, double flops, const std::function<absl::Status()>& op) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  absl::Status status = op();
  std::vector<float> times;
  for (int i = 0; i < kRepeats && status.ok(); ++i) {
    cudaEventRecord(start);
    status = op();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  if (const cudaError_t error = cudaDeviceSynchronize(); status.ok() && error != cudaSuccess) {
    status = absl::InternalError(cudaGetErrorString(error));
  }
  if (!status.ok()) {
    std::printf("bench failed: %s: %s\n", name, std::string(status.message()).c_str());
    std::exit(1);
  }
  std::sort(times.begin(), times.end());
  const double ms = times[times.size() / 2];
  std::printf("bench %s ms=%.3f tflops=%.1f\n", name, ms, flops / (ms * 1e-3) / 1e12);
}

int Run() {
  const absl::StatusOr<DeviceInfo> device = ProbeDevice();
  if (!device.ok()) {
    std::printf("bench skipped: %s\n", std::string(device.status().message()).c_str());
    return 0;
  }
  std::printf("device: %s\n", DescribeDevice(*device).c_str());
  auto created = Matmul::Create();
  if (!created.ok()) {
    std::printf("bench failed: %s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  Matmul& matmul = **created;
  auto* x = static_cast<bf16*>(DeviceZeros(size_t{N} * 4 * C * sizeof(bf16)));
  auto* y = static_cast<bf16*>(DeviceZeros(size_t{N} * 4 * C * sizeof(bf16)));
  auto* w = static_cast<bf16*>(DeviceZeros(size_t{4} * C * C * sizeof(bf16)));
  auto* bias = static_cast<bf16*>(DeviceZeros(size_t{4} * C * sizeof(bf16)));
  auto* dw = static_cast<float*>(DeviceZeros(size_t{4} * C * C * sizeof(float)));
  auto* stats = static_cast<float*>(DeviceZeros(size_t{2} * N * sizeof(float)));
  auto* att = static_cast<bf16*>(DeviceZeros(size_t{B} * NH * T * T * sizeof(bf16)));
  void* scratch = DeviceZeros(AttentionScratchBytes(B, T, C, NH));
  auto* wte = static_cast<bf16*>(DeviceZeros(size_t{Vp} * C * sizeof(bf16)));
  auto* logits = static_cast<bf16*>(DeviceZeros(size_t{N} * Vp * sizeof(bf16)));
  auto* losses = static_cast<float*>(DeviceZeros(size_t{N} * sizeof(float)));
  auto* targets = static_cast<int32_t*>(DeviceZeros(size_t{N} * sizeof(int32_t)));
  const double fc = 2.0 * N * C * 4 * C;  // the MLP's first GEMM: (N, C) x (C, 4C)
  Time("linear_fc_forward_bias", fc,
       [&] { return LinearForward(y, x, w, bias, N, C, 4 * C, matmul, nullptr); });
  Time("linear_fc_backward_input", fc,
       [&] { return LinearBackwardInput(x, y, w, N, C, 4 * C, matmul, nullptr); });
  Time("linear_fc_backward_weights", fc,
       [&] { return LinearBackwardWeights(dw, nullptr, y, x, N, C, 4 * C, matmul, nullptr); });
  const double attention = 4.0 * B * NH * T * T * (C / NH);  // two GEMMs, full T x T
  Time("attention_forward", attention,
       [&] { return AttentionForward(y, att, x, scratch, B, T, C, NH, matmul, nullptr); });
  Time("attention_backward_input", 2.0 * attention,
       [&] { return AttentionBackwardInput(x, y, x, att, scratch, B, T, C, NH, matmul, nullptr); });
  Time("layernorm_forward", 0.0,
       [&] { return LayerNormForward(y, stats, stats + N, x, w, bias, N, C, nullptr); });
  Time("gelu_forward", 0.0, [&] { return GeluForward(y, x, int64_t{N} * 4 * C, nullptr); });
  Time("head_forward_loss", 2.0 * N * C * Vp, [&] {
    return HeadForwardLoss(losses, logits, x, wte, targets, 1.0f / N, N, C, V, Vp, matmul, nullptr);
  });
  return 0;
}

}  // namespace
}  // namespace stagehand::ops::cuda

int main() { return stagehand::ops::cuda::Run(); }
