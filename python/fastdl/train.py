"""The training loop: fit() and evaluate(), with a progress bar and a returned history."""
from __future__ import annotations

import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["fit", "evaluate"]


def _correct(output: Tensor, target: Tensor) -> int:
    """Correct predictions of class logits against integer labels (0 for other targets)."""
    if output.ndim < 2 or target.dtype.kind not in "iu":
        return 0
    return int((output.data.argmax(axis=1) == target.data).sum())


def evaluate(model, loader, loss_fn: Callable) -> Dict[str, float]:
    """Mean loss (weighted by batch size) and accuracy of model over loader, in eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with no_grad():
        for inputs, targets in loader:
            output = model(inputs)
            n = len(targets)
            total_loss += float(loss_fn(output, targets).item()) * n
            correct += _correct(output, targets)
            count += n
    model.train(was_training)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1)}


def fit(model, train_loader, loss_fn: Callable, optimizer, epochs: int, val_loader=None,
        progress: Optional[bool] = None, scheduler=None, callback=None) -> Dict[str, List[float]]:
    """Train for ``epochs`` epochs; return the per-epoch history
    ``{'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'epoch_time'}``.

    progress: show a tqdm progress bar (default: when stderr is a terminal).
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    if progress is None:
        progress = sys.stderr.isatty()
    history: Dict[str, List[float]] = {"train_loss": [], "train_accuracy": [], "val_loss": [],
                                       "val_accuracy": [], "epoch_time": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * len(train_loader), unit="batch", dynamic_ncols=True)
    try:
        for epoch in range(epochs):
            model.train()
            start = time.perf_counter()
            total_loss, correct, count = 0.0, 0, 0
            for inputs, targets in train_loader:
                optimizer.zero_grad()
                output = model(inputs)
                loss = loss_fn(output, targets)
                if not np.isfinite(loss.item()):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}")
                loss.backward()
                optimizer.step()
                n = len(targets)
                total_loss += loss.item() * n
                correct += _correct(output, targets)
                count += n
                if bar is not None:
                    bar.set_description(f"epoch {epoch + 1}/{epochs}")
                    bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
                    bar.update(1)
            if scheduler is not None:
                scheduler.step()
            history["train_loss"].append(total_loss / max(count, 1))
            history["train_accuracy"].append(correct / max(count, 1))
            history["epoch_time"].append(time.perf_counter() - start)
            if val_loader is not None:
                metrics = evaluate(model, val_loader, loss_fn)
                history["val_loss"].append(metrics["loss"])
                history["val_accuracy"].append(metrics["accuracy"])
                if bar is not None:
                    bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}",
                                    val_acc=f"{metrics['accuracy']:.3f}")
            if callback is not None:
                callback(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return history
