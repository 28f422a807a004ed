// The loss family: softmax cross-entropy (class indices or probabilities), softmax and
// log_softmax over any dimension, nll_loss and the element-wise losses
// (https://pytorch.org/docs/stable/nn.functional.html#loss-functions).
//
// Speed: float32 math uses branch-free exp/log (Cephes polynomials, ~1 ulp) that GCC
// vectorizes; float64 uses the C library. Stability: log-sum-exp shifted by the row
// maximum and stored in double; log_sigmoid as min(x, 0) - log1p(exp(-|x|)).
// Determinism: every sum runs in lanes over an order fixed by the shape (rows, or blocks
// of kReduceBlock elements added in block order), never by the thread count.
#include "cpu/loss.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/stream.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace fastdl::cpu {

namespace {

constexpr int kLanes = 16;

// __builtin_bit_cast rather than memcpy: the vectorizer sees through it.
inline float bits_to_float(std::int32_t i) { return __builtin_bit_cast(float, i); }

inline std::int32_t float_to_bits(float f) { return __builtin_bit_cast(std::int32_t, f); }

// exp(x - n ln 2) for n = round(x / ln 2): ln 2 split in two so that n ln 2 subtracts
// exactly, then Cephes expf's polynomial. V is float or a GCC vector of floats.
template <typename V>
__attribute__((always_inline)) inline V exp_reduced(V x, V n) {
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// exp(x) for x already clamped to [-87.34, 88.38]: x = n ln2 + r, |r| <= ln2/2, a degree-7
// polynomial for exp(r) (Cephes expf), then 2^n through the exponent bits. No branch.
__attribute__((always_inline)) inline float exp_clamped(float clamped) {
  // Round to nearest by the 1.5 * 2^23 trick: std::floor does not vectorize without
  // -fno-trapping-math, and this loop must.
  const float n = (clamped * 1.44269504089f + 12582912.0f) - 12582912.0f;
  return exp_reduced(clamped, n) * bits_to_float((static_cast<std::int32_t>(n) + 127) << 23);
}

// exp(x) for float, with no branch, so loops over it vectorize. Results below 2^-126 flush
// to 0 (the true value is a denormal), above FLT_MAX give inf, NaN stays NaN.
__attribute__((always_inline)) inline float fast_exp(float x) {
  const float result = exp_clamped(std::min(std::max(x, -87.3365447505f), 88.3762626647f));
  const float big = x > 88.3762626647f ? std::numeric_limits<float>::infinity() : result;
  const float out = x < -87.3365447505f ? 0.0f : big;
  return x != x ? x : out;
}

// log(1 + m) + e ln 2 for m in [sqrt(1/2) - 1, sqrt(2) - 1]: Cephes logf's polynomial,
// with ln 2 split in two so that e ln 2 adds exactly. Shared by fast_log and log1p_unit.
// V is float, or a GCC vector of floats (the AVX-512 binary_cross_entropy loop below).
template <typename V>
__attribute__((always_inline)) inline V log_reduced(V m, V e) {
  // The degree-8 polynomial by Estrin's scheme (pairs, then powers m^2 and m^4): four
  // dependent FMAs where Horner's rule chains nine, so loops over logarithms are not
  // bound by the chain's latency.
  const V z = m * m;
  const V z2 = z * z;
  const V a0 = 3.3333331174e-1f + m * -2.4999993993e-1f;
  const V a1 = 2.0000714765e-1f + m * -1.6668057665e-1f;
  const V a2 = 1.4249322787e-1f + m * -1.2420140846e-1f;
  const V a3 = 1.1676998740e-1f + m * -1.1514610310e-1f;
  const V b0 = a0 + z * a1;
  const V b1 = a2 + z * a3;
  V y = b0 + z2 * (b1 + z2 * 7.0376836292e-2f);
  y = y * m * z;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  return m + y + e * 0.693359375f;
}

// log(x) for float: x = m 2^e with m in [sqrt(1/2), sqrt(2)), a polynomial in m - 1 (Cephes
// logf). Denormals are scaled first; log 0 = -inf, log of a negative or NaN is NaN.
// log(x) for finite x >= 0 (denormals included; 0 gives -inf), float: x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), the polynomial in m - 1 (log_reduced).
__attribute__((always_inline)) inline float fast_log_nonnegative(float x) {
  const bool tiny = x < FLT_MIN;
  // Every arithmetic op runs unconditionally, only constants are selected: with trapping
  // math on, GCC will not if-convert a conditional FP op, and the loop would not vectorize.
  const float scaled = x * (tiny ? 8388608.0f : 1.0f);  // 2^23 lifts a denormal to a normal
  const std::int32_t bits = float_to_bits(scaled);
  float e = static_cast<float>((bits >> 23) - 126) - (tiny ? 23.0f : 0.0f);
  float m = bits_to_float((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = e - (low ? 1.0f : 0.0f);
  m = m * (low ? 2.0f : 1.0f) - 1.0f;
  const float result = log_reduced(m, e);
  return x == 0.0f ? -std::numeric_limits<float>::infinity() : result;
}

// log(x) for float (Cephes logf): log 0 = -inf, log inf = inf, log of a negative or NaN is
// NaN. Denormals are scaled first.
__attribute__((always_inline)) inline float fast_log(float x) {
  float result = fast_log_nonnegative(x);
  result = x == std::numeric_limits<float>::infinity() ? x : result;
  const bool invalid = (x < 0.0f) | (x != x);  // no short-circuit: no branch
  return invalid ? std::numeric_limits<float>::quiet_NaN() : result;
}

// exp(x) for x <= 0 (give or take a rounding) or NaN: x minus a row's maximum or its
// log-sum-exp, -|x|, a log-probability. fast_exp without the overflow and NaN selects,
// which such arguments do not need (NaN passes through the clamp and the polynomial).
__attribute__((always_inline)) inline float fast_exp_nonpositive(float x) {
  const float result = exp_clamped(std::max(x, -87.3365447505f));
  return x < -87.3365447505f ? 0.0f : result;
}

inline float exp_t(float x) { return fast_exp(x); }
inline float exp_nonpositive(float x) { return fast_exp_nonpositive(x); }
inline double exp_nonpositive(double x) { return std::exp(x); }
inline double exp_t(double x) { return std::exp(x); }
inline float log_t(float x) { return fast_log(x); }
// For probabilities in [0, 1] that the caller range-checks (binary_cross_entropy refuses
// anything else, NaN included): no +inf, negative or NaN selects.
inline float log_probability(float x) { return fast_log_nonnegative(x); }
inline double log_probability(double x) { return std::log(x); }
inline double log_t(double x) { return std::log(x); }

// log(1 + z) for z in [0, 1] (or NaN), float: u = 1 + z lies in [1, 2], so its logarithm
// needs no exponent extraction, denormal scaling or special cases; the rounding of u is
// put back as c = z - (u - 1) (exact), which log(1 + z) - log(u) equals to c / u, and
// c * (1 - 1/u) is below 2^-24 of the result, so c is added as is. No division: about half
// the work of log1p_t, which log_sigmoid (z = exp(-|x|)) pays on every element.
__attribute__((always_inline)) inline float log1p_unit(float z) {
  const float u = 1.0f + z;
  const float c = z - (u - 1.0f);
  const bool high = u > 1.41421356237f;  // log(u) = log(u / 2) + ln 2, u / 2 in [0.707, 1]
  const float m = (high ? u * 0.5f : u) - 1.0f;
  const float e = high ? 1.0f : 0.0f;
  return log_reduced(m, e) + c;
}

inline double log1p_unit(double z) { return std::log1p(z); }

// log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), finite for every finite x.
template <typename T>
inline T log_sigmoid(T x) {
  return std::min(x, T(0)) - log1p_unit(exp_nonpositive(-std::abs(x)));
}

template <typename T>
inline T sigmoid(T x) {
  const T e = exp_nonpositive(-std::abs(x));
  const T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// max over n values in lanes (NaN is skipped here; it reaches the result through exp).
template <typename T>
inline T max_of(const T* x, index_t n) {
  T lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -std::numeric_limits<T>::infinity();
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) lanes[k] = x[i + k] > lanes[k] ? x[i + k] : lanes[k];
  }
  for (int k = 0; i < n; ++i, ++k) lanes[k] = x[i] > lanes[k] ? x[i] : lanes[k];
  T m = lanes[0];
  for (int k = 1; k < kLanes; ++k) m = lanes[k] > m ? lanes[k] : m;
  return m;
}

inline double combine(const double* lanes) {
  double s = 0.0;
  for (int k = 0; k < kLanes; k += 2) s += lanes[k] + lanes[k + 1];
  return s;
}

constexpr index_t kChunk = 512;

// lanes[k] += values[i] for i = k mod kLanes: a fixed order that vectorizes.
template <typename T>
inline void accumulate(double* lanes, const T* values, index_t n) {
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) lanes[k] += static_cast<double>(values[i + k]);
  }
  for (int k = 0; i < n; ++i, ++k) lanes[k] += static_cast<double>(values[i]);
}

// sum exp(x - m) in double lanes; when `store` is not null it also receives exp(x - m).
// The exponentials go through a small buffer so that the exp loop itself vectorizes.
template <typename T>
inline double sum_exp(const T* x, index_t n, T m, T* store) {
  double lanes[kLanes] = {};
  T buffer[kChunk];
  for (index_t i0 = 0; i0 < n; i0 += kChunk) {
    const index_t len = std::min(kChunk, n - i0);
    T* e = store ? store + i0 : buffer;
    const T* xs = x + i0;
    for (index_t k = 0; k < len; ++k) e[k] = exp_nonpositive(xs[k] - m);
    accumulate(lanes, e, len);
  }
  return combine(lanes);
}

// A double log-sum-exp split in two floats (T = float) or kept whole (T = double), so that
// x - lse is (x - hi) - lo: x - hi is exact near the maximum, and the gradient's error does
// not grow with the logits' magnitude.
template <typename T>
struct Shift {
  T hi, lo;
  explicit Shift(double value) : hi(static_cast<T>(value)), lo(static_cast<T>(value - static_cast<double>(hi))) {}
  T from(T x) const { return (x - hi) - lo; }
};

// m + log(sum exp(x - m)) of one row, in double.
template <typename T>
inline double row_logsumexp(const T* row, index_t n) {
  const T m = max_of(row, n);
  if (std::isinf(m)) return static_cast<double>(m);
  return static_cast<double>(m) + std::log(sum_exp(row, n, m, static_cast<T*>(nullptr)));
}

}  // namespace

// ====================================================================== cross-entropy, indices
template <typename T>
void cross_entropy_forward(const T* logits, const std::int64_t* target, const T* weight, T* nll,
                           T* smooth, double* logsumexp, index_t batch, index_t classes,
                           std::int64_t ignore_index) {
  const index_t C = classes;
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* row = logits + n * C;
    const double lse = row_logsumexp(row, C);
    logsumexp[n] = lse;
    const std::int64_t t = target[n];
    if (t == ignore_index) {
      nll[n] = T(0);
      if (smooth) smooth[n] = T(0);
      continue;
    }
    const double wt = weight ? static_cast<double>(weight[t]) : 1.0;
    nll[n] = static_cast<T>(-wt * (static_cast<double>(row[t]) - lse));
    if (smooth) {
      // -sum_c w[c] (x[c] - lse) = lse * sum_c w[c] - sum_c w[c] x[c]
      double wx[kLanes] = {}, ws[kLanes] = {};
      index_t c = 0;
      for (; c + kLanes <= C; c += kLanes)
        for (int k = 0; k < kLanes; ++k) {
          const double w = weight ? static_cast<double>(weight[c + k]) : 1.0;
          wx[k] += w * static_cast<double>(row[c + k]);
          ws[k] += w;
        }
      for (int k = 0; c < C; ++c, ++k) {
        const double w = weight ? static_cast<double>(weight[c]) : 1.0;
        wx[k] += w * static_cast<double>(row[c]);
        ws[k] += w;
      }
      smooth[n] = static_cast<T>(lse * combine(ws) - combine(wx));
    }
  }
}

template <typename T>
void cross_entropy_backward(const T* logits, const std::int64_t* target, const T* weight,
                            const double* logsumexp, const T* grad_nll, const T* grad_smooth,
                            T* grad_logits, index_t batch, index_t classes,
                            std::int64_t ignore_index) {
  const index_t C = classes;
  double weight_sum = static_cast<double>(C);
  if (weight) weight_sum = sum_fixed_order(weight, C);
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* row = logits + n * C;
    T* out = grad_logits + n * C;
    const std::int64_t t = target[n];
    if (t == ignore_index) {
      std::fill(out, out + C, T(0));
      continue;
    }
    const Shift<T> shift(logsumexp[n]);
    const double g_nll = static_cast<double>(grad_nll[n]) * (weight ? weight[t] : 1.0);
    const double g_smooth_d = grad_smooth ? static_cast<double>(grad_smooth[n]) : 0.0;
    const T scale = static_cast<T>(g_nll + g_smooth_d * weight_sum);
    const T g_smooth = static_cast<T>(g_smooth_d);
    if (weight) {
      for (index_t c = 0; c < C; ++c) out[c] = exp_nonpositive(shift.from(row[c])) * scale - g_smooth * weight[c];
    } else {
      for (index_t c = 0; c < C; ++c) out[c] = exp_nonpositive(shift.from(row[c])) * scale - g_smooth;
    }
    out[t] = static_cast<T>(static_cast<double>(out[t]) - g_nll);
  }
}

// ====================================================================== cross-entropy, probabilities
namespace {
// sum_c w[c] q[c] and sum_c w[c] q[c] x[c] of one row, q = (1 - eps) t + eps / C.
template <typename T>
inline void weighted_target_sums(const T* x, const T* t, const T* w, index_t C, T keep, T spread,
                                 double* wq_sum, double* wqx_sum) {
  double a[kLanes] = {}, b[kLanes] = {};
  index_t c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const T wq = (w ? w[c + k] : T(1)) * (keep * t[c + k] + spread);
      a[k] += static_cast<double>(wq);
      if (x) b[k] += static_cast<double>(wq) * static_cast<double>(x[c + k]);
    }
  for (int k = 0; c < C; ++c, ++k) {
    const T wq = (w ? w[c] : T(1)) * (keep * t[c] + spread);
    a[k] += static_cast<double>(wq);
    if (x) b[k] += static_cast<double>(wq) * static_cast<double>(x[c]);
  }
  *wq_sum = combine(a);
  if (wqx_sum) *wqx_sum = combine(b);
}
}  // namespace

template <typename T>
double cross_entropy_probabilities_forward(const T* logits, const T* target, const T* weight,
                                           T* loss, double* logsumexp, index_t batch,
                                           index_t classes, double label_smoothing) {
  const index_t C = classes;
  const T keep = static_cast<T>(1.0 - label_smoothing);
  const T spread = static_cast<T>(label_smoothing / static_cast<double>(C));
  std::vector<double> rows(loss ? 0 : batch);
  double* row_loss = rows.data();
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* x = logits + n * C;
    const double lse = row_logsumexp(x, C);
    logsumexp[n] = lse;
    double wq, wqx;
    weighted_target_sums(x, target + n * C, weight, C, keep, spread, &wq, &wqx);
    // -sum_c w q (x - lse); a zero-probability term adds nothing even where x = -inf.
    const double value = wq == 0.0 ? 0.0 : lse * wq - wqx;
    if (loss) loss[n] = static_cast<T>(value);
    else row_loss[n] = value;
  }
  return loss ? 0.0 : sum_fixed_order(row_loss, batch);
}

template <typename T>
void cross_entropy_probabilities_backward(const T* logits, const T* target, const T* weight,
                                          const double* logsumexp, const T* grad,
                                          bool grad_is_scalar, T* grad_logits, index_t batch,
                                          index_t classes, double label_smoothing) {
  const index_t C = classes;
  const T keep = static_cast<T>(1.0 - label_smoothing);
  const T spread = static_cast<T>(label_smoothing / static_cast<double>(C));
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* x = logits + n * C;
    const T* t = target + n * C;
    T* out = grad_logits + n * C;
    double wq_sum;
    weighted_target_sums(x, t, weight, C, keep, spread, &wq_sum, nullptr);
    const T g = grad[grad_is_scalar ? 0 : n];
    const T scale = static_cast<T>(static_cast<double>(g) * wq_sum);
    const Shift<T> shift(logsumexp[n]);
    for (index_t c = 0; c < C; ++c) {
      const T wq = (weight ? weight[c] : T(1)) * (keep * t[c] + spread);
      out[c] = exp_nonpositive(shift.from(x[c])) * scale - g * wq;
    }
  }
}

// ====================================================================== softmax, log_softmax
template <typename T>
void softmax_forward(const T* input, T* output, index_t outer, index_t dim, index_t inner,
                     bool log) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) num_threads(threads_for(outer * dim))
    for (index_t n = 0; n < outer; ++n) {
      const T* x = input + n * dim;
      T* y = output + n * dim;
      const T m = max_of(x, dim);
      if (log) {
        const double lse = std::isinf(m) ? static_cast<double>(m)
                                         : static_cast<double>(m) + std::log(sum_exp(x, dim, m, static_cast<T*>(nullptr)));
        const Shift<T> shift(lse);
        for (index_t c = 0; c < dim; ++c) y[c] = shift.from(x[c]);
      } else {
        const double sum = sum_exp(x, dim, m, y);
        const T scale = static_cast<T>(1.0 / sum);
        for (index_t c = 0; c < dim; ++c) y[c] *= scale;
      }
    }
    return;
  }
  // Softmax along a strided axis: tiles of up to kTile positions of the inner axis, each
  // walked along `dim` with the inner positions as the vector lanes.
  constexpr index_t kTile = 256;
  const index_t tiles = (inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) num_threads(threads_for(outer * dim * inner))
  for (index_t job = 0; job < outer * tiles; ++job) {
    const index_t n = job / tiles, k0 = (job % tiles) * kTile;
    const index_t width = std::min(kTile, inner - k0);
    const T* x = input + n * dim * inner + k0;
    T* y = output + n * dim * inner + k0;
    T m[kTile];
    double sum[kTile];
    for (index_t k = 0; k < width; ++k) m[k] = -std::numeric_limits<T>::infinity(), sum[k] = 0.0;
    for (index_t c = 0; c < dim; ++c)
      for (index_t k = 0; k < width; ++k) m[k] = x[c * inner + k] > m[k] ? x[c * inner + k] : m[k];
    for (index_t c = 0; c < dim; ++c)
      for (index_t k = 0; k < width; ++k) {
        const T e = exp_nonpositive(x[c * inner + k] - m[k]);
        if (!log) y[c * inner + k] = e;
        sum[k] += static_cast<double>(e);
      }
    if (log) {
      for (index_t k = 0; k < width; ++k) {
        const double lse = std::isinf(m[k]) ? static_cast<double>(m[k]) : static_cast<double>(m[k]) + std::log(sum[k]);
        const Shift<T> shift(lse);
        for (index_t c = 0; c < dim; ++c) y[c * inner + k] = shift.from(x[c * inner + k]);
      }
    } else {
      T scale[kTile];
      for (index_t k = 0; k < width; ++k) scale[k] = static_cast<T>(1.0 / sum[k]);
      for (index_t c = 0; c < dim; ++c)
        for (index_t k = 0; k < width; ++k) y[c * inner + k] *= scale[k];
    }
  }
}

template <typename T>
void softmax_backward(const T* output, const T* grad_output, T* grad_input, index_t outer,
                      index_t dim, index_t inner, bool log) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) num_threads(threads_for(outer * dim))
    for (index_t n = 0; n < outer; ++n) {
      const T* y = output + n * dim;
      const T* g = grad_output + n * dim;
      T* gx = grad_input + n * dim;
      double lanes[kLanes] = {};
      index_t c = 0;
      for (; c + kLanes <= dim; c += kLanes)
        for (int k = 0; k < kLanes; ++k)
          lanes[k] += static_cast<double>(log ? g[c + k] : g[c + k] * y[c + k]);
      for (int k = 0; c < dim; ++c, ++k) lanes[k] += static_cast<double>(log ? g[c] : g[c] * y[c]);
      const T s = static_cast<T>(combine(lanes));
      if (log)
        for (index_t j = 0; j < dim; ++j) gx[j] = g[j] - exp_nonpositive(y[j]) * s;
      else
        for (index_t j = 0; j < dim; ++j) gx[j] = y[j] * (g[j] - s);
    }
    return;
  }
  constexpr index_t kTile = 256;
  const index_t tiles = (inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) num_threads(threads_for(outer * dim * inner))
  for (index_t job = 0; job < outer * tiles; ++job) {
    const index_t n = job / tiles, k0 = (job % tiles) * kTile;
    const index_t width = std::min(kTile, inner - k0);
    const index_t base = n * dim * inner + k0;
    const T *y = output + base, *g = grad_output + base;
    T* gx = grad_input + base;
    double sum[kTile];
    for (index_t k = 0; k < width; ++k) sum[k] = 0.0;
    for (index_t c = 0; c < dim; ++c)
      for (index_t k = 0; k < width; ++k)
        sum[k] += static_cast<double>(log ? g[c * inner + k] : g[c * inner + k] * y[c * inner + k]);
    T s[kTile];
    for (index_t k = 0; k < width; ++k) s[k] = static_cast<T>(sum[k]);
    for (index_t c = 0; c < dim; ++c)
      for (index_t k = 0; k < width; ++k) {
        const index_t i = c * inner + k;
        gx[i] = log ? g[i] - exp_nonpositive(y[i]) * s[k] : y[i] * (g[i] - s[k]);
      }
  }
}

// ====================================================================== nll_loss
template <typename T>
LossSums nll_loss_forward(const T* input, const std::int64_t* target, const T* weight, T* loss,
                          index_t outer, index_t classes, index_t inner,
                          std::int64_t ignore_index) {
  const index_t positions = outer * inner;
  const index_t blocks = (positions + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial_loss(blocks), partial_weight(blocks);
#pragma omp parallel for schedule(static) num_threads(threads_for(positions))
  for (index_t b = 0; b < blocks; ++b) {
    const index_t p1 = std::min(positions, (b + 1) * kReduceBlock);
    double sum_loss = 0.0, sum_weight = 0.0;
    for (index_t p = b * kReduceBlock; p < p1; ++p) {
      const std::int64_t t = target[p];
      T value = T(0);
      if (t != ignore_index) {
        const index_t n = p / inner, k = p - n * inner;
        const T w = weight ? weight[t] : T(1);
        value = -w * input[(n * classes + t) * inner + k];
        sum_weight += static_cast<double>(w);
      }
      if (loss) loss[p] = value;
      sum_loss += static_cast<double>(value);
    }
    partial_loss[b] = sum_loss, partial_weight[b] = sum_weight;
  }
  LossSums sums{0.0, 0.0};
  for (index_t b = 0; b < blocks; ++b) sums.loss += partial_loss[b], sums.weight += partial_weight[b];
  return sums;
}

template <typename T>
void nll_loss_backward(const std::int64_t* target, const T* weight, const T* grad,
                       bool grad_is_scalar, T* grad_input, index_t outer, index_t classes,
                       index_t inner, std::int64_t ignore_index) {
  const index_t plane = classes * inner;
#pragma omp parallel num_threads(threads_for(outer * plane))
  {
    // Each thread zeroes its rows in ONE fill: glibc's memset streams a large fill past the
    // cache (no read of the lines it overwrites), where row-sized fills read each line
    // before writing it (nll_loss 16384x1024 forward and backward: 2.8 -> 1.2 ms on one thread).
    const index_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const index_t first = outer * me / threads, last = outer * (me + 1) / threads;
    std::memset(static_cast<void*>(grad_input + first * plane), 0,
                static_cast<std::size_t>((last - first) * plane) * sizeof(T));
    for (index_t n = first; n < last; ++n) {
      T* out = grad_input + n * plane;
      for (index_t k = 0; k < inner; ++k) {
        const index_t p = n * inner + k;
        const std::int64_t t = target[p];
        if (t == ignore_index) continue;
        out[t * inner + k] = -(weight ? weight[t] : T(1)) * grad[grad_is_scalar ? 0 : p];
      }
    }
  }
}

// ====================================================================== element-wise losses
namespace {

// Each loss: value(x, y, w, p) and the derivatives dx, dy (before the upstream gradient).
template <Loss kind, typename T>
struct Term;

template <typename T>
struct Term<Loss::mse, T> {
  static T value(T x, T y, T w, T) { return w * ((x - y) * (x - y)); }
  static T dx(T x, T y, T w, T) { return w * (T(2) * (x - y)); }
  static T dy(T x, T y, T w, T) { return w * (T(-2) * (x - y)); }
};

template <typename T>
struct Term<Loss::l1, T> {
  static T value(T x, T y, T w, T) { return w * std::abs(x - y); }
  static T sign(T d) { return static_cast<T>(d > T(0)) - static_cast<T>(d < T(0)); }
  static T dx(T x, T y, T w, T) { return w * sign(x - y); }
  static T dy(T x, T y, T w, T) { return -w * sign(x - y); }
};

template <typename T>
struct Term<Loss::bce, T> {
  static T value(T x, T y, T w, T) {
    const T log_x = std::max(log_probability(x), T(-100));
    const T log_1mx = std::max(log_probability(T(1) - x), T(-100));
    return -w * (y * log_x + (T(1) - y) * log_1mx);
  }
  // The same value for a target of exactly 0 or 1, with one logarithm instead of two:
  // y log x + (1 - y) log(1 - x) is then one of the two clamped logarithms exactly.
  static T value_hard(T x, T y, T w) {
    return -w * std::max(log_probability(y != T(0) ? x : T(1) - x), T(-100));
  }
  // PyTorch: (x - y) / max((1 - x) x, eps), its eps the float 1e-12 in float64 too
  static T dx(T x, T y, T w, T) { return w * (x - y) / std::max((T(1) - x) * x, T(1e-12f)); }
  static T dy(T x, T, T w, T) { return w * (log_probability(T(1) - x) - log_probability(x)); }
};

#ifdef __AVX512F__
// max(log x, -100) for 16 probabilities in [0, 1]: vgetmantps/vgetexpps split x = m 2^e,
// denormals included, in two instructions where the portable fast_log_nonnegative needs a
// dozen. Arguments below 1e-44 are raised to it: their logarithms (<= -101.3, -inf for 0)
// clamp to -100 either way.
inline __m512 clamped_log_probability16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(1e-44f));
  __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
  __m512 e = _mm512_getexp_ps(x);
  const __mmask16 high = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, high, m, _mm512_set1_ps(0.5f));  // [sqrt(1/2), sqrt(2)]
  e = _mm512_mask_add_ps(e, high, e, _mm512_set1_ps(1.0f));
  return _mm512_max_ps(log_reduced<__m512>(m - 1.0f, e), _mm512_set1_ps(-100.0f));
}
#endif

// Term<bce>::value over a chunk (soft: some target is neither 0 nor 1; otherwise one
// logarithm per element). Float32 with AVX-512 runs 16 lanes at a time (one thread, in
// cache: 1.3 -> 1.0 ns per element with soft targets, 0.64 with hard ones); the tail, other
// builds and float64 take the scalar terms.
template <typename T>
inline void bce_values(const T* x, const T* y, const T* w, T* v, index_t len, bool soft) {
  using Op = Term<Loss::bce, T>;
  index_t k = 0;
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (soft) {
      for (; k + 16 <= len; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k), yv = _mm512_loadu_ps(y + k);
        const __m512 sum = yv * clamped_log_probability16(xv) + (1.0f - yv) * clamped_log_probability16(1.0f - xv);
        _mm512_storeu_ps(v + k, -_mm512_loadu_ps(w + k) * sum);
      }
    } else {
      for (; k + 16 <= len; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
        const __mmask16 one = _mm512_cmp_ps_mask(_mm512_loadu_ps(y + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        const __m512 chosen = _mm512_mask_blend_ps(one, 1.0f - xv, xv);
        _mm512_storeu_ps(v + k, -_mm512_loadu_ps(w + k) * clamped_log_probability16(chosen));
      }
    }
  }
#endif
  if (soft) {
    for (; k < len; ++k) v[k] = Op::value(x[k], y[k], w[k], T(1));
  } else {
    for (; k < len; ++k) v[k] = Op::value_hard(x[k], y[k], w[k]);
  }
}

#ifdef __AVX512F__
// exp(-|x|) for 16 floats, NaN staying NaN: the exponential's 2^n by vscalefps, which
// underflows to 0 by itself (exp(-104) is 0 in float, so -|x| only needs raising to -104,
// which also takes -inf). No exponent-bit arithmetic, no clamps or selects around it.
inline __m512 exp_minus_abs16(__m512 x) {
  const __m512 t = _mm512_max_ps(_mm512_set1_ps(-104.0f), -_mm512_abs_ps(x));  // NaN -> NaN
  const __m512 n = _mm512_roundscale_ps(t * 1.44269504089f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_scalef_ps(exp_reduced<__m512>(t, n), n);  // in [0, 1]
}

// log(sigmoid(x)) = min(x, 0) - log1p(z) for z = exp(-|x|), as log1p_unit: u = 1 + z.
inline __m512 log_sigmoid16(__m512 x, __m512 z, __m512 u) {
  const __m512 c = z - (u - 1.0f);
  const __mmask16 high = _mm512_cmp_ps_mask(u, _mm512_set1_ps(1.41421356237f), _CMP_GT_OQ);
  const __m512 m = _mm512_mask_mul_ps(u, high, u, _mm512_set1_ps(0.5f)) - 1.0f;
  const __m512 e = _mm512_maskz_mov_ps(high, _mm512_set1_ps(1.0f));
  return _mm512_min_ps(x, _mm512_setzero_ps()) - (log_reduced<__m512>(m, e) + c);
}

// Term<bce_with_logits>'s value and dx for 16 floats, sharing z = exp(-|x|) and u = 1 + z:
// one exponential, one logarithm and one division. dx is Term::dx's expression (the
// sigmoid x >= 0 ? 1/u : z/u as z * (1/u)); z differs from exp_nonpositive's only where
// it is a denormal (-|x| < -87.3), which that one flushes to 0.
inline void bce_with_logits16(__m512 x, __m512 y, __m512 w, __m512 p, __m512& value, __m512& dx) {
  const __m512 z = exp_minus_abs16(x), u = 1.0f + z;
  const __m512 log_weight = (p - 1.0f) * y + 1.0f;
  value = w * ((1.0f - y) * x - log_weight * log_sigmoid16(x, z, u));
  const __m512 r = 1.0f / u;
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NGE_UQ);  // x < 0 or NaN
  const __m512 sigmoid = _mm512_mask_mul_ps(r, negative, z, r);
  dx = w * (log_weight * sigmoid - p * y);
}
#endif

template <typename T>
struct Term<Loss::bce_with_logits, T> {
  static T value(T x, T y, T w, T p) {
    const T log_weight = (p - T(1)) * y + T(1);
    return w * ((T(1) - y) * x - log_weight * log_sigmoid(x));
  }
  static T dx(T x, T y, T w, T p) {
    const T log_weight = (p - T(1)) * y + T(1);
    return w * (log_weight * sigmoid(x) - p * y);
  }
  static T dy(T x, T, T w, T p) { return w * (-x - (p - T(1)) * log_sigmoid(x)); }
};

// Term<bce_with_logits>::value over a chunk into v and, with g, dx * gscale into g (one
// pass: the two share their exponential). Float32 with AVX-512 runs 16 lanes at a time,
// the tail, other builds and float64 the scalar terms; backward_loop splits every segment
// the same way (chunks are whole multiples of 16), so g holds its bits.
template <typename T>
inline void bce_with_logits_terms(const T* x, const T* y, const T* w, const T* p, T* v, T* g, T gscale,
                                  index_t len) {
  using Op = Term<Loss::bce_with_logits, T>;
  index_t k = 0;
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    for (; k + 16 <= len; k += 16) {
      __m512 value, dx;
      bce_with_logits16(_mm512_loadu_ps(x + k), _mm512_loadu_ps(y + k), _mm512_loadu_ps(w + k),
                        _mm512_loadu_ps(p + k), value, dx);
      _mm512_storeu_ps(v + k, value);
      if (g) _mm512_storeu_ps(g + k, dx * gscale);
    }
  }
#endif
  for (; k < len; ++k) {
    v[k] = Op::value(x[k], y[k], w[k], p[k]);
    if (g) g[k] = Op::dx(x[k], y[k], w[k], p[k]) * gscale;
  }
}

template <typename T>
struct Term<Loss::kl_div, T> {
  // xlogy(y, y) - y x, with 0 log 0 = 0
  static T value(T x, T y, T, T) { return (y == T(0) ? T(0) : y * log_t(y)) - y * x; }
  static T dx(T, T y, T, T) { return -y; }
  static T dy(T x, T y, T, T) { return log_t(y) + T(1) - x; }
};

template <typename T>
struct Term<Loss::kl_div_log_target, T> {
  static T value(T x, T y, T, T) { return exp_t(y) * (y - x); }
  static T dx(T, T y, T, T) { return -exp_t(y); }
  static T dy(T x, T y, T, T) { return exp_t(y) * (y - x + T(1)); }
};

// Weights of 1 standing in for a missing weight: kReduceBlock of them, so that a block
// never wraps around it.
template <typename T>
const T* ones() {
  static const std::vector<T> values(kReduceBlock, T(1));
  return values.data();
}

// The run of elements [i, end) that stays inside one period of both broadcast operands.
inline index_t segment_end(index_t i, index_t end, index_t period_a, index_t period_b) {
  end = std::min(end, i - i % period_a + period_a);
  return std::min(end, i - i % period_b + period_b);
}

// The sum of an unweighted mse or l1 loss, and with `grad` its gradient gx = dx * gscale:
// one pass, each term added to its lane as it is computed and its gradient written in
// the same loop. The same lanes and order as forward_loop (lane = offset in the block
// mod kLanes; the block's chunks start at multiples of kLanes), so the same bits, and
// gx is backward_loop's expression; but the loads stream without the pauses of separate
// summing and gradient passes (1.6x faster for the sum alone). A large gx is streamed
// (cpu/stream.h) a piece of kStreamBlock elements at a time.
template <Loss kind, bool grad, typename T>
double forward_sum_cheap(const T* __restrict x, const T* __restrict y, index_t n, T* __restrict gx,
                         T gscale) {
  using Op = Term<kind, T>;
  constexpr index_t kPiece = kStreamBlock<T>;
  static_assert(kPiece % kLanes == 0, "pieces hold whole lane groups");
  const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  const bool stream = grad && streams<T>(n);
  std::vector<double> partial(blocks);
  double* partial_sums = partial.data();
#pragma omp parallel for schedule(static) num_threads(threads_for(n))
  for (index_t b = 0; b < blocks; ++b) {
    const index_t begin = b * kReduceBlock, end = std::min(n, begin + kReduceBlock);
    double lanes[kLanes] = {};
    alignas(64) T staged[kPiece];
    // Terms i + j, j in [0, len): len a multiple of kLanes unless it is the block's tail.
    auto terms = [&](index_t i, index_t len, T* __restrict g) {
      index_t j = 0;
      for (; j + kLanes <= len; j += kLanes)
#pragma omp simd
        for (int k = 0; k < kLanes; ++k) {
          const T a = x[i + j + k], t = y[i + j + k];
          lanes[k] += static_cast<double>(Op::value(a, t, T(1), T(1)));
          if constexpr (grad) g[j + k] = Op::dx(a, t, T(1), T(1)) * gscale;
        }
      for (int k = 0; k < kLanes && j < len; ++j, ++k) {  // fewer than kLanes left
        lanes[k] += static_cast<double>(Op::value(x[i + j], y[i + j], T(1), T(1)));
        if constexpr (grad) g[j] = Op::dx(x[i + j], y[i + j], T(1), T(1)) * gscale;
      }
    };
    index_t i = begin;
    if (stream)
      for (; i + kPiece <= end; i += kPiece) {
        terms(i, kPiece, staged);
        stream_copy(gx + i, staged, kPiece);
      }
    terms(i, end - i, grad ? gx + i : nullptr);
    if (stream) stream_fence();
    partial_sums[b] = combine(lanes);
  }
  double total = 0.0;
  for (index_t b = 0; b < blocks; ++b) total += partial_sums[b];
  return total;
}

template <Loss kind, typename T>
double forward_loop(const T* x, const T* y, const T* w, index_t wp, const T* pw, index_t pp,
                    T* loss, index_t n, bool* out_of_range, T* gx, T gscale) {
  using Op = Term<kind, T>;
  if constexpr (kind == Loss::mse || kind == Loss::l1)
    if (!loss && w == ones<T>() && pw == ones<T>())
      return gx ? forward_sum_cheap<kind, true>(x, y, n, gx, gscale)
                : forward_sum_cheap<kind, false>(x, y, n, gx, gscale);
  const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<double> partial(loss ? 0 : blocks);
  double* partial_sums = partial.data();
  int bad = 0;
#pragma omp parallel for schedule(static) num_threads(threads_for(n)) reduction(| : bad)
  for (index_t b = 0; b < blocks; ++b) {
    const index_t end = std::min(n, (b + 1) * kReduceBlock);
    double lanes[kLanes] = {};
    int bad_any = 0;
    T buffer[kChunk];
    for (index_t i = b * kReduceBlock; i < end;) {
      const index_t stop = segment_end(i, end, wp, pp);
      const T* ws = w + i % wp;  // ws[j - i] is the weight of element j in this segment
      const T* ps = pw + i % pp;
      for (index_t j0 = i; j0 < stop; j0 += kChunk) {
        const index_t len = std::min(kChunk, stop - j0);
        const T *xs = x + j0, *ys = y + j0, *wj = ws + (j0 - i), *pj = ps + (j0 - i);
        T* v = loss ? loss + j0 : buffer;
        if constexpr (kind == Loss::bce) {
          // Hard labels (every target of the chunk 0 or 1, the usual case) need one logarithm.
          int soft = 0;
          for (index_t k = 0; k < len; ++k) {
            soft |= (ys[k] != T(0)) & (ys[k] != T(1));
            bad_any |= !(xs[k] >= T(0) && xs[k] <= T(1));
          }
          bce_values(xs, ys, wj, v, len, soft != 0);
        } else if constexpr (kind == Loss::bce_with_logits) {
          bce_with_logits_terms(xs, ys, wj, pj, v, gx ? gx + j0 : nullptr, gscale, len);  // gradient too
        } else {
          for (index_t k = 0; k < len; ++k) v[k] = Op::value(xs[k], ys[k], wj[k], pj[k]);
        }
        if (kind != Loss::bce_with_logits && gx) {  // backward_loop's expression with a scalar grad: the same bits
          T* g = gx + j0;
          for (index_t k = 0; k < len; ++k) g[k] = Op::dx(xs[k], ys[k], wj[k], pj[k]) * gscale;
        }
        if (!loss) accumulate(lanes, v, len);
      }
      i = stop;
    }
    bad |= bad_any;
    if (!loss) partial_sums[b] = combine(lanes);
  }
  if (out_of_range) *out_of_range = bad != 0;
  double total = 0.0;
  if (!loss)
    for (index_t b = 0; b < blocks; ++b) total += partial_sums[b];
  return total;
}

template <Loss kind, typename T, bool scalar_grad>
void backward_loop(const T* x, const T* y, const T* w, index_t wp, const T* pw, index_t pp,
                   const T* grad, T* gx, T* gy, index_t n) {
  using Op = Term<kind, T>;
  const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
#pragma omp parallel for schedule(static) num_threads(threads_for(n))
  for (index_t b = 0; b < blocks; ++b) {
    const index_t end = std::min(n, (b + 1) * kReduceBlock);
    for (index_t i = b * kReduceBlock; i < end;) {
      const index_t stop = segment_end(i, end, wp, pp);
      const T* ws = w + i % wp;
      const T* ps = pw + i % pp;
      index_t j = i;
#ifdef __AVX512F__
      if constexpr (kind == Loss::bce_with_logits && std::is_same_v<T, float>)
        if (gx)  // bce_with_logits_terms' split of the segment: 16 lanes, then the scalar tail
          for (; j + 16 <= stop; j += 16) {
            __m512 value, dx;
            bce_with_logits16(_mm512_loadu_ps(x + j), _mm512_loadu_ps(y + j), _mm512_loadu_ps(ws + (j - i)),
                              _mm512_loadu_ps(ps + (j - i)), value, dx);
            const __m512 g = scalar_grad ? _mm512_set1_ps(grad[0]) : _mm512_loadu_ps(grad + j);
            _mm512_storeu_ps(gx + j, dx * g);
          }
#endif
      if (gx)
        for (; j < stop; ++j)
          gx[j] = Op::dx(x[j], y[j], ws[j - i], ps[j - i]) * grad[scalar_grad ? 0 : j];
      if (gy)
        for (index_t j = i; j < stop; ++j)
          gy[j] = Op::dy(x[j], y[j], ws[j - i], ps[j - i]) * grad[scalar_grad ? 0 : j];
      i = stop;
    }
  }
}

template <typename T>
struct Operands {
  const T *w, *p;
  index_t wp, pp;
  Operands(Broadcast weight, Broadcast pos_weight)
      : w(weight.data ? static_cast<const T*>(weight.data) : ones<T>()),
        p(pos_weight.data ? static_cast<const T*>(pos_weight.data) : ones<T>()),
        wp(weight.data ? weight.period : kReduceBlock),
        pp(pos_weight.data ? pos_weight.period : kReduceBlock) {}
};

}  // namespace

template <typename T>
double elementwise_loss_forward(Loss kind, const T* input, const T* target, Broadcast weight,
                                Broadcast pos_weight, T* loss, index_t n, bool* out_of_range,
                                T* grad_input, T grad_scale) {
  const Operands<T> o(weight, pos_weight);
  if (out_of_range) *out_of_range = false;
  const auto run = [&](auto kind_constant, bool* range) {
    return forward_loop<decltype(kind_constant)::value>(input, target, o.w, o.wp, o.p, o.pp, loss, n, range,
                                                        grad_input, grad_scale);
  };
  switch (kind) {
    case Loss::mse: return run(std::integral_constant<Loss, Loss::mse>{}, nullptr);
    case Loss::l1: return run(std::integral_constant<Loss, Loss::l1>{}, nullptr);
    case Loss::bce: return run(std::integral_constant<Loss, Loss::bce>{}, out_of_range);
    case Loss::bce_with_logits: return run(std::integral_constant<Loss, Loss::bce_with_logits>{}, nullptr);
    case Loss::kl_div: return run(std::integral_constant<Loss, Loss::kl_div>{}, nullptr);
    case Loss::kl_div_log_target: return run(std::integral_constant<Loss, Loss::kl_div_log_target>{}, nullptr);
  }
  return 0.0;
}

namespace {
template <Loss kind, typename T>
void backward_dispatch(const T* x, const T* y, const Operands<T>& o, const T* grad,
                       bool grad_is_scalar, T* gx, T* gy, index_t n) {
  if (grad_is_scalar) backward_loop<kind, T, true>(x, y, o.w, o.wp, o.p, o.pp, grad, gx, gy, n);
  else backward_loop<kind, T, false>(x, y, o.w, o.wp, o.p, o.pp, grad, gx, gy, n);
}
}  // namespace

template <typename T>
void elementwise_loss_backward(Loss kind, const T* input, const T* target, Broadcast weight,
                               Broadcast pos_weight, const T* grad, bool grad_is_scalar,
                               T* grad_input, T* grad_target, index_t n) {
  const Operands<T> o(weight, pos_weight);
  switch (kind) {
    case Loss::mse: return backward_dispatch<Loss::mse>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
    case Loss::l1: return backward_dispatch<Loss::l1>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
    case Loss::bce: return backward_dispatch<Loss::bce>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
    case Loss::bce_with_logits: return backward_dispatch<Loss::bce_with_logits>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
    case Loss::kl_div: return backward_dispatch<Loss::kl_div>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
    case Loss::kl_div_log_target: return backward_dispatch<Loss::kl_div_log_target>(input, target, o, grad, grad_is_scalar, grad_input, grad_target, n);
  }
}

// ====================================================================== instantiations
#define FASTDL_LOSS_INSTANTIATE(T)                                                                   \
  template void cross_entropy_forward<T>(const T*, const std::int64_t*, const T*, T*, T*, double*,  \
                                         index_t, index_t, std::int64_t);                           \
  template void cross_entropy_backward<T>(const T*, const std::int64_t*, const T*, const double*,   \
                                          const T*, const T*, T*, index_t, index_t, std::int64_t);  \
  template double cross_entropy_probabilities_forward<T>(const T*, const T*, const T*, T*, double*, \
                                                         index_t, index_t, double);                 \
  template void cross_entropy_probabilities_backward<T>(const T*, const T*, const T*,              \
                                                        const double*, const T*, bool, T*, index_t, \
                                                        index_t, double);                           \
  template void softmax_forward<T>(const T*, T*, index_t, index_t, index_t, bool);                  \
  template void softmax_backward<T>(const T*, const T*, T*, index_t, index_t, index_t, bool);       \
  template LossSums nll_loss_forward<T>(const T*, const std::int64_t*, const T*, T*, index_t,       \
                                        index_t, index_t, std::int64_t);                            \
  template void nll_loss_backward<T>(const std::int64_t*, const T*, const T*, bool, T*, index_t,    \
                                     index_t, index_t, std::int64_t);                               \
  template double elementwise_loss_forward<T>(Loss, const T*, const T*, Broadcast, Broadcast, T*,   \
                                              index_t, bool*, T*, T);                               \
  template void elementwise_loss_backward<T>(Loss, const T*, const T*, Broadcast, Broadcast,       \
                                             const T*, bool, T*, T*, index_t);

FASTDL_LOSS_INSTANTIATE(float)
FASTDL_LOSS_INSTANTIATE(double)
#undef FASTDL_LOSS_INSTANTIATE

}  // namespace fastdl::cpu
