// Batch normalization on the GPU (twin of csrc/cpu/batchnorm.cpp; formulas in norm.h).
// One block per channel does the channel's whole job: its statistics (two passes in double:
// the mean, then the biased variance of the deviations, summed in a fixed tree order), the
// running-statistics update, then the normalized output; the backward likewise sums
// gy and gy * (x - mean), updates the parameter gradients (+=) and writes grad_input (=).
// No atomics, no scratch memory: the same bits on every run.
#include <cmath>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kChannelThreads = 512;

// Element j of channel c in an (N, C, S) tensor, j = n * S + s.
__device__ __forceinline__ index_t at(index_t j, index_t c, index_t C, index_t S) {
  return ((j / S) * C + c) * S + j % S;
}

template <typename T>
__global__ void batch_norm_forward_kernel(const T* input, const T* weight, const T* bias,
                                          T* output, T* running_mean, T* running_var,
                                          double* save_mean, double* save_invstd,
                                          bool training, double momentum, double eps,
                                          const BatchNormShape s) {
  __shared__ double shared[kChannelThreads];
  const index_t C = s.channels, S = s.spatial, M = s.batch * s.spatial;
  for (index_t c = blockIdx.x; c < C; c += gridDim.x) {
    double mean, invstd;
    if (training) {
      double sum = 0.0;
      for (index_t j = threadIdx.x; j < M; j += blockDim.x) sum += static_cast<double>(input[at(j, c, C, S)]);
      mean = block_sum(sum, shared) / static_cast<double>(M);
      double squares = 0.0;
      for (index_t j = threadIdx.x; j < M; j += blockDim.x) {
        const double d = static_cast<double>(input[at(j, c, C, S)]) - mean;
        squares += d * d;
      }
      const double var = block_sum(squares, shared) / static_cast<double>(M);
      invstd = 1.0 / sqrt(var + eps);
      if (threadIdx.x == 0) {
        if (running_mean)
          running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
        if (running_var)
          running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) +
                                          momentum * var * static_cast<double>(M) / (static_cast<double>(M) - 1.0));
      }
    } else {
      mean = static_cast<double>(running_mean[c]);
      invstd = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
    }
    if (threadIdx.x == 0) {
      save_mean[c] = mean;
      save_invstd[c] = invstd;
    }
    const double alpha = invstd * (weight ? static_cast<double>(weight[c]) : 1.0);
    const double beta = bias ? static_cast<double>(bias[c]) : 0.0;
    for (index_t j = threadIdx.x; j < M; j += blockDim.x) {
      const index_t i = at(j, c, C, S);
      output[i] = static_cast<T>((static_cast<double>(input[i]) - mean) * alpha + beta);
    }
    __syncthreads();  // thread 0's running_* update precedes the next channel's reads
  }
}

template <typename T>
__global__ void batch_norm_backward_kernel(const T* input, const T* grad_output,
                                           const double* save_mean, const double* save_invstd,
                                           const T* weight, T* grad_input, T* grad_weight,
                                           T* grad_bias, bool training, const BatchNormShape s) {
  __shared__ double shared[kChannelThreads];
  const index_t C = s.channels, S = s.spatial, M = s.batch * s.spatial;
  const double m = static_cast<double>(M);
  for (index_t c = blockIdx.x; c < C; c += gridDim.x) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    double sum = 0.0, dot = 0.0;
    for (index_t j = threadIdx.x; j < M; j += blockDim.x) {
      const index_t i = at(j, c, C, S);
      const double g = static_cast<double>(grad_output[i]);
      sum += g;
      dot += g * (static_cast<double>(input[i]) - mean);
    }
    sum = block_sum(sum, shared);
    dot = block_sum(dot, shared);
    if (threadIdx.x == 0) {
      if (grad_bias) grad_bias[c] += static_cast<T>(sum);
      if (grad_weight) grad_weight[c] += static_cast<T>(dot * invstd);
    }
    if (grad_input) {
      const double grad_mean = training ? sum / m : 0.0;
      const double k = training ? dot * invstd * invstd / m : 0.0;
      const double alpha = invstd * (weight ? static_cast<double>(weight[c]) : 1.0);
      for (index_t j = threadIdx.x; j < M; j += blockDim.x) {
        const index_t i = at(j, c, C, S);
        grad_input[i] = static_cast<T>((static_cast<double>(grad_output[i]) - grad_mean -
                                        (static_cast<double>(input[i]) - mean) * k) * alpha);
      }
    }
  }
}

inline unsigned int channel_blocks(index_t channels) {
  return static_cast<unsigned int>(channels > 65535 ? 65535 : channels);
}

}  // namespace

template <typename T>
void batch_norm_forward(const T* input, const T* weight, const T* bias, T* output,
                        T* running_mean, T* running_var, double* save_mean,
                        double* save_invstd, bool training, double momentum, double eps,
                        const BatchNormShape& s) {
  if (s.channels <= 0) return;
  batch_norm_forward_kernel<T><<<channel_blocks(s.channels), kChannelThreads>>>(
      input, weight, bias, output, running_mean, running_var, save_mean, save_invstd, training,
      momentum, eps, s);
  FASTDL_CUDA_LAUNCHED("batch_norm_forward");
}

template <typename T>
void batch_norm_backward(const T* input, const T* grad_output, const double* save_mean,
                         const double* save_invstd, const T* weight, T* grad_input,
                         T* grad_weight, T* grad_bias, bool training, const BatchNormShape& s) {
  if (s.channels <= 0) return;
  batch_norm_backward_kernel<T><<<channel_blocks(s.channels), kChannelThreads>>>(
      input, grad_output, save_mean, save_invstd, weight, grad_input, grad_weight, grad_bias,
      training, s);
  FASTDL_CUDA_LAUNCHED("batch_norm_backward");
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void batch_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, double*,        \
                                      double*, bool, double, double, const BatchNormShape&);    \
  template void batch_norm_backward<T>(const T*, const T*, const double*, const double*,        \
                                       const T*, T*, T*, T*, bool, const BatchNormShape&);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
