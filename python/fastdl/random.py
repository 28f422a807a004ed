"""Seeded random number generation: fastdl.manual_seed and fastdl.Generator.

A Generator wraps NumPy's PCG64 bit generator; its state is plain integers (JSON-safe),
so checkpoints can carry it without pickle.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["Generator", "manual_seed", "seed", "initial_seed", "default_generator", "get_rng_state", "set_rng_state"]

_DEFAULT_SEED = 67280421310721  # torch's default seed, for a reproducible fresh process


class Generator:
    """A source of random numbers, as torch.Generator: ``Generator().manual_seed(0)``."""

    def __init__(self, device: str = "cpu"):
        if device != "cpu":
            raise ValueError(f"device: only 'cpu' generators are supported, got {device!r}")
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed: int) -> "Generator":
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"seed: must be non-negative, got {seed}")
        self._seed = seed
        self.numpy = np.random.Generator(np.random.PCG64(seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def seed(self) -> int:
        """Seed from the operating system's entropy, as torch.Generator.seed()."""
        new = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.manual_seed(new)
        return new

    def get_state(self) -> dict:
        return {"seed": self._seed, "bit_generator": self.numpy.bit_generator.state}

    def set_state(self, state: dict) -> "Generator":
        if not isinstance(state, dict) or "bit_generator" not in state:
            raise ValueError("state: expected a dict from Generator.get_state()")
        self._seed = int(state.get("seed", 0))
        self.numpy = np.random.Generator(np.random.PCG64())
        self.numpy.bit_generator.state = state["bit_generator"]
        return self


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (parameter initialization, shuffling, dropout)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _numpy(generator: Optional[Generator]) -> np.random.Generator:
    if generator is None:
        return default_generator.numpy
    if isinstance(generator, Generator):
        return generator.numpy
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator: expected fastdl.Generator, got {type(generator).__name__}")


def randn(*size, dtype=None, generator: Optional[Generator] = None, requires_grad: bool = False):
    from .tensor import Tensor, _as_dtype, _size
    values = _numpy(generator).standard_normal(_size(size))
    return Tensor(values.astype(_as_dtype(dtype) or np.float32), requires_grad)


def rand(*size, dtype=None, generator: Optional[Generator] = None, requires_grad: bool = False):
    from .tensor import Tensor, _as_dtype, _size
    values = _numpy(generator).random(_size(size))
    return Tensor(values.astype(_as_dtype(dtype) or np.float32), requires_grad)


def randint(low, high=None, size=(), dtype=None, generator: Optional[Generator] = None):
    from .tensor import Tensor, _as_dtype, _size
    if high is None:
        low, high = 0, low
    values = _numpy(generator).integers(low, high, size=_size((size,)))
    return Tensor(values.astype(_as_dtype(dtype) or np.int64))


def randperm(n: int, generator: Optional[Generator] = None):
    from .tensor import Tensor
    return Tensor(_numpy(generator).permutation(int(n)).astype(np.int64))
