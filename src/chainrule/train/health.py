"""What backpropagation is doing inside a network while it trains: a gradient health report.
(The guard against training loops that keep computation graphs alive is in ``leaks.py``.)

``GradientHealth(out_dir)`` is a trainer callback. Per layer (every module that owns parameters)
and per epoch it records

- ``grad_norm``: the L2 norm of the layer's gradient, averaged over the epoch's steps
  (``grad_norm_max``: the largest);
- ``weight_norm``: the L2 norm of its parameters at the end of the epoch;
- ``update_ratio``: ||parameters after a step - before|| / ||before||, averaged over the steps
  (around 1e-3 is the usual rule of thumb; far below: the learning rate is too small, near 1:
  far too large);
- ``dead_relu``: the fraction of the ReLU units after the layer whose output was 0 for every
  sample of every batch of the epoch (a unit is a feature of a (N, F) output, a channel of a
  (N, C, ...) one);
- ``saturated``: the fraction of the sigmoid/tanh outputs after the layer that were within
  ``saturation_eps`` of an asymptote (sigmoid: 0 or 1, tanh: -1 or 1), where the gradient is
  almost 0.

Activations are seen through forward hooks on ``nn.ReLU`` / ``nn.Sigmoid`` / ``nn.Tanh`` modules
and on the functional forms (``F.relu(h)``, ``h.relu()``, ``sigmoid``, ``tanh``: the forward of
those ops is wrapped while the callback is on), during the training steps only; each is attributed to the layer whose output it is applied to (the
activation gets a row of its own when its input is not a layer's output). It writes
``health.csv`` (one row per layer and epoch, appended at each epoch's end), ``health.png`` (one
panel per quantity, one line per layer; at the end of training) and ``health.txt`` (the
warnings). Warnings name the layer and what to try, once per layer and problem:

- vanishing gradients: ``grad_norm < vanish * weight_norm`` (default 1e-7);
- exploding gradients: a non-finite gradient, or ``grad_norm > explode * max(weight_norm, 1)``
  (default 1e3);
- dead ReLUs: ``dead_relu >= dead`` (default 0.5); saturated units: ``saturated >= saturated``
  (default 0.5).
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend, dtypes, io
from ..tensor import Tensor
from .callbacks import Callback
from .leaks import _show, _user_site

__all__ = ["GradientHealth", "HealthWarning"]


class HealthWarning(UserWarning):
    """A layer's gradients vanish or explode, or its activations are dead or saturated."""


# ============================================================================ gradient health

_KINDS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
# GradientHealth callbacks watching functional activations: while this is not empty, the
# forward of the Relu / Sigmoid / Tanh ops is wrapped (the originals are in _ACT_ORIG)
_act_watchers: list = []
_ACT_ORIG: dict = {}


def _watch_activations(h: GradientHealth) -> None:
    if h in _act_watchers:
        return
    _act_watchers.append(h)
    if len(_act_watchers) == 1:
        from ..ops import unary as U  # noqa: PLC0415

        for cls, kind in ((U.Relu, "relu"), (U.Sigmoid, "sigmoid"), (U.Tanh, "tanh")):
            orig = cls.__dict__["forward"]
            _ACT_ORIG[cls] = orig
            cls.forward = _watched_forward(orig, kind)


def _unwatch_activations(h: GradientHealth) -> None:
    if h in _act_watchers:
        _act_watchers.remove(h)
    if not _act_watchers:
        for cls, orig in _ACT_ORIG.items():
            cls.forward = orig
        _ACT_ORIG.clear()


def _watched_forward(orig: Callable, kind: str) -> Callable:
    def forward(ctx: Any, x: Any, *a: Any, **k: Any) -> Any:
        out = orig(ctx, x, *a, **k)
        for h in _act_watchers:
            h._functional_out(kind, x, out)
        return out

    return forward


_CLASS = {v: k for k, v in _KINDS.items()}
_COLUMNS = [
    "epoch", "layer", "type", "activation", "grad_norm", "grad_norm_max", "weight_norm", "update_ratio",
    "dead_relu", "saturated",
]  # fmt: skip
_PANELS = [
    ("grad_norm", "gradient norm (mean per step)", True),
    ("weight_norm", "weight norm", True),
    ("update_ratio", "update / weight ratio", True),
    ("grad_weight", "gradient / weight norm", True),
    ("dead_relu", "dead ReLU fraction", False),
    ("saturated", "saturated sigmoid/tanh fraction", False),
]


def _unit_axes(a: np.ndarray) -> tuple:
    """The axes to reduce over so that one value per unit is left (features, or channels)."""
    if a.ndim <= 1:
        return ()
    return (0, *range(2, a.ndim))


class _ActStats:
    __slots__ = ("kind", "alive", "sat", "count")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.alive: np.ndarray | None = None
        self.sat = 0
        self.count = 0

    def add(self, out: np.ndarray, eps: float) -> None:
        if out.size == 0 or not dtypes.is_floating(out.dtype):
            return
        if self.kind == "relu":
            ax = _unit_axes(out)
            pos = (out > 0).any(axis=ax) if ax else out > 0
            if self.alive is None or self.alive.shape != pos.shape:
                self.alive = pos.copy()
            else:
                self.alive |= pos
        else:
            lo, hi = (0.0, 1.0) if self.kind == "sigmoid" else (-1.0, 1.0)
            # a 0-d device array on a GPU: summed there, read once by value()
            self.sat = self.sat + np.count_nonzero((out <= lo + eps) | (out >= hi - eps))
        self.count += out.size

    def value(self) -> float | None:
        if not self.count:
            return None
        if self.kind == "relu":
            return 1.0 - float(self.alive.mean()) if self.alive is not None else None
        return int(self.sat) / self.count


class GradientHealth(Callback):
    """Per layer and epoch: gradient norm, weight norm, update/weight ratio, dead ReLUs and
    saturated sigmoid/tanh units; warnings that name the layer (see the module docstring).

    ``out_dir``: where ``health.csv``, ``health.png`` and ``health.txt`` go (None: nowhere; the
    values are in ``rows`` and the warnings in ``warnings`` either way). ``on_warning(message)``
    replaces ``warnings.warn`` (the CLI prints a line). ``plot``: write ``health.png`` at the end.
    ``functional``: also watch ``F.relu`` / ``sigmoid`` / ``tanh`` outside activation modules."""

    def __init__(
        self,
        out_dir: str | os.PathLike | None = None,
        vanish: float = 1e-7,
        explode: float = 1e3,
        dead: float = 0.5,
        saturated: float = 0.5,
        saturation_eps: float = 0.01,
        functional: bool = True,
        plot: bool = True,
        on_warning: Callable[[str], Any] | None = None,
    ) -> None:
        self.out_dir = os.fspath(out_dir) if out_dir is not None else None
        self.vanish, self.explode = vanish, explode
        self.dead, self.saturated, self.saturation_eps = dead, saturated, saturation_eps
        self.functional, self.plot = functional, plot
        self.on_warning = on_warning
        self.rows: list[dict] = []
        self.warnings: list[str] = []
        self._warned: set = set()
        self._handles: list = []
        self._outs: dict = {}
        self._layers: list = []
        self._active = False
        self._csv_ready = False

    # ------------------------------------------------------------------ paths
    def _path(self, name: str) -> str | None:
        return os.path.join(self.out_dir, name) if self.out_dir is not None else None

    csv_path = property(lambda self: self._path("health.csv"))
    png_path = property(lambda self: self._path("health.png"))
    txt_path = property(lambda self: self._path("health.txt"))

    # ------------------------------------------------------------------ set-up and tear-down
    def on_train_begin(self, logs: dict | None = None) -> None:
        from ..nn.module import Module  # noqa: PLC0415

        model = self.model
        self._teardown()
        self._warned, self.warnings = set(), []
        self._layers = []
        for name, m in model.named_modules():
            params = [p for p in m._parameters.values() if p is not None]
            if params:
                self._layers.append((name or type(model).__name__, type(m).__name__, m, params))
        self._acc: dict = {}
        self._act: dict = {}
        self._outs: dict = {}  # id(output array) -> (layer name, the array: keeps the id unique)
        self._depth = 0
        self._csv_ready = False
        for name, _, m, _ in self._layers:
            self._handles.append(m.register_forward_hook(self._layer_hook(name)))
        for name, m in model.named_modules():
            kind = _KINDS.get(type(m).__name__)
            if kind is not None and isinstance(m, Module):
                self._handles.append(m.register_forward_pre_hook(self._enter_act))
                self._handles.append(m.register_forward_hook(self._act_hook(name, kind)))
        if self.functional:
            _watch_activations(self)
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)

    def _teardown(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        _unwatch_activations(self)
        self._active = False
        self._outs = {}

    def on_train_end(self, logs: dict | None = None) -> None:
        self._teardown()
        if self.plot and self.png_path is not None and self.rows:
            try:
                self.plot_to(self.png_path)
            except ImportError as e:
                self._emit(f"no health.png ({e})", key=("plot",))

    on_train_interrupted = on_train_end

    # ------------------------------------------------------------------ hooks
    def _layer_hook(self, name: str) -> Callable:
        def hook(module: Any, args: tuple, out: Any) -> None:
            if self._active and isinstance(out, Tensor):
                if len(self._outs) > 4 * len(self._layers) + 64:  # a step that never ended
                    self._outs.clear()
                self._outs[id(out.data)] = (name, out.data)

        return hook

    def _enter_act(self, module: Any, args: tuple) -> None:
        self._depth += 1

    def _act_hook(self, name: str, kind: str) -> Callable:
        def hook(module: Any, args: tuple, out: Any) -> None:
            self._depth = max(0, self._depth - 1)
            if self._active and isinstance(out, Tensor) and args and isinstance(args[0], Tensor):
                self._note_act(kind, args[0].data, out.data, name)

        return hook

    def _functional_out(self, kind: str, x: Any, out: Any) -> None:
        if self._active and not self._depth:
            self._note_act(kind, x, out, None)

    def _note_act(self, kind: str, x: Any, out: Any, module_name: str | None) -> None:
        src = self._outs.get(id(x))
        if src is not None and src[1] is x:
            key = src[0]
        elif module_name is not None:
            key = module_name
        else:
            key = f"{kind} at {_show(_user_site(3))}"
        st = self._act.get((key, kind))
        if st is None:
            st = self._act[(key, kind)] = _ActStats(kind)
        st.add(backend.as_array(out), self.saturation_eps)

    # ------------------------------------------------------------------ per step
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._csv_ready:
            self._prepare_csv(epoch)
        self._acc = {name: [0.0, 0.0, 0, 0.0, 0, True] for name, *_ in self._layers}
        self._act = {}

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._before = [[p.data.copy() for p in params] for *_, params in self._layers]
        self._outs = {}
        self._depth = 0
        self._active = True

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._active = False
        self._outs = {}
        for (name, _, _, params), before in zip(self._layers, self._before):
            a = self._acc[name]
            g2 = 0.0
            has = False
            for p in params:
                if p.grad is not None:
                    g = p.grad.data
                    g2 += float(np.vdot(g, g).real) if g.size else 0.0
                    has = True
            if has:
                gn = math.sqrt(g2) if math.isfinite(g2) else math.inf
                a[0] += gn
                a[1] = max(a[1], gn)
                a[2] += 1
                a[5] = a[5] and math.isfinite(g2)
            d2 = w2 = 0.0
            for p, b in zip(params, before):
                if p.data.shape == b.shape:
                    d = p.data - b
                    d2 += float(np.vdot(d, d).real)
                    w2 += float(np.vdot(b, b).real)
            if w2 > 0:
                a[3] += math.sqrt(d2 / w2)
                a[4] += 1
        self._before = []

    # ------------------------------------------------------------------ per epoch
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        rows = []
        attributed = set()
        for name, tname, _, params in self._layers:
            a = self._acc.get(name) or [0.0, 0.0, 0, 0.0, 0, True]
            w2 = sum(float(np.vdot(p.data, p.data).real) for p in params if p.data.size)
            wn = math.sqrt(w2)
            gn = a[0] / a[2] if a[2] else None
            if a[2] and not a[5]:
                gn = math.inf
            row = {
                "epoch": epoch, "layer": name, "type": tname, "grad_norm": gn,
                "grad_norm_max": a[1] if a[2] else None, "weight_norm": wn,
                "update_ratio": a[3] / a[4] if a[4] else None, "dead_relu": None,
                "saturated": None, "activation": None,
            }  # fmt: skip
            kinds = []
            for kind, col in (
                ("relu", "dead_relu"),
                ("sigmoid", "saturated"),
                ("tanh", "saturated"),
            ):
                st = self._act.get((name, kind))
                if st is not None:
                    v = st.value()
                    if col == "saturated" and row[col] is not None and v is not None:
                        v = max(v, row[col])  # both a sigmoid and a tanh: the worse
                    row[col] = v
                    kinds.append(kind)
                    attributed.add((name, kind))
            row["activation"] = "+".join(kinds) or None
            rows.append(row)
        for (key, kind), st in self._act.items():
            if (key, kind) in attributed:
                continue
            col = "dead_relu" if kind == "relu" else "saturated"
            row = dict.fromkeys(_COLUMNS)
            typ = f"F.{kind}" if key.startswith(f"{kind} at ") else _CLASS[kind]
            row.update(
                {"epoch": epoch, "layer": key, "type": typ, "activation": kind, col: st.value()}
            )
            rows.append(row)
        self.rows += rows
        self._append_csv(rows)
        for row in rows:
            self._check(row)

    def _check(self, row: dict) -> None:
        layer, typ = row["layer"], row["type"]
        who = (
            f"layer '{layer}' ({typ})"
            if typ not in ("F.relu", "F.sigmoid", "F.tanh")
            else f"'{layer}'"
        )
        gn, wn = row["grad_norm"], row["weight_norm"]
        e = row["epoch"] + 1
        if gn is not None and wn is not None:
            if not math.isfinite(gn) or gn > self.explode * max(wn, 1.0):
                self._emit(
                    f"{who}: gradients explode in epoch {e} (gradient norm {gn:.3g}, weight "
                    f"norm {wn:.3g}). Try: a lower learning rate, gradient clipping "
                    "(nn.utils.clip_grad_norm_), normalisation (BatchNorm/LayerNorm) or a "
                    "smaller initialisation (nn.init.xavier_uniform_ / kaiming_uniform_).",
                    key=(layer, "explode"),
                )
            elif wn > 0 and gn < self.vanish * wn:
                self._emit(
                    f"{who}: gradients vanish in epoch {e} (gradient norm {gn:.3g} for weight "
                    f"norm {wn:.3g}: ratio {gn / wn:.2g}), so it barely learns. Try: an "
                    "initialisation scaled to the layer (nn.init.xavier_uniform_ for "
                    "sigmoid/tanh, kaiming for ReLU) instead of large weights, normalisation "
                    "(BatchNorm/LayerNorm), ReLU-family activations or residual connections, "
                    "or a larger learning rate.",
                    key=(layer, "vanish"),
                )
        d = row["dead_relu"]
        if d is not None and d >= self.dead:
            self._emit(
                f"{who}: {d:.0%} of the ReLU units after it are dead in epoch {e} (output 0 for "
                "every sample, so no gradient flows through them). Try: a lower learning rate, "
                "Kaiming initialisation with zero or small positive biases, normalisation "
                "before the ReLU, or LeakyReLU/ELU.",
                key=(layer, "dead"),
            )
        s = row["saturated"]
        if s is not None and s >= self.saturated:
            acts = "/".join(k for k in (row.get("activation") or "").split("+") if k != "relu")
            self._emit(
                f"{who}: {s:.0%} of the {acts or 'sigmoid/tanh'} outputs after it are saturated "
                f"in epoch {e} "
                f"(within {self.saturation_eps:g} of an asymptote, where the gradient is almost "
                "0). Try: smaller initial weights (nn.init.xavier_uniform_), normalised inputs "
                "or BatchNorm/LayerNorm before the activation, a lower learning rate, or "
                "ReLU-family activations.",
                key=(layer, "saturated"),
            )

    def _emit(self, msg: str, key: tuple) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        self.warnings.append(msg)
        if self.txt_path is not None:
            with open(self.txt_path, "a", encoding="utf-8") as f:
                f.write(msg + "\n")
        if self.on_warning is not None:
            self.on_warning(msg)
        else:
            warnings.warn(msg, HealthWarning, stacklevel=2)

    # ------------------------------------------------------------------ files
    def _prepare_csv(self, epoch: int) -> None:
        """First epoch of this fit: keep the rows of earlier epochs (a resumed run), else start
        the file afresh."""
        self._csv_ready = True
        path = self.csv_path
        kept: list[dict] = []
        if path is not None and epoch > 0 and os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    try:
                        if int(r["epoch"]) < epoch:
                            kept.append({k: _parse(k, v) for k, v in r.items()})
                    except (KeyError, ValueError):
                        continue
        self.rows = kept + [r for r in self.rows if r["epoch"] < epoch and r not in kept]
        if epoch == 0 and self.txt_path is not None and os.path.exists(self.txt_path):
            os.remove(self.txt_path)  # a fresh run: no warnings of an earlier one
        if path is not None:
            self._write_rows(path, self.rows, header=True)

    def _append_csv(self, rows: list[dict]) -> None:
        if self.csv_path is not None:
            self._write_rows(self.csv_path, rows, header=False)

    @staticmethod
    def _write_rows(path: str, rows: list[dict], header: bool) -> None:
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
        if header:
            w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in _COLUMNS})
        if header:
            io._atomic_write(path, buf.getvalue().encode())
        else:
            with open(path, "a", encoding="utf-8", newline="") as f:
                f.write(buf.getvalue())

    def report(self) -> str:
        """The last epoch's rows as a table, then the warnings."""
        if not self.rows:
            return "no epochs recorded"
        last = max(r["epoch"] for r in self.rows)
        lines = [
            f"{'layer':<24} {'type':<10} {'grad':>9} {'weight':>9} {'update':>9} {'dead':>6} {'sat':>6}"
        ]
        for r in (r for r in self.rows if r["epoch"] == last):
            lines.append(
                f"{r['layer'][:24]:<24} {r['type'][:10]:<10} {_f(r['grad_norm']):>9} "
                f"{_f(r['weight_norm']):>9} {_f(r['update_ratio']):>9} "
                f"{_p(r['dead_relu']):>6} {_p(r['saturated']):>6}"
            )
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def plot_to(self, path: str | os.PathLike) -> str:
        """Draw the rows as a PNG: one panel per quantity, one line per layer."""
        from .plots import _import_matplotlib  # noqa: PLC0415

        Figure, FigureCanvasAgg = _import_matplotlib()
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

        fig = Figure(figsize=(15, 8), dpi=90)
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 3).ravel()
        layers = list(dict.fromkeys(r["layer"] for r in self.rows))
        for ax, (key, title, log) in zip(axes, _PANELS):
            series = {}
            for li, layer in enumerate(layers):
                pts = []
                for r in self.rows:
                    if r["layer"] != layer:
                        continue
                    if key == "grad_weight":
                        g, w = r["grad_norm"], r["weight_norm"]
                        v = g / w if g is not None and w else None
                    else:
                        v = r[key]
                    if v is not None and math.isfinite(v):
                        pts.append((r["epoch"] + 1, v))
                if pts:
                    series[li] = pts
            zero_floor = None
            if log:  # zeros (a layer that gets no gradient at all) at a floor below the rest
                pos = [v for pts in series.values() for _, v in pts if v > 0]
                zero_floor = (min(pos) if pos else 1.0) * 1e-3
            for li, pts in series.items():
                xs = [x for x, _ in pts]
                ys = [v if not log or v > 0 else zero_floor for _, v in pts]
                zero = log and all(v <= 0 for _, v in pts)
                ax.plot(
                    xs, ys, marker="o" if len(xs) < 30 else None, ms=3, color=f"C{li % 10}",
                    ls="--" if zero else "-", label=layers[li] + (" (0)" if zero else ""),
                )  # fmt: skip
            if series and log:
                ax.set_yscale("log")
            if key in ("dead_relu", "saturated"):
                ax.set_ylim(-0.03, 1.03)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            if series:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
        return os.fspath(path)


def _parse(k: str, v: str) -> Any:
    if k in ("layer", "type", "activation"):
        return v or None
    if v == "":
        return None
    return int(v) if k == "epoch" else float(v)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"
