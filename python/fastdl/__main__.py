"""Command line: ``python -m fastdl demo`` and ``python -m fastdl info``."""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np


def _load_digits_split(seed: int):
    """scikit-learn's 1,797 real 8x8 handwritten digits, stratified 80/20 split."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - the README's command installs the extra
        sys.exit("the demo needs scikit-learn: pip install 'fastdl[demo]'")
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8) in [0, 1]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.2,
                            stratify=digits.target, random_state=seed)


def digits_cnn():
    """The demo's small CNN for 1x8x8 inputs."""
    from . import nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 32 x 4 x 4
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 64 x 2 x 2
        nn.Flatten(), nn.Linear(64 * 2 * 2, 10))


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def conv_benchmark(shapes=None, repeats: int = 5) -> List[dict]:
    """Time conv2d forward+backward in fastdl and in the NumPy reference, same inputs."""
    import fastdl
    from . import reference
    from .nn import functional as F
    shapes = shapes or [  # (N, C, H, W, O, K, padding)
        (64, 1, 28, 28, 32, 3, 1),
        (64, 32, 14, 14, 64, 3, 1),
        (32, 64, 16, 16, 128, 3, 1),
    ]
    rng = np.random.default_rng(0)
    rows = []
    for n, c, h, w, o, k, p in shapes:
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        weight = rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1
        bias = rng.standard_normal(o, dtype=np.float32)
        xt = fastdl.tensor(x, requires_grad=True)
        wt = fastdl.tensor(weight, requires_grad=True)
        bt = fastdl.tensor(bias, requires_grad=True)

        def run_fastdl():
            out = F.conv2d(xt, wt, bt, padding=p)
            out.backward(grad)
            return out

        def run_numpy():
            out = reference.conv2d_forward(x, weight, bias, padding=(p, p))
            reference.conv2d_backward(x, weight, grad, padding=(p, p))
            return out

        grad = np.ones((n, o, h + 2 * p - k + 1, w + 2 * p - k + 1), dtype=np.float32)
        # Check the answer before timing it.
        if not np.allclose(run_fastdl().data, run_numpy(), rtol=1e-3, atol=1e-3):
            raise AssertionError(f"conv2d mismatch against NumPy for shape {(n, c, h, w, o, k)}")
        flops = 3 * 2.0 * n * o * c * k * k * grad.shape[2] * grad.shape[3]  # fwd + 2 bwd GEMMs
        t_fast = _median_ms(run_fastdl, repeats)
        t_numpy = _median_ms(run_numpy, repeats)
        rows.append({"shape": f"{n}x{c}x{h}x{w} -> {o}, {k}x{k}, pad {p}",
                     "fastdl_ms": t_fast, "numpy_ms": t_numpy, "speedup": t_numpy / t_fast,
                     "fastdl_gflops": flops / t_fast / 1e6})
    return rows


def print_conv_table(rows: List[dict]) -> None:
    print(f"\nconv2d forward+backward, float32, {__import__('fastdl').get_num_threads()} threads "
          f"(median of repeats)")
    print(f"{'shape':<32} {'fastdl ms':>10} {'NumPy ms':>10} {'NumPy/fastdl':>13} {'fastdl GFLOP/s':>15}")
    for r in rows:
        print(f"{r['shape']:<32} {r['fastdl_ms']:>10.2f} {r['numpy_ms']:>10.2f} "
              f"{r['speedup']:>12.1f}x {r['fastdl_gflops']:>15.1f}")


def demo(epochs: int = 20, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
         bench: bool = True, progress: Optional[bool] = None) -> dict:
    """Train the small CNN on the real digits and report held-out accuracy."""
    import fastdl
    from . import nn, optim
    from .data import DataLoader, TensorDataset
    from .train import evaluate, fit

    fastdl.manual_seed(seed)
    x_train, x_test, y_train, y_test = _load_digits_split(seed)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8 "
          f"(scikit-learn, stratified 80/20, seed {seed})")
    train_loader = DataLoader(TensorDataset(fastdl.tensor(x_train), fastdl.tensor(y_train)),
                              batch_size=batch_size, shuffle=True,
                              generator=fastdl.Generator().manual_seed(seed))
    test_loader = DataLoader(TensorDataset(fastdl.tensor(x_test), fastdl.tensor(y_test)),
                             batch_size=256)
    model = digits_cnn()
    print(model)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()

    def report(epoch, history):
        print(f"epoch {epoch + 1:>2}/{epochs}  train loss {history['train_loss'][-1]:.4f}  "
              f"train acc {history['train_accuracy'][-1]:.4f}  "
              f"test acc {history['val_accuracy'][-1]:.4f}  ({history['epoch_time'][-1]:.2f} s)",
              flush=True)

    history = fit(model, train_loader, loss_fn, optimizer, epochs, val_loader=test_loader,
                  progress=progress, scheduler=scheduler, callback=report)
    test = evaluate(model, test_loader, loss_fn)
    print(f"\nheld-out test accuracy: {100 * test['accuracy']:.2f}% "
          f"({round(test['accuracy'] * len(y_test))}/{len(y_test)}), test loss {test['loss']:.4f}")
    result = {"test_accuracy": test["accuracy"], "history": history}
    if bench:
        rows = conv_benchmark()
        print_conv_table(rows)
        result["conv_benchmark"] = rows
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastdl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="train a CNN on scikit-learn's handwritten digits")
    p_demo.add_argument("--epochs", type=int, default=20)
    p_demo.add_argument("--batch-size", type=int, default=32)
    p_demo.add_argument("--lr", type=float, default=3e-3)
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--threads", type=int, default=None)
    p_demo.add_argument("--no-bench", action="store_true", help="skip the conv2d timing table")
    sub.add_parser("info", help="print the build configuration")
    args = parser.parse_args(argv)

    import fastdl
    if args.command == "info":
        fastdl.show_config()
        return 0
    if args.threads is not None:
        fastdl.set_num_threads(args.threads)
    result = demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  bench=not args.no_bench)
    return 0 if result["test_accuracy"] >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
