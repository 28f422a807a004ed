"""Build fastdl's CUDA kernels for the CPU simulator (cuda_sim.h) into a Python module
`_cuda_sim` whose submodule `cuda` has the API of fastdl._C.cuda, then (run.py) run the
GPU tests against it. Tests only: slow, single-threaded, not a GPU.

    python tests/cuda/sim/build.py      # -> build/cuda-sim/_cuda_sim*.so
"""
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pybind11

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "build" / "cuda-sim"
SIM = Path(__file__).resolve().parent


def convert(text: str) -> str:
    """kernel<T><<<grid, block>>>(args);  ->  cuda_sim::launch(grid, block, [&] { kernel<T>(args); });"""
    out, i = [], 0
    while True:
        j = text.find("<<<", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        # the kernel expression: back to the start of the statement (after ; { } or newline+spaces)
        k = j
        depth = 0
        while k > 0:
            c = text[k - 1]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
            elif depth == 0 and not (c.isalnum() or c in "_:"):
                break
            k -= 1
        kernel = text[k:j]
        end = text.find(">>>", j)
        config = text[j + 3:end]
        p = end + 3
        assert text[p] == "(", text[j - 40:p + 40]
        depth, q = 0, p
        while True:
            if text[q] == "(":
                depth += 1
            elif text[q] == ")":
                depth -= 1
                if depth == 0:
                    break
            q += 1
        args = text[p + 1:q]
        semicolon = text.index(";", q)
        out.append(text[i:k])
        out.append(f"cuda_sim::launch({config}, [&] {{ {kernel}({args}); }});")
        i = semicolon + 1


def main() -> Path:
    (OUT / "cuda").mkdir(parents=True, exist_ok=True)
    (OUT / "cuda_runtime.h").write_text('#pragma once\n#include "cuda_sim.h"\n')
    sources = []
    for source in sorted((ROOT / "csrc" / "cuda").iterdir()):
        text = convert(source.read_text())
        target = OUT / "cuda" / (source.name.replace(".cu", ".cpp") if source.suffix == ".cu" else source.name)
        target.write_text(text)
        if source.suffix == ".cu":
            sources.append(target)
    module = OUT / "sim_module.cpp"
    module.write_text('#include <pybind11/pybind11.h>\n#include "bindings.h"\n'
                      'PYBIND11_MODULE(_cuda_sim, m) { fastdl::bindings::bind_cuda(m); }\n')
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    library = OUT / f"_cuda_sim{suffix}"
    inputs = [*(ROOT / "csrc" / "cuda").iterdir(), ROOT / "csrc" / "bindings_cuda.cpp",
              ROOT / "csrc" / "bindings.h", ROOT / "csrc" / "bindings_optim.h", SIM / "cuda_sim.h", Path(__file__)]
    if library.exists() and library.stat().st_mtime > max(p.stat().st_mtime for p in inputs):
        return library  # up to date
    command = ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-w",
               f"-I{OUT}", f"-I{SIM}", f"-I{ROOT / 'csrc'}", f"-I{pybind11.get_include()}",
               f"-I{sysconfig.get_paths()['include']}",
               "-DFASTDL_WITH_CUDA", '-DFASTDL_CUDA_VERSION="sim"', '-DFASTDL_CUDA_ARCHS="sim"',
               '-DFASTDL_CUDA_OPTION="SIM"',
               *map(str, sources), str(ROOT / "csrc" / "bindings_cuda.cpp"), str(module),
               "-o", str(library)]
    print(" ".join(command[:6]), "...", flush=True)
    subprocess.run(command, check=True)
    return library


if __name__ == "__main__":
    print(main())
