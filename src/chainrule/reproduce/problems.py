"""The 1986 experiments' definitions: the training problems, the papers' published weights,
and ``EXPERIMENTS`` with the published figures each is compared with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.datasets import classic1986 as C
from .nets import Net, TCNet


def _arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    x, t = ds.tensors
    return np.asarray(x.numpy(), np.float64), np.asarray(t.numpy(), np.float64)


def _soft(T: np.ndarray, soft: bool) -> np.ndarray:
    return 0.1 + 0.8 * T if soft else T


def distributed_to_local() -> tuple[np.ndarray, np.ndarray]:
    """PDP Tables 6–7: inputs 00, 01, 10, 11 -> outputs 1000, 0100, 0010, 0001."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    return X, np.eye(4)


def tc_patterns(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """PDP pp. 348–352: a 5-square T and a 5-square C, each in 4 orientations, in a 3×3 block of
    an n×n retina (any position is equivalent on the torus). Target 1 for T, 0 for C.
    X (8, n*n), T (8, 1)."""
    tee = np.array([[1, 1, 1], [0, 1, 0], [0, 1, 0]])
    cee = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]])
    xs, ts = [], []
    for shape, target in ((tee, 1.0), (cee, 0.0)):
        for r in range(4):
            grid = np.zeros((n, n))
            grid[1:4, 1:4] = np.rot90(shape, r)
            xs.append(grid.ravel())
            ts.append([target])
    return np.array(xs), np.array(ts)


def _net_addition(hidden: int) -> Net:
    """PDP pp. 341–346: 4 inputs, ``hidden`` single-unit hidden groups, 3 outputs; inputs -> every
    hidden unit and the outputs, every hidden unit -> the outputs and -> every later hidden unit
    (no loops)."""
    G = hidden + 2
    conns = [(0, h) for h in range(1, hidden + 1)]
    conns += [(a, b) for a in range(1, hidden + 1) for b in range(a + 1, hidden + 1)]
    conns += [(g, G - 1) for g in range(0, hidden + 1)]
    return Net([4] + [1] * hidden + [3], conns, name=f"4-{hidden}-3, all forward links")


def family_trees_net() -> Net:
    """Nature Fig. 3: person 1 (24 one-hot) -> 6 units, relationship (12 one-hot) -> its own 6
    units, both -> 12 central units -> 6 -> 24 outputs (one per person 2). Groups: 0 the 36
    inputs, 1 person-6, 2 relation-6, 3 central-12, 4 penultimate-6, 5 output-24."""
    mp = np.zeros((36, 6))
    mp[:24] = 1
    mr = np.zeros((36, 6))
    mr[24:] = 1
    return Net(
        [36, 6, 6, 12, 6, 24],
        [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (4, 5)],
        masks={(0, 1): mp, (0, 2): mr},
        name="24+12 -> 6+6 -> 12 -> 6 -> 24",
    )


# ------------------------------------------------------------- published weights (PDP figs)

#: PDP Fig. 3 (p. 331), the 558-sweep XOR net: one hidden unit plus direct input->output links.
PDP_XOR_WEIGHTS = {
    "in_hidden": (-6.4, -6.4),
    "hidden_bias": 2.2,
    "in_out": (-4.2, -4.2),
    "hidden_out": -9.4,
    "out_bias": 6.3,
}

#: PDP Fig. 9 (p. 340), the 1,208-presentation 6-bit symmetry net (hidden units A and B).
PDP_SYMMETRY_WEIGHTS = {
    "A": (-3.18, 6.32, -12.56, 12.56, -6.33, 3.17),
    "B": (3.16, -6.34, 12.52, -12.51, 6.31, -3.17),
    "hidden_bias": (-1.0, -1.0),
    "hidden_out": (-9.44, -9.44),
    "out_bias": 6.89,
}


def published_xor_net() -> tuple[Net, list[np.ndarray]]:
    """The 2-1-1 + skip net with PDP Fig. 3's weights (one seed)."""
    w = PDP_XOR_WEIGHTS
    net = Net.layered(2, 1, 1, skip=True)
    params = [
        np.array([[[w["in_hidden"][0]], [w["in_hidden"][1]]]]),
        np.array([[[w["hidden_out"]]]]),
        np.array([[[w["in_out"][0]], [w["in_out"][1]]]]),
        np.array([[w["hidden_bias"]]]),
        np.array([[w["out_bias"]]]),
    ]
    return net, params


def published_symmetry_net() -> tuple[Net, list[np.ndarray]]:
    """The 6-2-1 net with PDP Fig. 9's weights (one seed)."""
    w = PDP_SYMMETRY_WEIGHTS
    net = Net.layered(6, 2, 1)
    params = [
        np.array([np.stack([w["A"], w["B"]], 1)]),
        np.array([[[w["hidden_out"][0]], [w["hidden_out"][1]]]]),
        np.array([w["hidden_bias"]]),
        np.array([[w["out_bias"]]]),
    ]
    return net, params


# ============================================================================ the experiments


@dataclass(frozen=True)
class Experiment:
    """One row of the sweeps-to-solution table: a problem, a net, a mode, the settings, and what
    the source reports."""

    key: str
    problem: str
    net: str
    source: str
    build: Callable[[], Any]
    data: Callable[[], tuple[np.ndarray, np.ndarray]]
    mode: str
    lr: float
    momentum: float = 0.9
    init: float = 0.3
    soft_targets: bool = False
    criterion: tuple[str, float] = ("margin", 0.2)
    max_sweeps: int = 10000
    order: str = "permuted"  # per-pattern mode: a fresh random order of the cases each sweep
    published: str = ""
    pub_sweeps: float | None = None
    pub_failures: str = ""
    stated: str = ""  # which settings the source states (the rest are our choices)

    def kwargs(self) -> dict:
        return dict(
            mode=self.mode, lr=self.lr, momentum=self.momentum, init=self.init,
            criterion=self.criterion, max_sweeps=self.max_sweeps, order=self.order,
        )  # fmt: skip

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        X, T = self.data()
        return X, _soft(T, self.soft_targets)


def _ds(fn: Callable[..., Any], **kw: Any) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: _arrays(fn(**kw))


_PDP_FAIL_XOR = "2 of 'hundreds' of runs stuck, both 2-2-1"


def _both(key: str, **kw: Any) -> list[Experiment]:
    """The same experiment per pattern (PDP eq. 16) and per sweep (batch)."""
    return [
        Experiment(key=f"{key}/pattern", mode="pattern", **kw),
        Experiment(key=f"{key}/batch", mode="batch", **kw),
    ]


EXPERIMENTS: list[Experiment] = [
    *_both(
        "xor-2-1-1-skip",
        problem="XOR",
        net="2-1-1 + in->out links",
        source="PDP Fig. 3, p. 331",
        build=lambda: Net.layered(2, 1, 1, skip=True),
        data=_ds(C.xor),
        lr=0.5,
        published="558 sweeps (one run)",
        pub_sweeps=558,
        pub_failures="none for 2-1-1 (" + _PDP_FAIL_XOR + ")",
        stated="η = 0.5; α ≈ 0.9 (general statement)",
    ),
    *_both(
        "xor-2-2-1",
        problem="XOR",
        net="2-2-1",
        source="PDP pp. 332–333 (Chauvin)",
        build=lambda: Net.layered(2, 2, 1),
        data=_ds(C.xor),
        lr=0.25,
        criterion=("pattern_error", 0.01),
        published="≈ 245 presentations (Chauvin, mean, H = 2)",
        pub_sweeps=245,
        pub_failures=_PDP_FAIL_XOR,
        stated="η = 0.25; stop at error 0.01 per pattern",
    ),
    *_both(
        "parity-4",
        problem="parity (4 bits)",
        net="4-4-1",
        source="PDP pp. 334–335",
        build=lambda: Net.layered(4, 4, 1),
        data=_ds(C.parity, n=4),
        lr=0.5,
        max_sweeps=20000,
        published="2,825 presentations (one run)",
        pub_sweeps=2825,
        pub_failures="not reported",
        stated="η = 0.5",
    ),
    *_both(
        "encoder-8-3-8",
        problem="encoder",
        net="8-3-8",
        source="PDP pp. 335–337",
        build=lambda: Net.layered(8, 3, 8),
        data=_ds(C.encoder, n=8),
        lr=0.25,
        published="no numbers (codes in Table 5)",
        pub_failures="not reported",
        stated="nothing",
    ),
    Experiment(
        key="symmetry-6/batch",
        problem="symmetry (6 bits)",
        net="6-2-1",
        source="Nature Fig. 1",
        build=lambda: Net.layered(6, 2, 1),
        data=_ds(C.symmetry, n=6),
        mode="batch",
        lr=0.1,
        published="1,425 sweeps (one run)",
        pub_sweeps=1425,
        pub_failures="not reported",
        stated="batch, ε = 0.1, α = 0.9, U(±0.3)",
    ),
    Experiment(
        key="symmetry-6/pattern",
        problem="symmetry (6 bits)",
        net="6-2-1",
        source="PDP p. 340, Fig. 9",
        build=lambda: Net.layered(6, 2, 1),
        data=_ds(C.symmetry, n=6),
        mode="pattern",
        lr=0.1,
        published="1,208 presentations (one run)",
        pub_sweeps=1208,
        pub_failures="'can always be solved' with 2 hidden",
        stated="η = 0.1",
    ),
    *_both(
        "negation",
        problem="negation",
        net="4-3-3 + in->out links",
        source="PDP pp. 346–347",
        build=lambda: Net([4, 3, 3], [(0, 1), (1, 2), (0, 2)]),
        data=_ds(C.negation),
        lr=0.25,
        published="< 5,000 passes",
        pub_sweeps=5000,
        pub_failures="not reported",
        stated="η = 0.25",
    ),
    *_both(
        "addition-2h",
        problem="2-bit addition",
        net="4-2-3, all forward links",
        source="PDP pp. 341–346",
        build=lambda: _net_addition(2),
        data=_ds(C.addition, bits=2),
        lr=0.5,
        max_sweeps=20000,
        published="local minimum 'about half the time'",
        pub_failures="≈ 50 %",
        stated="(η for 3 hidden: 0.5)",
    ),
    *_both(
        "addition-3h",
        problem="2-bit addition",
        net="4-3-3, all forward links",
        source="PDP p. 345, Fig. 11",
        build=lambda: _net_addition(3),
        data=_ds(C.addition, bits=2),
        lr=0.5,
        max_sweeps=20000,
        published="3,020 presentations (one run)",
        pub_sweeps=3020,
        pub_failures="'always solves'",
        stated="η = 0.5",
    ),
    Experiment(
        key="addition-2h-a0/pattern",
        problem="2-bit addition",
        net="4-2-3, all forward links",
        source="PDP pp. 341–346",
        build=lambda: _net_addition(2),
        data=_ds(C.addition, bits=2),
        mode="pattern",
        lr=0.5,
        momentum=0.0,
        max_sweeps=20000,
        published="local minimum 'about half the time'",
        pub_failures="≈ 50 %",
        stated="(η for 3 hidden: 0.5)",
    ),
    Experiment(
        key="addition-3h-a0/pattern",
        problem="2-bit addition",
        net="4-3-3, all forward links",
        source="PDP p. 345, Fig. 11",
        build=lambda: _net_addition(3),
        data=_ds(C.addition, bits=2),
        mode="pattern",
        lr=0.5,
        momentum=0.0,
        max_sweeps=20000,
        published="3,020 presentations (one run)",
        pub_sweeps=3020,
        pub_failures="'always solves'",
        stated="η = 0.5",
    ),
    *_both(
        "dist-to-local",
        problem="distributed -> local",
        net="2-1-4-4",
        source="PDP pp. 337–339",
        build=lambda: Net.layered(2, 1, 4, 4),
        data=distributed_to_local,
        lr=0.05,
        max_sweeps=40000,
        published="5,226 presentations (one run)",
        pub_sweeps=5226,
        pub_failures="not reported",
        stated="η = 0.05",
    ),
    *_both(
        "t-c",
        problem="T vs C",
        net="5x5 torus, shared 3x3 kernel",
        source="PDP pp. 348–352",
        build=lambda: TCNet(5),
        data=tc_patterns,
        lr=0.05,
        max_sweeps=20000,
        published="≈ 5,000–10,000 presentations",
        pub_sweeps=7500,
        pub_failures="not reported",
        stated="nothing numeric",
    ),
]


# the family-trees people's attributes, in ``FAMILY_PEOPLE`` order
ENGLISH = np.r_[np.ones(12), np.zeros(12)]
#: generation of each person in ``FAMILY_PEOPLE`` order (1 oldest)
GENERATION = np.tile([1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3], 2).astype(float)
