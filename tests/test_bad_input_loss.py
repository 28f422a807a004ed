"""Bad inputs to the loss family get a clear exception (PyTorch's type where PyTorch raises
one), never a crash: each case runs in a forked child (conftest.Isolated)."""
import re

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import _C


def t(*shape, dtype=np.float32, value=0.5, grad=False):
    return fastdl.tensor(np.full(shape, value, dtype=dtype), requires_grad=grad)


def labels(*values):
    return fastdl.tensor(np.array(values, dtype=np.int64))


CASES = [
    # ---- shapes (both shapes named)
    ("nll-target-shape", lambda: F.nll_loss(t(4, 3), labels(0, 1)), ValueError, r"\(4,\).*\(4, 3\).*\(2,\)"),
    ("nll-kdim-target", lambda: F.nll_loss(t(2, 3, 4), labels(0, 1)), ValueError, r"\(2, 4\).*\(2, 3, 4\)"),
    ("nll-weight-length", lambda: F.nll_loss(t(4, 3), labels(0, 1, 2, 0), weight=t(2)), ValueError, r"weight.*\(3,\).*\(2,\)"),
    ("nll-scalar-input", lambda: F.nll_loss(t(), labels(0)), ValueError, "input.*scalar"),
    ("bce-target-shape", lambda: F.binary_cross_entropy(t(2, 3), t(2)), ValueError, r"\(2,\).*\(2, 3\)"),
    ("bce-logits-target-shape", lambda: F.binary_cross_entropy_with_logits(t(2, 3), t(3, 2)), ValueError, r"\(3, 2\).*\(2, 3\)"),
    ("bce-weight-broadcast", lambda: F.binary_cross_entropy(t(2, 3), t(2, 3), weight=t(4)), RuntimeError, r"weight.*\(4,\).*\(2, 3\)"),
    ("bce-pos-weight-broadcast", lambda: F.binary_cross_entropy_with_logits(t(2, 3), t(2, 3), pos_weight=t(2)), RuntimeError, r"pos_weight.*\(2,\).*\(2, 3\)"),
    ("mse-not-broadcastable", lambda: F.mse_loss(t(2, 3), t(2, 4)), RuntimeError, r"\(2, 3\).*\(2, 4\)"),
    ("l1-weight-shape", lambda: F.l1_loss(t(2, 3), t(2, 3), weight=t(3)), ValueError, r"weight.*\(3,\).*\(2, 3\)"),
    ("kl-not-broadcastable", lambda: F.kl_div(t(3), t(4)), RuntimeError, r"\(3,\).*\(4,\)"),
    ("ce-prob-kdim-shape", lambda: F.cross_entropy(t(2, 3, 4), t(2, 3, 5)), ValueError, "probabilities.*shape"),
    # ---- labels
    ("nll-label-too-large", lambda: F.nll_loss(t(4, 3), labels(0, 1, 3, 0)), IndexError, "Target 3 is out of bounds"),
    ("nll-label-negative", lambda: F.nll_loss(t(4, 3), labels(0, -2, 1, 0)), IndexError, "Target -2"),
    ("nll-float-target", lambda: F.nll_loss(t(4, 3), t(4)), TypeError, "target.*integer"),
    ("nll-ignore-index-float", lambda: F.nll_loss(t(4, 3), labels(0, 1, 2, 0), ignore_index=1.5), TypeError, "ignore_index"),
    # ---- values
    ("bce-input-above-one", lambda: F.binary_cross_entropy(t(3, value=1.5), t(3)), RuntimeError, "between 0 and 1"),
    ("bce-input-negative", lambda: F.binary_cross_entropy(t(3, value=-0.1), t(3)), RuntimeError, "between 0 and 1"),
    ("bce-input-nan", lambda: F.binary_cross_entropy(t(3, value=np.nan), t(3)), RuntimeError, "between 0 and 1"),
    # ---- reductions
    ("nll-reduction", lambda: F.nll_loss(t(4, 3), labels(0, 1, 2, 0), reduction="avg"), ValueError, "reduction.*'avg'"),
    ("mse-reduction", lambda: F.mse_loss(t(3), t(3), reduction="batchmean"), ValueError, "reduction.*'batchmean'"),
    ("bce-reduction", lambda: F.binary_cross_entropy(t(3), t(3), reduction="mean "), ValueError, "reduction"),
    ("kl-reduction", lambda: F.kl_div(t(3), t(3), reduction="average"), ValueError, "reduction.*'average'"),
    ("module-reduction", lambda: nn.MSELoss(reduction="max"), ValueError, "reduction.*'max'"),
    # ---- dtypes
    ("mse-int-target", lambda: F.mse_loss(t(3), fastdl.tensor(np.ones(3, np.int64))), TypeError, "target.*floating"),
    ("bce-int-target", lambda: F.binary_cross_entropy(t(3), fastdl.tensor(np.ones(3, np.int32))), TypeError, "target.*floating"),
    ("bce-logits-mixed-dtype", lambda: F.binary_cross_entropy_with_logits(t(3), t(3, dtype=np.float64)), TypeError, "target.*float64"),
    ("bce-weight-dtype", lambda: F.binary_cross_entropy(t(3), t(3), weight=t(3, dtype=np.float64)), TypeError, "weight.*float64"),
    ("kl-int-input", lambda: F.kl_div(t(3, dtype=np.int64), t(3)), TypeError, "input.*float"),
    ("l1-numpy-input", lambda: F.l1_loss(np.ones(3), t(3)), TypeError, "input.*Tensor"),
    ("softmax-int", lambda: F.softmax(t(3, dtype=np.int32), 0), TypeError, "input.*float"),
    ("softmax-dtype", lambda: F.log_softmax(t(3), 0, dtype=np.int32), TypeError, "dtype"),
    # ---- dims
    ("softmax-dim-range", lambda: F.softmax(t(2, 3), 2), IndexError, r"Dimension out of range.*\[-2, 1\].*2"),
    ("log-softmax-dim-negative", lambda: F.log_softmax(t(2, 3), -3), IndexError, "Dimension out of range"),
    ("softmax-dim-float", lambda: F.softmax(t(2, 3), 1.0), TypeError, "dim"),
    # ---- parameters that would need a gradient
    ("bce-weight-requires-grad", lambda: F.binary_cross_entropy(t(3), t(3), weight=t(3, grad=True)), NotImplementedError, "weight"),
    # ---- the C++ layer's own checks
    ("c-nll-label", lambda: _C.nll_loss_forward(np.zeros((2, 3), np.float32), np.array([0, 7]), None, -100, False), ValueError, "label 7"),
    ("c-nll-target-shape", lambda: _C.nll_loss_forward(np.zeros((2, 3), np.float32), np.array([0, 1, 2]), None, -100, False), ValueError, "does not match"),
    ("c-nll-grad-shape", lambda: _C.nll_loss_backward(np.zeros((2, 3), np.float32), np.array([0, 1]), None, np.ones(5, np.float32), -100), ValueError, "grad"),
    ("c-softmax-dim", lambda: _C.softmax_forward(np.zeros((2, 3), np.float32), 5, False), ValueError, "dim 5"),
    ("c-softmax-grad-shape", lambda: _C.softmax_backward(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), 1, False), ValueError, "grad_output"),
    ("c-ce-prob-shape", lambda: _C.cross_entropy_probabilities_forward(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), None, 0.0, False), ValueError, "target"),
    ("c-ce-prob-smoothing", lambda: _C.cross_entropy_probabilities_forward(np.zeros((2, 3)), np.zeros((2, 3)), None, 2.0, False), ValueError, "label_smoothing"),
    ("c-ce-prob-lse", lambda: _C.cross_entropy_probabilities_backward(np.zeros((2, 3)), np.zeros((2, 3)), None, np.zeros(7), np.ones(()), 0.0), ValueError, "logsumexp"),
    ("c-loss-kind", lambda: _C.elementwise_loss_forward(9, np.zeros(3), np.zeros(3), None, None, False), ValueError, "kind 9"),
    ("c-loss-shape", lambda: _C.elementwise_loss_forward(0, np.zeros(3), np.zeros(4), None, None, False), ValueError, r"\(4,\).*\(3,\)"),
    ("c-loss-weight-period", lambda: _C.elementwise_loss_forward(2, np.zeros(6), np.zeros(6), np.ones(4), None, False), ValueError, "weight"),
    ("c-loss-grad-shape", lambda: _C.elementwise_loss_backward(0, np.zeros(3), np.zeros(3), None, None, np.ones(2), True, False), ValueError, "grad"),
]


@pytest.mark.parametrize("name, call, expected, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(isolated, name, call, expected, pattern):
    outcome = isolated(call)
    assert outcome is not None, f"{name}: no exception was raised"
    kind, message, trace = outcome
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert kind in {e.__name__ for e in expected}, f"{name}: got {kind}: {message}\n{trace}"
    assert re.search(pattern, message, re.S), f"{name}: message {message!r} does not match {pattern!r}"
