"""conv2d forward+backward: fastdl vs NumPy (im2col with sliding windows + BLAS) vs PyTorch.

GFLOP/s count direct-convolution flops (2*N*O*C*KH*KW*OH*OW per product) for every
algorithm. fastdl runs 3x3 stride-1 convolutions with >= 8 channels as Winograd F(2x2,3x3),
which does 2.25x fewer multiplications, so those rows can exceed the sgemm peak; each such
shape also gets an "(im2col)" row timing fastdl's im2col+GEMM path on the same work, and
every shape a "fwd" row (forward alone) so the backward/forward ratio can be read off."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# (N, C, H, W, out_channels, kernel, stride, padding) — the benchmark shapes.
SHAPES: List[Tuple[int, ...]] = [
    (64, 1, 28, 28, 32, 3, 1, 1),
    (64, 32, 14, 14, 64, 3, 1, 1),
    (32, 64, 32, 32, 128, 3, 1, 1),
    (32, 128, 16, 16, 128, 3, 2, 1),
    (8, 3, 224, 224, 64, 7, 2, 3),
    (16, 64, 28, 28, 64, 3, 1, 1, 64),  # depthwise (MobileNet): a 9th entry is the groups
]
# The demo's quick table: the first two shapes and a mid-size one.
DEMO_SHAPES: List[Tuple[int, ...]] = [SHAPES[0], SHAPES[1], (32, 64, 16, 16, 128, 3, 1, 1)]


def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def numpy_conv2d(x, weight, bias, grad, stride: int, padding: int):
    """The best plain NumPy: im2col by sliding_window_view, one GEMM per product, and the
    input gradient folded back with K*K strided adds."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    oh, ow = grad.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)  # copies
    w2 = weight.reshape(o, -1)
    out = (cols @ w2.T).reshape(n, oh, ow, o).transpose(0, 3, 1, 2) + bias[None, :, None, None]
    g2 = grad.transpose(0, 2, 3, 1).reshape(-1, o)
    grad_w = (g2.T @ cols).reshape(weight.shape)
    grad_b = grad.sum(axis=(0, 2, 3))
    dcols = (g2 @ w2).reshape(n, oh, ow, c, k, k)
    grad_xp = np.zeros_like(xp)
    for i in range(k):
        for j in range(k):
            grad_xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += \
                dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    grad_x = grad_xp[:, :, padding:padding + h, padding:padding + w]
    return out, grad_x, grad_w, grad_b


def numpy_conv2d_forward(x, weight, bias, stride: int, padding: int):
    """The forward half of numpy_conv2d."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = windows.shape[2:4]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)
    return ((cols @ weight.reshape(o, -1).T).reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
            + bias[None, :, None, None],)


def numpy_depthwise_conv2d(x, weight, bias, grad, padding: int, forward_only: bool = False):
    """The best plain NumPy for a depthwise (groups = channels), stride-1 convolution:
    sliding windows and einsum, the input gradient folded back with K*K shifted adds."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(xp, (k, k), axis=(2, 3))
    w2 = weight[:, 0]
    out = np.einsum("nchwij,cij->nchw", windows, w2, optimize=True) + bias[None, :, None, None]
    if forward_only:
        return (out,)
    grad_w = np.einsum("nchwij,nchw->cij", windows, grad, optimize=True)[:, None]
    grad_xp = np.zeros_like(xp)
    oh, ow = grad.shape[2:]
    for i in range(k):
        for j in range(k):
            grad_xp[:, :, i:i + oh, j:j + ow] += grad * w2[None, :, i, j, None, None]
    return out, grad_xp[:, :, padding:padding + h, padding:padding + w], grad_w, grad.sum(axis=(0, 2, 3))


def _case(shape: Sequence[int], with_torch: bool = True, algorithm: str = "auto",
          forward_only: bool = False) -> Dict:
    import fastdl
    from fastdl import _C
    from fastdl.nn import functional as F
    n, c, h, w, o, k, s, p = shape[:8]
    groups = shape[8] if len(shape) > 8 else 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    weight = (rng.standard_normal((o, c // groups, k, k), dtype=np.float32)
              / np.sqrt(c // groups * k * k)).astype(np.float32)
    bias = rng.standard_normal(o, dtype=np.float32)
    oh, ow = _out(h, k, s, p), _out(w, k, s, p)
    grad = rng.standard_normal((n, o, oh, ow), dtype=np.float32)
    xt, wt, bt = (fastdl.tensor(a, requires_grad=True) for a in (x, weight, bias))

    def run_fastdl_auto():
        if forward_only:
            with fastdl.no_grad():
                return (F.conv2d(xt, wt, bt, stride=s, padding=p, groups=groups).numpy(),)
        xt.grad = wt.grad = bt.grad = None
        out = F.conv2d(xt, wt, bt, stride=s, padding=p, groups=groups)
        out.backward(grad)
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    def run_fastdl():
        if algorithm == "auto":
            return run_fastdl_auto()
        _C._set_winograd(False)
        try:
            return run_fastdl_auto()
        finally:
            _C._set_winograd(True)

    def run_numpy():
        if groups > 1:  # depthwise, stride 1
            return numpy_depthwise_conv2d(x, weight, bias, grad, p, forward_only)
        if forward_only:
            return numpy_conv2d_forward(x, weight, bias, s, p)
        return numpy_conv2d(x, weight, bias, grad, s, p)

    def check():
        for got, want in zip(run_fastdl(), run_numpy()):
            scale = float(np.abs(want).max()) or 1.0
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)

    run_torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
            tg = torch.tensor(grad)

            def run_torch():
                if forward_only:
                    with torch.no_grad():
                        return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=groups)
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=groups).backward(tg)

    products = 1 if forward_only else 3  # forward; grad of input; grad of weight
    flops = products * 2.0 * n * o * (c // groups) * k * k * oh * ow
    label = ("fwd" if forward_only else "f+b") + (" (im2col)" if algorithm == "im2col" else "")
    label = (f"g{groups} " if groups > 1 else "") + label
    return {"name": f"conv2d {n}x{c}x{h}x{w}->{o} k{k} s{s} p{p} {label}", "fastdl": run_fastdl,
            "numpy": run_numpy, "torch": run_torch, "flops": flops, "bytes": None, "check": check}


def winograd_applies(shape: Sequence[int]) -> bool:
    """fastdl's rule (csrc/cpu/winograd.cpp) for the benchmark's square shapes."""
    n, c, h, w, o, k, s, p = shape[:8]
    groups = shape[8] if len(shape) > 8 else 1
    fewest = 8 if groups == 1 else 2
    return (k == 3 and s == 1 and c // groups >= fewest and o // groups >= fewest and p <= 2
            and _out(h, k, s, p) >= 2)


def cases(threads: int) -> List[Dict]:
    out = []
    for shape in SHAPES:
        out.append(_case(shape))
        out.append(_case(shape, forward_only=True))
        if winograd_applies(shape):
            out.append(_case(shape, algorithm="im2col"))
    return out


def conv2d_benchmark(shapes: Optional[Sequence[Tuple[int, ...]]] = None, repeats: int = 5,
                     with_torch: bool = True) -> List[Dict]:
    """The demo's table: conv2d forward+backward in fastdl vs NumPy (and PyTorch)."""
    from . import median_ms
    rows = []
    for shape in shapes or DEMO_SHAPES:
        case = _case(shape, with_torch)
        case["check"]()
        rows.append({"name": case["name"], "gflop": case["flops"] / 1e9,
                     "fastdl_ms": median_ms(case["fastdl"], repeats),
                     "numpy_ms": median_ms(case["numpy"], repeats),
                     "torch_ms": median_ms(case["torch"], repeats) if case["torch"] else None})
    return rows


def format_conv2d_table(rows: List[Dict], threads: int, peak: Optional[float] = None) -> str:
    head = (f"conv2d forward+backward, float32, {threads} thread(s), median of repeats"
            + (f"; sgemm peak {peak:.0f} GFLOP/s" if peak else ""))
    lines = [head, f"{'case':<38} {'fastdl ms':>9} {'NumPy ms':>9} {'torch ms':>9} "
                   f"{'NumPy/fastdl':>12} {'torch/fastdl':>12} {'GFLOP/s':>8}"]
    for r in rows:
        gflops = r["gflop"] / r["fastdl_ms"] * 1e3
        torch_ms = f"{r['torch_ms']:9.2f}" if r["torch_ms"] else f"{'-':>9}"
        torch_ratio = f"{r['torch_ms'] / r['fastdl_ms']:11.2f}x" if r["torch_ms"] else f"{'-':>12}"
        lines.append(f"{r['name']:<38} {r['fastdl_ms']:9.2f} {r['numpy_ms']:9.2f} {torch_ms} "
                     f"{r['numpy_ms'] / r['fastdl_ms']:11.2f}x {torch_ratio} {gflops:8.1f}")
    return "\n".join(lines)
