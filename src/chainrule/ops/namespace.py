"""The two namespaces backward rules are written in.

A rule calls ``m.exp(x)``, ``m.sum(g, dims, True)``, ``m.matmul(a, b)`` ... and plain operators.
``A`` runs them on raw arrays (the usual, fast backward); ``T`` runs them on Tensors through the
recorded ops, so that a backward with ``create_graph=True`` is itself differentiable. Both offer
exactly the same functions with the same meaning.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .. import backend
from ..autograd.backward_pass import sum_to
from ..autograd.engine import apply
from ..tensor import wrap
from . import conv as C
from . import device as D
from . import elementwise as E
from . import indexing as Ix
from . import linalg as L
from . import movement as M
from . import nn as N
from . import reduce as R
from . import unary as U


class _Scratch:
    """A throwaway ctx for calling an op's forward directly."""


class A:
    """Backward helpers on arrays."""

    graph = False  # rules may take a shortcut on arrays that would not be differentiable

    sum_to = staticmethod(sum_to)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    sign = staticmethod(np.sign)
    abs = staticmethod(np.abs)
    floor = staticmethod(np.floor)
    matmul = staticmethod(L._mm)  # bfloat16: float32 products rounded once
    where = staticmethod(np.where)
    zeros_like = staticmethod(np.zeros_like)
    einsum = staticmethod(L._einsum)

    @staticmethod
    def sum(x: np.ndarray, dims: tuple, keepdim: bool) -> np.ndarray:
        return np.add.reduce(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def expand(x: np.ndarray, shape: tuple) -> np.ndarray:
        if x.shape == shape:
            return x
        if x.size == 1:  # e.g. the gradient of a mean: one C call instead of broadcast_to's Python
            xp = backend.array_module(x)
            return xp.full(shape, x.reshape(()), x.dtype)
        return np.broadcast_to(x, shape)

    @staticmethod
    def reshape(x: np.ndarray, shape: tuple) -> np.ndarray:
        return x.reshape(shape)

    @staticmethod
    def permute(x: np.ndarray, dims: tuple) -> np.ndarray:
        return np.transpose(x, dims)

    @staticmethod
    def mT(x: np.ndarray) -> np.ndarray:  # noqa: N802
        return np.swapaxes(x, -1, -2)

    @staticmethod
    def cast(x: Any, dtype: np.dtype) -> Any:
        return backend.as_array(x).astype(dtype, copy=False)

    to_device = staticmethod(backend.to_device)

    @staticmethod
    def flip(x: np.ndarray, dims: tuple) -> np.ndarray:
        return np.flip(x, dims) if dims else x

    @staticmethod
    def cumsum(x: np.ndarray, dim: int) -> np.ndarray:
        return np.cumsum(x, axis=dim)

    @staticmethod
    def roll(x: np.ndarray, shifts: Any, dims: Any) -> np.ndarray:
        return np.roll(x, shifts, dims)

    @staticmethod
    def tri(x: np.ndarray, diagonal: int, upper: bool) -> np.ndarray:
        return (np.triu if upper else np.tril)(x, diagonal)

    @staticmethod
    def getitem(x: np.ndarray, index: Any, basic: bool) -> np.ndarray:
        return x[index]

    @staticmethod
    def put_new(shape: tuple, index: Any, g: np.ndarray, basic: bool) -> np.ndarray:
        return Ix.PutNew.forward(_Scratch(), g, shape, index, basic)

    @staticmethod
    def gather(x: np.ndarray, dim: int, index: np.ndarray) -> np.ndarray:
        return Ix.Gather.forward(_Scratch(), x, dim, index)

    @staticmethod
    def scatter_add_new(shape: tuple, dim: int, index: np.ndarray, g: np.ndarray) -> np.ndarray:
        return Ix.ScatterAddNew.forward(_Scratch(), g, shape, dim, index)

    @staticmethod
    def split(x: np.ndarray, sizes: list, dim: int) -> list:
        return np.split(x, list(itertools.accumulate(sizes))[:-1], axis=dim)

    @staticmethod
    def cat(xs: list, dim: int) -> np.ndarray:
        return np.concatenate(xs, axis=dim)

    @staticmethod
    def pad_raw(x: np.ndarray, pads: list) -> np.ndarray:
        return M.Pad.forward(_Scratch(), x, pads, 0.0)

    @staticmethod
    def log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
        return N.LogSoftmax.forward(_Scratch(), x, dim)

    @staticmethod
    def conv(x: np.ndarray, w: np.ndarray, geom: tuple, osize: tuple) -> np.ndarray:
        return C.conv_arrays(x, w, geom, osize)

    @staticmethod
    def conv_transpose(u: np.ndarray, w: np.ndarray, geom: tuple, isize: tuple) -> np.ndarray:
        return C.conv_transpose_arrays(u, w, geom, isize)

    @staticmethod
    def conv_wgrad(x: np.ndarray, u: np.ndarray, geom: tuple, ksize: tuple) -> np.ndarray:
        return C.conv_wgrad_arrays(x, u, geom, ksize)


class T:
    """The same helpers on Tensors (recorded, hence differentiable)."""

    graph = True

    sum_to = staticmethod(sum_to)
    exp = staticmethod(U.exp)
    log = staticmethod(U.log)
    sin = staticmethod(U.sin)
    cos = staticmethod(U.cos)
    sign = staticmethod(U.sign)
    abs = staticmethod(U.abs)
    floor = staticmethod(U.floor)
    matmul = staticmethod(L.matmul)
    where = staticmethod(E.where)
    einsum = staticmethod(L.einsum)
    cast = staticmethod(E.cast)
    to_device = staticmethod(D.to_device)

    @staticmethod
    def zeros_like(x: Any) -> Any:
        return wrap(backend.array_module(x.data).zeros_like(x.data))

    @staticmethod
    def sum(x: Any, dims: tuple, keepdim: bool) -> Any:
        return R.sum(x, dims, keepdim)

    @staticmethod
    def expand(x: Any, shape: tuple) -> Any:
        return M.expand(x, shape)

    @staticmethod
    def reshape(x: Any, shape: tuple) -> Any:
        return M.reshape(x, shape)

    @staticmethod
    def permute(x: Any, dims: tuple) -> Any:
        return M.permute(x, dims)

    @staticmethod
    def mT(x: Any) -> Any:  # noqa: N802
        return M.transpose(x, -1, -2)

    @staticmethod
    def flip(x: Any, dims: tuple) -> Any:
        return apply(M.Flip, x, dims=dims)

    @staticmethod
    def cumsum(x: Any, dim: int) -> Any:
        return apply(R.Cumsum, x, dim=dim)

    @staticmethod
    def roll(x: Any, shifts: Any, dims: Any) -> Any:
        return apply(M.Roll, x, shifts=shifts, dims=dims)

    @staticmethod
    def tri(x: Any, diagonal: int, upper: bool) -> Any:
        return apply(M.Tril, x, diagonal=diagonal, upper=upper)

    @staticmethod
    def getitem(x: Any, index: Any, basic: bool) -> Any:
        return apply(Ix.GetItemView if basic else Ix.GetItem, x, index=index, basic=basic)

    @staticmethod
    def put_new(shape: tuple, index: Any, g: Any, basic: bool) -> Any:
        return apply(Ix.PutNew, g, shape=shape, index=index, basic=basic)

    @staticmethod
    def gather(x: Any, dim: int, index: np.ndarray) -> Any:
        return apply(Ix.Gather, x, dim=dim, index=index)

    @staticmethod
    def scatter_add_new(shape: tuple, dim: int, index: np.ndarray, g: Any) -> Any:
        return apply(Ix.ScatterAddNew, g, shape=shape, dim=dim, index=index)

    @staticmethod
    def split(x: Any, sizes: list, dim: int) -> Any:
        return apply(M.Split, x, sizes=sizes, dim=dim)

    @staticmethod
    def cat(xs: list, dim: int) -> Any:
        return apply(M.Cat, *xs, dim=dim)

    @staticmethod
    def pad_raw(x: Any, pads: list) -> Any:
        return apply(M.Pad, x, pads=pads, value=0.0)

    @staticmethod
    def log_softmax(x: Any, dim: int) -> Any:
        return apply(N.LogSoftmax, x, dim=dim)

    @staticmethod
    def conv(x: Any, w: Any, geom: tuple, osize: tuple) -> Any:
        return apply(C.Conv, x, w, None, geom=geom, osize=osize)

    @staticmethod
    def conv_transpose(u: Any, w: Any, geom: tuple, isize: tuple) -> Any:
        return apply(C.ConvT, u, w, None, geom=geom, isize=isize)

    @staticmethod
    def conv_wgrad(x: Any, u: Any, geom: tuple, ksize: tuple) -> Any:
        return apply(C.ConvWGrad, x, u, geom=geom, ksize=ksize)
