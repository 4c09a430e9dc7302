"""dtypes with PyTorch's names and PyTorch's type-promotion rules.

A ``cr.dtype`` wraps a NumPy dtype. Promotion follows PyTorch, not NumPy: an integer tensor and a
float tensor give the float tensor's dtype (NumPy would give float64), a Python float with an
integer tensor gives the default float dtype, and a 0-d tensor only decides the result when it is
of a higher category (bool < integer < floating) than the dimensioned operands.
"""

from __future__ import annotations

import builtins as _b

import numpy as np

from . import backend as _backend


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
# NumPy has no bfloat16: the ml_dtypes package's is used (CuPy uses the same one), loaded on first
# use so that `import chainrule` does not pay for it; until then ``bfloat16.np`` is None
bfloat16 = dtype("bfloat16", None, 2)
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


def _is_bf16(d: object) -> bool:
    return getattr(d, "name", None) == "bfloat16" and getattr(d, "kind", None) == "V"


class _NpToDtype(dict):
    """NumPy dtype -> ``cr.dtype``; learns ml_dtypes' bfloat16 the first time it meets one."""

    def __missing__(self, key: object) -> dtype:
        if _is_bf16(key) and _load_bf16(required=False):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (_is_bf16(key) and _load_bf16(required=False))


_FROM_NP = _NpToDtype({d.np: d for d in _ALL})
_FLOATS = {float32.np, float64.np, float16.np}
_BF16_HELP = (
    "chainrule.bfloat16 needs the ml_dtypes package (NumPy has no bfloat16 of its own): "
    "pip install ml_dtypes"
)


def _load_bf16(required: bool = True) -> bool:
    """Give ``bfloat16`` ml_dtypes' NumPy dtype; False (or, if ``required``, an ImportError
    that says what to install) when ml_dtypes is missing."""
    if bfloat16.np is not None:
        return True
    try:
        import ml_dtypes  # noqa: PLC0415 - optional, and 0.1 s to import
    except ImportError:
        if required:
            raise ImportError(_BF16_HELP) from None
        return False
    bfloat16.np = np.dtype(ml_dtypes.bfloat16)
    dict.__setitem__(_FROM_NP, bfloat16.np, bfloat16)
    _FLOATS.add(bfloat16.np)
    return True


def is_floating(d: np.dtype) -> bool:
    """Whether a NumPy/CuPy array dtype is floating, bfloat16 included (its ``kind`` is 'V')."""
    k = d.kind
    return k == "f" or (k == "V" and _is_bf16(d))


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
    if (isinstance(d, str) and d == "bfloat16") or _is_bf16(d):
        return bfloat16
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
        _load_bf16()
    return d.np


def category(d: np.dtype) -> int:
    k = d.kind
    if k in "fc":
        return 2
    return 0 if k == "b" else (2 if k == "V" and _is_bf16(d) else 1)


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
            return _promote_types(da, db)
        return da if pa > pb else db
    hi_d, hi_p, hi_c = (da, pa, ca) if ca > cb else (db, pb, cb)
    return hi_d if hi_p > 1 else default_for_category(hi_c)


def _promote_types(da: np.dtype, db: np.dtype) -> np.dtype:
    if da is db:
        return da
    try:
        return np.promote_types(da, db)
    except TypeError:  # bfloat16 with float16 (no common 16-bit type): float32, as PyTorch
        if category(da) == 2 and category(db) == 2:
            return np.dtype(np.float32)
        raise


def _dtype_priority(x: object) -> tuple[np.dtype, int]:
    data = getattr(x, "data", x)
    if isinstance(data, np.ndarray) or _backend.is_device_array(data):
        return data.dtype, (3 if data.ndim else 2)
    if isinstance(x, (_b.bool, np.bool_)):
        return np.dtype(np.bool_), 1
    if isinstance(x, (_b.int, np.integer)):
        return np.dtype(np.int64), 1
    if isinstance(x, (_b.float, np.floating)):
        return defaults.float.np, 1
    if isinstance(x, np.generic) and _is_bf16(x.dtype):  # an ml_dtypes bfloat16 scalar
        return defaults.float.np, 1
    raise TypeError(f"unsupported operand type {type(x).__name__}")
