// Kernels of the normalization family: batch norm (batchnorm.cpp), the element-wise
// activations sigmoid / tanh / leaky_relu (activation.cpp, beside relu) and dropout
// (dropout.cpp). Raw C-contiguous buffers, templated on float and double.
//
// Gradient rule (as in kernels.h): gradients of PARAMETERS (weight, bias) ACCUMULATE
// (+=) into the buffer given; gradients of ACTIVATIONS (inputs) are WRITTEN (=).
// A null gradient pointer means "not needed" and skips that product.
//
// Determinism: every reduction runs in an order fixed by the shapes alone, and random
// numbers depend only on (seed, element index): results are bitwise identical on any
// number of threads.
#pragma once

#include <cstdint>

#include "cpu/common.h"

namespace fastdl::cpu {

// ---------------------------------------------------------------- batchnorm.cpp
// Batch normalization, as torch.nn.functional.batch_norm
// (https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html):
//   y[n, c, s] = (x[n, c, s] - mean[c]) * invstd[c] * weight[c] + bias[c],
//   invstd[c] = 1 / sqrt(var[c] + eps).
// input and output (N, C, S) with S the product of the dimensions after C (1 for a
// (N, C) input); weight, bias (C) or null (1 and 0).
//  * training: mean and the biased variance come from the batch (M = N*S values per
//    channel); the running statistics, when given, are updated as PyTorch does:
//      running_mean = (1 - momentum) * running_mean + momentum * mean
//      running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)
//  * otherwise: mean = running_mean, var = running_var (both required).
// save_mean and save_invstd (C, double) are written for the backward pass.
// Statistics are summed in double; per element the arithmetic is in double too, so a
// float32 result is the correctly rounded value of the double formula.
struct BatchNormShape {
  index_t batch, channels, spatial;  // N, C, S
};

template <typename T>
void batch_norm_forward(const T* input, const T* weight, const T* bias, T* output,
                        T* running_mean, T* running_var, double* save_mean,
                        double* save_invstd, bool training, double momentum, double eps,
                        const BatchNormShape& s);

// One fused pass per channel: two sums, then grad_input.
//   grad_bias[c]   += sum_{n,s} gy
//   grad_weight[c] += sum_{n,s} gy * xhat,     xhat = (x - mean) * invstd
//   training:  grad_input = weight * invstd * (gy - mean(gy) - xhat * mean(gy * xhat))
//   otherwise: grad_input = weight * invstd * gy   (the statistics are constants)
template <typename T>
void batch_norm_backward(const T* input, const T* grad_output, const double* save_mean,
                         const double* save_invstd, const T* weight, T* grad_input,
                         T* grad_weight, T* grad_bias, bool training, const BatchNormShape& s);

// ---------------------------------------------------------------- activation.cpp
// sigmoid(x) = 1 / (1 + exp(-x)), evaluated as e / (1 + e) or 1 / (1 + e) with
// e = exp(-|x|) <= 1, so nothing overflows; exp is a vectorized polynomial (~1 ulp).
// grad_input = grad_output * (1 - y) * y  (y = output, the order of torch's kernel).
// https://pytorch.org/docs/stable/generated/torch.nn.Sigmoid.html
template <typename T>
void sigmoid_forward(const T* input, T* output, index_t n);

template <typename T>
void sigmoid_backward(const T* output, const T* grad_output, T* grad_input, index_t n);

// tanh(x) = sign(x) * -m / (2 + m) with m = expm1(-2|x|): no cancellation near 0.
// grad_input = grad_output * (1 - y * y).
// https://pytorch.org/docs/stable/generated/torch.nn.Tanh.html
template <typename T>
void tanh_forward(const T* input, T* output, index_t n);

template <typename T>
void tanh_backward(const T* output, const T* grad_output, T* grad_input, index_t n);

// leaky_relu(x) = x > 0 ? x : negative_slope * x (NaN stays NaN);
// grad_input = x > 0 ? grad_output : negative_slope * grad_output (x = input).
// https://pytorch.org/docs/stable/generated/torch.nn.LeakyReLU.html
template <typename T>
void leaky_relu_forward(const T* input, T* output, index_t n, double negative_slope);

template <typename T>
void leaky_relu_backward(const T* input, const T* grad_output, T* grad_input, index_t n,
                         double negative_slope);

// ---------------------------------------------------------------- dropout.cpp
// Dropout (https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html), 0 <= p < 1:
//   keep[i] = splitmix64(seed, i) >= p * 2^64,  y[i] = keep[i] ? x[i] / (1 - p) : 0.
// The mask is a pure function of (seed, i), so it is the same on any thread count and
// the backward pass regenerates it instead of storing it:
//   grad_input[i] = keep[i] ? grad_output[i] / (1 - p) : 0.
// output may alias input (in-place dropout).
template <typename T>
void dropout_forward(const T* input, T* output, index_t n, std::uint64_t seed, double p);

template <typename T>
void dropout_backward(const T* grad_output, T* grad_input, index_t n, std::uint64_t seed,
                      double p);

}  // namespace fastdl::cpu
