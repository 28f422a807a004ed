// Image filters with scipy.ndimage's semantics
// (https://docs.scipy.org/doc/scipy/reference/ndimage.html#filters), on C-contiguous
// stacks of 2-D planes: input and output are (planes, height, width), and each plane is
// filtered on its own. T is float, double or std::uint8_t.
//
// Arithmetic follows scipy.ndimage step by step so that results agree bit for bit where
// scipy's order is reproduced (always for uint8, nearly always for float):
//   * sums are formed in double, in scipy's order, without fused multiply-adds;
//   * a result is stored as scipy's C cast does: float/double round to nearest, uint8
//     truncates toward zero and wraps modulo 256 (as (uint8)(int64)v);
//   * separable filters (uniform, Gaussian, Sobel) are scipy's sequence of 1-D passes, and
//     the intermediate image is rounded to T between the passes, as scipy stores it.
// Boundary modes (scipy's names; the line is a b c d):
//   reflect  d c b a | a b c d | d c b a     (period 2n)
//   mirror   d c b | a b c d | c b a         (period 2n - 2)
//   nearest  a a a | a b c d | d d d
//   wrap     a b c d | a b c d | a b c d     (period n)
//   constant k k k | a b c d | k k k         (k = cval)
// Windows larger than the image keep extending periodically, as scipy does.
#pragma once

#include <cstdint>

#include "cpu/common.h"

namespace fastdl::cpu {

enum class BoundaryMode : int { reflect = 0, constant = 1, nearest = 2, mirror = 3, wrap = 4 };

// The index inside [0, n) that position i of a line of length n reads, or -1 for cval.
index_t boundary_index(index_t i, index_t n, BoundaryMode mode);

struct PlaneShape {
  index_t planes, height, width;
};

// One 1-D pass along an axis, as scipy.ndimage.correlate1d (taps) or uniform_filter1d (box):
//   taps: out[i] = sum_j weights[j] * in[i + j - (size/2 + origin)], j in [0, size),
//         in scipy's order (symmetric and antisymmetric odd kernels pair the taps)
//   box:  out[i] = (sum_j in[i + j - (size/2 + origin)]) / size
// origin must lie in [-(size/2), (size-1)/2].
struct FilterPass {
  bool box;
  const double* weights;  // `size` weights for taps, unused for box
  index_t size;
  index_t origin;
};

// Two 1-D passes, vertical (axis 0) and horizontal (axis 1), the first one chosen by
// horizontal_first. The input is extended with (mode, cval), the intermediate image with
// (mode, cval_between). round_between rounds the intermediate to T (scipy's sequential
// filters); without it the intermediate stays in double (the separable fast path of a 2-D
// correlation, where cval_between = cval * sum(vertical weights)).
template <typename T>
void separable_filter(const T* input, T* output, const PlaneShape& s, const FilterPass& vertical,
                      const FilterPass& horizontal, bool horizontal_first, bool round_between,
                      BoundaryMode mode, double cval, double cval_between);

// 2-D correlation, as scipy.ndimage.correlate with weights (kh, kw):
//   out[y, x] = sum_{i, j} w[i, j] * in[y + i - (kh/2 + origin_y), x + j - (kw/2 + origin_x)]
// summed in double over the weights with |w| > DBL_EPSILON, in row-major order (scipy's).
template <typename T>
void correlate2d(const T* input, T* output, const PlaneShape& s, const double* weights,
                 index_t kh, index_t kw, index_t origin_y, index_t origin_x, BoundaryMode mode,
                 double cval);

// Rank filter over a kh x kw window, as scipy.ndimage.rank_filter; the median filter is
// rank = kh*kw/2 (for even windows the upper median, as scipy). Window anchored as in
// correlate2d; cval is first cast to T, as scipy does. Exact: only selects values.
// Algorithms: pruned sorting networks on SIMD vectors for 3x3 and 5x5 medians; Huang's
// sliding histogram for other uint8 windows; introselect per window otherwise.
// NaN inputs give an unspecified (but thread-count independent) result.
template <typename T>
void rank_filter(const T* input, T* output, const PlaneShape& s, index_t kh, index_t kw,
                 index_t origin_y, index_t origin_x, index_t rank, BoundaryMode mode, double cval);

// Gradient magnitude, as scipy.ndimage.generic_gradient_magnitude(input, sobel):
//   out = sqrt(sobel_y * sobel_y + sobel_x * sobel_x), evaluated in T,
// each Sobel response computed as separable_filter computes scipy.ndimage.sobel ([-1, 0, 1]
// along its axis, then [1, 2, 1] across, rounded to T in between and at the end). For
// uint8 the products and the sum wrap modulo 256 and the root is truncated, as NumPy does.
template <typename T>
void gradient_magnitude(const T* input, T* output, const PlaneShape& s, BoundaryMode mode,
                        double cval);

}  // namespace fastdl::cpu
