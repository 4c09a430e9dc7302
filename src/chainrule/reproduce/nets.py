"""The 1986 networks and their training rule, vectorised over seeds: ``Net`` / ``TCNet``,
the error derivative and stopping criteria, and ``train`` (see ``rhw1986``'s docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function 1 / (1 + e^(−x)) (Nature eq. 2)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


class Net:
    """Groups of logistic units; group 0 is the input, the last group the output.

    ``conns`` lists (source group, destination group) pairs with source < destination (so skip
    links are allowed and there are no loops); ``masks`` optionally restricts a connection to
    some unit pairs ({(src, dst): 0/1 array of shape (n_src, n_dst)}). Every non-input group has a
    bias (a weight from an always-on unit). Parameters, in order: one weight array (n_src, n_dst)
    per connection, then one bias vector per non-input group; each with a leading seed axis.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        conns: Sequence[tuple[int, int]] | None = None,
        masks: dict[tuple[int, int], np.ndarray] | None = None,
        name: str = "",
    ) -> None:
        self.sizes = tuple(int(n) for n in sizes)
        G = len(self.sizes)
        self.conns = tuple(conns) if conns is not None else tuple((g, g + 1) for g in range(G - 1))
        for s, d in self.conns:
            if not 0 <= s < d < G:
                raise ValueError(f"connection {s}->{d}: needs 0 <= source < destination < {G}")
        masks = masks or {}
        self.shapes = [(self.sizes[s], self.sizes[d]) for s, d in self.conns] + [
            (self.sizes[g],) for g in range(1, G)
        ]
        self.masks: list[np.ndarray | None] = [
            (np.asarray(masks[c], np.float64) if c in masks else None) for c in self.conns
        ] + [None] * (G - 1)
        self.name = name

    @classmethod
    def layered(cls, *sizes: int, skip: bool = False, name: str = "") -> Net:
        """A chain of groups; ``skip=True`` adds direct input -> output connections."""
        conns = [(g, g + 1) for g in range(len(sizes) - 1)]
        if skip:
            conns.append((0, len(sizes) - 1))
        return cls(sizes, conns, name=name)

    @property
    def n_params(self) -> int:
        return int(
            sum(np.prod(s) if m is None else m.sum() for s, m in zip(self.shapes, self.masks))
        )

    def init(self, rngs: Sequence[np.random.Generator], r: float) -> list[np.ndarray]:
        """Every weight and bias uniform in [−r, r], drawn per seed from its own generator."""
        out = []
        for shape, mask in zip(self.shapes, self.masks):
            a = np.stack([g.uniform(-r, r, shape) for g in rngs]) if rngs else np.zeros((0, *shape))
            out.append(a if mask is None else a * mask)
        return out

    def forward(self, params: Sequence[np.ndarray], X: np.ndarray) -> tuple[np.ndarray, list]:
        """X: (P, n_in) shared by all seeds, or (S, P, n_in). Returns y (S, P, n_out) and the
        activities of every group (the cache for ``backward``)."""
        nc = len(self.conns)
        acts = [X]
        for g in range(1, len(self.sizes)):
            net = params[nc + g - 1][:, None, :]
            for k, (s, d) in enumerate(self.conns):
                if d == g:
                    net = net + acts[s] @ params[k]
            acts.append(sigmoid(net))
        return acts[-1], acts

    def backward(
        self, params: Sequence[np.ndarray], acts: list, dy: np.ndarray
    ) -> list[np.ndarray]:
        """∂E/∂(every parameter) given ∂E/∂y (S, P, n_out), summed over the P cases (Nature
        eqs 4–7)."""
        G = len(self.sizes)
        deltas: list[Any] = [None] * G
        y = acts[-1]
        deltas[-1] = dy * y * (1.0 - y)
        for g in range(G - 2, 0, -1):
            acc = 0.0
            for k, (s, d) in enumerate(self.conns):
                if s == g:
                    acc = acc + deltas[d] @ params[k].swapaxes(-1, -2)
            deltas[g] = acc * acts[g] * (1.0 - acts[g])
        grads = []
        for k, (s, d) in enumerate(self.conns):
            gk = acts[s].swapaxes(-1, -2) @ deltas[d]
            grads.append(gk if self.masks[k] is None else gk * self.masks[k])
        grads += [deltas[g].sum(1) for g in range(1, G)]
        return grads

    def hidden(self, acts: list) -> list[np.ndarray]:
        return acts[1:-1]


class TCNet:
    """PDP ch. 8's T-C net (pp. 348–352): a binary retina (an n×n torus; n = 5 by default: 25
    hidden units, and PDP Fig. 15's compactness detector turns off 21 of them), one hidden unit per
    position, each looking at the 3×3 patch around it through one shared set of 9 weights and a
    shared bias (weight sharing: the gradients of the tied copies are summed and the same change is
    applied to all), all hidden units feeding one output through one shared weight (our reading:
    that is what makes the net position-invariant, so that presenting the 8 patterns at one
    position is enough), and an output bias. Parameters: kernel (9,), hidden bias (1,), output
    weight (1,), output bias (1,)."""

    def __init__(self, n: int = 5) -> None:
        self.n = n
        r, c = np.divmod(np.arange(n * n), n)
        offs = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
        self.idx = np.stack([((r + dr) % n) * n + (c + dc) % n for dr, dc in offs], 1)  # (H, 9)
        self.shapes = [(9,), (1,), (1,), (1,)]
        self.masks: list[np.ndarray | None] = [None] * 4
        self.name = f"T-C, {n}x{n} torus, shared 3x3 kernel"
        self.n_params = 12

    def init(self, rngs: Sequence[np.random.Generator], r: float) -> list[np.ndarray]:
        return [np.stack([g.uniform(-r, r, s) for g in rngs]) for s in self.shapes]

    def forward(self, params: Sequence[np.ndarray], X: np.ndarray) -> tuple[np.ndarray, tuple]:
        k, bh, wo, bo = params
        U = X[..., self.idx]  # (P, H, 9) or (S, P, H, 9)
        sub = "phk" if U.ndim == 3 else "sphk"
        h = sigmoid(np.einsum(f"{sub},sk->sph", U, k) + bh[:, :, None])
        y = sigmoid(wo * h.sum(-1) + bo)[..., None]  # (S, P, 1)
        return y, (U, h, y)

    def backward(
        self, params: Sequence[np.ndarray], cache: tuple, dy: np.ndarray
    ) -> list[np.ndarray]:
        k, bh, wo, bo = params
        U, h, y = cache
        do = (dy * y * (1 - y))[..., 0]  # (S, P)
        dh = do[..., None] * wo[:, :, None] * h * (1 - h)  # (S, P, H)
        sub = "phk" if U.ndim == 3 else "sphk"
        return [
            np.einsum(f"{sub},sph->sk", U, dh),
            dh.sum((1, 2))[:, None],
            (do * h.sum(-1)).sum(1)[:, None],
            do.sum(1)[:, None],
        ]

    def hidden(self, cache: tuple) -> list[np.ndarray]:
        return [cache[1]]


# ------------------------------------------------------------------------ error and criteria


def error_derivative(
    y: np.ndarray, d: np.ndarray, margin: tuple[str, float] | None = None
) -> np.ndarray:
    """∂E/∂y for E = ½ Σ (y − d)², optionally with a margin m (an "on" target is d > 0.5):

    - ``("nature", m)`` (Nature Fig. 4 caption): zero for an on-unit above 1 − m and an off-unit
      below m, otherwise y − d;
    - ``("pdp", m)`` (PDP p. 359): zero inside the margin, otherwise the distance to it
      (y − (1 − m) for an on-unit below 1 − m, y − m for an off-unit above m).
    """
    if margin is None:
        return y - d
    kind, m = margin
    on = d > 0.5
    if kind == "nature":
        inside = np.where(on, y > 1 - m, y < m)
        return np.where(inside, 0.0, y - d)
    if kind == "pdp":
        return np.where(on, np.minimum(y - (1 - m), 0.0), np.maximum(y - m, 0.0))
    raise ValueError(f"margin kind {kind!r}: use 'nature' or 'pdp'")


def criterion_met(
    y: np.ndarray, d: np.ndarray, criterion: tuple[str, float], mask: np.ndarray | None = None
) -> np.ndarray:
    """Per seed (S,): every (unmasked) case meets the stopping criterion.

    - ``("margin", m)``: every on-output above 1 − m and every off-output below m (m = 0.2: the
      papers' 0.8/0.2 margin; both published solutions, PDP Figs 3 and 9, meet it);
    - ``("pattern_error", v)``: E_p = ½ Σ_j (d − y)² below v for every pattern (Chauvin's
      "error 0.01 per pattern", PDP p. 333, read as E_p < 0.01);
    - ``("correct", 0.5)``: every on-output above 0.5 and every off-output below 0.5.
    """
    kind, v = criterion
    if kind == "margin":
        ok = np.where(d > 0.5, y > 1 - v, y < v).all(-1)
    elif kind == "correct":
        ok = np.where(d > 0.5, y > v, y < v).all(-1)
    elif kind == "pattern_error":
        ok = 0.5 * ((y - d) ** 2).sum(-1) < v
    else:
        raise ValueError(f"criterion {kind!r}: use 'margin', 'correct' or 'pattern_error'")
    if mask is not None:
        ok = ok | (mask == 0)
    return ok.all(-1)


# ------------------------------------------------------------------------------- training


@dataclass
class Run:
    """The outcome of ``train`` for S seeds."""

    seeds: np.ndarray  # (S,)
    sweeps: np.ndarray  # (S,) sweeps to the criterion (restarts included), -1 if never met
    curves: np.ndarray  # (S, max_sweeps + 1): E after each sweep (0: initial); NaN after stop
    params: list[np.ndarray]  # at the stop (criterion met) or the end
    init: list[np.ndarray]  # the first initial weights
    restarts: np.ndarray  # (S,)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # monitor values (S, max_sweeps + 1)
    wall: float = 0.0

    @property
    def solved(self) -> np.ndarray:
        return self.sweeps >= 0


def _schedule(
    lr: float, momentum: float, schedule: Sequence[tuple[int, float, float]] | None
) -> Callable[[int], tuple[float, float]]:
    if not schedule:
        return lambda t: (lr, momentum)
    pieces = sorted(schedule)

    def at(t: int) -> tuple[float, float]:
        e, a = pieces[0][1], pieces[0][2]
        for start, e2, a2 in pieces:
            if t >= start:
                e, a = e2, a2
        return e, a

    return at


def train(
    model: Any,
    X: np.ndarray,
    T: np.ndarray,
    seeds: Sequence[int],
    *,
    mode: str = "batch",
    lr: float = 0.5,
    momentum: float = 0.9,
    init: float = 0.3,
    max_sweeps: int = 5000,
    criterion: tuple[str, float] = ("margin", 0.2),
    margin: tuple[str, float] | None = None,
    decay: float = 0.0,
    schedule: Sequence[tuple[int, float, float]] | None = None,
    stop: bool = True,
    train_mask: np.ndarray | None = None,
    optimizer: str = "sgd",
    adam_betas: tuple[float, float] = (0.9, 0.999),
    adam_eps: float = 1e-8,
    restart_every: int | None = None,
    order: str = "fixed",
    monitor: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None,
) -> Run:
    """Train ``model`` from ``len(seeds)`` random starts at once.

    X (P, n_in), T (P, n_out): all cases; ``train_mask`` (S, P) of 0/1 keeps some cases out of
    training (and out of the criterion) per seed. ``mode``: ``"batch"`` (one change per sweep from
    ∂E/∂w summed over the cases) or ``"pattern"`` (one change per case, cases in data order —
    ``order="permuted"`` for a fresh per-seed order each sweep). The rule is
    Δw = −ε g + α Δw_prev, w += Δw, then, if ``decay``, w *= 1 − decay (every weight, biases
    included, after each change: the family-trees run's 0.2 %); ``schedule`` = [(first sweep, ε,
    α), ...] overrides ``lr``/``momentum``. ``optimizer="adam"`` uses Adam with ``lr`` instead
    (a remedy, not the papers'). ``margin``: see ``error_derivative``.

    After each sweep the whole net is evaluated on all cases: E (without margin) is recorded, and a
    seed that meets ``criterion`` records its sweep count and (``stop=True``) stops.
    ``restart_every=K`` re-draws the weights (from the seed's generator) of a seed still unsolved
    after K sweeps since its last start; its sweep count keeps running. ``monitor(y, rows)``,
    called after each sweep with the outputs (S_active, P, n_out) and the seeds' rows, returns
    named per-seed values to record in ``Run.extra``.
    """
    t0 = time.perf_counter()
    X = np.asarray(X, np.float64)
    T = np.asarray(T, np.float64)
    S, P = len(seeds), len(X)
    if mode not in ("batch", "pattern"):
        raise ValueError(f"mode {mode!r}: use 'batch' or 'pattern'")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer {optimizer!r}: use 'sgd' or 'adam'")
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    order_rngs = [np.random.default_rng([int(s), 1]) for s in seeds]
    params = model.init(rngs, init)
    first = [p.copy() for p in params]
    vel = [np.zeros_like(p) for p in params]
    sq = [np.zeros_like(p) for p in params] if optimizer == "adam" else None
    steps = np.zeros(S)
    full_mask = None if train_mask is None else np.asarray(train_mask, np.float64)
    at = _schedule(lr, momentum, schedule)

    rows = np.arange(S)
    sweeps = np.full(S, -1)
    since = np.zeros(S, int)
    restarts = np.zeros(S, int)
    curves = np.full((S, max_sweeps + 1), np.nan)
    extra: dict[str, np.ndarray] = {}
    final = [np.empty_like(p) for p in params]

    def step(g: list[np.ndarray], eps: float, alpha: float) -> None:
        if optimizer == "sgd":
            for p, v, gi in zip(params, vel, g):
                v *= alpha
                v -= eps * gi
                p += v
        else:
            b1, b2 = adam_betas
            steps[:] += 1
            for p, m, s2, gi in zip(params, vel, sq, g):
                m *= b1
                m += (1 - b1) * gi
                s2 *= b2
                s2 += (1 - b2) * gi * gi
                sh = (-1,) + (1,) * (p.ndim - 1)
                mhat = m / (1 - b1 ** steps.reshape(sh))
                vhat = s2 / (1 - b2 ** steps.reshape(sh))
                p -= eps * mhat / (np.sqrt(vhat) + adam_eps)
        if decay:
            for p in params:
                p *= 1.0 - decay

    def evaluate(t: int) -> np.ndarray:
        y, _ = model.forward(params, X)
        m = None if full_mask is None else full_mask[rows]
        e = 0.5 * (y - T) ** 2
        curves[rows, t] = (e.sum(-1) * (1 if m is None else m)).sum(-1)
        if monitor is not None:
            for name, val in monitor(y, rows).items():
                extra.setdefault(name, np.full((S, max_sweeps + 1), np.nan))[rows, t] = val
        return criterion_met(y, T, criterion, m)

    def keep(sel: np.ndarray) -> None:
        nonlocal rows, steps
        for lst in (params, vel) + ((sq,) if sq is not None else ()):
            lst[:] = [a[sel] for a in lst]
        rows, steps = rows[sel], steps[sel]

    def finish(ok: np.ndarray, t: int) -> None:
        new = ok & (sweeps[rows] < 0)
        sweeps[rows[new]] = t
        if stop and ok.any():
            for f, p in zip(final, params):
                f[rows[ok]] = p[ok]
            keep(~ok)

    finish(evaluate(0), 0)
    for t in range(1, max_sweeps + 1):
        if not len(rows):
            break
        eps, alpha = at(t - 1)
        m = None if full_mask is None else full_mask[rows]
        if mode == "batch":
            y, cache = model.forward(params, X)
            dy = error_derivative(y, T, margin)
            if m is not None:
                dy = dy * m[:, :, None]
            step(model.backward(params, cache, dy), eps, alpha)
        else:
            if order == "permuted":
                perm = np.stack([order_rngs[r].permutation(P) for r in rows])
            for k in range(P):
                if order == "permuted":
                    pk = perm[:, k]
                    x1, d1 = X[pk][:, None, :], T[pk][:, None, :]
                    m1 = None if m is None else m[np.arange(len(rows)), pk][:, None, None]
                else:
                    x1, d1 = X[k : k + 1], T[k : k + 1]
                    m1 = None if m is None else m[:, k : k + 1, None]
                y, cache = model.forward(params, x1)
                dy = error_derivative(y, d1, margin)
                if m1 is not None:
                    dy = dy * m1
                step(model.backward(params, cache, dy), eps, alpha)
        since[rows] += 1
        finish(evaluate(t), t)
        if restart_every and len(rows) and t < max_sweeps:
            due = (since[rows] >= restart_every) & (sweeps[rows] < 0)
            if due.any():
                fresh = model.init([rngs[r] for r in rows[due]], init)
                for p, v, f in zip(params, vel, fresh):
                    p[due] = f
                    v[due] = 0
                if sq is not None:
                    for s2 in sq:
                        s2[due] = 0
                    steps[due] = 0
                since[rows[due]] = 0
                restarts[rows[due]] += 1
    for f, p in zip(final, params):
        f[rows] = p
    return Run(
        np.asarray(seeds), sweeps, curves, final, first, restarts, extra, time.perf_counter() - t0
    )
