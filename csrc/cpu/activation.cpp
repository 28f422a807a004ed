// Element-wise activations (https://pytorch.org/docs/stable/generated/torch.nn.ReLU.html).
// Plain loops the compiler vectorizes for the -march it builds for.
#include "cpu/kernels.h"

namespace fastdl::cpu {

template <typename T>
void relu_forward(const T* input, T* output, index_t n) {
#pragma omp parallel for simd schedule(static) num_threads(threads_for(n))
  for (index_t k = 0; k < n; ++k) {
    const T v = input[k];
    output[k] = v < T(0) ? T(0) : v;  // NaN < 0 is false: NaN passes through
  }
}

template <typename T>
void relu_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
#pragma omp parallel for simd schedule(static) num_threads(threads_for(n))
  for (index_t k = 0; k < n; ++k) grad_input[k] = output[k] <= T(0) ? T(0) : grad_output[k];
}

template void relu_forward<float>(const float*, float*, index_t);
template void relu_forward<double>(const double*, double*, index_t);
template void relu_backward<float>(const float*, const float*, float*, index_t);
template void relu_backward<double>(const double*, const double*, double*, index_t);

}  // namespace fastdl::cpu
