// Pooling on the GPU (twins of csrc/cpu/pool.cpp; formulas in kernels.h and pool.h).
// Forward: one thread per OUTPUT element scans its window. Backward: one thread per INPUT
// element GATHERS from the output windows that hold it (no atomics, so every gradient is
// summed in a fixed order and written once: grad_input is written, as the CPU twin).
#include <cmath>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

// ------------------------------------------------------------------ max_pool2d
// PyTorch's scan order: the first maximum wins and every NaN is taken.
template <typename T>
__global__ void max_pool2d_forward_kernel(const T* input, T* output, std::int64_t* indices,
                                          const Pool2dShape s) {
  const index_t OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(o, s.planes * OHW) {
    const index_t p = o / OHW, y = (o % OHW) / s.out_w, x = o % s.out_w;
    const T* in = input + p * s.height * s.width;
    const index_t y0 = y * s.stride_h - s.pad_h, x0 = x * s.stride_w - s.pad_w;
    T best = -INFINITY;
    index_t best_index = -1;
    for (index_t i = 0; i < s.kernel_h; ++i) {
      const index_t iy = y0 + i * s.dilation_h;
      if (iy < 0 || iy >= s.height) continue;
      for (index_t j = 0; j < s.kernel_w; ++j) {
        const index_t ix = x0 + j * s.dilation_w;
        if (ix < 0 || ix >= s.width) continue;
        const T v = in[iy * s.width + ix];
        if (best_index < 0 || v > best || v != v) {
          best = v;
          best_index = iy * s.width + ix;
        }
      }
    }
    output[o] = best;
    indices[o] = best_index;
  }
}

// Output positions along one axis whose window (kernel k, stride st, padding pad, dilation d)
// reads input position i: o = (i + pad - t*d) / st for kernel offsets t where that divides.
template <typename T>
__global__ void max_pool2d_backward_kernel(const T* grad_output, const std::int64_t* indices,
                                           T* grad_input, const Pool2dShape s) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(e, s.planes * HW) {
    const index_t p = e / HW, flat = e % HW, iy = flat / s.width, ix = flat % s.width;
    const T* gy = grad_output + p * OHW;
    const std::int64_t* idx = indices + p * OHW;
    T sum = T(0);
    for (index_t i = 0; i < s.kernel_h; ++i) {
      const index_t ty = iy + s.pad_h - i * s.dilation_h;
      if (ty < 0) break;
      if (ty % s.stride_h) continue;
      const index_t y = ty / s.stride_h;
      if (y >= s.out_h) continue;
      for (index_t j = 0; j < s.kernel_w; ++j) {
        const index_t tx = ix + s.pad_w - j * s.dilation_w;
        if (tx < 0) break;
        if (tx % s.stride_w) continue;
        const index_t x = tx / s.stride_w;
        if (x >= s.out_w) continue;
        if (idx[y * s.out_w + x] == flat) sum += gy[y * s.out_w + x];
      }
    }
    grad_input[e] = sum;
  }
}

// ------------------------------------------------------------------ avg_pool2d
struct AvgWindow {
  index_t lo, hi, factor;  // clipped [lo, hi) and this axis' factor of the divisor
};

__device__ AvgWindow avg_window(index_t o, index_t size, index_t kernel, index_t stride,
                                index_t pad, bool count_include_pad) {
  const index_t start = o * stride - pad;
  const index_t end = min(start + kernel, size + pad);
  const index_t lo = max(start, index_t(0)), hi = min(end, size);
  return {lo, max(lo, hi), count_include_pad ? end - start : max(hi - lo, index_t(0))};
}

template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* input, T* output, const AvgPool2dShape s) {
  const index_t OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(o, s.planes * OHW) {
    const index_t p = o / OHW, y = (o % OHW) / s.out_w, x = o % s.out_w;
    const AvgWindow r = avg_window(y, s.height, s.kernel_h, s.stride_h, s.pad_h, s.count_include_pad);
    const AvgWindow c = avg_window(x, s.width, s.kernel_w, s.stride_w, s.pad_w, s.count_include_pad);
    if (r.lo >= r.hi || c.lo >= c.hi) {  // no input element: 0 (PyTorch's rule)
      output[o] = T(0);
      continue;
    }
    const T* in = input + p * s.height * s.width;
    double sum = 0.0;
    for (index_t iy = r.lo; iy < r.hi; ++iy)
      for (index_t ix = c.lo; ix < c.hi; ++ix) sum += static_cast<double>(in[iy * s.width + ix]);
    const double divisor = s.divisor_override ? static_cast<double>(s.divisor_override)
                                              : static_cast<double>(r.factor * c.factor);
    output[o] = static_cast<T>(sum / divisor);
  }
}

// First output index o >= 0 whose window [o*stride - pad, ... + kernel) can reach i.
__device__ index_t first_window(index_t i, index_t kernel, index_t stride, index_t pad) {
  const index_t t = i + pad - kernel + 1;
  return t <= 0 ? 0 : (t + stride - 1) / stride;
}

template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* grad_output, T* grad_input,
                                           const AvgPool2dShape s) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(e, s.planes * HW) {
    const index_t p = e / HW, iy = (e % HW) / s.width, ix = e % s.width;
    const T* gy = grad_output + p * OHW;
    const index_t y_end = min(s.out_h, (iy + s.pad_h) / s.stride_h + 1);
    const index_t x_end = min(s.out_w, (ix + s.pad_w) / s.stride_w + 1);
    double sum = 0.0;
    for (index_t y = first_window(iy, s.kernel_h, s.stride_h, s.pad_h); y < y_end; ++y) {
      const AvgWindow r = avg_window(y, s.height, s.kernel_h, s.stride_h, s.pad_h, s.count_include_pad);
      if (iy < r.lo || iy >= r.hi) continue;
      for (index_t x = first_window(ix, s.kernel_w, s.stride_w, s.pad_w); x < x_end; ++x) {
        const AvgWindow c = avg_window(x, s.width, s.kernel_w, s.stride_w, s.pad_w, s.count_include_pad);
        if (ix < c.lo || ix >= c.hi) continue;
        const double divisor = s.divisor_override ? static_cast<double>(s.divisor_override)
                                                  : static_cast<double>(r.factor * c.factor);
        sum += static_cast<double>(gy[y * s.out_w + x]) / divisor;
      }
    }
    grad_input[e] = static_cast<T>(sum);
  }
}

// ------------------------------------------------------------------ adaptive_avg_pool2d
// Window of output o along an axis: [floor(o*size/out), ceil((o+1)*size/out)).
__device__ index_t adaptive_start(index_t o, index_t size, index_t out) { return o * size / out; }
__device__ index_t adaptive_end(index_t o, index_t size, index_t out) {
  return ((o + 1) * size + out - 1) / out;
}

template <typename T>
__global__ void adaptive_avg_pool2d_forward_kernel(const T* input, T* output,
                                                   const AdaptivePool2dShape s) {
  const index_t OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(o, s.planes * OHW) {
    const index_t p = o / OHW, y = (o % OHW) / s.out_w, x = o % s.out_w;
    const index_t r0 = adaptive_start(y, s.height, s.out_h), r1 = adaptive_end(y, s.height, s.out_h);
    const index_t c0 = adaptive_start(x, s.width, s.out_w), c1 = adaptive_end(x, s.width, s.out_w);
    const T* in = input + p * s.height * s.width;
    double sum = 0.0;
    for (index_t iy = r0; iy < r1; ++iy)
      for (index_t ix = c0; ix < c1; ++ix) sum += static_cast<double>(in[iy * s.width + ix]);
    output[o] = static_cast<T>(sum / static_cast<double>(r1 - r0) / static_cast<double>(c1 - c0));
  }
}

template <typename T>
__global__ void adaptive_avg_pool2d_backward_kernel(const T* grad_output, T* grad_input,
                                                    const AdaptivePool2dShape s) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
  FASTDL_GRID_LOOP(e, s.planes * HW) {
    const index_t p = e / HW, iy = (e % HW) / s.width, ix = e % s.width;
    const T* gy = grad_output + p * OHW;
    // Every window holding iy lies in this range of outputs (checked one by one below).
    const index_t y_lo = max(index_t(0), iy * s.out_h / s.height - 1);
    const index_t y_hi = min(s.out_h, (iy + 1) * s.out_h / s.height + 2);
    const index_t x_lo = max(index_t(0), ix * s.out_w / s.width - 1);
    const index_t x_hi = min(s.out_w, (ix + 1) * s.out_w / s.width + 2);
    double sum = 0.0;
    for (index_t y = y_lo; y < y_hi; ++y) {
      const index_t r0 = adaptive_start(y, s.height, s.out_h), r1 = adaptive_end(y, s.height, s.out_h);
      if (iy < r0 || iy >= r1) continue;
      for (index_t x = x_lo; x < x_hi; ++x) {
        const index_t c0 = adaptive_start(x, s.width, s.out_w), c1 = adaptive_end(x, s.width, s.out_w);
        if (ix < c0 || ix >= c1) continue;
        sum += static_cast<double>(gy[y * s.out_w + x]) / static_cast<double>(r1 - r0) /
               static_cast<double>(c1 - c0);
      }
    }
    grad_input[e] = static_cast<T>(sum);
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const T* input, T* output, std::int64_t* indices, const Pool2dShape& s) {
  const index_t n = s.planes * s.out_h * s.out_w;
  if (n <= 0) return;
  max_pool2d_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, indices, s);
  FASTDL_CUDA_LAUNCHED("max_pool2d_forward");
}

template <typename T>
void max_pool2d_backward(const T* grad_output, const std::int64_t* indices, T* grad_input,
                         const Pool2dShape& s) {
  const index_t n = s.planes * s.height * s.width;
  if (n <= 0) return;
  max_pool2d_backward_kernel<T><<<blocks_for(n), kThreads>>>(grad_output, indices, grad_input, s);
  FASTDL_CUDA_LAUNCHED("max_pool2d_backward");
}

template <typename T>
void avg_pool2d_forward(const T* input, T* output, const AvgPool2dShape& s) {
  const index_t n = s.planes * s.out_h * s.out_w;
  if (n <= 0) return;
  avg_pool2d_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, s);
  FASTDL_CUDA_LAUNCHED("avg_pool2d_forward");
}

template <typename T>
void avg_pool2d_backward(const T* grad_output, T* grad_input, const AvgPool2dShape& s) {
  const index_t n = s.planes * s.height * s.width;
  if (n <= 0) return;
  avg_pool2d_backward_kernel<T><<<blocks_for(n), kThreads>>>(grad_output, grad_input, s);
  FASTDL_CUDA_LAUNCHED("avg_pool2d_backward");
}

template <typename T>
void adaptive_avg_pool2d_forward(const T* input, T* output, const AdaptivePool2dShape& s) {
  const index_t n = s.planes * s.out_h * s.out_w;
  if (n <= 0) return;
  adaptive_avg_pool2d_forward_kernel<T><<<blocks_for(n), kThreads>>>(input, output, s);
  FASTDL_CUDA_LAUNCHED("adaptive_avg_pool2d_forward");
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* grad_output, T* grad_input,
                                  const AdaptivePool2dShape& s) {
  const index_t n = s.planes * s.height * s.width;
  if (n <= 0) return;
  adaptive_avg_pool2d_backward_kernel<T><<<blocks_for(n), kThreads>>>(grad_output, grad_input, s);
  FASTDL_CUDA_LAUNCHED("adaptive_avg_pool2d_backward");
}

#define FASTDL_INSTANTIATE(T)                                                                   \
  template void max_pool2d_forward<T>(const T*, T*, std::int64_t*, const Pool2dShape&);         \
  template void max_pool2d_backward<T>(const T*, const std::int64_t*, T*, const Pool2dShape&);  \
  template void avg_pool2d_forward<T>(const T*, T*, const AvgPool2dShape&);                     \
  template void avg_pool2d_backward<T>(const T*, T*, const AvgPool2dShape&);                    \
  template void adaptive_avg_pool2d_forward<T>(const T*, T*, const AdaptivePool2dShape&);       \
  template void adaptive_avg_pool2d_backward<T>(const T*, T*, const AdaptivePool2dShape&);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
