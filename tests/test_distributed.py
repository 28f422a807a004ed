"""fastdl.distributed: data-parallel training on MPI.

The MPI tests launch ``mpiexec -n 2 <python> tests/mpi_worker.py SCENARIO OUT`` and compare
what each rank wrote: 2 ranks with a global batch B against 1 process with batch B (SGD,
Adam, fit's metrics and checkpoint), the sampler's shards, and the abort of every rank when
one raises. The sampler's padding is compared with torch.utils.data.DistributedSampler.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastdl
import fastdl.distributed as dist
from fastdl import nn
from fastdl.data import DataLoader, TensorDataset

WORKER = Path(__file__).with_name("mpi_worker.py")
TIMEOUT = 60


def _mpiexec():
    """The mpiexec next to this Python (the mpich wheel's, in a venv) or on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        return None, "no mpiexec next to sys.executable or on PATH: pip install 'fastdl[mpi]'"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None, "mpi4py is not installed: pip install 'fastdl[mpi]'"
    return found, ""


def _mpiexec_command(ranks):
    """[mpiexec, (--allow-run-as-root,) -n, ranks], or skip the test without MPI."""
    mpiexec, why = _mpiexec()
    if mpiexec is None:
        pytest.skip(why)
    command = [mpiexec]
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    if ("Open MPI" in version or "OpenRTE" in version) and hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")  # Open MPI refuses root without it; MPICH doesn't
    return command + ["-n", str(ranks)]


def _launch(scenario, out, ranks=2):
    command = _mpiexec_command(ranks) + [sys.executable, str(WORKER), scenario, str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"mpiexec {scenario}: still running after {TIMEOUT} s (a hang)\n{error.stderr}")
    return done, time.monotonic() - start


def _results(scenario, out, ranks=2):
    done, _ = _launch(scenario, out, ranks)
    assert done.returncode == 0, f"mpiexec {scenario} failed:\n{done.stdout}\n{done.stderr}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


# ---------------------------------------------------------------------- under mpiexec -n 2
@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    return _results("equivalence", tmp_path_factory.mktemp("equivalence"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_ranks_match_one_process(equivalence, optimizer):
    for rank, result in enumerate(equivalence):
        assert result["rank"] == rank and result["world_size"] == 2
        run = result[optimizer]
        assert run["buckets"] >= 3  # the tiny bucket cap splits the gradients
        assert run["ranks_equal"]   # the parameters stay bitwise equal on every rank
        # 5 steps of batch 8 = 2 x 4: the same weights, to float32 rounding
        assert run["max_abs_diff"] <= 1e-6 * max(run["scale"], 1.0), run
        assert run["keys"] == ["module.0.weight", "module.0.bias"]


def test_buffers_broadcast_then_averaged(equivalence):
    for result in equivalence:
        assert result["buffer_after_init"] == 10.0  # rank 0's value
        assert result["buffer_after_sync"] == 1.5   # mean of 1 and 2
        assert result["count_after_sync"] == 100    # integer buffers: rank 0's
        assert result["grads_none"]
        assert result["double_grads_equal"] and result["double_bucket_dtypes"] == ["float64"]


def test_sampler_covers_every_sample_once_per_epoch(equivalence):
    shards = [result["shards"] for result in equivalence]
    for epoch in range(2):
        seen = shards[0][epoch] + shards[1][epoch]
        assert len(shards[0][epoch]) == len(shards[1][epoch]) == 6  # ceil(11 / 2)
        assert sorted(set(seen)) == list(range(11))   # every sample...
        assert len(seen) == 12                          # ...once, plus one padding repeat
    assert shards[0][0] != shards[0][1]  # set_epoch reshuffles


def test_fit_under_mpi_matches_one_process(tmp_path):
    results = _results("fit", tmp_path)
    for result in results:
        history, single = result["history"], result["single_history"]
        for key in single:
            np.testing.assert_allclose(history[key], single[key], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(result["weights"], result["single_weights"], atol=1e-6)
        assert result["val"]["accuracy"] == single["val_accuracy"][-1]
        assert result["sampler_epoch"] == 2  # fit called set_epoch(epoch)
        assert result["resumed_equal"]  # resume=True on every rank reads rank 0's file
        assert result["resumed_train_loss"] == history["train_loss"]
    assert results[0]["stderr_chars"] > 0 and results[1]["stderr_chars"] == 0  # rank 0's bar
    assert [r["saves"] for r in results] == [3, 0]  # rank 0 writes, once per epoch
    # The checkpoint holds the unwrapped model: it loads in one process.
    state = fastdl.load(tmp_path / "checkpoint.fdl")
    assert state["epoch"] == 3 and not any(k.startswith("module.") for k in state["model"])
    sys.path.insert(0, str(WORKER.parent))
    try:
        from mpi_worker import flat_parameters, small_cnn
    finally:
        sys.path.pop(0)
    model = small_cnn()
    model.load_state_dict(state["model"])
    np.testing.assert_array_equal(flat_parameters(model), results[0]["weights"])


@pytest.mark.parametrize("scenario, message", [
    ("abort", "ValueError: deliberate failure on rank 1"),
    ("abort_guarded", "KeyError: 'guarded failure on rank 1'")])
def test_exception_on_one_rank_ends_every_rank(tmp_path, scenario, message):
    done, seconds = _launch(scenario, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert seconds < 30, f"took {seconds:.1f} s"
    assert message in output and "rank 1 of 2 failed" in output, output
    assert not (tmp_path / "rank0.json").exists(), output  # rank 0 never passed its barrier


# ---------------------------------------------------------------------- one process
def test_init_without_launcher_is_one_process_without_mpi():
    env = {k: v for k, v in os.environ.items() if k not in dist._LAUNCHER_VARIABLES}
    code = ("import sys, fastdl.distributed as d; d.init(); "
            "print(d.get_rank(), d.get_world_size(), d.is_initialized(), 'mpi4py.MPI' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "True", "False"]


def test_one_process_ddp_is_the_model():
    dist.init()
    assert dist.get_world_size() == 1
    fastdl.manual_seed(0)
    model = nn.Linear(3, 2)
    ddp = dist.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == ["module.weight", "module.bias"]
    assert list(model.state_dict()) == ["weight", "bias"]
    x = fastdl.randn(4, 3)
    np.testing.assert_array_equal(ddp(x).detach().numpy(), model(x).detach().numpy())
    ddp(x).sum().backward()
    grad = model.weight.grad.numpy().copy()
    ddp.sync_gradients()
    np.testing.assert_array_equal(model.weight.grad.numpy(), grad)
    array = np.arange(3.0)
    assert dist.all_reduce(array, "mean") is array and array.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="op"):
        dist.all_reduce(array, "average")
    with pytest.raises(TypeError):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError):
        dist.DistributedDataParallel(model, bucket_cap_mb=0)


@pytest.mark.parametrize("n", [0, 1, 7, 10, 11])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_matches_torch_without_shuffle(n, replicas, drop_last):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle for this test")
    dataset = list(range(n))
    for rank in range(replicas):
        ours = dist.DistributedSampler(dataset, replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(dataset, replicas, rank, shuffle=False,
                                                     drop_last=drop_last)
        assert len(ours) == len(theirs)
        assert list(ours) == list(theirs)


@pytest.mark.parametrize("n, replicas", [(10, 2), (11, 3), (5, 4), (3, 8)])
def test_sampler_shards_partition_every_epoch(n, replicas):
    dataset = list(range(n))
    by_epoch = []
    for epoch in range(3):
        shards = []
        for rank in range(replicas):
            sampler = dist.DistributedSampler(dataset, replicas, rank, seed=5)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        assert len({len(s) for s in shards}) == 1  # equal shards: no rank waits for another
        every = sum(shards, [])
        assert set(every) == set(range(n)) and len(every) == -(-n // replicas) * replicas
        by_epoch.append(shards)
    if n >= 4:
        assert by_epoch[0] != by_epoch[1]  # set_epoch reshuffles
    again = dist.DistributedSampler(dataset, replicas, 0, seed=5)
    again.set_epoch(1)
    assert list(again) == by_epoch[1][0]  # same seed and epoch: same order on every rank


def test_sampler_rejects_bad_rank():
    with pytest.raises(ValueError, match="Invalid rank"):
        dist.DistributedSampler(list(range(4)), num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        dist.DistributedSampler(list(range(4)), num_replicas=0, rank=0)


def test_data_loader_with_sampler():
    dataset = TensorDataset(fastdl.arange(10))
    sampler = dist.DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler)
    assert loader.sampler is sampler and len(loader) == 3
    assert [batch[0].tolist() for batch in loader] == [[1, 3], [5, 7], [9]]
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(dataset, sampler=sampler, shuffle=True)
    with pytest.raises(TypeError, match="sampler"):
        DataLoader(dataset, sampler=5)
    assert [s[0].item() for s in DataLoader(dataset, batch_size=None, sampler=[4, 2])] == [4, 2]


def test_demo_cli_distributed_prints_on_rank_zero_only():
    pytest.importorskip("sklearn", reason="the demo trains on scikit-learn's digits")
    done = subprocess.run(_mpiexec_command(2) + [sys.executable, "-m", "fastdl", "demo",
                                                 "--distributed", "--epochs", "2", "--no-bench"],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode in (0, 1), done.stderr  # 1: below 97% after only 2 epochs
    assert done.stdout.count("held-out test accuracy") == 1, done.stdout
    assert done.stdout.count("epoch  2/2") == 1 and "data parallel on 2 ranks" in done.stdout
