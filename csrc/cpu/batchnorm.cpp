// Batch normalization (https://pytorch.org/docs/stable/generated/torch.nn.functional.batch_norm.html).
//
// Threads own whole channels, so every per-channel sum is computed by one thread in an
// order fixed by the shape: for each n in order, the run x[n, c, :] is summed with
// 16 interleaved double lanes combined pairwise (vectorizes), and that partial is added
// to the channel's total. Runs shorter than kShortRun are summed element by element
// instead. Either way the bits do not depend on the thread count.
//
// Memory is walked in order, n outer, over a chunk of the thread's channels at a time:
// first the sums (the statistics, or the gradient's two sums), then the element-wise
// pass, which finds the chunk's input still in cache. (Walking one channel at a time,
// its N runs lie C*S elements apart: for 32x32 images 4 KiB runs 256 KiB apart, which all
// fall in the same L2 sets, so the second pass read them from L3 at a third of the
// speed.)
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/norm.h"

namespace fastdl::cpu {

namespace {

constexpr index_t kShortRun = 16;
constexpr int kLanes = 16;
// Input bytes a thread's chunk may hold between its two passes (x, and gy in the backward).
constexpr std::size_t kChunkBytes = std::size_t(4) << 20;

inline double combine_lanes(const double* l) {
  return (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) +
         (((l[8] + l[9]) + (l[10] + l[11])) + ((l[12] + l[13]) + (l[14] + l[15])));
}

// sum (x - shift) and sum (x - shift)^2 over one run. Shifting by a sample of the
// channel keeps the one-pass variance free of cancellation when |mean| >> std.
template <typename T>
inline void run_moments(const T* x, index_t n, double shift, double& sum, double& sum_sq) {
  double s[kLanes] = {}, q[kLanes] = {};
  index_t i = 0;
  // simd on the lane loop: left to itself GCC vectorized this only for double input.
  for (; i + kLanes <= n; i += kLanes) {
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
                          double& dot) {
  double s[kLanes] = {}, d[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
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

// Calls body(c0, c1, n) for each chunk [c0, c1) of the channels thread `t` of `team` owns
// and each n, chunk by chunk: prepare(c0, c1) before a chunk's first n, and then
// finish(c0, c1) after its last. A chunk holds at most kChunkBytes of the `tensors`
// inputs read per element (at least one channel).
template <typename T, typename Prepare, typename Body, typename Finish>
inline void for_channel_chunks(index_t N, index_t C, index_t S, int tensors, Prepare&& prepare,
                               Body&& body, Finish&& finish) {
  const index_t t = omp_get_thread_num(), team = omp_get_num_threads();
  const index_t first = C * t / team, last = C * (t + 1) / team;
  const std::size_t channel_bytes = static_cast<std::size_t>(N * S) * sizeof(T) * tensors;
  const index_t step =
      std::max<index_t>(1, static_cast<index_t>(kChunkBytes / std::max<std::size_t>(channel_bytes, 1)));
  for (index_t c0 = first; c0 < last; c0 += step) {
    const index_t c1 = std::min(last, c0 + step);
    prepare(c0, c1);
    for (index_t n = 0; n < N; ++n) body(c0, c1, n);
    finish(c0, c1);
  }
}

}  // namespace

template <typename T>
void batch_norm_forward(const T* input, const T* weight, const T* bias, T* output,
                        T* running_mean, T* running_var, double* save_mean,
                        double* save_invstd, bool training, double momentum, double eps,
                        const BatchNormShape& s) {
  const index_t N = s.batch, C = s.channels, S = s.spatial, CS = C * S, count = N * S;
  const int threads = threads_for(N * CS);
  std::vector<double> shift(C, 0.0), sum(C, 0.0), sum_sq(C, 0.0);

  // Pass 1, the statistics of run (n, c).
  auto moments = [&](index_t c0, index_t c1, index_t n) {
    if (!training) return;
    for (index_t c = c0; c < c1; ++c) {
      const T* x = input + n * CS + c * S;
      if (S >= kShortRun) {
        double run_sum, run_sq;
        run_moments(x, S, shift[c], run_sum, run_sq);
        sum[c] += run_sum;
        sum_sq[c] += run_sq;
      } else {
        for (index_t i = 0; i < S; ++i) {
          const double d = static_cast<double>(x[i]) - shift[c];
          sum[c] += d;
          sum_sq[c] += d * d;
        }
      }
    }
  };
  auto prepare = [&](index_t c0, index_t c1) {
    if (training && count > 0)
      for (index_t c = c0; c < c1; ++c) shift[c] = static_cast<double>(input[c * S]);
  };
  // Pass 2: y = (x - mean) * alpha + beta, in T (the statistics are kept in double, the
  // element-wise pass runs at T's vector width). x - mean first, so a large mean cancels
  // exactly before the scaling.
  auto normalize = [&](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      if (training) {
        finish_statistics(c, shift[c], sum[c], sum_sq[c], count, momentum, eps, running_mean,
                          running_var, save_mean, save_invstd);
      } else {
        save_mean[c] = static_cast<double>(running_mean[c]);
        save_invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      }
    }
    for (index_t n = 0; n < N; ++n)
      for (index_t c = c0; c < c1; ++c) {
        const double alpha = save_invstd[c] * (weight ? double(weight[c]) : 1.0);
        const T m = static_cast<T>(save_mean[c]), a = static_cast<T>(alpha),
                b = static_cast<T>(bias ? double(bias[c]) : 0.0);
        const T* __restrict x = input + n * CS + c * S;
        T* __restrict y = output + n * CS + c * S;
#pragma omp simd
        for (index_t i = 0; i < S; ++i) y[i] = (x[i] - m) * a + b;
      }
  };
#pragma omp parallel num_threads(threads)
  for_channel_chunks<T>(N, C, S, 1, prepare, moments, normalize);
}

template <typename T>
void batch_norm_backward(const T* input, const T* grad_output, const double* save_mean,
                         const double* save_invstd, const T* weight, T* grad_input,
                         T* grad_weight, T* grad_bias, bool training, const BatchNormShape& s) {
  const index_t N = s.batch, C = s.channels, S = s.spatial, CS = C * S, count = N * S;
  const int threads = threads_for(2 * N * CS);
  const bool need_sums = grad_weight || grad_bias || (training && grad_input);
  const double m = static_cast<double>(count);
  std::vector<double> sum(C, 0.0), dot(C, 0.0);

  // Pass 1: sum gy and sum gy * (x - mean) over run (n, c).
  auto sums = [&](index_t c0, index_t c1, index_t n) {
    if (!need_sums) return;
    for (index_t c = c0; c < c1; ++c) {
      const index_t at = n * CS + c * S;
      const double mean = save_mean[c];
      if (S >= kShortRun) {
        double run_sum, run_dot;
        run_grad_sums(input + at, grad_output + at, S, mean, run_sum, run_dot);
        sum[c] += run_sum;
        dot[c] += run_dot;
      } else {
        for (index_t i = 0; i < S; ++i) {
          const double g = static_cast<double>(grad_output[at + i]);
          sum[c] += g;
          dot[c] += g * (static_cast<double>(input[at + i]) - mean);
        }
      }
    }
  };
  // The parameter gradients, then pass 2:
  // gx = (gy - grad_mean - (x - mean) * k) * alpha (k = 0, grad_mean = 0 in eval).
  auto grad_input_pass = [&](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      if (grad_bias) grad_bias[c] += static_cast<T>(sum[c]);
      if (grad_weight) grad_weight[c] += static_cast<T>(dot[c] * save_invstd[c]);
    }
    if (!grad_input) return;
    for (index_t n = 0; n < N; ++n)
      for (index_t c = c0; c < c1; ++c) {
        const double invstd = save_invstd[c];
        const T mean = static_cast<T>(save_mean[c]);
        const T grad_mean = static_cast<T>(training ? sum[c] / m : 0.0);
        const T k = static_cast<T>(training ? dot[c] * invstd * invstd / m : 0.0);
        const T alpha = static_cast<T>(invstd * (weight ? static_cast<double>(weight[c]) : 1.0));
        const index_t at = n * CS + c * S;
        const T* __restrict x = input + at;
        const T* __restrict gy = grad_output + at;
        T* __restrict gx = grad_input + at;
#pragma omp simd
        for (index_t i = 0; i < S; ++i) gx[i] = (gy[i] - grad_mean - (x[i] - mean) * k) * alpha;
      }
  };
#pragma omp parallel num_threads(threads)
  for_channel_chunks<T>(N, C, S, 2, [](index_t, index_t) {}, sums, grad_input_pass);
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
