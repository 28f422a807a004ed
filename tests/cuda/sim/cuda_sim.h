// A CPU simulator for fastdl's CUDA kernels (tests only; see build.py). Not a GPU: it runs
// the kernels' own code, block after block, each CUDA thread a fiber (ucontext) of ONE
// OS thread; __syncthreads() switches to the next fiber, and a block's fibers all reach
// the barrier before any passes it. __shared__ memory is a static local (blocks run one at
// a time). The CUDA runtime calls fastdl makes are mapped to malloc/memcpy. What this
// checks: the kernels' indexing, tiling, reductions and barriers (a divergent
// __syncthreads aborts), and the bindings end to end. What it cannot check: real
// concurrency (races between threads), the memory model, speed.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned int x, y, z;
};

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

template <typename A>
inline A min(A a, A b) { return b < a ? b : a; }
template <typename A>
inline A max(A a, A b) { return a < b ? b : a; }

inline int atomicOr(int* address, int value) {
  const int old = *address;
  *address = old | value;
  return old;
}

// ------------------------------------------------------------------ fibers
namespace cuda_sim {

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  bool done = false, waiting = false;
};

inline ucontext_t scheduler;
inline Fiber* current = nullptr;
inline std::function<void()>* body = nullptr;
inline std::vector<Fiber> fibers;

inline void entry() {
  (*body)();
  current->done = true;
  swapcontext(&current->context, &scheduler);
}

inline void sync_threads() {
  current->waiting = true;
  swapcontext(&current->context, &scheduler);
}

// Runs f on every thread of every block of the grid.
inline void launch(dim3 grid, dim3 block, std::function<void()> f) {
  const unsigned int threads = block.x * block.y * block.z;
  if (fibers.size() < threads) fibers.resize(threads);
  body = &f;
  gridDim = grid;
  blockDim = block;
  for (unsigned int bz = 0; bz < grid.z; ++bz)
    for (unsigned int by = 0; by < grid.y; ++by)
      for (unsigned int bx = 0; bx < grid.x; ++bx) {
        for (unsigned int t = 0; t < threads; ++t) {
          Fiber& fiber = fibers[t];
          if (fiber.stack.empty()) fiber.stack.resize(1 << 16);
          getcontext(&fiber.context);
          fiber.context.uc_stack.ss_sp = fiber.stack.data();
          fiber.context.uc_stack.ss_size = fiber.stack.size();
          fiber.context.uc_link = nullptr;
          makecontext(&fiber.context, entry, 0);
          fiber.done = fiber.waiting = false;
        }
        unsigned int finished = 0;
        while (finished < threads) {
          unsigned int waiting = 0;
          finished = 0;
          for (unsigned int t = 0; t < threads; ++t) {
            Fiber& fiber = fibers[t];
            if (fiber.done) { ++finished; continue; }
            fiber.waiting = false;
            blockIdx = {bx, by, bz};
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            current = &fiber;
            swapcontext(&scheduler, &fiber.context);
            if (fiber.done) ++finished;
            else if (fiber.waiting) ++waiting;
          }
          if (waiting && waiting + finished != threads) {
            std::fprintf(stderr, "cuda_sim: divergent __syncthreads\n");
            std::abort();
          }
          if (waiting && finished) {
            std::fprintf(stderr, "cuda_sim: __syncthreads after some threads returned\n");
            std::abort();
          }
        }
      }
}

}  // namespace cuda_sim

inline void __syncthreads() { cuda_sim::sync_threads(); }

// ------------------------------------------------------------------ runtime
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
typedef void* cudaStream_t;
typedef void* cudaMemPool_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold };
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  std::size_t totalGlobalMem;
};

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorName(cudaError_t) { return "cudaSimError"; }
inline const char* cudaGetErrorString(cudaError_t) { return "simulated error"; }
inline cudaError_t cudaGetDeviceCount(int* count) { *count = 1; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::strcpy(p->name, "cuda_sim (CPU fibers)");
  p->major = 9, p->minor = 0, p->totalGlobalMem = std::size_t(1) << 30;
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int) { *pool = nullptr; return cudaSuccess; }
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
// Fresh memory is filled with a NaN-like byte pattern: a kernel that reads what it never
// wrote shows up as garbage in the comparison.
inline cudaError_t cudaMallocAsync(void** p, std::size_t n, int) {
  *p = std::malloc(n ? n : 1);
  std::memset(*p, 0xff, n);
  return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, std::size_t n) { return cudaMallocAsync(p, n, 0); }
inline cudaError_t cudaFreeAsync(void* p, int) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, std::size_t n, cudaMemcpyKind) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* d, int v, std::size_t n) { std::memset(d, v, n); return cudaSuccess; }
