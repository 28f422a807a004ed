// Penalized least-squares solvers of fastdl.linear_model (Lasso, Ridge by gradient descent):
// coordinate descent, ISTA/FISTA and the subgradient method, all in scikit-learn's scale
//   P(w) = 1/2 ||y - X w||^2 + l1 ||w||_1 + l2/2 ||w||^2
// (see linear_model.h). Matrix-vector products go through gemm<T> (OpenBLAS, its own
// threads); the element-wise passes are short and stay single-threaded. Reductions
// accumulate in double in a fixed order.
#include "cpu/linear_model.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fastdl::cpu {
namespace {

// Dot product in double with 8 interleaved partial sums: vectorizes without -ffast-math,
// and the order (hence the bits) depends on n alone.
template <typename T>
double dot(const T* a, const T* b, index_t n) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lanes[k] += static_cast<double>(a[i + k]) * static_cast<double>(b[i + k]);
  for (int k = 0; i < n; ++i, ++k) lanes[k] += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

template <typename T>
double abs_sum(const T* a, index_t n) {
  double total = 0.0;
  for (index_t i = 0; i < n; ++i) total += std::fabs(static_cast<double>(a[i]));
  return total;
}

// S(z, t) = sign(z) max(|z| - t, 0): the proximal operator of t |.|.
inline double soft_threshold(double z, double t) {
  return z > t ? z - t : (z < -t ? z + t : 0.0);
}

// residual = y - X w  (one GEMV on the transposed design).
template <typename T>
void residual_of(const T* x_t, const T* y, const T* w, T* residual, index_t n, index_t f) {
  std::copy(y, y + n, residual);
  if (f > 0) gemm<T>(true, false, n, 1, f, T(-1), x_t, n, w, 1, T(1), residual, 1);
}

// xt_r = X^T residual (F).
template <typename T>
void correlation_of(const T* x_t, const T* residual, T* xt_r, index_t n, index_t f) {
  if (n == 0) {
    std::fill(xt_r, xt_r + f, T(0));
    return;
  }
  gemm<T>(false, false, f, 1, n, T(1), x_t, n, residual, 1, T(0), xt_r, 1);
}

// The gap of sklearn's enet_coordinate_descent, given X^T R already computed:
// the dual point is R scaled into the feasible set {|X^T A - l2 w|_inf <= l1}.
template <typename T>
double gap_from(const T* xt_r, const T* residual, const T* y, const T* w, index_t n, index_t f,
                double l1, double l2) {
  double dual_norm = 0.0;
  for (index_t j = 0; j < f; ++j)
    dual_norm = std::max(dual_norm, std::fabs(static_cast<double>(xt_r[j]) - l2 * w[j]));
  const double r_norm2 = dot(residual, residual, n), w_norm2 = dot(w, w, f);
  double scale, gap;
  if (dual_norm > l1) {
    scale = l1 / dual_norm;
    gap = 0.5 * (r_norm2 + r_norm2 * scale * scale);
  } else {
    scale = 1.0;
    gap = r_norm2;
  }
  gap += l1 * abs_sum(w, f) - scale * dot(residual, y, n) + 0.5 * l2 * (1.0 + scale * scale) * w_norm2;
  return gap;
}

// P(w) given its residual.
template <typename T>
double objective_of(const T* residual, const T* w, index_t n, index_t f, double l1, double l2) {
  return 0.5 * dot(residual, residual, n) + l1 * abs_sum(w, f) + 0.5 * l2 * dot(w, w, f);
}

}  // namespace

template <typename T>
double elastic_net_duality_gap(const T* x_t, const T* y, const T* w, const T* residual,
                               index_t n, index_t f, double l1, double l2) {
  std::vector<T> xt_r(static_cast<size_t>(f));
  correlation_of(x_t, residual, xt_r.data(), n, f);
  return gap_from(xt_r.data(), residual, y, w, n, f, l1, l2);
}

template <typename T>
double squared_spectral_norm(const T* x_t, index_t n, index_t f) {
  if (n == 0 || f == 0) return 0.0;
  // A fixed start that is unlikely to be orthogonal to the top singular vector.
  std::vector<T> v(static_cast<size_t>(f)), u(static_cast<size_t>(n)), next(static_cast<size_t>(f));
  for (index_t j = 0; j < f; ++j) v[j] = static_cast<T>(1.0 + 0.5 * std::sin(1.0 + j));
  double norm = std::sqrt(dot(v.data(), v.data(), f));
  for (auto& value : v) value = static_cast<T>(value / norm);
  double lambda = 0.0;
  for (int it = 0; it < 500; ++it) {
    gemm<T>(true, false, n, 1, f, T(1), x_t, n, v.data(), 1, T(0), u.data(), 1);     // u = X v
    gemm<T>(false, false, f, 1, n, T(1), x_t, n, u.data(), 1, T(0), next.data(), 1);  // X^T u
    const double previous = lambda;
    lambda = std::sqrt(dot(next.data(), next.data(), f));  // ||X^T X v|| with ||v|| = 1
    if (lambda == 0.0) return 0.0;
    for (index_t j = 0; j < f; ++j) v[j] = static_cast<T>(next[j] / lambda);
    if (std::fabs(lambda - previous) <= 1e-7 * lambda) break;
  }
  // Power iteration approaches the eigenvalue from below: a 1% margin keeps 1/L safe.
  return lambda * 1.01;
}

template <typename T>
SolverResult coordinate_descent(const T* x_t, const T* y, T* w, index_t n, index_t f,
                                double l1, double l2, index_t max_iter, double tol) {
  std::vector<double> column_norm2(static_cast<size_t>(f));
  for (index_t j = 0; j < f; ++j) column_norm2[j] = dot(x_t + j * n, x_t + j * n, n);
  std::vector<T> residual(static_cast<size_t>(n)), xt_r(static_cast<size_t>(f));
  residual_of(x_t, y, w, residual.data(), n, f);
  T* r = residual.data();
  const double gap_tol = tol * dot(y, y, n);  // sklearn: tol *= dot(y, y)
  SolverResult result{0, 0.0};
  for (index_t it = 0; it < max_iter; ++it) {
    double w_max = 0.0, dw_max = 0.0;
    for (index_t j = 0; j < f; ++j) {
      if (column_norm2[j] == 0.0) continue;
      const T* x = x_t + j * n;
      const T w_old = w[j];
      if (w_old != T(0))
        for (index_t i = 0; i < n; ++i) r[i] += w_old * x[i];  // r += w_j x_j
      const double rho = dot(x, r, n);
      const T w_new = static_cast<T>(soft_threshold(rho, l1) / (column_norm2[j] + l2));
      w[j] = w_new;
      if (w_new != T(0))
        for (index_t i = 0; i < n; ++i) r[i] -= w_new * x[i];  // r -= w_j x_j
      dw_max = std::max(dw_max, std::fabs(static_cast<double>(w_new) - w_old));
      w_max = std::max(w_max, std::fabs(static_cast<double>(w_new)));
    }
    result.iterations = it + 1;
    if (w_max == 0.0 || dw_max / w_max < tol || it == max_iter - 1) {
      correlation_of(x_t, r, xt_r.data(), n, f);
      result.gap = gap_from(xt_r.data(), r, y, w, n, f, l1, l2);
      if (result.gap < gap_tol) break;
    }
  }
  return result;
}

template <typename T>
SolverResult proximal_gradient(const T* x_t, const T* y, T* w, index_t n, index_t f,
                               double l1, double l2, double step, index_t max_iter, double tol,
                               bool accelerated) {
  if (step <= 0.0) {
    const double lipschitz = squared_spectral_norm(x_t, n, f) + l2;
    step = lipschitz > 0.0 ? 1.0 / lipschitz : 1.0;
  }
  constexpr index_t kGapEvery = 10;  // a gap costs one more GEMV
  std::vector<T> z(w, w + f), residual(static_cast<size_t>(n)), xt_r(static_cast<size_t>(f));
  std::vector<T> w_new(static_cast<size_t>(f));
  const double gap_tol = tol * dot(y, y, n);
  double t = 1.0;
  SolverResult result{0, 0.0};
  for (index_t it = 0; it < max_iter; ++it) {
    // gradient at z: -(X^T (y - X z)) + l2 z
    residual_of(x_t, y, z.data(), residual.data(), n, f);
    correlation_of(x_t, residual.data(), xt_r.data(), n, f);
    double change = 0.0, w_max = 0.0, restart = 0.0;
    for (index_t j = 0; j < f; ++j) {
      const double zj = z[j];
      const double updated = soft_threshold(zj + step * (xt_r[j] - l2 * zj), step * l1);
      w_new[j] = static_cast<T>(updated);
      change = std::max(change, std::fabs(updated - w[j]));
      w_max = std::max(w_max, std::fabs(updated));
      restart += (zj - updated) * (updated - w[j]);
    }
    if (accelerated) {
      // Adaptive restart (O'Donoghue & Candes 2015): drop the momentum when it points uphill.
      if (restart > 0.0) t = 1.0;
      const double t_next = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
      const double beta = (t - 1.0) / t_next;
      for (index_t j = 0; j < f; ++j) z[j] = static_cast<T>(w_new[j] + beta * (w_new[j] - w[j]));
      t = t_next;
    } else {
      std::copy(w_new.begin(), w_new.end(), z.begin());
    }
    std::copy(w_new.begin(), w_new.end(), w);
    result.iterations = it + 1;
    if (l1 > 0.0) {
      if ((it + 1) % kGapEvery == 0 || it == max_iter - 1 || change == 0.0) {
        residual_of(x_t, y, w, residual.data(), n, f);
        correlation_of(x_t, residual.data(), xt_r.data(), n, f);
        result.gap = gap_from(xt_r.data(), residual.data(), y, w, n, f, l1, l2);
        if (result.gap < gap_tol) break;
      }
    } else {
      result.gap = w_max > 0.0 ? change / w_max : change;
      if (change <= tol * w_max) break;
    }
  }
  return result;
}

template <typename T>
SolverResult subgradient_descent(const T* x_t, const T* y, T* w, index_t n, index_t f,
                                 double l1, double l2, double step0, index_t max_iter,
                                 double tol) {
  if (step0 <= 0.0) {
    const double lipschitz = squared_spectral_norm(x_t, n, f) + l2;
    step0 = lipschitz > 0.0 ? 1.0 / lipschitz : 1.0;
  }
  std::vector<T> residual(static_cast<size_t>(n)), xt_r(static_cast<size_t>(f));
  std::vector<T> best(w, w + f);
  double best_objective = INFINITY;
  const double gap_tol = tol * dot(y, y, n);
  SolverResult result{0, 0.0};
  for (index_t it = 0; it < max_iter; ++it) {
    residual_of(x_t, y, w, residual.data(), n, f);
    correlation_of(x_t, residual.data(), xt_r.data(), n, f);
    const double objective = objective_of(residual.data(), w, n, f, l1, l2);
    if (objective < best_objective) {
      best_objective = objective;
      std::copy(w, w + f, best.begin());
    }
    result.iterations = it;
    result.gap = gap_from(xt_r.data(), residual.data(), y, w, n, f, l1, l2);
    if (result.gap < gap_tol) break;
    const double eta = step0 / std::sqrt(static_cast<double>(it) + 1.0);
    for (index_t j = 0; j < f; ++j) {
      const double smooth = -static_cast<double>(xt_r[j]) + l2 * w[j];
      // d|w_j|: sign(w_j); at 0 any s in [-1, 1] is valid, and the one of least norm of the
      // whole subgradient, s = clip(-smooth / l1, -1, 1), keeps an optimal zero at zero.
      double s;
      if (w[j] > T(0)) s = 1.0;
      else if (w[j] < T(0)) s = -1.0;
      else s = l1 > 0.0 ? std::clamp(-smooth / l1, -1.0, 1.0) : 0.0;
      w[j] = static_cast<T>(w[j] - eta * (smooth + l1 * s));
    }
    result.iterations = it + 1;
  }
  std::copy(best.begin(), best.end(), w);
  return result;
}

#define FASTDL_INSTANTIATE(T)                                                                  \
  template double elastic_net_duality_gap<T>(const T*, const T*, const T*, const T*, index_t,  \
                                             index_t, double, double);                         \
  template double squared_spectral_norm<T>(const T*, index_t, index_t);                         \
  template SolverResult coordinate_descent<T>(const T*, const T*, T*, index_t, index_t, double, \
                                              double, index_t, double);                        \
  template SolverResult proximal_gradient<T>(const T*, const T*, T*, index_t, index_t, double,  \
                                             double, double, index_t, double, bool);           \
  template SolverResult subgradient_descent<T>(const T*, const T*, T*, index_t, index_t,        \
                                               double, double, double, index_t, double);
FASTDL_INSTANTIATE(float)
FASTDL_INSTANTIATE(double)
#undef FASTDL_INSTANTIATE

}  // namespace fastdl::cpu
