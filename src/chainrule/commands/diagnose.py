"""``chainrule train --diagnose`` and ``--draw``: what backpropagation does, in the run folder.

    chainrule train --preset xor --diagnose      # health.csv, health.png, health.txt
    chainrule train --preset xor --draw          # network.png, graph.dot (+ graph.svg)

``--diagnose`` adds a ``GradientHealth`` callback: per layer and epoch the gradient norm, weight
norm, update/weight ratio, dead ReLUs and saturated sigmoid/tanh units (``health.csv``, plotted
in ``health.png`` at the end), and a warning line on stderr naming the layer when its gradients
vanish or explode or its units die or saturate (also kept in ``health.txt``).

``--draw`` writes ``graph.dot`` (and ``graph.svg`` when Graphviz's ``dot`` is on the PATH): the
computation graph of the first training step, from the parameters (named) to the loss; and at
the end of training ``network.png``: the trained network, unit by unit with its weights for a
small MLP, else as a block diagram of its layers.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from ..train.callbacks import Callback


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--diagnose", action="store_true",
        help="write a gradient health report into the run folder (health.csv, health.png, "
        "health.txt): per layer and epoch, gradient and weight norms, update ratio, dead ReLUs, "
        "saturated units; warnings name the layer",
    )  # fmt: skip
    parser.add_argument(
        "--draw", action="store_true",
        help="write network.png (the layers and their weights) and graph.dot / graph.svg (the "
        "computation graph of one training step) into the run folder",
    )  # fmt: skip


def _say(msg: str) -> None:
    print(f"chainrule: {msg}", file=sys.stderr, flush=True)


def train_callbacks(args: argparse.Namespace, cfg: dict, run_dir: Path) -> list:
    out: list = []
    if getattr(args, "diagnose", False):
        from ..train.health import GradientHealth  # noqa: PLC0415

        out.append(GradientHealth(run_dir, on_warning=lambda m: _say(f"warning: {m}")))
    if getattr(args, "draw", False):
        out.append(DrawRun(run_dir))
    return out


class DrawRun(Callback):
    """Draw the computation graph of the first training step (``graph.dot``, ``graph.svg``)
    and, at the end of training, the network (``network.png``) into ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._handles: list = []
        self._loss: Any = None
        self._output: Any = None
        self._example: Any = None
        self._armed = False
        self._drawn = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        from ..nn.module import Module  # noqa: PLC0415

        self._drawn = False
        self._handles = [self.model.register_forward_hook(self._model_hook)]
        loss_fn = self.trainer.loss_fn
        if isinstance(loss_fn, Module):
            self._handles.append(loss_fn.register_forward_hook(self._loss_hook))

    def _model_hook(self, module: Any, args: tuple, out: Any) -> None:
        from ..tensor import Tensor  # noqa: PLC0415

        if not self._armed:
            return
        self._output = out
        if self._example is None:  # two samples are enough to trace shapes for the picture
            self._example = tuple(
                a[:2].detach() if isinstance(a, Tensor) and a.ndim else a for a in args
            )

    def _loss_hook(self, module: Any, args: tuple, out: Any) -> None:
        if self._armed:
            self._loss = out

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._armed = not self._drawn

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._armed = False
        if self._drawn:
            return
        self._drawn = True
        from ..tensor import Tensor  # noqa: PLC0415
        from ..viz import GraphvizWarning, draw_graph  # noqa: PLC0415

        root = self._loss if isinstance(self._loss, Tensor) else self._output
        self._loss = self._output = None
        self._remove_hooks()
        if not isinstance(root, Tensor):
            _say("--draw: the training step gave no tensor to draw the graph of")
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GraphvizWarning)
            draw_graph(root, self.run_dir / "graph.svg", params=dict(self.model.named_parameters()))
        for w in caught:
            if issubclass(w.category, GraphvizWarning):
                _say(f"no graph.svg, only graph.dot: {str(w.message).split(': ', 1)[-1]}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def _remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def on_train_end(self, logs: dict | None = None) -> None:
        from ..viz import draw_network  # noqa: PLC0415

        self._remove_hooks()
        try:
            draw_network(self.model, self.run_dir / "network.png", example_input=self._example)
        except ImportError as e:
            _say(f"no network.png ({e})")

    on_train_interrupted = on_train_end
