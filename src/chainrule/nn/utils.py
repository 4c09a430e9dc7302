"""Gradient utilities: clipping, and parameters as one flat vector.

Gradients on a GPU are clipped there: the norms stay device scalars and the scale is applied
unconditionally (a factor of at most 1, as torch), so clipping costs no host sync unless
``error_if_nonfinite`` asks for one."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .. import backend
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
    if any(type(g) is not np.ndarray for g in grads):
        return _clip_on_device(grads, float(max_norm), norm_type, error_if_nonfinite)
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


def _clip_on_device(grads: list, max_norm: float, p: float, error_if_nonfinite: bool) -> Tensor:
    """clip_grad_norm_ for gradients of which some live on a GPU: the total norm is a 0-d array
    on the first device gradient's device; each gradient is scaled on its own device."""
    dev = next(backend.device_of(g) for g in grads if type(g) is not np.ndarray)
    xp = backend.xp_for(dev)
    norms = xp.stack([backend.to_device(_device_norm(g, p), dev) for g in grads])
    total = _device_norm(norms, p)
    if error_if_nonfinite and not bool(xp.isfinite(total)):  # the one sync, asked for
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, "
            "so it cannot be clipped. To disable this error and scale the gradients by the "
            "non-finite norm anyway, set `error_if_nonfinite=False`"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = xp.minimum(max_norm / (total + 1e-6), 1.0)  # a NaN norm makes NaN gradients
        for g in grads:
            g *= backend.to_device(coef, backend.device_of(g)).astype(g.dtype)
    return wrap(total.astype(grads[0].dtype))


def _device_norm(a: object, p: float) -> object:
    """``_vector_norm`` as a 0-d float64 array of ``a``'s module (no host round trip)."""
    xp = backend.array_module(a)
    a = xp.abs(a.astype(np.float64, copy=False)).ravel()
    if p == math.inf:
        return a.max() if a.size else xp.zeros((), np.float64)
    if p == -math.inf:
        return a.min() if a.size else xp.full((), math.inf)
    if p == 0:
        return xp.asarray(xp.count_nonzero(a), np.float64)
    with np.errstate(over="ignore"):
        return xp.sum(a**p) ** (1.0 / p)


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
