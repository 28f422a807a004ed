// Bindings of the losses (csrc/cpu/loss.cpp): argument checks, output allocation, GIL
// release, kernel call. User-facing validation lives in python/fastdl/nn/functional.py;
// these checks are the cheap second line that keeps any call from Python memory-safe.
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "bindings_alloc.h"
#include "cpu/loss.h"

namespace fastdl::bindings {

namespace {

using fastdl::cpu::check;
using fastdl::cpu::index_t;




// (outer, dim, inner) of an array around axis `dim`.
struct Split {
  index_t outer = 1, dim = 1, inner = 1;
};

Split split_at(const py::array& a, index_t axis) {
  const index_t ndim = a.ndim();
  check(ndim == 0 ? (axis == 0 || axis == -1) : (axis >= -ndim && axis < ndim),
        "dim " + std::to_string(axis) + " out of range for shape " + shape_of(a));
  Split s;
  if (ndim == 0) return s;
  if (axis < 0) axis += ndim;
  for (index_t d = 0; d < ndim; ++d) (d < axis ? s.outer : d == axis ? s.dim : s.inner) *= a.shape(d);
  return s;
}

// -------------------------------------------------------------------- softmax
template <typename T>
py::array_t<T> softmax_forward(const In<T>& input, index_t dim, bool log) {
  const Split s = split_at(input, dim);
  py::array_t<T> output(shape_vector(input));
  const T* x = input.data();
  T* y = output.mutable_data();
  if (input.size() == 0) return output;
  {
    py::gil_scoped_release release;
    fastdl::cpu::softmax_forward<T>(x, y, s.outer, s.dim, s.inner, log);
  }
  return output;
}

template <typename T>
py::array_t<T> softmax_backward(const In<T>& output, const In<T>& grad_output, index_t dim, bool log) {
  check(same_shape(output, grad_output), "grad_output " + shape_of(grad_output) +
                                             " must have the shape of output " + shape_of(output));
  const Split s = split_at(output, dim);
  py::array_t<T> grad_input(shape_vector(output));
  const T *y = output.data(), *g = grad_output.data();
  T* gx = grad_input.mutable_data();
  if (output.size() == 0) return grad_input;
  {
    py::gil_scoped_release release;
    fastdl::cpu::softmax_backward<T>(y, g, gx, s.outer, s.dim, s.inner, log);
  }
  return grad_input;
}

// -------------------------------------------------------------------- nll_loss
// input (N, C, d...) and target (N, d...): returns (outer N, classes C, inner prod(d)).
template <typename T>
Split check_nll(const In<T>& input, const In<std::int64_t>& target,
                const std::optional<In<T>>& weight, std::int64_t ignore_index) {
  check(input.ndim() >= 2, "input must be at least 2-D (N, C, ...), got shape " + shape_of(input));
  const Split s = split_at(input, 1);
  bool match = target.ndim() == input.ndim() - 1 && target.shape(0) == input.shape(0);
  for (py::ssize_t d = 2; match && d < input.ndim(); ++d) match = target.shape(d - 1) == input.shape(d);
  check(match, "target " + shape_of(target) + " does not match input " + shape_of(input));
  check(s.dim > 0, "input must have at least one class");
  if (weight)
    check(weight->ndim() == 1 && weight->shape(0) == s.dim,
          "weight " + shape_of(*weight) + " must have " + std::to_string(s.dim) + " elements");
  // Find the first bad label with plain comparisons; the message is built only for it
  // (building check()'s message for every label cost as much as the whole loss).
  const std::int64_t* t = target.data();
  index_t p = 0;
  while (p < target.size() && (t[p] == ignore_index || (t[p] >= 0 && t[p] < s.dim))) ++p;
  check(p == target.size(),
        p < target.size() ? "target label " + std::to_string(t[p]) + " out of range [0, " +
                                std::to_string(s.dim) + ")"
                          : std::string());
  return s;
}

template <typename T>
py::tuple nll_loss_forward(const In<T>& input, const In<std::int64_t>& target,
                           const std::optional<In<T>>& weight, std::int64_t ignore_index,
                           bool reduction_none) {
  const Split s = check_nll(input, target, weight, ignore_index);
  py::object loss_obj = py::none();
  T* loss = nullptr;
  if (reduction_none) {
    py::array_t<T> a(shape_vector(target));
    loss = a.mutable_data(), loss_obj = a;
  }
  const T *x = input.data(), *w = weight ? weight->data() : nullptr;
  const std::int64_t* t = target.data();
  fastdl::cpu::LossSums sums{0.0, 0.0};
  {
    py::gil_scoped_release release;
    sums = fastdl::cpu::nll_loss_forward<T>(x, t, w, loss, s.outer, s.dim, s.inner, ignore_index);
  }
  return py::make_tuple(loss_obj, sums.loss, sums.weight);
}

template <typename T>
py::array_t<T> nll_loss_backward(const In<T>& input, const In<std::int64_t>& target,
                                 const std::optional<In<T>>& weight, const In<T>& grad,
                                 std::int64_t ignore_index) {
  // input is only read for its shape (a zero-stride view costs nothing to pass).
  const Split s = check_nll(input, target, weight, ignore_index);
  const bool scalar = grad.ndim() == 0;
  check(scalar || same_shape(grad, target),
        "grad " + shape_of(grad) + " must be a scalar or have the shape of target " + shape_of(target));
  py::array_t<T> grad_input(shape_vector(input));
  const T *w = weight ? weight->data() : nullptr, *g = grad.data();
  const std::int64_t* t = target.data();
  T* gx = grad_input.mutable_data();
  if (grad_input.size() == 0) return grad_input;
  {
    py::gil_scoped_release release;
    fastdl::cpu::nll_loss_backward<T>(t, w, g, scalar, gx, s.outer, s.dim, s.inner, ignore_index);
  }
  return grad_input;
}

// -------------------------------------------------------------------- cross-entropy, probabilities
template <typename T>
void check_probabilities(const In<T>& logits, const In<T>& target, const std::optional<In<T>>& weight,
                         double label_smoothing) {
  check(logits.ndim() == 2, "input must be 2-D (N, C), got shape " + shape_of(logits));
  check(same_shape(logits, target), "target " + shape_of(target) + " must have the shape of input " + shape_of(logits));
  check(logits.shape(1) > 0, "input must have at least one class");
  check(label_smoothing >= 0.0 && label_smoothing <= 1.0, "label_smoothing must lie in [0, 1]");
  if (weight)
    check(weight->ndim() == 1 && weight->shape(0) == logits.shape(1),
          "weight " + shape_of(*weight) + " must have " + std::to_string(logits.shape(1)) + " elements");
}

template <typename T>
py::tuple cross_entropy_probabilities_forward(const In<T>& logits, const In<T>& target,
                                              const std::optional<In<T>>& weight,
                                              double label_smoothing, bool reduction_none) {
  check_probabilities(logits, target, weight, label_smoothing);
  const index_t N = logits.shape(0), C = logits.shape(1);
  py::object loss_obj = py::none();
  T* loss = nullptr;
  if (reduction_none) {
    py::array_t<T> a({static_cast<py::ssize_t>(N)});
    loss = a.mutable_data(), loss_obj = a;
  }
  py::array_t<double> lse({static_cast<py::ssize_t>(N)});
  const T *x = logits.data(), *t = target.data(), *w = weight ? weight->data() : nullptr;
  double* l = lse.mutable_data();
  double sum = 0.0;
  {
    py::gil_scoped_release release;
    sum = fastdl::cpu::cross_entropy_probabilities_forward<T>(x, t, w, loss, l, N, C, label_smoothing);
  }
  return py::make_tuple(loss_obj, sum, lse);
}

template <typename T>
py::array_t<T> cross_entropy_probabilities_backward(const In<T>& logits, const In<T>& target,
                                                     const std::optional<In<T>>& weight,
                                                     const In<double>& logsumexp, const In<T>& grad,
                                                     double label_smoothing) {
  check_probabilities(logits, target, weight, label_smoothing);
  const index_t N = logits.shape(0), C = logits.shape(1);
  check(logsumexp.ndim() == 1 && logsumexp.shape(0) == N, "logsumexp must have one entry per row");
  const bool scalar = grad.ndim() == 0;
  check(scalar || (grad.ndim() == 1 && grad.shape(0) == N), "grad must be a scalar or have one entry per row");
  py::array_t<T> grad_logits(shape_vector(logits));
  const T *x = logits.data(), *t = target.data(), *w = weight ? weight->data() : nullptr, *g = grad.data();
  const double* l = logsumexp.data();
  T* gx = grad_logits.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::cross_entropy_probabilities_backward<T>(x, t, w, l, g, scalar, gx, N, C, label_smoothing);
  }
  return grad_logits;
}

// -------------------------------------------------------------------- element-wise losses
template <typename T>
fastdl::cpu::Broadcast periodic(const std::optional<In<T>>& operand, const py::array& input, const char* name) {
  if (!operand) return {nullptr, 0};
  const index_t period = operand->size();
  check(period > 0 && input.size() % period == 0,
        std::string(name) + " " + shape_of(*operand) + " does not broadcast periodically over input " + shape_of(input));
  return {operand->data(), period};
}

fastdl::cpu::Loss loss_kind(int kind) {
  check(kind >= 0 && kind <= 5, "unknown loss kind " + std::to_string(kind));
  return static_cast<fastdl::cpu::Loss>(kind);
}

// (loss or None, sum, out_of_range, grad_input or None): grad_input, with grad_scale given,
// is elementwise_loss_backward's input gradient for the scalar grad grad_scale.
template <typename T>
py::tuple elementwise_loss_forward(int kind, const In<T>& input, const In<T>& target,
                                   const std::optional<In<T>>& weight,
                                   const std::optional<In<T>>& pos_weight, bool reduction_none,
                                   std::optional<double> grad_scale) {
  const auto k = loss_kind(kind);
  check(same_shape(input, target), "target " + shape_of(target) + " must have the shape of input " + shape_of(input));
  const auto w = periodic(weight, input, "weight"), p = periodic(pos_weight, input, "pos_weight");
  py::object loss_obj = py::none(), grad_obj = py::none();
  T *loss = nullptr, *gx = nullptr;
  if (reduction_none) {
    py::array_t<T> a(shape_vector(input));
    loss = a.mutable_data(), loss_obj = a;
  }
  if (grad_scale) {
    py::array_t<T> a(shape_vector(input));
    gx = a.mutable_data(), grad_obj = a;
  }
  const T *x = input.data(), *y = target.data();
  const index_t n = input.size();
  const T scale = static_cast<T>(grad_scale.value_or(1.0));
  double sum = 0.0;
  bool out_of_range = false;
  {
    py::gil_scoped_release release;
    sum = fastdl::cpu::elementwise_loss_forward<T>(k, x, y, w, p, loss, n, &out_of_range, gx, scale);
  }
  return py::make_tuple(loss_obj, sum, out_of_range, grad_obj);
}

template <typename T>
py::tuple elementwise_loss_backward(int kind, const In<T>& input, const In<T>& target,
                                    const std::optional<In<T>>& weight,
                                    const std::optional<In<T>>& pos_weight, const In<T>& grad,
                                    bool needs_input, bool needs_target) {
  const auto k = loss_kind(kind);
  check(same_shape(input, target), "target " + shape_of(target) + " must have the shape of input " + shape_of(input));
  const auto w = periodic(weight, input, "weight"), p = periodic(pos_weight, input, "pos_weight");
  const bool scalar = grad.ndim() == 0;
  check(scalar || same_shape(grad, input), "grad " + shape_of(grad) + " must be a scalar or have the shape of input " + shape_of(input));
  py::object gx_obj = py::none(), gy_obj = py::none();
  T *gx = nullptr, *gy = nullptr;
  if (needs_input) { py::array_t<T> a(shape_vector(input)); gx = a.mutable_data(); gx_obj = a; }
  if (needs_target) { py::array_t<T> a(shape_vector(input)); gy = a.mutable_data(); gy_obj = a; }
  const T *x = input.data(), *y = target.data(), *g = grad.data();
  const index_t n = input.size();
  {
    py::gil_scoped_release release;
    fastdl::cpu::elementwise_loss_backward<T>(k, x, y, w, p, g, scalar, gx, gy, n);
  }
  return py::make_tuple(gx_obj, gy_obj);
}

template <typename T>
void define_typed(py::module_& m) {
  m.def("softmax_forward", with_output_cache<&softmax_forward<T>>, py::arg("input"), py::arg("dim"), py::arg("log"));
  m.def("softmax_backward", with_output_cache<&softmax_backward<T>>, py::arg("output"), py::arg("grad_output"),
        py::arg("dim"), py::arg("log"));
  m.def("nll_loss_forward", with_output_cache<&nll_loss_forward<T>>, py::arg("input"), py::arg("target"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("reduction_none"));
  m.def("nll_loss_backward", with_output_cache<&nll_loss_backward<T>>, py::arg("input"), py::arg("target"),
        py::arg("weight"), py::arg("grad"), py::arg("ignore_index"));
  m.def("cross_entropy_probabilities_forward", with_output_cache<&cross_entropy_probabilities_forward<T>>,
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("label_smoothing"),
        py::arg("reduction_none"));
  m.def("cross_entropy_probabilities_backward", with_output_cache<&cross_entropy_probabilities_backward<T>>,
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("logsumexp"),
        py::arg("grad"), py::arg("label_smoothing"));
  m.def("elementwise_loss_forward", with_output_cache<&elementwise_loss_forward<T>>, py::arg("kind"), py::arg("input"),
        py::arg("target"), py::arg("weight"), py::arg("pos_weight"), py::arg("reduction_none"),
        py::arg("grad_scale") = py::none());
  m.def("elementwise_loss_backward", with_output_cache<&elementwise_loss_backward<T>>, py::arg("kind"),
        py::arg("input"), py::arg("target"), py::arg("weight"), py::arg("pos_weight"),
        py::arg("grad"), py::arg("needs_input"), py::arg("needs_target"));
}

}  // namespace

void bind_loss(py::module_& m) {
  // float32 first: in pybind11's first (no-conversion) pass a float64 array skips it.
  define_typed<float>(m);
  define_typed<double>(m);
}

}  // namespace fastdl::bindings
