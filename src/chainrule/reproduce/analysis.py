"""What a set of runs shows: the structure of the solutions found, summary statistics, and
the verdict against the published figures (``run_experiment``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .nets import Run, train
from .problems import ENGLISH, GENERATION, Experiment


def _hidden_acts(model: Any, params: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    _, cache = model.forward(params, X)
    return model.hidden(cache)


def _sel(params: list[np.ndarray], idx: np.ndarray) -> list[np.ndarray]:
    return [p[idx] for p in params]


def mirror_structure(params: list[np.ndarray]) -> dict[str, Any]:
    """For 6-2-1 symmetry nets (params of S seeds): which have PDP Fig. 9's structure — in each
    hidden unit the weights of mirror-image inputs equal in size and opposite in sign (within 15 %
    of the largest weight), and the two hidden units' patterns opposite (correlation < −0.9) —
    and the median sizes of the outer : middle : inner pairs (published 1 : 2 : 4)."""
    W = params[0]  # (S, 6, 2)
    big = np.abs(W).max(1)  # (S, 2)
    anti = (np.abs(W + W[:, ::-1, :]).max(1) / big < 0.15).all(1)
    a, b = W[:, :, 0], W[:, :, 1]
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    corr = (ac * bc).sum(1) / np.sqrt((ac**2).sum(1) * (bc**2).sum(1))
    ok = anti & (corr < -0.9)
    pairs = np.abs(W[:, :3, :] - W[:, ::-1, :][:, :3, :]) / 2  # (S, 3, 2): outer, middle, inner
    ratio = pairs / pairs[:, :1, :]
    med = np.median(ratio[ok], axis=(0, 2)) if ok.any() else np.full(3, np.nan)
    return {"mirror": ok, "ratio": med}


def _struct_symmetry(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    sol = run.solved
    if not sol.any():
        return ""
    m = mirror_structure(_sel(run.params, sol))
    r = m["ratio"]
    return f"mirror-image weights, A ≈ −B: {m['mirror'].sum()}/{sol.sum()} solved; |w| outer:middle:inner = 1 : {r[1]:.1f} : {r[2]:.1f}"


def _struct_xor221(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    bad = ~run.solved
    if not bad.any():
        return "no failures"
    y, _ = model.forward(_sel(run.params, bad), X)
    half = (np.abs(y[..., 0] - 0.5) < 0.15).sum(1) == 2
    right = (np.abs(y[..., 0] - T[:, 0]) < 0.5).sum(1) >= 2
    return f"{int((half & right).sum())}/{int(bad.sum())} failures are PDP's minimum (two patterns at 0.5, two right)"


def _struct_parity(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    sol = run.solved
    if not sol.any():
        return ""
    (h,) = _hidden_acts(model, _sel(run.params, sol), X)
    ones = X.sum(1).astype(int)
    hb = h > 0.5
    counting = np.ones(len(h), bool)
    for k in range(X.shape[1] + 1):
        g = hb[:, ones == k, :]
        counting &= (g == g[:, :1, :]).all((1, 2))
    return f"hidden units depend only on the number of 1s (Table 3): {counting.sum()}/{sol.sum()} solved"


def _struct_encoder(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    sol = run.solved
    if not sol.any():
        return ""
    (h,) = _hidden_acts(model, _sel(run.params, sol), X)
    inter = ((h > 0.3) & (h < 0.7)).any((1, 2))
    return f"codes with an intermediate value (0.3–0.7; Table 5 uses .5): {inter.sum()}/{sol.sum()} solved"


def _struct_addition(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    bad = ~run.solved
    if not bad.any():
        return "no failures"
    y, _ = model.forward(_sel(run.params, bad), X)
    wrong = (np.abs(y - T) > 0.5).any(-1)  # (S, P)
    sigs: dict[str, int] = {}
    for w, yy in zip(wrong, y):
        key = ", ".join(
            f"{int(X[p, 0])}{int(X[p, 1])}+{int(X[p, 2])}{int(X[p, 3])}→{''.join(str(int(v > 0.5)) for v in yy[p])}"
            for p in np.nonzero(w)[0]
        )
        sigs[key or "(none wrong; not within the margin)"] = (
            sigs.get(key or "(none wrong; not within the margin)", 0) + 1
        )
    top = sorted(sigs.items(), key=lambda kv: -kv[1])[:2]
    top = [(k if k.count(",") < 3 else f"{k.count(',') + 1} sums wrong", v) for k, v in top]
    pub = sigs.get("11+11→100", 0)
    return f"{pub}/{int(bad.sum())} failures are PDP's (11+11→100); most common: " + "; ".join(
        f"{k} ×{v}" for k, v in top
    )


def _struct_dist_local(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    sol = run.solved
    if not sol.any():
        return ""
    (h, _) = _hidden_acts(model, _sel(run.params, sol), X)
    v = np.sort(h[..., 0], 1)
    return (
        "the single hidden unit's 4 values (median, sorted): "
        + ", ".join(f"{x:.2f}" for x in np.median(v, 0))
        + " (Table 7: ≈ 0, .2, .6, 1)"
    )


def _struct_tc(model: Any, run: Run, X: np.ndarray, T: np.ndarray) -> str:
    sol = run.solved
    if not sol.any():
        return ""
    (h,) = _hidden_acts(model, _sel(run.params, sol), X)
    off = (h < 0.5).sum(-1)  # (S, 8)
    return f"hidden units off for a T / a C (median): {np.median(off[:, :4]):.0f} / {np.median(off[:, 4:]):.0f} of {h.shape[-1]}"


_STRUCTURE: dict[str, Callable[..., str]] = {
    "symmetry": _struct_symmetry,
    "xor-2-2-1": _struct_xor221,
    "parity": _struct_parity,
    "encoder": _struct_encoder,
    "addition": _struct_addition,
    "dist-to-local": _struct_dist_local,
    "t-c": _struct_tc,
}


def summarize(run: Run) -> dict[str, Any]:
    """Seeds, failures (criterion never met within the cap) and sweeps-to-solution statistics."""
    n = len(run.sweeps)
    s = run.sweeps[run.solved].astype(float)
    nan = float("nan")
    q = np.percentile(s, [5, 25, 50, 75, 95]) if len(s) else [nan] * 5
    return {
        "seeds": n,
        "solved": int(len(s)),
        "failures": n - int(len(s)),
        "failure_rate": (n - len(s)) / n if n else nan,
        "failure_ci": _wilson(n - len(s), n),
        "median": q[2], "q25": q[1], "q75": q[3], "p5": q[0], "p95": q[4],
        "min": s.min() if len(s) else nan, "max": s.max() if len(s) else nan,
        "mean": s.mean() if len(s) else nan,
    }  # fmt: skip


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def _verdict(exp: Experiment, st: dict) -> str:
    """Where the published single-run count falls among our solved runs."""
    if exp.pub_sweeps is None or not st["solved"]:
        return "–"
    if exp.key.startswith("negation"):  # published as an upper bound
        return "consistent (< 5,000)" if st["p95"] < exp.pub_sweeps else "slower than published"
    if exp.key.startswith("t-c"):  # published as a range
        lo, hi = 5000, 10000
        return (
            "overlaps"
            if st["q75"] >= lo and st["q25"] <= hi
            else ("faster" if st["q75"] < lo else "slower")
        )
    if exp.key.startswith("xor-2-2-1"):  # Chauvin's mean
        return f"our mean {st['mean']:.0f} vs 245"
    if st["p5"] <= exp.pub_sweeps <= st["p95"]:
        return "within our 5–95 % range"
    return "beyond seed spread: " + (
        "we are slower" if exp.pub_sweeps < st["p5"] else "we are faster"
    )


def run_experiment(
    exp: Experiment, seeds: Sequence[int], max_sweeps: int | None = None
) -> tuple[Run, dict[str, Any]]:
    """Train ``exp`` from every seed; returns the run and a summary (with a ``structure`` note)."""
    X, T = exp.arrays()
    model = exp.build()
    kw = exp.kwargs()
    if max_sweeps is not None:
        kw["max_sweeps"] = min(kw["max_sweeps"], max_sweeps)
    run = train(model, X, T, seeds, **kw)
    st = summarize(run)
    st["cap"] = kw["max_sweeps"]
    st["structure"] = next(
        (f(model, run, X, T) for k, f in _STRUCTURE.items() if exp.key.startswith(k)), ""
    )
    st["verdict"] = _verdict(exp, st)
    return run, st


def encoding_stats(W: np.ndarray) -> dict[str, np.ndarray]:
    """For person-encoding weights W (S, 24 people, 6 units): per seed, the largest |correlation|
    over the 6 units of a unit's weights with nationality (English/Italian) and with generation."""

    def corr(v: np.ndarray) -> np.ndarray:
        a = W - W.mean(1, keepdims=True)
        b = (v - v.mean())[None, :, None]
        return np.abs((a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum() + 1e-300))

    return {"nationality": corr(ENGLISH).max(1), "generation": corr(GENERATION).max(1)}
