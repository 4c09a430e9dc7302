"""Helpers shared by the convolution and pooling ops (``ops.conv`` / ``ops.pooling``): per-thread
scratch buffers, padding, the 1-d-as-2-d views and argument normalisation."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..autograd.engine import apply


class _Scratch:
    """A throwaway ctx for calling an op's forward directly on arrays."""


def _call(m: Any, op: type, *args: Any, **kw: Any) -> Any:
    """Run ``op`` recorded (on Tensors, for create_graph) or directly on arrays."""
    if m.graph:
        return apply(op, *args, **kw)
    return op.forward(_Scratch(), *args, **kw)


_work = threading.local()


def _buf(slot: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A scratch array for a temporary that never leaves the kernel (one per slot and thread,
    grown as needed). Reusing it avoids a fresh multi-MB allocation per call, which glibc
    serves with new pages (page faults) after it has trimmed the freed ones."""
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
    """Free this thread's scratch buffers (they grow to the largest convolution seen)."""
    _work.__dict__.clear()


def _padded(x: np.ndarray, pads: tuple, value: float = 0.0, slot: str | None = None) -> np.ndarray:
    """x (N, C, H, W) with ``pads`` ((top, bottom), (left, right)) filled with ``value``
    (x itself when there is no padding; in scratch ``slot`` if given)."""
    (t, b), (lf, r) = pads
    if not (t or b or lf or r):
        return x
    N, C, H, W = x.shape
    shape = (N, C, H + t + b, W + lf + r)
    out = np.empty(shape, x.dtype) if slot is None else _buf(slot, shape, x.dtype)
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
