"""Every differentiable primitive, by family, and the Tensor methods and operators built on them.

unary.py        exp, log, sqrt, trig, tanh/sigmoid/relu, abs, sign, floor/round, clamp, ...
elementwise.py  binary maths (add, mul, pow, maximum, ...), comparisons, where, casts, clone
reduce.py       sum, mean, prod, max/min, logsumexp, norm, cumsum, var/std
movement.py     reshape, permute, expand, squeeze, cat/split, flip, roll, tril/triu, repeat, pad
indexing.py     x[index], index_select, masked_fill/select, gather/scatter, take_along_dim
linalg.py       matmul, einsum
nn.py           fused softmax / log-softmax
device.py       to_device: copies between host and GPU, differentiable
namespace.py    the two namespaces (arrays / Tensors) that backward rules are written in
"""

from __future__ import annotations

from typing import Any

from .. import backend, dtypes
from ..autograd.grad_mode import state
from ..tensor import Tensor
from . import device as D
from . import elementwise as E
from . import indexing as Ix
from . import linalg as L
from . import movement as M
from . import nn as N
from . import reduce as R
from . import unary as U

# ----------------------------------------------------------------------------- operators


def _r(fn: Any) -> Any:
    return lambda self, other: fn(other, self)


def _inplace_op(fn: Any, name: str) -> Any:
    """``x += y``: in place when no gradient is being recorded through x or y. Otherwise PyTorch
    would rewrite x's history; we bind the name to the out-of-place result instead (same value,
    same gradient), except for a leaf that requires grad, which must not be silently replaced."""

    def op(self: Tensor, other: Any) -> Tensor:
        if state.grad_enabled and (
            self.requires_grad or (isinstance(other, Tensor) and other.requires_grad)
        ):
            if self.requires_grad and self.grad_fn is None:
                self._check_inplace(name, other)
            return fn(self, other)
        res = fn(self, other)
        if res.data.dtype != self.data.dtype and not dtypes.is_floating(self.data.dtype):
            raise RuntimeError(
                f"{name}: result type {res.dtype} can't be cast to the desired output type {self.dtype}"
            )
        return self.copy_(res)

    return op


_OPS = {
    "__add__": E.add,
    "__radd__": _r(E.add),
    "__sub__": E.sub,
    "__rsub__": _r(E.sub),
    "__mul__": E.mul,
    "__rmul__": _r(E.mul),
    "__truediv__": E.div,
    "__rtruediv__": _r(E.div),
    "__floordiv__": E.floor_divide,
    "__rfloordiv__": _r(E.floor_divide),
    "__mod__": E.remainder,
    "__rmod__": _r(E.remainder),
    "__pow__": E.pow,
    "__rpow__": _r(E.pow),
    "__matmul__": L.matmul,
    "__rmatmul__": _r(L.matmul),
    "__neg__": U.neg,
    "__pos__": lambda self: self,
    "__abs__": U.abs,
    "__eq__": E.eq,
    "__ne__": E.ne,
    "__lt__": E.lt,
    "__le__": E.le,
    "__gt__": E.gt,
    "__ge__": E.ge,
    "__and__": E.bitwise_and,
    "__rand__": _r(E.bitwise_and),
    "__or__": E.bitwise_or,
    "__ror__": _r(E.bitwise_or),
    "__xor__": E.bitwise_xor,
    "__rxor__": _r(E.bitwise_xor),
    "__invert__": E.bitwise_not,
    "__getitem__": Ix.getitem,
    "__iadd__": _inplace_op(E.add, "__iadd__ (x += y)"),
    "__isub__": _inplace_op(E.sub, "__isub__ (x -= y)"),
    "__imul__": _inplace_op(E.mul, "__imul__ (x *= y)"),
    "__itruediv__": _inplace_op(E.div, "__itruediv__ (x /= y)"),
}

# ----------------------------------------------------------------------------- methods

_METHODS = {
    # unary maths
    **{
        n: getattr(U, n)
        for n in (
            "exp log log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu abs sign square reciprocal "
            "floor ceil round trunc clamp clip neg negative"
        ).split()
    },
    # element-wise: binary, comparisons, predicates, copies
    **{
        n: getattr(E, n)
        for n in (
            "add sub subtract mul multiply div divide true_divide pow maximum minimum remainder "
            "floor_divide eq ne lt le gt ge greater greater_equal less less_equal not_equal "
            "logical_and logical_or logical_xor logical_not bitwise_not isnan isinf isfinite clone "
            "lerp addcmul addcdiv"
        ).split()
    },
    # reductions
    **{
        n: getattr(R, n)
        for n in (
            "sum mean prod amax amin max min logsumexp norm cumsum var std argmax argmin all any "
            "count_nonzero nonzero"
        ).split()
    },
    # movement
    **{
        n: getattr(M, n)
        for n in (
            "reshape view permute transpose swapaxes swapdims t movedim moveaxis expand expand_as "
            "broadcast_to squeeze unsqueeze flatten unflatten split chunk tensor_split unbind flip "
            "fliplr flipud roll tril triu repeat tile repeat_interleave"
        ).split()
    },
    # indexing
    **{
        n: getattr(Ix, n)
        for n in (
            "index_select masked_fill masked_select gather scatter scatter_add take_along_dim"
        ).split()
    },
    # products
    "matmul": L.matmul,
    "mm": L.mm,
    "bmm": L.bmm,
    "mv": L.mv,
    "dot": L.dot,
    "inner": L.inner,
    "outer": L.outer,
    # nn
    "softmax": N.softmax,
    "log_softmax": N.log_softmax,
}


def _to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``; ``copy=True`` forces
    a copy; ``non_blocking`` is accepted (copies to a GPU are queued on its stream anyway)."""
    dtype = kwargs.get("dtype")
    dev = kwargs.get("device")
    copy = kwargs.get("copy", False)
    for a in args:
        if isinstance(a, Tensor):
            dtype, dev = a.dtype, a.device
        elif isinstance(a, (str, backend.device)):
            dev = a
        elif a is not None:
            dtype = a
    out = self if dev is None else D.to_device(self, dev)
    if dtype is not None:
        out = E.cast(out, dtype)
    if copy and out is self:
        out = E.clone(self)
    return out


def _caster(d: dtypes.dtype) -> Any:
    def fn(self: Tensor, memory_format: Any = None) -> Tensor:
        return E.cast(self, d)

    return fn


def _type(self: Tensor, dtype: Any = None) -> Any:
    if dtype is None:
        return f"chainrule.{self.dtype.name.capitalize()}Tensor"
    return E.cast(self, dtype)


def _new_tensor(self: Tensor, data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    from ..creation import tensor  # noqa: PLC0415

    return tensor(data, dtype=dtype or self.dtype, device=self.device, requires_grad=requires_grad)


def _new_filled(fn_name: str) -> Any:
    def fn(self: Tensor, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        from .. import creation  # noqa: PLC0415

        return getattr(creation, fn_name)(
            *size, dtype=dtype or self.dtype, device=self.device, requires_grad=requires_grad
        )

    return fn


def _new_full(
    self: Tensor, size: Any, fill_value: Any, *, dtype: Any = None, requires_grad: bool = False
) -> Tensor:
    from ..creation import full  # noqa: PLC0415

    return full(
        size, fill_value, dtype=dtype or self.dtype, device=self.device, requires_grad=requires_grad
    )


def _cuda(self: Tensor, device: Any = None, non_blocking: bool = False) -> Tensor:
    if isinstance(device, int):
        device = f"cuda:{device}"
    return D.to_device(self, device or "cuda")


_EXTRA = {
    "to": _to,
    "type": _type,
    "type_as": lambda self, other: E.cast(self, other.dtype),
    "float": _caster(dtypes.float32),
    "double": _caster(dtypes.float64),
    "half": _caster(dtypes.float16),
    "long": _caster(dtypes.int64),
    "int": _caster(dtypes.int32),
    "bool": _caster(dtypes.bool_),
    "cpu": lambda self: D.to_device(self, "cpu"),
    "cuda": _cuda,
    "contiguous": lambda self, memory_format=None: self,
    "is_contiguous": lambda self, memory_format=None: bool(self.data.flags.c_contiguous),
    "new_tensor": _new_tensor,
    "new_zeros": _new_filled("zeros"),
    "new_ones": _new_filled("ones"),
    "new_empty": _new_filled("empty"),
    "new_full": _new_full,
    "T": property(
        lambda self: M.permute(self, tuple(range(self.ndim - 1, -1, -1))) if self.ndim > 1 else self
    ),
    "mT": property(lambda self: M.transpose(self, -2, -1)),
    "H": property(
        lambda self: M.permute(self, tuple(range(self.ndim - 1, -1, -1))) if self.ndim > 1 else self
    ),
}

for _name, _fn in {**_OPS, **_METHODS, **_EXTRA}.items():
    setattr(Tensor, _name, _fn)
