"""The loss family (nll_loss, softmax / log_softmax, cross-entropy with probabilities,
mse / l1 / binary cross-entropy (with logits) / kl_div), reached through fastdl.nn.functional.

Checked as every kernel is (tests/test_kernels.py): against PyTorch float32/float64 (outputs and
the gradients of input and target), against the NumPy reference (fastdl.reference), by finite
differences in float64, 1 thread against 2 threads bitwise, strided inputs against contiguous.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import reference
from test_kernels import (CONSTRUCTORS, FLOAT_DTYPES, LAYOUT_NAMES, REDUCTIONS, _assert_bitwise_equal,  # noqa: F401
                          _assert_close, _check_against_torch, _check_finite_differences, _labels,
                          _layouts, _on_threads, _run_fastdl, _run_with_layout, _upstream,
                          restore_threads, torch)

DTYPE_IDS = ["float32", "float64"]
BIG = (300, 257)  # 77100 elements: above the parallel grain and over several reduction blocks


# ====================================================================== element-wise losses
def _inputs(rng, kind, shape, dtype):
    """(input, target) in each loss's domain, away from kinks for finite differences."""
    if kind == "bce":
        x = 0.05 + 0.9 * rng.random(shape)
        y = rng.random(shape)
    elif kind in ("kl_div", "kl_div_log_target"):
        x = np.log(0.05 + rng.random(shape))
        y = 0.05 + rng.random(shape) if kind == "kl_div" else np.log(0.05 + rng.random(shape))
    elif kind == "l1":
        x = rng.standard_normal(shape)
        y = x + rng.choice([-1.0, 1.0], shape) * (0.1 + rng.random(shape))
    else:
        x = 3 * rng.standard_normal(shape)
        y = rng.random(shape) if kind == "bce_with_logits" else rng.standard_normal(shape)
    return x.astype(dtype), y.astype(dtype)


def _fastdl_and_torch(torch, kind, reduction, weight=None, pos_weight=None):
    """(fastdl function, torch function) of (input, target) with the options captured."""
    def wrap(module, array):
        return None if array is None else module.tensor(array)

    def call(module, functional, x, y):
        if kind == "mse":
            return functional.mse_loss(x, y, reduction=reduction, weight=wrap(module, weight))
        if kind == "l1":
            return functional.l1_loss(x, y, reduction=reduction, weight=wrap(module, weight))
        if kind == "bce":
            return functional.binary_cross_entropy(x, y, weight=wrap(module, weight), reduction=reduction)
        if kind == "bce_with_logits":
            return functional.binary_cross_entropy_with_logits(
                x, y, weight=wrap(module, weight), reduction=reduction, pos_weight=wrap(module, pos_weight))
        return functional.kl_div(x, y, reduction=reduction, log_target=kind == "kl_div_log_target")

    return (lambda x, y: call(fastdl, F, x, y)), (lambda x, y: call(torch, torch.nn.functional, x, y))


KINDS = ["mse", "l1", "bce", "bce_with_logits", "kl_div", "kl_div_log_target"]


def _reductions(kind):
    return REDUCTIONS + (["batchmean"] if kind.startswith("kl_div") else [])


CASES = [(kind, reduction) for kind in KINDS for reduction in _reductions(kind)]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind, reduction", CASES)
def test_elementwise_loss_matches_torch(torch, kind, reduction, dtype):
    rng = np.random.default_rng(40)
    x, y = _inputs(rng, kind, (6, 5, 3), dtype)
    fastdl_function, torch_function = _fastdl_and_torch(torch, kind, reduction)
    _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


REDUCED_CASES = [(kind, reduction) for kind, reduction in CASES if reduction != "none"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind, reduction", REDUCED_CASES)
def test_reduced_loss_gradient_from_the_forward_pass(torch, kind, reduction, dtype):
    """loss.backward() on a reduced loss takes the input gradient the forward pass wrote
    (fused with the loss, from the x and y it had read): PyTorch's gradient, and bitwise the
    backward kernel's, which a second backward (retain_graph) runs: the sum is exactly 2x."""
    rng = np.random.default_rng(48)
    x, y = _inputs(rng, kind, BIG, dtype)
    weight = (0.5 + rng.random(BIG)).astype(dtype) if kind in ("bce", "bce_with_logits", "mse") else None
    fastdl_function, torch_function = _fastdl_and_torch(torch, kind, reduction, weight=weight)
    leaf = fastdl.tensor(x, requires_grad=True)
    loss = fastdl_function(leaf, fastdl.tensor(y))
    loss.backward(retain_graph=True)
    fused = leaf.grad.numpy().copy()
    torch_leaf = torch.tensor(x, requires_grad=True)
    torch_function(torch_leaf, torch.tensor(y)).backward()
    _assert_close(fused, torch_leaf.grad.numpy(), dtype, "fused grad of input")
    loss.backward()
    _assert_bitwise_equal([leaf.grad.numpy()], [2 * fused], "fused + backward kernel's grad")
    with fastdl.no_grad():
        plain = fastdl_function(fastdl.tensor(x, requires_grad=True), fastdl.tensor(y))
    assert not plain.requires_grad
    np.testing.assert_array_equal(plain.numpy(), loss.detach().numpy())


@pytest.mark.parametrize("size", [3 * 8192 + 37, (8 << 20) // 4 + 77], ids=["tails", "streamed"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["mse", "l1"])
def test_unweighted_mse_l1_one_pass_gradient(kind, reduction, dtype, size):
    """Unweighted mse/l1 sum their terms and write the gradient in one loop (a gradient of
    8 MiB or more through streaming stores): the loss is bitwise the gradient-free pass's,
    the gradient bitwise the backward kernel's (a second backward doubles it exactly)."""
    rng = np.random.default_rng(49)
    x, y = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    function = F.mse_loss if kind == "mse" else F.l1_loss
    leaf = fastdl.tensor(x, requires_grad=True)
    loss = function(leaf, fastdl.tensor(y), reduction=reduction)
    loss.backward(retain_graph=True)
    fused = leaf.grad.numpy().copy()
    loss.backward()
    _assert_bitwise_equal([leaf.grad.numpy()], [2 * fused], f"{kind} fused + backward kernel's grad")
    plain = function(fastdl.tensor(x), fastdl.tensor(y), reduction=reduction)
    np.testing.assert_array_equal(plain.numpy(), loss.detach().numpy())
    scale = 1 / size if reduction == "mean" else 1
    expected = 2 * (x - y) * dtype(scale) if kind == "mse" else np.sign(x - y) * dtype(scale)
    np.testing.assert_allclose(fused, expected.astype(dtype), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("weight_shape", [(6, 5), (5,), (1, 5), (6, 1), (1,)],
                         ids=["same", "classes", "1-classes", "rows-expanded", "one"])
@pytest.mark.parametrize("kind", ["bce", "bce_with_logits"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_weights_broadcast_as_torch(torch, kind, weight_shape, reduction, dtype):
    rng = np.random.default_rng(41)
    x, y = _inputs(rng, kind, (6, 5), dtype)
    weight = (0.5 + rng.random(weight_shape)).astype(dtype)
    fastdl_function, torch_function = _fastdl_and_torch(torch, kind, reduction, weight=weight)
    _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("pos_shape", [(5,), (6, 5), (1,)], ids=["classes", "same", "one"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_pos_weight_matches_torch(torch, pos_shape, reduction, dtype):
    rng = np.random.default_rng(42)
    x, y = _inputs(rng, "bce_with_logits", (6, 5), dtype)
    weight = (0.5 + rng.random(5)).astype(dtype)
    pos_weight = (0.2 + 3 * rng.random(pos_shape)).astype(dtype)
    fastdl_function, torch_function = _fastdl_and_torch(torch, "bce_with_logits", reduction,
                                                        weight=weight, pos_weight=pos_weight)
    _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["mse", "l1"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_weight_matches_torch(torch, kind, reduction, dtype):
    rng = np.random.default_rng(43)
    x, y = _inputs(rng, kind, (4, 7), dtype)
    weight = rng.random((4, 7)).astype(dtype)
    fastdl_function, torch_function = _fastdl_and_torch(torch, kind, reduction, weight=weight)
    _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", ["mse", "l1", "kl_div"])
def test_broadcast_target_matches_torch(torch, kind):
    """PyTorch warns and broadcasts input (4, 1, 3) against target (5, 3); so does fastdl."""
    rng = np.random.default_rng(44)
    x, _ = _inputs(rng, kind, (4, 1, 3), np.float64)
    _, y = _inputs(rng, kind, (5, 3), np.float64)
    fastdl_function, torch_function = _fastdl_and_torch(torch, kind, "mean")
    _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


REFERENCE = {
    "mse": lambda x, y, r: reference.mse_loss(x, y, r),
    "l1": lambda x, y, r: reference.l1_loss(x, y, r),
    "bce": lambda x, y, r: reference.binary_cross_entropy(x, y, reduction=r),
    "bce_with_logits": lambda x, y, r: reference.binary_cross_entropy_with_logits(x, y, reduction=r),
    "kl_div": lambda x, y, r: reference.kl_div(x, y, r),
    "kl_div_log_target": lambda x, y, r: reference.kl_div(x, y, r, log_target=True),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind, reduction", CASES)
def test_elementwise_loss_matches_reference(kind, reduction, dtype):
    rng = np.random.default_rng(45)
    x, y = _inputs(rng, kind, (7, 9), dtype)
    fastdl_function, _ = _fastdl_and_torch(None, kind, reduction)
    with fastdl.no_grad():
        out = fastdl_function(fastdl.tensor(x), fastdl.tensor(y)).numpy()
    expected = REFERENCE[kind](x.astype(np.float64), y.astype(np.float64), reduction)
    _assert_close(out, np.asarray(expected), dtype, f"{kind} output")


@pytest.mark.parametrize("kind, reduction", CASES)
def test_elementwise_loss_finite_differences(kind, reduction):
    rng = np.random.default_rng(46)
    x, y = _inputs(rng, kind, (4, 3), np.float64)
    weight = 0.5 + rng.random(3) if kind.startswith("bce") else None
    pos_weight = 0.5 + rng.random(3) if kind == "bce_with_logits" else None
    fastdl_function, _ = _fastdl_and_torch(None, kind, reduction, weight=weight, pos_weight=pos_weight)
    _check_finite_differences(fastdl_function, [x, y], rng, ["input", "target"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind, reduction", CASES)
def test_elementwise_loss_one_thread_equals_two_threads(restore_threads, kind, reduction, dtype):
    rng = np.random.default_rng(47)
    x, y = _inputs(rng, kind, BIG, dtype)
    weight = (0.5 + rng.random(BIG[1])).astype(dtype) if kind.startswith("bce") else None
    fastdl_function, _ = _fastdl_and_torch(None, kind, reduction, weight=weight)
    upstream = _upstream(rng, BIG if reduction == "none" else (), dtype)

    def run():
        out, grads, _ = _run_fastdl(fastdl_function, [x, y], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), f"{kind} (loss, grads)")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("kind", ["mse", "bce", "bce_with_logits", "kl_div"])
def test_elementwise_loss_strided_inputs_equal_contiguous(kind, layout, constructor):
    rng = np.random.default_rng(48)
    x, y = _inputs(rng, kind, (7, 5), np.float32)
    fastdl_function, _ = _fastdl_and_torch(None, kind, "none")
    upstream = _upstream(rng, (7, 5), np.float32)
    expected = _run_with_layout(fastdl_function, [x, y], upstream, None, None)
    actual = _run_with_layout(fastdl_function, [x, y], upstream, layout, constructor)
    _assert_bitwise_equal(actual, expected, f"{kind} with {layout} inputs")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_extreme_logits_match_torch(torch, dtype):
    """Logits of +-1e4 (and +-100): the stable form stays finite and exact."""
    rng = np.random.default_rng(49)
    x = np.array([[-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]] * 2, dtype=dtype)
    y = np.array([[0.0] * 7, [1.0] * 7], dtype=dtype)
    for reduction in REDUCTIONS:
        fastdl_function, torch_function = _fastdl_and_torch(torch, "bce_with_logits", reduction,
                                                            pos_weight=np.full(7, 2.5, dtype))
        out, _, _ = _run_fastdl(fastdl_function, [x, y], rng=rng)
        assert np.all(np.isfinite(out))
        _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_clamps_log_at_minus_100_as_torch(torch, dtype):
    """Inputs exactly 0 and 1, and a denormal: log clamped at -100, as PyTorch."""
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-40, 0.5], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.3], dtype=dtype)
    for reduction in REDUCTIONS:
        fastdl_function, torch_function = _fastdl_and_torch(torch, "bce", reduction)
        with fastdl.no_grad():
            out = fastdl_function(fastdl.tensor(x), fastdl.tensor(y)).numpy()
        expected = torch_function(torch.tensor(x), torch.tensor(y)).numpy()
        _assert_close(out, expected, dtype, f"bce {reduction}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_long_inputs_hard_and_soft_chunks_match_torch(torch, dtype):
    """Long enough for the 16-lane loops and several 512-element chunks: chunks of hard
    labels (one logarithm) next to chunks of soft ones (two), probabilities at 0 and 1,
    denormals, values around exp(-100) where the clamp starts, and a ragged tail."""
    rng = np.random.default_rng(48)
    n = 5 * 512 + 37
    x = rng.random(n)
    special = [0.0, 1.0, 1e-45, 1e-44, 3.7e-44, 3.8e-44, 1e-43, 1e-40, 1e-30, 0.70710677, 0.70710678,
               1 - 1e-7, 1 - 6e-8, 0.5]
    x[:97 * len(special):97] = special
    x[-len(special):] = special
    y = (rng.random(n) < 0.5).astype(np.float64)
    y[512:1024] = rng.random(512)          # one chunk of soft targets
    y[2000] = 0.25                         # one soft target in an otherwise hard chunk
    y[-30:] = rng.random(30)               # soft targets in the tail
    x, y = x.astype(dtype), y.astype(dtype)
    for reduction in REDUCTIONS:
        fastdl_function, torch_function = _fastdl_and_torch(torch, "bce", reduction)
        _check_against_torch(torch, fastdl_function, torch_function, [x, y], rng, ["input", "target"])


# ====================================================================== nll_loss
def _log_probabilities(rng, shape, dtype, axis=1):
    return reference.log_softmax(2 * rng.standard_normal(shape), axis=axis).astype(dtype)


def _nll_functions(torch, target, **kwargs):
    weight = kwargs.pop("weight", None)

    def fastdl_function(x):
        return F.nll_loss(x, fastdl.tensor(target), weight=None if weight is None else fastdl.tensor(weight), **kwargs)

    def torch_function(x):
        return torch.nn.functional.nll_loss(x, torch.tensor(target),
                                            weight=None if weight is None else torch.tensor(weight), **kwargs)

    return fastdl_function, torch_function


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ignore_index", [None, -100, 2], ids=["no-ignored", "ignore-100", "ignore-class2"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("input_shape", [(9, 5), (3, 5, 4, 2), (5,)], ids=["N-C", "N-C-d1-d2", "unbatched"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(torch, reduction, input_shape, weighted, ignore_index, dtype):
    rng = np.random.default_rng(50)
    classes = input_shape[0] if len(input_shape) == 1 else input_shape[1]
    x = _log_probabilities(rng, input_shape, dtype, axis=0 if len(input_shape) == 1 else 1)
    target_shape = () if len(input_shape) == 1 else (input_shape[0],) + input_shape[2:]
    if target_shape == ():
        target = np.array(1 if ignore_index is None else ignore_index, dtype=np.int64)
        if ignore_index is not None and reduction == "mean":
            target = np.array(3, dtype=np.int64)  # an all-ignored mean is NaN in both
    else:
        target = _labels(rng, target_shape, classes, ignore_index)
    kwargs = dict(reduction=reduction)
    if weighted:
        kwargs["weight"] = (0.5 + rng.random(classes)).astype(dtype)
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    fastdl_function, torch_function = _nll_functions(torch, target, **kwargs)
    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_reference(reduction, dtype):
    rng = np.random.default_rng(51)
    x = _log_probabilities(rng, (6, 4, 3), dtype)
    target = _labels(rng, (6, 3), 4, ignore_index=-100)
    weight = (0.5 + rng.random(4)).astype(dtype)
    function = lambda x: F.nll_loss(x, fastdl.tensor(target), weight=fastdl.tensor(weight), reduction=reduction)  # noqa: E731
    out, (grad,), upstream = _run_fastdl(function, [x], rng=rng)
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    _assert_close(out, reference.nll_loss_forward(x64, target, w64, reduction=reduction), dtype, "output")
    _assert_close(grad, reference.nll_loss_backward(x64, target, upstream, w64, reduction=reduction), dtype, "grad")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_finite_differences(reduction):
    rng = np.random.default_rng(52)
    x = rng.standard_normal((4, 5, 2))
    target = fastdl.tensor(_labels(rng, (4, 2), 5, ignore_index=-100))
    weight = fastdl.tensor(0.5 + rng.random(5))
    _check_finite_differences(lambda x: F.nll_loss(x, target, weight=weight, reduction=reduction), [x], rng, ["input"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_one_thread_equals_two_threads(restore_threads, reduction, dtype):
    rng = np.random.default_rng(53)
    x = _log_probabilities(rng, (40000, 3), dtype)
    target = _labels(rng, (40000,), 3, ignore_index=-100)
    weight = fastdl.tensor((0.5 + rng.random(3)).astype(dtype))
    upstream = _upstream(rng, (40000,) if reduction == "none" else (), dtype)
    function = lambda x: F.nll_loss(x, fastdl.tensor(target), weight=weight, reduction=reduction)  # noqa: E731

    def run():
        out, grads, _ = _run_fastdl(function, [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "nll_loss (loss, grad)")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_nll_loss_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(54)
    x = _log_probabilities(rng, (7, 5), np.float32)
    target = _labels(rng, (7,), 5, ignore_index=-100)
    upstream = _upstream(rng, (7,), np.float32)
    function = lambda x: F.nll_loss(x, fastdl.Tensor(_layouts(target).get(layout, target)), reduction="none")  # noqa: E731
    expected = _run_with_layout(lambda x: F.nll_loss(x, fastdl.Tensor(target), reduction="none"), [x], upstream, None, None)
    _assert_bitwise_equal(_run_with_layout(function, [x], upstream, layout, constructor), expected, f"nll_loss {layout}")


# ====================================================================== softmax, log_softmax
SOFTMAX_CASES = [((6, 7), 1), ((6, 7), 0), ((3, 4, 5), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 2), ((9,), 0),
                 ((2, 300, 3), 2), ((2, 3, 300), 1)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
def test_softmax_matches_torch(torch, shape, dim, log, dtype):
    rng = np.random.default_rng(55)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    fastdl_op, torch_op = (F.log_softmax, torch.log_softmax) if log else (F.softmax, torch.softmax)
    _check_against_torch(torch, lambda x: fastdl_op(x, dim), lambda x: torch_op(x, dim), [x], rng, ["input"])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_dtype_argument_matches_torch(torch, log):
    rng = np.random.default_rng(56)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    fastdl_op, torch_op = (F.log_softmax, torch.log_softmax) if log else (F.softmax, torch.softmax)
    out = fastdl_op(fastdl.tensor(x), 1, dtype=np.float64)
    assert out.dtype == np.float64
    expected = torch_op(torch.tensor(x), 1, dtype=torch.float64).numpy()
    _assert_close(out.numpy(), expected, np.float64, "output")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_softmax_extreme_logits_match_torch(torch, dtype):
    x = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, -1e4, -1e4 + 1], [1e5, 1e5 + 1, 1e5 + 2, 1e5 + 3]], dtype=dtype)
    rng = np.random.default_rng(57)
    for fastdl_op, torch_op in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        _check_against_torch(torch, lambda x: fastdl_op(x, 1), lambda x: torch_op(x, 1), [x], rng, ["input"])  # noqa: B023


@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES[:5])
def test_softmax_matches_reference_and_finite_differences(shape, dim):
    rng = np.random.default_rng(58)
    x = rng.standard_normal(shape)
    for log in (False, True):
        op = F.log_softmax if log else F.softmax
        out, (grad,), upstream = _run_fastdl(lambda x: op(x, dim), [x], rng=rng)  # noqa: B023
        expected = reference.log_softmax(x, axis=dim) if log else reference.softmax(x, axis=dim)
        _assert_close(out, expected, np.float64, "output")
        _assert_close(grad, reference.softmax_backward(expected, upstream, dim, log), np.float64, "grad")
        _check_finite_differences(lambda x: op(x, dim), [x], rng, ["input"])  # noqa: B023


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, dim", [((4096, 33), 1), ((4, 33, 1024), 1)])
def test_softmax_one_thread_equals_two_threads(restore_threads, shape, dim, dtype):
    rng = np.random.default_rng(59)
    x = rng.standard_normal(shape).astype(dtype)
    upstream = _upstream(rng, shape, dtype)

    def run():
        results = []
        for op in (F.softmax, F.log_softmax):
            out, grads, _ = _run_fastdl(lambda x: op(x, dim), [x], upstream)  # noqa: B023
            results += [out] + grads
        return results

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "softmax / log_softmax")


@pytest.mark.parametrize("constructor", CONSTRUCTORS)
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_softmax_strided_inputs_equal_contiguous(layout, constructor):
    rng = np.random.default_rng(60)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    upstream = _upstream(rng, (6, 5), np.float32)
    for op in (F.softmax, F.log_softmax):
        function = lambda x: op(x, 1)  # noqa: E731,B023
        expected = _run_with_layout(function, [x], upstream, None, None)
        _assert_bitwise_equal(_run_with_layout(function, [x], upstream, layout, constructor), expected, layout)


# ====================================================================== cross-entropy with probabilities
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_large_matches_torch(torch, reduction, dtype):
    """Many classes, a weight and smoothing, K-dimensional."""
    rng = np.random.default_rng(61)
    x = (4 * rng.standard_normal((3, 70, 2, 2))).astype(dtype)
    p = rng.random(x.shape)
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    weight = (0.5 + rng.random(70)).astype(dtype)

    def fastdl_function(x):
        return F.cross_entropy(x, fastdl.tensor(p), weight=fastdl.tensor(weight), reduction=reduction, label_smoothing=0.3)

    def torch_function(x):
        return torch.nn.functional.cross_entropy(x, torch.tensor(p), weight=torch.tensor(weight),
                                                 reduction=reduction, label_smoothing=0.3)

    _check_against_torch(torch, fastdl_function, torch_function, [x], rng, ["input"])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_match_reference(reduction):
    rng = np.random.default_rng(62)
    x = 2 * rng.standard_normal((6, 5))
    p = rng.random((6, 5))
    p /= p.sum(axis=1, keepdims=True)
    weight = 0.5 + rng.random(5)
    function = lambda x: F.cross_entropy(x, fastdl.tensor(p), weight=fastdl.tensor(weight), reduction=reduction,  # noqa: E731
                                         label_smoothing=0.2)
    out, (grad,), upstream = _run_fastdl(function, [x], rng=rng)
    _assert_close(out, reference.cross_entropy_probabilities_forward(x, p, weight, 0.2, reduction), np.float64, "output")
    _assert_close(grad, reference.cross_entropy_probabilities_backward(x, p, upstream, weight, 0.2, reduction),
                  np.float64, "grad")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_one_thread_equals_two_threads(restore_threads, reduction, dtype):
    rng = np.random.default_rng(63)
    x = rng.standard_normal((4096, 17)).astype(dtype)
    p = rng.random((4096, 17))
    p = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    upstream = _upstream(rng, (4096,) if reduction == "none" else (), dtype)
    function = lambda x: F.cross_entropy(x, fastdl.tensor(p), reduction=reduction, label_smoothing=0.1)  # noqa: E731

    def run():
        out, grads, _ = _run_fastdl(function, [x], upstream)
        return [out] + grads

    _assert_bitwise_equal(_on_threads(1, run), _on_threads(2, run), "cross_entropy probabilities")


def test_cross_entropy_probabilities_extreme_logits_match_torch(torch):
    rng = np.random.default_rng(64)
    x = rng.standard_normal((5, 6)).astype(np.float32) * 1e4
    p = rng.random((5, 6)).astype(np.float32)
    p /= p.sum(axis=1, keepdims=True)
    _check_against_torch(torch, lambda x: F.cross_entropy(x, fastdl.tensor(p), reduction="sum"),
                         lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(p), reduction="sum"),
                         [x], rng, ["input"])


# ====================================================================== modules
def test_loss_modules_equal_functional(torch):
    rng = np.random.default_rng(65)
    x, y = _inputs(rng, "bce", (4, 3), np.float32)
    weight = fastdl.tensor((0.5 + rng.random(3)).astype(np.float32))
    X, Y = fastdl.tensor(x), fastdl.tensor(y)
    pairs = [
        (nn.MSELoss(reduction="sum")(X, Y), F.mse_loss(X, Y, reduction="sum")),
        (nn.L1Loss()(X, Y), F.l1_loss(X, Y)),
        (nn.BCELoss(weight=weight)(X, Y), F.binary_cross_entropy(X, Y, weight=weight)),
        (nn.BCEWithLogitsLoss(pos_weight=weight)(X, Y), F.binary_cross_entropy_with_logits(X, Y, pos_weight=weight)),
        (nn.KLDivLoss(reduction="batchmean", log_target=True)(X, Y), F.kl_div(X, Y, reduction="batchmean", log_target=True)),
        (nn.NLLLoss(weight=weight, reduction="none")(X, fastdl.tensor([0, 2, 1, 1])),
         F.nll_loss(X, fastdl.tensor([0, 2, 1, 1]), weight=weight, reduction="none")),
        (nn.LogSoftmax(dim=1)(X), F.log_softmax(X, 1)),
        (nn.Softmax(dim=0)(X), F.softmax(X, 0)),
    ]
    for module_out, functional_out in pairs:
        _assert_bitwise_equal([module_out.numpy()], [functional_out.numpy()], "module vs functional")
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight.numpy()))(torch.tensor(x), torch.tensor(y))
    _assert_close(pairs[3][0].numpy(), expected.numpy(), np.float32, "BCEWithLogitsLoss")
