"""Pooling forward+backward: fastdl vs the best NumPy vs PyTorch, in one process.

    python benchmarks/pool.py [--threads 1 2] [--repeats 5] [--small]

Cases: max / avg pooling 2x2 stride 2 and 3x3 stride 2 padding 1, adaptive average to 1x1
and to 7x7, on 64x64x32x32 and 16x64x128x128 float32 (16M elements). Every callable runs
the forward pass and the backward pass of a random upstream gradient. "fastdl" goes
through the public API (autograd included: the leaf's .grad is a fresh copy of the input
gradient); "kernels" calls the two C++ kernels alone. Memory-bound ops: the compulsory
bytes are input + output + grad_output + grad_input, and the yardstick is this machine's
copy bandwidth (np.copyto of 256 MB, counting read + write).
"""
from __future__ import annotations

import argparse

import numpy as np

import fastdl
import fastdl.nn.functional as F
from fastdl import _C
from fastdl.bench import copy_bandwidth_gbs, median_ms

try:
    import torch
except ImportError:  # the torch column then reads "-"
    torch = None

SHAPES = [(64, 64, 32, 32), (16, 64, 128, 128)]


# ---------------------------------------------------------------------- the best NumPy
def _views(a, kernel, stride, out_h, out_w):
    """The strided views a[..., i + stride*y, j + stride*x], kernel offsets in row-major order."""
    return [(i, j, a[:, :, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride])
            for i in range(kernel) for j in range(kernel)]


def _padded(x, pad, value):
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * pad, w + 2 * pad), value, dtype=x.dtype)
    xp[:, :, pad:pad + h, pad:pad + w] = x
    return xp


def numpy_max_pool(x, g, kernel, stride, pad):
    xp = _padded(x, pad, -np.inf) if pad else x
    oh, ow = g.shape[2:]
    views = _views(xp, kernel, stride, oh, ow)
    out = views[0][2].copy()
    for _, _, v in views[1:]:
        np.maximum(out, v, out=out)
    # Gradient to the first maximum of each window (PyTorch's rule for ties).
    grad = np.zeros_like(xp)
    grad_views = _views(grad, kernel, stride, oh, ow)
    pending = np.ones(out.shape, dtype=bool)
    for (_, _, v), (_, _, gv) in zip(views, grad_views):
        hit = (v == out) & pending
        gv += np.where(hit, g, 0)
        pending &= ~hit
    return out, grad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]] if pad else grad


def numpy_avg_pool(x, g, kernel, stride, pad):
    xp = _padded(x, pad, 0) if pad else x
    oh, ow = g.shape[2:]
    views = _views(xp, kernel, stride, oh, ow)
    out = views[0][2].copy()
    for _, _, v in views[1:]:
        out += v
    out *= x.dtype.type(1 / kernel ** 2)
    if kernel == stride and not pad:  # windows tile the input: write, no accumulation
        grad = np.empty_like(x)
        share = g * x.dtype.type(1 / kernel ** 2)
        for _, _, gv in _views(grad, kernel, stride, oh, ow):
            gv[...] = share
        return out, grad
    grad = np.zeros_like(xp)
    share = g * x.dtype.type(1 / kernel ** 2)
    for _, _, gv in _views(grad, kernel, stride, oh, ow):
        gv += share
    return out, grad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]] if pad else grad


def _adaptive_windows(size, out):
    return [(o * size // out, -(-(o + 1) * size // out)) for o in range(out)]


def numpy_adaptive_avg_pool(x, g, size):
    n, c, h, w = x.shape
    if size == 1:
        out = x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)
        grad = np.empty_like(x)
        np.copyto(grad, g / (h * w))
        return out, grad
    rows, cols = _adaptive_windows(h, size), _adaptive_windows(w, size)
    by_rows = np.stack([x[:, :, r0:r1].sum(axis=2) / (r1 - r0) for r0, r1 in rows], axis=2)
    out = np.stack([by_rows[:, :, :, c0:c1].sum(axis=3) / (c1 - c0) for c0, c1 in cols], axis=3)
    spread = np.zeros((n, c, size, w), dtype=x.dtype)
    for j, (c0, c1) in enumerate(cols):
        spread[:, :, :, c0:c1] += (g[:, :, :, j] / (c1 - c0))[..., None]
    grad = np.zeros_like(x)
    for i, (r0, r1) in enumerate(rows):
        grad[:, :, r0:r1] += (spread[:, :, i] / (r1 - r0))[:, :, None, :]
    return out, grad


# ---------------------------------------------------------------------- the cases
def _fastdl_case(op, x, g):
    def run():
        leaf = fastdl.Tensor(x, requires_grad=True)
        out = op(leaf)
        out.backward(g)
        return out.detach().numpy(), leaf.grad.numpy()
    return run


def _torch_case(op, x, g):
    if torch is None:
        return None
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)

    def run():
        leaf = xt.detach().requires_grad_()
        op(leaf).backward(gt)
        return leaf.grad
    return run


def cases(threads: int):
    fastdl.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    result = []
    for shape in SHAPES:
        x = rng.standard_normal(shape, dtype=np.float32)
        label = "x".join(map(str, shape))
        specs = []
        for kernel, stride, pad in [(2, 2, 0), (3, 2, 1)]:
            oh = (shape[2] + 2 * pad - kernel) // stride + 1
            ow = (shape[3] + 2 * pad - kernel) // stride + 1
            specs.append((f"max_pool {kernel}x{kernel} s{stride} p{pad}", (oh, ow),
                          lambda t, k=kernel, s=stride, p=pad: F.max_pool2d(t, k, s, p),
                          lambda t, k=kernel, s=stride, p=pad: torch.nn.functional.max_pool2d(t, k, s, p),
                          lambda x, g, k=kernel, s=stride, p=pad: numpy_max_pool(x, g, k, s, p),
                          lambda x, g, k=kernel, s=stride, p=pad: _C.max_pool2d_backward(
                              g, _C.max_pool2d_forward(x, (k, k), (s, s), (p, p), (1, 1), False, True, True)[1], x.shape,
                              (k, k), (s, s), (p, p), (1, 1))))
            specs.append((f"avg_pool {kernel}x{kernel} s{stride} p{pad}", (oh, ow),
                          lambda t, k=kernel, s=stride, p=pad: F.avg_pool2d(t, k, s, p),
                          lambda t, k=kernel, s=stride, p=pad: torch.nn.functional.avg_pool2d(t, k, s, p),
                          lambda x, g, k=kernel, s=stride, p=pad: numpy_avg_pool(x, g, k, s, p),
                          lambda x, g, k=kernel, s=stride, p=pad: (
                              _C.avg_pool2d_forward(x, (k, k), (s, s), (p, p), False, True, None),
                              _C.avg_pool2d_backward(g, x.shape, (k, k), (s, s), (p, p), False, True, None))))
        for size in (1, 7):
            specs.append((f"adaptive_avg {size}x{size}", (size, size),
                          lambda t, o=size: F.adaptive_avg_pool2d(t, o),
                          lambda t, o=size: torch.nn.functional.adaptive_avg_pool2d(t, o),
                          lambda x, g, o=size: numpy_adaptive_avg_pool(x, g, o),
                          lambda x, g, o=size: (_C.adaptive_avg_pool2d_forward(x, (o, o)),
                                                _C.adaptive_avg_pool2d_backward(g, x.shape))))
        for name, out_hw, op, torch_op, numpy_op, kernels in specs:
            g = rng.standard_normal(shape[:2] + out_hw, dtype=np.float32)
            run = _fastdl_case(op, x, g)

            def check(run=run, numpy_op=numpy_op, x=x, g=g):
                out, grad = run()
                expected_out, expected_grad = numpy_op(x, g)
                np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-5)
                np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-5)

            result.append({
                "name": f"{name} {label}",
                "fastdl": run,
                "kernels": lambda kernels=kernels, x=x, g=g: kernels(x, g),
                "numpy": lambda numpy_op=numpy_op, x=x, g=g: numpy_op(x, g),
                "torch": _torch_case(torch_op, x, g) if torch is not None else None,
                # Compulsory: x read and the output written (forward), grad_output read and
                # grad_input written (backward). max_pool's indices (autograd keeps one-byte
                # window codes on the flat 3x3 kernels, else int32 ones: written, then read)
                # are bookkeeping, not counted.
                "bytes": 2 * (x.nbytes + g.nbytes),
                "flops": None,
                "check": check,
            })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="only the 64x64x32x32 cases")
    args = parser.parse_args()
    if args.small:
        SHAPES[:] = SHAPES[:1]
    for threads in args.threads:
        fastdl.set_num_threads(threads)
        bandwidth = copy_bandwidth_gbs(threads)
        print(f"\nthreads={threads}  copy bandwidth {bandwidth:.1f} GB/s  (target: within 2x of bytes / bandwidth)")
        print(f"{'case':<42}{'fastdl ms':>10}{'kernels':>9}{'NumPy ms':>10}{'torch ms':>10}"
              f"{'NumPy/fdl':>10}{'torch/fdl':>10}{'GB/s':>7}{'x bound':>8}")
        for case in cases(threads):
            case["check"]()
            fast = median_ms(case["fastdl"], args.repeats)
            kernels = median_ms(case["kernels"], args.repeats)
            slow = median_ms(case["numpy"], args.repeats)
            ref = median_ms(case["torch"], args.repeats) if case["torch"] else float("nan")
            bound = case["bytes"] / bandwidth / 1e6
            print(f"{case['name']:<42}{fast:>10.2f}{kernels:>9.2f}{slow:>10.2f}{ref:>10.2f}"
                  f"{slow / fast:>10.1f}{ref / fast:>10.1f}{case['bytes'] / fast / 1e6:>7.1f}"
                  f"{fast / bound:>8.2f}")


if __name__ == "__main__":
    main()
