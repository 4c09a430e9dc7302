"""``backward`` and ``grad``: the user-facing entry points to the engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, wrap
from .backward_pass import run_backward
from .errors import _no_path_error


def _as_list(x: Any) -> list:
    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _root_grads(outputs: list, grad_outputs: Any, create_graph: bool, who: str) -> list:
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    else:
        grad_outputs = (
            _as_list(grad_outputs) if not isinstance(grad_outputs, Tensor) else [grad_outputs]
        )
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"{who}: got {len(outputs)} outputs but {len(grad_outputs)} gradients")
    out = []
    for t, g in zip(outputs, grad_outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{who}: outputs must be Tensors, got {type(t).__name__}")
        if not t.requires_grad:
            raise _no_path_error(t)
        if g is None:
            if t.data.size != 1:
                kw = "grad_outputs=" if who == "grad()" else "gradient="
                raise RuntimeError(
                    f"{who}: grad can be implicitly created only for scalar outputs, but this "
                    f"output has shape {tuple(t.shape)}. Pass {kw} (a tensor of that shape, "
                    "e.g. ones_like(y)) or reduce it to a scalar first (y.sum(), y.mean())."
                )
            g = backend.array_module(t.data).ones(t.shape, t.data.dtype)
            g = wrap(g) if create_graph else g
        else:
            ga = g.data if isinstance(g, Tensor) else backend.asarray(g, t.data.dtype, t.data)
            if backend.array_module(ga) is not backend.array_module(t.data):
                raise RuntimeError(
                    f"{who}: the gradient is on {backend.device_of(ga)} but the output is on "
                    f"{backend.device_of(t.data)}; they must be on the same device"
                )
            if ga.shape != t.shape:
                raise RuntimeError(
                    f"{who}: the gradient has shape {tuple(ga.shape)} but the output has shape "
                    f"{tuple(t.shape)}; they must match"
                )
            if create_graph:
                g = g if isinstance(g, Tensor) else wrap(ga)
            else:
                g = ga
        out.append(g)
    return out


def backward(
    tensors: Any,
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Any = None,
) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the leaves of their graph."""
    if (
        grad_tensors is None
        and inputs is None
        and not create_graph
        and type(tensors) is Tensor
        and tensors.requires_grad
        and tensors.data.size == 1
    ):  # the common case, loss.backward(), without the general validation
        d = tensors.data
        g = (np if type(d) is np.ndarray else backend.array_module(d)).ones(d.shape, d.dtype)
        run_backward([tensors], [g], retain_graph, False, None, True)
        return
    outs = _as_list(tensors)
    grads = _root_grads(outs, grad_tensors, create_graph, "backward()")
    ins = _as_list(inputs) if inputs is not None else None
    run_backward(outs, grads, retain_graph, create_graph, inputs=ins, accumulate=True)


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple:
    """Gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated.

    ``create_graph=True`` records the backward pass, so the result can be differentiated again.
    """
    outs = _as_list(outputs)
    single = isinstance(inputs, Tensor)
    ins = [inputs] if single else list(inputs)
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"grad(): input {i} does not require grad, so it has no gradient")
    grads = _root_grads(outs, grad_outputs, create_graph, "grad()")
    res = run_backward(outs, grads, retain_graph, create_graph, inputs=ins, accumulate=False)
    final = []
    for i, (t, g) in enumerate(zip(ins, res)):
        if g is None:
            if materialize_grads:
                final.append(wrap(backend.array_module(t.data).zeros(t.shape, t.data.dtype)))
                continue
            if not allow_unused:
                raise RuntimeError(
                    f"grad(): input {i} (shape {tuple(t.shape)}) was not used to compute the "
                    "outputs, so it has no gradient. Pass allow_unused=True to get None for it."
                )
            final.append(None)
        elif isinstance(g, Tensor):
            final.append(g)
        else:
            if g.dtype != t.data.dtype:
                g = g.astype(t.data.dtype)
            fresh = g.base is None and backend.writeable(g)
            final.append(wrap(g if fresh else backend.fresh_copy(g)))
    return tuple(final)
