// Depthwise 2-D convolution (groups = in_channels = out_channels): MobileNet's layers,
// where im2col + GEMM multiplies a 1 x (KH KW) filter by its column per channel
// (16x64x28x28, 3x3: 11 ms forward+backward on one thread, PyTorch 3.9; 8x96x56x56 3x3
// stride 2: 9.4 ms, PyTorch 6.2).
//
// Every pass runs FLAT over a zero-padded plane. With the input plane padded to P
// (Hp x Wp, Hp = H + 2 ph, Wp = W + 2 pw), output (y, x) is
//   sum over taps (i, j) of w[i][j] P[(y + i dh) Wp + x + j dw],
// so at flat index k = y Wp + x every tap reads P[k + i dh Wp + j dw]: one long unit-stride
// loop per plane, whatever the row width (the columns x >= OW of each flat row are junk,
// computed and dropped). The same holds for
//   grad of input   grad_P[u][v] = sum over taps of w[i][j] dY[u - i dh][v - j dw],
//                   flat over dY padded by (KH-1) dh rows and (KW-1) dw columns each side;
//   grad of weight  dW[i][j] = sum over samples and real k of dY0[k] P[k + i dh Wp + j dw],
//                   dY0 being dY in rows of Wp, the junk columns skipped by a select.
// Buffers are zero once per call and thread (their borders never change), then each plane
// copies in its interior rows.
//
// Stride (sh, sw): the padded plane is split into sh x sw phases, phase (a, b) holding rows
// a, a + sh, .. and columns b, b + sw, .. (Hq x Wq each). Tap (i, j) reads one phase,
// ((i dh) % sh, (j dw) % sw), at (y + (i dh) / sh, x + (j dw) / sw): a stride-1 read, so
// the forward and the weight gradient are the passes above over the phases (flat index
// k = y Wq + x, each tap's offset taking its phase's place in the buffer). The input
// gradient of phase (a, b) gathers only that phase's taps, a stride-1 pass over dY per
// phase, and the phases are interleaved back into rows. With stride 1 there is one phase,
// the padded plane itself. (8x96x56x56 3x3 stride 2, one thread: f+b 9.4 -> 3.8 ms;
// 8x240x28x28 5x5 stride 2: 19.5 -> 3.9 ms, PyTorch 11.5.)
//
// Order: each output adds its bias, then its taps in row-major order; each weight
// gradient sums its samples in order (float lanes per plane, combined in a fixed order,
// in double across samples). Planes (forward) and channels (backward) are split between
// threads whole, so results are bitwise the same on any thread count.
#include <algorithm>
#include <vector>

#include "cpu/copy.h"
#include "cpu/kernels.h"

namespace fastdl::cpu {
namespace {

constexpr int kSlot = 14;        // scratch slot (common.h): this thread's buffers
constexpr index_t kBlock = 64;   // outputs per register block
constexpr index_t kGrain = 16;   // flat lengths are multiples of this (a float vector, two double ones)

index_t round_up(index_t n, index_t m) { return (n + m - 1) / m * m; }

struct Geometry {
  index_t H, W, OH, OW, ph, pw, sh, sw, dh, dw, kh, kw;
  index_t Hp, Wp;      // padded input plane
  index_t Hq, Wq, PS;  // one stride phase of it (rows ceil(Hp / sh), columns ceil(Wp / sw)); its size
  index_t phases;      // sh x sw, phase (a, b) = rows a, a + sh, .. and columns b, b + sw, .. of P
  index_t L;           // flat outputs per plane, OH * Wq, rounded up to kGrain
  index_t th, tw, Wg;  // dY's padding for the input gradient (in phase steps); its row width
  index_t LG;          // flat input-gradient entries per phase, Hq * Wg, rounded up to kGrain
  std::vector<index_t> forward_taps;   // per tap: its phase's base + its offset in the phase
  std::vector<index_t> backward_taps;  // per tap: dY's offset, the taps grouped by phase
  std::vector<index_t> backward_order; // the tap each backward_taps entry is
  std::vector<index_t> phase_taps;     // per phase: where its taps start; then the total
  explicit Geometry(const Conv2dShape& s)
      : H(s.height), W(s.width), OH(s.out_h), OW(s.out_w), ph(s.pad_h), pw(s.pad_w), sh(s.stride_h),
        sw(s.stride_w), dh(s.dilation_h), dw(s.dilation_w), kh(s.kernel_h), kw(s.kernel_w) {
    Hp = H + 2 * ph, Wp = W + 2 * pw;
    Hq = (Hp + sh - 1) / sh, Wq = (Wp + sw - 1) / sw, PS = Hq * Wq, phases = sh * sw;
    L = round_up(OH * Wq, kGrain);
    th = (kh - 1) * dh / sh, tw = (kw - 1) * dw / sw, Wg = Wq + tw;
    LG = round_up(Hq * Wg, kGrain);
    // Tap (i, j) reads phase ((i dh) % sh, (j dw) % sw) at (y + (i dh) / sh, x + (j dw) / sw);
    // with stride 1 the one phase is P itself.
    const auto phase_of = [&](index_t i, index_t j) { return (i * dh % sh) * sw + j * dw % sw; };
    for (index_t i = 0; i < kh; ++i)
      for (index_t j = 0; j < kw; ++j)
        forward_taps.push_back(phase_of(i, j) * PS + i * dh / sh * Wq + j * dw / sw);
    for (index_t q = 0; q < phases; ++q) {
      phase_taps.push_back(static_cast<index_t>(backward_taps.size()));
      for (index_t i = 0; i < kh; ++i)
        for (index_t j = 0; j < kw; ++j)
          if (phase_of(i, j) == q) {
            backward_taps.push_back((th - i * dh / sh) * Wg + (tw - j * dw / sw));
            backward_order.push_back(i * kw + j);
          }
    }
    phase_taps.push_back(static_cast<index_t>(backward_taps.size()));
  }
  // Entries each buffer needs: every phase, whole blocks, and every tap's reach past them.
  index_t padded_size() const {
    return std::max(phases * PS, (phases - 1) * PS + L + th * Wq + tw + kBlock);
  }
  index_t grad_padded_size() const { return LG + th * Wg + tw + kBlock; }
};

// Rows of `rows` x `cols` from src (row stride cols) into dst at (top, left), row stride ld.
template <typename T>
void place(const T* src, index_t rows, index_t cols, T* dst, index_t ld, index_t top, index_t left) {
  for (index_t r = 0; r < rows; ++r) copy_overlapping(dst + (top + r) * ld + left, src + r * cols, cols);
}

// Row r of a plane (width W) into the padded plane's phases at `phased`: padded column
// c + pw goes to phase column (c + pw) / sw of phase (c + pw) % sw; `row` is the padded
// row's place in its phase.
template <typename T>
__attribute__((always_inline)) inline void place_row(const T* src, const Geometry& g, T* row) {
  if (g.sw == 1) {
    copy_overlapping(row + g.pw, src, g.W);
  } else if (g.sw == 2) {
    // Column 2m + e of the input: phase (e + pw) % 2, column (e + pw) / 2 + m.
    T* even = row + (g.pw % 2) * g.PS + g.pw / 2;
    T* odd = row + ((1 + g.pw) % 2) * g.PS + (1 + g.pw) / 2;
    deinterleave_pairs(src, g.W / 2, even, odd);
    if (g.W % 2) even[g.W / 2] = src[g.W - 1];
  } else {
    for (index_t c = 0; c < g.W; ++c) row[(c + g.pw) % g.sw * g.PS + (c + g.pw) / g.sw] = src[c];
  }
}

// A plane (H x W) into the zero-padded plane's phases (whose borders stay zero). Inline,
// the stride-1 case as a plain `place`: a call per row doubled the forward on 7x7 planes,
// and the general loop's per-row stride tests still cost 8% there (0.36 vs 0.39 ms).
// Padded row r + ph is row u of row phase a, counted rather than divided: an integer
// division per row was a third of the forward on 14x14 planes.
template <typename T>
__attribute__((always_inline)) inline void place_phases(const T* src, const Geometry& g, T* phased) {
  if (g.phases == 1) return place(src, g.H, g.W, phased, g.Wp, g.ph, g.pw);
  for (index_t r = 0, a = g.ph % g.sh, u = g.ph / g.sh; r < g.H; ++r) {
    place_row(src + r * g.W, g, phased + a * g.sw * g.PS + u * g.Wq);
    if (++a == g.sh) a = 0, ++u;
  }
}

// One input-gradient row (width W) from its row of the phases' flat gradients (`row`, the
// column phases LG apart).
template <typename T>
__attribute__((always_inline)) inline void take_row(const T* row, const Geometry& g, T* dst) {
  if (g.sw == 1) {
    copy_overlapping(dst, row + g.pw, g.W);
  } else if (g.sw == 2) {
    const T* even = row + (g.pw % 2) * g.LG + g.pw / 2;
    const T* odd = row + ((1 + g.pw) % 2) * g.LG + (1 + g.pw) / 2;
    interleave_pairs(even, odd, g.W / 2, dst);
    if (g.W % 2) dst[g.W - 1] = even[g.W / 2];
  } else {
    for (index_t c = 0; c < g.W; ++c) dst[c] = row[(c + g.pw) % g.sw * g.LG + (c + g.pw) / g.sw];
  }
}

// A plane's input gradient (H x W) from the phases' flat gradients (each LG entries, rows
// of Wg): the inverse of place_phases.
template <typename T>
__attribute__((always_inline)) inline void take_rows(const T* flats, const Geometry& g, T* dst) {
  if (g.phases == 1) {
    for (index_t y = 0; y < g.H; ++y) copy_overlapping(dst + y * g.W, flats + (y + g.ph) * g.Wg + g.pw, g.W);
    return;
  }
  for (index_t r = 0, a = g.ph % g.sh, u = g.ph / g.sh; r < g.H; ++r) {
    take_row(flats + a * g.sw * g.LG + u * g.Wg, g, dst + r * g.W);
    if (++a == g.sh) a = 0, ++u;
  }
}

// out[k0 + k] = first + sum over taps t of w[t] src[k0 + k + tap[t]] for k < NV vectors:
// the block stays in registers across the taps. Written with explicit 64-byte vectors: as
// a plain loop GCC 12 vectorized the taps with gathers instead.
template <index_t NV, typename T>
__attribute__((always_inline)) inline void taps_block(const T* __restrict src, const index_t* tap, const T* w,
                                                      index_t taps, T first, index_t k0, T* __restrict out) {
  typedef T V __attribute__((vector_size(64)));
  typedef T Unaligned __attribute__((vector_size(64), aligned(sizeof(T))));
  constexpr index_t kWidth = 64 / sizeof(T);
  V acc[NV];
  for (index_t v = 0; v < NV; ++v) acc[v] = first - V{};  // x - 0 keeps -0
  for (index_t t = 0; t < taps; ++t) {
    const V wt = w[t] - V{};
    const T* s = src + k0 + tap[t];
    for (index_t v = 0; v < NV; ++v) acc[v] += wt * *reinterpret_cast<const Unaligned*>(s + v * kWidth);
  }
  for (index_t v = 0; v < NV; ++v) *reinterpret_cast<Unaligned*>(out + k0 + v * kWidth) = acc[v];
}

// out[k] = first + sum over taps t of w[t] src[k + tap[t]], k in [0, n), n a multiple of
// kGrain: blocks of kBlock outputs, then the last 1-7 vectors in one block. Whole blocks
// only wasted much on small planes: a 7x7 plane under a 5x5 kernel has 77 flat outputs,
// 128 in whole blocks, 80 in vectors. Those 5 vectors as a block of 4 and a block of 1
// ran two chains of 25 dependent FMAs each; as one block, one (8x1152x7x7 forward about
// 5% faster, 1.0 -> 0.95 ms; results the same).
template <typename T>
void flat_taps(const T* __restrict src, const index_t* tap, const T* w, index_t taps, T first,
               index_t n, T* __restrict out) {
  constexpr index_t kWidth = 64 / sizeof(T), kVectors = kBlock / kWidth;
  index_t k0 = 0;
  for (; (n - k0) / kWidth > 7; k0 += kBlock) taps_block<kVectors>(src, tap, w, taps, first, k0, out);
  switch ((n - k0) / kWidth) {
    case 0: break;
    case 1: taps_block<1>(src, tap, w, taps, first, k0, out); break;
    case 2: taps_block<2>(src, tap, w, taps, first, k0, out); break;
    case 3: taps_block<3>(src, tap, w, taps, first, k0, out); break;
    case 4: taps_block<4>(src, tap, w, taps, first, k0, out); break;
    case 5: taps_block<5>(src, tap, w, taps, first, k0, out); break;
    case 6: taps_block<6>(src, tap, w, taps, first, k0, out); break;
    default: taps_block<7>(src, tap, w, taps, first, k0, out); break;
  }
}

// totals[t] += sum over k in [0, n) with valid[k] != 0 of a[k] b[k + tap[t]], for every
// tap t at once (n a multiple of kGrain): one pass over a, one vector of lanes per tap,
// each combined in a fixed order in double. The junk columns are skipped by a select, not
// multiplied by zero: an inf or NaN input read there must not reach a weight gradient
// whose windows never hold it.
template <typename T>
void dots(const T* __restrict a, const T* __restrict b, const index_t* tap, index_t taps,
          const T* __restrict valid, index_t n, double* totals) {
  typedef T V __attribute__((vector_size(64)));
  typedef T Unaligned __attribute__((vector_size(64), aligned(sizeof(T))));
  constexpr index_t kWidth = 64 / sizeof(T);
  constexpr index_t kTaps = 16;  // taps per pass: accumulators held in registers
  for (index_t t0 = 0; t0 < taps; t0 += kTaps) {
    const index_t count = std::min(kTaps, taps - t0);
    V acc[kTaps] = {};
    for (index_t k = 0; k < n; k += kWidth) {
      const V x = *reinterpret_cast<const Unaligned*>(a + k);
      const auto keep = *reinterpret_cast<const V*>(valid + k) != V{};
      for (index_t t = 0; t < count; ++t) {
        const V product = x * *reinterpret_cast<const Unaligned*>(b + k + tap[t0 + t]);
        acc[t] += keep ? product : V{};
      }
    }
    for (index_t t = 0; t < count; ++t) {
      double sum = 0.0;
      for (index_t l = 0; l < kWidth; ++l) sum += static_cast<double>(acc[t][l]);
      totals[t0 + t] += sum;
    }
  }
}

}  // namespace

bool depthwise_applies(const Conv2dShape& s) {
  if (!winograd_is_enabled()) return false;  // the switch that selects im2col + GEMM
  return s.groups > 1 && s.groups == s.in_channels && s.groups == s.out_channels && s.out_h > 0 && s.out_w > 0 && s.kernel_h * s.kernel_w <= 64 &&
         (s.height + 2 * s.pad_h + 2 * s.kernel_h * s.dilation_h) * (s.width + 2 * s.pad_w + 2 * s.kernel_w * s.dilation_w) <=
             (index_t(1) << 20);  // a thread's buffers: a few planes, at most tens of MB
}

template <typename T>
void depthwise_forward(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s) {
  const Geometry g(s);
  const index_t C = s.in_channels, planes = s.batch * C, taps = g.kh * g.kw;
  const index_t HW = g.H * g.W, OHW = g.OH * g.OW;
#pragma omp parallel num_threads(threads_for(planes * taps * g.L))
  {
    const index_t size = g.padded_size();
    T* padded = scratch<T>(kSlot, size + g.L);
    T* flat = padded + size;
    std::fill(padded, padded + size, T(0));
#pragma omp for schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      const index_t c = p % C;
      place_phases(input + p * HW, g, padded);
      flat_taps(padded, g.forward_taps.data(), weight + c * taps, taps, bias ? bias[c] : T(0), g.L, flat);
      T* out = output + p * OHW;
      for (index_t y = 0; y < g.OH; ++y) copy_overlapping(out + y * g.OW, flat + y * g.Wq, g.OW);
    }
  }
}

template <typename T>
void depthwise_backward(const T* input, const T* weight, const T* grad_output, T* grad_input, T* grad_weight,
                        const Conv2dShape& s) {
  const Geometry g(s);
  const index_t C = s.in_channels, taps = g.kh * g.kw;
  const index_t HW = g.H * g.W, OHW = g.OH * g.OW;
#pragma omp parallel num_threads(threads_for(s.batch * C * taps * (g.L + g.LG)))
  {
    const index_t size = g.padded_size(), grad_size = g.grad_padded_size();
    // First (scratch is 64-byte aligned, L a whole number of blocks): 1 at the flat
    // positions of real outputs, 0 in the junk columns.
    T* valid = scratch<T>(kSlot, 2 * g.L + size + grad_size + g.phases * g.LG);
    T* padded = valid + g.L;
    T* dy0 = padded + size;        // dY in rows of Wq, zero junk columns (weight gradient)
    T* dyp = dy0 + g.L;            // dY padded for the input gradient
    T* flats = dyp + grad_size;    // the input gradient, flat, per phase
    std::fill(padded, flats, T(0));
    for (index_t k = 0; k < g.L; ++k) valid[k] = k < g.OH * g.Wq && k % g.Wq < g.OW ? T(1) : T(0);
#pragma omp for schedule(static)
    for (index_t c = 0; c < C; ++c) {
      double totals[64] = {};  // per tap, over the samples in order (taps <= 64 here)
      T w[64];                 // the channel's weights in backward_taps' order
      for (index_t t = 0; t < taps; ++t) w[t] = weight[c * taps + g.backward_order[t]];
      for (index_t n = 0; n < s.batch; ++n) {
        const index_t p = n * C + c;
        const T* dy = grad_output + p * OHW;
        if (grad_input) {
          // Phase (a, b) of the padded input's gradient: its taps, as a stride-1 pass over dY.
          place(dy, g.OH, g.OW, dyp, g.Wg, g.th, g.tw);
          for (index_t q = 0; q < g.phases; ++q) {
            const index_t t0 = g.phase_taps[q], count = g.phase_taps[q + 1] - t0;
            flat_taps(dyp, g.backward_taps.data() + t0, w + t0, count, T(0), g.LG, flats + q * g.LG);
          }
          T* gin = grad_input + p * HW;
          take_rows(flats, g, gin);
        }
        if (grad_weight) {
          place_phases(input + p * HW, g, padded);
          place(dy, g.OH, g.OW, dy0, g.Wq, 0, 0);
          dots(dy0, padded, g.forward_taps.data(), taps, valid, g.L, totals);
        }
      }
      if (grad_weight)
        for (index_t t = 0; t < taps; ++t) grad_weight[c * taps + t] += static_cast<T>(totals[t]);
    }
  }
}

template void depthwise_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void depthwise_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void depthwise_backward<float>(const float*, const float*, const float*, float*, float*, const Conv2dShape&);
template void depthwise_backward<double>(const double*, const double*, const double*, double*, double*,
                                         const Conv2dShape&);

}  // namespace fastdl::cpu
