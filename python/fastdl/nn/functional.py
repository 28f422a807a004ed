"""fastdl.nn.functional: one function per op, as torch.nn.functional.

Each function checks its arguments (naming the argument and showing shapes), records the
autograd node and calls the C++ kernel forward; the node's closure calls the kernel's
backward. Nothing here does heavy math in Python except where noted (NumPy ops that
are not yet kernels).
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

import numpy as np

from .. import _C
from ..autograd import is_grad_enabled
from ..tensor import Tensor, _check_same_device, _result
from . import _functional_cuda

__all__ = ["linear", "conv2d", "max_pool2d", "relu", "cross_entropy", "log_softmax", "softmax",
           "pad", "flatten", "one_hot"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------- argument checks
def _check_tensor(x, name: str, *, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastdl.Tensor, got {type(x).__name__}")
    if floating and x.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float32 or float64, got {x.dtype}")
    return x


def _check_same_dtype(reference: Tensor, other: Optional[Tensor], name: str) -> None:
    if other is not None and other.dtype != reference.dtype:
        raise TypeError(f"{name}: dtype {other.dtype} does not match input dtype {reference.dtype}")


def _check_operands(input, weight, bias) -> None:
    """input, weight and the optional bias: float tensors of one dtype (linear, conv)."""
    _check_tensor(input, "input")
    _check_tensor(weight, "weight")
    if bias is not None:
        _check_tensor(bias, "bias")
    _check_same_dtype(input, weight, "weight")
    _check_same_dtype(input, bias, "bias")


def _on_cuda(*tensors) -> bool:
    """Whether the op runs on the GPU: True when its tensors are CUDA tensors (the op's
    twin in _functional_cuda then runs); RuntimeError, as torch, when they mix devices.
    For CPU tensors the cost is one type check per tensor."""
    for t in tensors:
        if t is not None and not isinstance(t.data, np.ndarray):
            _check_same_device(*tensors)
            return True
    return False


def _pair(value, name: str, *, minimum: int) -> Tuple[int, int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name}: must be {rule}, got {value!r}")
    if max(pair) > _MAX_INDEX:
        raise ValueError(f"{name}: {value!r} is too large (at most {_MAX_INDEX})")
    return pair


_MAX_INDEX = 2 ** 31 - 1  # sizes, strides and paddings the kernels index with
_MAX_OUTPUT_BYTES = 2 ** 46  # 64 TiB: larger outputs are a mistake, not a workload


def _check_output(shape: Tuple[int, ...], dtype, op: str, **context) -> None:
    """Refuse an empty or absurdly large output before any C++ runs."""
    if min(shape[1:], default=1) < 1:
        raise ValueError(f"{op}: the output would be empty, shape {shape} "
                         + ", ".join(f"{k}={v}" for k, v in context.items()))
    if int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize > _MAX_OUTPUT_BYTES:
        raise ValueError(f"{op}: the output of shape {shape} would be too large to allocate")


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: {reduction!r} is not a valid value ('mean', 'sum', 'none')")


def _batched(input: Tensor, dims: int, name: str) -> Tuple[Tensor, bool]:
    """Accept an unbatched input (one dimension less) as PyTorch does."""
    if input.ndim == dims:
        return input, False
    if input.ndim == dims - 1:
        return input.unsqueeze(0), True
    raise ValueError(f"{name}: expected a {dims - 1}-D (unbatched) or {dims}-D (batched) input, "
                     f"got shape {tuple(input.shape)}")


# ---------------------------------------------------------------------- linear
def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """y = input @ weight.T + bias, over any leading dimensions of input."""
    _check_operands(input, weight, bias)
    if weight.ndim != 2:
        raise ValueError(f"weight: expected 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"input: last dimension of shape {input.shape} must equal weight's "
                         f"in_features, weight has shape {weight.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    if _on_cuda(input, weight, bias):
        return _functional_cuda.linear(input, weight, bias)
    lead = input.shape[:-1]
    x = input.data.reshape(-1, weight.shape[1])
    w, b = weight.data, None if bias is None else bias.data
    out = _C.linear_forward(x, w, b).reshape(lead + (weight.shape[0],))

    def backward(grad):
        needs = [input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad]
        gx, gw, gb = _C.linear_backward(x, w, grad.reshape(-1, weight.shape[0]), needs)
        if gx is not None:
            gx.shape = input.shape  # in place: a reshaped view would be copied into .grad
        return gx, gw, gb

    return _result(out, (input, weight, bias), backward, "Linear")


# ---------------------------------------------------------------------- convolution
def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation over (N, C, H, W) input, as torch.nn.functional.conv2d."""
    _check_operands(input, weight, bias)
    if weight.ndim != 4:
        raise ValueError(f"weight: expected 4-D (out_channels, in_channels/groups, kH, kW), "
                         f"got shape {weight.shape}")
    input, unbatched = _batched(input, 4, "input")
    stride = _pair(stride, "stride", minimum=1)
    dilation = _pair(dilation, "dilation", minimum=1)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or not 1 <= groups <= _MAX_INDEX:
        raise ValueError(f"groups: must be a positive int, got {groups!r}")
    out_channels, in_per_group, kh, kw = weight.shape
    channels = input.shape[1]
    if channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide both input channels ({channels}) and "
                         f"out_channels ({out_channels})")
    if in_per_group * groups != channels:
        raise ValueError(f"weight: shape {weight.shape} expects {in_per_group * groups} input "
                         f"channels with groups={groups}, but input has shape {input.shape}")
    if min(kh, kw) < 1:
        raise ValueError(f"weight: kernel size must be positive, got shape {weight.shape}")
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"bias: expected shape ({out_channels},), got {bias.shape}")
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] - 2 * padding[0], total[1] - 2 * padding[1])
            if any(extra):  # even kernel: PyTorch puts the odd pixel at the bottom/right
                input = pad(input, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"padding: expected an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        padding = _pair(padding, "padding", minimum=0)
    padded = (input.shape[2] + 2 * padding[0], input.shape[3] + 2 * padding[1])
    if padded[0] < dilation[0] * (kh - 1) + 1 or padded[1] < dilation[1] * (kw - 1) + 1:
        raise ValueError(f"kernel ({kh}, {kw}) with dilation {dilation} is larger than the padded "
                         f"input {padded} (input shape {input.shape}, padding {padding})")
    out_size = tuple((padded[i] - dilation[i] * (k - 1) - 1) // stride[i] + 1
                     for i, k in enumerate((kh, kw)))
    _check_output((input.shape[0], out_channels) + out_size, input.dtype, "conv2d",
                  input=input.shape, weight=weight.shape, stride=stride, padding=padding)
    if _on_cuda(input, weight, bias):
        result = _functional_cuda.conv2d(input, weight, bias, stride, padding, dilation, groups, out_size)
        return result.squeeze(0) if unbatched else result
    x, w, b = input.data, weight.data, None if bias is None else bias.data
    out = _C.conv2d_forward(x, w, b, stride, padding, dilation, groups)

    def backward(grad):
        needs = [input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad]
        return _C.conv2d_backward(x, w, grad, stride, padding, dilation, groups, needs)

    result = _result(out, (input, weight, bias), backward, "Conv2d")
    return result.squeeze(0) if unbatched else result


def pad(input: Tensor, pad: Tuple[int, ...], mode: str = "constant", value: float = 0.0) -> Tensor:
    """Constant padding of the last dimensions, as torch.nn.functional.pad: pad is
    (left, right, top, bottom, ...) starting from the last dimension."""
    _check_tensor(input, "input", floating=False)
    if mode != "constant":
        raise ValueError(f"mode: only 'constant' is supported, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: expected an even number of values, at most 2 per dimension of "
                         f"input shape {input.shape}, got {pad}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        before, after = int(pad[2 * i]), int(pad[2 * i + 1])
        if before < 0 or after < 0:
            raise ValueError(f"pad: negative padding {pad} is not supported")
        widths[input.ndim - 1 - i] = (before, after)
    if _on_cuda(input):
        return _functional_cuda.pad(input, widths, value)
    out = np.pad(input.data, widths, mode="constant", constant_values=value)
    region = tuple(slice(b, b + n) for (b, _), n in zip(widths, input.shape))
    return _result(out, (input,), lambda g: (np.ascontiguousarray(g[region]),), "ConstantPad")


# ---------------------------------------------------------------------- pooling
def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False, return_indices: bool = False):
    """2-D max pooling, as torch.nn.functional.max_pool2d (stride defaults to kernel_size)."""
    _check_tensor(input, "input")
    input, unbatched = _batched(input, 4, "input")
    kernel = _pair(kernel_size, "kernel_size", minimum=1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(stride, "stride", minimum=1)
    padding = _pair(padding, "padding", minimum=0)
    dilation = _pair(dilation, "dilation", minimum=1)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"padding: should be at most half of kernel size, but got "
                         f"padding={padding} and kernel_size={kernel}")
    for axis, size in ((0, input.shape[2]), (1, input.shape[3])):
        if size + 2 * padding[axis] < dilation[axis] * (kernel[axis] - 1) + 1:
            raise ValueError(f"kernel_size {kernel} with dilation {dilation} is larger than the "
                             f"padded input: input shape {input.shape}, padding {padding}")
    if _on_cuda(input):
        result, index_tensor = _functional_cuda.max_pool2d(input, kernel, stride, padding, dilation,
                                                           bool(ceil_mode))
        if unbatched:
            result, index_tensor = result.squeeze(0), index_tensor.squeeze(0)
        return (result, index_tensor) if return_indices else result
    x = input.data
    # Without return_indices the indices are autograd's alone: one-byte window codes where
    # the kernels have them, else int32 where planes allow (a quarter or half the bytes of
    # PyTorch's int64, written here and read again by the backward).
    out, indices = _C.max_pool2d_forward(x, kernel, stride, padding, dilation, bool(ceil_mode),
                                         compact=not return_indices, window_codes=not return_indices)
    shape = x.shape

    def backward(grad):
        return (_C.max_pool2d_backward(grad, indices, shape, kernel, stride, padding, dilation),)

    result = _result(out, (input,), backward, "MaxPool2d")
    if not return_indices:
        return result.squeeze(0) if unbatched else result
    index_tensor = Tensor(indices)
    if unbatched:
        result, index_tensor = result.squeeze(0), index_tensor.squeeze(0)
    return result, index_tensor


# ---------------------------------------------------------------------- activations
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0) element-wise; the gradient is passed where the output is positive."""
    _check_tensor(input, "input")
    if _on_cuda(input):
        return _functional_cuda.relu(input, inplace)
    out = _C.relu_forward(input.data)
    result = _result(out, (input,), lambda g: (_C.relu_backward(out, g),), "Relu")
    if inplace and not input.requires_grad:
        input.data[...] = out
        return input
    return result


# ---------------------------------------------------------------------- softmax and losses
def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy from logits, as torch.nn.functional.cross_entropy.

    input (N, C) or (N, C, d1, ...) logits, or (C,) unbatched; target class indices
    (N,) / (N, d1, ...) of an integer dtype, or class probabilities shaped like input.
    """
    if size_average is not None or reduce is not None:
        reduction = "mean" if (size_average is not False and reduce is not False) else (
            "sum" if reduce is not False else "none")
    _check_tensor(input, "input")
    _check_tensor(target, "target", floating=False)
    _check_reduction(reduction)
    if weight is not None:
        _check_tensor(weight, "weight")
        _check_same_dtype(input, weight, "weight")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing!r}")
    if input.ndim == 0:
        raise ValueError("input: expected at least 1 dimension (C,) or (N, C), got a scalar")
    classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"weight: expected shape ({classes},) for input of shape {input.shape}, "
                         f"got {weight.shape}")
    if target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError(f"target: class probabilities must have the input's shape "
                             f"{input.shape}, got {target.shape}")
        if weight is not None:
            _no_parameter_grad(weight, "weight")
        logits, p, out_shape = _class_rows(input, target)
        if _on_cuda(input, target, weight):
            return _functional_cuda.cross_entropy_probabilities(logits, p, out_shape, weight, reduction,
                                                                float(label_smoothing))
        return _cross_entropy_probabilities(logits, p, out_shape, weight, reduction, label_smoothing)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices or float probabilities, got {target.dtype}")
    if _on_cuda(input, target, weight):
        if input.ndim > 1 and target.shape != (input.shape[0],) + input.shape[2:]:
            raise ValueError(f"target: expected shape {(input.shape[0],) + input.shape[2:]} for input "
                             f"of shape {input.shape}, got {target.shape}")
        if input.ndim == 1 and target.ndim != 0:
            raise ValueError(f"target: expected a scalar label for unbatched input {input.shape}, "
                             f"got shape {target.shape}")
        return _functional_cuda.cross_entropy(input, target, weight, int(ignore_index), reduction,
                                              float(label_smoothing))
    # Move the class axis last and flatten: logits (M, C), labels (M,).
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"target: expected a scalar label for unbatched input {input.shape}, "
                             f"got shape {target.shape}")
        logits_t, out_shape = input.reshape(1, classes), ()
    else:
        expected = (input.shape[0],) + input.shape[2:]
        if target.shape != expected:
            raise ValueError(f"target: expected shape {expected} for input of shape "
                             f"{input.shape}, got {target.shape}")
        logits_t = input if input.ndim == 2 else input.permute(
            0, *range(2, input.ndim), 1).reshape(-1, classes)
        out_shape = expected
    labels = np.ascontiguousarray(target.data.reshape(-1), dtype=np.int64)
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise IndexError(f"target: label {int(labels[bad][0])} is out of range for {classes} "
                         f"classes (valid: 0..{classes - 1} or ignore_index={ignore_index})")
    return _cross_entropy_indices(logits_t, labels, weight, ignore_index, reduction,
                                  float(label_smoothing), out_shape)


def _cross_entropy_indices(logits: Tensor, labels: np.ndarray, weight: Optional[Tensor],
                           ignore_index: int, reduction: str, eps: float, out_shape) -> Tensor:
    x = logits.data
    rows, classes = x.shape
    w = None if weight is None else np.ascontiguousarray(weight.data)
    nll, smooth, lse = _C.cross_entropy_forward(x, labels, w, int(ignore_index), eps > 0)
    kept = labels != ignore_index
    # Denominators as PyTorch: nll's mean divides by the targets' total weight; so does the
    # smoothing term's (without a weight: the count of rows whose target is not ignored).
    target_weight = (np.where(kept, w[np.where(kept, labels, 0)], 0) if w is not None
                     else kept).astype(x.dtype)
    if reduction == "mean":
        nll_denominator = target_weight.sum()
        nll_scale = (1 - eps) / nll_denominator
        smooth_scale = eps / classes / nll_denominator
    else:
        nll_scale, smooth_scale = 1 - eps, eps / classes
    if reduction == "none":
        value = nll * (1 - eps) + (smooth * (eps / classes) if smooth is not None else 0)
        value = value.astype(x.dtype).reshape(out_shape)
    else:
        value = nll.sum(dtype=np.float64) * nll_scale
        if smooth is not None:
            value = value + smooth.sum(dtype=np.float64) * smooth_scale
        value = np.asarray(value, dtype=x.dtype)

    def backward(grad):
        grad = np.asarray(grad, dtype=x.dtype).reshape(-1)
        if reduction == "none":
            grad_nll = grad * x.dtype.type(1 - eps)
            grad_smooth = grad * x.dtype.type(eps / classes) if smooth is not None else None
        else:
            grad_nll = np.full(rows, grad[0] * nll_scale, dtype=x.dtype)
            grad_smooth = (np.full(rows, grad[0] * smooth_scale, dtype=x.dtype)
                           if smooth is not None else None)
        return (_C.cross_entropy_backward(x, labels, w, lse, grad_nll, grad_smooth, int(ignore_index)),)

    return _result(value, (logits,), backward, "CrossEntropy")


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    _check_tensor(input, "input", floating=False)
    return input.flatten(start_dim, end_dim)


# ---------------------------------------------------------------------- pooling (avg, adaptive) and conv1d
# (section: pooling)
__all__ += ["avg_pool2d", "adaptive_avg_pool2d", "conv1d"]


def _pool_stride(stride, kernel: Tuple[int, int]) -> Tuple[int, int]:
    """stride=None (or an empty tuple) means stride = kernel_size, as in PyTorch."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return _pair(stride, "stride", minimum=1)


def _pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; with ceil_mode the last window must start inside the
    input or its left padding (else it is dropped)."""
    span = size + 2 * pad - kernel
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _check_planes(input: Tensor, op: str) -> None:
    if min(input.shape[1:]) < 1:
        raise ValueError(f"{op}: expected input with non-zero channels, height and width "
                         f"(an empty batch is fine), got shape {tuple(input.shape)}")


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """2-D average pooling, as torch.nn.functional.avg_pool2d (stride defaults to kernel_size).

    out[y, x] = sum(window) / divisor; the divisor is divisor_override if given, else the
    window's size counting the zero padding (count_include_pad) or not."""
    _check_tensor(input, "input")
    input, unbatched = _batched(input, 4, "input")
    _check_planes(input, "avg_pool2d")
    kernel = _pair(kernel_size, "kernel_size", minimum=1)
    stride = _pool_stride(stride, kernel)
    padding = _pair(padding, "padding", minimum=0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"padding: should be at most half of kernel size, but got "
                         f"padding={padding} and kernel_size={kernel}")
    if divisor_override is not None:
        if not isinstance(divisor_override, numbers.Integral) or isinstance(divisor_override, bool):
            raise TypeError(f"divisor_override: expected an int or None, got {divisor_override!r}")
        if divisor_override == 0 or abs(divisor_override) > _MAX_INDEX:
            raise ValueError(f"divisor_override: must be a non-zero int of at most {_MAX_INDEX} "
                             f"in magnitude, got {divisor_override!r}")
        divisor_override = int(divisor_override)
    for axis in (0, 1):
        if input.shape[2 + axis] + 2 * padding[axis] < kernel[axis]:
            raise ValueError(f"kernel_size {kernel} is larger than the padded input: input shape "
                             f"{tuple(input.shape)}, padding {padding}")
    ceil_mode, count_include_pad = bool(ceil_mode), bool(count_include_pad)
    out_size = tuple(_pool_output_size(input.shape[2 + a], kernel[a], stride[a], padding[a], ceil_mode)
                     for a in (0, 1))
    _check_output(input.shape[:2] + out_size, input.dtype, "avg_pool2d", input=tuple(input.shape),
                  kernel_size=kernel, stride=stride, padding=padding)
    options = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    if _on_cuda(input):
        result = _functional_cuda.avg_pool2d(input, out_size, *options)
        return result.squeeze(0) if unbatched else result
    shape = input.shape
    out = _C.avg_pool2d_forward(input.data, *options)

    def backward(grad):
        return (_C.avg_pool2d_backward(grad, shape, *options),)

    result = _result(out, (input,), backward, "AvgPool2d")
    return result.squeeze(0) if unbatched else result


def _adaptive_size(output_size, input_size: Tuple[int, int]) -> Tuple[int, int]:
    """output_size: an int or a pair whose None entries keep the input's size."""
    def valid(v):
        return v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool))
    if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        size = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2 and all(map(valid, output_size)):
        size = tuple(input_size[a] if v is None else int(v) for a, v in enumerate(output_size))
    else:
        raise TypeError(f"output_size: expected an int or a pair of ints (or None), got {output_size!r}")
    if min(size) < 1:
        raise ValueError(f"output_size: must be positive, got {output_size!r}")
    if max(size) > _MAX_INDEX:
        raise ValueError(f"output_size: {output_size!r} is too large (at most {_MAX_INDEX})")
    return size


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Adaptive average pooling, as torch.nn.functional.adaptive_avg_pool2d: output (y, x)
    averages rows [floor(y*H/OH), ceil((y+1)*H/OH)) and the columns likewise."""
    _check_tensor(input, "input")
    input, unbatched = _batched(input, 4, "input")
    _check_planes(input, "adaptive_avg_pool2d")
    size = _adaptive_size(output_size, input.shape[2:])
    _check_output(input.shape[:2] + size, input.dtype, "adaptive_avg_pool2d",
                  input=tuple(input.shape), output_size=output_size)
    if _on_cuda(input):
        result = _functional_cuda.adaptive_avg_pool2d(input, size)
        return result.squeeze(0) if unbatched else result
    shape = input.shape
    out = _C.adaptive_avg_pool2d_forward(input.data, size)

    def backward(grad):
        return (_C.adaptive_avg_pool2d_backward(grad, shape),)

    result = _result(out, (input,), backward, "AdaptiveAvgPool2d")
    return result.squeeze(0) if unbatched else result


def _single(value, name: str, *, minimum: int) -> int:
    """An int or a 1-tuple of an int (torch's _single)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an int or a 1-tuple of an int, got {value!r}")
    return _pair(int(value), name, minimum=minimum)[0]


def conv1d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D cross-correlation over (N, C, L) or unbatched (C, L) input, as
    torch.nn.functional.conv1d: conv2d on (N, C, 1, L) with a (1, K) kernel."""
    _check_operands(input, weight, bias)
    if weight.ndim != 3:
        raise ValueError(f"weight: expected 3-D (out_channels, in_channels/groups, kernel_size), "
                         f"got shape {weight.shape}")
    if input.ndim not in (2, 3):
        raise ValueError(f"input: expected a 2-D (unbatched) or 3-D (batched) input, "
                         f"got shape {tuple(input.shape)}")
    stride = _single(stride, "stride", minimum=1)
    dilation = _single(dilation, "dilation", minimum=1)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or not 1 <= groups <= _MAX_INDEX:
        raise ValueError(f"groups: must be a positive int, got {groups!r}")
    out_channels, in_per_group, kernel = weight.shape
    channels, length = input.shape[-2], input.shape[-1]
    if channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide both input channels ({channels}) and "
                         f"out_channels ({out_channels})")
    if in_per_group * groups != channels:
        raise ValueError(f"weight: shape {weight.shape} expects {in_per_group * groups} input "
                         f"channels with groups={groups}, but input has shape {tuple(input.shape)}")
    if kernel < 1:
        raise ValueError(f"weight: kernel size must be positive, got shape {weight.shape}")
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"bias: expected shape ({out_channels},), got {bias.shape}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding: expected an int, a 1-tuple, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != 1:
            raise ValueError("padding='same' is not supported for strided convolutions")
        padded = length + (dilation * (kernel - 1) if padding == "same" else 0)
        padding_2d = padding
    else:
        padding = _single(padding, "padding", minimum=0)
        padded = length + 2 * padding
        padding_2d = (0, padding)
    if padded < dilation * (kernel - 1) + 1:
        raise ValueError(f"kernel {kernel} with dilation {dilation} is larger than the padded input "
                         f"length {padded} (input shape {tuple(input.shape)}, padding {padding!r})")
    x = input.reshape(input.shape[:-1] + (1, length))
    w = weight.reshape(out_channels, in_per_group, 1, kernel)
    out = conv2d(x, w, bias, (1, stride), padding_2d, (1, dilation), groups)
    return out.reshape(out.shape[:-2] + out.shape[-1:])


# ---------------------------------------------------------------------- normalization, activations, dropout
# (section: normalization)
__all__ += ["batch_norm", "sigmoid", "tanh", "leaky_relu", "dropout"]


def _writable_contiguous(array: np.ndarray) -> bool:
    return array.flags.c_contiguous and array.flags.writeable


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over the channel dimension 1 of an (N, C, ...) input, as
    torch.nn.functional.batch_norm: batch statistics (biased variance) when training,
    which also update running_mean / running_var in place (unbiased variance), else the
    running statistics."""
    _check_tensor(input, "input")
    if input.ndim < 2:
        raise ValueError(f"input: expected at least 2 dimensions (N, C, ...), got shape {input.shape}")
    channels = input.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is None:
            continue
        _check_tensor(value, name)
        _check_same_dtype(input, value, name)
        if value.shape != (channels,):
            raise ValueError(f"{name}: should contain {channels} elements (one per channel of "
                             f"input {input.shape}), got shape {value.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var must be defined in evaluation mode "
                         "(training=False)")
    if not isinstance(momentum, numbers.Real) or isinstance(momentum, bool):
        raise TypeError(f"momentum: expected a float, got {momentum!r}")
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps: expected a non-negative float, got {eps!r}")
    if training and input.shape[0] * int(np.prod(input.shape[2:], dtype=np.int64)) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {input.shape}")
    if _on_cuda(input, running_mean, running_var, weight, bias):
        return _functional_cuda.batch_norm(input, running_mean, running_var, weight, bias,
                                           bool(training), float(momentum), float(eps))
    x = input.data.reshape(input.shape[0], channels, -1) if input.data.size else \
        np.zeros((input.shape[0], channels, 0), input.dtype)
    w = None if weight is None else weight.data
    b = None if bias is None else bias.data
    # The kernel updates the running statistics in place; a strided or read-only buffer
    # is updated through a contiguous copy.
    stats = []
    for buffer in (running_mean, running_var):
        if buffer is None:
            stats.append(None)
        else:
            stats.append(buffer.data if _writable_contiguous(buffer.data)
                         else np.ascontiguousarray(buffer.data))
    out, save_mean, save_invstd = _C.batch_norm_forward(x, w, b, stats[0], stats[1], bool(training),
                                                        float(momentum), float(eps))
    if training:
        for buffer, array in zip((running_mean, running_var), stats):
            if buffer is not None and array is not buffer.data:
                buffer.data[...] = array

    def backward(grad):
        needs = [input.requires_grad, weight is not None and weight.requires_grad,
                 bias is not None and bias.requires_grad]
        gx, gw, gb = _C.batch_norm_backward(x, grad.reshape(x.shape), save_mean, save_invstd, w,
                                            bool(training), needs)
        if gx is not None:
            gx.shape = input.shape  # in place: a reshaped view would be copied into .grad
        return gx, gw, gb

    return _result(out.reshape(input.shape), (input, weight, bias), backward, "NativeBatchNorm")


def _inplace_target(input: Tensor, inplace: bool):
    """The array an in-place activation writes into, or None (a new output)."""
    if inplace and not input.requires_grad and _writable_contiguous(input.data):
        return input.data
    return None


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-input)) element-wise, computed without overflow."""
    _check_tensor(input, "input")
    if _on_cuda(input):
        return _functional_cuda.sigmoid(input)
    out = _C.sigmoid_forward(input.data)
    return _result(out, (input,), lambda g: (_C.sigmoid_backward(out, g),), "Sigmoid")


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent element-wise."""
    _check_tensor(input, "input")
    if _on_cuda(input):
        return _functional_cuda.tanh(input)
    out = _C.tanh_forward(input.data)
    return _result(out, (input,), lambda g: (_C.tanh_backward(out, g),), "Tanh")


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """input where positive, negative_slope * input elsewhere."""
    _check_tensor(input, "input")
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise TypeError(f"negative_slope: must be a number, got {type(negative_slope).__name__} "
                        f"{negative_slope!r}")
    slope = float(negative_slope)
    if _on_cuda(input):
        return _functional_cuda.leaky_relu(input, slope, inplace)
    target = _inplace_target(input, inplace)
    if target is not None:
        _C.leaky_relu_forward(target, slope, target)
        return input
    x = input.data
    out = _C.leaky_relu_forward(x, slope)
    result = _result(out, (input,), lambda g: (_C.leaky_relu_backward(x, g, slope),), "LeakyRelu")
    if inplace and not input.requires_grad:
        input.data[...] = out
        return input
    return result


def _check_dropout_probability(p) -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, bool):
        raise TypeError(f"p: dropout probability must be a number, got {type(p).__name__} {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            generator=None) -> Tensor:
    """Zero each element with probability p and scale the others by 1 / (1 - p), as
    torch.nn.functional.dropout. The mask is drawn from fastdl's default generator (or
    `generator`): one 63-bit seed per call, element i decided by (seed, i) alone, so it
    does not depend on the thread count -- nor on the device: a CUDA tensor gets the same
    mask from the same seed. Identity when not training or p == 0."""
    _check_tensor(input, "input")
    p = _check_dropout_probability(p)
    if not training or p == 0.0 or input.data.size == 0:
        return input
    from ..random import _numpy
    seed = int(_numpy(generator).integers(0, 2 ** 63))  # the same draw on either device
    if p == 1.0:  # everything dropped: input * 0, as torch (NaN stays NaN)
        return input * 0.0 if not (inplace and not input.requires_grad) else _zero_inplace(input)
    if _on_cuda(input):
        return _functional_cuda.dropout(input, seed, p, bool(inplace))
    target = _inplace_target(input, inplace)
    if target is not None:
        _C.dropout_forward(target, seed, p, target)
        return input
    out = _C.dropout_forward(input.data, seed, p)
    result = _result(out, (input,), lambda g: (_C.dropout_backward(g, seed, p),), "NativeDropout")
    if inplace and not input.requires_grad:
        input.data[...] = out
        return input
    return result


def _zero_inplace(input: Tensor) -> Tensor:
    input.data *= 0
    return input


# ---------------------------------------------------------------------- losses
# (section: losses)
__all__ += ["nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
            "l1_loss", "kl_div"]


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """size_average / reduce (deprecated in PyTorch) override reduction as PyTorch does."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def _softmax_dim(input: Tensor, dim: Optional[int]) -> int:
    """PyTorch's dim: None picks 0 for 0-, 1- and 3-D inputs, else 1 (legacy rule)."""
    ndim = max(input.ndim, 1)
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"dim: expected an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], "
                         f"but got {dim})")
    return int(dim) % ndim


def _softmax_op(input: Tensor, dim, dtype, log: bool, name: str) -> Tensor:
    _check_tensor(input, "input")
    axis = _softmax_dim(input, dim)
    if _on_cuda(input):
        if dtype is not None and np.dtype(dtype) not in _FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {np.dtype(dtype)}")
        return _functional_cuda.softmax(input, axis, dtype, log, name)
    x = input.data
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        x = x.astype(dtype, copy=False)
    out = _C.softmax_forward(x, axis, log)

    def backward(grad):
        g = _C.softmax_backward(out, np.asarray(grad, dtype=out.dtype), axis, log)
        return (g.astype(input.dtype, copy=False),)

    return _result(out, (input,), backward, name)


def log_softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """x - log(sum(exp(x), dim)), stable (C++ kernel), as torch.nn.functional.log_softmax."""
    return _softmax_op(input, dim, dtype, True, "LogSoftmax")


def softmax(input: Tensor, dim: Optional[int] = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x), dim), stable (C++ kernel), as torch.nn.functional.softmax."""
    return _softmax_op(input, dim, dtype, False, "Softmax")


def _no_parameter_grad(tensor: Optional[Tensor], name: str) -> None:
    if tensor is not None and tensor.requires_grad and is_grad_enabled():
        raise NotImplementedError(f"{name}: gradients with respect to {name} are not supported; "
                                  f"pass {name}.detach()")


def _scalar_or_array(value: float, dtype) -> np.ndarray:
    return np.asarray(value, dtype=dtype)


# ---- nll_loss
def nll_loss(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities, as torch.nn.functional.nll_loss:
    loss = -weight[t] * input[n, t, ...]; 'mean' divides by the kept targets' total weight.
    input (N, C), (N, C, d1, ...) or (C,) unbatched; target (N,), (N, d1, ...) or scalar."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_tensor(input, "input")
    _check_tensor(target, "target", floating=False)
    _check_reduction(reduction)
    if target.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got {target.dtype}")
    if weight is not None:
        _check_tensor(weight, "weight")
        _check_same_dtype(input, weight, "weight")
        _no_parameter_grad(weight, "weight")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}")
    if input.ndim == 0:
        raise ValueError("input: expected (C,), (N, C) or (N, C, d1, ...), got a scalar")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"target: expected a scalar label for unbatched input of shape "
                             f"{input.shape}, got shape {target.shape}")
        if _on_cuda(input, target, weight):
            return _functional_cuda.nll_loss(input, target, weight, int(ignore_index), reduction)
        x, out_shape = input.data.reshape(1, -1), ()
    else:
        expected = (input.shape[0],) + input.shape[2:]
        if target.shape != expected:
            raise ValueError(f"target: expected shape {expected} for input of shape {input.shape}, "
                             f"got {target.shape}")
        if _on_cuda(input, target, weight):
            if weight is not None and weight.shape != (input.shape[1],):
                raise ValueError(f"weight: expected shape ({input.shape[1]},) for input of shape "
                                 f"{input.shape}, got {weight.shape}")
            return _functional_cuda.nll_loss(input, target, weight, int(ignore_index), reduction)
        x, out_shape = input.data, expected
    classes = x.shape[1]
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"weight: expected shape ({classes},) for input of shape {input.shape}, "
                         f"got {weight.shape}")
    labels = np.ascontiguousarray(target.data, dtype=np.int64).reshape((x.shape[0],) + x.shape[2:])
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise IndexError(f"Target {int(labels[bad][0])} is out of bounds: target labels must lie in "
                         f"[0, {classes - 1}] or equal ignore_index={ignore_index}")
    w = None if weight is None else weight.data
    loss, loss_sum, weight_sum = _C.nll_loss_forward(x, labels, w, int(ignore_index), reduction == "none")
    if reduction == "none":
        value = loss.reshape(out_shape)
        scale = None
    else:
        scale = (1.0 / weight_sum if weight_sum else float("nan")) if reduction == "mean" else 1.0
        value = _scalar_or_array(loss_sum * scale if reduction == "mean" else loss_sum, x.dtype)

    def backward(grad):
        g = np.asarray(grad, dtype=x.dtype)
        g = g.reshape(labels.shape) if scale is None else np.asarray(g * x.dtype.type(scale), dtype=x.dtype)
        gx = _C.nll_loss_backward(x, labels, w, g, int(ignore_index))
        # A reshaped view would not own its data and autograd would copy it into .grad.
        return (gx if gx.shape == input.shape else gx.reshape(input.shape),)

    return _result(value, (input,), backward, "NllLoss")


# ---- cross-entropy with class probabilities (C++ kernel; replaces the NumPy version above)
def _class_rows(input: Tensor, target: Tensor):
    """Class-probability cross-entropy's operands with the class axis last and the rows
    flattened: logits (M, C) (a Tensor, differentiable), the target's probabilities (M, C)
    (its array, on the input's device) and the shape of the per-row losses."""
    if input.ndim == 1:
        return input.reshape(1, -1), target.data.reshape(1, -1), ()
    if input.ndim == 2:
        return input, target.data, (input.shape[0],)
    order = (0,) + tuple(range(2, input.ndim)) + (1,)

    def rows(t: Tensor) -> Tensor:
        return t.permute(*order).reshape(-1, input.shape[1])
    return rows(input), rows(target.detach()).data, (input.shape[0],) + tuple(input.shape[2:])


def _cross_entropy_probabilities(logits: Tensor, p: np.ndarray, out_shape, weight: Optional[Tensor],
                                 reduction: str, eps: float) -> Tensor:
    x = logits.data
    p = np.ascontiguousarray(p, dtype=x.dtype)
    w = None if weight is None else weight.data
    loss, loss_sum, lse = _C.cross_entropy_probabilities_forward(x, p, w, float(eps), reduction == "none")
    rows = x.shape[0]
    if reduction == "none":
        value, scale = loss.reshape(out_shape), None
    else:
        scale = (1.0 / rows if rows else float("nan")) if reduction == "mean" else 1.0
        value = _scalar_or_array(loss_sum * scale, x.dtype)

    def backward(grad):
        g = np.asarray(grad, dtype=x.dtype)
        g = g.reshape(rows) if scale is None else np.asarray(g * x.dtype.type(scale), dtype=x.dtype)
        return (_C.cross_entropy_probabilities_backward(x, p, w, lse, g, float(eps)),)

    return _result(value, (logits,), backward, "CrossEntropy")


# ---- element-wise losses
_LOSS_KIND = {"mse": 0, "l1": 1, "bce": 2, "bce_with_logits": 3, "kl_div": 4, "kl_div_log_target": 5}


def _check_loss_pair(input, target, name: str) -> None:
    _check_tensor(input, "input")
    _check_tensor(target, "target", floating=False)
    if target.dtype.kind != "f":
        raise TypeError(f"{name}: target must be a floating-point tensor, got {target.dtype}")
    _check_same_dtype(input, target, "target")


def _periodic(operand: Optional[Tensor], shape: Tuple[int, ...], name: str) -> Optional[np.ndarray]:
    """A weight that broadcasts to `shape`: passed as is when its shape (leading 1s dropped) is
    a suffix of `shape` (the kernel repeats it), else expanded to `shape`."""
    if operand is None:
        return None
    data = operand.data
    try:
        broadcast = np.broadcast_shapes(data.shape, shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(shape):
        raise RuntimeError(f"{name}: shape {tuple(data.shape)} cannot be broadcast to the input's "
                           f"shape {tuple(shape)}")
    core = data.shape
    while core and core[0] == 1:
        core = core[1:]
    if core == tuple(shape[len(shape) - len(core):]) and data.size > 0:
        return np.ascontiguousarray(data.reshape(core or (1,)))
    return np.ascontiguousarray(np.broadcast_to(data, shape))


def _sum_to(grad: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to an operand's shape."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape).astype(grad.dtype, copy=False)


def _elementwise_loss(kind: str, name: str, input: Tensor, target: Tensor, reduction: str,
                      weight: Optional[Tensor] = None, pos_weight: Optional[Tensor] = None,
                      divisor: Optional[float] = None) -> Tensor:
    """Runs the C++ element-wise loss; input and target already of one shape and dtype,
    weight and pos_weight broadcastable to it. 'mean' divides the sum by `divisor` (default:
    the element count)."""
    if _on_cuda(input, target, weight, pos_weight):
        return _functional_cuda.elementwise_loss(
            kind, name, input, target, reduction, divisor,
            _functional_cuda.periodic(weight, input.shape, "weight"),
            _functional_cuda.periodic(pos_weight, input.shape, "pos_weight"))
    weight = _periodic(weight, input.shape, "weight")
    pos_weight = _periodic(pos_weight, input.shape, "pos_weight")
    x, y = input.data, target.data
    n = x.size
    scale = None
    if reduction != "none":
        denominator = n if divisor is None else divisor
        scale = (1.0 / denominator if denominator else float("nan")) if reduction != "sum" else 1.0
    # A reduced loss whose input alone needs a gradient gets it from the forward pass, from
    # the x and y it has just read, as the backward would compute it for grad 1 (the usual
    # loss.backward()): the backward then reads the inputs no second time.
    fuse = (scale is not None and is_grad_enabled() and input.requires_grad
            and not target.requires_grad)
    loss, loss_sum, out_of_range, fused = _C.elementwise_loss_forward(
        _LOSS_KIND[kind], x, y, weight, pos_weight, reduction == "none",
        float(x.dtype.type(scale)) if fuse else None)
    if out_of_range:
        raise RuntimeError(f"{name}: all elements of input should be between 0 and 1")
    value = loss if scale is None else _scalar_or_array(loss_sum * scale, x.dtype)
    saved = [fused]

    def backward(grad):
        g = np.asarray(grad, dtype=x.dtype)
        if saved[0] is not None and g.ndim == 0 and g == 1:
            ready, saved[0] = saved[0], None  # handed out once: its receiver may own it
            return ready, None
        if scale is not None:
            g = np.asarray(g * x.dtype.type(scale), dtype=x.dtype)
        return _C.elementwise_loss_backward(_LOSS_KIND[kind], x, y, weight, pos_weight, g,
                                            input.requires_grad, target.requires_grad)

    return _result(value, (input, target), backward, name)


def _broadcast_pair(input: Tensor, target: Tensor, name: str):
    """input and target broadcast together (PyTorch warns and broadcasts); the gradients are
    summed back to each operand's shape."""
    if input.shape == target.shape:
        return input, target
    try:
        shape = np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise RuntimeError(f"{name}: the size of input {input.shape} must match the size of target "
                           f"{target.shape} or broadcast with it") from None
    return _expand(input, shape), _expand(target, shape)


def _expand(t: Tensor, shape) -> Tensor:
    if t.shape == tuple(shape):
        return t
    if _on_cuda(t):  # a contiguous broadcast copy, and sums over axes back, on the device
        return _result(t.data.broadcast_to(shape), (t,), lambda g: (_sum_to(g, t.shape),), "Expand")
    data = np.ascontiguousarray(np.broadcast_to(t.data, shape))
    return _result(data, (t,), lambda g: (_sum_to(np.asarray(g), t.shape),), "Expand")


def _regression_loss(kind: str, name: str, input, target, size_average, reduce, reduction, weight):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_loss_pair(input, target, name)
    _check_reduction(reduction)
    divisor = None
    if weight is not None:
        _check_tensor(weight, "weight")
        _check_same_dtype(input, weight, "weight")
        _no_parameter_grad(weight, "weight")
        if weight.shape != input.shape:
            raise ValueError(f"weight: Weights and input must have the same size, got weight "
                             f"{weight.shape} and input {input.shape}")
    input, target = _broadcast_pair(input, target, name)
    if weight is not None:
        divisor = (_functional_cuda.weight_sum(weight) if _on_cuda(input, target, weight)
                   else float(np.sum(weight.data, dtype=np.float64)))
    return _elementwise_loss(kind, name, input, target, reduction, weight, None, divisor)


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
             weight: Optional[Tensor] = None) -> Tensor:
    """Mean squared error (x - y)^2, as torch.nn.functional.mse_loss (a weight multiplies
    each term; its 'mean' divides by the weight's sum)."""
    return _regression_loss("mse", "mse_loss", input, target, size_average, reduce, reduction, weight)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
            weight: Optional[Tensor] = None) -> Tensor:
    """Mean absolute error |x - y|, as torch.nn.functional.l1_loss."""
    return _regression_loss("l1", "l1_loss", input, target, size_average, reduce, reduction, weight)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                         size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """-w (y log x + (1 - y) log(1 - x)) on probabilities x in [0, 1], logs clamped at -100,
    as torch.nn.functional.binary_cross_entropy."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_loss_pair(input, target, "binary_cross_entropy")
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size "
                         f"({input.shape}) is deprecated. Please ensure they have the same size.")
    if weight is not None:
        _check_tensor(weight, "weight")
        _check_same_dtype(input, weight, "weight")
        _no_parameter_grad(weight, "weight")
    return _elementwise_loss("bce", "binary_cross_entropy", input, target, reduction, weight)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Optional[Tensor] = None) -> Tensor:
    """Sigmoid + binary cross-entropy in the stable form
    w ((1 - y) x - (1 + (p - 1) y) log_sigmoid(x)), as torch.nn.functional.binary_cross_entropy_with_logits."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_loss_pair(input, target, "binary_cross_entropy_with_logits")
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    for operand, name in ((weight, "weight"), (pos_weight, "pos_weight")):
        if operand is not None:
            _check_tensor(operand, name)
            _check_same_dtype(input, operand, name)
            _no_parameter_grad(operand, name)
    return _elementwise_loss("bce_with_logits", "binary_cross_entropy_with_logits", input, target,
                             reduction, weight, pos_weight)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Kullback-Leibler divergence of log-probabilities input from target:
    y (log y - x) (0 where y = 0), or exp(y) (y - x) with log_target; 'batchmean' divides the
    sum by the batch size, as torch.nn.functional.kl_div."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_loss_pair(input, target, "kl_div")
    if reduction not in ("mean", "sum", "none", "batchmean"):
        raise ValueError(f"reduction: {reduction!r} is not a valid value "
                         "('mean', 'batchmean', 'sum', 'none')")
    input, target = _broadcast_pair(input, target, "kl_div")
    divisor = None
    if reduction == "batchmean":
        divisor = float(input.shape[0]) if input.ndim else 1.0
    kind = "kl_div_log_target" if log_target else "kl_div"
    return _elementwise_loss(kind, "kl_div", input, target,
                             "mean" if reduction == "batchmean" else reduction, divisor=divisor)


# ---------------------------------------------------------------------- linear models
# (section: linear models)
def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape tensor.shape + (num_classes,), 1 at each index, as
    torch.nn.functional.one_hot; num_classes=-1 infers max + 1. Not differentiable."""
    _check_tensor(tensor, "tensor", floating=False)
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"tensor: one_hot is only applicable to an integer (index) tensor, "
                        f"got {tensor.dtype}")
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < -1:
        raise ValueError(f"num_classes: expected -1 or a non-negative int, got {num_classes!r}")
    on_cuda = _on_cuda(tensor)
    # The labels are checked on the host (for a CUDA tensor a small copy): the output's size
    # may depend on them.
    labels = (tensor.data.to_numpy() if on_cuda else tensor.data).astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise ValueError(f"tensor: class values must be non-negative, got {int(labels.min())}")
    if num_classes == -1:
        if labels.size == 0:
            raise ValueError("tensor: can not infer the number of classes from an empty tensor; "
                             "pass num_classes")
        num_classes = int(labels.max()) + 1
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(f"tensor: class values must be smaller than num_classes={num_classes}, "
                         f"got {int(labels.max())}")
    if on_cuda:
        return _functional_cuda.one_hot(tensor, labels, int(num_classes))
    out = np.zeros(labels.shape + (int(num_classes),), dtype=np.int64)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return Tensor(out)
