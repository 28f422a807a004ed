"""conv2d forward+backward: fastdl vs NumPy (im2col with sliding windows + BLAS) vs PyTorch."""
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


def _case(shape: Sequence[int], with_torch: bool = True) -> Dict:
    import fastdl
    from fastdl.nn import functional as F
    n, c, h, w, o, k, s, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    weight = (rng.standard_normal((o, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(o, dtype=np.float32)
    oh, ow = _out(h, k, s, p), _out(w, k, s, p)
    grad = rng.standard_normal((n, o, oh, ow), dtype=np.float32)
    xt, wt, bt = (fastdl.tensor(a, requires_grad=True) for a in (x, weight, bias))

    def run_fastdl():
        xt.grad = wt.grad = bt.grad = None
        out = F.conv2d(xt, wt, bt, stride=s, padding=p)
        out.backward(grad)
        return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    def run_numpy():
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
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p).backward(tg)

    flops = 3 * 2.0 * n * o * c * k * k * oh * ow  # forward GEMM and two backward GEMMs
    return {"name": f"conv2d {n}x{c}x{h}x{w}->{o} k{k} s{s} p{p} f+b", "fastdl": run_fastdl,
            "numpy": run_numpy, "torch": run_torch, "flops": flops, "bytes": None, "check": check}


def cases(threads: int) -> List[Dict]:
    return [_case(shape) for shape in SHAPES]


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
