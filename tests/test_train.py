"""``chainrule.train``: fit/evaluate, metrics against hand computations, callbacks (early stopping,
checkpoints, schedulers, loggers, progress), exact resume after an interruption (in-process, by
Ctrl-C, and by SIGKILL of a subprocess) and history plots."""

from __future__ import annotations

import io as pyio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.optim as optim
from chainrule.data import DataLoader, TensorDataset
from chainrule.io import load_checkpoint
from chainrule.train import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLogger,
    LRSchedulerCallback,
    ModelCheckpoint,
    ProgressBar,
    Trainer,
    evaluate,
    fit,
    plot_history,
)
from chainrule.train.metrics import Accuracy, Mean, accuracy, top_k_accuracy

EPOCHS = 4


def _data(n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)).clip(0, 2)
    return x, y


def _setup(
    model_seed: int = 0, generator: bool = True, opt: str = "adam", sched: str | None = "onecycle"
) -> dict:
    """A small classifier with dropout (random numbers in every step), a shuffled loader with a
    short last batch, a validation loader, an optimiser with state and a scheduler."""
    x, y = _data()
    ds = TensorDataset(cr.from_numpy(x), cr.from_numpy(y))
    g = cr.Generator().manual_seed(7) if generator else None
    train = DataLoader(ds, batch_size=16, shuffle=True, generator=g)  # 6 batches, the last of 10
    val = DataLoader(TensorDataset(cr.from_numpy(x[:40]), cr.from_numpy(y[:40])), batch_size=32)
    cr.manual_seed(model_seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    o = (
        optim.Adam(model.parameters(), lr=0.02)
        if opt == "adam"
        else optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )
    s, interval = None, "epoch"
    if sched == "onecycle":
        s, interval = optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=6 * EPOCHS), "batch"
    elif sched == "step":
        s = optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)
    return {
        "model": model,
        "optimizer": o,
        "scheduler": s,
        "scheduler_interval": interval,
        "train": train,
        "val": val,
    }


def _fit(run: dict, **kw: object):
    kw.setdefault("progress", False)
    return fit(
        run["model"], nn.CrossEntropyLoss(), run["optimizer"], run["train"], run["val"],
        epochs=kw.pop("epochs", EPOCHS), scheduler=run["scheduler"],
        scheduler_interval=run["scheduler_interval"], **kw,
    )  # fmt: skip


def _weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.data.copy() for k, v in model.state_dict().items()}


def _assert_bitwise(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


class _CrashError(Exception):
    """The crash a test simulates."""


class _RaiseAt(Callback):
    """Raise ``exc`` from on_batch_end (or, ``epoch_end``, on_epoch_end) once the trainer has
    done ``step`` optimiser steps."""

    def __init__(
        self, step: int, exc: BaseException | type = _CrashError, epoch_end: bool = False
    ) -> None:
        self.step, self.exc, self.epoch_end = step, exc, epoch_end

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.trainer.global_step == self.step and not self.epoch_end:
            raise self.exc

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.trainer.global_step == self.step and self.epoch_end:
            raise self.exc


# ------------------------------------------------------------------------------ metrics
def test_metric_functions_by_hand() -> None:
    out = np.array([[2.0, 1.0, 0.0], [0.1, 0.3, 0.2], [0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    tgt = np.array([0, 2, 2, 0])
    assert accuracy(cr.tensor(out), cr.tensor(tgt)) == 0.5  # argmax 0, 1, 2, 2
    assert top_k_accuracy(out, tgt, k=2) == 0.75  # sample 3: class 0 ranks third
    assert top_k_accuracy(out, tgt, k=3) == 1.0
    assert accuracy(out, np.eye(3)[tgt]) == 0.5  # one-hot targets
    assert accuracy(np.array([0.7, 0.2, 0.6]), np.array([1.0, 0.0, 0.0])) == 2 / 3  # probabilities
    assert accuracy(np.array([[0.3], [-0.1]]), np.array([1, 0]), threshold=0.0) == 1.0  # logits
    m = Mean()
    m.update(1.0, 3)
    m.update(0.0, 1)
    assert m.result() == 0.75
    acc = Accuracy()
    acc.update_batch(out[:3], tgt[:3], 0.0, 3)  # 2 of 3 right
    acc.update_batch(out[3:], tgt[3:], 0.0, 1)  # 0 of 1
    assert acc.result() == 0.5  # per sample, not the mean of batch means (1/3)


def test_history_metrics_match_a_hand_computation() -> None:
    """lr = 0: the weights never move, so every epoch's loss and accuracy are those of the
    initial model over all samples, and the short last batch must be weighted by its size."""
    x, y = _data(26)
    cr.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    w = _weights(model)
    h = np.tanh(x @ w["0.weight"].T + w["0.bias"]) @ w["2.weight"].T + w["2.bias"]
    logp = h - h.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    want_loss = float(-logp[np.arange(len(y)), y].mean())
    want_acc = float((h.argmax(1) == y).mean())
    want_top2 = float(np.mean([(h[i] > h[i, y[i]]).sum() < 2 for i in range(len(y))]))
    loader = DataLoader(
        TensorDataset(cr.from_numpy(x), cr.from_numpy(y)), batch_size=8
    )  # 8, 8, 8, 2
    hist = fit(
        model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), loader, loader,
        epochs=2, metrics=("loss", "accuracy", "top2_accuracy"), progress=False,
    )  # fmt: skip
    assert list(hist.history) == [
        "loss", "accuracy", "top2_accuracy", "val_loss", "val_accuracy", "val_top2_accuracy", "lr",
    ]  # fmt: skip
    assert hist.epoch == [0, 1]
    for key, want in [("loss", want_loss), ("accuracy", want_acc), ("top2_accuracy", want_top2)]:
        for v in hist.history[key] + hist.history["val_" + key]:
            assert v == pytest.approx(want, rel=1e-6), key
    assert hist.history["lr"] == [0.0, 0.0]
    ev = evaluate(model, nn.CrossEntropyLoss(), loader, metrics=("accuracy",))
    assert set(ev) == {"loss", "accuracy"}  # loss is always there
    assert ev["loss"] == pytest.approx(want_loss, rel=1e-6) and ev["accuracy"] == want_acc


def test_fit_learns_and_logs_one_value_per_epoch() -> None:
    run = _setup(sched="step", opt="sgd")
    hist = _fit(run, epochs=6)
    h = hist.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 6 for v in h.values())
    assert h["loss"][-1] < 0.7 * h["loss"][0]
    assert h["val_accuracy"][-1] > 0.8
    assert h["lr"] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]  # StepLR(2, 0.5), stepped per epoch
    assert all(0 <= a <= 1 for a in h["accuracy"])
    assert run["model"].training  # evaluate restored train mode


def test_custom_train_step_by_subclassing() -> None:
    class Counting(Trainer):
        calls = 0

        def train_step(self, batch):
            Counting.calls += 1
            return super().train_step(batch)

    run = _setup(sched=None)
    t = Counting(run["model"], nn.CrossEntropyLoss(), run["optimizer"], metrics=("accuracy",))
    hist = t.fit(run["train"], epochs=2, progress=False)
    assert Counting.calls == 12 and t.global_step == 12 and len(hist.history["loss"]) == 2


# ------------------------------------------------------------------------------ callbacks
def test_early_stopping_restores_best_weights() -> None:
    run = _setup(sched=None, opt="sgd")
    seen = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = _weights(self.model)

    # a constant lr never improves: best at epoch 0, stop when patience runs out (epoch 2)
    es = EarlyStopping(monitor="lr", mode="min", patience=2, restore_best_weights=True)
    hist = _fit(run, epochs=10, callbacks=[Snapshot(), es])
    assert hist.epoch == [0, 1, 2] and es.stopped_epoch == 2 and es.best_epoch == 0
    _assert_bitwise(_weights(run["model"]), seen[0])

    run = _setup(sched=None, opt="sgd")  # improving val_loss: never stops
    es = EarlyStopping(monitor="val_loss", patience=1)
    assert len(_fit(run, epochs=3, callbacks=[es]).epoch) == 3 and es.stopped_epoch is None


def test_reduce_lr_on_plateau_gets_the_monitored_metric() -> None:
    run = _setup(sched=None, opt="sgd")
    run["optimizer"].param_groups[0]["lr"] = 1e-12  # loss flat: a plateau from epoch 1
    plateau = optim.lr_scheduler.ReduceLROnPlateau(run["optimizer"], factor=0.5, patience=0, eps=0)
    hist = _fit(run, epochs=4, callbacks=[LRSchedulerCallback(plateau, monitor="val_loss")])
    # logged: the lr used during the epoch; the first plateau is seen at the end of epoch 1
    assert hist.history["lr"] == [1e-12, 1e-12, 5e-13, 2.5e-13]


def test_checkpoint_files(tmp_path: Path) -> None:
    run = _setup()
    hist = _fit(run, checkpoint_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == [
        "best.safetensors",
        "checkpoint.safetensors",
        "last.safetensors",
    ]
    _assert_bitwise(
        {k: v.data for k, v in cr.load(tmp_path / "last.safetensors").items()},
        _weights(run["model"]),
    )
    best = int(np.argmin(hist.history["val_loss"]))
    import safetensors

    with safetensors.safe_open(str(tmp_path / "best.safetensors"), "np") as f:
        assert f.metadata()["epoch"] == str(best)
    ck = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert ck["epoch"] == EPOCHS and ck["batch"] == 0 and ck["step"] == 6 * EPOCHS
    assert ck["history"]["history"] == hist.history
    assert set(ck) >= {"model", "optimizer", "scheduler", "loader", "rng", "metrics", "callbacks"}
    assert ck["loader"]["batches_done"] == 0

    # every N steps: the file follows the steps; a crash leaves the last one
    d = tmp_path / "steps"
    with pytest.raises(_CrashError):
        _fit(_setup(), callbacks=[ModelCheckpoint(d, every_n_steps=4), _RaiseAt(11)])
    ck = load_checkpoint(d / "checkpoint.safetensors")
    assert (ck["step"], ck["epoch"], ck["batch"], ck["loader"]["batches_done"]) == (8, 1, 2, 2)


def test_csv_and_json_loggers(tmp_path: Path) -> None:
    hist = _fit(
        _setup(), callbacks=[CSVLogger(tmp_path / "log.csv"), JSONLogger(tmp_path / "log.jsonl")]
    )
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr" and len(lines) == EPOCHS + 1
    assert float(lines[2].split(",")[1]) == hist.history["loss"][1]
    rows = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))
    assert [r["val_accuracy"] for r in rows] == hist.history["val_accuracy"]


def test_progress_is_one_line_per_epoch_when_not_a_tty(capsys: pytest.CaptureFixture) -> None:
    _fit(_setup(), progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == EPOCHS
    for i, line in enumerate(lines):
        assert line.startswith(f"Epoch {i + 1}/{EPOCHS} - ")
        assert " - loss: " in line and " - accuracy: " in line and " - val_loss: " in line


def test_progress_bar_on_a_tty() -> None:
    buf = pyio.StringIO()
    _fit(_setup(), epochs=1, callbacks=[ProgressBar(file=buf, tty=True)])
    text = buf.getvalue()
    assert "Epoch 1/1" in text and "6/6" in text and "loss: " in text and "val_accuracy: " in text


# ------------------------------------------------------------------------------ exact resume
@pytest.mark.parametrize(
    ("stop_at", "epoch_end", "generator", "opt", "sched"),
    [
        (9, False, True, "adam", "onecycle"),  # mid-epoch, per-batch scheduler
        (12, True, True, "sgd", "step"),  # in epoch 2's end, after its last batch
        (14, False, False, "adam", "step"),  # loader without a generator (seeded from the global)
        (20, False, False, "sgd", "onecycle"),
    ],
)
def test_resume_after_a_crash_is_bitwise_identical(
    tmp_path: Path, stop_at: int, epoch_end: bool, generator: bool, opt: str, sched: str
) -> None:
    ref = _setup(generator=generator, opt=opt, sched=sched)
    ref_hist = _fit(ref, seed=1)
    run = _setup(generator=generator, opt=opt, sched=sched)
    crash = _RaiseAt(stop_at, epoch_end=epoch_end)
    with pytest.raises(_CrashError):
        _fit(run, seed=1, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), crash])
    ck = load_checkpoint(tmp_path / "checkpoint.safetensors")
    # the last checkpoint written: after the step before the crash, or (a crash in the end of
    # an epoch) after the epoch's last step, with the epoch not yet counted
    assert ck["step"] == (stop_at if epoch_end else stop_at - 1)
    assert ck["loader"]["batches_done"] == ck["batch"] == ck["step"] - 6 * ck["epoch"]
    assert ck["batch"] == 6 if epoch_end else 0 < ck["batch"] < 6
    cr.manual_seed(1234)  # a new process would be in another random state
    np.random.seed(99)
    again = _setup(model_seed=5, generator=generator, opt=opt, sched=sched)  # other initial weights
    hist = _fit(again, seed=1, resume=True, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1)])
    _assert_bitwise(_weights(again["model"]), _weights(ref["model"]))
    assert hist.history == ref_hist.history and hist.epoch == ref_hist.epoch
    assert again["optimizer"].param_groups[0]["lr"] == ref["optimizer"].param_groups[0]["lr"]


def test_resume_at_an_epoch_boundary_and_with_a_plain_list(tmp_path: Path) -> None:
    ref = _setup(sched="step")
    ref_hist = _fit(ref)
    run = _setup(sched="step")
    log = [CSVLogger(tmp_path / "log.csv")]
    _fit(run, epochs=2, checkpoint_dir=tmp_path, callbacks=log)  # stops cleanly after epoch 2
    again = _setup(model_seed=9, sched="step")
    hist = _fit(again, checkpoint_dir=tmp_path, resume=True, callbacks=log)  # epochs 3 and 4
    _assert_bitwise(_weights(again["model"]), _weights(ref["model"]))
    assert hist.epoch == list(range(EPOCHS)) and hist.history == ref_hist.history
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(EPOCHS))  # each epoch once

    # a list of batches has no state_dict: the trainer skips the batches already done
    x, y = _data(40)
    batches = [(cr.from_numpy(x[i : i + 8]), cr.from_numpy(y[i : i + 8])) for i in range(0, 40, 8)]

    def make(seed: int) -> tuple:
        cr.manual_seed(seed)
        m = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.3))
        return m, optim.SGD(m.parameters(), lr=0.1)

    m, o = make(0)
    fit(m, nn.CrossEntropyLoss(), o, batches, epochs=2, progress=False, seed=3)
    want = _weights(m)
    m, o = make(0)
    with pytest.raises(_CrashError):
        fit(m, nn.CrossEntropyLoss(), o, batches, epochs=2, progress=False, seed=3,
            callbacks=[ModelCheckpoint(tmp_path / "l", every_n_steps=1), _RaiseAt(8)])  # fmt: skip
    m, o = make(1)
    fit(m, nn.CrossEntropyLoss(), o, batches, epochs=2, progress=False, seed=3,
        checkpoint_dir=tmp_path / "l", resume=True)  # fmt: skip
    _assert_bitwise(_weights(m), want)


@pytest.mark.parametrize("how", ["raise", "sigint"])
def test_keyboard_interrupt_saves_mid_epoch_and_reraises(
    tmp_path: Path, capsys: pytest.CaptureFixture, how: str
) -> None:
    ref = _setup()
    _fit(ref)
    run = _setup()

    class CtrlC(Callback):
        def on_batch_end(self, batch, logs=None):
            if self.trainer.global_step == 10:
                if how == "raise":
                    raise KeyboardInterrupt
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: honoured after this batch

    trainer = Trainer(run["model"], nn.CrossEntropyLoss(), run["optimizer"])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(run["train"], run["val"], epochs=EPOCHS, scheduler=run["scheduler"],
                    scheduler_interval="batch", checkpoint_dir=tmp_path, progress=False,
                    callbacks=[CtrlC()])  # fmt: skip
    assert trainer.history.interrupted and trainer.history.epoch == [0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    err = capsys.readouterr().err
    assert "checkpoint saved to" in err and str(tmp_path) in err
    ck = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert (ck["step"], ck["epoch"], ck["batch"], ck["loader"]["batches_done"]) == (10, 1, 4, 4)
    again = _setup(model_seed=2)
    _fit(again, checkpoint_dir=tmp_path, resume=True)
    _assert_bitwise(_weights(again["model"]), _weights(ref["model"]))


def test_keyboard_interrupt_inside_a_step_saves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = _setup()
    calls = [0]

    def loss_fn(out, y):
        calls[0] += 1
        if calls[0] == 8:  # inside the 8th step: the model may be half-updated, can't save
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(KeyboardInterrupt):
        fit(run["model"], loss_fn, run["optimizer"], run["train"], epochs=2, progress=False,
            callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1)])  # fmt: skip
    assert "nothing saved" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "checkpoint.safetensors")["step"] == 7  # the last good one


_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import chainrule as cr
    from chainrule import nn, optim
    from chainrule.data import DataLoader, TensorDataset
    from chainrule.train import Callback, ModelCheckpoint, fit

    out, ckdir, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64)
    loader = DataLoader(TensorDataset(cr.from_numpy(x), cr.from_numpy(y)), batch_size=16,
                        shuffle=True)  # shuffled from the global generator's seed
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.25), nn.Linear(32, 2))
    opt = optim.AdamW(model.parameters(), lr=0.01)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)

    class Tick(Callback):
        def on_batch_end(self, batch, logs=None):
            print("step", self.trainer.global_step, flush=True)
            time.sleep(0.01)  # leaves the parent time to kill it mid-run

    hist = fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=6, scheduler=sched, seed=11,
               callbacks=[ModelCheckpoint(ckdir, every_n_steps=1), Tick()], resume=resume,
               progress=False)
    cr.save(model.state_dict(), out)
    with open(out + ".json", "w") as f:
        json.dump(hist.history, f)
    """
)


def test_resume_after_sigkill_in_a_subprocess_is_bitwise_identical(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }

    def run(out: str, ckdir: str, resume: bool) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path / out), str(tmp_path / ckdir), "1" if resume else "0"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ref = run("ref.safetensors", "ref_ck", False)
    assert ref.returncode == 0, ref.stderr
    total = 6 * 8  # 6 epochs of 8 batches
    kill_after = random.randrange(2, total - 12)  # a step after the first checkpoint
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run.safetensors"), str(tmp_path / "ck"), "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if line.startswith("step ") and int(line.split()[1]) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run (kill_after={kill_after})"
    assert not (tmp_path / "run.safetensors").exists()
    step = load_checkpoint(tmp_path / "ck" / "checkpoint.safetensors")["step"]
    assert kill_after - 1 <= step < total, (kill_after, step)

    resumed = run("run.safetensors", "ck", True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" not in resumed.stdout  # progress=False: nothing but the ticks on stdout
    first = int(resumed.stdout.split()[1])
    assert first == step + 1, (first, step, kill_after)  # continued where the checkpoint was
    want, got = cr.load(tmp_path / "ref.safetensors"), cr.load(tmp_path / "run.safetensors")
    _assert_bitwise({k: v.data for k, v in got.items()}, {k: v.data for k, v in want.items()})
    assert json.loads((tmp_path / "run.safetensors.json").read_text()) == json.loads(
        (tmp_path / "ref.safetensors.json").read_text()
    )
    assert not [p for p in (tmp_path / "ck").iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ plots
def test_plot_history_writes_a_png(tmp_path: Path) -> None:
    hist = _fit(_setup(), epochs=3)
    path = plot_history(hist, tmp_path / "curves.png")
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > height > 100  # two panels side by side: loss and accuracy
    plot_history(hist.history, tmp_path / "loss.png", metrics=("loss",))
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_history_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'chainrule\[plot\]'"):
        plot_history({"loss": [1.0, 0.5]}, tmp_path / "x.png")
