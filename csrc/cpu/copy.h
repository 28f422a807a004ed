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

// row[2b] = even[b], row[2b + 1] = odd[b] for b < n. With AVX-512 two two-source
// permutes per 16 pairs (and masked for the last partial block): GCC built each 16-pair
// block from scalar inserts, 17% of the 3x3/s2 max-pool forward+backward's time.
// (Max pooling's backward; depthwise convolution's stride-2 input gradient.)
template <typename T>
inline void interleave_pairs(const T* even, const T* odd, index_t n, T* row) {
  index_t b = 0;
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; b + 16 <= n; b += 16) {
      const __m512 e = _mm512_loadu_ps(even + b), o = _mm512_loadu_ps(odd + b);
      _mm512_storeu_ps(row + 2 * b, _mm512_permutex2var_ps(e, lo, o));
      _mm512_storeu_ps(row + 2 * b + 16, _mm512_permutex2var_ps(e, hi, o));
    }
    if (b < n) {
      const int r = static_cast<int>(n - b);  // 1 .. 15 pairs
      const __mmask16 in = static_cast<__mmask16>((1u << r) - 1);
      const __m512 e = _mm512_maskz_loadu_ps(in, even + b), o = _mm512_maskz_loadu_ps(in, odd + b);
      const unsigned out = r >= 8 ? 0xFFFFu : (1u << (2 * r)) - 1;
      _mm512_mask_storeu_ps(row + 2 * b, static_cast<__mmask16>(out), _mm512_permutex2var_ps(e, lo, o));
      if (r > 8)
        _mm512_mask_storeu_ps(row + 2 * b + 16, static_cast<__mmask16>((1u << (2 * r - 16)) - 1),
                              _mm512_permutex2var_ps(e, hi, o));
      return;
    }
  }
#endif
  for (; b < n; ++b) row[2 * b] = even[b], row[2 * b + 1] = odd[b];
}

// even[b] = row[2b], odd[b] = row[2b + 1] for b < n: interleave_pairs undone, the same
// way (two two-source permutes per 16 pairs, masked for the last partial block).
// (Depthwise convolution's stride-2 input split into column phases.)
template <typename T>
inline void deinterleave_pairs(const T* row, index_t n, T* even, T* odd) {
  index_t b = 0;
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (; b + 16 <= n; b += 16) {
      const __m512 lo = _mm512_loadu_ps(row + 2 * b), hi = _mm512_loadu_ps(row + 2 * b + 16);
      _mm512_storeu_ps(even + b, _mm512_permutex2var_ps(lo, ev, hi));
      _mm512_storeu_ps(odd + b, _mm512_permutex2var_ps(lo, od, hi));
    }
    if (b < n) {
      const int r = static_cast<int>(n - b);  // 1 .. 15 pairs
      const unsigned first = r >= 8 ? 0xFFFFu : (1u << (2 * r)) - 1;
      const unsigned second = r > 8 ? (1u << (2 * r - 16)) - 1 : 0u;
      const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(first), row + 2 * b);
      const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(second), row + 2 * b + 16);
      const __mmask16 out = static_cast<__mmask16>((1u << r) - 1);
      _mm512_mask_storeu_ps(even + b, out, _mm512_permutex2var_ps(lo, ev, hi));
      _mm512_mask_storeu_ps(odd + b, out, _mm512_permutex2var_ps(lo, od, hi));
      return;
    }
  }
#endif
  for (; b < n; ++b) even[b] = row[2 * b], odd[b] = row[2 * b + 1];
}

}  // namespace fastdl::cpu
