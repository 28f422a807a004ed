// 2-D convolution by im2col + GEMM (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html).
//
// Batches of 4 or more samples run sample-parallel: each OpenMP thread unfolds one sample
// into its own cache-sized col (R x OH*OW, R = C*KH*KW) and calls the single-threaded BLAS
//   forward          out[n] (O x OHW)   = W (O x R/G) @ col          (straight into NCHW)
//   grad of input    dcol (R x OHW)     = W^T @ dY[n]                 (then folded back, col2im)
//   grad of weight   partial[group]    += dY[n] @ col^T               (summed over fixed groups)
// Smaller batches unfold a chunk of samples into one col (R x nb*OH*OW) and run ONE large
// GEMM per product, threaded by fastdl's tiled gemm (see runtime.cpp). Where AVX-512 is
// built in, two float32 paths skip col altogether: forwards whose rows of outputs fill
// 16-lane vectors (direct_forward), and layers with many channels and few pixels, forward
// and backward (channel_direct_forward/backward: lanes over channels).
// Every split — sample groups, chunks, GEMM tiles — depends on the shapes only, never on
// the thread count, so results are bitwise reproducible on any number of threads.
#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <type_traits>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

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

// col[(c*KH + i)*KW + j, n*OH*OW + y*OW + x] = in[n0+n, c0+c, y*sh - ph + i*dh, x*sw - pw + j*dw]
// for the input channels [c0, c0 + channels) (all of them when channels < 0: a grouped
// layer's products unfold one group at a time).
template <typename T>
void im2col(const T* input, T* col, index_t n0, index_t nb, const Conv2dShape& s, index_t c0 = 0,
            index_t channels = -1) {
  const index_t C = channels < 0 ? s.in_channels : channels, H = s.height, W = s.width;
  const index_t OH = s.out_h, OW = s.out_w, OHW = OH * OW, L = nb * OHW;
  const index_t KK = s.kernel_h * s.kernel_w;
  const Phases p = phases_of(s);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_for(nb * C * KK * OHW))
  for (index_t n = 0; n < nb; ++n) {
    for (index_t c = 0; c < C; ++c) {
      T* phases = scratch<T>(6, p.size());  // this thread's
      split_phases(input + ((n0 + n) * s.in_channels + c0 + c) * H * W, phases, p, s);
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

// The adjoint of im2col: grad_in[n0+n, c0+c] = sum of the dcol entries that read each
// pixel. Each (n, c) plane is owned by one thread and summed in a fixed order.
template <typename T>
void col2im(const T* dcol, T* grad_input, index_t n0, index_t nb, const Conv2dShape& s, index_t c0 = 0,
            index_t channels = -1) {
  const index_t C = channels < 0 ? s.in_channels : channels, H = s.height, W = s.width;
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
      merge_phases(phases, grad_input + ((n0 + n) * s.in_channels + c0 + c) * H * W, p, s);
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

// grad_weight[i] += partials[0][i] + ... + partials[groups-1][i] (each `size` long), in
// that order: the weight gradient of fixed groups of samples, the same on any thread count.
template <typename T>
void add_partials(T* grad_weight, const T* partials, index_t groups, index_t size) {
#pragma omp parallel for schedule(static) num_threads(threads_for(size * groups))
  for (index_t i = 0; i < size; ++i) {
    T total = grad_weight[i];
    for (index_t grp = 0; grp < groups; ++grp) total += partials[grp * size + i];
    grad_weight[i] = total;
  }
}

// ---------------------------------------------------------------- pointwise (1x1)
// A 1x1 convolution with no padding is, per sample and group, one product on the NCHW
// planes as they lie: out[n] (Og x HW) = W_g (Og x Cg) @ x[n] (Cg x HW), and back
//   grad of input   grad_in[n] (Cg x HW) = W_g^T @ dY[n]
//   grad of weight  partial[group]      += dY[n] @ x[n]^T   (summed over fixed groups)
// with no unfolding, no copy into NCHW and no folding back (ResNet's bottleneck layers,
// MobileNet's pointwise ones). Each thread runs whole samples (or groups of samples) with
// the single-threaded BLAS, so batches need kSampleParallelBatch samples or more: smaller
// ones do better in one product over all their samples (the paths below).
// 32x64x13x13 -> 64: f+b 0.80 -> 1.20x PyTorch on 1 thread. Strided ones (ResNet's
// downsampling shortcuts) first gather each sample's pixels into a C x OH*OW block and
// scatter the input gradient back (zero elsewhere): the sample's im2col and col2im, but
// in one pass each, where those go through the stride phases (f+b 1.3 vs 1.75x PyTorch on
// 16x64x28x28 -> 128 stride 2).
bool pointwise_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled()) return false;  // the switch that selects im2col + GEMM
  return s.kernel_h == 1 && s.kernel_w == 1 && s.pad_h == 0 && s.pad_w == 0 && sample_parallel(s) &&
         s.height * s.width <= INT_MAX;
}

bool strided(const Conv2dShape& s) { return s.stride_h != 1 || s.stride_w != 1; }

// dst[c][y * OW + x] = src[c][y * sh * W + x * sw] for the C planes of a sample (or back).
template <typename T>
void gather_strided(const T* src, T* dst, const Conv2dShape& s) {
  for (index_t c = 0; c < s.in_channels; ++c)
    for (index_t y = 0; y < s.out_h; ++y)
      for (index_t x = 0; x < s.out_w; ++x)
        dst[(c * s.out_h + y) * s.out_w + x] = src[(c * s.height + y * s.stride_h) * s.width + x * s.stride_w];
}

template <typename T>
void scatter_strided(const T* src, T* dst, const Conv2dShape& s) {
  std::fill(dst, dst + s.in_channels * s.height * s.width, T(0));
  for (index_t c = 0; c < s.in_channels; ++c)
    for (index_t y = 0; y < s.out_h; ++y)
      for (index_t x = 0; x < s.out_w; ++x)
        dst[(c * s.height + y * s.stride_h) * s.width + x * s.stride_w] = src[(c * s.out_h + y) * s.out_w + x];
}

template <typename T>
void pointwise_forward(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s) {
  const index_t C = s.in_channels, O = s.out_channels, G = s.groups, Cg = C / G, Og = O / G;
  const index_t HW = s.out_h * s.out_w;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * O * Cg * HW))
  for (index_t n = 0; n < s.batch; ++n) {
    const T* x = input + n * C * s.height * s.width;
    if (strided(s)) {
      T* gathered = scratch<T>(3, C * HW);  // this thread's
      gather_strided(x, gathered, s);
      x = gathered;
    }
    T* y = output + n * O * HW;
    for (index_t g = 0; g < G; ++g) {
      gemm_serial<T>(false, false, Og, HW, Cg, T(1), weight + g * Og * Cg, Cg, x + g * Cg * HW, HW,
                     T(0), y + g * Og * HW, HW);
    }
    if (bias) {
      for (index_t o = 0; o < O; ++o)
        for (index_t p = 0; p < HW; ++p) y[o * HW + p] += bias[o];
    }
  }
}

template <typename T>
void pointwise_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                        T* grad_weight, const Conv2dShape& s) {
  const index_t C = s.in_channels, O = s.out_channels, G = s.groups, Cg = C / G, Og = O / G;
  const index_t HW = s.out_h * s.out_w;
  const index_t groups = std::min(kWeightGradGroups, s.batch);
  const index_t per_group = (s.batch + groups - 1) / groups;
  T* partials = grad_weight ? scratch<T>(4, groups * O * Cg) : nullptr;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * O * Cg * HW))
  for (index_t grp = 0; grp < groups; ++grp) {
    T* partial = partials ? partials + grp * O * Cg : nullptr;
    if (partial) std::fill(partial, partial + O * Cg, T(0));
    for (index_t n = grp * per_group; n < std::min(s.batch, (grp + 1) * per_group); ++n) {
      const T* x = input + n * C * s.height * s.width;
      if (partial && strided(s)) {
        T* gathered = scratch<T>(3, C * HW);  // this thread's
        gather_strided(x, gathered, s);
        x = gathered;
      }
      const T* dy = grad_output + n * O * HW;
      T* dx = grad_input ? grad_input + n * C * s.height * s.width : nullptr;
      if (dx && strided(s)) dx = scratch<T>(5, C * HW);
      for (index_t g = 0; g < G; ++g) {
        if (dx) {
          gemm_serial<T>(true, false, Cg, HW, Og, T(1), weight + g * Og * Cg, Cg, dy + g * Og * HW, HW, T(0),
                         dx + g * Cg * HW, HW);
        }
        if (partial) {
          gemm_serial<T>(false, true, Og, Cg, HW, T(1), dy + g * Og * HW, HW, x + g * Cg * HW, HW, T(1),
                         partial + g * Og * Cg, Cg);
        }
      }
      if (dx && strided(s)) scatter_strided(dx, grad_input + n * C * s.height * s.width, s);
    }
  }
  if (grad_weight) add_partials(grad_weight, partials, groups, O * Cg);
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

// ---------------------------------------------------------------- direct forward (float)
#ifdef __AVX512F__  // without 512-bit registers its 24 accumulators would spill: im2col does better
// For rows of outputs at least 16 wide, most of them in whole 16-lane vectors (the 7x7
// stride-2 stem on 224x224 images, small-channel first layers), im2col + GEMM spends a
// fifth of its time writing and re-reading col, and the GEMM's K (= C*KH*KW) is too short
// for the BLAS's packing to pay. The direct kernel instead reads each tap straight from the
// sample's phase planes (the phase split above makes every tap of a row of outputs one
// contiguous run, whatever the stride and dilation) and keeps an 8-channel x 3-vector
// block of outputs in registers: per tap, 3 vector loads and 8 weight broadcasts feed 24
// FMAs. Every output is one fixed sum over the taps (bias first, then taps in (c, i, j)
// order), so the threads' split changes no bits.
typedef float Lanes16 __attribute__((vector_size(64)));
typedef float Lanes16Unaligned __attribute__((vector_size(64), aligned(4)));
constexpr index_t kDirectLanes = 16;
constexpr int kDirectChannels = 8;   // output channels per register block
constexpr int kDirectVectors = 3;    // output vectors per register block (and per row piece)

inline Lanes16 load_lanes(const float* p) { return *reinterpret_cast<const Lanes16Unaligned*>(p); }
// x in every lane (x - 0 is x for every x, -0 included, so no add survives).
inline Lanes16 broadcast_lanes(float x) { return x - Lanes16{}; }

// dst[0, count) = lanes[0, count), count < 16.
inline void store_first_lanes(float* dst, Lanes16 lanes, index_t count) {
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << count) - 1), reinterpret_cast<__m512>(lanes));
}

bool direct_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled() || s.groups != 1 || s.out_w < kDirectLanes) return false;
  // Lanes used: at least 85% of the vectors covering a row of outputs.
  const index_t vectors = (s.out_w + kDirectLanes - 1) / kDirectLanes;
  if (100 * s.out_w < 85 * vectors * kDirectLanes) return false;
  // One sample's phase planes stay below 16 MiB (else im2col's chunks do better).
  const Phases p = phases_of(s);
  return s.in_channels * p.size() <= (index_t(1) << 22);
}

// Grouped layers with whole register blocks of output channels per group and at most 8
// input channels per group (ResNeXt's 3x3 layers: 8x256x14x14 in 32 groups of 8 -> 8) run
// the direct kernel per group: Winograd's tile transforms, a third of the work at 256
// channels, are most of it at 8 per group, around products of 8 x 8 (forward 1.4-1.5 ->
// 1.0 ms, 0.8 -> 1.0x PyTorch; stride 2 on 28x28: 3.4 -> 2.0-2.2 ms). At 16 per group
// Winograd stays ahead (16x64x28x28 in 4 groups: 2.5 vs 3.0 ms). Rows of 14 outputs (one
// vector, 88% of its lanes) qualify too.
constexpr index_t kGroupedDirectMaxChannels = 8;

bool grouped_direct_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled() || s.groups == 1 || s.out_w < 12) return false;
  const index_t Cg = s.in_channels / s.groups, Og = s.out_channels / s.groups;
  if (Og % kDirectChannels != 0 || Cg > kGroupedDirectMaxChannels) return false;
  const index_t vectors = (s.out_w + kDirectLanes - 1) / kDirectLanes;
  if (100 * s.out_w < 75 * vectors * kDirectLanes) return false;
  const Phases p = phases_of(s);
  return s.in_channels * p.size() <= (index_t(1) << 22);
}

// acc[o][v] = bias + sum over taps r of w[r][o] * phases[tap[r] + 16 v], stored to the
// output rows of channels o (< valid_channels), lanes (< valid_lanes of the last vector).
template <int V>
inline void direct_block(const float* base, const index_t* tap, index_t taps, const float* w,
                         const float* bias, float* out, index_t out_stride, int valid_channels,
                         index_t valid_lanes) {
  Lanes16 acc[kDirectChannels][V];
#pragma GCC unroll 8
  for (int o = 0; o < kDirectChannels; ++o) {
    const float b = bias[o];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[o][v] = broadcast_lanes(b);
  }
  for (index_t r = 0; r < taps; ++r) {
    const float* src = base + tap[r];
    Lanes16 in[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) in[v] = load_lanes(src + v * kDirectLanes);
    const float* wr = w + r * kDirectChannels;
#pragma GCC unroll 8
    for (int o = 0; o < kDirectChannels; ++o) {
      const Lanes16 wo = broadcast_lanes(wr[o]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[o][v] += wo * in[v];
    }
  }
  // Static loops with guards (not loops to valid_channels), so acc stays in registers.
#pragma GCC unroll 8
  for (int o = 0; o < kDirectChannels; ++o) {
    if (o >= valid_channels) break;
    float* row = out + o * out_stride;
#pragma GCC unroll 4
    for (int v = 0; v + 1 < V; ++v)
      *reinterpret_cast<Lanes16Unaligned*>(row + v * kDirectLanes) = acc[o][v];
    if (valid_lanes == kDirectLanes)
      *reinterpret_cast<Lanes16Unaligned*>(row + (V - 1) * kDirectLanes) = acc[o][V - 1];
    else
      store_first_lanes(row + (V - 1) * kDirectLanes, acc[o][V - 1], valid_lanes);
  }
}

void direct_forward(const float* input, const float* weight, const float* bias, float* output,
                    const Conv2dShape& s) {
  const index_t C = s.in_channels, O = s.out_channels, H = s.height, W = s.width;
  const index_t OH = s.out_h, OW = s.out_w, KK = s.kernel_h * s.kernel_w, R = C * KK;
  const index_t G = s.groups, Og = O / G, Rg = R / G;  // a block's sum: its group's Rg taps
  const Phases p = phases_of(s);
  const index_t plane = p.size();
  // Each tap's offset in the sample's phase planes: channel c's planes at c * plane (group
  // g's taps from tap + g * Rg).
  index_t* tap = scratch<index_t>(14, R);
  for (index_t c = 0; c < C; ++c)
    for (index_t i = 0; i < s.kernel_h; ++i)
      for (index_t j = 0; j < s.kernel_w; ++j)
        tap[(c * s.kernel_h + i) * s.kernel_w + j] = c * plane + p.offset(i * s.dilation_h, j * s.dilation_w);
  // Weights as [channel block][tap][8 channels], zero past O; bias likewise. With groups,
  // Og is a whole number of blocks: block b's channels lie in group b / (Og / 8).
  const index_t blocks = (O + kDirectChannels - 1) / kDirectChannels, group_blocks = (Og + kDirectChannels - 1) / kDirectChannels;
  float* packed = scratch<float>(15, blocks * kDirectChannels * (Rg + 1));
  float* packed_bias = packed + blocks * kDirectChannels * Rg;
  for (index_t b = 0; b < blocks; ++b) {
    for (int k = 0; k < kDirectChannels; ++k) {
      const index_t o = b * kDirectChannels + k;
      for (index_t r = 0; r < Rg; ++r)
        packed[(b * Rg + r) * kDirectChannels + k] = o < O ? weight[o * Rg + r] : 0.0f;
      packed_bias[b * kDirectChannels + k] = o < O && bias ? bias[o] : 0.0f;
    }
  }
  // Work items: samples, each cut into row ranges when the batch is small (shape-only).
  // Items go to threads in sample-major runs, and a thread splits a sample's phase planes
  // only when its next item starts a new sample (8 splits of a 128-channel sample made a
  // one-sample batch a third slower than im2col).
  const index_t pieces = std::clamp<index_t>((8 + s.batch - 1) / s.batch, 1, OH);
  const index_t rows_per = (OH + pieces - 1) / pieces;
  const index_t vectors = (OW + kDirectLanes - 1) / kDirectLanes;
  const index_t row_pieces = (vectors + kDirectVectors - 1) / kDirectVectors;
#pragma omp parallel num_threads(threads_for(s.batch * O * OH * OW * Rg))
  {
    index_t split = -1;
    // The sample's phase planes, plus one vector of zeros read by the last row's last lanes.
    float* phases = scratch<float>(6, C * plane + kDirectLanes);
#pragma omp for schedule(static)
    for (index_t item = 0; item < s.batch * pieces; ++item) {
      const index_t n = item / pieces, y0 = (item % pieces) * rows_per;
      const index_t y1 = std::min(OH, y0 + rows_per);
      if (y0 >= y1) continue;
      if (n != split) {
        for (index_t c = 0; c < C; ++c) split_phases(input + (n * C + c) * H * W, phases + c * plane, p, s);
        std::fill(phases + C * plane, phases + C * plane + kDirectLanes, 0.0f);
        split = n;
      }
      for (index_t y = y0; y < y1; ++y) {
        for (index_t b = 0; b < blocks; ++b) {
          const int valid = static_cast<int>(std::min<index_t>(kDirectChannels, O - b * kDirectChannels));
          float* out = output + ((n * O + b * kDirectChannels) * OH + y) * OW;
          const float* w = packed + b * Rg * kDirectChannels;
          const float* bb = packed_bias + b * kDirectChannels;
          const index_t* taps = tap + b / group_blocks * Rg;
          // The row's vectors in `pieces` runs of near-equal length (7 = 3 + 2 + 2, not 3 + 3 + 1).
          for (index_t k = 0, v0 = 0; k < row_pieces; ++k) {
            const index_t nv = vectors / row_pieces + (k < vectors % row_pieces ? 1 : 0);
            const index_t x0 = v0 * kDirectLanes;
            const index_t last = std::min(kDirectLanes, OW - (x0 + (nv - 1) * kDirectLanes));
            const float* base = phases + y * p.pw + x0;
            if (nv == 3) direct_block<3>(base, taps, Rg, w, bb, out + x0, OH * OW, valid, last);
            else if (nv == 2) direct_block<2>(base, taps, Rg, w, bb, out + x0, OH * OW, valid, last);
            else direct_block<1>(base, taps, Rg, w, bb, out + x0, OH * OW, valid, last);
            v0 += nv;
          }
        }
      }
    }
  }
}

// ------------------------------------------ direct convolution over channel lanes (float)
// Narrow outputs with many channels (the 128 -> 128 stride-2 3x3 layer on 16x16: 8x8
// outputs, R = C*KH*KW = 1152) leave im2col + GEMM a third of its time unfolding, packing
// and folding back. Here the 16 lanes run over channels instead, and one register block
// serves all three products: P <= 6 rows x V <= 4 vectors of 16 channels (24
// accumulators), and per step of the sum V vector loads and P broadcasts feed P*V FMAs.
//   forward      rows = output pixels, lanes = output channels, sum over taps (c, i, j):
//                broadcasts from the sample's zero-padded planes, weights packed [tap][o].
//   grad input   rows = output pixels, lanes = input channels, sum over output channels o,
//                one tap (i, j) at a time: added into a channels-last padded plane.
//   grad weight  rows = taps (c, i, j), lanes = output channels, sum over the pixels of
//                the batch: broadcasts from the padded inputs, vectors from dY^T.
// Every result is one sum in an order fixed by the shapes (bias or zero first, then the
// steps in order; samples, taps and pixels in order), so the threads' split changes no bits.

// The zero-padded plane alone: one phase of stride 1 over the same padded extent.
Phases padded_of(const Conv2dShape& s) {
  Phases p = phases_of(s);
  p.sh = p.sw = 1;
  p.ph = p.rows;
  p.pw = p.cols;
  return p;
}

constexpr int kChannelRows = 6;     // rows per register block
constexpr int kChannelVectors = 4;  // channel vectors per block: 64 channels
constexpr index_t kChannelBlock = kChannelVectors * kDirectLanes;
// Elements of padded inputs and dY^T that the weight gradient stages at once (64 MiB).
constexpr index_t kChannelStage = index_t(1) << 24;

bool channel_direct_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled() || s.groups != 1 || s.out_channels % kDirectLanes != 0) return false;
  if (s.out_h * s.out_w < kChannelRows) return false;
  // A 1x1 stride-1 unpadded convolution is a GEMM on the input itself: the BLAS does better.
  if (s.kernel_h * s.kernel_w == 1 && s.stride_h * s.stride_w == 1 && s.pad_h + s.pad_w == 0) return false;
  // Enough steps per sum to amortize the block's loads and stores and the transposes.
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w;
  if (R < 256) return false;
  const Phases p = padded_of(s);
  return s.in_channels * p.size() <= (index_t(1) << 22);
}

// Grouped layers (not depthwise) on small maps whose groups hold whole 16-lane vectors of
// output channels: the channel-lane forward per group (blocks within a group). On 7x7 maps
// grouped Winograd's products are 16 x 16 x 16 tiles per sample, and the forward took
// twice PyTorch's time (8x512x7x7 in 32 groups: 1.2 -> 0.67 ms, 0.55 -> 0.92x); from
// 14x14 maps on Winograd does as well or better (16x64x28x28 in 4 groups: 2.3 vs 4.9 ms).
constexpr index_t kChannelGroupedMaxPixels = 64;
// Strided layers have no Winograd: the alternative is im2col and per-group GEMMs of 16 x
// 144 x L, which the channel-lane kernels beat up to 16x16 output maps (8x512x28x28 s2 in
// 32 groups: 7.6 -> 3.9 ms forward, f+b 26.4 -> 14.4 ms, 0.50 -> 0.93x PyTorch); on 28x28
// maps the two were even, on 56x56 im2col won by 9x (the per-tap passes over a large map).
constexpr index_t kChannelGroupedStridedMaxPixels = 256;

bool channel_grouped_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled() || s.groups == 1) return false;
  const index_t Cg = s.in_channels / s.groups, Og = s.out_channels / s.groups, OHW = s.out_h * s.out_w;
  if (Cg == 1 || Og % kDirectLanes != 0 || OHW < kChannelRows) return false;
  if (OHW > (strided(s) ? kChannelGroupedStridedMaxPixels : kChannelGroupedMaxPixels)) return false;
  const Phases p = padded_of(s);
  return s.in_channels * p.size() <= (index_t(1) << 22);
}

// The same for the backward (whose input gradient runs its lanes over a group's input
// channels): 16x16 per group and more.
bool channel_grouped_backward_applies(const Conv2dShape& s) {
  return channel_grouped_applies(s) && (s.in_channels / s.groups) % kDirectLanes == 0;
}

// Winograd on fewer 2x2 tiles than this in the whole batch makes thin products and spends
// most of its time on the weights (512 -> 512 on one 7x7 map: 16 tiles, 16 MB of
// transformed weights); the channel-lane kernels take such layers where they apply
// (1x512x7x7: f+b 0.72 -> 1.04x PyTorch; 1x256x14x14, 49 tiles, stays with Winograd).
constexpr index_t kChannelOverWinogradTiles = 48;

bool few_tiles(const Conv2dShape& s) {
  return s.batch * ((s.out_h + 1) / 2) * ((s.out_w + 1) / 2) < kChannelOverWinogradTiles;
}

// The backward's input gradient runs its lanes over input channels and sums over the
// output channels.
bool channel_backward_applies(const Conv2dShape& s) {
  return channel_direct_applies(s) && s.in_channels % kDirectLanes == 0 && s.out_channels >= 64;
}

// acc[q][v] = init + sum over steps r of px[q][step[r]] * w[row(r) + 16 v ..], stored to
// out[q] + 16 v; init is bias + 16 v when given, else what out[q] + 16 v holds. row(r) is
// r * w_stride, or wrow[r] when given (a subset of the weights' rows, in order).
template <int V, int P, bool Rows>
inline void channel_block(const float* const* px, const index_t* step, index_t steps,
                          const float* w, index_t w_stride, const index_t* wrow, const float* bias,
                          float* const* out) {
  Lanes16 acc[P][V];
  const float* pixel[P];
#pragma GCC unroll 6
  for (int q = 0; q < P; ++q) pixel[q] = px[q];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const Lanes16 b = bias ? load_lanes(bias + v * kDirectLanes) : Lanes16{};
#pragma GCC unroll 6
    for (int q = 0; q < P; ++q) acc[q][v] = bias ? b : load_lanes(out[q] + v * kDirectLanes);
  }
  for (index_t r = 0; r < steps; ++r) {
    const index_t t = step[r];
    const float* wr = w + (Rows ? wrow[r] : r * w_stride);
    Lanes16 wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) wv[v] = load_lanes(wr + v * kDirectLanes);
    // One broadcast at a time, used at once: 24 accumulators + 4 vectors + 1 broadcast fit
    // the 32 registers (all six broadcasts first made GCC re-read the vectors from memory).
#pragma GCC unroll 6
    for (int q = 0; q < P; ++q) {
      const Lanes16 x = broadcast_lanes(pixel[q][t]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[q][v] += x * wv[v];
    }
  }
#pragma GCC unroll 6
  for (int q = 0; q < P; ++q) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      *reinterpret_cast<Lanes16Unaligned*>(out[q] + v * kDirectLanes) = acc[q][v];
  }
}

template <int P, bool Rows>
inline void channel_block_v(int vectors, const float* const* px, const index_t* step,
                            index_t steps, const float* w, index_t w_stride, const index_t* wrow,
                            const float* bias, float* const* out) {
  switch (vectors) {
    case 4: channel_block<4, P, Rows>(px, step, steps, w, w_stride, wrow, bias, out); break;
    case 3: channel_block<3, P, Rows>(px, step, steps, w, w_stride, wrow, bias, out); break;
    case 2: channel_block<2, P, Rows>(px, step, steps, w, w_stride, wrow, bias, out); break;
    default: channel_block<1, P, Rows>(px, step, steps, w, w_stride, wrow, bias, out); break;
  }
}

template <bool Rows>
void channel_block_rows(index_t width, index_t rows, const float* const* px, const index_t* step,
                        index_t steps, const float* w, index_t w_stride, const index_t* wrow,
                        const float* bias, float* const* out) {
  const int v = static_cast<int>(width / kDirectLanes);
  switch (rows) {
    case 6: channel_block_v<6, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
    case 5: channel_block_v<5, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
    case 4: channel_block_v<4, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
    case 3: channel_block_v<3, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
    case 2: channel_block_v<2, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
    default: channel_block_v<1, Rows>(v, px, step, steps, w, w_stride, wrow, bias, out); break;
  }
}

// channel_block<V, P> for V = width / 16 (width a multiple of 16, <= 64), P = rows <= 6;
// the weights' rows r * w_stride, or wrow[r] when wrow is given.
void channel_block_any(index_t width, index_t rows, const float* const* px, const index_t* step,
                       index_t steps, const float* w, index_t w_stride, const float* bias,
                       float* const* out, const index_t* wrow = nullptr) {
  if (wrow) channel_block_rows<true>(width, rows, px, step, steps, w, w_stride, wrow, bias, out);
  else channel_block_rows<false>(width, rows, px, step, steps, w, w_stride, nullptr, bias, out);
}

// One whole 16 x 16 tile in registers: rows interleaved in pairs, then quads (each
// 128-bit lane of u[4i + m] holds column 4L + m of rows 4i .. 4i+3), then the 128-bit
// lanes of four such vectors transposed as a 4 x 4 matrix.
template <bool Add>
inline void transpose_tile16(const float* src, index_t src_stride, float* dst, index_t dst_stride) {
  __m512 r[16], t[16], u[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
    const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
    const __m512 v3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
    const __m512 out[4] = {_mm512_shuffle_f32x4(v0, v2, 0x88), _mm512_shuffle_f32x4(v0, v2, 0xDD),
                           _mm512_shuffle_f32x4(v1, v3, 0x88), _mm512_shuffle_f32x4(v1, v3, 0xDD)};
    for (int l = 0; l < 4; ++l) {
      float* row = dst + (4 * l + m) * dst_stride;
      if constexpr (Add) _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), out[l]));
      else _mm512_storeu_ps(row, out[l]);
    }
  }
}

// dst[c * dst_stride + r] (+)= src[r * src_stride + c] for r < rows, c < cols, in 16 x 16
// tiles: a plain loop read or wrote one cache line per element once strides passed 4 KiB.
template <bool Add>
void transpose_tiles(const float* src, index_t rows, index_t cols, index_t src_stride, float* dst,
                     index_t dst_stride) {
  for (index_t r0 = 0; r0 < rows; r0 += kDirectLanes) {
    const index_t r1 = std::min(rows, r0 + kDirectLanes);
    for (index_t c0 = 0; c0 < cols; c0 += kDirectLanes) {
      const index_t c1 = std::min(cols, c0 + kDirectLanes);
      if (r1 - r0 == kDirectLanes && c1 - c0 == kDirectLanes) {
        transpose_tile16<Add>(src + r0 * src_stride + c0, src_stride, dst + c0 * dst_stride + r0, dst_stride);
        continue;
      }
      for (index_t c = c0; c < c1; ++c) {
        float* out = dst + c * dst_stride;
        for (index_t r = r0; r < r1; ++r) {
          if constexpr (Add) out[r] += src[r * src_stride + c];
          else out[r] = src[r * src_stride + c];
        }
      }
    }
  }
}

// The sample's C zero-padded planes (p from padded_of), rows copied 16 lanes at a time
// (std::copy's memmove call cost more than the copy on 16-float rows). The padding is
// the same for every sample: with `borders` false, dst already holds it from an earlier
// call and only the input's pixels are written.
void pad_sample(const float* src, float* dst, const Phases& p, const Conv2dShape& s, bool borders) {
  const index_t C = s.in_channels, H = s.height, W = s.width, plane = p.size();
  if (borders) std::fill(dst, dst + C * plane, 0.0f);
  index_t lo, hi;  // padded columns holding input columns
  phase_columns(0, 1, s.pad_w, W, p.pw, lo, hi);
  const index_t u0 = std::min(s.pad_h, p.ph), u1 = std::clamp<index_t>(H + s.pad_h, u0, p.ph);
  for (index_t c = 0; c < C; ++c) {
    for (index_t u = u0; u < u1; ++u) {
      float* row = dst + c * plane + u * p.pw;
      const float* in = src + (c * H + u - s.pad_h) * W - s.pad_w;  // in[v] is padded column v
      index_t v = lo;
      for (; v + kDirectLanes <= hi; v += kDirectLanes)
        *reinterpret_cast<Lanes16Unaligned*>(row + v) = load_lanes(in + v);
      if (v < hi) {
        const __mmask16 m = static_cast<__mmask16>((1u << (hi - v)) - 1);
        _mm512_mask_storeu_ps(row + v, m, _mm512_maskz_loadu_ps(m, in + v));
      }
    }
  }
}

// Offset in the padded planes of output pixel q's first tap.
inline index_t pixel_offset(index_t q, const Phases& p, const Conv2dShape& s) {
  return (q / s.out_w) * s.stride_h * p.pw + (q % s.out_w) * s.stride_w;
}

// The k in [lo, hi) of [0, count) with 0 <= base + k * step < size, along one axis: the
// outputs o whose tap i reads inside the input (base i * dilation - pad, step stride), or
// the taps i inside the window of output o (base o * stride - pad, step dilation).
void inside_run(index_t base, index_t step, index_t count, index_t size, index_t& lo, index_t& hi) {
  lo = 0, hi = count;
  while (lo < hi && base + lo * step < 0) ++lo;
  while (hi > lo && base + (hi - 1) * step >= size) --hi;
}

// Output pixels whose windows hold the same taps inside the input: kernel rows [i0, i1)
// and columns [j0, j1) (the others read padding, a product by zero). Each class sums only
// its own taps, in the (c, i, j) order of the full sum (so a window inside the input
// sums exactly as before): steps and weight rows of the class's taps.
struct TapClass {
  std::vector<index_t> pixels;      // output pixels q (of one sample)
  std::vector<index_t> step, wrow;  // tap offsets from a pixel's first tap; weight rows (x width), none if all
};

// Classes of fewer than `fewest` pixels join the class of every tap (their padding taps
// read zeros): each run of pixels streams its class's weights, and a run of one or two
// pixels costs that stream for little work (1x512x7x7: a 1.2 MB stream per run).
std::vector<TapClass> tap_classes(const Phases& p, const Conv2dShape& s, index_t width, index_t fewest) {
  const index_t KH = s.kernel_h, KW = s.kernel_w;
  using Key = std::array<index_t, 4>;
  const index_t OHW = s.out_h * s.out_w;
  std::vector<Key> key(static_cast<std::size_t>(OHW));
  for (index_t q = 0; q < OHW; ++q) {
    // The kernel rows (columns) inside the input for output row y (column x).
    inside_run(q / s.out_w * s.stride_h - s.pad_h, s.dilation_h, KH, s.height, key[q][0], key[q][1]);
    inside_run(q % s.out_w * s.stride_w - s.pad_w, s.dilation_w, KW, s.width, key[q][2], key[q][3]);
  }
  const Key all = {0, KH, 0, KW};
  for (index_t q = 0; q < OHW; ++q)
    if (std::count(key.begin(), key.end(), key[q]) < fewest) key[q] = all;
  std::vector<TapClass> classes;
  std::vector<Key> keys;
  for (index_t q = 0; q < OHW; ++q) {
    const auto found = std::find(keys.begin(), keys.end(), key[q]);
    if (found != keys.end()) {
      classes[found - keys.begin()].pixels.push_back(q);
      continue;
    }
    keys.push_back(key[q]);
    TapClass k;
    k.pixels.push_back(q);
    for (index_t c = 0; c < s.in_channels; ++c)
      for (index_t i = key[q][0]; i < key[q][1]; ++i)
        for (index_t j = key[q][2]; j < key[q][3]; ++j) {
          k.step.push_back(c * p.size() + p.offset(i * s.dilation_h, j * s.dilation_w));
          k.wrow.push_back(((c * KH + i) * KW + j) * width);
        }
    if (key[q] == all) k.wrow.clear();  // every row in order: no indirection (4% on 1x512x7x7)
    classes.push_back(std::move(k));
  }
  return classes;
}

void channel_direct_forward(const float* input, const float* weight, const float* bias,
                            float* output, const Conv2dShape& s) {
  const index_t C = s.in_channels, O = s.out_channels, H = s.height, W = s.width, G = s.groups;
  const index_t OHW = s.out_h * s.out_w, R = C * s.kernel_h * s.kernel_w;
  const index_t Cg = C / G, Og = O / G, Rg = R / G;  // a block's sum: its group's Rg taps
  const Phases p = padded_of(s);  // broadcasts need no contiguous runs: no phase split
  const index_t plane = C * p.size();  // a sample's padded planes
  // Weights as [64-channel block][tap][width of the block]; bias likewise. Blocks do not
  // straddle groups: each group's Og channels are blocks of 64 and a last narrower one.
  const index_t group_blocks = (Og + kChannelBlock - 1) / kChannelBlock, blocks = G * group_blocks;
  const auto block_start = [&](index_t k) { return k / group_blocks * Og + k % group_blocks * kChannelBlock; };
  float* packed = scratch<float>(15, O * Rg + O + kChannelBlock);
  float* packed_bias = packed + O * Rg;
  for (index_t k = 0; k < blocks; ++k) {
    const index_t o0 = block_start(k), width = std::min(kChannelBlock, Og - k % group_blocks * kChannelBlock);
    transpose_tiles<false>(weight + o0 * Rg, width, Rg, Rg, packed + o0 * Rg, width);
  }
  for (index_t o = 0; o < O + kChannelBlock; ++o) packed_bias[o] = bias && o < O ? bias[o] : 0.0f;
  // Pixels by the taps their windows hold inside the input: a window over padding skips
  // those taps (a 3x3/s2 layer on a 7x7 map reads padding in 31% of its taps). The classes
  // are one group's (its Cg channels, from the group's first plane); the weight rows are
  // per block width: a group's last block may be narrower.
  // Samples per item: enough pixels that a class's runs fill the register block (a 4x4
  // map has 9 classes of 1-4 pixels); their padded planes at most 16 MiB.
  const index_t per = std::clamp<index_t>(std::min((96 + OHW - 1) / OHW, (index_t(1) << 22) / plane), 1, s.batch);
  const index_t chunks = (s.batch + per - 1) / per;
  const index_t fewest = (kChannelRows + per - 1) / per;  // pixels of a class per sample
  const index_t last_width = Og - (group_blocks - 1) * kChannelBlock;
  Conv2dShape one_group = s;
  one_group.in_channels = Cg;
  const std::vector<TapClass> classes = tap_classes(p, one_group, kChannelBlock, fewest);
  const std::vector<TapClass> last_classes =
      last_width == kChannelBlock ? std::vector<TapClass>{} : tap_classes(p, one_group, last_width, fewest);
  // Work items (sample chunk, channel block), chunk-major: a thread pads a chunk's planes
  // again only when its next item starts a new chunk.
#pragma omp parallel num_threads(threads_for(s.batch * O * OHW * Rg))
  {
    index_t padded = -1;
    float* planes = scratch<float>(6, per * plane);
    float* block = scratch<float>(5, per * OHW * kChannelBlock);  // [sample][pixel][channel] of one item
#pragma omp for schedule(static)
    for (index_t item = 0; item < chunks * blocks; ++item) {
      const index_t k = item / blocks, n0 = k * per, ns = std::min(per, s.batch - n0);
      const index_t kb = item % blocks, o0 = block_start(kb);
      const index_t width = std::min(kChannelBlock, Og - kb % group_blocks * kChannelBlock);
      const float* group_planes = planes + kb / group_blocks * Cg * p.size();
      if (k != padded) {
        for (index_t n = 0; n < ns; ++n)
          pad_sample(input + (n0 + n) * C * H * W, planes + n * plane, p, s, padded < 0);
        padded = k;
      }
      const float* w = packed + o0 * Rg;
      for (const TapClass& tc : (width == kChannelBlock ? classes : last_classes)) {
        // The class's pixels of every sample of the chunk, in runs of up to kChannelRows.
        const index_t count = static_cast<index_t>(tc.pixels.size()), total = ns * count;
        for (index_t e0 = 0; e0 < total; e0 += kChannelRows) {
          const index_t rows = std::min<index_t>(kChannelRows, total - e0);
          const float* px[kChannelRows];
          float* out[kChannelRows];
          for (index_t e = 0; e < rows; ++e) {
            const index_t n = (e0 + e) / count, q = tc.pixels[(e0 + e) % count];
            px[e] = group_planes + n * plane + pixel_offset(q, p, s);
            out[e] = block + (n * OHW + q) * width;
          }
          if (tc.step.empty()) {  // every tap reads padding: the bias alone
            for (index_t e = 0; e < rows; ++e) std::copy(packed_bias + o0, packed_bias + o0 + width, out[e]);
            continue;
          }
          channel_block_any(width, rows, px, tc.step.data(), static_cast<index_t>(tc.step.size()), w, width,
                            packed_bias + o0, out, tc.wrow.empty() ? nullptr : tc.wrow.data());
        }
      }
      // [pixel][channel] -> the NCHW planes of channels o0 .. o0 + width, per sample.
      for (index_t n = 0; n < ns; ++n)
        transpose_tiles<false>(block + n * OHW * width, OHW, width, width, output + ((n0 + n) * O + o0) * OHW, OHW);
    }
  }
}

void channel_direct_backward(const float* input, const float* weight, const float* grad_output,
                             float* grad_input, float* grad_weight, const Conv2dShape& s) {
  const index_t C = s.in_channels, O = s.out_channels, H = s.height, W = s.width, G = s.groups;
  const index_t OHW = s.out_h * s.out_w, KK = s.kernel_h * s.kernel_w, R = C * KK;
  const index_t Cg = C / G, Og = O / G;  // with groups, each sum runs over its group's half
  const Phases p = padded_of(s);
  const index_t plane = p.size();
  const int threads = threads_for(s.batch * Og * OHW * R);
  if (grad_input) {
    // Weights as [64-input-channel block][tap (i, j)][o of its group][width of the block];
    // blocks within groups.
    const index_t group_blocks = (Cg + kChannelBlock - 1) / kChannelBlock, blocks = G * group_blocks;
    const auto block_start = [&](index_t k) { return k / group_blocks * Cg + k % group_blocks * kChannelBlock; };
    float* packed = scratch<float>(15, Og * R);
    for (index_t k = 0; k < blocks; ++k) {
      const index_t c0 = block_start(k), g = k / group_blocks;
      const index_t width = std::min(kChannelBlock, Cg - k % group_blocks * kChannelBlock);
      float* dst = packed + c0 * KK * Og;
      // Per o: the block's width x KK weights (one contiguous run, in L1 after the first
      // tap) written as KK contiguous rows of width. Writing one element to each of the KK
      // rows in turn (reads in order) took 13% of the backward: KK streams 4 KiB+ apart.
      for (index_t o = 0; o < Og; ++o)
        for (index_t t = 0; t < KK; ++t)
          for (index_t l = 0; l < width; ++l)
            dst[(t * Og + o) * width + l] = weight[((g * Og + o) * Cg + c0 - g * Cg + l) * KK + t];
    }
    index_t* step = scratch<index_t>(14, Og);  // output channel o (of the group) of a pixel of dY
    for (index_t o = 0; o < Og; ++o) step[o] = o * OHW;
#pragma omp parallel num_threads(threads)
    {
      float* sums = scratch<float>(6, plane * kChannelBlock);  // padded plane, channels last
#pragma omp for schedule(static)
      for (index_t item = 0; item < s.batch * blocks; ++item) {
        const index_t n = item / blocks, kb = item % blocks, c0 = block_start(kb);
        const index_t width = std::min(kChannelBlock, Cg - kb % group_blocks * kChannelBlock);
        std::fill(sums, sums + plane * width, 0.0f);
        const float* dy = grad_output + (n * O + kb / group_blocks * Og) * OHW;
        for (index_t i = 0; i < s.kernel_h; ++i) {
          for (index_t j = 0; j < s.kernel_w; ++j) {
            const index_t t = i * s.kernel_w + j, tap = p.offset(i * s.dilation_h, j * s.dilation_w);
            const float* w = packed + c0 * KK * Og + t * Og * width;
            // Only the outputs whose tap (i, j) lies inside the input: the others would add
            // to padding, which is dropped (a 3x3/s2 layer on a 7x7 map: 31% of the taps).
            index_t y0, y1, x0, x1;
            inside_run(i * s.dilation_h - s.pad_h, s.stride_h, s.out_h, s.height, y0, y1);
            inside_run(j * s.dilation_w - s.pad_w, s.stride_w, s.out_w, s.width, x0, x1);
            const index_t cols = x1 - x0, count = (y1 - y0) * cols;
            for (index_t e0 = 0; e0 < count; e0 += kChannelRows) {
              const index_t rows = std::min<index_t>(kChannelRows, count - e0);
              const float* px[kChannelRows];
              float* out[kChannelRows];
              for (index_t e = 0; e < rows; ++e) {
                const index_t q = (y0 + (e0 + e) / cols) * s.out_w + x0 + (e0 + e) % cols;
                px[e] = dy + q;
                out[e] = sums + (pixel_offset(q, p, s) + tap) * width;
              }
              channel_block_any(width, rows, px, step, Og, w, width, nullptr, out);
            }
          }
        }
        // Channels-last padded sums -> the NCHW planes (pixels no output reads get zero).
        float* dx = grad_input + (n * C + c0) * H * W;
        const index_t read_cols = std::clamp<index_t>(p.pw - s.pad_w, 0, W);
        for (index_t y = 0; y < H; ++y) {
          const index_t u = y + s.pad_h, cols = u < p.ph ? read_cols : 0;
          transpose_tiles<false>(sums + (u * p.pw + s.pad_w) * width, cols, width, width,
                                 dx + y * W, H * W);
          for (index_t l = 0; l < width && cols < W; ++l)
            std::fill(dx + l * H * W + y * W + cols, dx + l * H * W + (y + 1) * W, 0.0f);
        }
      }
    }
  }
  if (!grad_weight) return;
  // Samples staged at once: padded inputs [n][c][plane] and dY^T [n][pixel][o].
  const index_t per_sample = C * plane + OHW * O;
  const index_t nb_max = std::clamp<index_t>(kChannelStage / per_sample, 1, s.batch);
  float* planes = scratch<float>(3, nb_max * C * plane);
  float* dyt = scratch<float>(2, nb_max * OHW * O);
  // Per kernel tap t = (i, j): the pixels (n, q) whose tap t lies inside the input (the
  // others multiply padding: skipped, as in the forward), as their tap's offset from the
  // channel's plane (step) and their row of dY^T (dy_row); nothing when all of them do.
  index_t* step = scratch<index_t>(1, 2 * KK * nb_max * OHW);
  index_t* dy_row = step + KK * nb_max * OHW;
  std::vector<index_t> pixels(static_cast<std::size_t>(KK));
  std::vector<char> every(static_cast<std::size_t>(KK));
  float* sums = scratch<float>(0, R * Og);  // [c][tap][o of c's group], summed over every chunk in turn
  std::fill(sums, sums + R * Og, 0.0f);
  // Output-channel blocks within groups; each block's items take its group's channels.
  const index_t group_blocks = (Og + kChannelBlock - 1) / kChannelBlock, blocks = G * group_blocks;
  const index_t groups = (Cg + kChannelRows - 1) / kChannelRows;  // of a group's channels, per kernel tap
  for (index_t n0 = 0; n0 < s.batch; n0 += nb_max) {
    const index_t nb = std::min(nb_max, s.batch - n0);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t n = 0; n < nb; ++n) {
      pad_sample(input + (n0 + n) * C * H * W, planes + n * C * plane, p, s, n0 == 0);
      transpose_tiles<false>(grad_output + (n0 + n) * O * OHW, O, OHW, OHW, dyt + n * OHW * O, O);
    }
    for (index_t i = 0; i < s.kernel_h; ++i)
      for (index_t j = 0; j < s.kernel_w; ++j) {
        const index_t t = i * s.kernel_w + j, tap = p.offset(i * s.dilation_h, j * s.dilation_w);
        index_t y0, y1, x0, x1, count = 0;
        inside_run(i * s.dilation_h - s.pad_h, s.stride_h, s.out_h, s.height, y0, y1);
        inside_run(j * s.dilation_w - s.pad_w, s.stride_w, s.out_w, s.width, x0, x1);
        for (index_t n = 0; n < nb; ++n)
          for (index_t y = y0; y < y1; ++y)
            for (index_t x = x0; x < x1; ++x, ++count) {
              const index_t q = y * s.out_w + x;
              step[t * nb * OHW + count] = n * C * plane + pixel_offset(q, p, s) + tap;
              dy_row[t * nb * OHW + count] = (n * OHW + q) * O;
            }
        pixels[t] = count;
        every[t] = count == nb * OHW;
      }
    // Items (channel block, kernel tap, group of 6 channels), block-major: a thread's items
    // share dY^T's block.
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t item = 0; item < blocks * KK * groups; ++item) {
      const index_t kb = item / (KK * groups), g = kb / group_blocks, t = item / groups % KK;
      const index_t o1 = kb % group_blocks * kChannelBlock, o0 = g * Og + o1;  // in the group, overall
      const index_t c0 = g * Cg + (item % groups) * kChannelRows;
      const index_t width = std::min(kChannelBlock, Og - o1);
      const index_t rows = std::min<index_t>(kChannelRows, (g + 1) * Cg - c0);
      const float* px[kChannelRows];
      float* out[kChannelRows];
      for (index_t m = 0; m < rows; ++m) {
        px[m] = planes + (c0 + m) * plane;
        out[m] = sums + ((c0 + m) * KK + t) * Og + o1;
      }
      channel_block_any(width, rows, px, step + t * nb * OHW, pixels[t], dyt + o0, O, nullptr, out,
                        every[t] ? nullptr : dy_row + t * nb * OHW);
    }
  }
  const index_t Rg = R / G;
  for (index_t g = 0; g < G; ++g)
    transpose_tiles<true>(sums + g * Rg * Og, Rg, Og, Og, grad_weight + g * Og * Rg, Rg);
}

#endif  // __AVX512F__

}  // namespace

template <typename T>
void conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                    const Conv2dShape& s) {
  const index_t O = s.out_channels, G = s.groups, OHW = s.out_h * s.out_w;
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, Rg = R / G, Og = O / G, Cg = s.in_channels / G;
  if (s.batch == 0 || O == 0 || OHW == 0) return;
  if (depthwise_applies(s)) {
    depthwise_forward(input, weight, bias, output, s);
    return;
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (grouped_direct_applies(s)) {
      direct_forward(input, weight, bias, output, s);
      return;
    }
    if ((few_tiles(s) && channel_direct_applies(s)) || channel_grouped_applies(s)) {
      channel_direct_forward(input, weight, bias, output, s);
      return;
    }
  }
#endif
  if (winograd_applies(s)) {
    winograd_forward(input, weight, bias, output, s);
    return;
  }
  if (pointwise_applies(s)) {
    pointwise_forward(input, weight, bias, output, s);
    return;
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (direct_applies(s)) {
      direct_forward(input, weight, bias, output, s);
      return;
    }
    if (channel_direct_applies(s)) {
      channel_direct_forward(input, weight, bias, output, s);
      return;
    }
  }
#endif
  if (sample_parallel(s)) {
    // Blocks of `per` consecutive samples: per group one col and one GEMM (wide enough to
    // amortize the BLAS's packing of W), then scattered into NCHW with the bias. A group's
    // columns at a time stay in L2, where a sample's whole matrix (R x OHW: 7 MB on
    // 8x256x56x56 s2 in 32 groups) went to memory and back; the same products either way.
    const index_t per = block_samples(s), blocks = (s.batch + per - 1) / per;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * R * OHW))
    for (index_t k = 0; k < blocks; ++k) {
      const index_t n0 = k * per, nb = std::min(per, s.batch - n0), L = nb * OHW;
      T* out = nb == 1 ? output + n0 * O * OHW : scratch<T>(5, O * L);
      T* col = scratch<T>(3, Rg * L);  // this thread's
      for (index_t g = 0; g < G; ++g) {
        im2col(input, col, n0, nb, s, g * Cg, Cg);
        gemm_serial<T>(false, false, Og, L, Rg, T(1), weight + g * Og * Rg, Rg, col, L, T(0), out + g * Og * L, L);
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
  const index_t R = s.in_channels * s.kernel_h * s.kernel_w, Rg = R / G, Og = O / G, Cg = s.in_channels / G;
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
  if (depthwise_applies(s)) {
    depthwise_backward(input, weight, grad_output, grad_input, grad_weight, s);
    return;
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if ((few_tiles(s) && channel_backward_applies(s)) || channel_grouped_backward_applies(s)) {
      channel_direct_backward(input, weight, grad_output, grad_input, grad_weight, s);
      return;
    }
  }
#endif
  if (winograd_applies(s)) {
    winograd_backward(input, weight, grad_output, grad_input, grad_weight, s);
    return;
  }
  if (pointwise_applies(s)) {
    pointwise_backward(input, weight, grad_output, grad_input, grad_weight, s);
    return;
  }
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (channel_backward_applies(s)) {
      channel_direct_backward(input, weight, grad_output, grad_input, grad_weight, s);
      return;
    }
  }
#endif
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
        // A group at a time, its columns in L2 (as in the forward).
        for (index_t g = 0; g < G; ++g) {
          if (grad_input) {
            T* dcol = scratch<T>(5, Rg * L);  // this thread's
            gemm_serial<T>(true, false, Rg, L, Og, T(1), weight + g * Og * Rg, Rg, dy + g * Og * L, L, T(0), dcol, L);
            col2im(dcol, grad_input, n0, nb, s, g * Cg, Cg);
          }
          if (partial) {
            T* col = scratch<T>(3, Rg * L);
            im2col(input, col, n0, nb, s, g * Cg, Cg);
            gemm_serial<T>(false, true, Og, Rg, L, T(1), dy + g * Og * L, L, col, L, T(1), partial + g * Og * Rg, Rg);
          }
        }
      }
    }
    if (grad_weight) add_partials(grad_weight, partials, groups, O * Rg);
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
