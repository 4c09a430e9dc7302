"""Every differentiable op of chainrule against PyTorch (in the spirit of tinygrad's test_ops.py).

One helper, ``check``, and a table of one-line cases. A case is ``fn(m, *xs)`` where ``m`` is the
module (``chainrule`` or ``torch``) and ``xs`` the inputs; the same lambda runs on both frameworks
unless a separate ``tfn`` for torch is given. ``check`` feeds both the same random inputs, compares
the outputs (values, dtype, shape, requires_grad), backpropagates the same random upstream
gradient and compares every input's ``.grad``; then, in float64, runs chainrule's ``gradcheck`` and
(for ops whose backward is itself differentiable) ``gradgradcheck``.

Inputs are given by ``shapes``: a shape tuple draws uniform values in [low, high); ``U(shape, lo,
hi)`` draws in its own range; a NumPy array is used as it is (for ties, zeros, kinks).
Non-contiguous inputs come from view ops inside the lambda (``x.mT``, ``x[:, ::2]``) or from
``f_order=True``, which builds chainrule's leaves from Fortran-ordered arrays.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's usual name

import chainrule as cr
from chainrule.autograd.engine import Node, Op

torch.set_num_threads(1)

# edge-case inputs (zeros, infinities, empty reductions) make NumPy warn, as they should
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

try:
    import ml_dtypes  # noqa: F401 - gives NumPy the name "bfloat16"

    HAVE_BF16 = True
except ImportError:
    HAVE_BF16 = False

TOL = {
    "float64": {"rtol": 1e-10, "atol": 1e-12},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
    # 8 bits of mantissa; NumPy rounds every step to bfloat16, torch computes in float32 inside
    "bfloat16": {"rtol": 2e-2, "atol": 2e-2},
}
# bfloat16 cases run alone (torch's bfloat16 is the reference; gradcheck needs float64)
BF16 = {"dtypes": ("bfloat16",), "marks": pytest.mark.skipif(not HAVE_BF16, reason="ml_dtypes")}
INF = float("inf")


@dataclass
class U:
    """An input of ``shape`` drawn uniformly from [low, high)."""

    shape: tuple
    low: float
    high: float


def pad(m: Any, x: Any, p: Any, mode: str = "constant", value: float | None = None) -> Any:
    """``chainrule.pad`` is ``torch.nn.functional.pad``."""
    if m is not torch:
        return cr.pad(x, p, mode=mode, value=value)
    return F.pad(x, p, mode=mode, value=value)


def _torch(a: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
    """A torch leaf with ``a``'s values and dtype (torch cannot read ml_dtypes' bfloat16)."""
    if a.dtype.name == "bfloat16":
        t = torch.tensor(a.astype(np.float32)).to(torch.bfloat16)
        return t.requires_grad_(requires_grad)
    return torch.tensor(a, requires_grad=requires_grad)


def _np_dtype(t: Any) -> np.dtype:
    if isinstance(t, torch.Tensor):
        return np.dtype(str(t.dtype).removeprefix("torch."))
    return t.data.dtype


def _flat(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def make_inputs(shapes: Any, dtype: str, low: float, high: float, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    arrays = []
    for s in shapes:
        if isinstance(s, np.ndarray):
            a = s.astype(dtype)
        elif isinstance(s, U):
            a = rng.uniform(s.low, s.high, s.shape).astype(dtype)
        else:
            a = rng.uniform(low, high, s).astype(dtype)
        arrays.append(a)
    return arrays, rng


def _cr_leaves(arrays: list, f_order: bool, nograd: tuple, device: str = "cpu") -> list:
    xs = []
    for i, a in enumerate(arrays):
        x = cr.tensor(
            np.asfortranarray(a) if f_order else a, requires_grad=i not in nograd, device=device
        )
        assert x.device.type == device, f"input {i} is on {x.device}, not {device}"
        if f_order and a.ndim > 1 and a.size > 1:
            assert not x.data.flags.c_contiguous
        xs.append(x)
    return xs


class OnDevice:
    """chainrule whose creation functions default to ``device``: what a case's ``m.tensor(...)``
    (an index, a mask, a target) gives on the CUDA run, so that every operand of an op lives where
    the leaves do (PyTorch refuses CPU operands to CUDA ops too, except 0-d ones and indices)."""

    MAKERS = frozenset({"tensor", "zeros", "ones", "full", "empty", "arange", "eye"})

    def __init__(self, device: str) -> None:
        self.device = device

    def __getattr__(self, name: str) -> Any:
        f = getattr(cr, name)
        if name not in self.MAKERS:
            return f
        return lambda *a, device=self.device, **k: f(*a, device=device, **k)


def host(t: Any) -> np.ndarray:
    """A chainrule or torch tensor's values as a NumPy array (copied off the device); bfloat16
    comes back as float32."""
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype is torch.bfloat16 else t).numpy()
    a = t.detach().cpu().numpy()
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def _close(a: np.ndarray, b: np.ndarray, tol: dict, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
    np.testing.assert_allclose(a, b, equal_nan=True, err_msg=what, **tol)


def check(
    fn: Callable,
    tfn: Callable | None = None,
    shapes: Any = ((3, 4),),
    low: float = -2.0,
    high: float = 2.0,
    dtypes: tuple = ("float64", "float32"),
    grad: bool = True,
    gradcheck: bool = True,
    gradgrad: bool = True,
    nograd: tuple = (),
    f_order: bool = False,
    tol: float = 1.0,
    device: str = "cpu",
    out_device: str | None = None,
) -> None:
    """Compare ``fn(chainrule, *xs)`` with ``tfn(torch, *xs)`` (``tfn`` defaults to ``fn``).

    chainrule's leaves live on ``device`` (torch's on the CPU); the outputs must too, unless the
    case says ``out_device``. gradcheck / gradgradcheck check maths, not devices: CPU only."""
    tfn = tfn or fn
    m = cr if device == "cpu" else OnDevice(device)
    out_device = out_device or device
    for dtype in dtypes:
        t = {k: v * tol for k, v in TOL[dtype].items()}
        arrays, rng = make_inputs(shapes, dtype, low, high)
        xs = _cr_leaves(arrays, f_order, nograd, device)
        txs = [_torch(a, i not in nograd) for i, a in enumerate(arrays)]
        outs = _flat(fn(m, *xs))
        touts = _flat(tfn(torch, *txs))
        assert len(outs) == len(touts), f"{len(outs)} outputs, torch has {len(touts)}"
        for k, (o, to) in enumerate(zip(outs, touts)):
            assert isinstance(o, cr.Tensor), f"output {k} is a {type(o).__name__}"
            assert _np_dtype(o) == _np_dtype(to), f"output {k}: {o.dtype} != torch's {to.dtype}"
            assert o.requires_grad == to.requires_grad, f"output {k}: requires_grad differs"
            assert o.device.type == out_device, f"output {k} is on {o.device}, not {out_device}"
            _close(host(o), host(to), t, f"{dtype} output {k}")
        if not grad:
            continue
        pairs = [(o, to) for o, to in zip(outs, touts) if to.requires_grad]
        assert pairs, "no output requires grad"
        gs = [rng.standard_normal(to.shape).astype(_np_dtype(to)) for _, to in pairs]
        cgs = [cr.tensor(g, device=o.device) for g, (o, _) in zip(gs, pairs)]
        if len(pairs) == 1:
            pairs[0][0].backward(cgs[0])
            pairs[0][1].backward(_torch(gs[0]))
        else:
            cr.autograd.backward([o for o, _ in pairs], cgs)
            torch.autograd.backward([to for _, to in pairs], [_torch(g) for g in gs])
        for i, (x, tx) in enumerate(zip(xs, txs)):
            if i in nograd:
                assert x.grad is None
                continue
            ref = np.zeros(tx.shape, dtype) if tx.grad is None else host(tx.grad)
            # (torch gives an empty .grad to an empty input that cat skipped; None is as good)
            assert x.grad is not None or tx.grad is None or x.numel() == 0, f"input {i}: no grad"
            if x.grad is None:
                got = np.zeros(x.shape, dtype)
            else:
                assert x.grad.device == x.device, f"grad {i} is on {x.grad.device}, not {x.device}"
                assert x.grad.data.dtype == x.data.dtype, f"grad {i}: dtype {x.grad.dtype}"
                got = host(x.grad)
            _close(got, ref, t, f"{dtype} grad of input {i}")
    if device == "cpu" and grad and "float64" in dtypes and (gradcheck or gradgrad):
        arrays, _ = make_inputs(shapes, "float64", low, high)
        xs = _cr_leaves(arrays, f_order, nograd)

        # outputs with no gradient (indices, running statistics) are left out of the check
        keep = [k for k, o in enumerate(_flat(fn(cr, *xs))) if o.requires_grad]

        def f(*a: Any) -> Any:
            outs = _flat(fn(cr, *a))
            return tuple(outs[k] for k in keep)

        if gradcheck:
            assert cr.autograd.gradcheck(f, xs)
        if gradgrad:
            assert cr.autograd.gradgradcheck(f, xs)


# ----------------------------------------------------------------------------- helpers of the cases


def nnf(m: Any) -> Any:
    return F if m is torch else cr.nn.functional


def cell(m: Any, kind: str, xg: Any, h: Any, *rest: Any) -> Any:
    if m is not torch:
        from chainrule.ops import rnn  # noqa: PLC0415

        if kind == "rnn_relu":
            return rnn.rnn_cell(xg, h, *rest, nonlinearity="relu")
        return {"rnn_tanh": rnn.rnn_cell, "gru": rnn.gru_cell, "lstm": rnn.lstm_cell}[kind](
            xg, h, *rest
        )
    H, G = h.shape[-1], xg.shape[-1]
    xg2, h2, eye = xg.reshape(-1, G), h.reshape(-1, H), torch.eye(G, dtype=xg.dtype)
    if kind == "lstm":
        c, w, b = rest
        out = torch.lstm_cell(xg2, [h2, c.reshape(-1, H)], eye, w, None, b)
        return tuple(o.reshape(h.shape) for o in out)
    fn = {"rnn_tanh": torch.rnn_tanh_cell, "rnn_relu": torch.rnn_relu_cell, "gru": torch.gru_cell}
    return fn[kind](xg2, h2, eye, *rest[:1], None, *rest[1:]).reshape(h.shape)


def act(m: Any, name: str, x: Any, *a: Any, **k: Any) -> Any:
    if m is not torch:
        from chainrule.ops import activation  # noqa: PLC0415

        return getattr(activation, name)(x, *a, **k)
    return torch.erf(x) if name == "erf" else getattr(F, name)(x, *a, **k)


def surrogate(m: Any, name: str, x: Any, kind: str = "ste", k: float | None = None) -> Any:
    """step / sign_ste: the unit's value with the surrogate derivative d; torch computes d by the
    documented formula and attaches it with the detach trick (value unit(x), gradient d)."""
    if m is not torch:
        return act(m, name, x, surrogate=kind, k=k)
    jump = 1 if name == "step" else 2
    unit = (x > 0).to(x.dtype) if name == "step" else x.sign()
    if kind == "ste":
        d = torch.ones_like(x) if jump == 1 else (x.abs() <= 1).to(x.dtype)
    elif kind == "sigmoid":
        s = torch.sigmoid((k or 4.0) * x)
        d = jump * (k or 4.0) * s * (1 - s)
    else:
        k = k or 1.0
        d = jump * k * (1 - k * x.abs()).clamp(min=0)
    d = d.detach()
    return unit.detach() + x * d - (x * d).detach()


def normf(m: Any, name: str, *a: Any, **k: Any) -> Any:
    if m is not torch:
        from chainrule.ops import norm  # noqa: PLC0415

        return getattr(norm, name)(*a, **k)
    return getattr(F, name)(*a, **k)


def bn_running(m: Any, x: Any, w: Any, b: Any) -> tuple:
    """Training-mode batch norm; the updated running statistics are outputs too."""
    rm, rv = m.zeros(x.shape[1], dtype=x.dtype), m.ones(x.shape[1], dtype=x.dtype)
    return normf(m, "batch_norm", x, rm, rv, w, b, training=True, momentum=0.3), rm, rv


def conv(m: Any, name: str, *a: Any, **k: Any) -> Any:
    if m is not torch:
        from chainrule.ops import conv as cv  # noqa: PLC0415
        from chainrule.ops import pooling as pl  # noqa: PLC0415

        return getattr(cv if hasattr(cv, name) else pl, name)(*a, **k)
    return getattr(F, name)(*a, **k)


# ----------------------------------------------------------------------------- the table

CASES: list = []


def C(id: str, fn: Callable, tfn: Callable | None = None, marks: Any = (), **kw: Any) -> None:
    CASES.append(pytest.param(fn, tfn, kw, id=id, marks=marks))


R = np.random.default_rng(1234)
MASK34 = R.random((3, 4)) > 0.5
MASK4 = np.array([True, False, True, True])
IDX = np.array([2, 0, 2, 1])  # duplicates: their gradients must add up
IDX2 = np.array([[0, 1, 1], [2, 0, 1]])
TIES_A = np.array([[1.0, 2.0, -1.0, 0.5], [3.0, 3.0, 0.0, -2.0], [0.25, -1.0, 1.5, 1.5]])
TIES_B = np.array([[1.0, 1.0, -1.0, 0.75], [3.0, 2.0, 0.5, -2.0], [0.25, -1.5, 1.5, 1.0]])
ROW_TIES = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 0.5, -1.0, 0.5]])
KINKS = np.array([[-1.5, -0.5, 0.0, 0.5], [1.0, -0.0, 2.0, 0.0], [0.5, -2.0, 1.5, -1.0]])
WITH_ZERO = np.array([[1.5, 0.0, -0.5], [0.5, -2.0, 1.25]])
TWO_ZEROS = np.array([[1.5, 0.0, -0.5, 0.0], [0.5, -2.0, 1.25, 0.75]])
ZERO_ROW = np.array([[0.0, 0.0, 0.0], [0.5, -2.0, 1.25]])
HALVES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4999, 1.2])

x34, x234 = (3, 4), (2, 3, 4)
POS = {"low": 0.2, "high": 2.0}
# inputs on a kink, a tie or an infinity: central differences don't apply there
KINK = {"gradcheck": False, "gradgrad": False}

# fmt: off
# ---- unary
C("neg", lambda m, x: x.neg())
C("neg_fn_0d", lambda m, x: m.neg(x), shapes=[()])
C("exp", lambda m, x: x.exp())
C("exp_0d", lambda m, x: m.exp(x), shapes=[()])
C("exp_empty", lambda m, x: x.exp(), shapes=[(0, 3)])
C("exp_noncontig", lambda m, x: x.mT.exp(), shapes=[x234])
C("exp_f_order", lambda m, x: x.exp(), f_order=True, shapes=[x234])
C("log", lambda m, x: x.log(), **POS)
C("log_strided", lambda m, x: x[:, ::2].log(), **POS)
C("log1p", lambda m, x: x.log1p(), low=-0.8)
C("expm1", lambda m, x: x.expm1())
C("sqrt", lambda m, x: x.sqrt(), **POS)
C("sqrt_0d", lambda m, x: m.sqrt(x), shapes=[()], **POS)
C("rsqrt", lambda m, x: x.rsqrt(), **POS)
C("sin", lambda m, x: x.sin(), low=-4, high=4)
C("cos", lambda m, x: x.cos(), low=-4, high=4)
C("cos_noncontig", lambda m, x: x.transpose(0, 2).cos(), shapes=[x234])
C("tan", lambda m, x: x.tan(), low=-1.2, high=1.2)
C("tanh", lambda m, x: x.tanh(), low=-3, high=3)
C("sigmoid", lambda m, x: x.sigmoid(), low=-6, high=6)
C("sigmoid_extreme", lambda m, x: m.sigmoid(x), shapes=[np.array([-800.0, -90.0, 0.0, 90.0, 800.0])])
C("relu", lambda m, x: x.relu())
C("relu_at_zero", lambda m, x: m.relu(x), shapes=[KINKS], **KINK)
C("abs", lambda m, x: x.abs())
C("abs_at_zero", lambda m, x: abs(x), shapes=[KINKS], **KINK)
C("abs_empty", lambda m, x: x.abs(), shapes=[(2, 0)])
C("sign", lambda m, x: x.sign())
C("sign_at_zero", lambda m, x: x.sign(), shapes=[KINKS], **KINK)
C("square", lambda m, x: x.square())
C("square_0d", lambda m, x: m.square(x), shapes=[()])
C("reciprocal", lambda m, x: x.reciprocal(), **POS)
C("reciprocal_neg", lambda m, x: x.reciprocal(), low=-2.0, high=-0.3)
C("floor", lambda m, x: x.floor(), low=-3, high=3)
C("ceil", lambda m, x: x.ceil(), low=-3, high=3)
C("round", lambda m, x: x.round(), low=-3, high=3)
C("round_half_even", lambda m, x: m.round(x), shapes=[HALVES], **KINK)
C("round_decimals", lambda m, x: x.round(decimals=2), low=-3, high=3)
C("trunc", lambda m, x: x.trunc(), low=-3, high=3)
C("clamp", lambda m, x: x.clamp(-0.5, 0.7))
C("clamp_min", lambda m, x: x.clamp(min=0.25))
C("clamp_max", lambda m, x: m.clamp(x, max=-0.25))
C("clamp_at_bounds", lambda m, x: x.clamp(-0.5, 0.5), shapes=[KINKS], **KINK)
C("clip", lambda m, x: m.clip(x, -1.0, 1.0))
C("clamp_crossed_scalars", lambda m, x: x.clamp(1.0, 0.0))
C("clamp_tensor", lambda m, x, lo, hi: x.clamp(lo, hi), shapes=[x34, U((4,), -1, 0), U((3, 1), 0, 1)])
C("clamp_tensor_crossed", lambda m, x, lo, hi: x.clamp(lo, hi), shapes=[x34, (4,), (3, 1)])
C("clamp_tensor_min", lambda m, x, lo: x.clamp(min=lo), shapes=[x34, (4,)])
C("clamp_tensor_max", lambda m, x, hi: m.clamp(x, max=hi), shapes=[x34, (3, 1)])
C("clamp_tensor_ties", lambda m, x, lo: x.clamp(min=lo), shapes=[TIES_A, TIES_B], **KINK)

# ---- binary, with broadcasting
C("add", lambda m, x, y: m.add(x, y), shapes=[x34, x34])
C("add_bcast_row", lambda m, x, y: x + y, shapes=[x34, (4,)])
C("add_bcast_outer", lambda m, x, y: x + y, shapes=[(3, 1), (1, 4)])
C("add_bcast_lead", lambda m, x, y: x.add(y), shapes=[(2, 1, 4), x34])
C("add_0d", lambda m, x, y: x + y, shapes=[x34, ()])
C("add_0d_0d", lambda m, x, y: x + y, shapes=[(), ()])
C("add_empty", lambda m, x, y: x + y, shapes=[(0, 4), (4,)])
C("add_alpha", lambda m, x, y: m.add(x, y, alpha=2.5), shapes=[x34, (4,)])
C("add_noncontig", lambda m, x, y: x.mT + y[::2], shapes=[(4, 3), (6, 4)])
C("sub", lambda m, x, y: m.sub(x, y), shapes=[x34, x34])
C("sub_bcast", lambda m, x, y: x - y, shapes=[(3, 1), (4,)])
C("sub_alpha", lambda m, x, y: x.sub(y, alpha=-3), shapes=[x34, ()])
C("sub_nograd_left", lambda m, x, y: x - y, shapes=[x34, (4,)], nograd=(0,))
C("sub_nograd_right", lambda m, x, y: x - y, shapes=[x34, (4,)], nograd=(1,))
C("mul", lambda m, x, y: m.mul(x, y), shapes=[x34, x34])
C("mul_bcast", lambda m, x, y: x * y, shapes=[(2, 3, 1), (3, 4)])
C("mul_same", lambda m, x: x * x)
C("mul_nograd", lambda m, x, y: x * y, shapes=[x34, (4,)], nograd=(0,))
C("mul_empty", lambda m, x, y: x * y, shapes=[(3, 0), (3, 1)])
C("div", lambda m, x, y: m.div(x, y), shapes=[x34, U(x34, 0.5, 2)])
C("div_bcast", lambda m, x, y: x / y, shapes=[(2, 1, 4), U((3, 1), -2, -0.5)])
C("div_nograd", lambda m, x, y: x / y, shapes=[x34, U((4,), 0.5, 2)], nograd=(1,))
C("div_trunc", lambda m, x, y: m.div(x, y, rounding_mode="trunc"), shapes=[x34, U((4,), 0.3, 1)])
C("div_floor", lambda m, x, y: x.div(y, rounding_mode="floor"), shapes=[x34, U((4,), 0.3, 1)])
C("pow_2", lambda m, x: x**2)
C("pow_3", lambda m, x: x.pow(3))
C("pow_half", lambda m, x: x**0.5, **POS)
C("pow_neg", lambda m, x: m.pow(x, -1.5), **POS)
C("pow_0", lambda m, x: x**0)
C("pow_1", lambda m, x: x**1.0)
C("pow_0d", lambda m, x: x**3, shapes=[()])
C("rpow", lambda m, x: 2**x)
C("rpow_float", lambda m, x: 0.5**x)
C("pow_scalar_base_fn", lambda m, x: m.pow(3.0, x), dtypes=("float64",))
C("pow_tensor", lambda m, x, y: x**y, shapes=[U(x34, 0.2, 2), (4,)])
C("pow_tensor_bcast", lambda m, x, y: m.pow(x, y), shapes=[U((3, 1), 0.2, 2), U((2, 1, 4), -1, 2)])
C("pow_tensor_nograd_base", lambda m, x, y: x**y, shapes=[U(x34, 0.2, 2), x34], nograd=(0,))
C("pow_zero_base", lambda m, x, y: x**y, shapes=[np.array([0.0, 0.0, 0.0, 1.5]), np.array([0.0, 2.0, 1.0, 2.0])], **KINK)
C("maximum", lambda m, x, y: m.maximum(x, y), shapes=[x34, x34])
C("maximum_bcast", lambda m, x, y: x.maximum(y), shapes=[x34, (4,)])
C("maximum_ties", lambda m, x, y: m.maximum(x, y), shapes=[TIES_A, TIES_B], **KINK)
C("maximum_same", lambda m, x: m.maximum(x, x))
C("minimum", lambda m, x, y: m.minimum(x, y), shapes=[x34, (3, 1)])
C("minimum_ties", lambda m, x, y: x.minimum(y), shapes=[TIES_A, TIES_B], **KINK)
C("max_binary", lambda m, x, y: m.max(x, y), shapes=[x34, (4,)])
C("maximum_mixed_dtypes", lambda m, x, y: m.maximum(x, y.double()), shapes=[x34, (4,)], dtypes=("float32",))
C("mul_0d_float64_keeps_float32", lambda m, x, y: x * y.double().sum(), shapes=[x34, (3,)], dtypes=("float32",))
C("where_mixed_dtypes", lambda m, x, y: m.where(m.tensor(MASK34), x, y.double()), shapes=[x34, x34], dtypes=("float32",))
C("lerp", lambda m, x, y: m.lerp(x, y, 0.3), shapes=[x34, (4,)])
C("addcmul", lambda m, x, a, b: m.addcmul(x, a, b, value=0.5), shapes=[x34, (4,), (3, 1)])
C("addcdiv", lambda m, x, a, b: x.addcdiv(a, b, value=-2.0), shapes=[x34, (4,), U((3, 1), 0.5, 2)])
C("min_binary_ties", lambda m, x, y: m.min(x, y), shapes=[TIES_A, TIES_B], **KINK)
C("where", lambda m, x, y: m.where(m.tensor(MASK34), x, y), shapes=[x34, x34])
C("where_bcast", lambda m, x, y: m.where(m.tensor(MASK4), x, y), shapes=[(3, 1), ()])
C("where_scalar", lambda m, x: m.where(m.tensor(MASK34), x, 0.0))
C("where_scalar_left", lambda m, x: m.where(m.tensor(MASK34), 1.5, x))
C("where_cond_from_x", lambda m, x, y: m.where(x > 0, x, y), shapes=[x34, (4,)])
C("remainder", lambda m, x, y: m.remainder(x, y), shapes=[U(x34, -5, 5), U(x34, 0.5, 2)])
C("remainder_neg_divisor", lambda m, x, y: x.remainder(y), shapes=[U(x34, -5, 5), U((4,), -2, -0.5)])
C("remainder_scalar", lambda m, x: x.remainder(1.5), low=-5, high=5)
C("floor_divide", lambda m, x, y: m.floor_divide(x, y), lambda m, x, y: m.div(x, y, rounding_mode="floor"), shapes=[U(x34, -5, 5), U((4,), 0.5, 2)])
C("floor_divide_values", lambda m, x, y: x.floor_divide(y), shapes=[U(x34, -5, 5), U((4,), -2, -0.5)], grad=False)

# ---- operators, with reflected Python scalars
C("op_add", lambda m, x, y: x + y, shapes=[x34, (4,)])
C("op_radd", lambda m, x: 2 + x)
C("op_add_scalar", lambda m, x: x + 2.5)
C("op_sub", lambda m, x, y: x - y, shapes=[x34, x34])
C("op_rsub", lambda m, x: 1.5 - x)
C("op_sub_scalar", lambda m, x: x - 3)
C("op_mul", lambda m, x, y: x * y, shapes=[x34, ()])
C("op_rmul", lambda m, x: 3 * x)
C("op_truediv", lambda m, x, y: x / y, shapes=[x34, U(x34, 0.5, 2)])
C("op_truediv_scalar", lambda m, x: x / 3)
C("op_rtruediv", lambda m, x: 2 / x, **POS)
C("op_floordiv", lambda m, x: x // 0.7, lambda m, x: m.div(x, 0.7, rounding_mode="floor"), low=-3, high=3)
C("op_rfloordiv", lambda m, x: 5 // x, lambda m, x: m.div(m.full_like(x, 5.0), x, rounding_mode="floor"), **POS)
C("op_mod", lambda m, x: x % 0.7, low=-3, high=3)
C("op_mod_tensor", lambda m, x, y: x % y, shapes=[U(x34, -3, 3), U((4,), 0.4, 1)])
# torch has no derivative for remainder(Scalar, Tensor); the Tensor-Tensor form has one
C("op_rmod", lambda m, x: 5.0 % x, lambda m, x: m.remainder(m.full_like(x, 5.0), x), **POS)
C("op_pow", lambda m, x: x**2.0)
C("op_pow_tensor", lambda m, x, y: x**y, shapes=[U(x34, 0.5, 2), x34])
C("op_rpow", lambda m, x: 3**x)
C("op_matmul", lambda m, x, y: x @ y, shapes=[x34, (4, 2)])
C("op_neg", lambda m, x: -x)
C("op_pos", lambda m, x: +(x * 2))
C("op_abs", lambda m, x: abs(x))

# ---- reductions
C("sum_all", lambda m, x: x.sum(), shapes=[x234])
C("sum_dim", lambda m, x: x.sum(1), shapes=[x234])
C("sum_negdim", lambda m, x: m.sum(x, -1), shapes=[x234])
C("sum_tuple", lambda m, x: x.sum((0, 2)), shapes=[x234])
C("sum_tuple_neg_keepdim", lambda m, x: x.sum((-1, 0), keepdim=True), shapes=[x234])
C("sum_keepdim", lambda m, x: x.sum(dim=1, keepdim=True), shapes=[x234])
C("sum_0d", lambda m, x: x.sum(), shapes=[()])
C("sum_0d_dim", lambda m, x: x.sum(0), shapes=[()])
C("sum_empty", lambda m, x: x.sum(), shapes=[(0, 3)])
C("sum_empty_dim0", lambda m, x: x.sum(0), shapes=[(0, 3)])
C("sum_empty_dim1", lambda m, x: x.sum(1), shapes=[(0, 3)])
C("sum_noncontig", lambda m, x: x.mT.sum(-1), shapes=[x234])
C("sum_empty_dim_list", lambda m, x: x.sum(()), shapes=[x234])  # () means all dims
C("sum_empty_dim_list_keepdim", lambda m, x: m.sum(x, [], keepdim=True), shapes=[x234])
C("sum_dtype", lambda m, x: x.sum(1, dtype=m.float64), shapes=[x234], dtypes=("float32",))
C("mean_all", lambda m, x: x.mean(), shapes=[x234])
C("mean_dim", lambda m, x: x.mean(1), shapes=[x234])
C("mean_tuple_keepdim", lambda m, x: m.mean(x, (0, -1), keepdim=True), shapes=[x234])
C("mean_negdim", lambda m, x: x.mean(-2), shapes=[x234])
C("mean_0d", lambda m, x: x.mean(), shapes=[()])
C("mean_empty_dim1", lambda m, x: x.mean(1), shapes=[(0, 3)])
C("mean_size1", lambda m, x: x.mean(0), shapes=[(1, 3)])
C("mean_empty_dim_list", lambda m, x: x.mean(()), shapes=[x234])
C("mean_dtype", lambda m, x: x.mean(dtype=m.float64), shapes=[x234], dtypes=("float32",))
C("prod_all", lambda m, x: x.prod(), shapes=[(2, 3)], low=0.5, high=1.5)
C("prod_dim", lambda m, x: x.prod(1), shapes=[x234])
C("prod_negdim_keepdim", lambda m, x: m.prod(x, -1, keepdim=True), shapes=[x234])
C("prod_0d", lambda m, x: x.prod(), shapes=[()])
C("prod_with_zero", lambda m, x: x.prod(), shapes=[WITH_ZERO])
C("prod_with_zero_dim", lambda m, x: x.prod(1), shapes=[WITH_ZERO])
C("prod_with_zero_dim0", lambda m, x: x.prod(0, keepdim=True), shapes=[WITH_ZERO])
C("prod_with_zero_tuple", lambda m, x: m.prod(x.reshape(2, 1, 3), (0, 2)), lambda m, x: x.reshape(2, 1, 3).prod(2).prod(0), shapes=[WITH_ZERO])
C("prod_two_zeros", lambda m, x: x.prod(1), shapes=[TWO_ZEROS])
C("prod_zero_0d", lambda m, x: x.prod(), shapes=[np.array(0.0)])
C("prod_empty", lambda m, x: x.prod(0), shapes=[(0, 3)])
C("amax_all", lambda m, x: x.amax(), shapes=[x234])
C("amax_dim", lambda m, x: x.amax(1), shapes=[x234])
C("amax_tuple", lambda m, x: m.amax(x, (0, 2)), shapes=[x234])
C("amax_negdim_keepdim", lambda m, x: x.amax(-1, keepdim=True), shapes=[x234])
C("amax_ties", lambda m, x: x.amax(1), shapes=[ROW_TIES], **KINK)
C("amax_all_ties", lambda m, x: x.amax(), shapes=[ROW_TIES], **KINK)
C("amax_empty_rows", lambda m, x: x.amax(1), shapes=[(0, 3)])
C("amin_all", lambda m, x: x.amin(), shapes=[x234])
C("amin_tuple_keepdim", lambda m, x: x.amin((1, 2), keepdim=True), shapes=[x234])
C("amin_ties", lambda m, x: m.amin(x, 0), shapes=[ROW_TIES.T.copy()], **KINK)
C("max_all", lambda m, x: x.max(), shapes=[x234])
C("max_all_ties", lambda m, x: m.max(x), shapes=[ROW_TIES], **KINK)
C("max_dim", lambda m, x: x.max(1), shapes=[x234])
C("max_dim_keepdim", lambda m, x: m.max(x, -1, keepdim=True), shapes=[x234])
C("max_dim_ties", lambda m, x: x.max(1), shapes=[ROW_TIES], **KINK)
C("max_dim_0d", lambda m, x: x.max(0), shapes=[()])
C("max_dim_noncontig", lambda m, x: x.mT.max(0), shapes=[x34])
C("min_all", lambda m, x: x.min(), shapes=[x234])
C("min_dim", lambda m, x: x.min(0), shapes=[x234])
C("min_dim_keepdim_ties", lambda m, x: x.min(1, keepdim=True), shapes=[ROW_TIES], **KINK)
C("max_values", lambda m, x: x.max(dim=2).values, shapes=[x234])
C("logsumexp_dim", lambda m, x: x.logsumexp(1), shapes=[x234])
C("logsumexp_tuple", lambda m, x: m.logsumexp(x, (0, 2)), shapes=[x234])
C("logsumexp_keepdim", lambda m, x: x.logsumexp(-1, keepdim=True), shapes=[x234])
C("logsumexp_all", lambda m, x: m.logsumexp(x), lambda m, x: m.logsumexp(x, (0, 1, 2)), shapes=[x234])
C("logsumexp_large", lambda m, x: (x * 400).logsumexp(1))
C("logsumexp_0d", lambda m, x: x.logsumexp(0), shapes=[()])
C("logsumexp_neg_inf", lambda m, x: x.logsumexp(1), shapes=[np.array([[0.5, -INF, 1.0], [-INF, 2.0, -INF]])], **KINK)
C("logsumexp_empty", lambda m, x: x.logsumexp(0), shapes=[(0, 3)])
C("norm_all", lambda m, x: x.norm(), shapes=[x234])
C("norm_fro", lambda m, x: x.norm("fro"), shapes=[x34])
C("norm_dim", lambda m, x: x.norm(dim=1), shapes=[x234])
C("norm_tuple_keepdim", lambda m, x: x.norm(2, (0, 2), True), shapes=[x234])
C("norm_p1", lambda m, x: x.norm(p=1, dim=1))
C("norm_inf", lambda m, x: x.norm(p=INF, dim=1))
C("norm_neg_inf", lambda m, x: x.norm(p=-INF, dim=-1))
C("norm_inf_all", lambda m, x: x.norm(p=INF), shapes=[x234])
C("norm_inf_ties", lambda m, x: x.norm(p=INF, dim=1), shapes=[ROW_TIES], **KINK)
C("norm_p3", lambda m, x: x.norm(p=3, dim=0))
C("norm_p3_all", lambda m, x: x.norm(p=3), shapes=[x234])
C("norm_p_half", lambda m, x: x.norm(p=0.5, dim=1))
C("norm_p_half_with_zero", lambda m, x: x.norm(p=0.5, dim=1), shapes=[WITH_ZERO], **KINK)
C("norm_p_neg1", lambda m, x: x.norm(p=-1, dim=1))
C("norm_empty_dim_list", lambda m, x: x.norm(dim=()), shapes=[x234])
C("norm_p0", lambda m, x: x.norm(p=0, dim=1), shapes=[KINKS])
C("norm_zero_vector", lambda m, x: x.norm(dim=1), shapes=[ZERO_ROW], **KINK)
C("norm_p3_zero_vector", lambda m, x: x.norm(p=3, dim=1), shapes=[ZERO_ROW], **KINK)
C("norm_p1_with_zero", lambda m, x: x.norm(p=1), shapes=[WITH_ZERO], **KINK)
C("cumsum", lambda m, x: x.cumsum(0), shapes=[x234])
C("cumsum_dim1", lambda m, x: m.cumsum(x, 1), shapes=[x234])
C("cumsum_negdim", lambda m, x: x.cumsum(-1), shapes=[x234])
C("cumsum_0d", lambda m, x: x.cumsum(0), shapes=[()])
C("cumsum_empty", lambda m, x: x.cumsum(1), shapes=[(0, 3)])
C("cumsum_noncontig", lambda m, x: x.mT.cumsum(0), shapes=[x34])
C("var_all", lambda m, x: x.var(), shapes=[x234])
C("var_dim", lambda m, x: x.var(1), shapes=[x234])
C("var_correction0", lambda m, x: m.var(x, dim=(0, 2), correction=0), shapes=[x234])
C("var_unbiased_false_keepdim", lambda m, x: x.var(-1, unbiased=False, keepdim=True), shapes=[x234])
C("var_correction1_tuple", lambda m, x: x.var((1, 2), correction=1), shapes=[x234])
C("std_all", lambda m, x: x.std(), shapes=[x234])
C("std_dim", lambda m, x: m.std(x, 1), shapes=[x234])
C("std_correction0_keepdim", lambda m, x: x.std((0, 2), keepdim=True, correction=0), shapes=[x234])
C("std_zero_variance", lambda m, x: x.std(1), shapes=[np.array([[0.5, 0.5, 0.5], [1.0, -2.0, 0.5]])], **KINK)
C("std_all_equal", lambda m, x: m.std(x), shapes=[np.full((2, 3), 1.5)], **KINK)
C("var_single_element", lambda m, x: x.var(), shapes=[(1,)], **KINK)
# torch's backward of var/std with dim=() takes n = 1 (a torch bug): compare with all dims listed
ALL3 = (0, 1, 2)
C("var_empty_dim_list", lambda m, x: x.var(()), lambda m, x: x.var(ALL3), shapes=[x234])
C("std_empty_dim_list", lambda m, x: x.std(dim=[], correction=0), lambda m, x: x.std(ALL3, correction=0), shapes=[x234])

# ---- movement
C("reshape", lambda m, x: x.reshape(4, 6), shapes=[x234])
C("reshape_minus1", lambda m, x: m.reshape(x, (-1, 2)), shapes=[x234])
C("reshape_0d", lambda m, x: x.reshape(1, 1), shapes=[()])
C("reshape_to_0d", lambda m, x: x.reshape(()), shapes=[(1, 1)])
C("reshape_empty", lambda m, x: x.reshape(3, 0), shapes=[(0, 3)])
C("reshape_noncontig", lambda m, x: x.mT.reshape(-1), shapes=[x234])
C("view", lambda m, x: x.view(6, 4), shapes=[x234])
C("view_tuple", lambda m, x: x.view((2, 12)), shapes=[x234])
C("permute", lambda m, x: x.permute(2, 0, 1), shapes=[x234])
C("permute_neg", lambda m, x: m.permute(x, (-1, -3, -2)), shapes=[x234])
C("transpose", lambda m, x: x.transpose(0, 2), shapes=[x234])
C("transpose_neg", lambda m, x: m.transpose(x, -1, -2), shapes=[x234])
C("swapaxes", lambda m, x: x.swapaxes(0, 1), shapes=[x234])
C("movedim", lambda m, x: m.movedim(x, 0, -1), shapes=[x234])
C("movedim_tuple", lambda m, x: x.movedim((0, 1), (2, 0)), shapes=[x234])
C("t", lambda m, x: x.t())
C("T", lambda m, x: x.T)
C("mT", lambda m, x: x.mT, shapes=[x234])
C("expand", lambda m, x: x.expand(2, 3, 4), shapes=[(3, 1)])
C("expand_minus1", lambda m, x: x.expand(5, -1, 4), shapes=[(3, 1)])
C("expand_0d", lambda m, x: x.expand(2, 3), shapes=[()])
C("expand_empty", lambda m, x: x.expand(0, 3), shapes=[(1, 3)])
C("expand_as", lambda m, x, y: x.expand_as(y) * y, shapes=[(4,), x34])
C("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)), shapes=[(4,)])
C("squeeze", lambda m, x: x.squeeze(), shapes=[(1, 3, 1, 2)])
C("squeeze_dim", lambda m, x: x.squeeze(-2), shapes=[(1, 3, 1, 2)])
C("squeeze_dim_not1", lambda m, x: x.squeeze(1), shapes=[(1, 3, 1, 2)])
C("squeeze_tuple", lambda m, x: m.squeeze(x, (0, 2)), shapes=[(1, 3, 1, 2)])
C("squeeze_0d", lambda m, x: x.squeeze(), shapes=[()])
C("unsqueeze", lambda m, x: x.unsqueeze(1))
C("unsqueeze_neg", lambda m, x: m.unsqueeze(x, -1))
C("unsqueeze_0d", lambda m, x: x.unsqueeze(0), shapes=[()])
C("flatten", lambda m, x: x.flatten(), shapes=[x234])
C("flatten_range", lambda m, x: m.flatten(x, 1, 2), shapes=[(2, 3, 4, 1)])
C("flatten_0d", lambda m, x: x.flatten(), shapes=[()])
C("unflatten", lambda m, x: x.unflatten(1, (2, 2)), shapes=[x34])
C("unflatten_minus1", lambda m, x: m.unflatten(x, -1, (-1, 2)), shapes=[x234])
C("getitem_int", lambda m, x: x[1], shapes=[x234])
C("getitem_neg_ints", lambda m, x: x[-1, -2], shapes=[x234])
C("getitem_slice", lambda m, x: x[:, 1:3], shapes=[x234])
C("getitem_step", lambda m, x: x[::2, :, 1::2], shapes=[(3, 3, 4)])
C("getitem_none_ellipsis", lambda m, x: x[None, ..., 1, None], shapes=[x234])
C("getitem_ellipsis", lambda m, x: x[..., :2], shapes=[x234])
C("getitem_empty_slice", lambda m, x: x[:, 2:2], shapes=[x234])
C("getitem_0d", lambda m, x: x[None], shapes=[()])
C("getitem_empty_list", lambda m, x: x[[]] * 2)
C("getitem_0d_index", lambda m, x: x[m.tensor(1)], shapes=[x234])
C("getitem_neg_index_array", lambda m, x: x[m.tensor(np.array([-1, 0, -1]))])
C("getitem_none_then_array", lambda m, x: x[None, m.tensor(IDX[:3])], shapes=[x34])
C("getitem_bool_mask_leading", lambda m, x: x[m.tensor(MASK34[:2, :3])], shapes=[x234])
C("getitem_ellipsis_middle", lambda m, x: x[1, ..., 1], shapes=[(2, 3, 2)])
C("getitem_int_array_dups", lambda m, x: x[m.tensor(IDX)], shapes=[x34])
C("getitem_list", lambda m, x: x[[0, 2, 0]])
C("getitem_int_array_dim1", lambda m, x: x[:, m.tensor(IDX)], shapes=[x234])
C("getitem_int_arrays_2d", lambda m, x: x[m.tensor(IDX2), m.tensor(IDX2 % 2)], shapes=[x34])
C("getitem_arrays_around_slice", lambda m, x: x[m.tensor(IDX[2:] - 1), :, m.tensor(IDX[:2])], shapes=[x234])
C("getitem_bool_mask", lambda m, x: x[m.tensor(MASK34)])
C("getitem_bool_rows", lambda m, x: x[m.tensor(MASK4[:3])])
C("getitem_bool_from_x", lambda m, x: x[x > 0.5])
C("getitem_mixed", lambda m, x: x[1:, m.tensor(IDX)], shapes=[x34])
C("getitem_noncontig", lambda m, x: x.mT[m.tensor(IDX[:3])], shapes=[x34])
C("index_select", lambda m, x: x.index_select(1, m.tensor(IDX)))
C("index_select_dim0", lambda m, x: m.index_select(x, 0, m.tensor(IDX % 2)), shapes=[x234])
C("index_select_neg", lambda m, x: x.index_select(-1, m.tensor(IDX)), shapes=[x234])
C("masked_fill", lambda m, x: x.masked_fill(m.tensor(MASK34), 0.5))
C("masked_fill_bcast", lambda m, x: m.masked_fill(x, m.tensor(MASK4), -1.0))
C("masked_fill_tensor_value", lambda m, x, v: x.masked_fill(m.tensor(MASK34), v), shapes=[x34, ()])
C("masked_fill_mask_larger", lambda m, x: x.masked_fill(m.tensor(MASK34), 2.0), shapes=[(4,)])
C("masked_select", lambda m, x: x.masked_select(m.tensor(MASK4)))
C("gather", lambda m, x: x.gather(1, m.tensor(IDX2)), shapes=[x34])
C("gather_dim0", lambda m, x: m.gather(x, 0, m.tensor(IDX2)), shapes=[x34])
C("gather_3d", lambda m, x: x.gather(-1, m.tensor(IDX2[:, None, :])), shapes=[x234])
C("take_along_dim", lambda m, x: m.take_along_dim(x, m.tensor(IDX2[:, :1].T), 1), shapes=[x34])
C("take_along_dim_bcast_x", lambda m, x: m.take_along_dim(x, m.tensor(IDX2[None]), 2), shapes=[(2, 1, 3)])
C("take_along_dim_flat", lambda m, x: m.take_along_dim(x, m.tensor(IDX2 * 3)), shapes=[x34])
# scatter with duplicate indices is nondeterministic in torch: these indices are unique per slot
SIDX = np.array([[0, 3], [2, 1], [1, 0]])
SIDX0 = np.array([[2, 0, 1, 0], [0, 1, 2, 1]])
C("scatter", lambda m, x, s: x.scatter(1, m.tensor(SIDX), s), shapes=[x34, (3, 2)])
C("scatter_dim0", lambda m, x, s: m.scatter(x, 0, m.tensor(SIDX0), s), shapes=[x34, (2, 4)])
C("scatter_value", lambda m, x: x.scatter(1, m.tensor(SIDX), 0.5))
C("scatter_add", lambda m, x, s: x.scatter_add(1, m.tensor(IDX2), s), shapes=[x34, (2, 3)])
C("scatter_add_dim0", lambda m, x, s: m.scatter_add(x, 0, m.tensor(IDX2), s), shapes=[x34, (2, 3)])
# src larger than index: only its leading block is used; torch's own backward returns a gradient
# of the index's shape there (and then rejects it), so torch gets the block sliced out
C("scatter_src_larger", lambda m, x, s: x.scatter(1, m.tensor(SIDX), s), lambda m, x, s: x.scatter(1, m.tensor(SIDX), s[:, :2]), shapes=[x34, (3, 3)])
C("scatter_add_src_larger", lambda m, x, s: x.scatter_add(0, m.tensor(IDX2), s), lambda m, x, s: x.scatter_add(0, m.tensor(IDX2), s[:2, :3]), shapes=[x34, (3, 4)])
C("cat", lambda m, x, y: m.cat([x, y]), shapes=[x34, (2, 4)])
C("cat_dim1", lambda m, x, y, z: m.cat([x, y, z], 1), shapes=[x34, (3, 1), (3, 2)])
C("cat_negdim", lambda m, x, y: m.cat((x, y), -1), shapes=[x234, (2, 3, 1)])
C("cat_empty_piece", lambda m, x, y: m.cat([x, y]), shapes=[x34, (0, 4)])
C("cat_legacy_1d_empty", lambda m, x, y: m.cat([x, y]), shapes=[x34, (0,)])
C("cat_single", lambda m, x: m.cat([x], 1))
C("cat_same", lambda m, x: m.cat([x, x.mT.mT], 1))
C("cat_promote", lambda m, x, y: m.cat([x, y.double()]), shapes=[x34, (1, 4)], dtypes=("float32",))
C("stack", lambda m, x, y: m.stack([x, y]), shapes=[x34, x34])
C("stack_dim", lambda m, x, y: m.stack((x, y), 1), shapes=[x34, x34])
C("stack_negdim", lambda m, x, y, z: m.stack([x, y, z], -1), shapes=[(4,), (4,), (4,)])
C("stack_0d", lambda m, x, y: m.stack([x, y]), shapes=[(), ()])
C("split", lambda m, x: x.split(2, 1), shapes=[(3, 5)])
C("split_sizes", lambda m, x: m.split(x, [1, 3, 1], -1), shapes=[(3, 5)])
C("split_partial_use", lambda m, x: x.split(2)[1] * 2, shapes=[(5, 3)])
C("split_single", lambda m, x: x.split(4, 0))
C("split_zero_size", lambda m, x: x.split([0, 3, 2], 1), shapes=[(3, 5)])
C("chunk", lambda m, x: x.chunk(3, 1), shapes=[(3, 5)])
C("chunk_even", lambda m, x: m.chunk(x, 2, 0), shapes=[(4, 3)])
C("tensor_split", lambda m, x: m.tensor_split(x, 3, 1), shapes=[(3, 7)])
C("unbind", lambda m, x: x.unbind(1))
C("unbind_dim0", lambda m, x: m.unbind(x), shapes=[x234])
C("unbind_size1", lambda m, x: x.unbind(0), shapes=[(1, 4)])
C("flip", lambda m, x: x.flip(0), shapes=[x234])
C("flip_dims", lambda m, x: m.flip(x, (0, -1)), shapes=[x234])
C("flip_0d", lambda m, x: x.flip(0), shapes=[()])
C("fliplr", lambda m, x: x.fliplr())
C("flipud", lambda m, x: m.flipud(x))
C("roll", lambda m, x: x.roll(1, 1))
C("roll_flat", lambda m, x: m.roll(x, 5))
C("roll_neg_multi", lambda m, x: x.roll((-1, 2), (0, 2)), shapes=[x234])
C("roll_empty", lambda m, x: x.roll(1, 0), shapes=[(0, 3)])
C("pad_constant", lambda m, x: pad(m, x, (1, 2)))
C("pad_constant_2d_value", lambda m, x: pad(m, x, (1, 0, 2, 1), value=0.5), shapes=[x234])
C("pad_constant_negative", lambda m, x: pad(m, x, (-1, 2, 1, -1)))
C("pad_constant_all_negative", lambda m, x: pad(m, x, (-1, -1)))
C("pad_reflect", lambda m, x: pad(m, x, (2, 1), mode="reflect"), shapes=[x234])
C("pad_reflect_2d", lambda m, x: pad(m, x, (1, 2, 2, 1), mode="reflect"), shapes=[(1, 3, 4)])
C("pad_replicate", lambda m, x: pad(m, x, (3, 1), mode="replicate"), shapes=[x234])
C("pad_replicate_2d", lambda m, x: pad(m, x, (1, 2, 0, 2), mode="replicate"), shapes=[(1, 3, 4)])
C("pad_circular", lambda m, x: pad(m, x, (2, 3), mode="circular"), shapes=[x234])
C("pad_circular_2d", lambda m, x: pad(m, x, (1, 1, 2, 0), mode="circular"), shapes=[(1, 3, 4)])
C("tril", lambda m, x: x.tril())
C("tril_diag", lambda m, x: m.tril(x, -1), shapes=[x234])
C("triu", lambda m, x: x.triu(1))
C("triu_batched_neg", lambda m, x: m.triu(x, -1), shapes=[(2, 4, 3)])
C("repeat", lambda m, x: x.repeat(2, 3))
C("repeat_more_dims", lambda m, x: x.repeat(2, 1, 3), shapes=[(3, 1)])
C("repeat_0d", lambda m, x: x.repeat(3), shapes=[()])
C("repeat_zero", lambda m, x: x.repeat(0, 2))
C("tile", lambda m, x: x.tile((2,)), shapes=[x34])
C("tile_more_dims", lambda m, x: m.tile(x, (2, 1, 2)))
C("repeat_interleave", lambda m, x: x.repeat_interleave(2, 1))
C("repeat_interleave_flat", lambda m, x: m.repeat_interleave(x, 3))
C("repeat_interleave_dim0", lambda m, x: x.repeat_interleave(2, dim=0), shapes=[x234])
C("repeat_interleave_tensor", lambda m, x: x.repeat_interleave(m.tensor(np.array([1, 0, 2])), dim=0))
C("hstack", lambda m, x, y: m.hstack([x, y]), shapes=[x34, (3, 2)])
C("vstack", lambda m, x, y: m.vstack([x, y]), shapes=[(4,), x34])
C("tril_wide", lambda m, x: x.tril(2), shapes=[(3, 5)])
C("triu_tall", lambda m, x: x.triu(-2), shapes=[(5, 3)])
C("roll_big_shift", lambda m, x: x.roll(7, -1))
C("flip_empty", lambda m, x: x.flip(1), shapes=[(0, 3)])
C("gather_negdim", lambda m, x: x.gather(-1, m.tensor(IDX2 + 1)), shapes=[x34])
C("unbind_negdim", lambda m, x: m.unbind(x, -1), shapes=[x234])

# ---- linalg
C("matmul_1d_1d", lambda m, x, y: x @ y, shapes=[(4,), (4,)])
C("matmul_1d_2d", lambda m, x, y: m.matmul(x, y), shapes=[(3,), x34])
C("matmul_2d_1d", lambda m, x, y: x.matmul(y), shapes=[x34, (4,)])
C("matmul_2d_2d", lambda m, x, y: x @ y, shapes=[x34, (4, 2)])
C("matmul_3d_3d", lambda m, x, y: x @ y, shapes=[x234, (2, 4, 2)])
C("matmul_3d_2d", lambda m, x, y: x @ y, shapes=[x234, (4, 2)])
C("matmul_2d_3d", lambda m, x, y: x @ y, shapes=[x34, (2, 4, 2)])
C("matmul_1d_3d", lambda m, x, y: x @ y, shapes=[(3,), x234])
C("matmul_3d_1d", lambda m, x, y: x @ y, shapes=[x234, (4,)])
C("matmul_4d_1d", lambda m, x, y: x @ y, shapes=[(2, 1, 2, 3), (3,)])
C("matmul_bcast_batch", lambda m, x, y: x @ y, shapes=[(2, 1, 3, 4), (3, 4, 2)])
C("matmul_bcast_batch_size1", lambda m, x, y: x @ y, shapes=[(1, 2, 3), (2, 3, 2)])
C("matmul_empty_inner", lambda m, x, y: x @ y, shapes=[(3, 0), (0, 2)])
C("matmul_empty_outer", lambda m, x, y: x @ y, shapes=[(0, 3), (3, 2)])
C("matmul_noncontig", lambda m, x, y: x.mT @ y[:, ::2], shapes=[(4, 3), (4, 4)])
C("matmul_nograd_left", lambda m, x, y: x @ y, shapes=[x34, (4, 2)], nograd=(0,))
C("matmul_nograd_right_1d", lambda m, x, y: x @ y, shapes=[x234, (4,)], nograd=(1,))
C("matmul_same", lambda m, x: x @ x, shapes=[(3, 3)])
C("dot_empty", lambda m, x, y: m.dot(x, y), shapes=[(0,), (0,)])
C("mm", lambda m, x, y: m.mm(x, y), shapes=[x34, (4, 2)])
C("bmm", lambda m, x, y: x.bmm(y), shapes=[x234, (2, 4, 2)])
C("mv", lambda m, x, y: m.mv(x, y), shapes=[x34, (4,)])
C("dot", lambda m, x, y: m.dot(x, y), shapes=[(4,), (4,)])
C("inner", lambda m, x, y: x.inner(y), shapes=[(4,), (4,)])
C("outer", lambda m, x, y: m.outer(x, y), shapes=[(3,), (4,)])
C("einsum_matmul", lambda m, x, y: m.einsum("ij,jk->ik", x, y), shapes=[x34, (4, 2)])
C("einsum_sum_label", lambda m, x: m.einsum("ij->i", x))
C("einsum_full_contraction", lambda m, x, y: m.einsum("ij,jk->", x, y), shapes=[x34, (4, 2)])
C("einsum_transpose", lambda m, x: m.einsum("ijk->kij", x), shapes=[x234])
C("einsum_implicit", lambda m, x, y: m.einsum("ij,jk", x, y), shapes=[x34, (4, 2)])
C("einsum_ellipsis", lambda m, x, y: m.einsum("...ij,...jk->...ik", x, y), shapes=[x234, (2, 4, 2)])
C("einsum_ellipsis_bcast", lambda m, x, y: m.einsum("...ij,...jk->...ik", x, y), shapes=[(2, 1, 3, 4), (5, 4, 2)])
C("einsum_outer_three", lambda m, x, y, z: m.einsum("i,j,k->ijk", x, y, z), shapes=[(2,), (3,), (2,)])
C("einsum_batch_dot", lambda m, x, y: m.einsum("bi,bi->b", x, y), shapes=[x34, x34])
C("einsum_only_label", lambda m, x, y: m.einsum("ij,k->ik", x, y), shapes=[x34, (2,)])
C("einsum_list", lambda m, x, y: m.einsum("ij,jk->ik", [x, y]), shapes=[x34, (4, 2)])
C("einsum_spaces_upper", lambda m, x, y: m.einsum("iJ, Jk -> ki", x, y), shapes=[x34, (4, 2)])
C("einsum_same_operand", lambda m, x: m.einsum("ij,ij->", x, x))
C("einsum_diagonal", lambda m, x: m.einsum("ii->i", x), shapes=[(3, 3)])
C("einsum_trace", lambda m, x: m.einsum("ii", x), shapes=[(3, 3)])
C("einsum_diagonal_times", lambda m, x, y: m.einsum("ii,i->i", x, y), shapes=[(3, 3), (3,)])
C("einsum_diagonal_3d", lambda m, x: m.einsum("iij->ij", x), shapes=[(3, 3, 2)])
C("einsum_diagonal_summed", lambda m, x, y: m.einsum("iji,j->", x, y), shapes=[(2, 3, 2), (3,)])

# ---- nn
C("softmax", lambda m, x: x.softmax(-1), shapes=[x234])
C("softmax_dim0", lambda m, x: m.softmax(x, 0), shapes=[x234])
C("softmax_dim1", lambda m, x: x.softmax(dim=1), shapes=[x234])
C("softmax_large", lambda m, x: (x * 500).softmax(1))
C("softmax_0d", lambda m, x: x.softmax(0), shapes=[()])
C("softmax_noncontig", lambda m, x: x.mT.softmax(-1), shapes=[x234])
C("softmax_empty", lambda m, x: x.softmax(1), shapes=[(0, 3)])
C("softmax_dtype", lambda m, x: x.softmax(1, dtype=m.float64), shapes=[x34], dtypes=("float32",))
C("softmax_size1_dim", lambda m, x: x.softmax(1), shapes=[(3, 1)])
C("log_softmax", lambda m, x: x.log_softmax(-1), shapes=[x234])
C("log_softmax_dim0", lambda m, x: m.log_softmax(x, 0), shapes=[x234])
C("log_softmax_dim1", lambda m, x: x.log_softmax(1), shapes=[x234])
C("log_softmax_large", lambda m, x: (x * 500).log_softmax(-1))
C("log_softmax_0d", lambda m, x: x.log_softmax(0), shapes=[()])
C("log_softmax_dtype", lambda m, x: x.log_softmax(-1, dtype=m.float64), dtypes=("float32",))
C("softmax_masked", lambda m, x: x.softmax(-1), shapes=[np.array([[0.5, -INF, 1.0], [-INF, 2.0, -INF]])], **KINK)
C("log_softmax_masked", lambda m, x: x.log_softmax(1), shapes=[np.array([[0.5, -INF, 1.0], [-INF, 2.0, -INF]])], **KINK)

# ---- fused nn primitives (chainrule.nn.functional is torch.nn.functional)
TGT = np.array([1, 0, 3])
TGT_IGN = np.array([1, -100, 3])
TGT3 = np.array([[0, 3, 1], [2, 2, 0]])
W4 = np.array([0.5, 1.0, 2.0, 1.5])

C("linear", lambda m, x, w, b: nnf(m).linear(x, w, b), shapes=[x34, (5, 4), (5,)])
C("linear_nobias_3d", lambda m, x, w: nnf(m).linear(x, w), shapes=[x234, (2, 4)])
C("linear_1d", lambda m, x, w, b: nnf(m).linear(x, w, b), shapes=[(4,), (5, 4), (5,)])
C("linear_nograd_x", lambda m, x, w, b: nnf(m).linear(x, w, b), shapes=[x234, (5, 4), (5,)], nograd=(0,))
C("linear_noncontig", lambda m, x, w: nnf(m).linear(x.mT, w[:, ::2]), shapes=[(4, 3), (2, 8)])
C("cross_entropy", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT)))
C("cross_entropy_sum_weight", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT), weight=m.tensor(W4).to(x.dtype), reduction="sum"))
C("cross_entropy_none_ignore", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT_IGN), reduction="none"))
C("cross_entropy_mean_weight_ignore", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT_IGN), weight=m.tensor(W4).to(x.dtype)))
C("cross_entropy_3d", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT3)), shapes=[(2, 4, 3)])
C("cross_entropy_1d", lambda m, x: nnf(m).cross_entropy(x, m.tensor(np.array(2))), shapes=[(4,)])
C("cross_entropy_large_logits", lambda m, x: nnf(m).cross_entropy(x * 300, m.tensor(TGT)))
C("cross_entropy_label_smoothing", lambda m, x: nnf(m).cross_entropy(x, m.tensor(TGT), label_smoothing=0.1))
C("cross_entropy_probs", lambda m, x, p: nnf(m).cross_entropy(x, p.softmax(1)), shapes=[x34, x34])
C("nll_loss", lambda m, x: nnf(m).nll_loss(x.log_softmax(1), m.tensor(TGT)))
C("mse_loss", lambda m, x, y: nnf(m).mse_loss(x, y), shapes=[x34, x34])
C("mse_loss_sum", lambda m, x, y: nnf(m).mse_loss(x, y, reduction="sum"), shapes=[x34, x34])
C("mse_loss_none", lambda m, x, y: nnf(m).mse_loss(x, y, reduction="none"), shapes=[x34, x34])
C("mse_loss_empty", lambda m, x, y: nnf(m).mse_loss(x, y, reduction="sum"), shapes=[(0, 3), (0, 3)])
C("nll_loss_none_weight_ignore", lambda m, x: nnf(m).nll_loss(x, m.tensor(TGT_IGN), weight=m.tensor(W4).to(x.dtype), reduction="none"))
C("nll_loss_mean_weight", lambda m, x: nnf(m).nll_loss(x, m.tensor(TGT), weight=m.tensor(W4).to(x.dtype)))
C("nll_loss_3d_sum", lambda m, x: nnf(m).nll_loss(x, m.tensor(TGT3), reduction="sum"), shapes=[(2, 4, 3)])

# ---- copies and casts
C("clone", lambda m, x: x.clone())
C(
    "to_device_copy",
    lambda m, x: (x.to("cpu", copy=True) if m is torch else cr.ops.device.to_device(x, "cpu", copy=True)),
    out_device="cpu",
)
C("clone_fn_noncontig", lambda m, x: m.clone(x.mT), shapes=[x234])
C("contiguous", lambda m, x: x.mT.contiguous() * 2, shapes=[x234])
# float32 outputs: central differences in float64 would measure float32 rounding
C("cast_64_to_32", lambda m, x: x.float(), dtypes=("float64",), gradcheck=False, gradgrad=False, tol=1e5)
C("cast_32_to_64", lambda m, x: x.double() * 3, dtypes=("float32",))
C("cast_to_dtype", lambda m, x: x.to(m.float32).to(m.float64), dtypes=("float64",), tol=1e5, gradcheck=False, gradgrad=False)
C("cast_type_as", lambda m, x, y: x.double().type_as(y) * y, dtypes=("float32",), shapes=[x34, x34], nograd=(1,))
C("cast_mixed_promote", lambda m, x, y: x + y.float(), shapes=[x34, (4,)], dtypes=("float32",))

# ---- fused recurrent cells (chainrule.ops.rnn; the input projection xg is given): torch's cells
# with an identity input weight

C("rnn_cell_tanh", lambda m, xg, h, w, b: cell(m, "rnn_tanh", xg, h, w, b), shapes=[(3, 2), (3, 2), (2, 2), (2,)])
C("rnn_cell_relu", lambda m, xg, h, w, b: cell(m, "rnn_relu", xg, h, w, b), shapes=[(3, 2), (3, 2), (2, 2), (2,)])
C("rnn_cell_nobias_3d", lambda m, xg, h, w: cell(m, "rnn_tanh", xg, h, w, None), shapes=[(2, 3, 2), (2, 3, 2), (2, 2)])
C("gru_cell", lambda m, xg, h, w, b: cell(m, "gru", xg, h, w, b), shapes=[(3, 6), (3, 2), (6, 2), (6,)])
C("gru_cell_nobias_3d", lambda m, xg, h, w: cell(m, "gru", xg, h, w, None), shapes=[(2, 3, 6), (2, 3, 2), (6, 2)])
C("gru_cell_nograd_h", lambda m, xg, h, w, b: cell(m, "gru", xg, h, w, b), shapes=[(3, 6), (3, 2), (6, 2), (6,)], nograd=(1,))
C("lstm_cell", lambda m, xg, h, c, w, b: cell(m, "lstm", xg, h, c, w, b), shapes=[(3, 8), (3, 2), (3, 2), (8, 2), (8,)])
C("lstm_cell_nobias_3d", lambda m, xg, h, c, w: cell(m, "lstm", xg, h, c, w, None), shapes=[(2, 3, 8), (2, 3, 2), (2, 3, 2), (8, 2)])
C("lstm_cell_h_only", lambda m, xg, h, c, w, b: cell(m, "lstm", xg, h, c, w, b)[0], shapes=[(3, 8), (3, 2), (3, 2), (8, 2), (8,)])
C("lstm_cell_nograd_xg", lambda m, xg, h, c, w, b: cell(m, "lstm", xg, h, c, w, b), shapes=[(3, 8), (3, 2), (3, 2), (8, 2), (8,)], nograd=(0,))

# ---- activations (chainrule.ops.activation is torch.nn.functional's / torch.erf)

C("erf", lambda m, x: act(m, "erf", x), low=-3, high=3)
C("erf_tails", lambda m, x: act(m, "erf", x), shapes=[np.array([-30.0, -6.0, -0.49, 0.0, 0.51, 2.5, 6.0, 30.0])], **KINK)
C("leaky_relu", lambda m, x: act(m, "leaky_relu", x, 0.1))
C("leaky_relu_at_zero", lambda m, x: act(m, "leaky_relu", x), shapes=[KINKS], **KINK)
C("elu", lambda m, x: act(m, "elu", x, alpha=1.5))
C("elu_at_zero", lambda m, x: act(m, "elu", x, alpha=0.5), shapes=[KINKS], **KINK)
C("gelu", lambda m, x: act(m, "gelu", x), low=-4, high=4)
C("gelu_tanh", lambda m, x: act(m, "gelu", x, approximate="tanh"), low=-4, high=4)
C("silu", lambda m, x: act(m, "silu", x), low=-6, high=6)
C("softplus", lambda m, x: act(m, "softplus", x), low=-5, high=5)
C("softplus_beta_threshold", lambda m, x: act(m, "softplus", x, beta=2.0, threshold=3.0), low=-3, high=3)
C("hardtanh", lambda m, x: act(m, "hardtanh", x, -0.5, 1.0))
C("hardtanh_at_bounds", lambda m, x: act(m, "hardtanh", x, -0.5, 0.5), shapes=[KINKS], **KINK)
C("step_ste", lambda m, x: surrogate(m, "step", x), gradcheck=False)
C("step_sigmoid", lambda m, x: surrogate(m, "step", x, "sigmoid", 2.0), gradcheck=False)
C("step_triangle", lambda m, x: surrogate(m, "step", x, "triangle"), gradcheck=False)
C("step_at_zero", lambda m, x: surrogate(m, "step", x, "sigmoid"), shapes=[KINKS], **KINK)
C("sign_ste", lambda m, x: surrogate(m, "sign_ste", x), gradcheck=False)
C("sign_ste_sigmoid", lambda m, x: surrogate(m, "sign_ste", x, "sigmoid"), gradcheck=False)
C("sign_ste_triangle", lambda m, x: surrogate(m, "sign_ste", x, "triangle", 0.75), gradcheck=False)

# ---- normalisation (chainrule.ops.norm is torch.nn.functional's *_norm)

RSTAT = [U((3,), -1, 1), U((3,), 0.5, 2)]
C("batch_norm_train", lambda m, x, w, b: normf(m, "batch_norm", x, None, None, w, b, training=True), shapes=[(4, 3), (3,), (3,)])
C("batch_norm_train_3d_no_affine", lambda m, x: normf(m, "batch_norm", x, None, None, training=True), shapes=[(2, 3, 4)])
C("batch_norm_running_stats", bn_running, shapes=[(2, 3, 2, 2), (3,), (3,)])
C("batch_norm_eval", lambda m, x, w, b, rm, rv: normf(m, "batch_norm", x, rm, rv, w, b, eps=1e-3), shapes=[(4, 3, 2), (3,), (3,)] + RSTAT, nograd=(3, 4))
C("layer_norm", lambda m, x, w, b: normf(m, "layer_norm", x, (4,), w, b), shapes=[x34, (4,), (4,)])
C("layer_norm_2d_shape", lambda m, x, w, b: normf(m, "layer_norm", x, [3, 4], w, b, eps=1e-3), shapes=[x234, x34, x34])
C("layer_norm_no_affine_noncontig", lambda m, x: normf(m, "layer_norm", x.mT, (3,)), shapes=[x234])
C("group_norm", lambda m, x, w, b: normf(m, "group_norm", x, 2, w, b), shapes=[(2, 4, 3), (4,), (4,)])
C("group_norm_one_group_4d", lambda m, x: normf(m, "group_norm", x, 1), shapes=[(2, 3, 2, 2)])
C("group_norm_per_channel", lambda m, x, w, b: normf(m, "group_norm", x, 3, w, b), shapes=[(2, 3, 4), (3,), (3,)])

# ---- convolutions (chainrule.ops.conv is torch.nn.functional's conv*; ops.pooling its *pool*)

C("conv1d", lambda m, x, w, b: conv(m, "conv1d", x, w, b), shapes=[(2, 3, 6), (4, 3, 2), (4,)])
C("conv1d_stride_pad_dil", lambda m, x, w: conv(m, "conv1d", x, w, stride=2, padding=2, dilation=2), shapes=[(2, 3, 7), (2, 3, 3)])
C("conv1d_same_unbatched", lambda m, x, w: conv(m, "conv1d", x, w, padding="same"), shapes=[(3, 5), (2, 3, 4)])
C("conv1d_groups", lambda m, x, w, b: conv(m, "conv1d", x, w, b, groups=2), shapes=[(1, 4, 5), (6, 2, 3), (6,)])
C("conv2d", lambda m, x, w, b: conv(m, "conv2d", x, w, b), shapes=[(2, 2, 4, 5), (3, 2, 2, 3), (3,)])
C("conv2d_stride_pad", lambda m, x, w: conv(m, "conv2d", x, w, stride=(2, 1), padding=(1, 2)), shapes=[(1, 2, 5, 4), (2, 2, 3, 3)])
C("conv2d_dilation_groups", lambda m, x, w: conv(m, "conv2d", x, w, dilation=2, groups=2), shapes=[(1, 4, 5, 5), (4, 2, 2, 2)])
C("conv2d_noncontig_nograd_x", lambda m, x, w: conv(m, "conv2d", x.transpose(2, 3), w), shapes=[(1, 2, 5, 4), (2, 2, 2, 2)], nograd=(0,))
C("conv_transpose1d", lambda m, x, w, b: conv(m, "conv_transpose1d", x, w, b, stride=2, padding=1, output_padding=1), shapes=[(2, 3, 4), (3, 2, 3), (2,)])
C("conv_transpose2d", lambda m, x, w: conv(m, "conv_transpose2d", x, w), shapes=[(1, 2, 3, 3), (2, 3, 2, 2)])
C("conv_transpose2d_stride_groups_dil", lambda m, x, w, b: conv(m, "conv_transpose2d", x, w, b, stride=2, padding=1, output_padding=(1, 0), groups=2, dilation=(1, 2)), shapes=[(1, 4, 3, 3), (4, 1, 2, 2), (2,)])

# ---- pooling
C("max_pool1d", lambda m, x: conv(m, "max_pool1d", x, 2), shapes=[(2, 3, 6)])
C("max_pool1d_stride_pad_dil_ceil", lambda m, x: conv(m, "max_pool1d", x, 3, stride=2, padding=1, dilation=2, ceil_mode=True), shapes=[(1, 2, 8)])
C("max_pool2d", lambda m, x: conv(m, "max_pool2d", x, 2), shapes=[(1, 2, 4, 6)])
C("max_pool2d_overlap_pad", lambda m, x: conv(m, "max_pool2d", x, (3, 2), stride=1, padding=1), shapes=[(2, 1, 4, 5)])
C("max_pool2d_unbatched_ceil", lambda m, x: conv(m, "max_pool2d", x, 2, ceil_mode=True), shapes=[(2, 5, 5)])
C("max_pool2d_indices", lambda m, x: conv(m, "max_pool2d", x, 2, return_indices=True), shapes=[(1, 2, 4, 4)])
C("max_pool2d_ties", lambda m, x: conv(m, "max_pool2d", x, 2, stride=1), shapes=[np.array([[[1.0, 1.0, 0.5], [1.0, 0.0, 0.5], [2.0, 2.0, 2.0]]])], **KINK)
C("avg_pool1d", lambda m, x: conv(m, "avg_pool1d", x, 3, stride=2, padding=1), shapes=[(2, 3, 7)])
C("avg_pool1d_ceil_exclude_pad", lambda m, x: conv(m, "avg_pool1d", x, 2, padding=1, ceil_mode=True, count_include_pad=False), shapes=[(1, 2, 6)])
C("avg_pool2d", lambda m, x: conv(m, "avg_pool2d", x, 2), shapes=[(1, 2, 4, 6)])
C("avg_pool2d_pad_ceil", lambda m, x: conv(m, "avg_pool2d", x, (3, 2), stride=2, padding=1, ceil_mode=True), shapes=[(2, 1, 5, 4)])
C("avg_pool2d_divisor_unbatched", lambda m, x: conv(m, "avg_pool2d", x, 2, stride=1, divisor_override=3), shapes=[(2, 3, 4)])
C("adaptive_avg_pool1d", lambda m, x: conv(m, "adaptive_avg_pool1d", x, 3), shapes=[(2, 3, 7)])
C("adaptive_avg_pool1d_divisible", lambda m, x: conv(m, "adaptive_avg_pool1d", x, 3), shapes=[(2, 3, 6)])
C("adaptive_avg_pool2d", lambda m, x: conv(m, "adaptive_avg_pool2d", x, (2, 3)), shapes=[(1, 2, 5, 7)])
C("adaptive_avg_pool2d_global", lambda m, x: conv(m, "adaptive_avg_pool2d", x, 1), shapes=[(2, 2, 3, 3)])

# ---- binary cross-entropy (chainrule.nn.functional is torch.nn.functional); the target is differentiable
PROB = U(x34, 0.05, 0.95)
C("bce", lambda m, p, y: nnf(m).binary_cross_entropy(p, y), shapes=[PROB, U(x34, 0, 1)])
C("bce_weight_sum", lambda m, p, y: nnf(m).binary_cross_entropy(p, y, weight=m.tensor(W4).to(p.dtype), reduction="sum"), shapes=[PROB, U(x34, 0, 1)])
C("bce_none_hard_targets", lambda m, p: nnf(m).binary_cross_entropy(p, m.tensor(MASK34).to(p.dtype), reduction="none"), shapes=[PROB])
C("bce_at_0_and_1", lambda m, p, y: nnf(m).binary_cross_entropy(p, y), shapes=[np.array([0.0, 1.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.25, 0.0])], nograd=(1,), **KINK)
C("bce_with_logits", lambda m, x, y: nnf(m).binary_cross_entropy_with_logits(x, y), shapes=[U(x34, -5, 5), U(x34, 0, 1)])
C("bce_with_logits_pos_weight", lambda m, x, y: nnf(m).binary_cross_entropy_with_logits(x, y, pos_weight=m.tensor(W4).to(x.dtype), reduction="none"), shapes=[U(x34, -5, 5), U(x34, 0, 1)])
C("bce_with_logits_weight_sum", lambda m, x, y: nnf(m).binary_cross_entropy_with_logits(x, y, weight=m.tensor(W4[:, None][:3]).to(x.dtype), reduction="sum"), shapes=[U(x34, -5, 5), U(x34, 0, 1)])
C("bce_with_logits_large", lambda m, x, y: nnf(m).binary_cross_entropy_with_logits(x * 100, y), shapes=[x34, U(x34, 0, 1)])

# ---- bfloat16 (ml_dtypes'; kind 'V'): results stay bfloat16, as torch's, and match its values
C("bf16_exp", lambda m, x: x.exp(), **BF16)
C("bf16_tanh_noncontig", lambda m, x: x.mT.tanh(), shapes=[x234], **BF16)
C("bf16_mul_bcast", lambda m, x, y: x * y, shapes=[(2, 3, 1), (3, 4)], **BF16)
C("bf16_sub_float_scalar", lambda m, x: x * 0.5 - 1.25, **BF16)
C("bf16_div_int_scalar", lambda m, x: 3 / (x + 4) + x / 2, **BF16)
C("bf16_pow_clamp", lambda m, x: x.clamp(-0.5, 1.5) ** 2, **BF16)
C("bf16_sum_dim", lambda m, x: x.sum(1), shapes=[x234], **BF16)
C("bf16_mean_var", lambda m, x: (x.mean(-1), x.var(0)), shapes=[x234], **BF16)
C("bf16_norm_p3", lambda m, x: x.norm(p=3, dim=0), **BF16)
C("bf16_matmul", lambda m, x, y: x @ y, shapes=[x234, (4, 2)], **BF16)
C("bf16_matmul_1d", lambda m, x, y: x @ y, shapes=[x34, (4,)], **BF16)
C("bf16_einsum", lambda m, x, y: m.einsum("bij,jk->bk", x, y), shapes=[x234, (4, 2)], **BF16)
C("bf16_softmax", lambda m, x: x.softmax(-1), shapes=[x234], **BF16)
C("bf16_log_softmax", lambda m, x: x.log_softmax(1), shapes=[x234], **BF16)
C("bf16_float32_mix", lambda m, x, y: x + y.float(), shapes=[x34, (4,)], **BF16)
C("bf16_cast_round_trip", lambda m, x: (x.double() * 3).to(m.bfloat16), **BF16)
C("bf16_erf", lambda m, x: act(m, "erf", x), low=-3, high=3, **BF16)
C("bf16_leaky_relu", lambda m, x: act(m, "leaky_relu", x, 0.1), **BF16)
C("bf16_gelu", lambda m, x: act(m, "gelu", x), low=-4, high=4, **BF16)
C("bf16_gelu_tanh", lambda m, x: act(m, "gelu", x, approximate="tanh"), low=-4, high=4, **BF16)
C("bf16_softplus", lambda m, x: act(m, "softplus", x, beta=2.0, threshold=3.0), low=-3, high=3, **BF16)
C("bf16_hardtanh", lambda m, x: act(m, "hardtanh", x, -0.5, 1.0), **BF16)
C("bf16_chain_intermediate", lambda m, x: act(m, "leaky_relu", act(m, "gelu", x), 0.2).tanh() * 1.5, **BF16)
C("bf16_linear", lambda m, x, w, b: nnf(m).linear(x, w, b), shapes=[x234, (5, 4), (5,)], **BF16)
C("bf16_rnn_cell_relu", lambda m, xg, h, w, b: cell(m, "rnn_relu", xg, h, w, b), shapes=[(3, 2), (3, 2), (2, 2), (2,)], **BF16)
C("bf16_gru_cell", lambda m, xg, h, w, b: cell(m, "gru", xg, h, w, b), shapes=[(3, 6), (3, 2), (6, 2), (6,)], **BF16)
C("bf16_lstm_cell", lambda m, xg, h, c, w, b: cell(m, "lstm", xg, h, c, w, b), shapes=[(3, 8), (3, 2), (3, 2), (8, 2), (8,)], **BF16)
C("bf16_conv1d", lambda m, x, w, b: conv(m, "conv1d", x, w, b, padding=1), shapes=[(2, 3, 6), (4, 3, 3), (4,)], **BF16)
C("bf16_conv_transpose2d", lambda m, x, w: conv(m, "conv_transpose2d", x, w, stride=2), shapes=[(1, 2, 3, 3), (2, 3, 2, 2)], **BF16)
C("bf16_max_pool2d", lambda m, x: conv(m, "max_pool2d", x, (3, 2), stride=1, padding=1), shapes=[(2, 1, 4, 5)], **BF16)
C("bf16_avg_pool1d", lambda m, x: conv(m, "avg_pool1d", x, 3, stride=2, padding=1), shapes=[(2, 3, 7)], **BF16)
C("bf16_adaptive_avg_pool2d", lambda m, x: conv(m, "adaptive_avg_pool2d", x, (2, 3)), shapes=[(1, 2, 5, 7)], **BF16)
C("bf16_cross_entropy_probs", lambda m, x, p: nnf(m).cross_entropy(x, p.softmax(1)), shapes=[x34, x34], **BF16)
C("bf16_cross_entropy_probs_smoothing", lambda m, x, p: nnf(m).cross_entropy(x, p.softmax(1), label_smoothing=0.2), shapes=[x34, x34], **BF16)
C("bf16_sdpa_float_mask", lambda m, q, k, v, mask: nnf(m).scaled_dot_product_attention(q, k, v, attn_mask=mask), shapes=[(2, 3, 4), (2, 5, 4), (2, 5, 4), (3, 5)], nograd=(3,), **BF16)
C("bf16_bce", lambda m, p, y: nnf(m).binary_cross_entropy(p, y), shapes=[PROB, U(x34, 0, 1)], **BF16)
# fmt: on


# ----------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("fn, tfn, kw", CASES)
def test_op(fn: Callable, tfn: Callable | None, kw: dict, device: str) -> None:
    check(fn, tfn, device=device, **kw)


def test_case_ids_unique() -> None:
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@BF16["marks"]
def test_bf16_intermediate_grads_keep_their_dtype(device: str) -> None:
    """Rules that mix Python floats with bfloat16 arrays compute in float32/float64 (NumPy's
    promotion); the engine rounds each gradient to its tensor's dtype, as PyTorch."""
    x = cr.tensor(np.linspace(-2, 2, 12).reshape(3, 4), device=device).to(cr.bfloat16)
    x.requires_grad_()
    F = cr.nn.functional
    y = F.leaky_relu(x, 0.1)  # backward: g * 0.1
    z = F.hardtanh(y, -0.5, 1.0)  # backward: where(..., g, 0.0)
    seen = []
    y.register_hook(lambda g: seen.append(g.dtype))
    z.retain_grad()
    (z * 1.5).sum().backward()
    assert seen == [cr.bfloat16] and z.grad.dtype == cr.bfloat16 and x.grad.dtype == cr.bfloat16
    (g,) = cr.autograd.grad((F.leaky_relu(x, 0.1) * 0.5).sum(), [x])
    assert g.dtype == cr.bfloat16 and g.device == x.device


def test_cast_dtype_round_trip(device: str) -> None:
    """A float64 leaf seen through a float32 cast gets a float64 gradient (and vice versa)."""
    for src, dst in (("float64", "float32"), ("float32", "float64")):
        x = cr.tensor(np.arange(6.0).reshape(2, 3), dtype=src, requires_grad=True, device=device)
        y = x.to(getattr(cr, dst))
        assert y.dtype == getattr(cr, dst) and y.device == x.device
        (y * y).sum().backward()
        assert x.grad.dtype == getattr(cr, src) and x.grad.device == x.device
        np.testing.assert_allclose(host(x.grad), 2 * host(x))


# ----------------------------------------------------------------------------- non-differentiable ops

FLOATS = np.array([[1.0, -2.0, 0.0, 3.5], [3.5, np.nan, -np.inf, 2.0], [0.0, 1.0, 1.0, -0.5]])
FLOATS2 = np.array([[1.0, 2.0, 0.0, -3.5], [3.5, 1.0, -np.inf, np.inf], [0.5, 1.0, -1.0, -0.5]])
FINITE = np.array([[1.0, -2.0, 0.0, 3.5], [3.5, 3.5, -1.0, 2.0], [0.0, 1.0, 1.0, -0.5]])
INTS = np.array([[1, -2, 0, 3], [3, 5, -1, 2], [0, 1, 1, -7]])
INTS2 = np.array([[1, 2, 0, -3], [3, 4, 1, 2], [5, 1, -1, 7]])
BOOLS = np.array(
    [[True, False, True, False], [True, True, True, True], [False, False, False, False]]
)
BOOLS2 = np.array(
    [[True, True, False, False], [False, True, False, True], [True, False, True, False]]
)

ND: list = []


def N(id: str, fn: Callable, *inputs: np.ndarray, tfn: Callable | None = None) -> None:
    ND.append(pytest.param(fn, tfn, inputs, id=id))


N("eq", lambda m, x, y: x == y, FLOATS, FLOATS2)
N("ne", lambda m, x, y: x != y, FLOATS, FLOATS2)
N("lt", lambda m, x, y: x < y, FLOATS, FLOATS2)
N("le_bcast", lambda m, x, y: x <= y, FLOATS, FLOATS2[0])
N("gt_scalar", lambda m, x: x > 1.0, FLOATS)
N("ge_fn", lambda m, x, y: m.ge(x, y), FLOATS, FLOATS2)
N("eq_int_float", lambda m, x, y: m.eq(x, y), INTS, FINITE)
N("lt_int_scalar", lambda m, x: x < 2, INTS)
N("rgt_scalar", lambda m, x: 0.5 < x, FLOATS)
N("greater_equal", lambda m, x, y: m.greater_equal(x, y), INTS, INTS2)
N("logical_and", lambda m, x, y: m.logical_and(x, y), BOOLS, BOOLS2)
N("logical_or_float", lambda m, x, y: m.logical_or(x, y), FINITE, FLOATS2)
N("logical_xor", lambda m, x, y: m.logical_xor(x, y), BOOLS, BOOLS2)
N("logical_not", lambda m, x: m.logical_not(x), FINITE)
N("bitwise_and_bool", lambda m, x, y: x & y, BOOLS, BOOLS2)
N("bitwise_or_int", lambda m, x, y: x | y, INTS, INTS2)
N("bitwise_xor_int", lambda m, x, y: x ^ y, INTS, INTS2)
N("bitwise_not_bool", lambda m, x: ~x, BOOLS)
N("bitwise_not_int", lambda m, x: ~x, INTS)
N("isnan", lambda m, x: x.isnan(), FLOATS)
N("isinf", lambda m, x: m.isinf(x), FLOATS)
N("isfinite", lambda m, x: x.isfinite(), FLOATS)
N("argmax_all", lambda m, x: x.argmax(), FINITE)
N("argmax_dim_ties", lambda m, x: x.argmax(1), FINITE)
N("argmax_keepdim", lambda m, x: m.argmax(x, 0, keepdim=True), FINITE)
N("argmin_all", lambda m, x: m.argmin(x), FINITE)
N("argmin_dim_ties", lambda m, x: x.argmin(-1), FINITE)
N("argmax_int", lambda m, x: x.argmax(0), INTS)
N("argmax_0d", lambda m, x: x.argmax(), np.array(2.5))
N("max_dim_indices_ties", lambda m, x: x.max(1).indices, FINITE)
N("min_dim_indices_ties", lambda m, x: x.min(0)[1], FINITE)
N("all", lambda m, x: x.all(), BOOLS)
N("all_dim", lambda m, x: x.all(1), BOOLS)
N("any_dim_keepdim", lambda m, x: m.any(x, 0, keepdim=True), BOOLS)
N("any_float", lambda m, x: x.any(), FINITE)
N("all_float_dim", lambda m, x: x.all(-1), FINITE)
N("count_nonzero", lambda m, x: x.count_nonzero(), FINITE)
N("count_nonzero_dim", lambda m, x: m.count_nonzero(x, 1), INTS)
N("nonzero", lambda m, x: x.nonzero(), FINITE)
N("nonzero_tuple", lambda m, x: m.nonzero(x, as_tuple=True), INTS)
N("long", lambda m, x: x.long(), FINITE)
N("int", lambda m, x: x.int(), FINITE)
N("bool", lambda m, x: x.bool(), FINITE)
N("to_int64", lambda m, x: x.to(m.int64), FINITE)
N("sum_bool", lambda m, x: x.sum(1), BOOLS)
N("sum_int", lambda m, x: m.sum(x), INTS)
N("cumsum_int", lambda m, x: x.cumsum(1), INTS)
N("floor_divide_int", lambda m, x, y: x // y, INTS, np.array([1, 2, -3, 4]))
N("remainder_int", lambda m, x, y: x % y, INTS, np.array([1, 2, -3, 4]))
N("div_int_true", lambda m, x, y: x / y, INTS, np.array([1, 2, -3, 4]))
N("add_int_float_scalar", lambda m, x: x + 1.5, INTS)
N("mul_int_bool", lambda m, x, y: x * y, INTS, BOOLS)
N("neg_int", lambda m, x: -x, INTS)
N("abs_int", lambda m, x: x.abs(), INTS)
N("exp_int", lambda m, x: x.exp(), INTS)
N("clamp_int", lambda m, x: x.clamp(-1, 2), INTS)
N("maximum_int", lambda m, x, y: m.maximum(x, y), INTS, INTS2)
N("where_int", lambda m, x, y: m.where(m.tensor(BOOLS), x, y), INTS, INTS2)
N("amax_int", lambda m, x: x.amax(1), INTS)
N("logsumexp_int", lambda m, x: x.logsumexp(1), INTS)
N("sign_int", lambda m, x: x.sign(), INTS)
N("round_int", lambda m, x: x.round(), INTS)


@pytest.mark.parametrize("fn, tfn, inputs", ND)
def test_nondifferentiable(fn: Callable, tfn: Callable | None, inputs: tuple, device: str) -> None:
    """Values and dtypes match torch; a float input that requires grad gives an output that doesn't
    (for the ops whose result is bool/int)."""
    m = cr if device == "cpu" else OnDevice(device)
    xs = [cr.tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in inputs]
    txs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    outs = _flat(fn(m, *xs))
    touts = _flat((tfn or fn)(torch, *txs))
    assert len(outs) == len(touts)
    for o, to in zip(outs, touts):
        assert _np_dtype(o) == _np_dtype(to), f"{o.dtype} != torch's {to.dtype}"
        assert o.shape == tuple(to.shape)
        assert o.requires_grad == to.requires_grad
        assert o.device.type == device, f"output on {o.device}, not {device}"
        if _np_dtype(o).kind == "f":
            tol = TOL[str(_np_dtype(o))]
            np.testing.assert_allclose(host(o), host(to), equal_nan=True, **tol)
        else:
            np.testing.assert_array_equal(host(o), host(to))


# ----------------------------------------------------------------------------- coverage of the ops

OP_MODULES = [
    importlib.import_module(f"chainrule.ops.{i.name}")
    for i in pkgutil.iter_modules(cr.ops.__path__)
]

# differentiable Op subclasses that are not ops themselves
ABSTRACT = {
    "ZeroGrad": "base of the piecewise-constant ops; no forward of its own",
    "_Reduction": "base of the reductions (shape bookkeeping); no forward of its own",
}

# op class -> the cases that exercise it (in their forward or, for backward-only helpers, in the
# graph a create_graph backward records)
OP_CASES = {
    "Neg": ["neg", "neg_fn_0d", "op_neg"],
    "Exp": ["exp", "exp_0d", "exp_empty", "exp_noncontig", "exp_f_order"],
    "Log": ["log", "log_strided"],
    "Log1p": ["log1p"],
    "Expm1": ["expm1"],
    "Sqrt": ["sqrt", "sqrt_0d", "std_all"],
    "Rsqrt": ["rsqrt"],
    "Sin": ["sin"],
    "Cos": ["cos", "cos_noncontig"],
    "Tan": ["tan"],
    "Tanh": ["tanh"],
    "Sigmoid": ["sigmoid", "sigmoid_extreme"],
    "Relu": ["relu", "relu_at_zero"],
    "Abs": ["abs", "abs_at_zero", "abs_empty", "op_abs"],
    "Sign": ["sign", "sign_at_zero"],
    "Floor": ["floor"],
    "Ceil": ["ceil"],
    "Round": ["round", "round_half_even", "round_decimals"],
    "Trunc": ["trunc", "div_trunc"],
    "Reciprocal": ["reciprocal", "reciprocal_neg"],
    "Square": ["square", "square_0d"],
    "Clamp": ["clamp", "clamp_min", "clamp_max", "clamp_at_bounds", "clip"],
    "ToDevice": ["to_device_copy"],
    "Cast": ["cast_64_to_32", "cast_32_to_64", "cast_to_dtype", "cast_type_as"],
    "Add": ["add", "add_bcast_row", "add_0d", "add_empty", "op_radd"],
    "Sub": ["sub", "sub_bcast", "sub_nograd_left", "op_rsub"],
    "Mul": ["mul", "mul_bcast", "mul_nograd", "op_rmul"],
    "Div": ["div", "div_bcast", "div_nograd", "op_rtruediv"],
    "Pow": ["pow_2", "pow_half", "rpow", "pow_tensor", "pow_zero_base", "op_pow"],
    "Maximum": ["maximum", "maximum_ties", "max_binary"],
    "Minimum": ["minimum", "minimum_ties", "min_binary_ties"],
    "Where": ["where", "where_bcast", "clamp_tensor", "masked_fill"],
    "Remainder": ["remainder", "remainder_scalar", "op_mod", "op_rmod"],
    "FloorDivide": ["floor_divide", "op_floordiv", "op_rfloordiv", "div_floor"],
    "Clone": ["clone", "clone_fn_noncontig"],
    "Sum": ["sum_all", "sum_dim", "sum_tuple", "sum_empty", "var_all"],
    "Mean": ["mean_all", "mean_dim", "mean_tuple_keepdim", "mean_empty_dim1"],
    "Prod": ["prod_all", "prod_dim", "prod_with_zero", "prod_two_zeros"],
    "Amax": ["amax_all", "amax_dim", "amax_ties", "max_all"],
    "Amin": ["amin_all", "amin_ties", "min_all"],
    "MaxDim": ["max_dim", "max_dim_ties", "min_dim", "max_dim_0d"],
    "LogSumExp": ["logsumexp_dim", "logsumexp_all", "logsumexp_large"],
    "Norm": ["norm_all", "norm_p1", "norm_inf", "norm_p3", "norm_zero_vector"],
    "Cumsum": ["cumsum", "cumsum_dim1", "cumsum_0d"],
    "Reshape": ["reshape", "view", "squeeze", "unsqueeze", "flatten", "unflatten"],
    "Permute": ["permute", "transpose", "t", "T", "mT", "movedim"],
    "Expand": ["expand", "expand_minus1", "broadcast_to", "expand_as"],
    "GetItem": ["getitem_int_array_dups", "getitem_bool_mask", "index_select", "pad_reflect"],
    "GetItemView": ["getitem_int", "getitem_slice", "getitem_step", "getitem_none_ellipsis"],
    "PutNew": ["getitem_int", "getitem_int_array_dups", "getitem_bool_mask"],
    "Gather": ["gather", "gather_3d", "take_along_dim", "scatter_add"],
    "ScatterAddNew": ["scatter", "scatter_add", "gather", "max_dim"],
    "Cat": ["cat", "cat_dim1", "stack", "split"],
    "Split": ["split", "split_sizes", "chunk", "unbind", "cat"],
    "Flip": ["flip", "flip_dims", "fliplr", "cumsum"],
    "Roll": ["roll", "roll_flat", "roll_neg_multi"],
    "Tril": ["tril", "triu", "tril_diag"],
    "Repeat": ["repeat", "tile", "repeat_more_dims"],
    "Pad": ["pad_constant", "pad_constant_negative", "pad_constant_all_negative"],
    "Matmul": ["matmul_1d_1d", "matmul_2d_2d", "matmul_bcast_batch", "mm", "bmm", "dot"],
    "Einsum": ["einsum_matmul", "einsum_sum_label", "einsum_ellipsis", "einsum_diagonal"],
    "Softmax": ["softmax", "softmax_dim0", "softmax_large"],
    "LogSoftmax": ["log_softmax", "log_softmax_dim0", "log_softmax_large", "nll_loss"],
    "Linear": ["linear", "linear_nobias_3d", "linear_1d", "linear_nograd_x"],
    "CrossEntropy": ["cross_entropy", "cross_entropy_3d", "cross_entropy_none_ignore"],
    "MSE": ["mse_loss", "mse_loss_sum", "mse_loss_none"],
    "NLL": ["nll_loss", "nll_loss_3d_sum", "nll_loss_none_weight_ignore"],
    "Erf": ["erf", "erf_tails", "gelu"],
    "LeakyRelu": ["leaky_relu", "leaky_relu_at_zero"],
    "Elu": ["elu", "elu_at_zero"],
    "Gelu": ["gelu", "gelu_tanh"],
    "Silu": ["silu"],
    "Softplus": ["softplus", "softplus_beta_threshold"],
    "Hardtanh": ["hardtanh", "hardtanh_at_bounds"],
    "Step": ["step_ste", "step_sigmoid", "step_triangle", "step_at_zero"],
    "SignSurrogate": ["sign_ste", "sign_ste_sigmoid", "sign_ste_triangle"],
    "BatchNorm": ["batch_norm_train", "batch_norm_running_stats", "batch_norm_eval"],
    "LayerNorm": ["layer_norm", "layer_norm_2d_shape", "layer_norm_no_affine_noncontig"],
    "GroupNorm": ["group_norm", "group_norm_one_group_4d", "group_norm_per_channel"],
    "Conv": ["conv1d", "conv2d", "conv2d_dilation_groups", "conv_transpose2d"],
    "ConvT": ["conv_transpose1d", "conv_transpose2d_stride_groups_dil", "conv2d", "conv1d_groups"],
    "ConvWGrad": ["conv2d", "conv1d_stride_pad_dil", "conv_transpose2d"],
    "MaxPool": ["max_pool1d", "max_pool2d", "max_pool2d_unbatched_ceil", "max_pool2d_ties"],
    "AvgPool": ["avg_pool1d", "avg_pool2d", "avg_pool2d_pad_ceil", "adaptive_avg_pool1d_divisible"],
    "AvgPoolT": ["avg_pool1d", "avg_pool2d", "avg_pool2d_divisor_unbatched"],
    "BinaryCrossEntropy": ["bce", "bce_weight_sum", "bce_none_hard_targets"],
    "BinaryCrossEntropyWithLogits": ["bce_with_logits", "bce_with_logits_pos_weight"],
    "RNNCellOp": ["rnn_cell_tanh", "rnn_cell_relu", "rnn_cell_nobias_3d"],
    "GRUCellOp": ["gru_cell", "gru_cell_nobias_3d", "gru_cell_nograd_h"],
    "LSTMCellOp": ["lstm_cell", "lstm_cell_nobias_3d", "lstm_cell_h_only", "lstm_cell_nograd_xg"],
}


def _differentiable_ops() -> dict:
    found = {}
    for mod in OP_MODULES:
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, Op) and cls is not Op and cls.__module__ == mod.__name__:
                if cls.differentiable:
                    found[name] = cls
    return found


def _recorded_ops(fn: Callable, kw: dict) -> set:
    """The op classes in the graph of ``fn`` and of its create_graph backward."""
    arrays, _ = make_inputs(
        kw.get("shapes", ((3, 4),)),
        kw.get("dtypes", ("float64",))[0],
        kw.get("low", -2.0),
        kw.get("high", 2.0),
    )
    xs = _cr_leaves(arrays, False, kw.get("nograd", ()))
    outs = [o for o in _flat(fn(cr, *xs)) if o.requires_grad and o.is_floating_point()]
    diff = [x for x in xs if x.requires_grad]
    gs = cr.autograd.grad(
        outs,
        diff,
        [cr.ones_like(o).requires_grad_() for o in outs],
        create_graph=True,
        allow_unused=True,
    )
    seen: set = set()
    stack = [t.grad_fn for t in outs + [g for g in gs if g is not None] if t.grad_fn is not None]
    visited: set = set()
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        seen.add(node.op.__name__)
        for p in node.parents:
            p = p[0] if type(p) is tuple else p
            if type(p) is Node:
                stack.append(p)
    return seen


def test_every_differentiable_op_has_cases() -> None:
    ops = _differentiable_ops()
    for name, why in ABSTRACT.items():
        assert name in ops, f"stale exclusion {name!r} ({why})"
    missing = sorted(set(ops) - set(ABSTRACT) - set(OP_CASES))
    assert not missing, f"differentiable ops with no case in OP_CASES: {missing}"
    stale = sorted(set(OP_CASES) - set(ops))
    assert not stale, f"OP_CASES names ops that do not exist: {stale}"


@pytest.mark.parametrize("op_name", sorted(OP_CASES))
def test_op_cases_record_the_op(op_name: str) -> None:
    """Each case listed for an op exists and really runs that op (forward or double backward)."""
    by_id = {p.id: p.values for p in CASES}
    for cid in OP_CASES[op_name]:
        assert cid in by_id, f"{op_name}: no case {cid!r}"
        fn, _, kw = by_id[cid]
        assert op_name in _recorded_ops(fn, kw), f"case {cid!r} does not record {op_name}"


# ----------------------------------------------------------------------------- double backward on a device


def _second_order(fn: Callable, kw: dict, device: str) -> list:
    """d/dx <grad(fn)(x), v> for the float64 inputs of a case, by a create_graph backward (the
    backward rules on Tensors, each recorded op on ``device``)."""
    m = cr if device == "cpu" else OnDevice(device)
    arrays, rng = make_inputs(
        kw.get("shapes", ((3, 4),)), "float64", kw.get("low", -2.0), kw.get("high", 2.0)
    )
    xs = _cr_leaves(arrays, kw.get("f_order", False), kw.get("nograd", ()), device)
    outs = [o for o in _flat(fn(m, *xs)) if o.requires_grad]
    diff = [x for x in xs if x.requires_grad]
    ups = [cr.tensor(rng.standard_normal(o.shape), device=o.device) for o in outs]
    gs = cr.autograd.grad(outs, diff, ups, create_graph=True, allow_unused=True)
    pairs = [(g, x) for g, x in zip(gs, diff) if g is not None and g.requires_grad]
    if not pairs:
        return []
    vs = [cr.tensor(rng.standard_normal(g.shape), device=g.device) for g, _ in pairs]
    total = sum(((g * v).sum() for (g, _), v in zip(pairs, vs)), cr.tensor(0.0, device=device))
    hs = cr.autograd.grad([total], diff, allow_unused=True)
    return [None if h is None else host(h) for h in hs]


GRADGRAD = [
    p
    for p in CASES
    if p.values[2].get("gradgrad", True)
    and p.values[2].get("grad", True)
    and "float64" in p.values[2].get("dtypes", ("float64",))
]


@pytest.mark.parametrize("fn, tfn, kw", GRADGRAD)
def test_double_backward_on_device(fn: Callable, tfn: Callable | None, kw: dict, cuda: str) -> None:
    """The create_graph backward (the rules run as recorded ops) gives on the CUDA device what it
    gives on the CPU."""
    ref = _second_order(fn, kw, "cpu")
    got = _second_order(fn, kw, cuda)
    assert len(ref) == len(got)
    for i, (r, g) in enumerate(zip(ref, got)):
        assert (r is None) == (g is None), f"input {i}: second-order gradient only on one device"
        if r is not None:
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12, err_msg=f"input {i}")


# ----------------------------------------------------------------------------- device-specific behaviour


def test_index_cuda_tensor_with_host_indices(cuda: str) -> None:
    """A CUDA tensor takes CPU index tensors, lists and NumPy arrays (as PyTorch); the result and
    the gradient stay on the device and equal the CPU ones."""
    a = np.arange(12.0).reshape(3, 4)
    indices = [
        cr.tensor([2, 0, 2]),
        [2, 0, 2],
        np.array([2, 0, 2]),
        cr.tensor([True, False, True]),
        (slice(None), cr.tensor([1, 1, 3])),
        (cr.tensor(1), [0, 3]),
    ]
    for idx in indices:
        ref = cr.tensor(a, requires_grad=True)
        ref[idx].sum().backward()
        x = cr.tensor(a, requires_grad=True, device=cuda)
        y = x[idx]
        assert y.device.type == "cuda", idx
        y.sum().backward()
        assert x.grad.device.type == "cuda"
        np.testing.assert_array_equal(host(y), ref[idx].detach().numpy())
        np.testing.assert_array_equal(host(x.grad), ref.grad.numpy())
    x = cr.tensor(a, device=cuda)
    np.testing.assert_array_equal(host(x.index_select(1, cr.tensor([3, 0]))), a[:, [3, 0]])
    np.testing.assert_array_equal(host(x.masked_select(cr.tensor(a > 5))), a[a > 5])


def test_index_cpu_tensor_with_cuda_index_raises(cuda: str) -> None:
    x = cr.tensor(np.arange(4.0))
    with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
        x[cr.tensor([0, 1], device=cuda)]


def test_gather_scatter_index_must_share_the_device(cuda: str) -> None:
    """As PyTorch: gather/scatter's index tensor lives where the input does."""
    x = cr.ones(2, 3, device=cuda)
    for f in (
        lambda i: x.gather(1, i),
        lambda i: x.scatter(1, i, 0.0),
        lambda i: x.scatter_add(1, i, cr.ones(2, 1, device=cuda)),
    ):
        with pytest.raises(RuntimeError, match="same device.*cuda:0 and cpu"):
            f(cr.tensor([[0], [2]]))
        assert f(cr.tensor([[0], [2]], device=cuda)).device.type == "cuda"


def test_where_on_cuda(cuda: str) -> None:
    c = cr.tensor([True, False, True], device=cuda)
    x = cr.tensor([1.0, 2.0, 3.0], device=cuda, requires_grad=True)
    both = cr.where(c, 1.5, -1.0)  # Python scalars both: the condition says where
    assert both.device.type == "cuda"
    np.testing.assert_array_equal(host(both), [1.5, -1.0, 1.5])
    y = cr.where(c, 0.0, x)
    y.sum().backward()
    assert y.device.type == "cuda" and x.grad.device.type == "cuda"
    np.testing.assert_array_equal(host(x.grad), [0.0, 1.0, 0.0])
    # a 0-d CPU condition joins the CUDA operands; a CPU mask does not (PyTorch's rule)
    np.testing.assert_array_equal(host(cr.where(cr.tensor(False), x, 0.0)), [0.0, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="same device"):
        cr.where(cr.tensor([True, False, True]), x, 0.0)
    # arrays and lists are data, not tensors: they go to the device
    np.testing.assert_array_equal(host(cr.where([True, False, False], x, 0.0)), [1.0, 0.0, 0.0])


def test_python_scalars_from_cuda_tensors(cuda: str) -> None:
    """item() / float() / int() / bool() / tolist() copy to the host and give Python types."""
    x = cr.tensor([[1.5, -2.0]], device=cuda)
    s = x.sum()
    assert s.device.type == "cuda" and s.ndim == 0
    assert type(s.item()) is float and s.item() == -0.5
    assert type(float(x[0, 0])) is float and float(x[0, 0]) == 1.5
    assert int(cr.tensor(7, device=cuda)) == 7
    assert bool((x > 1).any()) is True
    assert x.tolist() == [[1.5, -2.0]]
    assert x.argmax().item() == 0


def test_inplace_ops_on_cuda(cuda: str) -> None:
    x = cr.zeros(2, 3, device=cuda)
    x.add_(1).mul_(cr.full((3,), 2.0, device=cuda)).clamp_(0, 1.5)
    assert x.device.type == "cuda"
    np.testing.assert_array_equal(host(x), np.full((2, 3), 1.5))
    x[cr.tensor([1], device=cuda)] = 4.0
    x[0, 1:] = 0.0
    np.testing.assert_array_equal(host(x), [[1.5, 0.0, 0.0], [4.0, 4.0, 4.0]])
    x.zero_()
    assert not bool(x.any())


def test_integer_ops_on_cuda(cuda: str) -> None:
    i = cr.tensor([[3, -7], [0, 5]], device=cuda)
    assert (i // 2).dtype == cr.int64 and (i // 2).device.type == "cuda"
    np.testing.assert_array_equal(host(i // 2), [[1, -4], [0, 2]])
    np.testing.assert_array_equal(host(i % 3), [[0, 2], [0, 2]])
    np.testing.assert_array_equal(host(i / 2), [[1.5, -3.5], [0.0, 2.5]])
    assert (i / 2).dtype == cr.float32
    np.testing.assert_array_equal(host(i.sum(0)), [3, -2])
    np.testing.assert_array_equal(host((i > 0) & (i < 4)), [[True, False], [False, False]])
    np.testing.assert_array_equal(host(i.nonzero()), [[0, 0], [0, 1], [1, 1]])


def test_cross_entropy_target_out_of_range_on_cuda(
    cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strict mode brings back the CPU's error (by default CUDA gives NaN, test_losses.py)."""
    monkeypatch.setenv("CHAINRULE_CUDA_STRICT", "1")
    x = cr.zeros(2, 3, device=cuda)
    with pytest.raises(IndexError, match="target 3 is out of bounds"):
        cr.nn.functional.cross_entropy(x, cr.tensor([0, 3], device=cuda))


def test_erf_on_device_is_the_cpu_erf(cuda: str) -> None:
    """The branch-free device erf computes the same formulas per element: bit-identical."""
    from chainrule.ops.activation import erf_array  # noqa: PLC0415

    a = np.concatenate(
        [np.linspace(-7, 7, 2001), [0.0, -0.0, 0.5, -0.5, 6.0, -6.0, np.inf, -np.inf, np.nan]]
    )
    for dt in (np.float64, np.float32):
        d = cr.tensor(a.astype(dt), device=cuda).data
        got = erf_array(d)
        assert got.dtype == dt
        np.testing.assert_array_equal(cr.backend.to_host(got), erf_array(a.astype(dt)))


def test_gradcheck_on_cuda(cuda: str) -> None:
    """gradcheck / gradgradcheck take CUDA inputs (the Jacobians are compared on the host)."""
    x = cr.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True, device=cuda)
    w = cr.tensor(np.linspace(0.5, 2, 3), requires_grad=True, device=cuda)

    def f(a: Any, b: Any) -> Any:
        return ((a * b).tanh() ** 2).sum(1)

    assert cr.autograd.gradcheck(f, (x, w))
    assert cr.autograd.gradgradcheck(f, (x, w))
    # a wrong gradient (the detached factor) is caught there too
    assert not cr.autograd.gradcheck(lambda a: a.detach() * a, (x,), raise_exception=False)
