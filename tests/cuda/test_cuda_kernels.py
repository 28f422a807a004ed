"""Every CUDA kernel, forward and backward, against fastdl's CPU kernel and against PyTorch
CUDA (when this PyTorch has CUDA): the ops of tests/cuda/cases.py in float32 and float64,
the fused optimizer steps, determinism (two runs give the same bits), device memory and
the bindings' size checks. Needs a GPU: skipped as a whole without one."""
import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from cases import CASE_IDS, CASES, OPTIMIZER_IDS, OPTIMIZERS, run, run_optimizer

if not fastdl.cuda.is_available():
    pytest.skip("no CUDA GPU: fastdl.cuda.is_available() is False "
                f"({'CUDA build, no device or driver' if fastdl.cuda.is_built() else 'built without CUDA'})",
                allow_module_level=True)

try:
    import torch
    TORCH_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    torch, TORCH_CUDA = None, False
if TORCH_CUDA:
    # Compare against full-precision products: no TF32 in cuDNN or cuBLAS.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
needs_torch_cuda = pytest.mark.skipif(not TORCH_CUDA, reason="PyTorch without CUDA (or no PyTorch): "
                                                              "no torch comparison on the GPU")

TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def _compare(result, expected, dtype, what):
    out, grads = result
    out_ref, grads_ref = expected
    assert out.shape == out_ref.shape and out.dtype == out_ref.dtype, what
    np.testing.assert_allclose(out, out_ref, err_msg=f"{what}: forward", **TOLERANCE[dtype])
    for i, (g, g_ref) in enumerate(zip(grads, grads_ref)):
        assert (g is None) == (g_ref is None), f"{what}: gradient {i} presence"
        if g is not None:
            np.testing.assert_allclose(g, g_ref, err_msg=f"{what}: gradient of input {i}", **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cuda_matches_cpu(case, dtype):
    result, expected = run(fastdl, case, "cuda", dtype), run(fastdl, case, "cpu", dtype)
    _compare(result, expected, dtype, case.name)
    if not case.torch:  # fastdl's random numbers (dropout): the CPU's mask and values, bit for bit
        np.testing.assert_array_equal(result[0], expected[0])
        for g, g_ref in zip(result[1], expected[1]):
            np.testing.assert_array_equal(g, g_ref)


# Cases made of single IEEE operations and copies (tensor.cu, dropout.cu): the GPU must give
# NumPy's bits, forward and backward, not just agree to rounding.
EXACT = ["arithmetic", "arithmetic_scalars", "permute", "transpose_t", "pad",
         "pad_value_3d", "one_hot", "one_hot_inferred", "dropout", "dropout_module_train"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", EXACT)
def test_cuda_has_the_cpu_bits(name, dtype):
    case = CASES[CASE_IDS.index(name)]
    (out, grads), (out_ref, grads_ref) = run(fastdl, case, "cuda", dtype), run(fastdl, case, "cpu", dtype)
    np.testing.assert_array_equal(out, out_ref)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_array_equal(g, g_ref)


@needs_torch_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cuda_matches_torch_cuda(case, dtype):
    if not case.torch:
        pytest.skip(f"{case.name}: fastdl's random numbers, compared with fastdl's CPU op only")
    _compare(run(fastdl, case, "cuda", dtype), run(torch, case, "cuda", dtype), dtype, case.name)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cuda_is_deterministic(case):
    first, second = run(fastdl, case, "cuda", np.float32), run(fastdl, case, "cuda", np.float32)
    np.testing.assert_array_equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimizer_step_matches_cpu(name, options, dtype):
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b in zip(run_optimizer(fastdl, name, options, "cuda", dtype),
                    run_optimizer(fastdl, name, options, "cpu", dtype)):
        np.testing.assert_allclose(a, b, **tol)


@needs_torch_cuda
@pytest.mark.parametrize("name,options", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_optimizer_step_matches_torch_cuda(name, options):
    for a, b in zip(run_optimizer(fastdl, name, options, "cuda"), run_optimizer(torch, name, options, "cuda")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_many_tensors_in_one_optimizer_step():
    # More tensors than one launch carries (24): the packs must cover them all.
    shapes = tuple((i % 5 + 1, 3) for i in range(60)) + ((0,),)
    a = run_optimizer(fastdl, "Adam", dict(lr=1e-2), "cuda", shapes=shapes)
    b = run_optimizer(fastdl, "Adam", dict(lr=1e-2), "cpu", shapes=shapes)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_large_conv_and_gemm_tiles():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 33, 31)).astype(np.float32)
    w = rng.standard_normal((70, 16, 3, 3)).astype(np.float32) * 0.1
    out = {}
    for device in ("cpu", "cuda"):
        xt = fastdl.tensor(x, requires_grad=True, device=device)
        wt = fastdl.tensor(w, requires_grad=True, device=device)
        y = F.conv2d(xt, wt, padding=1)
        y.backward(fastdl.ones_like(y))
        out[device] = [y.detach().cpu().numpy(), xt.grad.cpu().numpy(), wt.grad.cpu().numpy()]
    for a, b in zip(out["cuda"], out["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_running_statistics_update_on_device():
    x = np.random.default_rng(1).standard_normal((6, 3, 4, 4)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        layer = nn.BatchNorm2d(3).to(device)
        layer(fastdl.tensor(x, device=device))
        results.append((layer.running_mean.cpu().numpy(), layer.running_var.cpu().numpy()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)


def test_buffer_round_trip_and_checks():
    from fastdl import _C
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    buffer = _C.cuda.Buffer(a.nbytes)
    buffer.copy_from_host(a)
    back = np.empty_like(a)
    buffer.copy_to_host(back)
    np.testing.assert_array_equal(back, a)
    buffer.zero()
    buffer.copy_to_host(back)
    assert not back.any()
    with pytest.raises(ValueError, match="bytes"):
        buffer.copy_from_host(np.zeros(5, np.float32))
    small = _C.cuda.Buffer(4)
    with pytest.raises(ValueError, match="device buffer holds 4 bytes"):
        _C.cuda.relu_forward_float32(small, buffer, 12)  # 12 elements needed from a 4-byte input


def test_tensor_round_trip_and_synchronize():
    values = np.random.default_rng(2).standard_normal((3, 5))
    t = fastdl.tensor(values, device="cuda")
    fastdl.cuda.synchronize()
    assert t.device == "cuda:0" and t.dtype == np.float64
    np.testing.assert_array_equal(t.cpu().numpy(), values)
    assert fastdl.cuda.get_device_name()
    assert fastdl.cuda.get_device_capability()[0] >= 7


def test_training_reaches_cpu_accuracy():
    # The demo's network on the digits, a few epochs on each device: same accuracy.
    pytest.importorskip("sklearn", reason="the demo trains on scikit-learn's digits")
    from fastdl.__main__ import demo
    gpu = demo(epochs=3, bench=False, device="cuda", progress=False)
    cpu = demo(epochs=3, bench=False, device="cpu", progress=False)
    assert abs(gpu["test_accuracy"] - cpu["test_accuracy"]) <= 0.02
