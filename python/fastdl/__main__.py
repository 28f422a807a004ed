"""Command line: ``python -m fastdl demo``, ``info``, ``filters``, ``course`` and ``bench``."""
from __future__ import annotations

import argparse
import sys
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


class _OnDevice:
    """A data loader whose batches are moved to a device (the demo's --device cuda)."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for inputs, targets in self.loader:
            yield inputs.to(self.device), targets.to(self.device)

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # sampler, generator, ...: the wrapped loader's
        return getattr(self.loader, name)


def demo(epochs: int = 20, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
         bench: bool = True, progress: Optional[bool] = None, distributed: bool = False,
         device: str = "cpu") -> dict:
    """Train the small CNN on the real digits and report held-out accuracy.
    distributed: data-parallel over the ranks of ``mpiexec -n N``; each rank takes
    batch_size / N samples of every global batch, rank 0 prints.
    device: 'cpu' or 'cuda' (the model, the batches and the optimizer on the GPU)."""
    import fastdl
    from . import nn, optim
    from .data import DataLoader, TensorDataset
    from .train import evaluate, fit

    world, say = 1, print
    if distributed:
        from . import distributed as dist
        dist.init()
        world = dist.get_world_size()
        if batch_size % world:
            sys.exit(f"--batch-size {batch_size} is not divisible by the {world} ranks")
        if dist.get_rank() != 0:
            say = _quiet  # every line of the demo prints on rank 0 only

    try:
        target = fastdl.device(device)
        if target.type == "cuda":
            fastdl.cuda._require(target)
    except (RuntimeError, TypeError) as error:
        sys.exit(f"--device {device}: {error}")
    if target.type == "cuda" and distributed:
        sys.exit("--device cuda does not combine with --distributed")
    fastdl.manual_seed(seed)
    x_train, x_test, y_train, y_test = _load_digits_split(seed)
    say(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8 "
          f"(scikit-learn, stratified 80/20, seed {seed})")
    train_set = TensorDataset(fastdl.tensor(x_train), fastdl.tensor(y_train))
    if distributed:
        sampler = dist.DistributedSampler(train_set, shuffle=True, seed=seed)
        train_loader = DataLoader(train_set, batch_size=batch_size // world, sampler=sampler)
        say(f"data parallel on {world} ranks: {batch_size // world} of every {batch_size} "
              f"samples per rank")
    else:
        train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                                  generator=fastdl.Generator().manual_seed(seed))
    test_loader = DataLoader(TensorDataset(fastdl.tensor(x_test), fastdl.tensor(y_test)),
                             batch_size=256)
    model = digits_cnn()
    if target.type == "cuda":
        model.to(target)
        train_loader, test_loader = _OnDevice(train_loader, target), _OnDevice(test_loader, target)
        say(f"device: {fastdl.cuda.get_device_name()} ({target})")
    if distributed:
        model = dist.DistributedDataParallel(model)
    say(model)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()

    def report(epoch, history):
        say(f"epoch {epoch + 1:>2}/{epochs}  train loss {history['train_loss'][-1]:.4f}  "
              f"train acc {history['train_accuracy'][-1]:.4f}  "
              f"test acc {history['val_accuracy'][-1]:.4f}  ({history['epoch_time'][-1]:.2f} s)",
              flush=True)

    history = fit(model, train_loader, loss_fn, optimizer, epochs, val_loader=test_loader,
                  progress=progress, scheduler=scheduler, callback=report)
    test = evaluate(model, test_loader, loss_fn)
    say(f"\nheld-out test accuracy: {100 * test['accuracy']:.2f}% "
          f"({round(test['accuracy'] * len(y_test))}/{len(y_test)}), test loss {test['loss']:.4f}")
    result = {"test_accuracy": test["accuracy"], "history": history}
    if bench and say is print:
        from .bench.conv import conv2d_benchmark, format_conv2d_table
        rows = conv2d_benchmark(with_torch=False)
        say()
        say(format_conv2d_table(rows, fastdl.get_num_threads()))
        result["conv_benchmark"] = rows
    return result


def _quiet(*args, **kwargs) -> None:
    """print on the ranks other than 0."""


def filters(image_path: Optional[str] = None, output: str = "filters.png", seed: int = 0) -> str:
    """Write a PNG panel: the photo, its 5x5 mean, the 3x3 median of a copy with 10%
    salt-and-pepper noise, Sobel edges (gradient magnitude) and the course low-pass."""
    try:
        import matplotlib.image
    except ImportError:
        sys.exit("`filters` draws with matplotlib: pip install 'fastdl[plot]'")
    from .course.filters import filter_panel, sample_photo
    if image_path is None:
        try:
            photo, title = sample_photo()
        except ImportError:
            sys.exit("the default photo comes with scikit-learn: pip install 'fastdl[demo]', "
                     "or pass an IMAGE")
    else:
        photo, title = matplotlib.image.imread(image_path), image_path
    filter_panel(photo, output, title=title, seed=seed)
    print(f"wrote {output}")
    return output


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
    p_demo.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda: train on the GPU (a CUDA build and a GPU)")
    p_demo.add_argument("--distributed", action="store_true",
                        help="data-parallel over MPI ranks: mpiexec -n 2 python -m fastdl demo "
                             "--distributed (global batch split across ranks; rank 0 prints)")
    sub.add_parser("info", help="print the build configuration")
    p_filters = sub.add_parser("filters", help="write a PNG panel of fastdl.image filters")
    p_filters.add_argument("image", nargs="?", default=None,
                           help="image file (PNG); default: scikit-learn's china.jpg")
    p_filters.add_argument("-o", "--output", default="filters.png")
    p_course = sub.add_parser("course", help="draw the lecture's figures from real fastdl runs "
                                             "into DIR (PNGs + a self-contained index.html)")
    p_course.add_argument("-o", "--output", default="course", metavar="DIR")
    p_course.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("bench", help="the benchmark suite: fastdl vs NumPy vs PyTorch", add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)

    import fastdl
    if args.command == "info":
        fastdl.show_config()
        return 0
    if args.command == "filters":
        filters(args.image, args.output)
        return 0
    if args.command == "course":
        try:
            from .course import build
            build(args.output, quick=args.quick)
        except ImportError as error:
            sys.exit(str(error))
        return 0
    if args.threads is not None:
        fastdl.set_num_threads(args.threads)
    result = demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  bench=not args.no_bench, distributed=args.distributed, device=args.device)
    return 0 if result["test_accuracy"] >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
