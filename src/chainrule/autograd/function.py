"""``autograd.Function``: how users add an op of their own, with PyTorch's contract.

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad_output):
            (y,) = ctx.saved_tensors
            return grad_output * y

    y = Exp.apply(x)

``forward`` runs with recording off and returns a Tensor or a tuple of Tensors; ``backward`` gets
one gradient per output and returns one per input of ``forward`` (None where there is none). It is
written with Tensor operations, so a ``create_graph=True`` backward records it and it can be
differentiated again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor, wrap
from .backward_pass import _rematerialize
from .engine import Node, Op, _record
from .errors import _freed_error, _version_error
from .grad_mode import state


class _Saved:
    """Marks a saved tensor that is an output of the op (kept as data to avoid a cycle)."""

    __slots__ = ("nr",)

    def __init__(self, nr: int) -> None:
        self.nr = nr


def _save_for_backward(self: Node, *tensors: Any) -> None:
    self.__dict__["_to_save"] = tensors


def _saved_tensors(self: Node) -> tuple:
    d = self.__dict__
    if "_saved" not in d:
        if self.freed if hasattr(self, "op") else False:
            raise _freed_error(self)
        return tuple(d.get("_to_save", ()))
    out = []
    for s, v in zip(d["_saved"], d["_saved_vc"]):
        if isinstance(s, _Saved):
            data = d["_outs"][s.nr]
            if v is not None and v[0][0] != v[1]:
                t = wrap(data)
                t._vc = v[0]
                raise _version_error(self, t, v[1], None)
            t = _rematerialize(self, data) if state.grad_enabled else wrap(data)
            if isinstance(t, Tensor) and t.grad_fn is self:
                t._out_nr = s.nr
            out.append(t)
        else:
            if isinstance(s, Tensor) and v is not None and s._vc[0] != v:
                raise _version_error(self, s, v, None)
            out.append(s)
    return tuple(out)


def _mark_non_differentiable(self: Node, *tensors: Any) -> None:
    self.__dict__["_non_diff"] = {id(t) for t in tensors}


def _set_materialize_grads(self: Node, value: bool) -> None:
    self.__dict__["_materialize"] = bool(value)


def _mark_dirty(self: Node, *tensors: Any) -> None:
    for t in tensors:
        t._vc[0] += 1


Node.save_for_backward = _save_for_backward
Node.saved_tensors = property(_saved_tensors)
Node.mark_non_differentiable = _mark_non_differentiable
Node.set_materialize_grads = _set_materialize_grads
Node.mark_dirty = _mark_dirty


class _FunctionOp(Op):
    """Adapts a user's Function to the engine's Op contract."""

    fn_cls: Any = None

    @staticmethod
    def backward(ctx: Node, g: Any, m: Any) -> tuple:
        fn = ctx.op.fn_cls
        create = state.grad_enabled
        gs = g if ctx.n_out > 1 else (g,)
        if not create:
            gs = tuple(wrap(x) for x in gs)
        outs = ctx.__dict__.get("_outs")
        if outs is not None and any(o is None for o in outs):
            gs = tuple(None if o is None else x for x, o in zip(gs, outs))
        res = fn.backward(ctx, *gs)
        if not isinstance(res, tuple):
            res = (res,)
        n = len(ctx.parents)
        if len(res) < n:
            raise RuntimeError(
                f"function {fn.__name__}.backward returned {len(res)} gradients, but forward "
                f"took {n} inputs: return one per input (None for inputs without a gradient)"
            )
        res = res[:n] if all(r is None for r in res[n:]) else res
        if len(res) != n:
            raise RuntimeError(
                f"function {fn.__name__}.backward returned {len(res)} gradients, expected {n}"
            )
        out = []
        for r, p in zip(res, ctx.parents):
            if r is None or p is None:
                out.append(None)
            elif create:
                out.append(r if isinstance(r, Tensor) else wrap(r))
            else:
                out.append(r.data if isinstance(r, Tensor) else r)
        return tuple(out)


class Function:
    """Base class for user-defined differentiable operations (see the module docstring)."""

    _op_cache: dict = {}

    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, *grads)")

    @classmethod
    def _op(cls) -> type:
        op = Function._op_cache.get(cls)
        if op is None:
            op = type(cls.__name__, (_FunctionOp,), {"fn_cls": cls, "name": cls.__name__})
            Function._op_cache[cls] = op
        return op

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        ctx = Node.__new__(Node)
        needs = state.grad_enabled and any(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        prev = state.grad_enabled
        state.grad_enabled = False
        try:
            if _uses_setup_context(cls):
                out = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, out)
            else:
                out = cls.forward(ctx, *args, **kwargs)
        finally:
            state.grad_enabled = prev
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        if state.anomaly is not None:  # a forward written with NumPy runs no checked ops
            arrays = tuple(o.data if isinstance(o, Tensor) else o for o in outs)
            state.anomaly.check_forward(cls._op(), args, arrays)
        if not needs:
            return out
        non_diff = ctx.__dict__.pop("_non_diff", set())
        _record(cls._op(), ctx, args, [])
        ctx.needs_input_grad = tuple(ctx.needs_input_grad)
        if state.anomaly is not None:
            state.anomaly.note_node(ctx)
        wrapped = []
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                continue
            if any(o is a for a in args):
                o = wrap(o.data)
            if id(o) in non_diff:
                wrapped.append(o)
                continue
            o.requires_grad = True
            o.grad_fn = ctx
            o._out_nr = i
            wrapped.append(o)
        ctx.n_out = len(outs)
        # a non-tensor output (passed through as is) gets a 0-d placeholder; backward sees None
        shapes = tuple(o.shape if isinstance(o, Tensor) else () for o in outs)
        dts = tuple(o.data.dtype if isinstance(o, Tensor) else np.dtype(np.float64) for o in outs)
        ctx.out_shape = shapes if ctx.n_out > 1 else shapes[0]
        ctx.out_dtype = dts if ctx.n_out > 1 else dts[0]
        d = ctx.__dict__
        to_save = d.pop("_to_save", ())
        d["_outs"] = tuple(o.data if isinstance(o, Tensor) else None for o in wrapped)
        saved, vcs = [], []
        for s in to_save:
            nr = next((j for j, o in enumerate(wrapped) if o is s), None)
            if nr is not None:
                saved.append(_Saved(nr))
                vcs.append((wrapped[nr]._vc, wrapped[nr]._vc[0]))
            else:
                saved.append(s)
                vcs.append(s._vc[0] if isinstance(s, Tensor) else None)
        d["_saved"] = saved
        d["_saved_vc"] = vcs
        return wrapped[0] if single else tuple(wrapped)


def _uses_setup_context(cls: type) -> bool:
    """forward(*args) + setup_context(ctx, inputs, output) style, defined here or inherited."""
    return any("setup_context" in k.__dict__ for k in cls.__mro__ if k is not Function)


class FunctionCtx:
    """Type of the ``ctx`` argument, for annotations (it is the graph node itself)."""


def once_differentiable(fn: Any) -> Any:
    """Decorator kept for PyTorch compatibility: the backward runs as written."""
    return fn
