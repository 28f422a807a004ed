// Fused multi-tensor optimizer steps (https://pytorch.org/docs/stable/optim.html).
// Every tensor of a parameter group is cut into fixed-size chunks and the chunks are
// shared among the threads: one pass, one parallel region, for the whole model.
// Each element's update uses the same operations, in the same order and precision,
// as torch.optim's single-tensor path, so parameters track PyTorch to rounding.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"

namespace fastdl::cpu {

namespace {

// One chunk of SGD; the options fixed at compile time so each variant is a plain,
// vectorizable loop over restrict pointers.
template <typename T, bool DECAY, bool MOMENTUM, bool INIT>
void sgd_chunk(index_t begin, index_t end, T* __restrict p, const T* __restrict g,
               T* __restrict buf, T sign, T wd, T mom, T one_minus_damp, T neg_lr, bool nesterov) {
#pragma omp simd
  for (index_t i = begin; i < end; ++i) {
    T d = sign * g[i];
    if constexpr (DECAY) d = d + wd * p[i];
    if constexpr (MOMENTUM) {
      const T b = INIT ? d : buf[i] * mom + one_minus_damp * d;
      buf[i] = b;
      d = nesterov ? d + mom * b : b;
    }
    p[i] = p[i] + neg_lr * d;
  }
}

}  // namespace

template <typename T>
void sgd_step(T* const* params, const T* const* grads, T* const* momentum_buffers,
              const TensorList& list, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool init_buffers) {
  const T sign = maximize ? T(-1) : T(1), neg_lr = static_cast<T>(-lr);
  const T mom = static_cast<T>(momentum), one_minus_damp = static_cast<T>(1.0 - dampening);
  const T wd = static_cast<T>(weight_decay);
  const auto run = [&](auto decay) {
    constexpr bool D = decltype(decay)::value;
    for_each_chunk(list, [&](index_t tensor, index_t begin, index_t end) {
      T* p = params[tensor];
      const T* g = grads[tensor];
      T* buf = momentum == 0.0 ? nullptr : momentum_buffers[tensor];
      if (!buf) {
        sgd_chunk<T, D, false, false>(begin, end, p, g, buf, sign, wd, mom, one_minus_damp, neg_lr, nesterov);
      } else if (init_buffers) {
        sgd_chunk<T, D, true, true>(begin, end, p, g, buf, sign, wd, mom, one_minus_damp, neg_lr, nesterov);
      } else {
        sgd_chunk<T, D, true, false>(begin, end, p, g, buf, sign, wd, mom, one_minus_damp, neg_lr, nesterov);
      }
    });
  };
  if (weight_decay != 0.0) run(std::true_type{});
  else run(std::false_type{});
}

namespace {

enum class WeightDecay { none, coupled, decoupled };

template <typename T>
struct AdamScalars {
  T sign, w1, b2, w2, eps, wd, decay, neg_step, bc2;
  bool lerp_low;
};

// One chunk of one tensor. Separate restrict-qualified loops per variant so that the
// compiler vectorizes each (a conditional amsgrad load/store in one loop defeats it).
template <typename T, WeightDecay WD, bool AMSGRAD>
void adam_chunk(index_t begin, index_t end, T* __restrict p, const T* __restrict g,
                T* __restrict m, T* __restrict v, T* __restrict vmax, const AdamScalars<T> c) {
#pragma omp simd
  for (index_t i = begin; i < end; ++i) {
    T grad = c.sign * g[i];
    T param = p[i];
    if constexpr (WD == WeightDecay::decoupled) param = param * c.decay;
    if constexpr (WD == WeightDecay::coupled) grad = grad + c.wd * param;
    // exp_avg.lerp_(grad, 1 - beta1): torch.lerp's two branches
    const T diff = grad - m[i];
    const T mi = c.lerp_low ? m[i] + c.w1 * diff : grad - diff * (T(1) - c.w1);
    m[i] = mi;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const T vi = v[i] * c.b2 + c.w2 * (grad * grad);
    v[i] = vi;
    T second = vi;
    if constexpr (AMSGRAD) {
      second = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = second;
    }
    // denom = (sqrt(v) / sqrt(bias_correction2)) + eps;  param += -step_size * m / denom
    const T denom = std::sqrt(second) / c.bc2 + c.eps;
    p[i] = param + c.neg_step * (mi / denom);
  }
}

template <typename T, WeightDecay WD>
void adam_chunk_dispatch(bool amsgrad, index_t begin, index_t end, T* p, const T* g, T* m, T* v,
                         T* vmax, const AdamScalars<T>& c) {
  if (amsgrad) adam_chunk<T, WD, true>(begin, end, p, g, m, v, vmax, c);
  else adam_chunk<T, WD, false>(begin, end, p, g, m, v, vmax, c);
}

}  // namespace

template <typename T>
void adam_step(T* const* params, const T* const* grads, T* const* exp_avgs,
               T* const* exp_avg_sqs, T* const* max_exp_avg_sqs, const TensorList& list,
               const double* step_size, const double* bias_correction2_sqrt, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
               bool maximize, bool decoupled_weight_decay) {
  const WeightDecay mode = weight_decay == 0.0 ? WeightDecay::none
                           : decoupled_weight_decay ? WeightDecay::decoupled
                                                    : WeightDecay::coupled;
  AdamScalars<T> base{};
  base.sign = maximize ? T(-1) : T(1);
  base.w1 = static_cast<T>(1.0 - beta1), base.b2 = static_cast<T>(beta2);
  base.w2 = static_cast<T>(1.0 - beta2), base.eps = static_cast<T>(eps);
  base.wd = static_cast<T>(weight_decay), base.decay = static_cast<T>(1.0 - lr * weight_decay);
  base.lerp_low = (1.0 - beta1) < 0.5;
  for_each_chunk(list, [&](index_t tensor, index_t begin, index_t end) {
    AdamScalars<T> c = base;
    c.neg_step = static_cast<T>(-step_size[tensor]);
    c.bc2 = static_cast<T>(bias_correction2_sqrt[tensor]);
    T* p = params[tensor];
    const T* g = grads[tensor];
    T* m = exp_avgs[tensor];
    T* v = exp_avg_sqs[tensor];
    T* vmax = amsgrad ? max_exp_avg_sqs[tensor] : nullptr;
    switch (mode) {
      case WeightDecay::none:
        adam_chunk_dispatch<T, WeightDecay::none>(amsgrad, begin, end, p, g, m, v, vmax, c);
        break;
      case WeightDecay::coupled:
        adam_chunk_dispatch<T, WeightDecay::coupled>(amsgrad, begin, end, p, g, m, v, vmax, c);
        break;
      case WeightDecay::decoupled:
        adam_chunk_dispatch<T, WeightDecay::decoupled>(amsgrad, begin, end, p, g, m, v, vmax, c);
        break;
    }
  });
}

template void sgd_step<float>(float* const*, const float* const*, float* const*, const TensorList&, double, double, double, double, bool, bool, bool);
template void sgd_step<double>(double* const*, const double* const*, double* const*, const TensorList&, double, double, double, double, bool, bool, bool);
template void adam_step<float>(float* const*, const float* const*, float* const*, float* const*, float* const*, const TensorList&, const double*, const double*, double, double, double, double, double, bool, bool, bool);
template void adam_step<double>(double* const*, const double* const*, double* const*, double* const*, double* const*, const TensorList&, const double*, const double*, double, double, double, double, double, bool, bool, bool);

}  // namespace fastdl::cpu
