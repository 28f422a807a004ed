// fastdl's CUDA kernels: the twins of the CPU kernels in csrc/cpu (kernels.h, pool.h, norm.h,
// loss.h, optim_adaptive.h), with the SAME signatures and shape structs, in namespace
// fastdl::cuda. Every pointer is DEVICE memory (except the host arrays of pointers of the
// optimizer steps, as in the CPU twins, and the shape structs). Plain C++ declarations:
// included by the pybind11 bindings (csrc/bindings_cuda.cpp, compiled by the C++ compiler)
// and by the .cu files that define them.
//
// Gradient rule (kernels.h): gradients of PARAMETERS accumulate (+=), gradients of
// ACTIVATIONS are written (=); a null gradient pointer skips that product.
// Determinism: no atomics in any sum; every reduction runs in a fixed order (fixed block
// and grid sizes, tree sums in shared memory), so a result has the same bits on every run.
//
// Where a CPU kernel RETURNS a reduction (nll_loss_forward, the element-wise losses, the
// probability cross-entropy), the twin writes it to device memory instead (`double* sums`)
// so that no kernel waits for the host; otherwise the argument lists are the CPU ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cpu/kernels.h"
#include "cpu/loss.h"
#include "cpu/norm.h"
#include "cpu/optim_adaptive.h"
#include "cpu/pool.h"

namespace fastdl::cuda {

using cpu::AdaptivePool2dShape;
using cpu::AvgPool2dShape;
using cpu::BatchNormShape;
using cpu::Broadcast;
using cpu::Conv2dShape;
using cpu::index_t;
using cpu::Loss;
using cpu::Pool2dShape;
using cpu::TensorList;

// ---------------------------------------------------------------- memory.cu
// Devices visible to the CUDA runtime; 0 (never an exception) when there is no driver or
// no device. The only CUDA call fastdl makes on import, and only when asked.
int device_count();
std::string device_name(int device);
std::string device_capability(int device);   // "9.0"
std::size_t device_memory(int device);       // bytes
int runtime_version();                       // e.g. 13000
int driver_version();                        // 0 without a driver
void set_device(int device);
void synchronize();

void* allocate(std::size_t bytes);  // cudaMalloc; bytes > 0
void release(void* pointer);        // cudaFree (never throws)
void copy_to_device(void* device, const void* host, std::size_t bytes);
void copy_to_host(void* host, const void* device, std::size_t bytes);
void copy_on_device(void* destination, const void* source, std::size_t bytes);
void fill_zero(void* device, std::size_t bytes);

// x[i] = value; y[i] += x[i] (autograd's gradient accumulation);
// sums[0] = sum of x (double, fixed order); out[0] = T(sums[0] * scale0 + sums[1] * scale1)
// (sums[1] read only when count == 2): a device-side loss value, scaled and rounded once;
// out[i] = T(g[0] * scale) for i < n: a scalar upstream gradient spread over a loss' terms.
template <typename T>
void fill(T* x, index_t n, double value);
template <typename T>
void add_inplace(T* y, const T* x, index_t n);
template <typename T>
void sum_array(const T* x, index_t n, double* sums);
template <typename T>
void scale_sums(const double* sums, int count, double scale0, double scale1, T* out);
template <typename T>
void scale_broadcast(const T* g, double scale, T* out, index_t n);

// ---------------------------------------------------------------- gemm.cu
// C = alpha * op(A) @ op(B) + beta * C on row-major matrices (op = transpose when asked);
// fastdl's own tiled shared-memory kernel (no cuBLAS): C is never read when beta == 0.
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a,
          index_t lda, const T* b, index_t ldb, T beta, T* c, index_t ldc);

// linear (kernels.h): out (N, O) = input (N, I) @ weight(O, I)^T + bias.
template <typename T>
void linear_forward(const T* input, const T* weight, const T* bias, T* output, index_t batch,
                    index_t in_features, index_t out_features);
template <typename T>
void linear_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, index_t batch, index_t in_features,
                     index_t out_features);

// ---------------------------------------------------------------- conv.cu
// conv2d as torch.nn.functional.conv2d (kernels.h): im2col + gemm per group.
template <typename T>
void conv2d_forward(const T* input, const T* weight, const T* bias, T* output,
                    const Conv2dShape& s);
template <typename T>
void conv2d_backward(const T* input, const T* weight, const T* grad_output, T* grad_input,
                     T* grad_weight, T* grad_bias, const Conv2dShape& s);

// ---------------------------------------------------------------- pool.cu
template <typename T>
void max_pool2d_forward(const T* input, T* output, std::int64_t* indices, const Pool2dShape& s);
template <typename T>
void max_pool2d_backward(const T* grad_output, const std::int64_t* indices, T* grad_input,
                         const Pool2dShape& s);
template <typename T>
void avg_pool2d_forward(const T* input, T* output, const AvgPool2dShape& s);
template <typename T>
void avg_pool2d_backward(const T* grad_output, T* grad_input, const AvgPool2dShape& s);
template <typename T>
void adaptive_avg_pool2d_forward(const T* input, T* output, const AdaptivePool2dShape& s);
template <typename T>
void adaptive_avg_pool2d_backward(const T* grad_output, T* grad_input,
                                  const AdaptivePool2dShape& s);

// ---------------------------------------------------------------- norm.cu
template <typename T>
void batch_norm_forward(const T* input, const T* weight, const T* bias, T* output,
                        T* running_mean, T* running_var, double* save_mean,
                        double* save_invstd, bool training, double momentum, double eps,
                        const BatchNormShape& s);
template <typename T>
void batch_norm_backward(const T* input, const T* grad_output, const double* save_mean,
                         const double* save_invstd, const T* weight, T* grad_input,
                         T* grad_weight, T* grad_bias, bool training, const BatchNormShape& s);

// ---------------------------------------------------------------- activation.cu
template <typename T>
void relu_forward(const T* input, T* output, index_t n);
template <typename T>
void relu_backward(const T* output, const T* grad_output, T* grad_input, index_t n);
template <typename T>
void sigmoid_forward(const T* input, T* output, index_t n);
template <typename T>
void sigmoid_backward(const T* output, const T* grad_output, T* grad_input, index_t n);
template <typename T>
void tanh_forward(const T* input, T* output, index_t n);
template <typename T>
void tanh_backward(const T* output, const T* grad_output, T* grad_input, index_t n);
template <typename T>
void leaky_relu_forward(const T* input, T* output, index_t n, double negative_slope);
template <typename T>
void leaky_relu_backward(const T* input, const T* grad_output, T* grad_input, index_t n,
                         double negative_slope);

// ---------------------------------------------------------------- loss.cu
template <typename T>
void cross_entropy_forward(const T* logits, const std::int64_t* target, const T* weight, T* nll,
                           T* smooth, double* logsumexp, index_t batch, index_t classes,
                           std::int64_t ignore_index);
template <typename T>
void cross_entropy_backward(const T* logits, const std::int64_t* target, const T* weight,
                            const double* logsumexp, const T* grad_nll, const T* grad_smooth,
                            T* grad_logits, index_t batch, index_t classes,
                            std::int64_t ignore_index);
template <typename T>
void softmax_forward(const T* input, T* output, index_t outer, index_t dim, index_t inner,
                     bool log);
template <typename T>
void softmax_backward(const T* output, const T* grad_output, T* grad_input, index_t outer,
                      index_t dim, index_t inner, bool log);
// sums[0] = sum of the losses, sums[1] = sum of w[t] over the kept targets (device doubles).
template <typename T>
void nll_loss_forward(const T* input, const std::int64_t* target, const T* weight, T* loss,
                      double* sums, index_t outer, index_t classes, index_t inner,
                      std::int64_t ignore_index);
template <typename T>
void nll_loss_backward(const std::int64_t* target, const T* weight, const T* grad,
                       bool grad_is_scalar, T* grad_input, index_t outer, index_t classes,
                       index_t inner, std::int64_t ignore_index);
// sums[0] = the sum of the losses (when loss is null); out_of_range[0] = 1 when a bce input
// leaves [0, 1] (device int, read by the caller).
template <typename T>
void elementwise_loss_forward(Loss kind, const T* input, const T* target, Broadcast weight,
                              Broadcast pos_weight, T* loss, double* sums, index_t n,
                              int* out_of_range);
template <typename T>
void elementwise_loss_backward(Loss kind, const T* input, const T* target, Broadcast weight,
                               Broadcast pos_weight, const T* grad, bool grad_is_scalar,
                               T* grad_input, T* grad_target, index_t n);
// Cross-entropy with class probabilities (loss.h): logsumexp (N) and, when loss is not
// null, loss (N) are written; sums[0] = the sum of the row losses (device double, always).
template <typename T>
void cross_entropy_probabilities_forward(const T* logits, const T* target, const T* weight,
                                         T* loss, double* logsumexp, double* sums, index_t batch,
                                         index_t classes, double label_smoothing);
template <typename T>
void cross_entropy_probabilities_backward(const T* logits, const T* target, const T* weight,
                                          const double* logsumexp, const T* grad,
                                          bool grad_is_scalar, T* grad_logits, index_t batch,
                                          index_t classes, double label_smoothing);

// ---------------------------------------------------------------- dropout.cu
// norm.h's dropout: the same splitmix64 counter mask, so a seed gives the CPU's mask bit for
// bit; output may alias input.
template <typename T>
void dropout_forward(const T* input, T* output, index_t n, std::uint64_t seed, double p);
template <typename T>
void dropout_backward(const T* grad_output, T* grad_input, index_t n, std::uint64_t seed,
                      double p);

// ---------------------------------------------------------------- tensor.cu
// Tensor arithmetic and data movement. No CPU twin: on the host NumPy does these (ndarray
// operators, transpose, np.pad, put_along_axis); these kernels give the same values.
//
// out[i] = a[i] op b[i] (same shape), or a[i] op s / s op a[i] (`reverse`) with the scalar
// s rounded to T once (NumPy's rule for a Python scalar beside an array). One IEEE
// operation per element: the bits NumPy gives. out may alias a (in-place operators).
enum class Arithmetic : int { add = 0, sub = 1, mul = 2, div = 3 };
template <typename T>
void elementwise_binary(Arithmetic op, const T* a, const T* b, T* out, index_t n);
template <typename T>
void elementwise_scalar(Arithmetic op, const T* a, double scalar, bool reverse, T* out,
                        index_t n);

// out[r] = sum_c x[r * cols + c] for r < rows: x viewed as (rows, cols), each row summed in
// double in a fixed tree order and rounded once to T (a sum over the trailing axes; other
// axes are moved last by strided_copy first).
template <typename T>
void sum_rows(const T* x, T* out, index_t rows, index_t cols);

// A strided copy over an index space of up to kMaxDims dimensions `shape`:
//   dst[dst_offset + sum_k i_k dst_strides[k]] = src[src_offset + sum_k i_k src_strides[k]]
// (strides and offsets in elements). One kernel for permute (permuted source strides),
// broadcast (zero source strides), pad (a destination window) and crop (a source window).
constexpr int kMaxDims = 8;
struct StridedLayout {
  int ndim;
  index_t shape[kMaxDims];
  index_t src_strides[kMaxDims];
  index_t dst_strides[kMaxDims];
  index_t src_offset, dst_offset;
};
template <typename T>
void strided_copy(const T* src, T* dst, const StridedLayout& layout);

// one_hot (torch.nn.functional.one_hot): out (n, classes) int64, written:
//   out[i, c] = labels[i] == c.   Labels are checked by the caller (one outside [0, classes)
// gives a row of zeros).
void one_hot(const std::int64_t* labels, std::int64_t* out, index_t n, index_t classes);

// ---------------------------------------------------------------- optim.cu
// Fused multi-tensor steps: params/grads/... are HOST arrays of DEVICE pointers (one per
// tensor), as in the CPU twins; step_size, bias_correction2_sqrt and clr are host arrays.
// Up to kTensorsPerLaunch tensors go into one launch (their pointers passed by value).
template <typename T>
void sgd_step(T* const* params, const T* const* grads, T* const* momentum_buffers,
              const TensorList& list, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool init_buffers);
template <typename T>
void adam_step(T* const* params, const T* const* grads, T* const* exp_avgs,
               T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const TensorList& list,
               const double* step_size, const double* bias_correction2_sqrt, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
               bool maximize, bool decoupled_weight_decay);
template <typename T>
void adagrad_step(T* const* params, const T* const* grads, T* const* state_sums,
                  const TensorList& list, const double* clr, double weight_decay, double eps,
                  bool maximize);
template <typename T>
void rmsprop_step(T* const* params, const T* const* grads, T* const* square_avgs,
                  T* const* grad_avgs, T* const* momentum_buffers, const TensorList& list,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize);

}  // namespace fastdl::cuda
