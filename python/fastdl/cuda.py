"""fastdl.cuda: is the CUDA backend built, is a GPU there, and a few device utilities.

As torch.cuda: ``is_available()``, ``device_count()``, ``get_device_name()``,
``synchronize()``. Nothing here touches the GPU at import; ``is_available()`` asks the CUDA
runtime (linked statically into fastdl._C) for the device count the first time it is
called, and a machine without a driver simply answers False.
"""
from __future__ import annotations

from typing import Optional

from . import _C

__all__ = ["is_built", "is_available", "device_count", "get_device_name", "synchronize",
           "get_device_capability", "info"]

_count: Optional[int] = None


def is_built() -> bool:
    """Whether this build of fastdl contains the CUDA kernels (FASTDL_CUDA=AUTO/ON)."""
    return bool(_C.cuda.built())


def device_count() -> int:
    """Number of CUDA devices the runtime sees (0 without a build, a driver or a GPU)."""
    global _count
    if _count is None:
        _count = int(_C.cuda.device_count()) if is_built() else 0
    return _count


def is_available() -> bool:
    """Whether CUDA tensors can be made: a CUDA build and at least one GPU."""
    return device_count() > 0


def _require(target=None) -> None:
    """Raise a clear RuntimeError when CUDA tensors cannot be made (or the index is absent)."""
    if not is_built():
        raise RuntimeError("fastdl was built without CUDA: rebuild with a CUDA compiler on PATH "
                           "(FASTDL_CUDA=AUTO, the default, or -Ccmake.define.FASTDL_CUDA=ON); "
                           "see the README's CUDA section")
    if device_count() == 0:
        raise RuntimeError("CUDA is not available: fastdl was built with CUDA but found no GPU "
                           "(no NVIDIA driver or no device); fastdl.cuda.is_available() is False")
    index = getattr(target, "index", None)
    if index not in (None, 0):
        raise RuntimeError(f"device cuda:{index}: fastdl uses one GPU, cuda:0 "
                           f"({device_count()} visible)")


def get_device_name(device=0) -> str:
    _require()
    return _C.cuda.device_name(_index(device))


def get_device_capability(device=0):
    _require()
    major, minor = _C.cuda.device_capability(_index(device)).split(".")
    return int(major), int(minor)


def synchronize() -> None:
    """Wait until every queued kernel has finished (for timing)."""
    _require()
    _C.cuda.synchronize()


def _index(device) -> int:
    if isinstance(device, int):
        return device
    from ._device import parse_device
    return parse_device(device).index or 0


def info() -> dict:
    """What was built and what was found: for show_config()."""
    result = {"built": is_built(), "device_count": 0, "devices": []}
    if not result["built"]:
        return result
    result.update(_C.cuda.build_info())
    result["runtime_version"] = _C.cuda.runtime_version()
    result["driver_version"] = _C.cuda.driver_version()
    result["device_count"] = device_count()
    for i in range(result["device_count"]):
        try:
            result["devices"].append(f"{_C.cuda.device_name(i)} (sm_{_C.cuda.device_capability(i).replace('.', '')}, "
                                     f"{_C.cuda.device_memory(i) / 2**30:.0f} GiB)")
        except RuntimeError as error:  # pragma: no cover - a device the runtime cannot query
            result["devices"].append(f"unavailable: {error}")
    return result
