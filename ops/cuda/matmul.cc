// cuBLASLt descriptors for MatmulArgs, an algorithm from its heuristic (asked once per problem
// and kept), and the call; every cuBLASLt call checked. Descriptors are still made per call
// (a few microseconds).
#include "ops/cuda/matmul.h"

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "ops/cuda/cuda_status.h"
#include "runtime/util/status_macros.h"

namespace stagehand::ops::cuda {
namespace {

// One layout: `rows` x `cols` as stored (before any transpose), with batches.
absl::StatusOr<cublasLtMatrixLayout_t> MakeLayout(cudaDataType_t type, int rows, int cols, int ld,
                                                  int batch_count, int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
  if (batch_count > 1) {
    absl::Status status =
        CublasLtStatus(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                        &batch_count, sizeof(batch_count)),
                       "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)", __FILE__, __LINE__);
    if (status.ok()) {
      status = CublasLtStatus(
          cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                           &stride, sizeof(stride)),
          "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)", __FILE__, __LINE__);
    }
    if (!status.ok()) {
      cublasLtMatrixLayoutDestroy(layout);
      return status;
    }
  }
  return layout;
}

absl::Status SetDescriptor(cublasLtMatmulDesc_t desc, const MatmulArgs& args) {
  const cublasOperation_t transpose_a = args.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t transpose_b = args.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                          &transpose_a, sizeof(transpose_a)));
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                          &transpose_b, sizeof(transpose_b)));
  if (args.bias != nullptr) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                            &epilogue, sizeof(epilogue)));
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                            &args.bias, sizeof(args.bias)));
  }
  return absl::OkStatus();
}

// The largest power of two, up to 256, that divides the address: what the heuristic may assume
// of a pointer (it assumes 256 unless told, and an algorithm needing more than the pointer has
// fails or misreads).
uint32_t AlignmentOf(const void* pointer) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(pointer);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Matmul>> Matmul::Create() {
  void* workspace = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, kWorkspaceBytes));
  cublasLtHandle_t handle = nullptr;
  const cublasStatus_t created = cublasLtCreate(&handle);
  if (created != CUBLAS_STATUS_SUCCESS) {
    cudaFree(workspace);
    return CublasLtStatus(created, "cublasLtCreate(&handle)", __FILE__, __LINE__);
  }
  return std::unique_ptr<Matmul>(new Matmul(handle, workspace));
}

Matmul::~Matmul() {
  cublasLtDestroy(handle_);
  cudaFree(workspace_);
}

absl::Status Matmul::Run(const MatmulArgs& args, cudaStream_t stream) {
  const cudaDataType_t d_type = args.d_is_float ? CUDA_R_32F : CUDA_R_16BF;
  cublasLtMatmulDesc_t desc = nullptr;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  absl::Cleanup destroy_desc = [desc] { cublasLtMatmulDescDestroy(desc); };
  RETURN_IF_ERROR(SetDescriptor(desc, args));

  // Stored shapes: op(a) is (m, k), so a is (k, m) when transposed; likewise b.
  ASSIGN_OR_RETURN(
      cublasLtMatrixLayout_t a_layout,
      MakeLayout(CUDA_R_16BF, args.transpose_a ? args.k : args.m,
                 args.transpose_a ? args.m : args.k, args.lda, args.batch_count, args.stride_a));
  absl::Cleanup destroy_a = [a_layout] { cublasLtMatrixLayoutDestroy(a_layout); };
  ASSIGN_OR_RETURN(
      cublasLtMatrixLayout_t b_layout,
      MakeLayout(CUDA_R_16BF, args.transpose_b ? args.n : args.k,
                 args.transpose_b ? args.k : args.n, args.ldb, args.batch_count, args.stride_b));
  absl::Cleanup destroy_b = [b_layout] { cublasLtMatrixLayoutDestroy(b_layout); };
  ASSIGN_OR_RETURN(cublasLtMatrixLayout_t d_layout,
                   MakeLayout(d_type, args.m, args.n, args.ldd, args.batch_count, args.stride_d));
  absl::Cleanup destroy_d = [d_layout] { cublasLtMatrixLayoutDestroy(d_layout); };

  const ProblemKey key = {args.transpose_a,
                          args.transpose_b,
                          args.m,
                          args.n,
                          args.k,
                          args.lda,
                          args.ldb,
                          args.ldd,
                          args.d_is_float,
                          args.bias != nullptr,
                          AlignmentOf(args.bias),
                          args.batch_count,
                          args.stride_a,
                          args.stride_b,
                          args.stride_d,
                          AlignmentOf(args.a),
                          AlignmentOf(args.b),
                          AlignmentOf(args.d)};
  if (auto cached = algorithms_.find(key); cached != algorithms_.end()) {
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmul(
        handle_, desc, &args.alpha, args.a, a_layout, args.b, b_layout, &args.beta, args.d,
        d_layout, args.d, d_layout, &cached->second, workspace_, kWorkspaceBytes, stream));
    return absl::OkStatus();
  }
  cublasLtMatmulPreference_t preference = nullptr;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  absl::Cleanup destroy_preference = [preference] { cublasLtMatmulPreferenceDestroy(preference); };
  const size_t workspace_bytes = kWorkspaceBytes;
  CUBLASLT_RETURN_IF_ERROR(
      cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes, sizeof(workspace_bytes)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, args.a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, args.b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, args.d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, args.d}};
  for (const auto& [attribute, pointer] : alignments) {
    const uint32_t alignment = AlignmentOf(pointer);
    CUBLASLT_RETURN_IF_ERROR(
        cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(alignment)));
  }
  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(
      handle_, desc, a_layout, b_layout, d_layout, d_layout, preference, 1, &heuristic, &found));
  if (found == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuBLASLt has no algorithm for m=", args.m, " n=", args.n, " k=", args.k,
                     " transpose_a=", args.transpose_a, " transpose_b=", args.transpose_b,
                     " batches=", args.batch_count, args.bias != nullptr ? " with bias" : ""));
  }
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmul(handle_, desc, &args.alpha, args.a, a_layout, args.b,
                                          b_layout, &args.beta, args.d, d_layout, args.d, d_layout,
                                          &heuristic.algo, workspace_, kWorkspaceBytes, stream));
  algorithms_.emplace(key, heuristic.algo);
  return absl::OkStatus();
}

}  // namespace stagehand::ops::cuda
