"""Converters of the network ops: convolution, pooling, normalisation, embedding lookup and
the fused recurrent cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..nn.layers import embedding as EMB
from ..ops import conv as C
from ..ops import norm as NO
from ..ops import pooling as PL
from ..ops import rnn as RN
from .math_ops import _c
from .shape_ops import _prod
from .tracer import _bcast, _conv, _same, _Tracer, _Value

# ------------------------------------------------------------------ convolution, pooling


def _need_batch0(t: _Tracer, x: _Value, what: str) -> None:
    if x.bax is not None and (x.bax != 0 or x.bf != 1):
        raise t.error(f"{what} on an input whose dim {x.bax} (not 0) holds the batch")


def _geom(x: _Value, seq: Sequence) -> list:
    """The last ``nd`` entries of a 2-d geometry (1-d ops are computed as 2-d with H = 1)."""
    return list(seq)[2 - (x.ndim - 2) :]


@_conv(C.Conv)
def _conv_op(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    _need_batch0(t, x, "conv")
    stride, pads, dil, groups = kw["geom"]
    pads = _geom(x, pads)
    y = t.emit(
        "Conv",
        [x.name, w.name] + ([b.name] if b else []),
        kernel_shape=list(w.shape[2:]),
        strides=_geom(x, stride),
        dilations=_geom(x, dil),
        pads=[lo for lo, _ in pads] + [hi for _, hi in pads],
        group=int(groups),
    )
    return _same(y, x)


@_conv(C.ConvT)
def _conv_t(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    _need_batch0(t, x, "conv_transpose")
    stride, pads, dil, groups = kw["geom"]
    stride, pads, dil = _geom(x, stride), _geom(x, pads), _geom(x, dil)
    ksize, isize = list(w.shape[2:]), list(kw["isize"])
    base = [
        (i - 1) * s - 2 * p[0] + d * (k - 1) + 1
        for i, s, p, d, k in zip(x.shape[2:], stride, pads, dil, ksize)
    ]
    y = t.emit(
        "ConvTranspose",
        [x.name, w.name] + ([b.name] if b else []),
        kernel_shape=ksize,
        strides=stride,
        dilations=dil,
        group=int(groups),
        pads=[lo for lo, _ in pads] + [hi for _, hi in pads],
        output_padding=[o - bb for o, bb in zip(isize, base)],
    )
    return _same(y, x)


def _pool_pads(x: _Value, ksize: list, stride: list, pads: list, dil: list, osize: list) -> list:
    """Explicit pads giving exactly ``osize`` windows with floor rounding (the right side only
    as far as the last window reaches, so no window ends in padding it should not count)."""
    lo = [p[0] for p in pads]
    hi = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - n - lo_)
        for o, s, d, k, n, lo_ in zip(osize, stride, dil, ksize, x.shape[2:], lo)
    ]
    return lo + hi


@_conv(PL.MaxPool)
def _max_pool(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "max_pool")
    if kw.get("return_indices"):
        raise t.error(
            "max pooling with return_indices=True (the indices have no ONNX equivalent here)"
        )
    ksize, stride, pads, dil, osize = (
        _geom(x, kw[k]) for k in ("ksize", "stride", "pads", "dil", "osize")
    )
    y = t.emit(
        "MaxPool",
        [x.name],
        kernel_shape=ksize,
        strides=stride,
        dilations=dil,
        pads=_pool_pads(x, ksize, stride, pads, dil, osize),
    )
    return _same(y, x)


@_conv(PL.AvgPool)
def _avg_pool(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "avg_pool")
    ksize2, stride2, pads2, osize2, include_pad, divisor = args[1:7]
    ksize, stride, pads, osize = (_geom(x, v) for v in (ksize2, stride2, pads2, osize2))
    dil = [1] * len(ksize)
    # a window sum (an average over the full window, padding counted) times PyTorch's divisors
    y = t.emit(
        "AveragePool",
        [x.name],
        kernel_shape=ksize,
        strides=stride,
        count_include_pad=1,
        pads=_pool_pads(x, ksize, stride, pads, dil, osize),
    )
    scale = PL._avg_scale(x.shape, ksize2, stride2, pads2, osize2, include_pad, divisor, x.dtype)
    factor = (np.asarray(scale, np.float64) * _prod(ksize)).astype(x.dtype)
    if factor.ndim:
        factor = factor.reshape(osize)
    if not np.all(factor == 1):
        y = t.emit("Mul", [y, t.const(factor, "avg_pool_scale")])
    return _same(y, x)


# ------------------------------------------------------------------ normalisation


def _ones_or(t: _Tracer, v: Any, shape: tuple, dtype: np.dtype, fill: float) -> str:
    return t.v(v).name if v is not None else t.const(np.full(shape, fill, dtype))


@_conv(NO.BatchNorm)
def _batch_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "batch_norm")
    C_ = x.shape[1]
    eps = float(kw.get("eps", 1e-5))
    w = _ones_or(t, args[1], (C_,), x.dtype, 1.0)
    b = _ones_or(t, args[2], (C_,), x.dtype, 0.0)
    if not kw.get("training", True):
        mean = t.const(np.asarray(kw["running_mean"], x.dtype), "running_mean")
        var = t.const(np.asarray(kw["running_var"], x.dtype), "running_var")
        return _same(t.emit("BatchNormalization", [x.name, w, b, mean, var], epsilon=eps), x)
    # batch statistics (track_running_stats=False): normalise over N and the positions
    axes = [0] + list(range(2, x.ndim))
    pshape = t.i64([C_] + [1] * (x.ndim - 2))
    mean = t.reduce("ReduceMean", x.name, axes, True)
    d = t.emit("Sub", [x.name, mean])
    var = t.reduce("ReduceMean", t.emit("Mul", [d, d]), axes, True)
    rstd = t.emit("Reciprocal", [t.emit("Sqrt", [t.emit("Add", [var, _c(t, x, eps)])])])
    y = t.emit("Mul", [d, rstd])
    y = t.emit("Mul", [y, t.emit("Reshape", [w, pshape])])
    y = t.emit("Add", [y, t.emit("Reshape", [b, pshape])])
    return _same(y, x)


@_conv(NO.LayerNorm)
def _layer_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    k = int(kw["k"])
    if x.bax is not None and x.bax >= x.ndim - k:
        raise t.error("layer_norm over the batch dim")
    shape = tuple(x.shape[x.ndim - k :])
    ins = [x.name, _ones_or(t, args[1], shape, x.dtype, 1.0)]
    if args[2] is not None:
        ins.append(t.v(args[2]).name)
    return _same(t.emit("LayerNormalization", ins, axis=-k, epsilon=float(kw["eps"])), x)


@_conv(NO.GroupNorm)
def _group_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "group_norm")
    G, C_ = int(kw["num_groups"]), x.shape[1]
    # as (N, G, rest): InstanceNormalization normalises each (sample, group) over its last dim
    xr = t.emit("Reshape", [x.name, t.i64([0, G, -1])])
    xn = t.emit(
        "InstanceNormalization",
        [xr, t.const(np.ones(G, x.dtype)), t.const(np.zeros(G, x.dtype))],
        epsilon=float(kw["eps"]),
    )
    y = t.emit("Reshape", [xn, t.emit("Shape", [x.name])])
    pshape = t.i64([C_] + [1] * (x.ndim - 2))
    if args[1] is not None:
        y = t.emit("Mul", [y, t.emit("Reshape", [t.v(args[1]).name, pshape])])
    if args[2] is not None:
        y = t.emit("Add", [y, t.emit("Reshape", [t.v(args[2]).name, pshape])])
    return _same(y, x)


# ------------------------------------------------------------------ embedding, recurrent cells


@_conv(EMB.EmbeddingLookup)
def _embedding_op(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    w = t.v(args[0])
    index = kw["index"]
    # F.embedding copies its indices: find the traced value they came from
    hits = [
        v
        for v in list(t.values.values())[::-1]
        if v.error is None
        and v.shape == index.shape
        and v.dtype.kind in "iu"
        and v.const is None
        and np.array_equal(v.ref.data, index)
    ]
    if len({v.name for v in hits}) > 1:
        raise t.error("embedding: the indices match several traced tensors; use nn.Embedding")
    iv = hits[0] if hits else t.v(index)
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    return [(t.emit("Gather", [w.name, idx], axis=0), iv.bax, iv.bf)]


def _affine(t: _Tracer, h: str, w: _Value, b: Any) -> str:
    y = t.emit("MatMul", [h, t.transposed(w)])
    return t.emit("Add", [y, t.v(b).name]) if b is not None else y


@_conv(RN.RNNCellOp)
def _rnn_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h = t.align([t.v(args[0]), t.v(args[1])], outs[0].ndim)
    w = t.v(args[2])
    a = t.emit("Add", [xg.name, _affine(t, h.name, w, args[3])])
    y = t.emit("Relu" if kw["nonlinearity"] == "relu" else "Tanh", [a])
    return [(y, *_bcast([xg, h], outs[0].ndim))]


@_conv(RN.GRUCellOp)
def _gru_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h = t.align([t.v(args[0]), t.v(args[1])], outs[0].ndim)
    w = t.v(args[2])
    H = h.shape[-1]
    xr, xz, xn = t.emit("Split", [xg.name, t.i64([H] * 3)], n_out=3, axis=-1)
    hr, hz, hn = t.emit("Split", [_affine(t, h.name, w, args[3]), t.i64([H] * 3)], n_out=3, axis=-1)
    r = t.emit("Sigmoid", [t.emit("Add", [xr, hr])])
    z = t.emit("Sigmoid", [t.emit("Add", [xz, hz])])
    n = t.emit("Tanh", [t.emit("Add", [xn, t.emit("Mul", [r, hn])])])
    y = t.emit("Add", [t.emit("Mul", [t.emit("Sub", [h.name, n]), z]), n])
    return [(y, *_bcast([xg, h], outs[0].ndim))]


@_conv(RN.LSTMCellOp)
def _lstm_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h, c = t.align([t.v(args[0]), t.v(args[1]), t.v(args[2])], outs[0].ndim)
    w = t.v(args[3])
    H = h.shape[-1]
    a = t.emit("Add", [xg.name, _affine(t, h.name, w, args[4])])
    i, f, g, o = t.emit("Split", [a, t.i64([H] * 4)], n_out=4, axis=-1)
    i, f, o = (t.emit("Sigmoid", [v]) for v in (i, f, o))
    c2 = t.emit("Add", [t.emit("Mul", [f, c.name]), t.emit("Mul", [i, t.emit("Tanh", [g])])])
    h2 = t.emit("Mul", [o, t.emit("Tanh", [c2])])
    bax = _bcast([xg, h, c], outs[0].ndim)
    return [(h2, *bax), (c2, *bax)]
