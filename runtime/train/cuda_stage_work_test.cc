// CudaStageWork on a GPU: actions only enqueue and complete later, in call order, with device
// times; their results appear at completion; a step's optimizer phases agree with themselves
// across two stages and one (bitwise). GPU only; skips without one.
#ifdef STAGEHAND_CUDA
#include "runtime/train/cuda_stage_work.h"

#include <algorithm>
#include <cmath>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "models/gpt_config.h"
#include "ops/cuda/gpu_test_util.h"
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
// then I + W back; then the optimizer phases as the step driver runs them. The step's loss.
double Step(std::vector<StageWork*> works, int64_t step, Completions& completions) {
  std::vector<StageWork*> stages;  // each work once, for its step-wide phases
  for (StageWork* w : works) {
    if (std::find(stages.begin(), stages.end(), w) == stages.end()) stages.push_back(w);
  }
  for (StageWork* w : stages) w->BeginStep(step, kM);
  double loss = 0;
  std::vector<std::vector<Payload>> acts(works.size() + 1, std::vector<Payload>(kM));
  std::vector<double> losses(kM, 0.0);
  for (int mb = 0; mb < kM; ++mb) {
    for (size_t c = 0; c < works.size(); ++c) {
      const Payload* input = c == 0 ? nullptr : &acts[c][mb];
      EXPECT_THAT(works[c]->Forward(c, mb, input, &acts[c + 1][mb], &losses[mb]), IsOk());
      completions.After(*works[c]);
      completions.Wait();  // the next chunk reads this one's output
    }
  }
  std::vector<std::vector<Payload>> grads(works.size() + 1, std::vector<Payload>(kM));
  for (int mb = 0; mb < kM; ++mb) {
    for (int c = static_cast<int>(works.size()) - 1; c >= 0; --c) {
      const Payload* grad = c + 1 == static_cast<int>(works.size()) ? nullptr : &grads[c + 1][mb];
      EXPECT_THAT(works[c]->Backward(c, mb, grad, &grads[c][mb]), IsOk());
      completions.After(*works[c]);
      completions.Wait();
    }
  }
  for (double l : losses) loss += l / kM;
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
    if (i > 0) EXPECT_GE(begin, completions.times[i - 1].second - 1000) << i;  // in order
  }
  EXPECT_THAT((*work)->deferred_status(), IsOk());
  EXPECT_GT((*work)->MemoryStats().peak_in_use_bytes, 0);
  // A call that fails never completes: nothing is left for OnComplete, and the work goes on.
  Payload none;
  double loss = 0;
  EXPECT_FALSE((*work)->Forward(7, 0, nullptr, &none, &loss).ok());
}

// The model cut in two stages (two works, two streams, activations and gradients handed over
// on the device) trains bitwise like one stage holding both chunks (its local hand-offs through
// the host as floats): losses and parameters.
TEST(CudaStageWork, TwoStagesAreBitwiseOneStage) {
  SKIP_WITHOUT_GPU();
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
  CudaStageOptions on_device;
  on_device.handoff = &handoff;
  auto first = CudaStageWork::Create({{0, (*two)[0].get()}}, 2, &sampler, kM, optimizer, on_device);
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

}  // namespace
}  // namespace stagehand::runtime

#else
#include "gtest/gtest.h"
TEST(CudaStageWork, SkipsWithoutTheCudaBuild) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
