"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``.

Subclasses implement ``_update(group, params, grads, states)``, which works on raw arrays in place
(``out=``), so a step costs a few NumPy calls per parameter and no graph is recorded. The same
code runs on GPU parameters (NumPy's functions dispatch to CuPy); state buffers are made with
``np.zeros_like(p)`` and friends so they live on the parameter's device.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import backend
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, wrap


class Optimizer:
    """Base class. ``params``: an iterable of Tensors, or of dicts (parameter groups) each with a
    ``'params'`` entry and per-group overrides of the defaults."""

    def __init__(self, params: Iterable[Any], defaults: dict) -> None:
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Tensors or dicts, got a "
                "single Tensor (wrap it in a list)"
            )
        groups = list(params)
        if not groups:
            raise ValueError(
                f"{type(self).__name__} got an empty parameter list: nothing to optimise"
            )
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)
        self._step_hooks: list = []

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, group: dict) -> None:
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: parameter {i} is a {type(p).__name__}, not a Tensor"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{type(self).__name__} can't optimize a non-leaf Tensor (parameter {i}, shape "
                    f"{tuple(p.shape)}): optimise the leaf it was computed from, or .detach() it "
                    "and set requires_grad=True"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        lr = group.get("lr")
        if lr is not None and not isinstance(lr, Tensor) and lr < 0:
            raise ValueError(f"Invalid learning rate: {lr} (it must be >= 0)")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate hyper-parameters (subclasses)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    @no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            from ..autograd.grad_mode import enable_grad  # noqa: PLC0415

            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if group.get("maximize"):
                    g = -g
                params.append(p.data)
                grads.append(g)
                st = self.state.get(p)
                if st is None:
                    st = self.state[p] = {}
                states.append(st)
                p._vc[0] += 1
            if params:
                if isinstance(group.get("lr"), Tensor):  # a tensor learning rate, as PyTorch allows
                    group = {**group, "lr": float(group["lr"].item())}
                self._update(group, params, grads, states)
        return loss

    def _update(self, group: dict, params: list, grads: list, states: list) -> None:
        raise NotImplementedError

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A reusable work array shaped like ``like`` (one buffer per dtype, as large as the
        largest parameter seen; not part of the optimiser's state)."""
        cache = self.__dict__.setdefault("_scratch_bufs", {})
        buf = cache.get(like.dtype)
        if buf is None or buf.size < like.size:
            buf = cache[like.dtype] = np.empty(like.size, like.dtype)
        return buf[: like.size].reshape(like.shape)

    # ------------------------------------------------------------------ (de)serialisation
    def state_dict(self) -> dict:
        """``{'state': {index: {name: Tensor or number}}, 'param_groups': [...]}`` as PyTorch:
        parameters are referred to by their position across groups."""
        index = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if self.state.get(p):  # as torch: no entry for a parameter without state
                    state[index[id(p)]] = {
                        k: (wrap(v.copy()) if backend.is_array(v) else v)
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        by_index = {}
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size of "
                    f"the optimizer's group ({len(theirs['params'])} vs {len(mine['params'])})"
                )
            for p, i in zip(mine["params"], theirs["params"]):
                by_index[i] = p
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = v
        self.state = {}
        for i, st in state_dict["state"].items():
            p = by_index[int(i)]
            new = {}
            for k, v in st.items():
                if isinstance(v, Tensor):
                    v = v.data
                if backend.is_array(v):
                    # as torch: state arrays go to the parameter's device (a copy either way);
                    # those shaped like it take its dtype too
                    a = backend.to_device(v, p.device)
                    if a.ndim and a.shape == p.shape:
                        v = a.astype(p.data.dtype, copy=a is v)
                    else:
                        v = a.copy() if a is v else a
                new[k] = v
            self.state[p] = new


# Element-wise updates of big parameters are memory-bound and NumPy runs each ufunc on one core;
# NumPy releases the GIL, so splitting a big parameter into chunks updated by a small thread pool
# uses every core (an update of a 4096x4096 float32 weight: 15 ms -> 7 ms on 2 cores). The chunks
# are disjoint and the arithmetic per element is unchanged, so results are bitwise the same.
CHUNK_MIN = 1 << 20  # elements: below this, one call is cheaper than a thread hand-off
_pool: ThreadPoolExecutor | None = None


_THREADS = min(os.cpu_count() or 1, 8)  # os.cpu_count() costs microseconds: ask once


def in_chunks(fn: Any, *arrays: np.ndarray | None, **kw: Any) -> None:
    """Run ``fn(*arrays, **kw)``, an in-place element-wise update, on slices of the flattened
    arrays in parallel when they are big (all C-contiguous host arrays of one size); else in one
    call (always for GPU arrays: the device parallelises, host threads would only serialise)."""
    global _pool
    n = _THREADS
    first = arrays[0]
    if (
        type(first) is not np.ndarray
        or first.size < CHUNK_MIN
        or n < 2
        or any(a is not None and (a.size != first.size or not a.flags.c_contiguous) for a in arrays)
    ):
        fn(*arrays, **kw)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(n, thread_name_prefix="chainrule-optim")
    flat = [a.reshape(-1) if a is not None else None for a in arrays]
    bounds = np.linspace(0, first.size, n + 1).astype(int)
    jobs = [
        _pool.submit(fn, *[f[lo:hi] if f is not None else None for f in flat], **kw)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    for j in jobs:
        j.result()
