"""Every bad input gets a clear exception, never a crash or a hang.

Each case runs in a forked child (conftest.Isolated): a segfault or abort fails that one
case. A case passes when the child raised the expected exception type and the message
names the argument or shows the offending shapes/values.
"""
import math

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import _C, optim
from fastdl.data import DataLoader, TensorDataset


def t(*shape, dtype=np.float32, grad=False):
    return fastdl.tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


def _readonly(n):
    array = np.ones(n, np.float32)
    array.flags.writeable = False
    return array


X4 = lambda: t(2, 3, 8, 8)  # noqa: E731
W3 = lambda: t(4, 3, 3, 3)  # noqa: E731
P = lambda: [nn.Parameter(np.ones(3, dtype=np.float32))]  # noqa: E731

# (id, callable, expected exception type(s), regex the message must match)
CASES = [
    # ---- dtypes
    ("tensor-strings", lambda: fastdl.tensor(["a", "b"]), TypeError, "str|<U|not supported"),
    ("tensor-object", lambda: fastdl.tensor(np.array([object()])), TypeError, "object|not supported"),
    ("tensor-complex", lambda: fastdl.tensor(np.ones(3, np.complex64)), TypeError, "complex"),
    ("tensor-bad-dtype", lambda: fastdl.tensor([1.0], dtype="complex128"), TypeError, "dtype"),
    ("conv-int-input", lambda: F.conv2d(t(1, 3, 8, 8, dtype=np.int64), W3()), TypeError, "input.*float"),
    ("conv-mixed-dtypes", lambda: F.conv2d(X4(), t(4, 3, 3, 3, dtype=np.float64)), TypeError, "weight.*float64"),
    ("conv-numpy-input", lambda: F.conv2d(np.ones((1, 3, 8, 8), np.float32), W3()), TypeError, "input.*Tensor"),
    ("linear-int-weight", lambda: F.linear(t(2, 3), t(4, 3, dtype=np.int32)), TypeError, "weight"),
    ("relu-bool", lambda: F.relu(t(3, dtype=np.bool_)), TypeError, "input.*bool"),
    ("ce-float-labels-shape", lambda: F.cross_entropy(t(4, 3), t(4)), ValueError, "target.*shape"),
    ("ce-string-target", lambda: F.cross_entropy(t(4, 3), fastdl.tensor(np.array([True] * 4))), TypeError, "target"),
    ("requires-grad-int", lambda: fastdl.tensor([1, 2], requires_grad=True), RuntimeError, "floating point"),
    # ---- shapes
    ("conv-channels", lambda: F.conv2d(t(1, 2, 8, 8), W3()), ValueError, r"input channels|\(1, 2, 8, 8\)"),
    ("conv-groups-divide", lambda: F.conv2d(X4(), t(4, 1, 3, 3), groups=2), ValueError, "groups=2"),
    ("conv-groups-zero", lambda: F.conv2d(X4(), W3(), groups=0), ValueError, "groups"),
    ("conv-bias-length", lambda: F.conv2d(X4(), W3(), t(5)), ValueError, r"bias.*\(4,\).*\(5,\)"),
    ("conv-weight-ndim", lambda: F.conv2d(X4(), t(4, 3, 3)), ValueError, "weight.*4-D"),
    ("conv-input-ndim", lambda: F.conv2d(t(8, 8), W3()), ValueError, "input.*3-D.*4-D"),
    ("conv-kernel-too-large", lambda: F.conv2d(t(1, 3, 2, 2), W3()), ValueError, "larger than the padded input"),
    ("conv-empty-output", lambda: F.conv2d(t(1, 3, 3, 3), t(1, 3, 3, 3), dilation=2), ValueError, "larger than the padded input"),
    ("conv-empty-kernel", lambda: F.conv2d(X4(), t(4, 3, 0, 3)), ValueError, "kernel size must be positive"),
    ("linear-in-features", lambda: F.linear(t(2, 5), t(4, 3)), ValueError, r"\(2, 5\).*\(4, 3\)"),
    ("linear-bias", lambda: F.linear(t(2, 3), t(4, 3), t(3)), ValueError, r"bias.*\(4,\)"),
    ("linear-weight-1d", lambda: F.linear(t(2, 3), t(3)), ValueError, "weight.*2-D"),
    ("pool-input-ndim", lambda: F.max_pool2d(t(4), 2), ValueError, "input"),
    ("ce-target-rows", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, 1])), ValueError, r"target.*\(4,\).*\(2,\)"),
    ("ce-weight-length", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, 1, 2, 0]), weight=t(2)), ValueError, r"weight.*\(3,\)"),
    ("ce-prob-shape", lambda: F.cross_entropy(t(4, 3), t(4, 2)), ValueError, "probabilities.*shape"),
    ("matmul-shapes", lambda: t(2, 3) @ t(4, 5), RuntimeError, r"\(2, 3\).*\(4, 5\)"),
    ("reshape-size", lambda: t(2, 3).reshape(4, 2), RuntimeError, "invalid for input of size 6"),
    ("add-broadcast", lambda: t(2, 3) + t(4, 3), ValueError, "broadcast"),
    ("dataset-sizes", lambda: TensorDataset(t(3, 2), t(4)), ValueError, r"\[3, 4\]"),
    ("load-state-shape", lambda: nn.Linear(3, 2).load_state_dict({"weight": np.ones((3, 3)), "bias": np.ones(2)}), RuntimeError, r"size mismatch for weight.*\(3, 3\).*\(2, 3\)"),
    ("load-state-missing", lambda: nn.Linear(3, 2).load_state_dict({"weight": np.ones((2, 3))}), RuntimeError, "Missing key.*bias"),
    # ---- sizes, strides, paddings, dilations
    ("conv-stride-zero", lambda: F.conv2d(X4(), W3(), stride=0), ValueError, "stride.*positive"),
    ("conv-stride-negative", lambda: F.conv2d(X4(), W3(), stride=(1, -1)), ValueError, "stride"),
    ("conv-padding-negative", lambda: F.conv2d(X4(), W3(), padding=-1), ValueError, "padding.*non-negative"),
    ("conv-dilation-zero", lambda: F.conv2d(X4(), W3(), dilation=0), ValueError, "dilation"),
    ("conv-padding-string", lambda: F.conv2d(X4(), W3(), padding="full"), ValueError, "padding"),
    ("conv-same-strided", lambda: F.conv2d(X4(), W3(), padding="same", stride=2), ValueError, "same"),
    ("conv-padding-float", lambda: F.conv2d(X4(), W3(), padding=1.5), TypeError, "padding"),
    ("conv-huge-padding", lambda: F.conv2d(X4(), W3(), padding=2 ** 40), ValueError, "padding.*too large"),
    ("conv-overflowing-padding", lambda: F.conv2d(X4(), W3(), padding=2 ** 70), ValueError, "padding.*too large"),
    ("conv-huge-output", lambda: F.conv2d(X4(), W3(), padding=2 ** 30), ValueError, "too large"),
    ("conv-huge-stride", lambda: F.conv2d(X4(), W3(), stride=2 ** 40), ValueError, "stride.*too large"),
    ("pool-kernel-zero", lambda: F.max_pool2d(X4(), 0), ValueError, "kernel_size.*positive"),
    ("pool-stride-zero", lambda: F.max_pool2d(X4(), 2, stride=0), ValueError, "stride"),
    ("pool-padding-half", lambda: F.max_pool2d(X4(), 2, padding=2), ValueError, "half of kernel size"),
    ("pool-padding-negative", lambda: F.max_pool2d(X4(), 2, padding=-1), ValueError, "padding"),
    ("pool-kernel-too-large", lambda: F.max_pool2d(t(1, 1, 2, 2), 3), ValueError, "larger than the padded input"),
    ("pool-dilation-zero", lambda: F.max_pool2d(X4(), 2, dilation=0), ValueError, "dilation"),
    ("pool-huge-kernel", lambda: F.max_pool2d(X4(), 2 ** 40), ValueError, "kernel_size.*too large"),
    ("module-pool-padding", lambda: nn.MaxPool2d(2, padding=3), ValueError, "half of kernel size"),
    ("module-conv-groups", lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    ("module-conv-channels", lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels"),
    ("module-linear-features", lambda: nn.Linear(3, -1), ValueError, "out_features"),
    ("zeros-negative", lambda: fastdl.zeros(-1, 3), RuntimeError, "negative dimension"),
    ("zeros-overflow", lambda: fastdl.zeros(2 ** 40, 2 ** 40), (ValueError, MemoryError), "too big|too large|memory"),
    ("loader-batch-zero", lambda: DataLoader(TensorDataset(t(3)), batch_size=0), ValueError, "batch_size"),
    ("threads-zero", lambda: fastdl.set_num_threads(0), ValueError, "n:"),
    # ---- labels
    ("ce-label-too-large", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, 1, 3, 0])), IndexError, "label 3.*3 classes"),
    ("ce-label-negative", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, -2, 1, 0])), IndexError, "label -2"),
    ("ce-smoothing", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, 1, 2, 0]), label_smoothing=1.5), ValueError, "label_smoothing"),
    ("ce-reduction", lambda: F.cross_entropy(t(4, 3), fastdl.tensor([0, 1, 2, 0]), reduction="avg"), ValueError, "reduction.*'avg'"),
    # ---- hyper-parameters
    ("sgd-lr-negative", lambda: optim.SGD(P(), lr=-0.1), ValueError, "learning rate: -0.1"),
    ("sgd-momentum-negative", lambda: optim.SGD(P(), lr=0.1, momentum=-1), ValueError, "momentum"),
    ("sgd-weight-decay", lambda: optim.SGD(P(), lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    ("sgd-nesterov", lambda: optim.SGD(P(), lr=0.1, nesterov=True), ValueError, "Nesterov"),
    ("adam-beta1", lambda: optim.Adam(P(), betas=(1.0, 0.999)), ValueError, "beta parameter at index 0"),
    ("adam-beta2", lambda: optim.Adam(P(), betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
    ("adam-eps", lambda: optim.Adam(P(), eps=-1e-8), ValueError, "epsilon"),
    ("adam-lr-nan", lambda: optim.Adam(P(), lr=math.nan), ValueError, "learning rate"),
    ("adamw-weight-decay", lambda: optim.AdamW(P(), weight_decay=-1), ValueError, "weight_decay"),
    ("optim-empty", lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    ("optim-tensor", lambda: optim.SGD(P()[0], lr=0.1), TypeError, "iterable"),
    ("optim-int-param", lambda: optim.SGD([fastdl.tensor([1, 2])], lr=0.1), TypeError, "float32/float64"),
    ("optim-duplicate", lambda: (lambda p: optim.SGD([{"params": p}, {"params": p}], lr=0.1))(P()), ValueError, "more than one parameter group"),
    ("step-lr", lambda: optim.lr_scheduler.StepLR(optim.SGD(P(), lr=0.1), step_size=0), ValueError, "step_size"),
    ("init-fan", lambda: nn.init.xavier_uniform_(t(3)), ValueError, "fewer than 2 dimensions"),
    ("init-mode", lambda: nn.init.kaiming_normal_(t(3, 3), mode="fan"), ValueError, "mode"),
    ("init-gain", lambda: nn.init.calculate_gain("swish"), ValueError, "nonlinearity"),
    # ---- autograd
    ("backward-non-scalar", lambda: (t(3, grad=True) * 2).backward(), RuntimeError, r"scalar outputs.*\(3,\)"),
    ("backward-no-grad", lambda: t(3).sum().backward(), RuntimeError, "does not require grad"),
    ("backward-gradient-shape", lambda: (t(3, grad=True) * 2).backward(np.ones(4)), RuntimeError, r"\(4,\).*\(3,\)"),
    ("backward-twice", lambda: (lambda y: (y.backward(), y.backward()))((t(3, grad=True).exp()).sum()), RuntimeError, "second time"),
    ("numpy-requires-grad", lambda: t(3, grad=True).numpy(), RuntimeError, "detach"),
    ("item-many", lambda: t(3).item(), ValueError, "3 elements"),
    ("inplace-leaf", lambda: t(3, grad=True).zero_(), RuntimeError, "in-place"),
    # ---- checkpoints
    ("save-object", lambda: fastdl.save({"f": print}, "/tmp/fastdl-bad.ckpt"), TypeError, "builtin_function|cannot save"),
    ("save-object-array", lambda: fastdl.save(np.array([object()]), "/tmp/fastdl-bad.ckpt"), TypeError, "dtype object"),
    # ---- the C++ layer's own checks, called directly with inconsistent arguments
    ("c-conv-grad-shape", lambda: _C.conv2d_backward(np.ones((1, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32), np.ones((1, 4, 5, 5), np.float32), (1, 1), (1, 1), (1, 1), 1, [True, True, True]), ValueError, "grad_output"),
    ("c-conv-negative-stride", lambda: _C.conv2d_forward(np.ones((1, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32), None, (-1, 1), (0, 0), (1, 1), 1), ValueError, "stride"),
    ("c-conv-groups", lambda: _C.conv2d_forward(np.ones((1, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32), None, (1, 1), (0, 0), (1, 1), 2), ValueError, "groups=2"),
    ("c-pool-index-range", lambda: _C.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), np.full((1, 1, 2, 2), 99, np.int64), (1, 1, 4, 4)), ValueError, "index out of range"),
    ("c-pool-input-shape", lambda: _C.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 2), np.int64), (1, 1, -4, 4)), ValueError, "input_shape"),
    ("c-ce-label", lambda: _C.cross_entropy_forward(np.ones((2, 3), np.float32), np.array([0, 7]), None, -100, False), ValueError, "label 7"),
    ("c-ce-lse-length", lambda: _C.cross_entropy_backward(np.ones((2, 3), np.float32), np.array([0, 1]), None, np.ones(5), np.ones(2, np.float32), None, -100), ValueError, "logsumexp"),
    ("c-relu-shape", lambda: _C.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError, "shape"),
    ("c-linear-shape", lambda: _C.linear_forward(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), None), ValueError, "does not match"),
    ("c-sgd-lengths", lambda: _C.sgd_step_float32([np.ones(3, np.float32)], [np.ones(4, np.float32)], [], 0.1, 0.0, 0.0, 0.0, False, False, False), ValueError, "elements"),
    ("c-sgd-readonly", lambda: _C.sgd_step_float32([_readonly(3)], [np.ones(3, np.float32)], [], 0.1, 0.0, 0.0, 0.0, False, False, False), ValueError, "writeable"),
    ("c-sgd-strided", lambda: _C.sgd_step_float32([np.ones(6, np.float32)[::2]], [np.ones(3, np.float32)], [], 0.1, 0.0, 0.0, 0.0, False, False, False), ValueError, "contiguous"),
    ("c-adam-dtype", lambda: _C.adam_step_float32([np.ones(3)], [np.ones(3)], [np.ones(3)], [np.ones(3)], [], [0.1], [1.0], 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False), ValueError, "float32"),
    ("c-adam-missing-state", lambda: _C.adam_step_float32([np.ones(3, np.float32)], [np.ones(3, np.float32)], [], [], [], [0.1], [1.0], 0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False), ValueError, "one array per parameter"),
]

# fastdl.image, fastdl.linear_model, fastdl.metrics
from fastdl import image, linear_model, metrics  # noqa: E402

_IMG = lambda: np.ones((6, 6), np.float32)  # noqa: E731
_X = lambda: np.ones((5, 2))  # noqa: E731
CASES += [
    ("image-strings", lambda: image.uniform_filter(np.array([["a"]]), 3), TypeError, "input: dtype <U1"),
    ("image-complex", lambda: image.median_filter(np.ones((4, 4), np.complex64), 3), TypeError, "complex64"),
    ("image-bool", lambda: image.sobel(np.ones((4, 4), bool)), TypeError, "bool"),
    ("image-1d", lambda: image.uniform_filter(np.ones(5), 3), ValueError, r"input.*\(5,\)"),
    ("image-5d", lambda: image.uniform_filter(np.ones((1, 1, 1, 4, 4)), 3), ValueError, "input"),
    ("image-size-zero", lambda: image.uniform_filter(_IMG(), 0), ValueError, "size"),
    ("image-median-size", lambda: image.median_filter(_IMG(), -3), ValueError, "size"),
    ("image-mode", lambda: image.gaussian_filter(_IMG(), 1.0, mode="circular"), ValueError, "mode.*'circular'"),
    ("image-sigma", lambda: image.gaussian_filter(_IMG(), -1.0), ValueError, "sigma"),
    ("image-weights-empty", lambda: image.correlate(_IMG(), np.ones((0, 3))), ValueError, r"weights.*\(0, 3\)"),
    ("image-weights-1d", lambda: image.convolve(_IMG(), np.ones(3)), ValueError, "weights"),
    ("image-axis", lambda: image.sobel(_IMG(), axis=5), ValueError, "axis"),
    ("lm-X-1d", lambda: linear_model.Ridge().fit(np.ones(5), np.ones(5)), ValueError, r"X.*\(5,\)"),
    ("lm-nan", lambda: linear_model.Lasso().fit(np.array([[np.nan, 1.0]] * 3), np.ones(3)), ValueError, "NaN"),
    ("lm-y-length", lambda: linear_model.LinearRegression().fit(_X(), np.ones(4)), ValueError, "5 samples.*4"),
    ("lm-alpha", lambda: linear_model.Ridge(alpha=-1).fit(_X(), np.ones(5)), ValueError, "alpha"),
    ("lm-solver", lambda: linear_model.Lasso(solver="magic").fit(_X(), np.ones(5)), ValueError, "solver.*'magic'"),
    ("lm-C", lambda: linear_model.LogisticRegression(C=0).fit(_X(), np.array([0, 1, 0, 1, 0])), ValueError, "C:"),
    ("lm-one-class", lambda: linear_model.LogisticRegression().fit(_X(), np.zeros(5)), ValueError, "one class"),
    ("lm-features", lambda: linear_model.Ridge().fit(_X(), np.ones(5)).predict(np.ones((5, 3))), ValueError, "3 features"),
    ("lm-strings", lambda: linear_model.Ridge().fit(np.array([["a", "b"]] * 3), np.ones(3)), ValueError, "numeric"),
    ("metrics-lengths", lambda: metrics.accuracy_score([1, 2], [1]), ValueError, "lengths"),
    ("one-hot-float", lambda: F.one_hot(fastdl.tensor([1.0])), TypeError, "integer"),
    ("adagrad-lr", lambda: optim.Adagrad(P(), lr=-1), ValueError, "learning rate"),
    ("rmsprop-alpha", lambda: optim.RMSprop(P(), alpha=-0.5), ValueError, "alpha"),
]


@pytest.mark.parametrize("name, call, expected, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(isolated, name, call, expected, pattern):
    outcome = isolated(call)
    assert outcome is not None, f"{name}: no exception was raised"
    kind, message, trace = outcome
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert kind in {e.__name__ for e in expected}, f"{name}: got {kind}: {message}\n{trace}"
    import re
    assert re.search(pattern, message, re.S), f"{name}: message {message!r} does not match {pattern!r}"


def test_case_count_is_reported():
    # The closing note quotes this number.
    assert len(CASES) >= 120
