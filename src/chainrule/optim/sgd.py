"""Stochastic gradient descent, with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import backend, kernels
from . import optimizer as _optimizer
from .optimizer import Optimizer, in_chunks


class SGD(Optimizer):
    r"""For each parameter p with gradient g (PyTorch's algorithm):

        g = g + weight_decay * p
        b = g                                   (first step)
        b = momentum * b + (1 - dampening) * g  (later steps)
        g = g + momentum * b  if nesterov else  b
        p = p - lr * g

    With ``momentum=0.9`` this is the 1986 rule Δw(t) = -ε ∂E/∂w + α Δw(t-1) with ε = lr
    (PyTorch folds ε into the update rather than the buffer; with a constant lr they agree).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: Any = None,
        differentiable: bool = False,
        fused: Any = None,
    ) -> None:
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, mom, damp = group["lr"], group["momentum"], group["dampening"]
        wd, nesterov = group["weight_decay"], group["nesterov"]
        for p, g, st in zip(params, grads, states):
            if type(p) is not np.ndarray:  # a GPU's: one fused kernel per parameter
                first = mom and st.get("momentum_buffer") is None
                if first:
                    st["momentum_buffer"] = backend.array_module(p).empty_like(p)
                kernels.sgd_step(
                    p, g, st.get("momentum_buffer"), lr=lr, momentum=mom, dampening=damp,
                    weight_decay=wd, nesterov=nesterov, first=bool(first),
                )  # fmt: skip
                continue
            buf = None
            if mom:
                buf = st.get("momentum_buffer")
                if buf is None:  # first step: the buffer starts as the (decayed) gradient
                    g0 = g + wd * p if wd else g
                    buf = st["momentum_buffer"] = g0.copy()  # on g's device
                    p -= lr * (g0 + mom * buf if nesterov else buf)
                    continue
            if p.size < _optimizer.CHUNK_MIN or type(p) is not np.ndarray:  # small, or a GPU's
                _sgd_step(p, g, buf, None, lr, mom, damp, wd, nesterov)
            else:  # big: threads over chunks, with a reused scratch (no page faults per step)
                out = self._scratch(p)
                in_chunks(
                    _sgd_step, p, g, buf, out, lr=lr, mom=mom, damp=damp, wd=wd, nesterov=nesterov
                )


def _sgd_step(
    p: np.ndarray,
    g: np.ndarray,
    buf: np.ndarray | None,
    out: np.ndarray | None,
    lr: float,
    mom: float,
    damp: float,
    wd: float,
    nesterov: bool,
) -> None:
    """The update on (a chunk of) one parameter, in place."""
    if wd:
        g = g + wd * p
    if buf is not None:
        buf *= mom
        if damp:
            buf += (1 - damp) * g
        else:
            buf += g
        g = g + mom * buf if nesterov else buf
    if out is None and wd and g is not buf:
        out = g  # a temporary of our own
    p -= np.multiply(g, lr, out=out)
