"""SGD with momentum, dampening, Nesterov and weight decay, as torch.optim.SGD:

    d = g + weight_decay * p
    b = d                                   (first step)
    b = momentum * b + (1 - dampening) * d  (later steps)
    d = d + momentum * b if nesterov else b
    p = p - lr * d
"""
from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_range, _fused

__all__ = ["SGD"]


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _validate(self, group) -> None:
        super()._validate(group)
        _check_range("momentum", group["momentum"], 0.0)
        _check_range("weight_decay", group["weight_decay"], 0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _step_group(self, group, params, grads, dtype) -> None:
        step = _fused("sgd_step", dtype, params)
        args = (group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                group["nesterov"], group["maximize"])
        if group["momentum"] == 0:
            step([p.data for p in params], grads, [], *args, False)
            return
        # A parameter's first step initializes its buffer to the gradient (PyTorch's clone).
        fresh = [i for i, p in enumerate(params) if self.state.get(p, {}).get("momentum_buffer") is None]
        fresh_set = set(fresh)
        seen = [i for i in range(len(params)) if i not in fresh_set]
        for indices, init in ((fresh, True), (seen, False)):
            if not indices:
                continue
            buffers = [self._buffer(params[i], "momentum_buffer") for i in indices]
            step([params[i].data for i in indices], [grads[i] for i in indices], buffers, *args, init)

    def _buffer(self, p, name, zero=True):
        state = self.state.setdefault(p, {})
        if state.get(name) is None:  # also replaces a None loaded from a state_dict
            state[name] = np.zeros_like(p.data)
        return state[name]
