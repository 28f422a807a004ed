// Shared helpers of the CPU kernels: BLAS calls, the OpenMP policy, size checks.
// Kernels know nothing of Python: raw pointers and sizes only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <omp.h>

namespace fastdl::cpu {

using index_t = std::int64_t;

// Below this many elements an element-wise kernel stays single-threaded: waking a
// team costs more than the work (and a busy neighbour process makes it far worse).
constexpr index_t kParallelGrain = 1 << 15;

// Threads for `work` elements of cheap work: 1 under the grain, else the team size.
inline int threads_for(index_t work) {
  return work < kParallelGrain ? 1 : omp_get_max_threads();
}

// A failed precondition raises (pybind11 turns std::invalid_argument into ValueError).
// Elements per thread for per-thread buffers carved from one allocation: n rounded up to
// whole cache lines plus one line, so no two threads ever write the same line. (Adjacent
// 136-byte row buffers made avg_pool2d slower on 2 threads than on 1.)
template <typename T>
constexpr index_t per_thread_stride(index_t n) {
  constexpr index_t line = sizeof(T) < 64 ? index_t(64 / sizeof(T)) : 1;
  return (n + line - 1) / line * line + line;
}

inline void check(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// Sum of n values in double, in an order fixed by n alone (8 interleaved partial sums,
// then combined pairwise): vectorizes, and gives the same bits on any thread count.
template <typename T>
inline double sum_fixed_order(const T* values, index_t n) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += static_cast<double>(values[i + k]);
  for (int k = 0; i < n; ++i, ++k) lanes[k] += static_cast<double>(values[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// Matrix product on row-major matrices, C = alpha * op(A) @ op(B) + beta * C.
// Backed by OpenBLAS; the only place BLAS is called, so the BLAS stays swappable.
// The BLAS uses its own threads: never call it from inside an OpenMP region.
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
          const T* a, index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc);

// Scratch memory owned by the calling thread, reused across calls (slot = which buffer).
// Large buffers freshly mapped on every call cost more in page faults than the GEMM
// they feed. The pointer stays valid until the same thread asks for the same slot again.
void* scratch_bytes(int slot, std::size_t bytes);

template <typename T>
T* scratch(int slot, index_t count) {
  return static_cast<T*>(scratch_bytes(slot, static_cast<std::size_t>(count) * sizeof(T)));
}

// One single-threaded BLAS call on the calling thread, for use inside OpenMP regions
// (each thread its own product). Precondition, checked by the caller before the region:
// every dimension and leading dimension fits the BLAS's 32-bit integers.
template <typename T>
void gemm_serial(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                 const T* a, index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc);

// Threads used by both pools (OpenMP kernels and BLAS); one pool runs at a time.
void set_num_threads(int n);
int get_num_threads();
int blas_num_threads();
bool malloc_tuning_active();  // glibc malloc tuned at load (runtime.cpp)
std::string blas_config();

}  // namespace fastdl::cpu
