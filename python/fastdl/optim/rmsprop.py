"""RMSprop, as torch.optim.RMSprop (Hinton's lecture 6e; centered form of Graves 2013):

    g = grad + weight_decay * p
    v = alpha * v + (1 - alpha) * g^2
    centered:  m = alpha * m + (1 - alpha) * g,   avg = sqrt(v - m^2) + eps
    otherwise: avg = sqrt(v) + eps
    momentum > 0: b = momentum * b + g / avg,  p = p - lr * b
    otherwise:    p = p - lr * g / avg
"""
from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_range, _fused

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _validate(self, group) -> None:
        super()._validate(group)  # learning rate first, as torch
        _check_range("epsilon", group["eps"], 0.0)
        _check_range("momentum", group["momentum"], 0.0)
        _check_range("weight_decay", group["weight_decay"], 0.0)
        _check_range("alpha", group["alpha"], 0.0)

    def _state(self, p, name):
        state = self.state.setdefault(p, {})
        if state.get(name) is None:  # also replaces a None loaded from a state_dict
            state[name] = np.zeros_like(p.data)
        return state[name]

    def _step_group(self, group, params, grads, dtype) -> None:
        centered, momentum = group["centered"], group["momentum"]
        square_avgs, grad_avgs, buffers = [], [], []
        for p in params:
            state = self.state.setdefault(p, {})
            state["step"] = float(state.get("step", 0.0)) + 1.0
            square_avgs.append(self._state(p, "square_avg"))
            if momentum > 0:
                buffers.append(self._state(p, "momentum_buffer"))
            if centered:
                grad_avgs.append(self._state(p, "grad_avg"))
        _fused("rmsprop_step", dtype, params)(
            [p.data for p in params], grads, square_avgs, grad_avgs, buffers, group["lr"],
            group["alpha"], group["eps"], group["weight_decay"], momentum, centered,
            group["maximize"])
