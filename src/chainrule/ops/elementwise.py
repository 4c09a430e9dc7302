"""Binary element-wise ops, comparisons, ``where`` and casts: each primitive's forward and
backward side by side.

A backward rule gets the output gradient ``g`` and the namespace ``m`` and returns one gradient per
input. Gradients of broadcast inputs are summed back to the input's shape by the engine.
Subgradients at kinks follow PyTorch and are stated where they occur. Unary maths (exp, log,
sqrt, tanh, sigmoid, relu, abs, floor, clamp, ...) is in ``unary.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .unary import ZeroGrad, _floating, trunc
from .util import as_float, promote_pair

# ----------------------------------------------------------------------------- casts


class Cast(Op):
    """A change of floating dtype; the gradient is cast back."""

    def forward(ctx, x, dtype):
        ctx.src = x.dtype
        return x.astype(dtype)

    def backward(ctx, g, m):
        return m.cast(g, ctx.src)


class NonDiffCast(Cast):
    differentiable = False
    name = "cast to an integer or bool dtype"


# ----------------------------------------------------------------------------- binary


class Add(Op):
    def forward(ctx, a, b):
        return a + b

    def backward(ctx, g, m):
        return g, g


class Sub(Op):
    def forward(ctx, a, b):
        return a - b

    def backward(ctx, g, m):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Op):
    save_inputs = True

    def keep_inputs(needs):  # d/da uses b and d/db uses a: x * const keeps only const
        return (needs[1], needs[0])

    def forward(ctx, a, b):
        return a * b

    def backward(ctx, g, m):
        a, b = ctx.inputs
        need = ctx.needs_input_grad
        return (g * b if need[0] else None), (g * a if need[1] else None)


class Div(Op):
    save_inputs = True

    def keep_inputs(needs):  # d/da uses b; d/db uses a and b
        return (needs[1], needs[0] or needs[1])

    def forward(ctx, a, b):
        return a / b

    def backward(ctx, g, m):
        a, b = ctx.inputs
        need = ctx.needs_input_grad
        ga = g / b if need[0] else None
        gb = -g * a / (b * b) if need[1] else None
        return ga, gb


class Pow(Op):
    """a ** b. d/da = b a^(b-1) (0 when b == 0); d/db = a^b log a, taken as 0 where a == 0, b >= 0."""

    save_inputs = True
    save_output = True

    def forward(ctx, a, b):
        return np.power(a, b)

    def backward(ctx, g, m):
        a, b = ctx.inputs
        need = ctx.needs_input_grad
        ga = gb = None
        if need[0]:
            if isinstance(b, (int, float)):
                ga = g * 0 if b == 0 else g * (b * a ** (b - 1))
            else:
                ga = g * m.where(b == 0, 0.0, b * a ** (b - 1))
        if need[1]:
            if isinstance(a, (int, float)):
                gb = g * (ctx.out * float(np.log(a))) if a != 0 else g * 0
            else:
                gb = g * m.where((a == 0) & (b >= 0), 0.0, ctx.out * m.log(a))
        return ga, gb


class Maximum(Op):
    """Element-wise max; at ties each input gets half the gradient (as PyTorch)."""

    save_inputs = True

    def forward(ctx, a, b):
        return np.maximum(a, b)

    def backward(ctx, g, m):
        a, b = ctx.inputs
        w = m.where(a == b, 0.5, (a > b) * 1.0)
        w = m.cast(w, g.dtype)
        return g * w, g * (1 - w)


class Minimum(Op):
    save_inputs = True

    def forward(ctx, a, b):
        return np.minimum(a, b)

    def backward(ctx, g, m):
        a, b = ctx.inputs
        w = m.where(a == b, 0.5, (a < b) * 1.0)
        w = m.cast(w, g.dtype)
        return g * w, g * (1 - w)


class Where(Op):
    save_inputs = True

    def forward(ctx, cond, a, b):
        return np.where(cond, a, b)

    def backward(ctx, g, m):
        cond = ctx.inputs[0]
        need = ctx.needs_input_grad
        zero = m.zeros_like(g)
        return (
            None,
            m.where(cond, g, zero) if need[1] else None,
            m.where(cond, zero, g) if need[2] else None,
        )


class Remainder(Op):
    """a mod b with the sign of b (Python's %). d/da = 1, d/db = -floor(a / b)."""

    save_inputs = True

    def forward(ctx, a, b):
        return np.mod(a, b)

    def backward(ctx, g, m):
        a, b = ctx.inputs
        gb = -g * m.floor(a / b) if ctx.needs_input_grad[1] else None
        return g, gb


class FloorDivide(ZeroGrad):
    def forward(ctx, a, b):
        return np.floor_divide(a, b)

    def backward(ctx, g, m):
        return g * 0, g * 0


class Compare(Op):
    """Comparisons and logical ops: boolean results, no gradient."""

    differentiable = False

    def forward(ctx, a, b, fn):
        return fn(a, b)


class Predicate(Op):
    differentiable = False

    def forward(ctx, x, fn):
        return fn(x)


# ----------------------------------------------------------------------------- public functions


def _binary(op: type, a: Any, b: Any) -> Tensor:
    """Apply a binary op with PyTorch's type promotion (fast path: same dtype, or a float scalar)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.data.dtype is not b.data.dtype:
            a, b = promote_pair(a, b)
    elif type(b) is float and isinstance(a, Tensor) and a.data.dtype.kind == "f":
        pass
    elif type(a) is float and isinstance(b, Tensor) and b.data.dtype.kind == "f":
        pass  # (bfloat16, kind 'V', takes promote_pair's path, which keeps it bfloat16)
    else:
        a, b = promote_pair(a, b)
    return apply(op, a, b)


def add(input: Any, other: Any, *, alpha: float = 1) -> Tensor:  # noqa: A002
    return _binary(Add, input, other if alpha == 1 else other * alpha)


def sub(input: Any, other: Any, *, alpha: float = 1) -> Tensor:  # noqa: A002
    return _binary(Sub, input, other if alpha == 1 else other * alpha)


subtract = sub


def mul(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _binary(Mul, input, other)


multiply = mul


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:  # noqa: A002
    """True division (integers give the default float dtype); 'floor'/'trunc' rounding modes."""
    if rounding_mode == "floor":
        return floor_divide(input, other)
    q = _binary(Div, *_float_pair(input, other))
    if rounding_mode == "trunc":
        return trunc(q)
    if rounding_mode is not None:
        raise ValueError(
            f"div: rounding_mode must be None, 'floor' or 'trunc', not {rounding_mode!r}"
        )
    return q


divide = true_divide = div


def _float_pair(a: Any, b: Any) -> tuple:
    fa = _floating(a.data.dtype) if isinstance(a, Tensor) else isinstance(a, float)
    if fa:
        return a, b
    fb = _floating(b.data.dtype) if isinstance(b, Tensor) else isinstance(b, float)
    if not fb:
        a = as_float(a) if isinstance(a, Tensor) else float(a)
    return a, b


def pow(input: Any, exponent: Any) -> Tensor:  # noqa: A001, A002
    return _binary(Pow, input, exponent)


def maximum(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    return _binary(Maximum, input, other)


def minimum(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    return _binary(Minimum, input, other)


def remainder(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _binary(Remainder, input, other)


fmod_ = remainder


def floor_divide(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _binary(FloorDivide, input, other)


def where(condition: Any, input: Any = None, other: Any = None) -> Any:  # noqa: A002
    """``input`` where ``condition`` holds, else ``other`` (all three broadcast)."""
    if input is None and other is None:
        from .reduce import nonzero  # noqa: PLC0415

        return nonzero(condition, as_tuple=True)
    if isinstance(condition, Tensor):
        c = condition.data
    else:  # (a backward rule's condition may be a device array already)
        c = condition if backend.is_device_array(condition) else np.asarray(condition)
    if c.dtype != np.bool_:
        c = c.astype(bool)
    a, b = promote_pair(input, other)
    if type(c) is np.ndarray:  # a host condition next to a device operand moves to it
        dev = _device_data(a)
        if dev is None:
            dev = _device_data(b)
        if dev is not None:
            c = _condition_to(c, condition, dev)
    return apply(Where, c, a, b)


def _device_data(x: Any) -> Any:
    """``x``'s array when ``x`` is a Tensor on a device (None otherwise)."""
    if isinstance(x, Tensor) and type(x.data) is not np.ndarray:
        return x.data
    return None


def _condition_to(c: np.ndarray, condition: Any, like: Any) -> Any:
    """``where``'s host condition on ``like``'s device: arrays and lists move; a CPU tensor must
    be 0-d to (PyTorch's rule for mixing devices)."""
    if isinstance(condition, Tensor) and c.ndim:
        raise backend.same_device_error("where", [c, like])
    return backend.to_device(c, backend.device_of(like))


def _compare(fn: Any) -> Any:
    def op(input: Any, other: Any) -> Tensor:  # noqa: A002
        if (
            isinstance(input, Tensor)
            and isinstance(other, Tensor)
            and input.data.dtype is not other.data.dtype
        ):
            input, other = promote_pair(input, other)
        elif not isinstance(input, Tensor):
            input, other = promote_pair(input, other)
        return apply(Compare, input, other, fn=fn)

    return op


eq = _compare(np.equal)
ne = _compare(np.not_equal)
lt = _compare(np.less)
le = _compare(np.less_equal)
gt = _compare(np.greater)
ge = _compare(np.greater_equal)
logical_and = _compare(np.logical_and)
logical_or = _compare(np.logical_or)
logical_xor = _compare(np.logical_xor)
bitwise_and = _compare(np.bitwise_and)
bitwise_or = _compare(np.bitwise_or)
bitwise_xor = _compare(np.bitwise_xor)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def logical_not(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Predicate, input, fn=np.logical_not)


def bitwise_not(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Predicate, input, fn=np.invert)


def isnan(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Predicate, input, fn=np.isnan)


def isinf(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Predicate, input, fn=np.isinf)


def isfinite(input: Tensor) -> Tensor:  # noqa: A002
    return apply(Predicate, input, fn=np.isfinite)


def cast(input: Tensor, dtype: Any) -> Tensor:  # noqa: A002
    """``input`` in another dtype; differentiable between floating dtypes."""
    d = dtypes.np_dtype(dtype)
    if input.data.dtype == d:
        return input
    op = Cast if _floating(d) and _floating(input.data.dtype) else NonDiffCast
    return apply(op, input, dtype=d)


class Clone(Op):
    def forward(ctx, x):
        return x.copy()

    def backward(ctx, g, m):
        return g


def clone(input: Tensor) -> Tensor:  # noqa: A002
    """A copy with its own memory; gradients flow through to ``input``."""
    return apply(Clone, input)


def lerp(input: Tensor, end: Tensor, weight: Any) -> Tensor:  # noqa: A002
    return input + weight * (end - input)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: float = 1) -> Tensor:  # noqa: A002
    return input + value * tensor1 * tensor2


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: float = 1) -> Tensor:  # noqa: A002
    return input + value * tensor1 / tensor2
