// Softmax cross-entropy (https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html),
// stable by the log-sum-exp trick: lse = m + log(sum exp(x - m)), m = max x.
// Rows are independent; sums along a row run in a fixed order in double.
#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"

namespace fastdl::cpu {

template <typename T>
void cross_entropy_forward(const T* logits, const std::int64_t* target, const T* weight, T* nll,
                           T* smooth, double* logsumexp, index_t batch, index_t classes,
                           std::int64_t ignore_index) {
  const index_t C = classes;
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* row = logits + n * C;
    double m = -INFINITY;
    for (index_t c = 0; c < C; ++c) m = std::max(m, static_cast<double>(row[c]));
    double sum = 0.0;
    for (index_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(row[c]) - m);
    const double lse = (std::isinf(m) ? m : m + std::log(sum));
    logsumexp[n] = lse;
    const std::int64_t t = target[n];
    if (t == ignore_index) {
      nll[n] = T(0);
      if (smooth) smooth[n] = T(0);
      continue;
    }
    const double wt = weight ? static_cast<double>(weight[t]) : 1.0;
    nll[n] = static_cast<T>(-wt * (static_cast<double>(row[t]) - lse));
    if (smooth) {
      double total = 0.0;
      for (index_t c = 0; c < C; ++c) {
        const double wc = weight ? static_cast<double>(weight[c]) : 1.0;
        total -= wc * (static_cast<double>(row[c]) - lse);
      }
      smooth[n] = static_cast<T>(total);
    }
  }
}

template <typename T>
void cross_entropy_backward(const T* logits, const std::int64_t* target, const T* weight,
                            const double* logsumexp, const T* grad_nll, const T* grad_smooth,
                            T* grad_logits, index_t batch, index_t classes,
                            std::int64_t ignore_index) {
  const index_t C = classes;
  double weight_sum = static_cast<double>(C);
  if (weight) {
    weight_sum = 0.0;
    for (index_t c = 0; c < C; ++c) weight_sum += weight[c];
  }
#pragma omp parallel for schedule(static) num_threads(threads_for(batch * C))
  for (index_t n = 0; n < batch; ++n) {
    const T* row = logits + n * C;
    T* out = grad_logits + n * C;
    const std::int64_t t = target[n];
    if (t == ignore_index) {
      std::fill(out, out + C, T(0));
      continue;
    }
    const double lse = logsumexp[n];
    const double g_nll = static_cast<double>(grad_nll[n]) * (weight ? weight[t] : 1.0);
    const double g_smooth = grad_smooth ? static_cast<double>(grad_smooth[n]) : 0.0;
    const double scale = g_nll + g_smooth * weight_sum;
    for (index_t c = 0; c < C; ++c) {
      const double p = std::exp(static_cast<double>(row[c]) - lse);
      const double wc = weight ? static_cast<double>(weight[c]) : 1.0;
      const double g = p * scale - g_smooth * wc;
      out[c] = static_cast<T>(c == t ? g - g_nll : g);
    }
  }
}

template void cross_entropy_forward<float>(const float*, const std::int64_t*, const float*, float*, float*, double*, index_t, index_t, std::int64_t);
template void cross_entropy_forward<double>(const double*, const std::int64_t*, const double*, double*, double*, double*, index_t, index_t, std::int64_t);
template void cross_entropy_backward<float>(const float*, const std::int64_t*, const float*, const double*, const float*, const float*, float*, index_t, index_t, std::int64_t);
template void cross_entropy_backward<double>(const double*, const std::int64_t*, const double*, const double*, const double*, const double*, double*, index_t, index_t, std::int64_t);

}  // namespace fastdl::cpu
