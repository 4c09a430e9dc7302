"""Activation functions as fused primitives (forward and backward side by side), the error
function ``erf`` they need, and the non-differentiable ``step`` / ``sign`` units that train
through surrogate gradients.

Every rule follows PyTorch's CPU kernels, kinks included (stated where they occur), and is
written with operators and the namespace ``m`` so that a ``create_graph`` backward is itself
differentiable. The few functions ``m`` lacks (erf, tanh, sigmoid) are dispatched by ``_fn``:
the array function on arrays, the recorded op on Tensors.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from .. import backend, dtypes, kernels
from ..autograd.engine import Op, apply
from ..tensor import Tensor
from . import unary as U
from .util import as_float

# ----------------------------------------------------------------------------- erf
#
# NumPy has no erf (and SciPy is not a dependency), so here is a vectorised one, accurate to
# about 2 ulp (relative error < 3e-16) on the whole real line, measured against math.erf:
#
#   |x| < 0.5        the Maclaurin series x * sum_n c_n x^(2n), c_n = 2/sqrt(pi) (-1)^n / (n! (2n+1)),
#                    14 terms (the next one is below 1e-19 relative);
#   0.5 <= |x| < 6   a Taylor expansion about the centre c of one of 22 cells of width 1/4:
#                    erf(c + h) = erf(c) + 2/sqrt(pi) e^(-c^2) sum_{n>=1} (-1)^(n-1) H_(n-1)(c) h^n / n!
#                    (H the physicists' Hermite polynomials), degree 14, |h| <= 1/8. The
#                    coefficients are computed once at import: H_n(c) exactly in rationals (c is
#                    dyadic), erf(c) and e^(-c^2) from the math module. No fitted noise, and
#                    Horner in the small h adds erf(c) last, so the result is within ~1 ulp;
#   |x| >= 6         erf(x) = +-1 (erfc(6) = 2e-17 is below half an ulp of 1).
#
# The computation is in float64; float32/float16 inputs are rounded back at the end.

_ERF_SMALL = 0.5
_ERF_BIG = 6.0
_ERF_CELL = 0.25
_ERF_DEG = 14
_ERF_SERIES = np.array(
    [2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(14)]
)


def _erf_taylor_table() -> tuple[np.ndarray, np.ndarray]:
    n_cells = round((_ERF_BIG - _ERF_SMALL) / _ERF_CELL)
    centres = _ERF_SMALL + _ERF_CELL * (np.arange(n_cells) + 0.5)
    rows = []
    for c in centres:
        cf = Fraction(float(c))
        herm = [Fraction(1), 2 * cf]  # H_0, H_1; H_(n+1) = 2c H_n - 2n H_(n-1)
        for n in range(1, _ERF_DEG):
            herm.append(2 * cf * herm[n] - 2 * n * herm[n - 1])
        scale = 2 / math.sqrt(math.pi) * math.exp(-float(c) * float(c))
        row = [math.erf(float(c))]
        row += [
            float((-1) ** (n - 1) * herm[n - 1] / math.factorial(n)) * scale
            for n in range(1, _ERF_DEG + 1)
        ]
        rows.append(row)
    return centres, np.ascontiguousarray(np.array(rows).T)  # row j: the h^j coefficients


_ERF_CENTRES, _ERF_COEFS = _erf_taylor_table()


def erf_array(x: Any) -> np.ndarray:
    """The error function of an array, element-wise (NaN stays NaN, erf(+-inf) = +-1).

    Floating inputs keep their dtype (bfloat16 included); anything else gives float64.
    """
    if backend.is_device_array(x):
        return _erf_device(x, backend.array_module(x))
    x = np.asarray(x)
    out_dtype = x.dtype if dtypes.is_floating(x.dtype) else np.dtype(np.float64)
    xf = x.astype(np.float64, copy=False).ravel()
    a = np.abs(xf)
    out = np.ones_like(a)  # |x| >= 6 (and inf)
    i = np.flatnonzero(a < _ERF_SMALL)
    if i.size:
        out[i] = _erf_series(a.take(i))
    i = np.flatnonzero((a >= _ERF_SMALL) & (a < _ERF_BIG))
    if i.size:
        out[i] = _erf_taylor(a.take(i), _ERF_CENTRES, _ERF_COEFS)
    out[np.isnan(a)] = np.nan
    np.copysign(out, xf, out=out)
    return out.reshape(x.shape).astype(out_dtype, copy=False)


def _erf_series(s: Any) -> Any:
    """erf on 0 <= s < 0.5: its odd Maclaurin series (float64 arrays, host or device)."""
    u = s * s
    p = np.full_like(u, _ERF_SERIES[-1])
    for c in _ERF_SERIES[-2::-1]:
        p *= u
        p += c
    p *= s
    return p


def _erf_taylor(am: Any, centres: Any, coefs: Any) -> Any:
    """erf on 0.5 <= am <= 6: the Taylor polynomial of am's cell (tables on am's device)."""
    k = ((am - _ERF_SMALL) * (1 / _ERF_CELL)).astype(np.intp)
    np.clip(k, 0, len(_ERF_CENTRES) - 1, out=k)  # (a NaN made some index; any will do there)
    h = am - centres.take(k)
    p = coefs[_ERF_DEG].take(k)
    for j in range(_ERF_DEG - 1, -1, -1):  # Horner in h; erf(c) is added last
        p *= h
        p += coefs[j].take(k)
    return p


_ERF_TABLES: dict = {}  # array module -> (centres, coefficients) on its device


def _erf_device(x: Any, xp: Any) -> Any:
    """``erf_array`` for device arrays, the same formulas without data-dependent shapes (no
    device-to-host sync): both polynomials on every element, the right one picked per element."""
    tables = _ERF_TABLES.get(xp)
    if tables is None:
        tables = _ERF_TABLES[xp] = (xp.asarray(_ERF_CENTRES), xp.asarray(_ERF_COEFS))
    centres, coefs = tables
    out_dtype = x.dtype if dtypes.is_floating(x.dtype) else np.dtype(np.float64)
    a = xp.abs(x.astype(np.float64))
    series = _erf_series(xp.minimum(a, _ERF_SMALL))  # right on |x| < 0.5
    taylor = _erf_taylor(xp.clip(a, _ERF_SMALL, _ERF_BIG), centres, coefs)  # on 0.5 <= |x| < 6
    out = xp.where(a < _ERF_SMALL, series, xp.where(a < _ERF_BIG, taylor, 1.0))
    out = xp.where(xp.isnan(a), np.nan, out)
    return xp.copysign(out, x.astype(np.float64)).astype(out_dtype, copy=False)


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


class Erf(Op):
    """erf(x); d/dx = 2/sqrt(pi) exp(-x^2)."""

    save_inputs = True
    name = "erf"

    def forward(ctx, x: Any) -> Any:
        return erf_array(x)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        return g * (_TWO_OVER_SQRT_PI * m.exp(-(x * x)))


def erf(input: Tensor) -> Tensor:  # noqa: A002
    """Element-wise error function (PyTorch's ``torch.erf``), differentiable to any order."""
    return apply(Erf, as_float(input))


def _sigmoid_array(x: np.ndarray) -> np.ndarray:
    return U.Sigmoid.forward(None, x)


_ARRAY_FNS = {"erf": erf_array, "tanh": np.tanh, "sigmoid": _sigmoid_array}
_TENSOR_FNS = {"erf": erf, "tanh": U.tanh, "sigmoid": U.sigmoid}


def _fn(m: Any, name: str, x: Any) -> Any:
    """``m.<name>(x)`` for the functions the namespaces lack: recorded on Tensors."""
    return (_TENSOR_FNS if m.graph else _ARRAY_FNS)[name](x)


# ----------------------------------------------------------------------------- activations


def _via_float32(forward: Any, ctx: Any, x: Any, *args: Any) -> Any:
    """A forward on bfloat16 ``x`` computed in float32 and rounded once (PyTorch's reduced-float
    arithmetic; NumPy would give float32, or round every step). Backward rules need no twin: the
    engine rounds a gradient to its node's dtype."""
    return forward(ctx, x.astype(np.float32), *args).astype(x.dtype)


class LeakyRelu(Op):
    """x if x > 0 else slope * x; the gradient at 0 is ``slope`` (PyTorch: ``x > 0 ? g : g * slope``)."""

    save_inputs = True
    name = "leaky_relu"

    def forward(ctx, x: Any, negative_slope: Any) -> Any:
        if type(x) is not np.ndarray:
            ctx.slope = negative_slope
            return kernels.leaky_relu_forward(x, negative_slope)  # one pass on the device
        if x.dtype.kind == "V":
            return _via_float32(LeakyRelu.forward, ctx, x, negative_slope)
        ctx.slope = negative_slope
        return np.where(x > 0, x, x * negative_slope)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        return m.where(x > 0, g, g * ctx.slope)


class Elu(Op):
    """x if x > 0 else alpha (exp(x) - 1), via expm1 on min(x, 0) (no overflow for large x).
    Gradient: 1 for x > 0, alpha exp(x) for x <= 0 (alpha at 0, as PyTorch)."""

    save_inputs = True
    name = "elu"

    def forward(ctx, x: Any, alpha: Any) -> Any:
        ctx.alpha = alpha
        if type(x) is not np.ndarray:
            return kernels.elu_forward(x, alpha)  # one pass on the device
        neg = np.expm1(np.minimum(x, 0))
        neg *= alpha
        return np.where(x > 0, x, neg)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        pos = x > 0
        xn = m.where(pos, 0.0, x)  # exp never sees a large positive x (nor its backward)
        return g * m.where(pos, 1.0, ctx.alpha * m.exp(xn))


_SQRT1_2 = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_BETA = math.sqrt(2) * (2 / math.sqrt(math.pi)) * 0.5  # sqrt(2/pi)
_GELU_KAPPA = 0.044715


class Gelu(Op):
    """x Phi(x), Phi the standard normal CDF: 'none' = x/2 (1 + erf(x/sqrt 2)); 'tanh' =
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Formulas in PyTorch's evaluation order."""

    save_inputs = True
    name = "gelu"

    def forward(ctx, x: Any, approximate: Any) -> Any:
        if type(x) is not np.ndarray:
            ctx.approximate, ctx.cdf = approximate, None  # the backward is fused from x alone
            return kernels.gelu_forward(x, approximate)  # one pass on the device
        if x.dtype.kind == "V":
            return _via_float32(Gelu.forward, ctx, x, approximate)
        ctx.approximate = approximate
        if approximate == "tanh":
            inner = _GELU_BETA * (x + _GELU_KAPPA * (x * x * x))
            return 0.5 * x * (1 + np.tanh(inner))
        cdf = 1 + erf_array(x * _SQRT1_2)
        cdf *= 0.5
        # for the backward on host arrays (x * cdf is PyTorch's x * 0.5 * (1 + erf)); a device
        # backward is one fused kernel from x alone
        ctx.cdf = cdf if type(x) is np.ndarray else None
        return x * cdf

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        if type(x) is not np.ndarray and not m.graph and _fusable(g, x):
            return kernels.gelu_backward(g, x, ctx.approximate)  # one pass on the device
        if ctx.approximate == "tanh":
            x_sq = x * x
            t = _fn(m, "tanh", _GELU_BETA * (x + _GELU_KAPPA * (x_sq * x)))
            left = 0.5 * x
            right = 1 + t
            d_right = left * (1 - t * t) * (_GELU_BETA * (1 + 3 * _GELU_KAPPA * x_sq))
            return g * (0.5 * right + d_right)
        cdf = (
            ctx.cdf
            if not m.graph and ctx.cdf is not None
            else 0.5 * (1 + _fn(m, "erf", x * _SQRT1_2))
        )
        pdf = _INV_SQRT_2PI * m.exp(x * x * -0.5)
        return g * (cdf + x * pdf)


def _fusable(g: Any, x: Any) -> bool:
    """Whether a fused activation backward takes (g, x): device arrays of one shape and dtype
    (otherwise the rule's broadcasting and type promotion apply)."""
    return backend.is_device_array(g) and g.shape == x.shape and g.dtype == x.dtype


class Silu(Op):
    """x sigmoid(x); gradient s (1 + x (1 - s)), s = sigmoid(x)."""

    save_inputs = True
    name = "silu"

    def forward(ctx, x: Any) -> Any:
        if type(x) is not np.ndarray:
            return kernels.silu_forward(x)  # one pass on the device
        return x * _sigmoid_array(x)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        s = _fn(m, "sigmoid", x)
        return g * (s * (1 + x * (1 - s)))


class Softplus(Op):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's linear
    regime). Gradient: sigmoid(beta x), 1 in the linear regime."""

    save_inputs = True
    name = "softplus"

    def forward(ctx, x: Any, beta: Any, threshold: Any) -> Any:
        if type(x) is not np.ndarray:
            ctx.beta, ctx.threshold = beta, threshold
            return kernels.softplus_forward(x, beta, threshold)  # one pass on the device
        if x.dtype.kind == "V":
            return _via_float32(Softplus.forward, ctx, x, beta, threshold)
        ctx.beta, ctx.threshold = beta, threshold
        xb = x * beta
        lin = xb > threshold
        soft = np.log1p(np.exp(np.where(lin, 0, xb))) / beta
        return np.where(lin, x, soft)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        xb = x * ctx.beta
        lin = xb > ctx.threshold
        return g * m.where(lin, 1.0, _fn(m, "sigmoid", m.where(lin, 0.0, xb)))


class Hardtanh(Op):
    """clamp(x, min_val, max_val); the gradient passes strictly inside (min_val, max_val) and is
    0 at the bounds themselves (PyTorch's hardtanh_backward; clamp's includes them)."""

    save_inputs = True
    name = "hardtanh"

    def forward(ctx, x: Any, min_val: Any, max_val: Any) -> Any:
        if x.dtype.kind == "V":
            return _via_float32(Hardtanh.forward, ctx, x, min_val, max_val)
        ctx.lo, ctx.hi = min_val, max_val
        return np.clip(x, min_val, max_val)

    def backward(ctx, g: Any, m: Any) -> Any:
        x = ctx.inputs[0]
        return m.where((x > ctx.lo) & (x < ctx.hi), g, 0.0)


def _check_slope(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` for x > 0, ``negative_slope * x`` otherwise. (``inplace`` is accepted for
    compatibility; the result is always a new tensor.)"""
    return apply(
        LeakyRelu, as_float(input), negative_slope=_check_slope("leaky_relu", negative_slope)
    )


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise (finite for any input)."""
    return apply(Elu, as_float(input), alpha=_check_slope("elu", alpha))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Phi(x)``; ``approximate='tanh'`` uses the tanh approximation of Phi."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return apply(Gelu, as_float(input), approximate=approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * sigmoid(x)`` (a.k.a. swish)."""
    return apply(Silu, as_float(input))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """``log(1 + exp(beta * x)) / beta``, reverting to ``x`` where ``beta * x > threshold``."""
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    return apply(
        Softplus,
        as_float(input),
        beta=_check_slope("softplus", beta),
        threshold=_check_slope("softplus", threshold),
    )


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:  # noqa: A002
    """``clamp(x, min_val, max_val)`` with a zero gradient at and beyond the bounds."""
    return apply(
        Hardtanh,
        as_float(input),
        min_val=_check_slope("hardtanh", min_val),
        max_val=_check_slope("hardtanh", max_val),
    )


# ----------------------------------------------------------------------------- surrogate units
#
# ``step`` (Heaviside: 1 for x > 0, else 0) and ``sign`` (-1, 0, +1 as torch.sign) have a zero
# derivative almost everywhere. To train networks of such units the backward replaces it with a
# surrogate, the derivative of a smooth stand-in for the unit; the forward is unchanged.
#
# For step (a jump of 1 at 0), with sharpness k:
#   'ste'       straight-through: gradient 1 everywhere (the stand-in is the identity); no k.
#   'sigmoid'   k sigmoid(k x) (1 - sigmoid(k x)), the derivative of sigmoid(k x); k = 4 default.
#   'triangle'  k max(0, 1 - k |x|), the derivative of a linear ramp from 0 to 1 over
#               |x| <= 1/k; k = 1 default, i.e. max(0, 1 - |x|).
# For sign (a jump of 2 at 0) the stand-in is 2 (step's stand-in) - 1, so its 'sigmoid' and
# 'triangle' surrogates are twice step's (both integrate to 2, the size of the jump), and its
# 'ste' is the clipped straight-through estimator of binarised networks: the derivative of
# hardtanh, 1 for |x| <= 1 and 0 outside.
#
# At x = 0 both units follow PyTorch's conventions for piecewise-constant functions: step(0) = 0
# (as relu, whose derivative step is) and sign(0) = 0 (torch.sign), so sign(x) =
# step(x) - step(-x).

SURROGATES = ("ste", "sigmoid", "triangle")
_DEFAULT_K = {"sigmoid": 4.0, "triangle": 1.0}


def _surrogate_params(fn: str, surrogate: str, k: float | None) -> float | None:
    if surrogate not in SURROGATES:
        raise ValueError(f"{fn}: surrogate must be one of {SURROGATES}, not {surrogate!r}")
    if surrogate == "ste":
        if k is not None:
            raise ValueError(
                f"{fn}: k (the surrogate's sharpness) has no effect with surrogate='ste'"
            )
        return None
    k = _DEFAULT_K[surrogate] if k is None else _check_slope(fn, k)
    if not k > 0:
        raise ValueError(f"{fn}: k must be positive, got {k}")
    return k


def _surrogate_grad(m: Any, g: Any, x: Any, surrogate: str, k: float | None, jump: float) -> Any:
    """g times the surrogate derivative of a unit that jumps by ``jump`` (1 for step, 2 for sign)."""
    if surrogate == "ste":
        return g if jump == 1 else m.where(m.abs(x) <= 1, g, 0.0)
    if surrogate == "sigmoid":  # sigmoid(z) sigmoid(-z): no cancellation in 1 - s for large z
        z = k * x
        return g * ((jump * k) * (_fn(m, "sigmoid", z) * _fn(m, "sigmoid", -z)))
    t = 1 - k * m.abs(x)  # triangle
    return g * ((jump * k) * m.where(t > 0, t, 0.0))


class Step(Op):
    """Heaviside step, 1 for x > 0 and 0 otherwise, with a surrogate gradient (see above)."""

    save_inputs = True
    name = "step"

    def forward(ctx, x: Any, surrogate: Any, k: Any) -> Any:
        ctx.surrogate, ctx.k = surrogate, k
        return (x > 0).astype(x.dtype)

    def backward(ctx, g: Any, m: Any) -> Any:
        return _surrogate_grad(m, g, ctx.inputs[0], ctx.surrogate, ctx.k, 1)


class SignSurrogate(Op):
    """torch.sign (-1, 0, +1) with a surrogate gradient (see above)."""

    save_inputs = True
    name = "sign_ste"

    def forward(ctx, x: Any, surrogate: Any, k: Any) -> Any:
        ctx.surrogate, ctx.k = surrogate, k
        return np.sign(x)

    def backward(ctx, g: Any, m: Any) -> Any:
        return _surrogate_grad(m, g, ctx.inputs[0], ctx.surrogate, ctx.k, 2)


def step(input: Tensor, surrogate: str = "ste", k: float | None = None) -> Tensor:  # noqa: A002
    """Heaviside step (1 where x > 0, else 0) whose backward uses the surrogate gradient
    ``surrogate`` ('ste', 'sigmoid' or 'triangle') of sharpness ``k``."""
    k = _surrogate_params("step", surrogate, k)
    return apply(Step, as_float(input), surrogate=surrogate, k=k)


def sign_ste(input: Tensor, surrogate: str = "ste", k: float | None = None) -> Tensor:  # noqa: A002
    """``sign(x)`` (-1, 0, +1) whose backward uses the surrogate gradient ``surrogate``: 'ste'
    (1 for |x| <= 1, the hardtanh straight-through estimator), 'sigmoid' or 'triangle'."""
    k = _surrogate_params("sign_ste", surrogate, k)
    return apply(SignSurrogate, as_float(input), surrogate=surrogate, k=k)
