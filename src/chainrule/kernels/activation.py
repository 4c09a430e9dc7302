"""Activations in one pass: forwards ``f(x)`` and backwards ``grad * f'(.)``, without
temporaries."""

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


# ----------------------------------------------------------------------------- forwards
# exp(-x) overflows below these (the CPU's Sigmoid clamp; float16's is also bfloat16's in
# float32 arithmetic, where 88 is)
_SIGMOID_CLAMP = {"float16": 11.0, "float32": 88.0, "float64": 708.0}


def _run_fwd(kernel: str, x: Any, p0: float = 0.0, p1: float = 0.0) -> Any:
    """Launch the forward ``kernel`` on ``x`` when real CuPy can, else the reference; a new
    array of x's shape and dtype."""
    cp = L.kernel_module(x)
    dt = L.usable(x) if cp is not None else None
    if dt is None:
        acc = L.acc_dtype(x.dtype)
        return _FWD_REFERENCE[kernel](x.astype(acc), p0, p1).astype(x.dtype)
    out = cp.empty_like(x)
    L.launch_flat(kernel, dt, x.size, (x, out, L.i64(x.size), L.scalar(p0, dt), L.scalar(p1, dt)))
    return out


def _clamp(x: Any) -> float:
    return _SIGMOID_CLAMP.get(str(x.dtype), 88.0)


def sigmoid_forward(x: Any) -> Any:
    """``1 / (1 + exp(min(-x, clamp)))``, the CPU Sigmoid's formula and clamp (88 for float32,
    708 float64, 11 float16), element-wise; same shape and dtype."""
    return _run_fwd("sigmoid_fwd", x, _clamp(x))


def silu_forward(x: Any) -> Any:
    """``x * sigmoid(x)`` (sigmoid as ``sigmoid_forward``)."""
    return _run_fwd("silu_fwd", x, _clamp(x))


def gelu_forward(x: Any, approximate: str = "none") -> Any:
    """GELU of ``x``: ``x * 0.5 (1 + erf(x / sqrt 2))`` (``'none'``) or PyTorch's tanh
    approximation (``'tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return _run_fwd("gelu_tanh_fwd" if approximate == "tanh" else "gelu_erf_fwd", x)


def softplus_forward(x: Any, beta: float = 1.0, threshold: float = 20.0) -> Any:
    """``log1p(exp(beta x)) / beta``, and ``x`` where ``beta x > threshold``."""
    return _run_fwd("softplus_fwd", x, beta, threshold)


def elu_forward(x: Any, alpha: float = 1.0) -> Any:
    """``x`` for x > 0, else ``alpha * expm1(x)``."""
    return _run_fwd("elu_fwd", x, alpha)


def leaky_relu_forward(x: Any, negative_slope: float = 0.01) -> Any:
    """``x`` for x > 0, else ``negative_slope * x``."""
    return _run_fwd("leaky_relu_fwd", x, negative_slope)


def _sigmoid_ref(x: Any, clamp: float) -> Any:
    return 1 / (1 + np.exp(np.minimum(-x, clamp)))


def _softplus_ref(x: Any, beta: float, threshold: float) -> Any:
    xb = x * beta
    lin = xb > threshold
    return np.where(lin, x, np.log1p(np.exp(np.where(lin, 0, xb))) / beta)


def _gelu_tanh_fwd(x: Any) -> Any:
    return 0.5 * x * (1 + np.tanh(_BETA * (x + _KAPPA * (x * x * x))))


_FWD_REFERENCE = {
    "sigmoid_fwd": lambda x, c, _: _sigmoid_ref(x, c),
    "silu_fwd": lambda x, c, _: x * _sigmoid_ref(x, c),
    "gelu_erf_fwd": lambda x, *_: x * (0.5 * (1 + _erf(x * _SQRT1_2))),
    "gelu_tanh_fwd": lambda x, *_: _gelu_tanh_fwd(x),
    "softplus_fwd": _softplus_ref,
    "elu_fwd": lambda x, a, _: np.where(x > 0, x, np.expm1(np.minimum(x, 0)) * a),
    "leaky_relu_fwd": lambda x, s, _: np.where(x > 0, x, x * s),
}


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
