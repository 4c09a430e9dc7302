"""``draw_graph``: the recorded computation graph behind a tensor as Graphviz DOT text, rendered
with Graphviz's ``dot`` when it is on the PATH (package docstring)."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..autograd.engine import Node
from ..tensor import Tensor


class GraphvizWarning(UserWarning):
    """Graphviz's ``dot`` is not on the PATH (or failed): only the ``.dot`` text was written."""


INSTALL_GRAPHVIZ = (
    "install Graphviz (apt-get install graphviz / brew install graphviz / conda install "
    "graphviz) or paste the .dot text into an online Graphviz viewer"
)


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
