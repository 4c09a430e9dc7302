"""Reductions: sum, mean, prod, max/min, logsumexp, norm, cumsum, and the non-differentiable
argmax/argmin/all/any. ``dim`` may be an int, a tuple, or None (all dims); negative dims count
from the end; ``keepdim`` keeps reduced dims as size 1.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..tensor import Tensor, wrap
from .util import as_float


def norm_dims(dim: Any, ndim: int) -> tuple:
    """``dim`` as a sorted tuple of non-negative axes (all axes for None)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    if ndim == 0:
        for d in dim:
            if d not in (0, -1):
                raise IndexError(
                    f"Dimension out of range (expected to be in range of [-1, 0], but got {d})"
                )
        return ()
    out = []
    for d in dim:
        if not -ndim <= d < ndim:
            raise IndexError(
                f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {d})"
            )
        out.append(d % ndim)
    return tuple(sorted(set(out)))


def reduce_dims(dim: Any, ndim: int) -> tuple:
    """``norm_dims`` for sum/mean/prod/amax/var/std/norm/...: an empty ``dim`` (``()``, ``[]``)
    reduces every dim, as in PyTorch (squeeze/all/any keep taking it as no dims)."""
    if isinstance(dim, (tuple, list)) and len(dim) == 0:
        dim = None
    return norm_dims(dim, ndim)


def _kshape(shape: tuple, axes: tuple) -> tuple:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class _Reduction(Op):
    """Shared bookkeeping: remember the input shape and the keepdim shape of the output."""

    @staticmethod
    def setup(ctx: Any, x: np.ndarray, dim: Any, keepdim: bool) -> tuple:
        axes = reduce_dims(dim, x.ndim)
        ctx.shape = x.shape
        ctx.kshape = _kshape(x.shape, axes)
        ctx.axes = axes
        return axes

    @staticmethod
    def expand_grad(ctx: Any, g: Any, m: Any) -> Any:
        return m.expand(m.reshape(g, ctx.kshape), ctx.shape)


class Sum(_Reduction):
    def forward(ctx, x, dim=None, keepdim=False, dtype=None):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        return np.add.reduce(
            x, axis=axes, dtype=dtype, keepdims=keepdim
        )  # np.sum, minus its wrapper

    def backward(ctx, g, m):
        return _Reduction.expand_grad(ctx, g, m)


class Mean(_Reduction):
    def forward(ctx, x, dim=None, keepdim=False, dtype=None):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        n = 1
        for a in axes:
            n *= x.shape[a]
        ctx.n = n
        if n == 0:
            xp = backend.array_module(x)
            return xp.full(_out_shape(x.shape, axes, keepdim), np.nan, dtype=dtype or x.dtype)
        if dtype is None and x.dtype.itemsize >= 4:  # np.mean's arithmetic, without its wrapper
            return np.true_divide(np.add.reduce(x, axis=axes, keepdims=keepdim), n, dtype=x.dtype)
        return np.mean(
            x, axis=axes, keepdims=keepdim, dtype=dtype
        )  # float16 accumulates in float32

    def backward(ctx, g, m):
        return _Reduction.expand_grad(ctx, g / ctx.n, m)


def _out_shape(shape: tuple, axes: tuple, keepdim: bool) -> tuple:
    if keepdim:
        return _kshape(shape, axes)
    return tuple(s for i, s in enumerate(shape) if i not in axes)


class Prod(_Reduction):
    """Product. d/dx_i = product of the others (computed without dividing when x has zeros)."""

    save_inputs = True
    save_output = True

    def forward(ctx, x, dim=None, keepdim=False):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        return np.prod(x, axis=axes, keepdims=keepdim)

    def backward(ctx, g, m):
        x = ctx.inputs[0]
        gk = m.expand(m.reshape(g, ctx.kshape), ctx.shape)
        xa = x.data if isinstance(x, Tensor) else x
        if type(xa) is not np.ndarray and not m.graph:
            return gk * _prod_others(xa, ctx.axes)  # checking for zeros would be a host wait
        if np.all(xa != 0):
            return gk * m.expand(m.reshape(ctx.out, ctx.kshape), ctx.shape) / x
        # zeros present: the product of the others, by exclusive cumulative products on arrays,
        # by recorded ops (differentiable, O(n^2) per reduced slice) for a create_graph backward
        if m.graph:
            return gk * _prod_others_graph(x, ctx.axes)
        return gk * _prod_others(xa, ctx.axes)


def _prod_others(x: np.ndarray, axes: tuple) -> np.ndarray:
    if x.size == 0:
        return np.zeros_like(x)
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    xt = np.transpose(x, perm)
    lead = xt.shape[: len(keep)]
    flat = xt.reshape(lead + (-1,))
    ones = backend.array_module(x).ones(lead + (1,), x.dtype)
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], -1), -1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], -1), -1)[..., ::-1]
    others = (left * right).reshape(xt.shape)
    return np.transpose(others, tuple(int(i) for i in np.argsort(perm)))


def _prod_others_graph(x: Tensor, axes: tuple) -> Tensor:
    """``_prod_others`` as recorded ops: each slice's n values laid out n times with a 1 on the
    diagonal, then multiplied along the last dim."""
    from .elementwise import where  # noqa: PLC0415
    from .movement import expand, permute, reshape  # noqa: PLC0415

    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    xt = permute(x, tuple(perm))
    lead = tuple(xt.shape[: len(keep)])
    n = 1
    for s in xt.shape[len(keep) :]:
        n *= s
    rows = expand(reshape(xt, lead + (1, n)), lead + (n, n))
    eye = wrap(backend.array_module(x.data).eye(n, dtype=bool))
    others = apply(Prod, where(eye, 1.0, rows), dim=-1)
    return permute(reshape(others, tuple(xt.shape)), tuple(int(i) for i in np.argsort(perm)))


class Amax(_Reduction):
    """max over dims; the gradient is shared evenly between tied maxima (as PyTorch's amax)."""

    save_inputs = True
    save_output = True

    def forward(ctx, x, dim=None, keepdim=False):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        return np.amax(x, axis=axes, keepdims=keepdim)

    def backward(ctx, g, m):
        x = ctx.inputs[0]
        ok = m.reshape(ctx.out, ctx.kshape)
        mask = m.cast(x == ok, g.dtype)
        count = m.sum(mask, ctx.axes, True)
        return m.expand(m.reshape(g, ctx.kshape) / count, ctx.shape) * mask


class Amin(Amax):
    def forward(ctx, x, dim=None, keepdim=False):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        return np.amin(x, axis=axes, keepdims=keepdim)


class MaxDim(Op):
    """max/min along one dim, returning values; the gradient goes to the returned index."""

    def forward(ctx, x, dim, keepdim, largest):
        (d,) = norm_dims(dim, x.ndim) or (None,)
        if d is None:  # 0-d input
            ctx.shape, ctx.d, ctx.keepdim = x.shape, None, keepdim
            ctx.idx = backend.array_module(x).zeros((), np.int64)
            return x.copy()
        idx = (np.argmax if largest else np.argmin)(x, axis=d, keepdims=True)
        ctx.shape, ctx.d, ctx.keepdim, ctx.idx = x.shape, d, keepdim, idx
        vals = np.take_along_axis(x, idx, axis=d)
        return vals if keepdim else np.squeeze(vals, d)

    def backward(ctx, g, m):
        if ctx.d is None:
            return g
        if not ctx.keepdim:
            g = m.reshape(g, ctx.idx.shape)
        return m.scatter_add_new(ctx.shape, ctx.d, ctx.idx, g)


class LogSumExp(_Reduction):
    save_inputs = True
    save_output = True

    def forward(ctx, x, dim=None, keepdim=False):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        if x.size == 0:
            return np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdim))
        mx = np.amax(x, axis=axes, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0)
        s = np.sum(np.exp(x - mx), axis=axes, keepdims=True)
        out = np.log(s) + mx
        return out if keepdim else np.squeeze(out, axes)

    def backward(ctx, g, m):
        x = ctx.inputs[0]
        ok = m.reshape(ctx.out, ctx.kshape)
        return _Reduction.expand_grad(ctx, g, m) * m.exp(x - ok)


class Norm(_Reduction):
    """Vector p-norm over dims (p = 2 default; 1, inf, -inf, 0 and any other p>0).
    At a zero vector the 2-norm's subgradient is 0, as in PyTorch."""

    save_inputs = True
    save_output = True

    def forward(ctx, x, p=2.0, dim=None, keepdim=False):
        axes = _Reduction.setup(ctx, x, dim, keepdim)
        ctx.p = p
        if x.dtype.kind == "V":  # bfloat16: powers of a Python float would give float32
            return Norm._norm(x.astype(np.float32), p, axes, keepdim).astype(x.dtype)
        return Norm._norm(x, p, axes, keepdim)

    @staticmethod
    def _norm(x: Any, p: float, axes: Any, keepdim: bool) -> Any:
        a = np.abs(x)
        if p == 2:
            return np.sqrt(np.sum(x * x, axis=axes, keepdims=keepdim))
        if p == 1:
            return np.sum(a, axis=axes, keepdims=keepdim)
        if p == np.inf:
            return np.amax(a, axis=axes, keepdims=keepdim)
        if p == -np.inf:
            return np.amin(a, axis=axes, keepdims=keepdim)
        if p == 0:
            return np.sum(a != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
        return np.sum(a**p, axis=axes, keepdims=keepdim) ** (1.0 / p)

    def backward(ctx, g, m):
        x = ctx.inputs[0]
        p = ctx.p
        gk = _Reduction.expand_grad(ctx, g, m)
        ok = m.expand(m.reshape(ctx.out, ctx.kshape), ctx.shape)
        if p == 0:
            return gk * 0
        if p == 1:
            return gk * m.sign(x)
        safe = m.where(ok == 0, 1.0, ok)
        if p == 2:
            return gk * x / safe
        if p in (np.inf, -np.inf):
            mask = m.cast(m.abs(x) == ok, g.dtype)
            count = m.expand(m.sum(mask, ctx.axes, True), ctx.shape)
            return gk * m.sign(x) * mask / count
        ax = m.abs(x)
        if p < 1:  # |x|^(p-1) is infinite at x = 0, where PyTorch takes the gradient as 0
            ax = m.where(ax == 0, 1.0, ax)  # (sign(0) = 0 then zeroes those entries)
        return gk * m.sign(x) * ax ** (p - 1) / safe ** (p - 1)


class Cumsum(Op):
    def forward(ctx, x, dim):
        (d,) = norm_dims(dim, x.ndim) or (0,)
        ctx.d = d
        return np.cumsum(x, axis=d) if x.ndim else x.copy()

    def backward(ctx, g, m):
        if g.ndim == 0:
            return g
        return m.flip(m.cumsum(m.flip(g, (ctx.d,)), ctx.d), (ctx.d,))


class NonDiffReduce(Op):
    differentiable = False

    def forward(ctx, x, fn, dim=None, keepdim=False):
        return fn(x, dim, keepdim)


class ArgMax(NonDiffReduce):
    name = "argmax"


class ArgMin(NonDiffReduce):
    name = "argmin"


class AllOf(NonDiffReduce):
    name = "all"


class AnyOf(NonDiffReduce):
    name = "any"


# ----------------------------------------------------------------------------- public functions


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A001, A002
    """Sum over ``dim`` (all dims if None). Integer and bool inputs sum to int64."""
    d = dtypes.np_dtype(dtype)
    if d is None and input.data.dtype.kind in "biu":
        d = np.dtype(np.int64)
    return apply(Sum, input, dim=dim, keepdim=keepdim, dtype=d)


def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A002
    d = dtypes.np_dtype(dtype)
    if d is None and not dtypes.is_floating(input.data.dtype):
        raise RuntimeError(
            f"mean(): could not infer output dtype. Input dtype must be floating point, got "
            f"{input.dtype}; pass dtype= or convert with .float()"
        )
    return apply(Mean, input, dim=dim, keepdim=keepdim, dtype=d)


def prod(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    return apply(Prod, input, dim=dim, keepdim=keepdim)


def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:  # noqa: A002
    return apply(Amax, input, dim=None if dim == () else dim, keepdim=keepdim)


def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:  # noqa: A002
    return apply(Amin, input, dim=None if dim == () else dim, keepdim=keepdim)


ReturnTypes = namedtuple("ReturnTypes", ["values", "indices"])


def _max_min(input: Tensor, dim: Any, keepdim: bool, largest: bool, other: Any = None) -> Any:  # noqa: A002
    from .elementwise import maximum, minimum  # noqa: PLC0415

    if isinstance(dim, Tensor):
        return (maximum if largest else minimum)(input, dim)
    if dim is None:
        if input.data.size == 0:
            raise RuntimeError(
                f"{'max' if largest else 'min'}(): expected a non-empty tensor when no dim is "
                "given (pass dim= to reduce an empty tensor along a non-empty dimension)"
            )
        return apply(Amax if largest else Amin, input)
    vals = apply(MaxDim, input, dim=dim, keepdim=keepdim, largest=largest)
    idx = argmax(input, dim, keepdim) if largest else argmin(input, dim, keepdim)
    return ReturnTypes(vals, idx)


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001, A002
    """``max(x)``: the largest value; ``max(x, dim)``: (values, indices); ``max(x, y)``: maximum."""
    return _max_min(input, dim, keepdim, True)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001, A002
    return _max_min(input, dim, keepdim, False)


def logsumexp(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """log(sum(exp(x))) computed without overflow (the max is subtracted first)."""
    return apply(LogSumExp, as_float(input), dim=dim, keepdim=keepdim)


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    if p in ("fro", None):
        p = 2.0
    if isinstance(p, str):
        raise ValueError(f"norm: unsupported p={p!r} (use a number, inf or 'fro')")
    return apply(Norm, as_float(input), p=float(p), dim=dim, keepdim=keepdim)


def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:  # noqa: A002
    d = dtypes.np_dtype(dtype)
    if d is None and input.data.dtype.kind in "biu":
        d = np.dtype(np.int64)
    if d is not None and d != input.data.dtype:
        from .elementwise import cast  # noqa: PLC0415

        input = cast(input, d)
    return apply(Cumsum, input, dim=dim)


def var(
    input: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:  # noqa: A002
    """Variance with Bessel's correction by default (``correction=1``; ``unbiased=False`` is 0)."""
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    axes = reduce_dims(dim, input.ndim)
    n = 1
    for a in axes:
        n *= input.shape[a]
    mu = mean(input, axes, keepdim=True)
    d = input - mu
    return sum(d * d, axes, keepdim=keepdim) / _bessel(n, correction)


def _bessel(n: int, correction: float) -> float:
    den = n - correction
    return float(den) if den > 0 else (0.0 if den == 0 else float("nan"))


def std(
    input: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:  # noqa: A002
    from .elementwise import where  # noqa: PLC0415
    from .unary import sqrt  # noqa: PLC0415

    v = var(input, dim, unbiased, keepdim, correction=correction)
    zero = v.data == 0
    if type(zero) is np.ndarray and not zero.any():  # (on a GPU, any() would be a host wait)
        return sqrt(v)
    # sqrt'(0) is infinite; PyTorch takes the gradient of a zero std (all values equal) as 0:
    # those entries bypass the sqrt (which sees 1 there and passes no gradient back)
    z = wrap(zero)
    return where(z, v * 0, sqrt(where(z, 1.0, v)))


def var_mean(
    input: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> tuple:  # noqa: A002
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(
    input: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> tuple:  # noqa: A002
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def _arg(fn: Any) -> Any:
    def reducer(x: np.ndarray, dim: Any, keepdim: bool) -> np.ndarray:
        xp = backend.array_module(x)
        if dim is None:
            r = xp.asarray(fn(x.reshape(-1)) if x.size else fn(x), np.int64)
            return r.reshape((1,) * x.ndim) if keepdim else r
        (d,) = norm_dims(dim, x.ndim) or (None,)
        if d is None:
            return xp.zeros((), np.int64)
        return fn(x, axis=d, keepdims=keepdim).astype(np.int64)

    return reducer


def argmax(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the largest value (first one at ties); flattened index when ``dim`` is None."""
    return apply(ArgMax, input, fn=_arg(np.argmax), dim=dim, keepdim=keepdim)


def argmin(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    return apply(ArgMin, input, fn=_arg(np.argmin), dim=dim, keepdim=keepdim)


def _logical(fn: Any) -> Any:
    def reducer(x: np.ndarray, dim: Any, keepdim: bool) -> np.ndarray:
        return fn(x, axis=norm_dims(dim, x.ndim), keepdims=keepdim)

    return reducer


def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001, A002
    return apply(AllOf, input, fn=_logical(np.all), dim=dim, keepdim=keepdim)


def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001, A002
    return apply(AnyOf, input, fn=_logical(np.any), dim=dim, keepdim=keepdim)


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    return sum(input != 0, dim)


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:  # noqa: A002
    x = input.data
    idx = np.nonzero(x)
    if as_tuple:
        return tuple(wrap(i.astype(np.int64)) for i in idx)
    if not idx:
        return wrap(backend.array_module(x).zeros((1, 0), np.int64))
    return wrap(np.stack(idx, axis=-1).astype(np.int64))
