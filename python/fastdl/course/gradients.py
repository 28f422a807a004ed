"""Vanishing and exploding gradients (lecture §3): a 10-layer MLP on the digits with four
activations, three initializations and with or without BatchNorm — per-layer gradient
norms at initialization and the first epochs' loss make the n·Var(W) ≈ 1 rule visible."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._plotting import pyplot, result_type, save

__all__ = ["ACTIVATIONS", "INITS", "deep_mlp", "gradient_flow", "plot_gradient_flow"]

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
INITS = ("normal", "xavier", "kaiming")
_INIT_LABELS = {"normal": "N(0,1): n·Var(W) = n", "xavier": "Xavier: n·Var(W) = 1",
                "kaiming": "Kaiming: n·Var(W) = 2"}
_INIT_COLORS = {"normal": "tab:red", "xavier": "tab:blue", "kaiming": "tab:green"}
_ACTIVATION_TITLES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU",
                      "leaky_relu": "LeakyReLU(0.01)"}


def deep_mlp(activation: str, init: str, batch_norm: bool, depth: int = 10, width: int = 64):
    """depth Linear layers 64 → width → ... → 10 (fastdl.nn.Sequential), the activation
    after each hidden layer, BatchNorm1d before it if batch_norm. Weights drawn by init:
    'normal' N(0, 1) (n·Var(W) = fan_in), 'xavier' xavier_normal_ (Var = 2/(fan_in +
    fan_out)), 'kaiming' kaiming_normal_ for ReLU (Var = 2/fan_in); biases 0."""
    from .. import nn
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    make_activation = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
                       "leaky_relu": lambda: nn.LeakyReLU(0.01)}[activation]
    sizes = [64] + [width] * (depth - 1) + [10]
    layers = []
    for i in range(depth):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        if init == "normal":
            nn.init.normal_(linear.weight, 0.0, 1.0)
        elif init == "xavier":
            nn.init.xavier_normal_(linear.weight)
        else:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < depth - 1:
            if batch_norm:
                layers.append(nn.BatchNorm1d(sizes[i + 1]))
            layers.append(make_activation())
    return nn.Sequential(*layers)


def _linears(model):
    from .. import nn
    return [m for m in model.children() if isinstance(m, nn.Linear)]


def _gradient_norms(model, X, y) -> np.ndarray:
    """||dL/dW_l||_F of every Linear layer after one backward pass of cross-entropy."""
    from ..nn import functional as F
    model.zero_grad()
    F.cross_entropy(model(X), y).backward()
    return np.array([float(np.linalg.norm(m.weight.grad.data)) for m in _linears(model)])


def _train(model, X, y, epochs: int, batch_size: int, lr: float, seed: int) -> np.ndarray:
    """Training loss of every mini-batch step (SGD, momentum 0.9); NaN after divergence."""
    import fastdl
    from .. import optim
    from ..nn import functional as F
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(X) // batch_size)
    losses = np.full(epochs * steps_per_epoch, np.nan)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for first in range(0, len(X), batch_size):
            index = order[first:first + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(fastdl.tensor(X[index])), fastdl.tensor(y[index]))
            value = float(loss.item())
            if not np.isfinite(value):
                return losses
            losses[step] = value
            loss.backward()
            optimizer.step()
            step += 1
    return losses


def _plot(result, path):
    """One row per activation: gradient norm per layer at init (left) and the training
    loss of the first epochs (right); colour = initialization, dashed = with BatchNorm."""
    plt = pyplot()
    activations = result["activations"]
    fig, axes = plt.subplots(len(activations), 2, figsize=(13, 3.4 * len(activations)),
                             squeeze=False)
    for row, activation in enumerate(activations):
        ax_grad, ax_loss = axes[row]
        for key, run in result["runs"].items():
            act, init, bn = key
            if act != activation:
                continue
            style = dict(color=_INIT_COLORS[init], ls="--" if bn else "-",
                         label=_INIT_LABELS[init] + (" + BatchNorm" if bn else ""))
            norms = run["grad_norms"]
            ax_grad.semilogy(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-30),
                             marker="o", markersize=3, **style)
            if run["diverged"]:
                style["label"] += " (diverged)"
            ax_loss.plot(np.arange(1, len(run["loss"]) + 1), np.minimum(run["loss"], 4.9),
                         lw=1.2, **style)
            if run["diverged"]:  # × where the loss became inf/NaN
                stop = int(np.argmax(np.isnan(run["loss"])))
                ax_loss.plot([stop + 1], [4.9], "x", color=style["color"], markersize=9, mew=2)
        ax_grad.set_title(f"{_ACTIVATION_TITLES[activation]}: |∂L/∂W| per layer at init")
        ax_grad.set_xlabel("layer (1 = input side, 10 = output)")
        ax_grad.set_ylabel("gradient norm (log)")
        ax_grad.set_xticks(range(1, result["depth"] + 1))
        ax_grad.grid(alpha=0.3)
        ax_loss.set_title(f"{_ACTIVATION_TITLES[activation]}: training loss, "
                          f"{result['epochs']} epoch(s)")
        ax_loss.set_xlabel("mini-batch step")
        ax_loss.set_ylabel("cross-entropy")
        ax_loss.set_ylim(0, 6.5)
        ax_loss.axhline(np.log(10), color="k", lw=0.6, ls=":")
        ax_loss.grid(alpha=0.3)
        ax_loss.legend(fontsize=7, loc="upper right", ncol=2)
    axes[0, 1].text(0.01, 0.03, "dotted: ln 10, a uniform guess; losses above 5 drawn at 4.9",
                    transform=axes[0, 1].transAxes, fontsize=8, va="bottom")
    fig.tight_layout()
    return save(fig, path)


GradientFlow = result_type("GradientFlow", _plot)
plot_gradient_flow = _plot


def gradient_flow(activations: Sequence[str] = ACTIVATIONS, inits: Sequence[str] = INITS,
                  batch_norm: Sequence[bool] = (False, True), depth: int = 10, width: int = 64,
                  epochs: int = 4, n_train=None, batch_size: int = 64, lr: float = 0.01,
                  seed: int = 0) -> GradientFlow:
    """For every (activation, init, batch_norm): the gradient norm of each layer's weight at
    initialization (one batch of 256 training digits) and the training loss of `epochs`
    epochs of SGD with momentum. Returns {'runs': {(activation, init, batch_norm):
    {'grad_norms': (depth,), 'ratio_first_last': first / last layer norm, 'loss': per
    step}}, 'depth', 'epochs', 'activations'}; .plot(path) draws the figure."""
    import fastdl
    from .optimizers import _digits
    X, _, y, _ = _digits(seed, n_train)
    X_probe, y_probe = fastdl.tensor(X[:256]), fastdl.tensor(y[:256])
    runs = {}
    for activation in activations:
        for init in inits:
            for bn in batch_norm:
                fastdl.manual_seed(seed)
                model = deep_mlp(activation, init, bn, depth, width)
                norms = _gradient_norms(model, X_probe, y_probe)
                losses = _train(model, X, y, epochs, batch_size, lr, seed)
                runs[(activation, init, bool(bn))] = {
                    "grad_norms": norms, "ratio_first_last": float(norms[0] / norms[-1]),
                    "loss": losses, "final_loss": float(losses[~np.isnan(losses)][-1])
                    if np.any(~np.isnan(losses)) else float("nan"),
                    "diverged": bool(np.isnan(losses).any())}
    return GradientFlow(runs=runs, depth=depth, epochs=epochs, activations=list(activations))
