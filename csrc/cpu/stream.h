// Streaming (non-temporal) stores for large outputs.
//
// A plain store first reads the line it writes into the cache ("read for ownership"). An
// output that is large against the last-level cache is evicted before anyone reads it
// back, so that read is pure waste: on the 2-core dev VM, y = 2x over 64 MiB took 4.9 ms
// with plain stores and 3.2 ms with streaming ones (read 30 GB/s). Kernels write such an
// output a block at a time into an L1-resident buffer with their ordinary (vectorized)
// loop, and stream_copy moves the block out around the cache.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "cpu/common.h"

namespace fastdl::cpu {

// Outputs of at least this many bytes are streamed. Below it, the output may well still
// be in cache when the next kernel reads it (the demo CNN's 6 MiB activations are).
constexpr std::size_t kStreamBytes = std::size_t(8) << 20;

// Elements per staging block: 256 bytes. Small blocks keep the input reads and the
// streamed writes interleaved; computing 4 KiB and then streaming it out ran a
// two-input kernel (relu's backward over 64 MiB) at 9-10 ms, 256-byte blocks at 5 ms,
// plain stores at 7.5-8.3 ms.
template <typename T>
constexpr index_t kStreamBlock = index_t(256 / sizeof(T));

template <typename T>
inline bool streams(index_t count) {
  return static_cast<std::size_t>(count) * sizeof(T) >= kStreamBytes;
}

// Copies n values to dst with streaming stores (plain ones for an unaligned head and a
// partial tail). Call stream_fence() before the data is read by another thread.
template <typename T>
inline void stream_copy(T* dst, const T* src, index_t n) {
  auto* d = reinterpret_cast<char*>(dst);
  auto* s = reinterpret_cast<const char*>(src);
  std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
#if defined(__AVX512F__) || defined(__AVX__)
#if defined(__AVX512F__)
  constexpr std::size_t kVec = 64;
#else
  constexpr std::size_t kVec = 32;
#endif
  const std::size_t head =
      std::min(bytes, (kVec - reinterpret_cast<std::uintptr_t>(d) % kVec) % kVec);
  std::memcpy(d, s, head);
  d += head, s += head, bytes -= head;
  for (; bytes >= kVec; d += kVec, s += kVec, bytes -= kVec) {
#if defined(__AVX512F__)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(d), _mm512_loadu_si512(s));
#else
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
#endif
  }
#endif
  std::memcpy(d, s, bytes);
}

// Orders this thread's streaming stores before what follows (they are weakly ordered).
inline void stream_fence() {
#if defined(__AVX512F__) || defined(__AVX__)
  _mm_sfence();
#endif
}

// dst[k - i0] = value(k) for k in [i0, i1), vectorized. `value` is taken by copy: a local
// closure's pointers stay in registers (read through a reference, GCC reloaded them
// every element and did not vectorize).
template <typename T, typename Value>
inline void map_block(T* __restrict dst, index_t i0, index_t i1, Value value) {
#pragma omp simd
  for (index_t k = i0; k < i1; ++k) dst[k - i0] = value(k);
}

// How map_elements stores. Streaming pays where the loop is bound by memory: relu's
// forward+backward over 16M floats on one thread, 13.9 -> 9.6 ms. Where the arithmetic
// keeps the core busy (sigmoid's and tanh's exp, dropout's hash) it gained nothing or
// lost (dropout 12.1 -> 16.5 ms): those store plainly.
enum class Stores { plain, streamed_if_large };

// out[k] = value(k) for k in [0, n), the element-wise loop of an activation: threads take
// equal slices (cut at whole staging blocks, so streamed blocks stay aligned), and
// value(k) is vectorized.
template <typename T, typename Value>
inline void map_elements(T* out, index_t n, Stores stores, Value&& value) {
  const bool stream = stores == Stores::streamed_if_large && streams<T>(n);
#pragma omp parallel num_threads(threads_for(n))
  {
    const index_t blocks = (n + kStreamBlock<T> - 1) / kStreamBlock<T>;
    const index_t t = omp_get_thread_num(), team = omp_get_num_threads();
    const index_t begin = std::min(n, blocks * t / team * kStreamBlock<T>);
    const index_t end = std::min(n, blocks * (t + 1) / team * kStreamBlock<T>);
    if (!stream) {
      map_block(out + begin, begin, end, value);
    } else {  // a block at a time through an L1 buffer, streamed out
      alignas(64) T buffer[kStreamBlock<T>];
      for (index_t i = begin; i < end; i += kStreamBlock<T>) {
        const index_t j = std::min(end, i + kStreamBlock<T>);
        map_block(buffer, i, j, value);
        stream_copy(out + i, buffer, j - i);
      }
      stream_fence();
    }
  }
}

}  // namespace fastdl::cpu
