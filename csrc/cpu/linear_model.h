// Solvers of fastdl.linear_model: penalized least squares on raw buffers.
//
// Every solver works in scikit-learn's unnormalized scale (sklearn/linear_model/_cd_fast.pyx):
//   P(w) = 1/2 ||y - X w||^2 + l1 ||w||_1 + l2/2 ||w||^2
// so Lasso(alpha) is l1 = alpha * n_samples, l2 = 0, and Ridge(alpha) is l1 = 0, l2 = alpha.
//
// The design matrix is passed TRANSPOSED: x_t is (F, N) row-major, i.e. X in column-major
// (Fortran) order as scikit-learn keeps it, so that a feature's column is contiguous for
// coordinate descent. y is (N), w (F) is the starting point and is updated in place.
// The caller centers X and y when fitting an intercept.
#pragma once

#include "cpu/common.h"

namespace fastdl::cpu {

struct SolverResult {
  index_t iterations;  // full sweeps / gradient steps taken
  double gap;          // last duality gap computed (l1 > 0) or last relative change (l1 == 0)
};

// Duality gap of the elastic net at w, as sklearn's enet_coordinate_descent computes it;
// residual = y - X w (N). Zero at the optimum; the solvers stop when gap < tol * ||y||^2.
template <typename T>
double elastic_net_duality_gap(const T* x_t, const T* y, const T* w, const T* residual,
                               index_t n, index_t f, double l1, double l2);

// Cyclic coordinate descent with residual maintenance and soft-thresholding
// (Friedman et al. 2010; sklearn's enet_coordinate_descent, same update order):
//   w_j <- S(x_j . (r + x_j w_j), l1) / (||x_j||^2 + l2),   S(z, t) = sign(z) max(|z| - t, 0)
// The duality gap is checked when the largest coordinate change of a sweep falls under
// tol times the largest coefficient, and the loop stops when gap < tol * ||y||^2.
template <typename T>
SolverResult coordinate_descent(const T* x_t, const T* y, T* w, index_t n, index_t f,
                                double l1, double l2, index_t max_iter, double tol);

// Proximal gradient on P (ISTA; FISTA of Beck & Teboulle 2009 when accelerated):
//   w <- S(z - step * grad(z), step * l1),  grad(z) = X^T (X z - y) + l2 z
// step <= 0 picks 1 / L with L = ||X||_2^2 + l2 (power iteration). Two GEMVs per step.
// Stops on the duality gap (l1 > 0, checked every few steps) or, without l1, when
// max|w_new - w| <= tol * max|w|.
template <typename T>
SolverResult proximal_gradient(const T* x_t, const T* y, T* w, index_t n, index_t f,
                               double l1, double l2, double step, index_t max_iter, double tol,
                               bool accelerated);

// Subgradient method on P with a decaying step step0 / sqrt(k + 1) and the subgradient
//   g = X^T (X w - y) + l2 w + l1 s,  s_j = sign(w_j), and s_j = 0 (an element of [-1, 1])
// where w_j = 0. Not a descent method: w receives the best iterate seen (lowest P).
// step0 <= 0 picks 1 / L. Stops at max_iter or when the gap of the current iterate
// falls under tol * ||y||^2.
template <typename T>
SolverResult subgradient_descent(const T* x_t, const T* y, T* w, index_t n, index_t f,
                                 double l1, double l2, double step0, index_t max_iter,
                                 double tol);

// Largest eigenvalue of X^T X (power iteration, relative tolerance 1e-7 or 500 steps),
// slightly inflated so that 1 / L is a safe gradient step.
template <typename T>
double squared_spectral_norm(const T* x_t, index_t n, index_t f);

}  // namespace fastdl::cpu
