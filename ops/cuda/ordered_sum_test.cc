// The GPU's ordered sum against runtime::SumInMemberOrder on the host, bit for bit: parts of
// mixed magnitudes (so that another order would round differently), more parts than one launch
// takes, the output aliasing part 0, the output poisoned first. GPU only.
#ifdef STAGEHAND_CUDA
#include "ops/cuda/ordered_sum.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "runtime/collectives/collective.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using testing::DeviceArray;
using testing::RoundedToFloat;

constexpr int64_t kN = 2 * 4096 + 33;

// `count` parts whose magnitudes differ by up to 2^20, so that summing them in another order
// (a tree, or from the last) changes low bits of many elements.
std::vector<std::vector<float>> Parts(int count) {
  std::vector<std::vector<float>> parts;
  for (int j = 0; j < count; ++j) {
    const double scale = static_cast<double>(1 << (j * 7 % 21));
    std::vector<float> part;
    for (double v : RandomVector(kN, 100 + j, -scale, scale)) part.push_back(static_cast<float>(v));
    parts.push_back(std::move(part));
  }
  return parts;
}

std::vector<double> HostSum(const std::vector<std::vector<float>>& parts) {
  std::vector<absl::Span<const float>> spans(parts.begin(), parts.end());
  std::vector<float> out(kN);
  EXPECT_THAT(runtime::SumInMemberOrder(spans, absl::MakeSpan(out)), IsOk());
  return std::vector<double>(out.begin(), out.end());
}

void CheckCount(int count, bool alias_first) {
  const std::vector<std::vector<float>> parts = Parts(count);
  std::vector<std::unique_ptr<DeviceArray<float>>> device;
  std::vector<const float*> pointers;
  for (const std::vector<float>& part : parts) {
    device.push_back(std::make_unique<DeviceArray<float>>(kN));
    device.back()->UploadRaw(part);
    pointers.push_back(device.back()->get());
  }
  DeviceArray<float> out(kN);  // poisoned
  float* target = alias_first ? device[0]->get() : out.get();
  ASSERT_THAT(SumInMemberOrder(pointers, target, kN, nullptr), IsOk());
  const std::vector<double> got = alias_first ? device[0]->Download() : out.Download();
  const std::vector<double> want = HostSum(parts);
  int64_t differ = 0;
  for (int64_t i = 0; i < kN; ++i) differ += got[i] != want[i];
  EXPECT_EQ(differ, 0) << count << " parts: elements not bitwise the host's ordered sum";
}

TEST(OrderedSumCudaTest, IsTheHostsOrderedSumBitForBit) {
  SKIP_WITHOUT_GPU();
  for (int count : {1, 2, 3, 8}) CheckCount(count, /*alias_first=*/false);
}

TEST(OrderedSumCudaTest, MorePartsThanOneLaunchKeepTheOrder) {
  SKIP_WITHOUT_GPU();
  CheckCount(70, /*alias_first=*/false);
}

TEST(OrderedSumCudaTest, TheOutputMayBePartZero) {
  SKIP_WITHOUT_GPU();
  CheckCount(5, /*alias_first=*/true);
}

// The test can fail: the reverse order gives other bits for these parts.
TEST(OrderedSumCudaTest, AnotherOrderWouldDiffer) {
  const std::vector<std::vector<float>> parts = Parts(8);
  std::vector<std::vector<float>> reversed(parts.rbegin(), parts.rend());
  const std::vector<double> forward = HostSum(parts), backward = HostSum(reversed);
  int64_t differ = 0;
  for (int64_t i = 0; i < kN; ++i) differ += forward[i] != backward[i];
  EXPECT_GT(differ, kN / 100);
}

TEST(OrderedSumCudaTest, RefusesNoPartsAndAnOutputAliasingALaterPart) {
  SKIP_WITHOUT_GPU();
  DeviceArray<float> a(16), b(16);
  EXPECT_THAT(SumInMemberOrder({}, a.get(), 16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SumInMemberOrder({a.get(), b.get()}, b.get(), 16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("part 1")));
  EXPECT_THAT(SumInMemberOrder({a.get(), nullptr}, a.get(), 16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("null")));
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(OrderedSumCudaTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
