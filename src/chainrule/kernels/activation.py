"""Activation backwards in one pass: ``grad * f'(.)`` without temporaries."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from . import _launch as L

_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_BETA = math.sqrt(2 / math.pi)
_KAPPA = 0.044715


def _run(kernel: str, grad: Any, saved: Any, out: Any) -> Any:
    """Launch ``kernel`` when real CuPy can, else the reference; returns the gradient."""
    if tuple(grad.shape) != tuple(saved.shape):
        raise ValueError(f"{kernel}: grad {grad.shape} and saved {saved.shape} differ in shape")
    cp = L.kernel_module(grad)
    dt = L.usable(grad, saved) if cp is not None else None
    if dt is None or (out is not None and not L.usable(grad, out)):
        acc = L.acc_dtype(grad.dtype)
        r = _REFERENCE[kernel](grad.astype(acc), saved.astype(acc)).astype(grad.dtype)
        if out is None:
            return r
        out[...] = r
        return out
    if out is None:
        out = cp.empty_like(grad)
    L.launch_flat(kernel, dt, grad.size, (grad, saved, out, L.i64(grad.size)))
    return out


def relu_backward(grad: Any, saved: Any, out: Any = None) -> Any:
    """``grad`` where ``saved > 0``, else 0; ``saved`` is ReLU's input or its output (the same
    mask). Shapes equal; returns a new array (or ``out``)."""
    return _run("relu_bwd", grad, saved, out)


def sigmoid_backward(grad: Any, y: Any, out: Any = None) -> Any:
    """``grad * (1 - y) * y`` with ``y = sigmoid(x)``, the forward's output."""
    return _run("sigmoid_bwd", grad, y, out)


def tanh_backward(grad: Any, y: Any, out: Any = None) -> Any:
    """``grad * (1 - y^2)`` with ``y = tanh(x)``, the forward's output."""
    return _run("tanh_bwd", grad, y, out)


def gelu_backward(grad: Any, x: Any, approximate: str = "none", out: Any = None) -> Any:
    """GELU's backward from its input ``x``: ``'none'`` (erf) or ``'tanh'`` (PyTorch's
    formulas)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return _run("gelu_tanh_bwd" if approximate == "tanh" else "gelu_erf_bwd", grad, x, out)


def _erf(x: Any) -> Any:
    """erf of a host or device array (the reference path only)."""
    from ..ops.activation import erf_array  # noqa: PLC0415 - ops import this package

    xp = backend.array_module(x)
    if xp is np:
        return erf_array(x)
    if getattr(xp, "__name__", "") == "cupy":
        import cupyx.scipy.special  # noqa: PLC0415 - only with real CuPy

        return cupyx.scipy.special.erf(x)
    return xp.asarray(erf_array(x.get()))  # the test double: through the host


def _gelu_erf(g: Any, x: Any) -> Any:
    cdf = 0.5 * (1 + _erf(x * _SQRT1_2))
    pdf = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return g * (cdf + x * pdf)


def _gelu_tanh(g: Any, x: Any) -> Any:
    x_sq = x * x
    t = np.tanh(_BETA * (x + _KAPPA * (x_sq * x)))
    left = 0.5 * x
    right_d = left * (1 - t * t) * (_BETA * (1 + 3 * _KAPPA * x_sq))
    return g * (0.5 * (1 + t) + right_d)


_REFERENCE = {
    "relu_bwd": lambda g, x: np.where(x <= 0, 0, g),  # NaN passes the gradient, as in torch
    "sigmoid_bwd": lambda g, y: g * (1 - y) * y,
    "tanh_bwd": lambda g, y: g * (1 - y * y),
    "gelu_erf_bwd": _gelu_erf,
    "gelu_tanh_bwd": _gelu_tanh,
}
