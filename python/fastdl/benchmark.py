"""Timing helpers and the conv2d benchmark (fastdl vs NumPy vs PyTorch, one process).

Benchmarks are not tests: each case checks its answer first, warms up, then reports
the median of repeats. Used by ``python -m fastdl demo`` and ``benchmarks/``.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["median_ms", "sgemm_peak_gflops", "conv2d_benchmark", "format_conv2d_table",
           "DEFAULT_CONV2D_SHAPES"]

# (N, C, H, W, out_channels, kernel, stride, padding)
DEFAULT_CONV2D_SHAPES: List[Tuple[int, ...]] = [
    (64, 1, 28, 28, 32, 3, 1, 1),
    (64, 32, 14, 14, 64, 3, 1, 1),
    (32, 64, 16, 16, 128, 3, 1, 1),
]


def median_ms(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def sgemm_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 GEMM speed through NumPy's BLAS: the yardstick for GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    return 2.0 * size ** 3 / median_ms(lambda: a @ b, repeats) / 1e6


def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def conv2d_benchmark(shapes: Optional[Sequence[Tuple[int, ...]]] = None, repeats: int = 5,
                     with_torch: bool = True) -> List[Dict]:
    """Time conv2d forward+backward (input, weight and bias gradients) in fastdl, in the
    NumPy reference (sliding windows + einsum/BLAS) and, if installed, in PyTorch."""
    import fastdl
    from . import reference
    from .nn import functional as F

    torch = None
    if with_torch:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    rng = np.random.default_rng(0)
    rows = []
    for n, c, h, w, o, k, s, p in (shapes or DEFAULT_CONV2D_SHAPES):
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
            return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()

        def run_numpy():
            out = reference.conv2d_forward(x, weight, bias, (s, s), (p, p))
            gx, gw, _ = reference.conv2d_backward(x, weight, grad, (s, s), (p, p))
            return out, gx, gw

        for got, want in zip(run_fastdl(), run_numpy()):  # check the answer before timing it
            scale = float(np.abs(want).max()) or 1.0
            if not np.allclose(got, want, rtol=1e-3, atol=1e-4 * scale):
                raise AssertionError(f"conv2d disagrees with NumPy on {(n, c, h, w, o, k, s, p)}")
        flops = 3 * 2.0 * n * o * c * k * k * oh * ow  # forward GEMM and two backward GEMMs
        row = {"shape": f"{n}x{c}x{h}x{w}->{o} {k}x{k} s{s} p{p}", "gflop": flops / 1e9,
               "fastdl_ms": median_ms(run_fastdl, repeats), "numpy_ms": median_ms(run_numpy, repeats),
               "torch_ms": None}
        if torch is not None:
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
            tg = torch.tensor(grad)

            def run_torch():
                tx.grad = tw.grad = tb.grad = None
                torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p).backward(tg)

            row["torch_ms"] = median_ms(run_torch, repeats)
        rows.append(row)
    return rows


def format_conv2d_table(rows: List[Dict], threads: int, peak: Optional[float] = None) -> str:
    head = (f"conv2d forward+backward, float32, {threads} thread(s), median of repeats"
            + (f"; sgemm peak {peak:.0f} GFLOP/s" if peak else ""))
    lines = [head, f"{'shape':<28} {'fastdl ms':>9} {'NumPy ms':>9} {'torch ms':>9} "
                   f"{'NumPy/fastdl':>12} {'torch/fastdl':>12} {'GFLOP/s':>8}"
             + ("  % peak" if peak else "")]
    for r in rows:
        gflops = r["gflop"] / r["fastdl_ms"] * 1e3
        torch_ms = f"{r['torch_ms']:9.2f}" if r["torch_ms"] else f"{'-':>9}"
        torch_ratio = f"{r['torch_ms'] / r['fastdl_ms']:11.2f}x" if r["torch_ms"] else f"{'-':>12}"
        line = (f"{r['shape']:<28} {r['fastdl_ms']:9.2f} {r['numpy_ms']:9.2f} {torch_ms} "
                f"{r['numpy_ms'] / r['fastdl_ms']:11.2f}x {torch_ratio} {gflops:8.1f}")
        if peak:
            line += f"  {100 * gflops / peak:5.1f}%"
        lines.append(line)
    return "\n".join(lines)
