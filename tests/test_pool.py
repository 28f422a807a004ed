"""avg_pool2d, adaptive_avg_pool2d and conv1d (and their modules), through the public API.

Checked as every kernel is (STYLE.md, convention 6): against PyTorch CPU in float32 and
float64 (outputs and gradients), against the NumPy reference (fastdl.reference), by central
finite differences in float64, 1 thread against 2 threads bitwise, and strided inputs
against contiguous ones bitwise.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import reference

FLOAT_DTYPES = [np.float32, np.float64]
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-10, 1e-12)}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch CPU (the oracle of these tests) is not installed")


@pytest.fixture
def restore_threads():
    previous = fastdl.get_num_threads()
    yield
    fastdl.set_num_threads(previous)


def _close(actual, expected, dtype, what):
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _bitwise(a, b, what):
    for k, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what}[{k}]"
        assert x.tobytes() == y.tobytes(), f"{what}[{k}]: not bitwise identical"


def _run(function, arrays, upstream=None, rng=None):
    """Forward on fresh leaves, backward a random (or the given) upstream gradient."""
    leaves = [None if a is None else fastdl.tensor(a, requires_grad=True) for a in arrays]
    out = function(*leaves)
    if upstream is None:
        upstream = rng.standard_normal(out.shape).astype(out.dtype)
    out.backward(upstream)
    grads = [None if leaf is None else leaf.grad.numpy() for leaf in leaves]
    for leaf, grad in zip(leaves, grads):
        assert leaf is None or grad.dtype == leaf.dtype
    return out.detach().numpy(), grads, upstream


def _against_torch(torch, function, torch_function, arrays, rng, names):
    dtype = arrays[0].dtype
    out, grads, upstream = _run(function, arrays, rng=rng)
    leaves = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    expected = torch_function(*leaves)
    expected.backward(torch.tensor(upstream))
    assert out.dtype == dtype
    _close(out, expected.detach().numpy(), dtype, "output")
    for name, grad, leaf in zip(names, grads, leaves):
        if leaf is not None:
            _close(grad, leaf.grad.numpy(), dtype, f"grad of {name}")


def _finite_differences(function, arrays, rng, names, eps=1e-6):
    arrays = [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]
    _, grads, upstream = _run(function, arrays, rng=rng)
    for which, (name, grad) in enumerate(zip(names, grads)):
        if grad is None:
            continue
        work = [None if a is None else a.copy() for a in arrays]
        flat = work[which].reshape(-1)
        numerical = np.zeros(flat.size)

        def value():
            with fastdl.no_grad():
                out = function(*[None if a is None else fastdl.tensor(a) for a in work])
            return float(np.sum(out.numpy() * upstream))

        for k in range(flat.size):
            original = flat[k]
            flat[k] = original + eps
            plus = value()
            flat[k] = original - eps
            minus = value()
            flat[k] = original
            numerical[k] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numerical.reshape(grad.shape), rtol=1e-5, atol=1e-6,
                                   err_msg=f"grad of {name} vs finite differences")


def _layouts(array):
    """Non-contiguous views holding the same values."""
    sliced_base = np.full(tuple(2 * n + 1 for n in array.shape), np.nan, dtype=array.dtype)
    sliced = sliced_base[tuple(slice(1, None, 2) for _ in array.shape)]
    sliced[...] = array
    layouts = {
        "fortran": np.asfortranarray(array),
        "negative-strides": np.flip(np.flip(array).copy()),
        "every-other-element": sliced,
    }
    if array.ndim >= 2:
        layouts["last-two-axes-swapped"] = np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2)
    for name, view in layouts.items():
        assert np.array_equal(view, array), name
    return layouts


# ====================================================================== avg_pool2d
AVG_CASES = [
    pytest.param((2, 3, 8, 8), dict(kernel_size=2), id="k2"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2), id="k3-s2"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1), id="k3-s2-p1"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="k3-s2-p1-ceil"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), id="exclude-pad"),
    pytest.param((2, 3, 8, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                 id="exclude-pad-ceil"),
    pytest.param((1, 2, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1)), id="rect-pad"),
    pytest.param((1, 2, 10, 11), dict(kernel_size=(2, 4), stride=(3, 2), padding=(1, 2), ceil_mode=True), id="all-tuples-ceil"),
    pytest.param((2, 2, 6, 6), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), id="ceil-last-window-dropped"),
    pytest.param((1, 1, 5, 5), dict(kernel_size=3, stride=3, ceil_mode=True), id="ceil-partial-window"),
    pytest.param((2, 3, 7, 7), dict(kernel_size=3, divisor_override=5), id="divisor-override"),
    pytest.param((2, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=-2),
                 id="divisor-override-negative-ceil"),
    pytest.param((2, 3, 8, 8), dict(kernel_size=1, stride=2), id="k1-s2"),
    pytest.param((2, 3, 9, 9), dict(kernel_size=2, stride=4), id="stride-skips-rows"),
    pytest.param((3, 2, 5, 5), dict(kernel_size=5), id="global"),
    pytest.param((2, 3, 5, 6), dict(kernel_size=2, stride=1), id="overlapping"),
    pytest.param((2, 3, 11, 13), dict(kernel_size=4, stride=3, padding=2), id="odd-sizes"),
    pytest.param((3, 6, 7), dict(kernel_size=2, stride=2, ceil_mode=True), id="unbatched"),
    pytest.param((0, 3, 6, 6), dict(kernel_size=2), id="empty-batch"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, kwargs", AVG_CASES)
def test_avg_pool2d_matches_torch(torch, input_shape, kwargs, dtype):
    rng = np.random.default_rng(20)
    x = rng.standard_normal(input_shape).astype(dtype)
    _against_torch(torch, lambda x: F.avg_pool2d(x, **kwargs),
                   lambda x: torch.nn.functional.avg_pool2d(x, **kwargs), [x], rng, ["input"])


def test_avg_pool2d_sweep_matches_torch(torch):
    """Every small combination of kernel/stride/padding/ceil_mode/count_include_pad/divisor:
    shapes, values and gradients equal PyTorch's; fastdl refuses exactly what PyTorch refuses."""
    rng = np.random.default_rng(21)
    checked = 0
    for (h, w), kernel, stride, padding, ceil_mode, include, divisor in itertools.product(
            [(7, 9), (8, 8), (5, 6)], [1, 2, 3, (2, 3)], [None, 1, 2, (2, 1), 3], [0, 1],
            [False, True], [True, False], [None, 3]):
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                      count_include_pad=include, divisor_override=divisor)
        x = rng.standard_normal((1, 2, h, w))
        torch_leaf = torch.tensor(x, requires_grad=True)
        try:
            expected = torch.nn.functional.avg_pool2d(torch_leaf, **kwargs)
        except RuntimeError:
            with pytest.raises(ValueError):
                F.avg_pool2d(fastdl.tensor(x), **kwargs)
            continue
        leaf = fastdl.tensor(x, requires_grad=True)
        out = F.avg_pool2d(leaf, **kwargs)
        _close(out.detach().numpy(), expected.detach().numpy(), np.float64, f"output, {kwargs}")
        upstream = rng.standard_normal(out.shape)
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        _close(leaf.grad.numpy(), torch_leaf.grad.numpy(), np.float64, f"grad of input, {kwargs}")
        checked += 1
    assert checked > 600


def _pairs(kwargs):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    kernel = pair(kwargs["kernel_size"])
    stride = kernel if kwargs.get("stride") is None else pair(kwargs["stride"])
    return dict(kernel=kernel, stride=stride, padding=pair(kwargs.get("padding", 0)),
                ceil_mode=kwargs.get("ceil_mode", False),
                count_include_pad=kwargs.get("count_include_pad", True),
                divisor_override=kwargs.get("divisor_override"))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, kwargs", [c for c in AVG_CASES if len(c.values[0]) == 4])
def test_avg_pool2d_matches_reference(input_shape, kwargs, dtype):
    rng = np.random.default_rng(22)
    x = rng.standard_normal(input_shape).astype(dtype)
    out, (grad,), upstream = _run(lambda x: F.avg_pool2d(x, **kwargs), [x], rng=rng)
    options = _pairs(kwargs)
    _close(out, reference.avg_pool2d_forward(x, **options), dtype, "output")
    _close(grad, reference.avg_pool2d_backward(upstream, x.shape, **options), dtype, "grad of input")


@pytest.mark.parametrize("input_shape, kwargs", [
    pytest.param((2, 2, 6, 6), dict(kernel_size=2), id="k2"),
    pytest.param((1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="overlap-pad-ceil"),
    pytest.param((1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                 id="exclude-pad"),
    pytest.param((1, 1, 9, 9), dict(kernel_size=(2, 3), stride=(1, 2), divisor_override=4), id="divisor"),
    pytest.param((2, 5, 5), dict(kernel_size=2, stride=1), id="unbatched-overlapping"),
])
def test_avg_pool2d_finite_differences(input_shape, kwargs):
    rng = np.random.default_rng(23)
    x = rng.standard_normal(input_shape)
    _finite_differences(lambda x: F.avg_pool2d(x, **kwargs), [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                                               count_include_pad=False)], ids=["k2", "k3-s2-p1"])
def test_avg_pool2d_one_thread_equals_two_threads(restore_threads, kwargs, dtype):
    rng = np.random.default_rng(24)
    x = rng.standard_normal((16, 16, 33, 31)).astype(dtype)  # 256 planes: above the grain
    upstream = _run(lambda x: F.avg_pool2d(x, **kwargs), [x], rng=rng)[2]

    def run():
        out, grads, _ = _run(lambda x: F.avg_pool2d(x, **kwargs), [x], upstream)
        return [out] + grads

    fastdl.set_num_threads(1)
    one = run()
    fastdl.set_num_threads(2)
    _bitwise(one, run(), "avg_pool2d (output, grad)")


@pytest.mark.parametrize("layout", ["fortran", "negative-strides", "every-other-element", "last-two-axes-swapped"])
def test_avg_pool2d_strided_inputs_equal_contiguous(layout):
    rng = np.random.default_rng(25)
    x = rng.standard_normal((2, 3, 9, 8))
    function = lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)  # noqa: E731
    upstream = rng.standard_normal(function(fastdl.tensor(x)).shape)
    expected = _run(function, [x], upstream)
    leaf = fastdl.Tensor(_layouts(x)[layout], requires_grad=True)
    out = function(leaf)
    out.backward(_layouts(upstream)[layout])
    _bitwise([out.detach().numpy(), leaf.grad.numpy()], [expected[0], expected[1][0]], layout)


def test_avg_pool2d_module_matches_torch(torch):
    rng = np.random.default_rng(26)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    layer = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    expected = torch.nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)(torch.tensor(x))
    _close(layer(fastdl.tensor(x)).numpy(), expected.numpy(), np.float32, "AvgPool2d")
    assert layer.state_dict() == {} or len(layer.state_dict()) == 0
    assert "kernel_size=3" in repr(layer)


# ====================================================================== adaptive_avg_pool2d
ADAPTIVE_CASES = [
    pytest.param((2, 3, 8, 8), 1, id="global"),
    pytest.param((2, 3, 8, 8), (1, 1), id="global-pair"),
    pytest.param((2, 3, 8, 8), 4, id="divides"),
    pytest.param((2, 3, 9, 11), 7, id="7-not-dividing"),
    pytest.param((2, 3, 10, 9), (3, 4), id="pair-not-dividing"),
    pytest.param((2, 3, 10, 9), (None, 4), id="none-keeps-height"),
    pytest.param((2, 3, 10, 9), (5, None), id="none-keeps-width"),
    pytest.param((2, 3, 5, 6), (7, 9), id="larger-than-input"),
    pytest.param((2, 3, 5, 6), (5, 6), id="identity"),
    pytest.param((1, 2, 1, 1), 3, id="one-pixel-upsampled"),
    pytest.param((1, 2, 13, 3), (6, 2), id="odd"),
    # 11 output rows: a group of 8 and one of 3. Rows of up to 128 bytes are summed in
    # registers, wider ones through add_rows: 32 columns take the first in float32 and
    # the second in float64, 37 the second in both.
    pytest.param((2, 3, 40, 37), (11, 5), id="row-groups-wide-rows"),
    pytest.param((1, 2, 20, 32), (11, 5), id="row-groups-32-columns"),
    # float32 rows of at most 64 columns pooled to at most 16 (pool.cpp's vector paths);
    # 8 MiB of float32 input gradient is streamed.
    pytest.param((64, 32, 32, 32), 7, id="streamed-grad"),
    pytest.param((2, 3, 12, 64), (3, 16), id="64-columns-16-windows"),
    pytest.param((2, 3, 12, 65), (3, 17), id="65-columns-17-windows"),
    pytest.param((2, 3, 9, 40), (4, 30), id="columns-in-three-windows"),
    pytest.param((3, 9, 7), 4, id="unbatched"),
    pytest.param((3, 9, 7), (2, None), id="unbatched-none"),
    pytest.param((0, 3, 6, 6), 2, id="empty-batch"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, output_size", ADAPTIVE_CASES)
def test_adaptive_avg_pool2d_matches_torch(torch, input_shape, output_size, dtype):
    rng = np.random.default_rng(30)
    x = rng.standard_normal(input_shape).astype(dtype)
    _against_torch(torch, lambda x: F.adaptive_avg_pool2d(x, output_size),
                   lambda x: torch.nn.functional.adaptive_avg_pool2d(x, output_size), [x], rng, ["input"])


def test_adaptive_avg_pool2d_sweep_matches_torch(torch):
    rng = np.random.default_rng(31)
    for h, w, oh, ow in itertools.product([1, 2, 5, 7, 12], [1, 3, 8, 13], [1, 2, 3, 5, 7], [1, 4, 6, 9]):
        x = rng.standard_normal((1, 2, h, w))
        leaf = fastdl.tensor(x, requires_grad=True)
        out = F.adaptive_avg_pool2d(leaf, (oh, ow))
        torch_leaf = torch.tensor(x, requires_grad=True)
        expected = torch.nn.functional.adaptive_avg_pool2d(torch_leaf, (oh, ow))
        _close(out.detach().numpy(), expected.detach().numpy(), np.float64, f"{(h, w, oh, ow)}")
        upstream = rng.standard_normal(out.shape)
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        _close(leaf.grad.numpy(), torch_leaf.grad.numpy(), np.float64, f"grad {(h, w, oh, ow)}")


def test_adaptive_avg_pool2d_infinity_stays_in_its_windows(torch):
    """An inf in one input column: only the windows holding it are inf (the vector paths add
    a column's sum to the windows holding it by mask, never multiply by zero)."""
    x = np.random.default_rng(35).standard_normal((2, 3, 20, 32)).astype(np.float32)
    x[1, 2, 5, 3] = np.inf
    leaf = fastdl.tensor(x, requires_grad=True)
    out = F.adaptive_avg_pool2d(leaf, 7)
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), 7).numpy()
    got = out.detach().numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, output_size", [c for c in ADAPTIVE_CASES if len(c.values[0]) == 4])
def test_adaptive_avg_pool2d_matches_reference(input_shape, output_size, dtype):
    rng = np.random.default_rng(32)
    x = rng.standard_normal(input_shape).astype(dtype)
    out, (grad,), upstream = _run(lambda x: F.adaptive_avg_pool2d(x, output_size), [x], rng=rng)
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(
        x.shape[2 + a] if v is None else v for a, v in enumerate(output_size))
    _close(out, reference.adaptive_avg_pool2d_forward(x, size), dtype, "output")
    _close(grad, reference.adaptive_avg_pool2d_backward(upstream, x.shape), dtype, "grad of input")


@pytest.mark.parametrize("input_shape, output_size", [
    pytest.param((2, 2, 7, 9), 1, id="global"),
    pytest.param((1, 2, 9, 11), (4, 3), id="not-dividing"),
    pytest.param((1, 1, 3, 4), (5, 7), id="larger"),
    pytest.param((2, 6, 5), (2, None), id="unbatched-none"),
])
def test_adaptive_avg_pool2d_finite_differences(input_shape, output_size):
    rng = np.random.default_rng(33)
    x = rng.standard_normal(input_shape)
    _finite_differences(lambda x: F.adaptive_avg_pool2d(x, output_size), [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("output_size", [1, 7, (5, 3)])
def test_adaptive_avg_pool2d_one_thread_equals_two_threads(restore_threads, output_size, dtype):
    rng = np.random.default_rng(34)
    x = rng.standard_normal((16, 16, 33, 31)).astype(dtype)
    upstream = _run(lambda x: F.adaptive_avg_pool2d(x, output_size), [x], rng=rng)[2]

    def run():
        out, grads, _ = _run(lambda x: F.adaptive_avg_pool2d(x, output_size), [x], upstream)
        return [out] + grads

    fastdl.set_num_threads(1)
    one = run()
    fastdl.set_num_threads(2)
    _bitwise(one, run(), "adaptive_avg_pool2d (output, grad)")


@pytest.mark.parametrize("layout", ["fortran", "negative-strides", "every-other-element", "last-two-axes-swapped"])
def test_adaptive_avg_pool2d_strided_inputs_equal_contiguous(layout):
    rng = np.random.default_rng(35)
    x = rng.standard_normal((2, 3, 9, 8))
    function = lambda x: F.adaptive_avg_pool2d(x, (4, 3))  # noqa: E731
    upstream = rng.standard_normal((2, 3, 4, 3))
    expected = _run(function, [x], upstream)
    leaf = fastdl.Tensor(_layouts(x)[layout], requires_grad=True)
    out = function(leaf)
    out.backward(_layouts(upstream)[layout])
    _bitwise([out.detach().numpy(), leaf.grad.numpy()], [expected[0], expected[1][0]], layout)


def test_adaptive_avg_pool2d_module_matches_torch(torch):
    rng = np.random.default_rng(36)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    for size in [1, 7, (3, None)]:
        layer = nn.AdaptiveAvgPool2d(size)
        expected = torch.nn.AdaptiveAvgPool2d(size)(torch.tensor(x))
        _close(layer(fastdl.tensor(x)).numpy(), expected.numpy(), np.float32, f"AdaptiveAvgPool2d({size})")
        assert len(layer.state_dict()) == 0


def test_global_average_of_a_large_plane_is_accurate(torch):
    """float32 sums over 65k elements stay within float32 rounding of float64's answer."""
    rng = np.random.default_rng(37)
    x = (rng.random((2, 3, 256, 256)) + 100).astype(np.float32)
    out = F.adaptive_avg_pool2d(fastdl.tensor(x), 1).numpy()
    exact = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(out, exact, rtol=2e-5)


# ====================================================================== conv1d
CONV1D_CASES = [
    pytest.param((2, 3, 10), 4, 3, {}, id="k3"),
    pytest.param((2, 3, 10), 4, 1, {}, id="k1"),
    pytest.param((2, 4, 11), 6, 3, dict(stride=2, padding=1), id="stride2-pad1"),
    pytest.param((2, 4, 11), 6, 3, dict(stride=(3,), padding=(2,)), id="tuples"),
    pytest.param((2, 3, 12), 4, 3, dict(dilation=2, padding=2), id="dilation2"),
    pytest.param((2, 4, 9), 6, 3, dict(groups=2, padding=1), id="groups2"),
    pytest.param((2, 4, 9), 8, 3, dict(groups=4, stride=2), id="depthwise-x2"),
    pytest.param((2, 3, 9), 2, 3, dict(padding="same"), id="same-odd"),
    pytest.param((2, 3, 9), 2, 4, dict(padding="same"), id="same-even"),
    pytest.param((2, 3, 9), 2, 4, dict(padding="same", dilation=3), id="same-even-dilated"),
    pytest.param((2, 3, 9), 2, 3, dict(padding="valid"), id="valid"),
    pytest.param((1, 2, 3), 2, 3, {}, id="kernel-equals-input"),
    pytest.param((3, 10), 4, 3, dict(padding=1), id="unbatched"),
    pytest.param((0, 3, 8), 2, 3, {}, id="empty-batch"),
]


def _conv1d_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype, bias=True):
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal((out_channels, input_shape[-2] // groups, kernel)).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype) if bias else None
    return [x, w, b]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", CONV1D_CASES)
def test_conv1d_matches_torch(torch, input_shape, out_channels, kernel, kwargs, bias, dtype):
    rng = np.random.default_rng(40)
    arrays = _conv1d_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype, bias)
    _against_torch(torch, lambda x, w, b: F.conv1d(x, w, b, **kwargs),
                   lambda x, w, b: torch.nn.functional.conv1d(x, w, b, **kwargs),
                   arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", [
    pytest.param((2, 3, 7), 4, 3, dict(padding=1, stride=2), id="pad-stride"),
    pytest.param((1, 4, 8), 4, 2, dict(dilation=2, groups=2, padding="same"), id="same-dilated-groups"),
    pytest.param((3, 6), 2, 3, {}, id="unbatched"),
])
def test_conv1d_finite_differences(input_shape, out_channels, kernel, kwargs):
    rng = np.random.default_rng(41)
    arrays = _conv1d_arrays(rng, input_shape, out_channels, kernel, kwargs, np.float64)
    _finite_differences(lambda x, w, b: F.conv1d(x, w, b, **kwargs), arrays, rng, ["input", "weight", "bias"])


def test_conv1d_one_thread_equals_two_threads(restore_threads):
    rng = np.random.default_rng(42)
    arrays = _conv1d_arrays(rng, (16, 8, 200), 16, 5, dict(padding=2), np.float32)
    upstream = _run(lambda x, w, b: F.conv1d(x, w, b, padding=2), arrays, rng=rng)[2]

    def run():
        out, grads, _ = _run(lambda x, w, b: F.conv1d(x, w, b, padding=2), arrays, upstream)
        return [out] + grads

    fastdl.set_num_threads(1)
    one = run()
    fastdl.set_num_threads(2)
    _bitwise(one, run(), "conv1d (output, grads)")


def test_conv1d_strided_inputs_equal_contiguous():
    rng = np.random.default_rng(43)
    x, w, b = _conv1d_arrays(rng, (2, 4, 9), 4, 3, dict(groups=2), np.float64)
    function = lambda x, w, b: F.conv1d(x, w, b, padding=1, groups=2)  # noqa: E731
    upstream = rng.standard_normal((2, 4, 9))
    expected = _run(function, [x, w, b], upstream)
    for layout in ["fortran", "negative-strides", "every-other-element"]:
        leaves = [fastdl.Tensor(_layouts(a)[layout], requires_grad=True) for a in (x, w, b)]
        out = function(*leaves)
        out.backward(upstream)
        _bitwise([out.detach().numpy()] + [leaf.grad.numpy() for leaf in leaves],
                 [expected[0]] + expected[1], layout)


def test_conv1d_module_matches_torch_with_copied_weights(torch):
    rng = np.random.default_rng(44)
    layer = nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    assert list(layer.state_dict().keys()) == ["weight", "bias"]
    assert layer.weight.shape == (6, 2, 3) and layer.bias.shape == (6,)
    assert layer.kernel_size == (3,) and layer.stride == (2,) and layer.padding == (1,)
    reference_layer = torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2)
    with torch.no_grad():
        reference_layer.weight.copy_(torch.tensor(layer.weight.detach().numpy()))
        reference_layer.bias.copy_(torch.tensor(layer.bias.detach().numpy()))
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    _close(layer(fastdl.tensor(x)).detach().numpy(), reference_layer(torch.tensor(x)).detach().numpy(),
           np.float32, "Conv1d")
    no_bias = nn.Conv1d(3, 2, 5, bias=False, padding="same")
    assert list(no_bias.state_dict().keys()) == ["weight"]
    assert no_bias(fastdl.tensor(x[:, :3])).shape == (2, 2, 11)


def test_conv1d_module_init_distribution():
    """kaiming_uniform_(a=sqrt(5)): weight ~ U(+-1/sqrt(fan_in)), bias ~ U(+-1/sqrt(fan_in)),
    fan_in = in_channels/groups * kernel_size, as torch.nn.Conv1d."""
    fastdl.manual_seed(0)
    layer = nn.Conv1d(64, 128, 5, groups=2)
    bound = 1 / math.sqrt(32 * 5)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.98 * bound  # 20k draws reach the bound
    np.testing.assert_allclose(w.std(), bound / math.sqrt(3), rtol=0.03)  # uniform's std
    assert abs(w.mean()) < 0.02 * bound
    assert nn.Conv1d(2, 2, 3, dtype=np.float64).weight.dtype == np.float64


def test_modules_are_exported():
    for name in ["AvgPool2d", "AdaptiveAvgPool2d", "Conv1d"]:
        assert hasattr(nn, name)
    for name in ["avg_pool2d", "adaptive_avg_pool2d", "conv1d"]:
        assert name in F.__all__
