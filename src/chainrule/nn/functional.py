"""Stateless layers, activations and losses (``chainrule.nn.functional as F``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import apply
from ..ops.activation import (  # noqa: F401
    elu,
    gelu,
    hardtanh,
    leaky_relu,
    sign_ste,
    silu,
    softplus,
    step,
)
from ..ops.conv import (  # noqa: F401
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
)
from ..ops.elementwise import where  # noqa: F401
from ..ops.linear import bilinear, linear  # noqa: F401
from ..ops.loss import (
    MSE,
    NLL,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CrossEntropy,
    check_weight,
)
from ..ops.movement import pad  # noqa: F401
from ..ops.nn import log_softmax, softmax  # noqa: F401
from ..ops.norm import batch_norm, group_norm, layer_norm  # noqa: F401
from ..ops.pooling import (  # noqa: F401
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from ..ops.unary import relu, sigmoid, tanh  # noqa: F401
from ..ops.util import promote_pair
from ..random import _gen
from ..tensor import Tensor, wrap
from .layers.embedding import embedding  # noqa: F401

# ----------------------------------------------------------------------------- dropout


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (in training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = _gen(None, input.device).random(input.shape) >= p  # drawn where the input lives
    mask = keep.astype(input.data.dtype) * (1.0 / (1.0 - p))
    return input * wrap(mask.astype(input.data.dtype, copy=False))


# ----------------------------------------------------------------------------- losses


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction ('none', 'mean' or 'sum')")


def _same_shape(input: Tensor, target: Tensor, name: str) -> None:  # noqa: A002
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"{name}: target size {tuple(target.shape)} is different from input size "
            f"{tuple(input.shape)}; they must match (reshape one, or check the batch)"
        )


def _t(x: Any, like: Tensor) -> Tensor:
    """``x`` as a Tensor; array-likes become ``like``'s dtype, on its device."""
    return x if isinstance(x, Tensor) else wrap(_arr(x, like, like.data.dtype))


def _arr(x: Any, like: Tensor, dtype: Any = None) -> Any:
    """An array-like argument as an array on ``like``'s device (arrays already there pass)."""
    return backend.array_module(like.data).asarray(x, dtype=dtype)


def _legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    """PyTorch's deprecated ``size_average`` / ``reduce`` arguments, as a ``reduction``."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
        UserWarning,
        stacklevel=3,
    )
    return reduction


def _weighted(loss: Tensor, weight: Any, reduction: str, mean_over_weight: bool = True) -> Tensor:
    """An elementwise ``weight`` of the loss's shape (PyTorch's mse/l1/huber ``weight``); 'mean'
    divides by the weights' sum (mse, l1) or by the element count (huber), as PyTorch."""
    w = _t(weight, loss)
    if tuple(w.shape) != tuple(loss.shape):
        raise ValueError("Weights and input must have the same size.")
    loss = loss * w
    if reduction == "mean" and mean_over_weight:
        return loss.sum() / w.sum()
    return _reduce(loss, reduction)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:  # noqa: A002
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _t(target, input)
    _same_shape(input, target, "mse_loss")
    if weight is not None:
        _check_reduction(reduction)
        d = input - target
        return _weighted(d * d, weight, reduction)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{reduction} is not a valid value for reduction ('none', 'mean' or 'sum')"
        )
    if input.data.dtype is not target.data.dtype:
        input, target = promote_pair(input, target)
    return apply(MSE, input, target, reduction=reduction)


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:  # noqa: A002
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _t(target, input)
    _same_shape(input, target, "l1_loss")
    if weight is not None:
        _check_reduction(reduction)
        return _weighted((input - target).abs(), weight, reduction)
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:  # noqa: A002
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    target = _t(target, input)
    _same_shape(input, target, "smooth_l1_loss")
    d = (input - target).abs()
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:  # noqa: A002
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    target = _t(target, input)
    _same_shape(input, target, "huber_loss")
    d = (input - target).abs()
    loss = where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    if weight is not None:
        _check_reduction(reduction)
        return _weighted(loss, weight, reduction, mean_over_weight=False)
    return _reduce(loss, reduction)


def cross_entropy(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits ``input`` (N, C) / (N, C, d...) / (C,) against class indices or
    class probabilities (a float target of the input's shape). Log-sum-exp keeps it finite for
    logits of any size."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    target = target if isinstance(target, Tensor) else wrap(_arr(target, input))
    cdim = 1 if input.ndim > 1 else 0
    C = input.shape[cdim]
    w = (
        weight.data
        if isinstance(weight, Tensor)
        else (None if weight is None else _arr(weight, input))
    )
    check_weight(w, C, "cross_entropy")
    if dtypes.is_floating(target.data.dtype):  # class probabilities
        _same_shape(input, target, "cross_entropy")
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / C
        lsm = log_softmax(input, cdim)
        if w is not None:
            lsm = lsm * wrap(
                w.reshape((C,) + (1,) * (input.ndim - cdim - 1)).astype(input.data.dtype)
            )
        loss = -(lsm * target).sum(cdim)
        if reduction == "mean":
            if input.data.size == 0:  # 0/0, as PyTorch
                return loss.sum() * float("nan")
            return loss.sum() / (input.data.size // C) if input.ndim > 1 else loss
        return _reduce(loss, reduction)
    nll = apply(CrossEntropy, input, target.data, w, ignore_index=ignore_index, reduction=reduction)
    if not label_smoothing:
        return nll
    lsm = log_softmax(input, cdim)
    t = target.data
    ignore = t == ignore_index
    if w is not None:
        lsm = lsm * wrap(w.reshape((C,) + (1,) * (input.ndim - cdim - 1)).astype(input.data.dtype))
    # masked (not multiplied by 0), so that ignored targets get an exact 0 gradient
    smooth = where(wrap(ignore), 0.0, -lsm.sum(cdim))
    if reduction == "mean" and type(t) is not np.ndarray:
        smooth = smooth.sum() / wrap(_smoothing_divisor(t, ignore, w, input.data.dtype))
    elif reduction == "mean":
        if w is not None:
            denom = float(w[t[~ignore]].sum())
        else:
            denom = float((~ignore).sum())
        # every target ignored (or weighted 0): 0/0 = NaN as in PyTorch, without a 1/0 in backward
        smooth = smooth.sum() / denom if denom else smooth.sum() * float("nan")
    elif reduction == "sum":
        smooth = smooth.sum()
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / C)


def _smoothing_divisor(t: Any, ignore: Any, w: Any, dtype: np.dtype) -> Any:
    """The mean's divisor of the smoothing term on a device, without a sync (a 0-d array): the
    weight of the kept targets (their count without weights); NaN instead of 0 (every target
    ignored: 0/0 = NaN as in PyTorch, a NaN gradient rather than a 1/0)."""
    keep = ~ignore
    if w is None:
        d = keep.sum()
    else:
        # (a target out of range, made NaN by the loss itself, must not fail the gather)
        d = (w.take(np.clip(np.where(ignore, 0, t), 0, w.shape[0] - 1)) * keep).sum()
    return np.where(d == 0, np.nan, d).astype(dtype)


def nll_loss(
    input: Tensor,  # noqa: A002
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` at class indices ``target``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    t = target.data if isinstance(target, Tensor) else _arr(target, input)
    w = (
        weight.data
        if isinstance(weight, Tensor)
        else (None if weight is None else _arr(weight, input))
    )
    return apply(NLL, input, t, w, ignore_index=ignore_index, reduction=reduction)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:  # noqa: A002
    """-(y log p + (1 - y) log(1 - p)); the logs are clamped at -100 as in PyTorch."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _t(target, input)
    _same_shape(input, target, "binary_cross_entropy")
    _check_reduction(reduction)
    w = _constant(weight, "binary_cross_entropy", "weight", input)
    return apply(BinaryCrossEntropy, input, target, w, reduction=reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:  # noqa: A002
    """BCE on logits, computed stably: (1 - y) x + (1 + (pw - 1) y) log(1 + exp(-x))."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _t(target, input)
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    _check_reduction(reduction)
    name = "binary_cross_entropy_with_logits"
    w = _constant(weight, name, "weight", input)
    pw = _constant(pos_weight, name, "pos_weight", input)
    return apply(BinaryCrossEntropyWithLogits, input, target, w, pw, reduction=reduction)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"{reduction} is not a valid value for reduction ('none', 'mean' or 'sum')"
        )


def _constant(t: Any, name: str, arg: str, like: Tensor | None = None) -> Any:
    """A weight argument as an array; PyTorch does not differentiate it and neither do we."""
    if t is None:
        return None
    if isinstance(t, Tensor):
        if t.requires_grad:
            from ..autograd.grad_mode import state  # noqa: PLC0415

            if state.grad_enabled:
                raise RuntimeError(
                    f"The function '{name}' is not differentiable with respect to argument "
                    f"'{arg}'. This input cannot have requires_grad True."
                )
        return t.data
    return np.asarray(t) if like is None else _arr(t, like)


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:  # noqa: A002
    """KL(target || exp(input)) pointwise, for log-probabilities ``input``; 'batchmean' divides
    the sum by the batch size (the true KL divergence)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _t(target, input)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        safe = where(target > 0, target, 1.0)
        loss = where(target > 0, target * (safe.log() - input), 0.0)
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    t = tensor.data
    if t.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor")
    n = int(t.max()) + 1 if num_classes == -1 else num_classes
    if t.size and (t.min() < 0 or t.max() >= n):
        raise RuntimeError(f"one_hot: class values must be in [0, {n - 1}]")
    return wrap(backend.array_module(t).eye(n, dtype=np.int64)[t])


from .layers.attention import scaled_dot_product_attention  # noqa: E402, F401
