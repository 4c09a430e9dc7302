"""Fused loss primitives: cross-entropy (log-softmax + negative log-likelihood in one node) and
NLL. Both take class indices with optional per-class ``weight`` and ``ignore_index``; the class
dim is dim 1 (or dim 0 for an unbatched input), as in PyTorch."""

from __future__ import annotations

import numpy as np

from ..autograd.engine import Op


def _flatten_classes(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, d...) -> (N*d..., C) and target -> (N*d...,)."""
    if x.ndim == 1:
        return x[None], target.reshape(1)
    if x.ndim == 2:
        return x, target
    C = x.shape[1]
    return np.moveaxis(x, 1, -1).reshape(-1, C), target.reshape(-1)


def _unflatten_classes(g2: np.ndarray | object, shape: tuple, m: object) -> object:
    if len(shape) == 1:
        return m.reshape(g2, shape)
    if len(shape) == 2:
        return g2
    moved = (shape[0],) + shape[2:] + (shape[1],)
    perm = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
    return m.permute(m.reshape(g2, moved), perm)


def _check_target(x: np.ndarray, target: np.ndarray, name: str) -> None:
    if target.dtype.kind not in "iu":
        raise RuntimeError(
            f"{name}: expected class indices of an integer dtype as target, got {target.dtype} "
            "(for class probabilities, pass a float target of the input's shape to cross_entropy)"
        )
    exp = (x.shape[0],) + x.shape[2:] if x.ndim > 1 else ()
    if target.shape != exp:
        raise RuntimeError(
            f"{name}: input of shape {x.shape} needs a target of shape {exp}, got {target.shape}"
        )


def _weights(t: np.ndarray, C: int, weight: np.ndarray | None, ignore_index: int, dtype: np.dtype, name: str) -> tuple:
    valid = t != ignore_index
    tc = np.where(valid, t, 0) if not valid.all() else t
    if tc.size and (tc.min() < 0 or tc.max() >= C):
        bad = tc[(tc < 0) | (tc >= C)][0]
        raise IndexError(f"{name}: target {bad} is out of bounds: class indices must be in [0, {C - 1}]")
    w = (weight[tc] if weight is not None else np.ones(tc.shape, dtype)) * valid
    return tc, w.astype(dtype, copy=False)


class CrossEntropy(Op):
    """loss_i = -w[t_i] * log_softmax(x)_i[t_i]; mean divides by the sum of the w[t_i].
    d loss / d x_i = coeff_i * (softmax(x_i) - onehot(t_i))."""

    save_inputs = True

    def forward(ctx, x, target, weight, ignore_index, reduction):
        _check_target(x, target, "cross_entropy")
        xl, t = _flatten_classes(x, target)
        C = xl.shape[1]
        tc, w = _weights(t, C, weight, ignore_index, x.dtype, "cross_entropy")
        s = xl - np.amax(xl, axis=1, keepdims=True) if xl.size else xl.copy()
        s -= np.log(np.sum(np.exp(s), axis=1, keepdims=True))
        rows = np.arange(len(tc))
        losses = -s[rows, tc] * w
        ctx.lsm, ctx.tc, ctx.w, ctx.reduction, ctx.shape = s, tc, w, reduction, x.shape
        if reduction == "mean":
            ctx.denom = w.sum()
            return np.asarray(losses.sum() / ctx.denom, x.dtype)
        if reduction == "sum":
            return np.asarray(losses.sum(), x.dtype)
        return losses.reshape(target.shape)

    def backward(ctx, g, m):
        coeff = ctx.w
        if ctx.reduction == "mean":
            coeff = coeff / ctx.denom
        coeff = m.reshape(g, (-1, 1)) * coeff[:, None] if ctx.reduction == "none" else g * coeff[:, None]
        if not m.graph:
            p = np.exp(ctx.lsm)
        else:  # differentiable: recompute the softmax from the input tensor
            x = ctx.inputs[0]
            xl = _unflatten_inverse(x, m)
            p = m.exp(m.log_softmax(xl, 1))
        onehot = np.zeros(ctx.lsm.shape, ctx.lsm.dtype)
        onehot[np.arange(len(ctx.tc)), ctx.tc] = 1
        return _unflatten_classes((p - onehot) * coeff, ctx.shape, m), None, None


def _unflatten_inverse(x: object, m: object) -> object:
    """The Tensor version of _flatten_classes for the input (for a differentiable backward)."""
    shape = tuple(x.shape)
    if len(shape) == 1:
        return m.reshape(x, (1, shape[0]))
    if len(shape) == 2:
        return x
    perm = (0,) + tuple(range(2, len(shape))) + (1,)
    return m.reshape(m.permute(x, perm), (-1, shape[1]))


class NLL(Op):
    """loss_i = -w[t_i] * x_i[t_i] for log-probabilities x; linear in x."""

    def forward(ctx, x, target, weight, ignore_index, reduction):
        _check_target(x, target, "nll_loss")
        xl, t = _flatten_classes(x, target)
        tc, w = _weights(t, xl.shape[1], weight, ignore_index, x.dtype, "nll_loss")
        losses = -xl[np.arange(len(tc)), tc] * w
        ctx.tc, ctx.w, ctx.reduction, ctx.shape, ctx.C = tc, w, reduction, x.shape, xl.shape[1]
        if reduction == "mean":
            ctx.denom = w.sum()
            return np.asarray(losses.sum() / ctx.denom, x.dtype)
        if reduction == "sum":
            return np.asarray(losses.sum(), x.dtype)
        return losses.reshape(target.shape)

    def backward(ctx, g, m):
        coeff = ctx.w / ctx.denom if ctx.reduction == "mean" else ctx.w
        onehot = np.zeros((len(ctx.tc), ctx.C), ctx.w.dtype)
        onehot[np.arange(len(ctx.tc)), ctx.tc] = -1
        scaled = onehot * coeff[:, None]
        gg = m.reshape(g, (-1, 1)) * scaled if ctx.reduction == "none" else g * scaled
        return _unflatten_classes(gg, ctx.shape, m), None, None
