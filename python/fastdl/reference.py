"""Plain NumPy definitions of every fastdl kernel, forward and backward.

This is the readable definition a student reads and the oracle the tests compare with.
Clarity first: no clever tricks beyond NumPy's sliding windows. Shapes follow PyTorch
(NCHW); every backward returns the gradients of the forward's inputs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pair = Tuple[int, int]


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------------- conv2d
def _windows(x: np.ndarray, kh: int, kw: int, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    """Every receptive field: (N, C, OH, OW, KH, KW), zero padded."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return win[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]


def conv2d_forward(x, weight, bias=None, stride: Pair = (1, 1), padding: Pair = (0, 0),
                   dilation: Pair = (1, 1), groups: int = 1) -> np.ndarray:
    """out[n, o, y, x] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * xpad[n, g*Cg + c, y*s + i*d, x*s + j*d]"""
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    og = o // groups
    win = _windows(x, kh, kw, stride, padding, dilation)
    outs = []
    for g in range(groups):
        wg = weight[g * og:(g + 1) * og]
        xg = win[:, g * cg:(g + 1) * cg]
        outs.append(np.einsum("ncyxij,ocij->noyx", xg, wg, optimize=True))
    out = np.concatenate(outs, axis=1)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out.astype(x.dtype, copy=False)


def conv2d_backward(x, weight, grad_out, stride: Pair = (1, 1), padding: Pair = (0, 0),
                    dilation: Pair = (1, 1), groups: int = 1):
    """Returns (grad_input, grad_weight, grad_bias)."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    win = _windows(x, kh, kw, stride, padding, dilation)
    oh, ow = grad_out.shape[2:]
    grad_w = np.concatenate([
        np.einsum("ncyxij,noyx->ocij", win[:, g * cg:(g + 1) * cg], grad_out[:, g * og:(g + 1) * og],
                  optimize=True) for g in range(groups)])
    grad_b = grad_out.sum(axis=(0, 2, 3))
    # Scatter each output gradient back over the receptive field it came from.
    grad_xp = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=x.dtype)
    for g in range(groups):
        wg = weight[g * og:(g + 1) * og]
        gg = grad_out[:, g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                contribution = np.einsum("noyx,oc->ncyx", gg, wg[:, :, i, j], optimize=True)
                r0, c0 = i * dilation[0], j * dilation[1]
                grad_xp[:, g * cg:(g + 1) * cg,
                        r0:r0 + stride[0] * (oh - 1) + 1:stride[0],
                        c0:c0 + stride[1] * (ow - 1) + 1:stride[1]] += contribution
    grad_x = grad_xp[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]
    return grad_x.astype(x.dtype), grad_w.astype(x.dtype), grad_b.astype(x.dtype)


# ---------------------------------------------------------------------- max_pool2d
def max_pool2d_forward(x, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
                       dilation: Pair = (1, 1)):
    """Returns (out, indices); indices are flat y*W + x positions in each input plane
    (-1, with output -inf, for a window that covers only padding)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    oh = _out_size(h, kernel[0], stride[0], padding[0], dilation[0])
    ow = _out_size(w, kernel[1], stride[1], padding[1], dilation[1])
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    indices = np.empty((n, c, oh, ow), dtype=np.int64)
    for y in range(oh):
        for xo in range(ow):
            rows = y * stride[0] + dilation[0] * np.arange(kernel[0])
            cols = xo * stride[1] + dilation[1] * np.arange(kernel[1])
            window = xp[:, :, rows[:, None], cols[None, :]].reshape(n, c, -1)
            best = window.argmax(axis=2)
            out[:, :, y, xo] = np.take_along_axis(window, best[..., None], 2)[..., 0]
            r, q = rows[best // kernel[1]] - padding[0], cols[best % kernel[1]] - padding[1]
            inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)  # else the window is all padding
            indices[:, :, y, xo] = np.where(inside, r * w + q, -1)
    return out, indices


def max_pool2d_backward(grad_out, indices, input_shape):
    n, c, h, w = input_shape
    grad = np.zeros((n * c, h * w), dtype=grad_out.dtype)
    flat_idx = indices.reshape(n * c, -1)
    for p in range(n * c):
        hit = flat_idx[p] >= 0  # -1 marks a window that saw only padding
        np.add.at(grad[p], flat_idx[p][hit], grad_out.reshape(n * c, -1)[p][hit])
    return grad.reshape(input_shape)


# ---------------------------------------------------------------------- linear, relu
def linear_forward(x, weight, bias=None):
    out = x @ weight.T
    return out + bias if bias is not None else out


def linear_backward(x, weight, grad_out):
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0)


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(out, grad_out):
    return np.where(out <= 0, 0, grad_out).astype(grad_out.dtype)


# ---------------------------------------------------------------------- cross-entropy
def log_softmax(logits, axis=-1):
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_forward(logits, target, reduction: str = "mean"):
    """-log softmax(logits)[n, target[n]], reduced."""
    logp = log_softmax(logits)
    loss = -logp[np.arange(len(target)), target]
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def cross_entropy_backward(logits, target, grad=1.0, reduction: str = "mean"):
    """d loss / d logits = (softmax(logits) - one_hot(target)) * grad (/ N for the mean)."""
    p = np.exp(log_softmax(logits))
    p[np.arange(len(target)), target] -= 1
    scale = np.asarray(grad, dtype=logits.dtype)
    if reduction == "mean":
        scale = scale / len(target)
    return p * (scale[:, None] if scale.ndim == 1 else scale)


# ---------------------------------------------------------------------- optimizers
def sgd_step(param, grad, buf: Optional[np.ndarray], lr, momentum=0.0, dampening=0.0,
             weight_decay=0.0, nesterov=False):
    """One SGD step; returns (param, buf)."""
    d = grad + weight_decay * param
    if momentum:
        buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return param - lr * d, buf


def adam_step(param, grad, m, v, t: int, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled=False):
    """One Adam (or AdamW) step at step count t >= 1; returns (param, m, v)."""
    beta1, beta2 = betas
    if decoupled:
        param = param * (1 - lr * weight_decay)
    else:
        grad = grad + weight_decay * param
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# ---------------------------------------------------------------------- pooling (avg, adaptive)
# (section: pooling)
def _avg_windows(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool):
    """Per output index along one axis: (clipped start, clipped end, size counting padding).
    A window may reach into the padding but not past size + pad."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start in the right padding: PyTorch drops it
    windows = []
    for o in range(out):
        start = o * stride - pad
        end = min(start + kernel, size + pad)
        windows.append((max(start, 0), min(end, size), end - start))
    return windows


def avg_pool2d_forward(x, kernel: Pair, stride: Pair, padding: Pair = (0, 0), ceil_mode: bool = False,
                       count_include_pad: bool = True, divisor_override: Optional[int] = None):
    """out[n, c, y, x] = sum(x[n, c, window(y, x)]) / divisor, where the divisor is
    divisor_override, or the window's size with padding (count_include_pad), or without."""
    n, c, h, w = x.shape
    rows = _avg_windows(h, kernel[0], stride[0], padding[0], ceil_mode)
    cols = _avg_windows(w, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.zeros((n, c, len(rows), len(cols)), dtype=x.dtype)
    for i, (r0, r1, rows_with_pad) in enumerate(rows):
        for j, (c0, c1, cols_with_pad) in enumerate(cols):
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = rows_with_pad * cols_with_pad
            else:
                divisor = (r1 - r0) * (c1 - c0)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / divisor
    return out


def avg_pool2d_backward(grad_out, input_shape, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: Optional[int] = None):
    """Each output's gradient, divided by its divisor, spread evenly over its window."""
    n, c, h, w = input_shape
    rows = _avg_windows(h, kernel[0], stride[0], padding[0], ceil_mode)
    cols = _avg_windows(w, kernel[1], stride[1], padding[1], ceil_mode)
    grad = np.zeros(input_shape, dtype=grad_out.dtype)
    for i, (r0, r1, rows_with_pad) in enumerate(rows):
        for j, (c0, c1, cols_with_pad) in enumerate(cols):
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = rows_with_pad * cols_with_pad
            else:
                divisor = (r1 - r0) * (c1 - c0)
            grad[:, :, r0:r1, c0:c1] += (grad_out[:, :, i, j] / divisor)[:, :, None, None]
    return grad


def _adaptive_windows(size: int, out: int):
    """Output o averages [floor(o*size/out), ceil((o+1)*size/out)): windows cover the input,
    overlapping by at most one element when out does not divide size."""
    return [(o * size // out, -(-(o + 1) * size // out)) for o in range(out)]


def adaptive_avg_pool2d_forward(x, output_size: Pair):
    n, c, h, w = x.shape
    out = np.zeros((n, c) + tuple(output_size), dtype=x.dtype)
    for i, (r0, r1) in enumerate(_adaptive_windows(h, output_size[0])):
        for j, (c0, c1) in enumerate(_adaptive_windows(w, output_size[1])):
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    n, c, h, w = input_shape
    grad = np.zeros(input_shape, dtype=grad_out.dtype)
    oh, ow = grad_out.shape[2:]
    for i, (r0, r1) in enumerate(_adaptive_windows(h, oh)):
        for j, (c0, c1) in enumerate(_adaptive_windows(w, ow)):
            area = (r1 - r0) * (c1 - c0)
            grad[:, :, r0:r1, c0:c1] += (grad_out[:, :, i, j] / area)[:, :, None, None]
    return grad


# ---------------------------------------------------------------------- normalization, activations
# (section: normalization)
def _channel_axes(x) -> tuple:
    """Every axis but the channel axis 1 of an (N, C, ...) array."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    """A (C,) vector shaped to broadcast against x (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm_forward(x, running_mean=None, running_var=None, weight=None, bias=None,
                       training: bool = False, momentum: float = 0.1, eps: float = 1e-5):
    """Returns (out, new_running_mean, new_running_var).

    training: mean, var = batch mean and biased variance per channel; the running stats
    move towards mean and the unbiased variance var * M / (M - 1), M = values per channel.
    otherwise: mean, var = running_mean, running_var.
    out = (x - mean) / sqrt(var + eps) * weight + bias."""
    axes = _channel_axes(x)
    if training:
        count = x.size // x.shape[1]
        mean = x.mean(axis=axes, dtype=np.float64)
        var = x.astype(np.float64).var(axis=axes)
        if running_mean is not None:
            running_mean = (1 - momentum) * running_mean + momentum * mean
            running_var = (1 - momentum) * running_var + momentum * var * count / (count - 1)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    xhat = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    out = xhat * (1 if weight is None else _per_channel(weight, x)) + (0 if bias is None else _per_channel(bias, x))
    cast = (lambda a: None if a is None else np.asarray(a).astype(x.dtype))
    return out.astype(x.dtype), cast(running_mean), cast(running_var)


def batch_norm_backward(x, grad_out, weight=None, running_mean=None, running_var=None,
                        training: bool = False, eps: float = 1e-5):
    """Returns (grad_input, grad_weight, grad_bias). In training the mean and variance
    depend on x, which adds the two correction terms of grad_input:
        grad_input = weight / std * (g - mean(g) - xhat * mean(g * xhat))."""
    axes = _channel_axes(x)
    if training:
        mean = x.mean(axis=axes, dtype=np.float64)
        var = x.astype(np.float64).var(axis=axes)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    std = np.sqrt(_per_channel(var, x) + eps)
    xhat = (x - _per_channel(mean, x)) / std
    w = 1 if weight is None else _per_channel(weight.astype(np.float64), x)
    g = grad_out.astype(np.float64)
    grad_bias = g.sum(axis=axes)
    grad_weight = (g * xhat).sum(axis=axes)
    if training:
        grad_input = w / std * (g - g.mean(axis=axes, keepdims=True)
                                - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    else:
        grad_input = w / std * g
    return grad_input.astype(x.dtype), grad_weight.astype(x.dtype), grad_bias.astype(x.dtype)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), as exp(-|x|) based fractions so that nothing overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def sigmoid_backward(out, grad_out):
    return grad_out * (1 - out) * out


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(out, grad_out):
    return grad_out * (1 - out * out)


def leaky_relu_forward(x, negative_slope: float = 0.01):
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(x, grad_out, negative_slope: float = 0.01):
    return np.where(x > 0, grad_out, grad_out * grad_out.dtype.type(negative_slope))


def dropout_forward(x, mask, p: float):
    """mask: 1 where an element is kept (probability 1 - p), else 0."""
    return x * (mask / x.dtype.type(1 - p)).astype(x.dtype)


# ---------------------------------------------------------------------- losses
# (section: losses)
def _reduce(loss, reduction: str, denominator=None):
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / (loss.size if denominator is None else denominator)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(out, grad_out, axis=-1, log=False):
    """softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g)."""
    if log:
        return grad_out - np.exp(out) * grad_out.sum(axis=axis, keepdims=True)
    return out * (grad_out - (grad_out * out).sum(axis=axis, keepdims=True))


def nll_loss_forward(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """-weight[t] * logp[n, t, ...]; 'mean' divides by the kept targets' total weight.
    logp (N, C, ...), target (N, ...)."""
    classes = logp.shape[1]
    weight = np.ones(classes, logp.dtype) if weight is None else weight
    kept = target != ignore_index
    safe = np.where(kept, target, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    w = np.where(kept, weight[safe], 0)
    return _reduce(-w * picked, reduction, w.sum())


def nll_loss_backward(logp, target, grad, weight=None, ignore_index=-100, reduction="mean"):
    classes = logp.shape[1]
    weight = np.ones(classes, logp.dtype) if weight is None else weight
    kept = target != ignore_index
    safe = np.where(kept, target, 0)
    w = np.where(kept, weight[safe], 0)
    g = np.broadcast_to(grad, target.shape) / (w.sum() if reduction == "mean" else 1)
    out = np.zeros_like(logp)
    np.put_along_axis(out, safe[:, None], (-w * g)[:, None], axis=1)
    return out


def cross_entropy_probabilities_forward(logits, target, weight=None, label_smoothing=0.0,
                                        reduction="mean"):
    """-sum_c w[c] q[n, c] log_softmax(x)[n, c], q = (1 - eps) target + eps / C; logits (N, C).
    'mean' divides by N (not by the weights)."""
    classes = logits.shape[1]
    q = target * (1 - label_smoothing) + label_smoothing / classes
    w = np.ones(classes) if weight is None else weight
    return _reduce(-(w * q * log_softmax(logits, axis=1)).sum(axis=1), reduction)


def cross_entropy_probabilities_backward(logits, target, grad, weight=None, label_smoothing=0.0,
                                         reduction="mean"):
    classes = logits.shape[1]
    q = target * (1 - label_smoothing) + label_smoothing / classes
    wq = q * (np.ones(classes) if weight is None else weight)
    g = np.broadcast_to(grad, (logits.shape[0],)) / (logits.shape[0] if reduction == "mean" else 1)
    return g[:, None] * (softmax(logits, axis=1) * wq.sum(axis=1, keepdims=True) - wq)


def mse_loss(x, y, reduction="mean"):
    return _reduce((x - y) ** 2, reduction)


def l1_loss(x, y, reduction="mean"):
    return _reduce(np.abs(x - y), reduction)


def binary_cross_entropy(x, y, weight=None, reduction="mean"):
    """-w (y log x + (1 - y) log(1 - x)), each log clamped at -100 as PyTorch."""
    with np.errstate(divide="ignore"):
        loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    return _reduce(loss if weight is None else weight * loss, reduction)


def log_sigmoid(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def binary_cross_entropy_with_logits(x, y, weight=None, pos_weight=None, reduction="mean"):
    """w ((1 - y) x - (1 + (p - 1) y) log sigmoid(x)): never exp of a large positive number."""
    log_weight = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
    loss = (1 - y) * x - log_weight * log_sigmoid(x)
    return _reduce(loss if weight is None else weight * loss, reduction)


def kl_div(x, y, reduction="mean", log_target=False):
    """y (log y - x) with 0 log 0 = 0, or exp(y) (y - x) for log-space targets;
    'batchmean' divides the sum by the batch size."""
    if log_target:
        loss = np.exp(y) * (y - x)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0) - y * x
    if reduction == "batchmean":
        return loss.sum() / (x.shape[0] if x.ndim else 1)
    return _reduce(loss, reduction)
