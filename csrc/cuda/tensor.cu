// Tensor arithmetic and data movement on the GPU (declared in kernels.cuh, section
// tensor.cu): the element-wise operators of a CUDA tensor (+ - * / with a same-shaped array
// or a scalar), sums over trailing axes, one strided copy that serves permute, broadcast,
// pad and crop, and one_hot.
// No CPU twin: on the host NumPy does these. One thread per element in a grid-stride loop;
// each value is one IEEE operation (or a copy), so the results have NumPy's bits.
#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T arithmetic(Arithmetic op, T a, T b) {
  switch (op) {
    case Arithmetic::add: return a + b;
    case Arithmetic::sub: return a - b;
    case Arithmetic::mul: return a * b;
    case Arithmetic::div: return a / b;
  }
  return a;
}

template <typename T>
__global__ void elementwise_binary_kernel(Arithmetic op, const T* a, const T* b, T* out,
                                          index_t n) {
  FASTDL_GRID_LOOP(i, n) out[i] = arithmetic(op, a[i], b[i]);
}

template <typename T>
__global__ void elementwise_scalar_kernel(Arithmetic op, const T* a, T s, bool reverse, T* out,
                                          index_t n) {
  FASTDL_GRID_LOOP(i, n) out[i] = reverse ? arithmetic(op, s, a[i]) : arithmetic(op, a[i], s);
}

// One block per row; the row's values strided over the block's threads, then a tree sum.
template <typename T>
__global__ void sum_rows_kernel(const T* x, T* out, index_t rows, index_t cols) {
  __shared__ double shared[kThreads];
  for (index_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    double acc = 0.0;
    for (index_t c = threadIdx.x; c < cols; c += blockDim.x) acc += static_cast<double>(row[c]);
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) out[r] = static_cast<T>(acc);
  }
}

// Element i of the index space, in row-major order over layout.shape, goes from its source
// position to its destination position.
template <typename T>
__global__ void strided_copy_kernel(const T* src, T* dst, StridedLayout layout, index_t total) {
  FASTDL_GRID_LOOP(i, total) {
    index_t rest = i, s = layout.src_offset, d = layout.dst_offset;
    for (int k = layout.ndim - 1; k >= 0; --k) {
      const index_t index = rest % layout.shape[k];
      rest /= layout.shape[k];
      s += index * layout.src_strides[k];
      d += index * layout.dst_strides[k];
    }
    dst[d] = src[s];
  }
}

__global__ void one_hot_kernel(const std::int64_t* labels, std::int64_t* out, index_t n,
                               index_t classes) {
  FASTDL_GRID_LOOP(i, n * classes) out[i] = labels[i / classes] == i % classes ? 1 : 0;
}

}  // namespace

template <typename T>
void elementwise_binary(Arithmetic op, const T* a, const T* b, T* out, index_t n) {
  if (n <= 0) return;
  elementwise_binary_kernel<T><<<blocks_for(n), kThreads>>>(op, a, b, out, n);
  FASTDL_CUDA_LAUNCHED("elementwise_binary");
}

template <typename T>
void elementwise_scalar(Arithmetic op, const T* a, double scalar, bool reverse, T* out,
                        index_t n) {
  if (n <= 0) return;
  elementwise_scalar_kernel<T><<<blocks_for(n), kThreads>>>(op, a, static_cast<T>(scalar),
                                                           reverse, out, n);
  FASTDL_CUDA_LAUNCHED("elementwise_scalar");
}

template <typename T>
void sum_rows(const T* x, T* out, index_t rows, index_t cols) {
  if (rows <= 0) return;
  const unsigned int blocks = static_cast<unsigned int>(rows > 65535 ? 65535 : rows);
  sum_rows_kernel<T><<<blocks, kThreads>>>(x, out, rows, cols);
  FASTDL_CUDA_LAUNCHED("sum_rows");
}

template <typename T>
void strided_copy(const T* src, T* dst, const StridedLayout& layout) {
  index_t total = 1;
  for (int k = 0; k < layout.ndim; ++k) total *= layout.shape[k];
  if (total <= 0) return;
  strided_copy_kernel<T><<<blocks_for(total), kThreads>>>(src, dst, layout, total);
  FASTDL_CUDA_LAUNCHED("strided_copy");
}

void one_hot(const std::int64_t* labels, std::int64_t* out, index_t n, index_t classes) {
  if (n <= 0 || classes <= 0) return;
  one_hot_kernel<<<blocks_for(n * classes), kThreads>>>(labels, out, n, classes);
  FASTDL_CUDA_LAUNCHED("one_hot");
}

#define FASTDL_INSTANTIATE(T)                                                             \
  template void elementwise_binary<T>(Arithmetic, const T*, const T*, T*, index_t);       \
  template void elementwise_scalar<T>(Arithmetic, const T*, double, bool, T*, index_t);      \
  template void sum_rows<T>(const T*, T*, index_t, index_t);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE
template void strided_copy<float>(const float*, float*, const StridedLayout&);
template void strided_copy<double>(const double*, double*, const StridedLayout&);
template void strided_copy<std::int64_t>(const std::int64_t*, std::int64_t*, const StridedLayout&);

}  // namespace fastdl::cuda
