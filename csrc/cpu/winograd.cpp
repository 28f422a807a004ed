// Winograd F(2x2, 3x3) convolution: 3x3 kernels, stride 1, any dilation (below), any groups
// with enough channels each (kMinChannels; the products below run per group).
//
// Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Each 2x2 block
// of outputs comes from a 4x4 input tile d and a 3x3 filter g as
//   y = A^T [ (G g G^T) ⊙ (B^T d B) ] A
// and the sum over input channels becomes, for each of the 16 transformed positions ξ,
// one matrix product  M_ξ (O x tiles) = U_ξ (O x C) · V_ξ (C x tiles)  — 16 multiplies
// per tile and channel pair instead of the 36 of direct convolution (2.25x fewer flops).
//
// The backward passes are the same bilinear form read the other way (transposition):
//   grad of input   dd = B [ Σ_o U ⊙ (A dy A^T) ] B^T        Z_ξ  = U_ξ^T · DY_ξ
//   grad of weight  dg = G^T [ Σ_t (A dy A^T) ⊙ V ] G       dU_ξ = DY_ξ · V_ξ^T
// so forward, grad_input and grad_weight all run as 16 BLAS products over transformed data.
//
// Threads: forward and grad_input split the batch into chunks of samples fixed by the shapes;
// grad_weight sums per-group partials over fixed groups of consecutive samples, then the
// groups in order. With chunks (or groups) enough for the team, each thread runs whole ones
// (own scratch, single-threaded BLAS); with fewer (a batch of one or two samples), they run
// one after another and the team splits each one's passes: channels for the transforms,
// the 16 ξ-products for the BLAS. Either way every value is computed by the same operations
// in the same order, so results are bitwise the same on any thread count.
#include <algorithm>
#include <atomic>
#include <climits>

#include "cpu/copy.h"
#include "cpu/kernels.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace fastdl::cpu {
namespace {

std::atomic<bool> winograd_enabled{true};

// Scratch slots (common.h): 0-5 im2col path, 7 runtime gemm.
constexpr int kSlotU = 8, kSlotV = 9, kSlotM = 10, kSlotZ = 11, kSlotPlane = 12, kSlotPartial = 13;
// Transformed elements per chunk of samples (2 MiB of float32): keeps a chunk near the cache.
constexpr index_t kChunkBudget = index_t(1) << 19;
constexpr index_t kWeightGradGroups = 8;
// Fewest tiles per chunk, forward and backward. A chunk's products are (O x Cg) x (Cg x L)
// for L = chunk x tiles; on thin ones (L of 16-32: 7x7 planes) the BLAS spends its time
// packing the 16 transformed weight planes, once per chunk: 8x512x7x7 -> 512 forward 35%
// in sgemm_oncopy at 2-sample chunks (0.75x PyTorch), 0.97x at one 8-sample chunk; the
// backward's 16x256x7x7 -> 256: 34 -> 19 ms.
constexpr index_t kMinTiles = 128;
// Fewest input and output channels (per group, for grouped layers) for Winograd. A layer
// with 1-7 channels does better direct (first layers: 3 -> 16 on 32x32); in a grouped one
// the products are small, but the alternative, im2col with one GEMM of 2-4 rows per group,
// is worse (16x64x28x28 in 16 groups: f+b 1.3 -> 1.9x PyTorch, 32 groups 2.3 -> 3.3x).
constexpr index_t kMinChannels = 8, kMinGroupChannels = 2;
// The 16 ξ-planes of V, M, DY and Z lie this many elements further apart than their size:
// plane strides that are multiples of 4 KiB would put the 16 streams of a tile transform
// in the same L1 set (measured: 2.5x slower forward on 32x64x32x32).
constexpr index_t kSkew = 16;
inline index_t plane_stride(index_t rows, index_t cols) { return rows * cols + kSkew; }

struct Tiling {
  index_t th, tw, tiles;  // tiles per sample (th x tw, 2x2 outputs each)
  index_t ph, pw;         // zero-padded input plane covering every tile: (2 th + 2) x (2 tw + 2)
  index_t chunk;          // samples per chunk
};

// Chunks hold as many samples as fit the budget, and at least min_tiles tiles.
Tiling make_tiling(const Conv2dShape& s, index_t channels_per_tile, index_t min_tiles = 1) {
  Tiling t{};
  t.th = (s.out_h + 1) / 2;
  t.tw = (s.out_w + 1) / 2;
  t.tiles = t.th * t.tw;
  t.ph = 2 * t.th + 2;
  t.pw = 2 * t.tw + 2;
  const index_t fits = kChunkBudget / std::max<index_t>(16 * channels_per_tile * t.tiles, 1);
  const index_t wide = (min_tiles + t.tiles - 1) / t.tiles;
  t.chunk = std::clamp<index_t>(std::max(fits, wide), 1, s.batch);
  return t;
}

// ---------------------------------------------------------------- the 4x4 transforms
// Each applies a 1-D transform to the columns, then to the rows, of a 4x4 array.

// U = G g G^T,  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
template <typename T>
inline void weight_transform(const T* g, T* u) {
  T r[12];  // 4 x 3
  for (int j = 0; j < 3; ++j) {
    r[j] = g[j];
    r[3 + j] = T(0.5) * (g[j] + g[3 + j] + g[6 + j]);
    r[6 + j] = T(0.5) * (g[j] - g[3 + j] + g[6 + j]);
    r[9 + j] = g[6 + j];
  }
  for (int i = 0; i < 4; ++i) {
    const T* a = r + 3 * i;
    T* o = u + 4 * i;
    o[0] = a[0];
    o[1] = T(0.5) * (a[0] + a[1] + a[2]);
    o[2] = T(0.5) * (a[0] - a[1] + a[2]);
    o[3] = a[2];
  }
}

// dg = G^T q G (4x4 -> 3x3),  G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]
template <typename T>
inline void weight_transform_adjoint(const T* q, T* g) {
  T r[12];  // 3 x 4
  for (int j = 0; j < 4; ++j) {
    r[j] = q[j] + T(0.5) * (q[4 + j] + q[8 + j]);
    r[4 + j] = T(0.5) * (q[4 + j] - q[8 + j]);
    r[8 + j] = T(0.5) * (q[4 + j] + q[8 + j]) + q[12 + j];
  }
  for (int i = 0; i < 3; ++i) {
    const T* a = r + 4 * i;
    T* o = g + 3 * i;
    o[0] = a[0] + T(0.5) * (a[1] + a[2]);
    o[1] = T(0.5) * (a[1] - a[2]);
    o[2] = T(0.5) * (a[1] + a[2]) + a[3];
  }
}

// A g A^T (2x2 -> 4x4),  A = [1 0; 1 1; 1 -1; 0 -1]
template <typename T>
inline void output_transform_adjoint(const T* g, T* m) {
  T r[8];  // 4 x 2
  for (int j = 0; j < 2; ++j) {
    r[j] = g[j];
    r[2 + j] = g[j] + g[2 + j];
    r[4 + j] = g[j] - g[2 + j];
    r[6 + j] = -g[2 + j];
  }
  for (int i = 0; i < 4; ++i) {
    const T* a = r + 2 * i;
    T* o = m + 4 * i;
    o[0] = a[0];
    o[1] = a[0] + a[1];
    o[2] = a[0] - a[1];
    o[3] = -a[1];
  }
}

// dd = B z B^T (4x4),  B = transpose of B^T above
template <typename T>
inline void input_transform_adjoint(const T* z, T* d) {
  T r[16];
  for (int j = 0; j < 4; ++j) {
    r[j] = z[j];
    r[4 + j] = z[4 + j] - z[8 + j] + z[12 + j];
    r[8 + j] = z[4 + j] + z[8 + j] - z[j];
    r[12 + j] = -z[12 + j];
  }
  for (int i = 0; i < 4; ++i) {
    const T* a = r + 4 * i;
    T* o = d + 4 * i;
    o[0] = a[0];
    o[1] = a[1] - a[2] + a[3];
    o[2] = a[1] + a[2] - a[0];
    o[3] = -a[3];
  }
}

// V = B^T d B (d: 4 rows x 4 columns), and y = A^T m A (2 x 2, row-major), for scalars or
// for 16-lane vectors of tiles alike: the row passes below all share these.
template <typename V>
inline void tile_input(const V d[4][4], V* v) {
  V r[4][4];
  for (int b = 0; b < 4; ++b) {
    r[0][b] = d[0][b] - d[2][b];
    r[1][b] = d[1][b] + d[2][b];
    r[2][b] = d[2][b] - d[1][b];
    r[3][b] = d[1][b] - d[3][b];
  }
  for (int i = 0; i < 4; ++i) {
    v[4 * i] = r[i][0] - r[i][2];
    v[4 * i + 1] = r[i][1] + r[i][2];
    v[4 * i + 2] = r[i][2] - r[i][1];
    v[4 * i + 3] = r[i][1] - r[i][3];
  }
}

template <typename V>
inline void tile_output(const V* m, V* y) {
  V r[8];
  for (int j = 0; j < 4; ++j) {
    r[j] = m[j] + m[4 + j] + m[8 + j];
    r[4 + j] = m[4 + j] - m[8 + j] - m[12 + j];
  }
  y[0] = r[0] + r[1] + r[2];
  y[1] = r[1] - r[2] - r[3];
  y[2] = r[4] + r[5] + r[6];
  y[3] = r[5] - r[6] - r[7];
}

// The row passes: the tiles of one row of tiles (float with AVX-512: 16 per step, below).

// V = B^T d B,  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: out[ξ * stride_xi + tx] for
// the tiles tx < tw whose 4 rows start at d (row length pw = 2 tw + 2).
template <typename T>
inline void input_transform_row(const T* d, index_t pw, index_t tw, T* out, index_t stride_xi) {
  for (index_t tx = 0; tx < tw; ++tx) {
    T tile[4][4], v[16];
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) tile[a][b] = d[a * pw + 2 * tx + b];
    tile_input(tile, v);
    for (int xi = 0; xi < 16; ++xi) out[xi * stride_xi + tx] = v[xi];
  }
}

// y = A^T m A + b (4x4 -> 2x2),  A^T = [1 1 1 0; 0 1 -1 -1], of the tiles tx < tw of a
// row of tiles, m[ξ] of tile tx at m + ξ * stride_xi + tx: output rows y0 and y1 (null:
// past the output) get columns 2 tx and 2 tx + 1 below `width`.
template <typename T>
inline void output_transform_row(const T* m, index_t stride_xi, index_t tw, T b, index_t width, T* y0,
                                 T* y1) {
  for (index_t tx = 0; tx < tw; ++tx) {
    T tile[16], y[4];
    for (int xi = 0; xi < 16; ++xi) tile[xi] = m[xi * stride_xi + tx];
    tile_output(tile, y);
    const index_t x = 2 * tx;
    y0[x] = y[0] + b;
    if (x + 1 < width) y0[x + 1] = y[1] + b;
    if (y1) {
      y1[x] = y[2] + b;
      if (x + 1 < width) y1[x + 1] = y[3] + b;
    }
  }
}

// m = A g A^T (2x2 -> 4x4) of the tiles tx < tw of a row of tiles of dY: g's rows from g0
// and g1 (null: past the output, zero), columns 2 tx and 2 tx + 1 (zero from `width` on);
// out[ξ * stride_xi + tx].
template <typename T>
inline void grad_output_transform_row(const T* g0, const T* g1, index_t width, index_t tw, T* out,
                                      index_t stride_xi) {
  for (index_t tx = 0; tx < tw; ++tx) {
    const index_t x = 2 * tx;
    const T g[4] = {g0[x], x + 1 < width ? g0[x + 1] : T(0), g1 ? g1[x] : T(0),
                    g1 && x + 1 < width ? g1[x + 1] : T(0)};
    T m[16];
    output_transform_adjoint(g, m);
    for (int xi = 0; xi < 16; ++xi) out[xi * stride_xi + tx] = m[xi];
  }
}

// Rows p, p + pw, .. p + 3 pw of a padded plane += the 4x4 tiles B z B^T of the tiles
// tx < tw of a row of tiles, z[ξ] of tile tx at z + ξ * stride_xi + tx, in tile order.
template <typename T>
inline void adjoint_transform_row(const T* z, index_t stride_xi, index_t tw, T* p, index_t pw) {
  for (index_t tx = 0; tx < tw; ++tx) {
    T q[16], d[16];
    for (int xi = 0; xi < 16; ++xi) q[xi] = z[xi * stride_xi + tx];
    input_transform_adjoint(q, d);
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) p[a * pw + 2 * tx + b] += d[4 * a + b];
  }
}

// Whole planes of tiles, row of tiles by row of tiles; float with AVX-512 takes two rows per
// step on narrow planes (below). Defined after the float row transforms, which they call.
template <typename T>
inline void input_transform_plane(const T* plane, const Tiling& t, T* out, index_t stride_xi);
template <typename T>
inline void output_transform_plane(const T* m, index_t stride_xi, const Tiling& t, T b, T* dst,
                                   index_t OH, index_t OW);
template <typename T>
inline void grad_output_transform_plane(const T* src, index_t OH, index_t OW, const Tiling& t, T* out,
                                        index_t stride_xi);
template <typename T>
inline void adjoint_transform_plane(const T* z, index_t stride_xi, const Tiling& t, T* plane);

#ifdef __AVX512F__
// The four row transforms for float, 16 tiles per step in 16-lane vectors, the last step's
// lanes masked: the loops above leave rows of 7 to 14 tiles (ResNet's 14x14 and 28x28
// planes) to scalar remainders and alias checks. Same operations, same order, same bits
// (the adjoint's too: a plane column gets the left tile's share, then the right one's).
typedef float Vec16 __attribute__((vector_size(64)));

// Lanes [0, n) of 16.
inline __mmask16 first_lanes(index_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}
inline Vec16 load_first(const float* p, index_t n) { return _mm512_maskz_loadu_ps(first_lanes(n), p); }
inline void store_first(float* p, index_t n, Vec16 v) { _mm512_mask_storeu_ps(p, first_lanes(n), v); }

// The even (odd) lanes of a then b: columns 2k (2k + 1) of the 32 they hold; and back,
// a and b interleaved: (a[0], b[0], a[1], ...), lanes 0-7 (lo) or 8-15 (hi) of each.
inline Vec16 even_lanes(Vec16 a, Vec16 b) {
  return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
}
inline Vec16 odd_lanes(Vec16 a, Vec16 b) {
  return _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
}
inline Vec16 interleave_lo(Vec16 a, Vec16 b) {
  return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
}
inline Vec16 interleave_hi(Vec16 a, Vec16 b) {
  return _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
}

// The even and odd columns of the 32 from p on, of which the first `count` exist (masked
// lanes read nothing and hold 0).
inline void split_pairs(const float* p, index_t count, Vec16& even, Vec16& odd) {
  const Vec16 lo = load_first(p, count), hi = load_first(p + 16, count - 16);
  even = even_lanes(lo, hi);
  odd = odd_lanes(lo, hi);
}

// q[ξ] = the first n of 16 tiles' values in the 16 ξ-planes from p on.
inline void load_planes(const float* p, index_t stride_xi, index_t n, Vec16* q) {
  for (int xi = 0; xi < 16; ++xi) q[xi] = load_first(p + xi * stride_xi, n);
}

// Columns interleaved: (even[0], odd[0], even[1], ...) as 32 columns from p, the first
// `count` of them stored.
inline void store_pairs(float* p, index_t count, Vec16 even, Vec16 odd) {
  store_first(p, count, interleave_lo(even, odd));
  store_first(p + 16, count - 16, interleave_hi(even, odd));
}

inline void input_transform_row(const float* d, index_t pw, index_t tw, float* out, index_t stride_xi) {
  for (index_t tx0 = 0; tx0 < tw; tx0 += 16) {
    const index_t n = tw - tx0, cols = pw - 2 * tx0;
    Vec16 c[4][4];  // [row][column 2 tx + b]
    for (int k = 0; k < 4; ++k) {
      split_pairs(d + k * pw + 2 * tx0, cols, c[k][0], c[k][1]);
      split_pairs(d + k * pw + 2 * tx0 + 2, cols - 2, c[k][2], c[k][3]);
    }
    Vec16 v[16];
    tile_input(c, v);
    for (int xi = 0; xi < 16; ++xi) store_first(out + xi * stride_xi + tx0, n, v[xi]);
  }
}

inline void output_transform_row(const float* m, index_t stride_xi, index_t tw, float b, index_t width,
                                 float* y0, float* y1) {
  const Vec16 bias = b - Vec16{};
  for (index_t tx0 = 0; tx0 < tw; tx0 += 16) {
    const index_t cols = width - 2 * tx0;
    Vec16 q[16];
    load_planes(m + tx0, stride_xi, tw - tx0, q);
    Vec16 y[4];
    tile_output(q, y);
    store_pairs(y0 + 2 * tx0, cols, y[0] + bias, y[1] + bias);
    if (y1) store_pairs(y1 + 2 * tx0, cols, y[2] + bias, y[3] + bias);
  }
}

inline void grad_output_transform_row(const float* g0, const float* g1, index_t width, index_t tw,
                                      float* out, index_t stride_xi) {
  for (index_t tx0 = 0; tx0 < tw; tx0 += 16) {
    const index_t n = tw - tx0, cols = width - 2 * tx0;
    Vec16 g[4];  // (row, column): (0, 2tx), (0, 2tx+1), (1, 2tx), (1, 2tx+1)
    split_pairs(g0 + 2 * tx0, cols, g[0], g[1]);
    if (g1) {
      split_pairs(g1 + 2 * tx0, cols, g[2], g[3]);
    } else {
      g[2] = g[3] = Vec16{};
    }
    Vec16 m[16];
    output_transform_adjoint(g, m);
    for (int xi = 0; xi < 16; ++xi) store_first(out + xi * stride_xi + tx0, n, m[xi]);
  }
}

inline void adjoint_transform_row(const float* z, index_t stride_xi, index_t tw, float* p, index_t pw) {
  // lane 0 <- carry's lane 15, lane k <- v's lane k - 1: the tile to the left's values.
  const __m512i left = _mm512_setr_epi32(15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30);
  Vec16 carry[4][2] = {};  // the previous step's d[a][2], d[a][3]
  for (index_t tx0 = 0; tx0 < tw; tx0 += 16) {
    const index_t n = tw - tx0;
    Vec16 q[16];
    load_planes(z + tx0, stride_xi, n, q);
    Vec16 d[16];
    input_transform_adjoint(q, d);
    for (int a = 0; a < 4; ++a) {
      const Vec16 d0 = d[4 * a], d1 = d[4 * a + 1], d2 = d[4 * a + 2], d3 = d[4 * a + 3];
      const Vec16 from_left0 = _mm512_permutex2var_ps(carry[a][0], left, d2);
      const Vec16 from_left1 = _mm512_permutex2var_ps(carry[a][1], left, d3);
      carry[a][0] = d2;
      carry[a][1] = d3;
      // Columns 2 tx0 .. 2 tx0 + 31 of row a: the left tile's share, then this tile's. A
      // partial last step also covers the last tile's right columns (lanes n of from_left).
      float* row = p + a * pw + 2 * tx0;
      const index_t cols = n < 16 ? 2 * n + 2 : 32;
      Vec16 even, odd;
      split_pairs(row, cols, even, odd);
      store_pairs(row, cols, (even + from_left0) + d0, (odd + from_left1) + d1);
    }
  }
  if (tw % 16 == 0 && tw > 0) {  // a full last step: the last tile's right columns
    for (int a = 0; a < 4; ++a) {
      p[a * pw + 2 * tw] += carry[a][0][15];
      p[a * pw + 2 * tw + 1] += carry[a][1][15];
    }
  }
}

// Planes of at most 7 (input) or 8 (output, dY) tiles per row: a row of tiles filled half a
// vector at best (7 of 16 lanes on 14x14 maps), so each step takes two rows, lanes 0-7 the
// first and 8-15 the second. A row's columns then fit one vector, and the pair's lanes
// come out of two row vectors by the same even/odd selection as above; the 16 ξ-planes
// get both rows' tiles, which lie end to end there, in one masked store.
constexpr index_t kPairTiles = 8;

// Lane k of the pair's layout -> position in the rows' tiles end to end, and back.
inline __m512i pair_to_flat(index_t tw) {
  alignas(64) int idx[16];
  for (int k = 0; k < 16; ++k) idx[k] = k < tw ? k : (k >= 8 && k - 8 < tw ? int(k - 8 + tw) : 15);
  return _mm512_load_si512(idx);
}
inline __m512i flat_to_pair(index_t tw) {
  alignas(64) int idx[16];
  for (int k = 0; k < 16; ++k) idx[k] = k < tw ? k : (k < 2 * tw ? int(8 + k - tw) : 7);
  return _mm512_load_si512(idx);
}

inline void input_transform_plane(const float* plane, const Tiling& t, float* out, index_t stride_xi) {
  const index_t pw = t.pw, tw = t.tw;
  if (2 * tw + 2 > 16) {  // a row's columns take more than a vector: row by row
    input_transform_plane<float>(plane, t, out, stride_xi);
    return;
  }
  const __m512i compact = flat_to_pair(tw);
  for (index_t ty = 0; ty < t.th; ty += 2) {
    const index_t pair = std::min<index_t>(2, t.th - ty);
    const float* d = plane + 2 * ty * pw;
    // Plane rows 2 ty .. 2 ty + 5 from columns 0 and 2 (the last two zero for a lone row;
    // a mask of no lanes reads nothing).
    const index_t last = pair == 2 ? pw : 0;
    Vec16 from0[6], from2[6];
#pragma GCC unroll 6
    for (int k = 0; k < 6; ++k) {
      from0[k] = load_first(d + k * pw, k < 4 ? pw : last);
      from2[k] = load_first(d + k * pw + 2, k < 4 ? pw - 2 : last - 2);
    }
    Vec16 c[4][4];  // [row][column 2 tx + b], lanes: the pair's tiles
    for (int k = 0; k < 4; ++k) {
      c[k][0] = even_lanes(from0[k], from0[k + 2]);
      c[k][1] = odd_lanes(from0[k], from0[k + 2]);
      c[k][2] = even_lanes(from2[k], from2[k + 2]);
      c[k][3] = odd_lanes(from2[k], from2[k + 2]);
    }
    Vec16 v[16];
    tile_input(c, v);
    for (int xi = 0; xi < 16; ++xi)
      store_first(out + xi * stride_xi + ty * tw, pair * tw, _mm512_permutexvar_ps(compact, v[xi]));
  }
}

inline void output_transform_plane(const float* m, index_t stride_xi, const Tiling& t, float b, float* dst,
                                   index_t OH, index_t OW) {
  const index_t tw = t.tw;
  if (tw > kPairTiles) {
    output_transform_plane<float>(m, stride_xi, t, b, dst, OH, OW);
    return;
  }
  const __m512i spread = pair_to_flat(tw);
  const Vec16 bias = b - Vec16{};
  for (index_t ty = 0; ty < t.th; ty += 2) {
    const index_t pair = std::min<index_t>(2, t.th - ty);
    Vec16 q[16];
    for (int xi = 0; xi < 16; ++xi)
      q[xi] = _mm512_permutexvar_ps(spread, load_first(m + xi * stride_xi + ty * tw, pair * tw));
    Vec16 y[4];
    tile_output(q, y);
    const Vec16 y00 = y[0] + bias, y01 = y[1] + bias, y10 = y[2] + bias, y11 = y[3] + bias;
    // Output rows 2 ty + a from the first tile row's lanes, 2 ty + 2 + a from the second's.
    float* row = dst + 2 * ty * OW;
    store_first(row, OW, interleave_lo(y00, y01));
    if (2 * ty + 1 < OH) store_first(row + OW, OW, interleave_lo(y10, y11));
    if (pair == 2) {
      store_first(row + 2 * OW, OW, interleave_hi(y00, y01));
      if (2 * ty + 3 < OH) store_first(row + 3 * OW, OW, interleave_hi(y10, y11));
    }
  }
}

inline void grad_output_transform_plane(const float* src, index_t OH, index_t OW, const Tiling& t, float* out,
                                        index_t stride_xi) {
  const index_t tw = t.tw;
  if (tw > kPairTiles) {
    grad_output_transform_plane<float>(src, OH, OW, t, out, stride_xi);
    return;
  }
  const __m512i compact = flat_to_pair(tw);
  for (index_t ty = 0; ty < t.th; ty += 2) {
    const index_t pair = std::min<index_t>(2, t.th - ty);
    Vec16 rows[4];  // dY rows 2 ty .. 2 ty + 3 (zero past the output or the pair)
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
      rows[k] = load_first(src + (2 * ty + k) * OW, (k < 2 || pair == 2) && 2 * ty + k < OH ? OW : 0);
    const Vec16 g[4] = {even_lanes(rows[0], rows[2]), odd_lanes(rows[0], rows[2]),
                        even_lanes(rows[1], rows[3]), odd_lanes(rows[1], rows[3])};
    Vec16 m[16];
    output_transform_adjoint(g, m);
    for (int xi = 0; xi < 16; ++xi)
      store_first(out + xi * stride_xi + ty * tw, pair * tw, _mm512_permutexvar_ps(compact, m[xi]));
  }
}

// The adjoint two rows of tiles per step (tw <= 7, so a plane row is one vector and the
// last tile's right columns, lane tw, stay in its half): both rows' 4x4 tiles in one pass,
// then added into the plane, the first row's four plane rows before the second's (they
// share two), each column the left tile's share first, as tile by tile.
inline void adjoint_transform_plane(const float* z, index_t stride_xi, const Tiling& t, float* plane) {
  const index_t tw = t.tw, pw = t.pw;
  if (2 * tw + 2 > 16) {
    adjoint_transform_plane<float>(z, stride_xi, t, plane);
    return;
  }
  alignas(64) int spread_idx[16], left_idx[16];
  for (int k = 0; k < 16; ++k) {
    const int tx = k % 8;  // lanes past a row's tiles read lane 0 of the zero vector
    spread_idx[k] = tx < tw ? int((k / 8) * tw + tx) : 16;
    left_idx[k] = tx == 0 ? 16 : k - 1;  // the tile to the left; none for a row's first
  }
  const __m512i spread = _mm512_load_si512(spread_idx), left = _mm512_load_si512(left_idx);
  const Vec16 zero{};
  for (index_t ty = 0; ty < t.th; ty += 2) {
    const index_t pair = std::min<index_t>(2, t.th - ty);
    Vec16 q[16];
    for (int xi = 0; xi < 16; ++xi)
      q[xi] = _mm512_permutex2var_ps(load_first(z + xi * stride_xi + ty * tw, pair * tw), spread, zero);
    Vec16 d[16];
    input_transform_adjoint(q, d);
    Vec16 own[4][2], from_left[4][2];  // [a]: interleaved columns' shares, pair in halves
    for (int a = 0; a < 4; ++a) {
      own[a][0] = d[4 * a], own[a][1] = d[4 * a + 1];
      from_left[a][0] = _mm512_permutex2var_ps(d[4 * a + 2], left, zero);
      from_left[a][1] = _mm512_permutex2var_ps(d[4 * a + 3], left, zero);
    }
    for (index_t half = 0; half < pair; ++half) {
      const auto columns = half == 0 ? interleave_lo : interleave_hi;
      for (int a = 0; a < 4; ++a) {
        float* row = plane + (2 * (ty + half) + a) * pw;
        const Vec16 shares = columns(from_left[a][0], from_left[a][1]);
        const Vec16 owns = columns(own[a][0], own[a][1]);
        store_first(row, pw, (load_first(row, pw) + shares) + owns);
      }
    }
  }
}
#endif  // __AVX512F__

template <typename T>
inline void input_transform_plane(const T* plane, const Tiling& t, T* out, index_t stride_xi) {
  for (index_t ty = 0; ty < t.th; ++ty)
    input_transform_row(plane + 2 * ty * t.pw, t.pw, t.tw, out + ty * t.tw, stride_xi);
}

// dst (OH x OW) = the tiles' outputs + b.
template <typename T>
inline void output_transform_plane(const T* m, index_t stride_xi, const Tiling& t, T b, T* dst,
                                   index_t OH, index_t OW) {
  for (index_t ty = 0; ty < t.th; ++ty) {
    T* row0 = dst + 2 * ty * OW;
    output_transform_row(m + ty * t.tw, stride_xi, t.tw, b, OW, row0, 2 * ty + 1 < OH ? row0 + OW : nullptr);
  }
}

template <typename T>
inline void grad_output_transform_plane(const T* src, index_t OH, index_t OW, const Tiling& t, T* out,
                                        index_t stride_xi) {
  for (index_t ty = 0; ty < t.th; ++ty) {
    const T* g0 = src + 2 * ty * OW;
    grad_output_transform_row(g0, 2 * ty + 1 < OH ? g0 + OW : nullptr, OW, t.tw, out + ty * t.tw, stride_xi);
  }
}

template <typename T>
inline void adjoint_transform_plane(const T* z, index_t stride_xi, const Tiling& t, T* plane) {
  for (index_t ty = 0; ty < t.th; ++ty)
    adjoint_transform_row(z + ty * t.tw, stride_xi, t.tw, plane + 2 * ty * t.pw, t.pw);
}

// ---------------------------------------------------------------- chunk passes

// U[ξ][o][c] for the whole weight (O x C/G x 3 x 3): group g's block is rows g*O/G ..
template <typename T>
void transform_weights(const T* weight, T* u, const Conv2dShape& s) {
  const index_t O = s.out_channels, Cg = s.in_channels / s.groups;
#pragma omp parallel for schedule(static) num_threads(threads_for(O * Cg * 64))
  for (index_t o = 0; o < O; ++o) {
    for (index_t c = 0; c < Cg; ++c) {
      T t[16];
      weight_transform(weight + (o * Cg + c) * 9, t);
      for (int xi = 0; xi < 16; ++xi) u[xi * plane_stride(O, Cg) + o * Cg + c] = t[xi];
    }
  }
}

// V[ξ][c][n*tiles + t] for samples n0 .. n0+nb: zero-pad each plane, then cut 4x4 tiles.
template <typename T>
void transform_input(const T* input, T* v, index_t n0, index_t nb, const Conv2dShape& s,
                     const Tiling& t, int threads) {
  const index_t C = s.in_channels, H = s.height, W = s.width, L = nb * t.tiles;
  const index_t rows = std::min(H, t.ph - s.pad_h), cols = std::min(W, t.pw - s.pad_w);
#pragma omp parallel num_threads(threads)
  {
    T* plane = scratch<T>(kSlotPlane, t.ph * t.pw);
    std::fill(plane, plane + t.ph * t.pw, T(0));  // the padding, the same for every plane
#pragma omp for collapse(2) schedule(static)
    for (index_t n = 0; n < nb; ++n) {
      for (index_t c = 0; c < C; ++c) {
        const T* src = input + ((n0 + n) * C + c) * H * W;
        for (index_t y = 0; y < rows; ++y)
          copy_overlapping(plane + (y + s.pad_h) * t.pw + s.pad_w, src + y * W, cols);
        T* out = v + c * L + n * t.tiles;
        input_transform_plane(plane, t, out, plane_stride(C, L));
      }
    }
  }
}

// DY[ξ][o][n*tiles + t] = A dy A^T for the 2x2 blocks of grad_output (zero past the edge).
template <typename T>
void transform_grad_output(const T* grad_output, T* dy, index_t n0, index_t nb,
                           const Conv2dShape& s, const Tiling& t, int threads) {
  const index_t O = s.out_channels, OH = s.out_h, OW = s.out_w, L = nb * t.tiles;
  const index_t stride_xi = plane_stride(O, L);
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (index_t n = 0; n < nb; ++n) {
    for (index_t o = 0; o < O; ++o) {
      const T* src = grad_output + ((n0 + n) * O + o) * OH * OW;
      T* out = dy + o * L + n * t.tiles;
      grad_output_transform_plane(src, OH, OW, t, out, stride_xi);
    }
  }
}

template <typename T>
bool fits_blas(index_t a, index_t b, index_t c) {
  return a <= INT_MAX && b <= INT_MAX && c <= INT_MAX;
}

}  // namespace

void set_winograd_enabled(bool enabled) { winograd_enabled = enabled; }
bool winograd_is_enabled() { return winograd_enabled; }

namespace {

// ------------------------------------------------------ dilated: polyphase sub-problems
// With dilation d (stride 1, padding p), output row y = d u + a reads the input rows
// d (u + i + q) + r (i = 0, 1, 2), where q = floor((a - p) / d) and r = a - p - d q: the
// outputs of row phase a are an undilated 3x3 convolution, padded by -q, of the input's row
// phase r; columns likewise. So a dilated layer is dh x dw undilated Winograd problems on
// strided copies of the planes; a -> r is one-to-one, so every input pixel belongs to one
// problem and every output to one, and the weight gradient is their sum in phase order.
struct Phase {
  index_t a, r, pad;  // output phase, input phase, the sub-problem's padding
  index_t in, out;    // the sub-problem's input and output sizes
};

Phase phase_of(index_t a, index_t d, index_t p, index_t size, index_t out_size) {
  const index_t num = a - p, q = num >= 0 ? num / d : -((-num + d - 1) / d);
  Phase f{a, num - d * q, -q, 0, 0};
  f.in = f.r < size ? (size - f.r + d - 1) / d : 0;
  f.out = a < out_size ? (out_size - a + d - 1) / d : 0;
  return f;
}

Conv2dShape sub_problem(const Conv2dShape& s, const Phase& fy, const Phase& fx) {
  Conv2dShape u = s;
  u.height = fy.in;
  u.width = fx.in;
  u.pad_h = fy.pad;
  u.pad_w = fx.pad;
  u.dilation_h = u.dilation_w = 1;
  u.out_h = fy.out;
  u.out_w = fx.out;
  return u;
}

// Every phase of a dilated layer, (a_h, a_w) in order.
template <typename F>
void each_phase(const Conv2dShape& s, F body) {
  for (index_t ah = 0; ah < s.dilation_h; ++ah)
    for (index_t aw = 0; aw < s.dilation_w; ++aw)
      body(phase_of(ah, s.dilation_h, s.pad_h, s.height, s.out_h),
           phase_of(aw, s.dilation_w, s.pad_w, s.width, s.out_w));
}

}  // namespace

bool winograd_applies(const Conv2dShape& s) {
  if (!winograd_enabled) return false;
  if (s.kernel_h != 3 || s.kernel_w != 3 || s.stride_h != 1 || s.stride_w != 1) return false;
  if (s.dilation_h != 1 || s.dilation_w != 1) {
    // Every phase a problem of its own that Winograd takes (no empty phases).
    bool all = s.dilation_h <= s.height && s.dilation_w <= s.width;
    if (all) {
      each_phase(s, [&](const Phase& fy, const Phase& fx) {
        all = all && fy.in > 0 && fx.in > 0 && winograd_applies(sub_problem(s, fy, fx));
      });
    }
    return all;
  }
  const index_t Cg = s.in_channels / s.groups, Og = s.out_channels / s.groups;
  const index_t fewest = s.groups == 1 ? kMinChannels : kMinGroupChannels;
  if (Cg < fewest || Og < fewest || s.out_h < 2 || s.out_w < 2) return false;
  const Tiling t = make_tiling(s, 2 * s.in_channels + s.out_channels, kMinTiles);
  const index_t L = t.chunk * t.tiles;
  return fits_blas<float>(s.out_channels, s.in_channels, L) && s.pad_h <= 2 && s.pad_w <= 2;
}

namespace {

// Whole chunks (or groups) per thread when there are enough of them for the team: as many
// as the team, or a multiple of it, or so many that the last round's imbalance is small.
bool split_items(index_t items, int threads) {
  return items >= threads && (items % threads == 0 || items >= 4 * threads);
}

// product(ξ, g) for the 16 ξ-planes and G groups, split over `threads`: each writes its own
// block of the result.
template <typename Product>
void each_product(index_t G, int threads, Product product) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int xi = 0; xi < 16; ++xi)
    for (index_t g = 0; g < G; ++g) product(xi, g);
}

// Forward of samples n0 .. n0+nb, its passes split over `threads` (1 inside a team).
template <typename T>
void forward_chunk(const T* input, const T* u, const T* bias, T* output, index_t n0, index_t nb,
                   const Conv2dShape& s, const Tiling& t, int threads) {
  const index_t O = s.out_channels, C = s.in_channels, OH = s.out_h, OW = s.out_w, G = s.groups;
  const index_t Cg = C / G, Og = O / G;
  const index_t L = nb * t.tiles, su = plane_stride(O, Cg), sv = plane_stride(C, L), sm = plane_stride(O, L);
  T* v = scratch<T>(kSlotV, 16 * sv);
  T* m = scratch<T>(kSlotM, 16 * sm);
  transform_input(input, v, n0, nb, s, t, threads);
  each_product(G, threads, [&](int xi, index_t g) {
    gemm_serial<T>(false, false, Og, L, Cg, T(1), u + xi * su + g * Og * Cg, Cg, v + xi * sv + g * Cg * L, L,
                   T(0), m + xi * sm + g * Og * L, L);
  });
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (index_t n = 0; n < nb; ++n) {
    for (index_t o = 0; o < O; ++o) {
      T* dst = output + ((n0 + n) * O + o) * OH * OW;
      const T b = bias ? bias[o] : T(0);
      output_transform_plane(m + o * L + n * t.tiles, sm, t, b, dst, OH, OW);
    }
  }
}

// Backward of samples n0 .. n0+nb, its passes split over `threads`: adds the chunk's
// weight-gradient products into `partial` (if given), writes its grad_input (if u is given).
template <typename T>
void backward_chunk(const T* input, const T* u, const T* grad_output, T* grad_input, T* partial,
                    index_t n0, index_t nb, const Conv2dShape& s, const Tiling& t, int threads) {
  const index_t O = s.out_channels, C = s.in_channels, H = s.height, W = s.width, G = s.groups;
  const index_t Cg = C / G, Og = O / G;
  const index_t L = nb * t.tiles, su = plane_stride(O, Cg), sv = plane_stride(C, L), sdy = plane_stride(O, L);
  T* dy = scratch<T>(kSlotM, 16 * sdy);
  transform_grad_output(grad_output, dy, n0, nb, s, t, threads);
  if (partial) {
    T* v = scratch<T>(kSlotV, 16 * sv);
    transform_input(input, v, n0, nb, s, t, threads);
    each_product(G, threads, [&](int xi, index_t g) {
      gemm_serial<T>(false, true, Og, Cg, L, T(1), dy + xi * sdy + g * Og * L, L, v + xi * sv + g * Cg * L, L,
                     T(1), partial + xi * su + g * Og * Cg, Cg);
    });
  }
  if (!grad_input) return;
  T* z = scratch<T>(kSlotZ, 16 * sv);
  each_product(G, threads, [&](int xi, index_t g) {
    gemm_serial<T>(true, false, Cg, L, Og, T(1), u + xi * su + g * Og * Cg, Cg, dy + xi * sdy + g * Og * L, L,
                   T(0), z + xi * sv + g * Cg * L, L);
  });
#pragma omp parallel num_threads(threads)
  {
    T* plane = scratch<T>(kSlotPlane, t.ph * t.pw);
#pragma omp for collapse(2) schedule(static)
    for (index_t n = 0; n < nb; ++n) {
      for (index_t c = 0; c < C; ++c) {
        // Scatter-add the overlapping 4x4 tiles into the padded plane, in tile order.
        std::fill(plane, plane + t.ph * t.pw, T(0));
        const T* src = z + c * L + n * t.tiles;
        adjoint_transform_plane(src, sv, t, plane);
        // The input's pixels from the padded plane; those no tile covers get zero.
        T* dst = grad_input + ((n0 + n) * C + c) * H * W;
        const index_t cols = std::clamp<index_t>(t.pw - s.pad_w, 0, W);
        for (index_t y = 0; y < H; ++y) {
          const index_t py = y + s.pad_h, covered = py < t.ph ? cols : 0;
          if (covered > 0) copy_overlapping(dst + y * W, plane + py * t.pw + s.pad_w, covered);
          std::fill(dst + y * W + covered, dst + (y + 1) * W, T(0));
        }
      }
    }
  }
}

template <typename T>
void forward_undilated(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s) {
  const index_t O = s.out_channels, C = s.in_channels, Cg = C / s.groups;
  const Tiling t = make_tiling(s, C + O, kMinTiles);
  T* u = scratch<T>(kSlotU, 16 * plane_stride(O, Cg));
  transform_weights(weight, u, s);
  const index_t chunks = (s.batch + t.chunk - 1) / t.chunk;
  const int threads = threads_for(s.batch * Cg * O * t.tiles);
  if (split_items(chunks, threads)) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t k = 0; k < chunks; ++k) {
      const index_t n0 = k * t.chunk;
      forward_chunk(input, u, bias, output, n0, std::min(t.chunk, s.batch - n0), s, t, 1);
    }
  } else {
    for (index_t n0 = 0; n0 < s.batch; n0 += t.chunk)
      forward_chunk(input, u, bias, output, n0, std::min(t.chunk, s.batch - n0), s, t, threads);
  }
}

template <typename T>
void backward_undilated(const T* input, const T* weight, const T* grad_output, T* grad_input,
                        T* grad_weight, const Conv2dShape& s) {
  const index_t O = s.out_channels, C = s.in_channels, Cg = C / s.groups;
  const Tiling t = make_tiling(s, 2 * C + O, kMinTiles);
  const index_t su = plane_stride(O, Cg);
  T* u = nullptr;
  if (grad_input) {
    u = scratch<T>(kSlotU, 16 * su);
    transform_weights(weight, u, s);
  }
  // At most one group per chunk: one-sample groups of small planes made thin products and
  // a reduction over 8 partials that cost more than the products (8x64x7x7 -> 128).
  const index_t chunks = (s.batch + t.chunk - 1) / t.chunk;
  const index_t groups = std::min(kWeightGradGroups, chunks);
  const index_t per_group = (s.batch + groups - 1) / groups;
  T* partials = grad_weight ? scratch<T>(kSlotPartial, groups * 16 * su) : nullptr;
  const int threads = threads_for(s.batch * Cg * O * t.tiles);
  // Group grp's samples, chunk by chunk, into its own partial sums.
  auto group = [&](index_t grp, int team) {
    T* partial = partials ? partials + grp * 16 * su : nullptr;
    if (partial) std::fill(partial, partial + 16 * su, T(0));
    const index_t first = grp * per_group, last = std::min(s.batch, first + per_group);
    for (index_t n0 = first; n0 < last; n0 += t.chunk)
      backward_chunk(input, u, grad_output, grad_input, partial, n0, std::min(t.chunk, last - n0), s, t, team);
  };
  if (split_items(groups, threads)) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t grp = 0; grp < groups; ++grp) group(grp, 1);
  } else {
    for (index_t grp = 0; grp < groups; ++grp) group(grp, threads);
  }
  if (grad_weight) {
#pragma omp parallel for schedule(static) num_threads(threads_for(O * Cg * 16 * groups))
    for (index_t o = 0; o < O; ++o) {
      for (index_t c = 0; c < Cg; ++c) {
        T q[16], g[9];
        for (int xi = 0; xi < 16; ++xi) {
          T total = T(0);
          for (index_t grp = 0; grp < groups; ++grp) total += partials[(grp * 16 + xi) * su + o * Cg + c];
          q[xi] = total;
        }
        weight_transform_adjoint(q, g);
        T* dst = grad_weight + (o * Cg + c) * 9;
        for (int k = 0; k < 9; ++k) dst[k] += g[k];
      }
    }
  }
}

// The rows of phase (fy.r, fx.r) of `count` planes H x W, the sub-problem's input, or with
// `out` of the output phase (fy.a, fx.a): row(p, q, w, dw) for each, p its first pixel in
// the planes (then every dw-th), q its start in the sub-problem's planes, w its length.
template <typename Row>
void phase_rows(index_t count, index_t H, index_t W, const Conv2dShape& s, const Phase& fy, const Phase& fx,
                bool out, Row row) {
  const index_t h = out ? fy.out : fy.in, w = out ? fx.out : fx.in;
  const index_t y0 = out ? fy.a : fy.r, x0 = out ? fx.a : fx.r;
#pragma omp parallel for schedule(static) num_threads(threads_for(count * h * w))
  for (index_t k = 0; k < count; ++k)
    for (index_t v = 0; v < h; ++v) row((k * H + y0 + v * s.dilation_h) * W + x0, (k * h + v) * w, w, s.dilation_w);
}

template <typename T>
void gather_phase(const T* planes, T* sub, index_t count, index_t H, index_t W, const Conv2dShape& s,
                  const Phase& fy, const Phase& fx, bool out) {
  phase_rows(count, H, W, s, fy, fx, out, [&](index_t p, index_t q, index_t w, index_t dw) {
    for (index_t x = 0; x < w; ++x) sub[q + x] = planes[p + x * dw];
  });
}

template <typename T>
void scatter_phase(const T* sub, T* planes, index_t count, index_t H, index_t W, const Conv2dShape& s,
                   const Phase& fy, const Phase& fx, bool out) {
  phase_rows(count, H, W, s, fy, fx, out, [&](index_t p, index_t q, index_t w, index_t dw) {
    for (index_t x = 0; x < w; ++x) planes[p + x * dw] = sub[q + x];
  });
}

// Scratch slots of the im2col path (common.h), free while Winograd runs: the sub-problems'
// inputs, outputs (or dY), and input gradients.
constexpr int kSlotPhaseIn = 0, kSlotPhaseOut = 1, kSlotPhaseGrad = 2;

template <typename T>
void forward_dilated(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s) {
  const index_t N = s.batch, C = s.in_channels, O = s.out_channels;
  each_phase(s, [&](const Phase& fy, const Phase& fx) {
    const Conv2dShape u = sub_problem(s, fy, fx);
    T* x = scratch<T>(kSlotPhaseIn, N * C * u.height * u.width);
    T* y = scratch<T>(kSlotPhaseOut, N * O * u.out_h * u.out_w);
    gather_phase(input, x, N * C, s.height, s.width, s, fy, fx, false);
    forward_undilated(x, weight, bias, y, u);
    scatter_phase(y, output, N * O, s.out_h, s.out_w, s, fy, fx, true);
  });
}

template <typename T>
void backward_dilated(const T* input, const T* weight, const T* grad_output, T* grad_input,
                      T* grad_weight, const Conv2dShape& s) {
  const index_t N = s.batch, C = s.in_channels, O = s.out_channels;
  each_phase(s, [&](const Phase& fy, const Phase& fx) {
    const Conv2dShape u = sub_problem(s, fy, fx);
    T* x = grad_weight ? scratch<T>(kSlotPhaseIn, N * C * u.height * u.width) : nullptr;
    T* dy = scratch<T>(kSlotPhaseOut, N * O * u.out_h * u.out_w);
    T* dx = grad_input ? scratch<T>(kSlotPhaseGrad, N * C * u.height * u.width) : nullptr;
    if (x) gather_phase(input, x, N * C, s.height, s.width, s, fy, fx, false);
    gather_phase(grad_output, dy, N * O, s.out_h, s.out_w, s, fy, fx, true);
    backward_undilated(x, weight, dy, dx, grad_weight, u);
    if (dx) scatter_phase(dx, grad_input, N * C, s.height, s.width, s, fy, fx, false);
  });
}

}  // namespace

template <typename T>
void winograd_forward(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s) {
  if (s.dilation_h == 1 && s.dilation_w == 1) {
    forward_undilated(input, weight, bias, output, s);
  } else {
    forward_dilated(input, weight, bias, output, s);
  }
}

template <typename T>
void winograd_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                       T* grad_weight, const Conv2dShape& s) {
  if (s.dilation_h == 1 && s.dilation_w == 1) {
    backward_undilated(input, weight, grad_output, grad_input, grad_weight, s);
  } else {
    backward_dilated(input, weight, grad_output, grad_input, grad_weight, s);
  }
}

template void winograd_forward<float>(const float*, const float*, const float*, float*, const Conv2dShape&);
template void winograd_forward<double>(const double*, const double*, const double*, double*, const Conv2dShape&);
template void winograd_backward<float>(const float*, const float*, const float*, float*, float*, const Conv2dShape&);
template void winograd_backward<double>(const double*, const double*, const double*, double*, double*, const Conv2dShape&);

}  // namespace fastdl::cpu
