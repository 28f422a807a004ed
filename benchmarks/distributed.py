"""fastdl.distributed on MPI: allreduce throughput, and 1 vs 2 ranks on the demo CNN's step.

    python benchmarks/distributed.py [--ranks 2] [--steps 60] [--bandwidth-gbit 10 25 100]

The script launches itself under ``mpiexec`` (the one next to this Python, or on PATH):
  1. allreduce: float32 buffers of 1 KB .. 64 MB on N ranks, each checked (every rank must
     hold the sum) before timing; median of repeats after a warm-up. algbw = bytes / time;
     busbw = algbw * 2(N-1)/N, the bytes each rank actually moves in a ring allreduce
     (the nccl-tests convention): comparable across N, and with the link's bandwidth.
  2. step: the demo CNN (python -m fastdl demo) with Adam on a global batch of 32 and of
     256 digits-shaped samples, one thread per rank, on 1 rank and on N ranks: the median
     time per global batch, the slowest rank's compute (forward + backward + optimizer
     step) and the fastest rank's gradient sync (the others' includes waiting); "sync
     alone" times sync_gradients() right after a barrier: its own cost. Speed-up = t_1 / t_N,
     efficiency = speed-up / N. One rank with N threads is also timed: on one machine, that
     is the alternative to N ranks.
Then the model of docs/distributed.md predicts the speed-up on N machines from the measured
compute time, the gradient size and a network bandwidth. Results recorded on the
development machine are kept in benchmarks/results/distributed.txt.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = [2 ** k for k in range(10, 27, 2)]  # 1 KB .. 64 MB


def mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("no mpiexec next to this Python or on PATH: pip install 'fastdl[mpi]'")
    return found


def launch(ranks, *args, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker",
                           *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        sys.exit(f"worker {args} on {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- workers (under MPI)
def worker_allreduce():
    from mpi4py import MPI
    import fastdl.distributed as dist
    dist.init()
    comm, rank, world = MPI.COMM_WORLD, dist.get_rank(), dist.get_world_size()
    rows = []
    for size in SIZES:
        buffer = np.full(size // 4, rank + 1, dtype=np.float32)
        dist.all_reduce(buffer)
        assert np.all(buffer == world * (world + 1) / 2), "allreduce gave a wrong sum"
        repeats = max(5, min(200, (64 << 20) // size // 4))
        times = []
        for _ in range(repeats + 2):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            times.append(time.perf_counter() - start)
        times = dist.all_reduce(np.array(times[2:]), "max")  # the slower rank's time
        rows.append({"bytes": size, "seconds": float(statistics.median(times))})
    return rows


def worker_step(steps, global_batch):
    import fastdl
    import fastdl.distributed as dist
    from fastdl import nn, optim
    from fastdl.__main__ import digits_cnn
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    fastdl.manual_seed(0)
    model = dist.DistributedDataParallel(digits_cnn())
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    local = global_batch // world
    rng = np.random.default_rng(rank)
    x = fastdl.tensor(rng.random((local, 1, 8, 8), dtype=np.float32))
    y = fastdl.tensor(rng.integers(0, 10, local))
    compute, sync, total = [], [], []
    for step in range(steps + 5):
        dist.barrier()
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        t1 = time.perf_counter()
        model.sync_gradients()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if step >= 5:  # warm-up
            compute.append((t1 - t0) + (t3 - t2))
            sync.append(t2 - t1)
            total.append(t3 - t0)
    alone = []  # the sync by itself, after a barrier: its cost without waiting for a rank
    for _ in range(steps):
        dist.barrier()
        t0 = time.perf_counter()
        model.sync_gradients()
        alone.append(time.perf_counter() - t0)
    params = list(model.parameters())
    assert dist.all_reduce(params[0].data.copy(), "max").tolist() == params[0].data.tolist(), \
        "ranks diverged"
    gradient_bytes = sum(p.data.nbytes for p in params)
    median = statistics.median
    # The slowest rank sets the pace: its compute, and the sync it sees (the others' sync
    # includes waiting for it).
    slowest = dist.all_reduce(np.array([median(compute), median(total)]), "max")
    fastest_sync = dist.all_reduce(np.array([median(sync), median(alone)]), "min")
    return {"ranks": world, "threads": fastdl.get_num_threads(), "global_batch": global_batch,
            "compute": slowest[0], "sync": fastest_sync[0], "sync_alone": fastest_sync[1],
            "step": slowest[1],
            "gradient_bytes": gradient_bytes}


# ---------------------------------------------------------------------- the model
def ring_allreduce_seconds(n, gradient_bytes, bandwidth, latency, buckets=1):
    """2(N-1) steps, each moving G/N bytes per rank and paying the link latency once per bucket."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * gradient_bytes / bandwidth + 2 * (n - 1) * latency * buckets


def predicted_speedup(n, compute, gradient_bytes, bandwidth, latency, overlap=False):
    """t_1 / t_N with t_N = t_c / N + t_allreduce (or max(t_c / N, t_allreduce) with overlap)."""
    comm = ring_allreduce_seconds(n, gradient_bytes, bandwidth, latency)
    step = max(compute / n, comm) if overlap else compute / n + comm
    return compute / step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--bandwidth-gbit", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--latency-us", type=float, default=20.0)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = worker_allreduce() if kind == "allreduce" else worker_step(*map(int, rest))
        import fastdl.distributed as dist
        if dist.get_rank() == 0:
            print(json.dumps(result))
        return

    import fastdl
    n = args.ranks
    print(f"fastdl {fastdl.__version__}, {os.cpu_count()} cores, MPI via {mpiexec()}")
    print(f"\nallreduce of float32 buffers on {n} ranks (one machine: shared memory), median")
    print(f"{'bytes':>10} {'time us':>10} {'algbw GB/s':>11} {'busbw GB/s':>11}")
    for row in launch(n, "allreduce"):
        algbw = row["bytes"] / row["seconds"] / 1e9
        print(f"{row['bytes']:>10} {1e6 * row['seconds']:>10.1f} {algbw:>11.2f} "
              f"{algbw * 2 * (n - 1) / n:>11.2f}")

    print(f"\ndemo CNN step (Adam), time per global batch, median of {args.steps} steps")
    print(f"{'batch':>5} {'ranks x threads':>15} {'step ms':>8} {'compute ms':>10} "
          f"{'sync ms':>8} {'sync alone us':>13} {'speed-up':>8} {'efficiency':>10}")
    measured = {}
    for batch in (32, 256):
        one = launch(1, "step", args.steps, batch)
        one_threaded = launch(1, "step", args.steps, batch, threads=n)
        many = launch(n, "step", args.steps, batch)
        measured[batch] = one
        for row in (one, one_threaded, many):
            speedup = one["step"] / row["step"]
            print(f"{batch:>5} {row['ranks']:>7} x {row['threads']:<5} {1e3 * row['step']:>8.2f} "
                  f"{1e3 * row['compute']:>10.2f} {1e3 * row['sync']:>8.3f} "
                  f"{1e6 * row['sync_alone']:>13.1f} {speedup:>8.2f} "
                  f"{speedup / row['ranks']:>10.2f}")

    latency = args.latency_us * 1e-6
    for batch, one in measured.items():
        compute, gradient_bytes = one["compute"], one["gradient_bytes"]
        print(f"\nmodel, global batch {batch}: t_c = {1e3 * compute:.2f} ms (1 rank), "
              f"G = {gradient_bytes / 1e3:.1f} kB, latency {args.latency_us:g} us; "
              f"predicted speed-up on N machines (no overlap / overlap)")
        ns = [2, 4, 8, 16, 64]
        print(f"{'link':>10} " + " ".join(f"{'N=' + str(k):>11}" for k in ns))
        for gbit in args.bandwidth_gbit:
            bandwidth = gbit * 1e9 / 8
            cells = [f"{predicted_speedup(k, compute, gradient_bytes, bandwidth, latency):5.2f}/"
                     f"{predicted_speedup(k, compute, gradient_bytes, bandwidth, latency, True):<5.2f}"
                     for k in ns]
            print(f"{f'{gbit:g} Gbit/s':>10} " + " ".join(f"{c:>11}" for c in cells))


if __name__ == "__main__":
    main()
