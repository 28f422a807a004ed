// Python bindings of the CPU kernels: argument checks, output allocation, GIL release,
// kernel call. No math here (see cpu/*.cpp). User-facing validation with friendly
// messages lives in python/fastdl/nn/functional.py; the checks below are the cheap
// second line that keeps any call from Python memory-safe.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "bindings_optim.h"
#include "bindings_alloc.h"
#include "cpu/kernels.h"

namespace py = pybind11;
using fastdl::cpu::check;
using fastdl::cpu::index_t;

namespace {

// Inputs: C-contiguous arrays of T (pybind11 copies a strided view, never casts dtype).
using fastdl::bindings::In;
using Pair = std::array<index_t, 2>;

using fastdl::bindings::pointers;
using fastdl::bindings::shape_of;

void check_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  check(a.ndim() == ndim, std::string(name) + " must be " + std::to_string(ndim) +
                              "-D, got shape " + shape_of(a));
}

template <typename T>
py::array_t<T> empty(std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape);
}

template <typename T>
py::array_t<T> zeros(std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  std::fill(a.mutable_data(), a.mutable_data() + a.size(), T(0));
  return a;
}


// Sizes, strides, paddings and dilations stay below 2^31 so no product of them overflows.
void check_pair(const Pair& p, const char* name, index_t minimum) {
  constexpr index_t kMax = (index_t(1) << 31) - 1;
  check(p[0] >= minimum && p[1] >= minimum && p[0] <= kMax && p[1] <= kMax,
        std::string(name) + " must lie in [" + std::to_string(minimum) + ", 2^31 - 1], got (" +
            std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")");
}

index_t conv_out(index_t in, index_t pad, index_t dil, index_t k, index_t stride) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// -------------------------------------------------------------------- conv2d
template <typename T>
fastdl::cpu::Conv2dShape conv2d_shape(const In<T>& input, const In<T>& weight, Pair stride,
                                      Pair padding, Pair dilation, index_t groups) {
  check_ndim(input, 4, "input");
  check_ndim(weight, 4, "weight");
  check_pair(stride, "stride", 1);
  check_pair(dilation, "dilation", 1);
  check_pair(padding, "padding", 0);
  check(groups > 0 && groups <= (index_t(1) << 31), "groups must be positive");
  fastdl::cpu::Conv2dShape s{};
  s.batch = input.shape(0), s.in_channels = input.shape(1);
  s.height = input.shape(2), s.width = input.shape(3);
  s.out_channels = weight.shape(0), s.kernel_h = weight.shape(2), s.kernel_w = weight.shape(3);
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1], s.groups = groups;
  check(s.in_channels % groups == 0 && s.out_channels % groups == 0 &&
            weight.shape(1) * groups == s.in_channels,
        "weight " + shape_of(weight) + " does not match input " + shape_of(input) +
            " with groups=" + std::to_string(groups));
  check(s.kernel_h > 0 && s.kernel_w > 0, "kernel size must be positive");
  s.out_h = conv_out(s.height, s.pad_h, s.dilation_h, s.kernel_h, s.stride_h);
  s.out_w = conv_out(s.width, s.pad_w, s.dilation_w, s.kernel_w, s.stride_w);
  check(s.out_h > 0 && s.out_w > 0, "kernel larger than the padded input " + shape_of(input));
  return s;
}

template <typename T>
py::array_t<T> conv2d_forward(const In<T>& input, const In<T>& weight,
                              const std::optional<In<T>>& bias, Pair stride, Pair padding,
                              Pair dilation, index_t groups) {
  const auto s = conv2d_shape(input, weight, stride, padding, dilation, groups);
  if (bias) {
    check_ndim(*bias, 1, "bias");
    check(bias->shape(0) == s.out_channels, "bias " + shape_of(*bias) + " must have " +
                                                std::to_string(s.out_channels) + " elements");
  }
  auto output = empty<T>({s.batch, s.out_channels, s.out_h, s.out_w});
  const T* b = bias ? bias->data() : nullptr;
  const T *x = input.data(), *w = weight.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::conv2d_forward<T>(x, w, b, y, s);
  }
  return output;
}

template <typename T>
py::tuple conv2d_backward(const In<T>& input, const In<T>& weight, const In<T>& grad_output,
                          Pair stride, Pair padding, Pair dilation, index_t groups,
                          std::array<bool, 3> needs) {
  const auto s = conv2d_shape(input, weight, stride, padding, dilation, groups);
  check_ndim(grad_output, 4, "grad_output");
  check(grad_output.shape(0) == s.batch && grad_output.shape(1) == s.out_channels &&
            grad_output.shape(2) == s.out_h && grad_output.shape(3) == s.out_w,
        "grad_output " + shape_of(grad_output) + " does not match the output shape");
  py::object gi = py::none(), gw = py::none(), gb = py::none();
  T *pgi = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (needs[0]) {
    auto a = empty<T>({s.batch, s.in_channels, s.height, s.width});
    pgi = a.mutable_data(), gi = a;
  }
  if (needs[1]) {
    auto a = zeros<T>({weight.shape(0), weight.shape(1), weight.shape(2), weight.shape(3)});
    pgw = a.mutable_data(), gw = a;
  }
  if (needs[2]) {
    auto a = zeros<T>({s.out_channels});
    pgb = a.mutable_data(), gb = a;
  }
  const T *x = input.data(), *w = weight.data(), *gy = grad_output.data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::conv2d_backward<T>(x, w, gy, pgi, pgw, pgb, s);
  }
  return py::make_tuple(gi, gw, gb);
}

// -------------------------------------------------------------------- max_pool2d
fastdl::cpu::Pool2dShape pool2d_shape(const py::array& input, Pair kernel, Pair stride,
                                      Pair padding, Pair dilation, bool ceil_mode) {
  check(input.ndim() == 4, "input must be 4-D (N, C, H, W), got shape " + shape_of(input));
  check_pair(kernel, "kernel_size", 1);
  check_pair(stride, "stride", 1);
  check_pair(dilation, "dilation", 1);
  check_pair(padding, "padding", 0);
  check(padding[0] >= 0 && padding[1] >= 0 && 2 * padding[0] <= kernel[0] &&
            2 * padding[1] <= kernel[1],
        "padding must be non-negative and at most half the kernel size");
  fastdl::cpu::Pool2dShape s{};
  s.planes = input.shape(0) * input.shape(1), s.height = input.shape(2), s.width = input.shape(3);
  s.kernel_h = kernel[0], s.kernel_w = kernel[1], s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1], s.dilation_h = dilation[0], s.dilation_w = dilation[1];
  auto out_size = [&](index_t in, index_t k, index_t st, index_t p, index_t d) {
    const index_t span = in + 2 * p - d * (k - 1) - 1;
    if (span < 0) return index_t(0);
    index_t out = (ceil_mode ? (span + st - 1) / st : span / st) + 1;
    // With ceil_mode the last window must start inside the input or left padding.
    if (ceil_mode && (out - 1) * st >= in + p) --out;
    return out;
  };
  s.out_h = out_size(s.height, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_w = out_size(s.width, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  check(s.out_h > 0 && s.out_w > 0, "max_pool2d: output would be empty for input " + shape_of(input));
  return s;
}

template <typename T, typename I>
py::tuple max_pool2d_forward_as(const In<T>& input, const fastdl::cpu::Pool2dShape& s) {
  std::vector<py::ssize_t> shape{input.shape(0), input.shape(1), s.out_h, s.out_w};
  auto output = empty<T>(shape);
  auto indices = empty<I>(shape);
  const T* x = input.data();
  T* y = output.mutable_data();
  I* idx = indices.mutable_data();
  {
    py::gil_scoped_release release;
    if constexpr (std::is_same_v<I, std::uint8_t>) fastdl::cpu::max_pool2d_forward_codes<T>(x, y, idx, s);
    else fastdl::cpu::max_pool2d_forward<T>(x, y, idx, s);
  }
  return py::make_tuple(output, indices);
}

// compact: int32 indices where every plane index fits (autograd's own copy), else int64.
// window_codes (with compact): uint8 window codes (cpu/kernels.h) where the kernels have
// them; max_pool2d_backward then needs the window geometry.
template <typename T>
py::tuple max_pool2d_forward(const In<T>& input, Pair kernel, Pair stride, Pair padding,
                             Pair dilation, bool ceil_mode, bool compact, bool window_codes) {
  const auto s = pool2d_shape(input, kernel, stride, padding, dilation, ceil_mode);
  if (compact && window_codes && fastdl::cpu::max_pool2d_window_codes(s))
    return max_pool2d_forward_as<T, std::uint8_t>(input, s);
  if (compact && s.height * s.width <= std::numeric_limits<std::int32_t>::max())
    return max_pool2d_forward_as<T, std::int32_t>(input, s);
  return max_pool2d_forward_as<T, std::int64_t>(input, s);
}

template <typename T, typename I>
py::array_t<T> max_pool2d_backward(const In<T>& grad_output, const In<I>& indices,
                                   std::array<index_t, 4> input_shape,
                                   const std::optional<Pair>& kernel_size, const std::optional<Pair>& stride,
                                   const std::optional<Pair>& padding, const std::optional<Pair>& dilation) {
  check_ndim(grad_output, 4, "grad_output");
  check(indices.ndim() == 4 && std::equal(indices.shape(), indices.shape() + 4, grad_output.shape()),
        "indices " + shape_of(indices) + " must have the shape of grad_output " + shape_of(grad_output));
  check(grad_output.shape(0) == input_shape[0] && grad_output.shape(1) == input_shape[1],
        "grad_output " + shape_of(grad_output) + " does not match the input's batch and channels");
  check(input_shape[2] >= 1 && input_shape[3] >= 1 && input_shape[2] < (index_t(1) << 31) &&
            input_shape[3] < (index_t(1) << 31),
        "input_shape: height and width must lie in [1, 2^31)");
  fastdl::cpu::Pool2dShape s{};
  s.planes = input_shape[0] * input_shape[1], s.height = input_shape[2], s.width = input_shape[3];
  s.out_h = grad_output.shape(2), s.out_w = grad_output.shape(3);
  // The forward's window geometry, when given (all four), lets the kernel gather.
  check(kernel_size.has_value() == stride.has_value() && stride.has_value() == padding.has_value() &&
            padding.has_value() == dilation.has_value(),
        "max_pool2d_backward: give all of kernel_size, stride, padding and dilation, or none");
  if (kernel_size) {
    check_pair(*kernel_size, "kernel_size", 1);
    check_pair(*stride, "stride", 1);
    check_pair(*dilation, "dilation", 1);
    check_pair(*padding, "padding", 0);
    s.kernel_h = (*kernel_size)[0], s.kernel_w = (*kernel_size)[1];
    s.stride_h = (*stride)[0], s.stride_w = (*stride)[1];
    s.pad_h = (*padding)[0], s.pad_w = (*padding)[1];
    s.dilation_h = (*dilation)[0], s.dilation_w = (*dilation)[1];
  }
  const I* idx = indices.data();
  const index_t plane = s.height * s.width;
  if constexpr (std::is_same_v<I, std::uint8_t>)
    check(kernel_size.has_value() && fastdl::cpu::max_pool2d_window_codes(s),
          "max_pool2d_backward: uint8 indices are window codes, for 3x3 windows, stride 2, "
          "padding 1 on planes of even width 4 and more, with that geometry given");
  else if (!fastdl::cpu::max_pool2d_backward_gathers(s)) {
    // The scatter writes at each index. One comparison per index, one check at the end
    // (building check()'s message per index cost more than the whole backward pass).
    I largest = -1;
    for (index_t k = 0; k < indices.size(); ++k) largest = std::max(largest, idx[k]);
    check(largest < plane, "max_pool2d_backward: index out of range of the input plane");
  }
  auto grad_input = empty<T>({input_shape[0], input_shape[1], input_shape[2], input_shape[3]});
  const T* gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    if constexpr (std::is_same_v<I, std::uint8_t>) fastdl::cpu::max_pool2d_backward_codes<T>(gy, idx, gx, s);
    else fastdl::cpu::max_pool2d_backward<T>(gy, idx, gx, s);
  }
  return grad_input;
}

// -------------------------------------------------------------------- linear
template <typename T>
py::array_t<T> linear_forward(const In<T>& input, const In<T>& weight,
                              const std::optional<In<T>>& bias) {
  check_ndim(input, 2, "input");
  check_ndim(weight, 2, "weight");
  const index_t N = input.shape(0), I = input.shape(1), O = weight.shape(0);
  check(weight.shape(1) == I, "weight " + shape_of(weight) + " does not match input " + shape_of(input));
  if (bias) check(bias->ndim() == 1 && bias->shape(0) == O, "bias " + shape_of(*bias) + " must have " + std::to_string(O) + " elements");
  auto output = empty<T>({N, O});
  const T *x = input.data(), *w = weight.data(), *b = bias ? bias->data() : nullptr;
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::linear_forward<T>(x, w, b, y, N, I, O);
  }
  return output;
}

template <typename T>
py::tuple linear_backward(const In<T>& input, const In<T>& weight, const In<T>& grad_output,
                          std::array<bool, 3> needs) {
  check_ndim(input, 2, "input");
  check_ndim(weight, 2, "weight");
  check_ndim(grad_output, 2, "grad_output");
  const index_t N = input.shape(0), I = input.shape(1), O = weight.shape(0);
  check(weight.shape(1) == I && grad_output.shape(0) == N && grad_output.shape(1) == O,
        "shapes do not agree: input " + shape_of(input) + ", weight " + shape_of(weight) +
            ", grad_output " + shape_of(grad_output));
  py::object gi = py::none(), gw = py::none(), gb = py::none();
  T *pgi = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (needs[0]) { auto a = empty<T>({N, I}); pgi = a.mutable_data(); gi = a; }
  if (needs[1]) { auto a = zeros<T>({O, I}); pgw = a.mutable_data(); gw = a; }
  if (needs[2]) { auto a = zeros<T>({O}); pgb = a.mutable_data(); gb = a; }
  const T *x = input.data(), *w = weight.data(), *gy = grad_output.data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::linear_backward<T>(x, w, gy, pgi, pgw, pgb, N, I, O);
  }
  return py::make_tuple(gi, gw, gb);
}

// -------------------------------------------------------------------- relu
using fastdl::bindings::shape_vector;

template <typename T>
py::array_t<T> relu_forward(const In<T>& input) {
  auto output = empty<T>(shape_vector(input));
  const T* x = input.data();
  T* y = output.mutable_data();
  const index_t n = input.size();
  {
    py::gil_scoped_release release;
    fastdl::cpu::relu_forward<T>(x, y, n);
  }
  return output;
}

template <typename T>
py::array_t<T> relu_backward(const In<T>& output, const In<T>& grad_output) {
  check(output.ndim() == grad_output.ndim() &&
            std::equal(output.shape(), output.shape() + output.ndim(), grad_output.shape()),
        "grad_output " + shape_of(grad_output) + " must have the shape of output " + shape_of(output));
  auto grad_input = empty<T>(shape_vector(output));
  const T *y = output.data(), *gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  const index_t n = output.size();
  {
    py::gil_scoped_release release;
    fastdl::cpu::relu_backward<T>(y, gy, gx, n);
  }
  return grad_input;
}

// -------------------------------------------------------------------- cross_entropy
template <typename T>
void check_cross_entropy(const In<T>& logits, const In<std::int64_t>& target,
                         const std::optional<In<T>>& weight, std::int64_t ignore_index) {
  check_ndim(logits, 2, "input");
  check_ndim(target, 1, "target");
  const index_t N = logits.shape(0), C = logits.shape(1);
  check(target.shape(0) == N, "target " + shape_of(target) + " must have one label per row of input " + shape_of(logits));
  check(C > 0, "input must have at least one class");
  if (weight) check(weight->ndim() == 1 && weight->shape(0) == C, "weight " + shape_of(*weight) + " must have " + std::to_string(C) + " elements");
  // The message is built only for the first bad label (building it per label cost ~10%
  // of the whole cross-entropy).
  const std::int64_t* t = target.data();
  index_t n = 0;
  while (n < N && (t[n] == ignore_index || (t[n] >= 0 && t[n] < C))) ++n;
  check(n == N, n < N ? "target label " + std::to_string(t[n]) + " out of range [0, " +
                            std::to_string(C) + ")"
                      : std::string());
}

template <typename T>
py::tuple cross_entropy_forward(const In<T>& logits, const In<std::int64_t>& target,
                                const std::optional<In<T>>& weight, std::int64_t ignore_index,
                                bool with_smooth) {
  check_cross_entropy(logits, target, weight, ignore_index);
  const index_t N = logits.shape(0), C = logits.shape(1);
  auto nll = empty<T>({N});
  auto lse = empty<double>({N});
  py::object smooth_obj = py::none();
  T* smooth = nullptr;
  if (with_smooth) { auto a = empty<T>({N}); smooth = a.mutable_data(); smooth_obj = a; }
  const T *x = logits.data(), *w = weight ? weight->data() : nullptr;
  const std::int64_t* t = target.data();
  T* pn = nll.mutable_data();
  double* pl = lse.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::cross_entropy_forward<T>(x, t, w, pn, smooth, pl, N, C, ignore_index);
  }
  return py::make_tuple(nll, smooth_obj, lse);
}

template <typename T>
py::array_t<T> cross_entropy_backward(const In<T>& logits, const In<std::int64_t>& target,
                                      const std::optional<In<T>>& weight, const In<double>& logsumexp,
                                      const In<T>& grad_nll, const std::optional<In<T>>& grad_smooth,
                                      std::int64_t ignore_index) {
  check_cross_entropy(logits, target, weight, ignore_index);
  const index_t N = logits.shape(0), C = logits.shape(1);
  check(logsumexp.ndim() == 1 && logsumexp.shape(0) == N, "logsumexp must have one entry per row");
  check(grad_nll.ndim() == 1 && grad_nll.shape(0) == N, "grad_nll must have one entry per row");
  if (grad_smooth) check(grad_smooth->ndim() == 1 && grad_smooth->shape(0) == N, "grad_smooth must have one entry per row");
  auto grad = empty<T>({N, C});
  const T *x = logits.data(), *w = weight ? weight->data() : nullptr;
  const double* l = logsumexp.data();
  const T *gn = grad_nll.data(), *gs = grad_smooth ? grad_smooth->data() : nullptr;
  const std::int64_t* t = target.data();
  T* g = grad.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::cross_entropy_backward<T>(x, t, w, l, gn, gs, g, N, C, ignore_index);
  }
  return grad;
}

// -------------------------------------------------------------------- optimizers

// -------------------------------------------------------------------- build info
std::string simd_level() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#elif defined(__AVX__)
  return "AVX";
#elif defined(__SSE4_2__)
  return "SSE4.2";
#elif defined(__ARM_NEON)
  return "NEON";
#else
  return "baseline";
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = FASTDL_VERSION;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("g++ ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["arch"] = FASTDL_ARCH;
  d["simd"] = simd_level();
  d["openmp"] = _OPENMP;
  d["blas"] = fastdl::cpu::blas_config();
  d["malloc_tuning"] = fastdl::cpu::malloc_tuning_active();
#if defined(__SANITIZE_ADDRESS__)
  d["sanitizers"] = true;
#else
  d["sanitizers"] = false;
#endif
  return d;
}

void stream_copy(py::array_t<float, py::array::c_style> destination, const In<float>& source) {
  check(destination.size() == source.size(), "stream_copy: sizes differ");
  float* dst = destination.mutable_data();
  const float* src = source.data();
  const index_t n = source.size();
  py::gil_scoped_release release;
  const int threads = fastdl::cpu::get_num_threads();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const index_t begin = n * t / threads, end = n * (t + 1) / threads;
    std::memcpy(dst + begin, src + begin, static_cast<std::size_t>(end - begin) * sizeof(float));
  }
}

template <typename T>
void define_typed(py::module_& m) {
  m.def("conv2d_forward", fastdl::bindings::with_output_cache<&conv2d_forward<T>>, py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward", fastdl::bindings::with_output_cache<&conv2d_backward<T>>, py::arg("input"), py::arg("weight"),
        py::arg("grad_output"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("needs"));
  m.def("max_pool2d_forward", fastdl::bindings::with_output_cache<&max_pool2d_forward<T>>, py::arg("input"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        py::arg("compact") = false, py::arg("window_codes") = false);
  // Exact dtype matches pick their overload before any conversion (int32 first of all).
  m.def("max_pool2d_backward", fastdl::bindings::with_output_cache<&max_pool2d_backward<T, std::int32_t>>,
        py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size") = py::none(),
        py::arg("stride") = py::none(), py::arg("padding") = py::none(), py::arg("dilation") = py::none());
  m.def("max_pool2d_backward", fastdl::bindings::with_output_cache<&max_pool2d_backward<T, std::int64_t>>,
        py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size") = py::none(),
        py::arg("stride") = py::none(), py::arg("padding") = py::none(), py::arg("dilation") = py::none());
  m.def("max_pool2d_backward", fastdl::bindings::with_output_cache<&max_pool2d_backward<T, std::uint8_t>>,
        py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size") = py::none(),
        py::arg("stride") = py::none(), py::arg("padding") = py::none(), py::arg("dilation") = py::none());
  m.def("linear_forward", fastdl::bindings::with_output_cache<&linear_forward<T>>, py::arg("input"), py::arg("weight"), py::arg("bias"));
  m.def("linear_backward", fastdl::bindings::with_output_cache<&linear_backward<T>>, py::arg("input"), py::arg("weight"),
        py::arg("grad_output"), py::arg("needs"));
  m.def("relu_forward", fastdl::bindings::with_output_cache<&relu_forward<T>>, py::arg("input"));
  m.def("relu_backward", fastdl::bindings::with_output_cache<&relu_backward<T>>, py::arg("output"), py::arg("grad_output"));
  m.def("cross_entropy_forward", fastdl::bindings::with_output_cache<&cross_entropy_forward<T>>, py::arg("input"), py::arg("target"),
        py::arg("weight"), py::arg("ignore_index"), py::arg("with_smooth"));
  m.def("cross_entropy_backward", fastdl::bindings::with_output_cache<&cross_entropy_backward<T>>, py::arg("input"), py::arg("target"),
        py::arg("weight"), py::arg("logsumexp"), py::arg("grad_nll"), py::arg("grad_smooth"),
        py::arg("ignore_index"));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastdl's compiled kernels (CPU, OpenMP + OpenBLAS)";
  // float32 first: in pybind11's first (no-conversion) pass a float64 array skips it.
  define_typed<float>(m);
  define_typed<double>(m);
  m.def("sgd_step_float32", &fastdl::bindings::sgd_step<fastdl::bindings::HostOptim, float>);
  m.def("sgd_step_float64", &fastdl::bindings::sgd_step<fastdl::bindings::HostOptim, double>);
  m.def("adam_step_float32", &fastdl::bindings::adam_step<fastdl::bindings::HostOptim, float>);
  m.def("adam_step_float64", &fastdl::bindings::adam_step<fastdl::bindings::HostOptim, double>);
  m.def("set_num_threads", &fastdl::cpu::set_num_threads, py::arg("n"));
  m.def("_set_winograd", &fastdl::cpu::set_winograd_enabled, py::arg("enabled"),
        "Use conv2d's fast paths where they apply (default on): Winograd F(2x2,3x3) for 3x3 "
        "stride-1 convolutions, the direct float32 forward for rows of outputs >= 16 wide. "
        "Off: always im2col + GEMM.");
  m.def("_winograd_enabled", &fastdl::cpu::winograd_is_enabled);
  m.def("get_num_threads", &fastdl::cpu::get_num_threads);
  m.def("blas_num_threads", &fastdl::cpu::blas_num_threads);
  m.def("build_info", &build_info);
  m.def("_stream_copy", &stream_copy, py::arg("destination"), py::arg("source"),
        "Copy source into destination (same size, contiguous float32) with every OpenMP thread, "
        "each its own contiguous part: the benchmark's memory-bandwidth yardstick.");
  fastdl::bindings::bind_image(m);
  fastdl::bindings::bind_linear_model(m);
  fastdl::bindings::bind_pool(m);
  fastdl::bindings::bind_norm(m);
  fastdl::bindings::bind_loss(m);
  fastdl::bindings::bind_cuda(m);
}
