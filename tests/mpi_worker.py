"""Run by tests/test_distributed.py under ``mpiexec -n 2``: one scenario per call, each rank
writing what it saw to OUT/rank<r>.json for the test to compare.

    mpiexec -n 2 python tests/mpi_worker.py SCENARIO OUT
"""
import io
import json
import os
import sys
import time

import numpy as np

import fastdl
import fastdl.distributed as dist
from fastdl import nn, optim
from fastdl.data import DataLoader, TensorDataset
from fastdl.train import evaluate, fit


def small_cnn():
    """1x4x4 inputs, 3 classes: a conv and two linear layers, so several buckets."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int64)
    return x, y


def flat_parameters(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()]).astype(np.float64)


def equal_on_all_ranks(array):
    """Whether every rank holds exactly these values."""
    low, high = array.copy(), array.copy()
    dist.all_reduce(low, "min")
    dist.all_reduce(high, "max")
    return bool(np.array_equal(low, high))


def trajectory(make_optimizer, rank, world, steps=5, batch=8, distributed=True):
    """Train small_cnn for a few steps on fresh global batches of `batch` samples; with
    distributed, this rank takes its contiguous slice of each global batch."""
    fastdl.manual_seed(1 + (rank if distributed else 0))  # different inits: broadcast must fix
    model = small_cnn()
    if distributed:
        model = dist.DistributedDataParallel(model, bucket_cap_mb=1e-3)  # ~1 KB: 3+ buckets
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    x, y = data(steps * batch, seed=7)
    local = batch // world if distributed else batch
    offset = rank * local if distributed else 0
    for step in range(steps):
        lo = step * batch + offset
        inputs, targets = fastdl.tensor(x[lo:lo + local]), fastdl.tensor(y[lo:lo + local])
        optimizer.zero_grad()
        loss_fn(model(inputs), targets).backward()
        if distributed:
            model.sync_gradients()
        optimizer.step()
    return model


def scenario_equivalence(rank, world):
    result = {}
    optimizers = {"sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                  "adam": lambda p: optim.Adam(p, lr=1e-2)}
    for name, make in optimizers.items():
        ddp = trajectory(make, rank, world)
        single = trajectory(make, rank, world, distributed=False)
        ours, reference = flat_parameters(ddp.module), flat_parameters(single)
        result[name] = {"max_abs_diff": float(np.max(np.abs(ours - reference))),
                        "scale": float(np.max(np.abs(reference))),
                        "ranks_equal": equal_on_all_ranks(ours),
                        "buckets": len(ddp._buckets),
                        "keys": list(ddp.state_dict())[:2]}

    # Buffers: broadcast from rank 0 at construction, averaged at each sync.
    model = small_cnn()
    model.register_buffer("running", fastdl.tensor([10.0 * (rank + 1)]))
    model.register_buffer("count", fastdl.tensor(np.array([rank + 5], dtype=np.int64)))
    ddp = dist.DistributedDataParallel(model)
    result["buffer_after_init"] = float(model.running.data[0])
    model.running.data[0] = rank + 1.0
    model.count.data[0] = rank + 100
    ddp.sync_gradients()  # no gradients at all: they stay None
    result["buffer_after_sync"] = float(model.running.data[0])
    result["count_after_sync"] = int(model.count.data[0])
    result["grads_none"] = all(p.grad is None for p in model.parameters())

    # Parameters cast after wrapping: the buckets follow.
    fastdl.manual_seed(3)
    model = small_cnn()
    ddp = dist.DistributedDataParallel(model).double()
    x, y = data(4, seed=rank)
    nn.CrossEntropyLoss()(ddp(fastdl.tensor(x.astype(np.float64))), fastdl.tensor(y)).backward()
    ddp.sync_gradients()
    grads = np.concatenate([p.grad.data.ravel() for p in model.parameters()])
    result["double_grads_equal"] = equal_on_all_ranks(grads)
    result["double_bucket_dtypes"] = sorted({b.dtype.name for b in ddp._buckets})

    # The sampler: each rank's shard of 11 samples for two epochs.
    dataset = TensorDataset(fastdl.arange(11))
    sampler = dist.DistributedSampler(dataset, seed=3)
    shards = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        shards.append([int(i) for i in sampler])
    result["shards"] = shards
    return result


def scenario_fit(rank, world, out):
    """fit() on a DDP model with sharded loaders vs fit() in one process on the same data."""
    x, y = data(24, seed=3)
    x_val, y_val = data(10, seed=4)
    train_set = TensorDataset(fastdl.tensor(x), fastdl.tensor(y))
    val_set = TensorDataset(fastdl.tensor(x_val), fastdl.tensor(y_val))
    loss_fn = nn.CrossEntropyLoss()
    global_batch, epochs = 4, 3

    saves = []
    real_save = fastdl.io.save
    fastdl.io.save = lambda obj, path: (saves.append(path), real_save(obj, path))

    fastdl.manual_seed(0)
    model = dist.DistributedDataParallel(small_cnn())
    # shuffle=False: rank r's k-th batch holds samples 4k + r and 4k + r + 2, so the global
    # batch is the single process's batch k.
    sampler = dist.DistributedSampler(train_set, shuffle=False)
    train_loader = DataLoader(train_set, batch_size=global_batch // world, sampler=sampler)
    val_loader = DataLoader(val_set, batch_size=3, sampler=dist.DistributedSampler(val_set, shuffle=False))
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    checkpoint = os.path.join(out, "checkpoint.fdl")
    captured, real_stderr = io.StringIO(), sys.stderr
    sys.stderr = captured
    try:
        history = fit(model, train_loader, loss_fn, optimizer, epochs, val_loader=val_loader,
                      progress=True, checkpoint=checkpoint)
    finally:
        sys.stderr = real_stderr
    fastdl.io.save = real_save
    val = evaluate(model, val_loader, loss_fn)

    # Resume on every rank from rank 0's checkpoint into a differently initialized model.
    fastdl.manual_seed(99 + rank)
    resumed = dist.DistributedDataParallel(small_cnn())
    resumed_history = fit(resumed, train_loader, loss_fn, optim.SGD(resumed.parameters(), lr=0.1),
                          epochs, checkpoint=checkpoint, resume=True, progress=False)
    resumed_equal = bool(np.array_equal(flat_parameters(resumed.module), flat_parameters(model.module)))

    fastdl.manual_seed(0)
    single = small_cnn()
    single_history = fit(single, DataLoader(train_set, batch_size=global_batch), loss_fn,
                         optim.SGD(single.parameters(), lr=0.1, momentum=0.9), epochs,
                         val_loader=DataLoader(val_set, batch_size=3), progress=False)
    history.pop("epoch_time")
    single_history.pop("epoch_time")
    return {"history": history, "single_history": single_history,
            "val": val, "sampler_epoch": sampler.epoch,
            "weights": flat_parameters(model.module).tolist(),
            "single_weights": flat_parameters(single).tolist(),
            "saves": len(saves), "stderr_chars": len(captured.getvalue()),
            "resumed_equal": resumed_equal,
            "resumed_train_loss": resumed_history["train_loss"]}


def scenario_abort(rank, world):
    if rank == 1:
        time.sleep(0.2)
        raise ValueError("deliberate failure on rank 1")
    dist.barrier()  # would wait forever for rank 1 without the abort
    return {}


def scenario_abort_guarded(rank, world):
    def fail():
        if rank == 1:
            raise KeyError("guarded failure on rank 1")
    try:
        dist.run_guarded(fail)
    except KeyError:
        pass  # a caller that swallows the error: run_guarded has aborted the job already
    dist.barrier()
    return {}


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    if scenario == "fit":
        result = scenario_fit(rank, world, out)
    else:
        result = globals()["scenario_" + scenario](rank, world)
    result.update(rank=rank, world_size=world, threads=fastdl.get_num_threads())
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
