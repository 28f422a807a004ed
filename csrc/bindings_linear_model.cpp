// Bindings of the linear-model solvers (cpu/linear_model.h) and of the adaptive optimizer
// steps (cpu/optim_adaptive.h): argument checks, output allocation, GIL release, call.
// User-facing validation lives in python/fastdl/linear_model.py and python/fastdl/optim/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings.h"
#include "bindings_optim.h"
#include "cpu/linear_model.h"
#include "cpu/optim_adaptive.h"

namespace fastdl::bindings {
namespace {

using fastdl::cpu::check;
using fastdl::cpu::index_t;


// --------------------------------------------------------------------------- solvers
// x_t (F, N) is X transposed (X in Fortran order); y (N,); w_init (F,). Returns a new w.
template <typename T>
void check_problem(const In<T>& x_t, const In<T>& y, const In<T>& w_init) {
  check(x_t.ndim() == 2, "x_t must be 2-D (n_features, n_samples), got shape " + shape_of(x_t));
  check(y.ndim() == 1 && y.shape(0) == x_t.shape(1),
        "y " + shape_of(y) + " must have one value per column of x_t " + shape_of(x_t));
  check(w_init.ndim() == 1 && w_init.shape(0) == x_t.shape(0),
        "w_init " + shape_of(w_init) + " must have one value per row of x_t " + shape_of(x_t));
}

void check_settings(double l1, double l2, index_t max_iter, double tol) {
  check(l1 >= 0.0 && l2 >= 0.0, "penalties l1 and l2 must be non-negative");
  check(max_iter >= 0, "max_iter must be non-negative");
  check(tol >= 0.0, "tol must be non-negative");
}

template <typename T>
py::array_t<T> copy_of(const In<T>& w_init) {
  py::array_t<T> w(w_init.shape(0));
  std::copy(w_init.data(), w_init.data() + w_init.size(), w.mutable_data());
  return w;
}

template <typename T>
py::tuple coordinate_descent(const In<T>& x_t, const In<T>& y, const In<T>& w_init, double l1,
                             double l2, index_t max_iter, double tol) {
  check_problem(x_t, y, w_init);
  check_settings(l1, l2, max_iter, tol);
  auto w = copy_of(w_init);
  const index_t f = x_t.shape(0), n = x_t.shape(1);
  const T *x = x_t.data(), *target = y.data();
  T* pw = w.mutable_data();
  fastdl::cpu::SolverResult r;
  {
    py::gil_scoped_release release;
    r = fastdl::cpu::coordinate_descent<T>(x, target, pw, n, f, l1, l2, max_iter, tol);
  }
  return py::make_tuple(w, r.iterations, r.gap);
}

template <typename T>
py::tuple proximal_gradient(const In<T>& x_t, const In<T>& y, const In<T>& w_init, double l1,
                            double l2, double step, index_t max_iter, double tol,
                            bool accelerated) {
  check_problem(x_t, y, w_init);
  check_settings(l1, l2, max_iter, tol);
  auto w = copy_of(w_init);
  const index_t f = x_t.shape(0), n = x_t.shape(1);
  const T *x = x_t.data(), *target = y.data();
  T* pw = w.mutable_data();
  fastdl::cpu::SolverResult r;
  {
    py::gil_scoped_release release;
    r = fastdl::cpu::proximal_gradient<T>(x, target, pw, n, f, l1, l2, step, max_iter, tol,
                                          accelerated);
  }
  return py::make_tuple(w, r.iterations, r.gap);
}

template <typename T>
py::tuple subgradient_descent(const In<T>& x_t, const In<T>& y, const In<T>& w_init, double l1,
                              double l2, double step0, index_t max_iter, double tol) {
  check_problem(x_t, y, w_init);
  check_settings(l1, l2, max_iter, tol);
  auto w = copy_of(w_init);
  const index_t f = x_t.shape(0), n = x_t.shape(1);
  const T *x = x_t.data(), *target = y.data();
  T* pw = w.mutable_data();
  fastdl::cpu::SolverResult r;
  {
    py::gil_scoped_release release;
    r = fastdl::cpu::subgradient_descent<T>(x, target, pw, n, f, l1, l2, step0, max_iter, tol);
  }
  return py::make_tuple(w, r.iterations, r.gap);
}

template <typename T>
double squared_spectral_norm(const In<T>& x_t) {
  check(x_t.ndim() == 2, "x_t must be 2-D, got shape " + shape_of(x_t));
  const index_t f = x_t.shape(0), n = x_t.shape(1);
  const T* x = x_t.data();
  py::gil_scoped_release release;
  return fastdl::cpu::squared_spectral_norm<T>(x, n, f);
}

// --------------------------------------------------------------------------- optimizers

template <typename T>
void define_solvers(py::module_& m) {
  m.def("coordinate_descent", &coordinate_descent<T>, py::arg("x_t"), py::arg("y"),
        py::arg("w_init"), py::arg("l1"), py::arg("l2"), py::arg("max_iter"), py::arg("tol"));
  m.def("proximal_gradient", &proximal_gradient<T>, py::arg("x_t"), py::arg("y"),
        py::arg("w_init"), py::arg("l1"), py::arg("l2"), py::arg("step"), py::arg("max_iter"),
        py::arg("tol"), py::arg("accelerated"));
  m.def("subgradient_descent", &subgradient_descent<T>, py::arg("x_t"), py::arg("y"),
        py::arg("w_init"), py::arg("l1"), py::arg("l2"), py::arg("step0"), py::arg("max_iter"),
        py::arg("tol"));
  m.def("squared_spectral_norm", &squared_spectral_norm<T>, py::arg("x_t"));
}

}  // namespace

void bind_linear_model(py::module_& m) {
  // float32 first: in pybind11's first (no-conversion) pass a float64 array skips it.
  define_solvers<float>(m);
  define_solvers<double>(m);
  m.def("adagrad_step_float32", &adagrad_step<HostOptim, float>);
  m.def("adagrad_step_float64", &adagrad_step<HostOptim, double>);
  m.def("rmsprop_step_float32", &rmsprop_step<HostOptim, float>);
  m.def("rmsprop_step_float64", &rmsprop_step<HostOptim, double>);
}

}  // namespace fastdl::bindings
