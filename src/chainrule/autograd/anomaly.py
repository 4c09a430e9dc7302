"""``detect_anomaly``: find the op where NaN or Inf first appeared.

Inside the context every op's output is checked. An op that makes a NaN out of finite inputs
raises at once, naming the op, where it was called and statistics of its inputs. An Inf (which
can be legitimate, e.g. a -inf attention mask) is remembered, and reported if a backward rule
later produces a non-finite gradient or if backward starts from a non-finite loss.
"""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np

from ..tensor import Tensor
from .grad_mode import state


def _stats(a: Any) -> str:
    if not isinstance(a, np.ndarray):
        return repr(a)
    if a.dtype.kind not in "fc" or a.size == 0:
        return f"shape {a.shape} {a.dtype}"
    fin = np.isfinite(a)
    n_nan = int(np.isnan(a).sum())
    n_inf = int((~fin).sum()) - n_nan
    if fin.any():
        v = a[fin]
        rng = f"min {v.min():.4g}, max {v.max():.4g}, mean {v.mean():.4g}"
    else:
        rng = "no finite values"
    return f"shape {a.shape} {a.dtype}: {rng}, {n_nan} NaN, {n_inf} Inf"


def _where() -> str:
    for fr in reversed(traceback.extract_stack()[:-3]):
        if "/chainrule/" not in fr.filename.replace("\\", "/"):
            return f"{fr.filename}:{fr.lineno} ({fr.line})"
    return "unknown location"


def _finite(a: Any) -> bool:
    return not (isinstance(a, np.ndarray) and a.dtype.kind == "f" and not np.isfinite(a).all())


class detect_anomaly:  # noqa: N801 - PyTorch's name
    """Context manager (and decorator) that names the op where NaN/Inf first appeared."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        self.first: str | None = None  # the first op (in forward order) to produce NaN/Inf

    def __enter__(self) -> detect_anomaly:
        self._prev = state.anomaly
        state.anomaly = self if self.check_nan else None
        return self

    def __exit__(self, *exc: object) -> None:
        state.anomaly = self._prev

    def __call__(self, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)

        return wrapper

    # called by the engine ------------------------------------------------------------
    def check_forward(self, op: type, args: tuple, out: Any) -> None:
        outs = out if isinstance(out, tuple) else (out,)
        if all(_finite(o) for o in outs):
            return
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        if not all(_finite(a) and not (isinstance(a, float) and not np.isfinite(a)) for a in arrays):
            return  # not the origin: a non-finite value came in
        name = getattr(op, "name", None) or op.__name__.lower()
        stats = "; ".join(f"input {i}: {_stats(a)}" for i, a in enumerate(arrays))
        what = "NaN" if any(isinstance(o, np.ndarray) and np.isnan(o).any() for o in outs) else "Inf"
        report = f"`{name}` at {_where()} produced {what} from finite inputs ({stats})"
        if self.first is None:
            self.first = report
        if what == "NaN":
            raise RuntimeError(f"detect_anomaly: {report}")

    def check_backward(self, node: Any, grads: tuple) -> None:
        for i, g in enumerate(grads):
            a = g.data if isinstance(g, Tensor) else g
            if a is not None and not _finite(a):
                origin = f" The first op to produce a non-finite value in forward: {self.first}." if self.first else ""
                raise RuntimeError(
                    f"detect_anomaly: the backward of `{node.name()}` returned non-finite values "
                    f"in its gradient for input {i} ({_stats(a)}).{origin}"
                )

    def check_root(self, t: Tensor) -> None:
        if not _finite(t.data):
            origin = f" It came from {self.first}." if self.first else ""
            raise RuntimeError(f"detect_anomaly: backward() started from a non-finite value ({_stats(t.data)}).{origin}")


def set_detect_anomaly(mode: bool) -> None:
    state.anomaly = detect_anomaly() if mode else None


def is_anomaly_enabled() -> bool:
    return state.anomaly is not None
