"""Checkpoints: fastdl.save / fastdl.load round trips, refusal of anything that is not a
fastdl checkpoint (no code ever runs), atomic saves, and fit() resume bit for bit."""
import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
from fastdl.data import DataLoader, TensorDataset


def _equal(a, b):
    if isinstance(a, fastdl.Tensor):
        return isinstance(b, fastdl.Tensor) and a.dtype == b.dtype and np.array_equal(a.data, b.data)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return type(a) is type(b) and a == b


def test_round_trip_of_nested_values(tmp_path):
    obj = {
        "tensor": fastdl.tensor([[1.5, 2.0]]),
        "float64": fastdl.tensor(np.arange(6.0).reshape(2, 3)),
        "labels": fastdl.tensor([1, 2, 3]),
        "array": np.arange(5, dtype=np.uint8),
        "bools": np.array([True, False]),
        "scalar": np.float32(2.5),
        "numbers": [1, 2.5, -3, True, None, float("inf"), float("nan")],
        "tuple": (1, "two", (3.0,)),
        "nested": OrderedDict([("a", {"b": [np.zeros((2, 0))]})]),
        7: "int key",
        "text": "héllo",
    }
    path = tmp_path / "obj.fdl"
    fastdl.save(obj, path)
    loaded = fastdl.load(path)
    expected = dict(obj)
    expected["scalar"] = 2.5  # NumPy scalars come back as Python numbers
    assert _equal(expected, loaded)


def test_requires_grad_survives(tmp_path):
    fastdl.save({"p": fastdl.tensor([1.0], requires_grad=True)}, tmp_path / "p.fdl")
    assert fastdl.load(tmp_path / "p.fdl")["p"].requires_grad


def test_model_and_optimizer_state_round_trip(tmp_path):
    fastdl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    optimizer = fastdl.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    x, y = fastdl.randn(5, 1, 8, 8), fastdl.tensor([0, 1, 2, 0, 1])
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    fastdl.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "c.fdl")
    state = fastdl.load(tmp_path / "c.fdl")
    assert list(state["model"]) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    fastdl.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    other_opt = fastdl.optim.Adam(other.parameters(), lr=0.5)
    other.load_state_dict(state["model"])
    other_opt.load_state_dict(state["optimizer"])
    assert other_opt.param_groups[0]["lr"] == 1e-2 and other_opt.param_groups[0]["betas"] == (0.9, 0.999)
    for a, b in zip(model.parameters(), other.parameters()):
        assert np.array_equal(a.data, b.data)
    # One more identical step from both gives identical bits.
    for m, o in ((model, optimizer), (other, other_opt)):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    for a, b in zip(model.parameters(), other.parameters()):
        assert np.array_equal(a.data, b.data)


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _zip_with(path, manifest: bytes, arrays=None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", manifest)
        for name, data in (arrays or {}).items():
            archive.writestr(name, data)


def _object_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["pickle", "torch-style-zip-pickle", "object-npy", "npz-object",
                                  "random-bytes", "empty", "truncated", "bad-json", "wrong-format",
                                  "missing-array", "bad-reference", "text"])
def test_refuses_what_is_not_a_checkpoint_and_runs_no_code(tmp_path, kind):
    path = tmp_path / "bad.fdl"
    marker = tmp_path / "pwned"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    elif kind == "torch-style-zip-pickle":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(_Exploit(str(marker))))
    elif kind == "object-npy":
        _zip_with(path, b'{"format": "fastdl-checkpoint", "version": 1, "object": {"$array": 0}}',
                  {"arrays/0.npy": _object_npy()})
    elif kind == "npz-object":
        with open(path, "wb") as f:
            np.savez(f, a=np.array([_Exploit(str(marker))], dtype=object), allow_pickle=True)
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        fastdl.save({"w": np.arange(10000.0)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bad-json":
        _zip_with(path, b"{not json")
    elif kind == "wrong-format":
        _zip_with(path, b'{"format": "other", "version": 1, "object": 1}')
    elif kind == "missing-array":
        _zip_with(path, b'{"format": "fastdl-checkpoint", "version": 1, "object": {"$array": 3}}')
    elif kind == "bad-reference":
        _zip_with(path, b'{"format": "fastdl-checkpoint", "version": 1, "object": {"$array": "x"}}')
    elif kind == "text":
        path.write_text("hello")
    with pytest.raises(ValueError, match="not a valid fastdl checkpoint"):
        fastdl.load(path)
    assert not marker.exists(), "loading ran code"


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastdl.load(tmp_path / "nope.fdl")


def test_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.fdl"
    fastdl.save({"v": 1}, path)
    with pytest.raises(TypeError):
        fastdl.save({"v": object()}, path)
    assert fastdl.load(path) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["c.fdl"]


_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    import fastdl
    path = sys.argv[1]
    big = np.full(6_000_000, 2.0, dtype=np.float32)
    print("ready", flush=True)
    while True:
        fastdl.save({"version": 2, "weights": big}, path)
""")


def test_a_process_killed_mid_save_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "c.fdl"
    fastdl.save({"version": 1, "weights": np.full(10, 1.0, dtype=np.float32)}, path)
    rng = np.random.default_rng(0)
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.01, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = fastdl.load(path)  # whatever moment the kill hit, the file is whole
        assert state["version"] in (1, 2)
        expected = 1.0 if state["version"] == 1 else 2.0
        assert state["weights"].size in (10, 6_000_000) and np.all(state["weights"] == expected)


def _fit_run(epochs, checkpoint=None, resume=False):
    fastdl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    optimizer = fastdl.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = fastdl.optim.lr_scheduler.StepLR(optimizer, 2, gamma=0.5)
    data_gen = fastdl.Generator().manual_seed(5)
    x = fastdl.randn(40, 1, 8, 8, generator=data_gen)
    y = fastdl.randint(0, 3, (40,), generator=data_gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True,
                        generator=fastdl.Generator().manual_seed(1))
    history = fastdl.train.fit(model, loader, nn.CrossEntropyLoss(), optimizer, epochs,
                               val_loader=loader, scheduler=scheduler, progress=False,
                               checkpoint=checkpoint, resume=resume)
    return model, optimizer, history


@pytest.mark.parametrize("stop_after", [1, 3])
def test_fit_resumed_after_an_interruption_ends_bitwise_equal(tmp_path, stop_after):
    straight, straight_opt, straight_history = _fit_run(5)
    path = tmp_path / "fit.fdl"
    _fit_run(stop_after, checkpoint=path)  # "interrupted" after stop_after epochs
    resumed, resumed_opt, resumed_history = _fit_run(5, checkpoint=path, resume=True)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert np.array_equal(a.data, b.data)
    assert straight_history["train_loss"] == resumed_history["train_loss"]
    assert straight_history["val_accuracy"] == resumed_history["val_accuracy"]
    assert straight_opt.param_groups[0]["lr"] == resumed_opt.param_groups[0]["lr"]


def test_resume_needs_a_checkpoint_path():
    with pytest.raises(ValueError, match="checkpoint"):
        fastdl.train.fit(nn.Linear(2, 2), [], nn.CrossEntropyLoss(),
                         fastdl.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1, resume=True)
