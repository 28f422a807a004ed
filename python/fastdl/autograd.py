"""Reverse-mode automatic differentiation over a dynamic graph.

Every differentiable operation that sees an input requiring a gradient records a
:class:`Node` on its output: the inputs and a closure that maps the output's gradient
to each input's gradient (NumPy arrays in, NumPy arrays out). ``backward`` walks the
graph once in reverse topological order. Leaves accumulate into ``.grad`` as in PyTorch.
This module knows the Tensor only through its attributes: no layer, no operation.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["Node", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "run_backward"]

_state = threading.local()  # grad mode is per thread, as in PyTorch


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def _set_enabled(mode: bool) -> None:
    _state.enabled = bool(mode)


class _GradMode:
    """Context manager and decorator that sets grad mode, restoring the previous one."""

    _mode = True

    def __new__(cls, function=None):
        instance = super().__new__(cls)
        if callable(function):  # bare decorator: @fastdl.no_grad
            instance.__init__()
            return instance(function)
        return instance

    def __enter__(self):
        self._previous = is_grad_enabled()
        _set_enabled(self._mode)
        return self

    def __exit__(self, *exc):
        _set_enabled(self._previous)
        return False

    def __call__(self, function):
        import functools

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Disable graph recording inside the block (``with fastdl.no_grad(): ...``)."""

    _mode = False


class enable_grad(_GradMode):
    _mode = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode: bool):
        self._mode = bool(mode)
        self._previous = is_grad_enabled()
        _set_enabled(self._mode)  # also works as a plain function call, as in PyTorch

    def __enter__(self):
        return self

    def __call__(self, function):
        raise TypeError("set_grad_enabled cannot decorate; use no_grad or enable_grad")


BackwardFn = Callable[[np.ndarray], Sequence[Optional[np.ndarray]]]


class Node:
    """The op that produced a tensor: its name, its inputs and the backward closure."""

    __slots__ = ("name", "inputs", "backward_fn")

    def __init__(self, name: str, inputs: Sequence, backward_fn: BackwardFn):
        self.name = name
        self.inputs = tuple(inputs)
        self.backward_fn: Optional[BackwardFn] = backward_fn

    def __repr__(self) -> str:
        return f"<{self.name}Backward>"


def _topological_order(root) -> list:
    """Tensors with a grad_fn reachable from root, each before the tensors it came from."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in seen or tensor._node is None:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        for parent in tensor._node.inputs:
            if parent is not None and parent.requires_grad and id(parent) not in seen:
                stack.append((parent, False))
    order.reverse()
    return order


def run_backward(root, gradient: np.ndarray, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) * gradient into every leaf's ``.grad``."""
    from .tensor import Tensor  # the concrete class, to wrap leaf gradients

    grads = {id(root): gradient}
    # Arrays a leaf's .grad now owns (never handed out twice); the seed is the caller's.
    # (GPU arrays are tracked by their memory: views share it.)
    owned = {id(getattr(gradient, "buffer", gradient))}
    for tensor in _topological_order(root):
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        if tensor._retains_grad:
            _accumulate(tensor, grad, Tensor)  # retain_grad: always a copy
        node = tensor._node
        if node.backward_fn is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Specify retain_graph=True if you "
                "need to backward through the graph a second time.")
        input_grads = node.backward_fn(grad)
        if not retain_graph:
            node.backward_fn = None  # free the saved arrays, as PyTorch does
        for parent, parent_grad in zip(node.inputs, input_grads):
            if parent is None or parent_grad is None or not parent.requires_grad:
                continue
            if parent_grad.shape != parent.shape:
                raise RuntimeError(f"{node.name} backward produced a gradient of shape "
                                   f"{parent_grad.shape} for an input of shape {parent.shape}")
            if parent._node is None:
                _accumulate(parent, parent_grad, Tensor, owned)
            elif id(parent) in grads:
                grads[id(parent)] = grads[id(parent)] + parent_grad
            else:
                grads[id(parent)] = parent_grad


def _accumulate(tensor, grad: np.ndarray, tensor_class, owned=None) -> None:
    """Add grad into tensor.grad. A leaf's first gradient adopts the array when the backward
    pass produced it fresh (owns its C-contiguous memory, right dtype, not adopted by another
    leaf): no full-size copy per leaf. Anything else is copied."""
    if not isinstance(grad, np.ndarray) and hasattr(grad, "buffer"):
        _accumulate_device(tensor, grad, tensor_class, owned)
        return
    grad = np.asarray(grad)
    if tensor.grad is None:
        adopt = (owned is not None and id(grad) not in owned and grad.flags.owndata
                 and grad.flags.c_contiguous and grad.flags.writeable
                 and grad.dtype == tensor.data.dtype and grad.shape == tensor.data.shape)
        if adopt:
            owned.add(id(grad))
            tensor.grad = tensor_class(grad)
        else:
            tensor.grad = tensor_class(np.array(grad, dtype=tensor.data.dtype, order="C", copy=True))
    else:
        tensor.grad.data += grad.astype(tensor.data.dtype, copy=False)


def _accumulate_device(tensor, grad, tensor_class, owned=None) -> None:
    """_accumulate for a gradient in GPU memory (a DeviceArray): adopted when the backward
    pass made it and no other leaf holds its memory, else copied; later gradients are added
    by a CUDA kernel."""
    if not hasattr(tensor.data, "buffer"):
        raise RuntimeError(f"a gradient on cuda:0 reached a tensor on cpu of shape {tensor.shape}: "
                           f"an operation mixed devices")
    if grad.dtype != tensor.data.dtype:
        grad = grad.astype(tensor.data.dtype)
    if tensor.grad is None:
        if owned is not None and id(grad.buffer) not in owned:
            owned.add(id(grad.buffer))
            tensor.grad = tensor_class(grad)
        else:
            tensor.grad = tensor_class(grad.copy())
    else:
        tensor.grad.data += grad
