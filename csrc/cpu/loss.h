// The loss family (csrc/cpu/loss.cpp) beyond the class-index cross-entropy declared in
// kernels.h: softmax / log_softmax over any dimension, nll_loss, cross-entropy with class
// probabilities, and the element-wise losses (mse, l1, binary cross-entropy with and
// without logits, kl_div).
//
// Gradient rule (kernels.h): gradients of activations are WRITTEN (=); a null gradient
// pointer means "not needed". None of these kernels has parameters.
//
// Reductions: a kernel that reduces returns the sum of its terms in double, summed in
// blocks of kReduceBlock elements (fixed by the shape alone) whose partial sums are then
// added in block order: the same bits on any number of threads.
#pragma once

#include "cpu/common.h"

namespace fastdl::cpu {

constexpr index_t kReduceBlock = 1 << 13;

// ---------------------------------------------------------------- softmax, log_softmax
// x viewed as (outer, dim, inner): the softmax runs along `dim` for every (outer, inner).
//   softmax:     y = exp(x - max) / sum exp(x - max)
//   log_softmax: y = x - max - log(sum exp(x - max))
// https://pytorch.org/docs/stable/generated/torch.nn.functional.softmax.html
template <typename T>
void softmax_forward(const T* input, T* output, index_t outer, index_t dim, index_t inner,
                     bool log);

// From the forward's output y and grad_output g (same shape), grad_input (written):
//   softmax:     g_x = y * (g - sum_dim(g * y))
//   log_softmax: g_x = g - exp(y) * sum_dim(g)
template <typename T>
void softmax_backward(const T* output, const T* grad_output, T* grad_input, index_t outer,
                      index_t dim, index_t inner, bool log);

// ---------------------------------------------------------------- nll_loss
// input (outer, C, inner) log-probabilities, target (outer, inner) class indices (already
// checked: in [0, C) or == ignore_index), weight (C) or null:
//   loss[n, k] = -w[t] * input[n, t, k],  t = target[n, k]   (0 where t == ignore_index)
// https://pytorch.org/docs/stable/generated/torch.nn.functional.nll_loss.html
// Writes loss (outer * inner) when not null; returns {sum of loss, sum of w[t] over the
// kept targets} in double (the 'mean' is their quotient, as PyTorch's).
struct LossSums {
  double loss, weight;
};
template <typename T>
LossSums nll_loss_forward(const T* input, const std::int64_t* target, const T* weight, T* loss,
                          index_t outer, index_t classes, index_t inner,
                          std::int64_t ignore_index);

// grad_input (outer, C, inner), written: -w[t] * g[n, k] at [n, t, k], 0 elsewhere.
// grad is one value per (n, k) or, with grad_is_scalar, one value for all.
template <typename T>
void nll_loss_backward(const std::int64_t* target, const T* weight, const T* grad,
                       bool grad_is_scalar, T* grad_input, index_t outer, index_t classes,
                       index_t inner, std::int64_t ignore_index);

// ---------------------------------------------------------------- cross-entropy, probabilities
// logits (N, C), target probabilities (N, C), weight (C) or null, label smoothing eps:
//   q = (1 - eps) * target + eps / C,   loss[n] = -sum_c w[c] * q[n, c] * log_softmax(x)[n, c]
// https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html
// Writes logsumexp (N) in double for the backward; writes loss (N) when not null; returns
// the sum of loss.
template <typename T>
double cross_entropy_probabilities_forward(const T* logits, const T* target, const T* weight,
                                           T* loss, double* logsumexp, index_t batch,
                                           index_t classes, double label_smoothing);

// grad_logits (N, C), written: g[n] * (softmax(x)[n, c] * sum_k w[k] q[n, k] - w[c] q[n, c]);
// grad is one value per row or, with grad_is_scalar, one value for all.
template <typename T>
void cross_entropy_probabilities_backward(const T* logits, const T* target, const T* weight,
                                          const double* logsumexp, const T* grad,
                                          bool grad_is_scalar, T* grad_logits, index_t batch,
                                          index_t classes, double label_smoothing);

// ---------------------------------------------------------------- element-wise losses
// input x, target y of n elements each; per-element loss l(x, y):
//   mse:   w * (x - y)^2
//   l1:    w * |x - y|
//   bce:   -w * (y * max(log x, -100) + (1 - y) * max(log(1 - x), -100))
//   bce_with_logits: w * ((1 - y) * x - (1 + (p - 1) * y) * log_sigmoid(x))   (p = pos_weight)
//   kl_div: y * (log y - x)  (0 where y == 0);  log_target: exp(y) * (y - x)
// Docs: https://pytorch.org/docs/stable/nn.functional.html#loss-functions
// weight and pos_weight broadcast PERIODICALLY: element i uses w[i % weight_period] (the
// weight's shape is a suffix of the input's); null means "none".
enum class Loss : int { mse = 0, l1 = 1, bce = 2, bce_with_logits = 3, kl_div = 4, kl_div_log_target = 5 };

struct Broadcast {
  const void* data;  // a T*, or null
  index_t period;
};

// Writes loss (n) when not null, else returns the sum of the loss (fixed order, double).
// For bce, *out_of_range is set when an input leaves [0, 1] (or is NaN); the caller raises.
// With grad_input (n) not null, also writes what elementwise_loss_backward would give for a
// scalar grad of grad_scale, bit for bit, from the chunk of x and y already in cache: the
// backward pass of a reduced loss then reads nothing again.
template <typename T>
double elementwise_loss_forward(Loss kind, const T* input, const T* target, Broadcast weight,
                                Broadcast pos_weight, T* loss, index_t n, bool* out_of_range,
                                T* grad_input = nullptr, T grad_scale = T(1));

// grad_input and grad_target (n, either null), written: dl/dx * g and dl/dy * g, where g is
// grad[i] or, with grad_is_scalar, grad[0] (the caller folds 1/n of a mean into it).
template <typename T>
void elementwise_loss_backward(Loss kind, const T* input, const T* target, Broadcast weight,
                               Broadcast pos_weight, const T* grad, bool grad_is_scalar,
                               T* grad_input, T* grad_target, index_t n);

}  // namespace fastdl::cpu
