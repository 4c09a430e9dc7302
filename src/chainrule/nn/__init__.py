"""Neural-network building blocks: ``Module``, layers, activations, losses (``chainrule.nn``)."""

from . import functional, init, utils
from .containers import ModuleDict, ModuleList, ParameterList, Sequential
from .layers.activation import (
    ELU,
    GELU,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Sign,
    SiLU,
    Softmax,
    Softplus,
    Step,
    Tanh,
)
from .layers.attention import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .layers.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .layers.dropout import Dropout
from .layers.embedding import Embedding
from .layers.linear import Bilinear, Flatten, Identity, Linear, Unflatten
from .layers.normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .layers.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
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
