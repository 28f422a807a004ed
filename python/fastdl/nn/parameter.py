"""Parameter: a leaf tensor that a Module registers and an optimizer updates."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, _to_array


class Parameter(Tensor):
    """A tensor that is a module parameter (requires_grad=True by default), as torch.nn.Parameter."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            array = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            array = np.ascontiguousarray(data.data)
        else:
            array = _to_array(data)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + Tensor(self.data, self.requires_grad).__repr__()
