// Python bindings of the CUDA kernels: the submodule fastdl._C.cuda.
//
// Device memory is a Buffer: cudaMalloc'd bytes, freed by its destructor, copied from and
// to NumPy arrays. Kernel bindings take Buffers (the Python DeviceArray holds one) and the
// shape as ints; they check that every Buffer is large enough for the shape (ValueError
// otherwise, so no call from Python can reach memory it does not own), release the GIL and
// call the kernel in fastdl::cuda. Dtypes are in the names (relu_forward_float32, ...), as
// the CPU optimizer steps. No math here.
//
// Built without CUDA (FASTDL_WITH_CUDA undefined), _C.cuda still exists: built() is False,
// device_count() is 0, and nothing else is defined.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bindings.h"
#include "bindings_optim.h"

#if defined(FASTDL_WITH_CUDA)
#include "cuda/kernels.cuh"
#endif

namespace py = pybind11;

namespace fastdl::bindings {

#if defined(FASTDL_WITH_CUDA)
namespace {

namespace cu = fastdl::cuda;
using Pair = std::array<index_t, 2>;

// cudaMalloc'd device memory of a fixed size; moves only through the Python object.
class Buffer {
 public:
  explicit Buffer(std::size_t nbytes) : nbytes_(nbytes) {
    if (nbytes_) data_ = cu::allocate(nbytes_);
  }
  ~Buffer() { cu::release(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::size_t nbytes() const { return nbytes_; }
  void* data() const { return data_; }
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(data_); }

  // Host array -> device (the array's bytes must match exactly).
  void copy_from_host(const py::array& array) {
    check(array.flags() & py::array::c_style, "copy_from_host: the array must be C-contiguous");
    check(static_cast<std::size_t>(array.nbytes()) == nbytes_,
          "copy_from_host: the array has " + std::to_string(array.nbytes()) +
              " bytes, the buffer " + std::to_string(nbytes_));
    const void* source = array.data();
    py::gil_scoped_release release;
    cu::copy_to_device(data_, source, nbytes_);
  }

  // Device -> a writeable host array of exactly the buffer's size.
  void copy_to_host(py::array& array) const {
    check((array.flags() & py::array::c_style) && array.writeable(),
          "copy_to_host: the array must be C-contiguous and writeable");
    check(static_cast<std::size_t>(array.nbytes()) == nbytes_,
          "copy_to_host: the array has " + std::to_string(array.nbytes()) +
              " bytes, the buffer " + std::to_string(nbytes_));
    void* target = array.mutable_data();
    py::gil_scoped_release release;
    cu::copy_to_host(target, data_, nbytes_);
  }

  void copy_from_buffer(const Buffer& other) {
    check(other.nbytes_ == nbytes_, "copy_from_buffer: the buffers differ in size (" +
                                        std::to_string(other.nbytes_) + " and " +
                                        std::to_string(nbytes_) + " bytes)");
    py::gil_scoped_release release;
    cu::copy_on_device(data_, other.data_, nbytes_);
  }

  void zero() {
    py::gil_scoped_release release;
    cu::fill_zero(data_, nbytes_);
  }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
};

// The buffer's memory as count elements of T, after checking it holds that many.
template <typename T>
T* as(Buffer& buffer, index_t count, const char* name) {
  check(count >= 0 && static_cast<std::size_t>(count) * sizeof(T) <= buffer.nbytes(),
        std::string(name) + ": the device buffer holds " + std::to_string(buffer.nbytes()) +
            " bytes, " + std::to_string(count) + " elements of " + std::to_string(sizeof(T)) +
            " bytes are needed");
  return static_cast<T*>(buffer.data());
}

// Same for an optional buffer (None -> nullptr).
template <typename T>
T* as_optional(Buffer* buffer, index_t count, const char* name) {
  return buffer ? as<T>(*buffer, count, name) : nullptr;
}

void check_positive(std::initializer_list<index_t> values, const char* what) {
  for (index_t v : values) check(v >= 0 && v < (index_t(1) << 40), std::string(what) + " out of range");
}

// ------------------------------------------------------------------ element-wise
template <typename T>
void fill(Buffer& x, index_t n, double value) {
  T* p = as<T>(x, n, "x");
  py::gil_scoped_release release;
  cu::fill<T>(p, n, value);
}

template <typename T>
void add_inplace(Buffer& y, Buffer& x, index_t n) {
  T* py_ = as<T>(y, n, "y");
  const T* px = as<T>(x, n, "x");
  py::gil_scoped_release release;
  cu::add_inplace<T>(py_, px, n);
}

template <typename T>
void sum_array(Buffer& x, index_t n, Buffer& sums, int slot) {
  check(slot >= 0 && slot < 2, "sum_array: slot must be 0 or 1");
  const T* px = as<T>(x, n, "x");
  double* ps = as<double>(sums, slot + 1, "sums");
  py::gil_scoped_release release;
  cu::sum_array<T>(px, n, ps + slot);
}

template <typename T>
void scale_sums(Buffer& sums, int count, double scale0, double scale1, Buffer& out) {
  check(count == 1 || count == 2, "scale_sums: count must be 1 or 2");
  const double* s = as<double>(sums, count, "sums");
  T* o = as<T>(out, 1, "out");
  py::gil_scoped_release release;
  cu::scale_sums<T>(s, count, scale0, scale1, o);
}

template <typename T>
void scale_broadcast(Buffer& g, double scale, Buffer& out, index_t n) {
  const T* pg = as<T>(g, 1, "g");
  T* po = as<T>(out, n, "out");
  py::gil_scoped_release release;
  cu::scale_broadcast<T>(pg, scale, po, n);
}

// y = f(x) and gx = f'(y or x, gy), all of n elements.
template <typename T, void (*Forward)(const T*, T*, index_t)>
void unary_forward(Buffer& x, Buffer& y, index_t n) {
  const T* px = as<T>(x, n, "input");
  T* pyy = as<T>(y, n, "output");
  py::gil_scoped_release release;
  Forward(px, pyy, n);
}

template <typename T, void (*Backward)(const T*, const T*, T*, index_t)>
void unary_backward(Buffer& saved, Buffer& gy, Buffer& gx, index_t n) {
  const T* ps = as<T>(saved, n, "saved");
  const T* pg = as<T>(gy, n, "grad_output");
  T* pgx = as<T>(gx, n, "grad_input");
  py::gil_scoped_release release;
  Backward(ps, pg, pgx, n);
}

template <typename T>
void leaky_relu_forward(Buffer& x, Buffer& y, index_t n, double slope) {
  const T* px = as<T>(x, n, "input");
  T* pyy = as<T>(y, n, "output");
  py::gil_scoped_release release;
  cu::leaky_relu_forward<T>(px, pyy, n, slope);
}

template <typename T>
void leaky_relu_backward(Buffer& x, Buffer& gy, Buffer& gx, index_t n, double slope) {
  const T* px = as<T>(x, n, "input");
  const T* pg = as<T>(gy, n, "grad_output");
  T* pgx = as<T>(gx, n, "grad_input");
  py::gil_scoped_release release;
  cu::leaky_relu_backward<T>(px, pg, pgx, n, slope);
}

// ------------------------------------------------------------------ linear
template <typename T>
void linear_forward(Buffer& x, Buffer& w, Buffer* b, Buffer& y, index_t N, index_t I, index_t O) {
  check_positive({N, I, O}, "linear sizes");
  const T *px = as<T>(x, N * I, "input"), *pw = as<T>(w, O * I, "weight");
  const T* pb = as_optional<T>(b, O, "bias");
  T* pyy = as<T>(y, N * O, "output");
  py::gil_scoped_release release;
  cu::linear_forward<T>(px, pw, pb, pyy, N, I, O);
}

template <typename T>
void linear_backward(Buffer& x, Buffer& w, Buffer& gy, Buffer* gx, Buffer* gw, Buffer* gb,
                     index_t N, index_t I, index_t O) {
  check_positive({N, I, O}, "linear sizes");
  const T *px = as<T>(x, N * I, "input"), *pw = as<T>(w, O * I, "weight");
  const T* pgy = as<T>(gy, N * O, "grad_output");
  T* pgx = as_optional<T>(gx, N * I, "grad_input");
  T* pgw = as_optional<T>(gw, O * I, "grad_weight");
  T* pgb = as_optional<T>(gb, O, "grad_bias");
  py::gil_scoped_release release;
  cu::linear_backward<T>(px, pw, pgy, pgx, pgw, pgb, N, I, O);
}

// ------------------------------------------------------------------ conv2d
cu::Conv2dShape conv_shape(std::array<index_t, 4> in, std::array<index_t, 4> w, Pair stride,
                           Pair padding, Pair dilation, index_t groups) {
  constexpr index_t kMax = (index_t(1) << 31) - 1;
  for (index_t v : in) check(v >= 0 && v <= kMax, "input shape out of range");
  for (index_t v : w) check(v >= 1 && v <= kMax, "weight shape out of range");
  for (int a = 0; a < 2; ++a)
    check(stride[a] >= 1 && dilation[a] >= 1 && padding[a] >= 0 && stride[a] <= kMax &&
              dilation[a] <= kMax && padding[a] <= kMax,
          "stride, padding or dilation out of range");
  check(groups >= 1 && in[1] % groups == 0 && w[0] % groups == 0 && w[1] * groups == in[1],
        "weight does not match the input's channels with groups=" + std::to_string(groups));
  cu::Conv2dShape s{};
  s.batch = in[0], s.in_channels = in[1], s.height = in[2], s.width = in[3];
  s.out_channels = w[0], s.kernel_h = w[2], s.kernel_w = w[3];
  s.stride_h = stride[0], s.stride_w = stride[1], s.pad_h = padding[0], s.pad_w = padding[1];
  s.dilation_h = dilation[0], s.dilation_w = dilation[1], s.groups = groups;
  s.out_h = (s.height + 2 * s.pad_h - s.dilation_h * (s.kernel_h - 1) - 1) / s.stride_h + 1;
  s.out_w = (s.width + 2 * s.pad_w - s.dilation_w * (s.kernel_w - 1) - 1) / s.stride_w + 1;
  check(s.height + 2 * s.pad_h >= s.dilation_h * (s.kernel_h - 1) + 1 &&
            s.width + 2 * s.pad_w >= s.dilation_w * (s.kernel_w - 1) + 1,
        "kernel larger than the padded input");
  return s;
}

template <typename T>
void conv2d_forward(Buffer& x, Buffer& w, Buffer* b, Buffer& y, std::array<index_t, 4> in_shape,
                    std::array<index_t, 4> w_shape, Pair stride, Pair padding, Pair dilation,
                    index_t groups) {
  const auto s = conv_shape(in_shape, w_shape, stride, padding, dilation, groups);
  const T* px = as<T>(x, s.batch * s.in_channels * s.height * s.width, "input");
  const T* pw = as<T>(w, w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3], "weight");
  const T* pb = as_optional<T>(b, s.out_channels, "bias");
  T* pyy = as<T>(y, s.batch * s.out_channels * s.out_h * s.out_w, "output");
  py::gil_scoped_release release;
  cu::conv2d_forward<T>(px, pw, pb, pyy, s);
}

template <typename T>
void conv2d_backward(Buffer& x, Buffer& w, Buffer& gy, Buffer* gx, Buffer* gw, Buffer* gb,
                     std::array<index_t, 4> in_shape, std::array<index_t, 4> w_shape, Pair stride,
                     Pair padding, Pair dilation, index_t groups) {
  const auto s = conv_shape(in_shape, w_shape, stride, padding, dilation, groups);
  const index_t in_count = s.batch * s.in_channels * s.height * s.width;
  const index_t w_count = w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3];
  const T* px = as<T>(x, in_count, "input");
  const T* pw = as<T>(w, w_count, "weight");
  const T* pgy = as<T>(gy, s.batch * s.out_channels * s.out_h * s.out_w, "grad_output");
  T* pgx = as_optional<T>(gx, in_count, "grad_input");
  T* pgw = as_optional<T>(gw, w_count, "grad_weight");
  T* pgb = as_optional<T>(gb, s.out_channels, "grad_bias");
  py::gil_scoped_release release;
  cu::conv2d_backward<T>(px, pw, pgy, pgx, pgw, pgb, s);
}

// ------------------------------------------------------------------ pooling
// input_shape (N, C, H, W); the output size comes from Python (the kernels bound every
// access by the shape, so any size is memory-safe given large enough buffers).
cu::Pool2dShape max_pool_shape(std::array<index_t, 4> in, Pair kernel, Pair stride, Pair padding,
                               Pair dilation, Pair out) {
  check_positive({in[0], in[1], in[2], in[3], out[0], out[1]}, "pooling shape");
  check(kernel[0] >= 1 && kernel[1] >= 1 && stride[0] >= 1 && stride[1] >= 1 &&
            dilation[0] >= 1 && dilation[1] >= 1 && padding[0] >= 0 && padding[1] >= 0,
        "kernel_size, stride, padding or dilation out of range");
  cu::Pool2dShape s{};
  s.planes = in[0] * in[1], s.height = in[2], s.width = in[3];
  s.kernel_h = kernel[0], s.kernel_w = kernel[1], s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1], s.dilation_h = dilation[0], s.dilation_w = dilation[1];
  s.out_h = out[0], s.out_w = out[1];
  return s;
}

template <typename T>
void max_pool2d_forward(Buffer& x, Buffer& y, Buffer& indices, std::array<index_t, 4> in_shape,
                        Pair kernel, Pair stride, Pair padding, Pair dilation, Pair out) {
  const auto s = max_pool_shape(in_shape, kernel, stride, padding, dilation, out);
  const T* px = as<T>(x, s.planes * s.height * s.width, "input");
  T* pyy = as<T>(y, s.planes * s.out_h * s.out_w, "output");
  std::int64_t* pi = as<std::int64_t>(indices, s.planes * s.out_h * s.out_w, "indices");
  py::gil_scoped_release release;
  cu::max_pool2d_forward<T>(px, pyy, pi, s);
}

template <typename T>
void max_pool2d_backward(Buffer& gy, Buffer& indices, Buffer& gx, std::array<index_t, 4> in_shape,
                         Pair kernel, Pair stride, Pair padding, Pair dilation, Pair out) {
  const auto s = max_pool_shape(in_shape, kernel, stride, padding, dilation, out);
  const T* pgy = as<T>(gy, s.planes * s.out_h * s.out_w, "grad_output");
  const std::int64_t* pi = as<std::int64_t>(indices, s.planes * s.out_h * s.out_w, "indices");
  T* pgx = as<T>(gx, s.planes * s.height * s.width, "grad_input");
  py::gil_scoped_release release;
  cu::max_pool2d_backward<T>(pgy, pi, pgx, s);
}

cu::AvgPool2dShape avg_pool_shape(std::array<index_t, 4> in, Pair kernel, Pair stride, Pair padding,
                                  Pair out, bool count_include_pad, index_t divisor_override) {
  check_positive({in[0], in[1], in[2], in[3], out[0], out[1]}, "pooling shape");
  check(kernel[0] >= 1 && kernel[1] >= 1 && stride[0] >= 1 && stride[1] >= 1 && padding[0] >= 0 &&
            padding[1] >= 0,
        "kernel_size, stride or padding out of range");
  cu::AvgPool2dShape s{};
  s.planes = in[0] * in[1], s.height = in[2], s.width = in[3];
  s.kernel_h = kernel[0], s.kernel_w = kernel[1], s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_h = padding[0], s.pad_w = padding[1], s.out_h = out[0], s.out_w = out[1];
  s.count_include_pad = count_include_pad, s.divisor_override = divisor_override;
  return s;
}

template <typename T>
void avg_pool2d_forward(Buffer& x, Buffer& y, std::array<index_t, 4> in_shape, Pair kernel,
                        Pair stride, Pair padding, Pair out, bool count_include_pad,
                        index_t divisor_override) {
  const auto s = avg_pool_shape(in_shape, kernel, stride, padding, out, count_include_pad, divisor_override);
  const T* px = as<T>(x, s.planes * s.height * s.width, "input");
  T* pyy = as<T>(y, s.planes * s.out_h * s.out_w, "output");
  py::gil_scoped_release release;
  cu::avg_pool2d_forward<T>(px, pyy, s);
}

template <typename T>
void avg_pool2d_backward(Buffer& gy, Buffer& gx, std::array<index_t, 4> in_shape, Pair kernel,
                         Pair stride, Pair padding, Pair out, bool count_include_pad,
                         index_t divisor_override) {
  const auto s = avg_pool_shape(in_shape, kernel, stride, padding, out, count_include_pad, divisor_override);
  const T* pgy = as<T>(gy, s.planes * s.out_h * s.out_w, "grad_output");
  T* pgx = as<T>(gx, s.planes * s.height * s.width, "grad_input");
  py::gil_scoped_release release;
  cu::avg_pool2d_backward<T>(pgy, pgx, s);
}

cu::AdaptivePool2dShape adaptive_shape(std::array<index_t, 4> in, Pair out) {
  check_positive({in[0], in[1], in[2], in[3]}, "pooling shape");
  check(out[0] >= 1 && out[1] >= 1 && out[0] < (index_t(1) << 31) && out[1] < (index_t(1) << 31),
        "output_size out of range");
  cu::AdaptivePool2dShape s{};
  s.planes = in[0] * in[1], s.height = in[2], s.width = in[3], s.out_h = out[0], s.out_w = out[1];
  return s;
}

template <typename T>
void adaptive_avg_pool2d_forward(Buffer& x, Buffer& y, std::array<index_t, 4> in_shape, Pair out) {
  const auto s = adaptive_shape(in_shape, out);
  const T* px = as<T>(x, s.planes * s.height * s.width, "input");
  T* pyy = as<T>(y, s.planes * s.out_h * s.out_w, "output");
  py::gil_scoped_release release;
  cu::adaptive_avg_pool2d_forward<T>(px, pyy, s);
}

template <typename T>
void adaptive_avg_pool2d_backward(Buffer& gy, Buffer& gx, std::array<index_t, 4> in_shape, Pair out) {
  const auto s = adaptive_shape(in_shape, out);
  const T* pgy = as<T>(gy, s.planes * s.out_h * s.out_w, "grad_output");
  T* pgx = as<T>(gx, s.planes * s.height * s.width, "grad_input");
  py::gil_scoped_release release;
  cu::adaptive_avg_pool2d_backward<T>(pgy, pgx, s);
}

// ------------------------------------------------------------------ batch norm
template <typename T>
void batch_norm_forward(Buffer& x, Buffer* w, Buffer* b, Buffer& y, Buffer* running_mean,
                        Buffer* running_var, Buffer& save_mean, Buffer& save_invstd,
                        bool training, double momentum, double eps, index_t N, index_t C,
                        index_t S) {
  check_positive({N, C, S}, "batch_norm shape");
  check(training || (running_mean && running_var), "running_mean and running_var are required in eval mode");
  const cu::BatchNormShape s{N, C, S};
  const T* px = as<T>(x, N * C * S, "input");
  const T* pw = as_optional<T>(w, C, "weight");
  const T* pb = as_optional<T>(b, C, "bias");
  T* pyy = as<T>(y, N * C * S, "output");
  T* rm = as_optional<T>(running_mean, C, "running_mean");
  T* rv = as_optional<T>(running_var, C, "running_var");
  double* sm = as<double>(save_mean, C, "save_mean");
  double* si = as<double>(save_invstd, C, "save_invstd");
  py::gil_scoped_release release;
  cu::batch_norm_forward<T>(px, pw, pb, pyy, rm, rv, sm, si, training, momentum, eps, s);
}

template <typename T>
void batch_norm_backward(Buffer& x, Buffer& gy, Buffer& save_mean, Buffer& save_invstd, Buffer* w,
                         Buffer* gx, Buffer* gw, Buffer* gb, bool training, index_t N, index_t C,
                         index_t S) {
  check_positive({N, C, S}, "batch_norm shape");
  const cu::BatchNormShape s{N, C, S};
  const T* px = as<T>(x, N * C * S, "input");
  const T* pgy = as<T>(gy, N * C * S, "grad_output");
  const double* sm = as<double>(save_mean, C, "save_mean");
  const double* si = as<double>(save_invstd, C, "save_invstd");
  const T* pw = as_optional<T>(w, C, "weight");
  T* pgx = as_optional<T>(gx, N * C * S, "grad_input");
  T* pgw = as_optional<T>(gw, C, "grad_weight");
  T* pgb = as_optional<T>(gb, C, "grad_bias");
  py::gil_scoped_release release;
  cu::batch_norm_backward<T>(px, pgy, sm, si, pw, pgx, pgw, pgb, training, s);
}

// ------------------------------------------------------------------ losses
// Target labels are checked by the caller (fastdl.nn.functional reads them on the host):
// the kernels index weight[t] and row[t] with them.
template <typename T>
void cross_entropy_forward(Buffer& logits, Buffer& target, Buffer* weight, Buffer& nll,
                           Buffer* smooth, Buffer& lse, index_t N, index_t C,
                           std::int64_t ignore_index) {
  check_positive({N, C}, "cross_entropy shape");
  const T* px = as<T>(logits, N * C, "input");
  const std::int64_t* pt = as<std::int64_t>(target, N, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  T* pn = as<T>(nll, N, "nll");
  T* ps = as_optional<T>(smooth, N, "smooth");
  double* pl = as<double>(lse, N, "logsumexp");
  py::gil_scoped_release release;
  cu::cross_entropy_forward<T>(px, pt, pw, pn, ps, pl, N, C, ignore_index);
}

template <typename T>
void cross_entropy_backward(Buffer& logits, Buffer& target, Buffer* weight, Buffer& lse,
                            Buffer& grad_nll, Buffer* grad_smooth, Buffer& grad_logits, index_t N,
                            index_t C, std::int64_t ignore_index) {
  check_positive({N, C}, "cross_entropy shape");
  const T* px = as<T>(logits, N * C, "input");
  const std::int64_t* pt = as<std::int64_t>(target, N, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  const double* pl = as<double>(lse, N, "logsumexp");
  const T* pgn = as<T>(grad_nll, N, "grad_nll");
  const T* pgs = as_optional<T>(grad_smooth, N, "grad_smooth");
  T* pg = as<T>(grad_logits, N * C, "grad_input");
  py::gil_scoped_release release;
  cu::cross_entropy_backward<T>(px, pt, pw, pl, pgn, pgs, pg, N, C, ignore_index);
}

template <typename T>
void softmax_forward(Buffer& x, Buffer& y, index_t outer, index_t dim, index_t inner, bool log) {
  check_positive({outer, dim, inner}, "softmax shape");
  const T* px = as<T>(x, outer * dim * inner, "input");
  T* pyy = as<T>(y, outer * dim * inner, "output");
  py::gil_scoped_release release;
  cu::softmax_forward<T>(px, pyy, outer, dim, inner, log);
}

template <typename T>
void softmax_backward(Buffer& y, Buffer& gy, Buffer& gx, index_t outer, index_t dim, index_t inner,
                      bool log) {
  check_positive({outer, dim, inner}, "softmax shape");
  const index_t n = outer * dim * inner;
  const T* pyy = as<T>(y, n, "output");
  const T* pgy = as<T>(gy, n, "grad_output");
  T* pgx = as<T>(gx, n, "grad_input");
  py::gil_scoped_release release;
  cu::softmax_backward<T>(pyy, pgy, pgx, outer, dim, inner, log);
}

template <typename T>
void nll_loss_forward(Buffer& x, Buffer& target, Buffer* weight, Buffer* loss, Buffer& sums,
                      index_t outer, index_t C, index_t inner, std::int64_t ignore_index) {
  check_positive({outer, C, inner}, "nll_loss shape");
  const T* px = as<T>(x, outer * C * inner, "input");
  const std::int64_t* pt = as<std::int64_t>(target, outer * inner, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  T* pl = as_optional<T>(loss, outer * inner, "loss");
  double* ps = as<double>(sums, 2, "sums");
  py::gil_scoped_release release;
  cu::nll_loss_forward<T>(px, pt, pw, pl, ps, outer, C, inner, ignore_index);
}

template <typename T>
void nll_loss_backward(Buffer& target, Buffer* weight, Buffer& grad, bool grad_is_scalar,
                       Buffer& gx, index_t outer, index_t C, index_t inner,
                       std::int64_t ignore_index) {
  check_positive({outer, C, inner}, "nll_loss shape");
  const std::int64_t* pt = as<std::int64_t>(target, outer * inner, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  const T* pg = as<T>(grad, grad_is_scalar ? 1 : outer * inner, "grad");
  T* pgx = as<T>(gx, outer * C * inner, "grad_input");
  py::gil_scoped_release release;
  cu::nll_loss_backward<T>(pt, pw, pg, grad_is_scalar, pgx, outer, C, inner, ignore_index);
}

template <typename T>
cu::Broadcast broadcast(Buffer* b, index_t period, const char* name) {
  if (!b) return {nullptr, 1};
  check(period >= 1, std::string(name) + ": period must be positive");
  return {as<T>(*b, period, name), period};
}

template <typename T>
void elementwise_loss_forward(int kind, Buffer& x, Buffer& y, Buffer* weight, index_t weight_period,
                              Buffer* pos_weight, index_t pos_weight_period, Buffer* loss,
                              Buffer& sums, Buffer& out_of_range, index_t n) {
  check(kind >= 0 && kind <= 5, "unknown loss kind " + std::to_string(kind));
  check_positive({n}, "loss size");
  const T* px = as<T>(x, n, "input");
  const T* pyy = as<T>(y, n, "target");
  const auto w = broadcast<T>(weight, weight_period, "weight");
  const auto p = broadcast<T>(pos_weight, pos_weight_period, "pos_weight");
  T* pl = as_optional<T>(loss, n, "loss");
  double* ps = as<double>(sums, 1, "sums");
  int* flag = as<int>(out_of_range, 1, "out_of_range");
  py::gil_scoped_release release;
  cu::elementwise_loss_forward<T>(static_cast<cu::Loss>(kind), px, pyy, w, p, pl, ps, n, flag);
}

template <typename T>
void elementwise_loss_backward(int kind, Buffer& x, Buffer& y, Buffer* weight, index_t weight_period,
                               Buffer* pos_weight, index_t pos_weight_period, Buffer& grad,
                               bool grad_is_scalar, Buffer* gx, Buffer* gy, index_t n) {
  check(kind >= 0 && kind <= 5, "unknown loss kind " + std::to_string(kind));
  check_positive({n}, "loss size");
  const T* px = as<T>(x, n, "input");
  const T* pyy = as<T>(y, n, "target");
  const auto w = broadcast<T>(weight, weight_period, "weight");
  const auto p = broadcast<T>(pos_weight, pos_weight_period, "pos_weight");
  const T* pg = as<T>(grad, grad_is_scalar ? 1 : n, "grad");
  T* pgx = as_optional<T>(gx, n, "grad_input");
  T* pgy = as_optional<T>(gy, n, "grad_target");
  py::gil_scoped_release release;
  cu::elementwise_loss_backward<T>(static_cast<cu::Loss>(kind), px, pyy, w, p, pg, grad_is_scalar,
                                   pgx, pgy, n);
}

template <typename T>
void cross_entropy_probabilities_forward(Buffer& logits, Buffer& target, Buffer* weight, Buffer* loss,
                                         Buffer& lse, Buffer& sums, index_t N, index_t C,
                                         double label_smoothing) {
  check_positive({N, C}, "cross_entropy shape");
  check(label_smoothing >= 0 && label_smoothing <= 1, "label_smoothing must lie in [0, 1]");
  const T* px = as<T>(logits, N * C, "input");
  const T* pt = as<T>(target, N * C, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  T* pl = as_optional<T>(loss, N, "loss");
  double* plse = as<double>(lse, N, "logsumexp");
  double* ps = as<double>(sums, 1, "sums");
  py::gil_scoped_release release;
  cu::cross_entropy_probabilities_forward<T>(px, pt, pw, pl, plse, ps, N, C, label_smoothing);
}

template <typename T>
void cross_entropy_probabilities_backward(Buffer& logits, Buffer& target, Buffer* weight, Buffer& lse,
                                          Buffer& grad, bool grad_is_scalar, Buffer& grad_logits,
                                          index_t N, index_t C, double label_smoothing) {
  check_positive({N, C}, "cross_entropy shape");
  check(label_smoothing >= 0 && label_smoothing <= 1, "label_smoothing must lie in [0, 1]");
  const T* px = as<T>(logits, N * C, "input");
  const T* pt = as<T>(target, N * C, "target");
  const T* pw = as_optional<T>(weight, C, "weight");
  const double* plse = as<double>(lse, N, "logsumexp");
  const T* pg = as<T>(grad, grad_is_scalar ? 1 : N, "grad");
  T* pgx = as<T>(grad_logits, N * C, "grad_input");
  py::gil_scoped_release release;
  cu::cross_entropy_probabilities_backward<T>(px, pt, pw, plse, pg, grad_is_scalar, pgx, N, C,
                                              label_smoothing);
}

// ------------------------------------------------------------------ dropout
// forward and backward are the same masking (the backward masks grad_output); out may be x.
template <typename T, void (*Kernel)(const T*, T*, index_t, std::uint64_t, double)>
void dropout_apply(Buffer& x, Buffer& out, index_t n, std::uint64_t seed, double p) {
  check(p >= 0 && p < 1, "dropout probability must lie in [0, 1) for the kernel, got " + std::to_string(p));
  check_positive({n}, "dropout size");
  const T* px = as<T>(x, n, "input");
  T* po = as<T>(out, n, "output");
  py::gil_scoped_release release;
  Kernel(px, po, n, seed, p);
}

// ------------------------------------------------------------------ tensor arithmetic, layout
template <typename T>
void elementwise_binary(int op, Buffer& a, Buffer& b, Buffer& out, index_t n) {
  check(op >= 0 && op <= 3, "unknown arithmetic op " + std::to_string(op));
  check_positive({n}, "size");
  const T *pa = as<T>(a, n, "a"), *pb = as<T>(b, n, "b");
  T* po = as<T>(out, n, "out");
  py::gil_scoped_release release;
  cu::elementwise_binary<T>(static_cast<cu::Arithmetic>(op), pa, pb, po, n);
}

template <typename T>
void elementwise_scalar(int op, Buffer& a, double scalar, bool reverse, Buffer& out, index_t n) {
  check(op >= 0 && op <= 3, "unknown arithmetic op " + std::to_string(op));
  check_positive({n}, "size");
  const T* pa = as<T>(a, n, "a");
  T* po = as<T>(out, n, "out");
  py::gil_scoped_release release;
  cu::elementwise_scalar<T>(static_cast<cu::Arithmetic>(op), pa, scalar, reverse, po, n);
}

template <typename T>
void sum_rows(Buffer& x, Buffer& out, index_t rows, index_t cols) {
  check_positive({rows, cols}, "sum_rows shape");
  index_t count = 0;
  check(!__builtin_mul_overflow(rows, cols, &count), "sum_rows shape out of range");
  const T* px = as<T>(x, count, "x");
  T* po = as<T>(out, rows, "out");
  py::gil_scoped_release release;
  cu::sum_rows<T>(px, po, rows, cols);
}

// The elements one side of a strided copy reaches: 1 + the largest index (0 when the index
// space is empty). Every stride and offset is non-negative, so the smallest index is the
// offset; sizes that overflow 63 bits are refused.
index_t strided_extent(index_t offset, const std::vector<index_t>& strides,
                       const std::vector<index_t>& shape, const char* name) {
  check(offset >= 0, std::string(name) + ": offset must be non-negative");
  index_t last = offset;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 0) return 0;
    check(strides[k] >= 0, std::string(name) + ": strides must be non-negative");
    index_t term = 0;
    check(!__builtin_mul_overflow(shape[k] - 1, strides[k], &term) &&
              !__builtin_add_overflow(last, term, &last),
          std::string(name) + ": layout out of range");
  }
  check(last < (index_t(1) << 50), std::string(name) + ": layout out of range");
  return last + 1;
}

template <typename T>
void strided_copy(Buffer& src, index_t src_offset, std::vector<index_t> src_strides, Buffer& dst,
                  index_t dst_offset, std::vector<index_t> dst_strides, std::vector<index_t> shape) {
  const std::size_t ndim = shape.size();
  check(ndim <= static_cast<std::size_t>(cu::kMaxDims),
        "strided_copy: at most " + std::to_string(cu::kMaxDims) + " dimensions");
  check(src_strides.size() == ndim && dst_strides.size() == ndim,
        "strided_copy: shape and strides differ in length");
  for (index_t v : shape) check(v >= 0, "strided_copy: negative size");
  const index_t src_count = strided_extent(src_offset, src_strides, shape, "src");
  const index_t dst_count = strided_extent(dst_offset, dst_strides, shape, "dst");
  const T* ps = as<T>(src, src_count, "src");
  T* pd = as<T>(dst, dst_count, "dst");
  cu::StridedLayout layout{};
  layout.ndim = static_cast<int>(ndim);
  for (std::size_t k = 0; k < ndim; ++k) {
    layout.shape[k] = shape[k];
    layout.src_strides[k] = src_strides[k];
    layout.dst_strides[k] = dst_strides[k];
  }
  layout.src_offset = src_offset, layout.dst_offset = dst_offset;
  py::gil_scoped_release release;
  cu::strided_copy<T>(ps, pd, layout);
}

void one_hot(Buffer& labels, Buffer& out, index_t n, index_t classes) {
  check_positive({n, classes}, "one_hot shape");
  index_t count = 0;
  check(!__builtin_mul_overflow(n, classes, &count), "one_hot shape out of range");
  const std::int64_t* pl = as<std::int64_t>(labels, n, "labels");
  std::int64_t* po = as<std::int64_t>(out, count, "out");
  py::gil_scoped_release release;
  cu::one_hot(pl, po, n, classes);
}

// ------------------------------------------------------------------ optimizers
// Lists of Buffers updated in place, one per parameter; sizes in elements of T.
template <typename T>
std::vector<T*> device_pointers(const py::list& buffers, const char* name, std::vector<index_t>& sizes) {
  std::vector<T*> out;
  const bool first = sizes.empty();
  for (size_t i = 0; i < buffers.size(); ++i) {
    const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
    check(py::isinstance<Buffer>(buffers[i]), where + " must be a fastdl._C.cuda.Buffer");
    Buffer& b = buffers[i].cast<Buffer&>();
    const index_t n = static_cast<index_t>(b.nbytes() / sizeof(T));
    if (first) sizes.push_back(n);
    else check(i < sizes.size() && sizes[i] == n, where + " does not match its parameter's size");
    out.push_back(static_cast<T*>(b.data()));
  }
  if (!first) check(out.size() == sizes.size(), std::string(name) + " must have one buffer per parameter");
  return out;
}

// Device Buffers and the CUDA twins, for the shared optimizer bindings (bindings_optim.h).
struct DeviceOptim {
  template <typename T>
  static std::vector<T*> pointers(const py::list& buffers, const char* name, std::vector<index_t>& sizes) {
    return device_pointers<T>(buffers, name, sizes);
  }
  template <typename T, typename... Args>
  static void sgd(Args&&... args) { cu::sgd_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void adam(Args&&... args) { cu::adam_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void adagrad(Args&&... args) { cu::adagrad_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void rmsprop(Args&&... args) { cu::rmsprop_step<T>(std::forward<Args>(args)...); }
};

template <typename T>
void define_typed(py::module_& m, const std::string& suffix) {
  auto def = [&](const char* name, auto function) { m.def((std::string(name) + suffix).c_str(), function); };
  def("fill", &fill<T>);
  def("add_inplace", &add_inplace<T>);
  def("sum_array", &sum_array<T>);
  def("scale_sums", &scale_sums<T>);
  def("scale_broadcast", &scale_broadcast<T>);
  def("relu_forward", &unary_forward<T, cu::relu_forward<T>>);
  def("relu_backward", &unary_backward<T, cu::relu_backward<T>>);
  def("sigmoid_forward", &unary_forward<T, cu::sigmoid_forward<T>>);
  def("sigmoid_backward", &unary_backward<T, cu::sigmoid_backward<T>>);
  def("tanh_forward", &unary_forward<T, cu::tanh_forward<T>>);
  def("tanh_backward", &unary_backward<T, cu::tanh_backward<T>>);
  def("leaky_relu_forward", &leaky_relu_forward<T>);
  def("leaky_relu_backward", &leaky_relu_backward<T>);
  def("linear_forward", &linear_forward<T>);
  def("linear_backward", &linear_backward<T>);
  def("conv2d_forward", &conv2d_forward<T>);
  def("conv2d_backward", &conv2d_backward<T>);
  def("max_pool2d_forward", &max_pool2d_forward<T>);
  def("max_pool2d_backward", &max_pool2d_backward<T>);
  def("avg_pool2d_forward", &avg_pool2d_forward<T>);
  def("avg_pool2d_backward", &avg_pool2d_backward<T>);
  def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward<T>);
  def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward<T>);
  def("batch_norm_forward", &batch_norm_forward<T>);
  def("batch_norm_backward", &batch_norm_backward<T>);
  def("cross_entropy_forward", &cross_entropy_forward<T>);
  def("cross_entropy_backward", &cross_entropy_backward<T>);
  def("softmax_forward", &softmax_forward<T>);
  def("softmax_backward", &softmax_backward<T>);
  def("nll_loss_forward", &nll_loss_forward<T>);
  def("nll_loss_backward", &nll_loss_backward<T>);
  def("elementwise_loss_forward", &elementwise_loss_forward<T>);
  def("elementwise_loss_backward", &elementwise_loss_backward<T>);
  def("cross_entropy_probabilities_forward", &cross_entropy_probabilities_forward<T>);
  def("cross_entropy_probabilities_backward", &cross_entropy_probabilities_backward<T>);
  def("dropout_forward", &dropout_apply<T, cu::dropout_forward<T>>);
  def("dropout_backward", &dropout_apply<T, cu::dropout_backward<T>>);
  def("elementwise_binary", &elementwise_binary<T>);
  def("elementwise_scalar", &elementwise_scalar<T>);
  def("strided_copy", &strided_copy<T>);
  def("sum_rows", &sum_rows<T>);
  def("sgd_step", &sgd_step<DeviceOptim, T>);
  def("adam_step", &adam_step<DeviceOptim, T>);
  def("adagrad_step", &adagrad_step<DeviceOptim, T>);
  def("rmsprop_step", &rmsprop_step<DeviceOptim, T>);
}

}  // namespace
#endif  // FASTDL_WITH_CUDA

void bind_cuda(py::module_& m) {
  py::module_ cuda = m.def_submodule("cuda", "fastdl's CUDA kernels (empty when built without CUDA)");
#if defined(FASTDL_WITH_CUDA)
  cuda.def("built", [] { return true; });
  cuda.def("build_info", [] {
    py::dict d;
    d["cuda_version"] = FASTDL_CUDA_VERSION;
    d["architectures"] = FASTDL_CUDA_ARCHS;
    d["gemm"] = "fastdl tiled kernel (no cuBLAS)";
    d["option"] = FASTDL_CUDA_OPTION;
    return d;
  });
  cuda.def("device_count", &cu::device_count);
  cuda.def("device_name", &cu::device_name, py::arg("device"));
  cuda.def("device_capability", &cu::device_capability, py::arg("device"));
  cuda.def("device_memory", &cu::device_memory, py::arg("device"));
  cuda.def("runtime_version", &cu::runtime_version);
  cuda.def("driver_version", &cu::driver_version);
  cuda.def("set_device", &cu::set_device, py::arg("device"));
  cuda.def("synchronize", [] {
    py::gil_scoped_release release;
    cu::synchronize();
  });
  py::class_<Buffer>(cuda, "Buffer", "cudaMalloc'd device memory, freed when the object dies")
      .def(py::init<std::size_t>(), py::arg("nbytes"))
      .def_property_readonly("nbytes", &Buffer::nbytes)
      .def_property_readonly("address", &Buffer::address)
      .def("copy_from_host", &Buffer::copy_from_host, py::arg("array"))
      .def("copy_to_host", &Buffer::copy_to_host, py::arg("array"))
      .def("copy_from_buffer", &Buffer::copy_from_buffer, py::arg("other"))
      .def("zero", &Buffer::zero);
  define_typed<float>(cuda, "_float32");
  define_typed<double>(cuda, "_float64");
  cuda.def("fill_int64", &fill<std::int64_t>);
  cuda.def("strided_copy_int64", &strided_copy<std::int64_t>);
  cuda.def("one_hot", &one_hot);
#else
  cuda.def("built", [] { return false; });
  cuda.def("build_info", [] {
    py::dict d;
    d["option"] = FASTDL_CUDA_OPTION;  // AUTO (no compiler found) or OFF
    return d;
  });
  cuda.def("device_count", [] { return 0; });
#endif
}

}  // namespace fastdl::bindings
