"""A stand-in for CuPy that runs on NumPy, so the GPU code paths are tested on machines without
a GPU (CI has none).

It keeps CuPy's rules that catch device bugs, not its speed:

- a device array is its own type (``ndarray``, not a NumPy subclass); turning it into a NumPy
  array implicitly (``np.asarray(x)``) raises TypeError, as CuPy does; ``.get()`` and
  ``asnumpy`` copy it to the host;
- ufuncs and NumPy functions called on device arrays dispatch like CuPy's ``__array_ufunc__`` /
  ``__array_function__``: only to names CuPy 14.2 has (``cupy_api.json`` is a snapshot of its
  namespace), and mixing a host ``np.ndarray`` into them raises TypeError;
- reductions return 0-d device arrays, not NumPy scalars;
- ``fuse`` runs the function eagerly; ``ElementwiseKernel``/``RawKernel`` are not emulated;
- every operation that on a GPU makes the host wait for the device (a device-to-host copy, a
  Python scalar from a device value, an output whose shape depends on the data) is recorded
  while ``syncs()`` is active, with the call site that asked for it (tests/test_gpu_syncs.py).

Everything computes with NumPy underneath, so a test that passes here checks the code's device
hygiene and the NumPy-level maths; the real kernels are checked on a GPU (``tests/gpu``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

_API = json.loads((Path(__file__).with_name("cupy_api.json")).read_text())
_TOP = set(_API["cupy"])
_SUB = {k.removeprefix("cupy."): set(v) for k, v in _API.items() if k.startswith("cupy.")}
_METHODS = set(_API["ndarray"])
_GEN_METHODS = set(_API["Generator"])

# CuPy's documented ufunc methods (docs: "These methods are only available for selected ufuncs");
# "outer" works for all ufuncs
_UFUNC_METHODS = {
    "reduce": {"add", "multiply"},
    "accumulate": {"add", "multiply"},
    "reduceat": {"add"},
    "at": {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"},
}


# ------------------------------------------------------------------ device-to-host syncs
class Sync(NamedTuple):
    """One host wait: what asked for it (``kind``: "float", "item", "nonzero", ...), the first
    call site outside this file and NumPy (``site``, "path:line"), and up to four callers
    (``stack``, innermost first) so that a failure says whose code it is."""

    kind: str
    site: str
    stack: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind} at {' < '.join(self.stack) or self.site}"


_RECORDERS: list[list[Sync]] = []
_QUIET = [0]  # >0 while one recorded operation calls another (asnumpy -> get)
_HERE = __file__
_SKIP = (_HERE, str(Path(np.__file__).parent), functools.__file__, contextlib.__file__)


def _short(path: str) -> str:
    path = path.replace("\\", "/")
    for marker in ("/src/", "/tests/", "/site-packages/"):
        if marker in path:
            return path.rsplit(marker, 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


def _record(kind: str) -> None:
    """Notes a host wait in every active ``syncs()`` block."""
    if not _RECORDERS or _QUIET[0]:
        return
    f = sys._getframe(1)
    stack: list[str] = []
    while f is not None and len(stack) < 4:
        path = f.f_code.co_filename
        if not path.startswith(_SKIP):
            stack.append(f"{_short(path)}:{f.f_lineno}")
        f = f.f_back
    rec = Sync(kind, stack[0] if stack else "?", tuple(stack))
    for r in _RECORDERS:
        r.append(rec)


@contextlib.contextmanager
def syncs() -> Iterator[list[Sync]]:
    """Records the host waits made inside the block into the list it yields (blocks nest)."""
    recs: list[Sync] = []
    _RECORDERS.append(recs)
    try:
        yield recs
    finally:
        _RECORDERS.remove(recs)


def _is_bool_index(idx: Any) -> bool:
    if type(idx) is tuple:
        return any(_is_bool_index(i) for i in idx)
    return type(idx) is ndarray and idx.dtype == np.bool_


# functions whose output shape depends on the data: CuPy reads a count back to allocate it
_DATA_SHAPED = {"nonzero", "argwhere", "flatnonzero", "unique", "compress", "extract", "bincount"}


def _data_shaped(name: str, args: Any, kwargs: Any) -> bool:
    if name in _DATA_SHAPED:
        return True
    if name == "where":
        return len(args) + len(kwargs) == 1
    if name == "repeat":
        reps = args[1] if len(args) > 1 else kwargs.get("repeats")
        return type(reps) is ndarray and reps.size > 1
    return False


def _reject(x: Any) -> None:
    raise TypeError(f"Unsupported type {type(x)} (a host array mixed into device code)")


def _unwrap(x: Any) -> Any:
    t = type(x)
    if t is ndarray:
        return x._a
    if t is np.ndarray:
        _reject(x)
    if t in (list, tuple):
        return t(_unwrap(v) for v in x)
    if t is dict:
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return ndarray(x)
    if isinstance(x, np.generic) and not isinstance(x, (np.str_, np.bytes_)):
        return ndarray(np.asarray(x))
    if type(x) in (list, tuple):
        return type(x)(_wrap(v) for v in x)
    return x


def _host_in(args: Any) -> bool:
    if type(args) is np.ndarray:
        return True
    if type(args) in (list, tuple):
        return any(_host_in(a) for a in args)
    if type(args) is dict:
        return any(_host_in(a) for a in args.values())
    return False


def _binop(ufunc: np.ufunc, reflected: bool = False) -> Any:
    def op(self: ndarray, other: Any) -> Any:
        if isinstance(other, np.ndarray):
            _reject(other)
        if not isinstance(other, (ndarray, int, float, bool, complex, np.generic)):
            return NotImplemented
        return ufunc(other, self) if reflected else ufunc(self, other)

    return op


class ndarray:  # noqa: N801 - CuPy's name
    __slots__ = ("_a",)

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    # --- conversions CuPy allows and refuses
    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        _record("get")
        return np.array(self._a, order=order)

    def set(self, arr: np.ndarray, stream: Any = None) -> None:
        np.copyto(self._a, arr)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if ufunc.__name__ not in _TOP:
            return NotImplemented
        allowed = _UFUNC_METHODS.get(method)
        if allowed is not None and ufunc.__name__ not in allowed:
            raise NotImplementedError(
                f"cupy.{ufunc.__name__}.{method} is not supported by CuPy (only for "
                f"{', '.join(sorted(allowed))})"
            )
        if _host_in(inputs) or _host_in(kwargs.get("out")):
            raise TypeError(f"Unsupported type {np.ndarray} in {ufunc.__name__}")
        if "out" in kwargs:
            kwargs["out"] = tuple(_unwrap(o) for o in kwargs["out"])
        res = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if method == "at":
            return None
        return _wrap(res)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        path = func.__module__.split(".")[1:]
        mod = ".".join(path)  # as CuPy: getattr down the same path from cupy
        names = _TOP if not mod else _SUB.get(mod, set())
        if func.__name__ not in names:
            return NotImplemented
        if _host_in(args) or _host_in(kwargs):
            raise TypeError(f"Unsupported type {np.ndarray} in {func.__name__}")
        if _data_shaped(func.__name__, args, kwargs):
            _record(func.__name__)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # --- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a.flags))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))
    T = property(lambda self: ndarray(self._a.T))
    mT = property(lambda self: ndarray(self._a.mT))  # noqa: N815 - CuPy's name
    device = property(lambda self: cuda.Device(0))

    @shape.setter
    def shape(self, value: Any) -> None:
        self._a.shape = value

    def __getattr__(self, name: str) -> Any:
        if name not in _METHODS:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            if _host_in(args) or _host_in(kwargs):
                raise TypeError(f"Unsupported type {np.ndarray} in ndarray.{name}")
            if _data_shaped(name, (self, *args), kwargs):
                _record(name)
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))

        return method

    def item(self) -> Any:
        _record("item")
        return self._a.item()

    def tolist(self) -> Any:
        _record("tolist")
        return self._a.tolist()

    def __getitem__(self, idx: Any) -> Any:
        if _host_in(idx):
            _reject(idx)
        if _is_bool_index(idx):
            _record("boolean index")
        return _wrap(self._a[_unwrap(idx)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        if _host_in(idx) or _host_in(value):
            _reject(idx if _host_in(idx) else value)
        self._a[_unwrap(idx)] = _unwrap(value)

    def __len__(self) -> int:  # the shape only: no host wait
        return len(self._a)

    def __iter__(self) -> Any:  # CuPy's yields self[i], device views: no host wait
        return (ndarray(np.asarray(v)) for v in self._a)

    def __bool__(self) -> bool:
        _record("bool")
        return bool(self._a)

    def __float__(self) -> float:
        _record("float")
        return float(self._a)

    def __int__(self) -> int:
        _record("int")
        return int(self._a)

    def __complex__(self) -> complex:
        _record("complex")
        return complex(self._a)

    def __index__(self) -> int:  # CuPy has none: a device value is never a Python index
        raise TypeError("only integer scalar arrays can be converted to a scalar index")

    def __repr__(self) -> str:
        return "fakecupy." + repr(self._a)

    def __neg__(self) -> Any:
        return np.negative(self)

    def __pos__(self) -> Any:
        return np.positive(self)

    def __abs__(self) -> Any:
        return np.absolute(self)

    def __invert__(self) -> Any:
        return np.invert(self)

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> ndarray:
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo: Any) -> ndarray:
        return ndarray(self._a.copy())

    def __reduce__(self) -> Any:
        raise TypeError("pickling a device array is refused in tests (it hides host copies)")


for _name, _uf in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
    "lshift": np.left_shift, "rshift": np.right_shift,
}.items():  # fmt: skip
    setattr(ndarray, f"__{_name}__", _binop(_uf))
    setattr(ndarray, f"__r{_name}__", _binop(_uf, reflected=True))

    def _iop(self: ndarray, other: Any, _uf: np.ufunc = _uf) -> ndarray:
        _uf(self, other, out=(self,))
        return self

    setattr(ndarray, f"__i{_name}__", _iop)
for _name, _uf in {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}.items():  # fmt: skip
    setattr(ndarray, f"__{_name}__", _binop(_uf))


class _Flags:
    def __init__(self, f: Any) -> None:
        self.c_contiguous, self.f_contiguous, self.owndata = (
            f.c_contiguous,
            f.f_contiguous,
            f.owndata,
        )

    def __getitem__(self, key: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous}[key]


# ------------------------------------------------------------------ the module's functions
def _make(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _host_in(args) or _host_in(kwargs):
            raise TypeError(f"Unsupported type {np.ndarray} in {fn.__name__}")
        kwargs.pop("like", None)
        if _data_shaped(fn.__name__, args, kwargs):
            _record(fn.__name__)
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

    return wrapper


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    if type(a) is ndarray:
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return ndarray(np.array(_unwrap_host(a), dtype=dtype, order=order or "K"))


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", ndmin: int = 0) -> Any:
    if type(obj) is ndarray:
        return ndarray(np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return ndarray(np.array(_unwrap_host(obj), dtype=dtype, order=order, ndmin=ndmin))


def _unwrap_host(x: Any) -> Any:
    """Host data for a host-to-device copy (device arrays nested in lists are allowed)."""
    if type(x) is ndarray:
        return x._a
    if type(x) in (list, tuple):
        return [_unwrap_host(v) for v in x]
    return x


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
    if type(a) is ndarray:
        _record("asnumpy")
        _QUIET[0] += 1
        try:
            return a.get(order=order)
        finally:
            _QUIET[0] -= 1
    return np.asarray(a, order=order)


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if type(a) is not ndarray:
        _reject(a)
    return ndarray(np.ascontiguousarray(a._a, dtype=dtype))


def fuse(*args: Any, **kwargs: Any) -> Any:
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


class ElementwiseKernel:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("fakecupy does not compile CUDA kernels")


RawKernel = ReductionKernel = ElementwiseKernel


class _Generator:
    """cupy.random.Generator over a NumPy generator (device arrays out)."""

    def __init__(self, seed: Any = None) -> None:
        self._g = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        if name not in _GEN_METHODS:
            raise AttributeError(f"cupy.random.Generator has no method {name!r}")
        return _make(getattr(self._g, name))


class _Device:
    def __init__(self, device: Any = None) -> None:
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f"fakecupy has one device, not {self.id}")

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def use(self) -> None:
        return None


class _Stream:
    null: Any = None

    def __init__(self, non_blocking: bool = False, null: bool = False) -> None:
        self.ptr = 0

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None

    def use(self) -> _Stream:
        return self

    def wait_event(self, event: Any) -> None:
        return None

    def record(self, event: Any = None) -> Any:
        return event or _Event()


class _Event:
    """Work is done when queued here: an event records the host clock (for elapsed times)."""

    done = True

    def __init__(self, block: bool = False, disable_timing: bool = False, **kwargs: Any) -> None:
        self.t = None

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        return None


def _elapsed(start: _Event, end: _Event) -> float:
    if start.t is None or end.t is None:
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event was not recorded")
    return (end.t - start.t) * 1e3


class _MemoryPool:
    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        return None


_POOL = _MemoryPool()
_Stream.null = _Stream(null=True)
cuda = types.SimpleNamespace(
    Device=_Device,
    Stream=_Stream,
    Event=_Event,
    get_current_stream=lambda: _Stream.null,
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"fakecupy (NumPy)", "totalGlobalMem": 2**34},
        memGetInfo=lambda: (2**33, 2**34),
    ),
    get_device_id=lambda: 0,
    get_elapsed_time=_elapsed,
    alloc_pinned_memory=lambda n: bytearray(n),
)
get_default_memory_pool = lambda: _POOL  # noqa: E731
get_default_pinned_memory_pool = lambda: _POOL  # noqa: E731
random = types.SimpleNamespace(default_rng=_Generator, Generator=_Generator)
lib = types.SimpleNamespace(
    stride_tricks=types.SimpleNamespace(
        as_strided=_make(np.lib.stride_tricks.as_strided),
        sliding_window_view=_make(np.lib.stride_tricks.sliding_window_view),
    )
)
linalg = types.SimpleNamespace(
    **{n: _make(getattr(np.linalg, n)) for n in _SUB["linalg"] if hasattr(np.linalg, n)}
)

_OWN = {
    "ndarray": ndarray, "asarray": asarray, "array": array, "asnumpy": asnumpy,
    "get_array_module": None, "ascontiguousarray": ascontiguousarray, "fuse": fuse,
    "ElementwiseKernel": ElementwiseKernel, "RawKernel": RawKernel,
    "ReductionKernel": ReductionKernel, "cuda": cuda, "random": random, "lib": lib,
    "linalg": linalg, "get_default_memory_pool": get_default_memory_pool,
    "get_default_pinned_memory_pool": get_default_pinned_memory_pool,
}  # fmt: skip


def _build() -> types.ModuleType:
    """The module object handed to the backend: CuPy's names, NumPy's behaviour (kept apart from
    this file's globals so that names like ``any`` and ``sum`` don't shadow the builtins)."""
    m = types.ModuleType("fakecupy", __doc__)
    for name in _TOP:
        if name in _OWN:
            continue
        obj = getattr(np, name, None)
        if obj is None:
            continue
        if isinstance(obj, (np.ufunc, type)) or not callable(obj):
            setattr(m, name, obj)  # ufuncs dispatch through __array_ufunc__; dtypes, constants
        else:
            setattr(m, name, _make(obj))
    for name, obj in _OWN.items():
        setattr(m, name, obj)
    m.get_array_module = lambda *args: m if any(type(a) is ndarray for a in args) else np
    m.__version__ = "14.2.0-fake"
    return m


_MODULE: types.ModuleType | None = None


def module() -> types.ModuleType:
    """The fake CuPy module (built once)."""
    global _MODULE
    if _MODULE is None:
        _MODULE = _build()
    return _MODULE
