#!/usr/bin/env bash
# The CUDA backend's whole GPU check in ONE call, for a session lent a GPU machine:
#   build with FASTDL_CUDA=ON, run tests/cuda, benchmark fastdl CUDA vs PyTorch CUDA, train
#   the demo on the GPU (and on the CPU for the accuracy comparison).
# Everything is written under $OUT (default: ./gpu-out); copy it to benchmarks/cuda/results/.
#
#   run(command="bash benchmarks/cuda/run_on_gpu.sh", timeout_s=600, carry=["build/wheels"])
#
# The GPU machine has no internet. It has CUDA, PyTorch, pybind11, scikit-build-core, cmake
# and ninja; fastdl also needs scipy-openblas32 (build and run), tqdm, and for the demo
# scikit-learn, for the tests pytest. Whatever is missing is installed from build/wheels
# when that folder was carried (prepare it on a machine with internet:
#   pip download --only-binary=:all: -d build/wheels scipy-openblas32 tqdm pytest scikit-learn
# and keep it under the 64 MiB carry limit). Steps that cannot run say why and the script
# goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run_on_gpu.log") 2>&1
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv > "$OUT/gpu.csv" 2>/dev/null
which nvcc && nvcc --version | tail -2
python3 -c "import sys, numpy, torch; print(sys.version); print('numpy', numpy.__version__); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" || echo "no torch"

step "environment (venv with the system's packages)"
python3 -m venv --system-site-packages /tmp/venv-fastdl-gpu && . /tmp/venv-fastdl-gpu/bin/activate
for module in scipy_openblas32 tqdm pytest sklearn; do
  if ! python -c "import $module" 2>/dev/null; then
    package=$module; [ "$module" = sklearn ] && package=scikit-learn; [ "$module" = scipy_openblas32 ] && package=scipy-openblas32
    if [ -d build/wheels ]; then
      pip install --no-index --find-links build/wheels "$package" || echo "could not install $package"
    else
      echo "missing: $package (no build/wheels carried)"
    fi
  fi
done

step "build: FASTDL_CUDA=ON, sm_90 (H100/H200)"
time pip install --no-build-isolation --no-deps -v -Ccmake.define.FASTDL_CUDA=ON \
    -Ccmake.define.FASTDL_CUDA_ARCHS="${FASTDL_CUDA_ARCHS:-90}" -Cbuild-dir=build/gpu . \
    > "$OUT/build.log" 2>&1
build_rc=$?
grep -E "fastdl: CUDA|\.cu\.o|error" "$OUT/build.log" | tail -20
echo "build exit code: $build_rc"
[ $build_rc -eq 0 ] || { tail -40 "$OUT/build.log"; exit 1; }
cd /tmp && python -c "import fastdl; fastdl.show_config(); print('available:', fastdl.cuda.is_available())"; cd - > /dev/null

step "tests/cuda"
timeout 240 python -m pytest tests/cuda -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/tests_cuda.txt" | tail -30

step "benchmark: fastdl CUDA vs PyTorch CUDA"
timeout 180 python benchmarks/cuda/bench_cuda.py --repeat 20 --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench_cuda.txt"

step "demo on the GPU"
timeout 150 python -m fastdl demo --device cuda --no-bench 2>&1 | tee "$OUT/demo_cuda.txt" | tail -8

step "demo on the CPU (same seed: the accuracy to match)"
timeout 120 python -m fastdl demo --no-bench 2>&1 | tee "$OUT/demo_cpu.txt" | tail -3

step "done"
ls -la "$OUT"
