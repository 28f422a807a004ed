// Batch normalization (https://pytorch.org/docs/stable/generated/torch.nn.functional.batch_norm.html).
//
// Threads own whole channels, so every per-channel sum is computed by one thread in an
// order fixed by the shape: for each n in order, the run x[n, c, :] is summed with
// 16 interleaved double lanes combined pairwise (vectorizes), and that partial is added
// to the channel's total. Runs shorter than kShortRun are summed element by element
// instead. Either way the bits do not depend on the thread count.
//
// Long runs (S >= kShortRun, e.g. 32x32 images) are walked channel by channel: the
// channel's N runs are read once for the sums and, still in cache, once more for the
// output. Short runs (a (N, C) or (N, C, small L) input) are walked row by row, each
// thread owning a block of channels, so memory is read in order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/norm.h"

namespace fastdl::cpu {

namespace {

constexpr index_t kShortRun = 16;
constexpr int kLanes = 16;

inline double combine_lanes(const double* l) {
  return (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) +
         (((l[8] + l[9]) + (l[10] + l[11])) + ((l[12] + l[13]) + (l[14] + l[15])));
}

// sum (x - shift) and sum (x - shift)^2 over one run. Shifting by a sample of the
// channel keeps the one-pass variance free of cancellation when |mean| >> std.
// `next` (or null): the run read after this one, prefetched a run ahead. A channel's runs
// lie C*S elements apart, and each is a page or so: the hardware prefetchers do not cross
// pages, so without this every run started with cache misses.
template <int write = 0, typename T>
inline void prefetch_line(const T* next, index_t i) {
  if (next) {
    __builtin_prefetch(next + i, write);
    if constexpr (sizeof(T) * kLanes > 64) __builtin_prefetch(next + i + 64 / sizeof(T), write);
  }
}

// The elementwise passes in blocks of kLanes, prefetching the next run's output lines for
// writing (`next`, or null) as they go.
template <typename T, typename F>
inline void blocks_prefetching(index_t n, T* next, F&& block) {
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    prefetch_line<1>(next, i);
    block(i, i + kLanes);
  }
  block(i, n);
}

template <typename T>
inline void run_moments(const T* x, index_t n, double shift, double& sum, double& sum_sq,
                        const T* next = nullptr) {
  double s[kLanes] = {}, q[kLanes] = {};
  index_t i = 0;
  // simd on the lane loop: left to itself GCC vectorized this only for double input.
  for (; i + kLanes <= n; i += kLanes) {
    prefetch_line(next, i);
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) {
      const double d = static_cast<double>(x[i + k]) - shift;
      s[k] += d;
      q[k] += d * d;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const double d = static_cast<double>(x[i]) - shift;
    s[k] += d;
    q[k] += d * d;
  }
  sum = combine_lanes(s);
  sum_sq = combine_lanes(q);
}

// sum gy and sum gy * (x - mean) over one run.
template <typename T>
inline void run_grad_sums(const T* x, const T* gy, index_t n, double mean, double& sum,
                          double& dot, const T* next_x = nullptr, const T* next_gy = nullptr) {
  double s[kLanes] = {}, d[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    prefetch_line(next_x, i);
    prefetch_line(next_gy, i);
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) {
      const double g = static_cast<double>(gy[i + k]);
      s[k] += g;
      d[k] += g * (static_cast<double>(x[i + k]) - mean);
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const double g = static_cast<double>(gy[i]);
    s[k] += g;
    d[k] += g * (static_cast<double>(x[i]) - mean);
  }
  sum = combine_lanes(s);
  dot = combine_lanes(d);
}

// y = (x - mean) * alpha + beta over one run, in T: the statistics are kept in double,
// the elementwise passes run at T's vector width (twice the lanes for float). x - mean
// first, so a large mean cancels exactly before the scaling.
template <typename T>
inline void run_normalize(const T* __restrict x, T* __restrict y, index_t n, double mean,
                          double alpha, double beta, T* next = nullptr) {
  const T m = static_cast<T>(mean), a = static_cast<T>(alpha), b = static_cast<T>(beta);
  blocks_prefetching(n, next, [&](index_t i0, index_t i1) {
#pragma omp simd
    for (index_t i = i0; i < i1; ++i) y[i] = (x[i] - m) * a + b;
  });
}

// gx = (gy - grad_mean - (x - mean) * k) * alpha over one run (k = 0, grad_mean = 0 in eval).
template <typename T>
inline void run_grad_input(const T* __restrict x, const T* __restrict gy, T* __restrict gx,
                           index_t n, double mean, double grad_mean, double k, double alpha,
                           T* next = nullptr) {
  const T m = static_cast<T>(mean), gm = static_cast<T>(grad_mean), kk = static_cast<T>(k),
          a = static_cast<T>(alpha);
  blocks_prefetching(n, next, [&](index_t i0, index_t i1) {
#pragma omp simd
    for (index_t i = i0; i < i1; ++i) gx[i] = (gy[i] - gm - (x[i] - m) * kk) * a;
  });
}

// The batch statistics of one channel from its shifted sums; running stats updated.
template <typename T>
inline void finish_statistics(index_t c, double shift, double sum, double sum_sq, index_t count,
                              double momentum, double eps, T* running_mean, T* running_var,
                              double* save_mean, double* save_invstd) {
  const double m = static_cast<double>(count);
  const double centered_mean = sum / m;
  const double var = std::max(sum_sq / m - centered_mean * centered_mean, 0.0);
  const double mean = shift + centered_mean;
  save_mean[c] = mean;
  save_invstd[c] = 1.0 / std::sqrt(var + eps);
  if (running_mean)
    running_mean[c] = static_cast<T>((1.0 - momentum) * running_mean[c] + momentum * mean);
  if (running_var)
    running_var[c] = static_cast<T>((1.0 - momentum) * running_var[c] +
                                    momentum * var * m / (m - 1.0));
}

// The block of channels thread `t` of `team` owns in the short-run layout.
inline void channel_block(index_t channels, index_t& c0, index_t& c1) {
  const index_t t = omp_get_thread_num(), team = omp_get_num_threads();
  c0 = channels * t / team;
  c1 = channels * (t + 1) / team;
}

}  // namespace

template <typename T>
void batch_norm_forward(const T* input, const T* weight, const T* bias, T* output,
                        T* running_mean, T* running_var, double* save_mean,
                        double* save_invstd, bool training, double momentum, double eps,
                        const BatchNormShape& s) {
  const index_t N = s.batch, C = s.channels, S = s.spatial, CS = C * S, count = N * S;
  const int threads = threads_for(N * CS);
  auto alpha_of = [&](index_t c) { return save_invstd[c] * (weight ? double(weight[c]) : 1.0); };
  auto beta_of = [&](index_t c) { return bias ? double(bias[c]) : 0.0; };
  auto eval_statistics = [&](index_t c) {
    save_mean[c] = static_cast<double>(running_mean[c]);
    save_invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
  };

  if (S >= kShortRun) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t c = 0; c < C; ++c) {
      if (training) {
        const double shift = count > 0 ? static_cast<double>(input[c * S]) : 0.0;
        double sum = 0, sum_sq = 0;
        for (index_t n = 0; n < N; ++n) {
          double run_sum, run_sq;
          run_moments(input + n * CS + c * S, S, shift, run_sum, run_sq,
                      n + 1 < N ? input + (n + 1) * CS + c * S : nullptr);
          sum += run_sum;
          sum_sq += run_sq;
        }
        finish_statistics(c, shift, sum, sum_sq, count, momentum, eps, running_mean,
                          running_var, save_mean, save_invstd);
      } else {
        eval_statistics(c);
      }
      const double mean = save_mean[c], alpha = alpha_of(c), beta = beta_of(c);
      for (index_t n = 0; n < N; ++n)
        run_normalize(input + n * CS + c * S, output + n * CS + c * S, S, mean, alpha, beta,
                      n + 1 < N ? output + (n + 1) * CS + c * S : nullptr);
    }
    return;
  }

  // Short runs: sums accumulate element by element, row after row.
  std::vector<double> shift(C, 0.0), sum(C, 0.0), sum_sq(C, 0.0), alpha(C);
#pragma omp parallel num_threads(threads)
  {
    index_t c0, c1;
    channel_block(C, c0, c1);
    if (training) {
      if (count > 0)
        for (index_t c = c0; c < c1; ++c) shift[c] = static_cast<double>(input[c * S]);
      for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
          const T* x = input + n * CS + c * S;
          for (index_t i = 0; i < S; ++i) {
            const double d = static_cast<double>(x[i]) - shift[c];
            sum[c] += d;
            sum_sq[c] += d * d;
          }
        }
      for (index_t c = c0; c < c1; ++c)
        finish_statistics(c, shift[c], sum[c], sum_sq[c], count, momentum, eps, running_mean,
                          running_var, save_mean, save_invstd);
    } else {
      for (index_t c = c0; c < c1; ++c) eval_statistics(c);
    }
    for (index_t c = c0; c < c1; ++c) alpha[c] = alpha_of(c);
    for (index_t n = 0; n < N; ++n)
      for (index_t c = c0; c < c1; ++c)
        run_normalize(input + n * CS + c * S, output + n * CS + c * S, S, save_mean[c],
                      alpha[c], beta_of(c));
  }
}

template <typename T>
void batch_norm_backward(const T* input, const T* grad_output, const double* save_mean,
                         const double* save_invstd, const T* weight, T* grad_input,
                         T* grad_weight, T* grad_bias, bool training, const BatchNormShape& s) {
  const index_t N = s.batch, C = s.channels, S = s.spatial, CS = C * S, count = N * S;
  const int threads = threads_for(2 * N * CS);
  const bool need_sums = grad_weight || grad_bias || (training && grad_input);
  const double m = static_cast<double>(count);
  // Per channel, from its two sums: the parameter gradients and grad_input's coefficients.
  auto finish = [&](index_t c, double sum, double dot, double& grad_mean, double& k,
                    double& alpha) {
    const double invstd = save_invstd[c];
    if (grad_bias) grad_bias[c] += static_cast<T>(sum);
    if (grad_weight) grad_weight[c] += static_cast<T>(dot * invstd);
    grad_mean = training ? sum / m : 0.0;
    k = training ? dot * invstd * invstd / m : 0.0;
    alpha = invstd * (weight ? static_cast<double>(weight[c]) : 1.0);
  };

  if (S >= kShortRun) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (index_t c = 0; c < C; ++c) {
      const double mean = save_mean[c];
      double sum = 0, dot = 0;
      if (need_sums)
        for (index_t n = 0; n < N; ++n) {
          double run_sum, run_dot;
          const bool more = n + 1 < N;
          run_grad_sums(input + n * CS + c * S, grad_output + n * CS + c * S, S, mean, run_sum,
                        run_dot, more ? input + (n + 1) * CS + c * S : nullptr,
                        more ? grad_output + (n + 1) * CS + c * S : nullptr);
          sum += run_sum;
          dot += run_dot;
        }
      double grad_mean, k, alpha;
      finish(c, sum, dot, grad_mean, k, alpha);
      if (grad_input)
        for (index_t n = 0; n < N; ++n) {
          const index_t at = n * CS + c * S;
          run_grad_input(input + at, grad_output + at, grad_input + at, S, mean, grad_mean, k,
                         alpha, n + 1 < N ? grad_input + at + CS : nullptr);
        }
    }
    return;
  }

  std::vector<double> sum(C, 0.0), dot(C, 0.0), grad_mean(C), k(C), alpha(C);
#pragma omp parallel num_threads(threads)
  {
    index_t c0, c1;
    channel_block(C, c0, c1);
    if (need_sums)
      for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
          const index_t at = n * CS + c * S;
          const double mean = save_mean[c];
          for (index_t i = 0; i < S; ++i) {
            const double g = static_cast<double>(grad_output[at + i]);
            sum[c] += g;
            dot[c] += g * (static_cast<double>(input[at + i]) - mean);
          }
        }
    for (index_t c = c0; c < c1; ++c) finish(c, sum[c], dot[c], grad_mean[c], k[c], alpha[c]);
    if (grad_input)
      for (index_t n = 0; n < N; ++n)
        for (index_t c = c0; c < c1; ++c) {
          const index_t at = n * CS + c * S;
          run_grad_input(input + at, grad_output + at, grad_input + at, S, save_mean[c],
                         grad_mean[c], k[c], alpha[c]);
        }
  }
}

template void batch_norm_forward<float>(const float*, const float*, const float*, float*, float*,
                                        float*, double*, double*, bool, double, double,
                                        const BatchNormShape&);
template void batch_norm_forward<double>(const double*, const double*, const double*, double*,
                                         double*, double*, double*, double*, bool, double, double,
                                         const BatchNormShape&);
template void batch_norm_backward<float>(const float*, const float*, const double*, const double*,
                                         const float*, float*, float*, float*, bool,
                                         const BatchNormShape&);
template void batch_norm_backward<double>(const double*, const double*, const double*,
                                          const double*, const double*, double*, double*, double*,
                                          bool, const BatchNormShape&);

}  // namespace fastdl::cpu
