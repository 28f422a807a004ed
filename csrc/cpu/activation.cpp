// Element-wise activations (https://pytorch.org/docs/stable/generated/torch.nn.ReLU.html).
// Plain loops the compiler vectorizes for the -march it builds for, run by map_elements
// (cpu/stream.h), which streams large outputs.
#include <cmath>
#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/norm.h"
#include "cpu/stream.h"

namespace fastdl::cpu {

template <typename T>
void relu_forward(const T* input, T* output, index_t n) {
  map_elements(output, n, Stores::streamed_if_large, [=](index_t k) {
    const T v = input[k];
    return v < T(0) ? T(0) : v;  // NaN < 0 is false: NaN passes through
  });
}

template <typename T>
void relu_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  map_elements(grad_input, n, Stores::streamed_if_large,
               [=](index_t k) {
    const T g = grad_output[k];  // read unconditionally: no masked load
    return output[k] <= T(0) ? T(0) : g;
  });
}

// ---------------------------------------------------------------- exp for sigmoid and tanh
// std::exp does not vectorize without -ffast-math, so sigmoid and tanh use their own
// exp, written so the compiler vectorizes it: Cody-Waite reduction y = n ln2 + r with
// |r| <= ln2/2, then expm1(r) as its Taylor polynomial (truncation below half an ulp:
// 7 terms in float, 13 in double), then scaling by 2^n built from exponent bits.
// Only y <= 0 (or NaN) is ever needed. About 1 ulp, like the libm's.
namespace {

template <typename T>
struct ExpTraits;

template <>
struct ExpTraits<float> {
  using Bits = std::int32_t;
  using UBits = std::uint32_t;
  static constexpr int kMantissaBits = 23, kBias = 127, kTerms = 7;
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693359375f;  // 9 bits: n * kLn2Hi is exact
  static constexpr float kLn2Lo = -2.12194440054690583e-4f;
  static constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kUnderflow = -110.0f;    // exp(-110) rounds to 0
};

template <>
struct ExpTraits<double> {
  using Bits = std::int64_t;
  using UBits = std::uint64_t;
  static constexpr int kMantissaBits = 52, kBias = 1023, kTerms = 13;
  static constexpr double kLog2e = 1.4426950408889634074;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;  // low 32 bits zero
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kUnderflow = -760.0;            // exp(-760) rounds to 0
};

// 2^k for k in the normal exponent range.
template <typename T>
inline T pow2(typename ExpTraits<T>::Bits k) {
  using E = ExpTraits<T>;
  return __builtin_bit_cast(T, static_cast<typename E::UBits>(k + E::kBias) << E::kMantissaBits);
}

// Splits y (clamped to >= lowest) as exp(y) = 2^n * (1 + m); returns m = expm1(r).
template <typename T>
inline T expm1_reduced(T y, T lowest, typename ExpTraits<T>::Bits& n) {
  using E = ExpTraits<T>;
  y = y < lowest ? lowest : y;  // NaN stays NaN
  const T shifted = y * E::kLog2e + E::kShifter;
  const T nf = shifted - E::kShifter;
  n = __builtin_bit_cast(typename E::Bits, shifted) -
      __builtin_bit_cast(typename E::Bits, E::kShifter);
  T r = y - nf * E::kLn2Hi;
  r = r - nf * E::kLn2Lo;
  // m = r + r^2 (1/2! + r/3! + ... + r^(K-2)/K!), Horner from the highest term.
  double factorial = 1;
  for (int k = 2; k <= E::kTerms; ++k) factorial *= k;
  T q = static_cast<T>(1.0 / factorial);
  for (int k = E::kTerms - 1; k >= 2; --k) {
    factorial /= (k + 1);
    q = q * r + static_cast<T>(1.0 / factorial);
  }
  return r + r * r * q;
}

// exp(y) for y <= 0, down to the subnormals: 2^n is applied in two halves so that
// neither factor leaves the normal range.
template <typename T>
inline T exp_nonpositive(T y) {
  typename ExpTraits<T>::Bits n;
  const T m = expm1_reduced(y, ExpTraits<T>::kUnderflow, n);
  const typename ExpTraits<T>::Bits half = n / 2;
  return (T(1) + m) * pow2<T>(half) * pow2<T>(n - half);
}

// expm1(y) for y <= 0; below -40 it is -1 to double precision, so y is clamped there
// and 2^n stays normal.
template <typename T>
inline T expm1_nonpositive(T y) {
  typename ExpTraits<T>::Bits n;
  const T m = expm1_reduced(y, T(-40), n);
  const T scale = pow2<T>(n);
  return scale * m + (scale - T(1));
}

}  // namespace

// ---------------------------------------------------------------- sigmoid
template <typename T>
void sigmoid_forward(const T* input, T* output, index_t n) {
  map_elements(output, n, Stores::plain, [=](index_t k) {
    const T x = input[k];
    const T e = exp_nonpositive(-std::abs(x));  // exp(-|x|) in (0, 1]: never overflows
    const T numerator = x >= T(0) ? T(1) : e;   // sigmoid(-|x|) = e / (1 + e)
    return numerator / (T(1) + e);
  });
}

template <typename T>
void sigmoid_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  map_elements(grad_input, n, Stores::streamed_if_large,
               [=](index_t k) { return grad_output[k] * (T(1) - output[k]) * output[k]; });
}

// ---------------------------------------------------------------- tanh
template <typename T>
void tanh_forward(const T* input, T* output, index_t n) {
  map_elements(output, n, Stores::plain, [=](index_t k) {
    const T x = input[k];
    const T m = expm1_nonpositive(T(-2) * std::abs(x));  // in (-1, 0]
    return std::copysign(-m / (T(2) + m), x);
  });
}

template <typename T>
void tanh_backward(const T* output, const T* grad_output, T* grad_input, index_t n) {
  map_elements(grad_input, n, Stores::streamed_if_large,
               [=](index_t k) { return grad_output[k] * (T(1) - output[k] * output[k]); });
}

// ---------------------------------------------------------------- leaky_relu
template <typename T>
void leaky_relu_forward(const T* input, T* output, index_t n, double negative_slope) {
  const T slope = static_cast<T>(negative_slope);
  map_elements(output, n, Stores::streamed_if_large, [=](index_t k) {
    const T x = input[k];
    return x > T(0) ? x : x * slope;  // NaN * slope stays NaN
  });
}

template <typename T>
void leaky_relu_backward(const T* input, const T* grad_output, T* grad_input, index_t n,
                         double negative_slope) {
  const T slope = static_cast<T>(negative_slope);
  map_elements(grad_input, n, Stores::streamed_if_large, [=](index_t k) {
    return input[k] > T(0) ? grad_output[k] : grad_output[k] * slope;
  });
}

template void relu_forward<float>(const float*, float*, index_t);
template void relu_forward<double>(const double*, double*, index_t);
template void relu_backward<float>(const float*, const float*, float*, index_t);
template void relu_backward<double>(const double*, const double*, double*, index_t);


#define FASTDL_INSTANTIATE(T)                                                          \
  template void sigmoid_forward<T>(const T*, T*, index_t);                             \
  template void sigmoid_backward<T>(const T*, const T*, T*, index_t);                  \
  template void tanh_forward<T>(const T*, T*, index_t);                                \
  template void tanh_backward<T>(const T*, const T*, T*, index_t);                     \
  template void leaky_relu_forward<T>(const T*, T*, index_t, double);                  \
  template void leaky_relu_backward<T>(const T*, const T*, T*, index_t, double);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cpu
