"""Run tests/cuda/test_cuda_kernels.py against fastdl's CUDA kernels compiled for the CPU
simulator (build.py): the kernels' own code, the real bindings, compared with the CPU
kernels. Slow; for developers without a GPU. Extra arguments go to pytest.

    python tests/cuda/sim/run.py [-k conv2d] [-x]
"""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import build  # noqa: E402

library = build.main()
spec = importlib.util.spec_from_file_location("_cuda_sim", library)
sim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sim)

import fastdl  # noqa: E402

fastdl._C.cuda = sim.cuda
fastdl.cuda._count = None

import pytest  # noqa: E402

sys.exit(pytest.main([str(HERE.parent / "test_cuda_kernels.py"), "-q", "-p", "no:cacheprovider",
                      "-rs", *sys.argv[1:]]))
