"""Helpers shared by the op families: dtype promotion of operands, int-to-float for float ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, dtypes
from ..tensor import Tensor, wrap


def as_float(x: Tensor) -> Tensor:
    """``x`` itself if floating, else ``x`` in the default float dtype (PyTorch's int -> float)."""
    d = x.data.dtype
    if d.kind == "f" or dtypes.is_floating(d):
        return x
    from .elementwise import cast  # noqa: PLC0415

    return cast(x, dtypes.defaults.float)


def _const(x: Any) -> Tensor:
    """A non-Tensor operand as a constant Tensor (arrays, lists, NumPy scalars)."""
    if backend.is_device_array(x):
        return wrap(x)
    a = np.asarray(x)
    if a.dtype == np.float64 and not isinstance(x, np.ndarray | np.floating):
        a = a.astype(dtypes.defaults.float.np)
    return wrap(a)


def promote_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Cast the operands of a binary op to PyTorch's result dtype.

    Tensors are cast as needed; Python scalars stay scalars (NumPy treats them as weak, keeping the
    array's dtype) unless both are scalars.
    """
    if not isinstance(a, (Tensor, int, float, bool)):
        a = _const(a)
    if not isinstance(b, (Tensor, int, float, bool)):
        b = _const(b)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = wrap(np.asarray(a, dtype=dtypes.promote(a, a)))
    d = dtypes.promote(a, b)
    return _to(a, d), _to(b, d)


def _to(x: Any, d: np.dtype) -> Any:
    if isinstance(x, Tensor):
        if x.data.dtype == d:
            return x
        from .elementwise import cast  # noqa: PLC0415

        return cast(x, d)
    if d.kind == "f":
        return float(x)
    if dtypes.is_floating(d):  # bfloat16: NumPy promotes bf16_array * 0.5 to float32, not so
        return d.type(x)  # with a bfloat16 scalar (CuPy takes ml_dtypes' scalars too)
    if d.kind == "b":
        return bool(x)
    return int(x)
