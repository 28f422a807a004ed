"""Devices and GPU arrays: ``fastdl.device`` and the DeviceArray a CUDA tensor holds.

A CPU tensor's ``.data`` is a NumPy array; a CUDA tensor's ``.data`` is a DeviceArray: a
C-contiguous block of GPU memory (a ``fastdl._C.cuda.Buffer``, freed when the last array
viewing it dies), a shape and a dtype. DeviceArray offers what fastdl's CUDA kernels,
autograd, optimizers and a training loop need: reshape, copy, fill, host transfers,
NumPy's ``*_like`` constructors, ``transpose`` and ``broadcast_to`` (contiguous copies),
``sum`` over all or some axes, and ``+ - * /`` (also in place, and unary ``-``, ``** 2``)
on float32 / float64 with an array of the same dtype (broadcasting: both operands expanded
first) or a scalar (a Python number or a 0-d host array, rounded to the array's dtype
first, as NumPy does with a Python scalar).
Everything else -- type promotion, indexing, comparisons, other ufuncs -- raises an error
naming the operation, so a NumPy-only code path never runs silently on a GPU tensor.

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

    # ------------------------------------------------------------------ layout (copies)
    def transpose(self, *axes) -> "DeviceArray":
        """A C-contiguous copy with the axes permuted (ndarray.transpose's values)."""
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        ndim = self.ndim
        axes = tuple(range(ndim))[::-1] if axes is None or len(axes) == 0 else tuple(int(a) for a in axes)
        if sorted(a % max(ndim, 1) for a in axes) != list(range(ndim)) or len(axes) != ndim:
            raise ValueError(f"axes {axes} don't match an array of {ndim} dimensions")
        axes = tuple(a % ndim for a in axes)
        strides = _strides(self.shape)
        out = DeviceArray.empty(tuple(self.shape[a] for a in axes), self.dtype)
        _strided_copy(self, 0, [strides[a] for a in axes], out, 0, _strides(out.shape), out.shape)
        return out

    def broadcast_to(self, shape) -> "DeviceArray":
        """A C-contiguous copy broadcast to `shape` (np.broadcast_to's values)."""
        shape = tuple(int(s) for s in shape)
        if np.broadcast_shapes(self.shape, shape) != shape:
            raise ValueError(f"operands could not be broadcast together with remapped shapes "
                             f"[original->remapped]: {self.shape} and requested shape {shape}")
        lead = len(shape) - self.ndim
        strides = [0] * lead + [0 if n == 1 else st for n, st in zip(self.shape, _strides(self.shape))]
        out = DeviceArray.empty(shape, self.dtype)
        _strided_copy(self, 0, strides, out, 0, _strides(shape), shape)
        return out

    # ------------------------------------------------------------------ reductions
    def sum(self, axis=None, dtype=None, out=None, keepdims: bool = False) -> "DeviceArray":
        """ndarray.sum over all or some axes, each sum accumulated in double in a fixed order
        and rounded once to the array's dtype (float32 / float64 only)."""
        if dtype is not None and np.dtype(dtype) != self.dtype:
            raise _not_on_gpu(f"sum with dtype={np.dtype(dtype)} of a {self.dtype} array")
        if out is not None:
            raise _not_on_gpu("sum(out=...)")
        if self.dtype not in _FLOAT_TYPES:
            raise _not_on_gpu(f"sum of a {self.dtype} array")
        if axis is not None:
            axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
            ndim = max(self.ndim, 1)
            if any(not -ndim <= int(a) < ndim for a in axes):
                raise ValueError(f"axis {axis} is out of bounds for array of dimension {self.ndim}")
            axes = tuple(sorted({int(a) % ndim for a in axes}))
            if len(axes) < self.ndim:
                return self._sum_axes(axes, keepdims)
        sums = DeviceArray.empty((1,), np.float64)
        _kernel("sum_array", self.dtype)(self.buffer, self.size, sums.buffer, 0)
        result = DeviceArray.empty((), self.dtype)
        _kernel("scale_sums", self.dtype)(sums.buffer, 1, 1.0, 0.0, result.buffer)
        return result.reshape((1,) * self.ndim) if keepdims else result

    def _sum_axes(self, axes, keepdims: bool) -> "DeviceArray":
        """The sum over some axes: those moved last (a strided copy, unless they are last
        already), then one fixed-order sum per row of the kept axes."""
        kept = tuple(a for a in range(self.ndim) if a not in axes)
        source = self if kept + tuple(axes) == tuple(range(self.ndim)) else self.transpose(kept + tuple(axes))
        rows = int(np.prod([self.shape[a] for a in kept], dtype=np.int64))
        cols = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        out = DeviceArray.empty(tuple(self.shape[a] for a in kept), self.dtype)
        if cols == 0:
            out.buffer.zero()
        else:
            _kernel("sum_rows", self.dtype)(source.buffer, out.buffer, rows, cols)
        if keepdims:
            return out.reshape(tuple(1 if a in axes else n for a, n in enumerate(self.shape)))
        return out

    # ------------------------------------------------------------------ arithmetic
    def _check_same(self, other, op: str) -> None:
        if not isinstance(other, DeviceArray):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                               f"two devices, cuda:0 and cpu! ({op})")
        if other.dtype != self.dtype:
            raise _not_on_gpu(f"{op} of a {self.dtype} array and a {other.dtype} array "
                              f"(type promotion)")

    def _arithmetic(self, other, op: str, reverse: bool = False, out=None) -> "DeviceArray":
        """self op other (other op self when reverse) into out (a new array by default)."""
        symbol = _SYMBOLS[op]
        if self.dtype not in _FLOAT_TYPES:
            raise _not_on_gpu(f"{symbol} on a {self.dtype} array")
        scalar = _scalar(other)
        if scalar is not None:
            out = DeviceArray.empty(self.shape, self.dtype) if out is None else out
            _kernel("elementwise_scalar", self.dtype)(_ARITHMETIC[op], self.buffer, scalar, bool(reverse),
                                                      out.buffer, self.size)
            return out
        self._check_same(other, symbol)
        a, b = (other, self) if reverse else (self, other)
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"operands could not be broadcast together with shapes {a.shape} "
                             f"{b.shape}") from None
        if out is None:
            out = DeviceArray.empty(shape, self.dtype)
        elif out.shape != shape:
            raise ValueError(f"non-broadcastable output operand with shape {out.shape} doesn't "
                             f"match the broadcast shape {shape}")
        # Broadcasting: an operand of another shape is first expanded (a strided copy).
        a = a if a.shape == shape else a.broadcast_to(shape)
        b = b if b.shape == shape else b.broadcast_to(shape)
        _kernel("elementwise_binary", self.dtype)(_ARITHMETIC[op], a.buffer, b.buffer, out.buffer, out.size)
        return out

    def __iadd__(self, other) -> "DeviceArray":
        if self.dtype not in _FLOAT_TYPES and isinstance(other, numbers.Number) and self.size <= 16:
            # Bookkeeping counters (BatchNorm's num_batches_tracked): through the host.
            host = self.to_numpy()
            host += other
            self.buffer.copy_from_host(host)
            return self
        if isinstance(other, DeviceArray) and self.dtype in _FLOAT_TYPES:
            self._check_same(other, "+=")
            _kernel("add_inplace", self.dtype)(self.buffer, other.buffer, self.size)
            return self
        return self._arithmetic(other, "add", out=self)

    def __isub__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "sub", out=self)

    def __imul__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "mul", out=self)

    def __itruediv__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "div", out=self)

    def __add__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "add")

    def __radd__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "add", reverse=True)

    def __sub__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "sub")

    def __rsub__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "sub", reverse=True)

    def __mul__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "mul")

    def __rmul__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "mul", reverse=True)

    def __truediv__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "div")

    def __rtruediv__(self, other) -> "DeviceArray":
        return self._arithmetic(other, "div", reverse=True)

    def __neg__(self) -> "DeviceArray":
        return self._arithmetic(-1.0, "mul")  # exact: x * -1 is -x, zeros' signs included

    def __pow__(self, exponent) -> "DeviceArray":
        """x ** 1 and x ** 2 (x * x, NumPy's own fast path: the same bits); other exponents
        have no kernel."""
        value = _scalar(exponent)
        if value == 1.0:
            return self.copy()
        if value == 2.0:
            return self._arithmetic(self, "mul")
        raise _not_on_gpu(f"'pow' with exponent {exponent!r} (only 1 and 2)")

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
        # A host scalar (0-d array) on the left of an operator: the reflected operation.
        op = _UFUNCS.get(ufunc.__name__)
        if op is not None and method == "__call__" and not kwargs:
            if op == "neg" and len(inputs) == 1:
                return -inputs[0]
            if len(inputs) == 2 and isinstance(inputs[1], DeviceArray) and not isinstance(inputs[0], DeviceArray):
                return inputs[1]._arithmetic(inputs[0], op, reverse=True)
            if len(inputs) == 2 and isinstance(inputs[0], DeviceArray):
                return inputs[0]._arithmetic(inputs[1], op)
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
        if name == "broadcast_to":
            shape = args[1] if len(args) > 1 else kwargs["shape"]
            return args[0].broadcast_to((shape,) if isinstance(shape, numbers.Integral) else shape)
        if name == "expand_dims":
            array, axis = args[0], args[1] if len(args) > 1 else kwargs["axis"]
            axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
            ndim = array.ndim + len(axes)
            axes = sorted(int(a) % ndim for a in axes)
            shape = list(array.shape)
            for a in axes:
                shape.insert(a, 1)
            return array.reshape(tuple(shape))
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


for _op in ("__floordiv__", "__mod__", "__rpow__", "__matmul__", "__rmatmul__",
            "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__getitem__", "__iter__",
            "__float__", "__int__"):
    setattr(DeviceArray, _op, _make_unsupported(_op.strip("_")))
del _op


_ARITHMETIC = {"add": 0, "sub": 1, "mul": 2, "div": 3}  # csrc/cuda/kernels.cuh: Arithmetic
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_UFUNCS = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div", "true_divide": "div",
           "negative": "neg"}


def _scalar(value) -> Optional[float]:
    """value as a float when it is a real scalar (a Python or NumPy number, a 0-d host
    array of a number type), else None."""
    if isinstance(value, np.ndarray):
        return float(value) if value.ndim == 0 and value.dtype.kind in "biuf" else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _strides(shape) -> list:
    """C-contiguous strides of shape, in elements."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return strides[::-1]


def _strided_copy(src: "DeviceArray", src_offset: int, src_strides, dst: "DeviceArray",
                  dst_offset: int, dst_strides, shape) -> None:
    """dst[dst_offset + i . dst_strides] = src[src_offset + i . src_strides] for every index i
    of shape (csrc/cuda/tensor.cu); float32, float64 and int64."""
    if src.dtype != dst.dtype or src.dtype not in _FLOAT_TYPES + (np.dtype(np.int64),):
        raise _not_on_gpu(f"copying a {src.dtype} array into a {dst.dtype} array")
    if len(shape) > _MAX_DIMS:
        raise _not_on_gpu(f"a layout change of an array with {len(shape)} dimensions "
                          f"(at most {_MAX_DIMS})")
    _kernel("strided_copy", src.dtype)(src.buffer, int(src_offset), [int(s) for s in src_strides],
                                       dst.buffer, int(dst_offset), [int(s) for s in dst_strides],
                                       [int(n) for n in shape])


_MAX_DIMS = 8  # kMaxDims in csrc/cuda/kernels.cuh


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
