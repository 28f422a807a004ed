// Bindings of the linear-model solvers (csrc/cpu/linear_model.cpp): filled in by the
// linear-model work.
#include "bindings.h"

namespace fastdl::bindings {

void bind_linear_model(py::module_& m) { (void)m; }

}  // namespace fastdl::bindings
