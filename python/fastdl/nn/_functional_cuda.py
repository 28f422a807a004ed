"""The CUDA side of fastdl.nn.functional: each function here is the GPU path of the op of
the same name there, called by it (through ``functional._on_cuda``) after every argument
has been checked. Same autograd nodes, same formulas; the data are DeviceArrays and the
kernels the ``fastdl._C.cuda`` twins of the CPU kernels. Outputs are allocated here, in
GPU memory; values the host must see (a label range check, a bce range flag) are copied
back explicitly.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _C
from .._device import DeviceArray
from ..tensor import Tensor, _result

_LOSS_KIND = {"mse": 0, "l1": 1, "bce": 2, "bce_with_logits": 3, "kl_div": 4, "kl_div_log_target": 5}


def _k(name: str, dtype):
    return getattr(_C.cuda, f"{name}_{np.dtype(dtype).name}")


def _empty(shape, dtype) -> DeviceArray:
    return DeviceArray.empty(shape, dtype)


def _zeros(shape, dtype) -> DeviceArray:
    return DeviceArray.zeros(shape, dtype)


def _buffer(t: Optional[Tensor]):
    return None if t is None else t.data.buffer


def _maybe(flag: bool, shape, dtype, zero: bool = False) -> Optional[DeviceArray]:
    if not flag:
        return None
    return _zeros(shape, dtype) if zero else _empty(shape, dtype)


def _buf(array: Optional[DeviceArray]):
    return None if array is None else array.buffer


def _scaled_grad(grad: DeviceArray, scale: Optional[float], dtype) -> DeviceArray:
    """The upstream gradient of a reduced loss, times the reduction's scale (None: as is)."""
    g = grad.astype(dtype, copy=False)
    if scale is None:
        return g
    scaled = _empty((1,), dtype)
    _k("scale_broadcast", dtype)(g.buffer, float(scale), scaled.buffer, 1)
    return scaled


def unsupported(op: str) -> NotImplementedError:
    return NotImplementedError(f"{op} is not implemented for CUDA tensors (no CUDA kernel); "
                               f"move the tensors to the host with .cpu() first")


# ---------------------------------------------------------------------- linear, conv
def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    out_features, in_features = weight.shape
    lead = input.shape[:-1]
    x = input.data.reshape(-1, in_features)
    rows, dtype = x.shape[0], input.dtype
    out = _empty((rows, out_features), dtype)
    _k("linear_forward", dtype)(x.buffer, weight.data.buffer, _buffer(bias), out.buffer, rows,
                                in_features, out_features)

    def backward(grad):
        gx = _maybe(input.requires_grad, (rows, in_features), dtype)
        gw = _maybe(weight.requires_grad, weight.shape, dtype, zero=True)
        gb = _maybe(bias is not None and bias.requires_grad, (out_features,), dtype, zero=True)
        _k("linear_backward", dtype)(x.buffer, weight.data.buffer, grad.buffer, _buf(gx), _buf(gw),
                                     _buf(gb), rows, in_features, out_features)
        return (None if gx is None else gx.reshape(input.shape)), gw, gb

    return _result(out.reshape(lead + (out_features,)), (input, weight, bias), backward, "Linear")


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation,
           groups: int, out_size: Tuple[int, int]) -> Tensor:
    dtype = input.dtype
    shape = (input.shape[0], weight.shape[0]) + tuple(out_size)
    out = _empty(shape, dtype)
    options = (tuple(input.shape), tuple(weight.shape), tuple(stride), tuple(padding),
               tuple(dilation), int(groups))
    _k("conv2d_forward", dtype)(input.data.buffer, weight.data.buffer, _buffer(bias), out.buffer,
                                *options)

    def backward(grad):
        gx = _maybe(input.requires_grad, input.shape, dtype)
        gw = _maybe(weight.requires_grad, weight.shape, dtype, zero=True)
        gb = _maybe(bias is not None and bias.requires_grad, (weight.shape[0],), dtype, zero=True)
        _k("conv2d_backward", dtype)(input.data.buffer, weight.data.buffer, grad.buffer, _buf(gx),
                                     _buf(gw), _buf(gb), *options)
        return gx, gw, gb

    return _result(out, (input, weight, bias), backward, "Conv2d")


# ---------------------------------------------------------------------- pooling
def _max_pool_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output size of max pooling along one axis (the CPU binding's rule)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def max_pool2d(input: Tensor, kernel, stride, padding, dilation, ceil_mode: bool):
    dtype = input.dtype
    out_size = tuple(_max_pool_size(input.shape[2 + a], kernel[a], stride[a], padding[a],
                                    dilation[a], ceil_mode) for a in (0, 1))
    if min(out_size) < 1:
        raise ValueError(f"max_pool2d: output would be empty for input {tuple(input.shape)}")
    shape = tuple(input.shape[:2]) + out_size
    out = _empty(shape, dtype)
    indices = _empty(shape, np.int64)
    options = (tuple(input.shape), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
               out_size)
    _k("max_pool2d_forward", dtype)(input.data.buffer, out.buffer, indices.buffer, *options)

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k("max_pool2d_backward", dtype)(grad.buffer, indices.buffer, gx.buffer, *options)
        return (gx,)

    return _result(out, (input,), backward, "MaxPool2d"), Tensor(indices)


def avg_pool2d(input: Tensor, out_size, kernel, stride, padding, ceil_mode, count_include_pad,
               divisor_override) -> Tensor:
    dtype = input.dtype
    out = _empty(tuple(input.shape[:2]) + tuple(out_size), dtype)
    options = (tuple(input.shape), tuple(kernel), tuple(stride), tuple(padding), tuple(out_size),
               bool(count_include_pad), int(divisor_override or 0))
    _k("avg_pool2d_forward", dtype)(input.data.buffer, out.buffer, *options)

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k("avg_pool2d_backward", dtype)(grad.buffer, gx.buffer, *options)
        return (gx,)

    return _result(out, (input,), backward, "AvgPool2d")


def adaptive_avg_pool2d(input: Tensor, size) -> Tensor:
    dtype = input.dtype
    out = _empty(tuple(input.shape[:2]) + tuple(size), dtype)
    options = (tuple(input.shape), tuple(size))
    _k("adaptive_avg_pool2d_forward", dtype)(input.data.buffer, out.buffer, *options)

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k("adaptive_avg_pool2d_backward", dtype)(grad.buffer, gx.buffer, *options)
        return (gx,)

    return _result(out, (input,), backward, "AdaptiveAvgPool2d")


# ---------------------------------------------------------------------- normalization, activations
def batch_norm(input: Tensor, running_mean, running_var, weight, bias, training: bool,
               momentum: float, eps: float) -> Tensor:
    dtype = input.dtype
    batch, channels = input.shape[0], input.shape[1]
    spatial = int(np.prod(input.shape[2:], dtype=np.int64))
    x = input.data
    out = _empty(input.shape, dtype)
    save_mean = _empty((channels,), np.float64)
    save_invstd = _empty((channels,), np.float64)
    dims = (batch, channels, spatial)
    _k("batch_norm_forward", dtype)(x.buffer, _buffer(weight), _buffer(bias), out.buffer,
                                    _buffer(running_mean), _buffer(running_var), save_mean.buffer,
                                    save_invstd.buffer, bool(training), float(momentum), float(eps),
                                    *dims)

    def backward(grad):
        gx = _maybe(input.requires_grad, input.shape, dtype)
        gw = _maybe(weight is not None and weight.requires_grad, (channels,), dtype, zero=True)
        gb = _maybe(bias is not None and bias.requires_grad, (channels,), dtype, zero=True)
        _k("batch_norm_backward", dtype)(x.buffer, grad.buffer, save_mean.buffer, save_invstd.buffer,
                                         _buffer(weight), _buf(gx), _buf(gw), _buf(gb),
                                         bool(training), *dims)
        return gx, gw, gb

    return _result(out, (input, weight, bias), backward, "NativeBatchNorm")


def _unary(name: str, node: str, input: Tensor, save_input: bool) -> Tensor:
    """y = f(x) with a backward of (saved, grad): saved is x (save_input) or y."""
    dtype, n = input.dtype, input.numel()
    out = _empty(input.shape, dtype)
    _k(f"{name}_forward", dtype)(input.data.buffer, out.buffer, n)
    saved = input.data if save_input else out

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k(f"{name}_backward", dtype)(saved.buffer, grad.buffer, gx.buffer, n)
        return (gx,)

    return _result(out, (input,), backward, node)


def relu(input: Tensor, inplace: bool) -> Tensor:
    result = _unary("relu", "Relu", input, save_input=False)
    if inplace and not input.requires_grad:
        input.data[...] = result.data
        return input
    return result


def sigmoid(input: Tensor) -> Tensor:
    return _unary("sigmoid", "Sigmoid", input, save_input=False)


def tanh(input: Tensor) -> Tensor:
    return _unary("tanh", "Tanh", input, save_input=False)


def leaky_relu(input: Tensor, slope: float, inplace: bool) -> Tensor:
    dtype, n = input.dtype, input.numel()
    x = input.data
    out = _empty(input.shape, dtype)
    _k("leaky_relu_forward", dtype)(x.buffer, out.buffer, n, slope)

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k("leaky_relu_backward", dtype)(x.buffer, grad.buffer, gx.buffer, n, slope)
        return (gx,)

    result = _result(out, (input,), backward, "LeakyRelu")
    if inplace and not input.requires_grad:
        input.data[...] = out
        return input
    return result


# ---------------------------------------------------------------------- softmax and losses
def softmax(input: Tensor, axis: int, dtype, log: bool, name: str) -> Tensor:
    x = input.data if dtype is None else input.data.astype(dtype, copy=False)
    shape = input.shape
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    dim = shape[axis] if shape else 1
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    out = _empty(shape, x.dtype)
    _k("softmax_forward", x.dtype)(x.buffer, out.buffer, outer, dim, inner, log)

    def backward(grad):
        g = grad.astype(out.dtype, copy=False)
        gx = _empty(shape, out.dtype)
        _k("softmax_backward", out.dtype)(out.buffer, g.buffer, gx.buffer, outer, dim, inner, log)
        return (gx.astype(input.dtype, copy=False),)

    return _result(out, (input,), backward, name)


def _host_labels(target: Tensor, classes: int, ignore_index: int, message: str) -> np.ndarray:
    """The labels on the host (a small copy), range-checked as the CPU path does."""
    labels = target.data.to_numpy().astype(np.int64, copy=False).reshape(-1)
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise IndexError(message.format(label=int(labels[bad][0]), last=classes - 1))
    return labels


def _device_labels(target: Tensor, labels: np.ndarray) -> DeviceArray:
    if target.dtype == np.int64:
        return target.data.reshape(-1)
    return DeviceArray.from_numpy(labels)


def _classes_last(input: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N * d1 * ..., C): the class axis moved last (a permute on the
    device, differentiable), rows in the order of the flattened (N, d1, ...) targets."""
    order = (0,) + tuple(range(2, input.ndim)) + (1,)
    return input.permute(*order).reshape(-1, input.shape[1])


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int,
                  reduction: str, eps: float) -> Tensor:
    """Class-index targets; input (N, C), (N, C, d1, ...) or unbatched (C,)."""
    if input.ndim > 2:
        out_shape = (input.shape[0],) + tuple(input.shape[2:])
        result = cross_entropy(_classes_last(input), target.reshape(-1), weight, ignore_index,
                               reduction, eps)
        return result.reshape(out_shape) if reduction == "none" else result
    classes = input.shape[-1]
    logits = input.reshape(1, classes) if input.ndim == 1 else input
    out_shape = () if input.ndim == 1 else (input.shape[0],)
    labels = _host_labels(target, classes, ignore_index,
                          "target: label {label} is out of range for " + str(classes) +
                          " classes (valid: 0..{last} or ignore_index=" + str(ignore_index) + ")")
    device_labels = _device_labels(target, labels)
    x, dtype = logits.data, logits.dtype
    rows = x.shape[0]
    kept = labels != ignore_index
    if weight is not None:
        w_host = weight.data.to_numpy()
        target_weight = np.where(kept, w_host[np.where(kept, labels, 0)], 0).astype(dtype)
    else:
        target_weight = kept.astype(dtype)
    if reduction == "mean":
        denominator = float(target_weight.sum())
        nll_scale = (1 - eps) / denominator if denominator else float("nan")
        smooth_scale = eps / classes / denominator if denominator else float("nan")
    else:
        nll_scale, smooth_scale = 1 - eps, eps / classes
    nll = _empty((rows,), dtype)
    smooth = _empty((rows,), dtype) if eps > 0 else None
    lse = _empty((rows,), np.float64)
    _k("cross_entropy_forward", dtype)(x.buffer, device_labels.buffer, _buffer(weight), nll.buffer,
                                       _buf(smooth), lse.buffer, rows, classes, int(ignore_index))
    if reduction == "none":
        # As the CPU path: nll * (1 - eps) + smooth * (eps / C), each factor rounded to dtype.
        value = nll if smooth is None else nll * (1 - eps) + smooth * (eps / classes)
        value = value.reshape(out_shape)
    else:
        sums = _empty((2,), np.float64)
        _k("sum_array", dtype)(nll.buffer, rows, sums.buffer, 0)
        if smooth is not None:
            _k("sum_array", dtype)(smooth.buffer, rows, sums.buffer, 1)
        value = _empty((), dtype)
        _k("scale_sums", dtype)(sums.buffer, 2 if smooth is not None else 1, float(nll_scale),
                                float(smooth_scale), value.buffer)

    def backward(grad):
        g = grad.astype(dtype, copy=False)
        if reduction == "none":  # as the CPU path: g * (1 - eps) and g * (eps / C) in dtype
            grad_nll, grad_smooth = g.reshape(rows), None
            if smooth is not None:
                grad_smooth = grad_nll * (eps / classes)
                grad_nll = grad_nll * (1 - eps)
        else:
            grad_nll = _empty((rows,), dtype)
            grad_smooth = _empty((rows,), dtype) if smooth is not None else None
            _k("scale_broadcast", dtype)(g.buffer, float(nll_scale), grad_nll.buffer, rows)
            if grad_smooth is not None:
                _k("scale_broadcast", dtype)(g.buffer, float(smooth_scale), grad_smooth.buffer, rows)
        gx = _empty((rows, classes), dtype)
        _k("cross_entropy_backward", dtype)(x.buffer, device_labels.buffer, _buffer(weight),
                                            lse.buffer, grad_nll.buffer, _buf(grad_smooth),
                                            gx.buffer, rows, classes, int(ignore_index))
        return (gx,)

    return _result(value, (logits,), backward, "CrossEntropy")


def nll_loss(input: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int,
             reduction: str) -> Tensor:
    if input.ndim == 1:
        x_shape, out_shape = (1, input.shape[0]), ()
    else:
        x_shape, out_shape = tuple(input.shape), (input.shape[0],) + tuple(input.shape[2:])
    dtype = input.dtype
    outer, classes = x_shape[0], x_shape[1]
    inner = int(np.prod(x_shape[2:], dtype=np.int64))
    labels = _host_labels(target, classes, ignore_index,
                          "Target {label} is out of bounds: target labels must lie in [0, {last}] "
                          "or equal ignore_index=" + str(ignore_index))
    device_labels = _device_labels(target, labels)
    x = input.data.reshape(x_shape)
    loss = _empty((outer * inner,), dtype) if reduction == "none" else None
    sums = _empty((2,), np.float64)
    _k("nll_loss_forward", dtype)(x.buffer, device_labels.buffer, _buffer(weight), _buf(loss),
                                  sums.buffer, outer, classes, inner, int(ignore_index))
    if reduction == "none":
        value, scale = loss.reshape(out_shape), None
    else:
        if reduction == "mean":  # the kept targets' total weight, as the kernel sums it
            kept = labels != ignore_index
            w_host = None if weight is None else weight.data.to_numpy().astype(np.float64)
            weight_sum = float(kept.sum()) if w_host is None else float(w_host[labels[kept]].sum())
            scale = 1.0 / weight_sum if weight_sum else float("nan")
        else:
            scale = 1.0
        value = _empty((), dtype)
        _k("scale_sums", dtype)(sums.buffer, 1, scale, 0.0, value.buffer)

    def backward(grad):
        g = _scaled_grad(grad, scale, dtype)
        gx = _empty(x_shape, dtype)
        _k("nll_loss_backward", dtype)(device_labels.buffer, _buffer(weight), g.buffer,
                                       scale is not None, gx.buffer, outer, classes, inner,
                                       int(ignore_index))
        return (gx.reshape(input.shape),)

    return _result(value, (input,), backward, "NllLoss")


def periodic(operand: Optional[Tensor], shape, name: str) -> Optional[DeviceArray]:
    """A weight that broadcasts to `shape`, for the element-wise loss kernels (functional's
    _periodic on the device): its own memory when its shape, leading 1s dropped, is a suffix
    of `shape` (the kernel repeats it), else a copy broadcast to `shape`."""
    if operand is None:
        return None
    data = operand.data
    try:
        broadcast = np.broadcast_shapes(data.shape, tuple(shape))
    except ValueError:
        broadcast = None
    if broadcast != tuple(shape):
        raise RuntimeError(f"{name}: shape {tuple(data.shape)} cannot be broadcast to the input's "
                           f"shape {tuple(shape)}")
    core = tuple(data.shape)
    while core and core[0] == 1:
        core = core[1:]
    if core == tuple(shape[len(shape) - len(core):]) and data.size > 0:
        return data.reshape(core or (1,))
    return data.broadcast_to(tuple(shape))


def weight_sum(weight: Tensor) -> float:
    """The sum of a weight's elements (a mean's divisor), in double, read back to the host."""
    sums = _empty((1,), np.float64)
    _k("sum_array", weight.dtype)(weight.data.buffer, weight.numel(), sums.buffer, 0)
    return float(sums.to_numpy()[0])


def elementwise_loss(kind: str, name: str, input: Tensor, target: Tensor, reduction: str,
                     divisor: Optional[float], weight: Optional[DeviceArray] = None,
                     pos_weight: Optional[DeviceArray] = None) -> Tensor:
    """mse / l1 / bce / bce_with_logits / kl_div on same-shaped input and target; weight and
    pos_weight (from periodic) repeat with their period."""
    dtype, n = input.dtype, input.numel()
    x, y = input.data, target.data
    loss = _empty(input.shape, dtype) if reduction == "none" else None
    sums = _empty((1,), np.float64)
    flag = DeviceArray.zeros((1,), np.int32)
    code = _LOSS_KIND[kind]
    weights = (_buf(weight), 1 if weight is None else weight.size,
               _buf(pos_weight), 1 if pos_weight is None else pos_weight.size)
    _k("elementwise_loss_forward", dtype)(code, x.buffer, y.buffer, *weights, _buf(loss),
                                          sums.buffer, flag.buffer, n)
    if kind == "bce" and flag.to_numpy()[0]:
        raise RuntimeError(f"{name}: all elements of input should be between 0 and 1")
    if reduction == "none":
        value, scale = loss, None
    else:
        denominator = n if divisor is None else divisor
        scale = (1.0 / denominator if denominator else float("nan")) if reduction != "sum" else 1.0
        value = _empty((), dtype)
        _k("scale_sums", dtype)(sums.buffer, 1, scale, 0.0, value.buffer)

    def backward(grad):
        g = _scaled_grad(grad, scale, dtype)
        gx = _maybe(input.requires_grad, input.shape, dtype)
        gy = _maybe(target.requires_grad, target.shape, dtype)
        _k("elementwise_loss_backward", dtype)(code, x.buffer, y.buffer, *weights, g.buffer,
                                               scale is not None, _buf(gx), _buf(gy), n)
        return gx, gy

    return _result(value, (input, target), backward, name)


def cross_entropy_probabilities(logits: Tensor, p: DeviceArray, out_shape, weight: Optional[Tensor],
                                reduction: str, eps: float) -> Tensor:
    """Class-probability targets, as functional._class_rows gives them: logits (M, C),
    probabilities p (M, C), per-row losses shaped out_shape."""
    x, dtype = logits.data, logits.dtype
    rows, classes = x.shape
    loss = _empty((rows,), dtype) if reduction == "none" else None
    lse = _empty((rows,), np.float64)
    sums = _empty((1,), np.float64)
    _k("cross_entropy_probabilities_forward", dtype)(x.buffer, p.buffer, _buffer(weight), _buf(loss),
                                                     lse.buffer, sums.buffer, rows, classes, float(eps))
    if reduction == "none":
        value, scale = loss.reshape(out_shape), None
    else:
        scale = (1.0 / rows if rows else float("nan")) if reduction == "mean" else 1.0
        value = _empty((), dtype)
        _k("scale_sums", dtype)(sums.buffer, 1, scale, 0.0, value.buffer)

    def backward(grad):
        g = _scaled_grad(grad, scale, dtype)
        gx = _empty((rows, classes), dtype)
        _k("cross_entropy_probabilities_backward", dtype)(x.buffer, p.buffer, _buffer(weight),
                                                          lse.buffer, g.buffer, scale is not None,
                                                          gx.buffer, rows, classes, float(eps))
        return (gx,)

    return _result(value, (logits,), backward, "CrossEntropy")


# ---------------------------------------------------------------------- dropout, pad, one_hot
def dropout(input: Tensor, seed: int, p: float, inplace: bool) -> Tensor:
    """The CPU op's mask (csrc/cuda/dropout.cu: the same splitmix64 counters and seed)."""
    dtype, n = input.dtype, input.numel()
    kernel = _k("dropout_forward", dtype)
    if inplace and not input.requires_grad:
        kernel(input.data.buffer, input.data.buffer, n, seed, p)
        return input
    out = _empty(input.shape, dtype)
    kernel(input.data.buffer, out.buffer, n, seed, p)

    def backward(grad):
        gx = _empty(input.shape, dtype)
        _k("dropout_backward", dtype)(grad.buffer, gx.buffer, n, seed, p)
        return (gx,)

    result = _result(out, (input,), backward, "NativeDropout")
    if inplace and not input.requires_grad:
        input.data[...] = out
        return input
    return result


def _window(shape, widths):
    """Strides of the padded array and the element offset of the input's window in it."""
    from .._device import _strides
    padded = tuple(n + before + after for n, (before, after) in zip(shape, widths))
    strides = _strides(padded)
    offset = sum(before * stride for (before, _), stride in zip(widths, strides))
    return padded, strides, offset


def pad(input: Tensor, widths, value: float) -> Tensor:
    """Constant padding: fill, then the input copied into its window (a strided copy); the
    backward copies the window back out of the gradient."""
    from .._device import _strided_copy, _strides
    padded, strides, offset = _window(input.shape, widths)
    data = input.data
    out = DeviceArray.full(padded, value, data.dtype)
    _strided_copy(data, 0, _strides(input.shape), out, offset, strides, input.shape)

    def backward(grad):
        gx = _empty(input.shape, grad.dtype)
        _strided_copy(grad, offset, strides, gx, 0, _strides(input.shape), input.shape)
        return (gx,)

    return _result(out, (input,), backward, "ConstantPad")


def one_hot(tensor: Tensor, labels: np.ndarray, num_classes: int) -> Tensor:
    """int64 (..., num_classes); `labels`: the host copy functional.one_hot checked."""
    device_labels = tensor.data if tensor.dtype == np.int64 else DeviceArray.from_numpy(labels)
    out = _empty(tuple(labels.shape) + (int(num_classes),), np.int64)
    _C.cuda.one_hot(device_labels.buffer, out.buffer, labels.size, int(num_classes))
    return Tensor(out)
