"""Devices and GPU arrays: ``fastdl.device`` and the DeviceArray a CUDA tensor holds.

A CPU tensor's ``.data`` is a NumPy array; a CUDA tensor's ``.data`` is a DeviceArray: a
C-contiguous block of GPU memory (a ``fastdl._C.cuda.Buffer``, freed when the last array
viewing it dies), a shape and a dtype. DeviceArray offers only what fastdl's CUDA kernels,
autograd and optimizers need (reshape, copy, ``+``/``+=`` for gradient accumulation, fill,
host transfers, NumPy's ``*_like`` constructors); everything else raises an error naming
the operation, so a NumPy-only code path never runs silently on a GPU tensor.

This module never touches the GPU on import; the first transfer does.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from . import _C

__all__ = ["device", "DeviceArray"]

_FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


class device:
    """A device, as torch.device: ``device('cpu')``, ``device('cuda')``, ``device('cuda:0')``,
    ``device('cuda', 0)``. Compares equal to its string form; ``'cuda'`` (no index) equals
    every CUDA device index (fastdl uses cuda:0 only)."""

    __slots__ = ("type", "index")

    def __init__(self, type, index: Optional[int] = None):  # noqa: A002 - torch's name
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string like 'cpu' or 'cuda:0', got {type!r}")
        text = type.strip()
        if ":" in text:
            if index is not None:
                raise RuntimeError(f"device: type {text!r} already has an index; pass index=None")
            text, _, number = text.partition(":")
            if not number.isdigit():
                raise RuntimeError(f"Invalid device string: {type!r}")
            index = int(number)
        if text not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
                raise RuntimeError(f"device: index must be a non-negative int, got {index!r}")
            if text == "cpu" and index != 0:
                raise RuntimeError(f"device: the cpu device has index 0 only, got {index}")
            index = int(index)
        self.type = text
        self.index = index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except (RuntimeError, TypeError):
                return False
        if not isinstance(other, device):
            return NotImplemented
        return self.type == other.type and (self.index is None or other.index is None
                                             or self.index == other.index)

    def __hash__(self) -> int:
        return hash(self.type)


CPU = device("cpu")
CUDA0 = device("cuda", 0)


def _kernel(name: str, dtype: np.dtype):
    return getattr(_C.cuda, f"{name}_{np.dtype(dtype).name}")


class _MissingOnGpu(NotImplementedError, AttributeError):
    """An ndarray attribute a DeviceArray lacks: NotImplementedError for the reader, and an
    AttributeError too, so that hasattr() and getattr(..., default) keep working."""


def _not_on_gpu(what: str, error=NotImplementedError) -> NotImplementedError:
    return error(
        f"{what} is not implemented for CUDA tensors (fastdl has no CUDA kernel for it); "
        f"move the tensor to the host with .cpu() first")


class DeviceArray:
    """A C-contiguous array in GPU memory (device cuda:0)."""

    __slots__ = ("buffer", "shape", "dtype", "__weakref__")

    def __init__(self, buffer, shape: Tuple[int, ...], dtype):
        self.buffer = buffer
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, shape, dtype) -> "DeviceArray":
        from . import cuda
        cuda._require()
        shape = tuple(int(s) for s in shape)
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        return cls(_C.cuda.Buffer(count * dtype.itemsize), shape, dtype)

    @classmethod
    def zeros(cls, shape, dtype) -> "DeviceArray":
        out = cls.empty(shape, dtype)
        out.buffer.zero()
        return out

    @classmethod
    def full(cls, shape, value, dtype) -> "DeviceArray":
        out = cls.empty(shape, dtype)
        out.fill(value)
        return out

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> "DeviceArray":
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            array = array.copy(order="C")
        out = cls.empty(array.shape, array.dtype)
        out.buffer.copy_from_host(array)
        return out

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> device:
        return CUDA0

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device='cuda:0')"

    # ------------------------------------------------------------------ transfers and copies
    def to_numpy(self) -> np.ndarray:
        """A host copy (waits for the kernels that write this array)."""
        out = np.empty(self.shape, dtype=self.dtype)
        self.buffer.copy_to_host(out)
        return out

    def copy(self) -> "DeviceArray":
        out = DeviceArray.empty(self.shape, self.dtype)
        out.buffer.copy_from_buffer(self.buffer)
        return out

    def reshape(self, *shape) -> "DeviceArray":
        """A view with another shape (shares the memory), -1 inferred, as ndarray.reshape."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = [int(s) for s in shape]
        if shape.count(-1) > 1:
            raise ValueError("can only specify one unknown dimension")
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
            if known == 0 or self.size % known:
                raise ValueError(f"cannot reshape array of size {self.size} into shape {tuple(shape)}")
            shape[shape.index(-1)] = self.size // known
        if any(s < 0 for s in shape) or int(np.prod(shape, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape array of size {self.size} into shape {tuple(shape)}")
        return DeviceArray(self.buffer, tuple(shape), self.dtype)

    def astype(self, dtype, copy: bool = True) -> "DeviceArray":
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.copy() if copy else self
        # No cast kernel: a round trip through the host (Module.to(dtype) on a GPU model).
        return DeviceArray.from_numpy(self.to_numpy().astype(dtype))

    def fill(self, value) -> None:
        if self.dtype in _FLOAT_TYPES:
            _kernel("fill", self.dtype)(self.buffer, self.size, float(value))
        elif self.dtype == np.int64:
            _C.cuda.fill_int64(self.buffer, self.size, float(value))
        else:
            host = np.full(self.shape, value, dtype=self.dtype)
            self.buffer.copy_from_host(host)

    def __setitem__(self, key, value) -> None:
        """Only whole-array assignment: ``a[...] = 0``, ``a[...] = other``."""
        if key is not Ellipsis and key != slice(None):
            raise _not_on_gpu("indexed assignment")
        if isinstance(value, numbers.Number):
            if value == 0:
                self.buffer.zero()
            else:
                self.fill(value)
        elif isinstance(value, DeviceArray):
            if value.shape != self.shape or value.dtype != self.dtype:
                raise ValueError(f"assignment: a {value.dtype} array of shape {value.shape} into a "
                                 f"{self.dtype} array of shape {self.shape}")
            self.buffer.copy_from_buffer(value.buffer)
        else:
            host = np.broadcast_to(np.asarray(value, dtype=self.dtype), self.shape).copy(order="C")
            self.buffer.copy_from_host(host)

    # ------------------------------------------------------------------ arithmetic (gradients)
    def _check_same(self, other, op: str) -> None:
        if not isinstance(other, DeviceArray) and np.ndim(other) == 0:
            raise _not_on_gpu(f"{op} with a scalar")
        if not isinstance(other, DeviceArray):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                               f"two devices, cuda:0 and cpu! ({op})")
        if other.shape != self.shape or other.dtype != self.dtype:
            raise _not_on_gpu(f"{op} of a {self.dtype} array of shape {self.shape} and a "
                              f"{other.dtype} array of shape {other.shape} (broadcasting or "
                              f"type promotion)")

    def __iadd__(self, other) -> "DeviceArray":
        if isinstance(other, numbers.Number) and self.size <= 16:
            # Bookkeeping counters (BatchNorm's num_batches_tracked): through the host.
            host = self.to_numpy()
            host += other
            self.buffer.copy_from_host(host)
            return self
        self._check_same(other, "+=")
        if self.dtype not in _FLOAT_TYPES:
            raise _not_on_gpu(f"+= on {self.dtype}")
        _kernel("add_inplace", self.dtype)(self.buffer, other.buffer, self.size)
        return self

    def __add__(self, other) -> "DeviceArray":
        self._check_same(other, "+")
        out = self.copy()
        out += other
        return out

    def __radd__(self, other):
        return self.__add__(other)

    def __getattr__(self, name: str):
        # Reached only for attributes DeviceArray lacks (ndarray methods such as sum, argmax).
        if name.startswith("__"):
            raise AttributeError(name)
        raise _not_on_gpu(f"'{name}'", _MissingOnGpu)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
                        "copy the tensor to host memory first.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs (np.exp, ndarray + DeviceArray, ...) refuse, naming the op."""
        if any(isinstance(x, np.ndarray) and x.ndim > 0 for x in inputs):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                               f"two devices, cuda:0 and cpu! (numpy.{ufunc.__name__})")
        raise _not_on_gpu(f"numpy.{ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        """NumPy's *_like constructors give device arrays; other NumPy functions refuse."""
        name = func.__name__
        if name in ("zeros_like", "empty_like", "ones_like", "full_like"):
            prototype = args[0]
            dtype = kwargs.get("dtype") or prototype.dtype
            shape = kwargs.get("shape") or prototype.shape
            if name == "zeros_like":
                return DeviceArray.zeros(shape, dtype)
            if name == "empty_like":
                return DeviceArray.empty(shape, dtype)
            value = 1 if name == "ones_like" else (args[1] if len(args) > 1 else kwargs["fill_value"])
            return DeviceArray.full(shape, value, dtype)
        if name == "copyto":  # load_state_dict into a model on the GPU, or out of one
            destination, source = args[0], args[1]
            if isinstance(source, DeviceArray):
                source = source if isinstance(destination, DeviceArray) and \
                    source.dtype == destination.dtype else source.to_numpy()
            if isinstance(destination, DeviceArray):
                destination[...] = source if isinstance(source, DeviceArray) else \
                    np.asarray(source).astype(destination.dtype)
            else:
                np.copyto(destination, source, **kwargs)
            return None
        raise _not_on_gpu(f"numpy.{name}")

    def __bool__(self):
        raise _not_on_gpu("bool()")


def _make_unsupported(op: str):
    def method(self, *args, **kwargs):
        raise _not_on_gpu(f"'{op}'")
    method.__name__ = op
    return method


for _op in ("__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
            "__floordiv__", "__mod__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__",
            "__neg__", "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__getitem__",
            "__isub__", "__imul__", "__itruediv__", "__iter__", "__float__", "__int__"):
    setattr(DeviceArray, _op, _make_unsupported(_op.strip("_")))
del _op


def parse_device(value) -> device:
    """A device from 'cpu', 'cuda', 'cuda:0', a fastdl.device or None (cpu)."""
    if value is None:
        return CPU
    if isinstance(value, device):
        return value
    if isinstance(value, str):
        return device(value)
    raise TypeError(f"device: expected a string like 'cpu' or 'cuda', or a fastdl.device, "
                    f"got {type(value).__name__} {value!r}")


def to_device(data, target: device):
    """data (ndarray or DeviceArray) on target: the same object when it is there already."""
    if target.type == "cpu":
        return data.to_numpy() if isinstance(data, DeviceArray) else data
    from . import cuda
    cuda._require(target)
    if isinstance(data, DeviceArray):
        return data
    return DeviceArray.from_numpy(data)


def device_of(data) -> device:
    return CUDA0 if isinstance(data, DeviceArray) else CPU
