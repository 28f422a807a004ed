// Depthwise 2-D convolution (groups = in_channels = out_channels), stride 1: MobileNet's
// layers, where im2col + GEMM multiplies a 1 x (KH KW) filter by its column per channel
// (16x64x28x28, 3x3: 11 ms forward+backward on one thread, PyTorch 3.9).
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

index_t round_up(index_t n, index_t m) { return (n + m - 1) / m * m; }

struct Geometry {
  index_t H, W, OH, OW, ph, pw, dh, dw, kh, kw;
  index_t Hp, Wp;      // padded input plane
  index_t L;           // flat outputs per plane, OH * Wp, rounded up to kBlock
  index_t th, tw, Wg;  // dY's padding for the input gradient; its row width
  index_t LG;          // flat input-gradient entries, Hp * Wg, rounded up to kBlock
  std::vector<index_t> forward_taps, backward_taps;
  explicit Geometry(const Conv2dShape& s)
      : H(s.height), W(s.width), OH(s.out_h), OW(s.out_w), ph(s.pad_h), pw(s.pad_w),
        dh(s.dilation_h), dw(s.dilation_w), kh(s.kernel_h), kw(s.kernel_w) {
    Hp = H + 2 * ph, Wp = W + 2 * pw;
    L = round_up(OH * Wp, kBlock);
    th = (kh - 1) * dh, tw = (kw - 1) * dw, Wg = Wp + tw;
    LG = round_up(Hp * Wg, kBlock);
    for (index_t i = 0; i < kh; ++i)
      for (index_t j = 0; j < kw; ++j) {
        forward_taps.push_back(i * dh * Wp + j * dw);
        backward_taps.push_back((th - i * dh) * Wg + (tw - j * dw));
      }
  }
  // Entries each buffer needs: whole blocks, and every tap's reach past them.
  index_t padded_size() const { return L + forward_taps.back() + kBlock; }
  index_t grad_padded_size() const { return LG + backward_taps.front() + kBlock; }
};

// out[k] = first + sum over taps t of w[t] src[k + tap[t]], k in [0, n), n a multiple of
// kBlock: a block of outputs stays in registers across the taps. Written with explicit
// 64-byte vectors: as a plain loop GCC 12 vectorized the taps with gathers instead.
template <typename T>
void flat_taps(const T* __restrict src, const index_t* tap, const T* w, index_t taps, T first,
               index_t n, T* __restrict out) {
  typedef T V __attribute__((vector_size(64)));
  typedef T Unaligned __attribute__((vector_size(64), aligned(sizeof(T))));
  constexpr index_t kWidth = 64 / sizeof(T), kVectors = kBlock / kWidth;
  for (index_t k0 = 0; k0 < n; k0 += kBlock) {
    V acc[kVectors];
    for (index_t v = 0; v < kVectors; ++v) acc[v] = first - V{};  // x - 0 keeps -0
    for (index_t t = 0; t < taps; ++t) {
      const V wt = w[t] - V{};
      const T* s = src + k0 + tap[t];
      for (index_t v = 0; v < kVectors; ++v) acc[v] += wt * *reinterpret_cast<const Unaligned*>(s + v * kWidth);
    }
    for (index_t v = 0; v < kVectors; ++v) *reinterpret_cast<Unaligned*>(out + k0 + v * kWidth) = acc[v];
  }
}

// Rows of `rows` x `cols` from src (row stride cols) into dst at (top, left), row stride ld.
template <typename T>
void place(const T* src, index_t rows, index_t cols, T* dst, index_t ld, index_t top, index_t left) {
  for (index_t r = 0; r < rows; ++r) copy_overlapping(dst + (top + r) * ld + left, src + r * cols, cols);
}

// totals[t] += sum over k in [0, n) with valid[k] != 0 of a[k] b[k + tap[t]], for every
// tap t at once (n a multiple of kBlock): one pass over a, one vector of lanes per tap,
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
  return s.groups > 1 && s.groups == s.in_channels && s.groups == s.out_channels && s.stride_h == 1 &&
         s.stride_w == 1 && s.out_h > 0 && s.out_w > 0 && s.kernel_h * s.kernel_w <= 64 &&
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
      place(input + p * HW, g.H, g.W, padded, g.Wp, g.ph, g.pw);
      flat_taps(padded, g.forward_taps.data(), weight + c * taps, taps, bias ? bias[c] : T(0), g.L, flat);
      T* out = output + p * OHW;
      for (index_t y = 0; y < g.OH; ++y) copy_overlapping(out + y * g.OW, flat + y * g.Wp, g.OW);
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
    T* valid = scratch<T>(kSlot, 2 * g.L + size + grad_size + g.LG);
    T* padded = valid + g.L;
    T* dy0 = padded + size;        // dY in rows of Wp, zero junk columns (weight gradient)
    T* dyp = dy0 + g.L;            // dY padded for the input gradient
    T* flat = dyp + grad_size;     // the input gradient, flat
    std::fill(padded, flat, T(0));
    for (index_t k = 0; k < g.L; ++k) valid[k] = k < g.OH * g.Wp && k % g.Wp < g.OW ? T(1) : T(0);
#pragma omp for schedule(static)
    for (index_t c = 0; c < C; ++c) {
      double totals[64] = {};  // per tap, over the samples in order (taps <= 64 here)
      for (index_t n = 0; n < s.batch; ++n) {
        const index_t p = n * C + c;
        const T* dy = grad_output + p * OHW;
        if (grad_input) {
          place(dy, g.OH, g.OW, dyp, g.Wg, g.th, g.tw);
          flat_taps(dyp, g.backward_taps.data(), weight + c * taps, taps, T(0), g.LG, flat);
          T* gin = grad_input + p * HW;
          for (index_t y = 0; y < g.H; ++y) copy_overlapping(gin + y * g.W, flat + (y + g.ph) * g.Wg + g.pw, g.W);
        }
        if (grad_weight) {
          place(input + p * HW, g.H, g.W, padded, g.Wp, g.ph, g.pw);
          place(dy, g.OH, g.OW, dy0, g.Wp, 0, 0);
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
