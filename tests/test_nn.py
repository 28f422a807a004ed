"""fastdl.nn modules, state dicts and initialization against torch.nn.

Each model is built twice from one description, ``build(lib)`` with lib = fastdl or torch,
so names, traversal order, state-dict keys and (after loading the same weights) outputs can
be compared one to one. Initialization is compared by distribution: bounds and variance
against PyTorch's rules, and a two-sample Kolmogorov-Smirnov test against torch's own draws.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastdl
from fastdl import nn

torch = pytest.importorskip("torch", reason="PyTorch is the oracle for these tests")
stats = pytest.importorskip("scipy.stats", reason="scipy gives the distribution tests")


# ---------------------------------------------------------------------- models built twice
def small_cnn(lib):
    """Sequential(Conv2d, ReLU, MaxPool2d, Flatten, Linear) for (N, 3, 8, 8) inputs."""
    return lib.nn.Sequential(
        lib.nn.Conv2d(3, 8, 3, padding=1), lib.nn.ReLU(), lib.nn.MaxPool2d(2), lib.nn.Flatten(),
        lib.nn.Linear(8 * 4 * 4, 10))


def nested_net(lib):
    """A user-defined Module with nested children, a bare Parameter, buffers, a bias-free
    layer and a layer registered under two names (shared parameters)."""

    class Block(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib.nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.act = lib.nn.ReLU()
            self.register_buffer("running", lib.zeros(4))
            self.register_buffer("scratch", lib.ones(2), persistent=False)

        def forward(self, x):
            return self.act(self.conv(x))

    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = lib.nn.Conv2d(1, 4, 3, padding=1)
            self.blocks = lib.nn.Sequential(Block(), Block())
            self.scale = lib.nn.Parameter(lib.ones(1))
            self.flatten = lib.nn.Flatten()
            self.head = lib.nn.Linear(4 * 6 * 6, 3)
            self.alias = self.head  # the same layer twice: its parameters appear once
            self.not_a_parameter = lib.ones(2)  # a plain tensor attribute is not registered

        def forward(self, x):
            return self.head(self.flatten(self.blocks(self.stem(x)) * self.scale))

    return Net()


def _to_numpy_state(torch_model):
    return {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}


def _forward_both(ours, theirs, x: np.ndarray):
    out_ours = ours(fastdl.tensor(x))
    with torch.no_grad():
        out_theirs = theirs(torch.tensor(x))
    return out_ours.detach().numpy(), out_theirs.numpy()


# ---------------------------------------------------------------------- registration and names
@pytest.mark.parametrize("build", [small_cnn, nested_net])
def test_names_and_traversal_equal_torch(build):
    ours, theirs = build(fastdl), build(torch)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.children()] == [type(m).__name__ for m in theirs.children()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    for name, value in ours.state_dict().items():
        assert value.shape == tuple(theirs.state_dict()[name].shape), name


def test_apply_visits_modules_like_torch():
    visited, visited_ref = [], []
    nested_net(fastdl).apply(lambda m: visited.append(type(m).__name__))
    nested_net(torch).apply(lambda m: visited_ref.append(type(m).__name__))
    assert visited == visited_ref  # children first, the shared head once


def test_sequential_state_dict_keys():
    assert list(small_cnn(fastdl).state_dict()) == ["0.weight", "0.bias", "4.weight", "4.bias"]


def test_parameters_are_registered_only_as_parameters():
    model = nested_net(fastdl)
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in model.parameters())
    assert "not_a_parameter" not in dict(model.named_parameters())
    assert model.alias is model.head
    with pytest.raises(TypeError):
        model.head.weight = fastdl.ones(3, 144)  # a Tensor where a Parameter is registered
    model.head.bias = None  # None is allowed, as in torch
    assert "head.bias" not in model.state_dict()
    del model.scale
    assert "scale" not in dict(model.named_parameters())


def test_state_dict_values_are_detached_copies_of_the_same_storage():
    model = small_cnn(fastdl)
    state = model.state_dict()
    assert not state["0.weight"].requires_grad
    assert np.shares_memory(state["0.weight"].numpy(), model[0].weight.data)  # as torch
    assert model.state_dict(keep_vars=True)["0.weight"] is model[0].weight


# ---------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("build, input_shape", [(small_cnn, (2, 3, 8, 8)), (nested_net, (2, 1, 6, 6))])
def test_load_torch_weights_gives_torch_outputs(build, input_shape):
    torch.manual_seed(0)
    ours, theirs = build(fastdl), build(torch)
    with torch.no_grad():
        for buffer in theirs.buffers():
            buffer.uniform_()  # buffers must travel too
    result = ours.load_state_dict(_to_numpy_state(theirs))
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), theirs.state_dict()[name].numpy(), err_msg=name)
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    out_ours, out_theirs = _forward_both(ours, theirs, x)
    np.testing.assert_allclose(out_ours, out_theirs, rtol=1e-5, atol=1e-5)


def test_torch_loads_fastdl_weights_round_trip():
    fastdl.manual_seed(1)
    ours, theirs = small_cnn(fastdl), small_cnn(torch)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    again = small_cnn(fastdl)
    again.load_state_dict({k: fastdl.tensor(v) for k, v in _to_numpy_state(theirs).items()})
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name].numpy(), value.numpy(), err_msg=name)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    out_ours, out_theirs = _forward_both(again, theirs, x)
    np.testing.assert_allclose(out_ours, out_theirs, rtol=1e-5, atol=1e-5)


def test_load_state_dict_copies_in_place():
    model = small_cnn(fastdl)
    weight = model[0].weight
    state = {k: np.full(v.shape, 0.5, np.float32) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert model[0].weight is weight and np.all(weight.data == 0.5)
    state["0.weight"][...] = 7.0
    assert np.all(weight.data == 0.5)  # copied, not aliased


def _errors(model, state, strict=True):
    try:
        return model.load_state_dict(state, strict=strict), None
    except RuntimeError as error:
        return None, str(error)


@pytest.mark.parametrize("change", ["missing", "unexpected", "both"])
def test_strict_loading_errors_like_torch(change):
    ours, theirs = small_cnn(fastdl), small_cnn(torch)
    state = _to_numpy_state(theirs)
    if change in ("missing", "both"):
        del state["4.bias"]
    if change in ("unexpected", "both"):
        state["5.weight"] = np.zeros(3, np.float32)
    before = ours[4].weight.data.copy()
    _, error = _errors(ours, state)
    _, error_ref = _errors(theirs, {k: torch.tensor(v) for k, v in state.items()})
    assert error is not None and error_ref is not None
    for key in ("4.bias",) if change == "missing" else ("5.weight",) if change == "unexpected" else ("4.bias", "5.weight"):
        assert key in error and key in error_ref
    np.testing.assert_array_equal(ours[4].weight.data, before)
    # strict=False reports the same keys as torch and loads the rest
    result = ours.load_state_dict(state, strict=False)
    result_ref = theirs.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    assert list(result.missing_keys) == list(result_ref.missing_keys)
    assert list(result.unexpected_keys) == list(result_ref.unexpected_keys)
    np.testing.assert_array_equal(ours[4].weight.data, state["4.weight"])


@pytest.mark.parametrize("strict", [True, False])
def test_shape_mismatch_raises_even_when_not_strict_like_torch(strict):
    ours, theirs = small_cnn(fastdl), small_cnn(torch)
    state = _to_numpy_state(theirs)
    state["4.weight"] = np.zeros((10, 127), np.float32)
    _, error = _errors(ours, state, strict)
    _, error_ref = _errors(theirs, {k: torch.tensor(v) for k, v in state.items()}, strict)
    assert error is not None and error_ref is not None
    assert "size mismatch for 4.weight" in error and "size mismatch for 4.weight" in error_ref


def test_load_state_dict_refuses_a_non_mapping():
    with pytest.raises(TypeError):
        small_cnn(fastdl).load_state_dict([("0.weight", np.zeros(3))])


# ---------------------------------------------------------------------- modes and gradients
def _training_flags(model):
    return [(name, module.training) for name, module in model.named_modules()]


def test_train_eval_propagate_like_torch():
    ours, theirs = nested_net(fastdl), nested_net(torch)
    assert _training_flags(ours) == _training_flags(theirs)
    assert ours.eval() is ours
    theirs.eval()
    assert _training_flags(ours) == _training_flags(theirs)
    assert not any(flag for _, flag in _training_flags(ours))
    ours.train()
    theirs.train()
    ours.blocks[1].eval()
    theirs.blocks[1].eval()
    assert _training_flags(ours) == _training_flags(theirs)
    ours.train(False)
    theirs.train(False)
    assert _training_flags(ours) == _training_flags(theirs)
    with pytest.raises(ValueError):
        ours.train("yes")


def test_zero_grad_set_to_none_and_to_zero():
    model = small_cnn(fastdl)
    x = fastdl.randn(2, 3, 8, 8)

    def backward():
        model(x).sum().backward()

    backward()
    assert all(p.grad is not None for p in model.parameters())
    grads = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=False)
    assert all(p.grad is g and not np.any(g.data) for p, g in zip(model.parameters(), grads))
    backward()
    model.zero_grad()  # torch 2's default: set_to_none=True
    assert all(p.grad is None for p in model.parameters())


def test_gradients_of_a_loaded_model_equal_torch():
    torch.manual_seed(3)
    ours, theirs = small_cnn(fastdl), small_cnn(torch)
    ours.load_state_dict(_to_numpy_state(theirs))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 4)
    nn.CrossEntropyLoss()(ours(fastdl.tensor(x)), fastdl.tensor(labels)).backward()
    torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(labels)).backward()
    for (name, p), p_ref in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), p_ref.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


# ---------------------------------------------------------------------- default initialization
def _check_uniform(values: np.ndarray, bound: float, reference: np.ndarray = None):
    """values look like U(-bound, bound): inside the bounds, reaching them, mean 0, variance
    bound^2/3 (within 6 standard errors), KS against the uniform and against torch's draws."""
    values = values.astype(np.float64).ravel()
    n = values.size
    assert values.min() >= -bound * (1 + 1e-6) and values.max() <= bound * (1 + 1e-6)
    assert values.max() > bound * (1 - 20 / n) and values.min() < -bound * (1 - 20 / n)
    variance = bound ** 2 / 3
    assert abs(values.mean()) < 6 * math.sqrt(variance / n)
    # Var[x^2] = E[x^4] - E[x^2]^2 = b^4/5 - b^4/9 for U(-b, b)
    assert abs(values.var() - variance) < 6 * math.sqrt((bound ** 4 / 5 - bound ** 4 / 9) / n)
    assert stats.kstest(values, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-4
    if reference is not None:
        assert stats.ks_2samp(values, reference.ravel()).pvalue > 1e-4


def test_linear_weight_init_matches_pytorch_distribution():
    fastdl.manual_seed(0)
    torch.manual_seed(0)
    layer, reference = nn.Linear(1024, 256), torch.nn.Linear(1024, 256)
    _check_uniform(layer.weight.data, 1 / math.sqrt(1024), reference.weight.detach().numpy())
    assert layer.weight.dtype == np.float32 and layer.weight.shape == (256, 1024)


def test_linear_bias_init_matches_pytorch_distribution():
    fastdl.manual_seed(0)
    torch.manual_seed(0)
    layer, reference = nn.Linear(16, 20000), torch.nn.Linear(16, 20000)
    _check_uniform(layer.bias.data, 1 / math.sqrt(16), reference.bias.detach().numpy())


def test_conv2d_weight_and_bias_init_match_pytorch_distribution():
    fastdl.manual_seed(0)
    torch.manual_seed(0)
    layer, reference = nn.Conv2d(2, 8192, 3), torch.nn.Conv2d(2, 8192, 3)
    fan_in = 2 * 3 * 3
    _check_uniform(layer.weight.data, 1 / math.sqrt(fan_in), reference.weight.detach().numpy())
    _check_uniform(layer.bias.data, 1 / math.sqrt(fan_in), reference.bias.detach().numpy())


def test_grouped_conv2d_fan_in_counts_channels_per_group():
    fastdl.manual_seed(0)
    layer = nn.Conv2d(8, 4096, (3, 5), groups=4)
    reference = torch.nn.Conv2d(8, 4096, (3, 5), groups=4)
    fan_in = (8 // 4) * 3 * 5
    assert layer.weight.shape == tuple(reference.weight.shape)
    _check_uniform(layer.weight.data, 1 / math.sqrt(fan_in), reference.weight.detach().numpy())


def test_manual_seed_makes_init_reproducible_bitwise():
    def build(seed):
        fastdl.manual_seed(seed)
        return [p.data.copy() for p in small_cnn(fastdl).parameters()]

    first, again, other = build(123), build(123), build(124)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.tobytes() == b.tobytes()
    assert all(not np.array_equal(a, c) for a, c in zip(first, other))
    assert fastdl.initial_seed() == 124


def test_float64_layers():
    layer = nn.Linear(5, 3, dtype=fastdl.float64)
    assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64
    reference = torch.nn.Linear(5, 3, dtype=torch.float64)
    reference.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in layer.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 5))
    out_ours, out_theirs = _forward_both(layer, reference, x)
    np.testing.assert_allclose(out_ours, out_theirs, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- nn.init
GAINS = [("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
         ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
         ("sigmoid", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
         ("leaky_relu", 0.2), ("leaky_relu", 0), ("leaky_relu", math.sqrt(5)), ("selu", None)]


@pytest.mark.parametrize("nonlinearity, param", GAINS)
def test_calculate_gain_equals_torch(nonlinearity, param):
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("nonlinearity, param", [("softsign", None), ("leaky_relu", "x")])
def test_calculate_gain_refuses_like_torch(nonlinearity, param):
    with pytest.raises(ValueError):
        torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError):
        nn.init.calculate_gain(nonlinearity, param)


def _fans(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


INIT_CASES = [
    ("xavier_uniform_", dict(), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("xavier_uniform_", dict(gain=5 / 3), lambda fi, fo: 5 / 3 * math.sqrt(2 / (fi + fo))),
    ("xavier_normal_", dict(), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("xavier_normal_", dict(gain=0.5), lambda fi, fo: 0.5 * math.sqrt(2 / (fi + fo))),
    ("kaiming_uniform_", dict(nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fi)),
    ("kaiming_uniform_", dict(mode="fan_out", nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fo)),
    ("kaiming_uniform_", dict(a=math.sqrt(5)), lambda fi, fo: math.sqrt(2 / (1 + 5)) / math.sqrt(fi)),
    ("kaiming_normal_", dict(nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fi)),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fo)),
    ("kaiming_normal_", dict(a=0.1), lambda fi, fo: math.sqrt(2 / (1 + 0.01)) / math.sqrt(fi)),
]


@pytest.mark.parametrize("shape", [(300, 500), (64, 32, 3, 3)])
@pytest.mark.parametrize("name, kwargs, std_rule", INIT_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in INIT_CASES])
def test_init_functions_variance_and_distribution_equal_torch(shape, name, kwargs, std_rule):
    fastdl.manual_seed(0)
    torch.manual_seed(0)
    ours = nn.Parameter(np.zeros(shape, np.float32))
    theirs = torch.empty(shape)
    result = getattr(nn.init, name)(ours, **kwargs)
    getattr(torch.nn.init, name)(theirs, **kwargs)
    assert result is ours
    values, reference = ours.data.astype(np.float64).ravel(), theirs.numpy().astype(np.float64).ravel()
    std = std_rule(*_fans(shape))
    n = values.size
    assert abs(values.mean()) < 6 * std / math.sqrt(n)
    if name.endswith("uniform_"):
        _check_uniform(values, math.sqrt(3) * std, reference)
    else:
        # Var of the sample variance of a normal: 2 sigma^4 / n
        assert abs(values.var() - std ** 2) < 6 * std ** 2 * math.sqrt(2 / n)
        assert stats.kstest(values, stats.norm(0, std).cdf).pvalue > 1e-4
        assert stats.ks_2samp(values, reference).pvalue > 1e-4
    assert abs(values.std() / reference.std() - 1) < 0.02


def test_init_generator_and_seed_reproducibility():
    a, b, c = (nn.Parameter(np.zeros((50, 40), np.float32)) for _ in range(3))
    nn.init.kaiming_uniform_(a, generator=fastdl.Generator().manual_seed(7))
    nn.init.kaiming_uniform_(b, generator=fastdl.Generator().manual_seed(7))
    nn.init.kaiming_uniform_(c, generator=fastdl.Generator().manual_seed(8))
    assert a.data.tobytes() == b.data.tobytes()
    assert not np.array_equal(a.data, c.data)
    fastdl.manual_seed(5)
    nn.init.xavier_normal_(a)
    fastdl.manual_seed(5)
    nn.init.xavier_normal_(b)
    assert a.data.tobytes() == b.data.tobytes()


def test_init_of_a_parameter_needs_no_no_grad_and_records_nothing():
    p = nn.Parameter(np.zeros((4, 3), np.float32))
    nn.init.normal_(p, 0.0, 2.0)
    nn.init.constant_(p[:0].detach(), 1.0)  # empty: nothing to do
    assert p.is_leaf and p.grad_fn is None and p.grad is None
    nn.init.ones_(p)
    assert np.all(p.data == 1)
    nn.init.zeros_(p)
    assert np.all(p.data == 0)
    nn.init.uniform_(p, -2, -1)
    assert np.all((p.data >= -2) & (p.data <= -1))


@pytest.mark.parametrize("call", [
    lambda t: nn.init.xavier_uniform_(t),
    lambda t: nn.init.kaiming_normal_(t),
])
def test_fan_based_init_refuses_1d_like_torch(call):
    with pytest.raises(ValueError):
        call(nn.Parameter(np.zeros(5, np.float32)))
    with pytest.raises(ValueError):
        torch.nn.init.xavier_uniform_(torch.empty(5))


def test_kaiming_refuses_an_unknown_mode():
    with pytest.raises(ValueError):
        nn.init.kaiming_uniform_(nn.Parameter(np.zeros((3, 3), np.float32)), mode="fan_avg")
