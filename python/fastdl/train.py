"""The training loop: fit() and evaluate(), with a progress bar and a returned history."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np

from . import distributed
from .autograd import no_grad
from .tensor import Tensor

__all__ = ["fit", "evaluate", "History", "plot_history"]


class History(dict):
    """fit()'s per-epoch history: a plain dict of lists (JSON- and checkpoint-friendly)
    with a .plot() that draws the loss and accuracy curves."""

    def plot(self, path=None, title: Optional[str] = None):
        """Draw the loss and accuracy curves (see plot_history); return the figure."""
        return plot_history(self, path, title=title)


def plot_history(history, path=None, title: Optional[str] = None):
    """Loss (left) and accuracy (right) per epoch of a fit() history, train and validation.
    path: write a PNG there (and close the figure); returns the matplotlib figure.
    Needs matplotlib (pip install 'fastdl[plot]')."""
    from .course._plotting import pyplot
    plt = pyplot()
    if not isinstance(history, dict):
        raise TypeError(f"history: expected the dict returned by fit(), got {type(history).__name__}")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, ax in (("train_loss", "train", ax_loss), ("val_loss", "validation", ax_loss),
                           ("train_accuracy", "train", ax_acc),
                           ("val_accuracy", "validation", ax_acc)):
        values = list(history.get(key, []))
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def _correct(output: Tensor, target: Tensor) -> int:
    """Correct predictions of class logits against integer labels (0 for other targets)."""
    if output.ndim < 2 or target.dtype.kind not in "iu":
        return 0
    if output.is_cuda or target.is_cuda:  # compared on the host (a batch of logits)
        output, target = output.detach().cpu(), target.cpu()
    return int((output.data.argmax(axis=1) == target.data).sum())


def _sharded(loader) -> bool:
    """Whether each rank of an MPI job reads its own part of loader's data."""
    return isinstance(getattr(loader, "sampler", None), distributed.DistributedSampler)


def _distributed(model, loader) -> bool:
    return distributed.get_world_size() > 1 and (
        isinstance(model, distributed.DistributedDataParallel) or _sharded(loader))


def _unwrap(model):
    """The wrapped model of a DistributedDataParallel: checkpoints load at any world size."""
    return model.module if isinstance(model, distributed.DistributedDataParallel) else model


def evaluate(model, loader, loss_fn: Callable) -> Dict[str, float]:
    """Mean loss (weighted by batch size) and accuracy of model over loader, in eval mode.
    Over a loader with a DistributedSampler, every rank must call it: the sums are
    all-reduced (the padding samples of a DistributedSampler count, as in torch)."""
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
    if distributed.get_world_size() > 1 and _sharded(loader):
        total_loss, correct, count = distributed._all_reduce_sums(total_loss, correct, count)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1)}


def _loader_generator(loader):
    from .random import Generator, default_generator
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, Generator) else default_generator


def _save_checkpoint(path, epoch, model, optimizer, scheduler, train_loader, history) -> None:
    from . import io, random
    io.save({
        "epoch": epoch,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader_generator": _loader_generator(train_loader).get_state(),
        "default_generator": random.get_rng_state(),
        "history": history,
    }, path)


def _resume(path, model, optimizer, scheduler, train_loader) -> tuple:
    from . import io, random
    state = io.load(path)
    if not isinstance(state, dict) or "epoch" not in state or "model" not in state:
        raise ValueError(f"checkpoint: {path} is not a checkpoint written by fit()")
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    random.set_rng_state(state["default_generator"])
    generator = _loader_generator(train_loader)
    if generator is not random.default_generator:
        generator.set_state(state["loader_generator"])
    return int(state["epoch"]), History((k, list(v)) for k, v in state["history"].items())


def fit(model, train_loader, loss_fn: Callable, optimizer, epochs: int, val_loader=None,
        progress: Optional[bool] = None, scheduler=None, callback=None,
        checkpoint=None, resume: bool = False) -> History:
    """Train for ``epochs`` epochs; return the per-epoch history
    ``{'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'epoch_time'}``, a
    History: a plain dict whose ``.plot(path)`` draws the loss and accuracy curves.

    progress: show a tqdm progress bar (default: when stderr is a terminal).
    scheduler: stepped once per epoch. callback(epoch, history): called after each epoch.
    checkpoint: a path; after every epoch the model, optimizer, scheduler, the data
    loader's and the default random generator's states and the history are saved there
    (atomically, without pickle). resume: if that file exists, continue from it — the
    result is bitwise the same as a run that was never interrupted.

    Under MPI (fastdl.distributed), with a DistributedDataParallel model or a loader with a
    DistributedSampler: gradients are averaged before each optimizer step, the sampler's
    epoch is set before each epoch, the history's metrics are all-reduced over the ranks,
    only rank 0 shows progress and writes the checkpoint (of the unwrapped model, loadable
    at any world size; the others wait), and callback runs on every rank.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint= (the path to resume from)")
    if progress is None:
        progress = sys.stderr.isatty()
    is_distributed = _distributed(model, train_loader)
    if distributed.get_rank() != 0:
        progress = False
    history = History(train_loss=[], train_accuracy=[], val_loss=[], val_accuracy=[],
                      epoch_time=[])
    first_epoch = 0
    if resume and os.path.exists(checkpoint):
        first_epoch, history = _resume(checkpoint, model, optimizer, scheduler, train_loader)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * len(train_loader), initial=first_epoch * len(train_loader),
                   unit="batch", dynamic_ncols=True)
    try:
        for epoch in range(first_epoch, epochs):
            model.train()
            start = time.perf_counter()
            total_loss, correct, count = 0.0, 0, 0
            if hasattr(getattr(train_loader, "sampler", None), "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            for inputs, targets in train_loader:
                optimizer.zero_grad()
                output = model(inputs)
                loss = loss_fn(output, targets)
                if not np.isfinite(loss.item()):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}")
                loss.backward()
                if isinstance(model, distributed.DistributedDataParallel):
                    model.sync_gradients()
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
            if is_distributed:
                total_loss, correct, count = distributed._all_reduce_sums(total_loss, correct, count)
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
            if checkpoint is not None and (not is_distributed or distributed.get_rank() == 0):
                _save_checkpoint(checkpoint, epoch + 1, model, optimizer, scheduler,
                                 train_loader, history)
            if checkpoint is not None and is_distributed:
                distributed.barrier()  # the file is complete before any rank reads it
            if callback is not None:
                callback(epoch, history)
    finally:
        if bar is not None:
            bar.close()
    return history
