"""fastdl.image: classical image filtering with scipy.ndimage's names and boundary modes.

Every filter takes a 2-D image (H, W) or a batch, (N, H, W) or (N, C, H, W), and filters
each 2-D plane over the LAST TWO axes on its own. This differs from scipy.ndimage, which
would apply an N-D filter to a 3-D or 4-D array; for a 2-D image the two agree:

    fastdl.image.uniform_filter(batch, 5)[n, c] == scipy.ndimage.uniform_filter(batch[n, c], 5)

Inputs are NumPy arrays (or fastdl.Tensor, which gives back a Tensor without gradient) of
float32, float64 or uint8; the output has the input's dtype, computed as scipy.ndimage
does: sums in double, separable filters as a sequence of 1-D passes with the intermediate
image stored in the input's dtype, uint8 results truncated toward zero and wrapped modulo
256 (scipy's C cast). Median filtering is exact; the others agree with scipy to float
rounding, and bit for bit on uint8 (see tests/test_image.py).

Boundary modes (``mode``), with the line ``a b c d``:

    'reflect'   d c b a | a b c d | d c b a   (default)
    'mirror'    d c b | a b c d | c b a
    'nearest'   a a a | a b c d | d d d
    'wrap'      a b c d | a b c d | a b c d
    'constant'  k k k | a b c d | k k k        (k = cval)

``origin`` shifts a window as in scipy.ndimage (0 centers it; for an even size the center
is the element at size // 2). Size, origin and sigma arguments take one value for both
axes or a pair (rows, columns).
"""
from __future__ import annotations

import numbers
from typing import Sequence, Tuple, Union

import numpy as np

from . import _C
from .tensor import Tensor

__all__ = ["uniform_filter", "median_filter", "correlate", "convolve", "sobel",
           "gradient_magnitude", "gaussian_filter", "lowpass", "LOWPASS_KERNEL", "MODES"]

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")  # index = the kernels' code
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))

# The course's low-pass kernel. lowpass() divides it by its sum, 6, so that a flat image
# stays flat (the mean is kept) and a uint8 image cannot overflow.
LOWPASS_KERNEL = np.array([[0, 1, 0], [1, 2, 1], [0, 1, 0]], dtype=np.float64)

ArrayLike = Union[np.ndarray, Tensor]


# ---------------------------------------------------------------------- argument checks
def _planes(input, name: str = "input") -> Tuple[np.ndarray, tuple, bool]:
    """(planes, H, W) C-contiguous view or copy, the original shape, and whether the input
    was a Tensor."""
    is_tensor = isinstance(input, Tensor)
    array = input.data if is_tensor else input
    if not isinstance(array, np.ndarray):
        if isinstance(array, (str, bytes)) or not hasattr(array, "__len__"):
            raise TypeError(f"{name}: expected a NumPy array or fastdl.Tensor, "
                            f"got {type(array).__name__}")
        array = np.asarray(array)
    if array.dtype not in _DTYPES:
        raise TypeError(f"{name}: dtype {array.dtype} is not supported "
                        f"(use float32, float64 or uint8)")
    if array.ndim not in (2, 3, 4):
        raise ValueError(f"{name}: expected a 2-D image (H, W) or a batch (N, H, W) or "
                         f"(N, C, H, W), got shape {array.shape}")
    shape = array.shape
    planes = np.ascontiguousarray(array).reshape((int(np.prod(shape[:-2])),) + shape[-2:])
    return planes, shape, is_tensor


def _finish(out: np.ndarray, shape: tuple, is_tensor: bool):
    out = out.reshape(shape)
    return Tensor(out) if is_tensor else out


def _mode(mode) -> int:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not a valid boundary mode "
                         f"(valid: {', '.join(repr(m) for m in MODES)})")
    return MODES.index(mode)


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    return float(value)


def _int_pair(value, name: str, *, minimum=None) -> Tuple[int, int]:
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
    return pair


def _check_origin(origin: Tuple[int, int], size: Tuple[int, int], name: str = "origin") -> None:
    for o, k in zip(origin, size):
        if not -(k // 2) <= o <= (k - 1) // 2:
            raise ValueError(f"{name}: {origin} is invalid for a window of {size[0]}x{size[1]}: "
                             f"each origin must lie in [-(size // 2), (size - 1) // 2]")


def _empty_result(planes: np.ndarray) -> bool:
    return planes.size == 0


_NO_WEIGHTS = np.zeros(1)


# ---------------------------------------------------------------------- filters
def uniform_filter(input: ArrayLike, size=3, mode: str = "reflect", cval: float = 0.0,
                   origin=0):
    """Mean over a size x size window, as scipy.ndimage.uniform_filter: a 1-D mean along
    the rows, then along the columns, the intermediate stored in the input's dtype."""
    planes, shape, is_tensor = _planes(input)
    size = _int_pair(size, "size", minimum=1)
    origin = _int_pair(origin, "origin")
    _check_origin(origin, size)
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    out = _C.separable_filter(planes, _NO_WEIGHTS, size[0], origin[0], _NO_WEIGHTS, size[1],
                              origin[1], False, True, mode, cval, cval)
    return _finish(out, shape, is_tensor)


def median_filter(input: ArrayLike, size=3, mode: str = "reflect", cval: float = 0.0,
                  origin=0):
    """Median over a size x size window, as scipy.ndimage.median_filter (exactly equal).

    For an even number of window elements the upper median, element size*size // 2 of the
    sorted window, as scipy. ``cval`` is cast to the input's dtype first, as scipy does.
    3x3 and 5x5 windows use SIMD selection networks; other uint8 windows a sliding
    histogram; other float windows a selection (introselect) per window."""
    planes, shape, is_tensor = _planes(input)
    size = _int_pair(size, "size", minimum=1)
    origin = _int_pair(origin, "origin")
    _check_origin(origin, size)
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    rank = size[0] * size[1] // 2
    out = _C.rank_filter(planes, size[0], size[1], origin[0], origin[1], rank, mode, cval)
    return _finish(out, shape, is_tensor)


def _weights_2d(weights, name: str = "weights") -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.data
    w = np.asarray(weights)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected real numbers, got dtype {w.dtype}")
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D kernel, got shape {w.shape}")
    return np.ascontiguousarray(w, dtype=np.float64)


def _rank_one(w: np.ndarray):
    """(column, row) with w == outer(column, row) to rounding, or None."""
    if min(w.shape) < 2 or not np.all(np.isfinite(w)):
        return None
    u, s, vt = np.linalg.svd(w)
    if s[0] == 0 or s[1] > 1e-13 * s[0]:
        return None
    return np.ascontiguousarray(u[:, 0] * s[0]), np.ascontiguousarray(vt[0])


def _correlate(planes: np.ndarray, w: np.ndarray, mode: int, cval: float,
               origin: Tuple[int, int]) -> np.ndarray:
    # A rank-1 kernel runs as two 1-D passes (kh + kw instead of kh * kw products per
    # pixel) for float images; uint8 keeps scipy's direct sum, which its truncation needs
    # to agree bit for bit.
    factors = _rank_one(w) if planes.dtype != np.uint8 else None
    if factors is not None:
        column, row = factors
        cval_between = cval * float(column.sum()) if mode == MODES.index("constant") else cval
        return _C.separable_filter(planes, column, 0, origin[0], row, 0, origin[1], False,
                                   False, mode, cval, cval_between)
    return _C.correlate2d(planes, w, origin[0], origin[1], mode, cval)


def correlate(input: ArrayLike, weights, mode: str = "reflect", cval: float = 0.0, origin=0):
    """2-D correlation with any kernel, as scipy.ndimage.correlate:
    out[y, x] = sum_ij weights[i, j] * in[y + i - kh // 2 - origin_y, x + j - kw // 2 - origin_x].
    Separable (rank-1) kernels run as two 1-D passes on float images."""
    planes, shape, is_tensor = _planes(input)
    w = _weights_2d(weights)
    origin = _int_pair(origin, "origin")
    _check_origin(origin, w.shape)
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    return _finish(_correlate(planes, w, mode, cval, origin), shape, is_tensor)


def convolve(input: ArrayLike, weights, mode: str = "reflect", cval: float = 0.0, origin=0):
    """2-D convolution, as scipy.ndimage.convolve: correlation with the flipped kernel
    (for an even kernel size the window shifts by one, as scipy)."""
    planes, shape, is_tensor = _planes(input)
    w = _weights_2d(weights)
    origin = _int_pair(origin, "origin")
    flipped = np.ascontiguousarray(w[::-1, ::-1])
    shifted = tuple(-o - (1 - k % 2) for o, k in zip(origin, w.shape))
    _check_origin(shifted, w.shape, "origin (after flipping the kernel)")
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    return _finish(_correlate(planes, flipped, mode, cval, shifted), shape, is_tensor)


def _axis(axis, shape: tuple) -> int:
    """0 for the rows (vertical derivative), 1 for the columns, from a 2-D style axis
    (0, 1, -2, -1) or, for a batch, the index of one of its last two axes."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis: expected an int, got {axis!r}")
    ndim = len(shape)
    normalized = axis + ndim if axis < 0 else axis
    if normalized == ndim - 2 or (ndim == 2 and normalized == 0):
        return 0
    if normalized == ndim - 1:
        return 1
    raise ValueError(f"axis: {axis} is not one of the image axes (the last two) of an input "
                     f"of shape {shape}")


_DERIVATIVE = np.array([-1.0, 0.0, 1.0])
_SMOOTH = np.array([1.0, 2.0, 1.0])


def _sobel(planes: np.ndarray, axis: int, mode: int, cval: float) -> np.ndarray:
    # scipy: correlate1d([-1, 0, 1]) along `axis`, then [1, 2, 1] along the other one.
    if axis == 0:
        return _C.separable_filter(planes, _DERIVATIVE, 0, 0, _SMOOTH, 0, 0, False, True,
                                   mode, cval, cval)
    return _C.separable_filter(planes, _SMOOTH, 0, 0, _DERIVATIVE, 0, 0, True, True,
                               mode, cval, cval)


def sobel(input: ArrayLike, axis: int = -1, mode: str = "reflect", cval: float = 0.0):
    """Sobel derivative along ``axis`` (-1: along the columns, d/dx; -2: along the rows,
    d/dy), as scipy.ndimage.sobel: [-1, 0, 1] along the axis, then [1, 2, 1] across it.
    The result has the input's dtype: negative uint8 derivatives wrap, as in scipy."""
    planes, shape, is_tensor = _planes(input)
    axis = _axis(axis, shape)
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    return _finish(_sobel(planes, axis, mode, cval), shape, is_tensor)


def gradient_magnitude(input: ArrayLike, mode: str = "reflect", cval: float = 0.0):
    """sqrt(sobel(axis=-2)**2 + sobel(axis=-1)**2) computed in the input's dtype, as
    scipy.ndimage.generic_gradient_magnitude(input, scipy.ndimage.sobel)."""
    planes, shape, is_tensor = _planes(input)
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    # One fused pass (both Sobel responses per strip of rows, kept in cache) instead of
    # scipy's two whole-image Sobel filters and a combine; the arithmetic is the same.
    return _finish(_C.gradient_magnitude(planes, mode, cval), shape, is_tensor)


def _gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    # scipy.ndimage._filters._gaussian_kernel1d(sigma, 0, radius), reversed for correlate1d
    # (symmetric, so the same), with the same rounding.
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return np.ascontiguousarray((phi / phi.sum())[::-1])


def gaussian_filter(input: ArrayLike, sigma, mode: str = "reflect", cval: float = 0.0,
                    truncate: float = 4.0, radius=None):
    """Gaussian blur, as scipy.ndimage.gaussian_filter (order 0): a 1-D Gaussian of radius
    int(truncate * sigma + 0.5) (or ``radius``) along the rows, then the columns; an axis
    with sigma 0 is left alone."""
    planes, shape, is_tensor = _planes(input)
    if isinstance(sigma, (tuple, list)) and len(sigma) == 2:
        sigmas = (_real(sigma[0], "sigma"), _real(sigma[1], "sigma"))
    else:
        sigmas = (_real(sigma, "sigma"),) * 2
    if min(sigmas) < 0 or not all(np.isfinite(sigmas)):
        raise ValueError(f"sigma: must be finite and >= 0, got {sigma!r}")
    truncate = _real(truncate, "truncate")
    if radius is None:
        radii = tuple(int(truncate * s + 0.5) for s in sigmas)
    else:
        radii = _int_pair(radius, "radius", minimum=0)
    if min(radii) < 0:
        raise ValueError(f"truncate: {truncate} gives a negative radius")
    mode, cval = _mode(mode), _real(cval, "cval")
    if _empty_result(planes):
        return _finish(planes.copy(), shape, is_tensor)
    # scipy skips an axis whose sigma is (nearly) 0: a single tap of weight 1 is the identity.
    kernels = [_gaussian_kernel1d(s, r) if s > 1e-15 else np.ones(1) for s, r in zip(sigmas, radii)]
    out = _C.separable_filter(planes, kernels[0], 0, 0, kernels[1], 0, 0, False, True, mode,
                              cval, cval)
    return _finish(out, shape, is_tensor)


def lowpass(input: ArrayLike, mode: str = "reflect", cval: float = 0.0):
    """The course's low-pass filter: correlation with [[0, 1, 0], [1, 2, 1], [0, 1, 0]] / 6
    (normalized by its sum, so the mean and the dtype's range are kept); equal to
    scipy.ndimage.correlate(input, LOWPASS_KERNEL / 6, mode=mode, cval=cval)."""
    return correlate(input, LOWPASS_KERNEL / 6.0, mode=mode, cval=cval)
