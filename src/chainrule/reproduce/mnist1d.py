"""MNIST-1D (Greydanus & Kobak, ICML 2024, Table 1): logistic regression, MLP, CNN and GRU with
the benchmark's settings, next to the published test accuracies and, if PyTorch is installed,
PyTorch's from the same initial weights and the same batches.

Settings (the authors' ``notebooks/train.py`` and benchmark notebooks; see
``shared/design/classic-experiments.md`` §4): the frozen data set (4,000 train / 1,000 test,
generated locally by ``chainrule.data.datasets.mnist1d``), the models of
``chainrule.presets`` (``mnist1d-logistic`` / ``-mlp`` / ``-cnn`` / ``-gru``), cross-entropy,
Adam with lr 1e-2 and no weight decay, batches of 100 taken in order without shuffling (start =
step · 100 mod 4,000), steps 0..6,000 (6,001 updates), test accuracy every 250 steps. "final" is
the accuracy after the last step (what the notebooks print); "best" the highest of the
evaluations (the paper's early stopping, whose exact rule is unpublished).

Each seed seeds ``chainrule.manual_seed`` (the models' default initialisation); the PyTorch model
gets a copy of those initial weights, and both then take the same 6,001 steps in float32.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODELS", "PUBLISHED", "NOTEBOOK", "train_one", "torch_model", "main"]

#: our name -> preset
MODELS = {
    "logistic": "mnist1d-logistic",
    "mlp": "mnist1d-mlp",
    "cnn": "mnist1d-cnn",
    "gru": "mnist1d-gru",
}
#: paper Table 1 (arXiv v4 = ICML 2024), test accuracy %, mean ± std over 3 runs
PUBLISHED = {"logistic": (32, 1), "mlp": (68, 2), "cnn": (94, 2), "gru": (91, 2)}
#: the authors' logged single-seed notebook runs (final accuracy, %), for context
NOTEBOOK = {"logistic": "31.5–31.7", "mlp": "64.6–65.1", "cnn": "92.3–92.5", "gru": "89.1–92.1"}


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from ..data.datasets import mnist1d  # noqa: PLC0415

    tr, te = mnist1d(train=True), mnist1d(train=False)
    x, y = (t.numpy() for t in tr.tensors)
    xt, yt = (t.numpy() for t in te.tensors)
    return (
        np.asarray(x, np.float32),
        np.asarray(y, np.int64),
        np.asarray(xt, np.float32),
        np.asarray(yt, np.int64),
    )


def torch_model(name: str) -> Any:
    """The same architecture in PyTorch, with the same parameter names as the chainrule model."""
    import torch  # noqa: PLC0415

    nn = torch.nn
    if name == "logistic":
        return nn.Sequential(nn.Linear(40, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 40)),
            nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(125, 10),
        )  # fmt: skip

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear1, self.linear2, self.linear3 = (
                nn.Linear(40, 100),
                nn.Linear(100, 100),
                nn.Linear(100, 10),
            )

        def forward(self, x: Any) -> Any:
            h = self.linear1(x).relu()
            h = h + self.linear2(h).relu()
            return self.linear3(h)

    class GRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(1, 6, batch_first=True, bidirectional=True)
            self.linear = nn.Linear(480, 10)

        def forward(self, x: Any) -> Any:
            out, _ = self.gru(x.reshape(x.shape[0], -1, 1))
            return self.linear(out.reshape(out.shape[0], -1))

    return {"mlp": MLP, "gru": GRU}[name]()


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def train_one(
    name: str,
    seed: int = 42,
    steps: int = 6000,
    eval_every: int = 250,
    batch_size: int = 100,
    lr: float = 1e-2,
    torch: bool = True,
    data: tuple | None = None,
) -> dict[str, Any]:
    """Train one model from ``chainrule.manual_seed(seed)`` (and, if ``torch``, its PyTorch twin
    from the same initial weights on the same batches). Returns the test-accuracy curve(s)
    (steps 0, eval_every, ..., steps), final and best accuracy and wall time of each."""
    import chainrule as cr  # noqa: PLC0415
    from chainrule import nn, optim, presets  # noqa: PLC0415

    x, y, xt, yt = data if data is not None else _data()
    cr.manual_seed(seed)
    model = presets.build_model(presets.PRESETS[MODELS[name]]["model"])
    init = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    xt_c = cr.tensor(xt)
    n = len(x)
    out: dict[str, Any] = {"model": name, "seed": seed, "steps": steps, "eval_steps": [], "acc": []}

    def acc_cr() -> float:
        with cr.no_grad():
            return float((model(xt_c).numpy().argmax(1) == yt).mean() * 100)

    t0 = time.perf_counter()
    for step in range(steps + 1):
        i = (step * batch_size) % n
        xb, yb = cr.tensor(x[i : i + batch_size]), cr.tensor(y[i : i + batch_size])
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0:
            out["eval_steps"].append(step)
            out["acc"].append(acc_cr())
    out["wall"] = time.perf_counter() - t0
    out["final"], out["best"] = out["acc"][-1], max(out["acc"])

    if torch and _have_torch():
        import torch as T  # noqa: PLC0415

        threads = T.get_num_threads()
        T.set_num_threads(1)  # tiny models: threads only add overhead (and fight other jobs)
        tm = torch_model(name)
        tm.load_state_dict({k: T.from_numpy(v) for k, v in init.items()})
        topt = T.optim.Adam(tm.parameters(), lr=lr)
        tloss = T.nn.CrossEntropyLoss()
        xt_t = T.from_numpy(xt)
        accs = []
        t0 = time.perf_counter()
        for step in range(steps + 1):
            i = (step * batch_size) % n
            loss = tloss(
                tm(T.from_numpy(x[i : i + batch_size])), T.from_numpy(y[i : i + batch_size])
            )
            topt.zero_grad()
            loss.backward()
            topt.step()
            if step % eval_every == 0:
                with T.no_grad():
                    accs.append(float((tm(xt_t).argmax(1).numpy() == yt).mean() * 100))
        out["torch_wall"] = time.perf_counter() - t0
        T.set_num_threads(threads)
        out["torch_acc"] = accs
        out["torch_final"], out["torch_best"] = accs[-1], max(accs)
    return out


def _ms(v: Sequence[float]) -> str:
    v = np.asarray(v, float)
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"


def main(
    out: str | Path = "runs/reproduce-mnist1d",
    seeds: int = 3,
    quick: bool = False,
    models: Sequence[str] = tuple(MODELS),
    torch: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train each model from ``seeds`` seeds (42, 43, ...) and write ``results.md``,
    ``mnist1d.csv`` and ``test_accuracy.png`` to ``out``. ``quick``: one seed, 200 steps."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps, every = (200, 50) if quick else (6000, 250)
    if quick:
        seeds = 1
    use_torch = torch and _have_torch()
    data = _data()
    t0 = time.perf_counter()
    runs: dict[str, list[dict]] = {}
    for name in models:
        for s in range(seeds):
            r = train_one(name, 42 + s, steps=steps, eval_every=every, torch=use_torch, data=data)
            runs.setdefault(name, []).append(r)
            msg = f"mnist1d: {name} seed {42 + s}: final {r['final']:.1f}%, best {r['best']:.1f}% ({r['wall']:.0f}s)"
            if "torch_final" in r:
                msg += f"; PyTorch final {r['torch_final']:.1f}%, best {r['torch_best']:.1f}% ({r['torch_wall']:.0f}s)"
            log(msg)
    headers = [
        "model",
        "published (Table 1)",
        "authors' notebook runs",
        "chainrule final",
        "chainrule best",
    ]
    if use_torch:
        headers += ["PyTorch final", "PyTorch best", "|chainrule − PyTorch| final, per seed"]
    headers += ["seconds per run (chainrule" + (" / PyTorch)" if use_torch else ")")]
    rows = []
    for name, rs in runs.items():
        m, sd = PUBLISHED[name]
        row = [
            name,
            f"{m} ± {sd}",
            NOTEBOOK[name],
            _ms([r["final"] for r in rs]),
            _ms([r["best"] for r in rs]),
        ]
        if use_torch:
            row += [
                _ms([r["torch_final"] for r in rs]), _ms([r["torch_best"] for r in rs]),
                ", ".join(f"{abs(r['final'] - r['torch_final']):.1f}" for r in rs),
            ]  # fmt: skip
        row.append(
            f"{np.mean([r['wall'] for r in rs]):.0f}"
            + (f" / {np.mean([r['torch_wall'] for r in rs]):.0f}" if use_torch else "")
        )
        rows.append(row)
    with open(out / "mnist1d.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["model", "seed", "framework", "final", "best"]
            + [f"acc@{s}" for s in runs[models[0]][0]["eval_steps"]]
        )
        for name, rs in runs.items():
            for r in rs:
                w.writerow([name, r["seed"], "chainrule", r["final"], r["best"], *r["acc"]])
                if "torch_acc" in r:
                    w.writerow(
                        [
                            name,
                            r["seed"],
                            "pytorch",
                            r["torch_final"],
                            r["torch_best"],
                            *r["torch_acc"],
                        ]
                    )
    _plot(runs, out / "test_accuracy.png")
    from .report import _md  # noqa: PLC0415

    table = _md(headers, rows)
    wall = time.perf_counter() - t0
    cmd = f"chainrule reproduce mnist1d{' --quick' if quick else ''}"
    (out / "results.md").write_text(
        f"# MNIST-1D, reproduced\n\n`{cmd}`: {seeds} seed(s) (42…), {steps} steps, test accuracy % (mean ± std over seeds); "
        f"'best' = highest of the evaluations every {every} steps.\n\n{table}\n\nTotal time: {wall:.0f} s.\n"
    )
    log("\n" + table + f"\n\nmnist1d: done in {wall:.0f}s; files in {out}/")
    return {"runs": runs, "table": (headers, rows), "wall": wall}


def _plot(runs: dict[str, list[dict]], path: Path) -> None:
    from .report import _figure  # noqa: PLC0415

    fig, _ = _figure(4 * len(runs), 3.2)
    for k, (name, rs) in enumerate(runs.items()):
        ax = fig.add_subplot(1, len(runs), k + 1)
        for j, r in enumerate(rs):
            ax.plot(
                r["eval_steps"],
                r["acc"],
                color="tab:blue",
                lw=1,
                label="chainrule" if j == 0 else None,
            )
            if "torch_acc" in r:
                ax.plot(
                    r["eval_steps"],
                    r["torch_acc"],
                    color="tab:orange",
                    lw=1,
                    ls="--",
                    label="PyTorch" if j == 0 else None,
                )
        ax.axhline(PUBLISHED[name][0], color="k", lw=0.8, ls=":", label="published")
        ax.set_title(f"MNIST-1D {name}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("test accuracy %")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
