"""Property-based tests (hypothesis): random shapes, memory layouts, strides, paddings,
dilations, groups, dtypes and hyper-parameters; each kernel against the in-package NumPy
reference and, when installed, PyTorch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastdl
import fastdl.nn.functional as F
from fastdl import reference

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
dtypes = st.sampled_from([np.float32, np.float64])


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)


def _layout(array: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout: Fortran order, reversed axis, or a strided view."""
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "reversed":
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if kind == "strided":
        wide = np.zeros(array.shape[:-1] + (array.shape[-1] * 2,), dtype=array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    return array


layouts = st.sampled_from(["contiguous", "fortran", "reversed", "strided"])


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 10))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 10))
    n = draw(st.integers(1, 3))
    return n, in_channels, h, w, out_channels, groups, (kh, kw), stride, padding, dilation


@SETTINGS
@given(case=conv_cases(), dtype=dtypes, layout=layouts, bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_matches_reference(case, dtype, layout, bias, seed):
    n, c, h, w, o, groups, (kh, kw), stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    xt = fastdl.Tensor(_layout(x, layout), requires_grad=True)
    wt = fastdl.Tensor(_layout(weight, layout), requires_grad=True)
    bt = fastdl.tensor(b, requires_grad=True) if bias else None
    out = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    expected = reference.conv2d_forward(x, weight, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(out.detach().numpy(), expected, **_tol(dtype))
    grad = rng.standard_normal(expected.shape).astype(dtype)
    out.backward(_layout(grad, layout))
    gx, gw, gb = reference.conv2d_backward(x, weight, grad, stride, padding, dilation, groups)
    np.testing.assert_allclose(xt.grad.numpy(), gx, **_tol(dtype))
    np.testing.assert_allclose(wt.grad.numpy(), gw, **_tol(dtype))
    if bias:
        np.testing.assert_allclose(bt.grad.numpy(), gb, **_tol(dtype))


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 9))
    w = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 9))
    return draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w, (kh, kw), stride, padding, dilation


@SETTINGS
@given(case=pool_cases(), dtype=dtypes, layout=layouts, seed=st.integers(0, 2**16))
def test_max_pool2d_matches_reference(case, dtype, layout, seed):
    n, c, h, w, kernel, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    # Distinct values: no ties, so the argmax (and the gradient's target) is unique.
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w).astype(dtype)
    xt = fastdl.Tensor(_layout(x, layout), requires_grad=True)
    out, indices = F.max_pool2d(xt, kernel, stride, padding, dilation, return_indices=True)
    expected, expected_indices = reference.max_pool2d_forward(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    grad = rng.standard_normal(expected.shape).astype(dtype)
    out.backward(grad)
    np.testing.assert_allclose(xt.grad.numpy(), reference.max_pool2d_backward(grad, expected_indices, x.shape),
                               **_tol(dtype))


@SETTINGS
@given(batch=st.integers(0, 6), inner=st.integers(1, 7), outer=st.integers(1, 7), lead=st.integers(0, 2),
       dtype=dtypes, layout=layouts, bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_matches_reference(batch, inner, outer, lead, dtype, layout, bias, seed):
    rng = np.random.default_rng(seed)
    shape = (2,) * lead + (batch, inner)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((outer, inner)).astype(dtype)
    b = rng.standard_normal(outer).astype(dtype) if bias else None
    xt = fastdl.Tensor(_layout(x, layout), requires_grad=True)
    wt = fastdl.Tensor(_layout(weight, layout), requires_grad=True)
    out = F.linear(xt, wt, fastdl.tensor(b) if bias else None)
    np.testing.assert_allclose(out.detach().numpy(), reference.linear_forward(x, weight, b), **_tol(dtype))
    grad = rng.standard_normal(out.shape).astype(dtype)
    out.backward(grad)
    gx, gw, _ = reference.linear_backward(x.reshape(-1, inner), weight, grad.reshape(-1, outer))
    np.testing.assert_allclose(xt.grad.numpy(), gx.reshape(shape), **_tol(dtype))
    np.testing.assert_allclose(wt.grad.numpy(), gw, **_tol(dtype))


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4), dtype=dtypes, layout=layouts,
       seed=st.integers(0, 2**16))
def test_relu_matches_reference(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    xt = fastdl.Tensor(_layout(x, layout) if x.ndim else x, requires_grad=True)
    out = F.relu(xt)
    np.testing.assert_array_equal(out.detach().numpy(), reference.relu_forward(x))
    grad = rng.standard_normal(x.shape).astype(dtype)
    out.backward(grad)
    np.testing.assert_array_equal(xt.grad.numpy(), reference.relu_backward(reference.relu_forward(x), grad))


@SETTINGS
@given(rows=st.integers(1, 12), classes=st.integers(1, 9), scale=st.sampled_from([0.1, 1.0, 30.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]), dtype=dtypes, seed=st.integers(0, 2**16))
def test_cross_entropy_matches_reference(rows, classes, scale, reduction, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((rows, classes)) * scale).astype(dtype)
    target = rng.integers(0, classes, rows)
    xt = fastdl.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(xt, fastdl.tensor(target), reduction=reduction)
    expected = reference.cross_entropy_forward(logits.astype(np.float64), target, reduction)
    np.testing.assert_allclose(loss.detach().numpy(), expected, **_tol(dtype))
    grad = np.asarray(rng.standard_normal(loss.shape)).astype(dtype)
    loss.backward(grad)
    np.testing.assert_allclose(xt.grad.numpy(),
                               reference.cross_entropy_backward(logits.astype(np.float64), target, grad, reduction),
                               **_tol(dtype))


@SETTINGS
@given(lr=st.floats(0, 1), momentum=st.floats(0, 0.99), dampening=st.floats(0, 0.5),
       weight_decay=st.floats(0, 0.1), nesterov=st.booleans(), sizes=st.lists(st.integers(1, 70000), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_sgd_matches_reference(lr, momentum, dampening, weight_decay, nesterov, sizes, seed):
    if nesterov and (momentum == 0 or dampening != 0):
        dampening = 0.0
        momentum = max(momentum, 0.5)
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(n) for n in sizes]
    params = [fastdl.nn.Parameter(v.copy()) for v in values]
    opt = fastdl.optim.SGD(params, lr=lr, momentum=momentum, dampening=dampening,
                           weight_decay=weight_decay, nesterov=nesterov)
    buffers = [None] * len(values)
    for _ in range(3):
        grads = [rng.standard_normal(n) for n in sizes]
        for p, g in zip(params, grads):
            p.grad = fastdl.tensor(g)
        opt.step()
        for i, g in enumerate(grads):
            values[i], buffers[i] = reference.sgd_step(values[i], g, buffers[i], lr, momentum,
                                                       dampening, weight_decay, nesterov)
    for p, v in zip(params, values):
        np.testing.assert_allclose(p.data, v, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(lr=st.floats(1e-5, 0.1), beta1=st.floats(0, 0.99), beta2=st.floats(0.5, 0.9999),
       eps=st.floats(1e-10, 1e-3), weight_decay=st.floats(0, 0.1), decoupled=st.booleans(),
       sizes=st.lists(st.integers(1, 70000), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_adam_matches_reference(lr, beta1, beta2, eps, weight_decay, decoupled, sizes, seed):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(n) for n in sizes]
    params = [fastdl.nn.Parameter(v.copy()) for v in values]
    cls = fastdl.optim.AdamW if decoupled else fastdl.optim.Adam
    opt = cls(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    m = [np.zeros(n) for n in sizes]
    v = [np.zeros(n) for n in sizes]
    for step in range(1, 4):
        grads = [rng.standard_normal(n) for n in sizes]
        for p, g in zip(params, grads):
            p.grad = fastdl.tensor(g)
        opt.step()
        for i, g in enumerate(grads):
            values[i], m[i], v[i] = reference.adam_step(values[i], g, m[i], v[i], step, lr,
                                                        (beta1, beta2), eps, weight_decay, decoupled)
    for p, expected in zip(params, values):
        np.testing.assert_allclose(p.data, expected, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(case, seed):
    torch = pytest.importorskip("torch", reason="PyTorch CPU is the oracle of this test")
    n, c, h, w, o, groups, (kh, kw), stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, c // groups, kh, kw))
    xt, wt = fastdl.tensor(x, requires_grad=True), fastdl.tensor(weight, requires_grad=True)
    out = F.conv2d(xt, wt, None, stride, padding, dilation, groups)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    tout = torch.nn.functional.conv2d(tx, tw, None, stride, padding, dilation, groups)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-10)


modes = st.sampled_from(["reflect", "constant", "nearest", "mirror", "wrap"])
image_dtypes = st.sampled_from([np.float32, np.float64, np.uint8])


def _image(rng, shape, dtype):
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def _assert_filter_close(got, want, dtype):
    if dtype == np.uint8:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, **_tol(dtype))


@SETTINGS
@given(h=st.integers(1, 12), w=st.integers(1, 12), size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       mode=modes, cval=st.sampled_from([0.0, 1.5]), dtype=image_dtypes, layout=layouts,
       seed=st.integers(0, 2**16))
def test_uniform_and_median_filters_match_scipy(h, w, size, mode, cval, dtype, layout, seed):
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy.ndimage is the oracle of this test")
    image = _image(np.random.default_rng(seed), (h, w), dtype)
    view = _layout(image, layout)
    _assert_filter_close(fastdl.image.uniform_filter(view, size, mode=mode, cval=cval),
                         ndimage.uniform_filter(image, size, mode=mode, cval=cval), dtype)
    np.testing.assert_array_equal(fastdl.image.median_filter(view, size, mode=mode, cval=cval),
                                  ndimage.median_filter(image, size, mode=mode, cval=cval))


@SETTINGS
@given(h=st.integers(1, 12), w=st.integers(1, 12), kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       mode=modes, dtype=st.sampled_from([np.float32, np.float64]), batch=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def test_correlate_convolve_gaussian_sobel_match_scipy(h, w, kernel, mode, dtype, batch, seed):
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy.ndimage is the oracle of this test")
    rng = np.random.default_rng(seed)
    shape = (2,) * batch + (h, w)
    images = _image(rng, shape, dtype)
    weights = rng.standard_normal(kernel)
    planes = images.reshape(-1, h, w)
    for ours, theirs in (
            (fastdl.image.correlate(images, weights, mode=mode), lambda p: ndimage.correlate(p, weights, mode=mode)),
            (fastdl.image.convolve(images, weights, mode=mode), lambda p: ndimage.convolve(p, weights, mode=mode)),
            (fastdl.image.gaussian_filter(images, 1.3, mode=mode), lambda p: ndimage.gaussian_filter(p, 1.3, mode=mode)),
            (fastdl.image.sobel(images, axis=-2, mode=mode), lambda p: ndimage.sobel(p, axis=0, mode=mode))):
        expected = np.stack([theirs(p) for p in planes]).reshape(shape)
        np.testing.assert_allclose(ours, expected, rtol=1e-4 if dtype == np.float32 else 1e-10,
                                   atol=1e-4 if dtype == np.float32 else 1e-10)
