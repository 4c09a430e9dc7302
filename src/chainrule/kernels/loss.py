"""Softmax + cross-entropy over class indices: the forward (per-row log-sum-exp and loss) in one
kernel, the backward ``coef * (softmax - onehot)`` in one pass over the logits.

Logits are (N, C) (the op layer flattens (N, C, d1, ...) first); targets are N class indices;
``weight`` is C per-class weights or None; rows whose target is ``ignore_index`` give 0 and do
not count in the mean. A target outside [0, C) gives NaN in the loss and the gradient (the
kernels cannot raise; ``ops.loss`` relies on the NaN on CUDA, and checks on the host only in its
strict mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from . import _launch as L

_REDUCTIONS = ("mean", "sum", "none")


def _check(x: Any, target: Any, weight: Any, reduction: str) -> None:
    if x.ndim != 2 or target.shape != (x.shape[0],):
        raise ValueError(f"expected logits (N, C) and targets (N,), got {x.shape}, {target.shape}")
    if weight is not None and weight.shape != (x.shape[1],):
        raise ValueError(f"expected weight of shape ({x.shape[1]},), got {weight.shape}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, not {reduction!r}")


def cross_entropy_forward(
    x: Any,
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[Any, Any, Any]:
    """(loss, stats, total_weight) for logits ``x`` (N, C).

    loss: 0-d ('mean': sum_i w[t_i] (lse_i - x[i, t_i]) / sum_i w[t_i]; 'sum': the numerator)
    or (N,) ('none'), in x's dtype. stats: (2, N), each row's max and log(sum(exp(x - max)))
    (the log-sum-exp in two parts, so that large logits keep the small part), in the arithmetic
    dtype (float32, float64 for float64), kept for the backward; total_weight: 0-d sum of the
    w[t_i] of non-ignored rows (the mean's divisor), same dtype."""
    _check(x, target, weight, reduction)
    N, C = x.shape
    acc = L.acc_dtype(x.dtype)
    cp = L.kernel_module(x)
    dt = L.usable(x, *(() if weight is None else (weight,))) if cp is not None else None
    if dt is None:
        rows, stats, wrow = _forward_reference(x, target, weight, ignore_index)
    else:
        t = cp.ascontiguousarray(target, dtype=np.int64)
        rows, wrow = cp.empty(N, dtype=acc), cp.empty(N, dtype=acc)
        stats = cp.empty((2, N), dtype=acc)
        L.launch_rows(
            "ce_fwd", dt, N,
            (x, t, x if weight is None else weight, L.i32(weight is not None), rows, stats, wrow,
             L.i64(N), L.i64(C), L.i64(ignore_index)),
        )  # fmt: skip
    total = wrow.sum()
    if reduction == "none":
        return rows.astype(x.dtype), stats, total
    loss = rows.sum()
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: NaN, as torch
            loss = loss / total
    return loss.astype(x.dtype), stats, total


def _forward_reference(x: Any, target: Any, weight: Any, ignore_index: int) -> tuple:
    acc = L.acc_dtype(x.dtype)
    xa = x.astype(acc)
    N, C = x.shape
    if N == 0:
        z = xa.sum(axis=1)
        return z, backend.array_module(x).stack([z, z]), z.copy()
    m = xa.max(axis=1, keepdims=True) if C else xa.sum(axis=1, keepdims=True) - np.inf
    shifted = xa - m
    ls = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    t = target.astype(np.int64)
    ignored = t == ignore_index
    bad = ~ignored & ((t < 0) | (t >= C))
    tc = np.where(ignored | bad, 0, t)
    w = 1 if weight is None else weight.astype(acc)[tc]
    w = np.where(ignored, 0, w).astype(acc)
    picked = np.take_along_axis(shifted, tc[:, None], 1)[:, 0] if C else ls[:, 0]
    rows = w * (ls[:, 0] - picked)
    rows = np.where(bad, np.nan, rows).astype(acc)
    w = np.where(bad, np.nan, w).astype(acc)
    stats = backend.array_module(x).stack([m[:, 0], ls[:, 0]]).astype(acc)
    return rows, stats, w


def cross_entropy_backward(
    grad: Any,
    x: Any,
    target: Any,
    stats: Any,
    total_weight: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Any:
    """d loss / d x (N, C) in x's dtype: ``coef_i * (softmax(x_i) - onehot(t_i))`` with
    ``coef_i = w[t_i] * grad / total_weight`` ('mean'), ``w[t_i] * grad`` ('sum') or
    ``w[t_i] * grad[i]`` ('none', grad of shape (N,)); ``stats`` and ``total_weight`` come from
    ``cross_entropy_forward``. Everything stays on the device (no host sync)."""
    _check(x, target, weight, reduction)
    N, C = x.shape
    acc = L.acc_dtype(x.dtype)
    scale = grad.astype(acc)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = scale / total_weight.astype(acc)
    cp = L.kernel_module(x)
    dt = L.usable(x, *(() if weight is None else (weight,))) if cp is not None else None
    if dt is None:
        return _backward_reference(scale, x, target, stats, weight, ignore_index)
    t = cp.ascontiguousarray(target, dtype=np.int64)
    scale = cp.ascontiguousarray(scale.reshape(-1), dtype=acc)
    stats = cp.ascontiguousarray(stats, dtype=acc)
    dx = cp.empty_like(x)
    L.launch_flat(
        "ce_bwd", dt, N * C,
        (x, t, x if weight is None else weight, L.i32(weight is not None), stats, scale,
         L.i64(0 if reduction != "none" else 1), dx, L.i64(N), L.i64(C), L.i64(ignore_index)),
    )  # fmt: skip
    return dx


def _backward_reference(
    scale: Any, x: Any, target: Any, stats: Any, weight: Any, ignore_index: int
) -> Any:
    acc = L.acc_dtype(x.dtype)
    N, C = x.shape
    if N == 0 or C == 0:
        return x.copy()
    t = target.astype(np.int64)
    ignored = t == ignore_index
    bad = ~ignored & ((t < 0) | (t >= C))
    tc = np.where(ignored | bad, 0, t)
    w = 1 if weight is None else weight.astype(acc)[tc]
    coef = np.where(ignored, 0, np.where(bad, np.nan, w * scale)).astype(acc)
    stats = stats.astype(acc)
    p = np.exp((x.astype(acc) - stats[0][:, None]) - stats[1][:, None])
    onehot = backend.array_module(x).arange(C)[None, :] == tc[:, None]
    return (coef[:, None] * (p - onehot)).astype(x.dtype)
