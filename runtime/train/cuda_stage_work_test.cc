// CudaStageWork on a GPU: actions only enqueue and complete later, in call order, with device
// times; their results appear at completion; a step's optimizer phases agree with themselves
// across two stages and one (bitwise). GPU only; skips without one.
#ifdef STAGEHAND_CUDA
#include "runtime/train/cuda_stage_work.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "models/gpt_config.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/collectives/in_process_collective.h"
#include "runtime/collectives/in_process_device_collective.h"
#include "runtime/train/optimizer.h"
#include "runtime/train/training.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::runtime {
namespace {

using ::stagehand::testing::IsOk;

constexpr int kB = 2, kT = 16, kM = 2;

std::vector<int32_t> Text() {
  std::string text;
  for (int i = 0; i < 60; ++i) text += "stages on a stream complete their work later. ";
  return std::vector<int32_t>(text.begin(), text.end());
}

models::ChunkOptions Options() {
  models::ChunkOptions o;
  o.micro_batch_size = kB;
  o.seq_len = kT;
  o.num_microbatches = kM;
  return o;
}

// Waits for the completion of the call just made (OK calls only).
struct Completions {
  std::vector<std::future<absl::Status>> pending;
  std::vector<std::pair<int64_t, int64_t>> times;
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  void After(StageWork& work) {
    auto promise = std::make_shared<std::promise<absl::Status>>();
    pending.push_back(promise->get_future());
    work.OnComplete([promise, this](absl::Status status, int64_t begin, int64_t end) {
      {
        std::lock_guard<std::mutex> lock(*mu);
        times.emplace_back(begin, end);
      }
      promise->set_value(status);
    });
  }
  void Wait() {
    for (auto& done : pending) EXPECT_THAT(done.get(), IsOk());
    pending.clear();
  }
};

// One step of the whole model on `works` (global chunk c on works[c]): F through every chunk,
// then I + W back; with data parallelism each chunk's gradient summed over the replicas in two
// buckets (REDUCE_GRAD) and the losses gathered; then the optimizer phases as the step driver
// runs them. The step's loss (over every replica's microbatches).
// `reduce_after`: the buckets still to sum once the backward ran (null: each chunk's gradient
// in two halves).
double Step(std::vector<StageWork*> works, int64_t step, Completions& completions, int m = kM,
            const std::function<void(StageWork&)>& reduce_after = nullptr) {
  std::vector<StageWork*> stages;  // each work once, for its step-wide phases
  for (StageWork* w : works) {
    if (std::find(stages.begin(), stages.end(), w) == stages.end()) stages.push_back(w);
  }
  for (StageWork* w : stages) w->BeginStep(step, m);
  double loss = 0;
  std::vector<std::vector<Payload>> acts(works.size() + 1, std::vector<Payload>(m));
  std::vector<double> losses(m, 0.0);
  for (int mb = 0; mb < m; ++mb) {
    for (size_t c = 0; c < works.size(); ++c) {
      const Payload* input = c == 0 ? nullptr : &acts[c][mb];
      EXPECT_THAT(works[c]->Forward(c, mb, input, &acts[c + 1][mb], &losses[mb]), IsOk());
      completions.After(*works[c]);
      completions.Wait();  // the next chunk reads this one's output
    }
  }
  std::vector<std::vector<Payload>> grads(works.size() + 1, std::vector<Payload>(m));
  for (int mb = 0; mb < m; ++mb) {
    for (int c = static_cast<int>(works.size()) - 1; c >= 0; --c) {
      const Payload* grad = c + 1 == static_cast<int>(works.size()) ? nullptr : &grads[c + 1][mb];
      EXPECT_THAT(works[c]->Backward(c, mb, grad, &grads[c][mb]), IsOk());
      completions.After(*works[c]);
      completions.Wait();
    }
  }
  for (StageWork* w : stages) {
    if (reduce_after) {
      reduce_after(*w);
      continue;
    }
    for (const auto& [chunk, n] : w->GradientFloats()) {  // empty without data parallelism
      EXPECT_THAT(w->ReduceGradients(GradBucket{chunk, 0, n / 2}), IsOk());
      EXPECT_THAT(w->ReduceGradients(GradBucket{chunk, n / 2, n}), IsOk());
    }
  }
  EXPECT_THAT(stages.back()->GatherLosses(&losses), IsOk());
  for (double l : losses) loss += l / losses.size();
  std::vector<const TiedGradientMap*> parts;
  std::vector<TiedGradientMap> tied;
  for (StageWork* w : stages) tied.push_back(w->TiedGradients());
  for (const TiedGradientMap& t : tied) parts.push_back(&t);
  const std::map<std::string, Payload> sums = SumTiedGradients(parts);
  for (size_t k = 0; k < stages.size(); ++k) {
    stages[k]->SetTiedGradients(SumsForHolders(tied[k], sums));
  }
  std::map<int, std::vector<double>> norms;
  for (StageWork* w : stages) {
    for (auto& [chunk, values] : w->SquaredNorms()) norms[chunk] = values;
  }
  double global = 0;
  const double scale = ClipScaleFromSquaredNorms(norms, 1.0, &global);
  for (StageWork* w : stages) w->ApplyOptimizer(scale, static_cast<int>(step));
  return loss;
}

TEST(CudaStageWork, ActionsCompleteLaterInOrderWithDeviceTimes) {
  SKIP_WITHOUT_GPU();
  const models::GptConfig model = models::UniformGpt(2, 64, 4, 256, kT, 3);
  const std::vector<int32_t> tokens = Text();
  WindowSampler sampler(&tokens, kB, kT, 9);
  auto chunks = BuildChunks(model, 1, Options());
  ASSERT_THAT(chunks, IsOk());
  OptimizerConfig optimizer;
  auto work = CudaStageWork::Create({{0, (*chunks)[0].get()}}, 1, &sampler, kM, optimizer,
                                    CudaStageOptions{});
  ASSERT_THAT(work, IsOk());
  EXPECT_TRUE((*work)->CompletesLater());
  Completions completions;
  const double first = Step({work->get()}, 1, completions);
  const double second = Step({work->get()}, 2, completions);
  EXPECT_TRUE(std::isfinite(first) && std::isfinite(second));
  EXPECT_GT(first, 0);
  ASSERT_EQ(completions.times.size(), 2u * 2 * kM);
  for (size_t i = 0; i < completions.times.size(); ++i) {
    const auto [begin, end] = completions.times[i];
    EXPECT_GT(begin, 0) << i;
    EXPECT_GE(end, begin) << i;
    if (i > 0) {
      EXPECT_GE(begin, completions.times[i - 1].second - 1000) << i;  // in order
    }
  }
  EXPECT_THAT((*work)->deferred_status(), IsOk());
  EXPECT_GT((*work)->MemoryStats().peak_in_use_bytes, 0);
  // A call that fails never completes: nothing is left for OnComplete, and the work goes on.
  Payload none;
  double loss = 0;
  EXPECT_FALSE((*work)->Forward(7, 0, nullptr, &none, &loss).ok());
}

// The model cut in two stages (two works, two streams, activations and gradients handed over
// on the device; the second stage on GPU `second_gpu`) trains bitwise like one stage holding
// both chunks (its local hand-offs through the host as floats): losses and parameters.
void ExpectTwoStagesBitwiseOneStage(int second_gpu) {
  const models::GptConfig model = models::UniformGpt(4, 64, 4, 256, kT, 5);
  const std::vector<int32_t> tokens = Text();
  WindowSampler sampler(&tokens, kB, kT, 9);
  auto one = BuildChunks(model, 2, Options());
  auto two = BuildChunks(model, 2, Options());
  ASSERT_THAT(one, IsOk());
  ASSERT_THAT(two, IsOk());
  OptimizerConfig optimizer;
  auto whole = CudaStageWork::Create({{0, (*one)[0].get()}, {1, (*one)[1].get()}}, 2, &sampler, kM,
                                     optimizer, CudaStageOptions{});
  DeviceHandoff handoff(0);
  handoff.SetChunkDevice(1, second_gpu);
  CudaStageOptions on_device;
  on_device.handoff = &handoff;
  auto first = CudaStageWork::Create({{0, (*two)[0].get()}}, 2, &sampler, kM, optimizer, on_device);
  on_device.device = second_gpu;
  auto second =
      CudaStageWork::Create({{1, (*two)[1].get()}}, 2, &sampler, kM, optimizer, on_device);
  ASSERT_THAT(whole, IsOk());
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  Completions completions;
  for (int64_t step = 1; step <= 3; ++step) {
    const double a = Step({whole->get(), whole->get()}, step, completions);
    const double b = Step({first->get(), second->get()}, step, completions);
    EXPECT_EQ(a, b) << "step " << step;
  }
  EXPECT_EQ(handoff.held(), 0);  // every tensor handed over was taken
  const std::vector<NamedTensor> p = CollectParameters({(*one)[0].get(), (*one)[1].get()});
  const std::vector<NamedTensor> q = CollectParameters({(*two)[0].get(), (*two)[1].get()});
  ASSERT_EQ(p.size(), q.size());
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i].data, q[i].data) << p[i].name;
}

TEST(CudaStageWork, TwoStagesAreBitwiseOneStage) {
  SKIP_WITHOUT_GPU();
  ExpectTwoStagesBitwiseOneStage(/*second_gpu=*/0);
}

// The second stage on another GPU: its activations and gradients cross by cudaMemcpyPeerAsync.
TEST(CudaStageWork, TwoStagesOnTwoGpusAreBitwiseOneStage) {
  SKIP_WITHOUT_GPU();
  int gpus = 0;
  ASSERT_EQ(cudaGetDeviceCount(&gpus), cudaSuccess);
  if (gpus < 2) GTEST_SKIP() << "needs two GPUs; this machine has " << gpus;
  int can = 0;
  ASSERT_EQ(cudaDeviceCanAccessPeer(&can, 0, 1), cudaSuccess);
  if (can) {  // as launch does (the copy works without, through the host)
    cudaSetDevice(0);
    cudaDeviceEnablePeerAccess(1, 0);
    cudaSetDevice(1);
    cudaDeviceEnablePeerAccess(0, 0);
    cudaGetLastError();
    cudaSetDevice(0);
  }
  ExpectTwoStagesBitwiseOneStage(/*second_gpu=*/1);
}

// Two replicas of the whole model on one GPU (each its own chunks and one work holding both),
// their buckets summed through an in-process device group, each one microbatch a step; with
// `zero_stage` 1 their moments are sharded (ZeRO-1).
// Buckets as the stage loop issues them layer by layer (PlanGradBuckets over GradientParts,
// OrderBucketsByParts): each reduced as soon as the pass reports its parts, on the reporting
// thread (as the stage's REDUCE_GRAD would start on its lane); the rest after the backward.
struct LayerBuckets {
  std::vector<GradBucket> buckets;
  std::vector<bool> done;
  int early = 0;  // buckets reduced from a report, while the pass ran
  StageWork* work = nullptr;
  void Plan(StageWork& w, double bucket_mb) {
    work = &w;
    const GradPartLayout parts = w.GradientParts();
    EXPECT_FALSE(parts.empty());
    absl::StatusOr<std::vector<GradBucket>> planned =
        PlanGradBuckets(w.GradientFloats(), bucket_mb, parts);
    EXPECT_THAT(planned.status(), IsOk());
    buckets = OrderBucketsByParts(*planned, parts);
    done.assign(buckets.size(), false);
    w.SetGradientProgress([this](int chunk, int parts_done) {
      for (size_t i = 0; i < buckets.size(); ++i) {
        if (done[i] || buckets[i].chunk != chunk || buckets[i].after_parts > parts_done) continue;
        EXPECT_THAT(work->ReduceGradients(buckets[i]), IsOk());
        done[i] = true;
        ++early;
      }
    });
  }
  void Rest() {
    for (size_t i = 0; i < buckets.size(); ++i) {
      if (!done[i]) EXPECT_THAT(work->ReduceGradients(buckets[i]), IsOk());
    }
    done.assign(buckets.size(), false);
  }
};

struct TwoReplicas {
  static constexpr int kReplicas = 2;
  InProcessGroupMembers losses = MakeInProcessGroup(kReplicas);
  InProcessGroup gradients{kReplicas};
  std::vector<std::vector<std::unique_ptr<Chunk>>> chunks;
  std::vector<std::unique_ptr<InProcessDeviceCollective>> members;
  std::vector<std::unique_ptr<CudaStageWork>> works;
  std::vector<std::vector<OptimizerState>> states;

  TwoReplicas(const models::GptConfig& model, const WindowSampler* sampler, int zero_stage) {
    states.resize(kReplicas);
    for (int d = 0; d < kReplicas; ++d) {
      auto built = BuildChunks(model, 2, Options());
      EXPECT_THAT(built, IsOk());
      chunks.push_back(std::move(*built));
      members.push_back(std::make_unique<InProcessDeviceCollective>(&gradients, d, 0));
      CudaStageOptions options;
      options.data_parallel = {d, kReplicas, losses.members[d].get(), members[d].get(), zero_stage};
      OptimizerConfig optimizer;
      optimizer.states = &states[d];
      auto work = CudaStageWork::Create({{0, chunks[d][0].get()}, {1, chunks[d][1].get()}}, 2,
                                        sampler, 1, optimizer, options);
      EXPECT_THAT(work, IsOk());
      works.push_back(std::move(*work));
    }
  }
  // Per-layer buckets from now on (each work's own plan of `bucket_mb` MiB buckets).
  std::vector<LayerBuckets> layer_buckets;
  void IssueByLayers(double bucket_mb) {
    layer_buckets.resize(kReplicas);
    for (int d = 0; d < kReplicas; ++d) layer_buckets[d].Plan(*works[d], bucket_mb);
  }
  // One step on both replicas at once (their collectives meet): each replica's loss.
  std::vector<double> Step(int64_t step) {
    std::vector<double> got(kReplicas);
    std::vector<std::thread> threads;
    for (int d = 0; d < kReplicas; ++d) {
      threads.emplace_back([&, d] {
        Completions own;
        std::function<void(StageWork&)> rest;
        if (!layer_buckets.empty()) rest = [&, d](StageWork&) { layer_buckets[d].Rest(); };
        got[d] = runtime::Step({works[d].get(), works[d].get()}, step, own, /*m=*/1, rest);
      });
    }
    for (std::thread& t : threads) t.join();
    return got;
  }
  // Every replica's moments whole in `states` (a checkpoint's export: a collective with ZeRO-1).
  void Export() {
    std::vector<std::thread> threads;
    for (int d = 0; d < kReplicas; ++d) {
      threads.emplace_back([&, d] { EXPECT_THAT(works[d]->ExportOptimizerState(), IsOk()); });
    }
    for (std::thread& t : threads) t.join();
  }
  std::vector<NamedTensor> Parameters(int d) const {
    return CollectParameters({chunks[d][0].get(), chunks[d][1].get()});
  }
};

// max |a - b| / max |b| over every element of `a` and `b` (same shapes).
double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, scale = 0;
  for (size_t k = 0; k < b.size(); ++k) {
    worst = std::max(worst, std::abs(double{a[k]} - b[k]));
    scale = std::max(scale, std::abs(double{b[k]}));
  }
  return worst / std::max(scale, 1e-30);
}

// --dp=2 on one GPU: two replicas (threads), each one microbatch a step, their buckets summed
// through the in-process device group, train like one replica of two microbatches (the same
// global batch: replica d draws microbatch d); the replicas stay bitwise equal to each other.
// Equal up to the order of the two microbatches' gradient sums, so within a tolerance.
TEST(CudaStageWork, TwoReplicasTrainLikeOneOfTwiceTheMicrobatches) {
  SKIP_WITHOUT_GPU();
  const models::GptConfig model = models::UniformGpt(2, 64, 4, 256, kT, 5);
  const std::vector<int32_t> tokens = Text();
  WindowSampler sampler(&tokens, kB, kT, 9);
  auto reference_chunks = BuildChunks(model, 2, Options());
  ASSERT_THAT(reference_chunks, IsOk());
  auto reference =
      CudaStageWork::Create({{0, (*reference_chunks)[0].get()}, {1, (*reference_chunks)[1].get()}},
                            2, &sampler, kM, OptimizerConfig{}, CudaStageOptions{});
  ASSERT_THAT(reference, IsOk());
  TwoReplicas replicas(model, &sampler, /*zero_stage=*/0);
  for (int64_t step = 1; step <= 3; ++step) {
    Completions completions;
    const double want = Step({reference->get(), reference->get()}, step, completions);
    const std::vector<double> got = replicas.Step(step);
    EXPECT_EQ(got[0], got[1]) << "step " << step;
    EXPECT_NEAR(got[0], want, 1e-5 * std::abs(want)) << "step " << step;
  }
  const std::vector<NamedTensor> want =
      CollectParameters({(*reference_chunks)[0].get(), (*reference_chunks)[1].get()});
  const std::vector<NamedTensor> r0 = replicas.Parameters(0), r1 = replicas.Parameters(1);
  ASSERT_EQ(r0.size(), want.size());
  for (size_t i = 0; i < r0.size(); ++i) {
    EXPECT_LE(RelativeError(r0[i].data, want[i].data), 1e-5) << r0[i].name;
    EXPECT_EQ(r0[i].data, r1[i].data) << r0[i].name;
  }
  for (const auto& work : replicas.works) EXPECT_THAT(work->deferred_status(), IsOk());
}

// Buckets started as their layers finish in the last backward (each waiting on the device for
// the event after its part) sum exactly what whole-chunk buckets sum: the same bits, with
// several buckets reduced while the pass still ran.
TEST(CudaStageWork, BucketsStartedLayerByLayerSumWhatWholeChunksSum) {
  SKIP_WITHOUT_GPU();
  const models::GptConfig model = models::UniformGpt(2, 64, 4, 256, kT, 5);
  const std::vector<int32_t> tokens = Text();
  WindowSampler sampler(&tokens, kB, kT, 9);
  TwoReplicas whole(model, &sampler, /*zero_stage=*/0);
  TwoReplicas layered(model, &sampler, /*zero_stage=*/0);
  layered.IssueByLayers(/*bucket_mb=*/0.01);
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<double> a = whole.Step(step), b = layered.Step(step);
    EXPECT_EQ(a, b) << "step " << step;
  }
  EXPECT_GT(layered.layer_buckets[0].buckets.size(), 4u);
  EXPECT_GT(layered.layer_buckets[0].early, 0);
  for (int d = 0; d < 2; ++d) {
    EXPECT_THAT(layered.works[d]->deferred_status(), IsOk());
    const std::vector<NamedTensor> p = whole.Parameters(d), q = layered.Parameters(d);
    for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(q[i].data, p[i].data) << p[i].name;
  }
}

// --zero=1 on one GPU: each replica holds the moments of half of every chunk's flat buffer,
// and trains like --zero=0 (the same reductions; the clip's norm summed over the owners'
// pieces). A checkpoint's export gathers the whole moments: those of --zero=0.
TEST(CudaStageWork, ZeroOneShardsTheMomentsAndTrainsLikeZeroZero) {
  SKIP_WITHOUT_GPU();
  const models::GptConfig model = models::UniformGpt(2, 64, 4, 256, kT, 5);
  const std::vector<int32_t> tokens = Text();
  WindowSampler sampler(&tokens, kB, kT, 9);
  TwoReplicas whole(model, &sampler, /*zero_stage=*/0);
  TwoReplicas sharded(model, &sampler, /*zero_stage=*/1);
  for (int d = 0; d < 2; ++d) {
    const double ratio = static_cast<double>(sharded.works[d]->OptimizerStateBytes()) /
                         whole.works[d]->OptimizerStateBytes();
    EXPECT_GT(ratio, 0.45) << "replica " << d;
    EXPECT_LT(ratio, 0.55) << "replica " << d;
  }
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<double> a = whole.Step(step), b = sharded.Step(step);
    EXPECT_EQ(b[0], b[1]) << "step " << step;
    EXPECT_NEAR(b[0], a[0], 1e-5 * std::abs(a[0])) << "step " << step;
  }
  for (int d = 0; d < 2; ++d) {
    EXPECT_THAT(sharded.works[d]->deferred_status(), IsOk());
    const std::vector<NamedTensor> p = whole.Parameters(d), q = sharded.Parameters(d);
    for (size_t i = 0; i < p.size(); ++i) {
      EXPECT_LE(RelativeError(q[i].data, p[i].data), 1e-5) << "replica " << d << " " << p[i].name;
    }
  }
  whole.Export();
  sharded.Export();
  for (int d = 0; d < 2; ++d) {
    for (int c = 0; c < 2; ++c) {
      ASSERT_EQ(sharded.states[d][c].m.size(), whole.states[d][c].m.size());
      EXPECT_LE(RelativeError(sharded.states[d][c].m, whole.states[d][c].m), 1e-4)
          << "replica " << d << " chunk " << c;
      EXPECT_LE(RelativeError(sharded.states[d][c].v, whole.states[d][c].v), 1e-4)
          << "replica " << d << " chunk " << c;
    }
  }
}

}  // namespace
}  // namespace stagehand::runtime

#else
#include "gtest/gtest.h"
TEST(CudaStageWork, SkipsWithoutTheCudaBuild) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
