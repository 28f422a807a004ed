// Max pooling (https://pytorch.org/docs/stable/generated/torch.nn.functional.max_pool2d.html).
// One thread owns whole (n, c) planes, so the backward scatter-add needs no atomics
// and sums in a fixed order.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/kernels.h"

namespace fastdl::cpu {

template <typename T>
void max_pool2d_forward(const T* input, T* output, std::int64_t* indices, const Pool2dShape& s) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * OHW * s.kernel_h * s.kernel_w))
  for (index_t p = 0; p < s.planes; ++p) {
    const T* in = input + p * HW;
    T* out = output + p * OHW;
    std::int64_t* idx = indices + p * OHW;
    for (index_t y = 0; y < s.out_h; ++y) {
      const index_t y0 = y * s.stride_h - s.pad_h;
      for (index_t x = 0; x < s.out_w; ++x) {
        const index_t x0 = x * s.stride_w - s.pad_w;
        T best = -std::numeric_limits<T>::infinity();
        index_t best_index = -1;
        for (index_t i = 0; i < s.kernel_h; ++i) {
          const index_t iy = y0 + i * s.dilation_h;
          if (iy < 0 || iy >= s.height) continue;
          for (index_t j = 0; j < s.kernel_w; ++j) {
            const index_t ix = x0 + j * s.dilation_w;
            if (ix < 0 || ix >= s.width) continue;
            const T v = in[iy * s.width + ix];
            // First maximum wins; every NaN is taken (so the last NaN), as in PyTorch.
            if (best_index < 0 || v > best || std::isnan(v)) {
              best = v;
              best_index = iy * s.width + ix;
            }
          }
        }
        out[y * s.out_w + x] = best;
        idx[y * s.out_w + x] = best_index;
      }
    }
  }
}

template <typename T>
void max_pool2d_backward(const T* grad_output, const std::int64_t* indices, T* grad_input,
                         const Pool2dShape& s) {
  const index_t HW = s.height * s.width, OHW = s.out_h * s.out_w;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.planes * (HW + OHW)))
  for (index_t p = 0; p < s.planes; ++p) {
    T* gin = grad_input + p * HW;
    const T* gout = grad_output + p * OHW;
    const std::int64_t* idx = indices + p * OHW;
    std::fill(gin, gin + HW, T(0));
    for (index_t q = 0; q < OHW; ++q) {
      // Indices come from the forward pass; the binding re-checks those it is handed.
      if (idx[q] >= 0) gin[idx[q]] += gout[q];
    }
  }
}

template void max_pool2d_forward<float>(const float*, float*, std::int64_t*, const Pool2dShape&);
template void max_pool2d_forward<double>(const double*, double*, std::int64_t*, const Pool2dShape&);
template void max_pool2d_backward<float>(const float*, const std::int64_t*, float*, const Pool2dShape&);
template void max_pool2d_backward<double>(const double*, const std::int64_t*, double*, const Pool2dShape&);

}  // namespace fastdl::cpu
