"""Fused primitives for neural networks where a single rule beats a chain of small ones:
softmax and log-softmax (one pass each way, no overflow)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .movement import _dim
from .util import as_float


def _via_float32(forward: Any, ctx: Any, x: Any, dim: int) -> Any:
    """bfloat16 (ml_dtypes, kind 'V'): computed in float32 and rounded once, as PyTorch does; the
    result keeps the input's dtype (ml_dtypes' scalar arithmetic would drift to float32)."""
    return forward(ctx, x.astype(np.float32), dim).astype(x.dtype)


class Softmax(Op):
    """exp(x - max) / sum; backward: y * (g - sum(g * y))."""

    save_output = True

    def forward(ctx, x, dim):
        ctx.dim = dim
        if x.size == 0:
            return x.copy()
        if x.dtype.kind == "V":
            return _via_float32(Softmax.forward, ctx, x, dim)
        e = x - np.amax(x, axis=dim, keepdims=True)
        np.exp(e, out=e)
        e /= np.sum(e, axis=dim, keepdims=True)
        return e

    def backward(ctx, g, m):
        y = ctx.out
        gy = g * y
        return gy - y * m.sum(gy, (ctx.dim,), True)


class LogSoftmax(Op):
    """x - logsumexp(x); backward: g - softmax(x) * sum(g)."""

    save_output = True

    def forward(ctx, x, dim):
        ctx.dim = dim
        if x.size == 0:
            return x.copy()
        if x.dtype.kind == "V":
            return _via_float32(LogSoftmax.forward, ctx, x, dim)
        s = x - np.amax(x, axis=dim, keepdims=True)
        s -= np.log(np.sum(np.exp(s), axis=dim, keepdims=True))
        return s

    def backward(ctx, g, m):
        return g - m.exp(ctx.out) * m.sum(g, (ctx.dim,), True)


def _sm_dim(x: Tensor, dim: int | None) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return _dim(dim, x.ndim) if x.ndim else 0


def softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:  # noqa: A002, ANN001
    x = as_float(input) if dtype is None else input.to(dtype)
    if x.ndim == 0:
        return x * 0 + 1
    return apply(Softmax, x, dim=_sm_dim(x, dim))


def log_softmax(input: Tensor, dim: int | None = None, dtype=None) -> Tensor:  # noqa: A002, ANN001
    x = as_float(input) if dtype is None else input.to(dtype)
    if x.ndim == 0:
        return x * 0
    return apply(LogSoftmax, x, dim=_sm_dim(x, dim))
