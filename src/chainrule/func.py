"""Functional transforms (``torch.func`` style): ``grad``, ``value_and_grad``, ``vjp``,
``jacobian`` (= ``jacrev``) and ``hessian``.

Each takes a function of Tensors and returns a new function. They compose: ``hessian(f)`` is
``jacobian(grad(f))``; an inner transform records its backward whenever its result can depend on
a tensor that requires grad (an input watched by an outer transform, or one the function closes
over), so derivatives of derivatives come out right. ``jacobian`` accepts a tuple of outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import backend
from .autograd.functional_api import grad as _grad
from .autograd.grad_mode import enable_grad
from .tensor import Tensor, wrap


def _watch(args: tuple, argnums: Any) -> tuple[list, tuple, bool]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    args = list(args)
    outer = False
    for i in nums:
        x = args[i]
        if not isinstance(x, Tensor):
            raise TypeError(f"argument {i} must be a Tensor to differentiate with respect to it")
        if x.requires_grad:
            outer = True
        else:
            args[i] = x.detach().requires_grad_(True)
    return args, nums, outer


def _reaches_outside(outs: Any, watched: list) -> bool:
    """Whether the graph of ``outs`` reaches a tensor that requires grad other than ``watched``.

    Such a tensor (closed over by the function, or watched by an enclosing transform) needs the
    gradient to be differentiable, so the backward must record a graph (``create_graph``).
    """
    from .autograd.engine import Node  # noqa: PLC0415

    ids = {id(w) for w in watched}
    stack, seen = [], set()
    for o in outs:
        if not isinstance(o, Tensor) or not o.requires_grad:
            continue
        if o.grad_fn is None:
            if id(o) not in ids:
                return True
        else:
            stack.append(o.grad_fn)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        for p in n.parents:
            if p is None:
                continue
            if type(p) is tuple:
                p = p[0]
            if type(p) is Node:
                stack.append(p)
            elif id(p) not in ids:
                return True
    return False


def _split_aux(res: Any, who: str) -> tuple:
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        got = f"a {type(res).__name__}" + (
            f" of length {len(res)}" if isinstance(res, (tuple, list)) else ""
        )
        raise RuntimeError(
            f"{who}: with has_aux=True the function must return a pair (output, aux), got {got}"
        )
    return res[0], res[1]


def _scalar(out: Any, who: str) -> Tensor:
    if not isinstance(out, Tensor) or out.data.size != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise RuntimeError(f"{who}: the function must return a one-element Tensor, got {shape}")
    return out


def value_and_grad(func: Callable, argnums: Any = 0, has_aux: bool = False) -> Callable:
    """``f -> (lambda *args: (f(*args), df/d args[argnums]))`` for scalar-valued ``f``."""

    def wrapper(*args: Any, **kwargs: Any) -> tuple:
        wargs, nums, outer = _watch(args, argnums)
        with enable_grad():
            res = func(*wargs, **kwargs)
            out, aux = _split_aux(res, "grad") if has_aux else (res, None)
            out = _scalar(out, "grad")
            ins = [wargs[i] for i in nums]
            outer = outer or _reaches_outside([out], ins)
            if not out.requires_grad:
                gs = tuple(_zeros_like(x) for x in ins)
            else:
                gs = _grad(out, ins, create_graph=outer, materialize_grads=True)
        g = gs[0] if isinstance(argnums, int) else gs
        value = out if outer else out.detach()
        return ((value, aux), g) if has_aux else (value, g)

    return wrapper


def grad(func: Callable, argnums: Any = 0, has_aux: bool = False) -> Callable:
    """``f -> df/d args[argnums]`` for scalar-valued ``f`` (a tuple for several argnums)."""
    vg = value_and_grad(func, argnums, has_aux)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        (value, g) = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapper


def vjp(func: Callable, *primals: Tensor, has_aux: bool = False) -> tuple:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(v)`` gives v^T J for each primal."""
    wargs, nums, outer = _watch(primals, tuple(range(len(primals))))
    with enable_grad():
        res = func(*wargs)
    out, aux = _split_aux(res, "vjp") if has_aux else (res, None)
    outer = outer or _reaches_outside(out if isinstance(out, (tuple, list)) else [out], wargs)

    def vjp_fn(*cotangents: Any) -> tuple:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        cts = cotangents if len(cotangents) == len(outs) else cotangents[0]
        cts = cts if isinstance(cts, (tuple, list)) else (cts,)
        pairs = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
        if not pairs:
            return tuple(_zeros_like(x) for x in wargs)
        with enable_grad():
            return _grad(
                [o for o, _ in pairs],
                list(wargs),
                [c for _, c in pairs],
                retain_graph=True,
                create_graph=outer,
                materialize_grads=True,
            )

    value = out if outer else (out.detach() if isinstance(out, Tensor) else out)
    return (value, vjp_fn, aux) if has_aux else (value, vjp_fn)


def jacobian(func: Callable, argnums: Any = 0) -> Callable:
    """``f -> J`` with ``J[out_index + in_index] = d out / d in`` (reverse mode, one pass per
    output element)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wargs, nums, outer = _watch(args, argnums)
        with enable_grad():
            out = func(*wargs, **kwargs)
            ins = [wargs[i] for i in nums]
            single = not isinstance(out, (tuple, list))
            outs = (out,) if single else tuple(out)
            for o in outs:
                if not isinstance(o, Tensor):
                    raise TypeError(
                        f"jacobian: the function must return a Tensor or a tuple of Tensors, "
                        f"got {type(o).__name__}"
                    )
            outer = outer or _reaches_outside(outs, ins)
            per_out = [_jac_rows(o, ins, outer) for o in outs]
        from .ops.movement import stack  # noqa: PLC0415

        results = []
        for o, jacs in zip(outs, per_out):
            res = []
            for x, rows in zip(ins, jacs):
                if rows:
                    J = stack(rows, 0)
                else:
                    J = wrap(backend.array_module(x.data).zeros((0, x.data.size), x.data.dtype))
                res.append(J.reshape(tuple(o.shape) + tuple(x.shape)))
            results.append(res[0] if isinstance(argnums, int) else tuple(res))
        return results[0] if single else tuple(results)

    return wrapper


def _jac_rows(out: Tensor, ins: list, outer: bool) -> list:
    """Per input: the rows d out.flat[k] / d input (flattened), one backward pass each."""
    jacs: list = [[] for _ in ins]
    flat_n = out.data.size
    for k in range(flat_n):
        onehot = backend.array_module(out.data).zeros(flat_n, out.data.dtype)
        onehot[k] = 1
        if out.requires_grad:
            rows = _grad(
                out,
                ins,
                wrap(onehot.reshape(out.shape)),
                retain_graph=True,
                create_graph=outer,
                materialize_grads=True,
            )
        else:
            rows = [_zeros_like(x) for x in ins]
        for j, r in enumerate(rows):
            jacs[j].append(r.reshape(-1))
    return jacs


jacrev = jacobian


def _zeros_like(x: Tensor) -> Tensor:
    """Zeros of ``x``'s shape and dtype, on its device (a gradient that is all zeros)."""
    return wrap(backend.array_module(x.data).zeros(x.shape, x.data.dtype))


def hessian(func: Callable, argnums: Any = 0) -> Callable:
    """``f -> H`` with ``H[i + j] = d^2 f / d x_i d x_j`` for scalar-valued ``f``."""
    return jacobian(grad(func, argnums), argnums)
