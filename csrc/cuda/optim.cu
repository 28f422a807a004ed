// Fused multi-tensor optimizer steps (twins of csrc/cpu/optim.cpp and optim_adaptive.cpp).
//
// Up to kTensorsPerLaunch tensors go into one launch: their device pointers, sizes and
// per-tensor scalars travel BY VALUE in the kernel's parameters (a Pack, under the 4 KiB
// parameter limit), as PyTorch's multi_tensor_apply does; blockIdx.y picks the tensor and
// a grid-stride loop covers its elements. So a model of 20 tensors is one launch, and a
// step costs about one read and one write of every buffer: it is bound by memory bandwidth.
// Each element follows the CPU twin's operations in the same order (torch.optim's
// single-tensor path); nvcc may contract a*b + c into one FMA, so float32 results agree
// with the CPU to rounding, not bitwise.
#include <algorithm>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kTensorsPerLaunch = 24;
constexpr unsigned int kMaxBlocksPerTensor = 2048;

template <typename T>
struct Pack {
  T* param[kTensorsPerLaunch];
  const T* grad[kTensorsPerLaunch];
  T* state0[kTensorsPerLaunch];  // momentum buffer | exp_avg | state_sum | square_avg
  T* state1[kTensorsPerLaunch];  // exp_avg_sq | grad_avg
  T* state2[kTensorsPerLaunch];  // max_exp_avg_sq | momentum buffer (rmsprop)
  index_t size[kTensorsPerLaunch];
  T scalar0[kTensorsPerLaunch];  // -step_size (adam) | -clr (adagrad)
  T scalar1[kTensorsPerLaunch];  // sqrt(bias_correction2) (adam)
};

// Calls launch(pack, count, blocks_x) for consecutive groups of the list's tensors;
// fill(pack, slot, tensor) stores one tensor's pointers and scalars. Empty tensors skipped.
template <typename T, typename Fill, typename Launch>
void for_each_pack(const TensorList& list, Fill&& fill, Launch&& launch) {
  Pack<T> pack{};
  int count = 0;
  index_t largest = 0;
  const auto flush = [&]() {
    if (count == 0) return;
    const unsigned int blocks = std::min(blocks_for(largest), kMaxBlocksPerTensor);
    launch(pack, count, blocks);
    pack = Pack<T>{};
    count = 0;
    largest = 0;
  };
  for (index_t t = 0; t < list.count; ++t) {
    if (list.sizes[t] <= 0) continue;
    pack.size[count] = list.sizes[t];
    fill(pack, count, t);
    largest = std::max(largest, list.sizes[t]);
    if (++count == kTensorsPerLaunch) flush();
  }
  flush();
}

#define FASTDL_TENSOR_LOOP(pack, i)                                                          \
  const int slot = blockIdx.y;                                                               \
  const index_t size_ = pack.size[slot];                                                     \
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size_;   \
       i += static_cast<index_t>(blockDim.x) * gridDim.x)

// ------------------------------------------------------------------ SGD
template <typename T>
struct SgdScalars {
  T sign, wd, mom, one_minus_damp, neg_lr;
  bool decay, momentum, init, nesterov;
};

template <typename T>
__global__ void sgd_kernel(const Pack<T> pack, const SgdScalars<T> c) {
  FASTDL_TENSOR_LOOP(pack, i) {
    T* p = pack.param[slot];
    const T* g = pack.grad[slot];
    T d = c.sign * g[i];
    if (c.decay) d = d + c.wd * p[i];
    if (c.momentum) {
      T* buf = pack.state0[slot];
      const T b = c.init ? d : buf[i] * c.mom + c.one_minus_damp * d;
      buf[i] = b;
      d = c.nesterov ? d + c.mom * b : b;
    }
    p[i] = p[i] + c.neg_lr * d;
  }
}

// ------------------------------------------------------------------ Adam / AdamW
enum class WeightDecay { none, coupled, decoupled };

template <typename T>
struct AdamScalars {
  T sign, w1, b2, w2, eps, wd, decay;
  bool lerp_low, amsgrad;
  WeightDecay mode;
};

template <typename T>
__global__ void adam_kernel(const Pack<T> pack, const AdamScalars<T> c) {
  FASTDL_TENSOR_LOOP(pack, i) {
    T* p = pack.param[slot];
    T* m = pack.state0[slot];
    T* v = pack.state1[slot];
    T grad = c.sign * pack.grad[slot][i];
    T param = p[i];
    if (c.mode == WeightDecay::decoupled) param = param * c.decay;
    if (c.mode == WeightDecay::coupled) grad = grad + c.wd * param;
    const T diff = grad - m[i];  // exp_avg.lerp_(grad, 1 - beta1)
    const T mi = c.lerp_low ? m[i] + c.w1 * diff : grad - diff * (T(1) - c.w1);
    m[i] = mi;
    const T vi = v[i] * c.b2 + c.w2 * (grad * grad);
    v[i] = vi;
    T second = vi;
    if (c.amsgrad) {
      T* vmax = pack.state2[slot];
      second = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = second;
    }
    const T denom = sqrt(second) / pack.scalar1[slot] + c.eps;
    p[i] = param + pack.scalar0[slot] * (mi / denom);
  }
}

// ------------------------------------------------------------------ Adagrad
template <typename T>
__global__ void adagrad_kernel(const Pack<T> pack, T wd, T eps, bool decay, bool maximize) {
  FASTDL_TENSOR_LOOP(pack, i) {
    T* p = pack.param[slot];
    T* sum = pack.state0[slot];
    T grad = maximize ? -pack.grad[slot][i] : pack.grad[slot][i];
    if (decay) grad = grad + wd * p[i];
    const T s = sum[i] + (T(1) * grad) * grad;
    sum[i] = s;
    const T std_dev = sqrt(s) + eps;
    p[i] = p[i] + (pack.scalar0[slot] * grad) / std_dev;
  }
}

// ------------------------------------------------------------------ RMSprop
template <typename T>
struct RmspropScalars {
  T wd, eps, alpha, one_minus_alpha, mom, neg_lr;
  bool decay, centered, momentum, lerp_low, maximize;
};

template <typename T>
__global__ void rmsprop_kernel(const Pack<T> pack, const RmspropScalars<T> c) {
  FASTDL_TENSOR_LOOP(pack, i) {
    T* p = pack.param[slot];
    T* v = pack.state0[slot];
    T grad = c.maximize ? -pack.grad[slot][i] : pack.grad[slot][i];
    if (c.decay) grad = grad + c.wd * p[i];
    const T vi = v[i] * c.alpha + (c.one_minus_alpha * grad) * grad;
    v[i] = vi;
    T avg;
    if (c.centered) {
      T* m = pack.state1[slot];
      const T diff = grad - m[i];
      const T mi = c.lerp_low ? m[i] + c.one_minus_alpha * diff
                              : grad - diff * (T(1) - c.one_minus_alpha);
      m[i] = mi;
      avg = sqrt(vi + (T(-1) * mi) * mi) + c.eps;
    } else {
      avg = sqrt(vi) + c.eps;
    }
    if (c.momentum) {
      T* buf = pack.state2[slot];
      const T b = buf[i] * c.mom + (T(1) * grad) / avg;
      buf[i] = b;
      p[i] = p[i] + c.neg_lr * b;
    } else {
      p[i] = p[i] + (c.neg_lr * grad) / avg;
    }
  }
}

}  // namespace

template <typename T>
void sgd_step(T* const* params, const T* const* grads, T* const* momentum_buffers,
              const TensorList& list, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool init_buffers) {
  SgdScalars<T> c{};
  c.sign = maximize ? T(-1) : T(1), c.neg_lr = static_cast<T>(-lr);
  c.mom = static_cast<T>(momentum), c.one_minus_damp = static_cast<T>(1.0 - dampening);
  c.wd = static_cast<T>(weight_decay), c.decay = weight_decay != 0.0;
  c.momentum = momentum != 0.0, c.init = init_buffers, c.nesterov = nesterov;
  for_each_pack<T>(
      list,
      [&](Pack<T>& pack, int slot, index_t t) {
        pack.param[slot] = params[t], pack.grad[slot] = grads[t];
        pack.state0[slot] = c.momentum ? momentum_buffers[t] : nullptr;
      },
      [&](const Pack<T>& pack, int count, unsigned int blocks) {
        sgd_kernel<T><<<dim3(blocks, count), kThreads>>>(pack, c);
        FASTDL_CUDA_LAUNCHED("sgd_step");
      });
}

template <typename T>
void adam_step(T* const* params, const T* const* grads, T* const* exp_avgs,
               T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const TensorList& list,
               const double* step_size, const double* bias_correction2_sqrt, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
               bool maximize, bool decoupled_weight_decay) {
  AdamScalars<T> c{};
  c.mode = weight_decay == 0.0 ? WeightDecay::none
           : decoupled_weight_decay ? WeightDecay::decoupled
                                    : WeightDecay::coupled;
  c.sign = maximize ? T(-1) : T(1);
  c.w1 = static_cast<T>(1.0 - beta1), c.b2 = static_cast<T>(beta2);
  c.w2 = static_cast<T>(1.0 - beta2), c.eps = static_cast<T>(eps);
  c.wd = static_cast<T>(weight_decay), c.decay = static_cast<T>(1.0 - lr * weight_decay);
  c.lerp_low = (1.0 - beta1) < 0.5, c.amsgrad = amsgrad;
  for_each_pack<T>(
      list,
      [&](Pack<T>& pack, int slot, index_t t) {
        pack.param[slot] = params[t], pack.grad[slot] = grads[t];
        pack.state0[slot] = exp_avgs[t], pack.state1[slot] = exp_avg_sqs[t];
        pack.state2[slot] = amsgrad ? max_exp_avg_sqs[t] : nullptr;
        pack.scalar0[slot] = static_cast<T>(-step_size[t]);
        pack.scalar1[slot] = static_cast<T>(bias_correction2_sqrt[t]);
      },
      [&](const Pack<T>& pack, int count, unsigned int blocks) {
        adam_kernel<T><<<dim3(blocks, count), kThreads>>>(pack, c);
        FASTDL_CUDA_LAUNCHED("adam_step");
      });
}

template <typename T>
void adagrad_step(T* const* params, const T* const* grads, T* const* state_sums,
                  const TensorList& list, const double* clr, double weight_decay, double eps,
                  bool maximize) {
  const T wd = static_cast<T>(weight_decay), eps_t = static_cast<T>(eps);
  for_each_pack<T>(
      list,
      [&](Pack<T>& pack, int slot, index_t t) {
        pack.param[slot] = params[t], pack.grad[slot] = grads[t];
        pack.state0[slot] = state_sums[t];
        pack.scalar0[slot] = static_cast<T>(-clr[t]);
      },
      [&](const Pack<T>& pack, int count, unsigned int blocks) {
        adagrad_kernel<T><<<dim3(blocks, count), kThreads>>>(pack, wd, eps_t, weight_decay != 0.0,
                                                             maximize);
        FASTDL_CUDA_LAUNCHED("adagrad_step");
      });
}

template <typename T>
void rmsprop_step(T* const* params, const T* const* grads, T* const* square_avgs,
                  T* const* grad_avgs, T* const* momentum_buffers, const TensorList& list,
                  double lr, double alpha, double eps, double weight_decay, double momentum,
                  bool centered, bool maximize) {
  RmspropScalars<T> c{};
  c.wd = static_cast<T>(weight_decay), c.eps = static_cast<T>(eps);
  c.alpha = static_cast<T>(alpha), c.one_minus_alpha = static_cast<T>(1.0 - alpha);
  c.mom = static_cast<T>(momentum), c.neg_lr = static_cast<T>(-lr);
  c.decay = weight_decay != 0.0, c.centered = centered, c.momentum = momentum > 0.0;
  c.lerp_low = (1.0 - alpha) < 0.5, c.maximize = maximize;
  for_each_pack<T>(
      list,
      [&](Pack<T>& pack, int slot, index_t t) {
        pack.param[slot] = params[t], pack.grad[slot] = grads[t];
        pack.state0[slot] = square_avgs[t];
        pack.state1[slot] = centered ? grad_avgs[t] : nullptr;
        pack.state2[slot] = c.momentum ? momentum_buffers[t] : nullptr;
      },
      [&](const Pack<T>& pack, int count, unsigned int blocks) {
        rmsprop_kernel<T><<<dim3(blocks, count), kThreads>>>(pack, c);
        FASTDL_CUDA_LAUNCHED("rmsprop_step");
      });
}

#define FASTDL_INSTANTIATE(T)                                                                \
  template void sgd_step<T>(T* const*, const T* const*, T* const*, const TensorList&, double,  \
                            double, double, double, bool, bool, bool);                        \
  template void adam_step<T>(T* const*, const T* const*, T* const*, T* const*, T* const*,      \
                             const TensorList&, const double*, const double*, double, double,  \
                             double, double, double, bool, bool, bool);                       \
  template void adagrad_step<T>(T* const*, const T* const*, T* const*, const TensorList&,      \
                                const double*, double, double, bool);                         \
  template void rmsprop_step<T>(T* const*, const T* const*, T* const*, T* const*, T* const*,   \
                                const TensorList&, double, double, double, double, double,     \
                                bool, bool);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
