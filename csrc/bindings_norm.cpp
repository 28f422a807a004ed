// Bindings of batch norm, activations, dropout (csrc/cpu/batchnorm.cpp, activation.cpp).
#include "bindings.h"

namespace fastdl::bindings {

void bind_norm(py::module_& m) { (void)m; }

}  // namespace fastdl::bindings
