// Dropout (https://pytorch.org/docs/stable/generated/torch.nn.functional.dropout.html).
//
// Counter-based random numbers: element i keeps its value when splitmix64's output for
// counter i under `seed` is at least p * 2^64. The mask is a pure function of (seed, i):
// any thread can produce any slice of it, the thread count cannot change it, and the
// backward pass recomputes it instead of storing and reading a mask.
#include <cstdint>

#include "cpu/norm.h"
#include "cpu/stream.h"

namespace fastdl::cpu {

namespace {

// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014): the i-th output of the generator started at `seed`.
inline std::uint64_t splitmix64(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Elements whose random word is below the threshold are dropped: P(drop) = p.
inline std::uint64_t drop_threshold(double p) {
  return p <= 0 ? 0 : static_cast<std::uint64_t>(p * 18446744073709551616.0);  // p * 2^64, p < 1
}

template <typename T>
void apply_mask(const T* in, T* out, index_t n, std::uint64_t seed, double p) {
  const std::uint64_t threshold = drop_threshold(p);
  const T scale = T(1) / static_cast<T>(1.0 - p);  // as torch: the mask divided by (1 - p)
  map_elements(out, n, Stores::plain, [=](index_t i) {
    const bool keep = splitmix64(seed, static_cast<std::uint64_t>(i)) >= threshold;
    return in[i] * (keep ? scale : T(0));  // a multiply, as torch: NaN * 0 stays NaN
  });
}

}  // namespace

template <typename T>
void dropout_forward(const T* input, T* output, index_t n, std::uint64_t seed, double p) {
  apply_mask(input, output, n, seed, p);
}

template <typename T>
void dropout_backward(const T* grad_output, T* grad_input, index_t n, std::uint64_t seed,
                      double p) {
  apply_mask(grad_output, grad_input, n, seed, p);
}

template void dropout_forward<float>(const float*, float*, index_t, std::uint64_t, double);
template void dropout_forward<double>(const double*, double*, index_t, std::uint64_t, double);
template void dropout_backward<float>(const float*, float*, index_t, std::uint64_t, double);
template void dropout_backward<double>(const double*, double*, index_t, std::uint64_t, double);

}  // namespace fastdl::cpu
