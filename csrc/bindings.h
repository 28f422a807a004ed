// Shared pieces of the binding files (csrc/bindings*.cpp): argument-check helpers and the
// bind_* functions each binding file defines. Bindings check, release the GIL and call
// a kernel; they hold no math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

namespace fastdl::bindings {

namespace py = pybind11;

// "(2, 3, 4)" for error messages.
inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Each binding file registers its functions on the module.
void bind_image(py::module_& m);         // bindings_image.cpp: fastdl.image filters
void bind_linear_model(py::module_& m);  // bindings_linear_model.cpp: fastdl.linear_model solvers
void bind_pool(py::module_& m);          // bindings_pool.cpp: avg / adaptive pooling, conv1d helpers
void bind_norm(py::module_& m);          // bindings_norm.cpp: batch norm, activations, dropout
void bind_loss(py::module_& m);          // bindings_loss.cpp: the loss family

}  // namespace fastdl::bindings
