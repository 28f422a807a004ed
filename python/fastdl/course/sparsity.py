"""Lasso vs Ridge (lecture §1): coefficient paths over alpha on the diabetes data, and the
three Lasso solvers (subgradient, proximal gradient, coordinate descent) compared — exact
zeros come only from soft-thresholding."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ._plotting import pyplot, result_type, save

__all__ = ["lasso_ridge_paths", "lasso_solvers", "plot_lasso_ridge"]


def _diabetes():
    from sklearn.datasets import load_diabetes
    data = load_diabetes()
    return data.data, data.target, list(data.feature_names)


def _lasso_objective(model, X, y) -> float:
    """scikit-learn's Lasso objective (1/2n) ||y - Xw - b||^2 + alpha ||w||_1."""
    residual = y - model.predict(X)
    return float(residual @ residual / (2 * len(y)) + model.alpha * np.abs(model.coef_).sum())


def lasso_ridge_paths(n_alphas: int = 40, seed: int = 0) -> dict:
    """Lasso (coordinate descent) and Ridge (closed form) fitted on the diabetes data
    (442 x 10) along a log grid of alphas. Lasso's grid runs from alpha_max = max|X^T y|/n
    (where every coefficient is 0) down to alpha_max/10^4; Ridge's from 10^-3 to 10^4.
    Returns {'features', 'lasso_alphas', 'lasso_coefs' (n_alphas, 10), 'lasso_zeros' (count
    of exact zeros per alpha), 'ridge_alphas', 'ridge_coefs', 'ridge_zeros'}."""
    del seed  # deterministic: no randomness in either solver
    from ..linear_model import Lasso, Ridge
    X, y, features = _diabetes()
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    alpha_max = float(np.abs(Xc.T @ yc).max() / len(y))
    lasso_alphas = alpha_max * np.logspace(0, -4, n_alphas)
    model, lasso_coefs = Lasso(warm_start=True, max_iter=10_000, tol=1e-8), []
    for alpha in lasso_alphas:  # warm starts from the previous alpha, as lasso_path does
        lasso_coefs.append(model.set_params(alpha=float(alpha)).fit(X, y).coef_.copy())
    ridge_alphas = np.logspace(-3, 4, n_alphas)
    ridge_coefs = [Ridge(alpha=float(a)).fit(X, y).coef_ for a in ridge_alphas]
    lasso_coefs, ridge_coefs = np.array(lasso_coefs), np.array(ridge_coefs)
    return {"features": features, "alpha_max": alpha_max,
            "lasso_alphas": lasso_alphas, "lasso_coefs": lasso_coefs,
            "lasso_zeros": (lasso_coefs == 0).sum(axis=1),
            "ridge_alphas": ridge_alphas, "ridge_coefs": ridge_coefs,
            "ridge_zeros": (ridge_coefs == 0).sum(axis=1)}


def _iterate_warm(make, X, y, iterations: int):
    """Objective after each of `iterations` iterations of a memoryless solver (coordinate
    descent, ISTA): one iteration per fit, warm-started from the previous coefficients."""
    model, values = make(max_iter=1, tol=0.0, warm_start=True), []
    for _ in range(iterations):
        values.append(_lasso_objective(model.fit(X, y), X, y))
    return np.array(values), model.coef_.copy()


def _iterate_restart(make, X, y, checkpoints):
    """Objective after k iterations for each k in checkpoints, each a fresh run (for
    solvers with state across iterations: FISTA's momentum, the subgradient's step
    schedule and best iterate)."""
    values, model = [], None
    for k in checkpoints:
        model = make(max_iter=int(k), tol=0.0).fit(X, y)
        values.append(_lasso_objective(model, X, y))
    return np.array(values), model.coef_.copy()


def lasso_solvers(alpha: float = 0.2, iterations: int = 300) -> dict:
    """The Lasso objective on the diabetes data against the iteration for coordinate
    descent ('cd'), ISTA and FISTA ('proximal') and the subgradient method, all
    fastdl.linear_model.Lasso solvers at this alpha, and their coefficients after
    `iterations` iterations. Returns {'alpha', 'optimum', 'iterations': {solver: ks},
    'objective': {solver: values}, 'coefs': {solver: (10,)}, 'zeros': {solver: count of
    exact zeros}, 'features'}."""
    from ..linear_model import Lasso
    X, y, features = _diabetes()
    optimum = _lasso_objective(Lasso(alpha=alpha, max_iter=100_000, tol=1e-12).fit(X, y), X, y)
    every = np.arange(1, iterations + 1)
    checkpoints = np.unique(np.round(np.logspace(0, np.log10(iterations), 30)).astype(int))
    solvers = {
        "coordinate descent": (lambda **kw: Lasso(alpha=alpha, solver="cd", **kw), "warm"),
        "ISTA (proximal)": (lambda **kw: Lasso(alpha=alpha, solver="proximal",
                                               accelerated=False, **kw), "warm"),
        "FISTA (proximal)": (lambda **kw: Lasso(alpha=alpha, solver="proximal", **kw), "restart"),
        "subgradient": (lambda **kw: Lasso(alpha=alpha, solver="subgradient", **kw), "restart"),
    }
    ks, objective, coefs = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 runs exactly max_iter iterations
        for name, (make, kind) in solvers.items():
            if kind == "warm":
                ks[name] = every
                objective[name], coefs[name] = _iterate_warm(make, X, y, iterations)
            else:
                ks[name] = checkpoints
                objective[name], coefs[name] = _iterate_restart(make, X, y, checkpoints)
    return {"alpha": alpha, "optimum": optimum, "iterations": ks, "objective": objective,
            "coefs": coefs, "zeros": {k: int((v == 0).sum()) for k, v in coefs.items()},
            "features": features}


_SOLVER_COLORS = {"coordinate descent": "tab:blue", "ISTA (proximal)": "tab:green",
                  "FISTA (proximal)": "tab:orange", "subgradient": "tab:red"}


def plot_lasso_ridge(paths: dict, solvers: dict, path) -> str:
    """Four panels: Lasso path, Ridge path, objective gap per solver, final |coefficients|."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    colors = plt.cm.tab10(np.arange(10))
    features = paths["features"]
    for ax, kind in ((axes[0, 0], "lasso"), (axes[0, 1], "ridge")):
        alphas, coefs = paths[f"{kind}_alphas"], paths[f"{kind}_coefs"]
        for j in range(coefs.shape[1]):
            ax.semilogx(alphas, coefs[:, j], color=colors[j % 10], label=features[j])
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xlabel("alpha (log scale)")
        ax.set_ylabel("coefficient")
        ax.grid(alpha=0.3)
        zeros = paths[f"{kind}_zeros"]
        name = "Lasso (L1)" if kind == "lasso" else "Ridge (L2)"
        ax.set_title(f"{name} path: exact zeros {zeros.min()} → {zeros.max()} of {coefs.shape[1]}")
        # the count of exact zeros along the top of the lasso panel
        if kind == "lasso":
            top = ax.twiny()
            top.set_xscale("log")
            top.set_xlim(ax.get_xlim())
            picks = np.linspace(0, len(alphas) - 1, 8).astype(int)
            top.set_xticks(alphas[picks])
            top.set_xticklabels([str(z) for z in zeros[picks]], fontsize=8)
            top.minorticks_off()
            top.set_xlabel("number of coefficients exactly 0", fontsize=9)
    axes[0, 0].legend(fontsize=8, ncol=2, loc="lower left")
    axes[0, 1].legend(fontsize=8, ncol=2, loc="upper right")
    ax = axes[1, 0]
    for name, values in solvers["objective"].items():
        # below ~1e-10 the gap is rounding of an objective of ~10^3: clip there
        gap = np.maximum(values - solvers["optimum"], 1e-10)
        ax.loglog(solvers["iterations"][name], gap, color=_SOLVER_COLORS[name],
                  marker="o" if len(gap) < 100 else None, markersize=3, label=name)
    ax.set_xlabel("iteration (coordinate descent: one sweep over the 10 coefficients)")
    ax.set_ylabel("objective − optimum (log scale, floor 1e-10)")
    ax.set_title(f"Lasso solvers at alpha = {solvers['alpha']:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax = axes[1, 1]
    names = list(solvers["coefs"])
    width = 0.8 / len(names)
    floor = 1e-8
    for i, name in enumerate(names):
        magnitude = np.abs(solvers["coefs"][name])
        positions = np.arange(len(features)) + (i - (len(names) - 1) / 2) * width
        ax.bar(positions, np.maximum(magnitude, floor), width, bottom=0, color=_SOLVER_COLORS[name],
               label=f"{name}: {solvers['zeros'][name]} exact zeros")
        exact = magnitude == 0
        ax.plot(positions[exact], np.full(exact.sum(), floor * 2), "kx", markersize=5)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1e6)
    ax.set_xticks(np.arange(len(features)))
    ax.set_xticklabels(features)
    ax.set_ylabel("|coefficient| (log scale; × = exactly 0)")
    ax.set_title("final coefficients: soft-thresholding gives exact zeros")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    return save(fig, path)


LassoRidge = result_type("LassoRidge", lambda result, path: plot_lasso_ridge(
    result["paths"], result["solvers"], path))


def lasso_vs_ridge(n_alphas: int = 40, alpha: float = 0.2, iterations: int = 300) -> dict:
    """Both experiments; .plot(path) draws the four panels."""
    return LassoRidge(paths=lasso_ridge_paths(n_alphas), solvers=lasso_solvers(alpha, iterations))


__all__.append("lasso_vs_ridge")
