"""fastdl.optim.Adagrad and RMSprop against torch.optim: the same gradients in, the same
parameters and state out, over 100 steps (torch's single-tensor path, foreach=False)."""
from __future__ import annotations

import numpy as np
import pytest

import fastdl
from fastdl import nn, optim

torch = pytest.importorskip("torch", reason="PyTorch is the oracle for these tests")

SHAPES = [(3, 4), (5,), (2, 3, 4), (1,), (17, 33)]
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def run_both(name, kwargs, dtype, steps=100, seed=0, skip_every=None):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    ours = [nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]
    optimizer = getattr(optim, name)(ours, **kwargs)
    reference = getattr(torch.optim, name)(theirs, foreach=False, **kwargs)
    for step in range(steps):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            if skip_every and i == 1 and step % skip_every == 0:
                p.grad, q.grad = None, None
                continue
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, q.grad = fastdl.tensor(g), torch.tensor(g)
        optimizer.step()
        reference.step()
    return ours, theirs, optimizer, reference


def assert_close(ours, theirs, optimizer, reference, keys, dtype):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(p.data, q.detach().numpy(), **TOLERANCE[dtype],
                                   err_msg=f"parameter {i}")
        for key in keys:
            np.testing.assert_allclose(optimizer.state[p][key], reference.state[q][key].numpy(),
                                       **TOLERANCE[dtype], err_msg=f"{key} of parameter {i}")
        assert float(optimizer.state[p]["step"]) == float(reference.state[q]["step"])


DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])

ADAGRAD_CASES = [
    dict(),
    dict(lr=0.1),
    dict(lr=0.1, lr_decay=0.01),
    dict(lr=0.05, weight_decay=0.1),
    dict(lr=0.05, initial_accumulator_value=0.5, eps=1e-6),
    dict(lr=0.05, lr_decay=0.001, weight_decay=0.02, initial_accumulator_value=0.1, maximize=True),
]


@DTYPES
@pytest.mark.parametrize("kwargs", ADAGRAD_CASES, ids=[str(c) for c in ADAGRAD_CASES])
def test_adagrad_equals_torch(kwargs, dtype):
    ours, theirs, optimizer, reference = run_both("Adagrad", kwargs, dtype)
    assert_close(ours, theirs, optimizer, reference, ["sum"], dtype)


RMSPROP_CASES = [
    dict(),
    dict(lr=0.001, alpha=0.9),
    dict(lr=0.01, eps=1e-6, weight_decay=0.1),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.01, centered=True),
    dict(lr=0.01, alpha=0.3, centered=True),  # the other branch of torch.lerp
    dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.05, maximize=True),
]


def _rmsprop_keys(kwargs):
    return (["square_avg"] + (["momentum_buffer"] if kwargs.get("momentum") else [])
            + (["grad_avg"] if kwargs.get("centered") else []))


@DTYPES
@pytest.mark.parametrize("kwargs", RMSPROP_CASES, ids=[str(c) for c in RMSPROP_CASES])
def test_rmsprop_equals_torch(kwargs, dtype):
    ours, theirs, optimizer, reference = run_both("RMSprop", kwargs, dtype)
    assert_close(ours, theirs, optimizer, reference, _rmsprop_keys(kwargs), dtype)


@pytest.mark.parametrize("name, kwargs", [("Adagrad", dict(lr=0.1, lr_decay=0.05)),
                                          ("RMSprop", dict(momentum=0.9, centered=True))])
def test_parameters_without_a_gradient_are_skipped_like_torch(name, kwargs):
    ours, theirs, optimizer, reference = run_both(name, kwargs, np.float64, skip_every=3)
    keys = ["sum"] if name == "Adagrad" else _rmsprop_keys(kwargs)
    assert_close(ours, theirs, optimizer, reference, keys, np.float64)


INVALID = [
    ("Adagrad", dict(lr=-0.1)), ("Adagrad", dict(lr_decay=-1.0)),
    ("Adagrad", dict(weight_decay=-0.1)), ("Adagrad", dict(initial_accumulator_value=-1.0)),
    ("Adagrad", dict(eps=-1e-3)),
    ("RMSprop", dict(lr=-0.1)), ("RMSprop", dict(eps=-1e-3)), ("RMSprop", dict(momentum=-0.5)),
    ("RMSprop", dict(weight_decay=-0.1)), ("RMSprop", dict(alpha=-0.1)),
]


@pytest.mark.parametrize("name, kwargs", INVALID, ids=[f"{n}-{c}" for n, c in INVALID])
def test_invalid_hyper_parameters_raise_like_torch(name, kwargs):
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError) as ours:
        getattr(optim, name)([nn.Parameter(np.zeros(2))], **kwargs)
    assert str(ours.value) == str(theirs.value)


def test_defaults_match_torch():
    import inspect
    for name in ("Adagrad", "RMSprop"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for key, parameter in ours.items():
            assert key in theirs, f"{name}: {key} is not a torch argument"
            assert parameter.default == theirs[key].default, f"{name}.{key}"


def test_state_dict_round_trip_continues_identically():
    a = [nn.Parameter(np.ones((3, 2)))]
    b = [nn.Parameter(np.ones((3, 2)))]
    first = optim.RMSprop(a, lr=0.01, momentum=0.9, centered=True)
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal((3, 2)) for _ in range(6)]
    for g in grads[:3]:
        a[0].grad = fastdl.tensor(g)
        first.step()
    second = optim.RMSprop(b, lr=0.01, momentum=0.9, centered=True)
    b[0].data[...] = a[0].data
    second.load_state_dict(first.state_dict())
    for g in grads[3:]:
        a[0].grad, b[0].grad = fastdl.tensor(g), fastdl.tensor(g)
        first.step()
        second.step()
    np.testing.assert_array_equal(a[0].data, b[0].data)
