"""Pictures and diagnostics (issue 8, "Explain"): the computation graph as DOT, the network
drawing, the loss landscape, the gradient health report, the leak guard and ``chainrule train
--diagnose --draw``. Snapshot-free: the checks read the DOT text, the CSV and PNG headers."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.train as T
from chainrule import nn, viz
from chainrule.autograd import engine
from chainrule.train import health
from chainrule.train.leaks import _ORIG_RECORD, GraphLeakWarning

pytest.importorskip("matplotlib")

NODE = re.compile(r'^\s+(\w+) \[label="((?:[^"\\]|\\.)*)"(.*)\];$', re.M)
EDGE = re.compile(r"^\s+(\w+) -> (\w+)(?: \[label=\"([^\"]*)\"\])?;$", re.M)


def parse_dot(text: str) -> tuple[dict, list]:
    nodes = {k: (label.replace("\\n", "\n"), attrs) for k, label, attrs in NODE.findall(text)}
    edges = [(a, b, lab) for a, b, lab in EDGE.findall(text)]
    return nodes, edges


def png_size(path: Path) -> tuple[int, int]:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


# ------------------------------------------------------------------------------------ draw_graph


def test_draw_graph_dot_has_the_ops_shapes_edges_and_leaves() -> None:
    cr.manual_seed(0)
    x = cr.randn(4, 3)  # needs no gradient: not recorded, not drawn
    w = cr.randn(3, 2, requires_grad=True)
    b = cr.zeros(2, requires_grad=True)
    loss = (x @ w + b).relu().sum()
    nodes, edges = parse_dot(viz.draw_graph(loss, params={"w": w, "b": b}))
    ops = {k: lab for k, (lab, _) in nodes.items() if k.startswith("op")}
    leaves = {k: lab for k, (lab, _) in nodes.items() if k.startswith("leaf")}
    assert sorted(lab.split("\n")[0] for lab in ops.values()) == ["add", "matmul", "relu", "sum"]
    assert [ops[f"op{i}"] for i in range(4)] == [  # forward order, with output shapes
        "matmul\n(4, 2)", "add\n(4, 2)", "relu\n(4, 2)", "sum\nscalar",
    ]  # fmt: skip
    assert sorted(leaves.values()) == ["b\n(2)\nrequires_grad", "w\n(3, 2)\nrequires_grad"]
    assert nodes["out0"][0] == "output\nscalar"
    name = {k: lab.split("\n")[0] for k, (lab, _) in nodes.items()}
    assert sorted((name[a], name[b]) for a, b, _ in edges) == sorted([
        ("w", "matmul"), ("matmul", "add"), ("b", "add"), ("add", "relu"), ("relu", "sum"),
        ("sum", "output"),
    ])  # fmt: skip
    # without names the leaves are still there and marked; after backward the graph is the same
    loss.backward()
    nodes2, edges2 = parse_dot(viz.draw_graph(loss))
    assert sum(lab.startswith("leaf\n") for lab, _ in nodes2.values()) == 2
    assert len(edges2) == len(edges)


def test_draw_graph_multi_output_parameters_of_a_model_and_a_deep_graph() -> None:
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    out = model(cr.randn(5, 3))
    a, b = out.split(1, dim=1)
    text = viz.draw_graph(a.sum() * b.sum(), params=dict(model.named_parameters()))
    nodes, edges = parse_dot(text)
    labels = [lab for lab, _ in nodes.values()]
    for p in ("0.weight\n(4, 3)", "0.bias\n(4)", "2.weight\n(2, 4)", "2.bias\n(2)"):
        assert any(lab.startswith(p) for lab in labels), p
    assert sorted(lab for _, _, lab in edges if lab) == ["[0]", "[1]"]  # which output of split
    assert text.startswith("digraph chainrule {") and text.rstrip().endswith("}")
    # a chain deeper than Python's recursion limit: traversed iteratively
    x = cr.ones(2, requires_grad=True)
    y = x
    for _ in range(3 * sys.getrecursionlimit()):
        y = y * 1.0
    nodes, edges = parse_dot(viz.draw_graph(y.sum()))
    assert sum(k.startswith("op") for k in nodes) == 3 * sys.getrecursionlimit() + 1


def test_draw_graph_files_with_and_without_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = cr.randn(3, requires_grad=True)
    loss = (w * w).sum()
    if shutil.which("dot"):
        text = viz.draw_graph(loss, tmp_path / "g.svg")
        assert (tmp_path / "g.dot").read_text() == text
        assert "<svg" in (tmp_path / "g.svg").read_text()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dot anywhere
    with pytest.warns(viz.GraphvizWarning, match="apt-get install graphviz"):
        text = viz.draw_graph(loss, tmp_path / "h.svg")
    assert (tmp_path / "h.dot").read_text() == text and not (tmp_path / "h.svg").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viz.draw_graph(loss, tmp_path / "only.dot")  # DOT only: nothing to render, no warning
    assert (tmp_path / "only.dot").exists()


# ------------------------------------------------------------------------------------ draw_network


def test_draw_network_units_for_a_small_mlp_and_blocks_for_a_cnn(tmp_path: Path) -> None:
    cr.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid())
    p = viz.draw_network(mlp, tmp_path / "mlp.png")
    w, h = png_size(Path(p))
    assert 400 <= w <= 3000 and 250 <= h <= 3000 and os.path.getsize(p) > 10_000
    cnn = nn.Sequential(
        nn.Conv1d(1, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6, 60),
        nn.ReLU(),
        nn.Linear(60, 3),
    )
    q = viz.draw_network(cnn, tmp_path / "sub" / "cnn.png", example_input=cr.randn(2, 1, 8))
    w2, h2 = png_size(Path(q))
    assert w2 >= 400 and h2 > h and os.path.getsize(q) > 10_000
    assert viz.network._mlp_layers(cnn, 50) is None and viz.network._mlp_layers(mlp, 50) is not None
    wide = nn.Sequential(nn.Linear(4, 80), nn.ReLU(), nn.Linear(80, 2))
    assert (
        viz.network._mlp_layers(wide, 50) is None and viz.network._mlp_layers(wide, 100) is not None
    )


# ------------------------------------------------------------------------------------ loss landscape


def test_loss_landscape_restores_the_weights_bitwise_and_centres_on_the_loss(
    tmp_path: Path,
) -> None:
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = cr.randn(16, 3), cr.randint(0, 2, (16,))
    loss_fn = nn.CrossEntropyLoss()
    arrays = [p.data for p in model.parameters()]
    copies = [a.copy() for a in arrays]
    state = np.random.get_state()[1].copy()
    loss = loss_fn(model(x), y).item()
    r = viz.loss_landscape(model, loss_fn, (x, y), steps=9, span=0.5, path=tmp_path / "l1.png")
    assert r.alphas.shape == (9,) and r.betas is None and r.losses.shape == (9,)
    assert r.alphas[4] == 0.0 and r.losses[4] == loss == r.center
    assert np.isfinite(r.losses).all() and len(set(r.losses.tolist())) > 1
    r2 = viz.loss_landscape(model, loss_fn, (x, y), directions=2, steps=5, path=tmp_path / "l2.png")
    assert r2.losses.shape == (5, 5) and r2.losses[2, 2] == loss
    for p, a, c in zip(model.parameters(), arrays, copies):
        assert p.data is a and a.tobytes() == c.tobytes()
    assert model.training
    assert np.array_equal(np.random.get_state()[1], state)  # its own generator
    assert png_size(tmp_path / "l1.png")[0] > 300 and png_size(tmp_path / "l2.png")[0] > 300


# ------------------------------------------------------------------------------------ health


class Broken(nn.Module):
    """Sigmoids fed by huge weights (saturated); a ReLU layer with all-negative biases (dead),
    through the functional ``.relu()``."""

    def __init__(self) -> None:
        super().__init__()
        self.squash = nn.Linear(4, 16)
        self.sig = nn.Sigmoid()
        self.deadfc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 1)
        self.squash.weight.data *= 200
        self.deadfc.bias.data[:] = -1000.0

    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return self.head(self.deadfc(self.sig(self.squash(x))).relu())


def batches(n_in: int = 4, n: int = 32, bs: int = 16, seed: int = 0) -> list:
    cr.manual_seed(seed)
    x, y = cr.randn(n, n_in), cr.randn(n, 1)
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, n, bs)]


def test_health_flags_saturated_sigmoids_and_dead_relus_naming_the_layer(tmp_path: Path) -> None:
    cr.manual_seed(0)
    model = Broken()
    cb = T.GradientHealth(tmp_path)
    with pytest.warns(health.HealthWarning) as rec:
        T.fit(model, nn.MSELoss(), cr.optim.SGD(model.parameters(), lr=0.01), batches(),
              epochs=2, progress=False, callbacks=[cb])  # fmt: skip
    msgs = [str(w.message) for w in rec]
    assert any("'squash'" in m and "saturated" in m and "sigmoid" in m for m in msgs), msgs
    assert any("'deadfc'" in m and "dead" in m for m in msgs), msgs
    assert any("'deadfc'" in m and "vanish" in m and "initialisation" in m for m in msgs), msgs
    assert not any("'head'" in m for m in msgs), msgs
    assert len(msgs) == len(set(msgs)) == len(cb.warnings)  # once per layer and problem
    last = {r["layer"]: r for r in cb.rows if r["epoch"] == 1}
    assert last["squash"]["saturated"] > 0.9 and last["deadfc"]["dead_relu"] == 1.0
    assert last["head"]["grad_norm"] > 0 and 0 < last["head"]["update_ratio"] < 1
    lines = (tmp_path / "health.csv").read_text().strip().splitlines()
    assert lines[0].split(",")[:4] == ["epoch", "layer", "type", "activation"]
    assert len(lines) == 1 + 2 * 3
    assert png_size(tmp_path / "health.png")[0] > 500
    assert "deadfc" in (tmp_path / "health.txt").read_text()
    assert "squash" in cb.report()
    # the hooks and the op patches are gone after training
    from chainrule.ops import unary as U

    assert U.Relu.forward.__qualname__.startswith("Relu")
    assert not model.squash._forward_hooks and not model.sig._forward_hooks


def test_health_relu_modules_and_a_healthy_network() -> None:
    cr.manual_seed(1)
    dead = nn.Sequential(OrderedDict(fc=nn.Linear(4, 8), act=nn.ReLU(), out=nn.Linear(8, 1)))
    dead.fc.bias.data[:] = -1e3
    cb = T.GradientHealth(None, on_warning=lambda m: None)
    T.fit(dead, nn.MSELoss(), cr.optim.SGD(dead.parameters(), lr=0.01), batches(), epochs=1,
          progress=False, callbacks=[cb])  # fmt: skip
    assert any("'fc'" in m and "dead" in m for m in cb.warnings), cb.warnings
    cr.manual_seed(2)
    ok = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", health.HealthWarning)
        cb = T.GradientHealth(None)
        T.fit(ok, nn.MSELoss(), cr.optim.SGD(ok.parameters(), lr=0.01), batches(), epochs=2,
              progress=False, callbacks=[cb])  # fmt: skip
    rows = {r["layer"]: r for r in cb.rows if r["epoch"] == 1}
    assert rows["2"]["dead_relu"] < 0.5 and rows["0"]["saturated"] < 0.5


# ------------------------------------------------------------------------------------ leak guard


def _loop(leak: bool, steps: int = 14) -> tuple[T.LeakGuard, list, int]:
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = cr.optim.SGD(model.parameters(), lr=0.01)
    x, y = cr.randn(16, 4), cr.randn(16, 1)
    total, first = 0.0, None
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with T.leak_guard() as guard:
            for _ in range(steps):
                opt.zero_grad()
                loss = ((model(x) - y) ** 2).mean()
                loss.backward()
                opt.step()
                if first is None:
                    first = loss  # one graph kept on purpose: not a leak
                if leak:
                    total += loss  # the leak
                else:
                    total += loss.item()
    line = next(i for i, s in enumerate(inspect.getsourcelines(_loop)[0]) if "the leak" in s)
    return (
        guard,
        [w for w in rec if issubclass(w.category, GraphLeakWarning)],
        line + inspect.getsourcelines(_loop)[1],
    )


def test_leak_guard_fires_for_a_loss_tensor_accumulated_across_steps() -> None:
    guard, warned, line = _loop(leak=True)
    assert guard.fired and len(warned) == 1
    assert (warned[0].filename, warned[0].lineno) == (__file__, line)
    msg = str(warned[0].message)
    assert f"test_viz.py:{line}" in msg and "loss.item()" in msg
    assert engine._record is _ORIG_RECORD  # the engine is itself again


def test_leak_guard_is_quiet_for_loss_item() -> None:
    guard, warned, _ = _loop(leak=False)
    assert not guard.fired and warned == []


class Hoarder(nn.Module):
    """Keeps a running sum of its outputs as a tensor: each step's graph stays alive."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.seen = None

    def forward(self, x: cr.Tensor) -> cr.Tensor:
        out = self.fc(x)
        self.seen = out.sum() if self.seen is None else self.seen + out.sum()  # HOARD
        return out


def test_trainer_guards_against_leaks_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    data = batches(n=16, bs=1)[:16] * 3  # 48 tiny steps
    model = Hoarder()
    tr = T.Trainer(model, nn.MSELoss(), cr.optim.SGD(model.parameters(), lr=0.01))
    with pytest.warns(GraphLeakWarning, match="HOARD|test_viz.py") as rec:
        tr.fit(data, epochs=1, progress=False)
    src, start = inspect.getsourcelines(Hoarder.forward)
    line = start + next(i for i, s in enumerate(src) if "# HOARD" in s)
    assert [(w.filename, w.lineno) for w in rec if w.category is GraphLeakWarning] == [
        (__file__, line)
    ]
    assert any(isinstance(c, T.LeakGuardCallback) for c in tr.callbacks)
    assert engine._record is _ORIG_RECORD
    monkeypatch.setenv("CHAINRULE_LEAK_GUARD", "0")
    model = Hoarder()
    tr = T.Trainer(model, nn.MSELoss(), cr.optim.SGD(model.parameters(), lr=0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphLeakWarning)
        tr.fit(data, epochs=1, progress=False)
    assert not any(isinstance(c, T.LeakGuardCallback) for c in tr.callbacks)


# ------------------------------------------------------------------------------------ the CLI


def test_cli_train_diagnose_and_draw(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "chainrule.cli", "train", "--preset", "xor", "--epochs", "5",
         "--diagnose", "--draw", "--out", str(out), "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = (out / "health.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,layer,type,activation,grad_norm")
    assert len(rows) == 1 + 5 * 2  # 5 epochs x the two Linear layers of the 2-2-1 net
    assert {ln.split(",")[1] for ln in rows[1:]} == {"0", "2"}
    assert png_size(out / "health.png")[0] > 500
    assert png_size(out / "network.png")[0] > 300
    dot = (out / "graph.dot").read_text()
    assert "0.weight" in dot and "sigmoid" in dot and "mse" in dot
    assert (out / "graph.svg").exists() == bool(shutil.which("dot"))


def test_an_error_in_fit_leaves_the_engine_as_it_was() -> None:
    """A training run that fails on a step the leak guard watches must not leave the engine's
    recorder swapped (on_train_failed releases it)."""
    from chainrule.autograd import engine
    from chainrule.data import DataLoader, TensorDataset
    from chainrule.train import Callback, LeakGuardCallback, fit
    from chainrule.train.leaks import _ORIG_RECORD

    class Boom(Callback):
        def on_batch_end(self, batch, logs=None):  # noqa: ANN001, ANN202
            if batch == 2:
                raise ValueError("boom")

    model = cr.nn.Linear(3, 2)
    data = TensorDataset(cr.randn(12, 3), cr.randint(0, 2, (12,)))
    opt = cr.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="boom"):
        fit(model, cr.nn.CrossEntropyLoss(), opt, DataLoader(data, batch_size=2),
            callbacks=[Boom(), LeakGuardCallback(sample_every=1)], progress=False)  # fmt: skip
    assert engine._record is _ORIG_RECORD
