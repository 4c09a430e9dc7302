"""``draw_network``: a model as a PNG, unit by unit for a small MLP, else as a block diagram of
its layers (package docstring)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .graph import _shape

_INPUT, _HIDDEN, _OUTPUT = "#a1d99b", "#fdd49e", "#bcbddc"
_POS, _NEG = "#d7301f", "#2b8cbe"
_ACTIVATIONS = {
    "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Hardtanh",
    "Softmax", "LogSoftmax", "Step", "Sign",
}  # fmt: skip
_PASSIVE = _ACTIVATIONS | {"Dropout", "Identity", "Flatten"}


def _figure(w: float, h: float, dpi: int = 100) -> tuple[Any, Any]:
    from ..train.plots import _import_matplotlib  # noqa: PLC0415

    Figure, FigureCanvasAgg = _import_matplotlib()
    fig = Figure(figsize=(w, h), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _leaves(model: Any) -> list[tuple[str, Any]]:
    return [(n or type(model).__name__, m) for n, m in model.named_modules() if not m._modules]


def _mlp_layers(model: Any, max_units: int) -> list[tuple[str, Any, str | None]] | None:
    """``[(name, Linear, activation after it)]`` when the model is a chain of Linear layers
    (in registration order) no wider than ``max_units``, else None."""
    out: list = []
    for name, m in _leaves(model):
        t = type(m).__name__
        if t == "Linear":
            if out and out[-1][1].out_features != m.in_features:
                return None
            out.append([name, m, None])
        elif t in _PASSIVE:
            if t in _ACTIVATIONS and out and out[-1][2] is None:
                out[-1][2] = t
        elif any(p is not None for p in m._parameters.values()):
            return None  # another kind of layer with weights
    if not out:
        return None
    widths = [out[0][1].in_features] + [m.out_features for _, m, _ in out]
    if max(widths) > max_units:
        return None
    return [tuple(x) for x in out]


def draw_network(
    model: Any,
    path: str | os.PathLike = "network.png",
    max_units: int = 50,
    example_input: Any = None,
    title: str | None = None,
) -> str:
    """Draw ``model`` as a PNG at ``path``; returns the path.

    A chain of ``Linear`` layers (with activations, Dropout, Flatten between them, taken in
    registration order) whose layers all have at most ``max_units`` units is drawn unit by
    unit: input units green, hidden orange, output purple, every connection a line whose width
    grows with |w| (red w > 0, blue w < 0); with up to 12 units per layer each unit shows its
    bias. Any other model is drawn as a block diagram of its layers, input, hidden and output
    layers coloured apart; with ``example_input`` (a batch, or a tuple of inputs) the blocks come
    in the order the forward pass runs them, with their output shapes."""
    path = os.fspath(path)
    layers = _mlp_layers(model, max_units)
    if layers is not None:
        fig = _draw_units(model, layers, title)
    else:
        fig = _draw_blocks(model, example_input, title)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _draw_units(model: Any, layers: list, title: str | None) -> Any:
    from matplotlib.collections import LineCollection  # noqa: PLC0415
    from matplotlib.lines import Line2D  # noqa: PLC0415

    widths = [layers[0][1].in_features] + [m.out_features for _, m, _ in layers]
    n_cols = len(widths)
    biggest = max(widths)
    fig, ax = _figure(min(22.0, 2.0 + 2.6 * n_cols), min(16.0, 2.8 + 0.3 * biggest))
    ys = [
        np.linspace(1, -1, w) * (0.5 * (w - 1) / max(biggest - 1, 1)) if w > 1 else np.zeros(1)
        for w in widths
    ]
    weights = [m.weight.data for _, m, _ in layers]
    wmax = max(float(np.abs(w).max()) if w.size else 0.0 for w in weights) or 1.0
    size = float(np.clip(7000.0 / max(biggest, 1), 40.0, 900.0))  # marker area, points^2
    lw_max = 4.0 if biggest <= 8 else max(0.8, 4.0 * math.sqrt(8 / biggest))
    for k, w in enumerate(weights):
        segs, lw, colors = [], [], []
        a = np.abs(w) / wmax
        for j in range(w.shape[0]):
            for i in range(w.shape[1]):
                segs.append([(k, ys[k][i]), (k + 1, ys[k + 1][j])])
                lw.append(0.15 + lw_max * a[j, i])
                c = _POS if w[j, i] >= 0 else _NEG
                colors.append(_rgba(c, 0.15 + 0.75 * a[j, i]))
        ax.add_collection(LineCollection(segs, linewidths=lw, colors=colors, zorder=1))
    for k, (w, y) in enumerate(zip(widths, ys)):
        color = _INPUT if k == 0 else _OUTPUT if k == n_cols - 1 else _HIDDEN
        ax.scatter(
            np.full(w, k), y, s=size, c=color, edgecolors="#333333", linewidths=1.0, zorder=3
        )
        units = f"{w} unit{'s' * (w != 1)}"
        if k == 0:
            head = f"input\n{units}"
        else:
            name, m, act = layers[k - 1]
            role = "output" if k == n_cols - 1 else f"hidden {k}"
            head = f"{role} (layer {name})\n{units}" + (f", {act}" if act else "")
            b = getattr(m, "bias", None)
            if b is not None and biggest <= 12:
                for yy, bv in zip(y, b.data):
                    ax.text(
                        k + 0.07,
                        yy - 0.03,
                        f"b={bv:+.2f}",
                        ha="left",
                        va="top",
                        fontsize=7,
                        zorder=4,
                    )
        ax.text(k, 0.6, head, ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(-0.8 if biggest <= 12 else -0.6, 0.8)
    ax.set_aspect("auto")
    ax.axis("off")
    ax.legend(
        handles=[
            Line2D([], [], color=_POS, lw=3, label="w > 0"),
            Line2D([], [], color=_NEG, lw=3, label="w < 0"),
        ],
        loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False,
        title=f"line width ∝ |w| (largest |w| = {wmax:.3g})", title_fontsize=8,
    )  # fmt: skip
    ax.set_title(title or f"{type(model).__name__}: " + "-".join(map(str, widths)), fontsize=11)
    fig.tight_layout()
    return fig


def _rgba(hex_color: str, alpha: float) -> tuple:
    h = hex_color.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, min(1.0, alpha))


def _block_rows(model: Any, example_input: Any) -> list[tuple[str, Any, str]]:
    """``[(name, module, output shape or "")]`` of the leaf modules, in forward order when an
    example input is given (each module once, at its first call)."""
    leaves = _leaves(model)
    if example_input is None:
        return [(n, m, "") for n, m in leaves]
    seen: dict[int, tuple] = {}
    order: list = []
    handles = []
    for n, m in leaves:

        def hook(mod: Any, args: tuple, out: Any, n: str = n) -> None:
            if id(mod) not in seen:
                shp = _shape(out.shape) if isinstance(out, Tensor) else (
                    _shape(out[0].shape) if isinstance(out, tuple) and out and isinstance(out[0], Tensor) else ""
                )  # fmt: skip
                seen[id(mod)] = (n, mod, shp)
                order.append(id(mod))

        handles.append(m.register_forward_hook(hook))
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    was = model.training
    try:
        model.eval()
        with no_grad():
            model(*inputs)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    rows = [seen[i] for i in order]
    rows += [(n, m, "") for n, m in leaves if id(m) not in seen]
    return rows


def _draw_blocks(model: Any, example_input: Any, title: str | None) -> Any:
    from matplotlib.patches import FancyBboxPatch  # noqa: PLC0415

    rows = _block_rows(model, example_input)
    weighted = [
        i for i, (_, m, _) in enumerate(rows) if any(p is not None for p in m._parameters.values())
    ]
    last = weighted[-1] if weighted else -1
    items = [("input", _INPUT, _input_label(rows, example_input))]
    for i, (name, m, shp) in enumerate(rows):
        n_par = sum(int(p.data.size) for p in m._parameters.values() if p is not None)
        extra = m.extra_repr() if hasattr(m, "extra_repr") else ""
        label = f"{name}: {type(m).__name__}({extra})"
        if len(label) > 70:
            label = label[:67] + "..."
        sub = ", ".join(
            x for x in (f"{n_par:,} parameters" if n_par else "", f"-> {shp}" if shp else "") if x
        )
        if i == last:
            color = _OUTPUT
        elif n_par:
            color = _HIDDEN
        else:
            color = "#f0f0f0"
        items.append((label, color, sub))
    n = len(items)
    fig, ax = _figure(8.5, min(30.0, 1.2 + 0.62 * n))
    h = 0.62
    for k, (label, color, sub) in enumerate(items):
        y = -k
        ax.add_patch(
            FancyBboxPatch((0.05, y - h / 2 * 0.8), 0.9, h * 0.8, boxstyle="round,pad=0.02,rounding_size=0.05",
                           facecolor=color, edgecolor="#444444", linewidth=1.0)
        )  # fmt: skip
        ax.text(0.5, y + (0.08 if sub else 0), label, ha="center", va="center", fontsize=9)
        if sub:
            ax.text(0.5, y - 0.14, sub, ha="center", va="center", fontsize=7.5, color="#333333")
        if k:
            ax.annotate("", xy=(0.5, y + h * 0.4), xytext=(0.5, y + 1 - h * 0.4),
                        arrowprops={"arrowstyle": "->", "color": "#444444"})  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(-n + 0.4, 0.6)
    ax.axis("off")
    total = sum(int(p.data.size) for p in model.parameters())
    ax.set_title(title or f"{type(model).__name__}: {total:,} parameters", fontsize=11)
    fig.tight_layout()
    return fig


def _input_label(rows: list, example_input: Any) -> str:
    if example_input is not None:
        x = example_input[0] if isinstance(example_input, tuple) else example_input
        if isinstance(x, Tensor):
            return f"-> {_shape(x.shape)}"
    for _, m, _ in rows:
        for attr in ("in_features", "in_channels", "input_size"):
            v = getattr(m, attr, None)
            if isinstance(v, int):
                return f"{attr} = {v}"
        if isinstance(getattr(m, "num_embeddings", None), int):
            return f"token ids < {m.num_embeddings}"
    return ""
