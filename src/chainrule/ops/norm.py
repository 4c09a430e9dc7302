"""Normalisation layers as fused primitives, one node each: batch, layer and group norm.

All three standardise x over some axes, xhat = (x - mean) * rstd with rstd = 1/sqrt(var + eps)
(biased variance), then apply a per-feature affine map. They share one backward: with gh the
gradient reaching xhat (g times the weight) and means taken over the normalised axes,

    dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)).

On arrays the rules use the mean and rstd saved by the forward. Under ``create_graph`` they
recompute them from the input Tensor, so that the second derivative through the batch
statistics is exact (gradgradcheck passes).

Batch norm in training mode also updates the running statistics in place, with the unbiased
batch variance, as PyTorch does:

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend, kernels
from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .util import as_float


def _moments(x: np.ndarray, axes: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance over ``axes`` (kept as size-1 dims)."""
    mean = np.mean(x, axis=axes, keepdims=True)
    d = x - mean
    var = np.mean(d * d, axis=axes, keepdims=True)
    return mean, var


def _graph_stats(m: Any, x: Any, axes: tuple, n: int, eps: float) -> tuple[Any, Any]:
    """xhat and rstd recomputed with recorded ops (for a differentiable backward)."""
    mean = m.sum(x, axes, True) * (1.0 / n)
    d = x - mean
    rstd = (m.sum(d * d, axes, True) * (1.0 / n) + eps) ** -0.5
    return d * rstd, rstd


def _normalize_backward(m: Any, gh: Any, xhat: Any, rstd: Any, axes: tuple, n: int) -> Any:
    """The gradient of x given gh = dL/dxhat, where xhat = (x - mean) * rstd over ``axes``."""
    mg = m.sum(gh, axes, True) * (1.0 / n)
    mgx = m.sum(gh * xhat, axes, True) * (1.0 / n)
    return (gh - mg - xhat * mgx) * rstd


def _sum_or_self(m: Any, x: Any, axes: tuple) -> Any:
    # ``m.sum`` over no axes would mean "all axes" on Tensors: nothing to reduce, keep x
    return m.sum(x, axes, False) if axes else x


# ----------------------------------------------------------------------------- batch norm


class BatchNorm(Op):
    """x: (N, C, *), weight/bias: (C,) or None; statistics per channel over N and *.

    In training the batch statistics normalise (and, when running buffers are passed as
    arrays, update them in place); otherwise the running ones do, as constants.

    On device arrays in training the forward and the array backward are the fused kernels
    ``kernels.batch_norm_forward`` / ``batch_norm_backward`` (one warp a channel for the sums,
    then one element-wise pass); ``ctx.mean`` and ``ctx.rstd`` then have shape (C,) in the
    arithmetic dtype. A ``create_graph`` backward keeps the recorded rules.
    """

    save_inputs = True
    name = "batch_norm"

    def forward(
        ctx,
        x: Any,
        w: Any,
        b: Any,
        running_mean: Any = None,
        running_var: Any = None,
        training: Any = True,
        momentum: Any = 0.1,
        eps: Any = 1e-5,
    ) -> Any:
        C = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        n = x.size // C if C else 0
        pshape = (1, C) + (1,) * (x.ndim - 2)
        ctx.axes, ctx.n, ctx.pshape, ctx.eps, ctx.training = axes, n, pshape, eps, training
        ctx.fused = training and type(x) is not np.ndarray and x.size > 0
        if ctx.fused:
            # statistics (C,) and y in two kernels on the device; ctx.mean/rstd stay (C,)
            y, mean, var, rstd = kernels.batch_norm_forward(x, w, b, eps)
            ctx.mean, ctx.rstd = mean, rstd
            _update_running(running_mean, running_var, mean, var, momentum, n)
            return y
        if training:
            mean, var = _moments(x, axes)
            _update_running(running_mean, running_var, mean, var, momentum, n)
        else:
            mean = running_mean.reshape(pshape).astype(x.dtype)  # a copy: the buffer may change
            var = running_var.reshape(pshape).astype(x.dtype)
        rstd = 1 / np.sqrt(var + eps)
        ctx.mean, ctx.rstd = mean, rstd
        y = x - mean
        y *= rstd
        if w is not None:
            y *= w.reshape(pshape)
        if b is not None:
            y += b.reshape(pshape)
        return y

    def backward(ctx, g: Any, m: Any) -> Any:
        x, w, b = ctx.inputs
        need = ctx.needs_input_grad
        axes, n, pshape = ctx.axes, ctx.n, ctx.pshape
        if ctx.fused and not m.graph:
            return _batch_norm_fused_backward(ctx, g, x, w, b, need)
        if ctx.training and m.graph:
            xhat, rstd = _graph_stats(m, x, axes, n, ctx.eps)
        else:
            rstd = ctx.rstd
            xhat = (x - ctx.mean) * rstd
        gx = gw = gb = None
        if need[0]:
            gh = g * m.reshape(w, pshape) if w is not None else g
            if ctx.training:
                gx = _normalize_backward(m, gh, xhat, rstd, axes, n)
            else:
                gx = gh * rstd
        if w is not None and need[1]:
            gw = m.sum(g * xhat, axes, False)
        if b is not None and need[2]:
            gb = m.sum(g, axes, False)
        return gx, gw, gb


def _batch_norm_fused_backward(ctx: Any, g: Any, x: Any, w: Any, b: Any, need: Any) -> tuple:
    """The training-mode array backward on the device: per-channel sums in one kernel, dx in
    one element-wise kernel (only the gradients wanted)."""
    want_w = w is not None and need[1]
    want_b = b is not None and need[2]
    dx, dw, db = kernels.batch_norm_backward(
        g, x, ctx.mean, ctx.rstd, w, need_input_grad=need[0], need_weight_grads=want_w or want_b
    )
    return dx, (dw if want_w else None), (db if want_b else None)


def _update_running(rm: Any, rv: Any, mean: Any, var: Any, momentum: Any, n: int) -> None:
    """The running-statistics update with ``momentum`` a 0-d float64 device array (BatchNorm's
    ``1 / num_batches_tracked`` for momentum=None, kept off the host), or a Python float. Each
    factor is computed in float64 and rounded to the dtype it multiplies, as a Python float is:
    the CPU's numbers."""
    C = mean.size
    if type(momentum) is float:
        if rm is not None:
            rm *= 1 - momentum
            rm += momentum * mean.reshape(C)
        if rv is not None:
            rv *= 1 - momentum
            rv += (momentum * n / max(n - 1, 1)) * var.reshape(C)
        return
    if rm is not None:
        rm *= (1 - momentum).astype(rm.dtype)
        rm += momentum.astype(mean.dtype) * mean.reshape(C)
    if rv is not None:
        rv *= (1 - momentum).astype(rv.dtype)
        rv += (momentum * n / max(n - 1, 1)).astype(var.dtype) * var.reshape(C)


def _verify_batch_size(shape: Sequence[int]) -> None:
    n = shape[0]
    for s in shape[2:]:
        n *= s
    if n == 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {list(shape)}"
        )


def _same_dtype(t: Tensor | None, x: Tensor) -> Tensor | None:
    if t is None or t.data.dtype == x.data.dtype:
        return t
    return t.to(x.dtype)


def _check_size(fn: str, name: str, t: Tensor | None, size: int) -> None:
    if t is not None and t.data.size != size:
        raise RuntimeError(
            f"{fn}: {name} should contain {size} elements not {t.data.size} (shape {tuple(t.shape)})"
        )


def batch_norm(
    input: Tensor,  # noqa: A002
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation of ``input`` (N, C, *) per channel.

    ``training=True`` normalises with the batch statistics and, if ``running_mean`` /
    ``running_var`` are given, updates them in place (exponential average with factor
    ``momentum``, unbiased variance). ``training=False`` normalises with the running statistics.
    ``momentum=None`` (a cumulative average) needs the count of batches seen, which the
    ``BatchNorm`` modules keep in ``num_batches_tracked``; here it must be a number, or a 0-d
    device array on a GPU (their ``1 / num_batches_tracked``, read without a host wait).
    """
    x = as_float(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, *), got {tuple(x.shape)}")
    C = x.shape[1]
    if training:
        _verify_batch_size(x.shape)
        if eps <= 0.0:
            raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    elif eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError(
            "batch_norm: running_mean and running_var must be given when training=False "
            "(evaluation normalises with them)"
        )
    if momentum is None:
        raise TypeError(
            "batch_norm: momentum must be a number; momentum=None (cumulative average) is "
            "handled by the BatchNorm modules, which count the batches"
        )
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        _check_size("batch_norm", name, t, C)
    rm = running_mean.data if running_mean is not None else None
    rv = running_var.data if running_var is not None else None
    out = apply(
        BatchNorm,
        x,
        _same_dtype(weight, x),
        _same_dtype(bias, x),
        running_mean=rm,
        running_var=rv,
        training=bool(training),
        momentum=momentum if backend.is_device_array(momentum) else float(momentum),
        eps=float(eps),
    )
    if training:
        for t in (running_mean, running_var):
            if t is not None:
                t._vc[0] += 1
    return out


# ----------------------------------------------------------------------------- layer norm


class LayerNorm(Op):
    """Normalise over the last ``k`` dims; weight/bias have those dims' shape (or are None).

    On device arrays with k = 1 (the transformer case) the forward and the array backward are
    the fused row kernels ``kernels.layer_norm_forward`` / ``layer_norm_backward``; ``ctx.mean``
    and ``ctx.rstd`` then have shape (rows,) instead of x's with size-1 last dims."""

    save_inputs = True
    name = "layer_norm"

    def forward(ctx, x: Any, w: Any, b: Any, k: Any, eps: Any) -> Any:
        axes = tuple(range(x.ndim - k, x.ndim))
        n = int(np.prod(x.shape[x.ndim - k :]))
        ctx.axes, ctx.lead, ctx.n, ctx.eps = axes, tuple(range(x.ndim - k)), n, eps
        ctx.fused = type(x) is not np.ndarray and k == 1 and x.size > 0
        if ctx.fused:
            y, ctx.mean, ctx.rstd = kernels.layer_norm_forward(x, w, b, eps)
            return y
        mean, var = _moments(x, axes)
        rstd = 1 / np.sqrt(var + eps)
        ctx.mean, ctx.rstd = mean, rstd
        y = x - mean
        y *= rstd
        if w is not None:
            y *= w
        if b is not None:
            y += b
        return y

    def backward(ctx, g: Any, m: Any) -> Any:
        x, w, b = ctx.inputs
        need = ctx.needs_input_grad
        if ctx.fused and not m.graph:
            return _layer_norm_fused_backward(ctx, g, x, w, b, need)
        if m.graph:
            xhat, rstd = _graph_stats(m, x, ctx.axes, ctx.n, ctx.eps)
        else:
            rstd = ctx.rstd
            xhat = (x - ctx.mean) * rstd
        gx = gw = gb = None
        if need[0]:
            gh = g * w if w is not None else g
            gx = _normalize_backward(m, gh, xhat, rstd, ctx.axes, ctx.n)
        if w is not None and need[1]:
            gw = _sum_or_self(m, g * xhat, ctx.lead)
        if b is not None and need[2]:
            gb = _sum_or_self(m, g, ctx.lead)
        return gx, gw, gb


def _layer_norm_fused_backward(ctx: Any, g: Any, x: Any, w: Any, b: Any, need: Any) -> tuple:
    """The array backward over the last dim on the device: dx in one row kernel, dweight and
    dbias in one column-sum kernel (only when wanted)."""
    want_w = w is not None and need[1]
    want_b = b is not None and need[2]
    dx, dw, db = kernels.layer_norm_backward(
        g, x, ctx.mean, ctx.rstd, w, need_weight_grads=want_w or want_b
    )
    return (dx if need[0] else None), (dw if want_w else None), (db if want_b else None)


def layer_norm(
    input: Tensor,  # noqa: A002
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each sample over its last ``len(normalized_shape)`` dims, which must equal
    ``normalized_shape``; then scale by ``weight`` and shift by ``bias`` (that shape too)."""
    shape = (
        (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else normalized_shape
    )
    shape = tuple(int(s) for s in shape)
    x = as_float(input)
    k = len(shape)
    if k == 0 or x.ndim < k or tuple(x.shape[x.ndim - k :]) != shape:
        raise RuntimeError(
            f"Given normalized_shape={list(shape)}, expected input with shape "
            f"[*, {', '.join(map(str, shape))}], but got input of size{list(x.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise RuntimeError(
                f"layer_norm: expected {name} of shape {shape} (normalized_shape), got {tuple(t.shape)}"
            )
    return apply(LayerNorm, x, _same_dtype(weight, x), _same_dtype(bias, x), k=k, eps=float(eps))


# ----------------------------------------------------------------------------- group norm


class GroupNorm(Op):
    """x: (N, C, *) split into G groups of C/G channels, each sample's group normalised over its
    channels and positions; weight/bias (C,) per channel."""

    save_inputs = True
    name = "group_norm"

    def forward(ctx, x: Any, w: Any, b: Any, num_groups: Any, eps: Any) -> Any:
        N, C = x.shape[:2]
        n = x.size // (N * num_groups) if N * num_groups else 0
        rshape = (N, num_groups, n)
        pshape = (1, C) + (1,) * (x.ndim - 2)
        ctx.rshape, ctx.pshape, ctx.n, ctx.eps = rshape, pshape, n, eps
        ctx.caxes = (0,) + tuple(range(2, x.ndim))
        xr = x.reshape(rshape)
        mean, var = _moments(xr, (2,))
        rstd = 1 / np.sqrt(var + eps)
        ctx.mean, ctx.rstd = mean, rstd
        y = xr - mean
        y *= rstd
        y = y.reshape(x.shape)
        if w is not None:
            y *= w.reshape(pshape)
        if b is not None:
            y += b.reshape(pshape)
        return y

    def backward(ctx, g: Any, m: Any) -> Any:
        x, w, b = ctx.inputs
        need = ctx.needs_input_grad
        rshape, n = ctx.rshape, ctx.n
        xr = m.reshape(x, rshape)
        if m.graph:
            xhat_r, rstd = _graph_stats(m, xr, (2,), n, ctx.eps)
        else:
            rstd = ctx.rstd
            xhat_r = (xr - ctx.mean) * rstd
        xhat = m.reshape(xhat_r, x.shape)
        gx = gw = gb = None
        if need[0]:
            gh = g * m.reshape(w, ctx.pshape) if w is not None else g
            gxr = _normalize_backward(m, m.reshape(gh, rshape), xhat_r, rstd, (2,), n)
            gx = m.reshape(gxr, x.shape)
        if w is not None and need[1]:
            gw = m.sum(g * xhat, ctx.caxes, False)
        if b is not None and need[2]:
            gb = m.sum(g, ctx.caxes, False)
        return gx, gw, gb


def group_norm(
    input: Tensor,  # noqa: A002
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group normalisation of ``input`` (N, C, *): C/num_groups channels per group."""
    x = as_float(input)
    if x.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {x.ndim}")
    C = x.shape[1]
    if num_groups <= 0 or C % num_groups:
        raise RuntimeError(
            "Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {list(x.shape)} and num_groups={num_groups}"
        )
    _verify_batch_size([x.shape[0] * C // num_groups, num_groups] + list(x.shape[2:]))
    for name, t in (("weight", weight), ("bias", bias)):
        _check_size("group_norm", name, t, C)
    return apply(
        GroupNorm,
        x,
        _same_dtype(weight, x),
        _same_dtype(bias, x),
        num_groups=int(num_groups),
        eps=float(eps),
    )
