"""The ops the CUDA tests run, each once on fastdl CPU, fastdl CUDA and (when present)
PyTorch CUDA: forward output and the gradient of every input that requires one.

A case is a function ``fn(F, lib, *tensors)`` written once for both libraries (fastdl's
API is PyTorch's): F is ``lib.nn.functional``. Inputs are NumPy arrays made from a seeded
generator; ``run`` puts them on a device, calls fn, back-propagates a fixed random
gradient (when the output has a gradient) and returns NumPy copies of the output and the
input gradients. A case whose result depends on fastdl's own random numbers (dropout) sets
``torch=False``: it is compared with fastdl's CPU op only, which must agree bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Tuple

import numpy as np


@dataclass
class Input:
    shape: Tuple[int, ...]
    kind: str = "normal"       # normal | labels:C | probability | unit (in (0, 1)) | logprob
    grad: bool = True


@dataclass
class Case:
    name: str
    fn: Callable
    inputs: List[Input] = field(default_factory=list)
    torch: bool = True        # compare with PyTorch (False: fastdl's random numbers decide)


def _arrays(case: Case, dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in case.inputs:
        if spec.kind.startswith("labels"):
            classes = int(spec.kind.split(":")[1])
            arrays.append(rng.integers(0, classes, spec.shape).astype(np.int64))
            continue
        values = rng.standard_normal(spec.shape)
        if spec.kind == "unit":
            values = 0.05 + 0.9 * rng.random(spec.shape)
        elif spec.kind == "probability":
            values = rng.random(spec.shape) + 0.1
            values /= values.sum(axis=-1, keepdims=True)
        elif spec.kind == "logprob":
            values = values - np.log(np.exp(values).sum(axis=1, keepdims=True))
        arrays.append(values.astype(dtype))
    return arrays


def run(lib, case: Case, device: str, dtype=np.float64, seed: int = 0):
    """(output, [grad of each input or None]) as NumPy arrays."""
    arrays = _arrays(case, dtype, seed)
    tensors = []
    for array, spec in zip(arrays, case.inputs):
        grad = spec.grad and array.dtype.kind == "f"
        tensors.append(lib.tensor(array, requires_grad=grad, device=device))
    out = case.fn(lib.nn.functional, lib, *tensors)
    if out.requires_grad:
        seed_grad = np.random.default_rng(seed + 1).standard_normal(tuple(out.shape)).astype(dtype)
        out.backward(lib.tensor(seed_grad, device=device))
    grads = [None if t.grad is None else t.grad.detach().cpu().numpy() for t in tensors]
    return out.detach().cpu().numpy(), grads


def _batch_norm(training: bool):
    def fn(F, lib, x, w, b):
        channels = x.shape[1]
        mean = lib.full((channels,), 0.5, dtype=x.dtype, device=x.device)
        var = lib.full((channels,), 1.5, dtype=x.dtype, device=x.device)
        return F.batch_norm(x, mean.detach(), var.detach(), w, b, training=training, momentum=0.1, eps=1e-5)
    return fn


CASES = [
    # ------------------------------------------------------------------ convolution, linear
    Case("conv2d", lambda F, lib, x, w, b: F.conv2d(x, w, b, padding=1),
         [Input((4, 3, 9, 9)), Input((8, 3, 3, 3)), Input((8,))]),
    Case("conv2d_stride_dilation", lambda F, lib, x, w, b: F.conv2d(x, w, b, stride=2, padding=2, dilation=2),
         [Input((3, 4, 11, 10)), Input((5, 4, 3, 3)), Input((5,))]),
    Case("conv2d_groups_nobias", lambda F, lib, x, w: F.conv2d(x, w, None, stride=(1, 2), padding=(0, 1), groups=2),
         [Input((2, 4, 7, 8)), Input((6, 2, 3, 2))]),
    Case("conv2d_7x7_s2", lambda F, lib, x, w, b: F.conv2d(x, w, b, stride=2, padding=3),
         [Input((2, 3, 20, 20)), Input((4, 3, 7, 7)), Input((4,))]),
    Case("conv2d_weight_only", lambda F, lib, x, w, b: F.conv2d(x, w, b, padding=1),
         [Input((2, 3, 6, 6), grad=False), Input((4, 3, 3, 3)), Input((4,), grad=False)]),
    Case("conv1d", lambda F, lib, x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
         [Input((3, 4, 20)), Input((5, 4, 3)), Input((5,))]),
    Case("linear", lambda F, lib, x, w, b: F.linear(x, w, b),
         [Input((70, 33)), Input((65, 33)), Input((65,))]),
    Case("linear_3d_nobias", lambda F, lib, x, w: F.linear(x, w),
         [Input((2, 5, 9)), Input((4, 9))]),
    # ------------------------------------------------------------------ pooling
    Case("max_pool2d", lambda F, lib, x: F.max_pool2d(x, 3, 2, 1), [Input((2, 3, 9, 9))]),
    Case("max_pool2d_ceil_dilation", lambda F, lib, x: F.max_pool2d(x, 2, 2, 0, dilation=2, ceil_mode=True),
         [Input((2, 2, 10, 9))]),
    Case("max_pool2d_2x2", lambda F, lib, x: F.max_pool2d(x, 2), [Input((3, 4, 8, 8))]),
    Case("avg_pool2d", lambda F, lib, x: F.avg_pool2d(x, 3, 2, 1), [Input((2, 3, 9, 9))]),
    Case("avg_pool2d_exclude_pad_ceil", lambda F, lib, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                                                      count_include_pad=False),
         [Input((2, 3, 10, 9))]),
    Case("avg_pool2d_divisor", lambda F, lib, x: F.avg_pool2d(x, 2, 1, 1, divisor_override=3),
         [Input((1, 2, 6, 5))]),
    Case("adaptive_avg_pool2d", lambda F, lib, x: F.adaptive_avg_pool2d(x, (4, 3)), [Input((2, 3, 9, 7))]),
    Case("adaptive_avg_pool2d_up", lambda F, lib, x: F.adaptive_avg_pool2d(x, (7, 5)), [Input((1, 2, 3, 4))]),
    Case("adaptive_avg_pool2d_global", lambda F, lib, x: F.adaptive_avg_pool2d(x, 1), [Input((3, 4, 6, 6))]),
    # ------------------------------------------------------------------ normalization, activations
    Case("batch_norm_train", _batch_norm(True), [Input((4, 3, 5, 5)), Input((3,)), Input((3,))]),
    Case("batch_norm_eval", _batch_norm(False), [Input((4, 3, 5)), Input((3,)), Input((3,))]),
    Case("relu", lambda F, lib, x: F.relu(x), [Input((5, 7))]),
    Case("sigmoid", lambda F, lib, x: F.sigmoid(x) if hasattr(F, "sigmoid") else lib.sigmoid(x), [Input((5, 7))]),
    Case("tanh", lambda F, lib, x: F.tanh(x) if hasattr(F, "tanh") else lib.tanh(x), [Input((5, 7))]),
    Case("leaky_relu", lambda F, lib, x: F.leaky_relu(x, 0.2), [Input((5, 7))]),
    # ------------------------------------------------------------------ softmax and losses
    Case("softmax", lambda F, lib, x: F.softmax(x, dim=1), [Input((6, 10))]),
    Case("log_softmax", lambda F, lib, x: F.log_softmax(x, dim=1), [Input((6, 10))]),
    Case("softmax_inner", lambda F, lib, x: F.softmax(x, dim=1), [Input((4, 5, 3))]),
    Case("log_softmax_dim0", lambda F, lib, x: F.log_softmax(x, dim=0), [Input((4, 5, 3))]),
    Case("cross_entropy", lambda F, lib, x, t: F.cross_entropy(x, t),
         [Input((16, 10)), Input((16,), "labels:10")]),
    Case("cross_entropy_1000", lambda F, lib, x, t: F.cross_entropy(x, t),
         [Input((64, 1000)), Input((64,), "labels:1000")]),
    Case("cross_entropy_weight_ignore", lambda F, lib, x, t, w: F.cross_entropy(x, t, w.detach(), ignore_index=2),
         [Input((16, 5)), Input((16,), "labels:5"), Input((5,), "unit", grad=False)]),
    Case("cross_entropy_smoothing_sum", lambda F, lib, x, t: F.cross_entropy(x, t, reduction="sum",
                                                                             label_smoothing=0.1),
         [Input((16, 7)), Input((16,), "labels:7")]),
    Case("cross_entropy_none", lambda F, lib, x, t: F.cross_entropy(x, t, reduction="none"),
         [Input((16, 7)), Input((16,), "labels:7")]),
    Case("nll_loss", lambda F, lib, x, t: F.nll_loss(x, t), [Input((8, 5), "logprob"), Input((8,), "labels:5")]),
    Case("nll_loss_spatial_weight_none",
         lambda F, lib, x, t, w: F.nll_loss(x, t, w.detach(), reduction="none"),
         [Input((4, 5, 3), "logprob"), Input((4, 3), "labels:5"), Input((5,), "unit", grad=False)]),
    Case("mse_loss", lambda F, lib, x, y: F.mse_loss(x, y), [Input((6, 7)), Input((6, 7))]),
    Case("mse_loss_none", lambda F, lib, x, y: F.mse_loss(x, y, reduction="none"), [Input((6, 7)), Input((6, 7))]),
    Case("l1_loss_sum", lambda F, lib, x, y: F.l1_loss(x, y, reduction="sum"), [Input((6, 7)), Input((6, 7))]),
    Case("binary_cross_entropy", lambda F, lib, x, y: F.binary_cross_entropy(x, y),
         [Input((6, 7), "unit"), Input((6, 7), "unit", grad=False)]),
    Case("binary_cross_entropy_with_logits", lambda F, lib, x, y: F.binary_cross_entropy_with_logits(x, y),
         [Input((6, 7)), Input((6, 7), "unit")]),
    Case("kl_div", lambda F, lib, x, y: F.kl_div(x, y, reduction="batchmean"),
         [Input((6, 7), "logprob"), Input((6, 7), "probability")]),
    Case("kl_div_log_target", lambda F, lib, x, y: F.kl_div(x, y, reduction="sum", log_target=True),
         [Input((6, 7), "logprob"), Input((6, 7), "logprob")]),
    # ------------------------------------------------------------------ cross-entropy, the rest
    Case("cross_entropy_probabilities", lambda F, lib, x, t: F.cross_entropy(x, t),
         [Input((16, 10)), Input((16, 10), "probability", grad=False)]),
    Case("cross_entropy_probabilities_weight_smoothing_sum",
         lambda F, lib, x, t, w: F.cross_entropy(x, t, w.detach(), reduction="sum", label_smoothing=0.2),
         [Input((9, 300)), Input((9, 300), "probability", grad=False), Input((300,), "unit", grad=False)]),
    Case("cross_entropy_probabilities_none_1d", lambda F, lib, x, t: F.cross_entropy(x, t, reduction="none"),
         [Input((7,)), Input((7,), "probability", grad=False)]),
    Case("cross_entropy_probabilities_spatial_none",
         lambda F, lib, x, t: F.cross_entropy(x, t, reduction="none", label_smoothing=0.1),
         [Input((2, 5, 3, 4)), Input((2, 5, 3, 4), "unit", grad=False)]),  # weights need not sum to 1
    Case("cross_entropy_smoothing_none_weight",
         lambda F, lib, x, t, w: F.cross_entropy(x, t, w.detach(), reduction="none", label_smoothing=0.15),
         [Input((16, 7)), Input((16,), "labels:7"), Input((7,), "unit", grad=False)]),
    Case("cross_entropy_spatial", lambda F, lib, x, t: F.cross_entropy(x, t),
         [Input((2, 5, 3, 4)), Input((2, 3, 4), "labels:5")]),
    Case("cross_entropy_spatial_none_smoothing",
         lambda F, lib, x, t, w: F.cross_entropy(x, t, w.detach(), reduction="none", label_smoothing=0.1,
                                                 ignore_index=1),
         [Input((3, 4, 5)), Input((3, 5), "labels:4"), Input((4,), "unit", grad=False)]),
    # ------------------------------------------------------------------ weighted element-wise losses
    Case("binary_cross_entropy_weight", lambda F, lib, x, y, w: F.binary_cross_entropy(x, y, w.detach()),
         [Input((6, 7), "unit"), Input((6, 7), "unit", grad=False), Input((6, 7), "unit", grad=False)]),
    Case("binary_cross_entropy_weight_rows",
         lambda F, lib, x, y, w: F.binary_cross_entropy(x, y, w.detach(), reduction="none"),
         [Input((6, 7), "unit"), Input((6, 7), "unit", grad=False), Input((6, 1), "unit", grad=False)]),
    Case("bce_with_logits_weight_pos_weight",
         lambda F, lib, x, y, w, p: F.binary_cross_entropy_with_logits(x, y, w.detach(), pos_weight=p.detach()),
         [Input((6, 7)), Input((6, 7), "unit"), Input((7,), "unit", grad=False), Input((7,), "unit", grad=False)]),
    Case("mse_loss_weight", lambda F, lib, x, y, w: F.mse_loss(x, y, weight=w.detach()),
         [Input((6, 7)), Input((6, 7)), Input((6, 7), "unit", grad=False)]),
    # ------------------------------------------------------------------ dropout, pad, one_hot
    Case("dropout", lambda F, lib, x: (lib.manual_seed(7), F.dropout(x, 0.3))[1],
         [Input((5, 33, 7))], torch=False),
    Case("dropout_module_train", lambda F, lib, x: (lib.manual_seed(3), lib.nn.Dropout(0.6)(x))[1],
         [Input((4, 100))], torch=False),
    Case("pad", lambda F, lib, x: F.pad(x, (1, 2, 0, 3)), [Input((2, 3, 4, 5))]),
    Case("pad_value_3d", lambda F, lib, x: F.pad(x, (2, 0, 1, 1, 0, 2), value=0.5), [Input((2, 3, 4))]),
    Case("one_hot", lambda F, lib, t: F.one_hot(t, 6), [Input((3, 4), "labels:5")]),
    Case("one_hot_inferred", lambda F, lib, t: F.one_hot(t), [Input((9,), "labels:4")]),
    # ------------------------------------------------------------------ tensor arithmetic, layout
    Case("arithmetic", lambda F, lib, x, y: (x - y) * x / (y * y + 2.0) - 3.0 * (-x) + 1.5 / (y + 1.0),
         [Input((5, 7)), Input((5, 7), "unit")]),
    Case("arithmetic_scalars", lambda F, lib, x: (2.0 - x) / 4.0 - x * 0.5 + 1.0,
         [Input((300,))]),
    Case("sum_mean", lambda F, lib, x, y: x.sum() * 0.5 + (x * y).mean(), [Input((4, 9)), Input((4, 9))]),
    Case("sum_keepdim", lambda F, lib, x: x.sum(dim=(0, 1), keepdim=True) * 2.0, [Input((3, 5))]),
    Case("sum_dims", lambda F, lib, x: x.sum(dim=(0, 2)) * 2.0 + x.mean(dim=(0, 2)), [Input((3, 4, 5, 2))]),
    Case("mean_keepdim_broadcast", lambda F, lib, x: x - x.mean(1, keepdim=True), [Input((3, 4, 5))]),
    Case("sum_rows_long", lambda F, lib, x: x.sum(0), [Input((700, 3))]),
    Case("broadcasting", lambda F, lib, x, b, s: (x - b) * s / (s * s + 1.0) + x ** 2,
         [Input((4, 3, 5)), Input((5,)), Input((3, 1))]),
    Case("scalar_tensor_operand", lambda F, lib, x, s: x * s - s, [Input((6, 2)), Input(())]),
    Case("mse_loss_broadcast", lambda F, lib, x, y: F.mse_loss(x, y), [Input((6, 7)), Input((1, 7))]),
    Case("permute", lambda F, lib, x: x.permute(2, 0, 3, 1) * 2.0, [Input((2, 3, 4, 5))]),
    Case("transpose_t", lambda F, lib, x: x.t() - 1.0, [Input((6, 4))]),
]

CASE_IDS = [case.name for case in CASES]


# ---------------------------------------------------------------------- optimizers
OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=1e-1)),
    ("Adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-2)),
]
OPTIMIZER_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in options.items())}" for name, options in OPTIMIZERS]


def run_optimizer(lib, name: str, options: dict, device: str, dtype=np.float32, steps: int = 5,
                  shapes=((31, 7), (100,), (3, 4, 5))):
    """Parameters after `steps` steps on fixed gradients (a different one each step)."""
    rng = np.random.default_rng(3)
    starts = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    params = [lib.tensor(a, requires_grad=True, device=device) for a in starts]
    optimizer = getattr(lib.optim, name)(params, **options)
    for step in range(steps):
        for p, g in zip(params, grads[step]):
            p.grad = lib.tensor(g, device=device)
        optimizer.step()
    return [p.detach().cpu().numpy() for p in params]
