"""``plot_history``: loss and accuracy curves of a training run as a PNG.

matplotlib is optional (``pip install 'chainrule[plot]'``) and imported only when a plot is made
(it takes about a second). The figure is drawn with the Agg backend through matplotlib's
object-oriented API, without pyplot, so it never opens a window and never changes the backend of
the calling program (a notebook's inline plots keep working).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_history"]


def _import_matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            f"plot_history needs matplotlib, which is not installed ({e}): "
            "pip install 'chainrule[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def plot_history(
    history: Any,
    path: str | os.PathLike,
    metrics: tuple[str, ...] | None = None,
    title: str | None = None,
) -> str:
    """Plot each metric of ``history`` (a ``History`` or its ``.history`` dict) per epoch, train
    and validation (``val_``) curves on one panel per metric, and save a PNG to ``path``.

    ``metrics``: which to plot (default: ``loss`` and ``accuracy``, plus any other logged metric
    except ``lr``, in the order logged). Returns ``path``."""
    h = getattr(history, "history", history)
    if not isinstance(h, dict):
        raise TypeError(
            f"plot_history expects a History or a dict of lists, got {type(history).__name__}"
        )
    epochs_of = getattr(history, "epoch", None)
    if metrics is None:
        metrics = tuple(k for k in h if not k.startswith("val_") and k != "lr")
        metrics += tuple(
            k[4:] for k in h if k.startswith("val_") and k[4:] not in h and k[4:] not in metrics
        )
    metrics = tuple(m for m in metrics if m in h or f"val_{m}" in h)
    if not metrics:
        raise ValueError(f"plot_history: nothing to plot (history has {list(h)})")
    Figure, FigureCanvasAgg = _import_matplotlib()
    try:
        fig = Figure(figsize=(5 * len(metrics), 4), dpi=100, layout="constrained")
    except TypeError:  # matplotlib < 3.6
        fig = Figure(figsize=(5 * len(metrics), 4), dpi=100, constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, name in zip(axes, metrics):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
            ys = h.get(key)
            if not ys:
                continue
            xs = (
                [e + 1 for e in epochs_of]
                if epochs_of and len(epochs_of) == len(ys)
                else range(1, len(ys) + 1)
            )
            ax.plot(list(xs), ys, style, marker="o" if len(ys) < 30 else None, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)
