"""fastdl.optim: fused C++ optimizer steps with torch.optim's names and semantics."""
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop"]
from . import lr_scheduler  # noqa: E402

__all__.append("lr_scheduler")
