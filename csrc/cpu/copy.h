// Copies of short runs: rows of small planes, the last partial block of a row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <type_traits>

#include "cpu/common.h"

namespace fastdl::cpu {

// dst[0, count) = src[0, count) and dst[count, Cap) = 0.
template <index_t Cap, typename T>
__attribute__((always_inline)) inline void stage(T* dst, const T* src, index_t count) {
#ifdef __AVX512BW__
  static_assert(Cap * sizeof(T) % 64 == 0, "whole 64-byte pieces");
  const char* from = reinterpret_cast<const char*>(src);
  char* to = reinterpret_cast<char*>(dst);
  const index_t bytes = count * index_t(sizeof(T));
  for (index_t b = 0; b < Cap * index_t(sizeof(T)); b += 64) {
    const index_t left = bytes - b;
    const __mmask64 m = left >= 64 ? ~__mmask64(0) : left <= 0 ? __mmask64(0) : (__mmask64(1) << left) - 1;
    _mm512_storeu_si512(to + b, _mm512_maskz_loadu_epi8(m, from + b));
  }
#else
  std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(T));
  std::fill(dst + count, dst + Cap, T(0));
#endif
}

// A run that may be read N entries from src: src itself where those lie before `end`,
// else `copy` holding src's first `count` entries, zero-padded to N.
template <index_t N, typename T>
__attribute__((always_inline)) inline const T* readable(const T* src, index_t count, const T* end, T* copy) {
  if (src + N <= end) return src;
  stage<N>(copy, src, count);
  return copy;
}

// dst[0, count) = src[0, count) for short runs, inline (a memmove call per row of a small
// plane cost more than the copy). Two forms:
//   copy_masked       64-byte moves, the last one masked: fewest instructions, for results
//                     nothing reads again soon (a partial block's outputs);
//   copy_overlapping  plain moves, the last one overlapping the one before (as memcpy does
//                     inside): for copies the kernel reads back at once, since a masked
//                     store does not forward to a later load (depthwise convolution's
//                     padded planes: forward 0.66 ms masked, 0.42 ms plain).
template <typename T>
__attribute__((always_inline)) inline void copy_masked(T* dst, const T* src, index_t count) {
#ifdef __AVX512BW__
  const char* from = reinterpret_cast<const char*>(src);
  char* to = reinterpret_cast<char*>(dst);
  const index_t bytes = count * index_t(sizeof(T));
  for (index_t b = 0; b < bytes; b += 64) {
    const index_t left = bytes - b;
    const __mmask64 m = left >= 64 ? ~__mmask64(0) : (__mmask64(1) << left) - 1;
    _mm512_mask_storeu_epi8(to + b, m, _mm512_maskz_loadu_epi8(m, from + b));
  }
#else
  std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(T));
#endif
}

template <typename T>
__attribute__((always_inline)) inline void copy_overlapping(T* dst, const T* src, index_t count) {
  const char* from = reinterpret_cast<const char*>(src);
  char* to = reinterpret_cast<char*>(dst);
  const index_t bytes = count * index_t(sizeof(T));
  const auto move = [&](index_t at, auto piece) {
    decltype(piece) v;
    std::memcpy(&v, from + at, sizeof v);
    std::memcpy(to + at, &v, sizeof v);
  };
  typedef char Bytes64 __attribute__((vector_size(64)));
  typedef char Bytes16 __attribute__((vector_size(16)));
  if (bytes >= 64) {
    for (index_t b = 0; b + 64 < bytes; b += 64) move(b, Bytes64{});
    move(bytes - 64, Bytes64{});
  } else if (bytes >= 16) {
    for (index_t b = 0; b + 16 < bytes; b += 16) move(b, Bytes16{});
    move(bytes - 16, Bytes16{});
  } else if (bytes >= 8) {
    move(0, std::uint64_t{}), move(bytes - 8, std::uint64_t{});
  } else if (bytes >= 4) {
    move(0, std::uint32_t{}), move(bytes - 4, std::uint32_t{});
  } else {
    for (index_t b = 0; b < bytes; ++b) to[b] = from[b];
  }
}

#ifdef __AVX512F__
// The pieces of interleave_pairs and deinterleave_pairs: vectors x (at a) and y (at b),
// permutex2var(x, i0, y) stored at d0 and permutex2var(x, i1, y) at d1, every load and
// store masked (all ones in a whole block of 16 pairs).
inline void permute_two(const float* a, __mmask16 la, const float* b, __mmask16 lb, __m512i i0, __m512i i1,
                        float* d0, __mmask16 s0, float* d1, __mmask16 s1) {
  const __m512 x = _mm512_maskz_loadu_ps(la, a), y = _mm512_maskz_loadu_ps(lb, b);
  _mm512_mask_storeu_ps(d0, s0, _mm512_permutex2var_ps(x, i0, y));
  _mm512_mask_storeu_ps(d1, s1, _mm512_permutex2var_ps(x, i1, y));
}

// Masks of r of 16 lanes, and of the first and second 16 of 2r lanes.
inline __mmask16 lanes_mask(index_t r) { return static_cast<__mmask16>(r >= 16 ? 0xFFFFu : (1u << r) - 1); }
inline __mmask16 pairs_first(index_t r) { return lanes_mask(2 * r); }
inline __mmask16 pairs_second(index_t r) { return r > 8 ? lanes_mask(2 * r - 16) : __mmask16(0); }
#endif

// Between a row and its even and odd columns, b < n: Split false writes the row
// (row[2b] = even[b], row[2b + 1] = odd[b]), Split true the columns. With AVX-512 two
// two-source permutes per 16 pairs (masked for the last partial block): GCC built each
// 16-pair block from scalar inserts, 17% of the 3x3/s2 max-pool forward+backward's time.
template <bool Split, typename T>
inline void shuffle_pairs(T* row, index_t n, T* even, T* odd) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    const __m512i i0 = Split ? _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
                             : _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i1 = Split ? _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
                             : _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (index_t b = 0; b < n; b += 16) {
      const index_t r = std::min<index_t>(16, n - b);
      if (Split)
        permute_two(row + 2 * b, pairs_first(r), row + 2 * b + 16, pairs_second(r), i0, i1, even + b, lanes_mask(r),
                    odd + b, lanes_mask(r));
      else
        permute_two(even + b, lanes_mask(r), odd + b, lanes_mask(r), i0, i1, row + 2 * b, pairs_first(r),
                    row + 2 * b + 16, pairs_second(r));
    }
    return;
  }
#endif
  for (index_t b = 0; b < n; ++b) {
    if (Split) even[b] = row[2 * b], odd[b] = row[2 * b + 1];
    else row[2 * b] = even[b], row[2 * b + 1] = odd[b];
  }
}

// row[2b] = even[b], row[2b + 1] = odd[b] for b < n (max pooling's backward, depthwise
// convolution's stride-2 input gradient).
template <typename T>
inline void interleave_pairs(const T* even, const T* odd, index_t n, T* row) {
  shuffle_pairs<false>(row, n, const_cast<T*>(even), const_cast<T*>(odd));
}

// even[b] = row[2b], odd[b] = row[2b + 1] for b < n (depthwise convolution's stride-2
// input, split into column phases).
template <typename T>
inline void deinterleave_pairs(const T* row, index_t n, T* even, T* odd) {
  shuffle_pairs<true>(const_cast<T*>(row), n, even, odd);
}

}  // namespace fastdl::cpu
