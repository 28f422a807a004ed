"""Adagrad, as torch.optim.Adagrad (Duchi et al. 2011):

    g = grad + weight_decay * p
    clr = lr / (1 + (step - 1) * lr_decay)
    sum = sum + g * g                       (sum starts at initial_accumulator_value)
    p = p - clr * g / (sqrt(sum) + eps)
"""
from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_range, _fused

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
                 maximize: bool = False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _validate(self, group) -> None:
        super()._validate(group)  # learning rate first, as torch
        _check_range("lr_decay", group["lr_decay"], 0.0)
        _check_range("weight_decay", group["weight_decay"], 0.0)
        _check_range("initial_accumulator_value", group["initial_accumulator_value"], 0.0)
        _check_range("epsilon", group["eps"], 0.0)

    def _step_group(self, group, params, grads, dtype) -> None:
        clr, sums = [], []
        for p in params:
            state = self.state.setdefault(p, {})
            if state.get("sum") is None:
                state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
            state["step"] = float(state.get("step", 0.0)) + 1.0
            clr.append(group["lr"] / (1.0 + (state["step"] - 1.0) * group["lr_decay"]))
            sums.append(state["sum"])
        _fused("adagrad_step", dtype, params)(
            [p.data for p in params], grads, sums, clr, group["weight_decay"], group["eps"],
            group["maximize"])
