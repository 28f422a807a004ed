"""conv2d forward+backward: fastdl vs the NumPy reference vs PyTorch, in one process.

    python benchmarks/conv2d.py [--threads N] [--repeats R] [--json out.json]

Prints milliseconds (median of repeats), the ratios and fastdl's GFLOP/s against this
machine's measured sgemm peak. Results recorded on the development machine are kept
in benchmarks/results/.
"""
import argparse
import json
import platform

import fastdl
from fastdl.benchmark import (DEFAULT_CONV2D_SHAPES, conv2d_benchmark, format_conv2d_table,
                              sgemm_peak_gflops)

SHAPES = DEFAULT_CONV2D_SHAPES + [
    (32, 128, 16, 16, 128, 3, 2, 1),
    (8, 3, 224, 224, 64, 7, 2, 3),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        fastdl.set_num_threads(args.threads)
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    threads = fastdl.get_num_threads()
    peak = sgemm_peak_gflops()
    rows = conv2d_benchmark(SHAPES, repeats=args.repeats)
    print(format_conv2d_table(rows, threads, peak))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "sgemm_peak_gflops": peak, "machine": platform.machine(),
                       "config": fastdl.config(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
