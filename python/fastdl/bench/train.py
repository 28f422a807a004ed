"""End to end: one training epoch of the demo's CNN (batch 64, Adam), fastdl vs PyTorch on
the same data — scikit-learn's digits (8x8) and MNIST-sized synthetic inputs (10,000 x 28x28)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np


def _data(kind: str):
    if kind == "digits":
        from sklearn.datasets import load_digits
        digits = load_digits()
        return (digits.images / 16.0).astype(np.float32)[:, None], digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    x = rng.random((10_000, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, 10_000)


def _fastdl_epoch(x, y, size: int):
    import fastdl
    from fastdl import nn
    fastdl.manual_seed(0)
    flat = 64 * (size // 4) ** 2
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(flat, 10))
    optimizer = fastdl.optim.Adam(model.parameters(), lr=1e-3)
    loader = fastdl.data.DataLoader(fastdl.data.TensorDataset(fastdl.tensor(x), fastdl.tensor(y)),
                                    batch_size=64, shuffle=True, generator=fastdl.Generator().manual_seed(0))
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
        return loss.item()

    return epoch


def _torch_epoch(x, y, size: int):
    import torch
    from torch import nn
    torch.manual_seed(0)
    flat = 64 * (size // 4) ** 2
    model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(flat, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.tensor(x), torch.tensor(y)
    generator = torch.Generator().manual_seed(0)
    loss_fn = nn.CrossEntropyLoss()

    def epoch():
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            index = order[start:start + 64]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
        return loss.item()

    return epoch


def cases(threads: int) -> List[Dict]:
    out = []
    for kind, size in (("digits", 8), ("synthetic", 28)):
        try:
            x, y = _data(kind)
        except ImportError:
            continue
        fast = _fastdl_epoch(x, y, size)
        try:
            run_torch = _torch_epoch(x, y, size)
        except ImportError:
            run_torch = None

        def check(fast=fast):
            assert np.isfinite(fast())

        out.append({"name": f"train epoch {kind} {len(x)}x1x{size}x{size} b64 Adam", "fastdl": fast,
                    "numpy": None, "torch": run_torch, "bytes": None, "flops": None,
                    "check": check, "repeats": 3 if kind == "synthetic" else 5})
    return out
