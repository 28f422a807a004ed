// Image filters with scipy.ndimage's semantics (shapes, formulas and modes: filter.h).
//
// Work is split into strips of kStripRows output rows of one plane; a strip converts the
// rows it reads to double (extended by the boundary mode) once, then runs the passes row by
// row, vectorized along x. Strips are fixed by the image, not by the thread count, and each
// output value is computed the same way in any strip, so results do not depend on threads.
//
// No fused multiply-add: scipy computes w*x and then adds, and fusing would move uint8
// results that sit on an integer (a flat region under a normalized kernel) by one. The
// pragma replaces the command line's -fno-math-errno, hence its second option.
#pragma GCC optimize("fp-contract=off", "no-math-errno")

#include "cpu/filter.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

namespace fastdl::cpu {

namespace {

constexpr index_t kStripRows = 16;

// scipy's store of a double into T: C casts (uint8 through int64: truncate, then wrap).
template <typename T>
inline T scipy_cast(double v) {
  return static_cast<T>(v);
}
template <>
inline std::uint8_t scipy_cast<std::uint8_t>(double v) {
  return static_cast<std::uint8_t>(static_cast<std::int64_t>(v));
}

index_t positive_mod(index_t i, index_t n) {
  const index_t m = i % n;
  return m < 0 ? m + n : m;
}

// Fill line[-before, 0) and line[n, n + after) from line[0, n) by the boundary mode.
void extend_line(double* line, index_t n, index_t before, index_t after, BoundaryMode mode,
                 double cval) {
  for (index_t i = -before; i < 0; ++i) {
    const index_t m = boundary_index(i, n, mode);
    line[i] = m < 0 ? cval : line[m];
  }
  for (index_t i = n; i < n + after; ++i) {
    const index_t m = boundary_index(i, n, mode);
    line[i] = m < 0 ? cval : line[m];
  }
}

// Row `m` of a plane converted to double into line[0, width), then extended.
template <typename T>
void load_extended(const T* row, double* line, index_t width, index_t before, index_t after,
                   BoundaryMode mode, double cval) {
  for (index_t x = 0; x < width; ++x) line[x] = static_cast<double>(row[x]);
  extend_line(line, width, before, after, mode, cval);
}

// scipy.ndimage's correlate1d arithmetic: +1 symmetric, -1 antisymmetric, 0 general
// (only odd kernels are paired, with scipy's DBL_EPSILON test).
int symmetry_of(const double* w, index_t size) {
  if (!(size & 1)) return 0;
  const index_t c = size / 2;
  bool symmetric = true, antisymmetric = true;
  for (index_t i = 1; i <= c; ++i) {
    if (std::fabs(w[c + i] - w[c - i]) > DBL_EPSILON) symmetric = false;
    if (std::fabs(w[c + i] + w[c - i]) > DBL_EPSILON) antisymmetric = false;
  }
  return symmetric ? 1 : (antisymmetric ? -1 : 0);
}

// out[x] = pass over rows[0..size) at column x, for x in [0, n): rows[j] holds the input
// of tap j (for a horizontal pass rows[j] = line + j). See FilterPass in filter.h.
// Columns go by chunks of kChunk so the sums stay in registers across the taps: a full
// chunk is kVectors explicit SIMD vectors (GCC's auto-vectorizer picked gathers across
// taps instead), the last one a scalar loop doing the same operations.
typedef double DoubleVector __attribute__((vector_size(64)));
constexpr index_t kLanes = 8, kVectors = 4, kChunk = kLanes * kVectors;

inline DoubleVector load(const double* p) {
  DoubleVector v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(double* p, DoubleVector v) { std::memcpy(p, &v, sizeof(v)); }
inline DoubleVector broadcast(double w) { return DoubleVector{w, w, w, w, w, w, w, w}; }

// sum / size, correctly rounded, without a division: q = sum * (1/size) is within an ulp
// of the quotient, the remainder sum - q * size is exact in one fused multiply-add, and
// q + remainder * (1/size) rounds to the correctly rounded quotient (Markstein's theorem;
// P. Markstein, IBM J. Res. Dev. 34, 1990). Vector division costs several times more than
// these three operations. Without hardware FMA, a plain division.
template <typename V>
inline V divide_by_size(V sum, double size) {
#ifdef __FMA__
  const double inverse = 1.0 / size;
  if constexpr (std::is_same_v<V, double>) {
    const double q = sum * inverse;
    return std::fma(std::fma(-q, size, sum), inverse, q);
  } else {
    V q = sum * inverse;
    for (index_t l = 0; l < kLanes; ++l) q[l] = std::fma(std::fma(-q[l], size, sum[l]), inverse, q[l]);
    return q;
  }
#else
  return sum / size;
#endif
}

// Element-wise body of the passes, written once for Vectors SIMD vectors per step (several
// independent sums hide the add latency) and for scalars (Vectors = 0, the tail).
template <int Vectors>
inline void pass_span(const FilterPass& p, int symmetry, const double* const* rows, index_t x0,
                      index_t count, double* out) {
  using V = std::conditional_t<Vectors == 0, double, DoubleVector>;
  constexpr int A = Vectors == 0 ? 1 : Vectors;
  constexpr index_t step = Vectors == 0 ? 1 : Vectors * kLanes;
  auto ld = [](const double* q, int a) -> V {
    if constexpr (Vectors == 0) return *q; else return load(q + a * kLanes);
  };
  auto bc = [](double w) -> V {
    if constexpr (Vectors == 0) return w; else return broadcast(w);
  };
  const index_t k = p.size;
  for (index_t x = x0; x + step <= x0 + count; x += step) {
    V acc[A];
    if (p.box) {
      for (int a = 0; a < A; ++a) acc[a] = ld(rows[0] + x, a);
      for (index_t j = 1; j < k; ++j)
        for (int a = 0; a < A; ++a) acc[a] += ld(rows[j] + x, a);
      for (int a = 0; a < A; ++a) acc[a] = divide_by_size(acc[a], static_cast<double>(k));
    } else if (symmetry != 0) {  // scipy: x[c]*w[c], then (x[c+jj] +- x[c-jj]) * w[c+jj]
      const index_t c = k / 2;
      const V wc = bc(p.weights[c]);
      for (int a = 0; a < A; ++a) acc[a] = ld(rows[c] + x, a) * wc;
      for (index_t j = 0; j < c; ++j) {
        const V wj = bc(p.weights[j]);
        const double *lo = rows[j] + x, *hi = rows[k - 1 - j] + x;
        if (symmetry > 0)
          for (int a = 0; a < A; ++a) acc[a] += (ld(lo, a) + ld(hi, a)) * wj;
        else
          for (int a = 0; a < A; ++a) acc[a] += (ld(lo, a) - ld(hi, a)) * wj;
      }
    } else {  // scipy: the last tap first, then taps 0 .. k-2
      const V wl = bc(p.weights[k - 1]);
      for (int a = 0; a < A; ++a) acc[a] = ld(rows[k - 1] + x, a) * wl;
      for (index_t j = 0; j + 1 < k; ++j) {
        const V wj = bc(p.weights[j]);
        for (int a = 0; a < A; ++a) acc[a] += ld(rows[j] + x, a) * wj;
      }
    }
    for (int a = 0; a < A; ++a) {
      if constexpr (Vectors == 0) out[x] = acc[a]; else store(out + x + a * kLanes, acc[a]);
    }
  }
}

void apply_pass(const FilterPass& p, int symmetry, const double* const* rows, index_t n,
                double* out) {
  const index_t chunks = n / kChunk * kChunk, vectors = n / kLanes * kLanes;
  pass_span<kVectors>(p, symmetry, rows, 0, chunks, out);
  pass_span<1>(p, symmetry, rows, chunks, vectors - chunks, out);
  pass_span<0>(p, symmetry, rows, vectors, n - vectors, out);
}

template <typename T>
void store_row(const double* values, T* out, index_t n) {
  for (index_t x = 0; x < n; ++x) out[x] = scipy_cast<T>(values[x]);
}

// Round to T and back, as scipy storing the intermediate image in the output array.
template <typename T>
void round_row(double* values, index_t n) {
  for (index_t x = 0; x < n; ++x) values[x] = static_cast<double>(scipy_cast<T>(values[x]));
}

index_t lead_of(index_t size, index_t origin) { return size / 2 + origin; }

}  // namespace

index_t boundary_index(index_t i, index_t n, BoundaryMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case BoundaryMode::constant:
      return -1;
    case BoundaryMode::nearest:
      return i < 0 ? 0 : n - 1;
    case BoundaryMode::wrap:
      return positive_mod(i, n);
    case BoundaryMode::reflect: {
      const index_t m = positive_mod(i, 2 * n);
      return m < n ? m : 2 * n - 1 - m;
    }
    case BoundaryMode::mirror: {
      if (n == 1) return 0;
      const index_t m = positive_mod(i, 2 * n - 2);
      return m < n ? m : 2 * n - 2 - m;
    }
  }
  return -1;
}

// ---------------------------------------------------------------- separable filters
namespace {

// One thread's plan and buffers for the two passes of a separable filter over a strip of
// output rows [y0, y1) of one plane (at most kStripRows of them).
template <typename T>
class SeparableStrip {
 public:
  SeparableStrip(index_t width, const FilterPass& vertical, const FilterPass& horizontal,
                 bool horizontal_first, bool round_between, BoundaryMode mode, double cval,
                 double cval_between)
      : W_(width), v_(vertical), h_(horizontal), horizontal_first_(horizontal_first),
        round_between_(round_between), mode_(mode), cval_(cval), cval_between_(cval_between),
        lead_v_(lead_of(vertical.size, vertical.origin)),
        lead_h_(lead_of(horizontal.size, horizontal.origin)),
        sym_v_(vertical.box ? 0 : symmetry_of(vertical.weights, vertical.size)),
        sym_h_(horizontal.box ? 0 : symmetry_of(horizontal.weights, horizontal.size)),
        rows_(static_cast<std::size_t>((kStripRows + vertical.size - 1) * width)),
        line_(width + horizontal.size - 1), row_out_(width),
        taps_(std::max(vertical.size, horizontal.size)) {}

  // out[(y - y0) * W + x] for y in [y0, y1): rows `out_stride` apart.
  void run(const T* in, index_t H, index_t y0, index_t y1, T* out, index_t out_stride) {
    const index_t kv = v_.size, kh = h_.size, W = W_;
    const index_t first = y0 - lead_v_, count = (y1 - y0) + kv - 1;
    double* mid = line_.data() + lead_h_;  // line_[0] is column -lead_h
    // rows_: the strip's rows read by the vertical pass (input rows, or intermediate rows
    // when the horizontal pass runs first); line_: one row extended for the horizontal pass.
    for (index_t r = 0; r < count; ++r) {
      double* slot = rows_.data() + r * W;
      const index_t m = boundary_index(first + r, H, mode_);
      if (!horizontal_first_) {
        if (m < 0) std::fill(slot, slot + W, cval_);
        else for (index_t x = 0; x < W; ++x) slot[x] = static_cast<double>(in[m * W + x]);
      } else if (m < 0) {  // the intermediate image is extended with cval_between
        std::fill(slot, slot + W, cval_between_);
      } else {
        load_extended(in + m * W, mid, W, lead_h_, kh - 1 - lead_h_, mode_, cval_);
        for (index_t j = 0; j < kh; ++j) taps_[j] = line_.data() + j;
        apply_pass(h_, sym_h_, taps_.data(), W, slot);
        if (round_between_) round_row<T>(slot, W);
      }
    }
    for (index_t y = y0; y < y1; ++y) {
      for (index_t j = 0; j < kv; ++j) taps_[j] = rows_.data() + (y - y0 + j) * W;
      if (horizontal_first_) {
        apply_pass(v_, sym_v_, taps_.data(), W, row_out_.data());
      } else {
        apply_pass(v_, sym_v_, taps_.data(), W, mid);
        if (round_between_) round_row<T>(mid, W);
        extend_line(mid, W, lead_h_, kh - 1 - lead_h_, mode_, cval_between_);
        for (index_t j = 0; j < kh; ++j) taps_[j] = line_.data() + j;
        apply_pass(h_, sym_h_, taps_.data(), W, row_out_.data());
      }
      store_row(row_out_.data(), out + (y - y0) * out_stride, W);
    }
  }

 private:
  index_t W_;
  FilterPass v_, h_;
  bool horizontal_first_, round_between_;
  BoundaryMode mode_;
  double cval_, cval_between_;
  index_t lead_v_, lead_h_;
  int sym_v_, sym_h_;
  std::vector<double> rows_, line_, row_out_;
  std::vector<const double*> taps_;
};

}  // namespace

template <typename T>
void separable_filter(const T* input, T* output, const PlaneShape& s, const FilterPass& vertical,
                      const FilterPass& horizontal, bool horizontal_first, bool round_between,
                      BoundaryMode mode, double cval, double cval_between) {
  const index_t H = s.height, W = s.width, HW = H * W;
  const index_t strips = (H + kStripRows - 1) / kStripRows, tasks = s.planes * strips;

#pragma omp parallel num_threads(threads_for(s.planes * HW * (vertical.size + horizontal.size)))
  {
    SeparableStrip<T> strip(W, vertical, horizontal, horizontal_first, round_between, mode,
                            cval, cval_between);
#pragma omp for schedule(static)
    for (index_t t = 0; t < tasks; ++t) {
      const index_t plane = t / strips, y0 = (t % strips) * kStripRows;
      const index_t y1 = std::min(H, y0 + kStripRows);
      strip.run(input + plane * HW, H, y0, y1, output + plane * HW + y0 * W, W);
    }
  }
}

// ---------------------------------------------------------------- 2-D correlation
namespace {

// out[x] = sum_k w[k] * rows[k][x], from 0.0 in tap order (scipy's), kChunk columns at a
// time with the sums in registers, then a scalar tail doing the same operations.
void correlate_row(const double* const* rows, const double* w, index_t taps, index_t n,
                   double* out) {
  index_t x0 = 0;
  for (; x0 + kChunk <= n; x0 += kChunk) {
    DoubleVector acc[kVectors];
    for (index_t v = 0; v < kVectors; ++v) acc[v] = broadcast(0.0);
    for (index_t k = 0; k < taps; ++k) {
      const DoubleVector wk = broadcast(w[k]);
      for (index_t v = 0; v < kVectors; ++v) acc[v] += wk * load(rows[k] + x0 + v * kLanes);
    }
    for (index_t v = 0; v < kVectors; ++v) store(out + x0 + v * kLanes, acc[v]);
  }
  for (index_t x = x0; x < n; ++x) {
    double acc = 0.0;
    for (index_t k = 0; k < taps; ++k) acc += w[k] * rows[k][x];
    out[x] = acc;
  }
}

}  // namespace

template <typename T>
void correlate2d(const T* input, T* output, const PlaneShape& s, const double* weights,
                 index_t kh, index_t kw, index_t origin_y, index_t origin_x, BoundaryMode mode,
                 double cval) {
  const index_t H = s.height, W = s.width, HW = H * W;
  const index_t strips = (H + kStripRows - 1) / kStripRows, tasks = s.planes * strips;
  const index_t lead_y = lead_of(kh, origin_y), lead_x = lead_of(kw, origin_x);
  const index_t ext_w = W + kw - 1, slots = kStripRows + kh - 1;
  // scipy drops the weights with |w| <= DBL_EPSILON from the footprint.
  std::vector<index_t> tap_i, tap_j;
  std::vector<double> tap_w;
  for (index_t i = 0; i < kh; ++i)
    for (index_t j = 0; j < kw; ++j)
      if (std::fabs(weights[i * kw + j]) > DBL_EPSILON) {
        tap_i.push_back(i), tap_j.push_back(j), tap_w.push_back(weights[i * kw + j]);
      }
  const index_t taps = static_cast<index_t>(tap_w.size());

#pragma omp parallel num_threads(threads_for(s.planes * HW * (taps + 1)))
  {
    std::vector<double> rows(static_cast<std::size_t>(slots * ext_w)), acc(W);
    std::vector<const double*> tap_rows(taps);
#pragma omp for schedule(static)
    for (index_t t = 0; t < tasks; ++t) {
      const index_t plane = t / strips, y0 = (t % strips) * kStripRows;
      const index_t y1 = std::min(H, y0 + kStripRows), first = y0 - lead_y;
      const T* in = input + plane * HW;
      T* out = output + plane * HW;
      for (index_t r = 0; r < (y1 - y0) + kh - 1; ++r) {
        double* slot = rows.data() + r * ext_w;
        const index_t m = boundary_index(first + r, H, mode);
        if (m < 0) std::fill(slot, slot + ext_w, cval);
        else load_extended(in + m * W, slot + lead_x, W, lead_x, kw - 1 - lead_x, mode, cval);
      }
      for (index_t y = y0; y < y1; ++y) {
        for (index_t k = 0; k < taps; ++k)
          tap_rows[k] = rows.data() + (y - y0 + tap_i[k]) * ext_w + tap_j[k];
        correlate_row(tap_rows.data(), tap_w.data(), taps, W, acc.data());
        store_row(acc.data(), out + y * W, W);
      }
    }
  }
}

// ---------------------------------------------------------------- rank filters
namespace {

// A comparator of a selection network: v[i] = min(v[i], v[j]) if keep_min, v[j] = max(...)
// if keep_max. The tables are Knuth's merge-exchange sorting network (TAOCP 5.2.2, Algorithm
// M) for 9 and 25 inputs, pruned backwards to the comparators (and the halves of them) that
// the middle output depends on: 36 min/max for the 3x3 median, 202 for 5x5.
struct Comparator {
  int i, j;
  bool keep_min, keep_max;
};

constexpr Comparator kMedian9[] = {
    {0, 8, 1, 1}, {0, 4, 1, 1}, {1, 5, 1, 1}, {2, 6, 1, 1}, {3, 7, 1, 1}, {4, 8, 1, 1},
    {0, 2, 1, 1}, {1, 3, 1, 1}, {4, 6, 1, 1}, {5, 7, 1, 1}, {2, 8, 1, 1}, {2, 4, 1, 1},
    {3, 5, 1, 1}, {6, 8, 1, 1}, {0, 1, 0, 1}, {2, 3, 0, 1}, {4, 5, 1, 0}, {6, 7, 1, 0},
    {1, 8, 1, 0}, {1, 4, 0, 1}, {3, 6, 1, 0}, {3, 4, 0, 1}};

constexpr Comparator kMedian25[] = {
    {0, 16, 1, 1}, {1, 17, 1, 1}, {2, 18, 1, 1}, {3, 19, 1, 1}, {4, 20, 1, 1}, {5, 21, 1, 1},
    {6, 22, 1, 1}, {7, 23, 1, 1}, {8, 24, 1, 1}, {0, 8, 1, 1}, {1, 9, 1, 1}, {2, 10, 1, 1},
    {3, 11, 1, 1}, {4, 12, 1, 1}, {5, 13, 1, 1}, {6, 14, 1, 1}, {7, 15, 1, 1}, {16, 24, 1, 1},
    {8, 16, 1, 1}, {9, 17, 1, 1}, {10, 18, 1, 1}, {11, 19, 1, 1}, {12, 20, 1, 1}, {13, 21, 1, 1},
    {14, 22, 1, 1}, {15, 23, 1, 1}, {0, 4, 1, 1}, {1, 5, 1, 1}, {2, 6, 1, 1}, {3, 7, 1, 1},
    {8, 12, 1, 1}, {9, 13, 1, 1}, {10, 14, 1, 1}, {11, 15, 1, 1}, {16, 20, 1, 1}, {17, 21, 1, 1},
    {18, 22, 1, 1}, {19, 23, 1, 1}, {4, 16, 1, 1}, {5, 17, 1, 1}, {6, 18, 1, 1}, {7, 19, 1, 1},
    {12, 24, 1, 1}, {4, 8, 1, 1}, {5, 9, 1, 1}, {6, 10, 1, 1}, {7, 11, 1, 1}, {12, 16, 1, 1},
    {13, 17, 1, 1}, {14, 18, 1, 1}, {15, 19, 1, 1}, {20, 24, 1, 1}, {0, 2, 1, 1}, {1, 3, 1, 1},
    {4, 6, 1, 1}, {5, 7, 1, 1}, {8, 10, 1, 1}, {9, 11, 1, 1}, {12, 14, 1, 1}, {13, 15, 1, 1},
    {16, 18, 1, 1}, {17, 19, 1, 1}, {20, 22, 1, 1}, {21, 23, 1, 1}, {2, 16, 1, 1}, {3, 17, 1, 1},
    {6, 20, 1, 1}, {7, 21, 1, 1}, {10, 24, 1, 1}, {2, 8, 1, 1}, {3, 9, 1, 1}, {6, 12, 1, 1},
    {7, 13, 1, 1}, {10, 16, 1, 1}, {11, 17, 1, 1}, {14, 20, 1, 1}, {15, 21, 1, 1}, {18, 24, 1, 1},
    {2, 4, 1, 1}, {3, 5, 1, 1}, {6, 8, 1, 1}, {7, 9, 1, 1}, {10, 12, 1, 1}, {11, 13, 1, 1},
    {14, 16, 1, 1}, {15, 17, 1, 1}, {18, 20, 1, 1}, {19, 21, 1, 1}, {22, 24, 1, 1}, {0, 1, 0, 1},
    {2, 3, 0, 1}, {4, 5, 0, 1}, {6, 7, 0, 1}, {8, 9, 0, 1}, {10, 11, 0, 1}, {12, 13, 1, 0},
    {14, 15, 1, 0}, {16, 17, 1, 0}, {18, 19, 1, 0}, {20, 21, 1, 0}, {22, 23, 1, 0}, {1, 16, 0, 1},
    {3, 18, 0, 1}, {5, 20, 1, 0}, {7, 22, 1, 0}, {9, 24, 1, 0}, {5, 12, 0, 1}, {7, 14, 0, 1},
    {9, 16, 1, 0}, {11, 18, 1, 0}, {9, 12, 0, 1}, {11, 14, 1, 0}, {11, 12, 0, 1}};

// 64 bytes of T: one AVX-512 register (two AVX2 ones, four SSE ones elsewhere).
template <typename T>
struct Simd {
  typedef T type __attribute__((vector_size(64)));
  static constexpr index_t lanes = 64 / sizeof(T);
};

template <const auto& Net, std::size_t K, typename V>
inline void compare_exchange(V* v) {
  constexpr Comparator c = Net[K];
  const V a = v[c.i], b = v[c.j];
  if constexpr (c.keep_min) v[c.i] = a < b ? a : b;
  if constexpr (c.keep_max) v[c.j] = a < b ? b : a;
}

template <const auto& Net, typename V, std::size_t... K>
inline void run_network(V* v, std::index_sequence<K...>) {
  (compare_exchange<Net, K>(v), ...);
}

// Median of a K x K window by a network, `lanes` pixels at a time. rows[i] points at the
// extended row i of the window (column -lead_x); out has room for a whole vector past n.
template <typename T, index_t K, const auto& Net>
void median_network_row(const T* const* rows, T* out, index_t n) {
  using V = typename Simd<T>::type;
  constexpr index_t L = Simd<T>::lanes;
  constexpr std::size_t size = sizeof(Net) / sizeof(Comparator);
  for (index_t x = 0; x < n; x += L) {
    V v[K * K];
    for (index_t i = 0; i < K; ++i)
      for (index_t j = 0; j < K; ++j) std::memcpy(&v[i * K + j], rows[i] + x + j, sizeof(V));
    run_network<Net>(v, std::make_index_sequence<size>{});
    std::memcpy(out + x, &v[K * K / 2], sizeof(V));
  }
}

// Huang's sliding histogram (T. S. Huang, 1979) for uint8: slide right by one column,
// remove the left column, add the right one, and walk the rank pointer to its new place.
void rank_histogram_row(const std::uint8_t* const* rows, std::uint8_t* out, index_t n,
                        index_t kh, index_t kw, index_t rank) {
  index_t hist[256] = {0};
  for (index_t i = 0; i < kh; ++i)
    for (index_t j = 0; j < kw; ++j) ++hist[rows[i][j]];
  index_t value = 0, below = 0;  // below = number of window values < value
  for (index_t x = 0; x < n; ++x) {
    if (x > 0) {
      for (index_t i = 0; i < kh; ++i) {
        const std::uint8_t gone = rows[i][x - 1], come = rows[i][x + kw - 1];
        --hist[gone], ++hist[come];
        below -= gone < value;
        below += come < value;
      }
    }
    while (below > rank) below -= hist[--value];
    while (below + hist[value] <= rank) below += hist[value++];
    out[x] = static_cast<std::uint8_t>(value);
  }
}

template <typename T>
void rank_select_row(const T* const* rows, T* out, index_t n, index_t kh, index_t kw,
                     index_t rank, T* window) {
  for (index_t x = 0; x < n; ++x) {
    for (index_t i = 0; i < kh; ++i)
      for (index_t j = 0; j < kw; ++j) window[i * kw + j] = rows[i][x + j];
    std::nth_element(window, window + rank, window + kh * kw);
    out[x] = window[rank];
  }
}

}  // namespace

template <typename T>
void rank_filter(const T* input, T* output, const PlaneShape& s, index_t kh, index_t kw,
                 index_t origin_y, index_t origin_x, index_t rank, BoundaryMode mode,
                 double cval) {
  const index_t H = s.height, W = s.width, HW = H * W;
  const index_t strips = (H + kStripRows - 1) / kStripRows, tasks = s.planes * strips;
  const index_t lead_y = lead_of(kh, origin_y), lead_x = lead_of(kw, origin_x);
  constexpr index_t L = Simd<T>::lanes;
  const index_t padded_w = (W + L - 1) / L * L;
  const index_t ext_w = padded_w + kw - 1, slots = kStripRows + kh - 1;
  const T fill = scipy_cast<T>(cval);
  const bool median = rank == kh * kw / 2;
  const bool net3 = median && kh == 3 && kw == 3, net5 = median && kh == 5 && kw == 5;
  const bool histogram = std::is_same_v<T, std::uint8_t> && !net3 && !net5;
  const index_t cost = net3 ? 4 : net5 ? 16 : (histogram ? 2 * kh + 8 : 4 * kh * kw);

#pragma omp parallel num_threads(threads_for(s.planes * HW * cost))
  {
    std::vector<T> rows(static_cast<std::size_t>(slots * ext_w), T(0)), line(padded_w);
    std::vector<T> window(kh * kw), extended(W + kw - 1);
    std::vector<const T*> ptrs(kh);
#pragma omp for schedule(static)
    for (index_t t = 0; t < tasks; ++t) {
      const index_t plane = t / strips, y0 = (t % strips) * kStripRows;
      const index_t y1 = std::min(H, y0 + kStripRows), first = y0 - lead_y;
      const T* in = input + plane * HW;
      T* out = output + plane * HW;
      for (index_t r = 0; r < (y1 - y0) + kh - 1; ++r) {
        T* slot = rows.data() + r * ext_w;
        const index_t m = boundary_index(first + r, H, mode);
        if (m < 0) {
          std::fill(slot, slot + W + kw - 1, fill);
          continue;
        }
        const T* src = in + m * W;
        std::copy(src, src + W, slot + lead_x);
        for (index_t c = -lead_x; c < 0; ++c) {
          const index_t col = boundary_index(c, W, mode);
          slot[lead_x + c] = col < 0 ? fill : src[col];
        }
        for (index_t c = W; c < W + kw - 1 - lead_x; ++c) {
          const index_t col = boundary_index(c, W, mode);
          slot[lead_x + c] = col < 0 ? fill : src[col];
        }
      }
      for (index_t y = y0; y < y1; ++y) {
        for (index_t i = 0; i < kh; ++i) ptrs[i] = rows.data() + (y - y0 + i) * ext_w;
        T* dst = (net3 || net5) ? line.data() : out + y * W;
        if (net3) median_network_row<T, 3, kMedian9>(ptrs.data(), dst, W);
        else if (net5) median_network_row<T, 5, kMedian25>(ptrs.data(), dst, W);
        else if constexpr (std::is_same_v<T, std::uint8_t>)
          rank_histogram_row(ptrs.data(), dst, W, kh, kw, rank);
        else rank_select_row(ptrs.data(), dst, W, kh, kw, rank, window.data());
        if (net3 || net5) std::copy(line.data(), line.data() + W, out + y * W);
      }
    }
  }
  (void)histogram;
}

// ---------------------------------------------------------------- gradient magnitude
namespace {

// sqrt(a*a + b*b) evaluated in T, as NumPy does in scipy's generic_gradient_magnitude
// (uint8: the products and the sum wrap modulo 256, NumPy's sqrt of uint8 is float32 and
// the store truncates).
template <typename T>
void hypot_row(const T* a, const T* b, T* out, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      const std::uint8_t sum = static_cast<std::uint8_t>(static_cast<std::uint8_t>(a[i] * a[i]) +
                                                         static_cast<std::uint8_t>(b[i] * b[i]));
      out[i] = static_cast<std::uint8_t>(std::sqrt(static_cast<float>(sum)));
    } else {
      const T aa = a[i] * a[i], bb = b[i] * b[i];
      out[i] = std::sqrt(aa + bb);
    }
  }
}

const double kDerivative[3] = {-1.0, 0.0, 1.0}, kSmooth[3] = {1.0, 2.0, 1.0};

}  // namespace

// One pass over the image: for each strip of rows both Sobel responses go to strip-sized
// buffers (still in cache) and the root is written straight to the output. Each response
// is computed exactly as separable_filter computes sobel(), so the result is the one of
// scipy's three whole-image steps.
template <typename T>
void gradient_magnitude(const T* input, T* output, const PlaneShape& s, BoundaryMode mode,
                        double cval) {
  const index_t H = s.height, W = s.width, HW = H * W;
  const index_t strips = (H + kStripRows - 1) / kStripRows, tasks = s.planes * strips;
  const FilterPass derivative{false, kDerivative, 3, 0}, smooth{false, kSmooth, 3, 0};

#pragma omp parallel num_threads(threads_for(s.planes * HW * 8))
  {
    // d/dy: [-1, 0, 1] down the columns, then [1, 2, 1] along the rows; d/dx the transpose.
    SeparableStrip<T> along_y(W, derivative, smooth, false, true, mode, cval, cval);
    SeparableStrip<T> along_x(W, smooth, derivative, true, true, mode, cval, cval);
    std::vector<T> dy(static_cast<std::size_t>(kStripRows * W)), dx(dy.size());
#pragma omp for schedule(static)
    for (index_t t = 0; t < tasks; ++t) {
      const index_t plane = t / strips, y0 = (t % strips) * kStripRows;
      const index_t y1 = std::min(H, y0 + kStripRows);
      const T* in = input + plane * HW;
      along_y.run(in, H, y0, y1, dy.data(), W);
      along_x.run(in, H, y0, y1, dx.data(), W);
      hypot_row(dy.data(), dx.data(), output + plane * HW + y0 * W, (y1 - y0) * W);
    }
  }
}

#define FASTDL_FILTER_INSTANTIATE(T)                                                          \
  template void separable_filter<T>(const T*, T*, const PlaneShape&, const FilterPass&,       \
                                    const FilterPass&, bool, bool, BoundaryMode, double,      \
                                    double);                                                  \
  template void correlate2d<T>(const T*, T*, const PlaneShape&, const double*, index_t,       \
                               index_t, index_t, index_t, BoundaryMode, double);              \
  template void rank_filter<T>(const T*, T*, const PlaneShape&, index_t, index_t, index_t,    \
                               index_t, index_t, BoundaryMode, double);                       \
  template void gradient_magnitude<T>(const T*, T*, const PlaneShape&, BoundaryMode, double);

FASTDL_FILTER_INSTANTIATE(float)
FASTDL_FILTER_INSTANTIATE(double)
FASTDL_FILTER_INSTANTIATE(std::uint8_t)

}  // namespace fastdl::cpu
