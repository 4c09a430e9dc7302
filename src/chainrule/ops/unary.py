"""Unary maths ops: each primitive's forward and backward side by side.

exp/log/log1p/expm1, sqrt/rsqrt, sin/cos/tan, the activations tanh/sigmoid/relu (fused kernels
for the backwards, and sigmoid's forward, on the GPU), abs, the piecewise-constant sign/floor/ceil/round/trunc (gradient
0), reciprocal, square and clamp. A backward rule gets the output gradient ``g`` and the namespace
``m`` and returns the input's gradient. Subgradients at kinks follow PyTorch and are stated where
they occur. Binary ops, comparisons, ``where`` and casts are in ``elementwise.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes, kernels
from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .util import as_float

# ----------------------------------------------------------------------------- ops


class Neg(Op):
    def forward(ctx, x):
        return np.negative(x)

    def backward(ctx, g, m):
        return -g


class Exp(Op):
    save_output = True

    def forward(ctx, x):
        return np.exp(x)

    def backward(ctx, g, m):
        return g * ctx.out


class Log(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.log(x)

    def backward(ctx, g, m):
        return g / ctx.inputs[0]


class Log1p(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.log1p(x)

    def backward(ctx, g, m):
        return g / (ctx.inputs[0] + 1)


class Expm1(Op):
    save_output = True

    def forward(ctx, x):
        return np.expm1(x)

    def backward(ctx, g, m):
        return g * (ctx.out + 1)


class Sqrt(Op):
    save_output = True

    def forward(ctx, x):
        return np.sqrt(x)

    def backward(ctx, g, m):  # infinite at 0, as in PyTorch
        return g / (2 * ctx.out)


class Rsqrt(Op):
    save_output = True

    def forward(ctx, x):
        return np.reciprocal(np.sqrt(x))

    def backward(ctx, g, m):
        out = ctx.out
        return g * (-0.5 * out * out * out)


class Sin(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.sin(x)

    def backward(ctx, g, m):
        return g * m.cos(ctx.inputs[0])


class Cos(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.cos(x)

    def backward(ctx, g, m):
        return -g * m.sin(ctx.inputs[0])


class Tan(Op):
    save_output = True

    def forward(ctx, x):
        return np.tan(x)

    def backward(ctx, g, m):
        out = ctx.out
        return g * (1 + out * out)


def _fusable(g: Any, out: Any) -> bool:
    """Whether a fused activation backward takes (g, saved output): one shape and dtype
    (otherwise the rule's broadcasting and type promotion apply)."""
    return g.shape == out.shape and g.dtype == out.dtype


class Tanh(Op):
    save_output = True

    def forward(ctx, x):
        return np.tanh(x)

    def backward(ctx, g, m):
        out = ctx.out
        if type(out) is not np.ndarray and not m.graph and _fusable(g, out):
            return kernels.tanh_backward(g, out)  # one pass on the device
        return g * (1 - out * out)


# exp(-x) overflows below these; clamping there changes sigmoid by less than the smallest normal
_SIGMOID_CLAMP = {
    np.dtype(np.float16): 11.0,
    np.dtype(np.float32): 88.0,
    np.dtype(np.float64): 708.0,
}


class Sigmoid(Op):
    save_output = True

    def forward(ctx, x):
        if type(x) is not np.ndarray:
            return kernels.sigmoid_forward(x)  # one pass on the device (five NumPy calls here)
        e = np.negative(x)
        np.minimum(e, _SIGMOID_CLAMP.get(x.dtype, 88.0), out=e)
        np.exp(e, out=e)
        e += 1
        return np.reciprocal(e, out=e)

    def backward(ctx, g, m):
        out = ctx.out
        if type(out) is not np.ndarray and not m.graph and _fusable(g, out):
            return kernels.sigmoid_backward(g, out)  # one pass on the device
        return g * (out * (1 - out))


class Relu(Op):
    save_output = True

    def forward(ctx, x):
        return np.maximum(x, 0)

    def backward(ctx, g, m):  # relu'(0) = 0
        out = ctx.out
        if type(out) is not np.ndarray and not m.graph and _fusable(g, out):
            return kernels.relu_backward(g, out)  # one pass on the device
        return g * (out > 0)


class Abs(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.abs(x)

    def backward(ctx, g, m):  # abs'(0) = 0
        return g * m.sign(ctx.inputs[0])


class ZeroGrad(Op):
    """Ops that are piecewise constant (sign, floor, ceil, round, trunc): gradient 0, as PyTorch."""

    fn = None

    def backward(ctx, g, m):
        return g * 0


class Sign(ZeroGrad):
    def forward(ctx, x):
        return np.sign(x)


class Floor(ZeroGrad):
    def forward(ctx, x):
        return np.floor(x)


class Ceil(ZeroGrad):
    def forward(ctx, x):
        return np.ceil(x)


class Round(ZeroGrad):
    def forward(ctx, x, decimals=0):
        return np.round(x, decimals)  # half to even, as PyTorch


class Trunc(ZeroGrad):
    def forward(ctx, x):
        return np.trunc(x)


class Reciprocal(Op):
    save_output = True

    def forward(ctx, x):
        return np.reciprocal(x)

    def backward(ctx, g, m):
        out = ctx.out
        return -g * out * out


class Square(Op):
    save_inputs = True

    def forward(ctx, x):
        return np.square(x)

    def backward(ctx, g, m):
        return g * (2 * ctx.inputs[0])


class Clamp(Op):
    """clamp with scalar bounds; the gradient passes where min <= x <= max (bounds included)."""

    save_inputs = True

    def forward(ctx, x, min=None, max=None):  # noqa: A002
        ctx.lo, ctx.hi = min, max
        r = np.clip(x, min, max)
        return r if r.dtype == x.dtype else r.astype(x.dtype)  # (NumPy: bfloat16 -> float32)

    def backward(ctx, g, m):
        x = ctx.inputs[0]
        if ctx.lo is not None and ctx.hi is not None:
            return g * ((x >= ctx.lo) & (x <= ctx.hi))
        return g * ((x >= ctx.lo) if ctx.lo is not None else (x <= ctx.hi))


# ----------------------------------------------------------------------------- public functions


def _unary(op: type) -> Any:
    def fn(input: Tensor) -> Tensor:  # noqa: A002
        return apply(op, as_float(input))

    fn.__name__ = op.__name__.lower()
    fn.__doc__ = f"Element-wise ``{fn.__name__}``; the output has the input's shape."
    return fn


exp = _unary(Exp)
log = _unary(Log)
log1p = _unary(Log1p)
expm1 = _unary(Expm1)
sqrt = _unary(Sqrt)
rsqrt = _unary(Rsqrt)
sin = _unary(Sin)
cos = _unary(Cos)
tan = _unary(Tan)
tanh = _unary(Tanh)
sigmoid = _unary(Sigmoid)
reciprocal = _unary(Reciprocal)


def relu(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Relu, input)


def neg(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Neg, input)


negative = neg


def abs(input: Tensor) -> Tensor:  # noqa: A001, A002
    return apply(Abs, input)


def sign(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Sign, input)


def square(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Square, input)


def floor(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Floor, input)


def ceil(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Ceil, input)


def round(input: Tensor, decimals: int = 0) -> Tensor:  # noqa: A001, A002
    return apply(Round, input, decimals=decimals)


def trunc(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Trunc, input)


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to [min, max]. Tensor bounds broadcast and receive gradients where they bind."""
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        from .elementwise import where  # noqa: PLC0415 - elementwise imports this module

        out = input
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
    if _floating(input.data.dtype):
        pass
    elif isinstance(min, float) or isinstance(max, float):
        input = as_float(input)
    return apply(Clamp, input, min=min, max=max)


clip = clamp


def _floating(d: np.dtype) -> bool:
    """``dtypes.is_floating`` with the common case (kind 'f') answered without a call."""
    return d.kind == "f" or dtypes.is_floating(d)
