"""Image filters: fastdl.image vs scipy.ndimage vs OpenCV, in one process.

    python benchmarks/filters.py [--threads N] [--repeats R] [--quick] [--json out.json]

Cases: a 2048x2048 float32 image, a batch of 64 RGB 224x224 float32 images (every plane
filtered on its own; scipy and OpenCV loop over the planes) and uint8 medians. Each case
checks fastdl's answer against scipy.ndimage first, warms up, then reports the median of
repeats in ms, the ratios and fastdl's GB/s (input read + output written once). OpenCV is
timed where it has the operation (blur, medianBlur, GaussianBlur, Sobel, filter2D).
Results recorded on the development machine are kept in benchmarks/results/filters.txt.
"""
import argparse
import json
import platform

import numpy as np

import fastdl
from fastdl import image
from fastdl.bench import median_ms

try:
    import scipy.ndimage as ndi
except ImportError:  # pragma: no cover - the bench extra installs it
    raise SystemExit("this benchmark needs scipy: pip install 'fastdl[bench]'")
try:
    import cv2
except ImportError:
    cv2 = None

KERNEL5 = np.random.default_rng(5).standard_normal((5, 5))


def cases():
    """(name, fastdl, scipy 2-D, OpenCV 2-D or None, exact) per filter, on one plane."""
    cv = cv2
    return [
        ("uniform 5x5", lambda x: image.uniform_filter(x, 5), lambda p: ndi.uniform_filter(p, 5),
         cv and (lambda p: cv.blur(p, (5, 5), borderType=cv.BORDER_REFLECT)), False),
        ("gaussian sigma=2", lambda x: image.gaussian_filter(x, 2.0),
         lambda p: ndi.gaussian_filter(p, 2.0),
         cv and (lambda p: cv.GaussianBlur(p, (17, 17), 2.0, borderType=cv.BORDER_REFLECT)), False),
        ("sobel", lambda x: image.sobel(x), lambda p: ndi.sobel(p),
         cv and (lambda p: cv.Sobel(p, -1, 1, 0, ksize=3, borderType=cv.BORDER_REFLECT)), False),
        ("gradient magnitude", lambda x: image.gradient_magnitude(x),
         lambda p: ndi.generic_gradient_magnitude(p, ndi.sobel), None, False),
        ("convolve 5x5", lambda x: image.convolve(x, KERNEL5), lambda p: ndi.convolve(p, KERNEL5),
         cv and (lambda p: cv.filter2D(p, -1, KERNEL5[::-1, ::-1].astype(np.float32),
                                       borderType=cv.BORDER_REFLECT)), False),
        ("lowpass 3x3", lambda x: image.lowpass(x),
         lambda p: ndi.correlate(p, image.LOWPASS_KERNEL / 6),
         cv and (lambda p: cv.filter2D(p, -1, (image.LOWPASS_KERNEL / 6).astype(np.float32),
                                       borderType=cv.BORDER_REFLECT)), False),
        ("median 3x3", lambda x: image.median_filter(x, 3), lambda p: ndi.median_filter(p, 3),
         cv and (lambda p: cv.medianBlur(p, 3)), True),
        ("median 5x5", lambda x: image.median_filter(x, 5), lambda p: ndi.median_filter(p, 5),
         cv and (lambda p: cv.medianBlur(p, 5)), True),
    ]


def per_plane(fn, x):
    planes = x.reshape((-1,) + x.shape[-2:])
    return np.stack([fn(p) for p in planes]).reshape(x.shape)


def check(name, got, want, exact):
    if exact or got.dtype == np.uint8:
        ok = np.array_equal(got, want)
    else:
        scale = float(np.abs(want).max()) or 1.0
        ok = np.allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
    if not ok:
        raise AssertionError(f"{name}: fastdl disagrees with scipy.ndimage")


def run(repeats: int, quick: bool):
    rng = np.random.default_rng(0)
    inputs = [("2048x2048 f32", rng.random((2048, 2048), dtype=np.float32)),
              ("64x3x224x224 f32", rng.random((64, 3, 224, 224), dtype=np.float32))]
    u8 = (rng.random((2048, 2048)) * 255).astype(np.uint8)
    rows = []
    for label, x in inputs:
        for name, ours, theirs, opencv, exact in cases():
            if quick and x.ndim == 4 and name.startswith("median"):
                continue
            check(name, ours(x), per_plane(theirs, x), exact)
            row = {"case": f"{name}, {label}", "bytes": 2 * x.nbytes,
                   "fastdl_ms": median_ms(lambda: ours(x), repeats),
                   "scipy_ms": median_ms(lambda: per_plane(theirs, x), max(1, repeats // 2)),
                   "opencv_ms": None}
            if opencv is not None:
                row["opencv_ms"] = median_ms(lambda: per_plane(opencv, x), repeats)
            rows.append(row)
    for size in (3, 5):
        name = f"median {size}x{size}, 2048x2048 u8"
        check(name, image.median_filter(u8, size), ndi.median_filter(u8, size), True)
        row = {"case": name, "bytes": 2 * u8.nbytes,
               "fastdl_ms": median_ms(lambda: image.median_filter(u8, size), repeats),
               "scipy_ms": median_ms(lambda: ndi.median_filter(u8, size), max(1, repeats // 2)),
               "opencv_ms": None}
        if cv2 is not None:
            row["opencv_ms"] = median_ms(lambda: cv2.medianBlur(u8, size), repeats)
        rows.append(row)
    return rows


def format_table(rows, threads: int) -> str:
    lines = [f"image filters, {threads} thread(s), median of repeats; "
             f"scipy and OpenCV loop over the planes of a batch",
             f"{'case':<40} {'fastdl ms':>9} {'scipy ms':>9} {'OpenCV ms':>9} "
             f"{'scipy/fastdl':>12} {'OpenCV/fastdl':>13} {'GB/s':>6}"]
    for r in rows:
        cv_ms = f"{r['opencv_ms']:9.2f}" if r["opencv_ms"] else f"{'-':>9}"
        cv_ratio = f"{r['opencv_ms'] / r['fastdl_ms']:12.2f}x" if r["opencv_ms"] else f"{'-':>13}"
        lines.append(f"{r['case']:<40} {r['fastdl_ms']:9.2f} {r['scipy_ms']:9.2f} {cv_ms} "
                     f"{r['scipy_ms'] / r['fastdl_ms']:11.2f}x {cv_ratio} "
                     f"{r['bytes'] / r['fastdl_ms'] / 1e6:6.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the slow batched medians")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        fastdl.set_num_threads(args.threads)
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    threads = fastdl.get_num_threads()
    rows = run(args.repeats, args.quick)
    print(format_table(rows, threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "machine": platform.machine(),
                       "config": fastdl.config(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
