// NCCL on one GPU: a one-rank communicator sums a buffer onto itself (the path every NCCL
// transport uses), and NCCL errors become statuses. GPU only; two-process runs are not here.
#ifdef STAGEHAND_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ops/cpu/test_util.h"
#include "ops/cuda/gpu_test_util.h"
#include "ops/cuda/nccl_status.h"
#include "runtime/util/status_matchers.h"

namespace stagehand::ops::cuda {
namespace {

using ::stagehand::ops::testing::RandomVector;
using ::stagehand::testing::IsOk;
using ::stagehand::testing::StatusIs;
using testing::DeviceArray;
using testing::ExpectParity;
using testing::RoundedToFloat;

TEST(NcclStatusTest, InvalidArgumentNamesTheCall) {
  EXPECT_THAT(NcclStatus(ncclInvalidArgument, "ncclSend(...)", "t.cc", 4),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("ncclSend")));
  EXPECT_THAT(NcclStatus(ncclSuccess, "ncclSend(...)", "t.cc", 4), IsOk());
}

absl::Status OneRankAllReduce(float* buffer, int64_t n) {
  ncclUniqueId id;
  NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  ncclComm_t comm;
  NCCL_RETURN_IF_ERROR(ncclCommInitRank(&comm, 1, id, 0));
  const ncclResult_t reduced =
      ncclAllReduce(buffer, buffer, static_cast<size_t>(n), ncclFloat, ncclSum, comm, nullptr);
  const ncclResult_t destroyed = ncclCommDestroy(comm);
  NCCL_RETURN_IF_ERROR(reduced);
  NCCL_RETURN_IF_ERROR(destroyed);
  return absl::OkStatus();
}

TEST(NcclTest, OneRankAllReduceKeepsTheBuffer) {
  SKIP_WITHOUT_GPU();
  constexpr int64_t kN = 4097;
  const std::vector<double> values = RoundedToFloat(RandomVector(kN, 1));
  DeviceArray<float> buffer(kN);
  buffer.Upload(values);
  ASSERT_THAT(OneRankAllReduce(buffer.get(), kN), IsOk());
  ExpectParity("buffer", buffer.Download(), values, 1e-7);
}

}  // namespace
}  // namespace stagehand::ops::cuda
#else
#include "gtest/gtest.h"
TEST(NcclTest, BuiltWithoutConfigCuda) { GTEST_SKIP() << "built without --config=cuda"; }
#endif  // STAGEHAND_CUDA
