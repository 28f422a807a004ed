// BLAS binding and thread control.
#include "cpu/common.h"

#include <climits>
#include <cstdlib>
#include <memory>
#include <new>

#include <cblas.h>  // scipy-openblas32: every symbol carries the scipy_ prefix

// One line to swap the BLAS: map the generic names to the library's.
#define FASTDL_BLAS(name) scipy_##name

namespace fastdl::cpu {

namespace {
int as_blas_int(index_t v, const char* what) {
  check(v >= 0 && v <= INT_MAX, std::string("matrix dimension ") + what +
                                    " exceeds the 32-bit BLAS limit: " + std::to_string(v));
  return static_cast<int>(v);
}
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a,
                 index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  FASTDL_BLAS(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                           tb ? CblasTrans : CblasNoTrans, as_blas_int(m, "m"),
                           as_blas_int(n, "n"), as_blas_int(k, "k"), alpha, a,
                           as_blas_int(lda, "lda"), b, as_blas_int(ldb, "ldb"), beta, c,
                           as_blas_int(ldc, "ldc"));
}

template <>
void gemm<double>(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a,
                  index_t lda, const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  FASTDL_BLAS(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                           tb ? CblasTrans : CblasNoTrans, as_blas_int(m, "m"),
                           as_blas_int(n, "n"), as_blas_int(k, "k"), alpha, a,
                           as_blas_int(lda, "lda"), b, as_blas_int(ldb, "ldb"), beta, c,
                           as_blas_int(ldc, "ldc"));
}

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
struct Scratch {
  std::unique_ptr<void, FreeDeleter> memory;
  std::size_t bytes = 0;
};
constexpr int kScratchSlots = 8;
thread_local Scratch scratch_slots[kScratchSlots];
}  // namespace

void* scratch_bytes(int slot, std::size_t bytes) {
  check(slot >= 0 && slot < kScratchSlots, "scratch: bad slot");
  Scratch& s = scratch_slots[slot];
  if (s.bytes < bytes) {
    s.memory.reset();
    const std::size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc needs a multiple
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    s.memory.reset(p);
    s.bytes = rounded;
  }
  return s.memory.get();
}

void set_num_threads(int n) {
  check(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  FASTDL_BLAS(openblas_set_num_threads)(n);
}

int get_num_threads() { return omp_get_max_threads(); }
int blas_num_threads() { return FASTDL_BLAS(openblas_get_num_threads)(); }
std::string blas_config() { return FASTDL_BLAS(openblas_get_config)(); }

}  // namespace fastdl::cpu
