// Attention on the GPU: qkv permuted to per-head q, k, v; scores by a batched cuBLASLt GEMM into
// fp32; a causal softmax kernel (one warp per row); att @ v by a second GEMM; and the mirror
// image for the input-gradient. Not flash attention (see attention.h for why).
#include <cmath>
#include <cstdint>

#include "ops/cuda/attention.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/reduce.cuh"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {
namespace {

constexpr int kRowsPerBlock = kBlockSize / kWarpSize;

// Scratch layout, shared by forward and backward (offsets in bytes, each 256-aligned):
//   q, k, v, y (B, NH, T, hs) bf16 each (y: the head-major output, or its gradient);
//   scores (B, NH, T, T) fp32 (forward: pre-softmax scores; backward: d att);
//   dscores (B, NH, T, T) bf16 (backward: d pre-softmax scores);
//   dq, dk, dv (B, NH, T, hs) bf16 (backward).
struct ScratchLayout {
  bf16* q;
  bf16* k;
  bf16* v;
  bf16* y;
  float* scores;
  bf16* dscores;
  bf16* dq;
  bf16* dk;
  bf16* dv;
};

size_t AlignUp(size_t bytes) { return (bytes + 255) / 256 * 256; }

size_t HeadBytes(int B, int T, int C) {
  return AlignUp(static_cast<size_t>(B) * T * C * sizeof(bf16));
}
size_t PairCount(int B, int T, int NH) { return static_cast<size_t>(B) * NH * T * T; }

ScratchLayout LayoutScratch(void* scratch, int B, int T, int C, int NH) {
  const size_t head_bytes = HeadBytes(B, T, C);
  const size_t pairs = PairCount(B, T, NH);
  char* next = static_cast<char*>(scratch);
  auto take = [&next](size_t bytes) {
    char* pointer = next;
    next += AlignUp(bytes);
    return pointer;
  };
  ScratchLayout layout;
  layout.q = reinterpret_cast<bf16*>(take(head_bytes));
  layout.k = reinterpret_cast<bf16*>(take(head_bytes));
  layout.v = reinterpret_cast<bf16*>(take(head_bytes));
  layout.y = reinterpret_cast<bf16*>(take(head_bytes));
  layout.scores = reinterpret_cast<float*>(take(pairs * sizeof(float)));
  layout.dscores = reinterpret_cast<bf16*>(take(pairs * sizeof(bf16)));
  layout.dq = reinterpret_cast<bf16*>(take(head_bytes));
  layout.dk = reinterpret_cast<bf16*>(take(head_bytes));
  layout.dv = reinterpret_cast<bf16*>(take(head_bytes));
  return layout;
}

// qkv (B, T, 3, NH, hs) -> q, k, v (B, NH, T, hs).
__global__ void PermuteKernel(bf16* q, bf16* k, bf16* v, const bf16* qkv, int B, int T, int NH,
                              int hs) {
  const int C = NH * hs;
  const int64_t n = static_cast<int64_t>(B) * NH * T * hs;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % hs);
    const int t = static_cast<int>(i / hs % T);
    const int h = static_cast<int>(i / (static_cast<int64_t>(hs) * T) % NH);
    const int64_t b = i / (static_cast<int64_t>(hs) * T * NH);
    const int64_t source = (b * T + t) * 3 * C + h * hs + d;
    q[i] = qkv[source];
    k[i] = qkv[source + C];
    v[i] = qkv[source + 2 * C];
  }
}

// y (B, NH, T, hs) -> out (B, T, NH, hs).
__global__ void UnpermuteKernel(bf16* out, const bf16* y, int B, int T, int NH, int hs) {
  const int64_t n = static_cast<int64_t>(B) * NH * T * hs;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % hs);
    const int t = static_cast<int>(i / hs % T);
    const int h = static_cast<int>(i / (static_cast<int64_t>(hs) * T) % NH);
    const int64_t b = i / (static_cast<int64_t>(hs) * T * NH);
    out[((b * T + t) * NH + h) * hs + d] = y[i];
  }
}

// dout (B, T, NH, hs) -> dy (B, NH, T, hs).
__global__ void PermuteOutputGradKernel(bf16* dy, const bf16* dout, int B, int T, int NH, int hs) {
  const int64_t n = static_cast<int64_t>(B) * NH * T * hs;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % hs);
    const int t = static_cast<int>(i / hs % T);
    const int h = static_cast<int>(i / (static_cast<int64_t>(hs) * T) % NH);
    const int64_t b = i / (static_cast<int64_t>(hs) * T * NH);
    dy[i] = dout[((b * T + t) * NH + h) * hs + d];
  }
}

// dqkv (B, T, 3, NH, hs) += dq, dk, dv (B, NH, T, hs).
__global__ void AccumulateQkvGradKernel(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv,
                                        int B, int T, int NH, int hs) {
  const int C = NH * hs;
  const int64_t n = static_cast<int64_t>(B) * NH * T * hs;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(i % hs);
    const int t = static_cast<int>(i / hs % T);
    const int h = static_cast<int>(i / (static_cast<int64_t>(hs) * T) % NH);
    const int64_t b = i / (static_cast<int64_t>(hs) * T * NH);
    bf16* target = dqkv + (b * T + t) * 3 * C + h * hs + d;
    target[0] = __float2bfloat16(__bfloat162float(target[0]) + __bfloat162float(dq[i]));
    target[C] = __float2bfloat16(__bfloat162float(target[C]) + __bfloat162float(dk[i]));
    target[2 * C] = __float2bfloat16(__bfloat162float(target[2 * C]) + __bfloat162float(dv[i]));
  }
}

// One warp per query row of scores (B*NH*T rows of T, already scaled by 1/sqrt(hs)): att is the
// softmax over keys 0..t, zero above the diagonal.
__global__ void CausalSoftmaxKernel(bf16* att, const float* scores, int rows, int T) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  const float* x = scores + row * T;
  bf16* y = att + row * T;
  float local_max = -INFINITY;
  for (int j = lane; j <= t; j += kWarpSize) local_max = fmaxf(local_max, x[j]);
  const float max_score = WarpMax(local_max);
  float local_sum = 0.0f;
  for (int j = lane; j <= t; j += kWarpSize) local_sum += expf(x[j] - max_score);
  const float inverse_sum = 1.0f / WarpSum(local_sum);
  for (int j = lane; j < T; j += kWarpSize) {
    y[j] = __float2bfloat16(j <= t ? expf(x[j] - max_score) * inverse_sum : 0.0f);
  }
}

// One warp per row: dscores[j] = scale * att[j] * (datt[j] - sum_i att[i] datt[i]) for j <= t,
// zero above the diagonal. scale = 1/sqrt(hs), the factor the scores were multiplied by.
__global__ void CausalSoftmaxBackwardKernel(bf16* dscores, const float* datt, const bf16* att,
                                            float scale, int rows, int T) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const int t = static_cast<int>(row % T);
  const float* g = datt + row * T;
  const bf16* p = att + row * T;
  float local_dot = 0.0f;
  for (int j = lane; j <= t; j += kWarpSize) local_dot += __bfloat162float(p[j]) * g[j];
  const float dot = WarpSum(local_dot);
  bf16* d = dscores + row * T;
  for (int j = lane; j < T; j += kWarpSize) {
    d[j] = __float2bfloat16(j <= t ? scale * __bfloat162float(p[j]) * (g[j] - dot) : 0.0f);
  }
}

// A strided-batched GEMM over the B*NH heads, column-major as MatmulArgs describes.
MatmulArgs HeadGemm(bool transpose_a, bool transpose_b, int m, int n, int k, const void* a, int lda,
                    int64_t stride_a, const void* b, int ldb, int64_t stride_b, void* d, int ldd,
                    int64_t stride_d, int batches) {
  MatmulArgs args;
  args.transpose_a = transpose_a;
  args.transpose_b = transpose_b;
  args.m = m;
  args.n = n;
  args.k = k;
  args.a = a;
  args.lda = lda;
  args.stride_a = stride_a;
  args.b = b;
  args.ldb = ldb;
  args.stride_b = stride_b;
  args.d = d;
  args.ldd = ldd;
  args.stride_d = stride_d;
  args.batch_count = batches;
  return args;
}

// The sizes both passes use: head size hs, B*NH heads (GEMM batches), one head's (T, hs) and
// (T, T) strides, the B*NH*T softmax rows and the B*T*C elements of qkv's thirds.
struct HeadSizes {
  int hs;
  int batches;
  int64_t head, square;
  int rows;
  int64_t elements;
};

HeadSizes HeadSizesOf(int B, int T, int C, int NH) {
  const int hs = C / NH;
  return HeadSizes{hs,
                   B * NH,
                   static_cast<int64_t>(T) * hs,
                   static_cast<int64_t>(T) * T,
                   B * NH * T,
                   static_cast<int64_t>(B) * T * C};
}

// q, k, v of (B, T, 3C) qkv into the scratch's (B, NH, T, hs) buffers.
absl::Status PermuteQkv(const ScratchLayout& s, const bf16* qkv, int B, int T, int C, int NH,
                        cudaStream_t stream) {
  const HeadSizes n = HeadSizesOf(B, T, C, NH);
  PermuteKernel<<<GridFor(n.elements), kBlockSize, 0, stream>>>(s.q, s.k, s.v, qkv, B, T, NH, n.hs);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace

size_t AttentionScratchBytes(int B, int T, int C, int NH) {
  // Seven (B, NH, T, hs) bf16 buffers (q, k, v, y, dq, dk, dv), scores fp32, dscores bf16.
  return 7 * HeadBytes(B, T, C) + AlignUp(PairCount(B, T, NH) * sizeof(float)) +
         AlignUp(PairCount(B, T, NH) * sizeof(bf16));
}

absl::Status AttentionForward(bf16* out, bf16* att, const bf16* qkv, void* scratch, int B, int T,
                              int C, int NH, Matmul& matmul, cudaStream_t stream) {
  const auto [hs, batches, head, square, rows, elements] = HeadSizesOf(B, T, C, NH);
  const ScratchLayout s = LayoutScratch(scratch, B, T, C, NH);
  RETURN_IF_ERROR(PermuteQkv(s, qkv, B, T, C, NH, stream));
  // scores^T (Tk, Tq) = k (stored (hs, Tk), transposed) @ q (stored (hs, Tq)), times 1/sqrt(hs).
  MatmulArgs scores =
      HeadGemm(true, false, T, T, hs, s.k, hs, head, s.q, hs, head, s.scores, T, square, batches);
  scores.d_is_float = true;
  scores.alpha = 1.0f / std::sqrt(static_cast<float>(hs));
  RETURN_IF_ERROR(matmul.Run(scores, stream));
  CausalSoftmaxKernel<<<(rows + kRowsPerBlock - 1) / kRowsPerBlock, kBlockSize, 0, stream>>>(
      att, s.scores, rows, T);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  // y^T (hs, Tq) = v (stored (hs, Tk)) @ att^T (stored (Tk, Tq)).
  RETURN_IF_ERROR(matmul.Run(
      HeadGemm(false, false, hs, T, T, s.v, hs, head, att, T, square, s.y, hs, head, batches),
      stream));
  UnpermuteKernel<<<GridFor(elements), kBlockSize, 0, stream>>>(out, s.y, B, T, NH, hs);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status AttentionBackwardInput(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att,
                                    void* scratch, int B, int T, int C, int NH, Matmul& matmul,
                                    cudaStream_t stream) {
  const auto [hs, batches, head, square, rows, elements] = HeadSizesOf(B, T, C, NH);
  const ScratchLayout s = LayoutScratch(scratch, B, T, C, NH);
  RETURN_IF_ERROR(PermuteQkv(s, qkv, B, T, C, NH, stream));
  PermuteOutputGradKernel<<<GridFor(elements), kBlockSize, 0, stream>>>(s.y, dout, B, T, NH, hs);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  // datt^T (Tk, Tq) = v (stored (hs, Tk), transposed) @ dy (stored (hs, Tq)); into fp32 scores.
  MatmulArgs datt =
      HeadGemm(true, false, T, T, hs, s.v, hs, head, s.y, hs, head, s.scores, T, square, batches);
  datt.d_is_float = true;
  RETURN_IF_ERROR(matmul.Run(datt, stream));
  // dv^T (hs, Tk) = dy (stored (hs, Tq)) @ att (stored (Tk, Tq), transposed).
  RETURN_IF_ERROR(matmul.Run(
      HeadGemm(false, true, hs, T, T, s.y, hs, head, att, T, square, s.dv, hs, head, batches),
      stream));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  CausalSoftmaxBackwardKernel<<<(rows + kRowsPerBlock - 1) / kRowsPerBlock, kBlockSize, 0,
                                stream>>>(s.dscores, s.scores, att, scale, rows, T);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  // dq^T (hs, Tq) = k (stored (hs, Tk)) @ dscores^T (stored (Tk, Tq)).
  RETURN_IF_ERROR(matmul.Run(HeadGemm(false, false, hs, T, T, s.k, hs, head, s.dscores, T, square,
                                      s.dq, hs, head, batches),
                             stream));
  // dk^T (hs, Tk) = q (stored (hs, Tq)) @ dscores (stored (Tk, Tq), transposed).
  RETURN_IF_ERROR(matmul.Run(
      HeadGemm(false, true, hs, T, T, s.q, hs, head, s.dscores, T, square, s.dk, hs, head, batches),
      stream));
  AccumulateQkvGradKernel<<<GridFor(elements), kBlockSize, 0, stream>>>(dqkv, s.dq, s.dk, s.dv, B,
                                                                        T, NH, hs);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
