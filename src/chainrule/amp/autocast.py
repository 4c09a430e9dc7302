"""Autocast: run each listed op in the dtype PyTorch's autocast picks for it.

Inside ``with cr.autocast('cuda'):`` (or ``'cpu'``) the ops that gain from lower precision
(matrix products, convolutions) take float16/bfloat16 inputs, the ops that need float32's range
(reductions, exp/log, softmax, norms and losses on CUDA; the losses on the CPU) take float32
inputs, and every other op runs on whatever dtype it is given. The lists are PyTorch's (its
"autocast op reference" and the CPU lists), restricted to the ops chainrule has.

Mechanism: the engine's ``apply`` hands each op to this thread's ``_Amp`` while autocast is on for
some device; ``_Amp`` looks the op class up in ``POLICY``, inserts differentiable casts (so that
gradients reach float32 parameters in float32) and runs the op. Float64 tensors, integer tensors
and ops given an explicit ``dtype=`` are left alone, as in PyTorch. A cast of a leaf that requires
grad (a parameter) is cached until the outermost autocast region exits (``cache_enabled``).

On the CPU, NumPy has no fast float16/bfloat16 matrix product (and no bfloat16 einsum), so a
lower-precision op there rounds its inputs to the low dtype, computes in float32 and rounds the
result: the arithmetic PyTorch's CPU kernels do (low-precision operands, float32 accumulation).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..autograd.errors import OpError
from ..autograd.grad_mode import state
from ..ops.activation import Softplus
from ..ops.conv import Conv, ConvT
from ..ops.elementwise import Cast, Pow
from ..ops.linalg import Einsum, Matmul
from ..ops.linear import Linear
from ..ops.loss import (
    MSE,
    NLL,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CrossEntropy,
)
from ..ops.movement import Cat
from ..ops.nn import LogSoftmax, Softmax
from ..ops.norm import GroupNorm, LayerNorm
from ..ops.reduce import Cumsum, LogSumExp, Norm, Prod, Sum
from ..ops.rnn import GRUCellOp, LSTMCellOp, RNNCellOp
from ..ops.unary import Exp, Expm1, Log, Log1p, Reciprocal, Rsqrt, Tan
from ..tensor import Tensor

LOWER = "lower"  # run in the autocast dtype (float16 or bfloat16)
FP32 = "fp32"  # run in float32
PROMOTE = "promote"  # run in the widest floating dtype among the inputs
BANNED = "banned"  # refuse: unsafe in lower precision

_MATMULS = {Linear: LOWER, Matmul: LOWER, Einsum: LOWER, Conv: LOWER, ConvT: LOWER}

# CUDA: torch's "CUDA ops that can autocast to float16 / to float32 / that promote"
_CUDA: dict[type, str] = {
    **_MATMULS,
    RNNCellOp: LOWER,
    GRUCellOp: LOWER,
    LSTMCellOp: LOWER,
    Exp: FP32,
    Expm1: FP32,
    Log: FP32,
    Log1p: FP32,
    Reciprocal: FP32,
    Rsqrt: FP32,
    Tan: FP32,
    Pow: FP32,
    Softmax: FP32,
    LogSoftmax: FP32,
    LayerNorm: FP32,
    GroupNorm: FP32,
    Norm: FP32,
    Cumsum: FP32,
    Prod: FP32,
    Sum: FP32,
    LogSumExp: FP32,
    Softplus: FP32,
    CrossEntropy: FP32,
    NLL: FP32,
    MSE: FP32,
    BinaryCrossEntropyWithLogits: FP32,
    BinaryCrossEntropy: BANNED,
    Cat: PROMOTE,
}

# CPU: torch's CPU lists (lower precision: the matrix products; float32: the losses and prod)
_CPU: dict[type, str] = {
    **_MATMULS,
    Prod: FP32,
    CrossEntropy: FP32,  # torch: log_softmax then nll_loss, which is on the float32 list
    NLL: FP32,
    MSE: FP32,
    BinaryCrossEntropy: FP32,
    BinaryCrossEntropyWithLogits: FP32,
    Cat: PROMOTE,
}

# op class -> (policy on the CPU, policy on CUDA); None: the op runs in its inputs' dtype
POLICY: dict[type, tuple[str | None, str | None]] = {
    op: (_CPU.get(op), _CUDA.get(op)) for op in {**_CPU, **_CUDA}
}

_BANNED_MSG = (
    "binary_cross_entropy (and nn.BCELoss) is unsafe to autocast: many models put a sigmoid right "
    "before it, and in float16 the sigmoid's output rounds to 0 or 1. Combine the two with "
    "binary_cross_entropy_with_logits / nn.BCEWithLogitsLoss, which are safe to autocast, or "
    "run the loss outside the autocast region on float32 inputs."
)

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


class RoundTo(Op):
    """``x`` rounded to a lower-precision dtype but kept in its own (float32) dtype; the gradient
    is rounded the same way (what a cast down and back up does to both)."""

    def forward(ctx, x, dtype):  # noqa: ANN001, N805 - the op contract
        ctx.src, ctx.low = x.dtype, dtype
        return x.astype(dtype).astype(x.dtype)

    def backward(ctx, g, m):  # noqa: ANN001, N805
        return m.cast(m.cast(g, ctx.low), ctx.src)


def _floating(t: Any) -> bool:
    """A tensor autocast may cast: floating, not float64 (PyTorch's "eligible")."""
    if not isinstance(t, Tensor):
        return False
    d = t.data.dtype
    return d != _F64 and dtypes.is_floating(d)


class _Amp:
    """One thread's autocast settings and cast cache; ``__call__`` is the engine's hook."""

    def __init__(self) -> None:
        self.cpu: np.dtype | None = None  # the low dtype while autocast('cpu') is on, else None
        self.cuda: np.dtype | None = None
        self.dtype = {"cpu": dtypes.bfloat16, "cuda": dtypes.float16}  # get_autocast_dtype
        self.cache_enabled = True
        self.cache: dict = {}
        self.depth = 0  # nesting of autocast regions (the cache is dropped when it returns to 0)
        self.busy = False  # while running an op on cast inputs: no second pass through the hook

    def active(self) -> bool:
        return self.cpu is not None or self.cuda is not None

    def __call__(self, op: type, args: tuple, kw: dict) -> Any:
        if self.busy:
            return None
        pol = POLICY.get(op)
        if pol is None:
            return None
        on_cuda = any(
            isinstance(a, Tensor)
            and type(a.data) is not np.ndarray
            and backend.is_device_array(a.data)
            for a in args
        )
        kind, low = (pol[1], self.cuda) if on_cuda else (pol[0], self.cpu)
        if kind is None or low is None:
            return None
        if kind is BANNED:
            raise RuntimeError(_BANNED_MSG)
        if kind is FP32:
            if kw.get("dtype") is not None:  # an explicit dtype wins, as in PyTorch
                return None
            return self._run(op, [self._cast(a, _F32) for a in args], kw, None)
        if kind is PROMOTE:
            kinds = {a.data.dtype for a in args if _floating(a)}
            if len(kinds) < 2:
                return None
            return self._run(op, [self._cast(a, _F32) for a in args], kw, None)
        if not on_cuda:
            return self._emulated(op, args, kw, low)
        cast = [self._cast(a, low) for a in args]
        try:
            return self._run(op, cast, kw, low)
        except (TypeError, OpError):
            if low.kind != "V":
                raise
            return self._emulated(op, args, kw, low)  # an op CuPy lacks for bfloat16

    def _emulated(self, op: type, args: tuple, kw: dict, low: np.dtype) -> Any:
        """Low-precision operands, float32 arithmetic, a low-precision result."""
        return self._run(op, [self._cast(a, low, emulate=True) for a in args], kw, low)

    def _run(self, op: type, args: list, kw: dict, out_dtype: np.dtype | None) -> Any:
        self.busy = True
        try:
            out = apply(op, *args, **kw)
        finally:
            self.busy = False
        if out_dtype is None:
            return out
        if type(out) is tuple:
            return tuple(self._down(o, out_dtype) for o in out)
        return self._down(out, out_dtype)

    @staticmethod
    def _down(t: Any, d: np.dtype) -> Any:
        if isinstance(t, Tensor) and t.data.dtype != d and _floating(t):
            return apply(Cast, t, dtype=d)
        return t

    def _cast(self, t: Any, d: np.dtype, emulate: bool = False) -> Any:
        """``t`` cast to ``d`` (``emulate``: rounded to ``d`` but float32) if autocast may cast it."""
        if not _floating(t):
            return t
        src = t.data.dtype
        if src == d and not emulate:
            return t
        key = None
        if self.cache_enabled and t.requires_grad and t.grad_fn is None and src == _F32:
            key = (id(t), d, emulate, state.grad_enabled)
            hit = self.cache.get(key)
            if hit is not None and hit[0] is t and hit[1] == t._vc[0]:
                return hit[2]
        if not emulate:
            r = apply(Cast, t, dtype=d)
        elif src == _F32:
            r = apply(RoundTo, t, dtype=d)
        else:  # a low-precision input: to the low dtype if it is another one, then to float32
            r = t if src == d else apply(Cast, t, dtype=d)
            r = apply(Cast, r, dtype=_F32)
        if key is not None:
            self.cache[key] = (t, t._vc[0], r)
        return r


def _amp() -> _Amp:
    a = state.amp
    if a is None:
        a = state.amp = _Amp()
    return a


def _check_device(device_type: Any) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(
            f"autocast: unsupported device_type {device_type!r} (chainrule autocasts 'cpu' and "
            "'cuda')"
        )
    return device_type


def is_autocast_available(device_type: str) -> bool:
    """Whether ``device_type`` supports autocast ('cpu' and 'cuda')."""
    return device_type in ("cpu", "cuda")


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """Whether this thread is inside an enabled autocast region for ``device_type``."""
    a = state.amp
    return a is not None and getattr(a, _check_device(device_type)) is not None


def get_autocast_dtype(device_type: str) -> dtypes.dtype:
    """The dtype autocast uses for ``device_type`` (float16 on CUDA, bfloat16 on the CPU unless an
    enclosing ``autocast(dtype=...)`` says otherwise)."""
    return _amp().dtype[_check_device(device_type)]


def clear_autocast_cache() -> None:
    """Drop the casts of parameters autocast keeps for the current region."""
    _amp().cache.clear()


class autocast:  # noqa: N801 - PyTorch's name
    """Mixed precision for a region: ``with cr.autocast('cuda'):`` or ``@cr.autocast('cpu')``.

    ``device_type``: 'cuda' or 'cpu' (only tensors on that device are cast). ``dtype``: float16
    or bfloat16 (default: float16 on CUDA, bfloat16 on the CPU; bfloat16 needs ml_dtypes).
    ``enabled=False`` turns autocast off inside the region; ``cache_enabled``: keep the casts of
    parameters for the region (default True). Wrap the forward pass and the loss; run
    ``backward()`` outside (it uses the dtypes the forward chose).
    """

    def __init__(
        self,
        device_type: str,
        dtype: Any = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ) -> None:
        self.device = _check_device(device_type)
        self.fast_dtype = (
            get_autocast_dtype(device_type) if dtype is None else dtypes.to_dtype(dtype)
        )
        self._enabled = bool(enabled)
        self._cache_enabled = cache_enabled
        if not self._enabled:
            return
        if self.device == "cuda" and not backend.cuda_available():
            warnings.warn(
                "User provided device_type of 'cuda', but CUDA is not available. Disabling",
                stacklevel=2,
            )
            self._enabled = False
        elif self.fast_dtype not in (dtypes.float16, dtypes.bfloat16):
            warnings.warn(
                f"In {self.device.upper()} autocast, but the target dtype {self.fast_dtype} is not "
                "supported. Disabling autocast. Autocast only supports float16 and bfloat16.",
                stacklevel=2,
            )
            self._enabled = False
        elif self.fast_dtype is dtypes.bfloat16 and not dtypes._load_bf16(required=False):
            raise ImportError(
                f"autocast({self.device!r}) with bfloat16 needs the ml_dtypes package (NumPy has "
                "no bfloat16): pip install ml_dtypes, or pass dtype=chainrule.float16"
            )

    def __enter__(self) -> autocast:
        a = _amp()
        self._prev = (a.cpu, a.cuda, a.dtype[self.device], a.cache_enabled)
        setattr(a, self.device, self.fast_dtype.np if self._enabled else None)
        a.dtype[self.device] = self.fast_dtype
        if self._cache_enabled is not None:
            a.cache_enabled = bool(self._cache_enabled)
        a.depth += 1
        state.autocast = a if a.active() else None
        return self

    def __exit__(self, *exc: object) -> None:
        a = _amp()
        a.cpu, a.cuda, a.dtype[self.device], a.cache_enabled = self._prev
        a.depth -= 1
        if a.depth == 0:
            a.cache.clear()
        state.autocast = a if a.active() else None

    def __call__(self, fn: Callable) -> Callable:
        """Use as a decorator: ``fn`` runs inside this autocast region at every call."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with copy.copy(self):
                return fn(*args, **kwargs)

        return wrapper
