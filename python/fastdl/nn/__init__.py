"""fastdl.nn: modules, parameters, initialization and functional ops, as torch.nn."""
from . import functional, init
from .layers import Conv2d, Flatten, Identity, Linear, MaxPool2d, ReLU, Sequential
from .loss import CrossEntropyLoss
from .module import Module
from .parameter import Parameter

# (section: pooling)

# (section: normalization)

# (section: losses)
from .loss import (BCELoss, BCEWithLogitsLoss, KLDivLoss, L1Loss, LogSoftmax, MSELoss, NLLLoss,
                   Softmax)

__all__ = ["Module", "Parameter", "Sequential", "Identity", "Linear", "Conv2d", "MaxPool2d",
           "ReLU", "Flatten", "CrossEntropyLoss", "functional", "init"]
