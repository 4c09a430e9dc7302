"""Fused optimiser steps: one kernel per parameter (SGD, Adam/AdamW), in place."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _launch as L


def sgd_step(
    p: Any,
    g: Any,
    buf: Any = None,
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    first: bool = False,
) -> None:
    """PyTorch's SGD update of one parameter ``p`` with gradient ``g`` (same shape), in place:

        g = -g if maximize;  g = g + weight_decay * p
        buf = g  (first step)  or  momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  if nesterov  else  buf      (only when momentum != 0)
        p = p - lr * g

    ``buf`` (p's shape and dtype) is needed when ``momentum != 0``; pass ``first=True`` on the
    step that creates it (its old contents are then ignored). Data and state are stored in p's
    dtype and computed in float32 (float64 for float64)."""
    if momentum and buf is None:
        raise ValueError("sgd_step: momentum needs a momentum buffer (buf)")
    cp = L.kernel_module(p)
    arrays = (p, g) if buf is None else (p, g, buf)
    dt = L.usable(*arrays) if cp is not None else None
    if dt is None:
        _sgd_reference(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first)
        return
    s = lambda v: L.scalar(v, dt)  # noqa: E731
    L.launch_flat(
        "sgd",
        dt,
        p.size,
        (
            p,
            g,
            p if buf is None else buf,  # never read without momentum
            L.i64(p.size),
            s(lr),
            s(momentum),
            s(dampening),
            s(weight_decay),
            L.i32(nesterov),
            L.i32(maximize),
            L.i32(first),
        ),
    )


def _in_acc(p: Any, g: Any, maximize: bool) -> tuple:
    """The accumulation dtype and p, g (negated to maximize) in it: the references' first lines."""
    acc = L.acc_dtype(p.dtype)
    ga = g.astype(acc)
    return acc, p.astype(acc), -ga if maximize else ga


def _sgd_reference(
    p: Any,
    g: Any,
    buf: Any,
    lr: float,
    momentum: float,
    dampening: float,
    wd: float,
    nesterov: bool,
    maximize: bool,
    first: bool,
) -> None:
    acc, pa, ga = _in_acc(p, g, maximize)
    if wd:
        ga = ga + wd * pa
    if momentum:
        b = ga.copy() if first else buf.astype(acc) * momentum + (1 - dampening) * ga
        buf[...] = b.astype(buf.dtype)
        b = buf.astype(acc)
        ga = ga + momentum * b if nesterov else b
    p[...] = (pa - lr * ga).astype(p.dtype)


def adam_step(
    p: Any,
    g: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    max_exp_avg_sq: Any = None,
    *,
    step: float,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled: bool = False,
    amsgrad: bool = False,
    maximize: bool = False,
) -> None:
    """PyTorch's Adam (``decoupled=False``) / AdamW (``decoupled=True``) update of one parameter,
    in place (``_single_tensor_adam``). ``step`` is the step count after this step (1 on the
    first); the states (p's shape and dtype) start as zeros:

        g = -g if maximize
        p = p * (1 - lr * wd)  (AdamW)   or   g = g + wd * p  (Adam)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2
        v_max = max(v_max, v)  (amsgrad; then v_max replaces v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError("adam_step: amsgrad needs max_exp_avg_sq")
    step_size = lr / (1 - beta1**step)
    bc2_sqrt = math.sqrt(1 - beta2**step)
    cp = L.kernel_module(p)
    arrays = (p, g, exp_avg, exp_avg_sq) + ((max_exp_avg_sq,) if amsgrad else ())
    dt = L.usable(*arrays) if cp is not None else None
    if dt is None:
        _adam_reference(
            p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
            step_size, bc2_sqrt, decoupled, amsgrad, maximize,
        )  # fmt: skip
        return
    s = lambda v: L.scalar(v, dt)  # noqa: E731
    L.launch_flat(
        "adam",
        dt,
        p.size,
        (
            p, g, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else exp_avg_sq,
            L.i64(p.size), s(lr), s(beta1), s(beta2), s(eps), s(weight_decay), s(step_size),
            s(bc2_sqrt), L.i32(decoupled), L.i32(amsgrad), L.i32(maximize),
        ),
    )  # fmt: skip


def _adam_reference(
    p: Any,
    g: Any,
    m: Any,
    v: Any,
    vmax: Any,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    wd: float,
    step_size: float,
    bc2_sqrt: float,
    decoupled: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    acc, pa, ga = _in_acc(p, g, maximize)
    if wd:
        if decoupled:
            pa = (pa * (1 - lr * wd)).astype(p.dtype).astype(acc)
        else:
            ga = ga + wd * pa
    w1 = 1 - beta1
    ma = m.astype(acc)
    ma = ma + w1 * (ga - ma) if w1 < 0.5 else ga - (ga - ma) * (1 - w1)  # torch's lerp
    m[...] = ma.astype(m.dtype)
    ma = m.astype(acc)
    va = v.astype(acc) * beta2 + (1 - beta2) * ga * ga
    v[...] = va.astype(v.dtype)
    va = v.astype(acc)
    if amsgrad:
        vmax[...] = np.maximum(vmax.astype(acc), va).astype(vmax.dtype)
        va = vmax.astype(acc)
    denom = np.sqrt(va) / bc2_sqrt + eps
    p[...] = (pa - step_size * (ma / denom)).astype(p.dtype)
