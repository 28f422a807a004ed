// The loss family on the GPU (twins of csrc/cpu/loss.cpp; formulas in kernels.h and loss.h):
// softmax cross-entropy from class indices or class probabilities, softmax / log_softmax,
// nll_loss and the element-wise losses. Row-wise work (a softmax over C classes) is one
// block per row with fixed-order tree sums; element-wise work is one thread per element;
// whole-array sums go through reduce<K> (common.cuh). Sums of exponentials and losses are accumulated in double.
#include <cmath>

#include "cuda/common.cuh"

namespace fastdl::cuda {
namespace {

constexpr int kRowThreads = 256;

inline unsigned int row_blocks(index_t rows) {
  return static_cast<unsigned int>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows));
}

// logsumexp of one row of n values strided by `stride`, computed by the whole block (every
// thread returns it). NaN is skipped by the max and reaches the sum through exp.
template <typename T>
__device__ double row_logsumexp(const T* row, index_t n, index_t stride, double* shared) {
  double m = -INFINITY;
  for (index_t c = threadIdx.x; c < n; c += blockDim.x) m = fmax(m, static_cast<double>(row[c * stride]));
  m = block_fmax(m, shared);
  if (isinf(m)) return m;
  double s = 0.0;
  for (index_t c = threadIdx.x; c < n; c += blockDim.x) s += exp(static_cast<double>(row[c * stride]) - m);
  s = block_sum(s, shared);
  return m + log(s);
}

// ------------------------------------------------------------------ cross-entropy, indices
template <typename T>
__global__ void cross_entropy_forward_kernel(const T* logits, const std::int64_t* target,
                                             const T* weight, T* nll, T* smooth,
                                             double* logsumexp, index_t batch, index_t C,
                                             std::int64_t ignore_index) {
  __shared__ double shared[kRowThreads];
  for (index_t n = blockIdx.x; n < batch; n += gridDim.x) {
    const T* row = logits + n * C;
    const double lse = row_logsumexp(row, C, 1, shared);
    const std::int64_t t = target[n];
    double wx = 0.0, ws = 0.0;
    if (smooth) {  // -sum_c w[c] (x[c] - lse) = lse * sum_c w[c] - sum_c w[c] x[c]
      for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
        const double w = weight ? static_cast<double>(weight[c]) : 1.0;
        wx += w * static_cast<double>(row[c]);
        ws += w;
      }
      wx = block_sum(wx, shared);
      ws = block_sum(ws, shared);
    }
    if (threadIdx.x == 0) {
      logsumexp[n] = lse;
      if (t == ignore_index) {
        nll[n] = T(0);
        if (smooth) smooth[n] = T(0);
      } else {
        const double wt = weight ? static_cast<double>(weight[t]) : 1.0;
        nll[n] = static_cast<T>(-wt * (static_cast<double>(row[t]) - lse));
        if (smooth) smooth[n] = static_cast<T>(lse * ws - wx);
      }
    }
  }
}

// weight_sum[0] = sum of the C class weights (C when there is no weight).
template <typename T>
struct WeightSum {
  const T* weight;
  __device__ void operator()(index_t i, double* acc) const {
    acc[0] += weight ? static_cast<double>(weight[i]) : 1.0;
  }
};

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const std::int64_t* target,
                                              const T* weight, const double* logsumexp,
                                              const T* grad_nll, const T* grad_smooth,
                                              const double* weight_sum, T* grad_logits,
                                              index_t batch, index_t C,
                                              std::int64_t ignore_index) {
  FASTDL_GRID_LOOP(i, batch * C) {
    const index_t n = i / C, c = i % C;
    const std::int64_t t = target[n];
    if (t == ignore_index) {
      grad_logits[i] = T(0);
      continue;
    }
    const double p = exp(static_cast<double>(logits[i]) - logsumexp[n]);
    const double g_nll = static_cast<double>(grad_nll[n]) * (weight ? static_cast<double>(weight[t]) : 1.0);
    const double g_smooth = grad_smooth ? static_cast<double>(grad_smooth[n]) : 0.0;
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    double g = p * (g_nll + g_smooth * weight_sum[0]) - g_smooth * w;
    if (c == t) g -= g_nll;
    grad_logits[i] = static_cast<T>(g);
  }
}

// ------------------------------------------------------------------ cross-entropy, probabilities
// One block per row: q = keep * target + spread (keep = 1 - eps, spread = eps / C, as T),
// loss = lse * sum_c w q - sum_c w q x (0 when sum_c w q is 0), sums in double.
template <typename T>
__global__ void cross_entropy_probabilities_forward_kernel(const T* logits, const T* target,
                                                           const T* weight, T* loss,
                                                           double* logsumexp, double* row_loss,
                                                           index_t batch, index_t C, T keep,
                                                           T spread) {
  __shared__ double shared[kRowThreads];
  for (index_t n = blockIdx.x; n < batch; n += gridDim.x) {
    const T* x = logits + n * C;
    const T* t = target + n * C;
    const double lse = row_logsumexp(x, C, 1, shared);
    double wq = 0.0, wqx = 0.0;
    for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
      const T q = (weight ? weight[c] : T(1)) * (keep * t[c] + spread);
      wq += static_cast<double>(q);
      wqx += static_cast<double>(q) * static_cast<double>(x[c]);
    }
    wq = block_sum(wq, shared);
    wqx = block_sum(wqx, shared);
    if (threadIdx.x == 0) {
      // -sum_c w q (x - lse); a zero-probability row adds nothing even where x = -inf.
      const double value = wq == 0.0 ? 0.0 : lse * wq - wqx;
      logsumexp[n] = lse;
      row_loss[n] = value;
      if (loss) loss[n] = static_cast<T>(value);
    }
  }
}

// grad_logits[n, c] = softmax(x)[n, c] * g[n] * sum_k w q[n, k] - g[n] * w[c] q[n, c].
template <typename T>
__global__ void cross_entropy_probabilities_backward_kernel(const T* logits, const T* target,
                                                            const T* weight,
                                                            const double* logsumexp,
                                                            const T* grad, bool grad_is_scalar,
                                                            T* grad_logits, index_t batch,
                                                            index_t C, T keep, T spread) {
  __shared__ double shared[kRowThreads];
  for (index_t n = blockIdx.x; n < batch; n += gridDim.x) {
    const T* x = logits + n * C;
    const T* t = target + n * C;
    T* out = grad_logits + n * C;
    double wq_sum = 0.0;
    for (index_t c = threadIdx.x; c < C; c += blockDim.x)
      wq_sum += static_cast<double>((weight ? weight[c] : T(1)) * (keep * t[c] + spread));
    wq_sum = block_sum(wq_sum, shared);
    const T g = grad[grad_is_scalar ? 0 : n];
    const T scale = static_cast<T>(static_cast<double>(g) * wq_sum);
    const double lse = logsumexp[n];
    for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
      const T wq = (weight ? weight[c] : T(1)) * (keep * t[c] + spread);
      const T p = static_cast<T>(exp(static_cast<double>(x[c]) - lse));
      out[c] = p * scale - g * wq;
    }
  }
}

// The sum of n doubles (the row losses).
struct DoubleValues {
  const double* x;
  __device__ void operator()(index_t i, double* acc) const { acc[0] += x[i]; }
};

// ------------------------------------------------------------------ softmax, log_softmax
// One block per line (n, k) of `dim` values strided by `inner`.
template <typename T>
__global__ void softmax_forward_kernel(const T* input, T* output, index_t outer, index_t dim,
                                       index_t inner, bool log) {
  __shared__ double shared[kRowThreads];
  for (index_t line = blockIdx.x; line < outer * inner; line += gridDim.x) {
    const index_t n = line / inner, k = line % inner;
    const T* x = input + n * dim * inner + k;
    T* y = output + n * dim * inner + k;
    const double lse = row_logsumexp(x, dim, inner, shared);
    for (index_t c = threadIdx.x; c < dim; c += blockDim.x) {
      const double v = static_cast<double>(x[c * inner]) - lse;
      y[c * inner] = static_cast<T>(log ? v : exp(v));
    }
  }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* output, const T* grad_output, T* grad_input,
                                        index_t outer, index_t dim, index_t inner, bool log) {
  __shared__ double shared[kRowThreads];
  for (index_t line = blockIdx.x; line < outer * inner; line += gridDim.x) {
    const index_t n = line / inner, k = line % inner, base = n * dim * inner + k;
    const T* y = output + base;
    const T* g = grad_output + base;
    T* gx = grad_input + base;
    double s = 0.0;  // log: sum(g); softmax: sum(g * y)
    for (index_t c = threadIdx.x; c < dim; c += blockDim.x)
      s += log ? static_cast<double>(g[c * inner]) : static_cast<double>(g[c * inner]) * static_cast<double>(y[c * inner]);
    s = block_sum(s, shared);
    for (index_t c = threadIdx.x; c < dim; c += blockDim.x) {
      const double yc = static_cast<double>(y[c * inner]), gc = static_cast<double>(g[c * inner]);
      gx[c * inner] = static_cast<T>(log ? gc - exp(yc) * s : yc * (gc - s));
    }
  }
}

// ------------------------------------------------------------------ nll_loss
template <typename T>
struct NllTerms {
  const T* input;
  const std::int64_t* target;
  const T* weight;
  T* loss;
  index_t classes, inner;
  std::int64_t ignore_index;
  __device__ void operator()(index_t p, double* acc) const {
    const std::int64_t t = target[p];
    T value = T(0);
    if (t != ignore_index) {
      const index_t n = p / inner, k = p % inner;
      const T w = weight ? weight[t] : T(1);
      value = -w * input[(n * classes + t) * inner + k];
      acc[1] += static_cast<double>(w);
    }
    if (loss) loss[p] = value;
    acc[0] += static_cast<double>(value);
  }
};

template <typename T>
__global__ void nll_loss_backward_kernel(const std::int64_t* target, const T* weight,
                                         const T* grad, bool grad_is_scalar, T* grad_input,
                                         index_t outer, index_t classes, index_t inner,
                                         std::int64_t ignore_index) {
  FASTDL_GRID_LOOP(i, outer * classes * inner) {
    const index_t k = i % inner, c = (i / inner) % classes, n = i / (inner * classes);
    const index_t p = n * inner + k;
    const std::int64_t t = target[p];
    grad_input[i] = (t != ignore_index && t == c)
                        ? -(weight ? weight[t] : T(1)) * grad[grad_is_scalar ? 0 : p]
                        : T(0);
  }
}

// ------------------------------------------------------------------ element-wise losses
template <typename T>
__device__ T log_sigmoid(T x) {
  return fmin(x, T(0)) - log1p(exp(-fabs(x)));
}

template <typename T>
__device__ T sigmoid(T x) {
  const T e = exp(-fabs(x));
  const T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// value, d/dx and d/dy of one term (before the upstream gradient), as loss.cpp's Term.
template <typename T>
__device__ T term_value(Loss kind, T x, T y, T w, T p) {
  switch (kind) {
    case Loss::mse: return w * ((x - y) * (x - y));
    case Loss::l1: return w * fabs(x - y);
    case Loss::bce: {
      const T log_x = fmax(log(x), T(-100));
      const T log_1mx = fmax(log(T(1) - x), T(-100));
      return -w * (y * log_x + (T(1) - y) * log_1mx);
    }
    case Loss::bce_with_logits: {
      const T log_weight = (p - T(1)) * y + T(1);
      return w * ((T(1) - y) * x - log_weight * log_sigmoid(x));
    }
    case Loss::kl_div: return (y == T(0) ? T(0) : y * log(y)) - y * x;
    case Loss::kl_div_log_target: return exp(y) * (y - x);
  }
  return T(0);
}

template <typename T>
__device__ T sign_of(T d) {
  return static_cast<T>(d > T(0)) - static_cast<T>(d < T(0));
}

template <typename T>
__device__ T term_dx(Loss kind, T x, T y, T w, T p) {
  switch (kind) {
    case Loss::mse: return w * (T(2) * (x - y));
    case Loss::l1: return w * sign_of(x - y);
    case Loss::bce: return w * (x - y) / fmax((T(1) - x) * x, T(1e-12f));
    case Loss::bce_with_logits: {
      const T log_weight = (p - T(1)) * y + T(1);
      return w * (log_weight * sigmoid(x) - p * y);
    }
    case Loss::kl_div: return -y;
    case Loss::kl_div_log_target: return -exp(y);
  }
  return T(0);
}

template <typename T>
__device__ T term_dy(Loss kind, T x, T y, T w, T p) {
  switch (kind) {
    case Loss::mse: return w * (T(-2) * (x - y));
    case Loss::l1: return -w * sign_of(x - y);
    case Loss::bce: return w * (log(T(1) - x) - log(x));
    case Loss::bce_with_logits: return w * (-x - (p - T(1)) * log_sigmoid(x));
    case Loss::kl_div: return log(y) + T(1) - x;
    case Loss::kl_div_log_target: return exp(y) * (y - x + T(1));
  }
  return T(0);
}

template <typename T>
struct ElementwiseTerms {
  Loss kind;
  const T *x, *y, *w, *p;
  index_t wp, pp;
  T* loss;
  int* out_of_range;
  __device__ void operator()(index_t i, double* acc) const {
    const T xi = x[i];
    const T value = term_value(kind, xi, y[i], w ? w[i % wp] : T(1), p ? p[i % pp] : T(1));
    if (kind == Loss::bce && !(xi >= T(0) && xi <= T(1))) atomicOr(out_of_range, 1);
    if (loss) loss[i] = value;
    acc[0] += static_cast<double>(value);
  }
};

template <typename T>
__global__ void elementwise_loss_backward_kernel(Loss kind, const T* x, const T* y, const T* w,
                                                 index_t wp, const T* p, index_t pp,
                                                 const T* grad, bool grad_is_scalar, T* gx,
                                                 T* gy, index_t n) {
  FASTDL_GRID_LOOP(i, n) {
    const T wi = w ? w[i % wp] : T(1), pi = p ? p[i % pp] : T(1);
    const T g = grad[grad_is_scalar ? 0 : i];
    if (gx) gx[i] = term_dx(kind, x[i], y[i], wi, pi) * g;
    if (gy) gy[i] = term_dy(kind, x[i], y[i], wi, pi) * g;
  }
}

}  // namespace

template <typename T>
void cross_entropy_forward(const T* logits, const std::int64_t* target, const T* weight, T* nll,
                           T* smooth, double* logsumexp, index_t batch, index_t classes,
                           std::int64_t ignore_index) {
  if (batch <= 0) return;
  cross_entropy_forward_kernel<T><<<row_blocks(batch), kRowThreads>>>(
      logits, target, weight, nll, smooth, logsumexp, batch, classes, ignore_index);
  FASTDL_CUDA_LAUNCHED("cross_entropy_forward");
}

template <typename T>
void cross_entropy_backward(const T* logits, const std::int64_t* target, const T* weight,
                            const double* logsumexp, const T* grad_nll, const T* grad_smooth,
                            T* grad_logits, index_t batch, index_t classes,
                            std::int64_t ignore_index) {
  if (batch <= 0) return;
  // A result slot of the reduction scratch, past the partial sums reduce() uses.
  double* weight_sum = reduction_scratch() + kReduceMaxComponents * kReduceMaxBlocks;
  reduce<1>(WeightSum<T>{weight}, classes, weight_sum, "kernel cross_entropy_backward (weight sum)");
  cross_entropy_backward_kernel<T><<<blocks_for(batch * classes), kThreads>>>(
      logits, target, weight, logsumexp, grad_nll, grad_smooth, weight_sum, grad_logits, batch,
      classes, ignore_index);
  FASTDL_CUDA_LAUNCHED("cross_entropy_backward");
}

template <typename T>
void cross_entropy_probabilities_forward(const T* logits, const T* target, const T* weight,
                                         T* loss, double* logsumexp, double* sums, index_t batch,
                                         index_t classes, double label_smoothing) {
  const T keep = static_cast<T>(1.0 - label_smoothing);
  const T spread = static_cast<T>(label_smoothing / static_cast<double>(classes));
  DeviceScratch<double> row_loss(batch);
  if (batch > 0) {
    cross_entropy_probabilities_forward_kernel<T><<<row_blocks(batch), kRowThreads>>>(
        logits, target, weight, loss, logsumexp, row_loss.get(), batch, classes, keep, spread);
    FASTDL_CUDA_LAUNCHED("cross_entropy_probabilities_forward");
  }
  reduce<1>(DoubleValues{row_loss.get()}, batch, sums,
            "kernel cross_entropy_probabilities_forward (sum)");
}

template <typename T>
void cross_entropy_probabilities_backward(const T* logits, const T* target, const T* weight,
                                          const double* logsumexp, const T* grad,
                                          bool grad_is_scalar, T* grad_logits, index_t batch,
                                          index_t classes, double label_smoothing) {
  if (batch <= 0 || classes <= 0) return;
  const T keep = static_cast<T>(1.0 - label_smoothing);
  const T spread = static_cast<T>(label_smoothing / static_cast<double>(classes));
  cross_entropy_probabilities_backward_kernel<T><<<row_blocks(batch), kRowThreads>>>(
      logits, target, weight, logsumexp, grad, grad_is_scalar, grad_logits, batch, classes, keep,
      spread);
  FASTDL_CUDA_LAUNCHED("cross_entropy_probabilities_backward");
}

template <typename T>
void softmax_forward(const T* input, T* output, index_t outer, index_t dim, index_t inner,
                     bool log) {
  if (outer * dim * inner <= 0) return;
  softmax_forward_kernel<T><<<row_blocks(outer * inner), kRowThreads>>>(input, output, outer, dim,
                                                                       inner, log);
  FASTDL_CUDA_LAUNCHED("softmax_forward");
}

template <typename T>
void softmax_backward(const T* output, const T* grad_output, T* grad_input, index_t outer,
                      index_t dim, index_t inner, bool log) {
  if (outer * dim * inner <= 0) return;
  softmax_backward_kernel<T><<<row_blocks(outer * inner), kRowThreads>>>(
      output, grad_output, grad_input, outer, dim, inner, log);
  FASTDL_CUDA_LAUNCHED("softmax_backward");
}

template <typename T>
void nll_loss_forward(const T* input, const std::int64_t* target, const T* weight, T* loss,
                      double* sums, index_t outer, index_t classes, index_t inner,
                      std::int64_t ignore_index) {
  reduce<2>(NllTerms<T>{input, target, weight, loss, classes, inner, ignore_index}, outer * inner,
            sums, "kernel nll_loss_forward");
}

template <typename T>
void nll_loss_backward(const std::int64_t* target, const T* weight, const T* grad,
                       bool grad_is_scalar, T* grad_input, index_t outer, index_t classes,
                       index_t inner, std::int64_t ignore_index) {
  const index_t n = outer * classes * inner;
  if (n <= 0) return;
  nll_loss_backward_kernel<T><<<blocks_for(n), kThreads>>>(target, weight, grad, grad_is_scalar,
                                                          grad_input, outer, classes, inner,
                                                          ignore_index);
  FASTDL_CUDA_LAUNCHED("nll_loss_backward");
}

template <typename T>
void elementwise_loss_forward(Loss kind, const T* input, const T* target, Broadcast weight,
                              Broadcast pos_weight, T* loss, double* sums, index_t n,
                              int* out_of_range) {
  ElementwiseTerms<T> terms{kind, input, target, static_cast<const T*>(weight.data),
                            static_cast<const T*>(pos_weight.data),
                            weight.data ? weight.period : 1, pos_weight.data ? pos_weight.period : 1,
                            loss, out_of_range};
  reduce<1>(terms, n, sums, "kernel elementwise_loss_forward");
}

template <typename T>
void elementwise_loss_backward(Loss kind, const T* input, const T* target, Broadcast weight,
                               Broadcast pos_weight, const T* grad, bool grad_is_scalar,
                               T* grad_input, T* grad_target, index_t n) {
  if (n <= 0 || (!grad_input && !grad_target)) return;
  elementwise_loss_backward_kernel<T><<<blocks_for(n), kThreads>>>(
      kind, input, target, static_cast<const T*>(weight.data), weight.data ? weight.period : 1,
      static_cast<const T*>(pos_weight.data), pos_weight.data ? pos_weight.period : 1, grad,
      grad_is_scalar, grad_input, grad_target, n);
  FASTDL_CUDA_LAUNCHED("elementwise_loss_backward");
}

#define FASTDL_INSTANTIATE(T)                                                                    \
  template void cross_entropy_forward<T>(const T*, const std::int64_t*, const T*, T*, T*,         \
                                         double*, index_t, index_t, std::int64_t);                \
  template void cross_entropy_backward<T>(const T*, const std::int64_t*, const T*, const double*, \
                                          const T*, const T*, T*, index_t, index_t,               \
                                          std::int64_t);                                          \
  template void softmax_forward<T>(const T*, T*, index_t, index_t, index_t, bool);                \
  template void softmax_backward<T>(const T*, const T*, T*, index_t, index_t, index_t, bool);     \
  template void nll_loss_forward<T>(const T*, const std::int64_t*, const T*, T*, double*,         \
                                    index_t, index_t, index_t, std::int64_t);                     \
  template void nll_loss_backward<T>(const std::int64_t*, const T*, const T*, bool, T*, index_t,  \
                                     index_t, index_t, std::int64_t);                             \
  template void elementwise_loss_forward<T>(Loss, const T*, const T*, Broadcast, Broadcast, T*,   \
                                            double*, index_t, int*);                              \
  template void elementwise_loss_backward<T>(Loss, const T*, const T*, Broadcast, Broadcast,      \
                                             const T*, bool, T*, T*, index_t);                              \
  template void cross_entropy_probabilities_forward<T>(const T*, const T*, const T*, T*, double*, \
                                                       double*, index_t, index_t, double);       \
  template void cross_entropy_probabilities_backward<T>(const T*, const T*, const T*,            \
                                                        const double*, const T*, bool, T*,       \
                                                        index_t, index_t, double);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cuda
