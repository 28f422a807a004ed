"""Readable NumPy definitions of fastdl.image's filters, for one 2-D image.

The definition a student reads and the oracle tests/test_image.py compares the kernels
with. Slow on purpose: pad the image by the boundary mode, then sum (or sort) windows.
Arithmetic follows scipy.ndimage: sums in float64, results stored with scipy's cast
(uint8: truncate toward zero, wrap modulo 256), separable filters as 1-D passes whose
intermediate image is stored in the input's dtype.
"""
from __future__ import annotations

import numpy as np

__all__ = ["extend", "store", "correlate", "convolve", "uniform_filter", "median_filter",
           "sobel", "gradient_magnitude", "gaussian_filter", "lowpass"]

# scipy.ndimage's mode names -> numpy.pad's names for the same extension.
_PAD_MODES = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
              "constant": "constant"}


def extend(image: np.ndarray, before, after, mode: str, cval: float = 0.0) -> np.ndarray:
    """The image in float64, padded by (rows, columns) `before` and `after` as the mode says."""
    image = image.astype(np.float64)
    width = ((before[0], after[0]), (before[1], after[1]))
    if mode == "constant":
        return np.pad(image, width, mode="constant", constant_values=cval)
    return np.pad(image, width, mode=_PAD_MODES[mode])


def store(values: np.ndarray, dtype) -> np.ndarray:
    """scipy's C cast of float64 results into dtype."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return values.astype(np.int64).astype(np.uint8)
    return values.astype(dtype)


def _windows(image, shape, origin, mode, cval):
    """(H, W, kh, kw) windows: window[y, x, i, j] = image[y + i - lead_y, x + j - lead_x]."""
    leads = [k // 2 + o for k, o in zip(shape, origin)]
    padded = extend(image, leads, [k - 1 - lead for k, lead in zip(shape, leads)], mode, cval)
    return np.lib.stride_tricks.sliding_window_view(padded, shape)


def correlate(image, weights, mode="reflect", cval=0.0, origin=(0, 0)):
    """out[y, x] = sum_ij weights[i, j] * image[y + i - kh//2 - oy, x + j - kw//2 - ox]."""
    weights = np.asarray(weights, dtype=np.float64)
    windows = _windows(image, weights.shape, origin, mode, cval)
    return store(np.einsum("yxij,ij->yx", windows, weights), image.dtype)


def convolve(image, weights, mode="reflect", cval=0.0, origin=(0, 0)):
    """Correlation with the flipped kernel; an even size shifts the window by one."""
    weights = np.asarray(weights, dtype=np.float64)
    shifted = tuple(-o - (1 - k % 2) for o, k in zip(origin, weights.shape))
    return correlate(image, weights[::-1, ::-1], mode, cval, shifted)


def _correlate1d(image, weights, axis, mode, cval, origin=0):
    shape = (len(weights), 1) if axis == 0 else (1, len(weights))
    origins = (origin, 0) if axis == 0 else (0, origin)
    return correlate(image, np.reshape(weights, shape), mode, cval, origins)


def uniform_filter(image, size=3, mode="reflect", cval=0.0, origin=(0, 0)):
    """Mean over the window: a 1-D mean down the columns, then along the rows."""
    size = (size, size) if np.isscalar(size) else size
    out = image
    for axis in (0, 1):  # sum, then divide (as scipy; multiplying by 1/size rounds differently)
        shape = (size[0], 1) if axis == 0 else (1, size[1])
        origins = (origin[0], 0) if axis == 0 else (0, origin[1])
        sums = _windows(out, shape, origins, mode, cval).sum(axis=(-2, -1))
        out = store(sums / size[axis], image.dtype)
    return out


def median_filter(image, size=3, mode="reflect", cval=0.0, origin=(0, 0)):
    """Element kh*kw // 2 of each sorted window (the upper median for even counts)."""
    size = (size, size) if np.isscalar(size) else tuple(size)
    fill = float(store(np.array([cval]), image.dtype)[0])  # scipy casts cval to the dtype
    windows = _windows(image, size, origin, mode, fill).reshape(image.shape + (-1,))
    return store(np.sort(windows, axis=-1)[..., size[0] * size[1] // 2], image.dtype)


def sobel(image, axis=-1, mode="reflect", cval=0.0):
    """[-1, 0, 1] along `axis`, then [1, 2, 1] along the other axis."""
    axis = axis % 2
    out = _correlate1d(image, [-1.0, 0.0, 1.0], axis, mode, cval)
    return _correlate1d(out, [1.0, 2.0, 1.0], 1 - axis, mode, cval)


def gradient_magnitude(image, mode="reflect", cval=0.0):
    """sqrt(dy**2 + dx**2) evaluated in the image's dtype (uint8 wraps), as scipy."""
    dy, dx = sobel(image, 0, mode, cval), sobel(image, 1, mode, cval)
    with np.errstate(over="ignore"):
        total = dy * dy + dx * dx
    root = np.sqrt(total.astype(np.float64))
    return np.floor(root).astype(np.uint8) if image.dtype == np.uint8 else root.astype(image.dtype)


def gaussian_filter(image, sigma, mode="reflect", cval=0.0, truncate=4.0):
    """1-D Gaussians of radius int(truncate * sigma + 0.5), normalized to sum 1, down the
    columns then along the rows (an axis with sigma 0 is skipped)."""
    sigmas = (sigma, sigma) if np.isscalar(sigma) else sigma
    out = image
    for axis, s in enumerate(sigmas):
        if s > 1e-15:
            radius = int(truncate * s + 0.5)
            x = np.arange(-radius, radius + 1)
            phi = np.exp(-0.5 / (s * s) * x ** 2)
            out = _correlate1d(out, phi / phi.sum(), axis, mode, cval)
    return out


def lowpass(image, mode="reflect", cval=0.0):
    """Correlation with the course kernel [[0, 1, 0], [1, 2, 1], [0, 1, 0]] / 6."""
    return correlate(image, np.array([[0, 1, 0], [1, 2, 1], [0, 1, 0]]) / 6.0, mode, cval)
