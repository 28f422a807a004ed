"""CNNs (lecture §4.2): the digits CNN's learned first-layer filters and feature maps,
its training history, and the receptive field of each layer — by the closed form and
measured with fastdl's autograd — with and without stride."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ._plotting import pyplot, result_type, save

__all__ = ["Layer", "RECEPTIVE_FIELD_STACKS", "receptive_field", "measured_receptive_field",
           "receptive_fields", "digits_cnn_features", "plot_cnn_features",
           "plot_receptive_fields"]

# (kind, kernel, stride, padding): kind 'conv' or 'pool'
Layer = Tuple[str, int, int, int]

RECEPTIVE_FIELD_STACKS: Dict[str, List[Layer]] = {
    "digits CNN (pools stride 2)": [("conv", 3, 1, 1), ("pool", 2, 2, 0),
                                    ("conv", 3, 1, 1), ("pool", 2, 2, 0)],
    "digits CNN, pools stride 1": [("conv", 3, 1, 1), ("pool", 2, 1, 0),
                                   ("conv", 3, 1, 1), ("pool", 2, 1, 0)],
    "6 × conv 3x3, stride 2": [("conv", 3, 2, 0)] * 6,
    "6 × conv 3x3, stride 1": [("conv", 3, 1, 0)] * 6,
}


def receptive_field(layers: Sequence[Layer]) -> List[dict]:
    """Closed form, per layer l: r_l = r_{l-1} + (k_l - 1) * j_{l-1} with the jump
    j_l = j_{l-1} * s_l (the product of the strides before and at l; r_0 = j_0 = 1), and
    the input coordinate of the centre of output unit 0: c_l = c_{l-1} + ((k_l - 1)/2 -
    p_l) * j_{l-1}. Returns [{'r', 'jump', 'start'} for each layer]."""
    r, jump, start, out = 1, 1, 0.0, []
    for kind, kernel, stride, padding in layers:
        r += (kernel - 1) * jump
        start += ((kernel - 1) / 2 - padding) * jump
        jump *= stride
        out.append({"r": r, "jump": jump, "start": start})
    return out


def measured_receptive_field(layers: Sequence[Layer], input_size: int = None) -> List[int]:
    """The receptive field of each layer measured with fastdl's autograd: for a stack of
    the first l layers (convolutions with all-ones 1x1-channel kernels, average pools —
    a max pool's window is the same), backpropagate from the output unit at the centre and
    count the input pixels with a nonzero gradient along a row. Padding is left out (it
    moves the field, not its size)."""
    import fastdl
    from .. import nn
    closed = receptive_field(layers)
    if input_size is None:
        input_size = closed[-1]["r"] + 2 * closed[-1]["jump"] + 2
    sizes = []
    for depth in range(1, len(layers) + 1):
        modules = []
        for kind, kernel, stride, _ in layers[:depth]:
            if kind == "conv":
                conv = nn.Conv2d(1, 1, kernel, stride=stride, bias=False)
                nn.init.ones_(conv.weight)
                modules.append(conv)
            else:
                modules.append(nn.AvgPool2d(kernel, stride=stride))
        x = fastdl.ones(1, 1, input_size, input_size, requires_grad=True)
        out = nn.Sequential(*modules)(x)
        centre = out.shape[-1] // 2
        out[0, 0, centre, centre].backward()
        touched = np.flatnonzero(np.abs(x.grad.data[0, 0]).sum(axis=0))
        sizes.append(int(touched[-1] - touched[0] + 1))
    return sizes


def _plot_receptive(result, path):
    """Receptive field per layer for each stack (lines: closed form, dots: measured), and
    the fields of the digits CNN's top-left units drawn over a test digit."""
    plt = pyplot()
    from matplotlib.patches import Rectangle
    fig = plt.figure(figsize=(15, 5))
    grid = fig.add_gridspec(1, 3, width_ratios=[1.3, 1, 1])
    ax = fig.add_subplot(grid[0])
    for name, stack in result["stacks"].items():
        layers = np.arange(1, len(stack["closed_form"]) + 1)
        line, = ax.plot(layers, stack["closed_form"], "-", label=name)
        ax.plot(layers, stack["measured"], "o", color=line.get_color(), markersize=6,
                markerfacecolor="none")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("layer")
    ax.set_ylabel("receptive field (pixels, log₂)")
    ax.set_title("receptive field per layer\nlines: closed form; circles: measured by autograd",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    digit = result["digit"]
    colors = ["tab:orange", "tab:green", "tab:purple", "tab:red"]
    for column, name in enumerate(list(result["stacks"])[:2]):
        ax = fig.add_subplot(grid[column + 1])
        ax.imshow(digit, cmap="gray_r", extent=(-0.5, 7.5, 7.5, -0.5))
        layers = result["stacks"][name]["layers"]
        for index, ((kind, kernel, stride, _), field, color) in enumerate(zip(
                layers, receptive_field(layers), colors)):
            # inset each square a little so that shared edges stay visible
            inset = 0.06 * index
            low = field["start"] - (field["r"] - 1) / 2 - 0.5 + inset
            side = field["r"] - 2 * inset
            ax.add_patch(Rectangle((low, low), side, side, facecolor=color, alpha=0.07))
            ax.add_patch(Rectangle((low, low), side, side, fill=False, lw=2, edgecolor=color,
                                   label=f"layer {index + 1}, {kind} {kernel}x{kernel} "
                                         f"stride {stride}: {field['r']}x{field['r']}"))
        ax.set_xlim(-4.5, 8.5)
        ax.set_ylim(8.5, -4.5)
        ax.axhline(-0.5, color="0.6", lw=0.5)
        ax.axvline(-0.5, color="0.6", lw=0.5)
        ax.set_title(f"{name}:\nfield of the top-left unit of each layer\n"
                     f"(padding 1 lets it reach past the image)", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, path)


ReceptiveFields = result_type("ReceptiveFields", _plot_receptive)
plot_receptive_fields = _plot_receptive


def receptive_fields(stacks: Dict[str, List[Layer]] = None) -> ReceptiveFields:
    """Closed-form and measured receptive fields of each layer of each stack (default
    RECEPTIVE_FIELD_STACKS: the digits CNN with its stride-2 pools and with stride-1 pools,
    six 3x3 convolutions with stride 2 and with stride 1). Returns {'stacks': {name:
    {'layers', 'closed_form': [r_l], 'measured': [r_l]}}, 'digit': an 8x8 test digit}."""
    from .optimizers import _digits
    stacks = RECEPTIVE_FIELD_STACKS if stacks is None else stacks
    out = {name: {"layers": list(layers),
                  "closed_form": [f["r"] for f in receptive_field(layers)],
                  "measured": measured_receptive_field(layers)}
           for name, layers in stacks.items()}
    _, X_test, _, _ = _digits(0)
    return ReceptiveFields(stacks=out, digit=X_test[0].reshape(8, 8))


def _plot_features(result, path):
    """The 32 learned 3x3 filters of the first layer, then for each test digit its first
    layer's feature maps (after ReLU)."""
    plt = pyplot()
    filters, maps, digits = result["filters"], result["feature_maps"], result["digits"]
    columns = 16
    rows = int(np.ceil(len(filters) / columns)) + len(digits)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.95, rows * 1.1))
    for ax in axes.ravel():
        ax.axis("off")
    limit = np.abs(filters).max()
    filter_rows = int(np.ceil(len(filters) / columns))
    for i, kernel in enumerate(filters):
        ax = axes[i // columns, i % columns]
        ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {i}", fontsize=7)
    for row, (digit, label, feature) in enumerate(zip(digits, result["labels"], maps)):
        ax = axes[filter_rows + row, 0]
        ax.imshow(digit, cmap="gray_r")
        ax.set_title(f"digit {label}", fontsize=8, color="tab:red")
        for i in range(columns - 1):
            ax = axes[filter_rows + row, i + 1]
            ax.imshow(feature[i], cmap="magma")
            ax.set_title(f"map {i}", fontsize=7)
    fig.suptitle(f"digits CNN after {result['epochs']} epochs (test accuracy "
                 f"{100 * result['test_accuracy']:.1f}%): first-layer filters (red +, blue −) "
                 f"and their ReLU feature maps", fontsize=11)
    fig.tight_layout()
    return save(fig, path)


CNNFeatures = result_type("CNNFeatures", _plot_features)
plot_cnn_features = _plot_features


def digits_cnn_features(epochs: int = 15, n_digits: int = 3, seed: int = 0) -> CNNFeatures:
    """Train the demo's digits CNN (Adam 3e-3, cosine schedule, batches of 32) with
    fastdl.train.fit, then read its first-layer filters and the feature maps of the first
    n_digits test digits. Returns {'filters' (32, 3, 3), 'feature_maps' (n, 32, 8, 8),
    'digits', 'labels', 'test_accuracy', 'history' (a fastdl.train.History), 'epochs'}."""
    import fastdl
    from .. import nn, optim
    from ..__main__ import _load_digits_split, digits_cnn
    from ..autograd import no_grad
    from ..data import DataLoader, TensorDataset
    from ..train import evaluate, fit
    fastdl.manual_seed(seed)
    x_train, x_test, y_train, y_test = _load_digits_split(seed)
    train_loader = DataLoader(TensorDataset(fastdl.tensor(x_train), fastdl.tensor(y_train)),
                              batch_size=32, shuffle=True,
                              generator=fastdl.Generator().manual_seed(seed))
    test_loader = DataLoader(TensorDataset(fastdl.tensor(x_test), fastdl.tensor(y_test)),
                             batch_size=256)
    model = digits_cnn()
    optimizer = optim.Adam(model.parameters(), lr=3e-3)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    loss_fn = nn.CrossEntropyLoss()
    history = fit(model, train_loader, loss_fn, optimizer, epochs, val_loader=test_loader,
                  progress=False, scheduler=scheduler)
    model.eval()
    digits = x_test[:n_digits]
    with no_grad():
        maps = model[1](model[0](fastdl.tensor(digits))).data
    return CNNFeatures(filters=model[0].weight.data[:, 0].copy(), feature_maps=maps,
                       digits=digits[:, 0], labels=y_test[:n_digits].tolist(),
                       test_accuracy=evaluate(model, test_loader, loss_fn)["accuracy"],
                       history=history, epochs=epochs)
