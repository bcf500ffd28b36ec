// Throughput of the CPU ops at GPT-2 124M shapes: the three linear GEMMs next to raw
// cblas_sgemm on the same GEMM, causal attention, and layernorm. Not a correctness test.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <cstdint>
#include <random>
#include <vector>

#include "ops/cpu/attention.h"
#include "ops/cpu/layernorm.h"
#include "ops/cpu/linear.h"

namespace stagehand::ops {
namespace {

// Letters: N rows (B*T), C input channels, OC output channels; B batch, T time, NH heads.
std::vector<float> RandomFloats(int64_t n, uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(-1.f, 1.f);
  std::vector<float> values(n);
  for (float& value : values) value = distribution(generator);
  return values;
}

// Sets a GFLOP/s rate counter from the work of one iteration.
void ReportGflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
}

struct LinearBuffers {
  LinearBuffers(int N, int C, int OC)
      : inp(RandomFloats(int64_t{N} * C, 1)),
        weight(RandomFloats(int64_t{OC} * C, 2)),
        bias(RandomFloats(OC, 3)),
        out(RandomFloats(int64_t{N} * OC, 4)),
        dinp(int64_t{N} * C, 0.f),
        dweight(int64_t{OC} * C, 0.f),
        dbias(OC, 0.f) {}
  std::vector<float> inp;      // (N, C)
  std::vector<float> weight;   // (OC, C)
  std::vector<float> bias;     // (OC)
  std::vector<float> out;      // (N, OC), also used as dout
  std::vector<float> dinp;     // (N, C)
  std::vector<float> dweight;  // (OC, C)
  std::vector<float> dbias;    // (OC)
};

enum class Gemm { kForward, kBackwardInput, kBackwardWeights };

void BM_Linear(benchmark::State& state, Gemm gemm) {
  const int N = state.range(0), C = state.range(1), OC = state.range(2);
  LinearBuffers buffers(N, C, OC);
  for (auto _ : state) {
    switch (gemm) {
      case Gemm::kForward:
        LinearForward(buffers.out.data(), buffers.inp.data(), buffers.weight.data(),
                      buffers.bias.data(), N, C, OC);
        break;
      case Gemm::kBackwardInput:
        LinearBackwardInput(buffers.dinp.data(), buffers.out.data(), buffers.weight.data(), N, C,
                            OC);
        break;
      case Gemm::kBackwardWeights:
        LinearBackwardWeights(buffers.dweight.data(), buffers.dbias.data(), buffers.out.data(),
                              buffers.inp.data(), N, C, OC);
        break;
    }
    benchmark::ClobberMemory();
  }
  ReportGflops(state, 2.0 * N * C * OC);
}

// The same GEMM as BM_Linear, straight to cblas_sgemm with OpenBLAS's own threading (as many
// threads as OpenMP would use). The linear op pins OpenBLAS to one thread and tiles instead.
void BM_RawSgemm(benchmark::State& state, Gemm gemm) {
  const int N = state.range(0), C = state.range(1), OC = state.range(2);
  LinearBuffers buffers(N, C, OC);
  openblas_set_num_threads(omp_get_max_threads());
  for (auto _ : state) {
    switch (gemm) {
      case Gemm::kForward:  // out (N, OC) = inp @ weight^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.f, buffers.inp.data(), C,
                    buffers.weight.data(), C, 1.f, buffers.out.data(), OC);
        break;
      case Gemm::kBackwardInput:  // dinp (N, C) += dout @ weight
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.f, buffers.out.data(),
                    OC, buffers.weight.data(), C, 1.f, buffers.dinp.data(), C);
        break;
      case Gemm::kBackwardWeights:  // dweight (OC, C) += dout^T @ inp
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.f, buffers.out.data(), OC,
                    buffers.inp.data(), C, 1.f, buffers.dweight.data(), C);
        break;
    }
    benchmark::ClobberMemory();
  }
  ReportGflops(state, 2.0 * N * C * OC);
}

// GPT-2 124M's GEMMs (C -> OC): qkv, attention projection, MLP up, MLP down, LM head; at
// B = 4 with T = 64 (N = 256) and T = 256 (N = 1024).
void LinearShapes(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"N", "C", "OC"});
  for (int N : {256, 1024}) {
    for (auto [C, OC] : {std::pair{768, 2304}, std::pair{768, 768}, std::pair{768, 3072},
                         std::pair{3072, 768}, std::pair{768, 50257}}) {
      benchmark->Args({N, C, OC});
    }
  }
  benchmark->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_Linear, Forward, Gemm::kForward)->Apply(LinearShapes);
BENCHMARK_CAPTURE(BM_RawSgemm, Forward, Gemm::kForward)->Apply(LinearShapes);
BENCHMARK_CAPTURE(BM_Linear, BackwardInput, Gemm::kBackwardInput)->Apply(LinearShapes);
BENCHMARK_CAPTURE(BM_RawSgemm, BackwardInput, Gemm::kBackwardInput)->Apply(LinearShapes);
BENCHMARK_CAPTURE(BM_Linear, BackwardWeights, Gemm::kBackwardWeights)->Apply(LinearShapes);
BENCHMARK_CAPTURE(BM_RawSgemm, BackwardWeights, Gemm::kBackwardWeights)->Apply(LinearShapes);

// GFLOP/s counts the dense (T, T) GEMMs, 2 forward and 4 backward, as if nothing were masked;
// the op skips most of the masked triangle, so the useful rate is lower.
void BM_Attention(benchmark::State& state, bool backward) {
  const int B = state.range(0), T = state.range(1), C = state.range(2), NH = state.range(3);
  const auto qkv = RandomFloats(int64_t{B} * T * 3 * C, 1);
  const auto dout = RandomFloats(int64_t{B} * T * C, 2);
  std::vector<float> out(int64_t{B} * T * C), att(int64_t{B} * NH * T * T);
  std::vector<float> dqkv(qkv.size(), 0.f);
  AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  for (auto _ : state) {
    if (backward) {
      AttentionBackwardInput(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH);
    } else {
      AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    }
    benchmark::ClobberMemory();
  }
  const double dense_gemm_flops = 2.0 * B * T * T * C;  // one (T, T, hs) GEMM for every head
  ReportGflops(state, (backward ? 4 : 2) * dense_gemm_flops);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(B) * T * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void AttentionShapes(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgNames({"B", "T", "C", "NH"});
  for (int T : {64, 256}) benchmark->Args({4, T, 768, 12});
  benchmark->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_Attention, Forward, false)->Apply(AttentionShapes);
BENCHMARK_CAPTURE(BM_Attention, Backward, true)->Apply(AttentionShapes);

void BM_LayerNormForward(benchmark::State& state) {
  const int N = state.range(0), C = state.range(1);
  const auto inp = RandomFloats(int64_t{N} * C, 1);
  const auto weight = RandomFloats(C, 2), bias = RandomFloats(C, 3);
  std::vector<float> out(int64_t{N} * C), mean(N), rstd(N);
  for (auto _ : state) {
    LayerNormForward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(),
                     N, C);
    benchmark::ClobberMemory();
  }
  // Bytes that must move: inp read, out written.
  state.counters["GB/s"] = benchmark::Counter(
      2.0 * N * C * sizeof(float) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

BENCHMARK(BM_LayerNormForward)
    ->ArgNames({"N", "C"})
    ->Args({1024, 768})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace stagehand::ops

BENCHMARK_MAIN();
