"""The three applications (issue 9): the log-mel feature extractor, the espeak-ng spoken digits,
the pydoc character corpus, random-shift augmentation, every application preset for one short
epoch, and ``chainrule generate``."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chainrule import cli, config, presets
from chainrule.data import DataLoader, TensorDataset
from chainrule.data import features as F
from chainrule.data.augment import RandomShift, shift_images
from chainrule.data.datasets import speech, text
from chainrule.data.datasets.readers import MNIST_FILES, write_idx

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(
    not HAVE_ESPEAK,
    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
)
APP_PRESETS = ("digits-cnn", "mnist-cnn", "speech-digits", "charlm-gru", "charlm-transformer")


@pytest.fixture(autouse=True)
def _one_blas_thread() -> object:
    """Small matrices on a shared 2-core machine: one BLAS thread is faster and steadier."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


# ----------------------------------------------------------------------------- features


def test_frames_and_shapes() -> None:
    x = np.arange(1000, dtype=np.float64)
    fr = F.frame(x, 400, 160)
    assert fr.shape == (1 + (1000 - 400) // 160, 400) == (F.num_frames(1000, 400, 160), 400)
    np.testing.assert_array_equal(fr[2], x[320:720])
    assert F.frame(np.ones(10), 16, 4).shape == (1, 16)  # shorter than a frame: padded to one
    w = F.hann_window(8)
    np.testing.assert_allclose(w, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(8) / 8))
    assert F.power_spectrum(fr, 512).shape == (fr.shape[0], 257)
    fb = F.mel_filterbank(40, 512, 16000)
    assert fb.shape == (40, 257) and fb.min() >= 0 and np.isclose(fb.max(), 1, atol=0.05)
    np.testing.assert_allclose(F.mel_to_hz(F.hz_to_mel([0, 440, 1000, 7999])), [0, 440, 1000, 7999])
    assert np.isclose(F.hz_to_mel(1000), 999.99, atol=0.1)  # HTK: 1000 Hz ~ 1000 mel
    s = F.log_mel_spectrogram(
        np.zeros(22050), 22050, n_fft=512, hop_length=220, n_mels=40, fmax=8000
    )
    assert s.shape == (40, 98) and s.dtype == np.float32


@pytest.mark.parametrize("f0", [300.0, 1000.0, 2500.0, 6000.0])
def test_a_pure_tone_lands_in_the_mel_band_centred_nearest_it(f0: float) -> None:
    sr, n_mels = 16000, 40
    t = np.arange(sr) / sr
    s = F.log_mel_spectrogram(
        np.sin(2 * np.pi * f0 * t), sr, n_fft=1024, hop_length=256, n_mels=n_mels
    )
    centres = F.mel_frequencies(n_mels, 0, sr / 2)[1:-1]
    band = np.argmax(s.mean(axis=1))
    assert band == np.argmin(np.abs(centres - f0)), (band, centres[band], f0)
    # and it is far louder there than in bands far away
    assert s[band].mean() - np.delete(s, np.arange(band - 3, band + 4) % n_mels, axis=0).max() > 5


# ----------------------------------------------------------------------------- speech


def test_missing_espeak_is_one_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(speech.EspeakNotFoundError, match=r"apt-get install espeak-ng"):
        speech.speech_digits(tmp_path, n_voices=2)


@pytest.fixture(scope="module")
def speech_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")
    root = tmp_path_factory.mktemp("speech")
    speech.speech_digits(root, n_voices=2, verbose=False)  # 180 clips: 2 voices x 10 x 3 x 3
    return root


@needs_espeak
def test_synthesize_and_a_handful_of_clips() -> None:
    a = speech.synthesize("seven", "en-us+f1", 170, 50)
    assert a.dtype == np.float32 and 5000 < len(a) < 40000 and 0.05 < np.abs(a).max() <= 1
    d = speech.make_speech_digits(n_voices=1, speeds=(170,), pitches=(50,), seed=3)
    assert d["x"].shape == (10, 40, 98) and d["x"].dtype == np.float32
    assert d["y"].tolist() == list(range(10)) and np.isfinite(d["x"]).all()
    np.testing.assert_allclose(d["x"].mean(axis=(1, 2)), 0, atol=1e-4)  # standardised per clip
    assert (0 <= d["snr"]).all() and (d["snr"] <= 20).all()
    # the clips differ from each other, and the same seed makes the same set
    assert np.abs(d["x"][0] - d["x"][1]).mean() > 0.1
    d2 = speech.make_speech_digits(n_voices=1, speeds=(170,), pitches=(50,), seed=3)
    np.testing.assert_array_equal(d["x"], d2["x"])
    assert "10 clips" in speech.describe(d) and "per digit: zero 1" in speech.describe(d)


@needs_espeak
def test_speech_digits_cache_and_voice_split(
    speech_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    files = list(speech_root.glob("speech_digits_v*.npz"))
    assert len(files) == 1 and not list(speech_root.glob("*.tmp"))
    monkeypatch.setenv("PATH", "")  # loading the cache needs no espeak-ng
    train, test = speech.speech_digits(speech_root, n_voices=2)
    assert len(train) == len(test) == 90 and train[0][0].shape == (40, 98)
    assert set(train.meta["voice"].tolist()) == {1} and set(test.meta["voice"].tolist()) == {0}
    assert capsys.readouterr().err == ""  # quiet when cached
    assert [v for v, held in speech.voices() if held] == [
        f"{a}+{speech.VARIANTS[i % 4]}" for i, a in enumerate(speech.ACCENTS)
    ]


@needs_espeak
def test_speech_generation_states_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(speech, "SPEEDS", (170,))
    monkeypatch.setattr(speech, "PITCHES", (50,))
    real = speech.make_speech_digits
    monkeypatch.setattr(
        speech,
        "make_speech_digits",
        lambda n, seed, workers: real(n, (170,), (50,), seed=seed, workers=workers),
    )
    train, test = speech.speech_digits(tmp_path, n_voices=2)
    err = capsys.readouterr().err
    assert "synthesised with espeak-ng" in err and "20 clips" in err
    assert "train 10 clips, test 10 clips (held-out voices: en+m1)" in err


# ----------------------------------------------------------------------------- text


def test_vocabulary_is_fixed_and_round_trips() -> None:
    v = text.Vocabulary.ascii()
    assert len(v) == 96 and v.chars[0] == "\n" and v.chars[1] == " " and v.chars[-1] == "~"
    s = 'def f(x):\n    return {"a": x ** 2}  # ~'
    ids = v.encode(s)
    assert ids.dtype == np.int64 and ids.min() >= 0 and v.decode(ids) == s
    assert (
        v.decode(v.encode("it\u2019s \u201cquoted\u201d \u2014 caf\u00e9\u2026 \u4e2d"))
        == 'it\'s "quoted" -- cafe... ?'
    )
    assert text.Vocabulary.from_text("banana").chars == "abn"


def test_text_split_is_deterministic_disjoint_and_complete() -> None:
    topics = text.pydoc_topics()
    train, held = text.split_topics()
    assert (train, held) == text.split_topics()
    assert not set(train) & set(held) and set(train) | set(held) == set(topics)
    frac = sum(len(topics[n]) for n in held) / sum(len(t) for t in topics.values())
    assert 0.03 < frac < 0.2 and held
    tr, te = text.char_corpus(seq_len=32)
    assert tr.vocab == te.vocab == text.Vocabulary.ascii()
    x, y = tr.tensors[0].data, tr.tensors[1].data
    assert x.shape[1] == 32 and x.dtype == np.int64 and len(te) > 0
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # the target is the input shifted by one
    np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])  # windows follow each other
    assert tr.vocab.decode(x[0]) == tr.text[:32]
    # the topics overlap; after deduplication no held-out paragraph is in the training text
    paras = [p for p in te.text.split("\n\n") if len(p) > 40]
    assert len(paras) > 50 and not any(p in tr.text for p in paras)
    tr2, _ = text.char_corpus(seq_len=32)
    np.testing.assert_array_equal(tr2.tensors[0].data, x)


def test_text_from_a_file(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("abcdefghij" * 100, encoding="utf-8")
    tr, te = text.char_corpus(seq_len=10, path=p)
    assert len(tr) == (900 - 1) // 10 and len(te) == (100 - 1) // 10


# ----------------------------------------------------------------------------- augmentation


def test_shift_images_moves_and_zero_fills() -> None:
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    out = shift_images(np.concatenate([x, x]), np.array([[1, 0], [0, -2]]))
    np.testing.assert_array_equal(out[0, 0, 1:], x[0, 0, :3])
    assert (out[0, 0, 0] == 0).all()
    np.testing.assert_array_equal(out[1, 0, :, :2], x[0, 0, :, 2:])
    assert (out[1, 0, :, 2:] == 0).all()


def test_random_shift_is_deterministic_per_seed_epoch_and_index() -> None:
    rng = np.random.default_rng(0)
    base = TensorDataset(rng.random((50, 1, 8, 8), dtype=np.float32), np.arange(50))
    a, b = RandomShift(base, 2, seed=7), RandomShift(base, 2, seed=7)
    # one sample at a time, in any order, equals a batch read
    batch = a.get_batch(np.arange(50))[0].data
    for i in (13, 0, 49):
        np.testing.assert_array_equal(b[i][0].data, batch[i])
    # and through a prefetching, shuffled DataLoader
    seen = {}
    for xb, yb in DataLoader(a, batch_size=8, shuffle=True, prefetch=True):
        for x, y in zip(xb.data, yb.data):
            seen[int(y)] = x
    for i in range(50):
        np.testing.assert_array_equal(seen[i], batch[i])
    s0 = a.shifts(np.arange(50))
    assert np.abs(s0).max() <= 2 and len({tuple(s) for s in s0}) > 5
    a.set_epoch(1)
    assert not np.array_equal(a.shifts(np.arange(50)), s0)
    np.testing.assert_array_equal(a.shifts(np.arange(50), epoch=0), s0)
    assert not np.array_equal(RandomShift(base, 2, seed=8).shifts(np.arange(50)), s0)
    assert np.array_equal(
        RandomShift(base, 0).get_batch(np.arange(5))[0].data, base.tensors[0].data[:5]
    )


# ----------------------------------------------------------------------------- presets end to end


def _mnist_dir(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(
            root / MNIST_FILES[f"{split}_images"], rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        write_idx(root / MNIST_FILES[f"{split}_labels"], rng.integers(0, 10, n).astype(np.uint8))
    return root


def _tiny(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict:
    cfg = copy.deepcopy(presets.get(name))
    d = cfg["data"]
    if name == "mnist-cnn":
        d["path"] = str(_mnist_dir(tmp_path / "mnist"))
    elif name == "speech-digits":
        d.update(path=str(request.getfixturevalue("speech_root")), n=2, limit=48)
    elif name.startswith("charlm"):
        d.update(limit=8, batch_size=4)
    else:
        d["limit"] = 96
    cfg["train"]["epochs"] = 1
    return config.validate(cfg)


@pytest.mark.parametrize("name", APP_PRESETS)
def test_each_application_preset_runs_one_short_epoch(
    name: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture
) -> None:
    if name == "speech-digits" and not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")
    cfg = _tiny(name, tmp_path, request)
    run = tmp_path / "run"
    run.mkdir()
    summary = cli.train_from_config(cfg, run, progress=False)
    for f in (
        "summary.json",
        "metrics.csv",
        "curves.png",
        "best.safetensors",
        "checkpoint.safetensors",
    ):
        assert (run / f).exists(), f
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1
    final = summary["final"]
    assert math.isfinite(final["val_loss"]) and 0 <= final["val_accuracy"] <= 1
    if name.startswith("charlm"):
        assert math.isclose(
            final["val_bits_per_char"], final["val_loss"] / math.log(2), rel_tol=1e-9
        )
        assert 3 < final["val_bits_per_char"] < 8  # about log2(96) = 6.6 untrained
        out = capsys.readouterr().out
        assert "--- sample after epoch 1" in out and "The " in out
        assert (run / "samples.txt").read_text().startswith("--- sample after epoch 1")


def test_train_data_option_and_missing_mnist_files(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--preset", "mnist-cnn", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data DIR" in err and "t10k-labels-idx1-ubyte" in err
    (tmp_path / "empty").mkdir()
    assert (
        cli.main(
            [
                "train",
                "--preset",
                "mnist-cnn",
                "--data",
                str(tmp_path / "empty"),
                "--out",
                str(tmp_path / "r0"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "no train-images-idx3-ubyte" in err
        and "t10k-images-idx3-ubyte" in err
    )
    cfg = config.apply_overrides(presets.get("mnist-cnn"), data=tmp_path / "m")
    assert (
        cfg["data"]["path"] == str(tmp_path / "m")
        and presets.PRESETS["mnist-cnn"]["data"]["path"] == "data"
    )
    # --data end to end: a run on (random) IDX files
    mnist = _mnist_dir(tmp_path / "mnist", 40, 20)
    argv = [
        "train",
        "--preset",
        "mnist-cnn",
        "--data",
        str(mnist),
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--no-progress",
        "--out",
        "r1",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert config.load_toml(tmp_path / "r1" / "config.toml")["data"]["path"] == str(mnist)
    assert json.loads((tmp_path / "r1" / "summary.json").read_text())["epochs"] == 1


def _tiny_text_run(tmp_path: Path) -> Path:
    cfg = copy.deepcopy(presets.get("charlm-gru"))
    cfg["data"].update(limit=8, batch_size=4)
    cfg["train"]["epochs"] = 1
    cfg = config.validate(cfg)
    run = tmp_path / "lm"
    run.mkdir()
    (run / "config.toml").write_text(config.to_toml(cfg))
    cli.train_from_config(cfg, run, progress=False)
    return run


def test_generate_in_a_subprocess(tmp_path: Path) -> None:
    run = _tiny_text_run(tmp_path)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}

    def gen(*extra: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "chainrule.cli",
            "generate",
            str(run),
            "--prompt",
            "def ",
            "--length",
            "40",
            *extra,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    a, b = gen("--seed", "1", "--temperature", "0.8"), gen("--seed", "1", "--temperature", "0.8")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("def ") and len(a.stdout) == 4 + 40 + 1
    bad = gen("--temperature", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("chainrule: error: --temperature")


def test_augmented_training_resumes_exactly(tmp_path: Path) -> None:
    """digits-cnn with random shifts: 2 epochs in one go == 1 epoch, then --resume to 2."""
    import chainrule as cr

    cfg = copy.deepcopy(presets.get("digits-cnn"))
    cfg["data"]["limit"] = 64
    cfg["train"]["epochs"] = 2
    whole, half = tmp_path / "whole", tmp_path / "half"
    whole.mkdir()
    half.mkdir()
    cli.train_from_config(config.validate(cfg), whole, progress=False)
    cli.train_from_config(
        config.validate({**cfg, "train": {**cfg["train"], "epochs": 1}}), half, progress=False
    )
    cli.train_from_config(config.validate(cfg), half, resume=True, progress=False)
    a, b = cr.load(whole / "last.safetensors"), cr.load(half / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k].data, b[k].data, err_msg=k)


@pytest.mark.parametrize("name", ["charlm-gru", "charlm-transformer"])
def test_language_models_train_and_sample_on_cuda(
    name: str, tmp_path: Path, request: pytest.FixtureRequest, cuda: str
) -> None:
    import chainrule as cr
    from chainrule.applications import sample_text

    cfg = _tiny(name, tmp_path, request)
    runs = {}
    for dev in ("cpu", cuda):
        runs[dev] = tmp_path / dev
        runs[dev].mkdir()
        cli.train_from_config({**cfg, "device": dev}, runs[dev], progress=False)
    a, b = (json.loads((runs[d] / "summary.json").read_text())["final"] for d in ("cpu", cuda))
    if name == "charlm-gru":  # no dropout: the same numbers on either device
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)
    else:  # dropout masks come from the CUDA generator there
        assert math.isfinite(b["val_loss"]) and 3 < b["val_bits_per_char"] < 8
    assert (runs[cuda] / "samples.txt").read_text().startswith("--- sample after epoch 1")
    model = presets.build_model(cfg["model"])
    model.load_state_dict(cr.load(runs["cpu"] / "last.safetensors"))
    vocab = text.Vocabulary.ascii()
    want = sample_text(model, vocab, "def ", 20, temperature=0, seed=1)
    model.to(cuda)
    assert sample_text(model, vocab, "def ", 20, temperature=0, seed=1) == want
    if name == "charlm-gru":  # chainrule generate --device cuda
        (runs["cpu"] / "config.toml").write_text(config.to_toml(cfg))
        capsys = request.getfixturevalue("capsys")
        capsys.readouterr()
        texts = []
        for dev in ("cpu", "cuda"):
            argv = ["generate", str(runs["cpu"]), "--weights", "last", "--prompt", "def ",
                    "--length", "20", "--temperature", "0", "--device", dev]  # fmt: skip
            assert cli.main(argv) == 0
            texts.append(capsys.readouterr().out)
        assert texts[0] == texts[1] == want + "\n"
