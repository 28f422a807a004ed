"""fastdl.nn: modules, parameters, initialization and functional ops, as torch.nn."""
from . import functional, init
from .layers import Conv2d, Flatten, Identity, Linear, MaxPool2d, ReLU, Sequential
from .loss import CrossEntropyLoss
from .module import Module
from .parameter import Parameter

# (section: pooling)
from .layers import AdaptiveAvgPool2d, AvgPool2d, Conv1d  # noqa: E402

# (section: normalization)
from .layers import BatchNorm1d, BatchNorm2d, Dropout, LeakyReLU, Sigmoid, Tanh  # noqa: E402

# __all__ is assigned below the sections, so `__all__ += ...` cannot run here; the
# merge should append this list to it.
_normalization = ["BatchNorm1d", "BatchNorm2d", "Dropout", "LeakyReLU", "Sigmoid", "Tanh"]

# (section: losses)
from .loss import (BCELoss, BCEWithLogitsLoss, KLDivLoss, L1Loss, LogSoftmax, MSELoss, NLLLoss,
                   Softmax)

__all__ = ["Module", "Parameter", "Sequential", "Identity", "Linear", "Conv2d", "MaxPool2d",
           "ReLU", "Flatten", "CrossEntropyLoss", "functional", "init"]
