// 2-D convolution by im2col + GEMM (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html).
//
// Batches of 4 or more samples run sample-parallel: each OpenMP thread unfolds one sample
// into its own cache-sized col (R x OH*OW, R = C*KH*KW) and calls the single-threaded BLAS
//   forward          out[n] (O x OHW)   = W (O x R/G) @ col          (straight into NCHW)
//   grad of input    dcol (R x OHW)     = W^T @ dY[n]                 (then folded back, col2im)
//   grad of weight   partial[group]    += dY[n] @ col^T               (summed over fixed groups)
// Smaller batches unfold a chunk of samples into one col (R x nb*OH*OW) and run ONE large
// GEMM per product, threaded by fastdl's tiled gemm (see runtime.cpp). Float32 forwards
// whose rows of outputs fill 16-lane vectors skip col altogether where AVX-512 is built
// in: see direct_forward below.
// Every split — sample groups, chunks, GEMM tiles — depends on the shapes only, never on
// the thread count, so results are bitwise reproducible on any number of threads.
#include <algorithm>
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
  const Phases p = phases_of(s);
  const index_t plane = p.size();
  // Each tap's offset in the sample's phase planes: channel c's planes at c * plane.
  index_t* tap = scratch<index_t>(14, R);
  for (index_t c = 0; c < C; ++c)
    for (index_t i = 0; i < s.kernel_h; ++i)
      for (index_t j = 0; j < s.kernel_w; ++j)
        tap[(c * s.kernel_h + i) * s.kernel_w + j] = c * plane + p.offset(i * s.dilation_h, j * s.dilation_w);
  // Weights as [channel block][tap][8 channels], zero past O; bias likewise.
  const index_t blocks = (O + kDirectChannels - 1) / kDirectChannels;
  float* packed = scratch<float>(15, blocks * kDirectChannels * (R + 1));
  float* packed_bias = packed + blocks * kDirectChannels * R;
  for (index_t b = 0; b < blocks; ++b) {
    for (int k = 0; k < kDirectChannels; ++k) {
      const index_t o = b * kDirectChannels + k;
      for (index_t r = 0; r < R; ++r)
        packed[(b * R + r) * kDirectChannels + k] = o < O ? weight[o * R + r] : 0.0f;
      packed_bias[b * kDirectChannels + k] = o < O && bias ? bias[o] : 0.0f;
    }
  }
  // Work items: samples, each cut into row ranges when the batch is small (shape-only).
  // Each item splits its sample's whole phase planes: C*H*W copies against the C*KK*O
  // FMAs per output that follow, so the repeat for small batches costs next to nothing.
  const index_t pieces = std::clamp<index_t>((8 + s.batch - 1) / s.batch, 1, OH);
  const index_t rows_per = (OH + pieces - 1) / pieces;
  const index_t vectors = (OW + kDirectLanes - 1) / kDirectLanes;
  const index_t row_pieces = (vectors + kDirectVectors - 1) / kDirectVectors;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.batch * O * OH * OW * R))
  for (index_t item = 0; item < s.batch * pieces; ++item) {
    const index_t n = item / pieces, y0 = (item % pieces) * rows_per;
    const index_t y1 = std::min(OH, y0 + rows_per);
    if (y0 >= y1) continue;
    // The sample's phase planes, plus one vector of zeros read by the last row's last lanes.
    float* phases = scratch<float>(6, C * plane + kDirectLanes);
    for (index_t c = 0; c < C; ++c) split_phases(input + (n * C + c) * H * W, phases + c * plane, p, s);
    std::fill(phases + C * plane, phases + C * plane + kDirectLanes, 0.0f);
    for (index_t y = y0; y < y1; ++y) {
      for (index_t b = 0; b < blocks; ++b) {
        const int valid = static_cast<int>(std::min<index_t>(kDirectChannels, O - b * kDirectChannels));
        float* out = output + ((n * O + b * kDirectChannels) * OH + y) * OW;
        const float* w = packed + b * R * kDirectChannels;
        const float* bb = packed_bias + b * kDirectChannels;
        // The row's vectors in `pieces` runs of near-equal length (7 = 3 + 2 + 2, not 3 + 3 + 1).
        for (index_t k = 0, v0 = 0; k < row_pieces; ++k) {
          const index_t nv = vectors / row_pieces + (k < vectors % row_pieces ? 1 : 0);
          const index_t x0 = v0 * kDirectLanes;
          const index_t last = std::min(kDirectLanes, OW - (x0 + (nv - 1) * kDirectLanes));
          const float* base = phases + y * p.pw + x0;
          if (nv == 3) direct_block<3>(base, tap, R, w, bb, out + x0, OH * OW, valid, last);
          else if (nv == 2) direct_block<2>(base, tap, R, w, bb, out + x0, OH * OW, valid, last);
          else direct_block<1>(base, tap, R, w, bb, out + x0, OH * OW, valid, last);
          v0 += nv;
        }
      }
    }
  }
}

#endif  // __AVX512F__

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
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    if (direct_applies(s)) {
      direct_forward(input, weight, bias, output, s);
      return;
    }
  }
#endif
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
