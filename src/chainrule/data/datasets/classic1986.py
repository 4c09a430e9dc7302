"""The problems of the 1986 backpropagation papers, as ``TensorDataset``\\ s.

Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors", Nature 323
(1986) and "Learning internal representations by error propagation", PDP vol. 1 ch. 8 (1986).
Every generator is deterministic: it enumerates all the patterns of its problem, in binary
counting order (first input = most significant bit). Inputs are float32 0/1 vectors; targets are
float32 0/1 vectors, one column per output unit, as in the papers. ``soft_targets=True`` gives
0.1/0.9 instead, the values PDP ch. 8 (p. 329) "typically" used because a logistic unit cannot
reach 0 or 1 with finite weights.

Each dataset has a ``name`` attribute; the family trees also carry their people, relationships,
cases and triples.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..dataset import TensorDataset

__all__ = [
    "xor",
    "parity",
    "encoder",
    "symmetry",
    "negation",
    "addition",
    "family_trees",
    "family_tree_cases",
    "FAMILY_PEOPLE",
    "FAMILY_RELATIONS",
]


def _patterns(n: int) -> np.ndarray:
    """All 2**n binary vectors of length n, row i = i in binary, most significant bit first."""
    i = np.arange(2**n)[:, None]
    return ((i >> np.arange(n - 1, -1, -1)) & 1).astype(np.float32)


def _make(x: np.ndarray, t: np.ndarray, soft_targets: bool, name: str) -> TensorDataset:
    t = t.astype(np.float32)
    if soft_targets:
        t = (0.1 + 0.8 * t).astype(np.float32)
    ds = TensorDataset(x.astype(np.float32), t)
    ds.name = name
    return ds


def xor(soft_targets: bool = False) -> TensorDataset:
    """XOR (PDP ch. 8, pp. 330–334): inputs 00, 01, 10, 11 → targets 0, 1, 1, 0. x (4, 2), t (4, 1)."""
    x = _patterns(2)
    return _make(x, (x.sum(1, keepdims=True) % 2), soft_targets, "xor")


def parity(n: int = 4, soft_targets: bool = False) -> TensorDataset:
    """Parity (pp. 334–335): all 2**n patterns, target 1 iff the number of ones is odd.
    x (2**n, n), t (2**n, 1). The paper's instance is n = 4 (16 patterns)."""
    if n < 1:
        raise ValueError(f"parity: n must be >= 1, got {n}")
    x = _patterns(n)
    return _make(x, x.sum(1, keepdims=True) % 2, soft_targets, f"parity{n}")


def encoder(n: int = 8, soft_targets: bool = False) -> TensorDataset:
    """The encoder problem (pp. 335–337): the n one-hot patterns, each its own target (n-log2 n-n
    nets, 8-3-8 in the paper). x (n, n), t (n, n)."""
    if n < 2:
        raise ValueError(f"encoder: n must be >= 2, got {n}")
    e = np.eye(n, dtype=np.float32)
    return _make(e, e.copy(), soft_targets, f"encoder{n}")


def symmetry(n: int = 6, soft_targets: bool = False) -> TensorDataset:
    """Mirror symmetry (Nature Fig. 1; PDP pp. 340–341): all 2**n patterns, target 1 iff the
    pattern reads the same backwards (2**ceil(n/2) of them: 8 of 64 for n = 6). x (2**n, n),
    t (2**n, 1)."""
    if n < 2:
        raise ValueError(f"symmetry: n must be >= 2, got {n}")
    x = _patterns(n)
    t = np.all(x == x[:, ::-1], axis=1, keepdims=True)
    return _make(x, t, soft_targets, f"symmetry{n}")


def negation(soft_targets: bool = False) -> TensorDataset:
    """Negation (PDP pp. 346–347, Table 9): 4 inputs, the leftmost a negation bit; the 3 outputs
    copy the other 3 inputs when it is 0 and complement them when it is 1. x (16, 4), t (16, 3)."""
    x = _patterns(4)
    t = np.abs(x[:, 1:] - x[:, :1])
    return _make(x, t, soft_targets, "negation")


def addition(bits: int = 2, soft_targets: bool = False) -> TensorDataset:
    """Binary addition (PDP pp. 341–346): two ``bits``-bit numbers side by side on 2*bits inputs
    (each most significant bit first), their (bits+1)-bit sum on the outputs. For bits = 2:
    x (16, 4), t (16, 3), e.g. 11 + 11 → 110."""
    if bits < 1:
        raise ValueError(f"addition: bits must be >= 1, got {bits}")
    x = _patterns(2 * bits)
    w = 2 ** np.arange(bits - 1, -1, -1)
    s = (x[:, :bits] @ w + x[:, bits:] @ w).astype(np.int64)
    t = (s[:, None] >> np.arange(bits, -1, -1)) & 1
    return _make(x, t, soft_targets, f"addition{bits}")


# -------------------------------------------------------------------------------- family trees

# Nature 1986, Fig. 2: two isomorphic trees; "=" means married. English first, then Italian,
# each person in the same position as its counterpart (Christopher <-> Roberto, ...).
_ENGLISH = ("Christopher", "Penelope", "Andrew", "Christine", "Margaret", "Arthur",
            "Victoria", "James", "Jennifer", "Charles", "Colin", "Charlotte")  # fmt: skip
_ITALIAN = ("Roberto", "Maria", "Pierro", "Francesca", "Gina", "Emilio",
            "Lucia", "Marco", "Angela", "Tomaso", "Alfonso", "Sophia")  # fmt: skip
FAMILY_PEOPLE: tuple[str, ...] = _ENGLISH + _ITALIAN
FAMILY_RELATIONS: tuple[str, ...] = (
    "father", "mother", "husband", "wife", "son", "daughter",
    "uncle", "aunt", "brother", "sister", "nephew", "niece",
)  # fmt: skip

# one tree, by position in _ENGLISH: sex, marriages (husband, wife), children of each couple
_MALE = {0, 2, 5, 7, 9, 10}
_COUPLES = ((0, 1), (2, 3), (5, 4), (7, 6), (9, 8))  # (husband, wife)
_CHILDREN = {(0, 1): (5, 6), (2, 3): (7, 8), (7, 6): (10, 11)}


def _relations_of_one_tree() -> dict[tuple[int, str], set[int]]:
    spouse = {h: w for h, w in _COUPLES} | {w: h for h, w in _COUPLES}
    parents: dict[int, tuple[int, int]] = {}
    for couple, kids in _CHILDREN.items():
        for k in kids:
            parents[k] = couple
    kids_of = {p: set(kids) for couple, kids in _CHILDREN.items() for p in couple}

    def siblings(p: int) -> set[int]:
        return {q for q in parents if q != p and p in parents and parents[q] == parents[p]}

    male = lambda p: p in _MALE  # noqa: E731
    rel: dict[tuple[int, str], set[int]] = {}

    def add(p: int, r: str, qs: set[int]) -> None:
        if qs:
            rel.setdefault((p, r), set()).update(qs)

    for p in range(12):
        if p in parents:
            add(p, "father", {parents[p][0]})
            add(p, "mother", {parents[p][1]})
            # uncles/aunts: the parents' siblings and the spouses of those siblings (in-laws)
            ps = set().union(*(siblings(q) for q in parents[p]))
            ps |= {spouse[s] for s in ps if s in spouse}
            add(p, "uncle", {q for q in ps if male(q)})
            add(p, "aunt", {q for q in ps if not male(q)})
        if p in spouse:
            add(p, "husband" if not male(p) else "wife", {spouse[p]})
        kids = kids_of.get(p, set())
        add(p, "son", {k for k in kids if male(k)})
        add(p, "daughter", {k for k in kids if not male(k)})
        sib = siblings(p)
        add(p, "brother", {q for q in sib if male(q)})
        add(p, "sister", {q for q in sib if not male(q)})
        # nephews/nieces: children of one's siblings and of one's spouse's siblings
        sib_all = sib | (siblings(spouse[p]) if p in spouse else set())
        nn = set().union(*(kids_of.get(s, set()) for s in sib_all)) if sib_all else set()
        add(p, "nephew", {q for q in nn if male(q)})
        add(p, "niece", {q for q in nn if not male(q)})
    return rel


# The counts that classic-experiments.md §2.2 checks (this structure, and no other drawing).
_EXPECTED = {"father": 12, "mother": 12, "son": 12, "daughter": 12, "husband": 10, "wife": 10,
             "nephew": 8, "niece": 8, "brother": 6, "sister": 6, "uncle": 4, "aunt": 4}  # fmt: skip


def family_tree_cases() -> list[tuple[str, str, tuple[str, ...]]]:
    """The 104 (person 1, relationship, answers) cases of both trees, English then Italian,
    each sorted by person then relationship in the order of ``FAMILY_PEOPLE`` /
    ``FAMILY_RELATIONS``. ``answers`` (sorted by the same order) has one name, or two for the
    uncles and aunts of the youngest generation; 112 person-2 answers in all."""
    one = _relations_of_one_tree()
    cases = []
    for off in (0, 12):
        for p, r in sorted(one, key=lambda k: (k[0], FAMILY_RELATIONS.index(k[1]))):
            cases.append(
                (
                    FAMILY_PEOPLE[p + off],
                    r,
                    tuple(FAMILY_PEOPLE[q + off] for q in sorted(one[p, r])),
                )
            )
    _check(cases)
    return cases


def _check(cases: list) -> None:
    per_rel = Counter(r for _, r, _ in cases)
    n_answers = sum(len(a) for *_, a in cases)
    n_two = sum(len(a) == 2 for *_, a in cases)
    ok = (
        len(cases) == 104
        and n_answers == 112
        and n_two == 8
        and dict(per_rel) == _EXPECTED
        and all(len(set(a)) == len(a) and p not in a for p, _, a in cases)
    )
    if not ok:  # a bug in the tree above: the paper's numbers are fixed
        raise RuntimeError(
            f"family trees: expected 104 cases / 112 answers / 8 with two answers and "
            f"{_EXPECTED}, got {len(cases)} / {n_answers} / {n_two} and {dict(per_rel)}"
        )


def family_trees(soft_targets: bool = False) -> TensorDataset:
    """The family-trees task (Nature 1986, Figs 2–4): 104 cases over two isomorphic trees of 12
    people each, 12 relationships.

    x (104, 36) = one-hot person 1 (24, order ``FAMILY_PEOPLE``) then one-hot relationship (12,
    order ``FAMILY_RELATIONS``); t (104, 24) = multi-hot of every correct person 2 (two units on
    for the 8 uncle/aunt cases with two answers). The paper trained on 100 cases and tested on
    the other 4 (which 4 is unstated): e.g. ``random_split(ds, [100, 4], generator=g)``.
    Attributes: ``people``, ``relations``, ``cases`` (see ``family_tree_cases``), and the
    112 ``triples`` (person 1, relationship, person 2).
    """
    cases = family_tree_cases()
    x = np.zeros((len(cases), 36), np.float32)
    t = np.zeros((len(cases), 24), np.float32)
    for i, (p, r, answers) in enumerate(cases):
        x[i, FAMILY_PEOPLE.index(p)] = 1
        x[i, 24 + FAMILY_RELATIONS.index(r)] = 1
        for a in answers:
            t[i, FAMILY_PEOPLE.index(a)] = 1
    ds = _make(x, t, soft_targets, "family_trees")
    ds.people = FAMILY_PEOPLE
    ds.relations = FAMILY_RELATIONS
    ds.cases = cases
    ds.triples = [(p, r, a) for p, r, answers in cases for a in answers]
    return ds
