"""Functions that make tensors: from data, filled, ranges and random."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import backend, dtypes
from .random import Generator, _gen
from .tensor import Tensor, check_device, export_origin, wrap


def _to_array(data: Any, dtype: Any = None, copy: bool = True) -> np.ndarray:
    """``data`` (nested lists, scalars, arrays, Tensors) as an array with PyTorch's dtype rules:
    Python floats become the default float dtype, ints int64, bools bool; arrays keep theirs."""
    d = dtypes.np_dtype(dtype)
    if isinstance(data, Tensor):
        a = data.data
        return a.astype(d or a.dtype, copy=copy)
    if isinstance(data, np.ndarray):
        if d is None and data.dtype not in dtypes._FROM_NP:
            d = dtypes.defaults.float.np if data.dtype.kind == "f" else np.dtype(np.int64)
        return np.array(data, dtype=d, copy=copy) if copy else np.asarray(data, dtype=d)
    if backend.is_device_array(data):  # a CuPy array: stays on its device
        return data.astype(d or data.dtype, copy=copy)
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flat(data)):
        data = _untensor(data)
    a = np.asarray(data)
    if d is None:
        k = a.dtype.kind
        if k == "V" and dtypes.is_floating(a.dtype):  # ml_dtypes' bfloat16
            k = "f"
        if k == "f" and not isinstance(data, np.generic):
            d = dtypes.defaults.float.np
        elif k == "f":
            d = a.dtype
        elif k in "iu":
            d = np.dtype(np.int64) if not isinstance(data, np.generic) else a.dtype
        elif k == "b":
            d = np.dtype(np.bool_)
        elif k == "c":
            raise TypeError("complex tensors are not supported")
        else:
            raise TypeError(f"could not make a tensor from {type(data).__name__}")
    return np.array(a, dtype=d, copy=True)


def _flat(x: Any) -> list:
    out = []
    for v in x:
        out.extend(_flat(v) if isinstance(v, (list, tuple)) else [v])
    return out


def _untensor(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_untensor(v) for v in x]
    return (
        x.item()
        if isinstance(x, Tensor) and x.ndim == 0
        else (x.tolist() if isinstance(x, Tensor) else x)
    )


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of ``data``."""
    arr = _to_array(data, dtype)
    if device is not None:
        arr = backend.to_device(arr, check_device(device))
    t = wrap(arr)
    if isinstance(data, np.ndarray):
        t._cut = export_origin(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like ``tensor`` but shares memory with a NumPy/CuPy array (or Tensor) when it can."""
    if device is not None:
        check_device(device)
    if isinstance(data, Tensor):
        out = data if dtype is None or data.dtype == dtypes.to_dtype(dtype) else data.to(dtype)
        return out if device is None else out.to(device)
    if isinstance(data, np.ndarray) or backend.is_device_array(data):
        arr = _to_array(data, dtype, copy=False)
        t = wrap(arr if device is None else backend.to_device(arr, device))
        t._cut = export_origin(data)
        return t
    return tensor(data, dtype, device=device)


def from_numpy(a: np.ndarray) -> Tensor:
    """A tensor sharing ``a``'s memory (changes to one show in the other)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy expects an np.ndarray, got {type(a).__name__}")
    dtypes.from_numpy_dtype(a.dtype)
    t = wrap(a)
    t._cut = export_origin(a)
    return t


def _shape(size: Sequence[Any]) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _make(arr: Any, requires_grad: bool, device: Any) -> Tensor:
    """A leaf around ``arr``, moved to ``device`` (a host array goes to the GPU for 'cuda')."""
    if device is not None:
        arr = backend.to_device(arr, check_device(device))
    t = wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _xp(device: Any) -> Any:
    return np if device is None else backend.xp_for(check_device(device))


def _fdt(dtype: Any) -> np.dtype:
    return dtypes.np_dtype(dtype) or dtypes.defaults.float.np


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(_xp(device).zeros(_shape(size), _fdt(dtype)), requires_grad, device)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(_xp(device).ones(_shape(size), _fdt(dtype)), requires_grad, device)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make(_xp(device).empty(_shape(size), _fdt(dtype)), requires_grad, device)


def full(
    size: Sequence[int],
    fill_value: Any,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    if dtype is None:
        dtype = _to_array(fill_value).dtype
    arr = _xp(device).full(_shape((size,)), _raw(fill_value), dtypes.np_dtype(dtype))
    return _make(arr, requires_grad, device)


def _raw(x: Any) -> Any:
    return x.item() if isinstance(x, Tensor) else x


def _like(x: Tensor, dtype: Any) -> np.dtype:
    return dtypes.np_dtype(dtype) or x.data.dtype


def zeros_like(
    input: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:  # noqa: A002
    device = input.device if device is None else device
    return _make(_xp(device).zeros(input.shape, _like(input, dtype)), requires_grad, device)


def ones_like(
    input: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:  # noqa: A002
    device = input.device if device is None else device
    return _make(_xp(device).ones(input.shape, _like(input, dtype)), requires_grad, device)


def empty_like(
    input: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:  # noqa: A002
    device = input.device if device is None else device
    return _make(_xp(device).empty(input.shape, _like(input, dtype)), requires_grad, device)


def full_like(
    input: Tensor,
    fill_value: Any,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:  # noqa: A002
    device = input.device if device is None else device
    arr = _xp(device).full(input.shape, _raw(fill_value), _like(input, dtype))
    return _make(arr, requires_grad, device)


def arange(
    start: Any,
    end: Any = None,
    step: Any = 1,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive); int64 unless any argument is a float."""
    if end is None:
        start, end = 0, start
    start, end, step = _raw(start), _raw(end), _raw(step)
    if dtype is None:
        isf = builtins.any(isinstance(v, float) for v in (start, end, step))
        dtype = dtypes.defaults.float if isf else dtypes.int64
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    n = builtins.max(int(np.ceil((end - start) / step)), 0)
    arr = (start + step * np.arange(n, dtype=np.float64)).astype(dtypes.np_dtype(dtype))
    if dtypes.np_dtype(dtype).kind in "iu":
        arr = np.arange(start, end, step, dtype=dtypes.np_dtype(dtype))
    return _make(arr, requires_grad, device)


def linspace(
    start: float,
    end: float,
    steps: int,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    return _make(
        np.linspace(_raw(start), _raw(end), steps).astype(_fdt(dtype)), requires_grad, device
    )


def logspace(
    start: float,
    end: float,
    steps: int,
    base: float = 10.0,
    *,
    dtype: Any = None,
    device: Any = None,
) -> Tensor:
    return _make(np.logspace(start, end, steps, base=base).astype(_fdt(dtype)), False, device)


def eye(
    n: int,
    m: int | None = None,
    *,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    return _make(np.eye(n, m, dtype=_fdt(dtype)), requires_grad, device)


def rand(
    *size: Any,
    generator: Generator | None = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Uniform samples in [0, 1)."""
    arr = _gen(generator, device).random(_shape(size)).astype(_fdt(dtype))
    return _make(arr, requires_grad, device)


def randn(
    *size: Any,
    generator: Generator | None = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Standard normal samples."""
    arr = _gen(generator, device).standard_normal(_shape(size)).astype(_fdt(dtype))
    return _make(arr, requires_grad, device)


def randint(
    low: int,
    high: int | None = None,
    size: Sequence[int] = (),
    *,
    generator: Generator | None = None,
    dtype: Any = None,
    device: Any = None,
) -> Tensor:
    """Integers in [low, high); ``randint(high, size)`` starts at 0."""
    if high is None:
        low, high = 0, low
    d = dtypes.np_dtype(dtype) or np.dtype(np.int64)
    arr = _gen(generator, device).integers(low, high, _shape((size,))).astype(d)
    return _make(arr, False, device)


def randperm(
    n: int, *, generator: Generator | None = None, dtype: Any = None, device: Any = None
) -> Tensor:
    d = dtypes.np_dtype(dtype) or np.dtype(np.int64)
    return _make(_gen(generator).permutation(n).astype(d), False, device)


def rand_like(input: Tensor, *, dtype: Any = None, generator: Generator | None = None) -> Tensor:  # noqa: A002
    arr = _gen(generator, input.device).random(input.shape)
    return wrap(arr.astype(_like(input, dtype)))


def randn_like(input: Tensor, *, dtype: Any = None, generator: Generator | None = None) -> Tensor:  # noqa: A002
    arr = _gen(generator, input.device).standard_normal(input.shape)
    return wrap(arr.astype(_like(input, dtype)))


def normal(
    mean: Any = 0.0,
    std: Any = 1.0,
    size: Sequence[int] | None = None,
    *,
    generator: Generator | None = None,
    dtype: Any = None,
) -> Tensor:
    """Normal samples; ``mean``/``std`` may be tensors (broadcast) or floats with ``size``."""
    m = mean.data if isinstance(mean, Tensor) else mean
    s = std.data if isinstance(std, Tensor) else std
    shape = _shape((size,)) if size is not None else np.broadcast_shapes(np.shape(m), np.shape(s))
    d = dtypes.np_dtype(dtype) or (
        m.dtype
        if isinstance(m, np.ndarray)
        else s.dtype
        if isinstance(s, np.ndarray)
        else dtypes.defaults.float.np
    )
    return wrap(_gen(generator).normal(m, s, shape).astype(d))


def bernoulli(
    input: Tensor, p: float | None = None, *, generator: Generator | None = None
) -> Tensor:  # noqa: A002
    prob = input.data if p is None else p
    u = _gen(generator, input.device).random(input.shape)
    return wrap((u < prob).astype(input.data.dtype))


def multinomial(
    input: Tensor,
    num_samples: int,
    replacement: bool = False,
    *,
    generator: Generator | None = None,
) -> Tensor:  # noqa: A002
    g = _gen(generator)
    probs = np.atleast_2d(input.data.astype(np.float64))
    out = np.empty((probs.shape[0], num_samples), np.int64)
    for i, p in enumerate(probs):
        out[i] = g.choice(len(p), num_samples, replace=replacement, p=p / p.sum())
    return wrap(out if input.ndim == 2 else out[0])
