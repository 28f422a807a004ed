"""The output cache of the memory-bound kernels (csrc/bindings_alloc.*): large outputs are
ordinary NumPy arrays that own their data, freed blocks are reused, nothing is corrupted."""
import numpy as np
import pytest

import fastdl
import fastdl.nn.functional as F
from fastdl import _C


def test_large_outputs_own_their_data_and_blocks_are_reused():
    x = np.linspace(-5, 5, 1 << 20, dtype=np.float32)
    _C.output_cache_release()
    first = _C.sigmoid_forward(x)
    assert first.flags.owndata and first.flags.c_contiguous and first.flags.writeable
    expected = first.copy()
    del first
    assert _C.output_cache_held_bytes() >= x.nbytes
    again = _C.sigmoid_forward(x)  # served from the block just freed
    np.testing.assert_array_equal(again, expected)
    assert _C.output_cache_held_bytes() == 0
    del again
    assert _C.output_cache_release() >= x.nbytes
    assert _C.output_cache_held_bytes() == 0


def test_reused_block_holds_no_stale_values():
    # nll_loss's gradient is mostly zeros: a recycled block must be cleared.
    x = np.full((2048, 1024), 7.0, np.float32)
    stale = _C.tanh_forward(x)  # a 8 MB block full of tanh(7)
    del stale
    leaf = fastdl.tensor(np.zeros((2048, 1024), np.float32), requires_grad=True)
    F.nll_loss(leaf, fastdl.tensor(np.zeros(2048, np.int64))).backward()
    grad = leaf.grad.numpy()
    assert np.count_nonzero(grad) == 2048
    np.testing.assert_array_equal(grad[:, 0], np.float32(-1 / 2048))


def test_resize_and_small_outputs():
    x = np.ones(1 << 19, np.float32)  # 2 MB: a cached block
    a = _C.sigmoid_forward(x)
    a.resize(1 << 21, refcheck=False)  # NumPy reallocates through the cache's handler
    np.testing.assert_array_equal(a[: 1 << 19], np.float32(1 / (1 + np.exp(-1.0))))
    a.resize(10, refcheck=False)
    assert a.shape == (10,)
    small = _C.sigmoid_forward(np.zeros(5, np.float32))  # below 1 MiB: plain malloc
    np.testing.assert_array_equal(small, 0.5)


@pytest.mark.parametrize("threads", [1, 2])
def test_gradient_is_adopted_not_copied(threads):
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    leaf = fastdl.tensor(np.random.default_rng(0).standard_normal((64, 8, 32, 32), dtype=np.float32),
                         requires_grad=True)
    F.batch_norm(leaf, None, None, training=True).sum().backward()
    fastdl.set_num_threads(before)
    assert leaf.grad.numpy().flags.owndata
