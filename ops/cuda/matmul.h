// GEMMs through cuBLASLt: a handle with its workspace, and one column-major Matmul call that
// the ops (linear, attention, head) describe their products with. bf16 inputs, fp32 compute.
// Not a tensor library and not a BLAS for the CPU (ops/cpu/blas.h).
#ifndef STAGEHAND_OPS_CUDA_MATMUL_H_
#define STAGEHAND_OPS_CUDA_MATMUL_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace stagehand::ops::cuda {

// d (m, n) = alpha * op(a) (m, k) @ op(b) (k, n) + beta * d, column-major (cuBLAS's view:
// a row-major (R, S) tensor is a column-major (S, R) matrix with leading dimension S).
// a and b are bf16; d is bf16 or fp32 (d_is_float); accumulation is fp32.
struct MatmulArgs {
  bool transpose_a = false;
  bool transpose_b = false;
  int m = 0;
  int n = 0;
  int k = 0;
  const void* a = nullptr;
  int lda = 0;  // leading dimension of a as stored (rows of the stored matrix)
  const void* b = nullptr;
  int ldb = 0;
  void* d = nullptr;
  int ldd = 0;
  bool d_is_float = false;
  float alpha = 1.0f;
  float beta = 0.0f;  // 1 accumulates into d
  // Optional bf16 bias (m), added to every column of d by cuBLASLt's BIAS epilogue.
  const void* bias = nullptr;
  // Strided batches (attention): batch_count products, operands stride_* elements apart.
  int batch_count = 1;
  int64_t stride_a = 0;
  int64_t stride_b = 0;
  int64_t stride_d = 0;
};

class Matmul {
 public:
  // 32 MiB: what cuBLASLt's Hopper kernels ask for at most.
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // A cuBLASLt handle and a cudaMalloc'd workspace on the current device.
  static absl::StatusOr<std::unique_ptr<Matmul>> Create();
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // Enqueues d = alpha op(a) op(b) + beta d (+ bias) on stream. kInvalidArgument if cuBLASLt
  // has no algorithm for the shapes. Not synchronous: errors of the kernel itself surface at
  // the stream's next synchronisation. The heuristic's algorithm is asked once per problem
  // (shapes, layouts, epilogue, pointer alignments) and kept: the same choice, without its
  // host cost on every call. Not thread-safe (one Matmul per stream's owner).
  absl::Status Run(const MatmulArgs& args, cudaStream_t stream);
  // Problems whose algorithm is kept (for tests and logs).
  int cached_algorithms() const { return static_cast<int>(algorithms_.size()); }

 private:
  Matmul(cublasLtHandle_t handle, void* workspace) : handle_(handle), workspace_(workspace) {}
  cublasLtHandle_t handle_;
  void* workspace_;
  // What the heuristic's choice depends on (every field of MatmulArgs but the pointers'
  // values, alpha and beta), and the choice.
  using ProblemKey = std::vector<int64_t>;
  std::map<ProblemKey, cublasLtMatmulAlgo_t> algorithms_;
};

}  // namespace stagehand::ops::cuda

#endif  // STAGEHAND_OPS_CUDA_MATMUL_H_
