"""Ops that select or write by index: ``x[index]``, index_select, masked_fill/masked_select,
gather/scatter/scatter_add, take_along_dim. A basic index (ints, slices, None, ...) gives a view;
integer and boolean arrays give copies, and their gradients are scattered back with accumulation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..tensor import Tensor, wrap
from .movement import _dim, expand, reshape


def _norm_index(index: Any, like: Any = None) -> Any:
    """A user index with Tensors and lists turned into arrays NumPy understands, on the device of
    the indexed array ``like`` (a CUDA tensor takes CPU index tensors and lists, as in PyTorch; a
    CPU tensor refuses CUDA indices)."""
    if isinstance(index, tuple):
        return tuple(_norm_one(i, like) for i in index)
    return _norm_one(index, like)


def _norm_one(i: Any, like: Any) -> Any:
    t = type(i)
    if t is int or t is slice or i is None or i is Ellipsis:
        return i
    if isinstance(i, Tensor):
        a = i.data
        if a.dtype.kind not in "biu":
            _bad_index(a)
        return a if type(a) is type(like) else _index_to(a, like)
    if isinstance(i, list):
        a = np.asarray(i)
        if a.size == 0:  # x[[]]: an empty integer index (NumPy would make it float)
            a = a.astype(np.int64)
        elif a.dtype.kind not in "biu":
            _bad_index(a)
        return a if type(like) is np.ndarray or like is None else _index_to(a, like)
    if like is not None and t is not type(like) and backend.is_array(i):
        return _index_to(i, like)
    return i


def _index_to(a: Any, like: Any) -> Any:
    """The index array ``a`` on the device of ``like`` (host indices go to the device)."""
    if like is None:  # (no indexed array to match)
        return a
    if backend.is_device_array(a) and not backend.is_device_array(like):
        raise RuntimeError(
            f"indices should be either on cpu or on the same device as the indexed tensor (cpu), "
            f"got indices on {backend.device_of(a)}"
        )
    return backend.to_device(a, backend.device_of(like))


def _bad_index(a: np.ndarray) -> None:
    raise IndexError(f"tensors used as indices must be long, int or bool tensors, got {a.dtype}")


def _is_basic(idx: Any) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    for i in items:
        if not (i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))):
            return False
    return True


class GetItem(Op):
    """x[index] with ints, slices, None, ... (a view) and integer/bool arrays (a copy).
    The gradient is scattered back with accumulation, so repeated indices add up."""

    def forward(ctx, x, index, basic):
        ctx.shape, ctx.dtype, ctx.index, ctx.basic = x.shape, x.dtype, index, basic
        return x[index]

    def backward(ctx, g, m):
        return m.put_new(ctx.shape, ctx.index, g, ctx.basic)


class GetItemView(GetItem):
    is_view = True


class PutNew(Op):
    """zeros(shape) with ``g`` added at ``index`` (GetItem's backward; its own backward is a GetItem)."""

    def forward(ctx, g, shape, index, basic):
        ctx.index, ctx.basic = index, basic
        out = backend.array_module(g).zeros(shape, g.dtype)
        if basic:
            out[index] = g
        else:
            np.add.at(out, index, g)
        return out

    def backward(ctx, gg, m):
        return m.getitem(gg, ctx.index, ctx.basic)


def getitem(input: Tensor, index: Any) -> Tensor:  # noqa: A002
    idx = _norm_index(index, input.data)
    basic = _is_basic(idx)
    return apply(GetItemView if basic else GetItem, input, index=idx, basic=basic)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:  # noqa: A002
    d = _dim(dim, input.ndim) if input.ndim else 0
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    return getitem(input, (slice(None),) * d + (idx.reshape(-1),))


def masked_fill(input: Tensor, mask: Any, value: Any) -> Tensor:  # noqa: A002
    from .elementwise import where  # noqa: PLC0415

    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError("masked_fill only supports a 0-dimensional value tensor")
    return where(mask, value if isinstance(value, Tensor) else _scalar_like(value, input), input)


def _scalar_like(v: Any, like: Tensor) -> Any:
    if dtypes.is_floating(like.data.dtype):
        return float(v)
    return v


def masked_select(input: Tensor, mask: Any) -> Tensor:  # noqa: A002
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    shape = np.broadcast_shapes(input.shape, m.shape)
    return getitem(expand(input, shape), np.broadcast_to(m, shape))


class Gather(Op):
    """out[i][j] = x[index[i][j]][j] along ``dim`` (torch.gather); index may be smaller than x."""

    def forward(ctx, x, dim, index):
        ctx.shape, ctx.dim, ctx.index = x.shape, dim, index
        if x.ndim == 0:
            return x[()] if index.ndim == 0 else np.broadcast_to(x, index.shape).copy()
        sl = tuple(slice(0, s) if i != dim else slice(None) for i, s in enumerate(index.shape))
        return np.take_along_axis(x[sl], index, axis=dim)

    def backward(ctx, g, m):
        return m.scatter_add_new(ctx.shape, ctx.dim, ctx.index, g)


class ScatterAddNew(Op):
    """zeros(shape) with ``src`` added at ``index`` along ``dim``; duplicates accumulate.
    ``src`` may be larger than ``index``: only its leading ``index.shape`` block is used (and
    receives a gradient; the rest gets zeros)."""

    def forward(ctx, src, shape, dim, index):
        ctx.dim, ctx.index, ctx.src_shape = dim, index, src.shape
        out = backend.array_module(src).zeros(shape, src.dtype)
        if len(shape) == 0:
            out[()] += src.sum()
            return out
        full = _open_grid(index)
        full[dim] = index
        np.add.at(out, tuple(full), src[tuple(slice(0, s) for s in index.shape)])
        return out

    def backward(ctx, g, m):
        gs = m.gather(g, ctx.dim, ctx.index)
        if ctx.src_shape == ctx.index.shape or len(ctx.src_shape) == 0:
            return gs
        return m.pad_raw(gs, [(0, s - i) for s, i in zip(ctx.src_shape, ctx.index.shape)])


def _open_grid(index: Any) -> list:
    """``np.indices(index.shape, sparse=True)`` on ``index``'s device: one broadcastable arange
    per dim."""
    xp, nd = backend.array_module(index), index.ndim
    return [
        xp.arange(n).reshape((1,) * i + (n,) + (1,) * (nd - i - 1))
        for i, n in enumerate(index.shape)
    ]


def _index_arr(index: Any, input: Tensor, op: str) -> Any:
    """gather/scatter's index as an integer array on ``input``'s device (an index tensor must
    already be there, as in PyTorch; arrays and lists are moved)."""
    if isinstance(index, Tensor):
        a = index.data
        if type(a) is not type(input.data):
            err = backend.same_device_error(op, [input.data, a])
            if err is not None:
                raise err
    else:
        a = backend.asarray(index, like=input.data)
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"gather/scatter: index must be an integer tensor, got {a.dtype}")
    return a


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:  # noqa: A002
    idx = _index_arr(index, input, "gather")
    d = _dim(dim, input.ndim) if input.ndim else 0
    if idx.ndim != input.ndim:
        raise RuntimeError(
            f"gather: index tensor must have the same number of dimensions as input "
            f"(input {tuple(input.shape)}, index {tuple(idx.shape)})"
        )
    for i, (si, sx) in enumerate(zip(idx.shape, input.shape)):
        if i != d and si > sx:
            raise RuntimeError(
                f"gather: size of index {tuple(idx.shape)} exceeds input {tuple(input.shape)} in dim {i}"
            )
    return apply(Gather, input, dim=d, index=idx)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:  # noqa: A002
    idx = _index_arr(index, input, "scatter_add")
    d = _dim(dim, input.ndim) if input.ndim else 0
    return input + apply(ScatterAddNew, src, shape=input.shape, dim=d, index=idx)


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, value: Any = None) -> Tensor:  # noqa: A002
    """Write ``src`` (or ``value``) into a copy of ``input`` at ``index`` along ``dim``."""
    from ..creation import full  # noqa: PLC0415

    if src is None:
        src = value
    idx = _index_arr(index, input, "scatter")
    if not isinstance(src, Tensor):
        src = full(idx.shape, src, dtype=input.dtype, device=input.device)
    d = _dim(dim, input.ndim) if input.ndim else 0
    hit = backend.array_module(idx).zeros(input.shape, bool)
    full_idx = _open_grid(idx)
    full_idx[d] = idx
    hit[tuple(full_idx)] = True
    written = apply(ScatterAddNew, src, shape=input.shape, dim=d, index=idx)
    return input * wrap((~hit).astype(input.data.dtype)) + written


def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:  # noqa: A002
    """``gather`` after broadcasting ``input`` and ``indices`` against each other in every dim but
    ``dim`` (torch's rule); with ``dim=None`` both are flattened first."""
    idx = _index_arr(indices, input, "take_along_dim")
    if dim is None:
        return gather(reshape(input, -1), 0, idx.reshape(-1))
    if idx.ndim != input.ndim:
        raise RuntimeError(
            f"take_along_dim: input and indices should have the same number of dimensions, but "
            f"got {input.ndim} and {idx.ndim}"
        )
    d = _dim(dim, input.ndim) if input.ndim else 0
    ishape = list(idx.shape)
    xshape = list(input.shape)
    if input.ndim:
        xshape[d], ishape[d] = idx.shape[d], input.shape[d]
    idx = np.broadcast_to(idx, np.broadcast_shapes(tuple(xshape), idx.shape))
    return gather(expand(input, np.broadcast_shapes(tuple(ishape), input.shape)), d, idx)
