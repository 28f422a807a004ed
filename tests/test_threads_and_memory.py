"""Kernels called from several Python threads at once (the GIL is released), and a long
training run whose resident memory must stay flat."""
import os
import threading

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F


def _conv_step(seed):
    rng = np.random.default_rng(seed)
    x = fastdl.tensor(rng.standard_normal((8, 4, 12, 12)).astype(np.float32), requires_grad=True)
    w = fastdl.tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), requires_grad=True)
    out = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    loss = F.cross_entropy(out.reshape(8, -1), fastdl.tensor(rng.integers(0, 6 * 36, 8)))
    loss.backward()
    return loss.item(), x.grad.numpy().copy(), w.grad.numpy().copy()


def test_python_threads_calling_kernels_concurrently_get_correct_results():
    seeds = list(range(8))
    expected = {s: _conv_step(s) for s in seeds}
    results, errors = {}, []

    def worker(my_seeds):
        try:
            for _ in range(5):
                for s in my_seeds:
                    results.setdefault(s, []).append(_conv_step(s))
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seeds[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a kernel call hung"
    for s in seeds:
        for loss, gx, gw in results[s]:
            assert loss == expected[s][0]
            np.testing.assert_array_equal(gx, expected[s][1])
            np.testing.assert_array_equal(gw, expected[s][2])


def test_optimizers_in_concurrent_threads():
    def train(seed, out):
        gen = fastdl.Generator().manual_seed(seed)
        params = [nn.Parameter(fastdl.randn(1000, generator=gen).data) for _ in range(5)]
        opt = fastdl.optim.Adam(params, lr=1e-2)
        for step in range(50):
            for p in params:
                p.grad = fastdl.tensor(np.sin(p.data * (step + 1)))
            opt.step()
        out[seed] = [p.data.copy() for p in params]

    serial, parallel = {}, {}
    for s in range(4):
        train(s, serial)
    threads = [threading.Thread(target=train, args=(s, parallel)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for s in range(4):
        for a, b in zip(serial[s], parallel[s]):
            np.testing.assert_array_equal(a, b)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.skipif(fastdl.config()["sanitizers"],
                    reason="AddressSanitizer's quarantine keeps freed memory resident by design")
def test_ten_thousand_training_steps_keep_memory_flat():
    fastdl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    optimizer = fastdl.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = fastdl.tensor(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    y = fastdl.tensor(rng.integers(0, 10, 16))
    samples = {}
    for step in range(10_000):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if step in (1_000, 5_000, 9_999):
            samples[step] = _rss_bytes()
    growth = samples[9_999] - samples[1_000]
    assert growth < 4 * 2 ** 20, f"resident memory grew by {growth / 2**20:.1f} MiB over 9,000 steps: {samples}"
    assert np.isfinite(loss.item())
