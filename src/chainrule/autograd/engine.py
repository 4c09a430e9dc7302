"""The reverse-mode engine: ops, and recording an op application into the graph.

Forward: ``apply(Op, *args)`` runs ``Op.forward`` on raw arrays and, when grad mode is on and an
input requires grad, records a ``Node`` (the op, edges to the inputs' nodes, what the backward rule
needs). The node is the ``grad_fn`` of the outputs and the ``ctx`` the rules see.

The backward pass that walks these nodes is in ``backward_pass.py``; the errors both raise (an op
that fails, no path to a leaf, freed buffers, a saved tensor changed in place) are in ``errors.py``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, wrap
from .errors import OpError, _device_retry, _op_error, _op_name
from .grad_mode import state


class Node:
    """One recorded op application: the ``grad_fn`` of its outputs and the ``ctx`` of its rules.

    Structural fields are slots; what the forward saves for backward lives in ``__dict__`` so that
    a single ``clear()`` releases it after the backward has run.
    """

    __slots__ = (
        "op",  # the Op class
        "parents",  # per input: None, a leaf Tensor, a Node, or (Node, output index)
        "needs_input_grad",  # per input: whether its gradient is wanted
        "out_shape",  # output shape (a tuple of shapes for multi-output ops)
        "out_dtype",
        "n_out",
        "pre_hooks",  # {output index: [hook]} for tensor hooks on non-leaf outputs
        "retain",  # {output index: weakref to the tensor} for retain_grad()
        "freed",  # True once backward has released the saved buffers
        "seq",  # forward order (used by anomaly detection)
        "__dict__",
        "__weakref__",
    )

    def name(self) -> str:
        return getattr(self.op, "name", None) or self.op.__name__.lower()

    def __repr__(self) -> str:
        return f"<{self.op.__name__}Backward>"

    def register_hook(self, hook: Any) -> None:
        """Hook on the gradient of output 0 (PyTorch's ``grad_fn.register_prehook``)."""
        _add_pre_hook(self, 0, hook)

    @property
    def next_functions(self) -> tuple:
        out = []
        for p in self.parents:
            if p is None:
                out.append((None, 0))
            elif type(p) is tuple:
                out.append(p)
            elif type(p) is Node:
                out.append((p, 0))
            else:
                out.append((AccumulateGrad(p), 0))
        return tuple(out)


class AccumulateGrad:
    """What ``next_functions`` shows for a leaf (PyTorch's name); ``.variable`` is the leaf."""

    def __init__(self, variable: Tensor) -> None:
        self.variable = variable

    def __repr__(self) -> str:
        return "<AccumulateGrad>"


class Op:
    """Base of the differentiable primitives in ``chainrule.ops``.

    ``forward(ctx, *arrays, **params)`` computes on raw arrays; ``backward(ctx, g, m)`` returns
    the gradient for each input (or None), written with operators and the namespace ``m`` so that
    the same rule runs on arrays (``m = A``) or, for ``create_graph``, on Tensors (``m = T``).
    In the rule, ``ctx.inputs`` are the inputs and ``ctx.out`` the output, when the op declares
    ``save_inputs`` / ``save_output``.
    """

    save_inputs = False
    save_output = False
    # keep_inputs(needs_input_grad) -> which inputs to save (others are None in ctx.inputs);
    # None: all of them
    keep_inputs = None
    is_view = False  # output shares memory with input 0 (shares its version counter)
    differentiable = True
    name: str | None = None

    @staticmethod
    def forward(ctx: Any, *args: Any, **kw: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Any, g: Any, m: Any) -> Any:
        raise NotImplementedError


_seq = 0
_tracer: Any = None  # set only while chainrule.onnx traces a model: it sees every op applied


def apply(op: type, *args: Any, **kw: Any) -> Any:
    """Run ``op`` on ``args`` (Tensors and Python scalars) and record it if a gradient is needed."""
    st = state
    if st.autocast is not None:  # chainrule.amp: the ops it lists run on cast inputs
        out = st.autocast(op, args, kw)
        if out is not None:
            return out
    if _tracer is not None:
        return _tracer(op, args, kw)
    arrays = []
    rec = False
    for a in args:
        if isinstance(a, Tensor):
            arrays.append(a.data)
            if a.requires_grad:
                rec = True
        else:
            arrays.append(a)
    if rec and not st.grad_enabled:
        rec = False
    ctx = Node.__new__(Node)
    try:
        out = op.forward(ctx, *arrays, **kw)
    except (ValueError, IndexError, TypeError, RuntimeError) as e:
        if isinstance(e, OpError):
            raise
        moved = _device_retry(op, args, arrays, e)
        if moved is not None:  # 0-d CPU tensors next to CUDA tensors: PyTorch allows it
            return apply(op, *moved, **kw)
        if isinstance(e, RuntimeError) and _op_name(op) in str(e):
            raise  # an op's own message that already says which op failed
        raise _op_error(op, args, e) from e
    if st.anomaly is not None:
        st.anomaly.check_forward(op, args, out)
    cut = None
    if rec:
        if not op.differentiable:
            rec = False
            cut = f"`{_op_name(op)}` (it has no gradient)"
    elif st.grad_enabled:
        for a in args:  # pass on why an input has no history, for the "no path" error
            if isinstance(a, Tensor) and a._cut is not None:
                cut = a._cut
                break
    if type(out) is tuple:
        return _wrap_outputs(op, ctx, args, arrays, out, rec, cut)
    if type(out) is not np.ndarray:
        out = backend.as_array(out)
    t = wrap(out, rec)
    if op.is_view:
        t._vc = args[0]._vc
    if not rec:
        t._cut = cut
        return t
    _record(op, ctx, args, arrays)
    ctx.out_shape = out.shape
    ctx.out_dtype = out.dtype
    ctx.n_out = 1
    if op.save_output:
        ctx.out = out
        ctx.out_vc = t._vc
    t.grad_fn = ctx
    return t


def _record(op: type, ctx: Node, args: Sequence[Any], arrays: list) -> None:
    global _seq
    parents = []
    needs = []
    for a in args:
        if isinstance(a, Tensor) and a.requires_grad:
            fn = a.grad_fn
            if fn is None:
                parents.append(a)
            else:
                # output 0 of a multi-output op is an edge (node, 0), not the node itself
                nr = a._out_nr
                parents.append(fn if not nr and fn.n_out == 1 else (fn, nr))
            needs.append(True)
        else:
            parents.append(None)
            needs.append(False)
    ctx.op = op
    ctx.parents = parents
    ctx.needs_input_grad = needs
    ctx.pre_hooks = None
    ctx.retain = None
    ctx.freed = False
    _seq += 1
    ctx.seq = _seq
    if op.save_inputs:
        keep = op.keep_inputs
        if keep is not None:  # save only the inputs the wanted gradients use
            keep = keep(needs)
            arrays = [a if k else None for a, k in zip(arrays, keep)]
            args = [a if k else None for a, k in zip(args, keep)]
        ctx.inputs = arrays
        ctx.args = args
        ctx.saved_vc = [(a, a._vc[0]) for a in args if isinstance(a, Tensor)]
    if state.anomaly is not None:
        state.anomaly.note_node(ctx)


def _wrap_outputs(
    op: type, ctx: Node, args: Sequence[Any], arrays: list, outs: tuple, rec: bool, cut: str | None
) -> tuple:
    outs = tuple(o if type(o) is np.ndarray else backend.as_array(o) for o in outs)
    ts = []
    for i, o in enumerate(outs):
        # integer outputs (indices) carry no gradient; bfloat16 (ml_dtypes) has kind 'V'
        diff = rec and o.dtype.kind in "fV"
        t = wrap(o, diff)
        if op.is_view:
            t._vc = args[0]._vc
        t._out_nr = i
        t._cut = (
            None if diff else (cut or (f"`{_op_name(op)}` (an integer output)" if rec else None))
        )
        ts.append(t)
    if rec:
        _record(op, ctx, args, arrays)
        ctx.out_shape = tuple(o.shape for o in outs)
        ctx.out_dtype = tuple(o.dtype for o in outs)
        ctx.n_out = len(outs)
        if op.save_output:
            ctx.out = outs
            ctx.out_vc = ts[0]._vc
        for t in ts:
            if t.requires_grad:
                t.grad_fn = ctx
    return tuple(ts)


# ----------------------------------------------------------------------------- hooks


def _add_pre_hook(node: Node, nr: int, hook: Any) -> None:
    if node.pre_hooks is None:
        node.pre_hooks = {}
    node.pre_hooks.setdefault(nr, []).append(hook)


def add_tensor_hook(t: Tensor, hook: Any) -> Any:
    """Register ``hook(grad) -> grad or None`` on tensor ``t``; returns a handle with ``remove()``."""
    if t.grad_fn is None:
        if t._hooks is None:
            t._hooks = []
        t._hooks.append(hook)  # registered twice runs twice, as in PyTorch (leaf or not)
        lst = t._hooks
    else:
        _add_pre_hook(t.grad_fn, t._out_nr, hook)
        lst = t.grad_fn.pre_hooks[t._out_nr]
    return _HookHandle(lst, hook)


class _HookHandle:
    def __init__(self, lst: list, hook: Any) -> None:
        self._lst, self._hook = lst, hook

    def remove(self) -> None:
        if self._hook in self._lst:
            self._lst.remove(self._hook)


def retain_grad(t: Tensor) -> None:
    if t.grad_fn is None:
        return
    node = t.grad_fn
    if node.retain is None:
        node.retain = {}
    node.retain[t._out_nr] = weakref.ref(t)
