"""``gradcheck`` / ``gradgradcheck``: compare autograd's Jacobians with central differences.

Use float64 inputs: with eps = 1e-6 the finite-difference error is ~1e-10, far below the tolerance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, wrap
from .functional_api import grad as autograd_grad
from .grad_mode import enable_grad, no_grad


class GradcheckError(RuntimeError):
    """Raised when the analytical and numerical Jacobians disagree."""


def _tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn: Callable, inputs: tuple) -> tuple:
    return tuple(o for o in _tuple(fn(*inputs)) if isinstance(o, Tensor))


def _numerical(fn: Callable, inputs: tuple, x: Tensor, eps: float) -> list[np.ndarray]:
    """d(each output)/dx as arrays of shape (out.size, x.size), by central differences."""
    flat_idx = list(np.ndindex(x.shape))
    cols: list[list[np.ndarray]] = []
    with no_grad():
        for idx in flat_idx:
            orig = x.data[idx].copy()
            x.data[idx] = orig + eps
            plus = [_host64(o) for o in _outputs(fn, inputs)]
            x.data[idx] = orig - eps
            minus = [_host64(o) for o in _outputs(fn, inputs)]
            x.data[idx] = orig
            cols.append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    outs = _outputs(fn, inputs)
    return [
        np.stack([c[k] for c in cols], axis=1) if cols else np.zeros((o.data.size, 0))
        for k, o in enumerate(outs)
    ]


def _host64(t: Tensor) -> np.ndarray:
    """``t``'s values as a flat float64 host array (the Jacobians are compared on the host)."""
    return backend.to_host(t.data).astype(np.float64).ravel()


def _analytical(outs: tuple, diff_inputs: list) -> list[list[np.ndarray]]:
    """J[k][i]: d(output k)/d(input i) by one backward per output element."""
    J = []
    for o in outs:
        rows = [np.zeros((o.data.size, x.data.size)) for x in diff_inputs]
        if o.requires_grad:
            for j in range(o.data.size):
                go = backend.array_module(o.data).zeros(o.data.size, o.data.dtype)
                go[j] = 1
                gs = autograd_grad(
                    o, diff_inputs, wrap(go.reshape(o.shape)), retain_graph=True, allow_unused=True
                )
                for i, g in enumerate(gs):
                    if g is not None:
                        rows[i][j] = _host64(g)
        J.append(rows)
    return J


def gradcheck(
    func: Callable,
    inputs: Any,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    **_ignored: Any,
) -> bool:
    """True if the gradients of ``func`` at ``inputs`` match central differences."""
    inputs = _tuple(inputs)
    diff = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor with requires_grad=True")
    for x in diff:
        if x.data.dtype != np.float64:
            warnings.warn(
                f"gradcheck: an input has dtype {x.dtype}; use float64 for a meaningful check",
                stacklevel=2,
            )
    outs = _outputs(func, inputs)
    analytical = _analytical(outs, diff)
    for i, x in enumerate(diff):
        numerical = _numerical(func, inputs, x, eps)
        if len(numerical) != len(analytical):
            raise GradcheckError(
                f"the function returned {len(analytical)} tensor outputs with grad enabled but "
                f"{len(numerical)} under no_grad (as the finite differences evaluate it); it "
                "must return the same outputs in both modes"
            )
        for k, (num, ana) in enumerate(zip(numerical, (a[i] for a in analytical))):
            if not np.allclose(ana, num, rtol=rtol, atol=atol, equal_nan=False):
                if not raise_exception:
                    return False
                err = np.abs(ana - num)
                j = np.unravel_index(np.argmax(err), err.shape)
                raise GradcheckError(
                    f"Jacobian mismatch for output {k} with respect to input {i} "
                    f"(shape {tuple(x.shape)}): max abs difference {err.max():.3g} at "
                    f"[output element {j[0]}, input element {j[1]}]: analytical {ana[j]:.10g}, "
                    f"numerical {num[j]:.10g}\nnumerical:\n{np.array2string(num, threshold=60)}\n"
                    f"analytical:\n{np.array2string(ana, threshold=60)}"
                )
    return True


def gradgradcheck(
    func: Callable,
    inputs: Any,
    grad_outputs: Sequence[Tensor] | None = None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    seed: int = 0,
    **_ignored: Any,
) -> bool:
    """Check second derivatives: gradcheck of (inputs, v) -> vjp(func, inputs, v)."""
    inputs = _tuple(inputs)
    outs = _outputs(func, inputs)
    rng = np.random.default_rng(seed)
    if grad_outputs is None:
        grad_outputs = [
            wrap(
                backend.to_device(rng.standard_normal(o.shape).astype(o.data.dtype), o.device), True
            )
            for o in outs
        ]
    grad_outputs = list(grad_outputs)
    n = len(inputs)
    diff_pos = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]

    def first_order(*args: Any) -> tuple:
        # gradcheck evaluates this under no_grad for the finite differences: the vjp needs a
        # graph, so turn recording back on here (else every evaluation returns nothing)
        with enable_grad():
            return _first_order(*args)

    def _first_order(*args: Any) -> tuple:
        ins, gos = args[:n], args[n:]
        os_ = _outputs(func, ins)
        pairs = [(o, g) for o, g in zip(os_, gos) if o.requires_grad]
        if not pairs:
            return ()
        gs = autograd_grad(
            [o for o, _ in pairs],
            [ins[i] for i in diff_pos],
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
        return tuple(g for g in gs if g is not None)

    return gradcheck(
        first_order,
        tuple(inputs) + tuple(grad_outputs),
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
    )
