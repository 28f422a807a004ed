// Dropout on the GPU (twin of csrc/cpu/dropout.cpp; formula in csrc/cpu/norm.h).
//
// The same counter-based mask: element i is kept when splitmix64(seed, i) >= p * 2^64, and
// kept values are multiplied by the same T(1) / T(1 - p), computed once on the host as the
// CPU kernel does. The seed comes from fastdl's host generator (one draw per call, as on
// the CPU), so a seed gives bit for bit the CPU's mask and values, on any GPU; the backward
// regenerates the mask instead of storing it.
#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

// splitmix64 (Steele, Lea and Flood, OOPSLA 2014): the i-th output of the generator
// started at `seed`; identical integer arithmetic to the CPU kernel's.
__device__ __forceinline__ std::uint64_t splitmix64(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void dropout_mask_kernel(const T* in, T* out, index_t n, std::uint64_t seed,
                                    std::uint64_t threshold, T scale) {
  FASTDL_GRID_LOOP(i, n) {
    const bool keep = splitmix64(seed, static_cast<std::uint64_t>(i)) >= threshold;
    out[i] = in[i] * (keep ? scale : T(0));  // a multiply, as torch: NaN * 0 stays NaN
  }
}

template <typename T>
void apply_mask(const T* in, T* out, index_t n, std::uint64_t seed, double p, const char* name) {
  if (n <= 0) return;
  // As the CPU kernel: drop below p * 2^64 (p < 1, checked by the binding).
  const std::uint64_t threshold = p <= 0 ? 0 : static_cast<std::uint64_t>(p * 18446744073709551616.0);
  const T scale = T(1) / static_cast<T>(1.0 - p);
  dropout_mask_kernel<T><<<blocks_for(n), kThreads>>>(in, out, n, seed, threshold, scale);
  check_status(cudaGetLastError(), name, __FILE__, __LINE__);
}

}  // namespace

template <typename T>
void dropout_forward(const T* input, T* output, index_t n, std::uint64_t seed, double p) {
  apply_mask(input, output, n, seed, p, "kernel dropout_forward");
}

template <typename T>
void dropout_backward(const T* grad_output, T* grad_input, index_t n, std::uint64_t seed,
                      double p) {
  apply_mask(grad_output, grad_input, n, seed, p, "kernel dropout_backward");
}

template void dropout_forward<float>(const float*, float*, index_t, std::uint64_t, double);
template void dropout_forward<double>(const double*, double*, index_t, std::uint64_t, double);
template void dropout_backward<float>(const float*, float*, index_t, std::uint64_t, double);
template void dropout_backward<double>(const double*, double*, index_t, std::uint64_t, double);

}  // namespace fastdl::cuda
