// Shared helpers of the CUDA kernels (included by csrc/cuda/*.cu only, never by C++ files):
// the error check, the launch geometry, block reductions in a fixed order.
//
// Every CUDA call is checked: a failure throws std::runtime_error naming the call (pybind11
// turns it into a Python RuntimeError). Kernels launch on the default stream, so they run
// in the order issued; a device-to-host copy waits for them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/kernels.cuh"

namespace fastdl::cuda {

inline void check_status(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                             ") at " + file + ":" + std::to_string(line));
  }
}

// FASTDL_CUDA_CHECK(cudaMemcpy(...)): throws on failure, naming the call.
#define FASTDL_CUDA_CHECK(call) ::fastdl::cuda::check_status((call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad launch configuration (or an earlier asynchronous fault)
// surfaces here, naming the kernel.
#define FASTDL_CUDA_LAUNCHED(name) \
  ::fastdl::cuda::check_status(cudaGetLastError(), "kernel " name, __FILE__, __LINE__)

constexpr int kThreads = 256;  // threads per block of the element-wise kernels

// Blocks for n elements processed by grid-stride loops: enough to fill any GPU, capped so
// the grid size stays valid (the loop covers the rest).
inline unsigned int blocks_for(index_t n, int threads = kThreads) {
  const index_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

// Grid-stride loop over [0, n) with 64-bit indices.
#define FASTDL_GRID_LOOP(i, n)                                                          \
  for (::fastdl::cuda::index_t i = static_cast<::fastdl::cuda::index_t>(blockIdx.x) *   \
                                       blockDim.x + threadIdx.x;                        \
       i < (n); i += static_cast<::fastdl::cuda::index_t>(blockDim.x) * gridDim.x)

// Sum of one value per thread of the block (blockDim.x a power of two <= 1024), in a fixed
// tree order: the same bits on every run. Every thread must call it; thread 0 gets the sum.
// `shared` holds blockDim.x values of A.
template <typename A>
__device__ A block_sum(A value, A* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (unsigned int width = blockDim.x / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  const A total = shared[0];
  __syncthreads();  // shared may be reused right after
  return total;
}

// Maximum over the block ignoring NaN (fmax: NaN reaches a softmax through exp instead);
// same contract as block_sum.
template <typename A>
__device__ A block_fmax(A value, A* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (unsigned int width = blockDim.x / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + width]);
    __syncthreads();
  }
  const A total = shared[0];
  __syncthreads();
  return total;
}

// ------------------------------------------------------------------ whole-array sums
// reduce<K>(f, n, out): out[k] = sum over i in [0, n) of the k-th value f(i, acc) adds into
// acc[k] (double), for K components, written to DEVICE memory. Two launches: a fixed grid
// (its size a function of n alone) of block partial sums, then one block adding them; the
// order of every addition depends on n alone, so the result has the same bits on every run.
constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;
constexpr int kReduceMaxComponents = 2;
constexpr int kReduceResultSlots = 8;

// Device scratch for the partial sums (kReduceMaxComponents * kReduceMaxBlocks doubles,
// then kReduceResultSlots doubles a kernel may use for a result), allocated on first use
// and kept (memory.cu). Launches on the default stream run in order,
// so consecutive reductions never overlap on it.
double* reduction_scratch();

template <int K, typename F>
__global__ void reduce_partial_kernel(F f, index_t n, double* partial) {
  __shared__ double shared[kReduceThreads];
  double acc[K];
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  FASTDL_GRID_LOOP(i, n) f(i, acc);
  for (int k = 0; k < K; ++k) {
    const double total = block_sum(acc[k], shared);
    if (threadIdx.x == 0) partial[k * gridDim.x + blockIdx.x] = total;
  }
}

template <int K>
__global__ void reduce_final_kernel(const double* partial, int blocks, double* out) {
  __shared__ double shared[kReduceThreads];
  for (int k = 0; k < K; ++k) {
    double acc = 0.0;
    for (int j = threadIdx.x; j < blocks; j += blockDim.x) acc += partial[k * blocks + j];
    const double total = block_sum(acc, shared);
    if (threadIdx.x == 0) out[k] = total;
  }
}

template <int K, typename F>
void reduce(F f, index_t n, double* out, const char* name) {
  static_assert(K >= 1 && K <= kReduceMaxComponents, "too many components");
  double* partial = reduction_scratch();
  int blocks = 0;
  if (n > 0) {
    const index_t wanted = (n + kReduceThreads - 1) / kReduceThreads;
    blocks = static_cast<int>(wanted < kReduceMaxBlocks ? wanted : kReduceMaxBlocks);
    reduce_partial_kernel<K><<<blocks, kReduceThreads>>>(f, n, partial);
    check_status(cudaGetLastError(), name, __FILE__, __LINE__);
  }
  reduce_final_kernel<K><<<1, kReduceThreads>>>(partial, blocks, out);
  check_status(cudaGetLastError(), name, __FILE__, __LINE__);
}

// ------------------------------------------------------------------ scratch memory
// Temporary device memory of one kernel call, stream-ordered (cudaMallocAsync from the
// runtime's pool on the default stream: no device-wide synchronization), freed when the
// object goes out of scope, after the kernels queued before it.
template <typename T>
class DeviceScratch {
 public:
  explicit DeviceScratch(index_t count) {
    if (count > 0)
      FASTDL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&data_),
                                        static_cast<std::size_t>(count) * sizeof(T), 0));
  }
  ~DeviceScratch() {
    if (data_ && cudaFreeAsync(data_, 0) != cudaSuccess) cudaGetLastError();
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
};

// ------------------------------------------------------------------ bias helpers (gemm.cu)
// For y viewed as (N, O, P): set_bias writes y[n, o, p] = bias[o]; add_bias_grad adds
// sum_{n, p} gy[n, o, p] into grad_bias[o] (one block per o, fixed-order sum in double).
template <typename T>
void set_bias(T* y, const T* bias, index_t N, index_t O, index_t P);
template <typename T>
void add_bias_grad(const T* grad_output, T* grad_bias, index_t N, index_t O, index_t P);

}  // namespace fastdl::cuda
