"""Optimizer base: param groups, per-parameter state and state_dict, as torch.optim.Optimizer.

Subclasses implement ``_step_group(group, params, grads, dtype)``, called once per group
and dtype with every parameter that has a gradient: one fused C++ pass, no Python loop
over parameters on the hot path.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Callable, Dict, Iterable, List

import numpy as np

from .. import _C
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["Optimizer"]


class Optimizer:
    def __init__(self, params: Iterable, defaults: Dict):
        self.defaults = dict(defaults)
        self.state: Dict[Tensor, Dict] = {}
        self.param_groups: List[Dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Dict) -> None:
        if not isinstance(group, dict):
            raise TypeError(f"param group must be a dict, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"optimizer can only optimize float32/float64 tensors, got {p.dtype}")
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(p))
        full = dict(self.defaults)
        full.update(group)
        full["params"] = params
        self._validate(full)
        self.param_groups.append(full)

    def _validate(self, group: Dict) -> None:
        lr = group["lr"]
        if not isinstance(lr, numbers.Real) or not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    @no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            # One fused step per (dtype, device): CPU parameters hold NumPy arrays, CUDA
            # parameters DeviceArrays (always contiguous; their step is the CUDA twin).
            by_dtype: Dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_dtype.setdefault((p.dtype, isinstance(p.data, np.ndarray)), []).append(p)
            for (dtype, on_host), params in by_dtype.items():
                for p in params:
                    if p.grad.shape != p.shape:
                        raise RuntimeError(f"grad of shape {p.grad.shape} does not match its "
                                           f"parameter of shape {p.shape}")
                    if not on_host:
                        _check_device_grad(p, dtype)
                    elif not p.data.flags.c_contiguous or not p.data.flags.writeable:
                        p.data = np.ascontiguousarray(p.data).copy()
                if on_host:
                    grads = [np.ascontiguousarray(p.grad.data, dtype=dtype) for p in params]
                else:
                    grads = [p.grad.data for p in params]
                self._step_group(group, params, grads, dtype)
        return loss

    def _step_group(self, group, params, grads, dtype) -> None:
        raise NotImplementedError

    def _buffer(self, p: Tensor, name: str, zero: bool = True) -> np.ndarray:
        state = self.state.setdefault(p, {})
        if name not in state:
            state[name] = np.zeros_like(p.data) if zero else np.empty_like(p.data)
        return state[name]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}, as torch."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (Tensor(v) if isinstance(v, np.ndarray) or hasattr(v, "buffer") else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict) -> None:
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups'")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for saved, own in zip(groups, self.param_groups):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        saved_state = state_dict.get("state", {})
        self.state = {}
        for saved, own in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    own[key] = copy.deepcopy(value)
            for index, p in zip(saved["params"], own["params"]):
                entry = saved_state.get(index, saved_state.get(str(index)))
                if entry is None:
                    continue
                restored = {}
                for key, value in entry.items():
                    array = value.data if isinstance(value, Tensor) else value
                    if isinstance(array, np.ndarray) and array.ndim > 0:
                        if array.shape != p.shape:
                            raise ValueError(f"state {key!r} of parameter {index} has shape "
                                             f"{array.shape}, the parameter has {p.shape}")
                        array = np.array(array, dtype=p.dtype, order="C", copy=True)
                        if not isinstance(p.data, np.ndarray):  # a parameter on the GPU
                            from .._device import to_device
                            array = to_device(array, p.device)
                    elif isinstance(array, np.ndarray):
                        array = array.item()
                    restored[key] = array
                self.state[p] = restored
            self._validate(own)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


def _check_device_grad(p: Tensor, dtype) -> None:
    if isinstance(p.grad.data, np.ndarray):
        raise RuntimeError(f"a parameter on cuda:0 of shape {p.shape} has its gradient on cpu: "
                           f"move both with Module.to() (or Tensor.to())")
    if p.grad.dtype != dtype:
        raise RuntimeError(f"grad of dtype {p.grad.dtype} does not match its parameter's {dtype}")


def _fused(name: str, dtype, params) -> Callable:
    """The fused step kernel for these parameters: _C.<name>_<dtype> on the CPU, its CUDA
    twin (same arguments, lists of device arrays) for parameters on the GPU."""
    if isinstance(params[0].data, np.ndarray):
        return getattr(_C, f"{name}_{np.dtype(dtype).name}")
    kernel = getattr(_C.cuda, f"{name}_{np.dtype(dtype).name}")

    def step(*args):
        # Arrays (and lists of arrays) become the device Buffers the binding takes.
        return kernel(*[[a.buffer for a in arg] if isinstance(arg, list) and arg and
                        hasattr(arg[0], "buffer") else arg for arg in args])

    return step


def _check_range(name: str, value, low: float, high: float = math.inf, high_open: bool = False) -> None:
    ok = isinstance(value, numbers.Real) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"Invalid {name} value: {value}")
