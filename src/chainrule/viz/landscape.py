"""``loss_landscape``: the loss along one or two random filter-normalised directions around the
current weights (package docstring)."""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from .network import _figure


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
