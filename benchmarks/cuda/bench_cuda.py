"""fastdl CUDA vs PyTorch CUDA on one GPU: conv2d forward+backward on the issue's shapes,
pooling / batch norm / activations on 64x64x32x32, cross-entropy 4096x1000, and the fused
Adam step over 10M parameters (one tensor, and 100 tensors of 100k) against the measured
device-to-device copy bandwidth.

Every timing: warm-up, then the median of `--repeat` runs, each bracketed by a device
synchronization (fastdl.cuda.synchronize / torch.cuda.synchronize). The answer is checked
against PyTorch (or fastdl's CPU kernels when PyTorch has no CUDA) before timing.
PyTorch columns are left out when this PyTorch has no CUDA (the GPU machines have no
internet: whatever torch is installed there is used as is).

    python benchmarks/cuda/bench_cuda.py [--repeat 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import fastdl
import fastdl.nn.functional as F

try:
    import torch
    TORCH = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    torch, TORCH = None, False

CONV_SHAPES = [  # (N, C, H, W), out_channels, kernel, stride, padding
    ((64, 1, 28, 28), 32, 3, 1, 1),
    ((64, 32, 14, 14), 64, 3, 1, 1),
    ((32, 64, 32, 32), 128, 3, 1, 1),
    ((32, 128, 16, 16), 128, 3, 2, 1),
    ((8, 3, 224, 224), 64, 7, 2, 3),
]


def _median_ms(fn, sync, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _fsync():
    fastdl.cuda.synchronize()


def _tsync():
    torch.cuda.synchronize()


def _close(a, b, what, rtol=2e-3, atol=2e-3):
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        raise SystemExit(f"{what}: fastdl CUDA and the reference disagree "
                         f"(max |diff| {np.max(np.abs(a - b)):.3g})")


def _fwd_bwd(lib, fn, arrays, device):
    """A closure running fn forward + backward on device tensors (made once)."""
    tensors = [lib.tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in arrays]
    probe = fn(lib, *tensors)
    seed = lib.ones_like(probe) if probe.ndim else None

    def step():
        for t in tensors:
            t.grad = None
        out = fn(lib, *tensors)
        out.backward(seed) if seed is not None else out.backward()
        return out, tensors

    return step


def _check(fn, arrays, against_cpu=False):
    """fastdl CUDA vs torch CUDA (or fastdl CPU): forward and the first input's gradient."""
    out, tensors = _fwd_bwd(fastdl, fn, arrays, "cuda")()
    got = (out.detach().cpu().numpy(), tensors[0].grad.cpu().numpy())
    if TORCH and not against_cpu:
        out, tensors = _fwd_bwd(torch, fn, arrays, "cuda")()
        ref = (out.detach().cpu().numpy(), tensors[0].grad.cpu().numpy())
    else:
        out, tensors = _fwd_bwd(fastdl, fn, arrays, "cpu")()
        ref = (out.detach().numpy(), tensors[0].grad.numpy())
    scale = max(1.0, float(np.abs(ref[0]).max()))
    _close(got[0], ref[0], "forward", atol=2e-3 * scale)
    _close(got[1], ref[1], "gradient", atol=2e-3 * max(1.0, float(np.abs(ref[1]).max())))


def _row(name, fn, arrays, repeat, flops=None, against_cpu=False):
    _check(fn, arrays, against_cpu)
    row = {"op": name, "fastdl_ms": _median_ms(_fwd_bwd(fastdl, fn, arrays, "cuda"), _fsync, repeat)}
    if flops:
        row["fastdl_tflops"] = flops / row["fastdl_ms"] / 1e9
    if TORCH:
        row["torch_ms"] = _median_ms(_fwd_bwd(torch, fn, arrays, "cuda"), _tsync, repeat)
        row["ratio"] = row["fastdl_ms"] / row["torch_ms"]
    return row


def conv_rows(repeat: int):
    rng = np.random.default_rng(0)
    rows = []
    for shape, out_channels, k, s, p in CONV_SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((out_channels, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
        b = rng.standard_normal(out_channels).astype(np.float32)
        oh = (shape[2] + 2 * p - k) // s + 1
        ow = (shape[3] + 2 * p - k) // s + 1
        flops = 3 * 2.0 * shape[0] * out_channels * oh * ow * shape[1] * k * k  # forward + 2 backward
        name = f"conv2d {shape[0]}x{shape[1]}x{shape[2]}x{shape[3]} -> {out_channels} k{k} s{s} p{p}"
        rows.append(_row(name, lambda lib, x, w, b: lib.nn.functional.conv2d(x, w, b, stride=s, padding=p),
                         [x, w, b], repeat, flops))
    return rows


def elementwise_rows(repeat: int):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 64, 32, 32)).astype(np.float32)
    ops = [
        ("max_pool2d 2x2", lambda lib, x: lib.nn.functional.max_pool2d(x, 2)),
        ("avg_pool2d 3x3 s1 p1", lambda lib, x: lib.nn.functional.avg_pool2d(x, 3, 1, 1)),
        ("adaptive_avg_pool2d 1", lambda lib, x: lib.nn.functional.adaptive_avg_pool2d(x, 1)),
        ("relu", lambda lib, x: lib.nn.functional.relu(x)),
        ("sigmoid", lambda lib, x: lib.nn.functional.sigmoid(x)),
        ("tanh", lambda lib, x: lib.nn.functional.tanh(x)),
        ("leaky_relu", lambda lib, x: lib.nn.functional.leaky_relu(x, 0.01)),
    ]
    rows = [_row(f"{name} 64x64x32x32", fn, [x], repeat) for name, fn in ops]

    def bn(lib, x, w, b):
        return lib.nn.functional.batch_norm(x, None, None, w, b, training=True)

    w, b = np.ones(64, np.float32), np.zeros(64, np.float32)
    rows.append(_row("batch_norm (train) 64x64x32x32", bn, [x, w, b], repeat))
    logits = rng.standard_normal((4096, 1000)).astype(np.float32)
    labels = rng.integers(0, 1000, 4096)
    rows.append(_row("cross_entropy 4096x1000", lambda lib, x, t: lib.nn.functional.cross_entropy(x, t),
                     [logits, labels], repeat))
    probabilities = np.exp(rng.standard_normal((4096, 1000))).astype(np.float32)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows.append(_row("cross_entropy probabilities 4096x1000",
                     lambda lib, x, t: lib.nn.functional.cross_entropy(x, t.detach(), label_smoothing=0.1),
                     [logits, probabilities], repeat))
    # Dropout's mask is fastdl's own random numbers: checked against fastdl's CPU op.
    rows.append(_row("dropout p=0.5 64x64x32x32",
                     lambda lib, x: (lib.manual_seed(0), lib.nn.functional.dropout(x, 0.5))[1],
                     [x], repeat, against_cpu=True))
    rows.append(_row("pad 1 64x64x32x32", lambda lib, x: lib.nn.functional.pad(x, (1, 1, 1, 1)), [x], repeat))
    rows.append(_row("permute NCHW->NHWC 64x64x32x32", lambda lib, x: x.permute(0, 2, 3, 1).contiguous(),
                     [x], repeat))
    rows.append(_row("x * x - 2 / (x + 3) 64x64x32x32", lambda lib, x: x * x - 2.0 / (x + 3.0), [x], repeat))
    rows.append(_row("sum over (0, 2, 3) 64x64x32x32", lambda lib, x: x.sum(dim=(0, 2, 3)), [x], repeat))
    return rows


def copy_bandwidth(repeat: int) -> float:
    """GB/s of a 1 GiB device-to-device copy (read + write counted)."""
    from fastdl import _C
    nbytes = 1 << 30
    a, b = _C.cuda.Buffer(nbytes), _C.cuda.Buffer(nbytes)
    a.zero()
    ms = _median_ms(lambda: b.copy_from_buffer(a), _fsync, repeat)
    return 2 * nbytes / ms / 1e6


def adam_rows(repeat: int, bandwidth: float):
    rows = []
    for count, size in ((1, 10_000_000), (100, 100_000)):
        rng = np.random.default_rng(2)
        starts = [rng.standard_normal(size).astype(np.float32) for _ in range(count)]
        grads = [rng.standard_normal(size).astype(np.float32) * 1e-2 for _ in range(count)]
        row = {"op": f"Adam step, {count} x {size:,} float32"}
        moved = 7 * 4 * count * size  # read p, g, m, v; write p, m, v
        libs = [("fastdl", fastdl, _fsync, {})] + ([("torch", torch, _tsync, {"fused": True}),
                                                     ("torch_foreach", torch, _tsync, {"foreach": True})]
                                                    if TORCH else [])
        results = {}
        for label, lib, sync, options in libs:
            params = [lib.tensor(a, requires_grad=True, device="cuda") for a in starts]
            for p, g in zip(params, grads):
                p.grad = lib.tensor(g, device="cuda")
            optimizer = lib.optim.Adam(params, lr=1e-3, **options)
            ms = _median_ms(optimizer.step, sync, repeat)
            row[f"{label}_ms"] = ms
            results[label] = [p.detach().cpu().numpy() for p in params[:1]]
        row["fastdl_GBps"] = moved / row["fastdl_ms"] / 1e6
        row["fastdl_pct_of_copy_bw"] = 100 * row["fastdl_GBps"] / bandwidth
        if TORCH:
            row["ratio"] = row["fastdl_ms"] / row["torch_ms"]
        rows.append(row)
    return rows


def _format(rows, title):
    lines = [title, f"{'op':<46}{'fastdl ms':>11}{'torch ms':>11}{'ratio':>8}  extra"]
    for r in rows:
        extra = "  ".join(f"{k}={v:.3g}" for k, v in r.items()
                          if k not in ("op", "fastdl_ms", "torch_ms", "ratio") and isinstance(v, float))
        torch_ms = f"{r['torch_ms']:>11.3f}" if "torch_ms" in r else f"{'-':>11}"
        ratio = f"{r['ratio']:>8.2f}" if "ratio" in r else f"{'-':>8}"
        lines.append(f"{r['op']:<46}{r['fastdl_ms']:>11.3f}{torch_ms}{ratio}  {extra}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not fastdl.cuda.is_available():
        print("no CUDA GPU (fastdl.cuda.is_available() is False): nothing to benchmark", file=sys.stderr)
        return 1
    name = fastdl.cuda.get_device_name()
    header = (f"device: {name}; fastdl {fastdl.__version__} (GEMM: own tiled kernel, FP32, no tensor cores); "
              f"torch: {torch.__version__ + ' CUDA ' + str(torch.version.cuda) if TORCH else 'absent or without CUDA'}"
              + (f"; torch cuDNN TF32 allowed: {torch.backends.cudnn.allow_tf32}" if TORCH else ""))
    print(header, flush=True)
    bandwidth = copy_bandwidth(args.repeat)
    print(f"device-to-device copy bandwidth: {bandwidth:.0f} GB/s", flush=True)
    sections = [("conv2d forward + backward (input, weight, bias gradients)", conv_rows(args.repeat))]
    print(_format(sections[-1][1], sections[-1][0]), flush=True)
    sections.append(("pooling, batch norm, activations, cross-entropy: forward + backward",
                     elementwise_rows(args.repeat)))
    print(_format(sections[-1][1], sections[-1][0]), flush=True)
    sections.append(("fused Adam step", adam_rows(args.repeat, bandwidth)))
    print(_format(sections[-1][1], sections[-1][0]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "copy_GBps": bandwidth,
                       "sections": {title: rows for title, rows in sections}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
