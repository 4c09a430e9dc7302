"""The 1986 backpropagation experiments, reproduced over many seeds.

Sources: Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors",
Nature 323:533–536 (1986) ("Nature"), and "Learning internal representations by error
propagation", PDP vol. 1 ch. 8 (1986) ("PDP"); what each says, and what neither states, is
collected in ``shared/design/classic-experiments.md``.

The networks are the papers': logistic units, biases as weights from an always-on unit,
sum-squared error E = ½ Σ_cases Σ_outputs (y − d)², connections from any lower group of units to
any higher one (skip links), masked connections (family trees) and shared weights (T-C). They are
trained by the papers' rule

    Δw(t) = −ε ∂E/∂w + α Δw(t−1)

in one of two modes:

- ``"batch"`` (Nature): ∂E/∂w summed (not averaged) over all cases, one change per sweep;
- ``"pattern"`` (PDP eq. 16): one change after each pattern, ∂E_p/∂w, with the momentum term
  carried from presentation to presentation (and across sweeps).

A "sweep" is one pass through the training cases in either mode (PDP's "presentations of each
pattern"). The nets are tiny, so the fast path here is plain NumPy, vectorised over seeds: every
array has a leading seed axis and all seeds step together (each seed's arithmetic is exactly the
rule above; seeds that reach the stopping criterion leave the batch). Seed ``s`` draws its initial
weights from ``numpy.random.default_rng(s)``, so a seed's run does not depend on which other seeds
it was batched with. ``tests/test_reproduce.py`` checks this path against ``chainrule.nn`` +
``chainrule.optim.SGD`` (momentum in PyTorch's convention equals the 1986 rule for a constant ε).

``main(out)`` runs everything and writes the tables (Markdown + CSV) and figures (PNG).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data.datasets import classic1986 as C
from .analysis import _sel as _sel  # re-exported for the tests, as are the other `X as X`
from .analysis import mirror_structure as mirror_structure
from .analysis import run_experiment
from .nets import Net, Run, TCNet, criterion_met, error_derivative, sigmoid, train
from .problems import (
    EXPERIMENTS,
    PDP_SYMMETRY_WEIGHTS,
    PDP_XOR_WEIGHTS,
    Experiment,
    _arrays,
    published_symmetry_net,
    published_xor_net,
)
from .problems import (
    family_trees_net as family_trees_net,
)
from .report import (
    _fmt,
    _md,
    _write_csv,
    plot_encoder,
    plot_family_curves,
    plot_family_encodings,
    plot_learning_curves,
    plot_symmetry,
    plot_tc,
    sweeps_table,
)
from .studies import (
    CHAUVIN,
    CHAUVIN_SETTINGS,
    FT_SMALLEST,
    FT_VARIANTS,
    chauvin,
    family_trees,
    order_table,
    remedies,
)
from .studies import (
    REMEDIES as REMEDIES,
)
from .studies import (
    family_split as family_split,
)

__all__ = [
    "Net",
    "TCNet",
    "Run",
    "train",
    "sigmoid",
    "error_derivative",
    "criterion_met",
    "EXPERIMENTS",
    "Experiment",
    "run_experiment",
    "sweeps_table",
    "family_trees",
    "remedies",
    "PDP_XOR_WEIGHTS",
    "PDP_SYMMETRY_WEIGHTS",
    "published_xor_net",
    "published_symmetry_net",
    "main",
]


# ============================================================================ main

SECTIONS = ("published", "sweeps", "chauvin", "order", "family", "remedies")


def published_forward() -> tuple[list[str], list[list[Any]]]:
    """The published PDP nets' outputs, from their printed weights."""
    net, p = published_xor_net()
    X, T = _arrays(C.xor())
    y, _ = net.forward(p, X)
    rows = [["XOR 2-1-1 + links (PDP Fig. 3)", "00 01 10 11 → " + " ".join(f"{v:.3f}" for v in y[0, :, 0]), "(0.103, 0.877, 0.877, 0.109)",
             "yes" if criterion_met(y, T, ("margin", 0.2))[0] else "no"]]  # fmt: skip
    net, p = published_symmetry_net()
    X, T = _arrays(C.symmetry(n=6))
    y, _ = net.forward(p, X)
    on = T[:, 0] > 0.5
    E = 0.5 * ((y[0] - T) ** 2).sum()
    rows.append([
        "symmetry 6-2-1 (PDP Fig. 9)",
        f"palindromes [{y[0, on, 0].min():.3f}, {y[0, on, 0].max():.3f}], others [{y[0, ~on, 0].min():.3f}, {y[0, ~on, 0].max():.3f}], E = {E:.4f}",
        "[0.857, 0.872], [0.072, 0.169], E = 0.3541", "yes" if criterion_met(y, T, ("margin", 0.2))[0] else "no",
    ])  # fmt: skip
    return [
        "published net",
        "our forward pass",
        "expected (classic-experiments.md §1.4)",
        "meets our stop rule",
    ], rows


def main(
    out: str | Path = "runs/reproduce-rhw1986",
    seeds: int = 50,
    quick: bool = False,
    sections: Sequence[str] = SECTIONS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the reproduction and write ``results.md``, one CSV per table and the PNG figures to
    ``out``. ``quick``: 3 seeds, at most 200 sweeps per run (a smoke test, not a result)."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if quick:
        seeds = min(seeds, 3)
    S = list(range(seeds))
    cap = 200 if quick else None
    md = [
        "# Rumelhart, Hinton & Williams (1986), reproduced",
        "",
        f"`chainrule reproduce rhw1986 --seeds {seeds}{' --quick' if quick else ''}`: seeds 0–{seeds - 1}; "
        "a sweep is one pass through the training cases; 'failed' = the stop rule not met within the cap.",
        "",
    ]
    tables: dict[str, Any] = {}

    def table(
        name: str, title: str, headers: list[str], rows: list[list[Any]], note: str = ""
    ) -> None:
        _write_csv(out / f"{name}.csv", headers, rows)
        md.extend(
            [f"## {title}", "", note, "", _md(headers, rows), ""]
            if note
            else [f"## {title}", "", _md(headers, rows), ""]
        )
        tables[name] = (headers, rows)
        log(f"\n{title}\n" + _md(headers, rows))

    if "published" in sections:
        table("published_weights", "Forward passes of the published nets", *published_forward())
    if "sweeps" in sections:
        results, runs = [], []
        for e in EXPERIMENTS:
            run, st = run_experiment(e, S, cap)
            results.append((e, st))
            runs.append((e, run))
            log(
                f"rhw1986: {e.key}: {st['failures']}/{st['seeds']} failed, median {_fmt(st['median'])} sweeps ({run.wall:.1f}s)"
            )
        table("sweeps", "Sweeps to solution", *sweeps_table(results),
              note="per pattern: PDP eq. 16, one change per case, momentum carried across presentations, "
                   "a fresh random order each sweep; per sweep: Nature, ∂E/∂w summed over all cases.")  # fmt: skip
        plot_learning_curves(runs, out / "learning_curves.png")
        sym = next(r for e, r in runs if e.key == "symmetry-6/batch")
        plot_symmetry(sym, out / "symmetry_weights.png")
        enc_e, enc = next((e, r) for e, r in runs if e.key == "encoder-8-3-8/pattern")
        plot_encoder(enc, enc_e.build(), enc_e.arrays()[0], out / "encoder_codes.png")
        plot_tc(next(r for e, r in runs if e.key == "t-c/batch"), out / "tc_kernels.png")
    if "chauvin" in sections:
        rows = CHAUVIN[:1] if quick else CHAUVIN
        sets = CHAUVIN_SETTINGS[:1] if quick else CHAUVIN_SETTINGS
        table("chauvin", "XOR 2-H-1: Chauvin's presentations to error 0.01 per pattern (PDP p. 333)",
              *chauvin(S, max_sweeps=cap or 20000, rows=rows, settings=sets),
              note="per pattern, random order; stop when E_p = ½Σ(t − o)² < 0.01 for every pattern; "
                   "mean over solved runs. Chauvin's initial weights, targets and momentum are unstated: one column each.")  # fmt: skip
    if "order" in sections:
        keys = (
            ["xor-2-2-1/pattern"]
            if quick
            else [
                "xor-2-2-1/pattern",
                "parity-4/pattern",
                "encoder-8-3-8/pattern",
                "negation/pattern",
            ]
        )
        table(
            "order",
            "Per-pattern training: the same case order every sweep vs a fresh random order",
            *order_table(S, keys, cap),
        )
    if "family" in sections:
        variants = (
            FT_VARIANTS[:1] + [v for v in FT_VARIANTS if v[0] == FT_SMALLEST]
            if quick
            else FT_VARIANTS
        )
        h, rows, ft_runs = family_trees(S, variants, max_sweeps=30 if quick else None)
        table("family_trees", "Family trees (Nature Figs 2–4)", h, rows,
              note="batch; ε 0.005, α 0.5 for 20 sweeps then ε 0.01, α 0.9; weights × 0.998 after each change; "
                   "error zero for on-units > 0.8 and off-units < 0.2; 1,500 sweeps; 100 cases trained, 4 (random per seed) tested; "
                   "'correct' = every right person's unit > 0.5 and every other < 0.5. Published: the net 'generalizes "
                   "correctly to the four triples on which it was not trained' (Nature, one run); 7 of 8 over two runs (UCI "
                   "kinship description, secondary).")  # fmt: skip
        plot_family_curves(ft_runs, out / "family_trees_curves.png")
        plot_family_encodings(
            [(k, ft_runs[k]) for k in (variants[0][0], FT_SMALLEST) if k in ft_runs],
            out / "family_trees_weights.png",
        )
    if "remedies" in sections:
        table("remedies", "Getting stuck, and remedies (XOR 2-2-1, parity 4-4-1)", *remedies(S, max_sweeps=100 if quick else None),
              note="batch, ε 0.5, U(±0.3) unless the row says otherwise; 'not solved' = some output not within 0.2 of its 0/1 target by the budget; 'flat' = E changed by < 0.1 % over the last tenth of the budget (stuck), else still improving (slow).")  # fmt: skip
    wall = time.perf_counter() - t0
    md.append(
        f"Total time: {wall:.0f} s. Figures: "
        + ", ".join(sorted(p.name for p in out.glob("*.png")))
        + "."
    )
    (out / "results.md").write_text("\n".join(md) + "\n")
    log(f"\nrhw1986: done in {wall:.0f}s; files in {out}/")
    return {"tables": tables, "wall": wall, "out": out}
