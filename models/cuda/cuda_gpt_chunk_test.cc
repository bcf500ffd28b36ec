// The GPT chunk on the GPU against the CPU chunk (loss and every weight gradient of one
// microbatch, within bf16's error), and cut into two chunks against itself whole (bitwise: the
// same kernels on the same values, the tied embedding's two gradients summed as the CPU sums
// them). GPU only; skips without one.
#ifdef STAGEHAND_CUDA
#include "models/cuda/cuda_gpt_chunk.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/cuda/cuda_support.h"
#include "ops/cuda/convert.h"
#include "ops/cuda/cuda_malloc_backing.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::models::cuda {
namespace {

using ::stagehand::ops::cuda::testing::ExpectParity;
using ::stagehand::testing::IsOk;

constexpr int kB = 4, kT = 32;

struct Batch {
  std::vector<int32_t> tokens, targets;
};

Batch RandomBatch(int vocab, uint32_t seed) {
  std::mt19937 random(seed);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  Batch batch;
  for (int i = 0; i < kB * kT; ++i) {
    batch.tokens.push_back(id(random));
    batch.targets.push_back(id(random));
  }
  return batch;
}

ChunkOptions Options() {
  ChunkOptions options;
  options.micro_batch_size = kB;
  options.seq_len = kT;
  options.num_microbatches = 2;
  return options;
}

// A stream, a cuBLASLt handle and an allocator for the chunks of one test.
struct Gpu {
  Gpu() {
    EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    auto created = ops::cuda::Matmul::Create();
    EXPECT_THAT(created, IsOk());
    if (created.ok()) matmul = std::move(*created);
    allocator = std::make_unique<ops::cuda::CachingAllocator>(
        std::make_unique<ops::cuda::CudaMallocBacking>(), ops::cuda::CachingAllocatorOptions{});
  }
  ~Gpu() { cudaStreamDestroy(stream); }
  cudaStream_t stream = nullptr;
  std::unique_ptr<ops::cuda::Matmul> matmul;
  std::unique_ptr<ops::cuda::CachingAllocator> allocator;
};

// The chunk's gradients in the host chunk's layout.
std::vector<float> Grads(CudaGptChunk& chunk) {
  std::vector<float> host(chunk.size());
  EXPECT_THAT(chunk.DownloadFlat(host.data(), chunk.grads()), IsOk());
  EXPECT_EQ(cudaStreamSynchronize(chunk.stream()), cudaSuccess);
  return host;
}

std::vector<double> Doubles(const float* values, int64_t n) {
  return std::vector<double>(values, values + n);
}

TEST(CudaGptChunk, LossAndWeightGradientsTrackTheCpuChunk) {
  SKIP_WITHOUT_GPU();
  const GptConfig config = UniformGpt(2, 64, 4, 256, kT, 7);
  auto cpu = GptChunk<float>::Create(config, ChunkSpec{0, 2, true, true}, Options());
  ASSERT_THAT(cpu, IsOk());
  const Batch batch = RandomBatch(config.vocab_size, 1);
  // Two microbatches' gradients accumulate, as in a step of M = 2.
  double cpu_loss = 0;
  for (int mb = 0; mb < 2; ++mb) {
    ASSERT_THAT((*cpu)->Forward(mb, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
    cpu_loss += (*cpu)->loss(mb) / 2;
    ASSERT_THAT((*cpu)->BackwardInput(mb, nullptr), IsOk());
    ASSERT_THAT((*cpu)->BackwardWeights(mb), IsOk());
  }
  (*cpu)->FoldTiedGradients();

  Gpu gpu;
  auto chunk = CudaGptChunk::Create(**cpu, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  ASSERT_THAT(chunk, IsOk());
  ASSERT_THAT((*chunk)->SetStepMicrobatches(2), IsOk());
  double gpu_loss = 0;
  for (int mb = 0; mb < 2; ++mb) {
    ASSERT_THAT((*chunk)->Forward(mb, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
    absl::StatusOr<double> loss = (*chunk)->Loss(mb);
    ASSERT_THAT(loss, IsOk());
    gpu_loss += *loss / 2;
    ASSERT_THAT((*chunk)->BackwardInput(mb, nullptr), IsOk());
    ASSERT_THAT((*chunk)->BackwardWeights(mb), IsOk());
  }
  EXPECT_EQ((*chunk)->inflight(), 0);  // W released both microbatches
  ASSERT_THAT((*chunk)->FoldHeadGradient(), IsOk());
  const std::vector<float> grads = Grads(**chunk);
  ExpectParity("loss", {gpu_loss}, {cpu_loss}, 2e-2);
  for (const ParamInfo& info : (*cpu)->params().infos()) {
    ExpectParity(info.name.c_str(), Doubles(grads.data() + info.offset, info.size),
                 Doubles((*cpu)->params().grads() + info.offset, info.size), 5e-2);
  }
}

// Chunk A (embedding, layer 0) hands its output to chunk B (layers 1-2, the tied head) on the
// device; B's input gradient goes back to A. Every loss bit and every gradient bit is the whole
// chunk's, the tied embedding's as embedding + head (the CPU's order).
TEST(CudaGptChunk, TwoChunksAreBitwiseOneChunk) {
  SKIP_WITHOUT_GPU();
  const GptConfig config = UniformGpt(3, 64, 4, 256, kT, 11);
  auto whole_host = GptChunk<float>::Create(config, ChunkSpec{0, 3, true, true}, Options());
  auto a_host = GptChunk<float>::Create(config, ChunkSpec{0, 1, true, false}, Options());
  auto b_host = GptChunk<float>::Create(config, ChunkSpec{1, 3, false, true}, Options());
  ASSERT_THAT(whole_host, IsOk());
  ASSERT_THAT(a_host, IsOk());
  ASSERT_THAT(b_host, IsOk());
  Gpu gpu;
  auto whole =
      CudaGptChunk::Create(**whole_host, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  auto a = CudaGptChunk::Create(**a_host, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  auto b = CudaGptChunk::Create(**b_host, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  ASSERT_THAT(whole, IsOk());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  for (CudaGptChunk* c : {whole->get(), a->get(), b->get()}) {
    ASSERT_THAT(c->SetStepMicrobatches(2), IsOk());
  }
  for (int mb = 0; mb < 2; ++mb) {
    const Batch batch = RandomBatch(config.vocab_size, 100 + mb);
    ASSERT_THAT((*whole)->Forward(mb, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
    ASSERT_THAT((*a)->Forward(mb, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
    absl::StatusOr<const bf16*> out = (*a)->Output(mb);
    ASSERT_THAT(out, IsOk());
    ASSERT_THAT((*b)->Forward(mb, nullptr, *out, batch.targets.data()), IsOk());
    absl::StatusOr<double> whole_loss = (*whole)->Loss(mb), split_loss = (*b)->Loss(mb);
    ASSERT_THAT(whole_loss, IsOk());
    ASSERT_THAT(split_loss, IsOk());
    EXPECT_EQ(*whole_loss, *split_loss) << "mb " << mb;
    ASSERT_THAT((*whole)->BackwardInput(mb, nullptr), IsOk());
    ASSERT_THAT((*b)->BackwardInput(mb, nullptr), IsOk());
    absl::StatusOr<const bf16*> grad = (*b)->InputGrad(mb);
    ASSERT_THAT(grad, IsOk());
    ASSERT_THAT((*a)->BackwardInput(mb, *grad), IsOk());
    for (CudaGptChunk* c : {whole->get(), b->get(), a->get()}) {
      ASSERT_THAT(c->BackwardWeights(mb), IsOk());
    }
  }
  for (CudaGptChunk* c : {whole->get(), a->get(), b->get()}) {
    ASSERT_THAT(c->FoldHeadGradient(), IsOk());
  }
  const std::vector<float> whole_grads = Grads(**whole);
  const std::vector<float> a_grads = Grads(**a);
  const std::vector<float> b_grads = Grads(**b);
  int compared = 0;
  for (const ParamInfo& info : (*whole_host)->params().infos()) {
    std::vector<float> split(info.size, 0.0f);
    bool found = false;
    for (auto [host, grads] :
         {std::pair{a_host->get(), &a_grads}, std::pair{b_host->get(), &b_grads}}) {
      if (!host->params().contains(info.name)) continue;
      const ParamInfo& part = host->params().info(info.name);
      for (int64_t i = 0; i < info.size; ++i) split[i] += (*grads)[part.offset + i];
      found = true;
    }
    ASSERT_TRUE(found) << info.name;
    const std::vector<float> mine(whole_grads.begin() + info.offset,
                                  whole_grads.begin() + info.offset + info.size);
    EXPECT_EQ(mine, split) << info.name;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>((*whole_host)->params().infos().size()));
}

// What a microbatch holds from F to W is what CudaActivationBytes says (the trace's memory
// counter), up to the allocator's rounding of each block; W gives it all back.
TEST(CudaGptChunk, AMicrobatchHoldsItsActivationBytesUntilW) {
  SKIP_WITHOUT_GPU();
  const GptConfig config = UniformGpt(2, 64, 4, 256, kT, 3);
  const ChunkSpec spec{0, 2, true, true};
  auto host = GptChunk<float>::Create(config, spec, Options());
  ASSERT_THAT(host, IsOk());
  Gpu gpu;
  auto chunk = CudaGptChunk::Create(**host, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  ASSERT_THAT(chunk, IsOk());
  const int64_t before = gpu.allocator->stats().in_use_bytes;
  const Batch batch = RandomBatch(config.vocab_size, 9);
  ASSERT_THAT((*chunk)->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
  ASSERT_THAT((*chunk)->BackwardInput(0, nullptr), IsOk());
  const int64_t held = gpu.allocator->stats().in_use_bytes - before;
  const int64_t counted = CudaActivationBytes(config, spec, Options());
  EXPECT_GE(held, counted * 3 / 4) << counted;  // the ids' groups are an upper bound
  EXPECT_LE(held, counted * 5 / 4 + 64 * 512) << counted;
  ASSERT_THAT((*chunk)->BackwardWeights(0), IsOk());
  EXPECT_EQ(gpu.allocator->stats().in_use_bytes, before);
}

TEST(CudaGptChunk, RefusesOutOfOrderCallsAndIdsOutsideTheVocabulary) {
  SKIP_WITHOUT_GPU();
  const GptConfig config = UniformGpt(1, 64, 4, 256, kT, 3);
  auto host = GptChunk<float>::Create(config, ChunkSpec{0, 1, true, true}, Options());
  ASSERT_THAT(host, IsOk());
  Gpu gpu;
  auto chunk = CudaGptChunk::Create(**host, gpu.allocator.get(), gpu.matmul.get(), gpu.stream);
  ASSERT_THAT(chunk, IsOk());
  Batch batch = RandomBatch(config.vocab_size, 5);
  EXPECT_EQ((*chunk)->BackwardInput(0, nullptr).code(), absl::StatusCode::kFailedPrecondition);
  batch.tokens[7] = 256;
  EXPECT_EQ((*chunk)->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).code(),
            absl::StatusCode::kInvalidArgument);
  batch.tokens[7] = 1;
  ASSERT_THAT((*chunk)->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()), IsOk());
  EXPECT_EQ((*chunk)->Forward(0, batch.tokens.data(), nullptr, batch.targets.data()).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*chunk)->BackwardWeights(0).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace stagehand::models::cuda

#else
#include "gtest/gtest.h"
TEST(CudaGptChunk, SkipsWithoutTheCudaBuild) { GTEST_SKIP() << "built without --config=cuda"; }
#endif
