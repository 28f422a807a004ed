// The output cache of bindings_alloc.h: a NumPy memory handler (NumPy >= 1.22 C API,
// reached through the _ARRAY_API capsule as pybind11 does) that recycles large blocks.
#include "bindings_alloc.h"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace fastdl::bindings {

namespace {

namespace py = pybind11;

// NumPy's PyDataMem_Handler (numpy/ndarraytypes.h), version 1.
struct NumpyAllocator {
  void* ctx;
  void* (*malloc)(void* ctx, std::size_t size);
  void* (*calloc)(void* ctx, std::size_t count, std::size_t size);
  void* (*realloc)(void* ctx, void* ptr, std::size_t size);
  void (*free)(void* ctx, void* ptr, std::size_t size);
};
struct NumpyHandler {
  char name[127];
  std::uint8_t version;
  NumpyAllocator allocator;
};
using SetHandlerFn = PyObject* (*)(PyObject*);
constexpr int kSetHandlerSlot = 304;  // PyDataMem_SetHandler in NumPy's C-API table (>= 1.22)

constexpr std::size_t kLarge = std::size_t(1) << 20;  // smaller blocks: plain malloc
constexpr std::size_t kHuge = std::size_t(1) << 21;   // capacity granule (a huge page)

// Free large blocks kept for reuse, and the capacity of every large block handed out.
struct Cache {
  std::mutex mutex;
  std::vector<std::pair<void*, std::size_t>> held;
  std::unordered_map<void*, std::size_t> live;
  std::size_t held_bytes = 0, limit = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* made = new Cache;  // never destroyed: arrays may outlive static destruction
    const char* env = std::getenv("FASTDL_OUTPUT_CACHE_MB");
    made->limit = (env ? std::strtoull(env, nullptr, 10) : 1024) << 20;
    return made;
  }();
  return *c;
}

// A 2 MiB-aligned anonymous mapping (zero-filled, eligible for transparent huge pages).
void* map_block(std::size_t capacity) {
  void* raw = mmap(nullptr, capacity + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const auto aligned = (start + kHuge - 1) & ~(kHuge - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const std::size_t tail = kHuge - (aligned - start);
  if (tail) munmap(reinterpret_cast<void*>(aligned + capacity), tail);
  void* block = reinterpret_cast<void*>(aligned);
  madvise(block, capacity, MADV_HUGEPAGE);
  return block;
}

// A large block of at least `size` bytes; *fresh tells whether it is newly mapped (zero).
void* take_large(std::size_t size, bool* fresh) {
  const std::size_t capacity = (size + kHuge - 1) & ~(kHuge - 1);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    // The smallest held block that fits without wasting more than a quarter of it.
    std::size_t best = c.held.size();
    for (std::size_t i = 0; i < c.held.size(); ++i) {
      const std::size_t have = c.held[i].second;
      if (have >= capacity && have - capacity <= have / 4 &&
          (best == c.held.size() || have < c.held[best].second))
        best = i;
    }
    if (best < c.held.size()) {
      auto [block, have] = c.held[best];
      c.held[best] = c.held.back();
      c.held.pop_back();
      c.held_bytes -= have;
      c.live[block] = have;
      *fresh = false;
      return block;
    }
  }
  void* block = map_block(capacity);
  if (!block) return nullptr;
  std::lock_guard<std::mutex> lock(c.mutex);
  c.live[block] = capacity;
  *fresh = true;
  return block;
}

// Returns true when ptr was a large block (now held or unmapped).
bool give_back(void* ptr) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const auto it = c.live.find(ptr);
  if (it == c.live.end()) return false;
  const std::size_t capacity = it->second;
  c.live.erase(it);
  if (c.held_bytes + capacity <= c.limit) {
    c.held.emplace_back(ptr, capacity);
    c.held_bytes += capacity;
  } else {
    munmap(ptr, capacity);
  }
  return true;
}

void* cached_malloc(void*, std::size_t size) {
  if (size < kLarge) return std::malloc(size ? size : 1);
  bool fresh;
  return take_large(size, &fresh);
}

void* cached_calloc(void*, std::size_t count, std::size_t size) {
  if (size && count > SIZE_MAX / size) return nullptr;
  const std::size_t bytes = count * size;
  if (bytes < kLarge) return std::calloc(count ? count : 1, size ? size : 1);
  bool fresh;
  void* block = take_large(bytes, &fresh);
  if (block && !fresh) std::memset(block, 0, bytes);
  return block;
}

void cached_free(void*, void* ptr, std::size_t) {
  if (ptr && !give_back(ptr)) std::free(ptr);
}

void* cached_realloc(void* ctx, void* ptr, std::size_t size) {
  if (!ptr) return cached_malloc(ctx, size);
  std::size_t old_capacity = 0;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    const auto it = c.live.find(ptr);
    if (it != c.live.end()) old_capacity = it->second;
  }
  if (old_capacity == 0 && size < kLarge) return std::realloc(ptr, size ? size : 1);
  void* block = cached_malloc(ctx, size);
  if (!block) return nullptr;
  const std::size_t old_size = old_capacity ? old_capacity : malloc_usable_size(ptr);
  std::memcpy(block, ptr, std::min(old_size, size));
  cached_free(ctx, ptr, 0);
  return block;
}

NumpyHandler handler_struct = {"fastdl_output_cache", 1,
                               {nullptr, cached_malloc, cached_calloc, cached_realloc, cached_free}};

struct Hook {
  SetHandlerFn set_handler = nullptr;
  PyObject* capsule = nullptr;  // immortal: arrays keep a reference to it
};

const Hook& hook() {
  static Hook h = [] {
    Hook made;
    if (cache().limit == 0) return made;
    try {
      py::module_ numpy = py::module_::import("numpy");
      const std::string version = numpy.attr("__version__").cast<std::string>();
      const int major = std::atoi(version.c_str());
      const int minor = std::atoi(version.c_str() + version.find('.') + 1);
      if (major < 1 || (major == 1 && minor < 22)) return made;
      py::module_ multiarray = major >= 2 ? py::module_::import("numpy._core.multiarray")
                                          : py::module_::import("numpy.core.multiarray");
      py::object api = multiarray.attr("_ARRAY_API");
      void** table = static_cast<void**>(PyCapsule_GetPointer(api.ptr(), nullptr));
      if (!table) {
        PyErr_Clear();
        return made;
      }
      made.capsule = PyCapsule_New(&handler_struct, "mem_handler", nullptr);
      if (!made.capsule) {
        PyErr_Clear();
        return made;
      }
      made.set_handler = reinterpret_cast<SetHandlerFn>(table[kSetHandlerSlot]);
    } catch (const py::error_already_set&) {
      made = Hook{};
    }
    return made;
  }();
  return h;
}

}  // namespace

OutputCache::OutputCache() {
  const Hook& h = hook();
  if (!h.set_handler) return;
  previous_ = h.set_handler(h.capsule);  // a new reference to the handler in force
  if (!previous_) PyErr_Clear();
}

OutputCache::~OutputCache() {
  if (!previous_) return;
  PyObject* ours = hook().set_handler(previous_);
  if (ours) Py_DECREF(ours);
  else PyErr_Clear();
  Py_DECREF(previous_);
}

std::size_t output_cache_held_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.held_bytes;
}

std::size_t output_cache_release() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  const std::size_t released = c.held_bytes;
  for (auto& [block, capacity] : c.held) munmap(block, capacity);
  c.held.clear();
  c.held_bytes = 0;
  return released;
}

}  // namespace fastdl::bindings
