// Bindings of the image filters (csrc/cpu/filter.cpp): filled in by the image-filtering work.
#include "bindings.h"

namespace fastdl::bindings {

void bind_image(py::module_& m) { (void)m; }

}  // namespace fastdl::bindings
