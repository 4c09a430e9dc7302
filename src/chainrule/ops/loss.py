"""Fused loss primitives: cross-entropy (log-softmax + negative log-likelihood in one node) and
NLL. Both take class indices with optional per-class ``weight`` and ``ignore_index``; the class
dim is dim 1 (or dim 0 for an unbatched input), as in PyTorch.

Target range on CUDA: checking class indices (or binary cross-entropy's [0, 1] range) on the
host would stop the GPU every batch (a device-to-host copy of the check's result). So on device
arrays a target outside [0, C) (and not ``ignore_index``), or a binary cross-entropy input or
target outside [0, 1], is not checked: it makes the loss NaN (its element, and the mean and sum)
and its gradient NaN, never a silently wrong number. The check that raises (the CPU's error,
naming the bad target and the class count) runs on CUDA too when ``detect_anomaly`` is on or
the environment variable ``CHAINRULE_CUDA_STRICT=1`` is set (one sync per call). On the CPU it
always runs.
"""

from __future__ import annotations

import os

import numpy as np

from .. import backend, kernels
from ..autograd.engine import Op
from ..autograd.errors import OpError
from ..autograd.grad_mode import state
from ..tensor import Tensor
from . import unary as U


class TargetIndexError(OpError, IndexError):
    """A class index outside [0, C): an IndexError (as PyTorch) that the engine passes through."""


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


def _same_device(name: str, x: object, *arrays: object) -> None:
    """Raise PyTorch's mixed-devices error when a target / weight array is not on ``x``'s device
    (they reach the op as arrays, which the engine cannot move)."""
    t = type(x)
    if any(a is not None and type(a) is not t for a in arrays):
        err = backend.same_device_error(name, [x, *(a for a in arrays if a is not None)])
        if err is not None:
            raise OpError(str(err))


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


def check_weight(weight: np.ndarray | None, C: int, name: str) -> None:
    if weight is not None and tuple(weight.shape) != (C,):
        raise RuntimeError(
            f"{name}: weight tensor should be defined either for all {C} classes or no classes "
            f"but got weight tensor of shape: {tuple(weight.shape)}"
        )


def strict_device_checks() -> bool:
    """Whether device ops run the checks that need a device-to-host sync (target ranges):
    under ``detect_anomaly`` or with ``CHAINRULE_CUDA_STRICT=1``."""
    return state.anomaly is not None or os.environ.get("CHAINRULE_CUDA_STRICT", "0") not in (
        "",
        "0",
    )


def _range_error(tc: np.ndarray, C: int, name: str) -> TargetIndexError:
    bad = int(tc[(tc < 0) | (tc >= C)][0])
    return TargetIndexError(
        f"{name}: target {bad} is out of bounds: class indices must be in [0, {C - 1}]"
    )


def _check_device_targets(t: object, C: int, ignore_index: int, name: str) -> None:
    """The CPU's range check for device targets: one sync (strict mode only)."""
    tc = np.where(t != ignore_index, t, 0)
    if tc.size and bool(((tc < 0) | (tc >= C)).any()):
        raise _range_error(tc, C, name)


def _weights(
    t: np.ndarray, C: int, weight: np.ndarray | None, ignore_index: int, dtype: np.dtype, name: str
) -> tuple:
    check_weight(weight, C, name)
    valid = t != ignore_index
    if type(t) is not np.ndarray:
        return _device_weights(t, C, weight, valid, dtype, name)
    tc = np.where(valid, t, 0) if not valid.all() else t
    if tc.size and (tc.min() < 0 or tc.max() >= C):
        raise _range_error(tc, C, name)
    w = weight[tc] * valid if weight is not None else valid
    return tc, w.astype(dtype, copy=False), valid


def _device_weights(
    t: object, C: int, weight: object, valid: object, dtype: np.dtype, name: str
) -> tuple:
    """``_weights`` without a sync: an out-of-range target gets a NaN weight (a NaN loss and
    gradient) and index 0; strict mode raises as the CPU does."""
    tc = np.where(valid, t, 0)
    bad = (tc < 0) | (tc >= C)
    if strict_device_checks() and tc.size and bool(bad.any()):
        raise _range_error(tc, C, name)
    tc = np.where(bad, 0, tc)
    w = weight[tc] * valid if weight is not None else valid
    w = np.where(bad, np.nan, w.astype(dtype, copy=False)).astype(dtype, copy=False)
    return tc, w, valid


def _mean(losses: np.ndarray, w: np.ndarray, dtype: np.dtype) -> tuple:
    """The weighted mean (NaN when every target is ignored, as in PyTorch) and its divisor."""
    denom = w.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar(losses.sum() / denom, dtype, losses), denom


def _scalar(v: object, dtype: np.dtype, like: object) -> object:
    """The reduced value ``v`` as a 0-d array of ``dtype`` on ``like``'s device."""
    return backend.array_module(like).asarray(v, dtype)


def _coeff(w: np.ndarray, valid: np.ndarray, reduction: str, denom: object) -> np.ndarray:
    """d loss_sum / d loss_i: w_i (/ the weight sum for 'mean'); exactly 0 for ignored targets
    (PyTorch leaves them untouched, even when the weight sum is 0)."""
    if reduction != "mean":
        return w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, w / denom, 0).astype(w.dtype, copy=False)


class CrossEntropy(Op):
    """loss_i = -w[t_i] * log_softmax(x)_i[t_i]; mean divides by the sum of the w[t_i].
    d loss / d x_i = coeff_i * (softmax(x_i) - onehot(t_i)).

    x: (N, C), (N, C, d...) or (C,); target: x's shape without the class dim. On device arrays
    the forward and the array backward are the fused kernels ``kernels.cross_entropy_forward`` /
    ``cross_entropy_backward`` (one pass each, no host sync; an out-of-range target gives NaN,
    see the module docstring); a ``create_graph`` backward recomputes the softmax from x."""

    save_inputs = True
    name = "cross_entropy"

    def forward(ctx, x, target, weight, ignore_index, reduction):
        _same_device("cross_entropy", x, target, weight)
        _check_target(x, target, "cross_entropy")
        xl, t = _flatten_classes(x, target)
        C = xl.shape[1]
        if type(xl) is not np.ndarray:
            ctx.lsm, ctx.reduction, ctx.shape = None, reduction, x.shape
            return _fused_forward(ctx, xl, t, weight, ignore_index, target.shape)
        tc, w, valid = _weights(t, C, weight, ignore_index, x.dtype, "cross_entropy")
        s = xl - np.amax(xl, axis=1, keepdims=True) if xl.size else xl.copy()
        s -= np.log(np.sum(np.exp(s), axis=1, keepdims=True))
        rows = backend.array_module(tc).arange(len(tc))
        losses = -s[rows, tc] * w
        ctx.lsm, ctx.tc, ctx.w, ctx.reduction, ctx.shape = s, tc, w, reduction, x.shape
        ctx.valid, ctx.denom = valid, None
        if reduction == "mean":
            out, ctx.denom = _mean(losses, w, x.dtype)
            return out
        if reduction == "sum":
            return _scalar(losses.sum(), x.dtype, losses)
        return losses.reshape(target.shape)

    def backward(ctx, g, m):
        if ctx.lsm is None:  # the fused device forward
            if not m.graph:
                return _fused_backward(ctx, g, m), None, None
            _fused_graph_state(ctx)
        coeff = _coeff(ctx.w, ctx.valid, ctx.reduction, ctx.denom)
        coeff = (
            m.reshape(g, (-1, 1)) * coeff[:, None]
            if ctx.reduction == "none"
            else g * coeff[:, None]
        )
        xp = backend.array_module(ctx.tc)
        rows = xp.arange(len(ctx.tc))
        if not m.graph:  # softmax - onehot, in place in one fresh array
            p = np.exp(ctx.lsm)
            p[rows, ctx.tc] -= 1
            p *= coeff
            return _unflatten_classes(p, ctx.shape, m), None, None
        x = ctx.inputs[0]  # differentiable: recompute the softmax from the input tensor
        xl = _unflatten_inverse(x, m)
        p = m.exp(m.log_softmax(xl, 1))
        onehot = xp.zeros(tuple(xl.shape), ctx.w.dtype)
        onehot[rows, ctx.tc] = 1
        return _unflatten_classes((p - onehot) * coeff, ctx.shape, m), None, None


def _fused_forward(
    ctx: object,
    xl: object,
    t: object,
    weight: object,
    ignore_index: int,
    tshape: tuple,
) -> object:
    """CrossEntropy.forward on device arrays: ``xl`` (N, C) logits, ``t`` (N,) targets; the
    loss has ``tshape`` for reduction 'none'."""
    reduction = ctx.reduction
    C = xl.shape[1]
    check_weight(weight, C, "cross_entropy")
    if strict_device_checks():
        _check_device_targets(t, C, ignore_index, "cross_entropy")
    if weight is not None:
        weight = weight.astype(xl.dtype, copy=False)  # the CPU weighs in x's dtype too
    loss, lse, total = kernels.cross_entropy_forward(xl, t, weight, ignore_index, reduction)
    ctx.fused = (xl, t, weight, ignore_index, lse, total)
    return loss.reshape(tshape) if reduction == "none" else loss


def _fused_backward(ctx: object, g: object, m: object) -> object:
    xl, t, weight, ignore_index, lse, total = ctx.fused
    if ctx.reduction == "none":
        g = g.reshape(-1)
    dx = kernels.cross_entropy_backward(g, xl, t, lse, total, weight, ignore_index, ctx.reduction)
    return _unflatten_classes(dx, ctx.shape, m)


def _fused_graph_state(ctx: object) -> None:
    """What the create_graph rule needs (target indices, per-row weights), from the fused
    forward's saved targets; computed only when such a backward runs."""
    xl, t, weight, ignore_index, _, _ = ctx.fused
    ctx.tc, ctx.w, ctx.valid = _weights(
        t, xl.shape[1], weight, ignore_index, xl.dtype, "cross_entropy"
    )
    ctx.denom = ctx.w.sum() if ctx.reduction == "mean" else None


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

    name = "nll_loss"

    def forward(ctx, x, target, weight, ignore_index, reduction):
        _same_device("nll_loss", x, target, weight)
        _check_target(x, target, "nll_loss")
        xl, t = _flatten_classes(x, target)
        tc, w, valid = _weights(t, xl.shape[1], weight, ignore_index, x.dtype, "nll_loss")
        losses = -xl[backend.array_module(tc).arange(len(tc)), tc] * w
        ctx.tc, ctx.w, ctx.reduction, ctx.shape, ctx.C = tc, w, reduction, x.shape, xl.shape[1]
        ctx.valid, ctx.denom = valid, None
        if reduction == "mean":
            out, ctx.denom = _mean(losses, w, x.dtype)
            return out
        if reduction == "sum":
            return _scalar(losses.sum(), x.dtype, losses)
        return losses.reshape(target.shape)

    def backward(ctx, g, m):
        coeff = _coeff(ctx.w, ctx.valid, ctx.reduction, ctx.denom)
        xp = backend.array_module(ctx.tc)
        onehot = xp.zeros((len(ctx.tc), ctx.C), ctx.w.dtype)
        onehot[xp.arange(len(ctx.tc)), ctx.tc] = -1
        scaled = onehot * coeff[:, None]
        gg = m.reshape(g, (-1, 1)) * scaled if ctx.reduction == "none" else g * scaled
        return _unflatten_classes(gg, ctx.shape, m), None, None


# ----------------------------------------------------------------------------- binary


def _reduce(loss: np.ndarray, reduction: str, dtype: np.dtype) -> np.ndarray:
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return _scalar(loss.sum() / loss.size, dtype, loss)
    if reduction == "sum":
        return _scalar(loss.sum(), dtype, loss)
    return loss.astype(dtype, copy=False)


def _bwd_scale(g: object, ctx: object, m: object) -> object:
    """The upstream gradient broadcast to the loss's elements (divided by their count for
    'mean'), times the weight."""
    if ctx.reduction == "mean":
        g = g / ctx.n
    if ctx.weight is not None:
        g = g * ctx.weight
    return g


def _clamp_min(v: object, lo: float) -> object:
    return v.clamp(min=lo) if isinstance(v, Tensor) else np.maximum(v, lo)


def _sigmoid(x: object) -> object:
    return U.sigmoid(x) if isinstance(x, Tensor) else U.Sigmoid.forward(None, x)


def _log_sigmoid(x: object) -> object:
    """min(x, 0) - log1p(exp(-|x|)): finite for any x."""
    if isinstance(x, Tensor):
        return x.clamp(max=0) - (-x.abs()).exp().log1p()
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


# PyTorch's EPSILON is 1e-12 as a float32, in every dtype
_BCE_EPS = float(np.float32(1e-12))


class BinaryCrossEntropy(Op):
    """loss = -w (y max(log p, -100) + (1 - y) max(log(1 - p), -100)) as PyTorch, with its
    gradients: d/dp = w (p - y) / max(p (1 - p), eps) (finite at p = 0 and 1) and
    d/dy = w (log(1 - p) - log p). ``weight`` is a constant (not differentiated)."""

    save_inputs = True
    name = "binary_cross_entropy"

    def forward(ctx, x, y, weight, reduction):
        _same_device("binary_cross_entropy", x, weight)
        ctx.nan = None
        if type(x) is np.ndarray or strict_device_checks():
            # one device-to-host sync for both checks (on the CPU: no cost to speak of)
            if x.size and not bool(((x >= 0) & (x <= 1)).all() & ((y >= 0) & (y <= 1)).all()):
                _bce_range_error(x, y)
        else:  # no sync: an input or target outside [0, 1] makes its loss and gradient NaN
            bad = (x < 0) | (x > 1) | (y < 0) | (y > 1)
            ctx.nan = np.where(bad, np.nan, 0).astype(x.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):  # (invalid: device NaN elements)
            loss = (y - 1) * np.maximum(np.log1p(-x), -100) - y * np.maximum(np.log(x), -100)
        if ctx.nan is not None:
            loss = loss + ctx.nan
        if weight is not None:
            weight = weight.astype(x.dtype, copy=False)
            loss = loss * weight
        ctx.weight, ctx.reduction, ctx.n = weight, reduction, loss.size
        return _reduce(loss, reduction, x.dtype)

    def backward(ctx, g, m):
        x, y = ctx.inputs[0], ctx.inputs[1]
        g = _bwd_scale(g, ctx, m)
        if ctx.nan is not None:
            g = g + ctx.nan
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = g * (x - y) / _clamp_min((1 - x) * x, _BCE_EPS)
        if ctx.needs_input_grad[1]:
            if isinstance(x, Tensor):
                gy = g * ((-x).log1p() - x.log())
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    gy = g * (np.log1p(-x) - np.log(x))
        return gx, gy


def _bce_range_error(x: object, y: object) -> None:
    if not bool(((x >= 0) & (x <= 1)).all()):
        raise RuntimeError(
            "binary_cross_entropy: all elements of input should be between 0 and 1 (apply a "
            "sigmoid, or use binary_cross_entropy_with_logits)"
        )
    raise RuntimeError("binary_cross_entropy: all elements of target should be between 0 and 1")


class BinaryCrossEntropyWithLogits(Op):
    """loss = w ((1 - y) x - (1 + (pw - 1) y) log_sigmoid(x)) as PyTorch, stable for any x;
    d/dx = w ((pw y + 1 - y) sigmoid(x) - pw y), d/dy = w (log_sigmoid(-x) - pw log_sigmoid(x)).
    ``weight`` and ``pos_weight`` are constants (not differentiated)."""

    save_inputs = True
    name = "binary_cross_entropy_with_logits"

    def forward(ctx, x, y, weight, pos_weight, reduction):
        _same_device("binary_cross_entropy_with_logits", x, weight, pos_weight)
        ls = _log_sigmoid(x)
        if pos_weight is not None:
            pos_weight = pos_weight.astype(x.dtype, copy=False)
            ls = ls * ((pos_weight - 1) * y + 1)
        loss = (1 - y) * x - ls
        if weight is not None:
            weight = weight.astype(x.dtype, copy=False)
            loss = loss * weight
        ctx.weight, ctx.pos_weight, ctx.reduction, ctx.n = weight, pos_weight, reduction, loss.size
        return _reduce(loss, reduction, x.dtype)

    def backward(ctx, g, m):
        x, y = ctx.inputs[0], ctx.inputs[1]
        pw = ctx.pos_weight
        g = _bwd_scale(g, ctx, m)
        gx = gy = None
        if ctx.needs_input_grad[0]:
            if pw is None:
                gx = g * (_sigmoid(x) - y)
            else:
                t = y * pw
                gx = g * ((t + 1 - y) * _sigmoid(x) - t)
        if ctx.needs_input_grad[1]:
            gy = -(g * x) if pw is None else g * (_log_sigmoid(-x) - _log_sigmoid(x) * pw)
        return gx, gy


class MSE(Op):
    """mean/sum of (x - y)^2 in one node: the regression loss of small networks, where per-node
    cost dominates. d/dx = 2 (x - y) g / n, d/dy = -d/dx."""

    save_inputs = True

    def forward(ctx, x, y, reduction):
        d = x - y
        ctx.reduction = reduction
        if reduction == "none":
            return d * d
        s = np.vdot(d, d) if d.dtype.kind == "f" and d.size else np.add.reduce(d * d, axis=None)
        if reduction == "mean":
            ctx.n = max(d.size, 1)  # an empty mean is NaN; its (empty) gradient needs no scale
            return _scalar(s / d.size if d.size else np.nan, x.dtype, d)
        return _scalar(s, x.dtype, d)

    def backward(ctx, g, m):
        x, y = ctx.inputs
        scale = g * (2.0 / ctx.n) if ctx.reduction == "mean" else g * 2.0
        gx = (x - y) * scale
        return gx, (-gx if ctx.needs_input_grad[1] else None)
