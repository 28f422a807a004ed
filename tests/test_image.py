"""fastdl.image against scipy.ndimage (per 2-D plane), the NumPy reference, and itself on
1 and 2 threads; argument errors; the `python -m fastdl filters` CLI."""
import numpy as np
import pytest

import fastdl
from fastdl import image
from fastdl import image_reference as ref

ndi = pytest.importorskip("scipy.ndimage")

MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]
DTYPES = [np.float32, np.float64, np.uint8]
CVAL = 7.5


def random_image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random(shape) * 255
    return values.astype(dtype)


def assert_matches(got, want, dtype, exact=False):
    assert got.dtype == want.dtype and got.shape == want.shape
    if exact or np.dtype(dtype) == np.uint8:
        np.testing.assert_array_equal(got, want)
    elif np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-4)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


W5 = np.random.default_rng(5).standard_normal((5, 5))
W43 = np.random.default_rng(6).standard_normal((4, 3))
SEPARABLE = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0, 2.0, 0.5])

# name -> (fastdl call, scipy call, NumPy reference call, exact for every dtype)
CASES = {
    "uniform3": (lambda x, m: image.uniform_filter(x, 3, m, CVAL),
                 lambda x, m: ndi.uniform_filter(x, 3, mode=m, cval=CVAL),
                 lambda x, m: ref.uniform_filter(x, 3, m, CVAL), False),
    "uniform4x7": (lambda x, m: image.uniform_filter(x, (4, 7), m, CVAL),
                   lambda x, m: ndi.uniform_filter(x, (4, 7), mode=m, cval=CVAL),
                   lambda x, m: ref.uniform_filter(x, (4, 7), m, CVAL), False),
    "median3": (lambda x, m: image.median_filter(x, 3, m, CVAL),
                lambda x, m: ndi.median_filter(x, 3, mode=m, cval=CVAL),
                lambda x, m: ref.median_filter(x, 3, m, CVAL), True),
    "median4": (lambda x, m: image.median_filter(x, 4, m, CVAL),
                lambda x, m: ndi.median_filter(x, 4, mode=m, cval=CVAL),
                lambda x, m: ref.median_filter(x, 4, m, CVAL), True),
    "median5": (lambda x, m: image.median_filter(x, 5, m, CVAL),
                lambda x, m: ndi.median_filter(x, 5, mode=m, cval=CVAL),
                lambda x, m: ref.median_filter(x, 5, m, CVAL), True),
    "median7x6": (lambda x, m: image.median_filter(x, (7, 6), m, CVAL),
                  lambda x, m: ndi.median_filter(x, (7, 6), mode=m, cval=CVAL),
                  lambda x, m: ref.median_filter(x, (7, 6), m, CVAL), True),
    "correlate5x5": (lambda x, m: image.correlate(x, W5, m, CVAL),
                     lambda x, m: ndi.correlate(x, W5, mode=m, cval=CVAL),
                     lambda x, m: ref.correlate(x, W5, m, CVAL), False),
    "convolve4x3": (lambda x, m: image.convolve(x, W43, m, CVAL),
                    lambda x, m: ndi.convolve(x, W43, mode=m, cval=CVAL),
                    lambda x, m: ref.convolve(x, W43, m, CVAL), False),
    "correlate_separable": (lambda x, m: image.correlate(x, SEPARABLE, m, CVAL),
                            lambda x, m: ndi.correlate(x, SEPARABLE, mode=m, cval=CVAL),
                            lambda x, m: ref.correlate(x, SEPARABLE, m, CVAL), False),
    "convolve_separable_even": (lambda x, m: image.convolve(x, SEPARABLE[:2], m, CVAL),
                                lambda x, m: ndi.convolve(x, SEPARABLE[:2], mode=m, cval=CVAL),
                                lambda x, m: ref.convolve(x, SEPARABLE[:2], m, CVAL), False),
    "sobel_x": (lambda x, m: image.sobel(x, -1, m, CVAL),
                lambda x, m: ndi.sobel(x, -1, mode=m, cval=CVAL),
                lambda x, m: ref.sobel(x, -1, m, CVAL), False),
    "sobel_y": (lambda x, m: image.sobel(x, -2, m, CVAL),
                lambda x, m: ndi.sobel(x, 0, mode=m, cval=CVAL),
                lambda x, m: ref.sobel(x, 0, m, CVAL), False),
    "gradient_magnitude": (lambda x, m: image.gradient_magnitude(x, m, CVAL),
                           lambda x, m: ndi.generic_gradient_magnitude(x, ndi.sobel, mode=m, cval=CVAL),
                           lambda x, m: ref.gradient_magnitude(x, m, CVAL), False),
    "gaussian1.5": (lambda x, m: image.gaussian_filter(x, 1.5, m, CVAL),
                    lambda x, m: ndi.gaussian_filter(x, 1.5, mode=m, cval=CVAL),
                    lambda x, m: ref.gaussian_filter(x, 1.5, m, CVAL), False),
    "gaussian(0,2)": (lambda x, m: image.gaussian_filter(x, (0, 2.0), m, CVAL),
                      lambda x, m: ndi.gaussian_filter(x, (0, 2.0), mode=m, cval=CVAL),
                      lambda x, m: ref.gaussian_filter(x, (0, 2.0), m, CVAL), False),
    "lowpass": (lambda x, m: image.lowpass(x, m, CVAL),
                lambda x, m: ndi.correlate(x, image.LOWPASS_KERNEL / 6, mode=m, cval=CVAL),
                lambda x, m: ref.lowpass(x, m, CVAL), False),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_scipy_2d_and_small_images(name, mode, dtype):
    ours, theirs, _, exact = CASES[name]
    # 19x23: several strips and a ragged SIMD tail; 3x2 and 1x1: smaller than the window.
    for shape in [(19, 23), (3, 2), (1, 1)]:
        x = random_image(shape, dtype)
        assert_matches(ours(x, mode), theirs(x, mode), dtype, exact)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_batches_filter_each_plane(name, dtype):
    ours, theirs, _, exact = CASES[name]
    batch = random_image((2, 3, 20, 33), dtype, seed=1)
    got = ours(batch, "mirror")
    assert got.shape == batch.shape
    for n in range(2):
        for c in range(3):
            assert_matches(got[n, c], theirs(batch[n, c], "mirror"), dtype, exact)
    got3 = ours(batch[0], "wrap")
    for c in range(3):
        assert_matches(got3[c], theirs(batch[0, c], "wrap"), dtype, exact)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_numpy_reference(name, dtype):
    ours, _, reference, exact = CASES[name]
    x = random_image((17, 21), dtype, seed=2)
    for mode in ("reflect", "constant"):
        got, want = ours(x, mode), reference(x, mode)
        if np.dtype(dtype) == np.uint8 and not exact:
            # The reference sums in another order: a sum that lands within rounding of an
            # integer may truncate one lower or higher (scipy's order is tested above).
            difference = (got.astype(np.int64) - want.astype(np.int64)) % 256
            assert got.dtype == want.dtype and np.all((difference <= 1) | (difference == 255))
        else:
            assert_matches(got, want, dtype, exact)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_origins_match_scipy(dtype):
    x = random_image((15, 18), dtype, seed=3)
    for origin in [(1, -1), (-1, 0), (0, 1)]:
        assert_matches(image.uniform_filter(x, 3, origin=origin),
                       ndi.uniform_filter(x, 3, origin=origin), dtype)
        assert_matches(image.median_filter(x, (4, 3), origin=origin),
                       ndi.median_filter(x, (4, 3), origin=origin), dtype, exact=True)
        assert_matches(image.correlate(x, W43, origin=origin),
                       ndi.correlate(x, W43, origin=origin), dtype)
        assert_matches(image.convolve(x, W5, origin=origin),
                       ndi.convolve(x, W5, origin=origin), dtype)


@pytest.mark.parametrize("size", [3, 5, 9, 15])
def test_median_large_and_ties_exact(size):
    rng = np.random.default_rng(size)
    x8 = rng.integers(0, 4, (40, 37)).astype(np.uint8)  # many ties
    np.testing.assert_array_equal(image.median_filter(x8, size), ndi.median_filter(x8, size))
    xf = rng.standard_normal((23, 29)).astype(np.float32)
    np.testing.assert_array_equal(image.median_filter(xf, size), ndi.median_filter(xf, size))


def test_non_contiguous_inputs():
    x = random_image((30, 40), np.float32)
    for view in (x[::2, ::3], x.T, x[5:25, 3:33]):
        np.testing.assert_array_equal(image.median_filter(view, 3), ndi.median_filter(view, 3))
        assert_matches(image.gaussian_filter(view, 1.0), ndi.gaussian_filter(view, 1.0), np.float32)


def test_threads_give_identical_bits():
    batch = random_image((3, 2, 130, 150), np.float32, seed=4)
    u8 = random_image((3, 2, 130, 150), np.uint8, seed=4)
    calls = [lambda: image.uniform_filter(batch, 5), lambda: image.gaussian_filter(batch, 2.0),
             lambda: image.correlate(batch, W5), lambda: image.median_filter(batch, 5),
             lambda: image.median_filter(u8, 7), lambda: image.gradient_magnitude(batch)]
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        one = [f() for f in calls]
        fastdl.set_num_threads(2)
        two = [f() for f in calls]
    finally:
        fastdl.set_num_threads(before)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


def test_tensor_in_tensor_out():
    x = fastdl.tensor(random_image((10, 12), np.float32), requires_grad=True)
    out = image.uniform_filter(x, 3)
    assert isinstance(out, fastdl.Tensor) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), image.uniform_filter(x.detach().numpy(), 3))


def test_lowpass_keeps_a_flat_image():
    flat = np.full((8, 9), 120, np.uint8)
    np.testing.assert_array_equal(image.lowpass(flat), flat)


def test_bad_inputs_raise_clear_errors():
    x = random_image((8, 8), np.float32)
    with pytest.raises(TypeError, match="input: dtype complex128"):
        image.uniform_filter(x.astype(np.complex128))
    with pytest.raises(TypeError, match="input: dtype bool"):
        image.median_filter(x > 0)
    with pytest.raises(TypeError, match="input: dtype <U"):
        image.sobel(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match="input: dtype object"):
        image.sobel(np.array([[None, 1], [2, 3]], dtype=object))
    with pytest.raises(TypeError, match="input"):
        image.sobel("image.png")
    with pytest.raises(ValueError, match=r"input: expected a 2-D image.*shape \(8,\)"):
        image.uniform_filter(x[0])
    with pytest.raises(ValueError, match="input: expected"):
        image.uniform_filter(np.zeros((1, 1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="size: must be >= 1"):
        image.uniform_filter(x, 0)
    with pytest.raises(TypeError, match="size"):
        image.median_filter(x, 2.5)
    with pytest.raises(ValueError, match="mode: 'reflex' is not a valid boundary mode.*'mirror'"):
        image.gaussian_filter(x, 1.0, mode="reflex")
    with pytest.raises(ValueError, match="sigma: must be finite and >= 0"):
        image.gaussian_filter(x, -1.0)
    with pytest.raises(ValueError, match=r"weights: expected a non-empty 2-D kernel, got shape \(3,\)"):
        image.correlate(x, np.ones(3))
    with pytest.raises(ValueError, match="weights: expected a non-empty 2-D kernel"):
        image.convolve(x, np.ones((0, 3)))
    with pytest.raises(ValueError, match="origin"):
        image.uniform_filter(x, 3, origin=2)
    with pytest.raises(ValueError, match="axis"):
        image.sobel(x, axis=2)
    with pytest.raises(TypeError, match="cval"):
        image.uniform_filter(x, 3, cval="zero")


def test_bindings_recheck_arguments():
    with pytest.raises(ValueError, match="input must be 3-D"):
        fastdl._C.rank_filter(np.zeros((4, 4), np.float32), 3, 3, 0, 0, 4, 0, 0.0)
    with pytest.raises(ValueError, match="invalid origin"):
        fastdl._C.correlate2d(np.zeros((1, 4, 4)), np.ones((3, 3)), 5, 0, 0, 0.0)
    with pytest.raises(ValueError, match="mode"):
        fastdl._C.correlate2d(np.zeros((1, 4, 4)), np.ones((3, 3)), 0, 0, 9, 0.0)


def test_empty_images():
    x = np.zeros((0, 5, 5), np.float32)
    assert image.median_filter(x, 3).shape == (0, 5, 5)
    assert image.gaussian_filter(np.zeros((2, 0, 5)), 1.0).shape == (2, 0, 5)


def test_filters_cli_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from fastdl.__main__ import main
    out = tmp_path / "panel.png"
    assert main(["filters", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # An image given on the command line (a PNG written with matplotlib).
    import matplotlib.image
    source = tmp_path / "in.png"
    matplotlib.image.imsave(source, random_image((40, 50, 3), np.uint8))
    out2 = tmp_path / "panel2.png"
    assert main(["filters", str(source), "-o", str(out2)]) == 0
    assert out2.stat().st_size > 0
