"""``detect_anomaly``: find the op where NaN or Inf first appeared.

Inside the context every op's output is checked. An op that makes a NaN out of finite inputs
raises at once, naming the op, where it was called and statistics of its inputs. An Inf (which
can be legitimate, e.g. a -inf attention mask) is remembered, and reported if a backward rule
later produces a non-finite gradient or if backward starts from a non-finite loss.
"""

from __future__ import annotations

import functools
import linecache
import os
import sys
from typing import Any

import numpy as np

from .. import dtypes
from ..tensor import Tensor
from .grad_mode import state


def _stats(a: Any) -> str:
    if not isinstance(a, np.ndarray):
        return repr(a)
    if not (a.dtype.kind == "c" or dtypes.is_floating(a.dtype)) or a.size == 0:
        return f"shape {a.shape} {a.dtype}"
    if a.dtype.kind == "V":  # bfloat16: its scalars do not take format specs
        a = a.astype(np.float32)
    fin = np.isfinite(a)
    n_nan = int(np.isnan(a).sum())
    n_inf = int((~fin).sum()) - n_nan
    if fin.any():
        v = a[fin]
        rng = f"min {v.min():.4g}, max {v.max():.4g}, mean {v.mean():.4g}"
    else:
        rng = "no finite values"
    return f"shape {a.shape} {a.dtype}: {rng}, {n_nan} NaN, {n_inf} Inf"


_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _caller() -> tuple | None:
    """(filename, lineno) of the innermost frame outside the chainrule package."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not os.path.abspath(fn).startswith(_PKG):
            return fn, f.f_lineno
        f = f.f_back
    return None


def _fmt(loc: tuple | None) -> str:
    if loc is None:
        return "unknown location"
    fn, ln = loc
    line = linecache.getline(fn, ln).strip()
    return f"{fn}:{ln} ({line})" if line else f"{fn}:{ln}"


def _where() -> str:
    return _fmt(_caller())


def _finite(a: Any) -> bool:
    if not isinstance(a, np.ndarray):
        return True
    d = a.dtype
    return not ((d.kind == "f" or dtypes.is_floating(d)) and not np.isfinite(a).all())


class detect_anomaly:  # noqa: N801 - PyTorch's name
    """Context manager (and decorator) that names the op where NaN/Inf first appeared."""

    _MAX_LOCS = 100_000  # forward call sites remembered for backward reports

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        self.first: str | None = None  # the first op (in forward order) to produce NaN/Inf
        self._locs: dict = {}  # node seq -> (file, line) of the forward call that recorded it
        self.current_backward: Any = (
            None  # the node whose backward rule is running (set by the engine)
        )

    def __enter__(self) -> detect_anomaly:
        self._prev = state.anomaly
        state.anomaly = self if self.check_nan else None
        return self

    def __exit__(self, *exc: object) -> None:
        state.anomaly = self._prev

    def __call__(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with detect_anomaly(self.check_nan):
                return fn(*a, **k)

        return wrapper

    # called by the engine ------------------------------------------------------------
    def _note(self, seq: int) -> None:
        if len(self._locs) >= self._MAX_LOCS:
            for k in list(self._locs)[: self._MAX_LOCS // 2]:
                del self._locs[k]
        self._locs[seq] = _caller()

    def note_node(self, node: Any) -> None:
        """Remember where ``node`` was recorded (for a backward report naming the forward call)."""
        seq = getattr(node, "seq", None)
        if seq is not None:
            self._note(seq)

    def check_forward(self, op: type, args: tuple, out: Any) -> None:
        outs = out if isinstance(out, tuple) else (out,)
        if all(_finite(o) for o in outs):
            return
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        if not all(
            _finite(a) and not (isinstance(a, float) and not np.isfinite(a)) for a in arrays
        ):
            return  # not the origin: a non-finite value came in
        name = getattr(op, "name", None) or op.__name__.lower()
        stats = "; ".join(f"input {i}: {_stats(a)}" for i, a in enumerate(arrays))
        what = (
            "NaN" if any(isinstance(o, np.ndarray) and np.isnan(o).any() for o in outs) else "Inf"
        )
        ctx_note = ""
        bw = self.current_backward
        if bw is not None:  # an op recorded by a create_graph backward rule
            loc = self._locs.get(getattr(bw, "seq", None))
            fwd = f", whose forward call is at {_fmt(loc)}" if loc is not None else ""
            ctx_note = f" (in the create_graph backward of `{bw.name()}`{fwd})"
        report = f"`{name}`{ctx_note} at {_where()} produced {what} from finite inputs ({stats})"
        if self.first is None:
            self.first = report
        if what == "NaN":
            raise RuntimeError(f"detect_anomaly: {report}")

    def check_backward(self, node: Any, grads: tuple) -> None:
        for i, g in enumerate(grads):
            a = g.data if isinstance(g, Tensor) else g
            if a is not None and not _finite(a):
                origin = (
                    f" The first op to produce a non-finite value in forward: {self.first}."
                    if self.first
                    else ""
                )
                loc = self._locs.get(getattr(node, "seq", None))
                fwd = f" (forward call at {_fmt(loc)})" if loc is not None else ""
                raise RuntimeError(
                    f"detect_anomaly: the backward of `{node.name()}`{fwd} returned non-finite "
                    f"values in its gradient for input {i} ({_stats(a)}).{origin}"
                )

    def check_root(self, t: Tensor) -> None:
        if not _finite(t.data):
            origin = f" It came from {self.first}." if self.first else ""
            raise RuntimeError(
                f"detect_anomaly: backward() started from a non-finite value ({_stats(t.data)}).{origin}"
            )


def set_detect_anomaly(mode: bool) -> None:
    state.anomaly = detect_anomaly() if mode else None


def is_anomaly_enabled() -> bool:
    return state.anomaly is not None
