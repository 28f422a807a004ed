"""Data-parallel training across processes and machines on MPI (mpi4py), as
torch.distributed + DistributedDataParallel + DistributedSampler.

    mpiexec -n 2 python train.py          # MPI from PyPI: pip install 'fastdl[mpi]'

    import fastdl.distributed as dist
    dist.init()                                     # rank / world size from the launcher
    model = dist.DistributedDataParallel(model)     # parameters broadcast from rank 0
    sampler = dist.DistributedSampler(dataset)      # each rank reads its shard
    loader = DataLoader(dataset, batch_size=B // dist.get_world_size(), sampler=sampler)
    fastdl.train.fit(model, loader, loss_fn, optimizer, epochs)   # unchanged

The invariant that makes this data parallelism exact: every rank starts from rank 0's
parameters and applies the same optimizer step to the same averaged gradient, so the
parameters never diverge (they stay bitwise equal: the allreduce gives every rank the same
bytes). With equal local batches, the mean of the local mean-loss gradients is the gradient
of the mean loss over the global batch, so N ranks with B/N samples each follow the same
trajectory as one process with B samples, to float rounding.

Without an MPI launcher in the environment, ``init()`` falls back to one process (rank 0 of
1) without importing MPI, and everything here is a no-op: the same script runs anywhere.
An uncaught exception on any rank aborts every rank (MPI_Abort) instead of leaving the
others blocked in a collective.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from typing import Iterator, List, Optional

import numpy as np

from .nn.module import Module
from .tensor import Tensor

__all__ = ["init", "is_initialized", "get_rank", "get_world_size", "barrier", "all_reduce",
           "broadcast", "run_guarded", "DistributedDataParallel", "DistributedSampler"]

# Variables that MPI launchers set in every process they start: MPICH/Intel MPI's hydra
# (PMI_*), PMIx launchers (Open MPI 5, Slurm's srun --mpi=pmix), Open MPI 4's ORTE, MVAPICH.
_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
                       "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE")

_ABORT_GRACE_SECONDS = 1.0
_comm = None          # mpi4py's COMM_WORLD once init() found a launcher, else None
_rank, _world_size = 0, 1
_initialized = False


def _launched_by_mpi() -> bool:
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def init(set_threads: bool = True) -> None:
    """Join the MPI job this process was started in (idempotent).

    Under an MPI launcher with mpi4py installed, rank and world size come from
    MPI.COMM_WORLD and an uncaught exception on any rank aborts the whole job. Otherwise
    this process is rank 0 of 1 and mpi4py is not imported. set_threads: unless
    OMP_NUM_THREADS is set, give each rank on a machine an equal share of its cores (two
    ranks each running a full OpenMP team on the same cores run several times slower).
    """
    global _comm, _rank, _world_size, _initialized
    if _initialized:
        return
    if _launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError:
            MPI = None
            if any(os.environ.get(n, "1") != "1" for n in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
                raise RuntimeError("fastdl.distributed: started by an MPI launcher with several "
                                   "processes, but mpi4py is not installed: "
                                   "pip install 'fastdl[mpi]'") from None
        if MPI is not None:
            _comm = MPI.COMM_WORLD
            _rank, _world_size = _comm.Get_rank(), _comm.Get_size()
            if _world_size > 1:
                _install_excepthook()
                if set_threads and "OMP_NUM_THREADS" not in os.environ:
                    _share_cores(MPI)
    _initialized = True


def _share_cores(MPI) -> None:
    from ._config import set_num_threads
    local = _comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    set_num_threads(max(1, (os.cpu_count() or 1) // ranks_here))


def is_initialized() -> bool:
    return _initialized


def get_rank() -> int:
    """This process's rank in the job (0 when init() was not called or found no MPI)."""
    return _rank


def get_world_size() -> int:
    """Processes in the job (1 when init() was not called or found no MPI)."""
    return _world_size


def barrier() -> None:
    if _comm is not None and _world_size > 1:
        _comm.Barrier()


# ---------------------------------------------------------------------- collectives
_OPS = ("sum", "mean", "max", "min", "prod")


def _mpi_op(op: str):
    from mpi4py import MPI
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}[op]


def _array_of(x):
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"expected a fastdl.Tensor or a NumPy array, got {type(x).__name__}")


def _in_place(x, operation) -> None:
    """Run operation(buffer) on x's contiguous memory, copying back when it has none."""
    array = _array_of(x)
    if array.flags.c_contiguous and array.flags.writeable:
        operation(array)
        return
    buffer = np.ascontiguousarray(array).copy()
    operation(buffer)
    if isinstance(x, Tensor) and not array.flags.writeable:
        x.data = buffer
    else:
        array[...] = buffer


def all_reduce(x, op: str = "sum"):
    """Reduce x over all ranks in place (op: sum, mean, max, min, prod) and return x.
    A Tensor's data or a NumPy array; every rank must call it with the same shape and dtype.
    """
    if op not in _OPS:
        raise ValueError(f"op: expected one of {list(_OPS)}, got {op!r}")
    _array_of(x)
    if _world_size == 1:
        return x
    from mpi4py import MPI
    mpi_op = _mpi_op(op)

    def reduce(buffer):
        _comm.Allreduce(MPI.IN_PLACE, buffer, op=mpi_op)
        if op == "mean":
            buffer /= _world_size
    _in_place(x, reduce)
    return x


def broadcast(x, src: int = 0):
    """Overwrite x on every rank with rank src's x, in place, and return x."""
    if _world_size == 1:
        return x
    _in_place(x, lambda buffer: _comm.Bcast(buffer, root=src))
    return x


def _all_reduce_sums(*values: float) -> List[float]:
    """Sum a few Python numbers over all ranks (in float64: exact for counts below 2^53)."""
    if _world_size == 1:
        return list(values)
    return all_reduce(np.asarray(values, dtype=np.float64)).tolist()


# ---------------------------------------------------------------------- failure handling
def _abort(exc_type, exc, tb) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
    sys.stderr.write(f"fastdl.distributed: rank {_rank} of {_world_size} failed; aborting all "
                     f"ranks\n[rank {_rank}] " + text.replace("\n", f"\n[rank {_rank}] ") + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    # The launcher forwards each rank's output asynchronously and stops forwarding when it
    # tears the job down on MPI_Abort: under load the traceback was lost (2 runs in 40).
    # Give it time to pass the message on first; this is the failure path.
    time.sleep(_ABORT_GRACE_SECONDS)
    _comm.Abort(1)
    # MPICH's MPI_Abort only tells the launcher, which then kills every rank; the call
    # returns meanwhile. Exit now so that this rank runs nothing more (no MPI_Finalize,
    # no collective that could complete with the others).
    os._exit(1)


def _install_excepthook() -> None:
    # Without it, a rank that raises runs MPI_Finalize and exits while the others wait
    # forever in their next collective; MPI_Abort makes the launcher end every rank.
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if _comm is None or _world_size == 1:
            previous(exc_type, exc, tb)
        else:
            _abort(exc_type, exc, tb)
    sys.excepthook = hook


def run_guarded(fn, *args, **kwargs):
    """Call fn(*args, **kwargs); if it raises on any rank, print the error with the rank
    and abort the whole job. For code that catches exceptions above the excepthook
    (frameworks, notebooks); a plain script already gets this from init()."""
    try:
        return fn(*args, **kwargs)
    except BaseException:
        if _comm is None or _world_size == 1:
            raise
        _abort(*sys.exc_info())


# ---------------------------------------------------------------------- DDP
class _Bucket:
    """Parameters whose gradients travel in one allreduce, through one flat buffer."""

    def __init__(self, params: list, dtype: np.dtype):
        self.params = params
        self.dtype = dtype
        self.offsets = np.cumsum([0] + [p.data.size for p in params])
        self.flat = np.empty(int(self.offsets[-1]), dtype=dtype)


class DistributedDataParallel(Module):
    """Wrap a model for data-parallel training, as torch.nn.parallel.DistributedDataParallel.

    At construction, rank 0's parameters and buffers are broadcast to every rank. After
    ``loss.backward()`` call ``sync_gradients()`` (fit does it for you) before
    ``optimizer.step()``: gradients are averaged over the ranks with one allreduce per
    bucket of about ``bucket_cap_mb`` MB of flattened gradients, and floating-point buffers
    (batch-norm running statistics) are averaged, the others broadcast from rank 0, so
    every rank's model stays the same.

    state_dict keys carry the ``module.`` prefix, as in torch; save ``ddp.module.state_dict()``
    for a checkpoint that loads at any world size (fit does).

    Communication is not overlapped with the backward pass: fastdl's autograd has no hook
    that fires when a leaf's gradient is final, and MPICH progresses a non-blocking
    collective only inside MPI calls, so an Iallreduce started mid-backward would mostly
    wait for the end anyway. The buckets' allreduces are started non-blocking one after
    another and overlap with packing the next bucket and unpacking the previous one.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 4, broadcast_buffers: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"module: expected a fastdl.nn.Module, got {type(module).__name__}")
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0):
            raise ValueError(f"bucket_cap_mb: expected a positive number, got {bucket_cap_mb!r}")
        init()
        self.module = module
        self.bucket_cap_mb = bucket_cap_mb
        self.broadcast_buffers = bool(broadcast_buffers)
        for tensor in list(module.parameters()) + list(module.buffers()):
            broadcast(tensor)
        self._buckets = self._make_buckets(int(bucket_cap_mb * 2 ** 20))

    def _make_buckets(self, cap_bytes: int) -> List[_Bucket]:
        # Reverse registration order approximates the order in which backward produces the
        # gradients (last layer first), as torch's reducer does.
        params = [p for p in self.module.parameters() if p.requires_grad][::-1]
        buckets, pending = [], {}
        for p in params:
            group = pending.setdefault(p.dtype, [])
            if group and sum(q.data.nbytes for q in group) + p.data.nbytes > cap_bytes:
                buckets.append(_Bucket(group, p.dtype))
                group = pending[p.dtype] = []
            group.append(p)
        buckets.extend(_Bucket(group, dtype) for dtype, group in pending.items() if group)
        return buckets

    def _buckets_match(self) -> bool:
        return all(p.dtype == bucket.dtype and p.data.size == hi - lo
                   for bucket in self._buckets
                   for p, lo, hi in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def sync_gradients(self) -> None:
        """Average every parameter's gradient over the ranks (in place) and make the
        buffers agree. A parameter without a gradient on some ranks counts as zero there;
        one without a gradient on every rank keeps ``grad=None``."""
        if _world_size == 1:
            return
        from mpi4py import MPI
        if not self._buckets_match():  # e.g. model.double() after wrapping
            self._buckets = self._make_buckets(int(self.bucket_cap_mb * 2 ** 20))
        params = [p for bucket in self._buckets for p in bucket.params]
        has_grad = np.array([p.grad is not None for p in params], dtype=np.int32)
        _comm.Allreduce(MPI.IN_PLACE, has_grad, op=MPI.MAX)
        requests = []
        for bucket in self._buckets:
            for p, lo, hi in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
                if p.grad is None:
                    bucket.flat[lo:hi] = 0
                else:
                    bucket.flat[lo:hi] = p.grad.data.reshape(-1)
            requests.append(_comm.Iallreduce(MPI.IN_PLACE, bucket.flat, op=MPI.SUM))
        index = 0
        scale = 1.0 / _world_size
        for bucket, request in zip(self._buckets, requests):
            request.Wait()
            bucket.flat *= bucket.dtype.type(scale)
            for p, lo, hi in zip(bucket.params, bucket.offsets[:-1], bucket.offsets[1:]):
                if has_grad[index]:
                    values = bucket.flat[lo:hi].reshape(p.shape)
                    if p.grad is None:
                        p.grad = Tensor(values.copy())
                    else:
                        np.copyto(p.grad.data, values)
                index += 1
        if self.broadcast_buffers:
            self.sync_buffers()

    def sync_buffers(self) -> None:
        """Average floating-point buffers (running statistics) over the ranks; broadcast
        the others (counters) from rank 0."""
        for buffer in self.module.buffers():
            if buffer.dtype.kind == "f":
                all_reduce(buffer, "mean")
            else:
                broadcast(buffer)

    def extra_repr(self) -> str:
        return f"world_size={_world_size}, buckets={len(self._buckets)}"


# ---------------------------------------------------------------------- sampler
class DistributedSampler:
    """The indices of this rank's shard of a data set, as torch.utils.data.DistributedSampler.

    Every epoch the indices 0..N-1 (shuffled with seed + epoch when shuffle) are padded by
    repeating the first ones up to a multiple of num_replicas (or truncated to one with
    drop_last), and rank r takes every num_replicas-th index starting at r. All ranks must
    use the same seed; call ``set_epoch(epoch)`` before each epoch for a new order
    (fit does).
    """

    def __init__(self, dataset, num_replicas: Optional[int] = None, rank: Optional[int] = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if num_replicas is None:
            init()
            num_replicas = get_world_size()
        if rank is None:
            init()
            rank = get_rank()
        if not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"num_replicas: expected a positive int, got {num_replicas!r}")
        if not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            from .random import Generator
            indices = Generator().manual_seed(self.seed + self.epoch).numpy.permutation(n)
        else:
            indices = np.arange(n)
        if not self.drop_last:
            padding = self.total_size - n
            if padding > 0:
                indices = np.concatenate([indices, np.resize(indices, padding)])
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas].tolist())
