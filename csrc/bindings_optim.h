// The fused optimizer-step bindings, written once for every backend: a Backend supplies
// how a Python list becomes pointers and sizes (host arrays: bindings.h's pointers(); CUDA
// Buffers: bindings_cuda.cpp) and which kernels run (fastdl::cpu or fastdl::cuda twins,
// same signatures). Each binding checks the lists, releases the GIL and calls the kernel.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <utility>
#include <vector>

#include "bindings.h"
#include "cpu/kernels.h"
#include "cpu/optim_adaptive.h"

namespace fastdl::bindings {

// Host NumPy arrays and the CPU kernels.
struct HostOptim {
  template <typename T>
  static std::vector<T*> pointers(const py::list& arrays, const char* name, std::vector<index_t>& sizes) {
    return bindings::pointers<T>(arrays, name, sizes);
  }
  template <typename T, typename... Args>
  static void sgd(Args&&... args) { cpu::sgd_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void adam(Args&&... args) { cpu::adam_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void adagrad(Args&&... args) { cpu::adagrad_step<T>(std::forward<Args>(args)...); }
  template <typename T, typename... Args>
  static void rmsprop(Args&&... args) { cpu::rmsprop_step<T>(std::forward<Args>(args)...); }
};

template <typename Backend, typename T>
void sgd_step(const py::list& params, const py::list& grads, const py::list& momentum_buffers,
              double lr, double momentum, double dampening, double weight_decay, bool nesterov,
              bool maximize, bool init_buffers) {
  std::vector<index_t> sizes;
  auto p = Backend::template pointers<T>(params, "params", sizes);
  auto g = Backend::template pointers<T>(grads, "grads", sizes);
  std::vector<T*> b;
  if (momentum != 0.0) b = Backend::template pointers<T>(momentum_buffers, "momentum_buffers", sizes);
  const cpu::TensorList list{static_cast<index_t>(sizes.size()), sizes.data()};
  std::vector<const T*> gc(g.begin(), g.end());
  py::gil_scoped_release release;
  Backend::template sgd<T>(p.data(), gc.data(), b.empty() ? nullptr : b.data(), list, lr,
                           momentum, dampening, weight_decay, nesterov, maximize, init_buffers);
}

template <typename Backend, typename T>
void adam_step(const py::list& params, const py::list& grads, const py::list& exp_avgs,
               const py::list& exp_avg_sqs, const py::list& max_exp_avg_sqs,
               const std::vector<double>& step_size, const std::vector<double>& bias_correction2_sqrt,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  std::vector<index_t> sizes;
  auto p = Backend::template pointers<T>(params, "params", sizes);
  auto g = Backend::template pointers<T>(grads, "grads", sizes);
  auto m = Backend::template pointers<T>(exp_avgs, "exp_avgs", sizes);
  auto v = Backend::template pointers<T>(exp_avg_sqs, "exp_avg_sqs", sizes);
  std::vector<T*> vmax;
  if (amsgrad) vmax = Backend::template pointers<T>(max_exp_avg_sqs, "max_exp_avg_sqs", sizes);
  check(step_size.size() == sizes.size() && bias_correction2_sqrt.size() == sizes.size(),
        "step_size and bias_correction2_sqrt need one entry per parameter");
  const cpu::TensorList list{static_cast<index_t>(sizes.size()), sizes.data()};
  std::vector<const T*> gc(g.begin(), g.end());
  py::gil_scoped_release release;
  Backend::template adam<T>(p.data(), gc.data(), m.data(), v.data(),
                            vmax.empty() ? nullptr : vmax.data(), list, step_size.data(),
                            bias_correction2_sqrt.data(), lr, beta1, beta2, eps, weight_decay,
                            amsgrad, maximize, decoupled_weight_decay);
}

template <typename Backend, typename T>
void adagrad_step(const py::list& params, const py::list& grads, const py::list& state_sums,
                  const std::vector<double>& clr, double weight_decay, double eps, bool maximize) {
  std::vector<index_t> sizes;
  auto p = Backend::template pointers<T>(params, "params", sizes);
  auto g = Backend::template pointers<T>(grads, "grads", sizes);
  auto s = Backend::template pointers<T>(state_sums, "state_sums", sizes);
  check(clr.size() == sizes.size(), "clr needs one entry per parameter");
  const cpu::TensorList list{static_cast<index_t>(sizes.size()), sizes.data()};
  std::vector<const T*> gc(g.begin(), g.end());
  py::gil_scoped_release release;
  Backend::template adagrad<T>(p.data(), gc.data(), s.data(), list, clr.data(), weight_decay,
                               eps, maximize);
}

template <typename Backend, typename T>
void rmsprop_step(const py::list& params, const py::list& grads, const py::list& square_avgs,
                  const py::list& grad_avgs, const py::list& momentum_buffers, double lr,
                  double alpha, double eps, double weight_decay, double momentum, bool centered,
                  bool maximize) {
  std::vector<index_t> sizes;
  auto p = Backend::template pointers<T>(params, "params", sizes);
  auto g = Backend::template pointers<T>(grads, "grads", sizes);
  auto v = Backend::template pointers<T>(square_avgs, "square_avgs", sizes);
  std::vector<T*> m, b;
  if (centered) m = Backend::template pointers<T>(grad_avgs, "grad_avgs", sizes);
  if (momentum > 0.0) b = Backend::template pointers<T>(momentum_buffers, "momentum_buffers", sizes);
  const cpu::TensorList list{static_cast<index_t>(sizes.size()), sizes.data()};
  std::vector<const T*> gc(g.begin(), g.end());
  py::gil_scoped_release release;
  Backend::template rmsprop<T>(p.data(), gc.data(), v.data(), m.empty() ? nullptr : m.data(),
                               b.empty() ? nullptr : b.data(), list, lr, alpha, eps,
                               weight_decay, momentum, centered, maximize);
}

}  // namespace fastdl::bindings
