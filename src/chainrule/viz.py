"""Pictures of what a network is and what backpropagation sees.

- ``draw_graph(loss, "graph.svg", params=dict(model.named_parameters()))``: the recorded
  computation graph (each op with its output shape, the leaves that require grad, parameters by
  name) as Graphviz DOT text, rendered with Graphviz's ``dot`` when it is on the PATH.
- ``draw_network(model, "net.png")``: the layers, input, hidden and output units coloured apart;
  for a small MLP every unit and every weighted connection (line width by |w|, red for positive,
  blue for negative), as in the classic diagrams; any other model as a block diagram.
- ``loss_landscape(model, loss_fn, batch)``: the loss along one or two random filter-normalised
  directions around the current weights (Li et al., "Visualizing the Loss Landscape of Neural
  Nets", 2018): a sharp or flat minimum, or a plateau. The weights are restored exactly.

matplotlib is needed for the PNGs (``pip install 'chainrule[plot]'``), imported only when a
picture is drawn, and used without pyplot (Agg), so no window opens and the caller's backend is
left alone. Graphviz is a system package (``apt-get install graphviz``, ``brew install graphviz``,
``conda install graphviz``); without it ``draw_graph`` still writes the ``.dot`` file.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .autograd.engine import Node
from .autograd.grad_mode import no_grad
from .tensor import Tensor

__all__ = [
    "GraphvizWarning", "LossLandscape", "draw_graph", "draw_network", "graph_dot", "loss_landscape",
]  # fmt: skip


class GraphvizWarning(UserWarning):
    """Graphviz's ``dot`` is not on the PATH (or failed): only the ``.dot`` text was written."""


INSTALL_GRAPHVIZ = (
    "install Graphviz (apt-get install graphviz / brew install graphviz / conda install "
    "graphviz) or paste the .dot text into an online Graphviz viewer"
)

# ============================================================================ draw_graph

_OP_STYLE = 'shape=box, style="rounded,filled", fillcolor="#e8e8e8", color="#555555"'
_ROOT_STYLE = 'shape=box, style="rounded,filled,bold", fillcolor="#c7e9c0", color="#238b45"'
_LEAF_STYLE = 'shape=box, style="filled", fillcolor="#c6dbef", color="#2171b5"'
_PARAM_STYLE = 'shape=box, style="filled", fillcolor="#fdd49e", color="#d94801"'


def _shape(s: Any) -> str:
    s = tuple(s)
    return "scalar" if not s else "(" + ", ".join(str(int(d)) for d in s) + ")"


def _q(text: str) -> str:
    """A DOT string literal (``\\n`` kept as DOT's line break)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(tensors: Tensor | Sequence[Tensor], params: dict[str, Tensor] | None = None) -> str:
    """The DOT text of the graph recorded behind ``tensors`` (see ``draw_graph``)."""
    roots = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not roots or not all(isinstance(t, Tensor) for t in roots):
        raise TypeError("draw_graph: expected a Tensor (or a sequence of Tensors)")
    names = {id(p): n for n, p in (params or {}).items() if isinstance(p, Tensor)}
    node_ids: dict[int, str] = {}
    nodes: list[Node] = []
    leaf_ids: dict[int, str] = {}
    leaves: list[Tensor] = []
    edges: list[tuple[str, str, str]] = []

    def leaf_id(t: Tensor) -> str:
        k = leaf_ids.get(id(t))
        if k is None:
            k = leaf_ids[id(t)] = f"leaf{len(leaves)}"
            leaves.append(t)
        return k

    queue: deque[Node] = deque()

    def node_id(n: Node) -> str:
        k = node_ids.get(id(n))
        if k is None:
            k = node_ids[id(n)] = f"op{len(nodes)}"
            nodes.append(n)
            queue.append(n)
        return k

    root_lines = []
    for i, t in enumerate(roots):
        rid = f"out{i}"
        label = f"output\n{_shape(t.shape)}"
        if t.grad_fn is None:
            src = leaf_id(t) if t.requires_grad else None
            if src is None:
                label += "\n(no graph: requires_grad=False)"
        else:
            src = node_id(t.grad_fn)
        root_lines.append(f"  {rid} [label={_q(label)}, {_ROOT_STYLE}];")
        if src is not None:
            nr = t._out_nr
            edges.append(
                (src, rid, f"[{nr}]" if t.grad_fn is not None and t.grad_fn.n_out > 1 else "")
            )

    while queue:  # breadth first, no recursion: graphs of any depth
        n = queue.popleft()
        me = node_ids[id(n)]
        for p in n.parents:
            if p is None:
                continue  # an input that needs no gradient is not recorded
            if type(p) is tuple:
                edges.append((node_id(p[0]), me, f"[{p[1]}]"))
            elif type(p) is Node:
                edges.append((node_id(p), me, ""))
            else:
                edges.append((leaf_id(p), me, ""))

    # name the ops in forward order, and the leaves in the order the ops first use them
    order = sorted(nodes, key=lambda n: n.seq)
    rename = {node_ids[id(n)]: f"op{i}" for i, n in enumerate(order)}
    rank = {k: i for i, k in enumerate(rename)}
    edges.sort(key=lambda e: (rank.get(e[1], len(rank)), e[1]))
    n_leaves = 0
    for a, _, _ in edges:
        if a.startswith("leaf") and a not in rename:
            rename[a] = f"leaf{n_leaves}"
            n_leaves += 1
    edges = [(rename.get(a, a), rename.get(b, b), lab) for a, b, lab in edges]
    leaf_rows = sorted(
        ((rename.get(k, k), t) for k, t in zip(leaf_ids.values(), leaves)),
        key=lambda kt: int(kt[0][4:]),
    )
    lines = [
        "digraph chainrule {",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.3, ranksep=0.35];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555", arrowsize=0.6, fontsize=8];',
    ]
    for k, t in leaf_rows:
        name = names.get(id(t))
        if name is not None:
            label = f"{name}\n{_shape(t.shape)}\nrequires_grad"
            style = _PARAM_STYLE
        else:
            label = f"leaf\n{_shape(t.shape)}\nrequires_grad"
            style = _LEAF_STYLE
        lines.append(f"  {k} [label={_q(label)}, {style}];")
    for n in order:
        shape = n.out_shape
        if n.n_out > 1:
            shapes = [_shape(s) for s in shape]
            same = len(set(shapes)) == 1
            shp = f"{len(shapes)} x {shapes[0]}" if same else " ".join(shapes)
        else:
            shp = _shape(shape)
        label = _q(n.name() + "\n" + shp)
        lines.append(f"  {rename[node_ids[id(n)]]} [label={label}, {_OP_STYLE}];")
    lines += root_lines
    for a, b, label in edges:
        attr = f" [label={_q(label)}]" if label else ""
        lines.append(f"  {a} -> {b}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render(dot_path: Path, out: Path, fmt: str) -> bool:
    exe = shutil.which("dot")
    if exe is None:
        warnings.warn(
            f"draw_graph: Graphviz's `dot` is not on the PATH, so {out.name} was not rendered; "
            f"the graph is in {dot_path} ({INSTALL_GRAPHVIZ}; then: dot -T{fmt} {dot_path} "
            f"-o {out})",
            GraphvizWarning,
            stacklevel=3,
        )
        return False
    try:
        r = subprocess.run(
            [exe, f"-T{fmt}", str(dot_path), "-o", str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        warnings.warn(f"draw_graph: running dot failed ({e})", GraphvizWarning, stacklevel=3)
        return False
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        warnings.warn(
            f"draw_graph: dot failed on {dot_path}: {msg[0] if msg else f'exit {r.returncode}'}",
            GraphvizWarning,
            stacklevel=3,
        )
        return False
    return True


def draw_graph(
    tensor: Tensor | Sequence[Tensor],
    path: str | os.PathLike | None = None,
    format: str | None = None,
    params: dict[str, Tensor] | None = None,
) -> str:
    """The computation graph recorded behind ``tensor`` (e.g. a loss) as Graphviz DOT text.

    Each op is a box with its name and output shape, in forward order from the leaves (blue;
    parameters orange and named when ``params=dict(model.named_parameters())`` is given, all
    marked ``requires_grad``) to the output (green). Inputs that need no gradient are not
    recorded by the engine, so they are not drawn. An edge from an op with several outputs says
    which (``[1]``). Works before or after ``backward()`` (the graph's structure is kept).

    ``path``: also write the files. ``"g.svg"`` / ``"g.png"`` / ``"g.pdf"``: ``g.dot`` plus the
    picture rendered by Graphviz's ``dot``; ``"g.dot"``: the DOT text only (rendered too if
    ``format`` is given); any other name gets ``.dot`` and ``.{format}`` appended (default
    svg). When ``dot`` is not on the PATH a ``GraphvizWarning`` says how to install Graphviz and
    the ``.dot`` file is still written. Returns the DOT text."""
    text = graph_dot(tensor, params)
    if path is None:
        return text
    p = Path(os.fspath(path))
    suffix = p.suffix.lower()
    if suffix in (".svg", ".png", ".pdf"):
        fmt, dot_path, out = (format or suffix[1:]), p.with_suffix(".dot"), p
    elif suffix in (".dot", ".gv"):
        fmt, dot_path = format, p
        out = p.with_suffix(f".{format}") if format else None
    else:
        fmt = format or "svg"
        dot_path, out = Path(f"{p}.dot"), Path(f"{p}.{fmt}")
    if dot_path.parent:
        dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(text, encoding="utf-8")
    if out is not None and fmt:
        _render(dot_path, out, fmt)
    return text


# ============================================================================ draw_network

_INPUT, _HIDDEN, _OUTPUT = "#a1d99b", "#fdd49e", "#bcbddc"
_POS, _NEG = "#d7301f", "#2b8cbe"
_ACTIVATIONS = {
    "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Softplus", "Hardtanh",
    "Softmax", "LogSoftmax", "Step", "Sign",
}  # fmt: skip
_PASSIVE = _ACTIVATIONS | {"Dropout", "Identity", "Flatten"}


def _figure(w: float, h: float, dpi: int = 100) -> tuple[Any, Any]:
    from .train.plots import _import_matplotlib  # noqa: PLC0415

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


# ============================================================================ loss landscape


class LossLandscape(NamedTuple):
    """What ``loss_landscape`` returns: the step sizes along each direction (``betas`` is None
    for one direction), the losses (``(len(alphas),)`` or ``(len(alphas), len(betas))``,
    ``losses[i, j]`` at ``alphas[i]``, ``betas[j]``), the loss at the current weights, and the
    PNG written (or None)."""

    alphas: np.ndarray
    betas: np.ndarray | None
    losses: np.ndarray
    center: float
    path: str | None


def _direction(params: list[Tensor], rng: np.random.Generator, ignore_1d: bool) -> list:
    """A random direction, filter-normalised: each filter (slice along dim 0) of each weight gets
    the norm of the same filter of the weights; 1-D parameters (biases, norm scales) get 0 when
    ``ignore_1d`` (Li et al.'s default), else the norm of the whole parameter."""
    out = []
    for p in params:
        w = p.data
        d = rng.standard_normal(w.shape).astype(w.dtype, copy=False)
        if w.ndim <= 1:
            if ignore_1d:
                d = np.zeros_like(w)
            else:
                d *= np.linalg.norm(w) / (np.linalg.norm(d) + 1e-10)
        else:
            axes = tuple(range(1, w.ndim))
            wn = np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))
            dn = np.sqrt((d.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))
            d = (d * (wn / (dn + 1e-10))).astype(w.dtype, copy=False)
        out.append(d)
    return out


def _batches(batch: Any) -> list:
    if (
        isinstance(batch, (tuple, list))
        and batch
        and all(isinstance(b, (Tensor, np.ndarray)) for b in batch)
    ):
        return [batch]
    return list(batch)


def _loss_on(model: Any, loss_fn: Any, batches: list) -> float:
    total, count = 0.0, 0
    for b in batches:
        *inputs, target = b
        inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        target = target if isinstance(target, Tensor) else Tensor(target)
        v = loss_fn(model(*inputs), target)
        n = int(target.shape[0]) if target.ndim else 1
        total += float(v.data if isinstance(v, Tensor) else v) * (n if len(batches) > 1 else 1)
        count += n
    return total / count if len(batches) > 1 else total


def loss_landscape(
    model: Any,
    loss_fn: Any,
    batch: Any,
    directions: int = 1,
    steps: int = 21,
    span: float = 1.0,
    path: str | os.PathLike | None = "loss_landscape.png",
    seed: int = 0,
    ignore_1d: bool = True,
) -> LossLandscape:
    """The loss around the current weights θ along random filter-normalised directions:
    ``L(θ + a·d1)`` for ``a`` in ``[-span, span]`` (``directions=1``, a line plot) or
    ``L(θ + a·d1 + b·d2)`` on a ``steps × steps`` grid (``directions=2``, a contour plot).

    ``batch``: one batch ``(inputs..., target)`` or an iterable of them (the loss is then the
    mean over samples). The model runs in eval mode without gradients; the directions come from
    their own generator (``seed``), so the global random state is untouched. ``steps`` is made
    odd so that the centre (a = b = 0) is on the grid, where the loss is computed with the
    weights themselves: ``result.center`` is exactly the current loss. Afterwards every
    parameter holds its original array again (bitwise) and the train/eval mode is restored.
    ``path``: the PNG (None: no picture). A sharp minimum shows as a narrow valley, a flat one
    as a wide basin, a plateau as a line that barely moves."""
    if directions not in (1, 2):
        raise ValueError(f"loss_landscape: directions must be 1 or 2, got {directions}")
    if steps < 3:
        raise ValueError(f"loss_landscape: steps must be >= 3, got {steps}")
    if not span > 0:
        raise ValueError(f"loss_landscape: span must be > 0, got {span}")
    k = steps // 2
    coords = np.arange(-k, k + 1, dtype=np.float64) * (span / k)  # exactly 0.0 in the middle
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("loss_landscape: the model has no trainable parameters")
    batches = _batches(batch)
    rng = np.random.default_rng(seed)
    dirs = [_direction(params, rng, ignore_1d) for _ in range(directions)]
    originals = [p.data for p in params]
    was = model.training
    model.eval()
    try:
        with no_grad():
            center = _loss_on(model, loss_fn, batches)

            def at(a: float, b: float = 0.0) -> float:
                if a == 0.0 and b == 0.0:
                    return center
                for p, w, d1, *d2 in zip(params, originals, *dirs):
                    new = w + a * d1 if a else w.copy()
                    if d2 and b:
                        new += b * d2[0]
                    p.data = new.astype(w.dtype, copy=False)
                try:
                    return _loss_on(model, loss_fn, batches)
                finally:
                    for p, w in zip(params, originals):
                        p.data = w

            if directions == 1:
                losses = np.array([at(a) for a in coords])
            else:
                losses = np.array([[at(a, b) for b in coords] for a in coords])
    finally:
        for p, w in zip(params, originals):
            p.data = w
        model.train(was)
    out = None
    if path is not None:
        out = _plot_landscape(coords, losses, center, directions, os.fspath(path))
    return LossLandscape(coords, coords.copy() if directions == 2 else None, losses, center, out)


def _plot_landscape(
    coords: np.ndarray, losses: np.ndarray, center: float, directions: int, path: str
) -> str:
    fig, ax = _figure(6.4, 5.0 if directions == 2 else 4.2)
    finite = losses[np.isfinite(losses)]
    if directions == 1:
        ax.plot(coords, losses, "-o", ms=3, color="#2b8cbe")
        ax.plot([0.0], [center], "o", color="#d7301f", ms=7, label=f"current weights: {center:.4g}")
        ax.set_xlabel("step along a filter-normalised random direction")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    else:
        z = np.where(np.isfinite(losses), losses, np.nan)
        A, B = np.meshgrid(coords, coords, indexing="ij")
        if finite.size and float(finite.max()) > float(finite.min()):
            cs = ax.contourf(A, B, z, levels=30, cmap="viridis")
            ax.contour(A, B, z, levels=15, colors="white", linewidths=0.5, alpha=0.6)
            fig.colorbar(cs, ax=ax, label="loss")
        ax.plot([0.0], [0.0], "*", color="#d7301f", ms=12, label=f"current weights: {center:.4g}")
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
        ax.legend(fontsize=8, loc="upper right")
    rise = float(finite.max() - center) if finite.size else math.nan
    ax.set_title(
        f"loss landscape (Li et al. 2018): max rise within the span {rise:.3g}", fontsize=10
    )
    fig.tight_layout()
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, format="png")
    return path
