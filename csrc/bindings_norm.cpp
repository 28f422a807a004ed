// Bindings of batch norm, activations, dropout (csrc/cpu/batchnorm.cpp, activation.cpp,
// dropout.cpp): argument checks, output allocation, GIL release, kernel call. No math.
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "bindings_alloc.h"
#include "cpu/norm.h"

namespace fastdl::bindings {

namespace {

using fastdl::cpu::check;
using fastdl::cpu::index_t;




template <typename T>
py::array_t<T> zeros(py::ssize_t n) {
  py::array_t<T> a(n);
  std::fill(a.mutable_data(), a.mutable_data() + n, T(0));
  return a;
}

// An array the kernel writes in place: exactly T, C-contiguous, writeable, `size` elements.
template <typename T>
T* inplace_data(const py::object& h, const char* name, index_t size) {
  check(py::isinstance<py::array>(h), std::string(name) + " must be a NumPy array");
  auto a = py::reinterpret_borrow<py::array>(h);
  check(a.dtype().is(py::dtype::of<T>()),
        std::string(name) + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() + " array");
  check(a.flags() & py::array::c_style, std::string(name) + " must be C-contiguous");
  check(a.writeable(), std::string(name) + " must be writeable");
  check(a.size() == size, std::string(name) + " " + shape_of(a) + " must have " +
                              std::to_string(size) + " elements");
  return static_cast<T*>(a.mutable_data());
}

// The (N, C, S) view of an input of shape (N, C, ...).
fastdl::cpu::BatchNormShape batch_norm_shape(const py::array& input) {
  check(input.ndim() >= 2, "input must have at least 2 dimensions (N, C, ...), got shape " +
                               shape_of(input));
  fastdl::cpu::BatchNormShape s{input.shape(0), input.shape(1), 1};
  for (py::ssize_t d = 2; d < input.ndim(); ++d) s.spatial *= input.shape(d);
  return s;
}

template <typename T>
const T* channel_vector(const std::optional<In<T>>& a, const char* name, index_t channels) {
  if (!a) return nullptr;
  check(a->ndim() == 1 && a->shape(0) == channels,
        std::string(name) + " " + shape_of(*a) + " must have " + std::to_string(channels) +
            " elements, one per channel");
  return a->data();
}

// -------------------------------------------------------------------- batch_norm
// Returns (output, save_mean, save_invstd); running_mean / running_var (or None) are
// updated in place in training mode and read otherwise.
template <typename T>
py::tuple batch_norm_forward(const In<T>& input, const std::optional<In<T>>& weight,
                             const std::optional<In<T>>& bias, const py::object& running_mean,
                             const py::object& running_var, bool training, double momentum,
                             double eps) {
  const auto s = batch_norm_shape(input);
  const T* w = channel_vector(weight, "weight", s.channels);
  const T* b = channel_vector(bias, "bias", s.channels);
  T* rm = running_mean.is_none() ? nullptr : inplace_data<T>(running_mean, "running_mean", s.channels);
  T* rv = running_var.is_none() ? nullptr : inplace_data<T>(running_var, "running_var", s.channels);
  if (training)
    check(s.batch * s.spatial != 1,
          "Expected more than 1 value per channel when training, got input size " + shape_of(input));
  else
    check(rm && rv, "running_mean and running_var are required when training is False");
  check(eps >= 0, "eps must be non-negative");
  auto output = py::array_t<T>(shape_vector(input));
  auto save_mean = py::array_t<double>(s.channels);
  auto save_invstd = py::array_t<double>(s.channels);
  const T* x = input.data();
  T* y = output.mutable_data();
  double *mean = save_mean.mutable_data(), *invstd = save_invstd.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::batch_norm_forward<T>(x, w, b, y, rm, rv, mean, invstd, training, momentum,
                                       eps, s);
  }
  return py::make_tuple(output, save_mean, save_invstd);
}

// Returns (grad_input, grad_weight, grad_bias), None where `needs` is false.
template <typename T>
py::tuple batch_norm_backward(const In<T>& input, const In<T>& grad_output,
                              const In<double>& save_mean, const In<double>& save_invstd,
                              const std::optional<In<T>>& weight, bool training,
                              std::array<bool, 3> needs) {
  const auto s = batch_norm_shape(input);
  check(same_shape(input, grad_output), "grad_output " + shape_of(grad_output) +
                                            " must have the shape of input " + shape_of(input));
  check(save_mean.ndim() == 1 && save_mean.shape(0) == s.channels && save_invstd.ndim() == 1 &&
            save_invstd.shape(0) == s.channels,
        "save_mean and save_invstd must have one entry per channel");
  const T* w = channel_vector(weight, "weight", s.channels);
  check(!needs[1] || w, "grad of weight needs the weight");
  py::object gi = py::none(), gw = py::none(), gb = py::none();
  T *pgi = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (needs[0]) { auto a = py::array_t<T>(shape_vector(input)); pgi = a.mutable_data(); gi = a; }
  if (needs[1]) { auto a = zeros<T>(s.channels); pgw = a.mutable_data(); gw = a; }
  if (needs[2]) { auto a = zeros<T>(s.channels); pgb = a.mutable_data(); gb = a; }
  const T *x = input.data(), *gy = grad_output.data();
  const double *mean = save_mean.data(), *invstd = save_invstd.data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::batch_norm_backward<T>(x, gy, mean, invstd, w, pgi, pgw, pgb, training, s);
  }
  return py::make_tuple(gi, gw, gb);
}

// -------------------------------------------------------------------- element-wise
// out: None (a new array) or a C-contiguous writeable array of the input's shape and
// dtype, written in place (it may be the input itself).
template <typename T>
py::array_t<T> output_for(const py::array& input, const py::object& out) {
  if (out.is_none()) return py::array_t<T>(shape_vector(input));
  inplace_data<T>(out, "out", input.size());
  auto a = py::reinterpret_borrow<py::array_t<T>>(out);
  check(same_shape(a, input), "out " + shape_of(a) + " must have the shape of input " + shape_of(input));
  return a;
}

template <typename T, void (*Kernel)(const T*, T*, index_t)>
py::array_t<T> unary_forward(const In<T>& input, const py::object& out) {
  auto output = output_for<T>(input, out);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    Kernel(x, y, input.size());
  }
  return output;
}

// Backward of an activation from one saved array (its output or input) and grad_output.
template <typename T, void (*Kernel)(const T*, const T*, T*, index_t)>
py::array_t<T> unary_backward(const In<T>& saved, const In<T>& grad_output) {
  check(same_shape(saved, grad_output), "grad_output " + shape_of(grad_output) +
                                            " must have the shape " + shape_of(saved));
  auto grad_input = py::array_t<T>(shape_vector(saved));
  const T *a = saved.data(), *gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    Kernel(a, gy, gx, saved.size());
  }
  return grad_input;
}

template <typename T>
py::array_t<T> leaky_relu_forward(const In<T>& input, double negative_slope, const py::object& out) {
  auto output = output_for<T>(input, out);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::leaky_relu_forward<T>(x, y, input.size(), negative_slope);
  }
  return output;
}

template <typename T>
py::array_t<T> leaky_relu_backward(const In<T>& input, const In<T>& grad_output, double negative_slope) {
  check(same_shape(input, grad_output), "grad_output " + shape_of(grad_output) +
                                            " must have the shape of input " + shape_of(input));
  auto grad_input = py::array_t<T>(shape_vector(input));
  const T *x = input.data(), *gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::leaky_relu_backward<T>(x, gy, gx, input.size(), negative_slope);
  }
  return grad_input;
}

// -------------------------------------------------------------------- dropout
// forward and backward are the same masking (the backward masks grad_output).
template <typename T, void (*Kernel)(const T*, T*, index_t, std::uint64_t, double)>
py::array_t<T> dropout_apply(const In<T>& input, std::uint64_t seed, double p, const py::object& out) {
  check(p >= 0 && p < 1, "dropout probability must lie in [0, 1) for the kernel, got " + std::to_string(p));
  auto output = output_for<T>(input, out);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    Kernel(x, y, input.size(), seed, p);
  }
  return output;
}

template <typename T>
void define_typed(py::module_& m) {
  namespace cpu = fastdl::cpu;
  m.def("batch_norm_forward", with_output_cache<&batch_norm_forward<T>>, py::arg("input"), py::arg("weight"),
        py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("training"),
        py::arg("momentum"), py::arg("eps"));
  m.def("batch_norm_backward", with_output_cache<&batch_norm_backward<T>>, py::arg("input"), py::arg("grad_output"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("weight"), py::arg("training"),
        py::arg("needs"));
  m.def("sigmoid_forward", with_output_cache<&unary_forward<T, cpu::sigmoid_forward<T>>>, py::arg("input"),
        py::arg("out") = py::none());
  m.def("sigmoid_backward", with_output_cache<&unary_backward<T, cpu::sigmoid_backward<T>>>, py::arg("output"),
        py::arg("grad_output"));
  m.def("tanh_forward", with_output_cache<&unary_forward<T, cpu::tanh_forward<T>>>, py::arg("input"),
        py::arg("out") = py::none());
  m.def("tanh_backward", with_output_cache<&unary_backward<T, cpu::tanh_backward<T>>>, py::arg("output"),
        py::arg("grad_output"));
  m.def("leaky_relu_forward", with_output_cache<&leaky_relu_forward<T>>, py::arg("input"), py::arg("negative_slope"),
        py::arg("out") = py::none());
  m.def("leaky_relu_backward", with_output_cache<&leaky_relu_backward<T>>, py::arg("input"), py::arg("grad_output"),
        py::arg("negative_slope"));
  m.def("dropout_forward", with_output_cache<&dropout_apply<T, cpu::dropout_forward<T>>>, py::arg("input"),
        py::arg("seed"), py::arg("p"), py::arg("out") = py::none());
  m.def("dropout_backward", with_output_cache<&dropout_apply<T, cpu::dropout_backward<T>>>, py::arg("grad_output"),
        py::arg("seed"), py::arg("p"), py::arg("out") = py::none());
}

}  // namespace

void bind_norm(py::module_& m) {
  // float32 first: in pybind11's first (no-conversion) pass a float64 array skips it.
  define_typed<float>(m);
  define_typed<double>(m);
  // The output cache (bindings_alloc.h) of every memory-bound kernel's outputs.
  m.def("output_cache_held_bytes", &output_cache_held_bytes,
        "bytes of freed outputs the kernels keep for reuse");
  m.def("output_cache_release", &output_cache_release,
        "unmap the freed outputs kept for reuse; returns the bytes released");
}

}  // namespace fastdl::bindings
