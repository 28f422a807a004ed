// Shared pieces of the binding files (csrc/bindings*.cpp): argument-check helpers and the
// bind_* functions each binding file defines. Bindings check, release the GIL and call
// a kernel; they hold no math.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/common.h"

namespace fastdl::bindings {

namespace py = pybind11;
using fastdl::cpu::check;
using fastdl::cpu::index_t;

// Inputs: C-contiguous arrays of T (pybind11 copies a strided view, never casts dtype).
template <typename T>
using In = py::array_t<T, py::array::c_style>;

inline std::vector<py::ssize_t> shape_vector(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

inline bool same_shape(const py::array& a, const py::array& b) {
  return a.ndim() == b.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), b.shape());
}

// "(2, 3, 4)" for error messages.
inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// An array a kernel updates in place: it must be exactly T, C-contiguous and writeable
// (a converted copy would silently lose the update).
template <typename T>
T* inplace_data(const py::handle& h, const char* name, index_t index) {
  // The messages are built only on failure: an optimizer step calls this for every
  // parameter and state tensor, and formatting the dtype name each time (a Python call)
  // cost ~0.5 ms a step for 100 parameters.
  const auto where = [&] { return std::string(name) + "[" + std::to_string(index) + "]"; };
  if (!py::isinstance<py::array_t<T>>(h))
    check(false, where() + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() + " array");
  auto a = py::reinterpret_borrow<py::array>(h);
  if (!a.dtype().is(py::dtype::of<T>()))
    check(false, where() + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() + " array");
  if (!(a.flags() & py::array::c_style)) check(false, where() + " must be C-contiguous");
  if (!a.writeable()) check(false, where() + " must be writeable");
  return static_cast<T*>(a.mutable_data());
}

// Pointers of a list of arrays updated in place, all of the same length as `sizes`.
template <typename T>
std::vector<T*> pointers(const py::list& arrays, const char* name, std::vector<index_t>& sizes) {
  std::vector<T*> out;
  const bool first = sizes.empty();
  for (size_t i = 0; i < arrays.size(); ++i) {
    T* p = inplace_data<T>(arrays[i], name, static_cast<index_t>(i));
    const index_t n = py::reinterpret_borrow<py::array>(arrays[i]).size();
    if (first) sizes.push_back(n);
    else if (!(i < sizes.size() && sizes[i] == n))
      check(false, std::string(name) + "[" + std::to_string(i) + "] has " + std::to_string(n) + " elements, its parameter has a different number");
    out.push_back(p);
  }
  if (!first) check(out.size() == sizes.size(), std::string(name) + " must have one array per parameter");
  return out;
}

// Each binding file registers its functions on the module.
void bind_image(py::module_& m);         // bindings_image.cpp: fastdl.image filters
void bind_linear_model(py::module_& m);  // bindings_linear_model.cpp: fastdl.linear_model solvers
void bind_pool(py::module_& m);          // bindings_pool.cpp: avg / adaptive pooling, conv1d helpers
void bind_norm(py::module_& m);          // bindings_norm.cpp: batch norm, activations, dropout
void bind_loss(py::module_& m);          // bindings_loss.cpp: the loss family
void bind_cuda(py::module_& m);          // bindings_cuda.cpp: the submodule _C.cuda (CUDA kernels)

}  // namespace fastdl::bindings
