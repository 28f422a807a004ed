// 2-D convolution by im2col + GEMM (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html).
//
// Batches of 4 or more samples run sample-parallel: each OpenMP thread unfolds one sample
// into its own cache-sized col (R x OH*OW, R = C*KH*KW) and calls the single-threaded BLAS
//   forward          out[n] (O x OHW)   = W (O x R/G) @ col          (straight into NCHW)
//   grad of input    dcol (R x OHW)     = W^T @ dY[n]                 (then folded back, col2im)
//   grad of weight   partial[group]    += dY[n] @ col^T               (summed over fixed groups)
// Smaller batches unfold a chunk of samples into one col (R x nb*OH*OW) and run ONE large
// GEMM per product, threaded by fastdl's tiled gemm (see runtime.cpp).
// Every split — sample groups, chunks, GEMM tiles — depends on the shapes only, never on
// the thread count, so results are bitwise reproducible on any number of threads.
#include <algorithm>
#include <cstring>

#include "cpu/kernels.h"

namespace fastdl::cpu {
namespace {

// Elements of one unfolded chunk; bounds the workspace (64 MiB in float32).
constexpr index_t kColumnBudget = index_t(1) << 24;

index_t ceil_div(index_t a, index_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Columns ox whose input x = ox*stride - pad + offset lies in [0, width): [lo, hi).
void valid_range(index_t offset, index_t pad, index_t stride, index_t width, index_t out_w,
                 index_t& lo, index_t& hi) {
  lo = std::clamp<index_t>(ceil_div(pad - offset, stride), 0, out_w);
  hi = std::clamp<index_t>(ceil_div(width + pad - offset, stride), lo, out_w);
}

// col[(c*KH + i)*KW + j, n*OH*OW + y*OW + x] = in[n0+n, c, y*sh - ph + i*dh, x*sw - pw + j*dw]
template <typename T>
void im2col(const T* input, T* col, index_t n0, index_t nb, const Conv2dShape& s) {
  const index_t C = s.in_channels, H = s.height, W = s.width;
  const index_t OH = s.out_h, OW = s.out_w, OHW = OH * OW, L = nb * OHW;
  const index_t KK = s.kernel_h * s.kernel_w;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(nb * C * KK * OHW))
  for (index_t n = 0; n < nb; ++n) {
    for (index_t c = 0; c < C; ++c) {
      const T* plane = input + ((n0 + n) * C + c) * H * W;
      for (index_t i = 0; i < s.kernel_h; ++i) {
        for (index_t j = 0; j < s.kernel_w; ++j) {
          T* row = col + ((c * s.kernel_h + i) * s.kernel_w + j) * L + n * OHW;
          index_t lo, hi;
          valid_range(j * s.dilation_w, s.pad_w, s.stride_w, W, OW, lo, hi);
          for (index_t y = 0; y < OH; ++y) {
            T* dst = row + y * OW;
            const index_t iy = y * s.stride_h - s.pad_h + i * s.dilation_h;
            if (iy < 0 || iy >= H) {
              std::fill(dst, dst + OW, T(0));
              continue;
            }
            // Input index of output column x is base + x*stride (valid for x in [lo, hi)).
            const index_t base = iy * W - s.pad_w + j * s.dilation_w;
            std::fill(dst, dst + lo, T(0));
            if (s.stride_w == 1) {
              std::copy(plane + (base + lo), plane + (base + hi), dst + lo);
            } else {
              for (index_t x = lo; x < hi; ++x) dst[x] = plane[base + x * s.stride_w];
            }
            std::fill(dst + hi, dst + OW, T(0));
          }
        }
      }
    }
  }
}

// The adjoint of im2col: grad_in[n0+n, c] = sum of the dcol entries that read each pixel.
// Each (n, c) plane is owned by one thread and summed in a fixed order.
template <typename T>
void col2im(const T* dcol, T* grad_input, index_t n0, index_t nb, const Conv2dShape& s) {
  const index_t C = s.in_channels, H = s.height, W = s.width;
  const index_t OH = s.out_h, OW = s.out_w, OHW = OH * OW, L = nb * OHW;
  const index_t KK = s.kernel_h * s.kernel_w;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(nb * C * KK * OHW))
  for (index_t n = 0; n < nb; ++n) {
    for (index_t c = 0; c < C; ++c) {
      T* plane = grad_input + ((n0 + n) * C + c) * H * W;
      std::fill(plane, plane + H * W, T(0));
      for (index_t i = 0; i < s.kernel_h; ++i) {
        for (index_t j = 0; j < s.kernel_w; ++j) {
          const T* row = dcol + ((c * s.kernel_h + i) * s.kernel_w + j) * L + n * OHW;
          index_t lo, hi;
          valid_range(j * s.dilation_w, s.pad_w, s.stride_w, W, OW, lo, hi);
          for (index_t y = 0; y < OH; ++y) {
            const index_t iy = y * s.stride_h - s.pad_h + i * s.dilation_h;
            if (iy < 0 || iy >= H) continue;
            const T* src = row + y * OW;
            const index_t base = iy * W - s.pad_w + j * s.dilation_w;
            for (index_t x = lo; x < hi; ++x) plane[base + x * s.stride_w] += src[x];
          }
        }
      }
    }
  }
}

// Sample-parallel path for batches of at least this many samples.
constexpr index_t kSampleParallelBatch = 4;
// Weight-gradient partial sums: at most this many fixed groups of consecutive samples.
constexpr index_t kWeightGradGroups = 8;

bool sample_parallel(const Conv2dShape& s) {
  constexpr index_t kInt = (index_t(1) << 31) - 1;
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, OHW = s.out_h * s.out_w;
  return s.batch >= kSampleParallelBatch && R <= kInt && OHW <= kInt && s.out_channels <= kInt;
}

index_t chunk_size(const Conv2dShape& s, index_t buffers) {
  const index_t per_sample = s.in_channels * s.kernel_h * s.kernel_w * s.out_h * s.out_w * buffers;
  return std::clamp<index_t>(kColumnBudget / std::max<index_t>(per_sample, 1), 1, s.batch);
}

}  // namespace

template <typename T>
void conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                    const Conv2dShape& s) {
  const index_t O = s.out_channels, G = s.groups, OHW = s.out_h * s.out_w;
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, Rg = R / G, Og = O / G;
  if (s.batch == 0 || O == 0 || OHW == 0) return;
  if (winograd_applies(s)) {
    winograd_forward(input, weight, bias, output, s);
    return;
  }
  if (sample_parallel(s)) {
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * R * OHW))
    for (index_t n = 0; n < s.batch; ++n) {
      T* col = scratch<T>(3, R * OHW);  // this thread's
      im2col(input, col, n, 1, s);
      T* out = output + n * O * OHW;
      for (index_t g = 0; g < G; ++g) {
        gemm_serial<T>(false, false, Og, OHW, Rg, T(1), weight + g * Og * Rg, Rg,
                       col + g * Rg * OHW, OHW, T(0), out + g * Og * OHW, OHW);
      }
      if (bias) {
        for (index_t o = 0; o < O; ++o)
          for (index_t p = 0; p < OHW; ++p) out[o * OHW + p] += bias[o];
      }
    }
    return;
  }
  const index_t nb_max = chunk_size(s, 1);
  T* col = scratch<T>(0, R * nb_max * OHW);
  T* out_t = scratch<T>(1, O * nb_max * OHW);
  for (index_t n0 = 0; n0 < s.batch; n0 += nb_max) {
    const index_t nb = std::min(nb_max, s.batch - n0), L = nb * OHW;
    im2col(input, col, n0, nb, s);
    for (index_t g = 0; g < G; ++g) {
      gemm<T>(false, false, Og, L, Rg, T(1), weight + g * Og * Rg, Rg, col + g * Rg * L, L,
              T(0), out_t + g * Og * L, L);
    }
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(O * L))
    for (index_t n = 0; n < nb; ++n) {
      for (index_t o = 0; o < O; ++o) {
        const T* src = out_t + o * L + n * OHW;
        T* dst = output + ((n0 + n) * O + o) * OHW;
        const T b = bias ? bias[o] : T(0);
        for (index_t p = 0; p < OHW; ++p) dst[p] = src[p] + b;
      }
    }
  }
}

template <typename T>
void conv2d_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, const Conv2dShape& s) {
  const index_t O = s.out_channels, G = s.groups, OHW = s.out_h * s.out_w;
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, Rg = R / G, Og = O / G;
  if (s.batch == 0 || O == 0 || OHW == 0) {
    if (grad_input) std::fill(grad_input, grad_input + s.batch * s.in_channels * s.height * s.width, T(0));
    return;
  }
  if (grad_bias) {
    // Fixed summation order (sample, then pixel) in double: same bits on any thread count.
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * O * OHW))
    for (index_t o = 0; o < O; ++o) {
      double total = 0.0;
      for (index_t n = 0; n < s.batch; ++n) total += sum_fixed_order(grad_output + (n * O + o) * OHW, OHW);
      grad_bias[o] += static_cast<T>(total);
    }
  }
  if (!grad_input && !grad_weight) return;
  if (winograd_applies(s)) {
    winograd_backward(input, weight, grad_output, grad_input, grad_weight, s);
    return;
  }
  if (sample_parallel(s)) {
    // Groups of consecutive samples, fixed by the batch size; one thread per group at a time.
    const index_t groups = std::min(kWeightGradGroups, s.batch);
    const index_t per_group = (s.batch + groups - 1) / groups;
    T* partials = grad_weight ? scratch<T>(4, groups * O * Rg) : nullptr;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * R * OHW))
    for (index_t grp = 0; grp < groups; ++grp) {
      T* col = scratch<T>(3, R * OHW);  // this thread's
      T* dcol = scratch<T>(5, R * OHW);
      T* partial = grad_weight ? partials + grp * O * Rg : nullptr;
      if (partial) std::fill(partial, partial + O * Rg, T(0));
      for (index_t n = grp * per_group; n < std::min(s.batch, (grp + 1) * per_group); ++n) {
        const T* dy = grad_output + n * O * OHW;
        if (grad_input) {
          for (index_t g = 0; g < G; ++g) {
            gemm_serial<T>(true, false, Rg, OHW, Og, T(1), weight + g * Og * Rg, Rg,
                           dy + g * Og * OHW, OHW, T(0), dcol + g * Rg * OHW, OHW);
          }
          col2im(dcol, grad_input, n, 1, s);
        }
        if (partial) {
          im2col(input, col, n, 1, s);
          for (index_t g = 0; g < G; ++g) {
            gemm_serial<T>(false, true, Og, Rg, OHW, T(1), dy + g * Og * OHW, OHW,
                           col + g * Rg * OHW, OHW, T(1), partial + g * Og * Rg, Rg);
          }
        }
      }
    }
    if (grad_weight) {
      const index_t size = O * Rg;
#pragma omp parallel for schedule(static) num_threads(threads_for(size * groups))
      for (index_t i = 0; i < size; ++i) {
        T total = grad_weight[i];
        for (index_t grp = 0; grp < groups; ++grp) total += partials[grp * size + i];
        grad_weight[i] = total;
      }
    }
    return;
  }
  const index_t nb_max = chunk_size(s, 2);
  T* col = grad_weight ? scratch<T>(0, R * nb_max * OHW) : nullptr;
  T* dcol = grad_input ? scratch<T>(2, R * nb_max * OHW) : nullptr;
  T* dout_t = scratch<T>(1, O * nb_max * OHW);
  for (index_t n0 = 0; n0 < s.batch; n0 += nb_max) {
    const index_t nb = std::min(nb_max, s.batch - n0), L = nb * OHW;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(O * L))
    for (index_t n = 0; n < nb; ++n) {
      for (index_t o = 0; o < O; ++o) {
        const T* src = grad_output + ((n0 + n) * O + o) * OHW;
        std::copy(src, src + OHW, dout_t + o * L + n * OHW);
      }
    }
    if (grad_weight) {
      im2col(input, col, n0, nb, s);
      for (index_t g = 0; g < G; ++g) {
        gemm<T>(false, true, Og, Rg, L, T(1), dout_t + g * Og * L, L,
                col + g * Rg * L, L, T(1), grad_weight + g * Og * Rg, Rg);
      }
    }
    if (grad_input) {
      for (index_t g = 0; g < G; ++g) {
        gemm<T>(true, false, Rg, L, Og, T(1), weight + g * Og * Rg, Rg,
                dout_t + g * Og * L, L, T(0), dcol + g * Rg * L, L);
      }
      col2im(dcol, grad_input, n0, nb, s);
    }
  }
}

template void conv2d_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void conv2d_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void conv2d_backward<float>(const float*, const float*, const float*, float*, float*, float*, const Conv2dShape&);
template void conv2d_backward<double>(const double*, const double*, const double*, double*, double*, double*, const Conv2dShape&);

}  // namespace fastdl::cpu
