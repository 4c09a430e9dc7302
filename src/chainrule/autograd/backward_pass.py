"""The backward pass: walk the graph from the outputs in reverse recording order (a heap keyed by
each node's sequence number, no recursion: a node runs only after every node recorded later, so
all the gradients that reach it have been summed), calling each node's rule. Rules run on raw arrays (namespace ``A``) unless ``create_graph`` asks for a differentiable
backward, in which case the same rule runs on Tensors (namespace ``T``) and records a graph of its
own. Gradients land in the leaves' ``.grad`` (``backward()``) or are returned (``autograd.grad``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..tensor import Tensor, wrap
from .engine import Node
from .errors import _freed_error, _no_path_error, _shape_error, _version_error
from .grad_mode import state


def _hook_call(hooks: list, g: Any, create_graph: bool) -> Any:
    for h in hooks:
        # NumPy gives scalars, not 0-d arrays, for ops on 0-d arrays: a Tensor needs an array
        gt = g if create_graph else wrap(backend.as_array(g))
        r = h(gt)
        if r is not None:
            g = r if create_graph else (r.data if isinstance(r, Tensor) else backend.as_array(r))
    return g


def _check_versions(node: Node, d: dict) -> None:
    for t, v in d.get("saved_vc", ()):
        if t._vc[0] != v:
            # the position among all the op's arguments (scalars included), e.g. `3 * h` -> 1
            i = next((j for j, a in enumerate(d.get("args", ())) if a is t), 0)
            raise _version_error(node, t, v, i)
    vc = d.get("out_vc")
    if vc is not None and vc[0] != 0:
        out = d["out"] if type(d["out"]) is not tuple else d["out"][0]
        raise _version_error(node, wrap(out), 0, None, now=vc[0])


def sum_to(g: Any, shape: tuple, node: Node | None = None) -> Any:
    """Sum a gradient that was broadcast back down to ``shape``."""
    gshape = g.shape
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    if lead < 0:
        raise _shape_error(node, g, shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and gshape[i + lead] != 1
    )
    for i, s in enumerate(shape):
        if s != 1 and gshape[i + lead] != s:
            raise _shape_error(node, g, shape)
    if isinstance(g, Tensor):
        r = g.sum(dim=axes, keepdim=True) if axes else g
        return r.reshape(shape)
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return r.reshape(shape)


class _Pass(list):
    """The callbacks queued during one backward pass (``accumulate``: it fills ``.grad``, as
    ``backward()`` does; ``autograd.grad`` does not)."""

    __slots__ = ("accumulate",)


_end_callbacks: list[_Pass] = []  # one per backward pass now running (innermost last)


def queue_callback(fn: Any) -> None:
    """Run ``fn()`` once the backward pass now running has finished, after every leaf's
    ``.grad`` has been accumulated (PyTorch's ``Variable._execution_engine.queue_callback``;
    ``DistributedDataParallel`` waits for its gradient all-reduce here). Only valid during a
    backward pass (from a hook); callbacks are dropped if the pass raises."""
    if not _end_callbacks:
        raise RuntimeError("queue_callback: no backward pass is running (call it from a hook)")
    _end_callbacks[-1].append(fn)


def run_backward(
    roots: Sequence[Tensor],
    root_grads: Sequence[Any],
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
    accumulate: bool = True,
) -> list | None:
    """Propagate ``root_grads`` from ``roots`` back through the graph.

    With ``accumulate`` the gradients land in the ``.grad`` of the leaves (only those in
    ``inputs`` if given); without it they are returned, one per tensor of ``inputs``
    (``autograd.grad``).
    """
    if retain_graph is None:
        retain_graph = create_graph
    m = _namespaces()[create_graph]
    grads: dict = {}
    leaf_grads: dict = {}
    handed: set = set()
    nodes = []
    for r, g in zip(roots, root_grads):
        if not r.requires_grad:
            raise _no_path_error(r)
        if state.anomaly is not None:
            state.anomaly.check_root(r)
        if not create_graph:
            g = g.data if isinstance(g, Tensor) else g
            handed.add(id(g))
        node = r.grad_fn
        if node is None:
            _leaf_add(leaf_grads, r, g)
            continue
        _node_add(grads, node, r._out_nr, g)
        nodes.append(node)

    capture_nodes: dict = {}
    capture_leaves: dict = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            if t.grad_fn is None:
                capture_leaves[id(t)] = i
            else:
                capture_nodes.setdefault(t.grad_fn, []).append((t._out_nr, i))
    captured: list = [None] * (len(inputs) if inputs is not None else 0)

    # Nodes run in decreasing forward order (seq): every consumer of a node was recorded after
    # it, so by the time a node is popped all the gradient it will receive has arrived. A node
    # enters the heap when its first gradient does; branches that receive none are never run.
    heap = [(-n.seq, n) for n in dict.fromkeys(nodes)]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush

    prev_mode = state.grad_enabled
    state.grad_enabled = create_graph
    anomaly = state.anomaly
    cbs = _Pass()
    cbs.accumulate = accumulate
    _end_callbacks.append(cbs)
    try:
        while heap:
            node = pop(heap)[1]
            g = grads.pop(node)
            if node.pre_hooks or node.retain:
                g = _node_hooks(node, g, create_graph)
            if capture_nodes and node in capture_nodes:
                for nr, i in capture_nodes[node]:
                    captured[i] = g if node.n_out == 1 else g[nr]
            if anomaly is not None:
                anomaly.current_backward = node
            res = _run_rule(node, g, m, create_graph, retain_graph)
            if anomaly is not None:
                anomaly.check_backward(node, res)
            for p, gi in zip(node.parents, res):
                if p is None or gi is None:
                    continue
                tp = type(p)
                if tp is Node:
                    if gi.shape != p.out_shape:
                        gi = sum_to(gi, p.out_shape, node)
                    if gi.dtype is not p.out_dtype:
                        gi = _as_dtype(gi, p.out_dtype)
                    prev = grads.get(p)
                    if prev is None:
                        grads[p] = gi
                        push(heap, (-p.seq, p))
                    else:
                        grads[p] = prev + gi
                elif tp is tuple:
                    pn, nr = p
                    gi = sum_to(gi, pn.out_shape[nr], node)
                    if gi.dtype is not pn.out_dtype[nr]:
                        gi = _as_dtype(gi, pn.out_dtype[nr])
                    if pn not in grads:
                        push(heap, (-pn.seq, pn))
                    _node_add(grads, pn, nr, gi)
                else:
                    if gi.shape != p.data.shape:
                        gi = sum_to(gi, p.data.shape, node)
                    e = leaf_grads.get(id(p))
                    if e is None:
                        leaf_grads[id(p)] = [p, gi, False]
                    else:
                        e[1] = e[1] + gi
                        e[2] = True  # a fresh array that we own
        state.grad_enabled = create_graph
        if accumulate and capture_nodes:  # backward(inputs=[non-leaf]) fills its .grad
            for i, t in enumerate(inputs):
                if t.grad_fn is not None and captured[i] is not None:
                    _accumulate(t, captured[i], False, handed, create_graph)
        out = _finish_leaves(
            leaf_grads, handed, create_graph, inputs, accumulate, capture_leaves, captured
        )
        while cbs:
            cbs.pop(0)()
        return out
    finally:
        _end_callbacks.pop()
        state.grad_enabled = prev_mode
        if anomaly is not None:
            anomaly.current_backward = None


_NS: tuple = ()


def _namespaces() -> tuple:
    """(A, T): the rule namespaces for arrays and for Tensors (imported late: ops import us)."""
    global _NS
    if not _NS:
        from ..ops.namespace import A, T  # noqa: PLC0415

        _NS = (A, T)
    return _NS


def _as_dtype(g: Any, dt: np.dtype) -> Any:
    """``g`` in its node's output dtype ``dt``. A rule that mixes Python floats with bfloat16
    arrays computes in float32 (NumPy's promotion); PyTorch rounds every gradient to its tensor's
    dtype. (The caller compares dtypes by identity first: same-dtype arrays never get here.)"""
    if isinstance(g, Tensor):
        return g if g.data.dtype == dt else g.to(dtypes.from_numpy_dtype(dt))
    return g if g.dtype == dt else g.astype(dt)


def _node_add(grads: dict, node: Node, nr: int, g: Any) -> None:
    if node.n_out == 1:
        prev = grads.get(node)
        grads[node] = g if prev is None else prev + g
        return
    lst = grads.get(node)
    if lst is None:
        lst = grads[node] = [None] * node.n_out
    lst[nr] = g if lst[nr] is None else lst[nr] + g


def _leaf_add(leaf_grads: dict, leaf: Tensor, g: Any) -> None:
    e = leaf_grads.get(id(leaf))
    if e is None:
        leaf_grads[id(leaf)] = [leaf, g, False]
    else:
        e[1] = e[1] + g
        e[2] = True  # a fresh array that we own


def _node_hooks(node: Node, g: Any, create_graph: bool) -> Any:
    multi = node.n_out > 1
    if multi:
        g = list(g)
    for nr, hooks in (node.pre_hooks or {}).items():
        if multi:
            if g[nr] is not None:
                g[nr] = _hook_call(hooks, g[nr], create_graph)
        else:
            g = _hook_call(hooks, g, create_graph)
    for nr, ref in (node.retain or {}).items():
        t = ref()
        gi = g[nr] if multi else g
        if t is None or gi is None:
            continue
        if create_graph:
            t.grad = gi if t.grad is None else t.grad + gi
        else:
            t.grad = wrap(
                backend.fresh_copy(gi) if t.grad is None else backend.as_array(t.grad.data + gi)
            )
    return g


def _run_rule(node: Node, g: Any, m: Any, create_graph: bool, retain_graph: bool) -> tuple:
    d = node.__dict__
    if node.freed:
        raise _freed_error(node)
    op = node.op
    if node.n_out > 1:
        xp = backend.common_module(*(gi.data if isinstance(gi, Tensor) else gi for gi in g))
        g = tuple(
            gi if gi is not None else _zeros(node.out_shape[i], node.out_dtype[i], create_graph, xp)
            for i, gi in enumerate(g)
        )
    if "saved_vc" in d or "out_vc" in d:
        _check_versions(node, d)
    if create_graph:
        saved = {}
        if "args" in d:
            saved["inputs"] = d["inputs"]
            d["inputs"] = d["args"]
        if "out" in d:
            saved["out"] = d["out"]
            d["out"] = _rematerialize(node, d["out"])
        try:
            res = op.backward(node, g, m)
        finally:
            d.update(saved)
    else:
        res = op.backward(node, g, m)
    if type(res) is not tuple:
        res = (res,)
    if not retain_graph and d:
        if "inputs" in d or "out" in d or _holds_buffers(d):
            d.clear()
            node.freed = True
    return res


_HOST_BUF = (np.ndarray, Tensor)


def _holds_buffers(d: dict) -> bool:
    """Whether a node kept arrays for its backward (what backward frees). Like PyTorch, a node
    that saved none (only shapes, dims, ...) stays runnable: a second backward through it works,
    and a freed-graph error names the first op that really lost a buffer."""
    if "_outs" in d and not d.get("_saved"):  # a Function that saved no tensors
        del d["_outs"]
    buf = _HOST_BUF if backend._cuda is None else _HOST_BUF + backend._cuda_types
    for v in d.values():
        t = type(v)
        if t is tuple or t is list:
            for x in v:
                if type(x) is not int and isinstance(x, buf):  # shapes: skip ints fast
                    return True
        elif t is np.ndarray or isinstance(v, buf):
            return True
    return False


def _rematerialize(node: Node, out: Any) -> Any:
    """The op's output as a Tensor whose grad_fn is ``node`` (for a differentiable backward)."""
    if type(out) is tuple:
        ts = []
        for i, o in enumerate(out):
            t = wrap(o, True)
            t.grad_fn = node
            t._out_nr = i
            ts.append(t)
        return tuple(ts)
    t = wrap(out, True)
    t.grad_fn = node
    return t


def _zeros(shape: tuple, dtype: np.dtype, as_tensor: bool, xp: Any = np) -> Any:
    z = xp.zeros(shape, dtype)
    return wrap(z) if as_tensor else z


def _finish_leaves(
    leaf_grads: dict,
    handed: set,
    create_graph: bool,
    inputs: Sequence[Tensor] | None,
    accumulate: bool,
    capture_leaves: dict,
    captured: list,
) -> list | None:
    only = None
    if accumulate and inputs is not None:
        only = {id(t) for t in inputs}
    for key, (leaf, g, owned) in leaf_grads.items():
        if leaf._hooks:
            g = _hook_call(leaf._hooks, g, create_graph)
            owned = False
        if not accumulate:
            i = capture_leaves.get(key)
            if i is not None:
                captured[i] = g
            continue
        if only is not None and key not in only:
            continue
        _accumulate(leaf, g, owned, handed, create_graph)
    return captured if not accumulate else None


def _accumulate(leaf: Tensor, g: Any, owned: bool, handed: set, create_graph: bool) -> None:
    """Add ``g`` into ``leaf.grad``; the stored array is always one that no one else holds."""
    if create_graph:
        if g.dtype != leaf.dtype:
            g = g.to(leaf.dtype)
        leaf.grad = g if leaf.grad is None else leaf.grad + g
        return
    if g.dtype != leaf.data.dtype:
        g = g.astype(leaf.data.dtype)
        owned = True
    cur = leaf.grad
    if cur is None:
        if type(g) is np.ndarray:
            if not owned and (g.base is not None or id(g) in handed or not g.flags.writeable):
                g = np.array(g)
        elif not backend.is_device_array(g) or (
            not owned and (g.base is not None or id(g) in handed)
        ):
            g = backend.fresh_copy(g)  # a NumPy scalar, or a device array someone else holds
        handed.add(id(g))
        leaf.grad = wrap(g)
    elif cur.requires_grad:
        leaf.grad = wrap(cur.data + g)
    else:
        cur.data += g
        cur._vc[0] += 1
