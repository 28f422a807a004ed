// Bindings of the losses (csrc/cpu/loss.cpp).
#include "bindings.h"

namespace fastdl::bindings {

void bind_loss(py::module_& m) { (void)m; }

}  // namespace fastdl::bindings
