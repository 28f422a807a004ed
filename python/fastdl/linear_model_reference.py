"""Readable NumPy definitions of fastdl.linear_model's solvers: the test oracle.

All minimize the elastic-net objective in scikit-learn's unnormalized scale
    P(w) = 1/2 ||y - X w||^2 + l1 ||w||_1 + l2/2 ||w||^2
(Lasso(alpha): l1 = alpha * n_samples, l2 = 0; Ridge(alpha): l1 = 0, l2 = alpha), on
centered data. Clarity first: these loop in Python and are meant for small problems.
"""
from __future__ import annotations

import numpy as np


def objective(X, y, w, l1: float, l2: float = 0.0) -> float:
    r = y - X @ w
    return 0.5 * r @ r + l1 * np.abs(w).sum() + 0.5 * l2 * w @ w


def soft_threshold(z, t):
    """S(z, t) = sign(z) max(|z| - t, 0): the proximal operator of t |.|."""
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def duality_gap(X, y, w, l1: float, l2: float = 0.0) -> float:
    """The elastic net's duality gap at w (zero at the optimum), as scikit-learn computes it."""
    r = y - X @ w
    xtr = X.T @ r - l2 * w
    dual_norm = np.abs(xtr).max() if xtr.size else 0.0
    r_norm2, w_norm2 = r @ r, w @ w
    if dual_norm > l1:
        const = l1 / dual_norm
        gap = 0.5 * (r_norm2 + r_norm2 * const ** 2)
    else:
        const = 1.0
        gap = r_norm2
    return float(gap + l1 * np.abs(w).sum() - const * (r @ y) + 0.5 * l2 * (1 + const ** 2) * w_norm2)


def coordinate_descent(X, y, l1: float, l2: float = 0.0, max_iter: int = 1000, tol: float = 1e-4):
    """Cyclic coordinate descent: w_j <- S(x_j . (r + x_j w_j), l1) / (||x_j||^2 + l2)."""
    n, f = X.shape
    w = np.zeros(f)
    r = y.astype(float).copy()
    col_norms = (X * X).sum(axis=0)
    for sweep in range(1, max_iter + 1):
        for j in range(f):
            if col_norms[j] == 0:
                continue
            old = w[j]
            rho = X[:, j] @ r + col_norms[j] * old
            w[j] = soft_threshold(rho, l1) / (col_norms[j] + l2)
            r -= X[:, j] * (w[j] - old)
        if duality_gap(X, y, w, l1, l2) < tol * (y @ y):
            return w, sweep
    return w, max_iter


def proximal_gradient(X, y, l1: float, l2: float = 0.0, n_iter: int = 5000, accelerated: bool = True):
    """ISTA (or FISTA) with step 1/L, L = ||X||_2^2 + l2: w <- S(z - grad(z)/L, l1/L)."""
    f = X.shape[1]
    L = np.linalg.norm(X, 2) ** 2 + l2
    w = z = np.zeros(f)
    t = 1.0
    for _ in range(n_iter):
        grad = X.T @ (X @ z - y) + l2 * z
        w_next = soft_threshold(z - grad / L, l1 / L)
        if accelerated:
            t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
            z = w_next + (t - 1) / t_next * (w_next - w)
            t = t_next
        else:
            z = w_next
        w = w_next
    return w


def subgradient_descent(X, y, l1: float, step0: float, n_iter: int = 5000):
    """The course's method: g = X^T (X w - y) + l1 sign(w), w <- w - step0/sqrt(k+1) g,
    keeping the best iterate (the subgradient method is not a descent method)."""
    w = np.zeros(X.shape[1])
    best, best_value = w.copy(), objective(X, y, w, l1)
    for k in range(n_iter):
        g = X.T @ (X @ w - y) + l1 * np.sign(w)
        w = w - step0 / np.sqrt(k + 1) * g
        value = objective(X, y, w, l1)
        if value < best_value:
            best, best_value = w.copy(), value
    return best


def logistic_objective(X, y01, w, b, C: float) -> float:
    """Binary L2 logistic regression as scikit-learn: 1/2 ||w||^2 + C sum log(1 + exp(-s z))."""
    z = X @ w + b
    signs = 2 * y01 - 1
    return 0.5 * w @ w + C * np.logaddexp(0.0, -signs * z).sum()
