"""Tables (Markdown + CSV) and figures (PNG) for the 1986 reproduction."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import classic1986 as C
from .analysis import _hidden_acts, _sel, encoding_stats
from .nets import Run
from .problems import ENGLISH, GENERATION, Experiment, published_symmetry_net


def _fmt(x: float, nd: int = 0) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{nd}f}"


def _med_iqr(st: dict) -> str:
    return f"{_fmt(st['median'])} [{_fmt(st['q25'])}–{_fmt(st['q75'])}]" if st["solved"] else "–"


def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = [
        "| " + " | ".join(str(h).replace("|", "\\|") for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _write_csv(path: Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)


def _crit(c: tuple[str, float]) -> str:
    return {
        "margin": f"all outputs within {c[1]:g} of target",
        "pattern_error": f"E_p < {c[1]:g} every pattern",
        "correct": "all outputs on the right side of 0.5",
    }[c[0]]


def sweeps_table(results: Sequence[tuple[Experiment, dict]]) -> tuple[list[str], list[list[Any]]]:
    """The main table: our sweeps to solution and failures next to the published figures."""
    headers = [
        "experiment", "net", "mode", "ε / α / init", "stop when", "seeds",
        "failed (cap)", "sweeps median [IQR]", "5–95 %", "published", "published failures",
        "published vs ours", "source", "the source states", "structure of our solutions",
    ]  # fmt: skip
    rows = []
    for e, st in results:
        lo, hi = st["failure_ci"]
        rows.append([
            e.problem, e.net, "per pattern" if e.mode == "pattern" else "per sweep (batch)",
            f"{e.lr:g} / {e.momentum:g} / U(±{e.init:g})" + (", targets .1/.9" if e.soft_targets else ""),
            _crit(e.criterion), st["seeds"],
            f"{st['failures']}/{st['seeds']} = {st['failure_rate']:.0%} [{lo:.0%}–{hi:.0%}] ({_fmt(st['cap'])})",
            _med_iqr(st), f"{_fmt(st['p5'])}–{_fmt(st['p95'])}" if st["solved"] else "–",
            e.published, e.pub_failures, st["verdict"], e.source, e.stated, st["structure"],
        ])  # fmt: skip
    return headers, rows


# ============================================================================ figures


def _figure(w: float, h: float) -> tuple[Any, Any]:
    """A matplotlib Figure drawn with Agg, without pyplot (never opens a window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.canvas


def hinton(ax: Any, W: np.ndarray, vmax: float | None = None) -> None:
    """Hinton diagram: a white (positive) or black (negative) square per weight, area ∝ |w|."""
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    W = np.atleast_2d(np.asarray(W, float))
    vmax = vmax or float(np.abs(W).max()) or 1.0
    ax.set_facecolor("0.55")
    for (i, j), w in np.ndenumerate(W):
        s = 0.92 * math.sqrt(min(abs(w) / vmax, 1.0))
        ax.add_patch(
            Rectangle(
                (j - s / 2, i - s / 2),
                s,
                s,
                facecolor="white" if w > 0 else "black",
                edgecolor="none",
            )
        )
    ax.set_xlim(-0.5, W.shape[1] - 0.5)
    ax.set_ylim(W.shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_learning_curves(items: Sequence[tuple[Experiment, Run]], path: Path) -> Path:
    """E after each sweep for every seed, one panel per experiment (failed runs in red)."""
    n = len(items)
    cols = 4
    rows = max(1, math.ceil(n / cols))
    fig, _ = _figure(4 * cols, 2.8 * rows)
    for i, (e, run) in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        for c, ok in zip(run.curves, run.solved):
            last = np.nonzero(~np.isnan(c))[0]
            if len(last):
                ax.plot(
                    np.arange(last[-1] + 1),
                    c[: last[-1] + 1],
                    lw=0.6,
                    alpha=0.6,
                    color="tab:blue" if ok else "tab:red",
                )
        if e.pub_sweeps:
            ax.axvline(e.pub_sweeps, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{e.problem} {e.net}\n{e.mode}, ε {e.lr:g}, α {e.momentum:g}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("sweeps", fontsize=7)
        if i % cols == 0:
            ax.set_ylabel("E", fontsize=7)
    fig.suptitle(
        "Learning curves (blue: met the criterion, red: not by the cap; dashed: published count)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def plot_symmetry(run: Run, path: Path, n: int = 5) -> Path:
    """PDP Fig. 9's published net and our solved nets as Hinton diagrams: rows hidden A and B,
    columns inputs 1–6, the hidden bias and the hidden->output weight."""
    _, pub = published_symmetry_net()
    nets = [("PDP Fig. 9 (published)", pub)]
    idx = np.nonzero(run.solved)[0][: n - 1]
    nets += [
        (f"seed {run.seeds[i]} ({run.sweeps[i]} sweeps)", _sel(run.params, np.array([i])))
        for i in idx
    ]
    fig, _ = _figure(3.2 * len(nets), 2.6)
    for k, (title, p) in enumerate(nets):
        W = np.concatenate([p[0][0].T, p[2][0][:, None], p[1][0]], 1)  # (2, 8)
        ax = fig.add_subplot(1, len(nets), k + 1)
        hinton(ax, W)
        ax.set_xticks(range(8))
        ax.set_xticklabels(["1", "2", "3", "4", "5", "6", "bias", "→out"], fontsize=7)
        ax.set_yticks([0, 1])
        ax.set_yticklabels(["A", "B"], fontsize=8)
        ax.set_title(title + f"\noutput bias {p[3][0, 0]:+.1f}", fontsize=8)
    fig.suptitle(
        "6-bit symmetry, 6-2-1: mirror-image weights (white +, black −; area ∝ |w|)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_family_encodings(runs: Sequence[tuple[str, Run]], path: Path) -> Path:
    """Nature Fig. 4: the weights from the 24 people to each of the 6 person units (top row of a
    unit: the English, bottom: the Italians, in ``FAMILY_PEOPLE`` order), one row of panels per
    run (the best-trained seed of each)."""
    fig, _ = _figure(16, 1.7 * len(runs) + 0.5)
    names = [f"{a[:3]}/{b[:3]}" for a, b in zip(C.FAMILY_PEOPLE[:12], C.FAMILY_PEOPLE[12:])]
    for r, (label, run) in enumerate(runs):
        last = np.nonzero(~np.isnan(run.extra["train_correct"][0]))[0][-1]
        best = int(np.argmax(run.extra["train_correct"][:, last]))
        W = run.params[0][best, :24, :]  # (24, 6)
        enc = encoding_stats(W[None])
        vmax = float(np.abs(W).max()) or 1.0
        for u in range(6):
            ax = fig.add_subplot(len(runs), 6, r * 6 + u + 1)
            hinton(ax, W[:, u].reshape(2, 12), vmax)
            w = W[:, u]
            ne = abs(np.corrcoef(w, ENGLISH)[0, 1]) if w.std() > 0 else 0.0
            ge = abs(np.corrcoef(w, GENERATION)[0, 1]) if w.std() > 0 else 0.0
            ax.set_title(f"unit {u + 1}: |r| nat {ne:.2f}, gen {ge:.2f}", fontsize=7)
            if u == 0:
                ax.set_yticks([0, 1])
                ax.set_yticklabels(["Eng", "Ita"], fontsize=7)
            ax.set_xticks(range(12))
            ax.set_xticklabels(names, fontsize=5, rotation=90)
        fig.text(0.005, 1 - (r + 0.6) / len(runs), f"{label}\nseed {run.seeds[best]}, train {run.extra['train_correct'][best, last]:.0f}/100\nmax |w| {vmax:.2f}",
                 fontsize=7, va="center")  # fmt: skip
        del enc
    fig.suptitle(
        "Family trees: weights from person 1 to the 6 person units (white +, black −)", fontsize=10
    )
    fig.tight_layout(rect=(0.1, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    return path


def plot_family_curves(runs: dict[str, Run], path: Path) -> Path:
    """Training cases right (median and 25–75 % band over seeds) and E per sweep, per variant."""
    from matplotlib import colormaps  # noqa: PLC0415

    fig, _ = _figure(12, 5.5)
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (label, run) in enumerate(runs.items()):
        tr = run.extra["train_correct"]
        n = np.nonzero(~np.isnan(tr[0]))[0][-1] + 1
        x = np.arange(n)
        c = colormaps["tab20"](2 * i % 20 + (2 * i // 20))
        (ln,) = a1.plot(x, np.median(tr[:, :n], 0), lw=1.2, label=label, color=c)
        a1.fill_between(
            x,
            np.percentile(tr[:, :n], 25, 0),
            np.percentile(tr[:, :n], 75, 0),
            color=ln.get_color(),
            alpha=0.15,
        )
        a2.plot(x, np.median(run.curves[:, :n], 0), lw=1, color=ln.get_color())
    a1.set_xlabel("sweeps")
    a1.set_ylabel("training cases right (of 100)")
    a2.set_xlabel("sweeps")
    a2.set_ylabel("E (median)")
    a2.set_yscale("log")
    fig.legend(fontsize=7, loc="lower center", ncol=3)
    fig.suptitle("Family trees: the published schedule and changes to it", fontsize=10)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=100)
    return path


def plot_encoder(run: Run, model: Any, X: np.ndarray, path: Path, n: int = 6) -> Path:
    """8-3-8 encoder: the hidden code of each of the 8 patterns, for some solved seeds (PDP Table 5)."""
    idx = np.nonzero(run.solved)[0][:n]
    fig, _ = _figure(2.2 * max(1, len(idx)), 3.2)
    for k, i in enumerate(idx):
        (h,) = _hidden_acts(model, _sel(run.params, np.array([i])), X)
        ax = fig.add_subplot(1, max(1, len(idx)), k + 1)
        ax.imshow(h[0], cmap="gray", vmin=0, vmax=1)
        for (a, b), v in np.ndenumerate(h[0]):
            ax.text(b, a, f"{v:.1f}", ha="center", va="center", fontsize=6, color="red")
        ax.set_xticks([])
        ax.set_yticks(range(8))
        ax.set_yticklabels([f"{1 << (7 - j):08b}" for j in range(8)], fontsize=6)
        ax.set_title(f"seed {run.seeds[i]}", fontsize=8)
    fig.suptitle("8-3-8 encoder: hidden codes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_tc(run: Run, path: Path, n: int = 8) -> Path:
    """T-C: the shared 3×3 kernel of some solved seeds (PDP Fig. 15)."""
    idx = np.nonzero(run.solved)[0][:n]
    fig, _ = _figure(1.8 * max(1, len(idx)), 2.4)
    for k, i in enumerate(idx):
        ax = fig.add_subplot(1, max(1, len(idx)), k + 1)
        hinton(ax, run.params[0][i].reshape(3, 3))
        ax.set_title(f"seed {run.seeds[i]}\nbias {run.params[1][i, 0]:+.1f}", fontsize=7)
    fig.suptitle("T-C: learned shared 3×3 kernels (white +, black −)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
