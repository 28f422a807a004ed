"""Batch norm, sigmoid / tanh / leaky_relu / relu and dropout, forward + backward:
fastdl vs the best plain NumPy vs PyTorch CPU, in one process.

    python benchmarks/norm.py [--threads N] [--repeats R]

These ops are memory-bound, so each case states its compulsory bytes (every input read
once, every output written once) and the table shows fastdl's time against the time
those bytes take at this machine's copy bandwidth, measured here with np.copyto of
256 MB (split over the threads). Results recorded on the development machine are kept in
benchmarks/results/norm.txt.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

import fastdl
import fastdl.nn.functional as F

try:
    import torch
except ImportError:  # the torch column reads "-"
    torch = None

BN_SHAPE = (64, 64, 32, 32)
ELEMENTS = 16 * 2 ** 20  # 16M


# Forward, then the op's own backward (its autograd node's closure), for fastdl; forward
# then torch.autograd.grad for torch. Neither side pays leaf-gradient accumulation: the
# fastdl engine copies every leaf gradient into a fresh .grad array (a 64 MB copy here),
# which measures the engine, not the op.
def _fastdl_forward_backward(function, x, g, params=()):
    def run():
        leaf = fastdl.Tensor(x, requires_grad=True)
        return function(leaf, *params).grad_fn.backward_fn(g)
    return run


def _torch_forward_backward(function, x, g, params=()):
    if torch is None:
        return None
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)

    def run():
        leaf = xt.detach().requires_grad_()
        return torch.autograd.grad(function(leaf, *params), [leaf, *params], gt)
    return run


# ---------------------------------------------------------------------- best NumPy per op
def _numpy_batch_norm(x, g, w, b, eps=1e-5):
    def run():
        axes = (0, 2, 3)
        count = x.size // x.shape[1]
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = np.einsum("nchw,nchw->c", centered, centered)[None, :, None, None] / count
        invstd = 1 / np.sqrt(var + eps)
        xhat = centered
        xhat *= invstd
        y = xhat * w[None, :, None, None]
        y += b[None, :, None, None]
        grad_bias = g.sum(axis=axes)
        grad_weight = np.einsum("nchw,nchw->c", g, xhat)
        gx = xhat * (grad_weight / count)[None, :, None, None]
        np.subtract(g, gx, out=gx)
        gx -= (grad_bias / count)[None, :, None, None]
        gx *= (invstd * w[None, :, None, None])
        return y, gx, grad_weight, grad_bias
    return run


def _numpy_sigmoid(x, g):
    def run():
        y = np.negative(x)
        np.exp(y, out=y)
        y += 1
        np.reciprocal(y, out=y)
        gx = np.subtract(1, y)
        gx *= y
        gx *= g
        return y, gx
    return run


def _numpy_tanh(x, g):
    def run():
        y = np.tanh(x)
        gx = np.multiply(y, y)
        np.subtract(1, gx, out=gx)
        gx *= g
        return y, gx
    return run


def _numpy_leaky_relu(x, g, slope=0.01):
    def run():
        y = np.multiply(x, np.float32(slope))
        np.maximum(x, y, out=y)  # slope < 1
        gx = np.where(x > 0, g, g * np.float32(slope))
        return y, gx
    return run


def _numpy_relu(x, g):
    def run():
        y = np.maximum(x, 0)
        gx = np.where(y > 0, g, np.float32(0))
        return y, gx
    return run


def _numpy_dropout(x, g, p=0.5):
    rng = np.random.default_rng(0)
    scale = np.float32(1 / (1 - p))

    def run():
        keep = rng.random(x.shape, dtype=np.float32) >= p
        y = np.multiply(x, keep)
        y *= scale
        gx = np.multiply(g, keep)
        gx *= scale
        return y, gx
    return run


# ---------------------------------------------------------------------- the cases
def cases(threads: int):
    fastdl.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(ELEMENTS, dtype=np.float32) * 3
    g = rng.standard_normal(ELEMENTS, dtype=np.float32)
    n = ELEMENTS * 4
    out = []

    # batch norm, training mode, weight and bias
    xb = (rng.standard_normal(BN_SHAPE, dtype=np.float32) + 1)
    gb = rng.standard_normal(BN_SHAPE, dtype=np.float32)
    w = rng.standard_normal(BN_SHAPE[1]).astype(np.float32)
    b = rng.standard_normal(BN_SHAPE[1]).astype(np.float32)
    fw, fb = fastdl.tensor(w, requires_grad=True), fastdl.tensor(b, requires_grad=True)
    f_rm, f_rv = fastdl.tensor(np.zeros_like(w)), fastdl.tensor(np.ones_like(w))

    def fastdl_bn(leaf, weight, bias):
        return F.batch_norm(leaf, f_rm, f_rv, weight, bias, training=True)

    torch_bn = None
    if torch is not None:
        tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
        t_rm, t_rv = torch.zeros(BN_SHAPE[1]), torch.ones(BN_SHAPE[1])
        torch_bn = _torch_forward_backward(
            lambda leaf, weight, bias: torch.nn.functional.batch_norm(leaf, t_rm, t_rv, weight, bias, training=True),
            xb, gb, (tw, tb))
    run_bn = _fastdl_forward_backward(fastdl_bn, xb, gb, (fw, fb))
    numpy_bn = _numpy_batch_norm(xb, gb, w, b)

    def check_bn():
        y_np, gx_np, *_ = numpy_bn()
        leaf = fastdl.tensor(xb, requires_grad=True)
        y = F.batch_norm(leaf, None, None, fastdl.tensor(w), fastdl.tensor(b), training=True)
        y.backward(gb)
        np.testing.assert_allclose(y.detach().numpy(), y_np, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(leaf.grad.numpy(), gx_np, rtol=1e-3, atol=1e-4)

    bn_bytes = 5 * xb.nbytes  # forward: read x, write y; backward: read x, gy, write gx
    out.append(dict(name="batch_norm 64x64x32x32 train", fastdl=run_bn, numpy=numpy_bn, torch=torch_bn,
                    bytes=bn_bytes, flops=None, check=check_bn))

    # element-wise activations: forward reads x, writes y; backward reads y (or x), gy, writes gx
    def activation(name, ours, numpy_run, theirs, reference_forward):
        run = _fastdl_forward_backward(ours, x, g)

        def check():
            y_np, gx_np = numpy_run()
            leaf = fastdl.tensor(x, requires_grad=True)
            y = ours(leaf)
            y.backward(g)
            np.testing.assert_allclose(y.detach().numpy(), y_np, rtol=2e-6, atol=1e-30)
            np.testing.assert_allclose(leaf.grad.numpy(), gx_np, rtol=1e-4, atol=1e-5)  # 1 - y near saturation

        out.append(dict(name=f"{name} 16M", fastdl=run, numpy=numpy_run,
                        torch=_torch_forward_backward(theirs, x, g) if torch is not None else None,
                        bytes=5 * n, flops=None, check=check))

    t = torch
    activation("sigmoid", F.sigmoid, _numpy_sigmoid(x, g), t and t.sigmoid, None)
    activation("tanh", F.tanh, _numpy_tanh(x, g), t and t.tanh, None)
    activation("leaky_relu", F.leaky_relu, _numpy_leaky_relu(x, g),
               t and t.nn.functional.leaky_relu, None)
    activation("relu", F.relu, _numpy_relu(x, g), t and t.relu, None)

    # dropout: forward reads x, writes y; backward reads gy, writes gx (fastdl regenerates
    # the mask; NumPy and torch also write and read a mask)
    def check_dropout():
        leaf = fastdl.tensor(x, requires_grad=True)
        y = F.dropout(leaf, 0.5)
        y.backward(g)
        values = y.detach().numpy()
        kept = values != 0
        assert abs(kept.mean() - 0.5) < 1e-3
        np.testing.assert_array_equal(values[kept], x[kept] * np.float32(2))
        np.testing.assert_array_equal(leaf.grad.numpy(), np.where(kept, g * np.float32(2), 0))

    out.append(dict(name="dropout p=0.5 16M", fastdl=_fastdl_forward_backward(lambda v: F.dropout(v, 0.5), x, g),
                    numpy=_numpy_dropout(x, g),
                    torch=_torch_forward_backward(lambda v: torch.nn.functional.dropout(v, 0.5), x, g)
                    if torch is not None else None,
                    bytes=4 * n, flops=None, check=check_dropout))
    return out


# ---------------------------------------------------------------------- timing
def median_ms(function, repeats: int) -> float:
    function()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def copy_bandwidth(threads: int, megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second moved (read + write) by np.copyto of `megabytes`, over `threads`."""
    src = np.ones(megabytes * 2 ** 20 // 4, np.float32)
    dst = np.zeros_like(src)
    parts = np.array_split(np.arange(src.size), threads)
    bounds = [(p[0], p[-1] + 1) for p in parts]

    def copy():
        if threads == 1:
            np.copyto(dst, src)
            return
        workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    seconds = median_ms(copy, repeats) / 1e3
    return 2 * src.nbytes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for threads in args.threads:
        bandwidth = copy_bandwidth(threads)
        print(f"\nthreads={threads}  copy bandwidth (np.copyto 256 MB, read+write) = {bandwidth / 1e9:.1f} GB/s"
              f"  torch {torch.__version__ if torch else '-'}  numpy {np.__version__}")
        header = (f"{'case':32s} {'fastdl ms':>10s} {'NumPy ms':>10s} {'torch ms':>10s} "
                  f"{'NumPy/fd':>9s} {'torch/fd':>9s} {'GB/s':>7s} {'fd/copy':>8s}")
        print(header)
        print("-" * len(header))
        for case in cases(threads):
            case["check"]()
            ours = median_ms(case["fastdl"], args.repeats)
            numpy_ms = median_ms(case["numpy"], args.repeats)
            torch_ms = median_ms(case["torch"], args.repeats) if case["torch"] else float("nan")
            bound_ms = 1e3 * case["bytes"] / bandwidth
            print(f"{case['name']:32s} {ours:10.2f} {numpy_ms:10.2f} {torch_ms:10.2f} "
                  f"{numpy_ms / ours:9.2f} {torch_ms / ours:9.2f} {case['bytes'] / ours / 1e6:7.1f} "
                  f"{ours / bound_ms:8.2f}")
        print("fd/copy: fastdl's time over the time its compulsory bytes take at copy bandwidth "
              "(target <= 2)")


if __name__ == "__main__":
    main()
