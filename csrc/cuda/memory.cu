// Device memory, device queries and the small element-wise helpers of the autograd engine
// (fill, y += x) and of the device-side reductions (scale_sum).
#include <cstdint>
#include <cstring>
#include <mutex>

#include "cuda/common.cuh"

namespace fastdl::cuda {

int device_count() {
  int count = 0;
  // Without a driver (or with no device) this returns an error: report "no device".
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  FASTDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::string device_capability(int device) {
  cudaDeviceProp prop{};
  FASTDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::to_string(prop.major) + "." + std::to_string(prop.minor);
}

std::size_t device_memory(int device) {
  cudaDeviceProp prop{};
  FASTDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.totalGlobalMem;
}

int runtime_version() {
  int version = 0;
  FASTDL_CUDA_CHECK(cudaRuntimeGetVersion(&version));
  return version;
}

int driver_version() {
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

void set_device(int device) { FASTDL_CUDA_CHECK(cudaSetDevice(device)); }

void synchronize() { FASTDL_CUDA_CHECK(cudaDeviceSynchronize()); }

// Device memory comes from the runtime's stream-ordered pool on the default stream
// (cudaMallocAsync / cudaFreeAsync), never plain cudaMalloc / cudaFree: cudaFree waits for
// the whole device, and a training step frees dozens of temporaries. Every kernel runs on
// the default stream, so memory freed "in stream order" is reused only after the kernels
// queued before the free. The pool keeps what it has (release threshold: unlimited), as
// PyTorch's caching allocator does, instead of returning it at every synchronization.
namespace {
void keep_pool_memory() {
  static std::once_flag once;
  std::call_once(once, [] {
    int device = 0;
    cudaMemPool_t pool;
    if (cudaGetDevice(&device) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      std::uint64_t threshold = UINT64_MAX;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold);
    }
    cudaGetLastError();  // best effort: without it the pool still works
  });
}
}  // namespace

void* allocate(std::size_t bytes) {
  keep_pool_memory();
  void* pointer = nullptr;
  FASTDL_CUDA_CHECK(cudaMallocAsync(&pointer, bytes, 0));
  return pointer;
}

void release(void* pointer) {
  // From a destructor: never throw. A failure here means an earlier fault the next checked
  // call reports anyway (or the runtime is already shut down at interpreter exit).
  if (pointer && cudaFreeAsync(pointer, 0) != cudaSuccess) cudaGetLastError();
}

void copy_to_device(void* device, const void* host, std::size_t bytes) {
  if (bytes) FASTDL_CUDA_CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* host, const void* device, std::size_t bytes) {
  if (bytes) FASTDL_CUDA_CHECK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

void copy_on_device(void* destination, const void* source, std::size_t bytes) {
  if (bytes) FASTDL_CUDA_CHECK(cudaMemcpy(destination, source, bytes, cudaMemcpyDeviceToDevice));
}

double* reduction_scratch() {
  static std::once_flag once;
  static double* scratch = nullptr;
  std::call_once(once, [] {
    scratch = static_cast<double*>(allocate(sizeof(double) * (kReduceMaxComponents * kReduceMaxBlocks + kReduceResultSlots)));
  });
  return scratch;
}

void fill_zero(void* device, std::size_t bytes) {
  if (bytes) FASTDL_CUDA_CHECK(cudaMemset(device, 0, bytes));
}

namespace {

template <typename T>
__global__ void fill_kernel(T* x, index_t n, T value) {
  FASTDL_GRID_LOOP(i, n) x[i] = value;
}

template <typename T>
__global__ void add_inplace_kernel(T* y, const T* x, index_t n) {
  FASTDL_GRID_LOOP(i, n) y[i] = y[i] + x[i];
}

template <typename T>
__global__ void scale_sums_kernel(const double* sums, int count, double scale0, double scale1, T* out) {
  out[0] = static_cast<T>(count == 2 ? sums[0] * scale0 + sums[1] * scale1 : sums[0] * scale0);
}

template <typename T>
__global__ void scale_broadcast_kernel(const T* g, double scale, T* out, index_t n) {
  const double value = static_cast<double>(g[0]) * scale;
  FASTDL_GRID_LOOP(i, n) out[i] = static_cast<T>(value);
}

template <typename T>
struct Values {
  const T* x;
  __device__ void operator()(index_t i, double* acc) const { acc[0] += static_cast<double>(x[i]); }
};

}  // namespace

template <typename T>
void fill(T* x, index_t n, double value) {
  if (n <= 0) return;
  fill_kernel<T><<<blocks_for(n), kThreads>>>(x, n, static_cast<T>(value));
  FASTDL_CUDA_LAUNCHED("fill");
}

template <typename T>
void add_inplace(T* y, const T* x, index_t n) {
  if (n <= 0) return;
  add_inplace_kernel<T><<<blocks_for(n), kThreads>>>(y, x, n);
  FASTDL_CUDA_LAUNCHED("add_inplace");
}

template <typename T>
void sum_array(const T* x, index_t n, double* sums) {
  reduce<1>(Values<T>{x}, n, sums, "kernel sum_array");
}

template <typename T>
void scale_sums(const double* sums, int count, double scale0, double scale1, T* out) {
  scale_sums_kernel<T><<<1, 1>>>(sums, count, scale0, scale1, out);
  FASTDL_CUDA_LAUNCHED("scale_sums");
}

template <typename T>
void scale_broadcast(const T* g, double scale, T* out, index_t n) {
  if (n <= 0) return;
  scale_broadcast_kernel<T><<<blocks_for(n), kThreads>>>(g, scale, out, n);
  FASTDL_CUDA_LAUNCHED("scale_broadcast");
}

#define FASTDL_INSTANTIATE(T)                                                  \
  template void add_inplace<T>(T*, const T*, index_t);                         \
  template void sum_array<T>(const T*, index_t, double*);                      \
  template void scale_sums<T>(const double*, int, double, double, T*);         \
  template void scale_broadcast<T>(const T*, double, T*, index_t);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
template void fill<float>(float*, index_t, double);
template void fill<double>(double*, index_t, double);
template void fill<std::int64_t>(std::int64_t*, index_t, double);
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
