"""Adam and AdamW (decoupled weight decay), with AMSGrad."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import kernels
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""For each parameter p with gradient g, at step t (PyTorch's algorithm):

    g = g + weight_decay * p                 (Adam; AdamW instead: p = p * (1 - lr * wd))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2
    v_max = max(v_max, v)                    (amsgrad)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)
    """

    decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: Any = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: Any = None,
    ) -> None:
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        wd, amsgrad = group["weight_decay"], group["amsgrad"]
        for p, g, st in zip(params, grads, states):
            if not st:
                st["step"] = 0.0
                st["exp_avg"] = np.zeros_like(p)
                st["exp_avg_sq"] = np.zeros_like(p)
                if amsgrad:
                    st["max_exp_avg_sq"] = np.zeros_like(p)
            st["step"] = t = float(st["step"]) + 1
            if type(p) is not np.ndarray:  # a GPU's: one fused kernel per parameter
                kernels.adam_step(
                    p, g, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq"), step=t,
                    lr=lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd,
                    decoupled=self.decoupled, amsgrad=amsgrad,
                )  # fmt: skip
                continue
            if wd:
                if self.decoupled:
                    p *= 1 - lr * wd
                else:
                    g = g + wd * p
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m += (g - m) * (1 - b1)
            v *= b2
            v += (1 - b2) * (g * g)
            bc1 = 1 - b1**t
            bc2_sqrt = math.sqrt(1 - b2**t)
            if amsgrad:
                vmax = st["max_exp_avg_sq"]
                np.maximum(vmax, v, out=vmax)
                denom = np.sqrt(vmax) / bc2_sqrt + eps
            else:
                denom = np.sqrt(v) / bc2_sqrt + eps
            p -= (lr / bc1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay``
    before the Adam step, instead of adding ``weight_decay * p`` to the gradient."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kw)
