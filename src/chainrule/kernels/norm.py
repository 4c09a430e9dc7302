"""LayerNorm over the last dimension (one warp a row) and BatchNorm's training-mode statistics
per channel (one warp a channel): forwards and backwards."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _launch as L

DW_CHUNK = 64  # rows summed by one thread for the weight/bias gradients


def _rows(x: Any) -> tuple[int, int]:
    if x.ndim == 0:
        raise ValueError("layer_norm: expected at least one dimension")
    D = int(x.shape[-1])
    return (int(x.size) // D if D else 0), D


def layer_norm_forward(
    x: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> tuple[Any, Any, Any]:
    """(y, mean, rstd) for ``x`` of shape (..., D) normalised over its last dim D (PyTorch's
    ``layer_norm`` with ``normalized_shape=(D,)``): ``y = (x - mean) * rstd * weight + bias``,
    ``rstd = 1 / sqrt(biased variance + eps)``. y has x's shape and dtype; mean and rstd have
    shape (R,), R = x.size // D, in the arithmetic dtype (float32; float64 for float64)."""
    R, D = _rows(x)
    extra = tuple(a for a in (weight, bias) if a is not None)
    cp = L.kernel_module(x)
    dt = L.usable(x, *extra) if cp is not None else None
    if dt is None:
        return _forward_reference(x, weight, bias, eps)
    acc = L.acc_dtype(x.dtype)
    y = cp.empty_like(x)
    mean, rstd = cp.empty(R, dtype=acc), cp.empty(R, dtype=acc)
    L.launch_rows(
        "ln_fwd", dt, R,
        (x, x if weight is None else weight, x if bias is None else bias,
         L.i32(weight is not None), L.i32(bias is not None), y, mean, rstd, L.i64(R), L.i64(D),
         L.scalar(eps, dt)),
    )  # fmt: skip
    return y, mean, rstd


def _forward_reference(x: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    R, D = _rows(x)
    acc = L.acc_dtype(x.dtype)
    xa = x.astype(acc).reshape(R, D)
    mean = xa.mean(axis=1) if D else xa.sum(axis=1) * np.nan
    d = xa - mean[:, None]
    rstd = 1 / np.sqrt((d * d).mean(axis=1) + eps) if D else mean.copy()
    y = d * rstd[:, None]
    if weight is not None:
        y = y * weight.astype(acc)
    if bias is not None:
        y = y + bias.astype(acc)
    return y.astype(x.dtype).reshape(x.shape), mean.astype(acc), rstd.astype(acc)


def layer_norm_backward(
    dy: Any,
    x: Any,
    mean: Any,
    rstd: Any,
    weight: Any = None,
    need_weight_grads: bool = True,
) -> tuple[Any, Any, Any]:
    """(dx, dweight, dbias) of ``layer_norm_forward`` given ``dy`` (x's shape) and the saved
    ``mean``/``rstd`` (R,). With ``xhat = (x - mean) rstd`` and ``h = dy * weight``:
    ``dx = rstd (h - mean_D(h) - xhat mean_D(h xhat))``, ``dweight = sum_R(dy xhat)``,
    ``dbias = sum_R(dy)`` (shape (D,), x's dtype; None unless ``need_weight_grads``)."""
    R, D = _rows(x)
    extra = () if weight is None else (weight,)
    cp = L.kernel_module(x)
    dt = L.usable(x, dy, *extra) if cp is not None else None
    if dt is None:
        return _backward_reference(dy, x, mean, rstd, weight, need_weight_grads)
    acc = L.acc_dtype(x.dtype)
    mean = cp.ascontiguousarray(mean, dtype=acc)
    rstd = cp.ascontiguousarray(rstd, dtype=acc)
    dx = cp.empty_like(x)
    L.launch_rows(
        "ln_bwd_dx", dt, R,
        (dy, x, x if weight is None else weight, L.i32(weight is not None), mean, rstd, dx,
         L.i64(R), L.i64(D)),
    )  # fmt: skip
    if not need_weight_grads:
        return dx, None, None
    chunks = max(1, -(-R // DW_CHUNK))
    dw_part = cp.zeros((chunks, D), dtype=acc)
    db_part = cp.zeros((chunks, D), dtype=acc)
    L.launch_flat(
        "ln_bwd_dwdb", dt, chunks * D if R else 0,
        (dy, x, mean, rstd, dw_part, db_part, L.i64(R), L.i64(D), L.i64(DW_CHUNK)),
    )  # fmt: skip
    return dx, dw_part.sum(axis=0).astype(x.dtype), db_part.sum(axis=0).astype(x.dtype)


def _backward_reference(
    dy: Any, x: Any, mean: Any, rstd: Any, weight: Any, need_weight_grads: bool
) -> tuple[Any, Any, Any]:
    R, D = _rows(x)
    acc = L.acc_dtype(x.dtype)
    g = dy.astype(acc).reshape(R, D)
    xhat = (x.astype(acc).reshape(R, D) - mean.astype(acc)[:, None]) * rstd.astype(acc)[:, None]
    h = g * weight.astype(acc) if weight is not None else g
    if D:
        dx = rstd.astype(acc)[:, None] * (
            h - h.mean(axis=1, keepdims=True) - xhat * (h * xhat).mean(axis=1, keepdims=True)
        )
    else:
        dx = h
    dx = dx.astype(x.dtype).reshape(x.shape)
    if not need_weight_grads:
        return dx, None, None
    dw = (g * xhat).sum(axis=0).astype(x.dtype)
    db = g.sum(axis=0).astype(x.dtype)
    return dx, dw, db


# ----------------------------------------------------------------------------- batch norm


def _bn_dims(x: Any) -> tuple[int, int, int]:
    """(N, C, HW) of x (N, C, *): HW the product of the spatial dims (1 for (N, C))."""
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, *), got {tuple(x.shape)}")
    N, C = int(x.shape[0]), int(x.shape[1])
    HW = int(x.size) // (N * C) if N * C else 0
    return N, C, HW


def batch_norm_forward(
    x: Any, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> tuple[Any, Any, Any, Any]:
    """(y, mean, var, invstd) of training-mode BatchNorm of ``x`` (N, C, *) with batch
    statistics per channel over N and the spatial dims: ``y = (x - mean) * invstd * weight +
    bias``, ``invstd = 1 / sqrt(var + eps)``, var biased. y has x's shape and dtype; mean, var
    and invstd have shape (C,) in the arithmetic dtype (float32; float64 for float64)."""
    N, C, HW = _bn_dims(x)
    extra = tuple(a for a in (weight, bias) if a is not None)
    cp = L.kernel_module(x)
    dt = L.usable(x, *extra) if cp is not None and x.size else None
    if dt is None:
        return _bn_forward_reference(x, weight, bias, eps)
    acc = L.acc_dtype(x.dtype)
    mean, var, invstd = (cp.empty(C, dtype=acc) for _ in range(3))
    L.launch_rows(
        "bn_stats", dt, C,
        (x, mean, var, invstd, L.i64(N), L.i64(C), L.i64(HW), L.scalar(eps, dt)),
    )  # fmt: skip
    y = cp.empty_like(x)
    L.launch_flat(
        "bn_apply", dt, x.size,
        (x, x if weight is None else weight, x if bias is None else bias,
         L.i32(weight is not None), L.i32(bias is not None), mean, invstd, y, L.i64(x.size),
         L.i64(C), L.i64(HW)),
    )  # fmt: skip
    return y, mean, var, invstd


def _bn_forward_reference(x: Any, weight: Any, bias: Any, eps: float) -> tuple:
    N, C, HW = _bn_dims(x)
    acc = L.acc_dtype(x.dtype)
    xa = x.astype(acc).reshape(N, C, HW)
    mean = xa.mean(axis=(0, 2))
    d = xa - mean[:, None]
    var = (d * d).mean(axis=(0, 2))
    invstd = 1 / np.sqrt(var + eps)
    y = d * invstd[:, None]
    if weight is not None:
        y = y * weight.astype(acc)[:, None]
    if bias is not None:
        y = y + bias.astype(acc)[:, None]
    return y.astype(x.dtype).reshape(x.shape), mean, var, invstd


def batch_norm_backward(
    dy: Any,
    x: Any,
    mean: Any,
    invstd: Any,
    weight: Any = None,
    need_input_grad: bool = True,
    need_weight_grads: bool = True,
) -> tuple[Any, Any, Any]:
    """(dx, dweight, dbias) of training-mode ``batch_norm_forward`` given ``dy`` (x's shape)
    and the saved per-channel ``mean``/``invstd`` (C,). With ``xhat = (x - mean) invstd`` and
    sums over each channel's M = N * HW values: ``dx = invstd * weight * (dy - sum(dy) / M -
    xhat * sum(dy xhat) / M)``, ``dweight = sum(dy xhat)``, ``dbias = sum(dy)`` (shape (C,),
    x's dtype). dx is None unless ``need_input_grad``; dweight and dbias are None unless
    ``need_weight_grads``."""
    N, C, HW = _bn_dims(x)
    extra = () if weight is None else (weight,)
    cp = L.kernel_module(x)
    if cp is not None and dy.dtype == x.dtype and dy.shape == x.shape:
        dy = cp.ascontiguousarray(dy)  # e.g. the broadcast gradient of a sum
    dt = L.usable(x, dy, *extra) if cp is not None and x.size else None
    if dt is None:
        return _bn_backward_reference(dy, x, mean, invstd, weight, need_input_grad, need_weight_grads)  # fmt: skip
    acc = L.acc_dtype(x.dtype)
    mean = cp.ascontiguousarray(mean.reshape(C), dtype=acc)
    invstd = cp.ascontiguousarray(invstd.reshape(C), dtype=acc)
    s, sx = cp.empty(C, dtype=acc), cp.empty(C, dtype=acc)
    L.launch_rows("bn_bwd_sums", dt, C, (dy, x, mean, invstd, s, sx, L.i64(N), L.i64(C), L.i64(HW)))
    dx = None
    if need_input_grad:
        dx = cp.empty_like(x)
        L.launch_flat(
            "bn_bwd_dx", dt, x.size,
            (dy, x, x if weight is None else weight, L.i32(weight is not None), mean, invstd, s,
             sx, dx, L.i64(x.size), L.i64(C), L.i64(HW), L.i64(N * HW)),
        )  # fmt: skip
    if not need_weight_grads:
        return dx, None, None
    return dx, sx.astype(x.dtype), s.astype(x.dtype)


def _bn_backward_reference(
    dy: Any, x: Any, mean: Any, invstd: Any, weight: Any, need_dx: bool, need_wb: bool
) -> tuple[Any, Any, Any]:
    N, C, HW = _bn_dims(x)
    acc = L.acc_dtype(x.dtype)
    g = dy.astype(acc).reshape(N, C, HW)
    r = invstd.astype(acc).reshape(C, 1)
    xhat = (x.astype(acc).reshape(N, C, HW) - mean.astype(acc).reshape(C, 1)) * r
    s, sx = g.sum(axis=(0, 2)), (g * xhat).sum(axis=(0, 2))
    dx = None
    if need_dx:
        M = N * HW
        k = r * weight.astype(acc).reshape(C, 1) if weight is not None else r
        dx = (k * (g - (s / M)[:, None] - xhat * (sx / M)[:, None])).astype(x.dtype)
        dx = dx.reshape(x.shape)
    if not need_wb:
        return dx, None, None
    return dx, sx.astype(x.dtype), s.astype(x.dtype)
