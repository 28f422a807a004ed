"""The loss family, forward + backward: fastdl vs the best NumPy vs PyTorch CPU (float32).

    python benchmarks/loss.py [--threads 1 2] [--repeats 5]

Shapes: cross-entropy on 4096 x 1000 logits; every other loss on 16M elements. Memory-bound
ops report GB/s of their compulsory bytes (each input read once per pass, each output
written once) and the ratio to this machine's copy bandwidth (np.copyto of 256 MB).
"""
from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np

import fastdl
import fastdl.nn.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the table then shows no torch column
    torch = None

N16M = 1 << 24
ROWS, COLS = 1 << 14, 1 << 10  # 16M elements as (16384, 1024)


def _leaf(array):
    return fastdl.from_numpy(array).requires_grad_()


def _torch_leaf(array):
    return torch.from_numpy(array).requires_grad_()


def _fastdl_case(loss_of):
    """fwd + bwd of a loss of (leaf input, ...); returns the input's gradient."""
    def run(x, *rest):
        leaf = _leaf(x)
        loss_of(leaf, *rest).backward()
        return leaf.grad.numpy()
    return run


def _torch_case(loss_of):
    def run(x, *rest):
        leaf = _torch_leaf(x)
        loss_of(leaf, *rest).backward()
        return leaf.grad.numpy()
    return run


def _log_softmax_rows(x):
    m = x.max(axis=1, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# ---- the best NumPy a skilled user writes: one expression per pass, float32 throughout
def np_cross_entropy(x, t):
    logp = _log_softmax_rows(x)
    n = x.shape[0]
    loss = -logp[np.arange(n), t].mean(dtype=np.float64)
    g = np.exp(logp, out=logp)
    g[np.arange(n), t] -= 1
    g *= np.float32(1 / n)
    return g


def np_mse(x, y):
    d = x - y
    loss = np.dot(d, d) / d.size  # noqa: F841
    d *= np.float32(2 / d.size)
    return d


def np_l1(x, y):
    d = x - y
    loss = np.abs(d).sum(dtype=np.float64) / d.size  # noqa: F841
    return np.sign(d, out=d) * np.float32(1 / d.size)


def np_bce(x, y):
    log_x = np.maximum(np.log(x), -100)
    log_1mx = np.maximum(np.log1p(-x), -100)
    loss = -(y * (log_x - log_1mx) + log_1mx).sum(dtype=np.float64) / x.size  # noqa: F841
    return (x - y) / np.maximum((1 - x) * x, np.float32(1e-12)) * np.float32(1 / x.size)


def np_bce_with_logits(x, y):
    e = np.exp(-np.abs(x))
    loss = ((1 - y) * x + np.maximum(-x, 0) + np.log1p(e)).sum(dtype=np.float64) / x.size  # noqa: F841
    s = np.where(x >= 0, 1, e) / (1 + e)
    return (s - y) * np.float32(1 / x.size)


def np_kl_div(x, y):
    loss = (y * (np.log(y) - x)).sum(dtype=np.float64) / x.shape[0]  # noqa: F841
    return y * np.float32(-1 / x.shape[0])


def np_nll(x, t):
    n = x.shape[0]
    loss = -x[np.arange(n), t].mean(dtype=np.float64)  # noqa: F841
    g = np.zeros_like(x)
    g[np.arange(n), t] = np.float32(-1 / n)
    return g


def np_log_softmax(x, g):
    y = _log_softmax_rows(x)
    return g - np.exp(y) * g.sum(axis=1, keepdims=True)


def cases(threads: int):
    fastdl.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    f4 = np.float32
    logits = rng.standard_normal((4096, 1000), dtype=f4)
    labels = rng.integers(0, 1000, 4096)
    x = rng.standard_normal(N16M, dtype=f4)
    y = rng.standard_normal(N16M, dtype=f4)
    prob = (0.01 + 0.98 * rng.random(N16M, dtype=f4))
    target01 = rng.random(N16M, dtype=f4)
    logq = np.log(0.01 + rng.random(N16M, dtype=f4))
    q = (0.01 + rng.random(N16M, dtype=f4))
    logp2d = _log_softmax_rows(rng.standard_normal((ROWS, COLS), dtype=f4))
    rows_labels = rng.integers(0, COLS, ROWS)
    x2d = x.reshape(ROWS, COLS)
    up2d = y.reshape(ROWS, COLS)
    B = 4  # bytes per float32
    specs = [
        # name, fastdl loss, torch loss, numpy, arrays (fastdl/torch), compulsory bytes
        ("cross_entropy 4096x1000", lambda a, t: F.cross_entropy(a, fastdl.from_numpy(t)),
         lambda a, t: TF.cross_entropy(a, torch.from_numpy(t)), np_cross_entropy, (logits, labels),
         3 * logits.size * B),
        ("mse_loss 16M", lambda a, b: F.mse_loss(a, fastdl.from_numpy(b)),
         lambda a, b: TF.mse_loss(a, torch.from_numpy(b)), np_mse, (x, y), 5 * N16M * B),
        ("l1_loss 16M", lambda a, b: F.l1_loss(a, fastdl.from_numpy(b)),
         lambda a, b: TF.l1_loss(a, torch.from_numpy(b)), np_l1, (x, y), 5 * N16M * B),
        ("binary_cross_entropy 16M", lambda a, b: F.binary_cross_entropy(a, fastdl.from_numpy(b)),
         lambda a, b: TF.binary_cross_entropy(a, torch.from_numpy(b)), np_bce, (prob, target01), 5 * N16M * B),
        ("bce_with_logits 16M", lambda a, b: F.binary_cross_entropy_with_logits(a, fastdl.from_numpy(b)),
         lambda a, b: TF.binary_cross_entropy_with_logits(a, torch.from_numpy(b)), np_bce_with_logits,
         (x, target01), 5 * N16M * B),
        ("kl_div batchmean 16M", lambda a, b: F.kl_div(a, fastdl.from_numpy(b), reduction="batchmean"),
         lambda a, b: TF.kl_div(a, torch.from_numpy(b), reduction="batchmean"), np_kl_div, (logq, q),
         4 * N16M * B),  # its input gradient -y * g does not read the input again
        ("nll_loss 16384x1024", lambda a, t: F.nll_loss(a, fastdl.from_numpy(t)),
         lambda a, t: TF.nll_loss(a, torch.from_numpy(t)), np_nll, (logp2d, rows_labels), 1 * N16M * B),
        ("log_softmax 16384x1024", lambda a, g: _weighted_sum(F.log_softmax(a, 1), g),
         lambda a, g: _torch_weighted_sum(TF.log_softmax(a, 1), g), np_log_softmax, (x2d, up2d),
         5 * N16M * B),
    ]
    out = []
    for name, fastdl_loss, torch_loss, numpy_fn, arrays, nbytes in specs:
        f_run, t_run = _fastdl_case(fastdl_loss), _torch_case(torch_loss)

        def check(f_run=f_run, numpy_fn=numpy_fn, arrays=arrays):
            expected = numpy_fn(*arrays)
            np.testing.assert_allclose(f_run(*arrays), expected, rtol=2e-3,
                                       atol=1e-4 * float(np.abs(expected).max()))

        out.append({"name": name, "fastdl": (lambda f_run=f_run, arrays=arrays: f_run(*arrays)),
                    "numpy": (lambda numpy_fn=numpy_fn, arrays=arrays: numpy_fn(*arrays)),
                    "torch": None if torch is None else (lambda t_run=t_run, arrays=arrays: t_run(*arrays)),
                    "bytes": nbytes, "flops": None, "check": check})
    return out


def _weighted_sum(out, g):
    """sum(out * g): backward feeds g as the upstream gradient of out. (A plain namespace:
    a class made per call is a reference cycle, which kept every step's 64 MB arrays alive
    until the cyclic collector ran, so each step paid fresh page faults.)"""
    return SimpleNamespace(backward=lambda: out.backward(g))


def _torch_weighted_sum(out, g):
    return SimpleNamespace(backward=lambda: out.backward(torch.from_numpy(g)))


def median_ms(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def copy_bandwidth() -> float:
    """GB/s of np.copyto on 256 MB (bytes read + written)."""
    src = np.ones(1 << 26, np.float32)
    dst = np.empty_like(src)
    ms = median_ms(lambda: np.copyto(dst, src), 5)
    return 2 * src.nbytes / ms / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth (np.copyto 256 MB): {bandwidth:.1f} GB/s; float32; forward + backward")
    for threads in args.threads:
        print(f"\nthreads = {threads}")
        print(f"{'name':26s} {'fastdl ms':>10s} {'NumPy ms':>10s} {'torch ms':>10s} {'NumPy/fdl':>10s} "
              f"{'torch/fdl':>10s} {'GB/s':>7s} {'x copy-time':>11s}")
        for case in cases(threads):
            case["check"]()
            f = median_ms(case["fastdl"], args.repeats)
            n = median_ms(case["numpy"], args.repeats)
            t = median_ms(case["torch"], args.repeats) if case["torch"] else float("nan")
            gbs = case["bytes"] / f / 1e6
            print(f"{case['name']:26s} {f:10.2f} {n:10.2f} {t:10.2f} {n / f:10.2f} {t / f:10.2f} "
                  f"{gbs:7.1f} {bandwidth / gbs:11.2f}")


if __name__ == "__main__":
    main()
