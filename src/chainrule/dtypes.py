"""dtypes with PyTorch's names and PyTorch's type-promotion rules.

A ``cr.dtype`` wraps a NumPy dtype. Promotion follows PyTorch, not NumPy: an integer tensor and a
float tensor give the float tensor's dtype (NumPy would give float64), a Python float with an
integer tensor gives the default float dtype, and a 0-d tensor only decides the result when it is
of a higher category (bool < integer < floating) than the dimensioned operands.
"""

from __future__ import annotations

import builtins as _b

import numpy as np


class dtype:  # noqa: N801 - PyTorch's name
    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_cat")

    def __init__(self, name: str, np_dtype: object, cat: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype) if np_dtype is not None else None
        self._cat = cat  # 0 bool, 1 integer, 2 floating
        self.is_floating_point = cat == 2
        self.is_signed = cat != 0
        self.itemsize = self.np.itemsize if self.np is not None else 2

    def __repr__(self) -> str:
        return f"chainrule.{self.name}"

    def __reduce__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dtype):
            return self is other
        try:
            return self.np is not None and self.np == np.dtype(other)
        except TypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)


float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
float16 = dtype("float16", np.float16, 2)
bfloat16 = dtype("bfloat16", None, 2)  # GPU only (NumPy has no bfloat16)
int64 = dtype("int64", np.int64, 1)
int32 = dtype("int32", np.int32, 1)
int16 = dtype("int16", np.int16, 1)
int8 = dtype("int8", np.int8, 1)
uint8 = dtype("uint8", np.uint8, 1)
bool_ = dtype("bool", np.bool_, 0)
float = float32  # noqa: A001 - PyTorch's aliases
double = float64
half = float16
long = int64
int = int32  # noqa: A001
bool = bool_  # noqa: A001

_ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)
_FROM_NP = {d.np: d for d in _ALL}
_FLOATS = {float32.np, float64.np, float16.np}


class _Defaults:
    float = float32


defaults = _Defaults()


def set_default_dtype(d: dtype) -> None:
    """Set the dtype of Python floats turned into tensors (float32 or float64)."""
    d = to_dtype(d)
    if d not in (float32, float64, float16):
        raise TypeError(f"set_default_dtype: only floating dtypes are allowed, got {d}")
    defaults.float = d


def get_default_dtype() -> dtype:
    return defaults.float


def from_numpy_dtype(d: np.dtype) -> dtype:
    try:
        return _FROM_NP[d]
    except KeyError:
        raise TypeError(f"chainrule has no dtype for NumPy's {d}") from None


def to_dtype(d: object) -> dtype:
    """Accept a ``cr.dtype``, a NumPy dtype, a Python type or a name; return a ``cr.dtype``."""
    if isinstance(d, dtype):
        return d
    if d is _b.float:
        return defaults.float
    if d is _b.int:
        return int64
    if d is _b.bool:
        return bool_
    if isinstance(d, str) and d.startswith("chainrule."):
        d = d[len("chainrule.") :]
    try:
        return _FROM_NP[np.dtype(d)]
    except (TypeError, KeyError):
        raise TypeError(f"not a dtype chainrule supports: {d!r}") from None


def np_dtype(d: object) -> np.dtype:
    """The NumPy dtype for a user-supplied dtype argument (None stays None)."""
    if d is None:
        return None
    d = to_dtype(d)
    if d.np is None:
        raise TypeError(f"{d} is only available on a GPU device")
    return d.np


def category(d: np.dtype) -> int:
    k = d.kind
    return 2 if k in "fc" else (0 if k == "b" else 1)


def default_for_category(cat: int) -> np.dtype:
    return (np.dtype(np.bool_), np.dtype(np.int64), defaults.float.np)[cat]


def promote(a: object, b: object) -> np.dtype:
    """Result dtype of a binary op between ``a`` and ``b`` (Tensors, arrays or Python scalars).

    PyTorch's rule: the highest category wins; within a category, a dimensioned tensor outranks a
    0-d tensor, which outranks a Python scalar; a Python scalar that raises the category gives the
    default dtype of that category.
    """
    da, pa = _dtype_priority(a)
    db, pb = _dtype_priority(b)
    ca, cb = category(da), category(db)
    if ca == cb:
        if pa == pb:
            return np.promote_types(da, db)
        return da if pa > pb else db
    hi_d, hi_p, hi_c = (da, pa, ca) if ca > cb else (db, pb, cb)
    return hi_d if hi_p > 1 else default_for_category(hi_c)


def _dtype_priority(x: object) -> tuple[np.dtype, int]:
    data = getattr(x, "data", x)
    if isinstance(data, np.ndarray):
        return data.dtype, (3 if data.ndim else 2)
    if isinstance(x, (_b.bool, np.bool_)):
        return np.dtype(np.bool_), 1
    if isinstance(x, (_b.int, np.integer)):
        return np.dtype(np.int64), 1
    if isinstance(x, (_b.float, np.floating)):
        return defaults.float.np, 1
    raise TypeError(f"unsupported operand type {type(x).__name__}")
