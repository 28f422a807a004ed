// Bindings of the image filters (csrc/cpu/filter.cpp): argument checks, output allocation,
// GIL release, kernel call. Friendly validation lives in python/fastdl/image.py; these
// checks are the cheap second line that keeps any call memory-safe. Inputs are stacks of
// planes (planes, height, width) of float32, float64 or uint8.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "cpu/filter.h"

namespace fastdl::bindings {

namespace {

using fastdl::cpu::check;
using fastdl::cpu::index_t;

using Weights = py::array_t<double, py::array::c_style | py::array::forcecast>;

template <typename T>
fastdl::cpu::PlaneShape plane_shape(const In<T>& input) {
  check(input.ndim() == 3, "input must be 3-D (planes, height, width), got shape " + shape_of(input));
  return {input.shape(0), input.shape(1), input.shape(2)};
}

fastdl::cpu::BoundaryMode boundary_mode(int mode) {
  check(mode >= 0 && mode <= 4, "mode must be 0..4 (reflect, constant, nearest, mirror, wrap)");
  return static_cast<fastdl::cpu::BoundaryMode>(mode);
}

void check_origin(index_t size, index_t origin, const char* name) {
  check(size >= 1, std::string(name) + ": size must be positive");
  check(size / 2 + origin >= 0 && size / 2 + origin < size,
        std::string(name) + ": invalid origin " + std::to_string(origin) + " for size " +
            std::to_string(size));
}

// A pass: box of `box_size` when box_size > 0, else taps given by `weights` (1-D).
fastdl::cpu::FilterPass filter_pass(const Weights& weights, index_t box_size, index_t origin,
                                    const char* name) {
  fastdl::cpu::FilterPass p{};
  p.box = box_size > 0;
  if (p.box) {
    p.size = box_size;
  } else {
    check(weights.ndim() == 1 && weights.shape(0) >= 1,
          std::string(name) + " weights must be 1-D and non-empty, got shape " + shape_of(weights));
    p.size = weights.shape(0);
    p.weights = weights.data();
  }
  p.origin = origin;
  check_origin(p.size, origin, name);
  return p;
}

template <typename T>
py::array_t<T> empty_like(const In<T>& input) {
  return py::array_t<T>({input.shape(0), input.shape(1), input.shape(2)});
}

template <typename T>
py::array_t<T> separable_filter(const In<T>& input, const Weights& weights_y, index_t box_y,
                                index_t origin_y, const Weights& weights_x, index_t box_x,
                                index_t origin_x, bool horizontal_first, bool round_between,
                                int mode, double cval, double cval_between) {
  const auto s = plane_shape(input);
  const auto vertical = filter_pass(weights_y, box_y, origin_y, "vertical pass");
  const auto horizontal = filter_pass(weights_x, box_x, origin_x, "horizontal pass");
  const auto m = boundary_mode(mode);
  auto output = empty_like(input);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::separable_filter<T>(x, y, s, vertical, horizontal, horizontal_first,
                                     round_between, m, cval, cval_between);
  }
  return output;
}

template <typename T>
py::array_t<T> correlate2d(const In<T>& input, const Weights& weights, index_t origin_y,
                           index_t origin_x, int mode, double cval) {
  const auto s = plane_shape(input);
  check(weights.ndim() == 2 && weights.size() > 0,
        "weights must be 2-D and non-empty, got shape " + shape_of(weights));
  const index_t kh = weights.shape(0), kw = weights.shape(1);
  check_origin(kh, origin_y, "weights axis 0");
  check_origin(kw, origin_x, "weights axis 1");
  const auto m = boundary_mode(mode);
  auto output = empty_like(input);
  const T* x = input.data();
  const double* w = weights.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::correlate2d<T>(x, y, s, w, kh, kw, origin_y, origin_x, m, cval);
  }
  return output;
}

template <typename T>
py::array_t<T> rank_filter(const In<T>& input, index_t kh, index_t kw, index_t origin_y,
                           index_t origin_x, index_t rank, int mode, double cval) {
  const auto s = plane_shape(input);
  check_origin(kh, origin_y, "size axis 0");
  check_origin(kw, origin_x, "size axis 1");
  check(rank >= 0 && rank < kh * kw, "rank " + std::to_string(rank) + " out of range for a " +
                                          std::to_string(kh) + "x" + std::to_string(kw) + " window");
  const auto m = boundary_mode(mode);
  auto output = empty_like(input);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::rank_filter<T>(x, y, s, kh, kw, origin_y, origin_x, rank, m, cval);
  }
  return output;
}

template <typename T>
py::array_t<T> gradient_magnitude(const In<T>& input, int mode, double cval) {
  const auto s = plane_shape(input);
  const auto m = boundary_mode(mode);
  auto output = empty_like(input);
  const T* x = input.data();
  T* y = output.mutable_data();
  {
    py::gil_scoped_release release;
    fastdl::cpu::gradient_magnitude<T>(x, y, s, m, cval);
  }
  return output;
}

template <typename T>
void define_typed(py::module_& m) {
  m.def("separable_filter", &separable_filter<T>, py::arg("input"), py::arg("weights_y"),
        py::arg("box_y"), py::arg("origin_y"), py::arg("weights_x"), py::arg("box_x"),
        py::arg("origin_x"), py::arg("horizontal_first"), py::arg("round_between"),
        py::arg("mode"), py::arg("cval"), py::arg("cval_between"));
  m.def("correlate2d", &correlate2d<T>, py::arg("input"), py::arg("weights"),
        py::arg("origin_y"), py::arg("origin_x"), py::arg("mode"), py::arg("cval"));
  m.def("rank_filter", &rank_filter<T>, py::arg("input"), py::arg("kh"), py::arg("kw"),
        py::arg("origin_y"), py::arg("origin_x"), py::arg("rank"), py::arg("mode"),
        py::arg("cval"));
  m.def("gradient_magnitude", &gradient_magnitude<T>, py::arg("input"), py::arg("mode"),
        py::arg("cval"));
}

}  // namespace

void bind_image(py::module_& m) {
  // Exact dtypes only: in pybind11's first (no-conversion) pass each array finds its own type.
  define_typed<float>(m);
  define_typed<double>(m);
  define_typed<std::uint8_t>(m);
}

}  // namespace fastdl::bindings
