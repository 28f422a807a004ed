// Bindings of avg_pool2d, adaptive_avg_pool2d (csrc/cpu/pool.cpp): argument checks, output
// allocation, GIL release, kernel call. The friendly validation is in nn/functional.py;
// these checks keep any direct call from Python memory-safe.
#include <array>
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "bindings.h"
#include "bindings_alloc.h"
#include "cpu/pool.h"

namespace fastdl::bindings {
namespace {

using fastdl::cpu::check;
using fastdl::cpu::index_t;
using Pair = std::array<index_t, 2>;


constexpr index_t kMaxIndex = (index_t(1) << 31) - 1;

void check_pair(const Pair& p, const char* name, index_t minimum) {
  check(p[0] >= minimum && p[1] >= minimum && p[0] <= kMaxIndex && p[1] <= kMaxIndex,
        std::string(name) + " must lie in [" + std::to_string(minimum) + ", 2^31 - 1], got (" +
            std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")");
}

void check_input(const py::array& input, const char* name) {
  check(input.ndim() == 4, std::string(name) + " must be 4-D (N, C, H, W), got shape " + shape_of(input));
  check(input.shape(2) >= 1 && input.shape(3) >= 1 && input.shape(2) <= kMaxIndex &&
            input.shape(3) <= kMaxIndex,
        std::string(name) + " height and width must lie in [1, 2^31 - 1], got shape " + shape_of(input));
}

// PyTorch's pooling output size (ceil_mode: the last window must start inside the input or
// the left padding).
index_t pool_out(index_t in, index_t k, index_t stride, index_t pad, bool ceil_mode) {
  const index_t span = in + 2 * pad - k;
  if (span < 0) return 0;
  index_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

fastdl::cpu::AvgPool2dShape avg_shape(const std::array<index_t, 4>& input_shape, Pair kernel,
                                      Pair stride, Pair padding, bool ceil_mode,
                                      bool count_include_pad, std::optional<index_t> divisor) {
  check_pair(kernel, "kernel_size", 1);
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check(2 * padding[0] <= kernel[0] && 2 * padding[1] <= kernel[1],
        "padding must be at most half the kernel size");
  check(!divisor || (*divisor != 0 && *divisor >= -kMaxIndex && *divisor <= kMaxIndex),
        "divisor_override must be a non-zero int below 2^31");
  fastdl::cpu::AvgPool2dShape s{};
  s.planes = input_shape[0] * input_shape[1], s.height = input_shape[2], s.width = input_shape[3];
  s.kernel_h = kernel[0], s.kernel_w = kernel[1], s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1];
  s.out_h = pool_out(s.height, s.kernel_h, s.stride_h, s.pad_h, ceil_mode);
  s.out_w = pool_out(s.width, s.kernel_w, s.stride_w, s.pad_w, ceil_mode);
  check(s.out_h > 0 && s.out_w > 0, "avg_pool2d: the output would be empty");
  s.count_include_pad = count_include_pad;
  s.divisor_override = divisor ? *divisor : 0;
  return s;
}

std::array<index_t, 4> shape4(const py::array& a) {
  return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

template <typename T>
py::array_t<T> avg_pool2d_forward(const In<T>& input, Pair kernel, Pair stride, Pair padding,
                                  bool ceil_mode, bool count_include_pad,
                                  std::optional<index_t> divisor_override) {
  check_input(input, "input");
  const auto s = avg_shape(shape4(input), kernel, stride, padding, ceil_mode, count_include_pad,
                           divisor_override);
  py::array_t<T> output({input.shape(0), input.shape(1), s.out_h, s.out_w});
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::avg_pool2d_forward<T>(x, y, s);
  }
  return output;
}

template <typename T>
py::array_t<T> avg_pool2d_backward(const In<T>& grad_output, std::array<index_t, 4> input_shape,
                                   Pair kernel, Pair stride, Pair padding, bool ceil_mode,
                                   bool count_include_pad, std::optional<index_t> divisor_override) {
  check(input_shape[0] >= 0 && input_shape[1] >= 0 && input_shape[2] >= 1 && input_shape[3] >= 1 &&
            input_shape[2] <= kMaxIndex && input_shape[3] <= kMaxIndex,
        "input_shape: batch and channels must be non-negative, height and width in [1, 2^31)");
  const auto s = avg_shape(input_shape, kernel, stride, padding, ceil_mode, count_include_pad,
                           divisor_override);
  check(grad_output.ndim() == 4 && grad_output.shape(0) == input_shape[0] &&
            grad_output.shape(1) == input_shape[1] && grad_output.shape(2) == s.out_h &&
            grad_output.shape(3) == s.out_w,
        "grad_output " + shape_of(grad_output) + " does not match the output shape (" +
            std::to_string(input_shape[0]) + ", " + std::to_string(input_shape[1]) + ", " +
            std::to_string(s.out_h) + ", " + std::to_string(s.out_w) + ")");
  py::array_t<T> grad_input({input_shape[0], input_shape[1], input_shape[2], input_shape[3]});
  const T* gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::avg_pool2d_backward<T>(gy, gx, s);
  }
  return grad_input;
}

fastdl::cpu::AdaptivePool2dShape adaptive_shape(const std::array<index_t, 4>& input_shape,
                                                Pair output_size) {
  check_pair(output_size, "output_size", 1);
  return {input_shape[0] * input_shape[1], input_shape[2], input_shape[3], output_size[0],
          output_size[1]};
}

template <typename T>
py::array_t<T> adaptive_avg_pool2d_forward(const In<T>& input, Pair output_size) {
  check_input(input, "input");
  const auto s = adaptive_shape(shape4(input), output_size);
  py::array_t<T> output({input.shape(0), input.shape(1), s.out_h, s.out_w});
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::adaptive_avg_pool2d_forward<T>(x, y, s);
  }
  return output;
}

template <typename T>
py::array_t<T> adaptive_avg_pool2d_backward(const In<T>& grad_output,
                                            std::array<index_t, 4> input_shape) {
  check(input_shape[0] >= 0 && input_shape[1] >= 0 && input_shape[2] >= 1 && input_shape[3] >= 1 &&
            input_shape[2] <= kMaxIndex && input_shape[3] <= kMaxIndex,
        "input_shape: batch and channels must be non-negative, height and width in [1, 2^31)");
  check(grad_output.ndim() == 4 && grad_output.shape(0) == input_shape[0] &&
            grad_output.shape(1) == input_shape[1],
        "grad_output " + shape_of(grad_output) + " does not match the input's batch and channels");
  const auto s = adaptive_shape(input_shape, {grad_output.shape(2), grad_output.shape(3)});
  py::array_t<T> grad_input({input_shape[0], input_shape[1], input_shape[2], input_shape[3]});
  const T* gy = grad_output.data();
  T* gx = grad_input.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::adaptive_avg_pool2d_backward<T>(gy, gx, s);
  }
  return grad_input;
}

template <typename T>
void define_typed(py::module_& m) {
  m.def("avg_pool2d_forward", with_output_cache<&avg_pool2d_forward<T>>, py::arg("input"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        py::arg("divisor_override"));
  m.def("avg_pool2d_backward", with_output_cache<&avg_pool2d_backward<T>>, py::arg("grad_output"),
        py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("adaptive_avg_pool2d_forward", with_output_cache<&adaptive_avg_pool2d_forward<T>>, py::arg("input"),
        py::arg("output_size"));
  m.def("adaptive_avg_pool2d_backward", with_output_cache<&adaptive_avg_pool2d_backward<T>>, py::arg("grad_output"),
        py::arg("input_shape"));
}

}  // namespace

void bind_pool(py::module_& m) {
  // float32 first: in pybind11's first (no-conversion) pass a float64 array skips it.
  define_typed<float>(m);
  define_typed<double>(m);
}

}  // namespace fastdl::bindings
