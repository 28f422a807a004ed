"""fastdl.nn: modules, parameters, initialization and functional ops, as torch.nn."""
from . import functional, init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,
                     Dropout, Flatten, Identity, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential,
                     Sigmoid, Tanh)
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, L1Loss, LogSoftmax,
                   MSELoss, NLLLoss, Softmax)
from .module import Module
from .parameter import Parameter

__all__ = ["Module", "Parameter", "Sequential", "Identity", "Linear", "Conv1d", "Conv2d",
           "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d",
           "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout", "Flatten",
           "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
           "KLDivLoss", "LogSoftmax", "Softmax", "functional", "init"]
