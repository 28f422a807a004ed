// Bindings of avg_pool2d, adaptive_avg_pool2d (csrc/cpu/pool.cpp).
#include "bindings.h"

namespace fastdl::bindings {

void bind_pool(py::module_& m) { (void)m; }

}  // namespace fastdl::bindings
