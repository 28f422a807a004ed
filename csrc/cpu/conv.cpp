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

// Both unfoldings go through a zero-padded copy of one input plane split into its
// stride phases ("polyphase"): phase (a, b) holds padded pixels (u*sh + a, v*sw + b). Tap
// (i, j) of output (y, x) reads padded pixel (y*sh + i*dh, x*sw + j*dw), which is
// phase ((i*dh) % sh, (j*dw) % sw) at (y + (i*dh)/sh, x + (j*dw)/sw): every row of col is
// a contiguous run of one phase, for any stride, padding and dilation — no bounds tests
// and no strided gathers in the inner loops.
struct Phases {
  index_t sh, sw;      // strides = number of phases per axis
  index_t rows, cols;  // padded rows/columns read by some output: (O-1)*s + (K-1)*d + 1
  index_t ph, pw;      // one phase: ceil(rows / sh) x ceil(cols / sw)
  index_t size() const { return sh * sw * ph * pw; }
  index_t offset(index_t ti, index_t tj) const {  // start of tap (ti, tj) = (i*dh, j*dw)
    return ((ti % sh) * sw + tj % sw) * ph * pw + (ti / sh) * pw + tj / sw;
  }
};

Phases phases_of(const Conv2dShape& s) {
  Phases p{};
  p.sh = s.stride_h;
  p.sw = s.stride_w;
  p.rows = (s.out_h - 1) * s.stride_h + (s.kernel_h - 1) * s.dilation_h + 1;
  p.cols = (s.out_w - 1) * s.stride_w + (s.kernel_w - 1) * s.dilation_w + 1;
  p.ph = (p.rows + p.sh - 1) / p.sh;
  p.pw = (p.cols + p.sw - 1) / p.sw;
  return p;
}

// Phase columns v whose input column v*stride + b - pad lies in [0, width): [lo, hi).
inline void phase_columns(index_t b, index_t stride, index_t pad, index_t width, index_t pw,
                          index_t& lo, index_t& hi) {
  const index_t first = pad - b;  // v*stride >= first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const index_t end = width + pad - b;  // v*stride < end
  hi = end <= 0 ? 0 : (end + stride - 1) / stride;
  lo = std::min(lo, pw);
  hi = std::clamp(hi, lo, pw);
}

// The phases of input plane `src` (H x W), zero where the padded pixel is padding.
template <typename T>
void split_phases(const T* src, T* dst, const Phases& p, const Conv2dShape& s) {
  for (index_t a = 0; a < p.sh; ++a) {
    for (index_t b = 0; b < p.sw; ++b) {
      T* phase = dst + (a * p.sw + b) * p.ph * p.pw;
      index_t lo, hi;
      phase_columns(b, p.sw, s.pad_w, s.width, p.pw, lo, hi);
      for (index_t u = 0; u < p.ph; ++u) {
        T* row = phase + u * p.pw;
        const index_t r = u * p.sh + a - s.pad_h;
        if (r < 0 || r >= s.height) {
          std::fill(row, row + p.pw, T(0));
          continue;
        }
        const T* in = src + r * s.width + b - s.pad_w;  // in[v*sw] is column v of the phase
        std::fill(row, row + lo, T(0));
        if (p.sw == 1) {
          std::copy(in + lo, in + hi, row + lo);
        } else if (p.sw == 2) {
          for (index_t v = lo; v < hi; ++v) row[v] = in[2 * v];
        } else {
          for (index_t v = lo; v < hi; ++v) row[v] = in[v * p.sw];
        }
        std::fill(row + hi, row + p.pw, T(0));
      }
    }
  }
}

// The adjoint of split_phases: grad of input plane (H x W) from the phases' gradients
// (pixels no output reads get zero).
template <typename T>
void merge_phases(const T* phases, T* dst, const Phases& p, const Conv2dShape& s) {
  std::fill(dst, dst + s.height * s.width, T(0));
  for (index_t a = 0; a < p.sh; ++a) {
    for (index_t b = 0; b < p.sw; ++b) {
      const T* phase = phases + (a * p.sw + b) * p.ph * p.pw;
      index_t lo, hi;
      phase_columns(b, p.sw, s.pad_w, s.width, p.pw, lo, hi);
      for (index_t u = 0; u < p.ph; ++u) {
        const index_t r = u * p.sh + a - s.pad_h;
        if (r < 0 || r >= s.height) continue;
        const T* row = phase + u * p.pw;
        T* out = dst + r * s.width + b - s.pad_w;
        if (p.sw == 1) {
          std::copy(row + lo, row + hi, out + lo);
        } else if (p.sw == 2) {
          for (index_t v = lo; v < hi; ++v) out[2 * v] = row[v];
        } else {
          for (index_t v = lo; v < hi; ++v) out[v * p.sw] = row[v];
        }
      }
    }
  }
}

// col[(c*KH + i)*KW + j, n*OH*OW + y*OW + x] = in[n0+n, c, y*sh - ph + i*dh, x*sw - pw + j*dw]
template <typename T>
void im2col(const T* input, T* col, index_t n0, index_t nb, const Conv2dShape& s) {
  const index_t C = s.in_channels, H = s.height, W = s.width;
  const index_t OH = s.out_h, OW = s.out_w, OHW = OH * OW, L = nb * OHW;
  const index_t KK = s.kernel_h * s.kernel_w;
  const Phases p = phases_of(s);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(nb * C * KK * OHW))
  for (index_t n = 0; n < nb; ++n) {
    for (index_t c = 0; c < C; ++c) {
      T* phases = scratch<T>(6, p.size());  // this thread's
      split_phases(input + ((n0 + n) * C + c) * H * W, phases, p, s);
      for (index_t i = 0; i < s.kernel_h; ++i) {
        for (index_t j = 0; j < s.kernel_w; ++j) {
          T* row = col + ((c * s.kernel_h + i) * s.kernel_w + j) * L + n * OHW;
          const T* src = phases + p.offset(i * s.dilation_h, j * s.dilation_w);
          if (p.pw == OW) {
            std::copy(src, src + OHW, row);
          } else {
            for (index_t y = 0; y < OH; ++y)
              for (index_t x = 0; x < OW; ++x) row[y * OW + x] = src[y * p.pw + x];
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
  const Phases p = phases_of(s);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(nb * C * KK * OHW))
  for (index_t n = 0; n < nb; ++n) {
    for (index_t c = 0; c < C; ++c) {
      T* phases = scratch<T>(6, p.size());  // this thread's
      std::fill(phases, phases + p.size(), T(0));
      for (index_t i = 0; i < s.kernel_h; ++i) {
        for (index_t j = 0; j < s.kernel_w; ++j) {
          const T* row = dcol + ((c * s.kernel_h + i) * s.kernel_w + j) * L + n * OHW;
          T* dst = phases + p.offset(i * s.dilation_h, j * s.dilation_w);
          for (index_t y = 0; y < OH; ++y)
            for (index_t x = 0; x < OW; ++x) dst[y * p.pw + x] += row[y * OW + x];
        }
      }
      merge_phases(phases, grad_input + ((n0 + n) * C + c) * H * W, p, s);
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

// output[n0 + n, o] = block[o, n*OHW : (n+1)*OHW] + bias[o]: a GEMM's O x (nb*OHW) result
// for nb samples, back in NCHW.
template <typename T>
void unblock(const T* block, T* output, const T* bias, index_t n0, index_t nb, index_t O,
             index_t OHW, int threads) {
  const index_t L = nb * OHW;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (index_t n = 0; n < nb; ++n) {
    for (index_t o = 0; o < O; ++o) {
      const T* src = block + o * L + n * OHW;
      T* dst = output + ((n0 + n) * O + o) * OHW;
      const T b = bias ? bias[o] : T(0);
      for (index_t p = 0; p < OHW; ++p) dst[p] = src[p] + b;
    }
  }
}

// Samples per GEMM in the sample-parallel path: enough columns (>= 256) to amortize the
// BLAS's packing of W, while one col stays near the L2 cache (<= 2^19 elements).
index_t block_samples(const Conv2dShape& s) {
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, OHW = s.out_h * s.out_w;
  const index_t wanted = (256 + OHW - 1) / OHW;
  const index_t fits = (index_t(1) << 19) / std::max<index_t>(R * OHW, 1);
  return std::clamp<index_t>(std::min(wanted, fits), 1, std::min<index_t>(s.batch, 64));
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
    // Blocks of `per` consecutive samples: one col, one GEMM (wide enough to amortize the
    // BLAS's packing of W), then scattered into NCHW with the bias.
    const index_t per = block_samples(s), blocks = (s.batch + per - 1) / per;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * R * OHW))
    for (index_t k = 0; k < blocks; ++k) {
      const index_t n0 = k * per, nb = std::min(per, s.batch - n0), L = nb * OHW;
      T* col = scratch<T>(3, R * L);  // this thread's
      im2col(input, col, n0, nb, s);
      T* out = nb == 1 ? output + n0 * O * OHW : scratch<T>(5, O * L);
      for (index_t g = 0; g < G; ++g) {
        gemm_serial<T>(false, false, Og, L, Rg, T(1), weight + g * Og * Rg, Rg,
                       col + g * Rg * L, L, T(0), out + g * Og * L, L);
      }
      if (nb == 1) {
        if (bias) {
          for (index_t o = 0; o < O; ++o)
            for (index_t p = 0; p < OHW; ++p) out[o * OHW + p] += bias[o];
        }
        continue;
      }
      unblock(out, output, bias, n0, nb, O, OHW, 1);
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
    unblock(out_t, output, bias, n0, nb, O, OHW, threads_for(O * L));
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
    const index_t per = block_samples(s);
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * R * OHW))
    for (index_t grp = 0; grp < groups; ++grp) {
      T* partial = grad_weight ? partials + grp * O * Rg : nullptr;
      if (partial) std::fill(partial, partial + O * Rg, T(0));
      const index_t first = grp * per_group, last = std::min(s.batch, first + per_group);
      for (index_t n0 = first; n0 < last; n0 += per) {
        const index_t nb = std::min(per, last - n0), L = nb * OHW;
        // dY of the block as O x L (a view when the block is one sample).
        const T* dy = grad_output + n0 * O * OHW;
        if (nb > 1) {
          T* gathered = scratch<T>(2, O * L);
          for (index_t n = 0; n < nb; ++n)
            for (index_t o = 0; o < O; ++o)
              std::copy(dy + (n * O + o) * OHW, dy + (n * O + o + 1) * OHW, gathered + o * L + n * OHW);
          dy = gathered;
        }
        if (grad_input) {
          T* dcol = scratch<T>(5, R * L);  // this thread's
          for (index_t g = 0; g < G; ++g) {
            gemm_serial<T>(true, false, Rg, L, Og, T(1), weight + g * Og * Rg, Rg,
                           dy + g * Og * L, L, T(0), dcol + g * Rg * L, L);
          }
          col2im(dcol, grad_input, n0, nb, s);
        }
        if (partial) {
          T* col = scratch<T>(3, R * L);
          im2col(input, col, n0, nb, s);
          for (index_t g = 0; g < G; ++g) {
            gemm_serial<T>(false, true, Og, Rg, L, T(1), dy + g * Og * L, L,
                           col + g * Rg * L, L, T(1), partial + g * Og * Rg, Rg);
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
