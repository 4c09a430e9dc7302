"""Adagrad (Duchi, Hazan & Singer 2011)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""For each parameter p with gradient g, at step t (PyTorch's algorithm):

    g = g + weight_decay * p
    lr_t = lr / (1 + (t - 1) * lr_decay)
    s = s + g^2
    p = p - lr_t * g / (sqrt(s) + eps)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        foreach: Any = None,
        differentiable: bool = False,
        fused: Any = None,
    ) -> None:
        if lr_decay < 0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if initial_accumulator_value < 0:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        if eps < 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            eps=eps,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        # as torch: the state starts at construction, from the constructor's value (a group's
        # own initial_accumulator_value is not used); groups added later start lazily, likewise
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._initial_state(p.data)

    def _initial_state(self, p: np.ndarray) -> dict:
        return {"step": 0.0, "sum": np.full_like(p, self.defaults["initial_accumulator_value"])}

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        lr, decay, wd, eps = group["lr"], group["lr_decay"], group["weight_decay"], group["eps"]
        for p, g, st in zip(params, grads, states):
            if not st:
                st.update(self._initial_state(p))
            st["step"] = t = float(st["step"]) + 1
            if wd:
                g = g + wd * p
            clr = lr / (1 + (t - 1) * decay)
            s = st["sum"]
            s += g * g
            p -= clr * (g / (np.sqrt(s) + eps))
