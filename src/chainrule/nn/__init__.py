"""Neural-network building blocks: ``Module``, layers, activations, losses (``chainrule.nn``)."""

from . import functional, init, utils
from .containers import ModuleDict, ModuleList, ParameterList, Sequential
from .layers.activation import LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .layers.dropout import Dropout
from .layers.linear import Bilinear, Flatten, Identity, Linear, Unflatten
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import Buffer, Module, Parameter
