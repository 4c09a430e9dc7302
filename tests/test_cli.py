"""The ``chainrule`` command end to end, in subprocesses: the files a run writes, resume after
SIGKILL, and one clear line for every kind of mistake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli, config, presets

ENV = {**os.environ, "CHAINRULE_CACHE": ""}


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ}
    return subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


def test_presets_lists_every_preset_one_line_each(tmp_path: Path) -> None:
    r = run(["presets"], tmp_path)
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == list(presets.PRESETS)
    assert "(default)" in next(ln for ln in lines if ln.startswith(presets.DEFAULT))


def test_train_writes_a_complete_run_folder(tmp_path: Path) -> None:
    r = run(["train", "--preset", "xor", "--epochs", "40", "--lr", "0.5", "--seed", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "runs" / "xor"
    for f in (
        "config.toml",
        "metrics.csv",
        "history.jsonl",
        "curves.png",
        "best.safetensors",
        "last.safetensors",
        "checkpoint.safetensors",
        "summary.json",
    ):
        assert (d / f).exists(), f
    summary = json.loads((d / "summary.json").read_text())
    assert summary["epochs"] == 40 and summary["parameters"] == 9
    rows = (d / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 41
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = config.load_toml(d / "config.toml")
    assert cfg["train"]["epochs"] == 40 and cfg["optimizer"]["lr"] == 0.5 and cfg["seed"] == 1
    # the saved weights load into the preset's model and give the summary's loss
    model = presets.build_model(cfg["model"])
    model.load_state_dict(cr.load(d / "last.safetensors"))
    # a second run does not overwrite the first
    r2 = run(["train", "--preset", "xor", "--epochs", "2", "--no-progress"], tmp_path)
    assert r2.returncode == 0 and (tmp_path / "runs" / "xor-2" / "summary.json").exists()


def test_eval_reports_the_saved_model(tmp_path: Path) -> None:
    assert (
        run(
            ["train", "--preset", "encoder8", "--epochs", "30", "--out", "e8", "--no-progress"],
            tmp_path,
        ).returncode
        == 0
    )
    r = run(["eval", "e8", "--weights", "last", "--split", "train"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "encoder8" in r.stdout and "8 samples" in r.stdout and "loss" in r.stdout


def test_config_file_trains(tmp_path: Path) -> None:
    (tmp_path / "run.toml").write_text(
        """
name = "tiny"
seed = 3
[data]
dataset = "parity"
n = 3
batch_size = 8
val = "train"
[model]
layers = [ { type = "Linear", in_features = 3, out_features = 6 }, { type = "Tanh" },
           { type = "Linear", in_features = 6, out_features = 1 }, { type = "Sigmoid" } ]
[optimizer]
name = "Adam"
lr = 0.05
[scheduler]
name = "StepLR"
step_size = 10
[train]
epochs = 25
loss = "MSELoss"
"""
    )
    r = run(["train", "--config", "run.toml", "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [
        json.loads(ln)
        for ln in (tmp_path / "runs" / "tiny" / "history.jsonl").read_text().splitlines()
    ]
    lrs = [r["lr"] for r in rows]
    assert len(rows) == 25
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] == pytest.approx(0.05 * 0.1**2)


@pytest.mark.parametrize(
    "args, toml, expected",
    [
        (["train", "--preset", "nope"], None, "unknown preset 'nope'"),
        (["train", "--config", "missing.toml"], None, "missing.toml does not exist"),
        (["train", "--config", "bad.toml"], "[data\n", "not valid TOML"),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "cifar"\n[model]\nlayers=[{type="ReLU"}]\n',
            "data.dataset = 'cifar' is not allowed; choose one of: xor",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\n[model]\nlayers=[{type="Conv2d", in_channels=1}]\n',
            "model.layers[0]: Conv2d needs argument 'out_channels'",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\n[model]\nlayers=[{type="Linear", in_features=2, out_features=1, bais=true}]\n',
            "Linear has no argument 'bais'",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\n[model]\nlayers=[{type="Lineer"}]\n',
            "model.layers[0].type = 'Lineer' is not allowed",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\n[model]\nlayers=[{type="ReLU"}]\n[optimizer]\nname="Adamm"\n',
            "optimizer.name = 'Adamm' is not allowed",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\nbatch = 3\n[model]\nlayers=[{type="ReLU"}]\n',
            "data key = 'batch' is not allowed",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "xor"\n[model]\nlayers=[{type="Linear", in_features=5, out_features=1}]\n',
            "the model does not accept this data: a sample of shape (2,)",
        ),
        (
            ["train", "--config", "bad.toml"],
            '[data]\ndataset = "npz"\npath = "nothere.npz"\n[model]\nlayers=[{type="ReLU"}]\n',
            "data.path 'nothere.npz' does not exist",
        ),
        (
            ["train", "--config", "bad.toml"],
            'device = "gpu"\n[data]\ndataset = "xor"\n[model]\nlayers=[{type="ReLU"}]\n',
            "device = 'gpu' is not allowed; use 'cpu', 'cuda', 'cuda:N' or 'auto'",
        ),
        (["eval", "nowhere"], None, "nowhere is not a run folder"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, args: list[str], toml: str | None, expected: str
) -> None:
    if toml is not None:
        (tmp_path / "bad.toml").write_text(toml)
    r = run(args, tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("chainrule: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run(["--debug", "train", "--preset", "nope"], tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """Kill a run at a random moment after its first checkpoint; --resume finishes with the same
    weights, bit for bit, as a run that was never interrupted."""
    args = ["train", "--preset", "mnist1d-logistic", "--epochs", "12", "--no-progress"]
    ref = run([*args, "--out", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    env = {**os.environ}
    p = subprocess.Popen(
        [sys.executable, "-m", "chainrule.cli", *args, "--out", "killed"], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    ckpt = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    time.sleep(float(np.random.default_rng().uniform(0, 0.3)))
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ckpt.exists()
    r = run([*args, "--resume", "killed"], tmp_path)
    assert r.returncode == 0, r.stderr
    a = cr.load(tmp_path / "ref" / "last.safetensors")
    b = cr.load(tmp_path / "killed" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    rows_ref = (tmp_path / "ref" / "metrics.csv").read_text()
    rows_res = (tmp_path / "killed" / "metrics.csv").read_text()
    assert rows_ref.splitlines()[-1].split(",")[:3] == rows_res.splitlines()[-1].split(",")[:3]


def test_every_preset_validates_and_builds() -> None:
    for name in presets.PRESETS:
        cfg = config.validate(presets.get(name))
        model = presets.build_model(cfg["model"])
        assert sum(p.numel() for p in model.parameters()) > 0
    assert (
        sum(
            p.numel() for p in presets.build_model(presets.get("mnist1d-cnn")["model"]).parameters()
        )
        == 5210
    )
    assert (
        sum(
            p.numel() for p in presets.build_model(presets.get("mnist1d-gru")["model"]).parameters()
        )
        == 5134
    )
    assert (
        sum(
            p.numel() for p in presets.build_model(presets.get("mnist1d-mlp")["model"]).parameters()
        )
        == 15210
    )


def test_run_folder_naming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    d, resume = cli._resolve_run_dir("x", None, None)
    assert d == Path("runs/x") and not resume
    (tmp_path / "runs" / "x").mkdir(parents=True)
    assert cli._resolve_run_dir("x", None, None)[0] == Path("runs/x")  # empty: reused
    (tmp_path / "runs" / "x" / "summary.json").write_text("{}")
    assert cli._resolve_run_dir("x", None, None)[0] == Path("runs/x-2")
    with pytest.raises(cli.CLIError, match="no checkpoint.safetensors"):
        cli._resolve_run_dir("x", None, "runs/x")


# ------------------------------------------------------------------------------ --device
_TINY = """
name = "tiny"
seed = 3
{device}
[data]
dataset = "parity"
n = 3
batch_size = 3
val = "train"
[model]
layers = [ {{ type = "Linear", in_features = 3, out_features = 6 }}, {{ type = "Tanh" }},
           {{ type = "Linear", in_features = 6, out_features = 1 }}, {{ type = "Sigmoid" }} ]
[optimizer]
name = "Adam"
lr = 0.05
[train]
epochs = 6
loss = "MSELoss"
"""


def _main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = cli.main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def _weights_of(d: Path) -> dict:
    return {k: v.numpy() for k, v in cr.load(d / "last.safetensors").items()}


def test_train_on_cuda_gives_the_cpu_weights_and_resumes_on_cpu(
    tmp_path: Path, cuda: str, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "cpu.toml").write_text(_TINY.format(device=""))
    (tmp_path / "gpu.toml").write_text(_TINY.format(device='device = "cuda"'))
    common = ["--no-progress", "--epochs"]
    rc, _, err = _main(["train", "--config", str(tmp_path / "cpu.toml"), *common, "6",
                        "--out", str(tmp_path / "cpu"), "--device", "cpu"], capsys)  # fmt: skip
    assert rc == 0, err
    rc, out, err = _main(["train", "--config", str(tmp_path / "cpu.toml"), *common, "6",
                          "--out", str(tmp_path / "flag"), "--device", "cuda"], capsys)  # fmt: skip
    assert rc == 0, err
    assert " on cuda " in out
    rc, out, err = _main(["train", "--config", str(tmp_path / "gpu.toml"), *common, "3",
                          "--out", str(tmp_path / "toml")], capsys)  # fmt: skip
    assert rc == 0, err
    assert (
        " on cuda " in out and 'device = "cuda"' in (tmp_path / "toml" / "config.toml").read_text()
    )
    want = _weights_of(tmp_path / "cpu")
    got = _weights_of(tmp_path / "flag")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)
    # the checkpoint of the 3-epoch CUDA run resumes on the CPU and finishes as the CPU run did
    rc, out, err = _main(["train", "--config", str(tmp_path / "gpu.toml"), *common, "6",
                          "--resume", str(tmp_path / "toml"), "--device", "cpu"], capsys)  # fmt: skip
    assert rc == 0, err
    assert "resuming" in out and " on cuda " not in out
    got = _weights_of(tmp_path / "toml")
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)
    # eval on the device
    rc, out, err = _main(["eval", str(tmp_path / "flag"), "--split", "train", "--device", "cuda"], capsys)  # fmt: skip
    assert rc == 0 and "accuracy" in out, err


def test_device_cuda_without_cuda_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from chainrule import backend

    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    monkeypatch.setattr(backend, "_cuda", None)
    monkeypatch.setattr(backend, "_cuda_types", ())
    monkeypatch.setattr(backend, "_cuda_error", None)
    monkeypatch.chdir(tmp_path)
    for args in (["train", "--preset", "xor", "--device", "cuda"], ["train", "--preset", "xor"]):
        (tmp_path / "x.toml").write_text('device = "cuda"\n[data]\ndataset = "xor"\n'
                                         '[model]\nlayers=[{type="Linear", in_features=2, out_features=1}]\n')  # fmt: skip
        if "--device" not in args:
            args = ["train", "--config", "x.toml"]
        rc, out, err = _main(args, capsys)
        assert rc == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert (
            lines[0].startswith("chainrule: error: CUDA is not available")
            and "pip install" in lines[0]
        )
        assert not (tmp_path / "runs").exists()  # refused before making a run folder
    rc, out, err = _main(["train", "--preset", "xor", "--epochs", "1", "--no-progress",
                          "--device", "auto"], capsys)  # fmt: skip
    assert rc == 0 and " on cuda" not in out, err  # auto: the CPU here
