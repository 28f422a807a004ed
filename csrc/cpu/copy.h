// Copies of short runs: rows of small planes, the last partial block of a row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#ifdef __AVX512BW__
#include <immintrin.h>
#endif

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

}  // namespace fastdl::cpu
