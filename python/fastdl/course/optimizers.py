"""Optimizers (lecture §1.2–2): GD, SGD, momentum, AdaGrad, RMSProp and Adam, all
fastdl.optim, on two 2-D functions (trajectories over contour lines) and on two real
problems (logistic regression on the breast-cancer data, an MLP on the digits)."""
from __future__ import annotations

import math
import time
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np

from ._plotting import pyplot, result_type, save

__all__ = ["OPTIMIZERS", "quadratic", "rosenbrock", "optimizer_paths", "logistic_optimizers",
           "mlp_optimizers", "plot_optimizer_paths", "plot_training_curves"]

OPTIMIZERS = ("GD", "SGD", "momentum", "AdaGrad", "RMSProp", "Adam")
_COLORS = dict(zip(OPTIMIZERS, ("black", "tab:olive", "tab:blue", "tab:green", "tab:purple",
                                "tab:red")))
# The ill-conditioned quadratic: curvature 1 along x, _KAPPA along y.
_KAPPA = 50.0


def quadratic(x, y):
    """f(x, y) = (x^2 + 50 y^2) / 2: condition number 50, minimum 0 at (0, 0). Works on
    numbers, arrays and fastdl tensors alike."""
    return 0.5 * (x * x + _KAPPA * (y * y))


def rosenbrock(x, y):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2: a curved valley, minimum 0 at (1, 1)."""
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


# Each function's start, step sizes and plotting window. GD, SGD and momentum (0.9) share
# the classical step 1/L (L: the largest curvature on the way), so momentum's gain is its
# own; the adaptive methods get a step of the size of the distance to travel.
_PROBLEMS = {
    "quadratic": dict(function=quadratic, start=(-4.0, 1.0), minimum=(0.0, 0.0),
                      lr={"GD": 1 / _KAPPA, "SGD": 1 / _KAPPA, "momentum": 1 / _KAPPA,
                          "AdaGrad": 1.0, "RMSProp": 0.05, "Adam": 0.3},
                      noise=0.5, window=((-4.5, 1.5), (-1.5, 1.5))),
    "rosenbrock": dict(function=rosenbrock, start=(-1.2, 1.0), minimum=(1.0, 1.0),
                       lr={"GD": 7.5e-4, "SGD": 7.5e-4, "momentum": 7.5e-4, "AdaGrad": 0.5,
                           "RMSProp": 3e-3, "Adam": 0.05},
                       noise=2.0, window=((-1.6, 1.4), (-0.4, 1.6))),
}


def _make_optimizer(name: str, params, lr: float):
    from .. import optim
    if name in ("GD", "SGD"):
        return optim.SGD(params, lr=lr)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9)
    if name == "AdaGrad":
        return optim.Adagrad(params, lr=lr)
    if name == "RMSProp":
        return optim.RMSprop(params, lr=lr)
    if name == "Adam":
        return optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


def _descend(problem: dict, name: str, steps: int, seed: int) -> np.ndarray:
    """Trajectory (steps + 1, 2) of optimizer `name` from the problem's start. The function
    is built from fastdl tensor ops and differentiated by fastdl's autograd; 'SGD' adds
    Gaussian noise to each gradient, the error a mini-batch's gradient estimate makes."""
    from ..nn import Parameter
    point = Parameter(np.array(problem["start"], dtype=np.float64))
    optimizer = _make_optimizer(name, [point], problem["lr"][name])
    rng = np.random.default_rng(seed)
    path = np.empty((steps + 1, 2))
    path[0] = point.data
    for step in range(steps):
        optimizer.zero_grad()
        value = problem["function"](point[0], point[1])
        value.backward()
        if name == "SGD":
            point.grad.data += problem["noise"] * rng.standard_normal(2)
        optimizer.step()
        path[step + 1] = point.data
        if not np.all(np.isfinite(point.data)):
            path[step + 1:] = np.nan
            break
    return path


def _plot_paths(result, path):
    """Trajectories of every optimizer over the contour lines of both functions, and the
    function value against the step (log scale)."""
    plt = pyplot()
    names = list(result["problems"])
    fig, axes = plt.subplots(2, len(names), figsize=(6.5 * len(names), 10),
                             gridspec_kw={"height_ratios": [3, 2]})
    axes = np.asarray(axes).reshape(2, len(names))
    for column, name in enumerate(names):
        problem = _PROBLEMS[name]
        (x0, x1), (y0, y1) = problem["window"]
        gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        values = problem["function"](gx, gy)
        ax = axes[0, column]
        levels = np.logspace(np.log10(max(values.min(), 1e-3)), np.log10(values.max()), 18)
        ax.contour(gx, gy, values, levels=levels, colors="0.75", linewidths=0.8)
        for optimizer, trajectory in result["problems"][name]["paths"].items():
            # GD last and dashed on top: its path is the one the others improve on.
            gd = optimizer == "GD"
            ax.plot(trajectory[:, 0], trajectory[:, 1], "--" if gd else "-",
                    color=_COLORS[optimizer], lw=1.8 if gd else 1.3, zorder=4 if gd else 3,
                    marker="." if len(trajectory) <= 200 else None, markersize=3,
                    label=optimizer)
        ax.plot(*problem["start"], "ko", markersize=6)
        ax.plot(*problem["minimum"], "k*", markersize=12)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        steps = len(next(iter(result["problems"][name]["paths"].values()))) - 1
        title = ("ill-conditioned quadratic (x² + 50y²)/2" if name == "quadratic"
                 else "Rosenbrock (1-x)² + 100(y-x²)²")
        ax.set_title(f"{title}, {steps} steps")
        ax.legend(loc="lower right" if name == "quadratic" else "lower left", fontsize=9)
        ax = axes[1, column]
        for optimizer, losses in result["problems"][name]["losses"].items():
            ax.semilogy(np.maximum(losses, 1e-16), "--" if optimizer == "GD" else "-",
                        color=_COLORS[optimizer], label=optimizer)
        ax.set_xlabel("step")
        ax.set_ylabel("f(x, y) (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, ncol=3, loc="lower left")
    fig.tight_layout()
    return save(fig, path)


OptimizerPaths = result_type("OptimizerPaths", _plot_paths)


def optimizer_paths(steps: Tuple[int, int] = (100, 1000), seed: int = 0) -> OptimizerPaths:
    """Run the six optimizers on the quadratic (steps[0] steps) and on Rosenbrock (steps[1]).

    Returns {'problems': {name: {'paths': {optimizer: (steps+1, 2) array},
    'losses': {optimizer: (steps+1,) array}, 'final_loss': {optimizer: float}}}};
    .plot(path) draws the trajectories over the contour lines."""
    problems = {}
    for (name, problem), count in zip(_PROBLEMS.items(), steps):
        paths = {opt: _descend(problem, opt, int(count), seed) for opt in OPTIMIZERS}
        losses = {opt: problem["function"](p[:, 0], p[:, 1]) for opt, p in paths.items()}
        problems[name] = {"paths": paths, "losses": losses,
                          "final_loss": {opt: float(v[-1]) for opt, v in losses.items()}}
    return OptimizerPaths(problems=problems)


# ------------------------------------------------------------------ real problems
def _standardized_breast_cancer():
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    X = data.data
    return (X - X.mean(axis=0)) / X.std(axis=0), data.target


def _logistic_objective(model, X, y) -> float:
    """Mean log-loss + 1/(2 C n) ||w||^2: what LogisticRegression's optimizer solvers
    minimize (its objective divided by C n)."""
    z = X @ model.coef_.ravel() + model.intercept_[0]
    log_loss = np.mean(np.logaddexp(0.0, z) - y * z)
    return float(log_loss + 0.5 * (model.coef_ ** 2).sum() / (model.C * len(y)))


_LOGISTIC_SOLVERS = {"GD": "gd", "SGD": "sgd", "momentum": "momentum", "AdaGrad": "adagrad",
                     "RMSProp": "rmsprop", "Adam": "adam"}


def _plot_training_curves(result, path):
    """Loss against epoch and against wall time, one line per optimizer, for each problem."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for optimizer in OPTIMIZERS:
        if optimizer not in result["loss"]:
            continue
        loss = np.asarray(result["loss"][optimizer]) - result.get("optimum", 0.0)
        epochs = np.arange(1, len(loss) + 1)
        style = dict(color=_COLORS[optimizer], label=optimizer)
        axes[0].semilogy(epochs, np.maximum(loss, 1e-12), **style)
        axes[1].semilogy(result["time"][optimizer], np.maximum(loss, 1e-12), **style)
    ylabel = ("objective − optimum (L-BFGS)" if "optimum" in result else "training loss")
    axes[0].set_xlabel("epoch (one step for GD; n/32 mini-batch steps for the others)")
    axes[1].set_xlabel("wall time (s)")
    for ax in axes:
        ax.set_ylabel(ylabel + " (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, ncol=2)
    fig.suptitle(result["title"])
    fig.tight_layout()
    return save(fig, path)


TrainingCurves = result_type("TrainingCurves", _plot_training_curves)
plot_training_curves = _plot_training_curves
plot_optimizer_paths = _plot_paths


def logistic_optimizers(epochs: int = 100, seed: int = 0) -> TrainingCurves:
    """LogisticRegression (C=1) on the standardized breast-cancer data (569 x 30) with each
    optimizer solver for `epochs` epochs (tol=0: no early stop; default step sizes; batches
    of 32 except GD). Returns {'loss': {optimizer: objective per epoch}, 'time': {optimizer:
    seconds at the end of each epoch}, 'optimum': L-BFGS objective, 'final_loss', 'title'}.
    The per-epoch objective is LogisticRegression.loss_curve_; wall times spread the
    measured fit time evenly over the epochs (every epoch does the same work)."""
    from ..linear_model import LogisticRegression
    X, y = _standardized_breast_cancer()
    reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(X, y)
    optimum = _logistic_objective(reference, X, y)
    loss, times = {}, {}
    for optimizer, solver in _LOGISTIC_SOLVERS.items():
        model = LogisticRegression(C=1.0, solver=solver, max_iter=epochs, tol=0.0,
                                   batch_size=None if solver == "gd" else 32,
                                   random_state=seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        elapsed = time.perf_counter() - start
        loss[optimizer] = np.asarray(model.loss_curve_)
        times[optimizer] = elapsed * np.arange(1, len(loss[optimizer]) + 1) / len(loss[optimizer])
    return TrainingCurves(
        loss=loss, time=times, optimum=optimum,
        final_loss={k: float(v[-1]) for k, v in loss.items()},
        title=f"logistic regression, breast cancer (569×30), {epochs} epochs")


_MLP_LR = {"GD": 0.5, "SGD": 0.05, "momentum": 0.02, "AdaGrad": 0.05, "RMSProp": 1e-3,
           "Adam": 1e-3}


def _digits(seed: int, n_train=None):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target.astype(np.int64), test_size=0.2, stratify=digits.target,
        random_state=seed)
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, X_test, y_train, y_test


def mlp_optimizers(epochs: int = 20, hidden: int = 128, batch_size: int = 32,
                   n_train=None, seed: int = 0) -> TrainingCurves:
    """A 64-hidden-10 ReLU MLP (fastdl.nn) on the digits, trained from the same initial
    weights by each optimizer: GD on the full batch, the others on shuffled mini-batches.
    Returns {'loss': {optimizer: training loss over the whole set after each epoch},
    'time': {optimizer: measured seconds of training at each epoch's end}, 'final_loss',
    'title'}."""
    import fastdl
    from .. import nn
    from ..autograd import no_grad
    from ..nn import functional as F
    X, _, y, _ = _digits(seed, n_train)
    X_all, y_all = fastdl.tensor(X), fastdl.tensor(y)
    fastdl.manual_seed(seed)
    initial = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).state_dict()
    loss, times = {}, {}
    for optimizer_name in OPTIMIZERS:
        model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        model.load_state_dict(initial)
        optimizer = _make_optimizer(optimizer_name, model.parameters(), _MLP_LR[optimizer_name])
        rng = np.random.default_rng(seed)
        batch = len(X) if optimizer_name == "GD" else batch_size
        elapsed, curve, clock = 0.0, [], []
        for _ in range(epochs):
            start = time.perf_counter()
            order = rng.permutation(len(X))
            for first in range(0, len(X), batch):
                index = order[first:first + batch]
                optimizer.zero_grad()
                F.cross_entropy(model(fastdl.tensor(X[index])), fastdl.tensor(y[index])).backward()
                optimizer.step()
            elapsed += time.perf_counter() - start
            with no_grad():
                curve.append(float(F.cross_entropy(model(X_all), y_all).item()))
            clock.append(elapsed)
        loss[optimizer_name], times[optimizer_name] = np.array(curve), np.array(clock)
    return TrainingCurves(
        loss=loss, time=times, final_loss={k: float(v[-1]) for k, v in loss.items()},
        title=f"MLP 64-{hidden}-10 (ReLU) on digits ({len(X)} training images), {epochs} epochs")
