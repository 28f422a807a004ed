"""The CUDA build and the availability API on THIS machine, GPU or not: these tests run
everywhere. Without a GPU (or without a CUDA build) nothing may crash, CUDA tensors must be
refused with a clear RuntimeError, and show_config() must say what was built and found."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import _C


def test_cuda_submodule_always_exists():
    assert isinstance(_C.cuda.built(), bool)
    assert fastdl.cuda.is_built() == _C.cuda.built()
    assert isinstance(fastdl.cuda.device_count(), int) and fastdl.cuda.device_count() >= 0
    assert fastdl.cuda.is_available() == (fastdl.cuda.device_count() > 0)
    if not fastdl.cuda.is_built():
        assert fastdl.cuda.device_count() == 0


@pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get("CUDACXX"),
                    reason="no CUDA compiler on this machine: FASTDL_CUDA=AUTO builds without CUDA")
def test_auto_build_compiled_cuda_when_nvcc_is_present():
    # FASTDL_CUDA=AUTO (the default) must have compiled the .cu files into _C here; a build
    # made with FASTDL_CUDA=OFF (the sanitizer build) says so in its CMake cache instead.
    if _C.cuda.build_info().get("option") == "OFF":
        pytest.skip("this build was made with FASTDL_CUDA=OFF (e.g. the sanitizer build)")
    assert fastdl.cuda.is_built()
    info = _C.cuda.build_info()
    assert info["cuda_version"] and "no cuBLAS" in info["gemm"]


def test_importing_fastdl_needs_no_cuda_library():
    # The runtime is linked statically: the extension lists no libcudart / libcuda.
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd")
    linked = subprocess.run([ldd, _C.__file__], capture_output=True, text=True).stdout
    assert "libcudart" not in linked and "libcuda.so" not in linked and "libcublas" not in linked


def test_show_config_mentions_cuda(capsys):
    text = fastdl.show_config()
    line = next(line for line in text.splitlines() if line.strip().startswith("CUDA"))
    assert ("built" in line) if fastdl.cuda.is_built() else ("not built" in line)
    assert f"available: {fastdl.cuda.is_available()}" in line or not fastdl.cuda.is_built()
    info = fastdl.config()["cuda"]
    assert info["built"] == fastdl.cuda.is_built() and info["device_count"] == fastdl.cuda.device_count()


def test_info_command_runs_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-m", "fastdl", "info"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "CUDA" in out.stdout


@pytest.mark.skipif("fastdl.cuda.is_available()", reason="a GPU is present: CUDA tensors work")
def test_cuda_tensors_refused_clearly_without_a_gpu():
    t = fastdl.tensor([1.0, 2.0])
    for make in (lambda: t.to("cuda"), lambda: t.cuda(), lambda: fastdl.tensor([1.0], device="cuda"),
                 lambda: fastdl.zeros(3, device="cuda"), lambda: fastdl.nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError, match="CUDA is not available|built without CUDA"):
            make()
    with pytest.raises(RuntimeError, match="CUDA"):
        fastdl.cuda.synchronize()


@pytest.mark.skipif("fastdl.cuda.is_available()", reason="a GPU is present")
def test_demo_refuses_cuda_without_a_gpu():
    out = subprocess.run([sys.executable, "-m", "fastdl", "demo", "--device", "cuda", "--epochs", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--device cuda" in out.stderr and "CUDA" in out.stderr


def test_bad_device_strings_raise():
    t = fastdl.tensor([1.0])
    for bad in ("gpu", "cuda:x", "cuda:-1", "cpu:1", "tpu:0", ""):
        with pytest.raises(RuntimeError):
            fastdl.device(bad)
    with pytest.raises(RuntimeError, match="device type"):
        t.to("gpu")
    with pytest.raises(TypeError):
        fastdl.tensor([1.0], device=3)
    with pytest.raises(RuntimeError):
        fastdl.nn.Linear(1, 1).to("gpu:0")


def test_device_objects_follow_torch():
    assert fastdl.device("cuda:0") == fastdl.device("cuda", 0) == "cuda:0" == fastdl.device("cuda")
    assert fastdl.device("cpu") == "cpu" and fastdl.device("cpu") != "cuda"
    assert str(fastdl.device("cuda", 0)) == "cuda:0" and str(fastdl.device("cuda")) == "cuda"
    assert repr(fastdl.device("cpu")) == "device(type='cpu')"
    assert fastdl.device("cuda", 0).type == "cuda" and fastdl.device("cuda", 0).index == 0
    assert fastdl.device(fastdl.device("cuda:0")) == "cuda:0"
    assert hash(fastdl.device("cuda:0")) == hash(fastdl.device("cuda"))


def test_cpu_tensors_report_cpu_and_move_nowhere():
    t = fastdl.tensor([1.0, 2.0])
    assert t.device == "cpu" and str(t.device) == "cpu" and not t.is_cuda
    assert t.cpu() is t and t.to("cpu") is t and t.to(device="cpu") is t
    assert t.to("cpu", fastdl.float64).dtype == np.float64
    assert t.to(fastdl.tensor([1], dtype=fastdl.int64)).dtype == np.int64
    model = fastdl.nn.Linear(2, 2)
    weight = model.weight
    assert model.to("cpu") is model and model.weight is weight
    assert model.to(fastdl.float64).weight.dtype == np.float64 and model.weight is weight
