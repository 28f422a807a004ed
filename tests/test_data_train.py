"""fastdl.data loaders, the fit()/evaluate() loop, the digits demo and the CLI.

Loaders are compared with torch.utils.data on the same tensors; fit() is compared with a
hand-written PyTorch training loop from the same initial weights on the same batches.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import nn, optim
from fastdl.data import DataLoader, Dataset, TensorDataset
from fastdl.train import evaluate, fit


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is the oracle for this test")


def _dataset(n=10, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, 3, 2)).astype(np.float32)
    labels = np.arange(n, dtype=np.int64)  # the label is the sample's index
    return features, labels


def _epoch_indices(loader):
    return np.concatenate([labels.numpy() for _, labels in loader])


# ---------------------------------------------------------------------- TensorDataset
def test_tensor_dataset_rows():
    features, labels = _dataset()
    dataset = TensorDataset(fastdl.tensor(features), fastdl.tensor(labels))
    assert len(dataset) == 10
    x, y = dataset[3]
    np.testing.assert_array_equal(x.numpy(), features[3])
    assert y.item() == 3 and y.dtype == np.int64 and x.dtype == np.float32
    assert x.shape == (3, 2) and y.shape == ()  # as torch: a row of a 1-D tensor is 0-d


def test_tensor_dataset_refuses_mismatched_sizes(torch):
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(fastdl.zeros(5, 2), fastdl.zeros(4))
    with pytest.raises(AssertionError):  # torch refuses too (with an assert)
        torch.utils.data.TensorDataset(torch.zeros(5, 2), torch.zeros(4))
    with pytest.raises(ValueError):
        TensorDataset()
    with pytest.raises(ValueError):
        TensorDataset(fastdl.tensor(1.0))
    with pytest.raises(TypeError):
        TensorDataset(np.zeros(3))


# ---------------------------------------------------------------------- DataLoader batching
@pytest.mark.parametrize("n, batch_size, drop_last", [
    (10, 3, False), (10, 3, True), (10, 5, False), (10, 5, True), (10, 1, False), (10, 32, False),
    (10, 32, True), (7, 7, True), (1, 4, False)])
def test_batches_equal_torch_without_shuffle(torch, n, batch_size, drop_last):
    features, labels = _dataset(n)
    ours = DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)),
                      batch_size=batch_size, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(features), torch.tensor(labels)),
        batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    batches, batches_ref = list(ours), list(theirs)
    assert len(batches) == len(batches_ref) == len(ours)
    for (x, y), (x_ref, y_ref) in zip(batches, batches_ref):
        assert x.shape == tuple(x_ref.shape) and y.shape == tuple(y_ref.shape)
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x.numpy(), x_ref.numpy())
        np.testing.assert_array_equal(y.numpy(), y_ref.numpy())


def test_batch_size_none_yields_samples_like_torch(torch):
    features, labels = _dataset(4)
    ours = list(DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)), batch_size=None))
    theirs = list(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(features), torch.tensor(labels)), batch_size=None))
    assert len(ours) == len(theirs) == 4
    for (x, y), (x_ref, y_ref) in zip(ours, theirs):
        assert x.shape == tuple(x_ref.shape) and y.shape == tuple(y_ref.shape) == ()
        np.testing.assert_array_equal(x.numpy(), x_ref.numpy())


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_invalid_batch_size_raises(batch_size):
    with pytest.raises(ValueError):
        DataLoader(TensorDataset(fastdl.zeros(4)), batch_size=batch_size)


class _ListDataset(Dataset):
    """A map-style dataset of (array, int) pairs: batches go through default_collate."""

    def __init__(self, features, labels):
        self.features, self.labels = features, labels

    def __getitem__(self, index):
        return self.features[index], int(self.labels[index])

    def __len__(self):
        return len(self.labels)


def test_generic_dataset_collates_like_the_tensor_fast_path():
    features, labels = _dataset(11)
    fast = DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)), batch_size=4,
                      shuffle=True, generator=fastdl.Generator().manual_seed(3))
    generic = DataLoader(_ListDataset(features, labels), batch_size=4, shuffle=True,
                         generator=fastdl.Generator().manual_seed(3))
    for (x, y), (x_generic, y_generic) in zip(fast, generic):
        np.testing.assert_array_equal(x.numpy(), x_generic.numpy())
        np.testing.assert_array_equal(y.numpy(), y_generic.numpy())
        assert y_generic.dtype == np.int64 and x_generic.dtype == np.float32


# ---------------------------------------------------------------------- shuffling
def _shuffled(n=50, seed=None, batch_size=8, drop_last=False):
    features, labels = _dataset(n)
    generator = None if seed is None else fastdl.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)),
                      batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=generator)


def test_shuffle_covers_every_sample_exactly_once_per_epoch():
    loader = _shuffled(seed=0)
    for _ in range(3):
        order = _epoch_indices(loader)
        assert sorted(order.tolist()) == list(range(50))
        assert not np.array_equal(order, np.arange(50))


def test_shuffle_keeps_rows_together():
    features, labels = _dataset(30)
    loader = DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)), batch_size=7,
                        shuffle=True, generator=fastdl.Generator().manual_seed(1))
    for x, y in loader:
        np.testing.assert_array_equal(x.numpy(), features[y.numpy()])


def test_shuffle_with_drop_last_yields_distinct_full_batches():
    order = _epoch_indices(_shuffled(seed=0, batch_size=8, drop_last=True))
    assert len(order) == 48 and len(set(order.tolist())) == 48


def test_same_seed_same_order_different_seed_different_order():
    first, again, other = _shuffled(seed=5), _shuffled(seed=5), _shuffled(seed=6)
    for _ in range(2):  # epoch by epoch
        order, order_again, order_other = (_epoch_indices(loader) for loader in (first, again, other))
        np.testing.assert_array_equal(order, order_again)
        assert not np.array_equal(order, order_other)


def test_successive_epochs_differ():
    loader = _shuffled(seed=0)
    epochs = [_epoch_indices(loader) for _ in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(epochs[i], epochs[j])


def test_default_generator_follows_manual_seed():
    fastdl.manual_seed(11)
    order = _epoch_indices(_shuffled())
    fastdl.manual_seed(11)
    np.testing.assert_array_equal(_epoch_indices(_shuffled()), order)
    fastdl.manual_seed(12)
    assert not np.array_equal(_epoch_indices(_shuffled()), order)


def test_generator_state_restores_the_order():
    generator = fastdl.Generator().manual_seed(2)
    features, labels = _dataset(20)
    loader = DataLoader(TensorDataset(fastdl.tensor(features), fastdl.tensor(labels)), batch_size=4,
                        shuffle=True, generator=generator)
    _epoch_indices(loader)
    state = generator.get_state()
    expected = _epoch_indices(loader)
    generator.set_state(state)
    np.testing.assert_array_equal(_epoch_indices(loader), expected)


# ---------------------------------------------------------------------- fit / evaluate
def _blobs(n=300, seed=0):
    """Three well-separated Gaussian classes in 2-D."""
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 2.0], [-1.0, -2.5]])
    labels = rng.integers(0, 3, n)
    features = (centers[labels] + 0.6 * rng.standard_normal((n, 2))).astype(np.float32)
    return features, labels.astype(np.int64)


def _mlp(lib):
    return lib.nn.Sequential(lib.nn.Linear(2, 16), lib.nn.ReLU(), lib.nn.Linear(16, 3))


def _loaders(batch_size=32, shuffle=False, seed=0):
    x_train, y_train = _blobs(300, seed)
    x_val, y_val = _blobs(120, seed + 1)
    train = DataLoader(TensorDataset(fastdl.tensor(x_train), fastdl.tensor(y_train)),
                       batch_size=batch_size, shuffle=shuffle,
                       generator=fastdl.Generator().manual_seed(seed))
    val = DataLoader(TensorDataset(fastdl.tensor(x_val), fastdl.tensor(y_val)), batch_size=50)
    return train, val, (x_train, y_train, x_val, y_val)


def test_fit_learns_and_returns_a_history():
    fastdl.manual_seed(0)
    model = _mlp(fastdl)
    train, val, _ = _loaders(shuffle=True)
    calls = []
    history = fit(model, train, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  epochs=6, val_loader=val, progress=False, callback=lambda e, h: calls.append(e))
    assert set(history) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time"}
    assert all(len(v) == 6 for v in history.values())
    assert calls == list(range(6))
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["train_accuracy"][-1] > 0.95 and history["val_accuracy"][-1] > 0.95
    assert all(0.0 <= a <= 1.0 for a in history["train_accuracy"] + history["val_accuracy"])
    assert all(t >= 0 for t in history["epoch_time"])
    # the last epoch's validation numbers are what evaluate() says now
    final = evaluate(model, val, nn.CrossEntropyLoss())
    assert final["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-12)
    assert final["accuracy"] == history["val_accuracy"][-1]


def test_fit_equals_a_torch_training_loop(torch):
    fastdl.manual_seed(0)
    model = _mlp(fastdl)
    reference = _mlp(torch)
    reference.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    train, val, (x_train, y_train, x_val, y_val) = _loaders(batch_size=32, shuffle=False)
    epochs = 4
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    history = fit(model, train, nn.CrossEntropyLoss(), optimizer, epochs, val_loader=val,
                  progress=False, scheduler=scheduler)

    optimizer_ref = torch.optim.Adam(reference.parameters(), lr=1e-2, foreach=False)
    scheduler_ref = torch.optim.lr_scheduler.StepLR(optimizer_ref, step_size=2, gamma=0.5)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_train_t, y_train_t = torch.tensor(x_train), torch.tensor(y_train)
    for epoch in range(epochs):
        total, correct = 0.0, 0
        for start in range(0, len(y_train), 32):
            x, y = x_train_t[start:start + 32], y_train_t[start:start + 32]
            optimizer_ref.zero_grad()
            output = reference(x)
            loss = loss_fn(output, y)
            loss.backward()
            optimizer_ref.step()
            total += loss.item() * len(y)
            correct += int((output.argmax(1) == y).sum())
        scheduler_ref.step()
        assert history["train_loss"][epoch] == pytest.approx(total / len(y_train), rel=1e-4)
        assert history["train_accuracy"][epoch] == correct / len(y_train)
        with torch.no_grad():
            output = reference(torch.tensor(x_val))
            val_loss = loss_fn(output, torch.tensor(y_val)).item()
            val_accuracy = float((output.argmax(1) == torch.tensor(y_val)).double().mean())
        assert history["val_loss"][epoch] == pytest.approx(val_loss, rel=1e-4)
        assert history["val_accuracy"][epoch] == val_accuracy
    assert optimizer.param_groups[0]["lr"] == pytest.approx(scheduler_ref.get_last_lr()[0], rel=1e-15)
    for (name, p), p_ref in zip(model.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.data, p_ref.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_evaluate_equals_torch_and_restores_training_mode(torch):
    fastdl.manual_seed(1)
    model = _mlp(fastdl)
    reference = _mlp(torch)
    reference.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    _, val, (_, _, x_val, y_val) = _loaders()
    model.train()
    metrics = evaluate(model, val, nn.CrossEntropyLoss())
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        output = reference(torch.tensor(x_val))
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(output, torch.tensor(y_val)).item(),
                                            rel=1e-5)
    assert metrics["accuracy"] == float((output.argmax(1).numpy() == y_val).mean())
    model.eval()
    evaluate(model, val, nn.CrossEntropyLoss())
    assert not model.training


def test_fit_argument_checks_and_zero_epochs():
    model = _mlp(fastdl)
    train, _, _ = _loaders()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    for epochs in (-1, 1.5, True):
        with pytest.raises(ValueError):
            fit(model, train, nn.CrossEntropyLoss(), optimizer, epochs, progress=False)
    before = [p.data.copy() for p in model.parameters()]
    history = fit(model, train, nn.CrossEntropyLoss(), optimizer, 0, progress=False)
    assert all(v == [] for v in history.values())
    assert all(np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))


def test_fit_stops_on_a_non_finite_loss():
    model = _mlp(fastdl)
    x, y = _blobs(64)
    x[5] = np.nan
    loader = DataLoader(TensorDataset(fastdl.tensor(x), fastdl.tensor(y)), batch_size=64)
    with pytest.raises(FloatingPointError):
        fit(model, loader, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), 1, progress=False)


# ---------------------------------------------------------------------- the demo and the CLI
def test_demo_trains_the_digits_cnn(capsys):
    pytest.importorskip("sklearn", reason="the demo loads scikit-learn's digits")
    from fastdl.__main__ import demo
    result = demo(epochs=3, bench=False, progress=False)
    assert result["test_accuracy"] > 0.85
    history = result["history"]
    assert len(history["train_loss"]) == 3
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert result["test_accuracy"] == history["val_accuracy"][-1]
    assert "held-out test accuracy" in capsys.readouterr().out


def test_cli_info_prints_the_configuration():
    completed = subprocess.run([sys.executable, "-m", "fastdl", "info"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "fastdl" in completed.stdout and "BLAS" in completed.stdout
    assert fastdl.__version__ in completed.stdout




@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_weight_gradients_are_bitwise_identical_with_1_and_2_threads(dtype):
    """The root cause of the demo's thread dependence, on single layers."""
    from fastdl.nn import functional as F
    rng = np.random.default_rng(0)
    threads = fastdl.get_num_threads()
    mismatches = []
    try:
        for batch in (28, 29, 31, 32, 33):  # conv: K = batch * 4 * 4
            x = rng.standard_normal((batch, 32, 4, 4)).astype(dtype)
            weight = rng.standard_normal((64, 32, 3, 3)).astype(dtype)
            grad = rng.standard_normal((batch, 64, 4, 4)).astype(dtype)
            grads = []
            for n in (1, 2):
                fastdl.set_num_threads(n)
                w = fastdl.tensor(weight, requires_grad=True)
                F.conv2d(fastdl.tensor(x), w, padding=1).backward(grad)
                grads.append(w.grad.numpy().tobytes())
            if grads[0] != grads[1]:
                mismatches.append(f"conv2d N={batch}")
        for rows in (448, 464, 496, 512):  # linear: K = rows
            x = rng.standard_normal((rows, 288)).astype(dtype)
            weight = rng.standard_normal((64, 288)).astype(dtype)
            grad = rng.standard_normal((rows, 64)).astype(dtype)
            grads = []
            for n in (1, 2):
                fastdl.set_num_threads(n)
                w = fastdl.tensor(weight, requires_grad=True)
                F.linear(fastdl.tensor(x), w).backward(grad)
                grads.append(w.grad.numpy().tobytes())
            if grads[0] != grads[1]:
                mismatches.append(f"linear rows={rows}")
    finally:
        fastdl.set_num_threads(threads)
    assert mismatches == []


def test_demo_is_bitwise_identical_with_1_and_2_threads(monkeypatch, capsys):
    """Two epochs of the demo give the same final weights, bit for bit, on 1 and 2 threads:
    the kernels' reduction order depends on the data, not on the thread count."""
    pytest.importorskip("sklearn", reason="the demo loads scikit-learn's digits")
    import fastdl.__main__ as cli
    built = []
    original = cli.digits_cnn

    def capture():
        model = original()
        built.append(model)
        return model

    monkeypatch.setattr(cli, "digits_cnn", capture)
    threads = fastdl.get_num_threads()
    results = {}
    try:
        for n in (1, 2):
            fastdl.set_num_threads(n)
            assert fastdl.get_num_threads() == n
            history = cli.demo(epochs=2, bench=False, progress=False)["history"]
            results[n] = ({k: v.numpy().copy() for k, v in built[-1].state_dict().items()}, history)
    finally:
        fastdl.set_num_threads(threads)
    assert fastdl.get_num_threads() == threads
    (weights_1, history_1), (weights_2, history_2) = results[1], results[2]
    assert list(weights_1) == list(weights_2)
    for name in weights_1:
        assert weights_1[name].tobytes() == weights_2[name].tobytes(), name
    assert history_1["train_loss"] == history_2["train_loss"]
    assert history_1["val_accuracy"] == history_2["val_accuracy"]
