// Fully connected layer (https://pytorch.org/docs/stable/generated/torch.nn.functional.linear.html):
// three GEMMs and a column sum, all threaded by the BLAS or in a fixed order.
#include "cpu/kernels.h"

namespace fastdl::cpu {

template <typename T>
void linear_forward(const T* input, const T* weight, const T* bias, T* output, index_t batch,
                    index_t in_features, index_t out_features) {
  const index_t N = batch, I = in_features, O = out_features;
  if (N == 0 || O == 0) return;
  if (bias) {
    // Start from the broadcast bias and let the GEMM accumulate onto it (beta = 1).
#pragma omp parallel for schedule(static) num_threads(threads_for(N * O))
    for (index_t n = 0; n < N; ++n)
      for (index_t o = 0; o < O; ++o) output[n * O + o] = bias[o];
  }
  gemm<T>(false, true, N, O, I, T(1), input, I, weight, I, bias ? T(1) : T(0), output, O);
}

template <typename T>
void linear_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, index_t batch, index_t in_features,
                     index_t out_features) {
  const index_t N = batch, I = in_features, O = out_features;
  if (grad_input) {
    if (O == 0) {
      for (index_t k = 0; k < N * I; ++k) grad_input[k] = T(0);
    } else {
      gemm<T>(false, false, N, I, O, T(1), grad_output, O, weight, I, T(0), grad_input, I);
    }
  }
  if (grad_weight && N > 0) {
    gemm<T>(true, false, O, I, N, T(1), grad_output, O, input, I, T(1), grad_weight, I);
  }
  if (grad_bias) {
#pragma omp parallel for schedule(static) num_threads(threads_for(N * O))
    for (index_t o = 0; o < O; ++o) {
      double total = 0.0;  // fixed order, double accumulator
      for (index_t n = 0; n < N; ++n) total += grad_output[n * O + o];
      grad_bias[o] += static_cast<T>(total);
    }
  }
}

template void linear_forward<float>(const float*, const float*, const float*, float*, index_t, index_t, index_t);
template void linear_forward<double>(const double*, const double*, const double*, double*, index_t, index_t, index_t);
template void linear_backward<float>(const float*, const float*, const float*, float*, float*, float*, index_t, index_t, index_t);
template void linear_backward<double>(const double*, const double*, const double*, double*, double*, double*, index_t, index_t, index_t);

}  // namespace fastdl::cpu
