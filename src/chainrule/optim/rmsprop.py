"""RMSprop (Hinton's lecture 6e), centred and with momentum as options."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""For each parameter p with gradient g (PyTorch's algorithm):

    g = g + weight_decay * p
    s = alpha * s + (1 - alpha) * g^2
    a = alpha * a + (1 - alpha) * g;  d = sqrt(s - a^2) + eps   (centered)
                                       d = sqrt(s) + eps          (otherwise)
    b = momentum * b + g / d;  p = p - lr * b                     (momentum > 0)
    p = p - lr * g / d                                            (otherwise)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
        foreach: Any = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if momentum < 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if alpha < 0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        wd, mom, centered = group["weight_decay"], group["momentum"], group["centered"]
        for p, g, st in zip(params, grads, states):
            if not st:
                st["step"] = 0.0
                st["square_avg"] = np.zeros_like(p)
                if mom > 0:
                    st["momentum_buffer"] = np.zeros_like(p)
                if centered:
                    st["grad_avg"] = np.zeros_like(p)
            st["step"] = float(st["step"]) + 1
            if wd:
                g = g + wd * p
            s = st["square_avg"]
            s *= alpha
            s += (1 - alpha) * (g * g)
            if centered:
                a = st["grad_avg"]
                a += (g - a) * (1 - alpha)
                d = np.sqrt(s - a * a) + eps
            else:
                d = np.sqrt(s) + eps
            if mom > 0:
                b = st["momentum_buffer"]
                b *= mom
                b += g / d
                p -= lr * b
            else:
                p -= lr * (g / d)
