// BLAS binding, the threaded GEMM, scratch memory and thread control.
#include "cpu/common.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <new>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

// One single-threaded BLAS call (sizes already checked).
void blas_call(bool ta, bool tb, index_t m, index_t n, index_t k, float alpha, const float* a,
               index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) {
  FASTDL_BLAS(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                           tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
                           int(lda), b, int(ldb), beta, c, int(ldc));
}

void blas_call(bool ta, bool tb, index_t m, index_t n, index_t k, double alpha, const double* a,
               index_t lda, const double* b, index_t ldb, double beta, double* c, index_t ldc) {
  FASTDL_BLAS(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                           tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k), alpha, a,
                           int(lda), b, int(ldb), beta, c, int(ldc));
}

// Below this many multiply-adds a GEMM runs on the calling thread alone.
constexpr index_t kParallelGemmWork = index_t(1) << 18;

}  // namespace

// The BLAS always runs single-threaded; parallelism comes from OpenMP over a tiling of
// C (and, for a small C with a long reduction, of K) that depends on (m, n, k) only.
// Every tile is the same single-threaded BLAS call whatever the thread count, and the
// K-partials are summed in a fixed order, so results are bitwise identical on 1 or N
// threads (OpenBLAS's own threading changes bits with the thread count when K % 32 != 0).
template <typename T>
void gemm(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
          const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  as_blas_int(m, "m"), as_blas_int(n, "n"), as_blas_int(k, "k");
  as_blas_int(lda, "lda"), as_blas_int(ldb, "ldb"), as_blas_int(ldc, "ldc");
  // Tiles of C: rows split in 128s past 256, columns sized so a tile holds ~64k entries.
  const index_t tile_m = m <= 256 ? m : 128;
  const index_t wide = std::max<index_t>(256, (index_t(1) << 16) / tile_m / 64 * 64);
  const index_t tile_n = n <= wide ? n : wide;
  const index_t tiles_m = (m + tile_m - 1) / tile_m, tiles_n = (n + tile_n - 1) / tile_n;
  const index_t tiles = tiles_m * tiles_n;
  // Few tiles and a long reduction (weight gradients): split K in fixed chunks too.
  index_t k_parts = 1;
  if (tiles < 8 && k >= 2048) k_parts = std::min<index_t>((8 + tiles - 1) / tiles, k / 1024);
  const index_t k_chunk = (k + k_parts - 1) / k_parts;
  const index_t threads = (m * n * k < kParallelGemmWork) ? 1 : omp_get_max_threads();
  if (k_parts == 1) {
#pragma omp parallel for schedule(static) num_threads(std::min(threads, tiles))
    for (index_t t = 0; t < tiles; ++t) {
      const index_t i0 = (t / tiles_n) * tile_m, j0 = (t % tiles_n) * tile_n;
      const index_t mm = std::min(tile_m, m - i0), nn = std::min(tile_n, n - j0);
      blas_call(ta, tb, mm, nn, k, alpha, a + (ta ? i0 : i0 * lda), lda,
                b + (tb ? j0 * ldb : j0), ldb, beta, c + i0 * ldc + j0, ldc);
    }
    return;
  }
  // partial[p] (m x n) = alpha * A[:, K_p] @ B[K_p, :]; then C = beta*C + sum_p partial[p].
  T* partial = scratch<T>(7, k_parts * m * n);
  const index_t jobs = tiles * k_parts;
#pragma omp parallel for schedule(static) num_threads(std::min(threads, jobs))
  for (index_t job = 0; job < jobs; ++job) {
    const index_t p = job / tiles, t = job % tiles;
    const index_t i0 = (t / tiles_n) * tile_m, j0 = (t % tiles_n) * tile_n;
    const index_t mm = std::min(tile_m, m - i0), nn = std::min(tile_n, n - j0);
    const index_t k0 = p * k_chunk, kk = std::max<index_t>(0, std::min(k_chunk, k - k0));
    T* out = partial + p * m * n + i0 * n + j0;
    if (kk == 0) {
      for (index_t i = 0; i < mm; ++i) std::fill(out + i * n, out + i * n + nn, T(0));
      continue;
    }
    blas_call(ta, tb, mm, nn, kk, alpha, a + (ta ? k0 * lda + i0 : i0 * lda + k0), lda,
              b + (tb ? j0 * ldb + k0 : k0 * ldb + j0), ldb, T(0), out, n);
  }
#pragma omp parallel for schedule(static) num_threads(threads_for(m * n * k_parts))
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      T total = beta == T(0) ? T(0) : beta * c[i * ldc + j];
      for (index_t p = 0; p < k_parts; ++p) total += partial[p * m * n + i * n + j];
      c[i * ldc + j] = total;
    }
  }
}

template <typename T>
void gemm_serial(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a,
                 index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  if (m == 0 || n == 0) return;
  blas_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template void gemm_serial<float>(bool, bool, index_t, index_t, index_t, float, const float*,
                                 index_t, const float*, index_t, float, float*, index_t);
template void gemm_serial<double>(bool, bool, index_t, index_t, index_t, double, const double*,
                                  index_t, const double*, index_t, double, double*, index_t);
template void gemm<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t,
                          const float*, index_t, float, float*, index_t);
template void gemm<double>(bool, bool, index_t, index_t, index_t, double, const double*, index_t,
                           const double*, index_t, double, double*, index_t);

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
struct Scratch {
  std::unique_ptr<void, FreeDeleter> memory;
  std::size_t bytes = 0;
};
constexpr int kScratchSlots = 16;
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

namespace {
// At load: the BLAS single-threaded for good (fastdl threads its GEMMs itself, above).
const bool blas_pinned = [] {
  FASTDL_BLAS(openblas_set_num_threads)(1);
  return true;
}();

// At load: glibc keeps freed blocks up to 32 MiB in the heap and trims the heap only past
// 512 MiB free, so a training loop's activations reuse memory that is already mapped
// instead of faulting in fresh zeroed pages every step (measured: one epoch of the demo
// CNN 9-12% faster). FASTDL_MALLOC_TUNING=0 leaves glibc's defaults alone.
bool tune_malloc() {
#if defined(__GLIBC__)
  const char* setting = std::getenv("FASTDL_MALLOC_TUNING");
  if (setting && std::string(setting) == "0") return false;
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 512 << 20) == 1;
#else
  return false;
#endif
}
const bool malloc_tuned = tune_malloc();
}  // namespace

bool malloc_tuning_active() { return malloc_tuned; }

void set_num_threads(int n) {
  check(n >= 1, "set_num_threads: n must be >= 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  FASTDL_BLAS(openblas_set_num_threads)(1);
}

int get_num_threads() { return omp_get_max_threads(); }
int blas_num_threads() { return FASTDL_BLAS(openblas_get_num_threads)(); }
std::string blas_config() { return FASTDL_BLAS(openblas_get_config)(); }

}  // namespace fastdl::cpu
