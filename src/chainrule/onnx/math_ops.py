"""Converters of the element-wise ops, products, softmax and reductions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .. import dtypes
from ..ops import activation as A
from ..ops import elementwise as E
from ..ops import linalg as LA
from ..ops import linear as LI
from ..ops import nn as N
from ..ops import reduce as R
from ..ops import unary as U
from .tracer import _CONVERTERS, _bcast, _conv, _operand_dtype, _same, _Tracer, _Value

# ------------------------------------------------------------------ element-wise

_UNARY = {
    U.Neg: "Neg", U.Exp: "Exp", U.Log: "Log", U.Sqrt: "Sqrt", U.Sin: "Sin", U.Cos: "Cos",
    U.Tan: "Tan", U.Tanh: "Tanh", U.Sigmoid: "Sigmoid", U.Relu: "Relu", U.Abs: "Abs",
    U.Sign: "Sign", U.Floor: "Floor", U.Ceil: "Ceil", U.Reciprocal: "Reciprocal",
    E.Clone: "Identity", A.Erf: "Erf", A.SignSurrogate: "Sign",
}  # fmt: skip


def _make_unary(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(t.emit(onnx_op, [x.name]), x)

    return conv


for _op, _name in _UNARY.items():
    _CONVERTERS[_op] = _make_unary(_name)


def _unary_fn(fn: Callable) -> Callable:
    """A converter for a one-input op written as ``fn(t, x_value, kw) -> name``."""

    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(fn(t, x, kw), x)

    return conv


def _c(t: _Tracer, x: _Value, value: float) -> str:
    return t.scalar(value, x.dtype)


_CONVERTERS[U.Log1p] = _unary_fn(
    lambda t, x, kw: t.emit("Log", [t.emit("Add", [x.name, _c(t, x, 1)])])
)
_CONVERTERS[U.Expm1] = _unary_fn(
    lambda t, x, kw: t.emit("Sub", [t.emit("Exp", [x.name]), _c(t, x, 1)])
)
_CONVERTERS[U.Rsqrt] = _unary_fn(lambda t, x, kw: t.emit("Reciprocal", [t.emit("Sqrt", [x.name])]))
_CONVERTERS[U.Square] = _unary_fn(lambda t, x, kw: t.emit("Mul", [x.name, x.name]))
_CONVERTERS[U.Trunc] = _unary_fn(
    lambda t, x, kw: t.emit(
        "Where",
        [
            t.emit("Less", [x.name, _c(t, x, 0)]),
            t.emit("Ceil", [x.name]),
            t.emit("Floor", [x.name]),
        ],
    )
)
_CONVERTERS[A.LeakyRelu] = _unary_fn(
    lambda t, x, kw: t.emit("LeakyRelu", [x.name], alpha=float(kw["negative_slope"]))
)
_CONVERTERS[A.Elu] = _unary_fn(lambda t, x, kw: t.emit("Elu", [x.name], alpha=float(kw["alpha"])))
_CONVERTERS[A.Silu] = _unary_fn(
    lambda t, x, kw: t.emit("Mul", [x.name, t.emit("Sigmoid", [x.name])])
)
_CONVERTERS[A.Step] = _unary_fn(
    lambda t, x, kw: t.cast(t.emit("Greater", [x.name, _c(t, x, 0)]), x.dtype)
)
_CONVERTERS[A.Hardtanh] = _unary_fn(
    lambda t, x, kw: t.emit("Clip", [x.name, _c(t, x, kw["min_val"]), _c(t, x, kw["max_val"])])
)


@_conv(U.Round)
def _round(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d = kw.get("decimals", 0) or 0
    if not d:
        return _same(t.emit("Round", [x.name]), x)
    s = _c(t, x, 10.0**d)
    return _same(t.emit("Div", [t.emit("Round", [t.emit("Mul", [x.name, s])]), s]), x)


@_conv(A.Gelu)
def _gelu(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    if kw.get("approximate") == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = t.emit("Mul", [t.emit("Mul", [x.name, x.name]), x.name])
        inner = t.emit("Add", [x.name, t.emit("Mul", [x3, _c(t, x, A._GELU_KAPPA)])])
        th = t.emit("Tanh", [t.emit("Mul", [inner, _c(t, x, A._GELU_BETA)])])
        y = t.emit(
            "Mul", [t.emit("Mul", [x.name, _c(t, x, 0.5)]), t.emit("Add", [th, _c(t, x, 1)])]
        )
    else:  # x * 0.5 (1 + erf(x / sqrt 2))
        erf = t.emit("Erf", [t.emit("Mul", [x.name, _c(t, x, A._SQRT1_2)])])
        cdf = t.emit("Mul", [t.emit("Add", [erf, _c(t, x, 1)]), _c(t, x, 0.5)])
        y = t.emit("Mul", [x.name, cdf])
    return _same(y, x)


@_conv(A.Softplus)
def _softplus(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    beta, thr = float(kw["beta"]), float(kw["threshold"])
    xb = x.name if beta == 1 else t.emit("Mul", [x.name, _c(t, x, beta)])
    soft = t.emit("Softplus", [xb])
    if beta != 1:
        soft = t.emit("Div", [soft, _c(t, x, beta)])
    y = t.emit("Where", [t.emit("Greater", [xb, _c(t, x, thr)]), x.name, soft])
    return _same(y, x)


@_conv(U.Clamp)
def _clamp(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    lo, hi = kw.get("min"), kw.get("max")
    ins = [x.name, _c(t, x, lo) if lo is not None else "", _c(t, x, hi) if hi is not None else ""]
    while ins[-1] == "":
        ins.pop()
    return _same(t.emit("Clip", ins), x)


@_conv(E.Cast, E.NonDiffCast)
def _cast(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    return _same(t.cast(x.name, kw["dtype"]), x)


_BINARY = {E.Add: "Add", E.Sub: "Sub", E.Mul: "Mul", E.Div: "Div", E.Pow: "Pow",
           E.Maximum: "Max", E.Minimum: "Min"}  # fmt: skip


def _pair(t: _Tracer, args: tuple, out_ndim: int) -> tuple:
    dt = _operand_dtype(args, np.float32)
    return tuple(t.align([t.v(args[0], dt), t.v(args[1], dt)], out_ndim))


def _make_binary(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        a, b = _pair(t, args, outs[0].ndim)
        return [(t.emit(onnx_op, [a.name, b.name]), *_bcast([a, b], outs[0].ndim))]

    return conv


for _op, _name in _BINARY.items():
    _CONVERTERS[_op] = _make_binary(_name)


@_conv(E.Remainder)
def _remainder(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = _pair(t, args, outs[0].ndim)
    if dtypes.is_floating(a.dtype):  # Python's a % b (sign of b): a - floor(a / b) * b
        fl = t.emit("Floor", [t.emit("Div", [a.name, b.name])])
        y = t.emit("Sub", [a.name, t.emit("Mul", [fl, b.name])])
    else:
        y = t.emit("Mod", [a.name, b.name], fmod=0)
    return [(y, *_bcast([a, b], outs[0].ndim))]


@_conv(E.FloorDivide)
def _floor_divide(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = _pair(t, args, outs[0].ndim)
    if dtypes.is_floating(a.dtype):
        y = t.emit("Floor", [t.emit("Div", [a.name, b.name])])
    else:  # exact: (a - a mod b) / b, with Python's mod
        y = t.emit(
            "Div", [t.emit("Sub", [a.name, t.emit("Mod", [a.name, b.name], fmod=0)]), b.name]
        )
    return [(y, *_bcast([a, b], outs[0].ndim))]


_COMPARE = {np.equal: "Equal", np.less: "Less", np.less_equal: "LessOrEqual",
            np.greater: "Greater", np.greater_equal: "GreaterOrEqual"}  # fmt: skip
_LOGICAL = {np.logical_and: "And", np.logical_or: "Or", np.logical_xor: "Xor",
            np.bitwise_and: "And", np.bitwise_or: "Or", np.bitwise_xor: "Xor"}  # fmt: skip
_BITWISE = {np.bitwise_and: "BitwiseAnd", np.bitwise_or: "BitwiseOr", np.bitwise_xor: "BitwiseXor"}


@_conv(E.Compare)
def _compare(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    fn = kw["fn"]
    a, b = _pair(t, args, outs[0].ndim)
    ins = [a.name, b.name]
    if fn in _COMPARE:
        y = t.emit(_COMPARE[fn], ins)
    elif fn is np.not_equal:
        y = t.emit("Not", [t.emit("Equal", ins)])
    elif fn in _BITWISE and a.dtype.kind in "iu":
        if t.opset < 18:
            raise t.error(f"`{fn.__name__}` on integers needs opset 18 or later")
        y = t.emit(_BITWISE[fn], ins)
    elif fn in _LOGICAL:
        ins = [n if v.dtype == bool else t.cast(n, bool) for n, v in zip(ins, (a, b))]
        y = t.emit(_LOGICAL[fn], ins)
    else:
        raise t.error(f"comparison `{getattr(fn, '__name__', fn)}` has no ONNX converter")
    return [(y, *_bcast([a, b], outs[0].ndim))]


@_conv(E.Predicate)
def _predicate(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    fn = kw["fn"]
    x = t.v(args[0])
    if fn is np.isnan:
        y = t.emit("IsNaN", [x.name])
    elif fn is np.isinf:
        y = t.emit("IsInf", [x.name])
    elif fn is np.isfinite:
        y = t.emit("Not", [t.emit("Or", [t.emit("IsNaN", [x.name]), t.emit("IsInf", [x.name])])])
    elif fn is np.logical_not or (fn is np.invert and x.dtype == bool):
        y = t.emit("Not", [x.name if x.dtype == bool else t.cast(x.name, bool)])
    elif fn is np.invert and t.opset >= 18:
        y = t.emit("BitwiseNot", [x.name])
    else:
        raise t.error(f"`{getattr(fn, '__name__', fn)}` has no ONNX converter")
    return _same(y, x)


@_conv(E.Where)
def _where(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    dt = outs[0].data.dtype
    c, a, b = t.align([t.v(args[0]), t.v(args[1], dt), t.v(args[2], dt)], outs[0].ndim)
    cn = c.name if c.dtype == bool else t.cast(c.name, bool)
    return [(t.emit("Where", [cn, a.name, b.name]), *_bcast([c, a, b], outs[0].ndim))]


# ------------------------------------------------------------------ products, softmax


@_conv(LI.Linear)
def _linear(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    if x.bax is not None and x.bax == x.ndim - 1:
        raise t.error("linear over the batch dim")
    if x.ndim == 2:
        y = t.emit("Gemm", [x.name, w.name] + ([b.name] if b else []), transB=1)
    else:
        y = t.emit("MatMul", [x.name, t.transposed(w)])
        if b is not None:
            y = t.emit("Add", [y, b.name])
    return _same(y, x)


def _matmul_bax(a: _Value, b: _Value, out_ndim: int) -> tuple:
    na, nb = a.ndim, b.ndim
    if a.bax is not None:
        if na == 1 or a.bax == na - 1:
            return None, 1  # contracted away
        if a.bax == na - 2:
            return (out_ndim - 2 if nb >= 2 else out_ndim - 1), a.bf
        return a.bax + out_ndim - na + (1 if nb == 1 else 0), a.bf
    if b.bax is not None:
        if nb == 1 or b.bax == nb - 2:
            return None, 1
        if b.bax == nb - 1:
            return out_ndim - 1, b.bf
        return b.bax + out_ndim - nb + (1 if na == 1 else 0), b.bf
    return None, 1


@_conv(LA.Matmul)
def _matmul(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = t.v(args[0]), t.v(args[1])
    return [(t.emit("MatMul", [a.name, b.name]), *_matmul_bax(a, b, outs[0].ndim))]


@_conv(LA.Einsum)
def _einsum(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    vals = [t.v(a) for a in args]
    ins, out = kw["ins"], kw["out"]
    eq = ",".join(ins) + "->" + out
    bax, bf = None, 1
    for v, sub in zip(vals, ins):
        if v.bax is not None:
            c = sub[v.bax]
            bax, bf = (out.index(c), v.bf) if c in out else (None, 1)
            break
    return [(t.emit("Einsum", [v.name for v in vals], equation=eq), bax, bf)]


def _make_softmax(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(t.emit(onnx_op, [x.name], axis=int(kw["dim"])), x)

    return conv


_CONVERTERS[N.Softmax] = _make_softmax("Softmax")
_CONVERTERS[N.LogSoftmax] = _make_softmax("LogSoftmax")


# ------------------------------------------------------------------ reductions


def _reduced_bax(v: _Value, axes: Sequence[int], keepdim: bool) -> tuple:
    if v.bax is None or v.bax in axes:
        return None, 1
    if keepdim:
        return v.bax, v.bf
    return v.bax - sum(1 for a in axes if a < v.bax), v.bf


def _make_reduce(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        name = x.name
        dt = kw.get("dtype")
        if dt is not None and np.dtype(dt) != x.dtype:
            name = t.cast(name, dt)
        axes = R.reduce_dims(kw.get("dim"), x.ndim)
        keep = bool(kw.get("keepdim", False))
        if not axes:
            return _same(t.emit("Identity", [name]), x)
        return [(t.reduce(onnx_op, name, axes, keep), *_reduced_bax(x, axes, keep))]

    return conv


for _op, _name in (
    (R.Sum, "ReduceSum"),
    (R.Mean, "ReduceMean"),
    (R.Prod, "ReduceProd"),
    (R.Amax, "ReduceMax"),
    (R.Amin, "ReduceMin"),
    (R.LogSumExp, "ReduceLogSumExp"),
):
    _CONVERTERS[_op] = _make_reduce(_name)


@_conv(R.MaxDim)
def _max_dim(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    axes = R.norm_dims(kw["dim"], x.ndim)
    if not axes:
        return _same(t.emit("Identity", [x.name]), x)
    keep = bool(kw["keepdim"])
    op = "ReduceMax" if kw["largest"] else "ReduceMin"
    return [(t.reduce(op, x.name, axes, keep), *_reduced_bax(x, axes, keep))]


@_conv(R.Norm)
def _norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    p = float(kw["p"])
    axes = R.reduce_dims(kw.get("dim"), x.ndim)
    keep = bool(kw.get("keepdim", False))
    if not axes:
        axes = ()
    ab = t.emit("Abs", [x.name])
    if p == 2:
        y = t.reduce("ReduceL2", x.name, axes, keep)
    elif p == 1:
        y = t.reduce("ReduceL1", x.name, axes, keep)
    elif p == math.inf:
        y = t.reduce("ReduceMax", ab, axes, keep)
    elif p == -math.inf:
        y = t.reduce("ReduceMin", ab, axes, keep)
    elif p == 0:
        nz = t.cast(t.emit("Not", [t.emit("Equal", [x.name, _c(t, x, 0)])]), x.dtype)
        y = t.reduce("ReduceSum", nz, axes, keep)
    else:
        s = t.reduce("ReduceSum", t.emit("Pow", [ab, _c(t, x, p)]), axes, keep)
        y = t.emit("Pow", [s, _c(t, x, 1.0 / p)])
    return [(y, *_reduced_bax(x, axes, keep))]


@_conv(R.Cumsum)
def _cumsum(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    if x.ndim == 0:
        return _same(t.emit("Identity", [x.name]), x)
    (d,) = R.norm_dims(kw["dim"], x.ndim)
    return _same(t.emit("CumSum", [x.name, t.i64(d)]), x)


def _make_arg(op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        dim, keep = kw.get("dim"), bool(kw.get("keepdim", False))
        if x.ndim == 0:
            raise t.error(f"{op.lower()} of a 0-d tensor")
        if dim is None:  # over the flattened tensor
            y = t.emit(op, [t.emit("Reshape", [x.name, t.i64([-1])])], axis=0, keepdims=0)
            if keep:
                y = t.emit("Reshape", [y, t.i64([1] * x.ndim)])
            return [(y, None, 1)]
        (d,) = R.norm_dims(dim, x.ndim)
        return [(t.emit(op, [x.name], axis=d, keepdims=int(keep)), *_reduced_bax(x, (d,), keep))]

    return conv


def _make_all_any(reduce_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        axes = R.norm_dims(kw.get("dim"), x.ndim)
        keep = bool(kw.get("keepdim", False))
        xi = t.cast(x.name if x.dtype == bool else t.cast(x.name, bool), np.int32)
        if not axes:
            return _same(t.cast(xi, bool), x)
        y = t.reduce(reduce_op, xi, axes, keep)
        return [(t.cast(y, bool), *_reduced_bax(x, axes, keep))]

    return conv


_CONVERTERS[R.ArgMax] = _make_arg("ArgMax")
_CONVERTERS[R.ArgMin] = _make_arg("ArgMin")
_CONVERTERS[R.AllOf] = _make_all_any("ReduceMin")
_CONVERTERS[R.AnyOf] = _make_all_any("ReduceMax")
