"""Bad inputs to avg_pool2d, adaptive_avg_pool2d, conv1d and their modules get a clear
exception, never a crash or a hang (each case runs in a forked child, conftest.Isolated)."""
import re

import numpy as np
import pytest

import fastdl
import fastdl.nn as nn
import fastdl.nn.functional as F
from fastdl import _C


def t(*shape, dtype=np.float32, grad=False):
    return fastdl.tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


X4 = lambda: t(2, 3, 8, 8)  # noqa: E731
X3 = lambda: t(2, 3, 10)  # noqa: E731
W3 = lambda: t(4, 3, 3)  # noqa: E731
A = lambda *shape: np.ones(shape, np.float32)  # noqa: E731

# (id, callable, expected exception type(s), regex the message must match)
CASES = [
    # ---- avg_pool2d
    ("avg-kernel-zero", lambda: F.avg_pool2d(X4(), 0), ValueError, "kernel_size.*positive"),
    ("avg-kernel-negative", lambda: F.avg_pool2d(X4(), (2, -1)), ValueError, "kernel_size"),
    ("avg-stride-zero", lambda: F.avg_pool2d(X4(), 2, stride=0), ValueError, "stride.*positive"),
    ("avg-padding-half", lambda: F.avg_pool2d(X4(), 2, padding=2), ValueError, "half of kernel size"),
    ("avg-padding-half-tuple", lambda: F.avg_pool2d(X4(), (3, 2), padding=(1, 2)), ValueError, "half of kernel size"),
    ("avg-padding-negative", lambda: F.avg_pool2d(X4(), 2, padding=-1), ValueError, "padding.*non-negative"),
    ("avg-kernel-too-large", lambda: F.avg_pool2d(t(1, 1, 2, 2), 3), ValueError, "larger than the padded input"),
    ("avg-huge-kernel", lambda: F.avg_pool2d(X4(), 2 ** 40), ValueError, "kernel_size.*too large"),
    ("avg-kernel-float", lambda: F.avg_pool2d(X4(), 2.5), TypeError, "kernel_size"),
    ("avg-kernel-triple", lambda: F.avg_pool2d(X4(), (2, 2, 2)), TypeError, "kernel_size"),
    ("avg-divisor-zero", lambda: F.avg_pool2d(X4(), 2, divisor_override=0), ValueError, "divisor_override"),
    ("avg-divisor-float", lambda: F.avg_pool2d(X4(), 2, divisor_override=1.5), TypeError, "divisor_override"),
    ("avg-divisor-huge", lambda: F.avg_pool2d(X4(), 2, divisor_override=2 ** 40), ValueError, "divisor_override"),
    ("avg-input-1d", lambda: F.avg_pool2d(t(8), 2), ValueError, r"input.*\(8,\)"),
    ("avg-input-5d", lambda: F.avg_pool2d(t(1, 2, 3, 8, 8), 2), ValueError, "input.*3-D.*4-D"),
    ("avg-int-input", lambda: F.avg_pool2d(t(1, 1, 4, 4, dtype=np.int64), 2), TypeError, "input.*float"),
    ("avg-numpy-input", lambda: F.avg_pool2d(np.ones((1, 1, 4, 4)), 2), TypeError, "input.*Tensor"),
    ("avg-zero-width", lambda: F.avg_pool2d(t(1, 2, 4, 0), 1), ValueError, r"non-zero.*\(1, 2, 4, 0\)"),
    ("avg-zero-channels", lambda: F.avg_pool2d(t(2, 0, 4, 4), 2), ValueError, "non-zero"),
    ("module-avg-padding", lambda: nn.AvgPool2d(2, padding=2), ValueError, "half of kernel size"),
    ("module-avg-divisor", lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override"),
    ("module-avg-stride", lambda: nn.AvgPool2d(2, stride=0), ValueError, "stride"),
    # ---- adaptive_avg_pool2d
    ("adaptive-size-zero", lambda: F.adaptive_avg_pool2d(X4(), 0), ValueError, "output_size.*positive"),
    ("adaptive-size-negative", lambda: F.adaptive_avg_pool2d(X4(), (2, -3)), ValueError, "output_size.*positive"),
    ("adaptive-size-float", lambda: F.adaptive_avg_pool2d(X4(), 2.0), TypeError, "output_size"),
    ("adaptive-size-triple", lambda: F.adaptive_avg_pool2d(X4(), (1, 2, 3)), TypeError, "output_size"),
    ("adaptive-size-string", lambda: F.adaptive_avg_pool2d(X4(), "7"), TypeError, "output_size"),
    ("adaptive-size-huge", lambda: F.adaptive_avg_pool2d(X4(), 2 ** 40), ValueError, "output_size.*too large"),
    ("adaptive-output-too-big", lambda: F.adaptive_avg_pool2d(X4(), 2 ** 30), ValueError, "too large"),
    ("adaptive-input-2d", lambda: F.adaptive_avg_pool2d(t(8, 8), 2), ValueError, r"input.*\(8, 8\)"),
    ("adaptive-zero-height", lambda: F.adaptive_avg_pool2d(t(1, 2, 0, 4), 1), ValueError, "non-zero"),
    ("adaptive-bool-input", lambda: F.adaptive_avg_pool2d(t(1, 1, 4, 4, dtype=np.bool_), 1), TypeError, "input.*bool"),
    ("module-adaptive-zero", lambda: nn.AdaptiveAvgPool2d(0), ValueError, "output_size"),
    ("module-adaptive-type", lambda: nn.AdaptiveAvgPool2d([1.5, 2]), TypeError, "output_size"),
    # ---- conv1d
    ("conv1d-channels", lambda: F.conv1d(t(2, 2, 10), W3()), ValueError, r"input channels|\(2, 2, 10\)"),
    ("conv1d-groups-divide", lambda: F.conv1d(X3(), t(4, 1, 3), groups=2), ValueError, "groups=2"),
    ("conv1d-groups-weight", lambda: F.conv1d(t(2, 4, 10), t(4, 1, 3), groups=2), ValueError, r"weight.*\(4, 1, 3\)"),
    ("conv1d-groups-zero", lambda: F.conv1d(X3(), W3(), groups=0), ValueError, "groups"),
    ("conv1d-out-channels-groups", lambda: F.conv1d(t(2, 4, 10), t(3, 2, 3), groups=2), ValueError, "groups=2"),
    ("conv1d-weight-ndim", lambda: F.conv1d(X3(), t(4, 3, 3, 3)), ValueError, "weight.*3-D"),
    ("conv1d-input-ndim", lambda: F.conv1d(t(1, 3, 8, 8), W3()), ValueError, r"input.*\(1, 3, 8, 8\)"),
    ("conv1d-input-1d", lambda: F.conv1d(t(8), W3()), ValueError, "input"),
    ("conv1d-bias-length", lambda: F.conv1d(X3(), W3(), t(5)), ValueError, r"bias.*\(4,\).*\(5,\)"),
    ("conv1d-kernel-too-large", lambda: F.conv1d(t(1, 3, 2), W3()), ValueError, "larger than the padded input"),
    ("conv1d-dilated-too-large", lambda: F.conv1d(t(1, 3, 4), W3(), dilation=2), ValueError, "larger than the padded input"),
    ("conv1d-empty-kernel", lambda: F.conv1d(X3(), t(4, 3, 0)), ValueError, "kernel size must be positive"),
    ("conv1d-stride-zero", lambda: F.conv1d(X3(), W3(), stride=0), ValueError, "stride.*positive"),
    ("conv1d-stride-pair", lambda: F.conv1d(X3(), W3(), stride=(1, 1)), TypeError, "stride"),
    ("conv1d-padding-negative", lambda: F.conv1d(X3(), W3(), padding=-1), ValueError, "padding"),
    ("conv1d-padding-string", lambda: F.conv1d(X3(), W3(), padding="full"), ValueError, "padding"),
    ("conv1d-same-strided", lambda: F.conv1d(X3(), W3(), padding="same", stride=2), ValueError, "same"),
    ("conv1d-dilation-zero", lambda: F.conv1d(X3(), W3(), dilation=0), ValueError, "dilation"),
    ("conv1d-huge-padding", lambda: F.conv1d(X3(), W3(), padding=2 ** 40), ValueError, "padding.*too large"),
    ("conv1d-mixed-dtypes", lambda: F.conv1d(X3(), t(4, 3, 3, dtype=np.float64)), TypeError, "weight.*float64"),
    ("conv1d-int-input", lambda: F.conv1d(t(2, 3, 10, dtype=np.int32), W3()), TypeError, "input.*float"),
    ("module-conv1d-groups", lambda: nn.Conv1d(3, 4, 3, groups=2), ValueError, "divisible by groups"),
    ("module-conv1d-channels", lambda: nn.Conv1d(0, 4, 3), ValueError, "in_channels"),
    ("module-conv1d-kernel", lambda: nn.Conv1d(3, 4, 0), ValueError, "kernel_size"),
    ("module-conv1d-padding", lambda: nn.Conv1d(3, 4, 3, padding="full"), ValueError, "padding"),
    ("module-conv1d-same-strided", lambda: nn.Conv1d(3, 4, 3, padding="same", stride=2), ValueError, "same"),
    ("module-conv1d-padding-mode", lambda: nn.Conv1d(3, 4, 3, padding_mode="circular"), ValueError, "padding_mode"),
    ("module-conv1d-input", lambda: nn.Conv1d(3, 4, 3)(t(2, 5, 10)), ValueError, r"\(2, 5, 10\)"),
    # ---- the C++ layer's own checks, called directly with inconsistent arguments
    ("c-avg-input-3d", lambda: _C.avg_pool2d_forward(A(3, 8, 8), (2, 2), (2, 2), (0, 0), False, True, None), ValueError, "4-D"),
    ("c-avg-stride-negative", lambda: _C.avg_pool2d_forward(A(1, 1, 8, 8), (2, 2), (-1, 2), (0, 0), False, True, None), ValueError, "stride"),
    ("c-avg-padding-half", lambda: _C.avg_pool2d_forward(A(1, 1, 8, 8), (2, 2), (2, 2), (2, 0), False, True, None), ValueError, "half"),
    ("c-avg-divisor-zero", lambda: _C.avg_pool2d_forward(A(1, 1, 8, 8), (2, 2), (2, 2), (0, 0), False, True, 0), ValueError, "divisor"),
    ("c-avg-empty-output", lambda: _C.avg_pool2d_forward(A(1, 1, 2, 2), (3, 3), (1, 1), (0, 0), False, True, None), ValueError, "empty"),
    ("c-avg-zero-width", lambda: _C.avg_pool2d_forward(A(1, 1, 2, 0), (1, 1), (1, 1), (0, 0), False, True, None), ValueError, "height and width"),
    ("c-avg-grad-shape", lambda: _C.avg_pool2d_backward(A(1, 1, 3, 3), (1, 1, 8, 8), (2, 2), (2, 2), (0, 0), False, True, None), ValueError, "grad_output"),
    ("c-avg-input-shape", lambda: _C.avg_pool2d_backward(A(1, 1, 4, 4), (1, 1, -8, 8), (2, 2), (2, 2), (0, 0), False, True, None), ValueError, "input_shape"),
    ("c-adaptive-size-zero", lambda: _C.adaptive_avg_pool2d_forward(A(1, 1, 8, 8), (0, 2)), ValueError, "output_size"),
    ("c-adaptive-input-2d", lambda: _C.adaptive_avg_pool2d_forward(A(8, 8), (2, 2)), ValueError, "4-D"),
    ("c-adaptive-grad-shape", lambda: _C.adaptive_avg_pool2d_backward(A(2, 1, 3, 3), (1, 1, 8, 8)), ValueError, "grad_output"),
    ("c-adaptive-grad-empty", lambda: _C.adaptive_avg_pool2d_backward(A(1, 1, 0, 3), (1, 1, 8, 8)), ValueError, "output_size"),
    ("c-adaptive-input-shape", lambda: _C.adaptive_avg_pool2d_backward(A(1, 1, 2, 2), (1, 1, 0, 8)), ValueError, "input_shape"),
]


@pytest.mark.parametrize("name, call, expected, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(isolated, name, call, expected, pattern):
    outcome = isolated(call)
    assert outcome is not None, f"{name}: no exception was raised"
    kind, message, trace = outcome
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert kind in {e.__name__ for e in expected}, f"{name}: got {kind}: {message}\n{trace}"
    assert re.search(pattern, message, re.S), f"{name}: message {message!r} does not match {pattern!r}"


def test_torch_refuses_what_we_refuse():
    """The pooling and conv1d cases above are errors in PyTorch too (RuntimeError/ValueError
    there; fastdl raises ValueError/TypeError naming the argument). Adaptive output size 0
    is the exception: PyTorch returns an empty tensor, fastdl refuses empty outputs."""
    torch = pytest.importorskip("torch")
    x = torch.ones(2, 3, 8, 8)
    for call in [lambda: torch.nn.functional.avg_pool2d(x, 0),
                 lambda: torch.nn.functional.avg_pool2d(x, 2, padding=2),
                 lambda: torch.nn.functional.avg_pool2d(x, 2, divisor_override=0),
                 lambda: torch.nn.functional.avg_pool2d(torch.ones(1, 1, 2, 2), 3),
                 lambda: torch.nn.functional.adaptive_avg_pool2d(x, -1),
                 lambda: torch.nn.functional.conv1d(torch.ones(2, 2, 10), torch.ones(4, 3, 3)),
                 lambda: torch.nn.functional.conv1d(torch.ones(2, 3, 10), torch.ones(4, 3, 3), padding="same", stride=2)]:
        with pytest.raises((RuntimeError, ValueError)):
            call()
