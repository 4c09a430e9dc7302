"""Gradient utilities: clipping, and parameters as one flat vector."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..tensor import Tensor, wrap


def _params(parameters: Iterable[Tensor] | Tensor) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters: Iterable[Tensor] | Tensor,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most
    ``max_norm``; returns the norm before clipping."""
    grads = [p.grad.data for p in _params(parameters) if p.grad is not None]
    if not grads:
        return wrap(np.asarray(0.0, np.float32))
    norm_type = float(norm_type)
    # as torch: the norm of the per-tensor norms (the same thing for p > 0; for 0 and -inf not)
    total = _vector_norm(np.array([_vector_norm(g, norm_type) for g in grads]), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    with np.errstate(invalid="ignore"):
        coef = max_norm / (total + 1e-6)
    if not coef >= 1:  # NaN (a NaN norm) scales too, as torch: the gradients become NaN
        with np.errstate(invalid="ignore"):
            for g in grads:
                g *= coef
    return wrap(np.asarray(total, grads[0].dtype))


def _vector_norm(a: np.ndarray, p: float) -> float:
    """torch.linalg.vector_norm of a flattened array (accumulated in float64)."""
    a = np.abs(a.astype(np.float64, copy=False)).ravel()
    if p == math.inf:
        return float(a.max()) if a.size else 0.0
    if p == -math.inf:
        return float(a.min()) if a.size else math.inf
    if p == 0:
        return float(np.count_nonzero(a))
    with np.errstate(over="ignore"):
        return float(np.sum(a**p) ** (1.0 / p))


def clip_grad_value_(
    parameters: Iterable[Tensor] | Tensor, clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient element to [-clip_value, clip_value]."""
    for p in _params(parameters):
        if p.grad is not None:
            np.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters, flattened and concatenated, as one 1-d tensor (a differentiable copy)."""
    from ..ops.movement import cat  # noqa: PLC0415

    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of ``vec`` into the parameters (in place)."""
    parameters = list(parameters)
    total = sum(p.numel() for p in parameters)
    if total != vec.numel():
        raise RuntimeError(
            f"vector_to_parameters: vector has {vec.numel()} elements, parameters {total}"
        )
    off = 0
    for p in parameters:
        n = p.numel()
        np.copyto(p.data, vec.data[off : off + n].reshape(p.shape))
        p._vc[0] += 1
        off += n
    if off != vec.numel():
        raise RuntimeError(
            f"vector_to_parameters: vector has {vec.numel()} elements, parameters {off}"
        )
