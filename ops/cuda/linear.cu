// Linear layer on the GPU: three cuBLASLt products (bias fused into the forward's epilogue) and
// a deterministic column-sum kernel for the bias gradient. Not a GEMM kernel of our own.
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/linear.h"

namespace stagehand::ops::cuda {
namespace {

constexpr int kColumnsPerBlock = 32;
constexpr int kRowLanes = 8;

// Block (32, 8): threadIdx.x picks a column, threadIdx.y a lane of rows; lanes are summed in a
// fixed order, so the result does not depend on scheduling.
__global__ void ColumnSumKernel(float* sums, const bf16* x, int N, int OC) {
  __shared__ float partial[kRowLanes][kColumnsPerBlock];
  const int column = blockIdx.x * kColumnsPerBlock + threadIdx.x;
  float sum = 0.0f;
  if (column < OC) {
    for (int row = threadIdx.y; row < N; row += kRowLanes) {
      sum += __bfloat162float(x[static_cast<int64_t>(row) * OC + column]);
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && column < OC) {
    float total = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) total += partial[lane][threadIdx.x];
    sums[column] += total;
  }
}

}  // namespace

absl::Status ColumnSumAccumulate(float* dbias, const bf16* dout, int N, int OC,
                                 cudaStream_t stream) {
  const dim3 block(kColumnsPerBlock, kRowLanes);
  const int grid = (OC + kColumnsPerBlock - 1) / kColumnsPerBlock;
  ColumnSumKernel<<<grid, block, 0, stream>>>(dbias, dout, N, OC);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

// Column-major: out^T (OC, N) = weight (stored (C, OC), transposed) @ inp (stored (C, N)).
absl::Status LinearForward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N,
                           int C, int OC, Matmul& matmul, cudaStream_t stream) {
  MatmulArgs args;
  args.transpose_a = true;
  args.m = OC;
  args.n = N;
  args.k = C;
  args.a = weight;
  args.lda = C;
  args.b = inp;
  args.ldb = C;
  args.d = out;
  args.ldd = OC;
  args.bias = bias;
  return matmul.Run(args, stream);
}

// Column-major: dinp^T (C, N) += weight (stored (C, OC)) @ dout^T (stored (OC, N)).
absl::Status LinearBackwardInput(bf16* dinp, const bf16* dout, const bf16* weight, int N, int C,
                                 int OC, Matmul& matmul, cudaStream_t stream) {
  MatmulArgs args;
  args.m = C;
  args.n = N;
  args.k = OC;
  args.a = weight;
  args.lda = C;
  args.b = dout;
  args.ldb = OC;
  args.d = dinp;
  args.ldd = C;
  args.beta = 1.0f;
  return matmul.Run(args, stream);
}

// Column-major: dweight^T (C, OC) += inp^T (stored (C, N)) @ dout (stored (OC, N), transposed).
absl::Status LinearBackwardWeights(float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                                   int N, int C, int OC, Matmul& matmul, cudaStream_t stream) {
  MatmulArgs args;
  args.transpose_b = true;
  args.m = C;
  args.n = OC;
  args.k = N;
  args.a = inp;
  args.lda = C;
  args.b = dout;
  args.ldb = OC;
  args.d = dweight;
  args.ldd = C;
  args.d_is_float = true;
  args.beta = 1.0f;
  absl::Status status = matmul.Run(args, stream);
  if (!status.ok() || dbias == nullptr) return status;
  return ColumnSumAccumulate(dbias, dout, N, OC, stream);
}

}  // namespace stagehand::ops::cuda
