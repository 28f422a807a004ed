"""Build and runtime configuration: threads and show_config()."""
from __future__ import annotations

import os
import platform

from . import _C

__all__ = ["set_num_threads", "get_num_threads", "show_config", "config"]


def set_num_threads(n: int) -> None:
    """Threads for fastdl's kernels: the OpenMP team and the BLAS (one pool runs at a time)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    return _C.get_num_threads()


def config() -> dict:
    info = dict(_C.build_info())
    info["omp_threads"] = _C.get_num_threads()
    info["blas_threads"] = _C.blas_num_threads()
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "")
    info["python"] = platform.python_version()
    info["machine"] = platform.machine()
    info["cpu_count"] = os.cpu_count()
    from . import cuda
    info["cuda"] = cuda.info()
    return info


def show_config() -> str:
    """Print (and return) the version, compiler, SIMD level, threads, BLAS and CUDA status."""
    c = config()
    lines = [
        f"fastdl {c['version']}",
        f"  compiler        {c['compiler']}",
        f"  -march          {c['arch']}",
        f"  SIMD            {c['simd']}",
        f"  OpenMP          {c['openmp']} ({c['omp_threads']} threads, OMP_WAIT_POLICY={c['omp_wait_policy']})",
        f"  BLAS            {c['blas']} ({c['blas_threads']} threads)",
        f"  CUDA            {_cuda_line(c['cuda'])}",
        f"  sanitizers      {'ASan+UBSan' if c['sanitizers'] else 'off'}",
        f"  malloc tuning   {'on (FASTDL_MALLOC_TUNING=0 turns it off)' if c.get('malloc_tuning') else 'off'}",
        f"  Python          {c['python']} on {c['machine']}, {c['cpu_count']} CPUs",
    ]
    lines[7:7] = [f"    device {i}      {name}" for i, name in enumerate(c["cuda"]["devices"])]
    text = "\n".join(lines)
    print(text)
    return text


def _cuda_line(cuda: dict) -> str:
    if not cuda["built"]:
        return "not built (no CUDA compiler at build time, or FASTDL_CUDA=OFF)"
    driver = cuda["driver_version"]
    found = (f"{cuda['device_count']} device(s), driver {driver // 1000}.{driver % 1000 // 10}"
             if cuda["device_count"] else
             "no GPU found" + ("" if driver else " (no NVIDIA driver)"))
    return (f"built (CUDA {cuda['cuda_version']}, sm {cuda['architectures']}, "
            f"GEMM: {cuda['gemm']}); {found}; available: {bool(cuda['device_count'])}")
