// Recycled memory for the large outputs of the memory-bound kernels (pooling, batch norm,
// activations, losses).
//
// Why: a fresh multi-megabyte NumPy array is fresh pages, and the first write to each
// page is a page fault in which the kernel zeroes it. Measured here (THP on) that costs
// ~13 ms per 64 MB, more than the kernel that then fills the array (sigmoid forward of
// 16M floats: 5 ms into an existing array, 18 ms into a fresh one). A training loop
// frees and reallocates the same sizes every step, so outputs allocated while an
// OutputCache guard is alive come from NumPy's allocator hook (PyDataMem_SetHandler)
// with a handler that keeps freed blocks of >= 1 MiB for reuse, up to a byte limit
// (FASTDL_OUTPUT_CACHE_MB, default 1024; 0 turns the cache off). The arrays are ordinary
// NumPy arrays that own their data; the cache only decides where the bytes come from.
// Everything here runs with the GIL held (NumPy allocates and frees array data under it).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <utility>

namespace fastdl::bindings {

// While alive, NumPy arrays created on this thread take their data from the cache.
class OutputCache {
 public:
  OutputCache();
  ~OutputCache();
  OutputCache(const OutputCache&) = delete;
  OutputCache& operator=(const OutputCache&) = delete;

 private:
  PyObject* previous_ = nullptr;  // the handler to restore (null: nothing was set)
};

// Bytes held by the cache (free blocks) and the blocks in use; frees the held blocks.
std::size_t output_cache_held_bytes();
std::size_t output_cache_release();

// Fn with an OutputCache alive around it, for m.def: m.def("f", with_output_cache<&f<T>>, ...).
template <auto Fn>
struct WithOutputCache;

template <typename R, typename... Args, R (*Fn)(Args...)>
struct WithOutputCache<Fn> {
  static R call(Args... args) {
    OutputCache guard;
    return Fn(std::forward<Args>(args)...);
  }
};

template <auto Fn>
constexpr auto with_output_cache = &WithOutputCache<Fn>::call;

}  // namespace fastdl::bindings
