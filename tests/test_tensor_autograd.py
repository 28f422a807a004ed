"""fastdl.Tensor and autograd against PyTorch, micrograd style.

Every expression is written once, as ``fn(lib, *leaves)`` using only the API the two
libraries share, and run twice: on fastdl leaves and on torch leaves built from the same
float64 NumPy data. Values and the gradient of every leaf must agree to float64 rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastdl

torch = pytest.importorskip("torch", reason="PyTorch is the oracle for these tests")

FLOAT64 = dict(rtol=1e-12, atol=1e-12)
FLOAT32 = dict(rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------------- helpers
def _dtype_name(t) -> str:
    """'float32', 'int64', 'bool'... for a fastdl or torch tensor."""
    if isinstance(t, torch.Tensor):
        return str(t.dtype).replace("torch.", "")
    return t.dtype.name


def _array(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return t.detach().numpy()


def compare_with_torch(fn, *arrays, tol=FLOAT64, grad_seed=0):
    """Run fn(lib, *leaves) in fastdl and in torch on leaves made from ``arrays``; check the
    output (shape, dtype, values) and, after backward, every leaf's gradient."""
    ours = [fastdl.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_ours, out_theirs = fn(fastdl, *ours), fn(torch, *theirs)
    assert out_ours.shape == tuple(out_theirs.shape)
    assert _dtype_name(out_ours) == _dtype_name(out_theirs)
    np.testing.assert_allclose(_array(out_ours), _array(out_theirs), **tol)
    if out_theirs.numel() == 1 and out_theirs.ndim == 0:
        out_ours.backward()
        out_theirs.backward()
    else:  # a non-trivial upstream gradient exercises the backward closures fully
        upstream = np.random.default_rng(grad_seed).standard_normal(out_ours.shape)
        upstream = upstream.astype(_dtype_name(out_ours))
        out_ours.backward(fastdl.tensor(upstream))
        out_theirs.backward(torch.tensor(upstream))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if b.grad is None:
            assert a.grad is None, f"leaf {i}: torch has no gradient, fastdl has one"
            continue
        assert a.grad is not None, f"leaf {i}: fastdl has no gradient"
        assert a.grad.shape == a.shape and a.grad.dtype == a.dtype, f"leaf {i}"
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **tol, err_msg=f"leaf {i}")
    return out_ours


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _positive(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# ---------------------------------------------------------------------- creation
@pytest.mark.parametrize("data", [
    1.5, 3, True, [1, 2], (1, 2), [1, 2.5], [[1, 2], [3, 4]], [[1.0, 2.0], [3.0, 4.0]],
    [True, False], [],
    np.array([1.0, 2.0]), np.array([1.0, 2.0], dtype=np.float32),
    np.array([1.0, 2.0], dtype=np.float16), np.array([1, 2], dtype=np.int32),
    np.array([1, 2], dtype=np.uint8), np.array(2.0), np.float64(1.5), np.float32(2.0),
    np.int32(3), np.int64(4),
], ids=repr)
def test_tensor_infers_dtype_like_torch(data):
    ours, theirs = fastdl.tensor(data), torch.tensor(data)
    assert _dtype_name(ours) == _dtype_name(theirs)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("data, dtype", [
    ([1, 2], "float64"), ([1.5, 2.5], "float64"), (np.array([1.0, 2.0]), "float32"),
    ([1.7, -2.7, 0.5], "int64"), ([1, 0, 2], "bool"), (np.array([0.25], dtype=np.float32), "float64"),
])
def test_tensor_dtype_argument_like_torch(data, dtype):
    ours = fastdl.tensor(data, dtype=getattr(fastdl, dtype) if dtype != "bool" else fastdl.bool_)
    theirs = torch.tensor(data, dtype=getattr(torch, dtype))
    assert _dtype_name(ours) == _dtype_name(theirs) == dtype
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())  # int casts truncate toward 0


@pytest.mark.parametrize("data", [
    "abc", ["a", "b"], np.array(["x", "y"]), object(), [object()],
    np.array([1, "a"], dtype=object), 1 + 2j, [1j, 2.0], np.array([1 + 1j]),
], ids=repr)
def test_tensor_refuses_strings_objects_and_complex(data):
    with pytest.raises(TypeError):
        fastdl.tensor(data)


def test_tensor_copies_its_source_but_from_numpy_shares_it():
    source = np.arange(4.0)
    copied, shared = fastdl.tensor(source), fastdl.from_numpy(source)
    reference_copy, reference_shared = torch.tensor(source), torch.from_numpy(source)
    source[0] = 42.0
    assert copied.numpy()[0] == reference_copy[0].item() == 0.0
    assert shared.numpy()[0] == reference_shared[0].item() == 42.0


def test_basic_attributes_match_torch():
    data = _normal(2, 3)
    ours, theirs = fastdl.tensor(data), torch.tensor(data)
    assert ours.shape == tuple(theirs.shape) == (2, 3)
    assert ours.ndim == theirs.ndim and ours.numel() == theirs.numel() and len(ours) == len(theirs)
    assert ours.size(1) == theirs.size(1) and ours.size(-1) == theirs.size(-1)
    assert ours.requires_grad is theirs.requires_grad is False
    assert ours.is_leaf and ours.grad is None and ours.grad_fn is None
    assert isinstance(ours.numpy(), np.ndarray)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("value", [2.5, 7, True])
def test_item_returns_a_python_scalar_like_torch(value):
    ours, theirs = fastdl.tensor([value]).item(), torch.tensor([value]).item()
    assert type(ours) is type(theirs) and ours == theirs
    with pytest.raises((ValueError, RuntimeError)):
        fastdl.tensor([1.0, 2.0]).item()


def test_requires_grad_rules_match_torch():
    x = fastdl.tensor([1.0, 2.0], requires_grad=True)
    assert x.requires_grad and x.is_leaf
    with pytest.raises(RuntimeError):
        x.numpy()  # torch: "Can't call numpy() on Tensor that requires grad"
    with pytest.raises(RuntimeError):
        torch.tensor([1.0], requires_grad=True).numpy()
    with pytest.raises(RuntimeError):
        fastdl.tensor([1, 2], requires_grad=True)  # only floating point tensors
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
    assert not (fastdl.tensor([1.0]) * 2).requires_grad


def test_detach_shares_memory_and_leaves_the_graph():
    x = fastdl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None
    d = x.detach()
    assert np.shares_memory(d.numpy(), x.data)  # torch.detach shares storage too
    z = (x * y).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])  # y is a constant


# ---------------------------------------------------------------------- grad mode
def test_no_grad_context_records_nothing_and_restores():
    x = fastdl.tensor([1.0, 2.0], requires_grad=True)
    with fastdl.no_grad():
        assert not fastdl.is_grad_enabled()
        y = x * 2 + 1
        with fastdl.enable_grad():
            z = x * 3
        assert not fastdl.is_grad_enabled()
    assert fastdl.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(KeyError):
        with fastdl.no_grad():
            raise KeyError("boom")
    assert fastdl.is_grad_enabled()


def test_no_grad_as_decorator_like_torch():
    @fastdl.no_grad()
    def ours(t):
        return t * 2, fastdl.is_grad_enabled()

    @torch.no_grad()
    def theirs(t):
        return t * 2, torch.is_grad_enabled()

    y, enabled = ours(fastdl.tensor([1.0], requires_grad=True))
    y_ref, enabled_ref = theirs(torch.tensor([1.0], requires_grad=True))
    assert enabled is enabled_ref is False
    assert y.requires_grad is y_ref.requires_grad is False
    assert fastdl.is_grad_enabled()
    assert ours.__name__ == "ours"


def test_set_grad_enabled_as_function_and_context():
    x = fastdl.tensor([1.0], requires_grad=True)
    try:
        fastdl.set_grad_enabled(False)
        assert not (x * 2).requires_grad
    finally:
        fastdl.set_grad_enabled(True)
    with fastdl.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad


# ---------------------------------------------------------------------- arithmetic
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)),
                    ((), (2, 3)), ((5, 1), (1, 5)), ((2, 3, 1, 4), (3, 5, 1))]


@pytest.mark.parametrize("shape_a, shape_b", BROADCAST_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "mixed"])
def test_broadcasting_arithmetic_values_and_grads(shape_a, shape_b, op):
    functions = {
        "add": lambda lib, a, b: a + b,
        "sub": lambda lib, a, b: a - b,
        "mul": lambda lib, a, b: a * b,
        "div": lambda lib, a, b: a / b,
        "mixed": lambda lib, a, b: (a * b - a / b + b) * (-a) + b ** 2,
    }
    compare_with_torch(functions[op], _normal(*shape_a, seed=1), _positive(*shape_b, seed=2))
    compare_with_torch(functions[op], _positive(*shape_b, seed=3), _normal(*shape_a, seed=4))


@settings(max_examples=60, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       seed=st.integers(0, 2 ** 16))
def test_broadcasting_any_compatible_shapes(shapes, seed):
    shape_a, shape_b = shapes.input_shapes
    compare_with_torch(lambda lib, a, b: (a + b) * a - b / (a * a + 1),
                       _normal(*shape_a, seed=seed), _normal(*shape_b, seed=seed + 1), grad_seed=seed)


def test_python_scalars_on_either_side():
    def fn(lib, a, b):
        return (2 - a) * 3.5 + 1 / b - b / 4 + 0.5 * a ** 3 + b ** 0.5 + b ** -1.5 - (-a) + 2 + a - 1

    compare_with_torch(fn, _normal(3, 4), _positive(3, 4, seed=1))


def _scalar_cases():
    for dtype in ("float32", "int64", "int32", "bool"):
        for scalar in (2, 2.5, True):
            for op in ("add", "sub", "mul", "div", "rsub", "rdiv", "pow"):
                if op in ("sub", "rsub") and (dtype == "bool" or scalar is True):
                    continue  # torch refuses subtraction with a bool
                if op == "pow" and (dtype == "bool" or scalar is True):
                    continue
                yield dtype, scalar, op


@pytest.mark.parametrize("dtype, scalar, op", list(_scalar_cases()))
def test_tensor_with_python_scalar_result_dtype_like_torch(dtype, scalar, op):
    data = np.array([1, 2, 3]).astype(dtype) if dtype != "bool" else np.array([True, False, True])
    functions = {"add": lambda t: t + scalar, "sub": lambda t: t - scalar,
                 "mul": lambda t: t * scalar, "div": lambda t: t / scalar,
                 "rsub": lambda t: scalar - t, "rdiv": lambda t: scalar / t,
                 "pow": lambda t: t ** scalar}
    with np.errstate(divide="ignore"):  # scalar / False is inf in both libraries
        ours, theirs = functions[op](fastdl.tensor(data)), functions[op](torch.tensor(data))
    assert _dtype_name(ours) == _dtype_name(theirs)
    np.testing.assert_allclose(ours.numpy().astype(float), theirs.numpy().astype(float), rtol=1e-6)


@pytest.mark.parametrize("dtype_a, dtype_b", [
    ("int64", "float32"), ("float32", "int64"), ("int32", "float32"), ("float32", "float64"),
    ("int64", "float64"), ("int64", "int32"), ("float32", "float32"),
])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_tensor_tensor_result_dtype_like_torch(dtype_a, dtype_b, op):
    a, b = np.array([1, 2, 3]).astype(dtype_a), np.array([4, 5, 6]).astype(dtype_b)
    functions = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
                 "mul": lambda x, y: x * y, "div": lambda x, y: x / y}
    ours = functions[op](fastdl.tensor(a), fastdl.tensor(b))
    theirs = functions[op](torch.tensor(a), torch.tensor(b))
    assert _dtype_name(ours) == _dtype_name(theirs)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_float32_stays_float32_and_matches_torch():
    def fn(lib, a, b):
        return ((a * b + 1.5) / (b * b + 1) - a ** 2).tanh().exp().sum(dim=0)

    out = compare_with_torch(fn, _normal(4, 3).astype(np.float32),
                             _normal(3, seed=1).astype(np.float32), tol=FLOAT32)
    assert out.dtype == np.float32


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
    ((5, 2, 3), (5, 3, 4)), ((2, 1, 3, 4), (5, 4, 2)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)),
    ((1, 2, 3), (4, 3, 2)),
])
def test_matmul_values_and_grads(shape_a, shape_b):
    compare_with_torch(lambda lib, a, b: a @ b, _normal(*shape_a, seed=1), _normal(*shape_b, seed=2))


def test_matmul_refuses_scalars_and_mismatched_shapes():
    with pytest.raises(RuntimeError):
        fastdl.tensor(2.0) @ fastdl.tensor([1.0])
    with pytest.raises(RuntimeError):
        fastdl.ones(2, 3) @ fastdl.ones(4, 2)


# ---------------------------------------------------------------------- shape ops
SHAPE_OPS = {
    "reshape": lambda lib, x: x.reshape(4, 6) * x.reshape(-1, 6).exp(),
    "reshape_tuple": lambda lib, x: x.reshape((6, -1)),
    "view": lambda lib, x: x.view(2, 12) * 2,
    "flatten": lambda lib, x: x.flatten(),
    "flatten_range": lambda lib, x: x.flatten(1) + x.flatten(0, 1).reshape(2, 12),
    "permute": lambda lib, x: x.permute(2, 0, 1),
    "permute_negative": lambda lib, x: x.permute(-1, 0, -2) * x.permute(2, 0, 1),
    "transpose": lambda lib, x: x.transpose(0, 2),
    "transpose_negative": lambda lib, x: x.transpose(-1, -2),
    "unsqueeze": lambda lib, x: x.unsqueeze(0) * x.unsqueeze(-1).sum(dim=-1),
    "unsqueeze_middle": lambda lib, x: x.unsqueeze(1),
    "squeeze": lambda lib, x: x.reshape(1, 2, 1, 12).squeeze(),
    "squeeze_dim": lambda lib, x: x.reshape(1, 2, 1, 12).squeeze(2) + x.reshape(1, 2, 1, 12).squeeze(-2),
    "squeeze_not_one": lambda lib, x: x.squeeze(1),
    "matrix_T": lambda lib, x: x.reshape(4, 6).T @ x.reshape(4, 6),
}


@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_shape_ops_values_and_grads(name):
    compare_with_torch(SHAPE_OPS[name], _normal(2, 3, 4))


def test_reshape_refuses_a_wrong_size():
    with pytest.raises(RuntimeError):
        fastdl.ones(2, 3).reshape(4, 2)


def test_flatten_of_a_scalar_like_torch():
    assert fastdl.tensor(3.0).flatten().shape == tuple(torch.tensor(3.0).flatten().shape) == (1,)


# ---------------------------------------------------------------------- reductions
REDUCTIONS = {
    "sum": lambda lib, x: x.sum(),
    "sum_dim0": lambda lib, x: x.sum(dim=0),
    "sum_dim_neg": lambda lib, x: x.sum(dim=-1),
    "sum_keepdim": lambda lib, x: x.sum(dim=1, keepdim=True),
    "sum_tuple": lambda lib, x: x.sum(dim=(0, 2)),
    "sum_tuple_keepdim": lambda lib, x: x.sum(dim=(0, -1), keepdim=True),
    "mean": lambda lib, x: x.mean(),
    "mean_dim": lambda lib, x: x.mean(dim=1),
    "mean_keepdim": lambda lib, x: x.mean(dim=-1, keepdim=True),
    "mean_tuple": lambda lib, x: x.mean(dim=(1, 2)),
    "max_all": lambda lib, x: x.max(),
    "max_dim": lambda lib, x: x.max(dim=1)[0],
    "max_dim_keepdim": lambda lib, x: x.max(dim=-1, keepdim=True)[0] * x,
    "max_dim0": lambda lib, x: x.max(0)[0],
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions_values_and_grads(name):
    compare_with_torch(REDUCTIONS[name], _normal(3, 4, 5))  # continuous data: no ties


@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), (-1, False), (2, True)])
def test_max_indices_and_argmax_like_torch(dim, keepdim):
    data = _normal(3, 4, 5)
    ours, theirs = fastdl.tensor(data), torch.tensor(data)
    if dim is None:
        assert ours.argmax().item() == theirs.argmax().item()
        assert ours.max().item() == theirs.max().item()
        return
    values, indices = ours.max(dim=dim, keepdim=keepdim)
    values_ref, indices_ref = theirs.max(dim=dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.numpy(), values_ref.numpy())
    np.testing.assert_array_equal(indices.numpy(), indices_ref.numpy())
    assert indices.dtype == np.int64
    argmax = ours.argmax(dim=dim, keepdim=keepdim)
    argmax_ref = theirs.argmax(dim=dim, keepdim=keepdim)
    assert argmax.shape == tuple(argmax_ref.shape) and argmax.dtype == np.int64
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref.numpy())


def test_mean_of_integers_is_refused_like_torch():
    with pytest.raises(RuntimeError):
        torch.tensor([1, 2]).mean()
    with pytest.raises(RuntimeError):
        fastdl.tensor([1, 2]).mean()


def test_reduction_dim_out_of_range():
    with pytest.raises(IndexError):
        fastdl.ones(2, 3).sum(dim=2)


# ---------------------------------------------------------------------- indexing
INDEXING = {
    "int": lambda lib, x: x[1],
    "negative_int": lambda lib, x: x[-1, 2],
    "slice": lambda lib, x: x[1:, ::2],
    "ellipsis": lambda lib, x: x[..., 1],
    "none": lambda lib, x: x[:, None, 1:3],
    "list": lambda lib, x: x[[0, 2]],
    "repeated_list": lambda lib, x: x[[0, 2, 0, 0]],
    "repeated_tensor": lambda lib, x: x[lib.tensor([3, 1, 3])] * 2,
    "column_repeats": lambda lib, x: x[:, [1, 1, 4, 1]],
    "pairs_repeated": lambda lib, x: x[lib.tensor([0, 1, 0]), lib.tensor([2, 2, 2])],
    "broadcast_fancy": lambda lib, x: x[lib.tensor([[0], [2]]), lib.tensor([1, 3, 1])],
    "bool_mask": lambda lib, x: x[x > 0],
    "diamond": lambda lib, x: x[0] * x[1] + x[0].exp() + x[[0, 0]].sum(dim=0),
}


@pytest.mark.parametrize("name", list(INDEXING))
def test_indexing_values_and_grads(name):
    compare_with_torch(INDEXING[name], _normal(4, 5))


def test_index_result_is_a_copy_like_torch_advanced_indexing():
    x = fastdl.tensor([1.0, 2.0, 3.0])
    y = x[[0, 1]]
    y.data[0] = 9.0
    assert x.numpy()[0] == 1.0


# ---------------------------------------------------------------------- elementwise functions
ELEMENTWISE = {
    "exp": lambda lib, x: x.exp(),
    "log": lambda lib, x: x.log(),
    "sqrt": lambda lib, x: x.sqrt(),
    "tanh": lambda lib, x: x.tanh(),
    "sigmoid": lambda lib, x: x.sigmoid(),
    "chain": lambda lib, x: x.sqrt().log().tanh().sigmoid().exp(),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_functions_values_and_grads(name):
    compare_with_torch(ELEMENTWISE[name], _positive(3, 4))


@pytest.mark.parametrize("name", ["exp", "tanh", "sigmoid"])
def test_elementwise_functions_on_both_signs(name):
    data = np.concatenate([_normal(20) * 5, [-30.0, 30.0, 0.0]])
    compare_with_torch(ELEMENTWISE[name], data)


def test_sigmoid_is_stable_for_large_inputs():
    data = np.array([-800.0, -100.0, 0.0, 100.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is harmless
        ours = fastdl.tensor(data).sigmoid().numpy()
    np.testing.assert_allclose(ours, torch.tensor(data).sigmoid().numpy(), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------- composite graphs
def test_micrograd_sanity_check():
    def fn(lib, x):
        z = 2 * x + 2 + x
        q = z.relu() + z * x
        h = (z * z).relu()
        y = h + q + q * x
        return y

    compare_with_torch(fn, np.array(-4.0))


def test_micrograd_more_ops():
    def fn(lib, a, b):
        c = a + b
        d = a * b + b ** 3
        c = c + c + 1
        c = c + 1 + c + (-a)
        d = d + d * 2 + (b + a).relu()
        d = d + 3 * d + (b - a).relu()
        e = c - d
        f = e ** 2
        g = f / 2.0
        g = g + 10.0 / f
        return g

    out = compare_with_torch(fn, np.array(-4.0), np.array(2.0))
    assert abs(out.item() - 24.70408163265306) < 1e-12  # micrograd's own expected value


def test_diamond_and_reused_subexpressions():
    def fn(lib, x, w, y):
        h = (x @ w).tanh()                      # (4, 5), used by three branches
        a = h * h.sigmoid()                     # h twice in one product
        b = (h + 1.5).exp().log()               # a path through exp and log
        c = (a - b * y).sum(dim=1, keepdim=True)
        d = c / (1 + (x ** 2).sum(dim=1, keepdim=True)).sqrt()
        return (d * a.mean(dim=0)).sum() + a.max() + h[[0, 2, 0], 1:].sum() + (x * x).mean()

    compare_with_torch(fn, _normal(4, 3, seed=1), _normal(3, 5, seed=2), _normal(5, seed=3))


def test_mlp_like_graph_with_shared_weight():
    def fn(lib, x, w1, b1, w2):
        hidden = (x @ w1.transpose(0, 1) + b1).relu()
        logits = hidden @ w2 @ w1          # w1 is used twice, in two roles
        return (logits.exp().sum(dim=1).log() - logits.max(dim=1)[0]).mean()

    compare_with_torch(fn, _normal(6, 4, seed=1), _normal(3, 4, seed=2), _normal(3, seed=3),
                       _normal(3, 3, seed=4))


def test_a_leaf_that_does_not_require_grad_gets_none():
    x = fastdl.tensor(_normal(3), requires_grad=True)
    constant = fastdl.tensor(_normal(3, seed=1))
    (x * constant).sum().backward()
    assert constant.grad is None
    np.testing.assert_array_equal(x.grad.numpy(), constant.numpy())


def test_retain_grad_on_an_intermediate_like_torch():
    data = _normal(3)
    x, x_ref = fastdl.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    y, y_ref = x.exp(), x_ref.exp()
    y.retain_grad()
    y_ref.retain_grad()
    (y * y).sum().backward()
    (y_ref * y_ref).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), y_ref.grad.numpy(), **FLOAT64)
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), **FLOAT64)


# ---------------------------------------------------------------------- backward() semantics
def test_gradients_accumulate_across_backward_calls_like_torch():
    data = _normal(2, 3)
    x, x_ref = fastdl.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    for _ in range(2):
        (x.exp() * x).sum().backward()
        (x_ref.exp() * x_ref).sum().backward()
    (x * 3).mean().backward()
    (x_ref * 3).mean().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), **FLOAT64)


def test_backward_of_a_non_scalar_needs_a_gradient():
    x = fastdl.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        (x * 2).backward()
    with pytest.raises(RuntimeError):
        (torch.tensor([1.0, 2.0], requires_grad=True) * 2).backward()


def test_backward_with_an_explicit_gradient():
    gradient = _normal(2, 3, seed=5)

    def run(lib):
        x = lib.tensor(_normal(2, 3), requires_grad=True)
        y = x.tanh() * x
        y.backward(gradient=lib.tensor(gradient))
        return x.grad.numpy()

    np.testing.assert_allclose(run(fastdl), run(torch), **FLOAT64)
    with pytest.raises(RuntimeError):
        x = fastdl.tensor(_normal(2, 3), requires_grad=True)
        (x * 2).backward(gradient=fastdl.ones(3, 2, dtype=fastdl.float64))


def test_backward_of_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError):
        fastdl.tensor(1.0).backward()


def test_second_backward_without_retain_graph_raises_like_torch():
    for lib in (fastdl, torch):
        x = lib.tensor([0.5, 1.5], requires_grad=True)
        y = (x.exp() * x).sum()
        y.backward()
        with pytest.raises(RuntimeError):
            y.backward()


def test_retain_graph_allows_a_second_backward_and_accumulates():
    results = []
    for lib in (fastdl, torch):
        x = lib.tensor(_normal(3), requires_grad=True)
        y = (x.exp() * x.tanh()).sum()
        y.backward(retain_graph=True)
        once = x.grad.numpy().copy()
        y.backward()
        np.testing.assert_allclose(x.grad.numpy(), 2 * once, **FLOAT64)
        results.append(x.grad.numpy().copy())
    np.testing.assert_allclose(results[0], results[1], **FLOAT64)


def test_leaf_grad_dtype_follows_the_leaf():
    x = fastdl.tensor(_normal(3).astype(np.float32), requires_grad=True)
    (x * fastdl.tensor(_normal(3, seed=1))).sum().backward()  # float64 constant: float64 product
    assert x.grad.dtype == np.float32


def test_no_grad_as_a_bare_decorator():
    @fastdl.no_grad
    def double(x):
        return x * 2, fastdl.is_grad_enabled()

    out, enabled = double(fastdl.tensor([1.0], requires_grad=True))
    assert not enabled and not out.requires_grad and fastdl.is_grad_enabled()


def test_zero_dim_float64_beside_float32_keeps_float32_as_torch():
    torch = pytest.importorskip("torch")
    a, b = fastdl.tensor([1.0, 2.0]), fastdl.tensor(3.0, dtype=fastdl.float64)
    ta, tb = torch.tensor([1.0, 2.0]), torch.tensor(3.0, dtype=torch.float64)
    for got, want in (((a * b), (ta * tb)), ((b + a), (tb + ta)), ((a / b), (ta / tb))):
        assert str(got.dtype) == str(want.dtype).replace("torch.", "")


def test_adopted_leaf_gradients_never_alias():
    """Leaves adopt fresh gradient arrays instead of copying them; no two leaves (and never
    the caller's seed) may end up sharing memory."""
    a = fastdl.tensor([1.0, 2.0], requires_grad=True)
    b = fastdl.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.data, b.grad.data)
    seed = np.ones(2, np.float32)
    x = fastdl.tensor([1.0, 2.0], requires_grad=True)
    w = fastdl.tensor([0.0, 0.0], requires_grad=True)
    (x.clone() + w).backward(seed)
    for grad in (x.grad.data, w.grad.data):
        assert not np.shares_memory(grad, seed)
    assert not np.shares_memory(x.grad.data, w.grad.data)
    x.grad.data[:] = 5
    assert seed[0] == 1 and w.grad.data[0] == 1
