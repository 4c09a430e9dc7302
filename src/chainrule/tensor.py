"""``Tensor``: an array plus what autograd needs to know about it.

The maths lives in ``chainrule.ops`` (each op's forward and backward side by side); this file holds
the data structure, its attributes, conversions and in-place updates. The op methods
(``x.exp()``, ``x + y``, ``x.sum(1)``, ...) are attached at the bottom of ``chainrule.ops``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import backend, dtypes
from .backend import CPU, device


def check_device(dev: Any) -> device:
    """``dev`` as a ``device``, or a RuntimeError when it is not usable here (CUDA without CuPy or
    without a GPU says what to install)."""
    d = backend.as_device(dev)
    if d.type == "cuda":
        backend.cuda_module()
    return d


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    ``data`` is the NumPy array. ``requires_grad`` marks tensors whose gradient ``backward()``
    should compute; ``grad_fn`` is the recorded op that produced it (None for leaves).
    """

    __slots__ = (
        "data",
        "requires_grad",
        "grad",
        "grad_fn",
        "_vc",  # version counter [int], shared with views; bumped by in-place updates
        "_out_nr",  # which output of grad_fn this is
        "_hooks",  # hooks on a leaf's gradient
        "_cut",  # why this tensor has no history although it came from one (for errors)
        "__weakref__",
    )
    __array_ufunc__ = None  # make NumPy defer: ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data: Any = None, dtype: Any = None, requires_grad: bool = False) -> None:
        from .creation import _to_array  # noqa: PLC0415

        arr = _to_array([] if data is None else data, dtype)
        self.data = arr
        self.grad = None
        self.grad_fn = None
        self._vc = [0]
        self._out_nr = 0
        self._hooks = None
        self._cut = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes._FROM_NP[self.data.dtype]

    @property
    def device(self) -> device:
        return CPU if type(self.data) is np.ndarray else backend.device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def is_cuda(self) -> bool:
        return backend.is_device_array(self.data)

    @property
    def itemsize(self) -> int:
        return self.data.itemsize

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    @property
    def _version(self) -> int:
        return self._vc[0]

    def is_floating_point(self) -> bool:
        return dtypes.is_floating(self.data.dtype)

    def size(self, dim: int | None = None) -> Any:
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    ndimension = dim

    def numel(self) -> int:
        return self.data.size

    nelement = numel

    def element_size(self) -> int:
        return self.data.itemsize

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ conversions
    def item(self) -> Any:
        if self.data.size != 1:
            raise RuntimeError(
                f"item(): a Tensor with {self.data.size} elements cannot be converted to a Python "
                "scalar; only one-element tensors can"
            )
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The array itself (shares memory). Refused for tensors that require grad (as PyTorch)."""
        if self.requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on a Tensor that requires grad: the array would carry no "
                "history. Use tensor.detach().numpy() if you mean to leave the graph."
            )
        if type(self.data) is not np.ndarray and backend.is_device_array(self.data):
            raise TypeError(
                f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to "
                "copy the tensor to host memory first."
            )
        _note_export(self)
        return self.data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.data.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"Boolean value of a Tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data.item())

    def __iter__(self):  # noqa: ANN204
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __repr__(self) -> str:
        a = backend.to_host(self.data)
        if a.dtype.kind == "V":  # bfloat16 prints through float32 (its own str drops the ".")
            a = a.astype(np.float32)
        body = np.array2string(
            a,
            separator=", ",
            prefix="tensor(",
            precision=4,
            threshold=1000,
            edgeitems=3,
        )
        extra = []
        if self.data.dtype not in (
            dtypes.defaults.float.np,
            np.dtype(np.int64),
            np.dtype(np.bool_),
        ):
            extra.append(f"dtype={self.dtype}")
        elif self.data.size == 0:
            extra.append(f"size={self.data.shape}")
        if self.device.type != "cpu":
            extra.insert(0, f"device='{self.device}'")
        if self.grad_fn is not None:
            extra.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self.grad_fn is not None and not requires_grad:
            raise RuntimeError(
                "requires_grad_(False) on a non-leaf tensor: it is part of a graph; use "
                ".detach() to get a tensor without history"
            )
        d = self.data.dtype
        if requires_grad and d.kind not in "fc" and not dtypes.is_floating(d):
            raise RuntimeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}: "
                "an integer tensor has no derivative (convert with .float() first)"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, with no history (it leaves the graph)."""
        t = wrap(self.data)
        t._vc = self._vc
        if self.requires_grad:
            src = f" the output of `{self.grad_fn.name()}`" if self.grad_fn is not None else ""
            t._cut = f"`detach()` (of{src or ' a leaf'})"
        else:
            t._cut = self._cut
        return t

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self.requires_grad = False
        return self

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        from .autograd.engine import retain_grad  # noqa: PLC0415

        retain_grad(self)

    @property
    def retains_grad(self) -> bool:
        n = self.grad_fn
        return n is not None and bool(n.retain) and self._out_nr in n.retain

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        from .autograd.engine import add_tensor_hook  # noqa: PLC0415

        return add_tensor_hook(self, hook)

    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
        from .autograd.functional_api import backward  # noqa: PLC0415

        backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ------------------------------------------------------------------ in-place updates
    def _check_inplace(self, name: str, *others: Any) -> None:
        if state.grad_enabled and (
            self.requires_grad or any(isinstance(o, Tensor) and o.requires_grad for o in others)
        ):
            what = "a leaf tensor that requires grad" if self.is_leaf else "a tensor in a graph"
            if not self.requires_grad:
                what = "a tensor with a value that requires grad"
            raise RuntimeError(
                f"{name}: in-place update of {what} while recording gradients. In-place updates "
                "are for optimisers and initialisers: wrap them in `with chainrule.no_grad():`, or "
                "use the out-of-place op (y = x + 1) inside a model."
            )

    def _inplace(self, name: str, fn: Callable[[np.ndarray], None], *others: Any) -> Tensor:
        self._check_inplace(name, *others)
        try:
            fn(self.data)
        except (ValueError, TypeError) as e:
            shapes = [tuple(self.shape)] + [tuple(o.shape) for o in others if hasattr(o, "shape")]
            raise RuntimeError(f"{name}: {e} (shapes: {' and '.join(map(str, shapes))})") from e
        self._vc[0] += 1
        return self

    def zero_(self) -> Tensor:
        return self._inplace("zero_", lambda a: a.fill(0))

    def fill_(self, value: Any) -> Tensor:
        return self._inplace("fill_", lambda a: a.fill(_raw(value)), value)

    def copy_(self, src: Any) -> Tensor:
        """Copy ``src``'s values in (broadcast, cast); like torch's, it copies across devices."""
        v = _raw(src)
        if type(v) is not type(self.data) and backend.is_array(v):
            v = backend.to_device(v, self.device)
        return self._inplace("copy_", lambda a: np.copyto(a, v, casting="unsafe"), src)

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        o = _raw(other)
        if alpha != 1:
            o = o * alpha
        return self._inplace("add_", lambda a: np.add(a, o, out=a, casting="unsafe"), other)

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        return self.add_(other, alpha=-alpha)

    def mul_(self, other: Any) -> Tensor:
        o = _raw(other)
        return self._inplace("mul_", lambda a: np.multiply(a, o, out=a, casting="unsafe"), other)

    def div_(self, other: Any) -> Tensor:
        o = _raw(other)
        return self._inplace("div_", lambda a: np.divide(a, o, out=a, casting="unsafe"), other)

    def pow_(self, other: Any) -> Tensor:
        o = _raw(other)
        return self._inplace("pow_", lambda a: np.power(a, o, out=a, casting="unsafe"), other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self._inplace("clamp_", lambda a: np.clip(a, _raw(min), _raw(max), out=a), min, max)

    clip_ = clamp_

    def sqrt_(self) -> Tensor:
        return self._inplace("sqrt_", lambda a: np.sqrt(a, out=a))

    def neg_(self) -> Tensor:
        return self._inplace("neg_", lambda a: np.negative(a, out=a))

    def addcmul_(self, t1: Any, t2: Any, value: float = 1) -> Tensor:
        return self._inplace(
            "addcmul_", lambda a: np.add(a, value * (_raw(t1) * _raw(t2)), out=a), t1, t2
        )

    def addcdiv_(self, t1: Any, t2: Any, value: float = 1) -> Tensor:
        return self._inplace(
            "addcdiv_", lambda a: np.add(a, value * (_raw(t1) / _raw(t2)), out=a), t1, t2
        )

    def lerp_(self, end: Any, weight: Any) -> Tensor:
        return self._inplace(
            "lerp_", lambda a: np.add(a, _raw(weight) * (_raw(end) - a), out=a), end, weight
        )

    def uniform_(self, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
        from .random import _gen  # noqa: PLC0415

        vals = _gen(generator).uniform(a, b, self.shape)
        return self._inplace("uniform_", lambda arr: np.copyto(arr, vals, casting="unsafe"))

    def normal_(self, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
        from .random import _gen  # noqa: PLC0415

        vals = _gen(generator).normal(mean, std, self.shape)
        return self._inplace("normal_", lambda arr: np.copyto(arr, vals, casting="unsafe"))

    def __setitem__(self, index: Any, value: Any) -> None:
        from .ops.indexing import _norm_index  # noqa: PLC0415

        a = self.data
        idx = _norm_index(index, a)  # CPU index tensors and lists go to a CUDA tensor's device
        v = _raw(value)
        if type(v) is not type(a) and (type(a) is not np.ndarray or isinstance(value, Tensor)):
            v = _setitem_value(v, value, a, idx)
        self._inplace("__setitem__ (x[i] = v)", lambda a: a.__setitem__(idx, v), value)


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _setitem_value(v: Any, value: Any, a: Any, idx: Any) -> Any:
    """The value of ``a[idx] = value`` on ``a``'s device, with PyTorch's rules: arrays, lists and
    0-d tensors are copied over; a tensor with dims crosses devices only into a basic index
    (ints and slices: a copy_) and is refused for an advanced one (index_put_)."""
    if isinstance(v, (list, tuple)):
        v = np.asarray(v)
    if not backend.is_array(v) or backend.device_of(v) == backend.device_of(a):
        return v
    if isinstance(value, Tensor) and v.ndim and not _basic(idx):
        raise backend.same_device_error("index_put_ (x[index] = v)", [a, v])
    return backend.to_device(v, backend.device_of(a))


def _basic(idx: Any) -> bool:
    """Whether an index holds only ints, slices, None and Ellipsis (0-d integer arrays act as
    ints)."""
    for i in idx if type(idx) is tuple else (idx,):
        t = type(i)
        if t is int or t is slice or i is None or i is Ellipsis:
            continue
        if backend.is_array(i) and i.ndim == 0 and i.dtype.kind in "iu":
            continue
        return False
    return True


def wrap(data: np.ndarray, requires_grad: bool = False) -> Tensor:
    """A Tensor around an existing array, with no checks (the engine's fast constructor)."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t.requires_grad = requires_grad
    t.grad = None
    t.grad_fn = None
    t._vc = [0]
    t._out_nr = 0
    t._hooks = None
    t._cut = None
    return t


# Arrays recently handed out by .numpy(): if one comes back through cr.tensor(), the error for a
# loss without a path to any parameter can say the graph was cut by a NumPy round trip.
_exports: dict = {}


def _note_export(t: Tensor) -> None:
    if t._cut is None and t.grad_fn is None:
        return
    if len(_exports) > 64:
        _exports.clear()
    try:
        _exports[id(t.data)] = (weakref.ref(t.data), t._cut or f"`{t.grad_fn.name()}`")
    except TypeError:
        pass


def export_origin(a: Any) -> str | None:
    for obj in (a, getattr(a, "base", None)):
        e = _exports.get(id(obj))
        if e is not None and e[0]() is obj:
            return f"a NumPy round trip (.numpy() of a tensor produced by {e[1]})"
    return None


# imported last: the autograd package imports this module's Tensor and wrap
from .autograd.grad_mode import state  # noqa: E402
