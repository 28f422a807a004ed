// Pooling: max_pool2d (kernels.h), avg_pool2d and adaptive_avg_pool2d (pool.h).
// (https://pytorch.org/docs/stable/nn.functional.html#pooling-functions)
//
// One thread owns whole (n, c) planes, so a backward scatter-add needs no atomics and sums
// in an order fixed by the shapes: results are bitwise identical on any thread count.
//
// Speed: pooling is memory-bound, so each kernel streams every input row once and works
// on whole output ROWS, with the output column as the inner loop (the compiler vectorizes
// it; a stride of 1 or 2 is a template constant so strided loads become shuffles):
//   max   common kernels (up to 3x3, stride 1-2): separable, the maximum over the
//         window's rows per input column, then over the window's columns (see
//         max_pool2d_forward_separable), in whole blocks of 16 columns, a row's last
//         block included (see "the last partial block" below); otherwise, for each
//         kernel offset (i, j) in row-major order, update best[x] and index[x] of the
//         interior columns at once;
//   avg   sum the window's input rows into one padded row buffer (for stride 2 split by
//         column parity), then add the kernel_w columns of each window;
//   backward (avg)  spread grad_output over the input rows; a row is written (=) the first
//         time a window reaches it and added (+=) afterwards, so no separate zero-fill
//         pass over grad_input is needed;
//   backward (max)  long rows gather each input row once from the windows that reach it;
//         short rows zero the plane (in cache) and scatter. The flat 3x3 kernels also keep
//         autograd's record of the winners as one-byte window codes (kernels.h): on
//         64x64x32x32 the backward went 1.05 -> 0.8 ms, a quarter of its bytes gone.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <limits>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "cpu/copy.h"
#include "cpu/kernels.h"
#include "cpu/pool.h"
#include "cpu/stream.h"

namespace fastdl::cpu {
namespace {

index_t floor_div(index_t a, index_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Asks for bytes [from, to) of src, a cache line at a time, ahead of their use.
inline void prefetch_bytes(const void* src, index_t from, index_t to) {
  const char* bytes = static_cast<const char*>(src);
  for (index_t b = from; b < to; b += 64) __builtin_prefetch(bytes + b);
}

// ---- the last partial block of a row.
// GCC 12 gives a vectorized loop a scalar remainder, and in the max-pooling loops that
// remainder branches on the data: random data mispredicts half of those branches (3x3/s2
// max pooling on 14x14 planes, all remainder: 8.5 ns per input element, 0.33 on 32x32).
// So the max-pooling steps run whole blocks of 16 only. A row's last, partial block reads
// on past the row's end (into the next row, or zero-padded copies at the tensor's end),
// writes whole blocks into scratch that has room for them (padding past the row), and
// copies only its `count` results into the output. With AVX-512 each copy is a few masked
// 64-byte moves.

// f(first, count, partial) over [0, n) in blocks of 16: whole blocks with partial = false,
// then the rest (count < 16) with partial = true, a compile-time flag: f runs a whole
// block either way (a fixed-size loop has no set-up, which on rows of 16 windows cost as
// much as the work), and for a partial one reads past n and copies out count results.
template <typename F>
__attribute__((always_inline)) inline void in_blocks_of_16(index_t n, F&& f) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16) f(i, index_t(16), std::false_type{});
  if (i < n) f(i, n - i, std::true_type{});
}

// For each input row iy, the output rows whose windows hold it, in increasing order. The
// same for every plane, so worked out once per call.
struct ReachingRows {
  std::vector<index_t> rows, start;
  template <typename Covers>
  ReachingRows(index_t height, index_t out_h, Covers covers) : start(static_cast<std::size_t>(height + 1), 0) {
    for (index_t iy = 0; iy < height; ++iy) {
      for (index_t y = 0; y < out_h; ++y)
        if (covers(y, iy)) rows.push_back(y);
      start[iy + 1] = static_cast<index_t>(rows.size());
    }
  }
  // Each row iy of a plane's input gradient (H x W at gin): build(iy, row, ys, count) for
  // the rows some window holds (ys: its count output rows), zero for the others.
  template <typename T, typename Build>
  void build_rows(T* gin, index_t W, Build&& build) const {
    const index_t H = static_cast<index_t>(start.size()) - 1;
    for (index_t iy = 0; iy < H; ++iy) {
      T* row = gin + iy * W;
      const index_t count = start[iy + 1] - start[iy];
      if (count == 0) std::fill(row, row + W, T(0));
      else build(iy, row, rows.data() + start[iy], count);
    }
  }
};

// Output columns [lo, hi) whose every kernel column x*stride - pad + j*dilation (j < kernel)
// lies in [0, width).
void interior_columns(index_t width, index_t out_w, index_t kernel, index_t stride, index_t pad,
                      index_t dilation, index_t& lo, index_t& hi) {
  lo = std::min(out_w, (pad + stride - 1) / stride);
  hi = std::clamp(floor_div(width - 1 + pad - (kernel - 1) * dilation, stride) + 1, lo, out_w);
}

// ------------------------------------------------------------------ max_pool2d
// The window of one output element, clipped to the input, scanned in PyTorch's order:
// the first maximum wins and every NaN is taken (so the last NaN).
template <typename T, typename I>
void max_window(const T* in, const Pool2dShape& s, index_t y, index_t x, T& out, I& index) {
  const index_t y0 = y * s.stride_h - s.pad_h, x0 = x * s.stride_w - s.pad_w;
  T best = -std::numeric_limits<T>::infinity();
  index_t best_index = -1;
  for (index_t i = 0; i < s.kernel_h; ++i) {
    const index_t iy = y0 + i * s.dilation_h;
    if (iy < 0 || iy >= s.height) continue;
    for (index_t j = 0; j < s.kernel_w; ++j) {
      const index_t ix = x0 + j * s.dilation_w;
      if (ix < 0 || ix >= s.width) continue;
      const T v = in[iy * s.width + ix];
      if (best_index < 0 || v > best || std::isnan(v)) {
        best = v;
        best_index = iy * s.width + ix;
      }
    }
  }
  out = best;
  index = best_index;
}

// Unsigned integer of T's width, to select between two values with bit masks.
template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// For x in [0, n): candidate v = src[x*stride] at flat index first + x*stride; the first
// candidate is taken as is (init), later ones when v > best or v is NaN.
// The selects are written with bit masks: the vectorized body becomes blends either way,
// but the compiler's scalar remainder (up to 15 columns of every row) would otherwise
// branch on the data, and random data mispredicts those branches half the time.
template <int S, bool init, typename T, typename I>
void max_update(const T* __restrict src, index_t stride_rt, index_t first, index_t n,
                T* __restrict best, I* __restrict index) {
  const index_t stride = S ? S : stride_rt;
  if (init) {
#pragma omp simd
    for (index_t x = 0; x < n; ++x) {
      best[x] = src[x * stride];
      index[x] = first + x * stride;
    }
    return;
  }
#pragma omp simd
  for (index_t x = 0; x < n; ++x) {
    const T v = src[x * stride], b = best[x];
    const int take = int(v > b) | int(v != v);
    Bits<T> v_bits, b_bits;
    std::memcpy(&v_bits, &v, sizeof(T));
    std::memcpy(&b_bits, &b, sizeof(T));
    const Bits<T> value_mask = Bits<T>(0) - Bits<T>(take);
    const Bits<T> chosen = (v_bits & value_mask) | (b_bits & ~value_mask);
    std::memcpy(&best[x], &chosen, sizeof(T));
    const I index_mask = -I(take);
    index[x] = ((first + x * stride) & index_mask) | (index[x] & ~index_mask);
  }
}

template <bool init, typename T, typename I>
void max_update_any(const T* src, index_t stride, index_t first, index_t n, T* best, I* index) {
  if (stride == 1) max_update<1, init>(src, 1, first, n, best, index);
  else if (stride == 2) max_update<2, init>(src, 2, first, n, best, index);
  else max_update<0, init>(src, stride, first, n, best, index);
}

// ---- separable max pooling: the window rows first, then the window columns.
// The first maximum in PyTorch's row-major window order is the one with the smallest flat
// index (rows ascend, then columns), and the last NaN the one with the largest. So a
// window's winner can be found in two steps: per input column, the maximum over the
// window's rows (first maximum, last NaN: a strict > as PyTorch's loop), then across the
// window's columns, where equal values go to the smaller index and NaNs to the larger.
// Each step is one unit-stride loop over a row; the column maxima of a row of windows are
// computed once and shared by the overlapping windows. Padding columns hold (-inf, a
// largest index): they never win against a real element.

constexpr std::int32_t kPadIndex = std::numeric_limits<std::int32_t>::max();

// Window codes (max_pool2d_window_codes, kernels.h): the steps carry 3 * (row in the
// window) in place of a flat index, and the window step adds the column in the window, so
// a code is 3 r + c: in one window, the order of codes is the order of flat indices. The
// padding code is above every real one and leaves room for that addition.
constexpr std::int32_t kPadCode = 64;
template <bool Codes>
constexpr std::int32_t kPadAt = Codes ? kPadCode : kPadIndex;

// Column step: whether the candidate (v, i) replaces (best, at). Arguments by value: a
// reference to a loop local makes GCC's omp-simd lowering keep it in memory, and the loop
// then does not vectorize.
template <typename T>
__attribute__((always_inline)) inline bool max_takes(T v, std::int32_t i, T best, std::int32_t at) {
  const bool nan = v != v, best_nan = best != best;
  return (v > best) | ((v == best) & (i < at)) | (nan & ((!best_nan) | (i > at)));
}

// Row step over R input rows r[0..R), 16 columns: value and flat index of each column's
// maximum, into (val, idx); columns from `valid` on get padding (-inf, kPadIndex).
template <int R, typename T>
__attribute__((always_inline)) inline void column_max_block(const T* const* r, const std::int32_t* start,
                                                            T* __restrict val, std::int32_t* __restrict idx,
                                                            index_t valid = 16) {
  const T* __restrict r0 = r[0];
  const T* __restrict r1 = r[R > 1 ? 1 : 0];
  const T* __restrict r2 = r[R > 2 ? 2 : 0];
  const std::int32_t b0 = start[0], b1 = start[R > 1 ? 1 : 0], b2 = start[R > 2 ? 2 : 0];
#pragma omp simd
  for (index_t c = 0; c < 16; ++c) {
    T best = r0[c];
    std::int32_t at = b0 + static_cast<std::int32_t>(c);
    if constexpr (R > 1) {
      const T v = r1[c];
      const bool take = (v > best) | (v != v);
      best = take ? v : best;
      at = take ? b1 + static_cast<std::int32_t>(c) : at;
    }
    if constexpr (R > 2) {
      const T v = r2[c];
      const bool take = (v > best) | (v != v);
      best = take ? v : best;
      at = take ? b2 + static_cast<std::int32_t>(c) : at;
    }
    val[c] = c < valid ? best : -std::numeric_limits<T>::infinity();
    idx[c] = c < valid ? at : kPadIndex;
  }
}

// The R input rows r[k] + offset (k < R) and their flat starts, for a block at `offset`
// (with Codes the starts as given: a code does not hold the column).
template <int R, typename T, bool Codes = false>
struct RowsAt {
  const T* rows[3];
  std::int32_t starts[3];
  RowsAt(const T* const* r, const std::int32_t* start, index_t offset) {
    for (int k = 0; k < 3; ++k) {
      const int q = k < R ? k : 0;
      rows[k] = r[q] + offset;
      starts[k] = start[q] + (Codes ? 0 : static_cast<std::int32_t>(offset));
    }
  }
};

// column_max_block over columns [0, width), whole blocks only: the last one writes padding
// (-inf, kPadIndex) past `width`, so the outputs need room for it, and reads whole rows
// where they end before `end` (else zero-padded copies).
template <int R, typename T>
__attribute__((always_inline)) inline void column_max(const T* const* r, const std::int32_t* start, index_t width,
                                                      T* val, std::int32_t* idx, const T* end) {
  in_blocks_of_16(width, [&](index_t c, index_t count, auto partial) __attribute__((always_inline)) {
    RowsAt<R, T> at(r, start, c);
    if constexpr (partial) {
      alignas(64) T copies[3][16];
      for (int k = 0; k < R; ++k) at.rows[k] = readable<16>(at.rows[k], count, end, copies[k]);
      column_max_block<R>(at.rows, at.starts, val + c, idx + c, count);
    } else {
      column_max_block<R>(at.rows, at.starts, val + c, idx + c);
    }
  });
}

// For stride 2: the column maxima of input columns 2m (even[m]) and 2m + 1 (odd[m]) for
// m < 16, over R input rows, each row read as whole column pairs (no gap: GCC vectorizes
// it with shuffles, where a load of one column per pair made it peel a scalar iteration);
// pairs from `valid` on get padding (-inf, kPadAt). The index of row k's element is
// start[k] plus its column, or with Codes start[k] alone.
template <int R, bool Codes, typename T>
__attribute__((always_inline)) inline void column_max_pairs_block(
    const T* const* r, const std::int32_t* start, T* __restrict ve, T* __restrict vo,
    std::int32_t* __restrict ie, std::int32_t* __restrict io, index_t valid) {
  const T* __restrict r0 = r[0];
  const T* __restrict r1 = r[R > 1 ? 1 : 0];
  const T* __restrict r2 = r[R > 2 ? 2 : 0];
  const std::int32_t b0 = start[0], b1 = start[R > 1 ? 1 : 0], b2 = start[R > 2 ? 2 : 0];
#pragma omp simd
  for (index_t m = 0; m < 16; ++m) {
    const std::int32_t c = Codes ? 0 : static_cast<std::int32_t>(2 * m), c1 = Codes ? 0 : c + 1;
    T e = r0[2 * m], o = r0[2 * m + 1];
    std::int32_t ei = b0 + c, oi = b0 + c1;
    if constexpr (R > 1) {
      const T x = r1[2 * m], y = r1[2 * m + 1];
      const bool te = (x > e) | (x != x), to = (y > o) | (y != y);
      e = te ? x : e, ei = te ? b1 + c : ei;
      o = to ? y : o, oi = to ? b1 + c1 : oi;
    }
    if constexpr (R > 2) {
      const T x = r2[2 * m], y = r2[2 * m + 1];
      const bool te = (x > e) | (x != x), to = (y > o) | (y != y);
      e = te ? x : e, ei = te ? b2 + c : ei;
      o = to ? y : o, oi = to ? b2 + c1 : oi;
    }
    constexpr T pad = -std::numeric_limits<T>::infinity();
    ve[m] = m < valid ? e : pad, ie[m] = m < valid ? ei : kPadAt<Codes>;
    vo[m] = m < valid ? o : pad, io[m] = m < valid ? oi : kPadAt<Codes>;
  }
}

// column_max_pairs_block over column pairs [0, pairs), whole blocks only: the last one
// writes padding (-inf, kPadAt) past `pairs`, so the outputs need room for it, and
// reads whole rows where they end before `end` (else zero-padded copies).
template <int R, bool Codes = false, typename T>
__attribute__((always_inline)) inline void column_max_pairs(const T* const* r, const std::int32_t* start,
                                                            index_t pairs, T* ve, T* vo, std::int32_t* ie,
                                                            std::int32_t* io, const T* end) {
  in_blocks_of_16(pairs, [&](index_t m, index_t count, auto partial) __attribute__((always_inline)) {
    RowsAt<R, T, Codes> at(r, start, 2 * m);
    alignas(64) T copies[3][32];
    if constexpr (partial)
      for (int k = 0; k < R; ++k) at.rows[k] = readable<32>(at.rows[k], 2 * count, end, copies[k]);
    column_max_pairs_block<R, Codes>(at.rows, at.starts, ve + m, vo + m, ie + m, io + m, count);
  });
}

// Column step over 16 windows of K columns; window x's columns are (a[x], ai[x]), (b[x],
// bi[x]) and, for K = 3, (c[x], ci[x]). Two loops of one candidate each for K = 3: with
// both in one loop GCC 12 does not vectorize it. `at` (16 entries) is scratch. Windows x
// with cut[x] != 0 (when Cut) drop their first column: it is taken as padding. With Codes
// the candidates' indices are codes less their column in the window (0, 1, 2).
template <int K, bool Cut, bool Codes, typename T, typename I>
__attribute__((always_inline)) inline void window_max_block(
    const T* __restrict a, const std::int32_t* __restrict ai, const T* __restrict b,
    const std::int32_t* __restrict bi, const T* __restrict c, const std::int32_t* __restrict ci,
    T* __restrict out, I* __restrict index, std::int32_t* __restrict at, const std::int32_t* __restrict cut) {
  static_assert(Codes == (sizeof(I) == 1), "window codes are the one-byte indices");
  for (index_t x = 0; x < 16; ++x) {
    // A dropped column loses to any other, as padding would (no conditional load of it:
    // GCC 12 does not vectorize a masked load here).
    const std::int32_t bx = bi[x] + (Codes ? 1 : 0);
    bool take = max_takes(b[x], bx, a[x], ai[x]);
    if constexpr (Cut) take |= cut[x] != 0;
    out[x] = take ? b[x] : a[x];
    if constexpr (K == 2) index[x] = static_cast<I>(take ? bx : ai[x]);
    else at[x] = take ? bx : ai[x];
  }
  if constexpr (K > 2 && sizeof(I) >= 4) {
    for (index_t x = 0; x < 16; ++x) {
      const bool take = max_takes(c[x], ci[x], out[x], at[x]);
      out[x] = take ? c[x] : out[x];
      index[x] = take ? ci[x] : at[x];
    }
  } else if constexpr (K > 2) {  // codes: narrowed in a loop of their own (in the loop
    // above, GCC 12 vectorizes one-byte stores 4 lanes at a time)
    for (index_t x = 0; x < 16; ++x) {
      const std::int32_t cx = ci[x] + (Codes ? 2 : 0);
      const bool take = max_takes(c[x], cx, out[x], at[x]);
      out[x] = take ? c[x] : out[x];
      at[x] = take ? cx : at[x];
    }
    for (index_t x = 0; x < 16; ++x) index[x] = static_cast<I>(at[x]);
  }
}

// window_max_block over windows [0, n); `at` needs 16 entries. The inputs may be read a
// whole block past n: the last block is computed whole into a copy, and its results
// copied out. With a row length `row` (> 0), the windows lie in rows end to end and each
// row's first window drops its first column; `cut` then holds row + 16 entries, cut[j]
// nonzero where j % row == 0.
template <int K, bool Codes = false, typename T, typename I>
__attribute__((always_inline)) inline void window_max(const T* a, const std::int32_t* ai, const T* b,
                                                      const std::int32_t* bi, const T* c, const std::int32_t* ci,
                                                      index_t n, T* out, I* index, std::int32_t* at,
                                                      index_t row = 0, const std::int32_t* cut = nullptr) {
  index_t phase = 0;  // x % row of the block's first window
  in_blocks_of_16(n, [&](index_t x, index_t count, auto partial) __attribute__((always_inline)) {
    const auto block = [&](T* v, I* ix) __attribute__((always_inline)) {
      if (row > 0) window_max_block<K, true, Codes>(a + x, ai + x, b + x, bi + x, c + x, ci + x, v, ix, at, cut + phase);
      else window_max_block<K, false, Codes>(a + x, ai + x, b + x, bi + x, c + x, ci + x, v, ix, at, cut);
    };
    if constexpr (partial) {
      alignas(64) T v[16];
      alignas(64) I ix[16];
      block(v, ix);
      copy_masked(out + x, v, count), copy_masked(index + x, ix, count);
    } else {
      block(out + x, index + x);
      if (row > 0)
        for (phase += 16; phase >= row;) phase -= row;
    }
  });
}

// Windows that tile the plane in 2x2 blocks (kernel = stride = 2, no padding, dilation 1,
// every window whole): one loop per output row over both input rows, each read as whole
// column pairs (no gap, so no scalar peeling); no buffer at all. The comparisons follow
// PyTorch's row-major scan: (0,0), (0,1), (1,0), (1,1), first maximum, last NaN.
bool max_pool2d_tiles_2x2(const Pool2dShape& s) {
  return s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 &&
         s.pad_w == 0 && s.dilation_h == 1 && s.dilation_w == 1 && 2 * s.out_h <= s.height &&
         2 * s.out_w <= s.width && s.height * s.width < (index_t(1) << 31);
}

// 16 windows of one row: input rows r0, r1 (flat starts b0, b1), columns 2x and 2x + 1.
template <typename T, typename I>
__attribute__((always_inline)) inline void max_tiles_2x2_block(const T* __restrict r0, const T* __restrict r1,
                                                               std::int32_t b0, std::int32_t b1,
                                                               T* __restrict out, I* __restrict index) {
#pragma omp simd
  for (index_t x = 0; x < 16; ++x) {
    const std::int32_t c = static_cast<std::int32_t>(2 * x);
    T best = r0[2 * x];
    std::int32_t at = b0 + c;
    const T v1 = r0[2 * x + 1], v2 = r1[2 * x], v3 = r1[2 * x + 1];
    const bool t1 = (v1 > best) | (v1 != v1);
    best = t1 ? v1 : best;
    at = t1 ? b0 + c + 1 : at;
    const bool t2 = (v2 > best) | (v2 != v2);
    best = t2 ? v2 : best;
    at = t2 ? b1 + c : at;
    const bool t3 = (v3 > best) | (v3 != v3);
    best = t3 ? v3 : best;
    at = t3 ? b1 + c + 1 : at;
    out[x] = best;
    index[x] = at;
  }
}

template <typename T, typename I>
void max_pool2d_forward_2x2(const T* input, T* output, I* indices, const Pool2dShape& s) {
  const index_t W = s.width, OH = s.out_h, OW = s.out_w, HW = s.height * W, OHW = OH * OW;
  const T* end = input + s.planes * HW;  // a partial block reads past its row up to here
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * (HW + 4 * OHW)))
  for (index_t p = 0; p < s.planes; ++p)
    for (index_t y = 0; y < OH; ++y) {
      const T* r0 = input + p * HW + 2 * y * W;
      const T* r1 = r0 + W;
      T* out = output + p * OHW + y * OW;
      I* index = indices + p * OHW + y * OW;
      const std::int32_t b0 = static_cast<std::int32_t>(2 * y * W), b1 = b0 + static_cast<std::int32_t>(W);
      in_blocks_of_16(OW, [&](index_t x, index_t count, auto partial) __attribute__((always_inline)) {
        const std::int32_t c = static_cast<std::int32_t>(2 * x);
        if constexpr (partial) {
          alignas(64) T top[32], bottom[32], v[16];
          alignas(64) I ix[16];
          max_tiles_2x2_block(readable<32>(r0 + 2 * x, 2 * count, end, top),
                              readable<32>(r1 + 2 * x, 2 * count, end, bottom), b0 + c, b1 + c, v, ix);
          copy_masked(out + x, v, count), copy_masked(index + x, ix, count);
        } else {
          max_tiles_2x2_block(r0 + 2 * x, r1 + 2 * x, b0 + c, b1 + c, out + x, index + x);
        }
      });
    }
}

// 3x3 windows, stride 2, padding 1 on planes of even width (floor mode): ResNet's pooling
// (its stem's on 112x112 maps; the course's CNNs' on 32x32). The row step takes the column
// maxima of rows 2y - 1, 2y, 2y + 1 for each output row y, split by column parity, in
// fixed blocks of 16 pairs (in_blocks_of_16: rows of 16 windows spent as long setting up
// a loop as doing the work); an earlier flat loop over every row r of the plane did twice
// the work. The window step then runs over a group of rows' maxima at once (rows lie end
// to end; a 32x32 plane is one group); each row's first window covers input columns -1
// (padding), 0 and 1, so the window step drops its first column (in the buffer the
// previous row's last) by a mask. Redoing those windows in a scalar loop afterwards took
// a third of the forward (a branch on the data per row). On wide planes these kernels
// replaced the separable forward and the column-pair gather backward: 16x64x128x128 f+b
// 12.0 -> 9.3 ms, 8x64x112x112 5.0 -> 3.7 ms on one thread (window codes included), and
// the gradient's sums now in PyTorch's order.
bool max_pool2d_flat_3x3(const Pool2dShape& s) {
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 1 &&
         s.pad_w == 1 && s.dilation_h == 1 && s.dilation_w == 1 && s.width % 2 == 0 && s.height >= 2 &&
         s.out_w == s.width / 2 && s.out_h == (s.height + 1) / 2 && s.height * s.width < (index_t(1) << 31);
}

// Output rows per group of the flat 3x3 kernels, about 128 windows (256 on rows under 32
// windows: ResNet's 32x32 planes whole). Groups of 1024 windows, the buffers still in L1,
// ran 16x64x128x128 at 8.2 ms forward and 8.7 backward, 128 windows at 5.9 and 4.2.
index_t flat_3x3_rows(index_t out_w) { return std::max<index_t>(1, (out_w < 32 ? 256 : 128) / out_w); }

// I = std::uint8_t: window codes (kernels.h) in place of flat indices.
template <typename T, typename I>
void max_pool2d_forward_flat_3x3(const T* input, T* output, I* indices, const Pool2dShape& s) {
  constexpr bool codes = std::is_same_v<I, std::uint8_t>;
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  const T* end = input + s.planes * HW;  // a partial block reads past its row up to here
  const int threads = threads_for(s.planes * (HW + 9 * OHW));
  const index_t group = flat_3x3_rows(OW);
  // Per thread: the column maxima of a group's rows, even (ve, ie) and odd (vo, io)
  // columns, each group * OW entries and a block's slack (steps write and read whole
  // blocks); vo[-1] is read (and dropped) by row 0's first window: one entry before vo.
  const index_t region = std::min(OH, group) * OW + 16;
  const index_t values_stride = per_thread_stride<T>(2 * region + 1), flat_stride = per_thread_stride<std::int32_t>(2 * region + 1);
  std::vector<T> values(static_cast<std::size_t>(threads * values_stride));
  std::vector<std::int32_t> flat(static_cast<std::size_t>(threads * flat_stride));
  const std::int32_t w32 = static_cast<std::int32_t>(W);
  std::vector<std::int32_t> cut(static_cast<std::size_t>(OW + 16));
  for (index_t j = 0; j < OW + 16; ++j) cut[j] = j % OW == 0;
#pragma omp parallel num_threads(threads)
  {
    T* ve = values.data() + omp_get_thread_num() * values_stride;
    T* vo = ve + region + 1;
    std::int32_t* ie = flat.data() + omp_get_thread_num() * flat_stride;
    std::int32_t* io = ie + region + 1;
    vo[-1] = -std::numeric_limits<T>::infinity();
    io[-1] = kPadAt<codes>;
    std::int32_t at[16];  // window_max's scratch
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* in = input + p * HW;
      for (index_t y0 = 0; y0 < OH; y0 += group) {
        const index_t y1 = std::min(OH, y0 + group);
        for (index_t y = y0; y < y1; ++y) {
          const index_t k = (y - y0) * OW;
          // The input rows new to window row y + 2, asked for now, as the separable
          // kernel does (16x64x128x128: 7.1 -> 5.9 ms forward); on rows under 64 columns
          // it lost (64x64x32x32: 1.0 -> 1.2 ms).
          if (W >= 64)
            for (index_t iy = 2 * y + 4; iy < std::min(H, 2 * y + 6); ++iy)
              prefetch_bytes(in + iy * W, 0, W * index_t(sizeof(T)));
          if (y == 0) {  // row -1 is padding: rows 0 and 1, window rows 1 and 2
            const T* first[2] = {in, in + W};
            const std::int32_t first_starts[2] = {codes ? 3 : 0, codes ? 6 : w32};
            column_max_pairs<2, codes>(first, first_starts, OW, ve, vo, ie, io, end);
            continue;
          }
          // The centre row 2y of window row y (a last centre row H - 1 has row H,
          // padding, below it).
          const index_t top = 2 * y - 1;
          const T* rows[3] = {in + top * W, in + (top + 1) * W, in + (top + 2) * W};
          const std::int32_t starts[3] = {codes ? 0 : static_cast<std::int32_t>(top * W),
                                          codes ? 3 : static_cast<std::int32_t>((top + 1) * W),
                                          codes ? 6 : static_cast<std::int32_t>((top + 2) * W)};
          if (top + 2 < H) column_max_pairs<3, codes>(rows, starts, OW, ve + k, vo + k, ie + k, io + k, end);
          else column_max_pairs<2, codes>(rows, starts, OW, ve + k, vo + k, ie + k, io + k, end);
        }
        // Window x of row y (k = (y - y0) OW + x) covers the column maxima vo[k - 1],
        // ve[k], vo[k]: one flat pass over the group's windows, each row's window 0
        // without vo[k - 1] (input column -1, padding; in the buffer the previous row's
        // last).
        const index_t first = p * OHW + y0 * OW;
        window_max<3, codes>(vo - 1, io - 1, ve, ie, vo, io, (y1 - y0) * OW, output + first, indices + first, at, OW,
                             cut.data());
      }
    }
  }
}

// Kernels of at most 3 rows and 2 or 3 columns, column stride 1 or 2, dilation 1, column
// padding at most 1, planes under 2^31 elements. Returns false (nothing done) otherwise.
template <typename T, typename I>
bool max_pool2d_forward_separable(const T* input, T* output, I* indices,
                                  const Pool2dShape& s) {
  const index_t kw = s.kernel_w, sw = s.stride_w, pw = s.pad_w;
  if (s.dilation_h != 1 || s.dilation_w != 1 || kw < 2 || kw > 3 || s.kernel_h > 3 || sw > 2 ||
      pw > 1 || 2 * s.pad_h > s.kernel_h || s.height * s.width >= (index_t(1) << 31))
    return false;
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w;
  const index_t HW = H * W, OHW = OH * OW;
  const T* end = input + s.planes * HW;  // a partial block reads past its row up to here
  // Per thread: the column maxima, at full resolution in padded columns (stride 1) or
  // split by parity (stride 2: ve/vo[m] = input column 2m / 2m + 1, from m = -1); entries
  // outside the input are padding, set once and rewritten as padding by the rows' whole
  // last blocks. Each half has room for whole blocks past the row (written by the column
  // step, read by the window step); stride 1 uses the whole span.
  const index_t half = (std::max(W, OW) + 2 + 15) / 16 * 16 + 16, span = 2 * half + 2;
  const int threads = threads_for(s.planes * (HW + OHW * s.kernel_h * kw));
  const index_t values_stride = per_thread_stride<T>(span), flat_stride = per_thread_stride<std::int32_t>(span + 16);
  std::vector<T> values(static_cast<std::size_t>(threads * values_stride));
  std::vector<std::int32_t> flat(static_cast<std::size_t>(threads * flat_stride));
  constexpr T lowest = -std::numeric_limits<T>::infinity();
#pragma omp parallel num_threads(threads)
  {
    T* v = values.data() + omp_get_thread_num() * values_stride;
    std::int32_t* ix = flat.data() + omp_get_thread_num() * flat_stride;
    std::int32_t* at = ix + span;
    std::fill(v, v + span, lowest);
    std::fill(ix, ix + span, kPadIndex);
    T *ve = v + 1, *vo = v + half + 1;
    std::int32_t *ie = ix + 1, *io = ix + half + 1;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* in = input + p * HW;
      T* out = output + p * OHW;
      I* idx = indices + p * OHW;
      for (index_t y = 0; y < OH; ++y) {
        T* out_row = out + y * OW;
        I* idx_row = idx + y * OW;
        const T* rows[3];
        std::int32_t starts[3];
        int valid = 0;
        for (index_t i = 0; i < s.kernel_h; ++i) {
          const index_t iy = y * s.stride_h - s.pad_h + i;
          if (iy < 0 || iy >= H) continue;
          rows[valid] = in + iy * W;
          starts[valid++] = static_cast<std::int32_t>(iy * W);
        }
        if (valid == 0) {  // every row of these windows is padding
          std::fill(out_row, out_row + OW, lowest);
          std::fill(idx_row, idx_row + OW, I(-1));
          continue;
        }
        // The input rows new to the windows two output rows ahead, asked for now: one
        // thread's stream of rows otherwise waits on memory (7.4 -> 6.3 ms on
        // 16x64x128x128, 3x3/s2, one thread).
        const index_t ahead = (y + 2) * s.stride_h - s.pad_h + s.kernel_h - 1;
        for (index_t k = 0; k < s.stride_h; ++k) {
          const index_t iy = ahead - k;
          if (iy >= 0 && iy < H) prefetch_bytes(in + iy * W, 0, W * index_t(sizeof(T)));
        }
        if (sw == 2) {
          const index_t pairs = W / 2;
          switch (valid) {
            case 1: column_max_pairs<1>(rows, starts, pairs, ve, vo, ie, io, end); break;
            case 2: column_max_pairs<2>(rows, starts, pairs, ve, vo, ie, io, end); break;
            default: column_max_pairs<3>(rows, starts, pairs, ve, vo, ie, io, end);
          }
          if (W % 2) {  // the last input column has no pair
            const index_t c = W - 1;
            ve[pairs] = rows[0][c], ie[pairs] = starts[0] + std::int32_t(c);
            for (int k = 1; k < valid; ++k) {
              const T x = rows[k][c];
              if ((x > ve[pairs]) | (x != x)) ve[pairs] = x, ie[pairs] = starts[k] + std::int32_t(c);
            }
          }
          // Window x covers input columns 2x - pw + j, j < kw.
          if (pw == 0) {
            if (kw == 2) window_max<2>(ve, ie, vo, io, ve + 1, ie + 1, OW, out_row, idx_row, at);
            else window_max<3>(ve, ie, vo, io, ve + 1, ie + 1, OW, out_row, idx_row, at);
          } else {
            if (kw == 2) window_max<2>(vo - 1, io - 1, ve, ie, vo, io, OW, out_row, idx_row, at);
            else window_max<3>(vo - 1, io - 1, ve, ie, vo, io, OW, out_row, idx_row, at);
          }
        } else {
          switch (valid) {  // padded column c + pw holds input column c
            case 1: column_max<1>(rows, starts, W, v + pw, ix + pw, end); break;
            case 2: column_max<2>(rows, starts, W, v + pw, ix + pw, end); break;
            default: column_max<3>(rows, starts, W, v + pw, ix + pw, end);
          }
          if (kw == 2) window_max<2>(v, ix, v + 1, ix + 1, v + 2, ix + 2, OW, out_row, idx_row, at);
          else window_max<3>(v, ix, v + 1, ix + 1, v + 2, ix + 2, OW, out_row, idx_row, at);
        }
      }
    }
  }
  return true;
}

}  // namespace

template <typename T, typename I>
void max_pool2d_forward(const T* input, T* output, I* indices, const Pool2dShape& s) {
  if (max_pool2d_tiles_2x2(s)) return max_pool2d_forward_2x2(input, output, indices, s);
  if (max_pool2d_flat_3x3(s)) return max_pool2d_forward_flat_3x3(input, output, indices, s);
  if (max_pool2d_forward_separable(input, output, indices, s)) return;
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w;
  const index_t HW = H * W, OHW = OH * OW;
  index_t lo, hi;
  interior_columns(W, OW, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w, lo, hi);
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * (HW + OHW * s.kernel_h * s.kernel_w)))
  for (index_t p = 0; p < s.planes; ++p) {
    const T* in = input + p * HW;
    T* out = output + p * OHW;
    I* idx = indices + p * OHW;
    for (index_t y = 0; y < OH; ++y) {
      T* out_row = out + y * OW;
      I* idx_row = idx + y * OW;
      for (index_t x = 0; x < lo; ++x) max_window(in, s, y, x, out_row[x], idx_row[x]);
      for (index_t x = hi; x < OW; ++x) max_window(in, s, y, x, out_row[x], idx_row[x]);
      // Interior columns: kernel offsets in row-major order, all columns at once.
      bool first = true;
      for (index_t i = 0; i < s.kernel_h; ++i) {
        const index_t iy = y * s.stride_h - s.pad_h + i * s.dilation_h;
        if (iy < 0 || iy >= H) continue;
        for (index_t j = 0; j < s.kernel_w; ++j) {
          const index_t start = iy * W + lo * s.stride_w - s.pad_w + j * s.dilation_w;
          if (first) max_update_any<true>(in + start, s.stride_w, start, hi - lo, out_row + lo, idx_row + lo);
          else max_update_any<false>(in + start, s.stride_w, start, hi - lo, out_row + lo, idx_row + lo);
          first = false;
        }
      }
      if (first) {  // every row of these windows is padding
        std::fill(out_row + lo, out_row + hi, -std::numeric_limits<T>::infinity());
        std::fill(idx_row + lo, idx_row + hi, I(-1));
      }
    }
  }
}

namespace {

// For each input row, the rows of max-pooling windows that hold it.
ReachingRows max_window_rows(const Pool2dShape& s) {
  return ReachingRows(s.height, s.out_h, [&](index_t y, index_t iy) {
    const index_t offset = iy - (y * s.stride_h - s.pad_h);
    return offset >= 0 && offset % s.dilation_h == 0 && offset / s.dilation_h < s.kernel_h;
  });
}

// The gather form of the max-pooling backward for column stride 1 (at most 3 kernel
// columns, column dilation 1, column padding at most 1): every input row iy is built once
// in a row buffer from the windows that reach it, then written to grad_input, so there is
// no zero-fill pass and no scalar scatter. For a window row y over iy and a kernel column
// j, output column x looks at input column x - pw + j and passes g[y][x] when its saved
// index is that element: for fixed (y, j) the loop over x is unit-stride. Contributions to
// one element add in the order (window row, kernel column): fixed. An index outside its
// window (only hand-made indices) passes nothing.
template <typename T, typename I>
void max_pool2d_backward_gather_unit(const T* grad_output, const I* indices,
                                     T* grad_input, const Pool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, pw = s.pad_w;
  const index_t HW = H * W, OHW = OH * OW;
  const ReachingRows reaching = max_window_rows(s);
  // Buffer entries -1 .. len - 2: input column c at entry c (x - pw + j reaches -1 and OW + 1).
  const index_t len = std::max(OW + 2, W) + 1;
  const int threads = threads_for(s.planes * (HW + OHW * s.kernel_w));
  const index_t thread_stride = per_thread_stride<T>(len);
  std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride));
#pragma omp parallel num_threads(threads)
  {
    T* buf = buffers.data() + omp_get_thread_num() * thread_stride + 1;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* gout = grad_output + p * OHW;
      const I* idx = indices + p * OHW;
      reaching.build_rows(grad_input + p * HW, W, [&](index_t iy, T* row, const index_t* ys, index_t count) {
        std::fill(buf - 1, buf - 1 + len, T(0));
        for (index_t k = 0; k < count; ++k) {
          const T* __restrict g = gout + ys[k] * OW;
          const I* __restrict at = idx + ys[k] * OW;
          for (index_t j = 0; j < s.kernel_w; ++j) {
            const index_t q = j - pw;
            T* __restrict dst = buf + q;
            const I first = iy * W + q;  // the index output column 0 would pass
#pragma omp simd
            for (index_t x = 0; x < OW; ++x) dst[x] += at[x] == first + x ? g[x] : T(0);
          }
        }
        std::copy(buf, buf + W, row);
      });
    }
  }
}

}  // namespace

// The gather for column stride 2, at most 3 kernel columns, column padding at most 1: input
// column 2m + r (r = 0, 1) is reached by the kernel columns j = 2d + r + pw of window
// x = m - d, so ONE loop over the column pairs m builds an input row from the (at most
// NR = 2, with row stride 2) window rows over it, each adding the gradient of every
// reaching window whose saved index is that element. Windows m - 1, m, m + 1 are read
// from padded copies of the window rows (sentinels: gradient 0, index -1), made once per
// plane, so no column needs a bounds test. `add`: the row already holds a partial sum
// (a third window row, only with row stride 1 or kernels over 3 rows).
template <int K, int PW, int NR, typename T>
void gather_pairs(const T* const* g, const std::int32_t* const* at, std::int32_t base,
                  index_t pairs, bool add, T* __restrict row) {
  const T* __restrict g0 = g[0];
  const T* __restrict g1 = g[NR > 1 ? 1 : 0];
  const std::int32_t* __restrict a0 = at[0];
  const std::int32_t* __restrict a1 = at[NR > 1 ? 1 : 0];
  const auto reach = [&](index_t m, int r) {
    T sum = T(0);
    for (int j = 0; j < K; ++j) {
      if ((j - r - PW) % 2) continue;  // kernel column j reaches the other parity
      const index_t x = m - (j - r - PW) / 2;
      const std::int32_t target = base + static_cast<std::int32_t>(2 * m + r);
      sum += a0[x] == target ? g0[x] : T(0);
      if constexpr (NR > 1) sum += a1[x] == target ? g1[x] : T(0);
    }
    return sum;
  };
  if (add) {
#pragma omp simd
    for (index_t m = 0; m < pairs; ++m) row[2 * m] += reach(m, 0), row[2 * m + 1] += reach(m, 1);
  } else {
#pragma omp simd
    for (index_t m = 0; m < pairs; ++m) row[2 * m] = reach(m, 0), row[2 * m + 1] = reach(m, 1);
  }
}

template <int K, int PW, typename T>
void gather_row(int rows, const T* const* g, const std::int32_t* const* at, std::int32_t base,
                index_t pairs, bool add, T* row) {
  if (rows == 2) gather_pairs<K, PW, 2>(g, at, base, pairs, add, row);
  else gather_pairs<K, PW, 1>(g, at, base, pairs, add, row);
}

template <typename T, typename I>
void max_pool2d_backward_pairs(const T* grad_output, const I* indices, T* grad_input,
                               const Pool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, pw = s.pad_w, kw = s.kernel_w;
  const index_t HW = H * W, OHW = OH * OW, pairs = W / 2;
  // Padded copy of each window row: entries -1 .. stride - 2, the windows at 0 .. OW - 1
  // (the loop reads up to pair W / 2 + 1, and the odd-width tail one more).
  const index_t stride = std::max(OW, pairs + 2) + 2;
  const int threads = threads_for(s.planes * (HW + OHW * kw));
  const index_t grads_stride = per_thread_stride<T>(OH * stride);
  const index_t saved_stride = per_thread_stride<std::int32_t>(OH * stride);
  std::vector<T> grads(static_cast<std::size_t>(threads * grads_stride), T(0));
  // Indices narrowed to 32 bits in the copy (planes are under 2^31 elements on this path):
  // twice the lanes per comparison.
  std::vector<std::int32_t> saved(static_cast<std::size_t>(threads * saved_stride), -1);
  // The window rows over each input row (increasing y: the sums run in a fixed order).
  const ReachingRows reaching = max_window_rows(s);
  const auto run = kw == 1 ? &gather_row<1, 0, T>
                   : kw == 2 ? (pw == 0 ? &gather_row<2, 0, T> : &gather_row<2, 1, T>)
                             : (pw == 0 ? &gather_row<3, 0, T> : &gather_row<3, 1, T>);
#pragma omp parallel num_threads(threads)
  {
    T* g_plane = grads.data() + omp_get_thread_num() * grads_stride + 1;
    std::int32_t* at_plane = saved.data() + omp_get_thread_num() * saved_stride + 1;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      for (index_t y = 0; y < OH; ++y) {
        const T* __restrict src = grad_output + p * OHW + y * OW;
        const I* __restrict src_at = indices + p * OHW + y * OW;
        T* __restrict dst = g_plane + y * stride;
        std::int32_t* __restrict dst_at = at_plane + y * stride;
#pragma omp simd
        for (index_t x = 0; x < OW; ++x) dst[x] = src[x], dst_at[x] = static_cast<std::int32_t>(src_at[x]);
      }
      // The next plane's grad_output and indices, asked for a share per input row: copied
      // in one go at the plane's start, they otherwise wait on memory there.
      const T* next_g = grad_output + (p + 1) * OHW;
      const I* next_at = indices + (p + 1) * OHW;
      const index_t g_bytes = p + 1 < s.planes ? OHW * index_t(sizeof(T)) : 0;
      const index_t at_bytes = p + 1 < s.planes ? OHW * index_t(sizeof(I)) : 0;
      const index_t g_share = (g_bytes / H + 63) / 64 * 64, at_share = (at_bytes / H + 63) / 64 * 64;
      reaching.build_rows(grad_input + p * HW, W, [&](index_t iy, T* row, const index_t* ys, index_t count) {
        prefetch_bytes(next_g, iy * g_share, std::min(g_bytes, (iy + 1) * g_share));
        prefetch_bytes(next_at, iy * at_share, std::min(at_bytes, (iy + 1) * at_share));
        const T* g[2];
        const std::int32_t* at[2];
        for (index_t k = 0; k < count; k += 2) {  // window rows two at a time
          const int rows = count - k >= 2 ? 2 : 1;
          for (int q = 0; q < rows; ++q) g[q] = g_plane + ys[k + q] * stride, at[q] = at_plane + ys[k + q] * stride;
          run(rows, g, at, static_cast<std::int32_t>(iy * W), pairs, k > 0, row);
        }
        if (W % 2) {  // the last column has no pair: through a scratch pair
          T tail[2] = {T(0), T(0)};
          for (index_t k = 0; k < count; ++k) {
            g[0] = g_plane + ys[k] * stride + pairs;
            at[0] = at_plane + ys[k] * stride + pairs;
            run(1, g, at, static_cast<std::int32_t>(iy * W + 2 * pairs), 1, true, tail);
          }
          row[W - 1] = tail[0];
        }
      });
    }
  }
}

// Input columns base + [0, 32) of one row from 16 windows: each pair gets its window's
// gradient where the saved index points at it, else 0.
template <typename T, typename I>
__attribute__((always_inline)) inline void unpool_2x2_block(const T* __restrict g, const I* __restrict at, I base,
                                                            T* __restrict row) {
#pragma omp simd
  for (index_t x = 0; x < 16; ++x) {
    row[2 * x] = at[x] == base + 2 * x ? g[x] : T(0);
    row[2 * x + 1] = at[x] == base + 2 * x + 1 ? g[x] : T(0);
  }
}

// 2x2 tiles (max_pool2d_tiles_2x2): every input element lies in at most one window, so
// each input row is written once, in one loop over its windows (unpool_2x2_block).
template <typename T, typename I>
void max_pool2d_backward_2x2(const T* grad_output, const I* indices, T* grad_input,
                             const Pool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  // a partial block reads past its row up to here
  const T* g_end = grad_output + s.planes * OHW;
  const I* at_end = indices + s.planes * OHW;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * (HW + OHW)))
  for (index_t p = 0; p < s.planes; ++p)
    for (index_t iy = 0; iy < H; ++iy) {
      T* __restrict row = grad_input + p * HW + iy * W;
      const index_t y = iy / 2;
      if (y >= OH) {  // below the last row of windows
        std::fill(row, row + W, T(0));
        continue;
      }
      const T* g = grad_output + p * OHW + y * OW;
      const I* at = indices + p * OHW + y * OW;
      in_blocks_of_16(OW, [&](index_t x, index_t count, auto partial) __attribute__((always_inline)) {
        const I base = iy * W + 2 * x;
        if constexpr (partial) {
          alignas(64) T gs[16], pairs[32];
          alignas(64) I ats[16];
          unpool_2x2_block(readable<16>(g + x, count, g_end, gs), readable<16>(at + x, count, at_end, ats), base,
                           pairs);
          copy_masked(row + 2 * x, pairs, 2 * count);
        } else {
          unpool_2x2_block(g + x, at + x, base, row + 2 * x);
        }
      });
      std::fill(row + 2 * OW, row + W, T(0));
    }
}

// The backward of max_pool2d_forward_flat_3x3 (planes at least 4 wide). Input pixel
// (2a + i, 2b + j) is reached by window (a, b) at offset (1 + i, 1 + j) and, for i or j
// = 1, by the windows one row and/or one column on (offset 0 along that axis). So each
// of the four parity classes of input pixels is, at window (a, b), a sum over at most four
// windows (a, b), (a, b + 1), (a + 1, b), (a + 1, b + 1) of "gradient if the saved index
// is this pixel". Every such pixel index is T[k] + c for a window's flat position k, with
// T[k] = 2a W + 2b (a table for the whole call) and a constant c: one flat loop over the
// plane's windows computes all four classes, with no per-row loops and no divisions.
// A neighbour past the row's end is the next row's first window, whose window never holds
// the pixel once W >= 4; past the plane's end the copies hold index -1. Contributions add
// in window order, as PyTorch's scatter does; an index outside its window passes nothing.
template <typename T, typename I>
void max_pool2d_backward_flat_3x3(const T* grad_output, const I* indices, T* grad_input,
                                  const Pool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  // A group of output rows at a time (buffers in L1), with the windows one row and one
  // column past the group: its windows' entries (g, at) [0, padded).
  const index_t group = std::min(OH, flat_3x3_rows(OW)), windows = group * OW, padded = windows + OW + 1;
  // The winner of window k as an offset from the window's centre: the saved index less
  // the centre's flat index (t[k] in the group, plus the group's first row), or the
  // window code less 4 (3 r + c, r and c in 0..2: the rows' step is 3 in place of W).
  // Entries past the plane hold a far index that matches no offset.
  constexpr bool codes = std::is_same_v<I, std::uint8_t>;
  constexpr std::int32_t far = std::numeric_limits<std::int32_t>::min() / 2;
  std::vector<std::int32_t> table(codes ? 0 : static_cast<std::size_t>(padded));
  for (index_t k = 0; k < static_cast<index_t>(table.size()); ++k)
    table[k] = static_cast<std::int32_t>(2 * (k / OW) * W + 2 * (k % OW));
  const std::int32_t* __restrict t = table.data();
  std::int32_t w = codes ? 3 : static_cast<std::int32_t>(W), centre = 4;
  // Hidden from the optimizer: with the codes' constants in view GCC 12 branched on each
  // vector's comparison masks (data-dependent branches: the pass ran 1.8x slower).
  asm("" : "+r"(w), "+r"(centre));
  const int threads = threads_for(s.planes * (HW + 4 * OHW));
  const index_t g_stride = per_thread_stride<T>(padded + 4 * windows), i_stride = per_thread_stride<std::int32_t>(padded);
  std::vector<T> grads(static_cast<std::size_t>(threads * g_stride), T(0));
  std::vector<std::int32_t> saved(static_cast<std::size_t>(threads * i_stride), far);
#pragma omp parallel num_threads(threads)
  {
    T* __restrict g = grads.data() + omp_get_thread_num() * g_stride;  // [padded), then 4 classes
    std::int32_t* __restrict at = saved.data() + omp_get_thread_num() * i_stride;
    T* __restrict ee = g + padded;
    T* __restrict eo = ee + windows;
    T* __restrict oe = eo + windows;
    T* __restrict oo = oe + windows;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      for (index_t a0 = 0; a0 < OH; a0 += group) {
        const index_t a1 = std::min(OH, a0 + group), n = (a1 - a0) * OW;
        const index_t first = p * OHW + a0 * OW, m = std::min(OHW, (a1 + 1) * OW) - a0 * OW;
        const T* __restrict src = grad_output + first;
        const I* __restrict src_at = indices + first;
        const std::int32_t shift = codes ? 0 : static_cast<std::int32_t>(2 * a0 * W);
        for (index_t k = 0; k < m; ++k) g[k] = src[k], at[k] = static_cast<std::int32_t>(src_at[k]) - shift;
        for (index_t k = m; k < n + OW + 1; ++k) g[k] = T(0), at[k] = far;
#pragma omp simd
        for (index_t k = 0; k < n; ++k) {
          // Windows (a, b), (a, b + 1), (a + 1, b), (a + 1, b + 1): loaded unconditionally
          // (a conditional load becomes a masked load, which GCC 12 does not vectorize here).
          const T g0 = g[k], g1 = g[k + 1], g2 = g[k + OW], g3 = g[k + OW + 1];
          const std::int32_t i0 = at[k] - (codes ? centre : t[k]), i1 = at[k + 1] - (codes ? centre : t[k + 1]);
          const std::int32_t i2 = at[k + OW] - (codes ? centre : t[k + OW]);
          const std::int32_t i3 = at[k + OW + 1] - (codes ? centre : t[k + OW + 1]);
          ee[k] = T(0) + (i0 == 0 ? g0 : T(0));
          eo[k] = (T(0) + (i0 == 1 ? g0 : T(0))) + (i1 == -1 ? g1 : T(0));
          oe[k] = (T(0) + (i0 == w ? g0 : T(0))) + (i2 == -w ? g2 : T(0));
          oo[k] = (((T(0) + (i0 == w + 1 ? g0 : T(0))) + (i1 == w - 1 ? g1 : T(0))) + (i2 == 1 - w ? g2 : T(0))) +
                  (i3 == -w - 1 ? g3 : T(0));
        }
        T* plane = grad_input + p * HW;
        for (index_t a = a0; a < a1; ++a) {
          const index_t k = (a - a0) * OW;
          interleave_pairs(ee + k, eo + k, OW, plane + 2 * a * W);
          if (2 * a + 1 < H) interleave_pairs(oe + k, oo + k, OW, plane + (2 * a + 1) * W);
        }
      }
    }
  }
}

// Which backward gathers (any index is then safe). Stride 2 gathers column pairs (2x2
// tiles in their own loop). The stride-1 gather pays a loop set-up per (input row, kernel
// offset): on short rows the scatter (zero-fill the plane, in cache, then one scalar add
// per output) is faster, so it gathers rows of 32 outputs and more.
bool max_pool2d_backward_gathers(const Pool2dShape& s) {
  return max_pool2d_tiles_2x2(s) ||
         (s.kernel_h > 0 && s.kernel_w <= 3 && s.dilation_w == 1 && s.pad_w <= 1 &&
          ((s.stride_w == 2 && s.height * s.width < (index_t(1) << 31)) || (s.stride_w == 1 && s.out_w >= 32)));
}

template <typename T, typename I>
void max_pool2d_backward(const T* grad_output, const I* indices, T* grad_input,
                         const Pool2dShape& s) {
  if (max_pool2d_tiles_2x2(s)) return max_pool2d_backward_2x2(grad_output, indices, grad_input, s);
  if (max_pool2d_flat_3x3(s) && s.width >= 4) return max_pool2d_backward_flat_3x3(grad_output, indices, grad_input, s);
  if (max_pool2d_backward_gathers(s)) {
    if (s.stride_w == 1) return max_pool2d_backward_gather_unit(grad_output, indices, grad_input, s);
    if (s.stride_w == 2) return max_pool2d_backward_pairs(grad_output, indices, grad_input, s);
  }
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * (HW + OHW)))
  for (index_t p = 0; p < s.planes; ++p) {
    T* gin = grad_input + p * HW;
    const T* gout = grad_output + p * OHW;
    const I* idx = indices + p * OHW;
    std::fill(gin, gin + HW, T(0));
    for (index_t q = 0; q < OHW; ++q) {
      // Indices come from the forward pass; the binding re-checks those it is handed.
      if (idx[q] >= 0) gin[idx[q]] += gout[q];
    }
  }
}

bool max_pool2d_window_codes(const Pool2dShape& s) { return max_pool2d_flat_3x3(s) && s.width >= 4; }

template <typename T>
void max_pool2d_forward_codes(const T* input, T* output, std::uint8_t* codes, const Pool2dShape& s) {
  max_pool2d_forward_flat_3x3(input, output, codes, s);
}

template <typename T>
void max_pool2d_backward_codes(const T* grad_output, const std::uint8_t* codes, T* grad_input,
                               const Pool2dShape& s) {
  max_pool2d_backward_flat_3x3(grad_output, codes, grad_input, s);
}

#define FASTDL_MAX_POOL2D(T, I)                                                                \
  template void max_pool2d_forward<T, I>(const T*, T*, I*, const Pool2dShape&);              \
  template void max_pool2d_backward<T, I>(const T*, const I*, T*, const Pool2dShape&);
FASTDL_MAX_POOL2D(float, std::int64_t)
FASTDL_MAX_POOL2D(double, std::int64_t)
FASTDL_MAX_POOL2D(float, std::int32_t)
FASTDL_MAX_POOL2D(double, std::int32_t)
#undef FASTDL_MAX_POOL2D
template void max_pool2d_forward_codes<float>(const float*, float*, std::uint8_t*, const Pool2dShape&);
template void max_pool2d_forward_codes<double>(const double*, double*, std::uint8_t*, const Pool2dShape&);
template void max_pool2d_backward_codes<float>(const float*, const std::uint8_t*, float*, const Pool2dShape&);
template void max_pool2d_backward_codes<double>(const double*, const std::uint8_t*, double*, const Pool2dShape&);

// ------------------------------------------------------------------ avg_pool2d
namespace {

// dst[x] (+)= src[x*stride] for x in [0, n).
template <int S, bool add, typename T>
void strided_gather(const T* __restrict src, index_t stride_rt, index_t n, T* __restrict dst) {
  const index_t stride = S ? S : stride_rt;
#pragma omp simd
  for (index_t x = 0; x < n; ++x) dst[x] = add ? dst[x] + src[x * stride] : src[x * stride];
}

template <bool add, typename T>
void strided_gather_any(const T* src, index_t stride, index_t n, T* dst) {
  if (stride == 1) strided_gather<1, add>(src, 1, n, dst);
  else if (stride == 2) strided_gather<2, add>(src, 2, n, dst);
  else strided_gather<0, add>(src, stride, n, dst);
}

// dst[x*stride] += src[x] for x in [0, n).
template <int S, typename T>
void strided_scatter(const T* __restrict src, index_t stride_rt, index_t n, T* __restrict dst) {
  const index_t stride = S ? S : stride_rt;
#pragma omp simd
  for (index_t x = 0; x < n; ++x) dst[x * stride] += src[x];
}

template <typename T>
void strided_scatter_any(const T* src, index_t stride, index_t n, T* dst) {
  if (stride == 1) strided_scatter<1>(src, 1, n, dst);
  else if (stride == 2) strided_scatter<2>(src, 2, n, dst);
  else strided_scatter<0>(src, stride, n, dst);
}

template <typename T>
void add_rows(const T* __restrict src, index_t n, T* __restrict dst) {
#pragma omp simd
  for (index_t c = 0; c < n; ++c) dst[c] += src[c];
}

// Window of output index o along one axis: [start, end) unclipped-but-capped as PyTorch
// (end <= size + pad), the clipped part [lo, hi), and the divisor factor for this axis.
struct AxisWindow {
  index_t lo, hi, factor;
};

std::vector<AxisWindow> avg_windows(index_t size, index_t out, index_t kernel, index_t stride,
                                    index_t pad, bool count_include_pad) {
  std::vector<AxisWindow> w(static_cast<std::size_t>(out));
  for (index_t o = 0; o < out; ++o) {
    const index_t start = o * stride - pad, end = std::min(start + kernel, size + pad);
    const index_t lo = std::max<index_t>(start, 0), hi = std::min(end, size);
    w[o] = {lo, std::max(lo, hi), count_include_pad ? end - start : std::max<index_t>(hi - lo, 0)};
  }
  return w;
}

// The windows of both axes and, for every output (y, x), scale = 1 / divisor(y, x): the
// kernels multiply by it (one reciprocal per output position for the whole batch, not a
// division per element). A window with no input element gets scale 0, so it outputs 0.
template <typename T>
struct AvgPlan {
  std::vector<AxisWindow> rows, cols;
  std::vector<T> scale;  // (OH, OW)

  explicit AvgPlan(const AvgPool2dShape& s)
      : rows(avg_windows(s.height, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.count_include_pad)),
        cols(avg_windows(s.width, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.count_include_pad)),
        scale(static_cast<std::size_t>(s.out_h * s.out_w)) {
    for (index_t y = 0; y < s.out_h; ++y)
      for (index_t x = 0; x < s.out_w; ++x) {
        const bool empty = rows[y].lo >= rows[y].hi || cols[x].lo >= cols[x].hi;
        const T divisor = s.divisor_override ? T(s.divisor_override)
                                             : T(rows[y].factor) * T(cols[x].factor);
        scale[y * s.out_w + x] = empty ? T(0) : T(1) / divisor;
      }
  }
};

// The fast path's columns: stride 2, 2 or 3 kernel columns, padding at most 1 (the
// common 2x2/s2 and 3x3/s2/p1 poolings). A padded column c = i + pad_w is split by parity,
// so every loop below is unit-stride (a stride-2 load makes GCC peel a scalar last
// iteration, which on a 16-output row is the whole row).
bool avg_split_columns(const AvgPool2dShape& s) {
  return s.stride_w == 2 && (s.kernel_w == 2 || s.kernel_w == 3) && s.pad_w <= 1;
}

// even[m] / odd[m] = the sum over the R rows r[0..R) at padded columns 2m / 2m + 1 (input
// column minus pad_w, pad_w <= 1), zero outside the input. The rows are read as whole
// input column pairs (2m, 2m + 1), m < W / 2, in one full-length loop; with pad_w = 1 the
// padded parities are the input's swapped and shifted by one: even[m + 1] = input odd m,
// odd[m] = input even m. Entries no row writes (padding) stay zero: the caller zeroes the
// buffers once.
template <int R, typename T>
void split_row_sums(const T* const* r, index_t W, index_t pw, T* __restrict even,
                    T* __restrict odd) {
  const T* __restrict r0 = r[0];
  const T* __restrict r1 = r[R > 1 ? 1 : 0];
  const T* __restrict r2 = r[R > 2 ? 2 : 0];
  T* __restrict in_even = pw ? odd : even;
  T* __restrict in_odd = pw ? even + 1 : odd;
  const index_t pairs = W / 2;
#pragma omp simd
  for (index_t m = 0; m < pairs; ++m) {
    T e = r0[2 * m], o = r0[2 * m + 1];
    if constexpr (R > 1) e += r1[2 * m], o += r1[2 * m + 1];
    if constexpr (R > 2) e += r2[2 * m], o += r2[2 * m + 1];
    in_even[m] = e;
    in_odd[m] = o;
  }
  if (W % 2) {  // the last input column has no pair
    T e = r0[W - 1];
    if constexpr (R > 1) e += r1[W - 1];
    if constexpr (R > 2) e += r2[W - 1];
    in_even[pairs] = e;
  }
}

// out[x] = (sum of the K padded columns 2x .. 2x + K - 1) * scale[x].
template <int K, typename T>
void avg_row_split(const T* __restrict even, const T* __restrict odd, const T* __restrict scale,
                   index_t n, T* __restrict out) {
#pragma omp simd
  for (index_t x = 0; x < n; ++x) {
    T v = even[x] + odd[x];
    if constexpr (K > 2) v += even[x + 1];
    out[x] = v * scale[x];
  }
}

// Input row (+)= the spread of NR (1 or 2) output rows sc0 (+ sc1): padded column c = 2m
// gets sc[m] (offset 0) and, for K = 3, sc[m - 1] (offset 2); c = 2m + 1 gets sc[m]
// (offset 1). sc[-1] and sc[n..] are zero, so no column needs a bounds test.
template <int K, int NR, bool add, typename T>
void avg_spread_split(const T* __restrict sc0, const T* __restrict sc1, index_t W, index_t pw,
                      T* __restrict row) {
  const auto sc = [&](index_t m) { return NR > 1 ? sc0[m] + sc1[m] : sc0[m]; };
  const auto even = [&](index_t m) { return K > 2 ? sc(m) + sc(m - 1) : sc(m); };
  const index_t pairs = W / 2;
  if (pw == 0) {
#pragma omp simd
    for (index_t m = 0; m < pairs; ++m) {
      const T e = even(m), o = sc(m);
      row[2 * m] = add ? row[2 * m] + e : e;
      row[2 * m + 1] = add ? row[2 * m + 1] + o : o;
    }
    if (W % 2) row[W - 1] = add ? row[W - 1] + even(pairs) : even(pairs);
  } else {  // input column i = c - 1: i = 2m is odd c = 2m + 1, i = 2m + 1 is even c = 2m + 2
#pragma omp simd
    for (index_t m = 0; m < pairs; ++m) {
      const T o = sc(m), e = even(m + 1);
      row[2 * m] = add ? row[2 * m] + o : o;
      row[2 * m + 1] = add ? row[2 * m + 1] + e : e;
    }
    if (W % 2) row[W - 1] = add ? row[W - 1] + sc(pairs) : sc(pairs);
  }
}

template <int K, typename T>
void avg_spread_rows(int rows, bool add, const T* sc0, const T* sc1, index_t W, index_t pw, T* row) {
  if (add) avg_spread_split<K, 1, true>(sc0, sc0, W, pw, row);
  else if (rows == 2) avg_spread_split<K, 2, false>(sc0, sc1, W, pw, row);
  else avg_spread_split<K, 1, false>(sc0, sc0, W, pw, row);
}

template <typename T>
void avg_row_sums_split(int valid, const T* const* r, index_t W, index_t pw, T* even, T* odd) {
  switch (valid) {  // 1 to 3 rows (kernel_h <= 3 on this path)
    case 1: return split_row_sums<1>(r, W, pw, even, odd);
    case 2: return split_row_sums<2>(r, W, pw, even, odd);
    default: return split_row_sums<3>(r, W, pw, even, odd);
  }
}

}  // namespace

template <typename T>
void avg_pool2d_forward(const T* input, T* output, const AvgPool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w;
  const index_t HW = H * W, OHW = OH * OW, kw = s.kernel_w, sw = s.stride_w, pw = s.pad_w;
  const AvgPlan<T> plan(s);
  const bool split = avg_split_columns(s) && s.kernel_h <= 3;
  // Row buffer: entry c holds padded column c (input column c - pw; zero outside [0, W)),
  // or, split, its even columns then its odd ones.
  const index_t span = (std::max((OW - 1) * sw + kw, pw + W) + 1) / 2 * 2, half = span / 2;
  const int threads = threads_for(s.planes * (HW + OHW * kw));
  const index_t thread_stride = per_thread_stride<T>(span);
  std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride), T(0));
#pragma omp parallel num_threads(threads)
  {
    T* sums = buffers.data() + omp_get_thread_num() * thread_stride;
    T* sums_in = sums + pw;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* in = input + p * HW;
      T* out = output + p * OHW;
      for (index_t y = 0; y < OH; ++y) {
        T* o = out + y * OW;
        const AxisWindow r = plan.rows[y];
        const T* scale = plan.scale.data() + y * OW;
        if (r.lo >= r.hi) {
          std::fill(o, o + OW, T(0));
          continue;
        }
        if (split) {
          const T* window_rows[3];
          for (index_t i = 0; i < 3; ++i) window_rows[i] = in + std::min(r.lo + i, r.hi - 1) * W;
          avg_row_sums_split(static_cast<int>(r.hi - r.lo), window_rows, W, pw, sums, sums + half);
          if (kw == 2) avg_row_split<2>(sums, sums + half, scale, OW, o);
          else avg_row_split<3>(sums, sums + half, scale, OW, o);
          continue;
        }
        std::copy(in + r.lo * W, in + r.lo * W + W, sums_in);
        for (index_t iy = r.lo + 1; iy < r.hi; ++iy) add_rows(in + iy * W, W, sums_in);
        strided_gather_any<false>(sums, sw, OW, o);
        for (index_t j = 1; j < kw; ++j) strided_gather_any<true>(sums + j, sw, OW, o);
#pragma omp simd
        for (index_t x = 0; x < OW; ++x) o[x] *= scale[x];
      }
    }
  }
}

template <typename T>
void avg_pool2d_backward(const T* grad_output, T* grad_input, const AvgPool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w;
  const index_t HW = H * W, OHW = OH * OW, kw = s.kernel_w, sw = s.stride_w, pw = s.pad_w;
  const AvgPlan<T> plan(s);
  const int threads = threads_for(s.planes * (HW + OHW * kw));
  if (avg_split_columns(s)) {
    // Stride-2 columns: each input row is written once, from the (at most two, else
    // added) output rows whose windows hold it, their gradients scaled once per plane into
    // padded rows (sc[-1] and sc[OW..] zero: the spread reads sc[-1] and up to sc[W / 2]).
    const index_t stride = std::max(OW, W / 2 + 2) + 2;
    const ReachingRows reaching(H, OH, [&](index_t y, index_t iy) {
      return plan.rows[y].lo <= iy && iy < plan.rows[y].hi;
    });
    const index_t thread_stride = per_thread_stride<T>(OH * stride);
    std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride), T(0));
    const auto spread = kw == 2 ? &avg_spread_rows<2, T> : &avg_spread_rows<3, T>;
#pragma omp parallel num_threads(threads)
    {
      T* scaled = buffers.data() + omp_get_thread_num() * thread_stride + 1;
#pragma omp for schedule(static)
      for (index_t p = 0; p < s.planes; ++p) {
        for (index_t y = 0; y < OH; ++y) {
          const T* __restrict g = grad_output + p * OHW + y * OW;
          const T* __restrict scale = plan.scale.data() + y * OW;
          T* __restrict dst = scaled + y * stride;
#pragma omp simd
          for (index_t x = 0; x < OW; ++x) dst[x] = g[x] * scale[x];
        }
        reaching.build_rows(grad_input + p * HW, W, [&](index_t, T* row, const index_t* ys, index_t count) {
          const int first = count >= 2 ? 2 : 1;
          spread(first, false, scaled + ys[0] * stride, scaled + ys[first - 1] * stride, W, pw, row);
          for (index_t k = first; k < count; ++k)
            spread(1, true, scaled + ys[k] * stride, nullptr, W, pw, row);
        });
      }
    }
    return;
  }
  const index_t span = std::max((OW - 1) * sw + kw, pw + W);
  const index_t thread_stride = per_thread_stride<T>(span + OW);
  std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride), T(0));
#pragma omp parallel num_threads(threads)
  {
    T* spread = buffers.data() + omp_get_thread_num() * thread_stride;
    T* scaled = spread + span;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* gout = grad_output + p * OHW;
      T* gin = grad_input + p * HW;
      index_t written = 0;  // rows [0, written) of gin hold their value so far
      for (index_t y = 0; y < OH; ++y) {
        const AxisWindow r = plan.rows[y];
        if (r.lo >= r.hi) continue;
        const T* g = gout + y * OW;
        const T* scale = plan.scale.data() + y * OW;
#pragma omp simd
        for (index_t x = 0; x < OW; ++x) scaled[x] = g[x] * scale[x];
        std::fill(spread, spread + span, T(0));
        for (index_t j = 0; j < kw; ++j) strided_scatter_any(scaled, sw, OW, spread + j);
        for (index_t iy = r.lo; iy < r.hi; ++iy) {
          T* row = gin + iy * W;
          if (iy >= written) std::copy(spread + pw, spread + pw + W, row);
          else add_rows(spread + pw, W, row);
        }
        // Rows skipped by every window so far (stride > kernel) are zero.
        for (index_t iy = written; iy < r.lo; ++iy) std::fill(gin + iy * W, gin + iy * W + W, T(0));
        written = std::max(written, r.hi);
      }
      std::fill(gin + written * W, gin + HW, T(0));
    }
  }
}

template void avg_pool2d_forward<float>(const float*, float*, const AvgPool2dShape&);
template void avg_pool2d_forward<double>(const double*, double*, const AvgPool2dShape&);
template void avg_pool2d_backward<float>(const float*, float*, const AvgPool2dShape&);
template void avg_pool2d_backward<double>(const double*, double*, const AvgPool2dShape&);

// ------------------------------------------------------------------ adaptive_avg_pool2d
namespace {

using Windows = std::vector<std::pair<index_t, index_t>>;

// [floor(o*size/out), ceil((o+1)*size/out)) for each o.
Windows adaptive_windows(index_t size, index_t out) {
  Windows w(static_cast<std::size_t>(out));
  for (index_t o = 0; o < out; ++o) w[o] = {o * size / out, ((o + 1) * size + out - 1) / out};
  return w;
}

// The element count of window (y, x) at [y * stride + x]; other entries 1.
template <typename T>
std::vector<T> window_counts(const Windows& rows, const Windows& cols, index_t stride) {
  std::vector<T> counts(rows.size() * static_cast<std::size_t>(stride), T(1));
  for (std::size_t y = 0; y < rows.size(); ++y)
    for (std::size_t x = 0; x < cols.size(); ++x)
      counts[y * stride + x] = T((rows[y].second - rows[y].first) * (cols[x].second - cols[x].first));
  return counts;
}

// The forward's output rows go in groups of kRowGroup (adaptive_avg_pool2d_forward says why).
constexpr index_t kRowGroup = 8;

// fn(in, out, sums, y0, group) for each plane's output rows y0 .. y0 + group, in groups of
// kRowGroup, the planes split over `threads`; sums: `scratch` zeroed elements per thread.
template <typename T, typename Fn>
void each_row_group(const T* input, T* output, const AdaptivePool2dShape& s, index_t scratch, int threads, Fn&& fn) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
  const index_t thread_stride = per_thread_stride<T>(scratch);
  std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride), T(0));
#pragma omp parallel num_threads(threads)
  {
    T* sums = buffers.data() + omp_get_thread_num() * thread_stride;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p)
      for (index_t y0 = 0; y0 < s.out_h; y0 += kRowGroup)
        fn(input + p * HW, output + p * OHW, sums, y0, std::min(kRowGroup, s.out_h - y0));
  }
}

// Sum of a contiguous plane in 32 interleaved lanes (vector accumulators), combined
// pairwise: the order depends on n alone.
template <typename T>
T plane_sum(const T* __restrict values, index_t n) {
  constexpr int kLanes = 32;
  T lanes[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += values[i + k];
  for (int k = 0; i < n; ++i, ++k) lanes[k] += values[i];
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int k = 0; k < width; ++k) lanes[k] += lanes[k + width];
  return lanes[0];
}


#ifdef __AVX512F__
// Rows of at most this many float columns (4 vectors) take adaptive_avg_forward_small.
constexpr index_t kSmallRows = 64;

// adaptive_avg_pool2d_forward for float rows of at most kSmallRows columns and at most 16
// output columns: each window row's column sums in vector registers (the generic loop's
// array of 32 accumulators lived on the stack, a store and a reload per input row), then
// every output column of the window row at once, one vector of output columns per window
// row: lane x adds column c where c lies in window x (a masked add of c's broadcast sum,
// c ascending, from 0 as the generic loop). Sums in the same order as the generic loop:
// bitwise the same results. 64x64x32x32 -> 7x7, one thread: 0.9 -> 0.6 ms.
void adaptive_avg_forward_small(const float* input, float* output, const AdaptivePool2dShape& s,
                                const Windows& rows, const Windows& cols, int threads) {
  const index_t W = s.width, OW = s.out_w;
  const index_t vectors = (W + 15) / 16;
  __mmask16 load[4];
  for (index_t v = 0; v < 4; ++v) {
    const index_t left = std::clamp<index_t>(W - 16 * v, 0, 16);
    load[v] = static_cast<__mmask16>((1u << left) - 1);
  }
  std::vector<__mmask16> holds(static_cast<std::size_t>(W), 0);  // windows holding column c
  for (index_t x = 0; x < OW; ++x)
    for (index_t c = cols[x].first; c < cols[x].second; ++c) holds[c] |= static_cast<__mmask16>(1u << x);
  const __mmask16 out_lanes = static_cast<__mmask16>((1u << OW) - 1);
  const std::vector<float> counts = window_counts<float>(rows, cols, 16);  // a vector per window row
  each_row_group(input, output, s, kRowGroup * kSmallRows, threads,
                 [&](const float* in, float* out, float* sums, index_t y0, index_t group) {
    for (index_t j = 0; j < group; ++j) {  // sums[j][c]: column c over window row y0 + j's rows
      const auto [r0, r1] = rows[y0 + j];
      const float* top = in + r0 * W;
      __m512 acc[4];
      for (index_t v = 0; v < 4; ++v)
        if (v < vectors) acc[v] = _mm512_maskz_loadu_ps(load[v], top + 16 * v);
      for (index_t iy = 1; iy < r1 - r0; ++iy)
        for (index_t v = 0; v < 4; ++v)
          if (v < vectors) acc[v] = _mm512_add_ps(acc[v], _mm512_maskz_loadu_ps(load[v], top + iy * W + 16 * v));
      for (index_t v = 0; v < 4; ++v)
        if (v < vectors) _mm512_storeu_ps(sums + j * kSmallRows + 16 * v, acc[v]);
    }
    __m512 total[kRowGroup];
    for (index_t j = 0; j < kRowGroup; ++j) total[j] = _mm512_setzero_ps();
    for (index_t c = 0; c < W; ++c) {
      const __mmask16 m = holds[c];
      for (index_t j = 0; j < kRowGroup; ++j)
        if (j < group) total[j] = _mm512_mask_add_ps(total[j], m, total[j], _mm512_set1_ps(sums[j * kSmallRows + c]));
    }
    for (index_t j = 0; j < group; ++j) {
      const __m512 mean = _mm512_div_ps(total[j], _mm512_loadu_ps(counts.data() + (y0 + j) * 16));
      _mm512_mask_storeu_ps(out + (y0 + j) * OW, out_lanes, mean);
    }
  });
}

// adaptive_avg_pool2d_backward for float rows of at most kSmallRows columns, at most 16
// output columns, each input column in at most two windows (pooling down): per window row,
// the spread of its gradients over the columns (g / height / width of window x, column c
// taking (0 + g of its first window) + g of its second, as the generic loop adds them) in
// vector registers, two permutes per 16 columns; then each input row once, the sum of the
// spreads of the window rows over it in increasing order, as the generic loop adds them,
// so results are bitwise the same; streamed when grad_input is large (stream.h).
// 64x64x32x32 <- 7x7, one thread: 1.2 -> 0.7 ms. Returns false (nothing done) otherwise.
bool adaptive_avg_backward_small(const float* grad_output, float* grad_input, const AdaptivePool2dShape& s,
                                 const Windows& rows, const Windows& cols, int threads) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  if (W > kSmallRows || OW > 16 || OH * kSmallRows > (index_t(1) << 16)) return false;
  // Per column: its first and second window (x ascending), if any.
  alignas(64) std::int32_t first_x[kSmallRows] = {}, second_x[kSmallRows] = {};
  __mmask16 second[4] = {}, lanes[4] = {};
  for (index_t c = 0; c < W; ++c) {
    int held = 0;
    for (index_t x = 0; x < OW; ++x) {
      if (c < cols[x].first || c >= cols[x].second) continue;
      if (held == 0) first_x[c] = static_cast<std::int32_t>(x);
      else if (held == 1) second_x[c] = static_cast<std::int32_t>(x), second[c / 16] |= static_cast<__mmask16>(1u << (c % 16));
      else return false;
      ++held;
    }
    lanes[c / 16] |= static_cast<__mmask16>(1u << (c % 16));
  }
  const index_t vectors = (W + 15) / 16;
  alignas(64) float widths[16];
  for (index_t x = 0; x < 16; ++x) widths[x] = x < OW ? float(cols[x].second - cols[x].first) : 1.0f;
  const ReachingRows reaching(H, OH, [&](index_t y, index_t iy) { return rows[y].first <= iy && iy < rows[y].second; });
  const __mmask16 out_lanes = static_cast<__mmask16>((1u << OW) - 1);
  // Streamed rows: whole aligned vectors (rows of a multiple of 16 on a 64-byte aligned plane).
  const bool stream = streams<float>(s.planes * HW) && W % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(grad_input) % 64 == 0;
  const index_t thread_stride = per_thread_stride<float>(OH * kSmallRows);
  std::vector<float> buffers(static_cast<std::size_t>(threads * thread_stride));
#pragma omp parallel num_threads(threads)
  {
    float* spreads = buffers.data() + omp_get_thread_num() * thread_stride;  // [OH][kSmallRows]
    const __m512 width = _mm512_load_ps(widths);
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const float* gout = grad_output + p * OHW;
      float* gin = grad_input + p * HW;
      for (index_t y = 0; y < OH; ++y) {
        const __m512 height = _mm512_set1_ps(float(rows[y].second - rows[y].first));
        const __m512 g = _mm512_div_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(out_lanes, gout + y * OW), height), width);
        for (index_t v = 0; v < vectors; ++v) {
          const __m512 a = _mm512_permutexvar_ps(_mm512_load_si512(first_x + 16 * v), g);
          const __m512 b = _mm512_permutexvar_ps(_mm512_load_si512(second_x + 16 * v), g);
          __m512 sum = _mm512_add_ps(_mm512_setzero_ps(), a);
          sum = _mm512_mask_add_ps(sum, second[v], sum, b);
          _mm512_storeu_ps(spreads + y * kSmallRows + 16 * v, sum);
        }
      }
      for (index_t iy = 0; iy < H; ++iy) {
        for (index_t v = 0; v < vectors; ++v) {
          const index_t* ys = reaching.rows.data() + reaching.start[iy];
          __m512 sum = _mm512_loadu_ps(spreads + ys[0] * kSmallRows + 16 * v);
          for (index_t k = 1; k < reaching.start[iy + 1] - reaching.start[iy]; ++k)
            sum = _mm512_add_ps(sum, _mm512_loadu_ps(spreads + ys[k] * kSmallRows + 16 * v));
          float* dst = gin + iy * W + 16 * v;
          if (stream) _mm512_stream_ps(dst, sum);
          else _mm512_mask_storeu_ps(dst, lanes[v], sum);
        }
      }
    }
    if (stream) stream_fence();
  }
  return true;
}
#endif

}  // namespace

template <typename T>
void adaptive_avg_pool2d_forward(const T* input, T* output, const AdaptivePool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  const auto rows = adaptive_windows(H, OH), cols = adaptive_windows(W, OW);
  // Each input row is summed once per window holding it: about max(H, OH) rows of W.
  const int threads = threads_for(s.planes * (std::max(H, OH) * W + OHW));
  if (OH == 1 && OW == 1) {  // global average: one streaming sum per plane
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t p = 0; p < s.planes; ++p) output[p] = plane_sum(input + p * HW, HW) / T(H) / T(W);
    return;
  }
  // Output rows go in groups of kRowGroup: the group's row-window sums first (see kLanes
  // below for how), then each window's sum over its columns for the group's rows at once:
  // kRowGroup independent additions in flight instead of one dependent chain per window.
  // Then one division per output by its window's element count, as PyTorch divides.
  // 64x64x32x32 -> 7x7 on one thread: 2.2 -> 0.9-1.2 ms (a plain read of the input: 0.4 ms).
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (W <= kSmallRows && OW <= 16) return adaptive_avg_forward_small(input, output, s, rows, cols, threads);
  }
#endif
  // Rows this wide are summed in registers (two vectors of float). Wider ones go through
  // add_rows: summing 128-wide rows a 32-column strip at a time (each strip walking down
  // the rows 512 bytes apart) made 16x64x128x128 -> 7x7 take 6.1 ms instead of 3.4.
  constexpr index_t kLanes = 128 / sizeof(T);
  const std::vector<T> counts = window_counts<T>(rows, cols, OW);
  each_row_group(input, output, s, kRowGroup * W, threads, [&](const T* in, T* out, T* sums, index_t y0, index_t group) {
    for (index_t j = 0; j < group; ++j) {
      const auto [r0, r1] = rows[y0 + j];
      const T* __restrict top = in + r0 * W;
      T* __restrict row = sums + j * W;
      if (W > kLanes) {  // wide rows: whole rows added in memory order
        std::copy(top, top + W, row);
        for (index_t iy = 1; iy < r1 - r0; ++iy) add_rows(top + iy * W, W, row);
        continue;
      }
      // Rows of at most kLanes columns: down the window's rows in registers.
      T acc[kLanes];
#pragma omp simd
      for (index_t k = 0; k < W; ++k) acc[k] = top[k];
      for (index_t iy = 1; iy < r1 - r0; ++iy)
#pragma omp simd
        for (index_t k = 0; k < W; ++k) acc[k] += top[iy * W + k];
#pragma omp simd
      for (index_t k = 0; k < W; ++k) row[k] = acc[k];
    }
    for (index_t x = 0; x < OW; ++x) {
      const auto [c0, c1] = cols[x];
      T acc[kRowGroup] = {};
      for (index_t c = c0; c < c1; ++c)
        for (index_t j = 0; j < kRowGroup; ++j) acc[j] += sums[j * W + c];
      for (index_t j = 0; j < group; ++j) out[(y0 + j) * OW + x] = acc[j] / counts[(y0 + j) * OW + x];
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad_output, T* grad_input, const AdaptivePool2dShape& s) {
  const index_t H = s.height, W = s.width, OH = s.out_h, OW = s.out_w, HW = H * W, OHW = OH * OW;
  const auto rows = adaptive_windows(H, OH), cols = adaptive_windows(W, OW);
  const int threads = threads_for(s.planes * (std::max(H, OH) * W + OHW));
  if (OH == 1 && OW == 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t p = 0; p < s.planes; ++p)
      std::fill(grad_input + p * HW, grad_input + (p + 1) * HW, grad_output[p] / T(H) / T(W));
    return;
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (adaptive_avg_backward_small(grad_output, grad_input, s, rows, cols, threads)) return;
  }
#endif
  const index_t thread_stride = per_thread_stride<T>(W);
  std::vector<T> buffers(static_cast<std::size_t>(threads * thread_stride));
#pragma omp parallel num_threads(threads)
  {
    T* spread = buffers.data() + omp_get_thread_num() * thread_stride;
#pragma omp for schedule(static)
    for (index_t p = 0; p < s.planes; ++p) {
      const T* gout = grad_output + p * OHW;
      T* gin = grad_input + p * HW;
      index_t written = 0;  // windows cover every row, in increasing order
      for (index_t y = 0; y < OH; ++y) {
        const auto [r0, r1] = rows[y];
        const T height = T(r1 - r0);
        std::fill(spread, spread + W, T(0));
        for (index_t x = 0; x < OW; ++x) {
          const auto [c0, c1] = cols[x];
          const T g = gout[y * OW + x] / height / T(c1 - c0);
          for (index_t c = c0; c < c1; ++c) spread[c] += g;
        }
        for (index_t iy = r0; iy < r1; ++iy) {
          if (iy >= written) std::copy(spread, spread + W, gin + iy * W);
          else add_rows(spread, W, gin + iy * W);
        }
        written = std::max(written, r1);
      }
    }
  }
}

template void adaptive_avg_pool2d_forward<float>(const float*, float*, const AdaptivePool2dShape&);
template void adaptive_avg_pool2d_forward<double>(const double*, double*, const AdaptivePool2dShape&);
template void adaptive_avg_pool2d_backward<float>(const float*, float*, const AdaptivePool2dShape&);
template void adaptive_avg_pool2d_backward<double>(const double*, double*, const AdaptivePool2dShape&);

}  // namespace fastdl::cpu
