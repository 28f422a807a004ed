"""Every C++ kernel, reached through the public API (fastdl.nn.functional), forward and backward.

Each op family is checked five ways (STYLE.md, convention 6):
  1. against PyTorch CPU (float32 and float64): outputs and every gradient;
  2. against the NumPy reference shipped in the package (fastdl.reference);
  3. by central finite differences in float64, away from kinks;
  4. on 1 thread against 2 threads: bitwise identical;
  5. with strided / Fortran / negative-stride / sliced inputs against contiguous ones: bitwise.

Conventions of this file: every random array comes from np.random.default_rng(seed); a
"function" under test takes the differentiable tensors only (labels and options are captured
by the closure), so one helper can run fastdl, PyTorch and finite differences alike.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastdl
import fastdl.nn.functional as F
from fastdl import _C, reference

FLOAT_DTYPES = [np.float32, np.float64]

# (rtol, atol) for comparisons against PyTorch and the NumPy reference: different but
# equally valid summation orders, so float32 gets float32 rounding, float64 near-exact.
TOLERANCES = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-12),
}

# Finite differences: eps 1e-6 on O(1) values gives ~1e-10 truncation + ~1e-10 rounding.
FD_EPS = 1e-6
FD_RTOL, FD_ATOL = 1e-5, 1e-6


# ====================================================================== shared helpers
@pytest.fixture(scope="module")
def torch():
    """PyTorch CPU, the numerical oracle; the tests that need it skip when it is absent."""
    return pytest.importorskip("torch", reason="PyTorch CPU (the oracle of these tests) is not installed")


@pytest.fixture
def restore_threads():
    """Tests that change the thread count put it back, whatever happens."""
    previous = fastdl.get_num_threads()
    yield
    fastdl.set_num_threads(previous)


def _assert_close(actual, expected, dtype, what: str) -> None:
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _upstream(rng, shape, dtype) -> np.ndarray:
    """A random upstream gradient (a plain 1.0 would hide transposed or summed-wrong grads)."""
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def _run_fastdl(function, arrays, upstream=None, rng=None):
    """Forward function on fresh leaves, backward a random (or the given) upstream gradient.

    Returns (output, [grad of each array, None where the array is None], upstream)."""
    leaves = [None if a is None else fastdl.tensor(a, requires_grad=True) for a in arrays]
    out = function(*leaves)
    if upstream is None:
        upstream = _upstream(rng, out.shape, out.dtype)
    out.backward(upstream)
    grads = []
    for leaf in leaves:
        if leaf is None:
            grads.append(None)
        else:
            assert leaf.grad is not None, "a leaf that requires grad received no gradient"
            assert leaf.grad.dtype == leaf.dtype, f"grad dtype {leaf.grad.dtype} != {leaf.dtype}"
            grads.append(leaf.grad.numpy())
    return out.detach().numpy(), grads, upstream


def _run_torch(torch, function, arrays, upstream):
    leaves = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out = function(*leaves)
    out.backward(torch.tensor(upstream))
    grads = [None if leaf is None else leaf.grad.numpy() for leaf in leaves]
    return out.detach().numpy(), grads


def _check_against_torch(torch, fastdl_function, torch_function, arrays, rng, names) -> None:
    """Outputs and every gradient of fastdl_function equal torch_function's."""
    dtype = next(a.dtype for a in arrays if a is not None)
    out, grads, upstream = _run_fastdl(fastdl_function, arrays, rng=rng)
    expected, expected_grads = _run_torch(torch, torch_function, arrays, upstream)
    assert out.dtype == dtype, f"output dtype {out.dtype} != input dtype {dtype}"
    _assert_close(out, expected, dtype, "output")
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        if grad is not None:
            _assert_close(grad, expected_grad, dtype, f"grad of {name}")


def _numerical_gradient(function, arrays, which: int, upstream, eps: float = FD_EPS) -> np.ndarray:
    """Central differences of sum(function(*arrays) * upstream) with respect to arrays[which]."""
    arrays = [None if a is None else np.array(a, dtype=np.float64, copy=True) for a in arrays]
    flat = arrays[which].reshape(-1)  # a view into the copy we perturb
    grad = np.zeros(flat.size)

    def value() -> float:
        with fastdl.no_grad():
            out = function(*[None if a is None else fastdl.tensor(a) for a in arrays])
        return float(np.sum(out.numpy() * upstream))

    for k in range(flat.size):
        original = flat[k]
        flat[k] = original + eps
        plus = value()
        flat[k] = original - eps
        minus = value()
        flat[k] = original
        grad[k] = (plus - minus) / (2 * eps)
    return grad.reshape(arrays[which].shape)


def _check_finite_differences(function, arrays, rng, names) -> None:
    """The analytic float64 gradient of every array equals central finite differences."""
    arrays = [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]
    _, grads, upstream = _run_fastdl(function, arrays, rng=rng)
    for which, (name, grad) in enumerate(zip(names, grads)):
        if grad is None:
            continue
        numerical = _numerical_gradient(function, arrays, which, upstream)
        np.testing.assert_allclose(grad, numerical, rtol=FD_RTOL, atol=FD_ATOL,
                                   err_msg=f"grad of {name} vs finite differences")


def _distinct_values(rng, shape, dtype=np.float64, spacing: float = 0.25) -> np.ndarray:
    """A random permutation of well-separated values: no ties, and a finite-difference step
    never changes which element is the maximum of a window."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * spacing).reshape(shape).astype(dtype)


def _away_from_zero(rng, shape, dtype=np.float64, gap: float = 0.1) -> np.ndarray:
    """Random values with |x| >= gap: relu's kink at 0 is never within a finite-difference step."""
    signs = rng.choice([-1.0, 1.0], size=shape)
    return (signs * (gap + rng.random(shape))).astype(dtype)


def _on_threads(threads: int, function):
    fastdl.set_num_threads(threads)
    assert fastdl.get_num_threads() == threads
    return function()


def _assert_bitwise_equal(results_a, results_b, what: str) -> None:
    for k, (a, b) in enumerate(zip(results_a, results_b)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}[{k}]: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), (
            f"{what}[{k}]: not bitwise identical, max |diff| {np.max(np.abs(a - b), initial=0)}")


def _layouts(array: np.ndarray) -> dict:
    """The same values in other memory layouts: views that are not C-contiguous."""
    ndim = array.ndim
    swapped = np.ascontiguousarray(np.swapaxes(array, -1, -2)).swapaxes(-1, -2) if ndim >= 2 else None
    filler = np.nan if array.dtype.kind == "f" else 0  # NaN between the elements: a read outside shows
    sliced_base = np.full(tuple(2 * n + 1 for n in array.shape), filler, dtype=array.dtype)
    sliced = sliced_base[tuple(slice(1, None, 2) for _ in array.shape)]
    sliced[...] = array
    layouts = {
        "fortran": np.asfortranarray(array),
        "negative-strides": np.flip(np.flip(array).copy()),
        "every-other-element": sliced,
    }
    if swapped is not None:
        layouts["last-two-axes-swapped"] = swapped
    for name, view in layouts.items():
        assert np.array_equal(view, array), name
    return layouts


def _view_tensor(array: np.ndarray, constructor: str, requires_grad: bool) -> fastdl.Tensor:
    """A tensor over a non-contiguous array, through each public constructor."""
    if constructor == "Tensor":  # keeps the strided view itself: the binding sees it
        t = fastdl.Tensor(array, requires_grad=requires_grad)
        assert t.data is array
    elif constructor == "tensor":
        t = fastdl.tensor(array, requires_grad=requires_grad)
    else:
        t = fastdl.from_numpy(array)
        if requires_grad:
            t.requires_grad_()
    return t


LAYOUT_NAMES = ["fortran", "negative-strides", "every-other-element", "last-two-axes-swapped"]
CONSTRUCTORS = ["Tensor", "tensor", "from_numpy"]


def _run_with_layout(function, arrays, upstream, layout, constructor):
    """Forward and backward with every float array (and the upstream gradient) in `layout`;
    `layout=None` runs the contiguous originals."""
    def arrange(a):
        if a is None or layout is None or (a.ndim < 2 and layout == "last-two-axes-swapped"):
            return a
        return _layouts(a)[layout]

    leaves = []
    for a in arrays:
        if a is None:
            leaves.append(None)
        elif layout is None:
            leaves.append(fastdl.tensor(a, requires_grad=True))
        else:
            leaves.append(_view_tensor(arrange(a), constructor, requires_grad=True))
    out = function(*leaves)
    out.backward(arrange(upstream))
    return [out.detach().numpy()] + [leaf.grad.numpy() for leaf in leaves if leaf is not None]


def _check_partial_requires_grad(function, arrays, requires, upstream) -> None:
    """With only some leaves requiring grad (the kernel skips the other products), those get
    the very bits of the all-leaves run and the others get no .grad at all."""
    _, full_grads, _ = _run_fastdl(function, arrays, upstream)
    leaves = [None if a is None else fastdl.tensor(a, requires_grad=r) for a, r in zip(arrays, requires)]
    out = function(*leaves)
    out.backward(upstream)
    for k, (leaf, wanted, full) in enumerate(zip(leaves, requires, full_grads)):
        if leaf is None:
            continue
        if wanted:
            _assert_bitwise_equal([leaf.grad.numpy()], [full], f"grad of argument {k}")
        else:
            assert leaf.grad is None, f"argument {k} does not require grad but received one"


REQUIRES_GRAD_SUBSETS = [
    pytest.param((True, False, False), id="input-only"),
    pytest.param((False, True, False), id="weight-only"),
    pytest.param((False, False, True), id="bias-only"),
    pytest.param((False, True, True), id="parameters-only"),
]


# ====================================================================== conv2d
# (input shape, out_channels, kernel (kh, kw), keyword arguments); 3-D input = unbatched.
CONV_CASES = [
    pytest.param((2, 3, 7, 8), 4, (3, 3), {}, id="3x3"),
    pytest.param((2, 3, 5, 6), 4, (1, 1), {}, id="1x1"),
    pytest.param((2, 4, 9, 8), 6, (3, 2), dict(stride=2, padding=1), id="stride2-pad1-rect"),
    pytest.param((1, 2, 9, 10), 3, (3, 3), dict(stride=(2, 3), padding=(2, 0)), id="tuple-stride-padding"),
    pytest.param((2, 3, 10, 9), 4, (3, 3), dict(dilation=2, padding=2), id="dilation2"),
    pytest.param((1, 2, 11, 9), 2, (2, 3), dict(dilation=(3, 1), stride=(1, 2)), id="tuple-dilation"),
    pytest.param((2, 2, 5, 5), 3, (2, 2), dict(stride=3, padding=1), id="stride-skips-pixels"),
    pytest.param((2, 4, 7, 7), 6, (3, 3), dict(groups=2, padding=1), id="groups2"),
    pytest.param((2, 4, 6, 6), 8, (3, 3), dict(groups=4, stride=2, padding=1), id="depthwise-x2"),
    pytest.param((2, 3, 6, 5), 2, (3, 3), dict(padding="same"), id="same-odd"),
    pytest.param((2, 3, 6, 5), 2, (4, 2), dict(padding="same"), id="same-even"),
    pytest.param((2, 3, 6, 5), 2, (2, 4), dict(padding="same", dilation=(2, 1)), id="same-even-dilated"),
    pytest.param((2, 3, 6, 5), 2, (3, 3), dict(padding="valid"), id="valid"),
    pytest.param((1, 2, 3, 3), 2, (3, 3), {}, id="kernel-equals-input"),
    pytest.param((3, 7, 8), 4, (3, 3), dict(padding=1), id="unbatched"),
    pytest.param((3, 7, 8), 6, (3, 3), dict(groups=3, stride=2), id="unbatched-groups"),
    pytest.param((0, 3, 5, 5), 2, (3, 3), {}, id="empty-batch"),
]

# Rows of outputs >= 16 wide and >= 85% of whole 16-lane vectors take conv.cpp's direct
# forward in float32 (float64 runs im2col): stem-like strides, channel blocks cut short
# (O not a multiple of 8), row tails, rows cut into 3 + 2 + 2 vectors, dilation, 1x1.
DIRECT_CASES = [
    pytest.param((2, 3, 38, 62), 13, (7, 7), dict(stride=2, padding=3), id="stem-k7-s2"),
    pytest.param((3, 2, 9, 100), 9, (3, 5), dict(padding=(1, 2), dilation=(2, 1)), id="wide-tail"),
    pytest.param((1, 4, 6, 50), 8, (3, 3), dict(dilation=2), id="dilated"),
    pytest.param((2, 5, 8, 16), 17, (1, 1), {}, id="1x1-one-vector"),
    pytest.param((4, 2, 12, 64), 6, (4, 4), dict(stride=2, padding=1), id="k4-s2"),
    pytest.param((3, 7, 30), 5, (3, 3), dict(padding=1), id="unbatched"),
    pytest.param((2, 3, 10, 29), 4, (4, 2), dict(padding="same"), id="same-even"),
    # Grouped, 8-channel blocks within each group, at most 8 input channels per group: the
    # same kernel per group (rows of 12-15 outputs in one vector).
    pytest.param((2, 64, 14, 14), 64, (3, 3), dict(padding=1, groups=8), id="grouped-8x8"),
    pytest.param((2, 16, 13, 20), 32, (3, 3), dict(padding=1, groups=4), id="grouped-4-to-8"),
    pytest.param((2, 32, 29, 30), 32, (3, 3), dict(stride=2, padding=1, groups=4), id="grouped-s2"),
    pytest.param((2, 12, 12, 40), 48, (5, 3), dict(padding=(2, 1), dilation=(1, 2), groups=3), id="grouped-k5x3"),
]

# Float32 convolutions with R = C*KH*KW >= 256 taps and output channels in whole 16-lane
# vectors that neither Winograd nor the wide-row kernel takes run conv.cpp's channel-lane
# kernels: blocks of <= 6 pixels x <= 64 channels (pixel tails 1-5, channel blocks of
# 16/32/48/64). With C a multiple of 16 and O >= 64 the backward takes them too.
CHANNEL_CASES = [
    pytest.param((3, 32, 9, 13), 64, (3, 3), dict(stride=2, padding=1), id="s2-pixel-tail"),
    pytest.param((2, 32, 7, 9), 80, (5, 5), dict(stride=(2, 1), padding=(1, 2)), id="k5-blocks-64+16"),
    # One sample: too few tiles for Winograd (which takes dilated 3x3 layers otherwise).
    pytest.param((1, 32, 10, 10), 112, (3, 3), dict(padding=2, dilation=2), id="dilated-64+48"),
    pytest.param((2, 32, 7, 7), 64, (3, 3), dict(padding=1), id="3x3-s1-few-tiles"),
    pytest.param((2, 30, 8, 8), 32, (3, 3), dict(stride=2, padding=1), id="forward-only-c30"),
    pytest.param((2, 48, 6, 6), 48, (3, 3), dict(stride=3), id="forward-only-o48"),
    pytest.param((256, 9, 9), 64, (1, 1), dict(stride=2), id="1x1-s2-unbatched"),
    pytest.param((1, 16, 9, 9), 96, (5, 5), dict(padding="same"), id="same-k5"),
    # Windows over padding skip those taps, pixels grouped by the taps they hold (samples
    # chunked so that a class fills the register rows; small classes join the full one).
    pytest.param((16, 32, 7, 7), 64, (3, 3), dict(stride=2, padding=1), id="tap-classes-chunked"),
    pytest.param((2, 32, 7, 7), 80, (3, 3), dict(padding=1), id="tap-classes-merged-64+16"),
    pytest.param((3, 32, 4, 4), 32, (3, 3), dict(padding=3), id="windows-all-padding"),
    pytest.param((5, 32, 9, 8), 48, (3, 3), dict(stride=2, padding=(2, 1), dilation=(2, 1)), id="tap-classes-dilated"),
    # Grouped, on maps of at most 64 pixels: per group, 16-lane vectors of its channels
    # (blocks of 64 and a narrower last one within each group), forward and backward.
    pytest.param((4, 64, 7, 7), 64, (3, 3), dict(padding=1, groups=4), id="grouped-16-per-group"),
    pytest.param((2, 64, 8, 8), 160, (3, 3), dict(padding=1, groups=2), id="grouped-80-per-group"),
    pytest.param((3, 96, 9, 9), 96, (3, 3), dict(stride=2, padding=1, groups=3), id="grouped-s2"),
    # Strided and grouped: maps of up to 256 pixels (no Winograd to prefer).
    pytest.param((2, 64, 28, 28), 64, (3, 3), dict(stride=2, padding=1, groups=4), id="grouped-s2-14x14"),
    pytest.param((2, 32, 32, 31), 64, (3, 3), dict(stride=2, padding=1, groups=2), id="grouped-s2-16x16-o32"),
    pytest.param((1, 32, 34, 34), 32, (3, 3), dict(stride=2, padding=1, groups=2), id="grouped-s2-17x17-im2col"),
]

def _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype, bias=True):
    channels = input_shape[-3]
    groups = kwargs.get("groups", 1)
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal((out_channels, channels // groups) + tuple(kernel)).astype(dtype)
    b = rng.standard_normal(out_channels).astype(dtype) if bias else None
    return [x, w, b]


def _assert_close_to_scale(actual, expected, dtype, what: str) -> None:
    """Like _assert_close, but entries that cancel to near zero are held to the rounding of
    the largest entry: Winograd's transforms and long weight-gradient sums round at that
    scale, not at the scale of the cancelled result."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=max(atol, rtol * scale / 10),
                               err_msg=what)


def _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng):
    out, grads, upstream = _run_fastdl(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, rng=rng)
    expected, expected_grads = _run_torch(
        torch, lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kwargs), arrays, upstream)
    dtype = arrays[0].dtype
    _assert_close_to_scale(out, expected, dtype, "output")
    for name, g, e in zip(["input", "weight", "bias"], grads, expected_grads):
        assert (g is None) == (e is None), f"grad of {name}: present in one library only"
        if g is not None:
            _assert_close_to_scale(g, e, dtype, f"grad of {name}")


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # torch's own note
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", CONV_CASES + DIRECT_CASES + CHANNEL_CASES)
def test_conv2d_matches_torch(torch, input_shape, out_channels, kernel, kwargs, bias, dtype):
    rng = np.random.default_rng(1)
    arrays = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype, bias)
    _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng)


def _numeric_pairs(kwargs):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    return dict(stride=pair(kwargs.get("stride", 1)), padding=pair(kwargs.get("padding", 0)),
                dilation=pair(kwargs.get("dilation", 1)), groups=kwargs.get("groups", 1))


# The reference takes numeric padding and batched input: the cases that have them.
CONV_REFERENCE_CASES = [c for c in CONV_CASES + DIRECT_CASES + CHANNEL_CASES
                        if len(c.values[0]) == 4 and not isinstance(c.values[3].get("padding"), str)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", CONV_REFERENCE_CASES)
def test_conv2d_matches_reference(input_shape, out_channels, kernel, kwargs, dtype):
    rng = np.random.default_rng(2)
    x, w, b = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype)
    out, (gx, gw, gb), upstream = _run_fastdl(lambda x, w, b: F.conv2d(x, w, b, **kwargs), [x, w, b], rng=rng)
    pairs = _numeric_pairs(kwargs)
    # To scale: the channel-lane cases sum up to 800 products per entry.
    _assert_close_to_scale(out, reference.conv2d_forward(x, w, b, **pairs), dtype, "output")
    rx, rw, rb = reference.conv2d_backward(x, w, upstream, **pairs)
    _assert_close_to_scale(gx, rx, dtype, "grad of input")
    _assert_close_to_scale(gw, rw, dtype, "grad of weight")
    _assert_close_to_scale(gb, rb, dtype, "grad of bias")


@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", [
    pytest.param((2, 3, 5, 5), 4, (3, 3), dict(padding=1), id="3x3-pad1"),
    pytest.param((1, 4, 6, 5), 4, (2, 3), dict(stride=(2, 1), dilation=(1, 2), groups=2, padding=(1, 0)), id="strided-dilated-groups"),
    pytest.param((1, 2, 5, 4), 2, (2, 2), dict(padding="same"), id="same-even"),
    pytest.param((2, 5, 4), 3, (3, 2), dict(padding=(0, 1)), id="unbatched"),
])
def test_conv2d_finite_differences(input_shape, out_channels, kernel, kwargs):
    rng = np.random.default_rng(3)
    arrays = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, np.float64)
    _check_finite_differences(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, rng,
                              ["input", "weight", "bias"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, groups=2, dilation=2, padding=2)],
                         ids=["pad1", "stride2-groups2-dilation2"])
def test_conv2d_one_thread_equals_two_threads(restore_threads, kwargs, dtype):
    rng = np.random.default_rng(4)
    arrays = _conv_arrays(rng, (16, 8, 16, 16), 16, (3, 3), kwargs, dtype)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "conv2d (output, grad input, weight, bias)")


@pytest.mark.parametrize("requires", REQUIRES_GRAD_SUBSETS)
def test_conv2d_partial_requires_grad(requires):
    rng = np.random.default_rng(34)
    kwargs = dict(stride=2, padding=1, groups=2)
    arrays = _conv_arrays(rng, (3, 4, 7, 7), 6, (3, 3), kwargs, np.float64)
    upstream = _upstream(rng, (3, 6, 4, 4), np.float64)
    _check_partial_requires_grad(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, requires, upstream)


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_conv2d_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(5)
    kwargs = dict(stride=(1, 2), padding=1, groups=2)
    x, w, b = _conv_arrays(rng, (2, 4, 7, 6), 4, (3, 2), kwargs, np.float32)
    function = lambda x, w, b: F.conv2d(x, w, b, **kwargs)  # noqa: E731
    upstream = _upstream(rng, function(fastdl.tensor(x), fastdl.tensor(w), fastdl.tensor(b)).shape, np.float32)
    expected = _run_with_layout(function, [x, w, b], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(function, [x, w, b], upstream, layout, constructor), expected,
                          f"conv2d with {layout} inputs")


# ---------------------------------------------------------------------- Winograd path
# 3x3, stride 1, dilation 1, one group, >= 8 channels in and out, padding <= 2: conv2d runs
# Winograd F(2x2, 3x3). Odd sizes leave partial 2x2 output tiles at the bottom and right.
WINOGRAD_CASES = [
    pytest.param((3, 8, 7, 9), 10, dict(padding=1), id="odd-pad1"),
    pytest.param((2, 16, 6, 5), 8, dict(padding=0), id="valid"),
    pytest.param((5, 9, 14, 14), 12, dict(padding=2), id="pad2"),
    pytest.param((2, 8, 2, 3), 8, dict(padding=1), id="tiny"),
    pytest.param((12, 5, 5), 9, dict(padding="same"), id="unbatched-same"),
    pytest.param((9, 8, 6, 6), 8, dict(padding=(0, 2)), id="rect-pad"),
    pytest.param((2, 16, 6, 7), 24, dict(padding=1, groups=2), id="groups2"),
    pytest.param((3, 32, 5, 9), 16, dict(padding=1, groups=2), id="groups2-fewer-out"),
    pytest.param((1, 24, 7, 5), 24, dict(padding=2, groups=3), id="groups3-batch1"),
    pytest.param((2, 8, 6, 7), 12, dict(padding=1, groups=4), id="groups4-2-to-3-channels"),
    pytest.param((3, 16, 5, 9), 32, dict(padding=1, groups=8), id="groups8-2-to-4-channels"),
    # Dilation: dh x dw undilated problems on the planes' polyphase components.
    pytest.param((2, 8, 11, 10), 8, dict(padding=2, dilation=2), id="dilation2-same"),
    pytest.param((3, 8, 13, 14), 9, dict(padding=(1, 3), dilation=(2, 3)), id="dilation-rect"),
    pytest.param((2, 16, 12, 12), 16, dict(padding=0, dilation=2, groups=2), id="dilation2-valid-groups"),
    pytest.param((1, 8, 17, 16), 8, dict(padding=4, dilation=4), id="dilation4-batch1"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, out_channels, kwargs", WINOGRAD_CASES)
def test_conv2d_winograd_matches_torch(torch, input_shape, out_channels, kwargs, dtype):
    assert _C._winograd_enabled()
    rng = np.random.default_rng(40)
    arrays = _conv_arrays(rng, input_shape, out_channels, (3, 3), kwargs, dtype)
    _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng)


def _assert_conv_threads_bitwise(arrays, kwargs, rng, what: str) -> None:
    """conv2d(**kwargs): output and every gradient bitwise the same on 1 and 2 threads."""
    function = lambda x, w, b: F.conv2d(x, w, b, **kwargs)  # noqa: E731
    upstream = _run_fastdl(function, arrays, rng=rng)[2]

    def run():
        out, grads, _ = _run_fastdl(function, arrays, upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), what)


def _check_conv_equals_im2col(arrays, kwargs, rng, what: str) -> None:
    """conv2d with conv.cpp's own paths on (Winograd, the direct kernels) against im2col +
    GEMM alone (_C._set_winograd(False)): the output and every gradient, to scale."""
    function = lambda x, w, b: F.conv2d(x, w, b, **kwargs)  # noqa: E731
    out, grads, upstream = _run_fastdl(function, arrays, rng=rng)
    _C._set_winograd(False)
    try:
        out0, grads0, _ = _run_fastdl(function, arrays, upstream)
    finally:
        _C._set_winograd(True)
    dtype = arrays[0].dtype
    _assert_close_to_scale(out, out0, dtype, f"{what} vs im2col: output")
    for name, g, g0 in zip(["input", "weight", "bias"], grads, grads0):
        _assert_close_to_scale(g, g0, dtype, f"{what} vs im2col: grad of {name}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, out_channels, kwargs", WINOGRAD_CASES)
def test_conv2d_winograd_equals_im2col(input_shape, out_channels, kwargs, dtype):
    rng = np.random.default_rng(41)
    arrays = _conv_arrays(rng, input_shape, out_channels, (3, 3), kwargs, dtype)
    _check_conv_equals_im2col(arrays, kwargs, rng, "Winograd")


def test_conv2d_winograd_finite_differences():
    rng = np.random.default_rng(42)
    arrays = _conv_arrays(rng, (1, 8, 4, 5), 8, (3, 3), dict(padding=1), np.float64)
    _check_finite_differences(lambda x, w, b: F.conv2d(x, w, b, padding=1), arrays, rng,
                              ["input", "weight", "bias"])


# Batches of 1 and 3 run their chunks one after another, each split over the team; 19 splits
# the weight gradient's 8 sample groups over threads; 4 planes of 40x40 make 2 chunks of 2.
@pytest.mark.parametrize("input_shape", [(19, 12, 9, 11), (1, 12, 9, 11), (3, 12, 9, 11), (4, 16, 40, 40)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_conv2d_winograd_one_thread_equals_two_threads(restore_threads, dtype, input_shape):
    rng = np.random.default_rng(43)
    arrays = _conv_arrays(rng, input_shape, 16, (3, 3), dict(padding=1), dtype)
    _assert_conv_threads_bitwise(arrays, dict(padding=1), rng, "Winograd conv2d")


@pytest.mark.parametrize("requires", REQUIRES_GRAD_SUBSETS)
def test_conv2d_winograd_partial_requires_grad(requires):
    rng = np.random.default_rng(44)
    arrays = _conv_arrays(rng, (3, 8, 5, 6), 8, (3, 3), dict(padding=1), np.float64)
    upstream = _upstream(rng, (3, 8, 5, 6), np.float64)
    _check_partial_requires_grad(lambda x, w, b: F.conv2d(x, w, b, padding=1), arrays, requires, upstream)


def test_conv2d_winograd_switch_is_restored():
    assert _C._winograd_enabled()


@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", DIRECT_CASES)
def test_conv2d_direct_equals_im2col(input_shape, out_channels, kernel, kwargs):
    rng = np.random.default_rng(46)
    arrays = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, np.float32)
    _check_conv_equals_im2col(arrays, kwargs, rng, "direct forward")


@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", CHANNEL_CASES)
def test_conv2d_channel_kernels_equal_im2col(input_shape, out_channels, kernel, kwargs):
    rng = np.random.default_rng(48)
    arrays = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, np.float32)
    _check_conv_equals_im2col(arrays, kwargs, rng, "channel-lane kernels")


def test_conv2d_channel_weight_grad_in_chunks(torch):
    """Samples whose padded planes and dY^T fill the 64 MiB staging area go in chunks (2 + 2),
    the weight gradient summed over the chunks in turn."""
    rng = np.random.default_rng(49)
    arrays = _conv_arrays(rng, (4, 32, 255, 511), 64, (3, 3), dict(stride=2), np.float32)
    _check_conv_against_torch_to_scale(torch, dict(stride=2), arrays, rng)


@pytest.mark.parametrize("groups", [1, 2], ids=["dense", "grouped"])
@pytest.mark.parametrize("batch", [1, 5], ids=["one-sample", "samples"])
def test_conv2d_channel_one_thread_equals_two_threads(restore_threads, batch, groups):
    rng = np.random.default_rng(50)
    kwargs = dict(stride=2, padding=1, groups=groups)
    arrays = _conv_arrays(rng, (batch, 32, 11, 11), 80 * groups, (3, 3), kwargs, np.float32)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "channel-lane conv2d")
    # Grouped and strided on a 14x14 output map (channel-lane only because strided).
    kwargs = dict(stride=2, padding=1, groups=4 * groups)
    arrays = _conv_arrays(rng, (batch, 64 * groups, 28, 28), 64 * groups, (3, 3), kwargs, np.float32)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "strided grouped channel-lane conv2d")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, out_channels, kernel, kwargs", [
    pytest.param((4, 16, 34, 34), 16, (3, 3), dict(stride=2, padding=1, groups=4), id="s2-g4"),
    pytest.param((5, 12, 20, 21), 24, (5, 5), dict(padding=2, groups=3), id="k5-g3"),
    pytest.param((4, 8, 40, 33), 16, (3, 3), dict(stride=2, padding=1, dilation=2, groups=2), id="dilated-g2"),
])
def test_conv2d_grouped_im2col_per_group_matches_torch(torch, restore_threads, input_shape, out_channels, kernel,
                                                       kwargs, dtype):
    """Grouped layers on im2col's sample-parallel path with one sample per product (output
    maps of 256+ pixels, batches of 4+) unfold one group at a time: against PyTorch, and
    bitwise on 1 and 2 threads."""
    rng = np.random.default_rng(51)
    arrays = _conv_arrays(rng, input_shape, out_channels, kernel, kwargs, dtype)
    _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "grouped im2col conv2d")


DEPTHWISE_CASES = [
    pytest.param((2, 8, 28, 28), (3, 3), dict(padding=1), id="3x3-same"),
    pytest.param((3, 5, 9, 6), (5, 5), dict(padding=2), id="5x5"),
    pytest.param((2, 4, 10, 11), (3, 3), dict(padding=2, dilation=2), id="dilated"),
    pytest.param((2, 6, 7, 7), (3, 3), dict(), id="valid"),
    pytest.param((1, 2, 4, 3), (1, 3), dict(padding=(0, 1)), id="1x3"),
    pytest.param((2, 4, 1, 1), (3, 3), dict(padding=1), id="1x1-plane"),
    pytest.param((2, 3, 8, 8), (3, 2), dict(padding=(2, 0), dilation=(1, 3)), id="rect"),
    pytest.param((4, 16, 7, 7), (3, 3), dict(padding="same"), id="small-planes"),
    # Strided: the padded plane split into stride phases (even/odd columns vectorized).
    pytest.param((2, 8, 28, 28), (3, 3), dict(stride=2, padding=1), id="stride2"),
    pytest.param((2, 6, 13, 11), (3, 3), dict(stride=2, padding=1), id="stride2-odd"),
    pytest.param((3, 5, 15, 14), (5, 5), dict(stride=2, padding=2), id="stride2-5x5"),
    pytest.param((2, 4, 47, 45), (3, 3), dict(stride=2), id="stride2-wide-rows"),
    pytest.param((2, 4, 12, 13), (3, 3), dict(stride=(3, 2), padding=(2, 1), dilation=(1, 2)), id="stride3x2-dilated"),
    pytest.param((2, 3, 10, 11), (2, 2), dict(stride=3, padding=1), id="stride3"),
    pytest.param((2, 3, 9, 9), (1, 1), dict(stride=2), id="1x1-stride2"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, kernel, kwargs", DEPTHWISE_CASES)
def test_conv2d_depthwise_matches_torch_and_im2col(torch, input_shape, kernel, kwargs, dtype):
    """groups = in_channels = out_channels (depthwise.cpp: flat passes over padded planes, or
    over their stride phases): output and every gradient as PyTorch's and as im2col + GEMM's."""
    channels = input_shape[1]
    kwargs = dict(kwargs, groups=channels)
    rng = np.random.default_rng(51)
    arrays = _conv_arrays(rng, input_shape, channels, kernel, kwargs, dtype)
    _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng)
    _check_conv_equals_im2col(arrays, kwargs, rng, "depthwise")


def test_conv2d_depthwise_infinities_reach_only_their_windows(torch):
    """An inf in the input's first or last column: the flat passes also read it at the junk
    positions past each row's outputs, which must not turn a weight gradient whose windows
    never hold it into NaN. Output and gradients as PyTorch's, NaN and inf included."""
    rng = np.random.default_rng(55)
    x = rng.standard_normal((2, 3, 6, 7))
    x[0, 0, 2, 0] = np.inf
    x[1, 2, 4, 6] = -np.inf
    w = rng.standard_normal((3, 1, 3, 3))
    upstream = rng.standard_normal((2, 3, 6, 7))
    leaf, weight = fastdl.tensor(x, requires_grad=True), fastdl.tensor(w, requires_grad=True)
    out = F.conv2d(leaf, weight, None, padding=1, groups=3)
    out.backward(upstream)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    expected = torch.nn.functional.conv2d(tx, tw, None, padding=1, groups=3)
    expected.backward(torch.tensor(upstream))
    for got, want, what in [(out.detach().numpy(), expected.detach().numpy(), "output"),
                            (weight.grad.numpy(), tw.grad.numpy(), "grad of weight")]:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
        np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-12, err_msg=what)
    assert np.isfinite(weight.grad.numpy()[1]).all()


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_depthwise_finite_differences(stride):
    rng = np.random.default_rng(52)
    kwargs = dict(padding=(1, 2), dilation=(1, 2), groups=3, stride=stride)
    arrays = _conv_arrays(rng, (2, 3, 4, 5), 3, (3, 3), kwargs, np.float64)
    _check_finite_differences(lambda x, w, b: F.conv2d(x, w, b, **kwargs), arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("requires", REQUIRES_GRAD_SUBSETS)
def test_conv2d_depthwise_partial_requires_grad(requires):
    rng = np.random.default_rng(53)
    arrays = _conv_arrays(rng, (3, 4, 5, 6), 4, (3, 3), dict(groups=4), np.float64)
    upstream = _upstream(rng, (3, 4, 5, 6), np.float64)
    _check_partial_requires_grad(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=4), arrays, requires,
                                 upstream)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_conv2d_depthwise_one_thread_equals_two_threads(restore_threads, dtype, stride):
    rng = np.random.default_rng(54)
    kwargs = dict(padding=1, groups=12, stride=stride)
    arrays = _conv_arrays(rng, (9, 12, 13, 15), 12, (3, 3), kwargs, dtype)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "depthwise conv2d")


# 1x1, no padding, batch >= 4 (conv.cpp's pointwise path: products on the NCHW planes as
# they lie, strided ones gathered first); (input shape, out channels, keyword arguments).
POINTWISE_CASES = [
    pytest.param((4, 8, 5, 7), 6, dict(), id="plain"),
    pytest.param((5, 12, 3, 4), 9, dict(groups=3), id="groups"),
    pytest.param((4, 6, 2, 3), 4, dict(dilation=3), id="dilation-ignored"),
    pytest.param((9, 16, 13, 13), 32, dict(), id="9-samples"),
    pytest.param((4, 3, 1, 1), 2, dict(padding="valid"), id="1x1-plane"),
    pytest.param((4, 8, 7, 9), 6, dict(stride=2), id="stride2"),
    pytest.param((5, 6, 8, 7), 4, dict(stride=(2, 3), groups=2), id="stride-2x3-groups"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, out_channels, kwargs", POINTWISE_CASES)
def test_conv2d_pointwise_matches_torch_and_im2col(torch, input_shape, out_channels, kwargs, dtype):
    rng = np.random.default_rng(56)
    arrays = _conv_arrays(rng, input_shape, out_channels, (1, 1), kwargs, dtype)
    _check_conv_against_torch_to_scale(torch, kwargs, arrays, rng)
    _check_conv_equals_im2col(arrays, kwargs, rng, "pointwise")


def test_conv2d_pointwise_finite_differences():
    rng = np.random.default_rng(57)
    arrays = _conv_arrays(rng, (4, 4, 3, 2), 6, (1, 1), dict(groups=2), np.float64)
    _check_finite_differences(lambda x, w, b: F.conv2d(x, w, b, groups=2), arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("requires", REQUIRES_GRAD_SUBSETS)
def test_conv2d_pointwise_partial_requires_grad(requires):
    rng = np.random.default_rng(58)
    arrays = _conv_arrays(rng, (5, 6, 4, 3), 6, (1, 1), dict(), np.float64)
    upstream = _upstream(rng, (5, 6, 4, 3), np.float64)
    _check_partial_requires_grad(lambda x, w, b: F.conv2d(x, w, b), arrays, requires, upstream)


@pytest.mark.parametrize("kwargs", [dict(groups=2), dict(groups=2, stride=2)], ids=["stride1", "stride2"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_conv2d_pointwise_one_thread_equals_two_threads(restore_threads, dtype, kwargs):
    rng = np.random.default_rng(59)
    arrays = _conv_arrays(rng, (19, 24, 9, 11), 16, (1, 1), kwargs, dtype)
    _assert_conv_threads_bitwise(arrays, kwargs, rng, "pointwise conv2d")


@pytest.mark.parametrize("batch", [2, 9], ids=["rows-split", "samples"])
def test_conv2d_direct_one_thread_equals_two_threads(restore_threads, batch):
    rng = np.random.default_rng(47)
    x, w, b = _conv_arrays(rng, (batch, 3, 20, 60), 12, (5, 5), dict(padding=2), np.float32)
    run = lambda: [F.conv2d(fastdl.tensor(x), fastdl.tensor(w), fastdl.tensor(b), padding=2).numpy()]  # noqa: E731
    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "direct conv2d forward")


# ====================================================================== max_pool2d
# (input shape, keyword arguments); 3-D input = unbatched.
POOL_CASES = [
    pytest.param((2, 3, 8, 8), dict(kernel_size=2), id="k2"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2), id="k3-s2"),
    pytest.param((2, 3, 7, 9), dict(kernel_size=3, stride=2, ceil_mode=True), id="k3-s2-ceil"),
    pytest.param((1, 2, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1)), id="rect-pad"),
    pytest.param((1, 2, 10, 11), dict(kernel_size=3, stride=1, padding=1, dilation=2), id="dilation2"),
    pytest.param((1, 2, 10, 11), dict(kernel_size=(2, 3), stride=(3, 2), padding=(1, 0), dilation=(2, 3),
                                      ceil_mode=True), id="all-tuples-ceil"),
    pytest.param((2, 2, 6, 6), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), id="ceil-last-window-dropped"),
    pytest.param((2, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), id="ceil-pad1"),
    pytest.param((1, 1, 5, 5), dict(kernel_size=3, stride=3, ceil_mode=True), id="ceil-partial-window"),
    pytest.param((2, 3, 8, 8), dict(kernel_size=1, stride=2), id="k1-s2"),
    pytest.param((3, 2, 5, 5), dict(kernel_size=5), id="global"),
    pytest.param((2, 3, 5, 5), dict(kernel_size=2, stride=1), id="overlapping"),
    pytest.param((3, 6, 7), dict(kernel_size=2, stride=2, ceil_mode=True), id="unbatched"),
]


def _pool_function(module, kwargs):
    """max_pool2d returning (out, indices); the autograd helpers use the output only."""
    return lambda x: module.max_pool2d(x, **kwargs)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, kwargs", POOL_CASES)
def test_max_pool2d_matches_torch(torch, input_shape, kwargs, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(input_shape).astype(dtype)
    _check_against_torch(torch, _pool_function(F, kwargs), _pool_function(torch.nn.functional, kwargs),
                         [x], rng, ["input"])
    out, indices = F.max_pool2d(fastdl.tensor(x), return_indices=True, **kwargs)
    expected, expected_indices = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())  # a max is exact
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


def test_max_pool2d_sweep_matches_torch(torch):
    """Every combination of small kernel/stride/padding/dilation/ceil_mode: the output shape
    (ceil_mode's last-window rule), values, indices and gradient equal PyTorch's, and fastdl
    refuses exactly the combinations PyTorch refuses."""
    rng = np.random.default_rng(7)
    checked = 0
    for (h, w), kernel, stride, padding, dilation, ceil_mode in itertools.product(
            # (5, 67) and (5, 130): rows of 32+ outputs take the backward's gather path.
            [(7, 9), (8, 8), (5, 6), (5, 67), (5, 130)], [2, 3, (2, 3)], [None, 1, 2, (2, 1), 3], [0, 1], [1, 2],
            [False, True]):
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
        x = _distinct_values(rng, (1, 2, h, w))
        try:
            expected, expected_indices = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
        except RuntimeError:
            with pytest.raises(ValueError):
                F.max_pool2d(fastdl.tensor(x), **kwargs)
            continue
        leaf = fastdl.tensor(x, requires_grad=True)
        out, indices = F.max_pool2d(leaf, return_indices=True, **kwargs)
        np.testing.assert_array_equal(out.detach().numpy(), expected.numpy(), err_msg=str(kwargs))
        np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy(), err_msg=str(kwargs))
        upstream = _upstream(rng, out.shape, np.float64)
        out.backward(upstream)
        torch_leaf = torch.tensor(x, requires_grad=True)
        torch.nn.functional.max_pool2d(torch_leaf, **kwargs).backward(torch.tensor(upstream))
        _assert_close(leaf.grad.numpy(), torch_leaf.grad.numpy(), np.float64, f"grad of input, {kwargs}")
        checked += 1
    assert checked > 500


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_max_pool2d_ties_and_infinities_match_torch(torch, dtype):
    """Ties: the first maximum in the window wins (indices as PyTorch's, gradient lands there);
    an all -inf window picks its first in-bounds element, never the padding."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, (2, 3, 7, 7)).astype(dtype)
    x[0, 0] = -np.inf
    x[1, 1, :3] = np.inf
    kwargs = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    leaf = fastdl.tensor(x, requires_grad=True)
    out, indices = F.max_pool2d(leaf, return_indices=True, **kwargs)
    torch_leaf = torch.tensor(x, requires_grad=True)
    expected, expected_indices = torch.nn.functional.max_pool2d(torch_leaf, return_indices=True, **kwargs)
    np.testing.assert_array_equal(out.detach().numpy(), expected.detach().numpy())
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
    upstream = _upstream(rng, out.shape, dtype)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    _assert_close(leaf.grad.numpy(), torch_leaf.grad.numpy(), dtype, "grad of input")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_max_pool2d_3x3_stride2_flat_planes_match_torch(torch, dtype):
    """3x3 windows, stride 2, padding 1 on planes of even width run as flat groups of rows
    (pool.cpp's max_pool2d_forward_flat_3x3; a whole plane up to 32x32): odd and even
    heights, the smallest planes, wide ones, ties, infinities and NaNs — values and indices
    exactly PyTorch's, and the input gradient in its order of sums (bitwise)."""
    rng = np.random.default_rng(12)
    for h, w in [(2, 2), (3, 4), (4, 2), (5, 6), (7, 16), (31, 32), (32, 32), (9, 64), (8, 62), (6, 66),
                 (17, 112), (11, 258)]:
        x = rng.integers(-2, 3, (2, 3, h, w)).astype(dtype)  # many ties
        special = rng.random(x.shape)
        x[special < 0.03] = np.inf
        x[(special >= 0.03) & (special < 0.06)] = -np.inf
        x[(special >= 0.06) & (special < 0.08)] = np.nan
        x[1, 2] = -np.inf  # a plane of -inf: first in-bounds element, never the padding
        leaf = fastdl.tensor(x, requires_grad=True)
        out, indices = F.max_pool2d(leaf, 3, 2, 1, return_indices=True)
        torch_leaf = torch.tensor(x, requires_grad=True)
        expected, expected_indices = torch.nn.functional.max_pool2d(torch_leaf, 3, 2, 1, return_indices=True)
        np.testing.assert_array_equal(out.detach().numpy(), expected.detach().numpy(), err_msg=f"{h}x{w}")
        np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy(), err_msg=f"{h}x{w}")
        upstream = _upstream(rng, out.shape, dtype)
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        _assert_bitwise_equal([leaf.grad.numpy()], [torch_leaf.grad.numpy()], f"grad of input {h}x{w}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)], ids=["2x2", "3x3-s2", "3x3-s1"])
def test_max_pool2d_every_row_width_matches_torch(torch, restore_threads, kernel, stride, padding, dtype):
    """Rows of 1 to 40 windows: whole blocks of 16 and a last partial block, computed whole on
    copies (cpu/copy.h's stage and copy_masked) or past the row end where the input goes on, up to
    the tensor's very end (the last plane's last row). Ties, infinities and NaNs; values
    and indices exactly PyTorch's, the gradient too, on 1 and 2 threads alike."""
    rng = np.random.default_rng(21)
    for w in range(1, 41):
        h = 3 + w % 4
        x = rng.integers(-2, 3, (3, 2, h, w)).astype(dtype)
        special = rng.random(x.shape)
        x[special < 0.03] = np.inf
        x[(special >= 0.03) & (special < 0.06)] = -np.inf
        x[(special >= 0.06) & (special < 0.08)] = np.nan
        kwargs = dict(kernel_size=kernel, stride=stride, padding=padding)
        try:
            expected, expected_indices = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
        except RuntimeError:  # a window wider than the padded input
            continue
        upstream = _upstream(rng, tuple(expected.shape), dtype)
        torch_leaf = torch.tensor(x, requires_grad=True)
        torch.nn.functional.max_pool2d(torch_leaf, **kwargs).backward(torch.tensor(upstream))
        results = []
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            leaf = fastdl.tensor(x, requires_grad=True)
            out, indices = F.max_pool2d(leaf, return_indices=True, **kwargs)
            out.backward(upstream)
            results.append([out.detach().numpy(), indices.numpy(), leaf.grad.numpy()])
        _assert_bitwise_equal(results[0], results[1], f"1 vs 2 threads, width {w}")
        np.testing.assert_array_equal(results[0][0], expected.numpy(), err_msg=f"width {w}")
        np.testing.assert_array_equal(results[0][1], expected_indices.numpy(), err_msg=f"width {w}")
        _assert_close(results[0][2], torch_leaf.grad.numpy(), dtype, f"grad of input, width {w}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape, kernel, stride, padding, dilation, ceil_mode", [
    pytest.param((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False, id="tiles-2x2"),
    pytest.param((2, 3, 9, 32), (3, 3), (2, 2), (1, 1), (1, 1), False, id="flat-3x3"),
    pytest.param((2, 2, 7, 67), (3, 3), (2, 2), (1, 1), (1, 1), False, id="pairs-3x3"),
    pytest.param((2, 2, 9, 132), (3, 3), (2, 2), (1, 1), (1, 1), False, id="flat-3x3-wide"),
    pytest.param((2, 2, 6, 40), (3, 2), (1, 1), (1, 1), (1, 1), False, id="gather-unit"),
    pytest.param((2, 2, 9, 10), (2, 3), (3, 2), (1, 0), (2, 3), True, id="scatter-any"),
])
def test_max_pool2d_int32_indices_equal_int64(shape, kernel, stride, padding, dilation, ceil_mode, dtype):
    """Without return_indices the autograd keeps int32 indices (compact=True): the same
    outputs, the same indices and bitwise the same input gradient as with PyTorch's int64,
    on every kernel path, ties, infinities and NaNs included."""
    rng = np.random.default_rng(13)
    x = rng.integers(-2, 3, shape).astype(dtype)
    special = rng.random(shape)
    x[special < 0.04] = np.inf
    x[(special >= 0.04) & (special < 0.08)] = -np.inf
    x[(special >= 0.08) & (special < 0.1)] = np.nan
    wide = _C.max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode)
    narrow = _C.max_pool2d_forward(x, kernel, stride, padding, dilation, ceil_mode, compact=True)
    assert wide[1].dtype == np.int64 and narrow[1].dtype == np.int32
    np.testing.assert_array_equal(narrow[0], wide[0])
    np.testing.assert_array_equal(narrow[1], wide[1])
    g = _upstream(rng, wide[0].shape, dtype)
    for geometry in [(kernel, stride, padding, dilation), ()]:  # gather paths, then the scatter
        _assert_bitwise_equal([_C.max_pool2d_backward(g, narrow[1], shape, *geometry)],
                              [_C.max_pool2d_backward(g, wide[1], shape, *geometry)], "int32 vs int64 indices")
    leaf = fastdl.tensor(x, requires_grad=True)
    F.max_pool2d(leaf, kernel, stride, padding, dilation, ceil_mode).backward(fastdl.tensor(g))
    _assert_bitwise_equal([leaf.grad.numpy()], [_C.max_pool2d_backward(g, wide[1], shape, kernel, stride,
                                                                         padding, dilation)], "autograd")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_max_pool2d_window_codes_equal_flat_indices(restore_threads, dtype):
    """On the flat 3x3/s2 kernels the autograd keeps one-byte window codes (3 r + c of the
    winner in its window): decoded, exactly the flat indices; the outputs and the input
    gradient bitwise those of the int32 indices, on 1 and 2 threads; rows of one and two
    blocks of 16 windows and a partial one, groups of rows whole and cut short (wide planes),
    odd and even heights, ties, infinities, NaNs."""
    rng = np.random.default_rng(14)
    geometry = ((3, 3), (2, 2), (1, 1), (1, 1))
    for h, w in [(2, 4), (3, 4), (5, 6), (7, 16), (31, 32), (32, 32), (9, 64), (8, 62), (33, 40), (19, 130),
                 (6, 514), (2, 1030)]:
        x = rng.integers(-2, 3, (3, 5, h, w)).astype(dtype)
        special = rng.random(x.shape)
        x[special < 0.04] = np.inf
        x[(special >= 0.04) & (special < 0.08)] = -np.inf
        x[(special >= 0.08) & (special < 0.1)] = np.nan
        x[1, 2] = -np.inf
        flat_out, flat = _C.max_pool2d_forward(x, *geometry, False, True)
        out, codes = _C.max_pool2d_forward(x, *geometry, False, True, True)
        assert codes.dtype == np.uint8 and flat.dtype == np.int32
        _assert_bitwise_equal([out], [flat_out], f"outputs {h}x{w}")
        oh, ow = out.shape[2:]
        rows, cols = np.arange(oh)[:, None], np.arange(ow)[None, :]
        decoded = (2 * rows - 1 + codes // 3) * w + (2 * cols - 1 + codes % 3)
        np.testing.assert_array_equal(decoded, flat, err_msg=f"{h}x{w}")
        g = _upstream(rng, out.shape, dtype)
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            _assert_bitwise_equal([_C.max_pool2d_backward(g, codes, x.shape, *geometry)],
                                  [_C.max_pool2d_backward(g, flat, x.shape, *geometry)],
                                  f"grad of input {h}x{w}, {threads} threads")
    # Other geometries keep int32 indices; codes without their geometry are refused.
    assert _C.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1), True, True, True)[1].dtype == np.int32
    assert _C.max_pool2d_forward(np.ones((1, 1, 8, 65), dtype), *geometry, False, True, True)[1].dtype == np.int32
    with pytest.raises(ValueError, match="window codes"):
        _C.max_pool2d_backward(g, codes, x.shape)
    with pytest.raises(ValueError, match="window codes"):
        _C.max_pool2d_backward(g, codes, x.shape, (3, 3), (1, 1), (1, 1), (1, 1))


def test_max_pool2d_single_nan_propagates_as_torch(torch):
    x = np.arange(32.0).reshape(2, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan  # one NaN in the first window of the first plane
    x[1, 0, 3, 3] = np.nan  # one NaN in the last window of the second plane
    out, indices = F.max_pool2d(fastdl.tensor(x), 2, return_indices=True)
    expected, expected_indices = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())  # NaN == NaN here
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


def test_max_pool2d_two_nans_in_a_window_index_as_torch(torch):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan  # two NaNs in the top-left 2x2 window
    _, indices = F.max_pool2d(fastdl.tensor(x), 2, return_indices=True)
    _, expected_indices = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())  # torch: 5, fastdl: 0


# The reference has no ceil_mode and takes batched input.
POOL_REFERENCE_CASES = [c for c in POOL_CASES if len(c.values[0]) == 4 and not c.values[1].get("ceil_mode")]


def _pool_pairs(kwargs):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    kernel = pair(kwargs["kernel_size"])
    stride = kernel if kwargs.get("stride") is None else pair(kwargs["stride"])
    return kernel, stride, pair(kwargs.get("padding", 0)), pair(kwargs.get("dilation", 1))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("input_shape, kwargs", POOL_REFERENCE_CASES)
def test_max_pool2d_matches_reference(input_shape, kwargs, dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(input_shape).astype(dtype)
    leaf = fastdl.tensor(x, requires_grad=True)
    out, indices = F.max_pool2d(leaf, return_indices=True, **kwargs)
    expected, expected_indices = reference.max_pool2d_forward(x, *_pool_pairs(kwargs))
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    upstream = _upstream(rng, out.shape, dtype)
    out.backward(upstream)
    _assert_close(leaf.grad.numpy(), reference.max_pool2d_backward(upstream, expected_indices, x.shape),
                  dtype, "grad of input")


@pytest.mark.parametrize("input_shape, kwargs", [
    pytest.param((2, 2, 6, 6), dict(kernel_size=2), id="k2"),
    pytest.param((1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), id="overlap-pad-ceil"),
    pytest.param((1, 1, 9, 9), dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)), id="dilated"),
    pytest.param((2, 5, 5), dict(kernel_size=2, stride=1), id="unbatched-overlapping"),
])
def test_max_pool2d_finite_differences(input_shape, kwargs):
    rng = np.random.default_rng(10)
    x = _distinct_values(rng, input_shape)
    _check_finite_differences(lambda x: F.max_pool2d(x, **kwargs), [x], rng, ["input"])


@pytest.mark.parametrize("width", [32, 72], ids=["scatter", "gather"])  # the backward's two forms
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_max_pool2d_one_thread_equals_two_threads(restore_threads, dtype, width):
    rng = np.random.default_rng(11)
    x = np.round(rng.standard_normal((16, 16, 32, width)) * 2).astype(dtype)  # 256 planes; ties
    kwargs = dict(kernel_size=3, stride=2, padding=1)
    upstream = _upstream(rng, (16, 16, 16, width // 2), dtype)

    def run():
        leaf = fastdl.tensor(x, requires_grad=True)
        out, indices = F.max_pool2d(leaf, return_indices=True, **kwargs)
        out.backward(upstream)
        return [out.detach().numpy(), indices.numpy(), leaf.grad.numpy()]

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "max_pool2d (output, indices, grad)")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_max_pool2d_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 9, 8))
    function = lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)  # noqa: E731
    upstream = _upstream(rng, function(fastdl.tensor(x)).shape, np.float64)
    expected = _run_with_layout(function, [x], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(function, [x], upstream, layout, constructor), expected,
                          f"max_pool2d with {layout} input")


# ====================================================================== linear
LINEAR_INPUT_SHAPES = [
    pytest.param((5,), id="1d"),
    pytest.param((4, 5), id="2d"),
    pytest.param((2, 3, 5), id="3d"),
    pytest.param((0, 5), id="empty-batch"),
]


def _linear_arrays(rng, input_shape, out_features, dtype, bias=True):
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal((out_features, input_shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if bias else None
    return [x, w, b]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("out_features", [1, 6])
@pytest.mark.parametrize("input_shape", LINEAR_INPUT_SHAPES)
def test_linear_matches_torch(torch, input_shape, out_features, bias, dtype):
    rng = np.random.default_rng(13)
    arrays = _linear_arrays(rng, input_shape, out_features, dtype, bias)
    _check_against_torch(torch, F.linear, torch.nn.functional.linear, arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_matches_reference(bias, dtype):
    rng = np.random.default_rng(14)
    x, w, b = _linear_arrays(rng, (7, 5), 3, dtype, bias)
    out, (gx, gw, gb), upstream = _run_fastdl(F.linear, [x, w, b], rng=rng)
    _assert_close(out, reference.linear_forward(x, w, b), dtype, "output")
    rx, rw, rb = reference.linear_backward(x, w, upstream)
    _assert_close(gx, rx, dtype, "grad of input")
    _assert_close(gw, rw, dtype, "grad of weight")
    if bias:
        _assert_close(gb, rb, dtype, "grad of bias")


@pytest.mark.parametrize("input_shape", [(4,), (3, 4), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_linear_finite_differences(input_shape):
    rng = np.random.default_rng(15)
    arrays = _linear_arrays(rng, input_shape, 3, np.float64)
    _check_finite_differences(F.linear, arrays, rng, ["input", "weight", "bias"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_linear_one_thread_equals_two_threads(restore_threads, dtype):
    rng = np.random.default_rng(16)
    arrays = _linear_arrays(rng, (512, 128), 128, dtype)  # N*O = 65536: above the grain
    upstream = _upstream(rng, (512, 128), dtype)

    def run():
        out, grads, _ = _run_fastdl(F.linear, arrays, upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "linear (output, grad input, weight, bias)")


@pytest.mark.parametrize("requires", REQUIRES_GRAD_SUBSETS)
def test_linear_partial_requires_grad(requires):
    rng = np.random.default_rng(35)
    arrays = _linear_arrays(rng, (2, 5, 4), 3, np.float64)
    _check_partial_requires_grad(F.linear, arrays, requires, _upstream(rng, (2, 5, 3), np.float64))


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_linear_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(17)
    arrays = _linear_arrays(rng, (3, 4, 6), 5, np.float64)
    upstream = _upstream(rng, (3, 4, 5), np.float64)
    expected = _run_with_layout(F.linear, arrays, upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(F.linear, arrays, upstream, layout, constructor), expected,
                          f"linear with {layout} inputs")


# ====================================================================== relu
def _relu_input(rng, shape, dtype):
    x = rng.standard_normal(shape)
    x.reshape(-1)[::7] = 0.0  # exact zeros: the kink, where both libraries pass no gradient
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(), (1,), (3, 4, 5), (40, 1000)], ids=["0d", "1d", "3d", "large"])
def test_relu_matches_torch(torch, shape, dtype):
    rng = np.random.default_rng(18)
    x = _relu_input(rng, shape, dtype)
    out, (grad,), upstream = _run_fastdl(F.relu, [x], rng=rng)
    expected, (expected_grad,) = _run_torch(torch, torch.nn.functional.relu, [x], upstream)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)  # relu is exact
    np.testing.assert_array_equal(grad, expected_grad)


def test_relu_nan(torch):
    """NaN propagates forward as in PyTorch; backward follows threshold_backward
    (`out <= 0 ? 0 : grad`), so a NaN passes its gradient through."""
    x = np.array([np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf])
    upstream = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    out, (grad,), _ = _run_fastdl(F.relu, [x], upstream)
    expected, (expected_grad,) = _run_torch(torch, torch.nn.functional.relu, [x], upstream)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, [np.nan, 0.0, 0.0, 2.0, 0.0, np.inf])
    np.testing.assert_array_equal(grad, expected_grad)
    np.testing.assert_array_equal(grad, reference.relu_backward(reference.relu_forward(x), upstream))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_relu_inplace_matches_torch(torch, dtype):
    x = _relu_input(np.random.default_rng(19), (4, 6), dtype)
    t = fastdl.tensor(x)
    result = F.relu(t, inplace=True)
    expected = torch.tensor(x)
    torch.nn.functional.relu(expected, inplace=True)
    assert result is t
    np.testing.assert_array_equal(t.numpy(), expected.numpy())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_relu_matches_reference(dtype):
    rng = np.random.default_rng(20)
    x = _relu_input(rng, (5, 7), dtype)
    out, (grad,), upstream = _run_fastdl(F.relu, [x], rng=rng)
    np.testing.assert_array_equal(out, reference.relu_forward(x))
    np.testing.assert_array_equal(grad, reference.relu_backward(reference.relu_forward(x), upstream))


def test_relu_finite_differences():
    rng = np.random.default_rng(21)
    _check_finite_differences(F.relu, [_away_from_zero(rng, (3, 5))], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_relu_one_thread_equals_two_threads(restore_threads, dtype):
    rng = np.random.default_rng(22)
    x = _relu_input(rng, (64, 1024), dtype)  # 65536 elements: above the grain
    upstream = _upstream(rng, x.shape, dtype)

    def run():
        out, grads, _ = _run_fastdl(F.relu, [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "relu (output, grad)")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_relu_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(23)
    x = _relu_input(rng, (3, 5, 4), np.float32)
    upstream = _upstream(rng, x.shape, np.float32)
    expected = _run_with_layout(F.relu, [x], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(F.relu, [x], upstream, layout, constructor), expected,
                          f"relu with {layout} input")


# ====================================================================== cross_entropy
REDUCTIONS = ["mean", "sum", "none"]


def _labels(rng, shape, classes, ignore_index=None):
    """Class indices; with an ignore_index, about a quarter of them are ignored."""
    labels = rng.integers(0, classes, shape)
    if ignore_index is not None:
        labels = np.where(rng.random(shape) < 0.25, ignore_index, labels)
        labels.reshape(-1)[0] = ignore_index  # at least one ignored ...
        labels.reshape(-1)[-1] = 1 if ignore_index != 1 else 0  # ... and at least one kept
    return labels.astype(np.int64)


def _ce_functions(torch, target, **kwargs):
    """(fastdl function, torch function) of the logits, with target and options captured."""
    weight = kwargs.pop("weight", None)

    def fastdl_function(x):
        return F.cross_entropy(x, fastdl.tensor(target),
                               weight=None if weight is None else fastdl.tensor(weight), **kwargs)

    def torch_function(x):
        return torch.nn.functional.cross_entropy(
            x, torch.tensor(target), weight=None if weight is None else torch.tensor(weight), **kwargs)

    return fastdl_function, torch_function


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2], ids=["no-smoothing", "smoothing0.2"])
@pytest.mark.parametrize("ignore_index", [None, -100, 2], ids=["no-ignored", "ignore-100", "ignore-class2"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_class_indices_match_torch(torch, reduction, weighted, ignore_index, label_smoothing, dtype):
    rng = np.random.default_rng(24)
    classes = 5
    x = (3 * rng.standard_normal((9, classes))).astype(dtype)
    target = _labels(rng, (9,), classes, ignore_index)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if weighted:
        kwargs["weight"] = (0.5 + rng.random(classes)).astype(dtype)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    fastdl_function, torch_function = _ce_functions(torch, target, **kwargs)
    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3], ids=["no-smoothing", "smoothing0.3"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("input_shape", [(2, 4, 3, 5), (3, 4, 6)], ids=["N-C-d1-d2", "N-C-d1"])
def test_cross_entropy_k_dimensional_matches_torch(torch, input_shape, reduction, weighted, label_smoothing, dtype):
    rng = np.random.default_rng(25)
    classes = input_shape[1]
    x = rng.standard_normal(input_shape).astype(dtype)
    target = _labels(rng, (input_shape[0],) + input_shape[2:], classes, ignore_index=-100)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if weighted:
        kwargs["weight"] = (0.5 + rng.random(classes)).astype(dtype)
    fastdl_function, torch_function = _ce_functions(torch, target, **kwargs)
    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1], ids=["no-smoothing", "smoothing0.1"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_unbatched_matches_torch(torch, reduction, label_smoothing, dtype):
    rng = np.random.default_rng(26)
    x = rng.standard_normal(6).astype(dtype)
    fastdl_function, torch_function = _ce_functions(torch, np.int64(4), reduction=reduction,
                                                    label_smoothing=label_smoothing)
    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25], ids=["no-smoothing", "smoothing0.25"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("input_shape", [(5, 4), (2, 4, 3, 2), (4,)], ids=["N-C", "N-C-d1-d2", "unbatched"])
def test_cross_entropy_probability_targets_match_torch(torch, input_shape, reduction, weighted, label_smoothing, dtype):
    rng = np.random.default_rng(27)
    axis = 0 if len(input_shape) == 1 else 1
    classes = input_shape[axis]
    x = rng.standard_normal(input_shape).astype(dtype)
    target = rng.random(input_shape)
    target = (target / target.sum(axis=axis, keepdims=True)).astype(dtype)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if weighted:
        kwargs["weight"] = (0.5 + rng.random(classes)).astype(dtype)
    fastdl_function, torch_function = _ce_functions(torch, target, **kwargs)
    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


def test_cross_entropy_extreme_logits_match_torch(torch):
    """Logits far apart (1e4, float64): the log-sum-exp shift keeps loss and gradient finite
    and exact."""
    rng = np.random.default_rng(28)
    x = rng.standard_normal((6, 7)) * 1e4
    x[0] = -1e4
    target = _labels(rng, (6,), 7)
    for reduction in REDUCTIONS:
        fastdl_function, torch_function = _ce_functions(torch, target, reduction=reduction, label_smoothing=0.1)
        _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


def test_cross_entropy_float32_gradient_is_shift_invariant(torch):
    """softmax is invariant to adding a constant to a row: logits [0, 1, 2, 3] + shift."""
    base = np.array([0.0, 1.0, 2.0, 3.0])
    x = np.stack([base, base + 1e4, base + 1e5]).astype(np.float32)
    target = np.array([1, 1, 1])
    fastdl_function, torch_function = _ce_functions(torch, target, reduction="sum")
    upstream = np.asarray(1.0, dtype=np.float32)
    _, (grad,), _ = _run_fastdl(fastdl_function, [x], upstream)
    _, (expected_grad,) = _run_torch(torch, torch_function, [x], upstream)
    # torch: [0.0320586, -0.9128557, 0.2368828, 0.6439143] on every row; fastdl's row
    # shifted by 1e5: [0.0321450, -0.9126210, 0.2375208, 0.6456485].
    _assert_close(grad, expected_grad, np.float32, "grad of input")


def test_cross_entropy_integer_target_dtypes_agree():
    """int32 and uint8 labels give the bits int64 labels give."""
    rng = np.random.default_rng(29)
    x = rng.standard_normal((8, 5))
    target = _labels(rng, (8,), 5)
    upstream = np.asarray(1.5)
    results = []
    for label_dtype in (np.int64, np.int32, np.uint8):
        function = lambda x: F.cross_entropy(x, fastdl.tensor(target.astype(label_dtype)), label_smoothing=0.1)  # noqa: E731,B023
        out, (grad,), _ = _run_fastdl(function, [x], upstream)
        results.append([out, grad])
    _assert_bitwise_equal(results[1], results[0], "int32 vs int64 labels")
    _assert_bitwise_equal(results[2], results[0], "uint8 vs int64 labels")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_matches_reference(reduction, dtype):
    rng = np.random.default_rng(30)
    x = (2 * rng.standard_normal((10, 6))).astype(dtype)
    target = _labels(rng, (10,), 6)
    function = lambda x: F.cross_entropy(x, fastdl.tensor(target), reduction=reduction)  # noqa: E731
    out, (grad,), upstream = _run_fastdl(function, [x], rng=rng)
    _assert_close(out, reference.cross_entropy_forward(x.astype(np.float64), target, reduction), dtype, "output")
    expected_grad = reference.cross_entropy_backward(x.astype(np.float64), target, upstream, reduction)
    _assert_close(grad, expected_grad, dtype, "grad of input")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["indices", "indices-k-dim", "probabilities"])
def test_cross_entropy_finite_differences(case, reduction):
    """With a class weight, label smoothing and an ignored target: every term of the loss."""
    rng = np.random.default_rng(31)
    weight = fastdl.tensor(0.5 + rng.random(4))
    if case == "indices":
        x = rng.standard_normal((5, 4))
        target = fastdl.tensor(_labels(rng, (5,), 4, ignore_index=-100))
    elif case == "indices-k-dim":
        x = rng.standard_normal((2, 4, 3))
        target = fastdl.tensor(_labels(rng, (2, 3), 4, ignore_index=-100))
    else:
        x = rng.standard_normal((5, 4))
        p = rng.random((5, 4))
        target = fastdl.tensor(p / p.sum(axis=1, keepdims=True))
    _check_finite_differences(
        lambda x: F.cross_entropy(x, target, weight=weight, reduction=reduction, label_smoothing=0.15),
        [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_one_thread_equals_two_threads(restore_threads, reduction, dtype):
    rng = np.random.default_rng(32)
    x = rng.standard_normal((4096, 16)).astype(dtype)  # N*C = 65536: above the grain
    target = _labels(rng, (4096,), 16, ignore_index=-100)
    weight = fastdl.tensor((0.5 + rng.random(16)).astype(dtype))
    upstream = _upstream(rng, (4096,) if reduction == "none" else (), dtype)
    function = lambda x: F.cross_entropy(x, fastdl.tensor(target), weight=weight, reduction=reduction,  # noqa: E731
                                         label_smoothing=0.1)

    def run():
        out, grads, _ = _run_fastdl(function, [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "cross_entropy (loss, grad)")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_cross_entropy_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(33)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    target = _labels(rng, (7,), 5, ignore_index=-100)
    weight = (0.5 + rng.random(5)).astype(np.float32)
    upstream = _upstream(rng, (7,), np.float32)

    def function_of(target_array, weight_array):
        return lambda x: F.cross_entropy(x, fastdl.Tensor(target_array), weight=fastdl.Tensor(weight_array),
                                         reduction="none", label_smoothing=0.1)

    expected = _run_with_layout(function_of(target, weight), [x], upstream, None, None)
    # Labels and class weights as views too (1-D: every layout but the axis swap changes them).
    target_view = _layouts(target).get(layout, target)
    weight_view = _layouts(weight).get(layout, weight)
    actual = _run_with_layout(function_of(target_view, weight_view), [x], upstream, layout, constructor)
    _assert_bitwise_equal(actual, expected, f"cross_entropy with {layout} inputs")
