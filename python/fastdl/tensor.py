"""fastdl.Tensor: a NumPy array with a gradient and a place in the autograd graph.

Names, defaults and semantics follow ``torch.Tensor``. Each differentiable method
records its backward closure right beside its forward computation.
"""
from __future__ import annotations

import builtins
import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ._device import CPU, DeviceArray, device, device_of, parse_device, to_device
from .autograd import Node, is_grad_enabled, run_backward

__all__ = [
    "Tensor", "device", "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "arange",
    "zeros_like", "ones_like", "float32", "float64", "int64", "int32", "uint8", "bool_",
    "float", "double", "long", "get_default_dtype",
]

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)
float = float32  # noqa: A001 - torch.float
double = float64
long = int64

_SUPPORTED = {float32, float64, np.dtype(np.float16), int64, int32, np.dtype(np.int16),
              np.dtype(np.int8), uint8, bool_}


def get_default_dtype() -> np.dtype:
    return float32


def _as_dtype(dtype) -> Optional[np.dtype]:
    if dtype is None:
        return None
    try:
        result = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: {dtype!r} is not a data type") from None
    if result not in _SUPPORTED:
        raise TypeError(f"dtype: {result} is not supported by fastdl "
                        f"(use float32, float64, an integer type or bool)")
    return result


def _to_array(data, dtype=None) -> np.ndarray:
    """Convert data the way torch.tensor does: Python floats become float32 (the default
    dtype), Python ints int64, NumPy arrays keep their dtype."""
    dtype = _as_dtype(dtype)
    if isinstance(data, Tensor):
        array = data.data
    elif isinstance(data, (np.ndarray, np.generic)):  # NumPy scalars keep their dtype, as in torch
        array = np.asarray(data)
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as error:
            raise TypeError(f"data: cannot make a tensor from {type(data).__name__}: {error}") from None
        if dtype is None and array.dtype == np.float64:
            array = array.astype(float32)
    if array.dtype.kind in "OUSVc" or array.dtype.kind == "M" or array.dtype.kind == "m":
        raise TypeError(f"data: dtype {array.dtype} is not supported by fastdl "
                        f"(strings, objects, complex numbers and dates are refused)")
    if dtype is None:
        dtype = array.dtype if array.dtype in _SUPPORTED else (
            float32 if array.dtype.kind == "f" else int64)
    return np.array(array, dtype=dtype, copy=True, order="C")


def _unbroadcast(grad: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum grad over the axes NumPy broadcasting added or stretched to reach its shape."""
    if grad.shape == shape:
        return grad
    if isinstance(grad, DeviceArray) and int(np.prod(shape, dtype=np.int64)) == 1:
        return grad.sum().reshape(shape)  # to a scalar operand: the whole-array sum (CUDA)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _dims(dim, ndim: int):
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    out = []
    for d in dims:
        if not -ndim <= d < max(ndim, 1):
            raise IndexError(f"dim: {d} out of range for a tensor with {ndim} dimensions")
        out.append(d % max(ndim, 1))
    return tuple(out)


class Tensor:
    """A multi-dimensional array that can record the operations applied to it."""

    __array_priority__ = 1000  # make ndarray <op> Tensor defer to Tensor's reflected op
    __slots__ = ("data", "grad", "requires_grad", "_node", "_retains_grad", "__weakref__")

    def __init__(self, data, requires_grad: bool = False, *, _node: Optional[Node] = None):
        # data: a NumPy array (CPU) or a DeviceArray (CUDA, see fastdl._device).
        self.data: np.ndarray = data if isinstance(data, (np.ndarray, DeviceArray)) else _to_array(data)
        if requires_grad and self.data.dtype.kind != "f":
            raise RuntimeError(f"Only Tensors of floating point dtype can require gradients, "
                               f"got {self.data.dtype}")
        self.grad: Optional[Tensor] = None
        self.requires_grad: bool = bool(requires_grad)
        self._node = _node
        self._retains_grad = False

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self) -> device:
        return device_of(self.data)

    @property
    def is_cuda(self) -> bool:
        return isinstance(self.data, DeviceArray)

    @property
    def grad_fn(self) -> Optional[Node]:
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def T(self) -> "Tensor":
        if self.ndim != 2:
            raise ValueError(f"T: expected a 2-D tensor, got shape {self.shape}")
        return self.transpose(0, 1)

    def size(self, dim: Optional[int] = None):
        return self.shape if dim is None else self.shape[_dims(dim, self.ndim)[0]]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self._host(), separator=", ", prefix="tensor(")
        extras = ["device='cuda:0'"] if self.is_cuda else []
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype=fastdl.{self.dtype}")
        if self._node is not None:
            extras.append(f"grad_fn={self._node!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def _host(self) -> np.ndarray:
        """The values as a NumPy array: the data itself on the CPU, a copy from a GPU."""
        return self.data.to_numpy() if isinstance(self.data, DeviceArray) else self.data

    def numpy(self) -> np.ndarray:
        if isinstance(self.data, DeviceArray):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() "
                            "to copy the tensor to host memory first.")
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): a Tensor with {self.data.size} elements cannot be "
                             f"converted to a Python scalar")
        return self._host().reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def __float__(self):
        return builtins_float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._host().reshape(()))

    def __index__(self):
        if self.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    # ------------------------------------------------------------------ graph
    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: you can only change requires_grad flags of leaf variables")
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError(f"Only Tensors of floating point dtype can require gradients, got {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._node is not None:
            self._retains_grad = True

    def backward(self, gradient=None, retain_graph: Optional[bool] = None) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of the leaves."""
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; "
                                   f"this tensor has shape {self.shape}: pass gradient=")
            gradient = np.ones_like(self.data)  # a DeviceArray for a CUDA tensor
        else:
            gradient = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient)
            if device_of(gradient) != self.device:
                raise RuntimeError(f"backward: gradient on {device_of(gradient)}, the tensor on "
                                   f"{self.device}; put them on one device")
            if gradient.shape != self.shape:
                raise RuntimeError(f"gradient: shape {gradient.shape} does not match the "
                                   f"tensor's shape {self.shape}")
            gradient = gradient.astype(self.dtype, copy=False)
        if self._node is None:  # a leaf: its gradient is the seed itself
            from .autograd import _accumulate
            _accumulate(self, gradient, Tensor)
            return
        run_backward(self, gradient, retain_graph=bool(retain_graph))

    # ------------------------------------------------------------------ in place, no graph
    def _check_inplace(self, name: str) -> None:
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an "
                               f"in-place operation (wrap it in fastdl.no_grad())")

    def zero_(self) -> "Tensor":
        self._check_inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value) -> "Tensor":
        self._check_inplace("fill_")
        self.data[...] = value
        return self

    def copy_(self, source) -> "Tensor":
        self._check_inplace("copy_")
        if isinstance(self.data, DeviceArray) or (isinstance(source, Tensor) and source.is_cuda):
            source = source.data if isinstance(source, Tensor) else source
            if isinstance(source, DeviceArray) and not isinstance(self.data, DeviceArray):
                source = source.to_numpy()
            else:
                self.data[...] = source  # same shape and dtype on the GPU, or host values
                return self
        source = source.data if isinstance(source, Tensor) else np.asarray(source)
        try:
            np.copyto(self.data, np.broadcast_to(source, self.shape), casting="unsafe")
        except ValueError:
            raise RuntimeError(f"copy_: source of shape {source.shape} cannot be broadcast "
                               f"to shape {self.shape}") from None
        return self

    def add_(self, other, alpha=1) -> "Tensor":
        self._check_inplace("add_")
        other = other.data if isinstance(other, Tensor) else other
        self.data += alpha * other if alpha != 1 else other
        return self

    def mul_(self, other) -> "Tensor":
        self._check_inplace("mul_")
        self.data *= other.data if isinstance(other, Tensor) else other
        return self

    def sub_(self, other, alpha=1) -> "Tensor":
        return self.add_(other, alpha=-alpha)

    def __setitem__(self, index, value) -> None:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError("in-place assignment to a tensor that requires grad; "
                               "wrap it in fastdl.no_grad()")
        self.data[_index(index)] = value.data if isinstance(value, Tensor) else value

    # ------------------------------------------------------------------ conversions
    def to(self, *args, **kwargs) -> "Tensor":
        """As torch.Tensor.to: to(dtype), to(device), to(device, dtype), to(other), with
        device= and dtype= keywords. Returns self when nothing changes; moving between
        devices copies and is differentiable."""
        target, dtype = _to_arguments(args, kwargs)
        result = self
        dtype = _as_dtype(dtype)
        if dtype is not None and dtype != self.dtype:
            source = self

            def backward(grad):
                return (grad.astype(source.dtype),)

            result = _result(self.data.astype(dtype), (self,), backward, "To") if dtype.kind == "f" \
                else Tensor(self.data.astype(dtype))
        if target is not None and target != result.device:
            moved, origin = to_device(result.data, target), result.device
            result = _result(moved, (result,), lambda g: (to_device(g, origin),), "ToCopy")
        return result

    def cuda(self, device=None) -> "Tensor":
        return self.to(parse_device("cuda" if device is None else device))

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def long(self) -> "Tensor":
        return self.to(int64)

    def int(self) -> "Tensor":
        return self.to(int32)

    def bool(self) -> "Tensor":
        return self.to(bool_)

    def type_as(self, other: "Tensor") -> "Tensor":
        return self.to(other.dtype)

    def cpu(self) -> "Tensor":
        return self.to(CPU)

    def clone(self) -> "Tensor":
        return _result(self.data.copy(), (self,), lambda g: (g,), "Clone")

    def contiguous(self) -> "Tensor":
        return self

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __neg__(self):
        return _result(-self.data, (self,), lambda g: (-g,), "Neg")

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: only a Python number exponent is supported")
        base = self.data
        out = base ** exponent

        def backward(grad):
            return (grad * exponent * base ** (exponent - 1),)

        # An integer tensor to a float power is a float32 tensor, as in torch (not truncated).
        dtype = base.dtype if base.dtype.kind == "f" or isinstance(exponent, numbers.Integral) else float32
        return _result(out.astype(dtype, copy=False), (self,), backward, "Pow")

    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(np.asarray(op(self.data, other)))

    def __eq__(self, other):  # noqa: D105 - element-wise, as in torch
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    __hash__ = object.__hash__

    def exp(self):
        out = np.exp(self.data)
        return _result(out, (self,), lambda g: (g * out,), "Exp")

    def log(self):
        x = self.data
        return _result(np.log(x), (self,), lambda g: (g / x,), "Log")

    def sqrt(self):
        out = np.sqrt(self.data)
        return _result(out, (self,), lambda g: (g / (2 * out),), "Sqrt")

    def abs(self):
        x = self.data
        return _result(np.abs(x), (self,), lambda g: (g * np.sign(x),), "Abs")

    def tanh(self):
        from .nn import functional  # the kernel lives with the ops; imported late (no cycle)
        return functional.tanh(self)

    def sigmoid(self):
        from .nn import functional
        return functional.sigmoid(self)

    def relu(self):
        from .nn import functional
        return functional.relu(self)

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim: bool = False, dtype=None):
        shape, axes = self.shape, _dims(dim, self.ndim)
        out = self.data.sum(axis=axes, keepdims=keepdim, dtype=_as_dtype(dtype))

        def backward(grad):
            if axes is not None and not keepdim:
                grad = np.expand_dims(grad, axes)
            return (np.broadcast_to(grad, shape).astype(self.dtype),)

        return _result(out if isinstance(out, DeviceArray) else np.asarray(out), (self,), backward, "Sum")

    def mean(self, dim=None, keepdim: bool = False):
        if self.dtype.kind != "f":
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be "
                               f"floating point, got {self.dtype}")
        axes = _dims(dim, self.ndim)
        count = self.data.size if axes is None else int(np.prod([self.shape[a] for a in axes]))
        return self.sum(dim, keepdim) / max(count, 1) if count else self.sum(dim, keepdim) * np.nan

    def max(self, dim=None, keepdim: bool = False):
        if dim is None:
            flat = int(np.argmax(self.data))
            value, shape = self.data.reshape(-1)[flat], self.shape

            def backward(grad):
                full = np.zeros(shape, dtype=grad.dtype)
                full.reshape(-1)[flat] = grad
                return (full,)

            return _result(np.asarray(value), (self,), backward, "Max")
        axis = _dims(dim, self.ndim)[0]
        indices = np.argmax(self.data, axis=axis)
        values = np.take_along_axis(self.data, np.expand_dims(indices, axis), axis)
        shape = self.shape

        def backward(grad):
            full = np.zeros(shape, dtype=grad.dtype)
            g = grad if keepdim else np.expand_dims(grad, axis)
            np.put_along_axis(full, np.expand_dims(indices, axis), g, axis)
            return (full,)

        values = values if keepdim else np.squeeze(values, axis)
        idx = indices if not keepdim else np.expand_dims(indices, axis)
        return _result(values, (self,), backward, "Max"), Tensor(idx.astype(np.int64))

    def argmax(self, dim=None, keepdim: bool = False):
        if dim is None:
            return Tensor(np.asarray(np.argmax(self.data), dtype=np.int64))
        axis = _dims(dim, self.ndim)[0]
        return Tensor(np.argmax(self.data, axis=axis, keepdims=keepdim).astype(np.int64))

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape):
        shape = _shape_arg(shape)
        source = self.shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {self.data.size}") from None
        return _result(out, (self,), lambda g: (g.reshape(source),), "Reshape")

    view = reshape

    def view_as(self, other: "Tensor"):
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _dims((start_dim, end_dim), self.ndim)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape[:start] + (int(np.prod(self.shape[start:end + 1])),) + self.shape[end + 1:]
        return self.reshape(shape)

    def unsqueeze(self, dim: int):
        dim = dim if dim >= 0 else dim + self.ndim + 1
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        d = _dims(dim, self.ndim)[0]
        if self.shape[d] != 1:
            return self
        return self.reshape(self.shape[:d] + self.shape[d + 1:])

    def permute(self, *dims):
        dims = _dims(_shape_arg(dims), self.ndim)
        inverse = tuple(np.argsort(dims))
        out = self.data.transpose(dims)  # a DeviceArray's transpose is a contiguous copy
        out = out if isinstance(out, DeviceArray) else np.ascontiguousarray(out)
        return _result(out, (self,), lambda g: (g.transpose(inverse),), "Permute")

    def transpose(self, dim0: int, dim1: int):
        dims = list(range(self.ndim))
        a, b = _dims((dim0, dim1), self.ndim)
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(*dims)

    def t(self):
        return self.T

    def __getitem__(self, index):
        index = _index(index)
        out = self.data[index]
        shape, dtype = self.shape, self.dtype

        def backward(grad):
            full = np.zeros(shape, dtype=dtype)
            np.add.at(full, index, grad)
            return (full,)

        return _result(np.array(out, copy=True), (self,), backward, "Index")

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


builtins_float = builtins.float


def _to_arguments(args, kwargs):
    """(device or None, dtype or None) from Tensor.to's positional and keyword forms."""
    unknown = set(kwargs) - {"device", "dtype", "non_blocking", "copy", "memory_format"}
    if unknown:
        raise TypeError(f"to() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    target, dtype = kwargs.get("device"), kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, Tensor):
            target, dtype = arg.device, arg.dtype
        elif isinstance(arg, device) or (isinstance(arg, str) and arg.split(":")[0] in ("cpu", "cuda")):
            target = arg
        elif isinstance(arg, str):  # a dtype name ('float64'), else a bad device string
            try:
                dtype = np.dtype(arg)
            except TypeError:
                parse_device(arg)  # raises: "Expected one of cpu, cuda device type ..."
                raise
        elif isinstance(arg, bool):  # non_blocking / copy: no effect here
            continue
        elif arg is not None:
            dtype = arg
    return (None if target is None else parse_device(target)), dtype


def _shape_arg(shape) -> Tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _result(data: np.ndarray, inputs: Sequence[Tensor], backward, name: str) -> Tensor:
    """Wrap an op's output; record the node when grad mode is on and an input needs it."""
    if is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return Tensor(data, requires_grad=True, _node=Node(name, inputs, backward))
    return Tensor(data)


def _operands(a, b) -> Tuple[Tensor, Tensor]:
    """Wrap a Python number or array beside a tensor, keeping the tensor's dtype for scalars."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if type(a.data) is not type(b.data):
            _check_same_device(a, b)
        return a, b
    if isinstance(a, Tensor):
        return a, _wrap_like(b, a)
    return _wrap_like(a, b), b


def _check_same_device(*tensors) -> None:
    """Raise as torch when the tensors are not all on one device."""
    devices = {str(t.device) for t in tensors if t is not None}
    if len(devices) > 1:
        first, second = sorted(devices, reverse=True)[:2]
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                           f"two devices, {first} and {second}!")


def _wrap_like(value, like: Tensor) -> Tensor:
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        kind = like.dtype.kind
        if kind == "f" or (kind in "iu" and isinstance(value, numbers.Integral)):
            return Tensor(np.asarray(value, dtype=like.dtype))
        # A bool tensor with an int is int64, an integer tensor with a float is float32 (torch).
        return Tensor(np.asarray(value, dtype=int64 if isinstance(value, numbers.Integral) else float32))
    return Tensor(_to_array(value))


def _torch_promotion(out: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """NumPy promotes int64 with float32 (and int / int) to float64; torch keeps float32.
    A 0-d float64 tensor beside a float32 tensor only decides the category, as in torch."""
    if out.dtype == float64:
        if float64 not in (x.dtype, y.dtype):
            return out.astype(float32)
        if (x.ndim == 0) != (y.ndim == 0) and float32 in (x.dtype, y.dtype):
            dimensioned = y if x.ndim == 0 else x
            if dimensioned.dtype == float32:
                return out.astype(float32)
    return out


def add(a, b) -> Tensor:
    a, b = _operands(a, b)
    out = _torch_promotion(a.data + b.data, a.data, b.data)
    return _result(out, (a, b), lambda g: (_unbroadcast(g, a.shape) if a.requires_grad else None,
                                           _unbroadcast(g, b.shape) if b.requires_grad else None), "Add")


def sub(a, b) -> Tensor:
    a, b = _operands(a, b)
    out = _torch_promotion(a.data - b.data, a.data, b.data)
    return _result(out, (a, b), lambda g: (_unbroadcast(g, a.shape) if a.requires_grad else None,
                                           _unbroadcast(-g, b.shape) if b.requires_grad else None), "Sub")


def mul(a, b) -> Tensor:
    a, b = _operands(a, b)
    x, y = a.data, b.data

    def backward(grad):
        return (_unbroadcast(grad * y, a.shape) if a.requires_grad else None,
                _unbroadcast(grad * x, b.shape) if b.requires_grad else None)

    return _result(_torch_promotion(x * y, x, y), (a, b), backward, "Mul")


def div(a, b) -> Tensor:
    a, b = _operands(a, b)
    x, y = a.data, b.data
    out = _torch_promotion(x / y, x, y)  # int / int gives the default float dtype, as in torch

    def backward(grad):
        return (_unbroadcast(grad / y, a.shape) if a.requires_grad else None,
                _unbroadcast(-grad * x / (y * y), b.shape) if b.requires_grad else None)

    return _result(out, (a, b), backward, "Div")


def matmul(a, b) -> Tensor:
    a, b = _operands(a, b)
    x, y = a.data, b.data
    if x.ndim == 0 or y.ndim == 0:
        raise RuntimeError("matmul: both arguments need at least 1 dimension")
    try:
        out = np.matmul(x, y)
    except ValueError:
        raise RuntimeError(f"matmul: shapes {x.shape} and {y.shape} cannot be multiplied") from None

    def backward(grad):
        # Promote vectors to matrices, differentiate, then undo the promotion.
        xm = x[None, :] if x.ndim == 1 else x
        ym = y[:, None] if y.ndim == 1 else y
        g = grad
        if y.ndim == 1:  # first: for vector @ vector, grad is 0-d and becomes (1, 1)
            g = np.expand_dims(g, -1)
        if x.ndim == 1:
            g = np.expand_dims(g, -2)
        ga = gb = None
        if a.requires_grad:
            ga = np.matmul(g, np.swapaxes(ym, -1, -2))
            ga = _unbroadcast(ga, xm.shape).reshape(x.shape)
        if b.requires_grad:
            gb = np.matmul(np.swapaxes(xm, -1, -2), g)
            gb = _unbroadcast(gb, ym.shape).reshape(y.shape)
        return ga, gb

    return _result(out, (a, b), backward, "MatMul")


# ---------------------------------------------------------------------- factories
def tensor(data, dtype=None, requires_grad: bool = False, *, device=None) -> Tensor:
    """Copy data into a new tensor, as torch.tensor (Python floats become float32);
    device='cuda' puts it on the GPU."""
    if isinstance(data, Tensor) and data.is_cuda:
        data = data.data.to_numpy()
    return Tensor(to_device(_to_array(data, dtype), parse_device(device)), requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor) and (dtype is None or _as_dtype(dtype) == data.dtype):
        return data if device is None else data.to(device)
    return tensor(data, dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a C-contiguous NumPy array (copied if it is not)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(array).__name__}")
    _as_dtype(array.dtype)
    return Tensor(np.ascontiguousarray(array))


def _size(size) -> Tuple[int, ...]:
    shape = _shape_arg(size)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"size: negative dimension in {shape}")
    return shape


def zeros(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return Tensor(to_device(np.zeros(_size(size), dtype=_as_dtype(dtype) or float32), parse_device(device)), requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return Tensor(to_device(np.ones(_size(size), dtype=_as_dtype(dtype) or float32), parse_device(device)), requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return Tensor(to_device(np.empty(_size(size), dtype=_as_dtype(dtype) or float32), parse_device(device)), requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    if dtype is None:
        dtype = int64 if isinstance(fill_value, numbers.Integral) else float32
    return Tensor(to_device(np.full(_size((size,)), fill_value, dtype=_as_dtype(dtype)),
                            parse_device(device)), requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Zeros shaped like t, on t's device unless device= says otherwise (as torch)."""
    return Tensor(to_device(np.zeros(t.shape, dtype=_as_dtype(dtype) or t.dtype),
                            t.device if device is None else parse_device(device)), requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return Tensor(to_device(np.ones(t.shape, dtype=_as_dtype(dtype) or t.dtype),
                            t.device if device is None else parse_device(device)), requires_grad)


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    if end is None:
        start, end = 0, start
    values = np.arange(start, end, step)
    if dtype is None:
        dtype = int64 if values.dtype.kind in "iu" else float32
    return Tensor(values.astype(_as_dtype(dtype)))
