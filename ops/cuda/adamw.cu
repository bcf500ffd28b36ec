// Multi-tensor AdamW kernels: one block per fixed-size chunk of one tensor, for the squared-norm
// partials and for the update; one block to add the partials in order and form the clip factor.
// Not fused with the gradient reduction across data-parallel ranks.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "ops/cuda/adamw.h"
#include "ops/cuda/cuda_status.h"
#include "ops/cuda/reduce.cuh"

namespace stagehand::ops::cuda {

// Elements per chunk: each block handles one chunk of one tensor.
constexpr int64_t kChunkElements = 1 << 16;

struct MultiTensorAdamW::Chunk {
  int tensor;
  int64_t begin;
  int64_t end;
};

namespace {

using Chunk = MultiTensorAdamW::Chunk;

__global__ void SquaredNormPartialsKernel(float* partials, const AdamWTensor* tensors,
                                          const Chunk* chunks) {
  __shared__ float shared[32];
  const Chunk chunk = chunks[blockIdx.x];
  const float* grads = tensors[chunk.tensor].grads;
  float sum = 0.0f;
  for (int64_t i = chunk.begin + threadIdx.x; i < chunk.end; i += blockDim.x) {
    sum += grads[i] * grads[i];
  }
  sum = BlockSum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// One block: thread j adds partials j, j + blockDim.x, ... in double, then a fixed tree.
__global__ void NormAndClipKernel(float* norm, const float* partials, int count, float max_norm) {
  __shared__ double shared[1024];
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  shared[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double global_norm = sqrt(shared[0]);
    norm[0] = static_cast<float>(global_norm);
    norm[1] = (max_norm > 0.0f && global_norm > max_norm)
                  ? static_cast<float>(max_norm / global_norm)
                  : 1.0f;
  }
}

struct UpdateConstants {
  float learning_rate, beta1, beta2, epsilon, weight_decay;
  float bias_correction1, bias_correction2;
  float clip_scale;  // used when norm is null
};

__global__ void AdamWUpdateKernel(const AdamWTensor* tensors, const Chunk* chunks,
                                  const float* norm, UpdateConstants k) {
  const Chunk chunk = chunks[blockIdx.x];
  const AdamWTensor tensor = tensors[chunk.tensor];
  const float grad_scale = norm != nullptr ? norm[1] : k.clip_scale;
  const float weight_decay = tensor.decay ? k.weight_decay : 0.0f;
  for (int64_t i = chunk.begin + threadIdx.x; i < chunk.end; i += blockDim.x) {
    const float grad = tensor.grads[i] * grad_scale;
    const float m = k.beta1 * tensor.m[i] + (1.0f - k.beta1) * grad;
    const float v = k.beta2 * tensor.v[i] + (1.0f - k.beta2) * grad * grad;
    const float m_hat = m / k.bias_correction1;
    const float v_hat = v / k.bias_correction2;
    float param = tensor.params[i];
    param -= k.learning_rate * (m_hat / (sqrtf(v_hat) + k.epsilon) + weight_decay * param);
    tensor.m[i] = m;
    tensor.v[i] = v;
    tensor.params[i] = param;
    if (tensor.params_bf16 != nullptr) tensor.params_bf16[i] = __float2bfloat16(param);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MultiTensorAdamW>> MultiTensorAdamW::Create(
    const std::vector<AdamWTensor>& tensors) {
  if (tensors.empty()) return absl::InvalidArgumentError("MultiTensorAdamW: no tensors");
  std::vector<Chunk> chunks;
  for (int t = 0; t < static_cast<int>(tensors.size()); ++t) {
    if (tensors[t].n <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("MultiTensorAdamW: tensor ", t, " is empty"));
    }
    for (int64_t begin = 0; begin < tensors[t].n; begin += kChunkElements) {
      chunks.push_back(Chunk{t, begin, std::min(begin + kChunkElements, tensors[t].n)});
    }
  }
  std::unique_ptr<MultiTensorAdamW> optimizer(new MultiTensorAdamW());
  optimizer->chunk_count_ = static_cast<int>(chunks.size());
  optimizer->tensor_count_ = static_cast<int>(tensors.size());
  for (const Chunk& chunk : chunks) optimizer->chunk_tensors_.push_back(chunk.tensor);
  CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&optimizer->tensors_),
                                  tensors.size() * sizeof(AdamWTensor)));
  CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&optimizer->chunks_), chunks.size() * sizeof(Chunk)));
  CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&optimizer->partials_), chunks.size() * sizeof(float)));
  CUDA_RETURN_IF_ERROR(cudaMalloc(reinterpret_cast<void**>(&optimizer->norm_), 2 * sizeof(float)));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(optimizer->tensors_, tensors.data(),
                                  tensors.size() * sizeof(AdamWTensor), cudaMemcpyHostToDevice));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(optimizer->chunks_, chunks.data(), chunks.size() * sizeof(Chunk),
                                  cudaMemcpyHostToDevice));
  return optimizer;
}

MultiTensorAdamW::~MultiTensorAdamW() {
  cudaFree(tensors_);
  cudaFree(chunks_);
  cudaFree(partials_);
  cudaFree(norm_);
}

namespace {

UpdateConstants ConstantsOf(const AdamWOptions& options, int step, double clip_scale) {
  UpdateConstants constants;
  constants.learning_rate = static_cast<float>(options.learning_rate);
  constants.beta1 = static_cast<float>(options.beta1);
  constants.beta2 = static_cast<float>(options.beta2);
  constants.epsilon = static_cast<float>(options.epsilon);
  constants.weight_decay = static_cast<float>(options.weight_decay);
  constants.bias_correction1 = static_cast<float>(1.0 - std::pow(options.beta1, step));
  constants.bias_correction2 = static_cast<float>(1.0 - std::pow(options.beta2, step));
  constants.clip_scale = static_cast<float>(clip_scale);
  return constants;
}

}  // namespace

absl::Status MultiTensorAdamW::Step(const AdamWOptions& options, int step, double max_norm,
                                    cudaStream_t stream) {
  SquaredNormPartialsKernel<<<chunk_count_, kBlockSize, 0, stream>>>(partials_, tensors_, chunks_);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  NormAndClipKernel<<<1, 1024, 0, stream>>>(norm_, partials_, chunk_count_,
                                            static_cast<float>(max_norm));
  CUDA_RETURN_IF_LAUNCH_ERROR();
  AdamWUpdateKernel<<<chunk_count_, kBlockSize, 0, stream>>>(tensors_, chunks_, norm_,
                                                             ConstantsOf(options, step, 1.0));
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status MultiTensorAdamW::StepWithClipScale(const AdamWOptions& options, int step,
                                                 double clip_scale, cudaStream_t stream) {
  AdamWUpdateKernel<<<chunk_count_, kBlockSize, 0, stream>>>(
      tensors_, chunks_, /*norm=*/nullptr, ConstantsOf(options, step, clip_scale));
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> MultiTensorAdamW::TensorSquaredNorms(cudaStream_t stream) {
  SquaredNormPartialsKernel<<<chunk_count_, kBlockSize, 0, stream>>>(partials_, tensors_, chunks_);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  std::vector<float> partials(chunk_count_);
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(partials.data(), partials_, chunk_count_ * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::vector<double> norms(tensor_count_, 0.0);
  for (int c = 0; c < chunk_count_; ++c) norms[chunk_tensors_[c]] += partials[c];
  return norms;
}

}  // namespace stagehand::ops::cuda
