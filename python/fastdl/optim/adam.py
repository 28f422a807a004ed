"""Adam and AdamW, as torch.optim.Adam / AdamW (Kingma & Ba, 2015; Loshchilov & Hutter, 2019):

    g = g + weight_decay * p              (Adam)   |   p = p * (1 - lr * weight_decay)  (AdamW)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2     (v_max = max(v_max, v) with amsgrad)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The bias corrections are computed once per step on the host in double.
"""
from __future__ import annotations

import math

from .optimizer import Optimizer, _check_range, _fused

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _validate(self, group) -> None:
        super()._validate(group)
        _check_range("epsilon", group["eps"], 0.0)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: expected a pair, got {betas!r}")
        _check_range("beta parameter at index 0", betas[0], 0.0, 1.0, high_open=True)
        _check_range("beta parameter at index 1", betas[1], 0.0, 1.0, high_open=True)
        _check_range("weight_decay", group["weight_decay"], 0.0)

    def _step_group(self, group, params, grads, dtype) -> None:
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        step_size, bias_correction2_sqrt = [], []
        exp_avgs, exp_avg_sqs, max_sqs = [], [], []
        for p in params:
            state = self.state.setdefault(p, {})
            state["step"] = float(state.get("step", 0.0)) + 1.0
            t = state["step"]
            step_size.append(group["lr"] / (1.0 - beta1 ** t))
            bias_correction2_sqrt.append(math.sqrt(1.0 - beta2 ** t))
            exp_avgs.append(self._buffer(p, "exp_avg"))
            exp_avg_sqs.append(self._buffer(p, "exp_avg_sq"))
            if amsgrad:
                max_sqs.append(self._buffer(p, "max_exp_avg_sq"))
        _fused("adam_step", dtype, params)(
            [p.data for p in params], grads, exp_avgs, exp_avg_sqs, max_sqs, step_size,
            bias_correction2_sqrt, group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
            amsgrad, group["maximize"], self._decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (default weight_decay=1e-2, as torch.optim.AdamW)."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
