"""Checkpoints without pickle: fastdl.save(obj, path) and fastdl.load(path).

Format: a zip archive holding ``manifest.json`` (the object's structure, with every
array replaced by a reference) and one ``arrays/<i>.npy`` per array, written and read by
NumPy's .npy routines with ``allow_pickle=False``. Loading therefore never runs code: a
pickle, an object array, a truncated file or random bytes raise ValueError.

Saving is atomic and durable: the archive is written to a temporary file in the target's
folder, flushed and fsync'ed, then renamed over the target (and the folder fsync'ed). A
process killed mid-save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import io
import json
import numbers
import os
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any, List

import numpy as np

from .tensor import Tensor

__all__ = ["save", "load"]

_FORMAT = "fastdl-checkpoint"
_VERSION = 1
_MANIFEST = "manifest.json"


class _Encoder:
    """Turns an object tree into JSON-safe data plus a list of arrays."""

    def __init__(self):
        self.arrays: List[np.ndarray] = []

    def array(self, array: np.ndarray, tensor: bool, requires_grad: bool = False) -> dict:
        if array.dtype.kind not in "biuf":
            raise TypeError(f"obj: cannot save an array of dtype {array.dtype} "
                            f"(only bool, integer and float arrays)")
        self.arrays.append(np.ascontiguousarray(array))
        entry = {"$array": len(self.arrays) - 1}
        if tensor:
            entry["tensor"] = True
            if requires_grad:
                entry["requires_grad"] = True
        return entry

    def encode(self, obj: Any, path: str) -> Any:
        if isinstance(obj, Tensor):
            return self.array(obj.data, True, obj.requires_grad)
        if isinstance(obj, np.ndarray):
            return self.array(obj, False)
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.generic):
            obj = obj.item()
        if isinstance(obj, numbers.Integral):
            return int(obj)
        if isinstance(obj, numbers.Real):
            value = float(obj)
            return value if np.isfinite(value) else {"$float": repr(value)}
        if isinstance(obj, dict):
            items = []
            for key, value in obj.items():
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise TypeError(f"obj{path}: dict keys must be str, int, float, bool or None, "
                                    f"got {type(key).__name__}")
                items.append([key, self.encode(value, f"{path}[{key!r}]")])
            return {"$dict": items, "ordered": isinstance(obj, OrderedDict)}
        if isinstance(obj, (list, tuple)):
            encoded = [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]
            return {"$tuple": encoded} if isinstance(obj, tuple) else encoded
        raise TypeError(f"obj{path}: cannot save an object of type {type(obj).__name__} "
                        f"(tensors, arrays, numbers, strings, None and dicts/lists of them)")


def save(obj: Any, path) -> None:
    """Save tensors, arrays and nested dicts/lists of them and of numbers and strings
    (model and optimizer state dicts included) to ``path``, atomically."""
    path = os.fspath(path)
    encoder = _Encoder()
    manifest = {"format": _FORMAT, "version": _VERSION, "object": encoder.encode(obj, "")}
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                                         suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_MANIFEST, json.dumps(manifest))
                for index, array in enumerate(encoder.arrays):
                    buffer = io.BytesIO()
                    np.lib.format.write_array(buffer, array, allow_pickle=False)
                    archive.writestr(f"arrays/{index}.npy", buffer.getvalue())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        pass


class _Decoder:
    def __init__(self, archive: zipfile.ZipFile, path: str):
        self.archive, self.path = archive, path

    def fail(self, why: str) -> ValueError:
        return ValueError(f"{self.path}: not a valid fastdl checkpoint ({why})")

    def array(self, entry: dict):
        index = entry.get("$array")
        if not isinstance(index, int) or isinstance(index, bool):
            raise self.fail("bad array reference")
        try:
            with self.archive.open(f"arrays/{index}.npy") as f:
                array = np.lib.format.read_array(io.BytesIO(f.read()), allow_pickle=False)
        except KeyError:
            raise self.fail(f"array {index} is missing") from None
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as error:
            raise self.fail(f"array {index} is unreadable: {error}") from None
        if array.dtype.kind not in "biuf":
            raise self.fail(f"array {index} has dtype {array.dtype}")
        if entry.get("tensor"):
            tensor = Tensor(np.ascontiguousarray(array))
            if entry.get("requires_grad") and array.dtype.kind == "f":
                tensor.requires_grad = True
            return tensor
        return array

    def decode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if isinstance(value, dict):
            if "$array" in value:
                return self.array(value)
            if "$tuple" in value and isinstance(value["$tuple"], list):
                return tuple(self.decode(v) for v in value["$tuple"])
            if "$float" in value and value["$float"] in ("nan", "inf", "-inf"):
                return float(value["$float"])
            if "$dict" in value and isinstance(value["$dict"], list):
                out = OrderedDict() if value.get("ordered") else {}
                for item in value["$dict"]:
                    if not isinstance(item, list) or len(item) != 2:
                        raise self.fail("bad dict entry")
                    key, v = item
                    if isinstance(key, (list, dict)):
                        raise self.fail("bad dict key")
                    out[key] = self.decode(v)
                return out
        raise self.fail(f"unexpected entry of type {type(value).__name__}")


def load(path) -> Any:
    """Load what ``save`` wrote. Never unpickles: anything else raises ValueError."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path, "r")
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a valid fastdl checkpoint (not a fastdl zip archive: "
                         f"{error}); fastdl never loads pickles") from None
    with archive:
        decoder = _Decoder(archive, path)
        try:
            raw = archive.read(_MANIFEST)
        except KeyError:
            raise decoder.fail("no manifest.json") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise decoder.fail(f"manifest unreadable: {error}") from None
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise decoder.fail(f"manifest is not JSON: {error}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise decoder.fail("wrong format tag")
        if manifest.get("version") != _VERSION:
            raise decoder.fail(f"unsupported version {manifest.get('version')!r}")
        return decoder.decode(manifest.get("object"))
