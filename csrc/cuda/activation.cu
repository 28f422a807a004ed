// Element-wise activations (twins of csrc/cpu/activation.cpp): one thread per element in a
// grid-stride loop; the formulas of csrc/cpu/norm.h and kernels.h.
#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

template <typename T>
__global__ void relu_forward_kernel(const T* x, T* y, index_t n) {
  FASTDL_GRID_LOOP(i, n) {
    const T v = x[i];
    y[i] = (v > T(0) || v != v) ? v : T(0);  // NaN stays NaN
  }
}

template <typename T>
__global__ void relu_backward_kernel(const T* y, const T* gy, T* gx, index_t n) {
  FASTDL_GRID_LOOP(i, n) gx[i] = y[i] <= T(0) ? T(0) : gy[i];
}

template <typename T>
__global__ void sigmoid_forward_kernel(const T* x, T* y, index_t n) {
  FASTDL_GRID_LOOP(i, n) {
    const T v = x[i];
    const T e = exp(-fabs(v));  // <= 1: nothing overflows
    y[i] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
  }
}

template <typename T>
__global__ void sigmoid_backward_kernel(const T* y, const T* gy, T* gx, index_t n) {
  FASTDL_GRID_LOOP(i, n) gx[i] = gy[i] * (T(1) - y[i]) * y[i];
}

template <typename T>
__global__ void tanh_forward_kernel(const T* x, T* y, index_t n) {
  FASTDL_GRID_LOOP(i, n) y[i] = tanh(x[i]);
}

template <typename T>
__global__ void tanh_backward_kernel(const T* y, const T* gy, T* gx, index_t n) {
  FASTDL_GRID_LOOP(i, n) gx[i] = gy[i] * (T(1) - y[i] * y[i]);
}

template <typename T>
__global__ void leaky_relu_forward_kernel(const T* x, T* y, index_t n, T slope) {
  FASTDL_GRID_LOOP(i, n) {
    const T v = x[i];
    y[i] = v > T(0) ? v : slope * v;
  }
}

template <typename T>
__global__ void leaky_relu_backward_kernel(const T* x, const T* gy, T* gx, index_t n, T slope) {
  FASTDL_GRID_LOOP(i, n) gx[i] = x[i] > T(0) ? gy[i] : slope * gy[i];
}

}  // namespace

template <typename T>
void relu_forward(const T* input, T* output, index_t n) {
  if (n <= 0) return;
  relu_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, n);
  FASTDL_CUDA_LAUNCHED("relu_forward");
}

template <typename T>
void relu_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  if (n <= 0) return;
  relu_backward_kernel<T><<<blocks_for(n), kThreads>>>(output, grad_output, grad_input, n);
  FASTDL_CUDA_LAUNCHED("relu_backward");
}

template <typename T>
void sigmoid_forward(const T* input, T* output, index_t n) {
  if (n <= 0) return;
  sigmoid_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, n);
  FASTDL_CUDA_LAUNCHED("sigmoid_forward");
}

template <typename T>
void sigmoid_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  if (n <= 0) return;
  sigmoid_backward_kernel<T><<<blocks_for(n), kThreads>>>(output, grad_output, grad_input, n);
  FASTDL_CUDA_LAUNCHED("sigmoid_backward");
}

template <typename T>
void tanh_forward(const T* input, T* output, index_t n) {
  if (n <= 0) return;
  tanh_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, n);
  FASTDL_CUDA_LAUNCHED("tanh_forward");
}

template <typename T>
void tanh_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  if (n <= 0) return;
  tanh_backward_kernel<T><<<blocks_for(n), kThreads>>>(output, grad_output, grad_input, n);
  FASTDL_CUDA_LAUNCHED("tanh_backward");
}

template <typename T>
void leaky_relu_forward(const T* input, T* output, index_t n, double negative_slope) {
  if (n <= 0) return;
  leaky_relu_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, n,
                                                           static_cast<T>(negative_slope));
  FASTDL_CUDA_LAUNCHED("leaky_relu_forward");
}

template <typename T>
void leaky_relu_backward(const T* input, const T* grad_output, T* grad_input, index_t n,
                         double negative_slope) {
  if (n <= 0) return;
  leaky_relu_backward_kernel<T><<<blocks_for(n), kThreads>>>(input, grad_output, grad_input, n,
                                                            static_cast<T>(negative_slope));
  FASTDL_CUDA_LAUNCHED("leaky_relu_backward");
}

#define FASTDL_INSTANTIATE(T)                                                          \
  template void relu_forward<T>(const T*, T*, index_t);                                \
  template void relu_backward<T>(const T*, const T*, T*, index_t);                     \
  template void sigmoid_forward<T>(const T*, T*, index_t);                             \
  template void sigmoid_backward<T>(const T*, const T*, T*, index_t);                  \
  template void tanh_forward<T>(const T*, T*, index_t);                                \
  template void tanh_backward<T>(const T*, const T*, T*, index_t);                     \
  template void leaky_relu_forward<T>(const T*, T*, index_t, double);                  \
  template void leaky_relu_backward<T>(const T*, const T*, T*, index_t, double);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
