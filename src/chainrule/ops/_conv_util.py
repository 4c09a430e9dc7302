"""Helpers shared by the convolution and pooling ops (``ops.conv`` / ``ops.pooling``): per-thread
scratch buffers, padding, strided views, the 1-d-as-2-d views and argument normalisation.

The helpers take host (NumPy) and device (CuPy) arrays alike; what they create belongs to the
input's array module."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import backend
from ..autograd.engine import apply


class _Scratch:
    """A throwaway ctx for calling an op's forward directly on arrays."""


def _call(m: Any, op: type, *args: Any, **kw: Any) -> Any:
    """Run ``op`` recorded (on Tensors, for create_graph) or directly on arrays."""
    if m.graph:
        return apply(op, *args, **kw)
    return op.forward(_Scratch(), *args, **kw)


_work = threading.local()


def _buf(slot: str, shape: tuple, dtype: np.dtype, xp: Any = np) -> Any:
    """A scratch array of module ``xp`` for a temporary that never leaves the kernel.

    On the host: one per slot and thread, grown as needed. Reusing it avoids a fresh multi-MB
    allocation per call, which glibc serves with new pages (page faults) after it has trimmed
    the freed ones. On a device a fresh array: CuPy's memory pool already recycles blocks
    without page faults, and a cached buffer would pin GPU memory outside that pool (and to
    whichever GPU was current when it was made)."""
    if xp is not np:
        return xp.empty(shape, dtype)
    d = _work.__dict__
    n = 1
    for i in shape:
        n *= i
    a = d.get(slot)
    if a is None or a.dtype != dtype or a.size < n:
        a = d[slot] = np.empty(max(n, 1), dtype)
    return a[:n].reshape(shape)


def _as2d(a: np.ndarray) -> np.ndarray:
    return a[:, :, None, :] if a.ndim == 3 else a


def _sz2(sz: tuple) -> tuple:
    return (1, *sz) if len(sz) == 1 else tuple(sz)


def release_workspace() -> None:
    """Free this thread's host scratch buffers (they grow to the largest convolution seen)."""
    _work.__dict__.clear()


def _strided(x: Any, shape: tuple, strides: tuple) -> Any:
    """A read-only strided view of ``x`` (``as_strided`` of x's array module; CuPy's has no
    ``writeable`` flag, its views are only ever read here)."""
    if type(x) is np.ndarray:
        return as_strided(x, shape, strides, writeable=False)
    return backend.array_module(x).lib.stride_tricks.as_strided(x, shape, strides)


def _padded(x: Any, pads: tuple, value: float = 0.0, slot: str | None = None) -> Any:
    """x (N, C, H, W) with ``pads`` ((top, bottom), (left, right)) filled with ``value``
    (x itself when there is no padding; in scratch ``slot`` if given)."""
    (t, b), (lf, r) = pads
    if not (t or b or lf or r):
        return x
    N, C, H, W = x.shape
    shape = (N, C, H + t + b, W + lf + r)
    xp = backend.array_module(x)
    out = xp.empty(shape, x.dtype) if slot is None else _buf(slot, shape, x.dtype, xp)
    out[:, :, :t] = value
    out[:, :, t + H :] = value
    out[:, :, t : t + H, :lf] = value
    out[:, :, t : t + H, lf + W :] = value
    out[:, :, t : t + H, lf : lf + W] = x
    return out


def _tuple(v: Any, nd: int, what: str) -> tuple:
    if isinstance(v, (list, tuple)):
        t = tuple(int(i) for i in v)
        if len(t) == 1 and nd > 1:
            t = t * nd
        if len(t) != nd:
            raise RuntimeError(
                f"expected {what} to be a single integer value or a list of {nd} values, got {list(v)}"
            )
        return t
    return (int(v),) * nd


def _dims2(t: tuple) -> tuple:
    return (1, *t) if len(t) == 1 else t
