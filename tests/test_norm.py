"""Batch norm, sigmoid / tanh / leaky_relu and dropout, through the public API.

Checked as every kernel is (tests/test_kernels.py explains the five ways): against
PyTorch float32 and float64, against the NumPy reference (fastdl.reference), by finite
differences in float64, 1 thread against 2 threads bitwise, strided inputs against
contiguous ones bitwise. Batch norm also through its modules (running statistics over
several steps, num_batches_tracked, state_dict keys); dropout by the statistics of its
mask and its determinism.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import optim, reference

from test_kernels import (CONSTRUCTORS, FLOAT_DTYPES, LAYOUT_NAMES, _assert_bitwise_equal,  # noqa: F401
                          _assert_close, _away_from_zero, _check_against_torch,
                          _check_finite_differences, _on_threads, _run_fastdl,
                          _run_with_layout, _upstream, restore_threads, torch)

DTYPE_IDS = ["float32", "float64"]

# Element-wise activation OUTPUTS agree with torch to float32 rounding (~1-2 ulp). Their
# gradients use the output (1 - y, 1 - y^2): an ulp of y near saturation is a large
# relative change of the gradient, so gradients get the general tolerances.
ACTIVATION_TOLERANCES = {np.dtype(np.float32): (1e-6, 1e-30), np.dtype(np.float64): (1e-14, 1e-300)}


# ====================================================================== batch norm: functional
BN_SHAPES = [
    pytest.param((16, 5), id="NC"),
    pytest.param((6, 4, 7), id="NCL"),
    pytest.param((4, 3, 6, 5), id="NCHW"),
    pytest.param((3, 2, 32), id="NCL-long-runs"),
    pytest.param((2, 3, 2, 2, 3), id="NCDHW"),
]


def _bn_arrays(rng, shape, dtype, affine=True, offset=3.0):
    channels = shape[1]
    x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
    w = (rng.standard_normal(channels) + 1).astype(dtype) if affine else None
    b = rng.standard_normal(channels).astype(dtype) if affine else None
    return [x, w, b]


def _running(rng, channels, dtype):
    return (rng.standard_normal(channels).astype(dtype), (rng.random(channels) + 0.5).astype(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_torch(torch, shape, training, affine, dtype):
    rng = np.random.default_rng(10)
    arrays = _bn_arrays(rng, shape, dtype, affine)
    mean, var = _running(rng, shape[1], dtype)
    stats = {}

    def ours(x, w, b):
        stats["ours"] = (fastdl.tensor(mean.copy()), fastdl.tensor(var.copy()))
        return F.batch_norm(x, *stats["ours"], w, b, training=training, momentum=0.2, eps=1e-3)

    def theirs(x, w, b):
        stats["torch"] = (torch.tensor(mean.copy()), torch.tensor(var.copy()))
        return torch.nn.functional.batch_norm(x, *stats["torch"], w, b, training=training,
                                              momentum=0.2, eps=1e-3)

    if affine:
        _check_against_torch(torch, ours, theirs, arrays, rng, ["input", "weight", "bias"])
    else:
        _check_against_torch(torch, lambda x: ours(x, None, None), lambda x: theirs(x, None, None),
                             arrays[:1], rng, ["input"])
    for mine, expected, name in zip(stats["ours"], stats["torch"], ["running_mean", "running_var"]):
        _assert_close(mine.numpy(), expected.numpy(), dtype, name)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_batch_norm_training_without_running_stats_matches_torch(torch, dtype):
    rng = np.random.default_rng(11)
    arrays = _bn_arrays(rng, (5, 3, 4, 4), dtype)
    _check_against_torch(
        torch,
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True),
        arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_reference(shape, training, dtype):
    rng = np.random.default_rng(12)
    x, w, b = _bn_arrays(rng, shape, dtype)
    mean, var = _running(rng, shape[1], dtype)
    rm, rv = fastdl.tensor(mean.copy()), fastdl.tensor(var.copy())
    out, (gx, gw, gb), upstream = _run_fastdl(
        lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3), [x, w, b], rng=rng)
    expected, new_mean, new_var = reference.batch_norm_forward(x, mean, var, w, b, training, momentum=0.3)
    _assert_close(out, expected, dtype, "output")
    _assert_close(rm.numpy(), new_mean, dtype, "running_mean")
    _assert_close(rv.numpy(), new_var, dtype, "running_var")
    rx, rw, rb = reference.batch_norm_backward(x, upstream, w, mean, var, training)
    _assert_close(gx, rx, dtype, "grad of input")
    _assert_close(gw, rw, dtype, "grad of weight")
    _assert_close(gb, rb, dtype, "grad of bias")


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 3, 3, 4), (2, 2, 20)],
                         ids=["NC", "NCL", "NCHW", "long-runs"])
def test_batch_norm_finite_differences(shape, training):
    rng = np.random.default_rng(13)
    arrays = _bn_arrays(rng, shape, np.float64)
    mean, var = _running(rng, shape[1], np.float64)

    def function(x, w, b):
        # Fresh running buffers: the statistics a call reads must not drift between calls.
        return F.batch_norm(x, fastdl.tensor(mean.copy()), fastdl.tensor(var.copy()), w, b,
                            training=training)

    _check_finite_differences(function, arrays, rng, ["input", "weight", "bias"])


def test_batch_norm_large_mean_keeps_float32_accuracy(torch):
    # |mean| >> std: the variance must not be lost to cancellation.
    rng = np.random.default_rng(14)
    x = (rng.standard_normal((64, 3, 8, 8)) + 1000).astype(np.float32)
    ours = F.batch_norm(fastdl.tensor(x), None, None, training=True).numpy()
    exact = reference.batch_norm_forward(x.astype(np.float64), training=True)[0]
    np.testing.assert_allclose(ours, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("requires", [(True, False, False), (False, True, False), (False, False, True),
                                      (False, True, True)],
                         ids=["input-only", "weight-only", "bias-only", "parameters-only"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
def test_batch_norm_partial_requires_grad(requires, training):
    rng = np.random.default_rng(15)
    arrays = _bn_arrays(rng, (4, 3, 5, 5), np.float64)
    mean, var = _running(rng, 3, np.float64)
    upstream = _upstream(rng, (4, 3, 5, 5), np.float64)

    def function(x, w, b):
        return F.batch_norm(x, fastdl.tensor(mean.copy()), fastdl.tensor(var.copy()), w, b, training=training)

    _, full, _ = _run_fastdl(function, arrays, upstream)
    leaves = [fastdl.tensor(a, requires_grad=r) for a, r in zip(arrays, requires)]
    function(*leaves).backward(upstream)
    for leaf, wanted, expected in zip(leaves, requires, full):
        if wanted:
            _assert_bitwise_equal([leaf.grad.numpy()], [expected], "partial grad")
        else:
            assert leaf.grad is None


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(16, 64, 16, 16), (4096, 24), (512, 16, 5)],
                         ids=["long-runs", "NC", "short-runs"])
def test_batch_norm_one_thread_equals_two_threads(restore_threads, shape, dtype):
    rng = np.random.default_rng(16)
    arrays = _bn_arrays(rng, shape, dtype)
    upstream = _upstream(rng, shape, dtype)
    mean, var = _running(rng, shape[1], dtype)

    def run():
        rm, rv = fastdl.tensor(mean.copy()), fastdl.tensor(var.copy())
        out, grads, _ = _run_fastdl(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=True),
                                    arrays, upstream)
        return [out] + grads + [rm.numpy(), rv.numpy()]

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "batch_norm")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_batch_norm_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(17)
    x, w, b = _bn_arrays(rng, (3, 4, 5, 6), np.float32)
    upstream = _upstream(rng, x.shape, np.float32)
    mean, var = _running(rng, 4, np.float32)

    def function(x, w, b):
        return F.batch_norm(x, fastdl.tensor(mean.copy()), fastdl.tensor(var.copy()), w, b, training=True)

    expected = _run_with_layout(function, [x, w, b], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(function, [x, w, b], upstream, layout, constructor),
                          expected, f"batch_norm with {layout} inputs")


def test_batch_norm_updates_strided_running_stats_in_place():
    rng = np.random.default_rng(18)
    x = rng.standard_normal((8, 3, 4)).astype(np.float32)
    base = np.zeros(6, np.float32)
    running_mean = fastdl.Tensor(base[::2])  # a strided view: updated through a copy
    running_var = fastdl.tensor(np.ones(3, np.float32))
    F.batch_norm(fastdl.tensor(x), running_mean, running_var, training=True, momentum=0.5)
    np.testing.assert_allclose(base[::2], 0.5 * x.mean(axis=(0, 2)), rtol=1e-6, atol=1e-7)
    assert np.all(base[1::2] == 0)


# ====================================================================== batch norm: modules
def _torch_module(torch, module):
    kind = {nn.BatchNorm1d: torch.nn.BatchNorm1d, nn.BatchNorm2d: torch.nn.BatchNorm2d}[type(module)]
    return kind(module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine,
                track_running_stats=module.track_running_stats)


MODULE_CASES = [
    pytest.param(nn.BatchNorm1d, (8, 5), {}, id="1d-NC"),
    pytest.param(nn.BatchNorm1d, (6, 5, 7), {}, id="1d-NCL"),
    pytest.param(nn.BatchNorm2d, (4, 5, 6, 6), {}, id="2d"),
    pytest.param(nn.BatchNorm2d, (4, 5, 3, 3), dict(momentum=None), id="2d-cumulative-average"),
    pytest.param(nn.BatchNorm2d, (4, 5, 3, 3), dict(affine=False), id="2d-no-affine"),
    pytest.param(nn.BatchNorm1d, (6, 5, 3), dict(track_running_stats=False), id="1d-no-running-stats"),
    pytest.param(nn.BatchNorm2d, (3, 5, 4, 4), dict(eps=1e-2, momentum=0.5), id="2d-eps-momentum"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind, shape, kwargs", MODULE_CASES)
def test_batch_norm_module_matches_torch_over_steps(torch, kind, shape, kwargs, dtype):
    rng = np.random.default_rng(20)
    ours = kind(shape[1], dtype=dtype, **kwargs)
    theirs = _torch_module(torch, ours).to(getattr(torch, np.dtype(dtype).name))
    if ours.affine:  # non-trivial parameters
        w, b = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
        ours.weight.data[...] = w
        ours.bias.data[...] = b
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    for step, training in enumerate([True, True, True, False, True, False]):
        ours.train(training)
        theirs.train(training)
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        g = _upstream(rng, shape, dtype)
        xf, xt = fastdl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        yf, yt = ours(xf), theirs(xt)
        yf.backward(g)
        yt.backward(torch.tensor(g))
        _assert_close(yf.detach().numpy(), yt.detach().numpy(), dtype, f"output at step {step}")
        _assert_close(xf.grad.numpy(), xt.grad.numpy(), dtype, f"grad of input at step {step}")
        if ours.affine:
            _assert_close(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), dtype, "grad of weight")
            _assert_close(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), dtype, "grad of bias")
        if ours.track_running_stats:
            _assert_close(ours.running_mean.numpy(), theirs.running_mean.numpy(), dtype, f"running_mean at {step}")
            _assert_close(ours.running_var.numpy(), theirs.running_var.numpy(), dtype, f"running_var at {step}")
            assert ours.num_batches_tracked.dtype == np.int64
            assert int(ours.num_batches_tracked.item()) == int(theirs.num_batches_tracked.item())
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_batch_norm_state_dict_keys_equal_torch(torch):
    ours = nn.Sequential(nn.BatchNorm2d(3), nn.Sigmoid(), nn.BatchNorm1d(2, affine=False),
                         nn.BatchNorm1d(2, track_running_stats=False), nn.Dropout(0.1))
    theirs = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Sigmoid(),
                                 torch.nn.BatchNorm1d(2, affine=False),
                                 torch.nn.BatchNorm1d(2, track_running_stats=False),
                                 torch.nn.Dropout(0.1))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert list(ours.state_dict())[:5] == ["0.weight", "0.bias", "0.running_mean", "0.running_var",
                                           "0.num_batches_tracked"]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def test_batch_norm_state_dict_round_trip_and_reset():
    module = nn.BatchNorm2d(3)
    module(fastdl.randn(4, 3, 2, 2))
    copy = nn.BatchNorm2d(3)
    copy.load_state_dict(module.state_dict())
    for key, value in module.state_dict().items():
        _assert_bitwise_equal([copy.state_dict()[key].numpy()], [value.numpy()], key)
    copy.reset_running_stats()
    assert np.all(copy.running_mean.numpy() == 0) and np.all(copy.running_var.numpy() == 1)
    assert copy.num_batches_tracked.item() == 0


def test_batch_norm_module_float64_cast():
    module = nn.BatchNorm1d(3).double()
    assert module.running_mean.dtype == np.float64 and module.weight.dtype == np.float64
    assert module.num_batches_tracked.dtype == np.int64
    assert module(fastdl.randn(4, 3, dtype=np.float64)).dtype == np.float64


# ====================================================================== activations
ACTIVATIONS = {
    "sigmoid": (F.sigmoid, lambda torch: torch.sigmoid, reference.sigmoid_forward),
    "tanh": (F.tanh, lambda torch: torch.tanh, reference.tanh_forward),
    "leaky_relu": (F.leaky_relu, lambda torch: torch.nn.functional.leaky_relu, reference.leaky_relu_forward),
    "leaky_relu-0.2": (lambda x: F.leaky_relu(x, 0.2), lambda torch: (lambda x: torch.nn.functional.leaky_relu(x, 0.2)),
                       lambda x: reference.leaky_relu_forward(x, 0.2)),
}


def _activation_input(rng, n, dtype):
    """Normal values at several scales, plus the edges: 0, -0, tiny, huge, +-inf."""
    x = np.concatenate([rng.standard_normal(n) * s for s in (1e-6, 0.1, 1, 5, 30)])
    edges = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 88.0, -88.0, 100.0, -100.0, 720.0, -720.0,
             np.inf, -np.inf]
    return np.concatenate([x, edges]).astype(dtype)


def _assert_activation_close(actual, expected, dtype, what):
    rtol, atol = ACTIVATION_TOLERANCES[np.dtype(dtype)]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_torch(torch, name, dtype):
    rng = np.random.default_rng(30)
    ours, theirs, _ = ACTIVATIONS[name]
    x = _activation_input(rng, 2000, dtype)
    g = _upstream(rng, x.shape, dtype)
    xf, xt = fastdl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yf, yt = ours(xf), theirs(torch)(xt)
    yf.backward(g)
    yt.backward(torch.tensor(g))
    assert yf.dtype == dtype
    _assert_activation_close(yf.detach().numpy(), yt.detach().numpy(), dtype, f"{name} output")
    _assert_close(xf.grad.numpy(), xt.grad.numpy(), dtype, f"{name} grad")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_reference(name, dtype):
    rng = np.random.default_rng(31)
    ours, _, forward = ACTIVATIONS[name]
    x = _activation_input(rng, 1000, dtype)
    out, (grad,), upstream = _run_fastdl(ours, [x], rng=rng)
    _assert_activation_close(out, forward(x), dtype, f"{name} output")
    expected = {"sigmoid": lambda: reference.sigmoid_backward(out, upstream),
                "tanh": lambda: reference.tanh_backward(out, upstream),
                "leaky_relu": lambda: reference.leaky_relu_backward(x, upstream),
                "leaky_relu-0.2": lambda: reference.leaky_relu_backward(x, upstream, 0.2)}[name]()
    _assert_close(grad, expected, dtype, f"{name} grad")


def test_activation_nan_propagates():
    x = fastdl.tensor(np.array([np.nan, 1.0, -1.0], np.float32))
    for function in (F.sigmoid, F.tanh, F.leaky_relu):
        assert np.isnan(function(x).numpy()[0])


def test_sigmoid_extremes_are_exact_limits():
    x = fastdl.tensor(np.array([-np.inf, -200, 200, np.inf, 0], np.float32))
    np.testing.assert_array_equal(F.sigmoid(x).numpy(), [0, 0, 1, 1, 0.5])
    np.testing.assert_array_equal(F.tanh(x).numpy(), [-1, -1, 1, 1, 0])
    # Large negative inputs keep their tiny values instead of rounding to 0.
    np.testing.assert_allclose(F.sigmoid(fastdl.tensor(np.array([-80.0], np.float32))).numpy(),
                               np.exp(-80.0), rtol=1e-6)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_finite_differences(name):
    rng = np.random.default_rng(32)
    ours = ACTIVATIONS[name][0]
    _check_finite_differences(ours, [_away_from_zero(rng, (3, 7)) * 3], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_one_thread_equals_two_threads(restore_threads, name, dtype):
    rng = np.random.default_rng(33)
    ours = ACTIVATIONS[name][0]
    x = (rng.standard_normal(1 << 17) * 4).astype(dtype)
    upstream = _upstream(rng, x.shape, dtype)

    def run():
        out, grads, _ = _run_fastdl(ours, [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), name)


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_strided_inputs_equal_contiguous(name, layout, constructor):
    rng = np.random.default_rng(34)
    ours = ACTIVATIONS[name][0]
    x = (rng.standard_normal((4, 5, 6)) * 3).astype(np.float32)
    upstream = _upstream(rng, x.shape, np.float32)
    expected = _run_with_layout(ours, [x], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(ours, [x], upstream, layout, constructor), expected,
                          f"{name} with {layout} input")


def test_tensor_methods_use_the_kernels():
    rng = np.random.default_rng(35)
    x = rng.standard_normal(100).astype(np.float32)
    _assert_bitwise_equal([fastdl.tensor(x).sigmoid().numpy()], [F.sigmoid(fastdl.tensor(x)).numpy()], "sigmoid")
    _assert_bitwise_equal([fastdl.tensor(x).tanh().numpy()], [F.tanh(fastdl.tensor(x)).numpy()], "tanh")
    leaf = fastdl.tensor(x, requires_grad=True)
    leaf.sigmoid().sum().backward()
    s = reference.sigmoid_forward(x)
    np.testing.assert_allclose(leaf.grad.numpy(), s * (1 - s), rtol=1e-6)


def test_activation_modules_and_inplace(torch):
    rng = np.random.default_rng(36)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    for ours, theirs in [(nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Tanh(), torch.nn.Tanh()),
                         (nn.LeakyReLU(0.3), torch.nn.LeakyReLU(0.3))]:
        _assert_activation_close(ours(fastdl.tensor(x)).numpy(), theirs(torch.tensor(x)).numpy(),
                                 np.float32, type(ours).__name__)
    t = fastdl.tensor(x.copy())
    assert F.leaky_relu(t, 0.1, inplace=True) is t
    np.testing.assert_array_equal(t.numpy(), np.where(x > 0, x, x * np.float32(0.1)))
    assert "negative_slope=0.3" in repr(nn.LeakyReLU(0.3))


# Outputs of 8 MiB or more of relu, leaky_relu and the backward of sigmoid and tanh are
# written with streaming stores, a block at a time through a staging buffer
# (csrc/cpu/stream.h); smaller ones with plain stores. Elements past the last whole
# block, an output not aligned to the vector width, and thread slices must all come out
# as the plain path writes them.
STREAMED_ELEMENTS = (8 << 20) // 4 + 77  # float32: just over the threshold, odd tail


@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_activation_outputs_equal_plain_ones(restore_threads, threads):
    fastdl.set_num_threads(threads)
    rng = np.random.default_rng(37)
    x = (rng.standard_normal(STREAMED_ELEMENTS) * 4).astype(np.float32)
    upstream = rng.standard_normal(x.size).astype(np.float32)
    piece = 1 << 16  # far below the threshold: plain stores
    functions = dict(ACTIVATIONS, relu=(F.relu, None, None))
    for name, (ours, _, _) in functions.items():
        out, (grad,), _ = _run_fastdl(ours, [x], upstream)
        for start in (0, piece * 7, x.size - 100):
            stop = min(x.size, start + piece)
            part, (part_grad,), _ = _run_fastdl(ours, [x[start:stop]], upstream[start:stop])
            _assert_bitwise_equal([out[start:stop], grad[start:stop]], [part, part_grad],
                                  f"{name} [{start}:{stop}] on {threads} thread(s)")
    # In place on a view 4 bytes past a vector boundary: the streamed writes start unaligned.
    buffer = np.concatenate([[0], x]).astype(np.float32)
    view = fastdl.from_numpy(buffer[1:])
    assert view.data.ctypes.data % 64 != 0
    F.leaky_relu(view, 0.1, inplace=True)
    _assert_bitwise_equal([buffer[1:], buffer[:1]], [F.leaky_relu(fastdl.tensor(x), 0.1).numpy(),
                                                     np.zeros(1, np.float32)], "in-place leaky_relu")


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_norm_channel_chunks_equal_channels_alone(restore_threads, threads):
    """Batch norm walks memory in chunks of channels (4 MiB of input each: here 16 channels
    forward, 8 backward, so 2-4 chunks per thread). Channels are independent: the first 8
    channels equal a batch norm of those 8 channels alone, bit for bit."""
    fastdl.set_num_threads(threads)
    rng = np.random.default_rng(38)
    x = (rng.standard_normal((64, 32, 32, 32)) + 2).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)

    def run(channels):
        leaf = fastdl.tensor(np.ascontiguousarray(x[:, channels]), requires_grad=True)
        weight = fastdl.tensor(w[channels], requires_grad=True)
        bias = fastdl.tensor(b[channels], requires_grad=True)
        y = F.batch_norm(leaf, None, None, weight, bias, training=True)
        y.backward(np.ascontiguousarray(upstream[:, channels]))
        return [y.detach().numpy(), leaf.grad.numpy(), weight.grad.numpy(), bias.grad.numpy()]

    full, first = run(slice(None)), run(slice(0, 8))
    _assert_bitwise_equal([a[:, :8] if a.ndim > 1 else a[:8] for a in full], first,
                          f"batch norm on {threads} thread(s)")


# ====================================================================== dropout
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics_and_scaling(p, dtype):
    fastdl.manual_seed(0)
    n = 200_000
    x = fastdl.tensor(np.ones(n, dtype), requires_grad=True)
    y = F.dropout(x, p)
    values = y.detach().numpy()
    kept = values != 0
    scale = dtype(1) / dtype(1 - p)
    assert values.dtype == dtype
    np.testing.assert_array_equal(values[kept], scale)
    # The kept fraction is Binomial(n, 1 - p): 5 standard deviations.
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    # Neighbours are independent: P(both kept) = (1 - p)^2.
    both = (kept[:-1] & kept[1:]).mean()
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)
    g = np.arange(n, dtype=dtype)
    y.backward(g)
    np.testing.assert_array_equal(x.grad.numpy(), np.where(kept, g * scale, 0))
    np.testing.assert_array_equal(values, reference.dropout_forward(np.ones(n, dtype), kept, p))


def test_dropout_same_seed_same_mask_and_generators():
    x = fastdl.tensor(np.ones(1000, np.float32))
    fastdl.manual_seed(7)
    a, b = F.dropout(x).numpy(), F.dropout(x).numpy()
    fastdl.manual_seed(7)
    _assert_bitwise_equal([F.dropout(x).numpy(), F.dropout(x).numpy()], [a, b], "reseeded masks")
    assert not np.array_equal(a, b), "two calls must draw two masks"
    g1, g2 = fastdl.Generator().manual_seed(3), fastdl.Generator().manual_seed(3)
    _assert_bitwise_equal([F.dropout(x, generator=g1).numpy()], [F.dropout(x, generator=g2).numpy()],
                          "same generator seed")


def test_dropout_one_thread_equals_two_threads(restore_threads):
    x = np.random.default_rng(40).standard_normal(1 << 18).astype(np.float32)
    upstream = np.random.default_rng(41).standard_normal(x.size).astype(np.float32)

    def run():
        fastdl.manual_seed(11)
        out, grads, _ = _run_fastdl(lambda t: F.dropout(t, 0.3), [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "dropout")


def test_dropout_identity_cases_and_p_one():
    x = fastdl.tensor(np.arange(6, dtype=np.float32) - 2, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    zeros = F.dropout(x, 1.0)
    np.testing.assert_array_equal(zeros.detach().numpy(), 0)
    zeros.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    module = nn.Dropout(0.4)
    module.eval()
    assert module(x) is x
    module.train()
    assert module(x) is not x
    assert repr(module) == "Dropout(p=0.4, inplace=False)"


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_dropout_strided_input_equals_contiguous(layout):
    x = np.random.default_rng(42).standard_normal((5, 6, 7)).astype(np.float32)
    upstream = np.random.default_rng(43).standard_normal(x.shape).astype(np.float32)

    def function(t):
        fastdl.manual_seed(5)
        return F.dropout(t, 0.25)

    expected = _run_with_layout(function, [x], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(function, [x], upstream, layout, "Tensor"), expected,
                          f"dropout with {layout} input")


def test_dropout_inplace():
    fastdl.manual_seed(1)
    x = np.ones(1000, np.float32)
    expected = F.dropout(fastdl.tensor(x), 0.5).numpy()
    fastdl.manual_seed(1)
    t = fastdl.tensor(x.copy())
    assert F.dropout(t, 0.5, inplace=True) is t
    _assert_bitwise_equal([t.numpy()], [expected], "in-place dropout")


# ====================================================================== a small CNN, end to end
def _train_small_cnn(threads: int):
    fastdl.set_num_threads(threads)
    fastdl.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 4 * 4, 10))
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    loss_function = nn.CrossEntropyLoss()
    for _ in range(4):
        x = fastdl.tensor(rng.standard_normal((32, 3, 16, 16)).astype(np.float32))
        labels = fastdl.tensor(rng.integers(0, 10, 32))
        optimizer.zero_grad()
        loss = loss_function(model(x), labels)
        loss.backward()
        optimizer.step()
    model.eval()
    prediction = model(fastdl.tensor(rng.standard_normal((4, 3, 16, 16)).astype(np.float32)))
    return [v.numpy() for v in model.state_dict().values()] + [prediction.detach().numpy()]


def test_small_cnn_with_batchnorm_is_bitwise_deterministic_across_threads(restore_threads):
    one = _train_small_cnn(1)
    two = _train_small_cnn(2)
    _assert_bitwise_equal(one, two, "weights, running stats and eval output after 4 Adam steps")
    assert len(one) == 2 * 2 + 2 * 5 + 2 + 1  # conv, batch norm, linear, output
