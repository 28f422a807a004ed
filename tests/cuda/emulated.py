"""An emulated GPU for the tests: the API of fastdl._C.cuda (Buffer, the *_float32 /
*_float64 kernel bindings, device queries) implemented on the host with fastdl's CPU
kernels. Installed in place of fastdl._C.cuda (tests/cuda/test_device_emulated.py), it
runs everything ABOVE the CUDA kernels -- DeviceArray, device dispatch, autograd on
device tensors, the optimizers' device path, Module.to('cuda'), the demo -- on a machine
without a GPU. It checks the Python plumbing and the argument conventions of the
bindings; it does not check the CUDA kernels (tests/cuda/test_cuda_kernels.py does, on a
GPU).
"""
from __future__ import annotations

import numpy as np

import fastdl
from fastdl import _C


class Buffer:
    """Host bytes standing in for cudaMalloc'd memory."""

    def __init__(self, nbytes: int):
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        self._bytes = np.zeros(int(nbytes), dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        return self._bytes.size

    @property
    def address(self) -> int:
        return self._bytes.ctypes.data

    def copy_from_host(self, array):
        array = np.asarray(array)
        if not array.flags.c_contiguous:
            raise ValueError("copy_from_host: the array must be C-contiguous")
        if array.nbytes != self.nbytes:
            raise ValueError(f"copy_from_host: the array has {array.nbytes} bytes, the buffer {self.nbytes}")
        self._bytes[:] = array.reshape(-1).view(np.uint8)

    def copy_to_host(self, array):
        if array.nbytes != self.nbytes or not array.flags.c_contiguous:
            raise ValueError("copy_to_host: size or layout mismatch")
        array.reshape(-1).view(np.uint8)[:] = self._bytes

    def copy_from_buffer(self, other):
        if other.nbytes != self.nbytes:
            raise ValueError("copy_from_buffer: the buffers differ in size")
        self._bytes[:] = other._bytes

    def zero(self):
        self._bytes[:] = 0


def _view(buffer, dtype, shape):
    """The buffer's bytes as a writeable array (None stays None)."""
    if buffer is None:
        return None
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize > buffer.nbytes:
        raise ValueError(f"the device buffer holds {buffer.nbytes} bytes, {count} elements of "
                         f"{dtype.itemsize} bytes are needed")  # the bindings' message
    return buffer._bytes[:count * dtype.itemsize].view(dtype).reshape(shape)


def _strided_copy(dt, src, src_offset, src_strides, dst, dst_offset, dst_strides, shape):
    """The strided copy of csrc/cuda/tensor.cu on the buffers' bytes (every position checked
    to lie inside its buffer, as the binding does)."""
    def window(buffer, offset, strides):
        flat = buffer._bytes.view(dt)
        if 0 in shape:
            return None
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if offset < 0 or min(strides, default=0) < 0 or last >= flat.size:
            raise ValueError(f"the device buffer holds {buffer.nbytes} bytes, {last + 1} elements of "
                             f"{dt.itemsize} bytes are needed")
        return np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(shape),
                                               strides=tuple(s * dt.itemsize for s in strides))
    source, target = window(src, src_offset, src_strides), window(dst, dst_offset, dst_strides)
    if source is not None:
        target[...] = source


def _accumulate(target, value):
    if target is not None and value is not None:
        target += value


class Emulated:
    """A module-like object with _C.cuda's attributes."""

    Buffer = Buffer

    def __init__(self):
        self.calls = []
        for dtype in (np.float32, np.float64):
            self._define(np.dtype(dtype))

    # ------------------------------------------------------------------ device queries
    @staticmethod
    def built():
        return True

    @staticmethod
    def build_info():
        return {"cuda_version": "emulated", "architectures": "none", "gemm": "host (emulated)"}

    @staticmethod
    def device_count():
        return 1

    @staticmethod
    def device_name(device):
        return "emulated GPU (fastdl CPU kernels)"

    @staticmethod
    def device_capability(device):
        return "0.0"

    @staticmethod
    def device_memory(device):
        return 2 ** 30

    @staticmethod
    def runtime_version():
        return 0

    @staticmethod
    def driver_version():
        return 0

    @staticmethod
    def set_device(device):
        pass

    @staticmethod
    def synchronize():
        pass

    @staticmethod
    def fill_int64(buffer, n, value):
        _view(buffer, np.int64, (n,))[:] = int(value)

    def strided_copy_int64(self, *args):
        self.calls.append("strided_copy")
        _strided_copy(np.dtype(np.int64), *args)

    def one_hot(self, labels, out, n, classes):
        self.calls.append("one_hot")
        rows = _view(out, np.int64, (n, classes))
        rows[:] = 0
        np.put_along_axis(rows, _view(labels, np.int64, (n, 1)), 1, axis=1)

    # ------------------------------------------------------------------ kernels
    def _define(self, dt: np.dtype):
        suffix = "_" + dt.name
        calls = self.calls

        def define(name, function):
            def recorded(*args):
                calls.append(name)
                return function(*args)
            setattr(self, name + suffix, recorded)

        def v(buffer, shape):
            return _view(buffer, dt, shape)

        define("fill", lambda b, n, value: v(b, (n,)).__setitem__(slice(None), value))
        define("add_inplace", lambda y, x, n: v(y, (n,)).__iadd__(v(x, (n,))))

        def sum_array(x, n, sums, slot):
            _view(sums, np.float64, (slot + 1,))[slot] = v(x, (n,)).sum(dtype=np.float64)
        define("sum_array", sum_array)

        def scale_sums(sums, count, s0, s1, out):
            s = _view(sums, np.float64, (count,))
            v(out, (1,))[0] = s[0] * s0 + (s[1] * s1 if count == 2 else 0.0)
        define("scale_sums", scale_sums)

        def scale_broadcast(g, scale, out, n):
            v(out, (n,))[:] = float(v(g, (1,))[0]) * scale
        define("scale_broadcast", scale_broadcast)

        for act in ("relu", "sigmoid", "tanh"):
            forward, backward = getattr(_C, act + "_forward"), getattr(_C, act + "_backward")
            define(act + "_forward", lambda x, y, n, f=forward: v(y, (n,)).__setitem__(slice(None), f(v(x, (n,)))))
            define(act + "_backward", lambda s, gy, gx, n, b=backward: v(gx, (n,)).__setitem__(
                slice(None), b(v(s, (n,)), v(gy, (n,)))))
        define("leaky_relu_forward", lambda x, y, n, slope: v(y, (n,)).__setitem__(
            slice(None), _C.leaky_relu_forward(v(x, (n,)), slope)))
        define("leaky_relu_backward", lambda x, gy, gx, n, slope: v(gx, (n,)).__setitem__(
            slice(None), _C.leaky_relu_backward(v(x, (n,)), v(gy, (n,)), slope)))

        def linear_forward(x, w, b, y, N, I, O):
            v(y, (N, O))[:] = _C.linear_forward(v(x, (N, I)), v(w, (O, I)), v(b, (O,)))
        define("linear_forward", linear_forward)

        def linear_backward(x, w, gy, gx, gw, gb, N, I, O):
            rx, rw, rb = _C.linear_backward(v(x, (N, I)), v(w, (O, I)), v(gy, (N, O)),
                                            [gx is not None, gw is not None, gb is not None])
            if gx is not None:
                v(gx, (N, I))[:] = rx
            _accumulate(v(gw, (O, I)), rw)
            _accumulate(v(gb, (O,)), rb)
        define("linear_backward", linear_backward)

        def conv_out(in_shape, w_shape, stride, padding, dilation):
            return tuple((in_shape[2 + a] + 2 * padding[a] - dilation[a] * (w_shape[2 + a] - 1) - 1)
                         // stride[a] + 1 for a in (0, 1))

        def conv2d_forward(x, w, b, y, in_shape, w_shape, stride, padding, dilation, groups):
            out = conv_out(in_shape, w_shape, stride, padding, dilation)
            v(y, (in_shape[0], w_shape[0]) + out)[:] = _C.conv2d_forward(
                v(x, in_shape), v(w, w_shape), v(b, (w_shape[0],)), stride, padding, dilation, groups)
        define("conv2d_forward", conv2d_forward)

        def conv2d_backward(x, w, gy, gx, gw, gb, in_shape, w_shape, stride, padding, dilation, groups):
            out = conv_out(in_shape, w_shape, stride, padding, dilation)
            rx, rw, rb = _C.conv2d_backward(v(x, in_shape), v(w, w_shape),
                                            v(gy, (in_shape[0], w_shape[0]) + out), stride, padding,
                                            dilation, groups, [gx is not None, gw is not None, gb is not None])
            if gx is not None:
                v(gx, in_shape)[:] = rx
            _accumulate(v(gw, w_shape), rw)
            _accumulate(v(gb, (w_shape[0],)), rb)
        define("conv2d_backward", conv2d_backward)

        def max_pool_forward(x, y, idx, in_shape, kernel, stride, padding, dilation, out):
            for ceil in (False, True):
                o, i = _C.max_pool2d_forward(v(x, in_shape), kernel, stride, padding, dilation, ceil)
                if o.shape[2:] == tuple(out):
                    v(y, o.shape)[:] = o
                    _view(idx, np.int64, i.shape)[:] = i
                    return
            raise AssertionError("emulated max_pool2d: output size not reproduced")
        define("max_pool2d_forward", max_pool_forward)

        def max_pool_backward(gy, idx, gx, in_shape, kernel, stride, padding, dilation, out):
            shape = tuple(in_shape[:2]) + tuple(out)
            v(gx, in_shape)[:] = _C.max_pool2d_backward(v(gy, shape), _view(idx, np.int64, shape), in_shape)
        define("max_pool2d_backward", max_pool_backward)

        def avg_options(kernel, stride, padding, in_shape, out, cip, div):
            for ceil in (False, True):
                size = [fastdl.nn.functional._pool_output_size(in_shape[2 + a], kernel[a], stride[a],
                                                               padding[a], ceil) for a in (0, 1)]
                if tuple(size) == tuple(out):
                    return (kernel, stride, padding, ceil, cip, div or None)
            raise AssertionError("emulated avg_pool2d: output size not reproduced")

        def avg_forward(x, y, in_shape, kernel, stride, padding, out, cip, div):
            options = avg_options(kernel, stride, padding, in_shape, out, cip, div)
            v(y, tuple(in_shape[:2]) + tuple(out))[:] = _C.avg_pool2d_forward(v(x, in_shape), *options)
        define("avg_pool2d_forward", avg_forward)

        def avg_backward(gy, gx, in_shape, kernel, stride, padding, out, cip, div):
            options = avg_options(kernel, stride, padding, in_shape, out, cip, div)
            v(gx, in_shape)[:] = _C.avg_pool2d_backward(v(gy, tuple(in_shape[:2]) + tuple(out)),
                                                        tuple(in_shape), *options)
        define("avg_pool2d_backward", avg_backward)

        define("adaptive_avg_pool2d_forward", lambda x, y, in_shape, out: v(
            y, tuple(in_shape[:2]) + tuple(out)).__setitem__(
            slice(None), _C.adaptive_avg_pool2d_forward(v(x, in_shape), tuple(out))))
        define("adaptive_avg_pool2d_backward", lambda gy, gx, in_shape, out: v(gx, in_shape).__setitem__(
            slice(None), _C.adaptive_avg_pool2d_backward(v(gy, tuple(in_shape[:2]) + tuple(out)),
                                                         tuple(in_shape))))

        def bn_forward(x, w, b, y, rm, rv, sm, si, training, momentum, eps, N, C, S):
            out, mean, invstd = _C.batch_norm_forward(v(x, (N, C, S)), v(w, (C,)), v(b, (C,)),
                                                      v(rm, (C,)), v(rv, (C,)), training, momentum, eps)
            v(y, (N, C, S))[:] = out
            _view(sm, np.float64, (C,))[:] = mean
            _view(si, np.float64, (C,))[:] = invstd
        define("batch_norm_forward", bn_forward)

        def bn_backward(x, gy, sm, si, w, gx, gw, gb, training, N, C, S):
            rx, rw, rb = _C.batch_norm_backward(v(x, (N, C, S)), v(gy, (N, C, S)),
                                                _view(sm, np.float64, (C,)), _view(si, np.float64, (C,)),
                                                v(w, (C,)), training,
                                                [gx is not None, gw is not None, gb is not None])
            if gx is not None:
                v(gx, (N, C, S))[:] = rx
            _accumulate(v(gw, (C,)), rw)
            _accumulate(v(gb, (C,)), rb)
        define("batch_norm_backward", bn_backward)

        def ce_forward(x, t, w, nll, smooth, lse, N, C, ignore):
            rn, rs, rl = _C.cross_entropy_forward(v(x, (N, C)), _view(t, np.int64, (N,)), v(w, (C,)),
                                                  ignore, smooth is not None)
            v(nll, (N,))[:] = rn
            if smooth is not None:
                v(smooth, (N,))[:] = rs
            _view(lse, np.float64, (N,))[:] = rl
        define("cross_entropy_forward", ce_forward)

        def ce_backward(x, t, w, lse, gn, gs, gx, N, C, ignore):
            v(gx, (N, C))[:] = _C.cross_entropy_backward(
                v(x, (N, C)), _view(t, np.int64, (N,)), v(w, (C,)), _view(lse, np.float64, (N,)),
                v(gn, (N,)), v(gs, (N,)), ignore)
        define("cross_entropy_backward", ce_backward)

        define("softmax_forward", lambda x, y, o, d, i, log: v(y, (o, d, i)).__setitem__(
            slice(None), _C.softmax_forward(v(x, (o, d, i)), 1, log)))
        define("softmax_backward", lambda y, gy, gx, o, d, i, log: v(gx, (o, d, i)).__setitem__(
            slice(None), _C.softmax_backward(v(y, (o, d, i)), v(gy, (o, d, i)), 1, log)))

        def nll_forward(x, t, w, loss, sums, outer, C, inner, ignore):
            rl, total, weight_sum = _C.nll_loss_forward(v(x, (outer, C, inner)),
                                                        _view(t, np.int64, (outer, inner)), v(w, (C,)),
                                                        ignore, loss is not None)
            if loss is not None:
                v(loss, (outer * inner,))[:] = rl.reshape(-1)
            _view(sums, np.float64, (2,))[:] = (total, weight_sum)
        define("nll_loss_forward", nll_forward)

        def nll_backward(t, w, g, scalar, gx, outer, C, inner, ignore):
            grad = v(g, (1,)).reshape(()) if scalar else v(g, (outer, inner))
            v(gx, (outer, C, inner))[:] = _C.nll_loss_backward(
                np.zeros((outer, C, inner), dt), _view(t, np.int64, (outer, inner)), v(w, (C,)), grad,
                ignore).reshape(outer, C, inner)
        define("nll_loss_backward", nll_backward)

        def periodic(b, period):
            return None if b is None else v(b, (period,))

        def elementwise_forward(kind, x, y, w, wp, pw, pp, loss, sums, flag, n):
            rl, total, bad, _ = _C.elementwise_loss_forward(kind, v(x, (n,)), v(y, (n,)), periodic(w, wp),
                                                         periodic(pw, pp), loss is not None)
            if loss is not None:
                v(loss, (n,))[:] = rl
            _view(sums, np.float64, (1,))[0] = total
            _view(flag, np.int32, (1,))[0] = int(bool(bad))
        define("elementwise_loss_forward", elementwise_forward)

        def elementwise_backward(kind, x, y, w, wp, pw, pp, g, scalar, gx, gy, n):
            grad = v(g, (1,)).reshape(()) if scalar else v(g, (n,))
            rx, ry = _C.elementwise_loss_backward(kind, v(x, (n,)), v(y, (n,)), periodic(w, wp),
                                                  periodic(pw, pp), grad, gx is not None, gy is not None)
            if gx is not None:
                v(gx, (n,))[:] = rx
            if gy is not None:
                v(gy, (n,))[:] = ry
        define("elementwise_loss_backward", elementwise_backward)

        def cep_forward(x, t, w, loss, lse, sums, N, C, eps):
            rl, total, rlse = _C.cross_entropy_probabilities_forward(v(x, (N, C)), v(t, (N, C)), v(w, (C,)),
                                                                     eps, True)
            if loss is not None:
                v(loss, (N,))[:] = rl
            _view(lse, np.float64, (N,))[:] = rlse
            _view(sums, np.float64, (1,))[0] = rl.sum(dtype=np.float64)
        define("cross_entropy_probabilities_forward", cep_forward)

        def cep_backward(x, t, w, lse, g, scalar, gx, N, C, eps):
            grad = v(g, (1,)).reshape(()) if scalar else v(g, (N,))
            v(gx, (N, C))[:] = _C.cross_entropy_probabilities_backward(
                v(x, (N, C)), v(t, (N, C)), v(w, (C,)), _view(lse, np.float64, (N,)), grad, eps)
        define("cross_entropy_probabilities_backward", cep_backward)

        define("dropout_forward", lambda x, y, n, seed, p: v(y, (n,)).__setitem__(
            slice(None), _C.dropout_forward(v(x, (n,)), seed, p)))
        define("dropout_backward", lambda gy, gx, n, seed, p: v(gx, (n,)).__setitem__(
            slice(None), _C.dropout_backward(v(gy, (n,)), seed, p)))

        operators = (np.add, np.subtract, np.multiply, np.divide)  # csrc/cuda Arithmetic order
        define("elementwise_binary", lambda op, a, b, out, n: operators[op](
            v(a, (n,)), v(b, (n,)), out=v(out, (n,))))

        def elementwise_scalar(op, a, scalar, reverse, out, n):
            s = dt.type(scalar)
            operands = (s, v(a, (n,))) if reverse else (v(a, (n,)), s)
            operators[op](*operands, out=v(out, (n,)))
        define("elementwise_scalar", elementwise_scalar)
        define("strided_copy", lambda *args: _strided_copy(dt, *args))
        define("sum_rows", lambda x, out, rows, cols: v(out, (rows,)).__setitem__(
            slice(None), v(x, (rows, cols)).sum(axis=1, dtype=np.float64)))

        def lists(*groups):
            return [[_view(b, dt, (b.nbytes // dt.itemsize,)) for b in group] for group in groups]

        for step in ("sgd_step", "adam_step", "adagrad_step", "rmsprop_step"):
            cpu = getattr(_C, step + suffix)
            arrays = {"sgd_step": 3, "adam_step": 5, "adagrad_step": 3, "rmsprop_step": 5}[step]

            def run(*args, cpu=cpu, arrays=arrays):
                return cpu(*lists(*args[:arrays]), *args[arrays:])
            define(step, run)


def install(monkeypatch) -> Emulated:
    """Put the emulated GPU in place of fastdl._C.cuda for one test."""
    emulated = Emulated()
    monkeypatch.setattr(_C, "cuda", emulated)
    monkeypatch.setattr(fastdl.cuda, "_count", None)
    return emulated
