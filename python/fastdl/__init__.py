"""fastdl: a fast, clear deep-learning library — C++/OpenMP kernels under PyTorch's API."""
import os as _os

# libgomp reads this once, when it loads: worker threads sleep instead of spinning
# between kernels, so OpenMP and OpenBLAS threads never fight over the cores.
_os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import scipy_openblas32 as _openblas  # noqa: E402,F401  (loads libscipy_openblas globally)

from . import _C  # noqa: E402

# libgomp is not fork-safe after a parallel region: a forked child (multiprocessing,
# data-loader workers) starts with one thread.
_os.register_at_fork(after_in_child=lambda: _C.set_num_threads(1))

from . import autograd, cuda, data, distributed, image, linear_model, metrics, nn, optim, random, reference, train  # noqa: E402,I001
from .io import load, save  # noqa: E402
from ._config import config, get_num_threads, set_num_threads, show_config  # noqa: E402
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: E402
from .random import (Generator, initial_seed, manual_seed, rand, randint, randn,  # noqa: E402
                     randperm, seed)
from ._device import device  # noqa: E402
from .tensor import (Tensor, arange, as_tensor, bool_, double, empty, float32,  # noqa: E402
                     float64, from_numpy, full, get_default_dtype, int32, int64, long, ones,
                     ones_like, tensor, uint8, zeros, zeros_like)
from .tensor import float as float  # noqa: E402,F401  (torch.float)

__version__ = _C.build_info()["version"]

__all__ = [
    "Tensor", "tensor", "as_tensor", "from_numpy", "zeros", "ones", "empty", "full", "arange",
    "zeros_like", "ones_like", "randn", "rand", "randint", "randperm",
    "float32", "float64", "int64", "int32", "uint8", "bool_", "double", "long", "get_default_dtype",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "manual_seed", "seed", "initial_seed", "Generator",
    "set_num_threads", "get_num_threads", "show_config", "config",
    "nn", "optim", "data", "train", "reference", "autograd", "random", "image", "linear_model",
    "metrics", "distributed", "save", "load", "cuda", "device",
]
