// fastdl's CPU kernels: one family per file (conv.cpp, pool.cpp, ...), forward and
// backward side by side, templated on float and double, on raw C-contiguous buffers.
//
// Gradient rule (as in llm.c): gradients of PARAMETERS (weight, bias) ACCUMULATE
// (+=) into the buffer given; gradients of ACTIVATIONS (inputs) are WRITTEN (=).
// A null gradient pointer means "not needed" and skips that product.
#pragma once

#include <algorithm>
#include <vector>

#include "cpu/common.h"

namespace fastdl::cpu {

// ---------------------------------------------------------------- conv.cpp
// 2-D cross-correlation, as torch.nn.functional.conv2d:
//   out[n, o, y, x] = bias[o] + sum_{c in group(o), i, j}
//       weight[o, c, i, j] * in[n, g*C/G + c, y*sh - ph + i*dh, x*sw - pw + j*dw]
// input (N, C, H, W), weight (O, C/G, KH, KW), bias (O) or null, output (N, O, OH, OW).
struct Conv2dShape {
  index_t batch, in_channels, height, width;
  index_t out_channels, kernel_h, kernel_w;
  index_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  index_t out_h, out_w;
};

template <typename T>
void conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                    const Conv2dShape& s);

// grad_output (N, O, OH, OW) -> grad_input (written), grad_weight, grad_bias (accumulated).
template <typename T>
void conv2d_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, const Conv2dShape& s);

// ---------------------------------------------------------------- depthwise.cpp
// Depthwise convolution (groups = in_channels = out_channels), stride 1, used by
// conv2d_forward/backward when it applies (and the switch below is on).
bool depthwise_applies(const Conv2dShape& s);
template <typename T>
void depthwise_forward(const T* input, const T* weight, const T* bias, T* output, const Conv2dShape& s);
// grad_input written, grad_weight accumulated (either may be null); grad_bias is conv2d's.
template <typename T>
void depthwise_backward(const T* input, const T* weight, const T* grad_output, T* grad_input, T* grad_weight,
                        const Conv2dShape& s);

// ---------------------------------------------------------------- winograd.cpp
// F(2x2, 3x3) Winograd convolution, used by conv2d_forward/backward when it applies
// (3x3, stride 1, dilation 1, one group, >= 8 channels in and out, padding <= 2).
bool winograd_applies(const Conv2dShape& s);
// The switch covers the fast paths, Winograd, depthwise and conv.cpp's direct float32
// kernels; off: always im2col + GEMM (for tests and benchmarks).
void set_winograd_enabled(bool enabled);
bool winograd_is_enabled();

template <typename T>
void winograd_forward(const T* input, const T* weight, const T* bias, T* output,
                      const Conv2dShape& s);

// grad_input written (when not null), grad_weight accumulated (when not null).
template <typename T>
void winograd_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                       T* grad_weight, const Conv2dShape& s);

// ---------------------------------------------------------------- pool.cpp
// Max pooling, as torch.nn.functional.max_pool2d: padding is -inf, NaN propagates;
// indices are flat positions y*W + x inside each input plane (return_indices), -1 for a
// window that covers only padding (its output is -inf and it passes no gradient).
struct Pool2dShape {
  index_t planes, height, width;  // planes = N*C
  index_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  index_t out_h, out_w;
};

// I: std::int64_t (PyTorch's index dtype, return_indices) or std::int32_t (planes of fewer
// than 2^31 pixels: autograd's own copy, half the bytes written and read again).
template <typename T, typename I>
void max_pool2d_forward(const T* input, T* output, I* indices, const Pool2dShape& s);

// grad_input (written) = scatter-add of grad_output at the saved indices. With the window
// geometry known (kernel_h > 0: the forward's s) and each index inside its window (as the
// forward makes them), a gather form builds each input row once; kernel_h = 0 (geometry
// unknown) scatters any in-plane index.
bool max_pool2d_backward_gathers(const Pool2dShape& s);  // any index is then safe

template <typename T, typename I>
void max_pool2d_backward(const T* grad_output, const I* indices, T* grad_input,
                         const Pool2dShape& s);

// Window codes: autograd's own record of each window's winner as one byte, 3 r + c for
// the winner's row r and column c in the window, in place of a 4-byte flat index (the
// indices are a sixth of max pooling's bytes otherwise). Only where this holds: 3x3
// windows, stride 2, padding 1 on planes of even width 4 and more (the flat kernels).
bool max_pool2d_window_codes(const Pool2dShape& s);

template <typename T>
void max_pool2d_forward_codes(const T* input, T* output, std::uint8_t* codes, const Pool2dShape& s);

// grad_input (written) from the forward's codes; s is the forward's geometry.
template <typename T>
void max_pool2d_backward_codes(const T* grad_output, const std::uint8_t* codes, T* grad_input,
                               const Pool2dShape& s);

// ---------------------------------------------------------------- linear.cpp
// out (N, F_out) = input (N, F_in) @ weight(F_out, F_in)^T + bias (F_out).
template <typename T>
void linear_forward(const T* input, const T* weight, const T* bias, T* output, index_t batch,
                    index_t in_features, index_t out_features);

template <typename T>
void linear_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, index_t batch, index_t in_features,
                     index_t out_features);

// ---------------------------------------------------------------- activation.cpp
// relu(x) = max(x, 0) (NaN stays NaN); grad_input = 0 where output <= 0, else grad_output
// (so a NaN passes its gradient through, as torch's threshold_backward).
template <typename T>
void relu_forward(const T* input, T* output, index_t n);

template <typename T>
void relu_backward(const T* output, const T* grad_output, T* grad_input, index_t n);

// ---------------------------------------------------------------- loss.cpp
// Softmax cross-entropy from logits (N, C) and class indices target (N), the pieces of
// torch.nn.functional.cross_entropy (weight, ignore_index, label_smoothing):
//   logp = log_softmax(logits),  w = weight (all ones when null)
//   nll[n]    = -w[t_n] * logp[n, t_n]            (0 where t_n == ignore_index)
//   smooth[n] = -sum_c w[c] * logp[n, c]          (0 where ignored; skipped when null)
// The caller combines them as PyTorch does:
//   (1 - eps) * reduce(nll) + eps / C * reduce(smooth).
// logsumexp (N) is written for the backward pass, in double: rounding it to float32
// would make the gradient's error grow with the logits' magnitude.
template <typename T>
void cross_entropy_forward(const T* logits, const std::int64_t* target, const T* weight, T* nll,
                           T* smooth, double* logsumexp, index_t batch, index_t classes,
                           std::int64_t ignore_index);

// grad_logits[n, c] (written) = grad_nll[n] * w[t_n] * (p[n, c] - [c == t_n])
//                             + grad_smooth[n] * (p[n, c] * sum_k w[k] - w[c]),  p = softmax.
template <typename T>
void cross_entropy_backward(const T* logits, const std::int64_t* target, const T* weight,
                            const double* logsumexp, const T* grad_nll, const T* grad_smooth,
                            T* grad_logits, index_t batch, index_t classes,
                            std::int64_t ignore_index);

// ---------------------------------------------------------------- optim.cpp
// Fused multi-tensor optimizer steps: one pass over every parameter of a group,
// in place. Arrays of pointers hold one entry per tensor, sizes[i] its length.
// Formulas and rounding follow torch.optim (single-tensor path) step by step.
struct TensorList {
  index_t count;
  const index_t* sizes;
};

// A fixed-size piece of one tensor of a TensorList: the unit of work shared among the
// threads by the fused optimizer steps (sizes fixed, so no result depends on threads).
struct TensorChunk {
  index_t tensor, begin, end;
};

// Calls fn(tensor, begin, end) for every chunk of every tensor of list, the chunks shared
// among the OpenMP threads: the one parallel loop of every fused optimizer step.
template <typename Fn>
void for_each_chunk(const TensorList& list, Fn&& fn) {
  constexpr index_t kChunk = index_t(1) << 15;
  std::vector<TensorChunk> chunks;
  index_t total = 0;
  for (index_t t = 0; t < list.count; ++t) {
    for (index_t b = 0; b < list.sizes[t]; b += kChunk)
      chunks.push_back({t, b, std::min(list.sizes[t], b + kChunk)});
    total += list.sizes[t];
  }
  const index_t count = static_cast<index_t>(chunks.size());
#pragma omp parallel for schedule(static) num_threads(threads_for(total))
  for (index_t k = 0; k < count; ++k) fn(chunks[k].tensor, chunks[k].begin, chunks[k].end);
}

// torch.optim.SGD. momentum_buffers may be null when momentum == 0; with
// init_buffers the buffers are first set to the (decayed) gradient, as PyTorch
// does on a parameter's first step.
template <typename T>
void sgd_step(T* const* params, const T* const* grads, T* const* momentum_buffers,
              const TensorList& list, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool init_buffers);

// torch.optim.Adam / AdamW (decoupled_weight_decay). step_size[i] = lr / (1 - beta1^t),
// bias_correction2_sqrt[i] = sqrt(1 - beta2^t), computed in double on the host.
// max_exp_avg_sqs is used only with amsgrad.
template <typename T>
void adam_step(T* const* params, const T* const* grads, T* const* exp_avgs,
               T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const TensorList& list,
               const double* step_size, const double* bias_correction2_sqrt, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
               bool maximize, bool decoupled_weight_decay);

}  // namespace fastdl::cpu
