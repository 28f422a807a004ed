"""Bad inputs to batch norm, the activations and dropout: a clear exception, never a crash.

Each case runs in a forked child (conftest.Isolated), as in tests/test_bad_input.py.
"""
import re

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import _C


def t(*shape, dtype=np.float32, grad=False):
    return fastdl.tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


def _readonly(n):
    array = np.ones(n, np.float32)
    array.flags.writeable = False
    return array


def _bn(*shape, **kwargs):
    return F.batch_norm(t(*shape), t(shape[1]), t(shape[1]), **kwargs)


# (id, callable, expected exception type(s), regex the message must match)
CASES = [
    # ---- batch norm: functional
    ("bn-one-value-per-channel", lambda: F.batch_norm(t(1, 3), None, None, training=True), ValueError,
     r"Expected more than 1 value per channel when training, got input size \(1, 3\)"),
    ("bn-one-value-per-channel-3d", lambda: F.batch_norm(t(1, 3, 1), t(3), t(3), training=True), ValueError,
     "more than 1 value per channel"),
    ("bn-running-mean-shape", lambda: F.batch_norm(t(4, 3), t(2), t(3)), ValueError, r"running_mean.*3 elements.*\(2,\)"),
    ("bn-running-var-shape", lambda: F.batch_norm(t(4, 3, 5), t(3), t(3, 1)), ValueError, r"running_var.*\(3, 1\)"),
    ("bn-weight-shape", lambda: F.batch_norm(t(4, 3), t(3), t(3), weight=t(4)), ValueError, r"weight.*\(4,\)"),
    ("bn-bias-shape", lambda: F.batch_norm(t(4, 3), t(3), t(3), bias=t(2)), ValueError, r"bias.*\(2,\)"),
    ("bn-eval-without-stats", lambda: F.batch_norm(t(4, 3), None, None, training=False), ValueError,
     "running_mean and running_var must be defined"),
    ("bn-1d-input", lambda: F.batch_norm(t(4), None, None, training=True), ValueError, r"input.*2 dimensions.*\(4,\)"),
    ("bn-int-input", lambda: F.batch_norm(t(4, 3, dtype=np.int64), t(3), t(3)), TypeError, "input.*float"),
    ("bn-mixed-dtypes", lambda: F.batch_norm(t(4, 3, dtype=np.float64), t(3), t(3)), TypeError, "running_mean.*float32"),
    ("bn-numpy-input", lambda: F.batch_norm(np.ones((4, 3), np.float32), None, None, training=True), TypeError, "input.*Tensor"),
    ("bn-negative-eps", lambda: _bn(4, 3, eps=-1.0), ValueError, "eps"),
    ("bn-string-momentum", lambda: _bn(4, 3, training=True, momentum="a"), TypeError, "momentum"),
    # ---- batch norm: modules
    ("bn2d-wrong-features", lambda: nn.BatchNorm2d(3)(t(2, 4, 5, 5)), ValueError, r"3 channels.*\(2, 4, 5, 5\)"),
    ("bn1d-wrong-features", lambda: nn.BatchNorm1d(3)(t(2, 4)), ValueError, r"3 channels.*\(2, 4\)"),
    ("bn2d-3d-input", lambda: nn.BatchNorm2d(3)(t(3, 5, 5)), ValueError, r"expected 4D input \(got 3D input\)"),
    ("bn1d-4d-input", lambda: nn.BatchNorm1d(3)(t(2, 3, 5, 5)), ValueError, r"expected 2D or 3D input \(got 4D input\)"),
    ("bn1d-single-sample-training", lambda: nn.BatchNorm1d(3)(t(1, 3)), ValueError, "more than 1 value per channel"),
    ("bn-zero-features", lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
    ("bn-float-features", lambda: nn.BatchNorm2d(2.5), ValueError, "num_features"),
    ("bn-negative-eps-module", lambda: nn.BatchNorm1d(3, eps=-1), ValueError, "eps"),
    ("bn-bad-momentum-module", lambda: nn.BatchNorm1d(3, momentum="x"), TypeError, "momentum"),
    ("bn-int-dtype", lambda: nn.BatchNorm1d(3, dtype=np.int32), TypeError, "dtype"),
    ("bn-load-wrong-shape", lambda: nn.BatchNorm1d(3).load_state_dict(nn.BatchNorm1d(4).state_dict()), RuntimeError,
     "size mismatch for running_mean"),
    # ---- activations
    ("leaky-relu-string-slope", lambda: F.leaky_relu(t(3), "a"), TypeError, "negative_slope.*str"),
    ("leaky-relu-none-slope", lambda: F.leaky_relu(t(3), None), TypeError, "negative_slope"),
    ("leaky-relu-module-slope", lambda: nn.LeakyReLU([0.1]), TypeError, "negative_slope"),
    ("sigmoid-int", lambda: F.sigmoid(t(3, dtype=np.int64)), TypeError, "input.*int64"),
    ("tanh-numpy", lambda: F.tanh(np.ones(3)), TypeError, "input.*Tensor"),
    ("leaky-relu-bool", lambda: F.leaky_relu(t(3, dtype=np.bool_)), TypeError, "input.*bool"),
    # ---- dropout
    ("dropout-p-above-1", lambda: F.dropout(t(3), 1.5), ValueError, "dropout probability has to be between 0 and 1, but got 1.5"),
    ("dropout-p-negative", lambda: F.dropout(t(3), -0.1), ValueError, "between 0 and 1"),
    ("dropout-p-nan", lambda: F.dropout(t(3), float("nan")), ValueError, "between 0 and 1"),
    ("dropout-p-string", lambda: F.dropout(t(3), "0.5"), TypeError, "p.*str"),
    ("dropout-module-p", lambda: nn.Dropout(2), ValueError, "between 0 and 1, but got 2"),
    ("dropout-int-input", lambda: F.dropout(t(3, dtype=np.int32)), TypeError, "input"),
    ("dropout-bad-generator", lambda: F.dropout(t(3), generator="seed"), TypeError, "generator"),
    # ---- the bindings' own second line of checks
    ("c-bn-running-readonly", lambda: _C.batch_norm_forward(np.ones((4, 3, 1), np.float32), None, None,
                                                            _readonly(3), np.ones(3, np.float32), True, 0.1, 1e-5),
     ValueError, "running_mean must be writeable"),
    ("c-bn-running-dtype", lambda: _C.batch_norm_forward(np.ones((4, 3, 1), np.float32), None, None,
                                                         np.ones(3), np.ones(3, np.float32), True, 0.1, 1e-5),
     ValueError, "running_mean must be a float32"),
    ("c-bn-running-length", lambda: _C.batch_norm_forward(np.ones((4, 3, 1), np.float32), None, None,
                                                          np.ones(2, np.float32), np.ones(3, np.float32), True, 0.1, 1e-5),
     ValueError, "3 elements"),
    ("c-bn-one-value", lambda: _C.batch_norm_forward(np.ones((1, 3, 1), np.float32), None, None, None, None,
                                                     True, 0.1, 1e-5), ValueError, "more than 1 value per channel"),
    ("c-bn-eval-no-stats", lambda: _C.batch_norm_forward(np.ones((4, 3, 1), np.float32), None, None, None, None,
                                                         False, 0.1, 1e-5), ValueError, "required"),
    ("c-bn-weight-length", lambda: _C.batch_norm_forward(np.ones((4, 3, 1), np.float32), np.ones(2, np.float32),
                                                         None, None, None, True, 0.1, 1e-5), ValueError, "weight"),
    ("c-bn-backward-shape", lambda: _C.batch_norm_backward(np.ones((4, 3, 2), np.float32), np.ones((4, 3, 3), np.float32),
                                                           np.zeros(3), np.ones(3), None, True, [True, False, False]),
     ValueError, "grad_output"),
    ("c-bn-backward-stats", lambda: _C.batch_norm_backward(np.ones((4, 3, 2), np.float32), np.ones((4, 3, 2), np.float32),
                                                           np.zeros(2), np.ones(3), None, True, [True, False, False]),
     ValueError, "one entry per channel"),
    ("c-bn-backward-weightless", lambda: _C.batch_norm_backward(np.ones((4, 3, 2), np.float32), np.ones((4, 3, 2), np.float32),
                                                                np.zeros(3), np.ones(3), None, True, [False, True, False]),
     ValueError, "needs the weight"),
    ("c-sigmoid-backward-shape", lambda: _C.sigmoid_backward(np.ones(3, np.float32), np.ones(4, np.float32)), ValueError, "shape"),
    ("c-tanh-out-readonly", lambda: _C.tanh_forward(np.ones(3, np.float32), _readonly(3)), ValueError, "writeable"),
    ("c-tanh-out-shape", lambda: _C.tanh_forward(np.ones(4, np.float32), np.ones((2, 2), np.float32)), ValueError, "out"),
    ("c-leaky-backward-shape", lambda: _C.leaky_relu_backward(np.ones(3), np.ones(2), 0.1), ValueError, "shape"),
    ("c-dropout-p-one", lambda: _C.dropout_forward(np.ones(3, np.float32), 1, 1.0), ValueError, r"\[0, 1\)"),
    ("c-dropout-out-strided", lambda: _C.dropout_forward(np.ones(3, np.float32), 1, 0.5, np.ones(6, np.float32)[::2]),
     ValueError, "contiguous"),
]


@pytest.mark.parametrize("name, call, expected, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(isolated, name, call, expected, pattern):
    outcome = isolated(call)
    assert outcome is not None, f"{name}: no exception was raised"
    kind, message, trace = outcome
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert kind in {e.__name__ for e in expected}, f"{name}: got {kind}: {message}\n{trace}"
    assert re.search(pattern, message, re.S), f"{name}: message {message!r} does not match {pattern!r}"
