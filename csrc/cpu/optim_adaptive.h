// Fused multi-tensor steps of the adaptive optimizers torch.optim.Adagrad and
// torch.optim.RMSprop: one pass over every parameter of a group, in place, with the
// operations of torch.optim's single-tensor path in the same order and precision.
// (SGD and Adam live in optim.cpp; they share TensorList from kernels.h.)
#pragma once

#include "cpu/kernels.h"

namespace fastdl::cpu {

// torch.optim.Adagrad (https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html):
//   g = grad (+ weight_decay * p);  sum += g * g;  p -= clr[i] * g / (sqrt(sum) + eps)
// clr[i] = lr / (1 + (step_i - 1) * lr_decay), computed in double on the host.
template <typename T>
void adagrad_step(T* const* params, const T* const* grads, T* const* state_sums,
                  const TensorList& list, const double* clr, double weight_decay, double eps,
                  bool maximize);

// torch.optim.RMSprop (https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html):
//   g = grad (+ weight_decay * p);  v = alpha v + (1 - alpha) g^2
//   centered: m = lerp(m, g, 1 - alpha),  avg = sqrt(v - m^2) + eps;  else avg = sqrt(v) + eps
//   momentum > 0: b = momentum b + g / avg,  p -= lr b;   else p -= lr g / avg
// grad_avgs is used only when centered, momentum_buffers only when momentum > 0.
template <typename T>
void rmsprop_step(T* const* params, const T* const* grads, T* const* square_avgs,
                  T* const* grad_avgs, T* const* momentum_buffers, const TensorList& list,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize);

}  // namespace fastdl::cpu
