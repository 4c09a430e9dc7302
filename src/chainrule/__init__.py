"""chainrule: neural networks trained by backpropagation, on NumPy.

import chainrule as cr
x = cr.randn(3, requires_grad=True)
(x * x).sum().backward()
x.grad  # 2 * x
"""

from __future__ import annotations

import builtins  # noqa: F401  (for annotations below, where bool/int are shadowed)

from . import (  # noqa: E402
    amp,
    autograd,  # noqa: E402  (after Tensor: the engine imports it)
    cuda,
    data,
    dtypes,
    func,
    nn,
    onnx,
    ops,  # noqa: E402,F401  (attaches the Tensor methods)
    optim,
    train,
    viz,
)
from .amp import autocast
from .autograd import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .creation import (
    arange,
    as_tensor,
    bernoulli,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    multinomial,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import (
    bfloat16,
    bool_,
    double,
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    uint8,
)
from .io import load, save
from .ops.elementwise import (
    add,
    addcdiv,
    addcmul,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    clone,
    div,
    divide,
    eq,
    floor_divide,
    ge,
    greater,
    greater_equal,
    gt,
    isfinite,
    isinf,
    isnan,
    le,
    lerp,
    less,
    less_equal,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    maximum,
    minimum,
    mul,
    multiply,
    ne,
    not_equal,
    pow,
    remainder,
    sub,
    subtract,
    true_divide,
    where,
)
from .ops.indexing import (
    gather,
    index_select,
    masked_fill,
    masked_select,
    scatter,
    scatter_add,
    take_along_dim,
)
from .ops.linalg import addmm, bmm, dot, einsum, ger, inner, matmul, mm, mv, outer
from .ops.movement import (
    broadcast_tensors,
    broadcast_to,
    cat,
    chunk,
    concat,
    concatenate,
    flatten,
    flip,
    fliplr,
    flipud,
    hstack,
    moveaxis,
    movedim,
    pad,
    permute,
    repeat_interleave,
    reshape,
    roll,
    split,
    squeeze,
    stack,
    swapaxes,
    swapdims,
    t,
    tensor_split,
    tile,
    transpose,
    tril,
    triu,
    unbind,
    unflatten,
    unsqueeze,
    vstack,
)
from .ops.nn import log_softmax, softmax
from .ops.reduce import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    count_nonzero,
    cumsum,
    logsumexp,
    max,
    mean,
    min,
    nonzero,
    norm,
    prod,
    std,
    std_mean,
    sum,
    var,
    var_mean,
)
from .ops.unary import (
    abs,
    ceil,
    clamp,
    clip,
    cos,
    exp,
    expm1,
    floor,
    log,
    log1p,
    neg,
    negative,
    reciprocal,
    relu,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    tan,
    tanh,
    trunc,
)
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .tensor import Tensor, device

float = float32  # noqa: A001 - PyTorch's aliases
int = int32  # noqa: A001
bool = bool_  # noqa: A001

__version__ = "0.1.0"


def set_float32_matmul_precision(precision: str) -> None:
    """'highest' (plain float32, the default) or 'high'/'medium' (TF32 on a GPU), as in
    PyTorch. The CPU always computes in float32."""
    if precision not in ("highest", "high", "medium"):
        raise ValueError(f"precision must be 'highest', 'high' or 'medium', not {precision!r}")
    _matmul_precision[0] = precision
    if cuda.is_available():
        cuda.set_tf32(precision != "highest")


def get_float32_matmul_precision() -> str:
    return _matmul_precision[0]


_matmul_precision = ["highest"]


def is_tensor(obj: object) -> builtins.bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> builtins.int:  # noqa: A002
    return input.numel()
