"""Max, average and adaptive-average pooling with PyTorch's semantics (NCHW / NCL layouts).

Windows are scanned as strided slices of the padded input (one per kernel tap); 1-d inputs are
handled as 2-d with a height of 1. Geometry is passed around as 2-d tuples, as in ``ops.conv``:
``ksize``, ``stride``, ``pads = ((top, bottom), (left, right))``, ``dil``, ``osize``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..tensor import Tensor, wrap
from ._conv_util import _as2d, _call, _dims2, _padded, _sz2, _tuple

# ----------------------------------------------------------------------------- pooling kernels


def _lowest(dtype: np.dtype) -> Any:
    return -np.inf if dtypes.is_floating(dtype) else np.iinfo(dtype).min


def _slice(k: int, s: int, d: int, o: int) -> slice:
    return slice(k * d, k * d + s * (o - 1) + 1, s)


def _first_real(o: int, s: int, p: int, d: int, k: int, n: int) -> np.ndarray:
    """Per output position: the first kernel tap that lands inside the input (PyTorch's start);
    a host array (o,)."""
    start = np.arange(o) * s - p
    first = np.where(start < 0, -(start // d), 0)  # ceil(-start / d) taps into the window
    return np.minimum(first, k - 1)


class MaxPool(Op):
    """Max over each window; the gradient goes to the (first) argmax, as in PyTorch: windows are
    scanned row by row, a later value wins only if strictly larger (or NaN). Padding is -inf."""

    name = "max_pool"

    def forward(
        ctx,
        x: np.ndarray,
        ksize: tuple,
        stride: tuple,
        pads: tuple,
        dil: tuple,
        osize: tuple,
        return_indices: bool,
    ) -> Any:
        x2 = _as2d(x)
        N, C, H, W = x2.shape
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = ksize, stride, dil, osize
        am = backend.array_module(x)
        xp = _padded(x2, pads, _lowest(x.dtype))
        out = am.full((N, C, oh, ow), _lowest(x.dtype), x.dtype)
        idt = np.int16 if kh * kw < 2**15 else np.int64
        a0 = _first_real(oh, sh, pads[0][0], dh, kh, H)
        b0 = _first_real(ow, sw, pads[1][0], dw, kw, W)
        arg = am.empty((N, C, oh, ow), idt)
        arg[...] = am.asarray((a0[:, None] * kw + b0[None, :]).astype(idt))
        # The NaN-aware scan is slower on the host, so it runs only when x has NaNs; on a device
        # it always runs (it gives the same result without NaNs, and the check would sync).
        nan = dtypes.is_floating(x.dtype) and (am is not np or bool(np.isnan(x).any()))
        upd = am.empty((N, C, oh, ow), bool)
        tmp = am.empty((N, C, oh, ow), idt)
        # Branch-free: a masked copy (np.where / copyto(where=)) is ~10x slower on random masks.
        # The tap index grows along the scan, so the last update is the largest updated index.
        for a in range(kh):
            for b in range(kw):
                sl = xp[:, :, _slice(a, sh, dh, oh), _slice(b, sw, dw, ow)]
                np.greater(sl, out, out=upd)
                if nan:
                    upd |= np.isnan(sl)
                np.maximum(out, sl, out=out)
                np.multiply(upd, idt(a * kw + b), out=tmp)
                np.maximum(arg, tmp, out=arg)
        ctx.arg, ctx.geom, ctx.xshape = arg, (ksize, stride, pads, dil), x.shape
        res = out.reshape(N, C, ow) if x.ndim == 3 else out
        if return_indices:
            return res, _flat_index(arg, ctx.geom, W).reshape(res.shape)
        return res

    def backward(ctx, g: Any, m: Any) -> Any:
        if ctx.n_out > 1:
            g = g[0]
        ksize, stride, pads, dil = ctx.geom
        shape = ctx.xshape
        if not m.graph:
            return _max_scatter(g, ctx.arg, ctx.geom, shape)
        N, C = shape[:2]
        H, W = _sz2(shape[2:])
        idx = _flat_index(ctx.arg, ctx.geom, W).reshape(N, C, -1)
        gx = m.scatter_add_new((N, C, H * W), 2, idx, m.reshape(g, (N, C, idx.shape[2])))
        return m.reshape(gx, shape)


def _flat_index(arg: np.ndarray, geom: tuple, W: int) -> np.ndarray:
    """Window-local argmax -> index into the flattened (H*W) input plane (int64)."""
    (kh, kw), (sh, sw), ((t, _), (lf, _)), (dh, dw) = geom
    oh, ow = arg.shape[2:]
    am = backend.array_module(arg)
    a = arg.astype(np.int64)
    row = am.arange(oh)[:, None] * sh - t + (a // kw) * dh
    col = am.arange(ow)[None, :] * sw - lf + (a % kw) * dw
    return row * W + col


def _max_scatter(g: np.ndarray, arg: np.ndarray, geom: tuple, shape: tuple) -> np.ndarray:
    (kh, kw), (sh, sw), ((t, bt), (lf, r)), (dh, dw) = geom
    g2 = _as2d(g)
    N, C, oh, ow = g2.shape
    H, W = _sz2(shape[2:])
    am = backend.array_module(g)
    gxp = am.zeros((N, C, H + t + bt, W + lf + r), g.dtype)
    tmp = am.empty_like(g2)
    for a in range(kh):
        for b in range(kw):
            np.multiply(g2, arg == a * kw + b, out=tmp)
            gxp[:, :, _slice(a, sh, dh, oh), _slice(b, sw, dw, ow)] += tmp
    gx = gxp[:, :, t : t + H, lf : lf + W]
    return am.ascontiguousarray(gx).reshape(shape)


def _avg_divisors(n: int, k: int, s: int, p: int, o: int, include_pad: bool) -> np.ndarray:
    """PyTorch's per-position pool size along one dim (window clipped to the padded input, and
    to the input itself when padding does not count)."""
    start = np.arange(o) * s - p
    end = np.minimum(start + k, n + p)
    size = end - start
    if not include_pad:
        size = np.minimum(end, n) - np.maximum(start, 0)
    return size


def _avg_scale(
    x_shape: tuple,
    ksize: tuple,
    stride: tuple,
    pads: tuple,
    osize: tuple,
    include_pad: bool,
    divisor: Any,
    dtype: np.dtype,
    xp: Any = np,
) -> Any:
    """The factor each window sum is scaled by: a scalar, or an (oh, ow) array of module ``xp``."""
    if divisor:
        return dtype.type(1.0 / divisor)
    H, W = _sz2(x_shape[2:])
    dh = _avg_divisors(H, ksize[0], stride[0], pads[0][0], osize[0], include_pad)
    dw = _avg_divisors(W, ksize[1], stride[1], pads[1][0], osize[1], include_pad)
    size = np.outer(dh, dw).astype(np.float64)
    with np.errstate(divide="ignore"):
        inv = np.where(size > 0, 1.0 / np.maximum(size, 1), 0.0)
    return xp.asarray(inv.astype(dtype))


class AvgPool(Op):
    """Mean over each window, with PyTorch's divisors (count_include_pad, ceil_mode,
    divisor_override). Linear: the backward is ``AvgPoolT``, its adjoint."""

    name = "avg_pool"

    def forward(
        ctx,
        x: np.ndarray,
        ksize: tuple,
        stride: tuple,
        pads: tuple,
        osize: tuple,
        include_pad: bool,
        divisor: Any,
    ) -> Any:
        if x.dtype.kind == "V":  # bfloat16: window sums in float32, rounded once (PyTorch)
            y = AvgPool.forward(
                ctx, x.astype(np.float32), ksize, stride, pads, osize, include_pad, divisor
            )
            return y.astype(x.dtype)
        ctx.params = (ksize, stride, pads, osize, include_pad, divisor)
        ctx.xshape = x.shape
        x2 = _as2d(x)
        N, C = x2.shape[:2]
        (kh, kw), (sh, sw), (oh, ow) = ksize, stride, osize
        am = backend.array_module(x)
        xp = _padded(x2, pads, 0)
        out = am.zeros((N, C, oh, ow), x.dtype)
        for a in range(kh):
            for b in range(kw):
                out += xp[:, :, _slice(a, sh, 1, oh), _slice(b, sw, 1, ow)]
        out *= _avg_scale(x.shape, ksize, stride, pads, osize, include_pad, divisor, x.dtype, am)
        return out.reshape(N, C, ow) if x.ndim == 3 else out

    def backward(ctx, g: Any, m: Any) -> Any:
        return _call(m, AvgPoolT, g, xshape=ctx.xshape, params=ctx.params)


class AvgPoolT(Op):
    """The adjoint of AvgPool: spread each output gradient over its window."""

    name = "avg_pool_backward"

    def forward(ctx, g: Any, xshape: tuple, params: tuple) -> Any:
        if g.dtype.kind == "V":  # bfloat16: in float32, rounded once
            return AvgPoolT.forward(ctx, g.astype(np.float32), xshape, params).astype(g.dtype)
        ctx.xshape, ctx.params = xshape, params
        ksize, stride, pads, osize, include_pad, divisor = params
        (kh, kw), (sh, sw), ((t, bt), (lf, r)) = ksize, stride, pads
        g2 = _as2d(g)
        N, C, oh, ow = g2.shape
        H, W = _sz2(xshape[2:])
        am = backend.array_module(g)
        gs = g2 * _avg_scale(xshape, ksize, stride, pads, osize, include_pad, divisor, g.dtype, am)
        gxp = am.zeros((N, C, H + t + bt, W + lf + r), g.dtype)
        for a in range(kh):
            for b in range(kw):
                gxp[:, :, _slice(a, sh, 1, oh), _slice(b, sw, 1, ow)] += gs
        return am.ascontiguousarray(gxp[:, :, t : t + H, lf : lf + W]).reshape(xshape)

    def backward(ctx, gg: Any, m: Any) -> Any:
        return _call(m, AvgPool, gg, *ctx.params)


# ----------------------------------------------------------------------------- pooling API


def _pool_dim(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> tuple:
    """(output size, extra right padding) as PyTorch's pooling_output_shape."""
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    o = num // s + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    need = (o - 1) * s + d * (k - 1) + 1  # padded extent the windows reach
    return o, max(need - n - p, 0)


def _pool_prep(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    nd: int,
    name: str,
) -> tuple:
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"{name}: Expected {nd + 1}D or {nd + 2}D (batch mode) tensor with optional 0 dim "
            f"batch size for input, but got: {list(input.shape)}"
        )
    k = _tuple(kernel_size, nd, "kernel_size")
    s = (
        k
        if stride is None or (isinstance(stride, (list, tuple)) and not stride)
        else _tuple(stride, nd, "stride")
    )
    p = _tuple(padding, nd, "padding")
    d = _tuple(dilation, nd, "dilation")
    if any(i <= 0 for i in k):
        raise RuntimeError(f"{name}: kernel_size must be greater than zero, but got {list(k)}")
    if any(i <= 0 for i in s):
        raise RuntimeError(f"{name}: stride must be greater than zero, but got {list(s)}")
    if any(i <= 0 for i in d):
        raise RuntimeError(f"{name}: dilation must be greater than zero, but got {list(d)}")
    for pi, ki, di in zip(p, k, d):
        if pi < 0 or pi > (di * (ki - 1) + 1) // 2:
            raise RuntimeError(
                "pad should be at most half of effective kernel size, but got "
                f"pad={pi}, kernel_size={ki} and dilation={di}"
            )
    spatial = tuple(input.shape[-nd:])
    dims = [
        _pool_dim(n, ki, si, pi, di, ceil_mode) for n, ki, si, pi, di in zip(spatial, k, s, p, d)
    ]
    osize = tuple(o for o, _ in dims)
    if any(o <= 0 for o in osize):
        c = input.shape[-nd - 1]
        raise RuntimeError(
            f"Given input size: ({'x'.join(str(i) for i in (c, *spatial))}). Calculated output "
            f"size: ({'x'.join(str(i) for i in (c, *osize))}). Output size is too small"
        )
    pads = tuple((pi, pi + extra) for pi, (_, extra) in zip(p, dims))
    unbatched = input.ndim == nd + 1
    x = input.reshape((1, *input.shape)) if unbatched else input
    geom = (_dims2(k), _dims2(s), ((0, 0),) * (2 - nd) + pads, _dims2(d), _dims2(osize))
    return x, geom, unbatched


def _max_pool(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
    nd: int,
    name: str,
) -> Any:
    x, (k, s, pads, d, osize), unbatched = _pool_prep(
        input, kernel_size, stride, padding, dilation, ceil_mode, nd, name
    )
    r = apply(
        MaxPool,
        x,
        ksize=k,
        stride=s,
        pads=pads,
        dil=d,
        osize=osize,
        return_indices=bool(return_indices),
    )
    if unbatched:
        if return_indices:
            return r[0].reshape(r[0].shape[1:]), r[1].reshape(r[1].shape[1:])
        return r.reshape(r.shape[1:])
    return r


def max_pool1d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over windows of (N, C, L) or (C, L); ``stride`` defaults to ``kernel_size``."""
    return _max_pool(
        input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d"
    )


def max_pool2d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max over windows of (N, C, H, W) or (C, H, W); ``stride`` defaults to ``kernel_size``."""
    return _max_pool(
        input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d"
    )


def _avg_pool(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Any,
    nd: int,
    name: str,
) -> Tensor:
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"{name}: divisor must be not zero")
    if not dtypes.is_floating(input.data.dtype):
        raise RuntimeError(f'"{name}" not implemented for integer input (dtype {input.dtype})')
    x, (k, s, pads, _, osize), unbatched = _pool_prep(
        input, kernel_size, stride, padding, 1, ceil_mode, nd, name
    )
    y = apply(AvgPool, x, k, s, pads, osize, bool(count_include_pad), divisor_override)
    return y.reshape(y.shape[1:]) if unbatched else y


def avg_pool1d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over windows of (N, C, L) or (C, L)."""
    return _avg_pool(
        input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d"
    )


def avg_pool2d(
    input: Tensor,  # noqa: A002
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over windows of (N, C, H, W) or (C, H, W)."""
    return _avg_pool(
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        2,
        "avg_pool2d",
    )


def _adaptive_matrix(n: int, o: int, dtype: np.dtype) -> np.ndarray:
    """(o, n) averaging matrix over PyTorch's adaptive windows [floor(i n/o), ceil((i+1) n/o))."""
    P = np.zeros((o, n), np.float64)
    for i in range(o):
        a, b = (i * n) // o, -((-(i + 1) * n) // o)
        P[i, a:b] = 1.0 / (b - a)
    return P.astype(dtype)


def _adaptive(input: Tensor, output_size: Any, nd: int, name: str) -> Tensor:  # noqa: A002
    from .linalg import matmul  # noqa: PLC0415

    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"{name}(): Expected {nd + 1}D or {nd + 2}D tensor, but got {list(input.shape)}"
        )
    if not dtypes.is_floating(input.data.dtype):
        raise RuntimeError(f'"{name}" not implemented for integer input (dtype {input.dtype})')
    spatial = tuple(input.shape[-nd:])
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != nd:
            raise ValueError(
                f"{name}: output_size must have {nd} elements, got {list(output_size)}"
            )
        osize = tuple(n if o is None else int(o) for o, n in zip(output_size, spatial))
    else:
        osize = (int(output_size),) * nd
    if any(o <= 0 for o in osize):
        raise RuntimeError(
            f"{name}: elements of output_size must be greater than or equal to 1, got {list(osize)}"
        )
    if any(n == 0 for n in spatial):
        raise RuntimeError(
            f"{name}(): Expected input to have non-zero size for non-batch dimensions, but got {list(input.shape)}"
        )
    if all(n % o == 0 for n, o in zip(spatial, osize)):
        if all(o == 1 for o in osize):  # global pooling
            return input.mean(tuple(range(-nd, 0)), keepdim=True)
        k = tuple(n // o for n, o in zip(spatial, osize))
        return _avg_pool(input, k, k, 0, False, True, None, nd, name)
    y = input
    dt = input.data.dtype
    am = backend.array_module(input.data)
    if osize[-1] != spatial[-1]:
        P = np.ascontiguousarray(_adaptive_matrix(spatial[-1], osize[-1], dt).T)
        y = matmul(y, wrap(am.asarray(P)))
    if nd == 2 and osize[0] != spatial[0]:
        y = matmul(wrap(am.asarray(_adaptive_matrix(spatial[0], osize[0], dt))), y)
    return y


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Mean over PyTorch's adaptive windows of (N, C, L) or (C, L), to length ``output_size``."""
    return _adaptive(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Mean over adaptive windows of (N, C, H, W) or (C, H, W); ``output_size`` is an int or a
    pair (None keeps that size)."""
    return _adaptive(input, output_size, 2, "adaptive_avg_pool2d")


__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "max_pool1d",
    "max_pool2d",
]
