"""The leak guard: a guard against training loops that keep computation graphs alive.

A loop that keeps each step's computation graph alive (``total_loss += loss``
instead of ``loss.item()``; an RNN state carried to the next batch without ``.detach()``; a list
of loss tensors) grows memory step after step until it runs out. ``leak_guard()`` watches for it::

    with cr.train.leak_guard():
        for x, y in loader:
            ...
            loss.backward()           # each backward() ends a step (or call guard.step())

It warns once (``GraphLeakWarning``), naming the ``file:line`` of the user code that chains the
graphs together (or that builds the graphs being kept). How: while it watches, the engine's
record function is wrapped (the engine itself is untouched: nothing is added to its hot path
when no guard is on) so that each recorded node is noted by a weak reference. A graph built in
step s that is still alive ``patience`` steps later makes the guard suspicious; it then notes
where nodes are created and which nodes use a node of an earlier step (the link), and warns when
``confirm`` more steps in a row keep their graphs alive as well. The ``Trainer`` adds a
``LeakGuardCallback`` by default, which watches one step in ``sample_every`` (16) until it gets
suspicious: about half a microsecond per step, under 1% of a step of even the smallest preset
(the 2-2-1 XOR net, ~70 µs). Set ``CHAINRULE_LEAK_GUARD=0``, or pass
``LeakGuardCallback(enabled=False)``, to turn it off.
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from ..autograd import engine as _engine
from ..autograd import function as _function
from ..autograd import functional_api as _fapi
from ..autograd.engine import Node
from .callbacks import Callback

__all__ = ["GraphLeakWarning", "LeakGuard", "LeakGuardCallback", "leak_guard"]


class GraphLeakWarning(UserWarning):
    """Computation graphs are kept alive from one training step to the next."""


# ============================================================================ where user code is

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_CORE = tuple(
    os.path.join(_PKG, p) for p in ("autograd", "ops", "tensor.py", "func.py", "nn", "train")
)


def _user_site(depth: int = 2) -> tuple[str, int]:
    """``(file, line)`` of the innermost caller outside chainrule (failing that, outside its
    engine, ops and layers)."""
    try:
        f = sys._getframe(depth)
    except ValueError:
        return "<unknown>", 0
    fallback = None
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_PKG):
            return fn, f.f_lineno
        if fallback is None and not fn.startswith(_CORE):
            fallback = (fn, f.f_lineno)
        f = f.f_back
    return fallback or ("<unknown>", 0)


def _show(site: tuple[str, int]) -> str:
    fn, line = site
    try:
        rel = os.path.relpath(fn)
        fn = rel if not rel.startswith("..") else fn
    except ValueError:  # another drive (Windows)
        pass
    return f"{fn}:{line}"


# ============================================================================ the leak guard

# Guards recording nodes now: the engine's record function is wrapped while this is not empty.
_watchers: list = []
# Guards that end a step at every backward(): run_backward is wrapped while this is not empty.
_steppers: list = []
_ORIG_RECORD = _engine._record
_MAX_REFS = 1 << 16  # nodes noted per step at most
_ORIG_RUN_BACKWARD = _fapi.run_backward


def _record_and_note(op: type, ctx: Node, args: Any, arrays: list) -> None:
    _ORIG_RECORD(op, ctx, args, arrays)
    for w in _watchers:
        w._note(ctx)


def _run_backward_and_step(*args: Any, **kw: Any) -> Any:
    res = _ORIG_RUN_BACKWARD(*args, **kw)
    accumulate = kw.get("accumulate", args[5] if len(args) > 5 else True)
    if accumulate:  # backward(), not grad(): the end of a training step
        for g in list(_steppers):
            g.step()
    return res


def _install_recorder(guard: LeakGuard) -> None:
    if guard in _watchers:
        return
    _watchers.append(guard)
    _engine._record = _record_and_note
    _function._record = _record_and_note


def _remove_recorder(guard: LeakGuard) -> None:
    if guard in _watchers:
        _watchers.remove(guard)
    if not _watchers:
        _engine._record = _ORIG_RECORD
        _function._record = _ORIG_RECORD


class _Probe:
    """The nodes recorded during one step, by weak reference."""

    __slots__ = ("step", "refs", "seq0", "seq1", "suspect")

    def __init__(self, step: int, seq0: int, suspect: bool) -> None:
        self.step, self.seq0, self.suspect = step, seq0, suspect
        self.refs: list = []
        self.seq1 = seq0

    def alive(self) -> list:
        return [n for n in (r() for r in self.refs) if n is not None]


class LeakGuard:
    """Warn once when computation graphs outlive the training step that built them (module
    docstring). A context manager; ``step()`` marks the end of a step (with ``auto_step``,
    every ``backward()`` does). ``begin()`` / ``end()`` bracket a step instead when the steps
    are known (as the trainer does), ``start()`` / ``stop()`` switch the guard on and off.

    ``patience``: how many steps a graph may outlive its own before the guard gets suspicious;
    ``confirm``: how many steps in a row must then keep their graphs too; ``sample_every``:
    watch one step in this many until suspicious (1: every step). After it fires, ``fired`` is
    True, ``message`` the warning's text and ``site`` the ``(file, line)`` it names."""

    def __init__(
        self,
        patience: int = 3,
        confirm: int = 2,
        sample_every: int = 1,
        auto_step: bool = True,
        warn: bool = True,
    ) -> None:
        if patience < 1 or confirm < 1 or sample_every < 1:
            raise ValueError("LeakGuard: patience, confirm and sample_every must be >= 1")
        self.patience, self.confirm, self.sample_every = patience, confirm, sample_every
        self.auto_step, self.warn = auto_step, warn
        self.fired = False
        self.message: str | None = None
        self.site: tuple[str, int] | None = None
        self._on = False
        self._reset()

    def _reset(self) -> None:
        self._t = 0  # steps ended
        self._probe: _Probe | None = None
        self._pending: deque = deque()
        self._suspect = False
        self._hits: list = []
        self._links: list = []  # (weakref to the linking node, site, op name)
        self._sites: dict = {}  # seq -> (site, op name), while suspicious

    # ------------------------------------------------------------------ switching on and off
    def start(self) -> LeakGuard:
        if not self._on:
            self._on = True
            self._reset()
            if self.auto_step:
                _steppers.append(self)
                _fapi.run_backward = _run_backward_and_step
                self.begin()
        return self

    def stop(self) -> None:
        if not self._on:
            return
        self._on = False
        _remove_recorder(self)
        if self in _steppers:
            _steppers.remove(self)
        if not _steppers:
            _fapi.run_backward = _ORIG_RUN_BACKWARD
        self._probe = None
        self._pending.clear()
        self._sites.clear()
        self._links.clear()

    def __enter__(self) -> LeakGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ steps
    def begin(self, *_: Any) -> None:
        """A step starts: watch it if it is sampled (or the guard is suspicious)."""
        if self._on and not self.fired and (self._suspect or not self._t % self.sample_every):
            self._probe = _Probe(self._t, _engine._seq, self._suspect)
            _install_recorder(self)

    def end(self, *_: Any) -> None:
        """The step ends: check the steps watched ``patience`` steps ago."""
        p = self._probe
        if p is not None:
            _remove_recorder(self)
            p.seq1 = _engine._seq
            self._pending.append(p)
            self._probe = None
        self._t += 1
        pending = self._pending
        while pending and self._t - pending[0].step > self.patience and not self.fired:
            self._mature(pending.popleft())

    def step(self) -> None:
        """End the current step and begin the next (what each ``backward()`` does with
        ``auto_step``)."""
        self.end()
        self.begin()

    # ------------------------------------------------------------------ detection
    def _note(self, ctx: Node) -> None:
        p = self._probe
        if p is None:
            return
        refs = p.refs
        refs.append(weakref.ref(ctx))
        if len(refs) >= _MAX_REFS:  # enough to judge by; also bounds a step that never ends
            _remove_recorder(self)
        if not p.suspect:
            return
        site = None
        for q in ctx.parents:
            tq = type(q)
            if tq is tuple:
                q = q[0]
            elif tq is not Node:
                continue
            if q.seq <= p.seq0:  # a node of an earlier step: this op links the graphs
                site = _user_site(3)
                self._links.append((weakref.ref(ctx), site, ctx.name()))
                break
        self._sites[ctx.seq] = (site or _user_site(3), ctx.name())

    def _mature(self, p: _Probe) -> None:
        alive = p.alive()
        if not self._suspect:
            if alive:  # a graph outlived its step by `patience` steps: look closer
                self._suspect, self._hits = True, [p]
            return
        if not p.suspect:
            return
        if not alive:  # a step that let its graph go: a false alarm, back to sampling
            self._suspect = False
            self._hits, self._links, self._sites = [], [], {}
            return
        self._hits.append(p)
        if sum(q.suspect for q in self._hits) >= self.confirm:
            self._fire()

    def _fire(self) -> None:
        self.fired = True
        _remove_recorder(self)
        held = [q.alive() for q in self._hits]
        n_nodes = sum(len(a) for a in held)
        links = [(s, op) for r, s, op in self._links if r() is not None]
        if links:
            (site, op), _ = Counter(links).most_common(1)[0]
            how = (
                f"At {_show(site)} (`{op}`) a step uses a tensor that still carries the graph "
                "of an earlier step, which chains every step's graph to the next: accumulating "
                "a loss as a tensor (`total_loss += loss`) does this (accumulate `loss.item()` "
                "instead), and so does a state carried from one batch to the next, such as an "
                "RNN's hidden state (`.detach()` it)."
            )
        else:
            roots = []
            for a in held:
                seqs = [n.seq for n in a if n.seq in self._sites]
                if seqs:
                    roots.append(self._sites[max(seqs)])
            if roots:
                (site, op), _ = Counter(roots).most_common(1)[0]
                how = (
                    f"The graphs built at {_show(site)} (`{op}`) are kept, e.g. in a list of "
                    "loss or output tensors: keep `loss.item()` or `tensor.detach()` instead."
                )
            else:
                site, how = (
                    ("<unknown>", 0),
                    "Keep Python floats (`loss.item()`) or detached tensors.",
                )
        self.site = site
        self.message = (
            f"computation graphs are kept alive from one training step to the next: "
            f"{len(held)} steps checked still hold their graphs {self.patience} steps later "
            f"({n_nodes} graph nodes, with their saved tensors), and more pile up every step "
            f"until memory runs out. {how}"
        )
        self._pending.clear()
        self._sites.clear()
        self._links.clear()
        self._hits = []
        if self.warn:
            warnings.warn_explicit(
                self.message, GraphLeakWarning, site[0], site[1], module="chainrule.leak_guard"
            )


def leak_guard(patience: int = 3, confirm: int = 2, sample_every: int = 1) -> LeakGuard:
    """A ``LeakGuard`` for a hand-written training loop: ``with cr.train.leak_guard(): ...``;
    every ``backward()`` ends a step."""
    return LeakGuard(patience, confirm, sample_every, auto_step=True)


class LeakGuardCallback(Callback):
    """The leak guard in the trainer: each batch is a step; one step in ``sample_every`` is
    watched until a graph outlives its step (then every step, until it is sure either way).
    Added by ``Trainer.fit`` unless the callbacks already hold one or ``CHAINRULE_LEAK_GUARD=0``."""

    def __init__(
        self, sample_every: int = 16, patience: int = 3, confirm: int = 2, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.guard = LeakGuard(patience, confirm, sample_every, auto_step=False)
        # the per-batch hooks are the guard's own methods: no extra call on every step
        self.on_batch_begin = self.guard.begin  # type: ignore[method-assign]
        self.on_batch_end = self.guard.end  # type: ignore[method-assign]

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.enabled:
            self.guard.start()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.guard.stop()  # the engine's recorder goes back to the original

    on_train_interrupted = on_train_failed = on_train_end


def default_callbacks(callbacks: Iterable[Callback]) -> list:
    """What ``Trainer.fit`` adds to the given callbacks: a ``LeakGuardCallback``, unless there is
    one already or the environment says ``CHAINRULE_LEAK_GUARD=0``."""
    if os.environ.get("CHAINRULE_LEAK_GUARD", "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    if any(isinstance(c, LeakGuardCallback) for c in callbacks):
        return []
    return [LeakGuardCallback()]
