"""Spoken digits, synthesised locally with the ``espeak-ng`` speech synthesiser, as log-mel
spectrograms.

    train, test = speech_digits()        # (N, 40, 98) float32 log-mel spectrograms, labels 0..9

What it makes. The ten words "zero" ... "nine", each spoken by every *voice* (an espeak-ng accent
with a voice variant: 7 accents x 4 variants = 28 voices), at every *speed* (130, 170 and 210
words per minute) and *pitch* (30, 50 and 70 on espeak-ng's 0-99 scale): 2,520 clips. Each clip
is trimmed to its speech, placed at a random offset in a 1-second window (22,050 Hz, espeak-ng's
rate), given white noise at a random signal-to-noise ratio between 0 and 20 dB, turned into a
log-mel spectrogram (``chainrule.data.features``: 512-point FFT of 23 ms Hann-windowed frames
every 10 ms, 40 HTK-mel bands up to 8 kHz, natural log) and standardised (zero mean, unit
variance over the clip). All randomness comes from ``seed`` and the clip's index, so the set is
the same on every run and machine with the same espeak-ng.

The split is by voice: a quarter of the voices (one variant per accent, a different one for each
accent) are held out for the test set, so the test measures recognition of voices the model has
never heard (every accent and every variant is still seen in training, in other combinations).

Cache. The arrays are kept in ``<root>/speech_digits_v1_<key>.npz`` (``root``: ``data.path`` /
``--data``, else ``$CHAINRULE_CACHE`` or ``~/.cache/chainrule``; ``key``: a hash of every setting
above), written atomically; generating takes about 20-40 s on two cores and prints how many clips
of each kind it made (``python -m chainrule.data.datasets.speech [ROOT]`` makes it ahead of time).
With a cache present espeak-ng is not needed.

espeak-ng. A Debian/Ubuntu package (``sudo apt-get install espeak-ng``; macOS ``brew install
espeak-ng``; Fedora ``sudo dnf install espeak-ng``); ``EspeakNotFoundError`` says so when it is
missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import TensorDataset
from ..features import log_mel_spectrogram, num_frames
from .mnist1d import _save_cache, default_root

__all__ = [
    "DIGITS",
    "ACCENTS",
    "VARIANTS",
    "SPEEDS",
    "PITCHES",
    "EspeakNotFoundError",
    "espeak_version",
    "synthesize",
    "voices",
    "make_speech_digits",
    "speech_digits",
    "describe",
]

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# accents whose voice variants take effect (with espeak-ng 1.51, `en-gb+f1` sounds as `en-gb`
# and `en-us-nyc` as `en-us` for these words, so they are left out)
ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
VARIANTS = ("m1", "m3", "f1", "f3")
SPEEDS = (130, 170, 210)
PITCHES = (30, 50, 70)
SNR_DB = (0.0, 20.0)

SAMPLE_RATE = 22050
CLIP = SAMPLE_RATE  # samples per clip: 1 s
FEATURES = {"n_fft": 512, "hop_length": 220, "n_mels": 40, "fmin": 0.0, "fmax": 8000.0}
_VERSION = 1

INSTALL = (
    "install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng` "
    "(macOS) or `sudo dnf install espeak-ng` (Fedora)"
)


class EspeakNotFoundError(RuntimeError):
    """``espeak-ng`` is not installed (the message says how to install it)."""


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakNotFoundError(
            f"speech_digits synthesises its clips with the espeak-ng speech synthesiser, which is "
            f"not installed (no `espeak-ng` on PATH): {INSTALL}"
        )
    return exe


def espeak_version() -> str:
    """espeak-ng's version (e.g. ``"1.51"``); raises ``EspeakNotFoundError`` if it is missing."""
    out = subprocess.run(
        [_espeak(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    words = out.split()
    return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else out.strip()


def synthesize(text: str, voice: str = "en", speed: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by espeak-ng (``-v voice -s speed -p pitch``): float32 samples in [-1, 1]
    at 22,050 Hz."""
    r = subprocess.run(
        [_espeak(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=False,
    )
    raw = r.stdout
    if r.returncode != 0 or raw[:4] != b"RIFF" or raw[36:40] != b"data":
        err = r.stderr.decode(errors="replace").strip() or f"exit status {r.returncode}"
        raise RuntimeError(f"espeak-ng -v {voice} {text!r} failed: {err}")
    rate = int.from_bytes(raw[24:28], "little")
    if rate != SAMPLE_RATE or raw[22:24] != b"\x01\x00" or raw[34:36] != b"\x10\x00":
        raise RuntimeError(
            f"espeak-ng gave audio at {rate} Hz / not 16-bit mono; expected {SAMPLE_RATE} Hz"
        )
    # written to a pipe, the header's sizes are placeholders: the samples are the rest of the stream
    body = raw[44 : 44 + (len(raw) - 44) // 2 * 2]
    return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0


def voices(n: int | None = None) -> list[tuple[str, bool]]:
    """``(voice, held_out)`` for the first ``n`` voices (all 28 by default), accent-major: voice
    ``k`` is ``ACCENTS[k // 4] + "+" + VARIANTS[k % 4]``, held out when ``k % 4 == (k // 4) % 4``."""
    out = []
    for a, accent in enumerate(ACCENTS):
        for v, variant in enumerate(VARIANTS):
            out.append((f"{accent}+{variant}", v == a % len(VARIANTS)))
    return out[: len(out) if n is None else n]


def _place(
    speech: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float]
) -> tuple[np.ndarray, float]:
    """The speech trimmed to where it is louder than 2% of its peak, at a random offset in a
    1-second window (cropped around its middle if longer), peak-normalised, plus white noise at a
    random SNR; returns (clip, snr)."""
    a = np.abs(speech)
    peak = float(a.max()) if a.size else 0.0
    if peak == 0.0:
        raise RuntimeError("espeak-ng gave a silent clip")
    idx = np.flatnonzero(a > 0.02 * peak)
    s = speech[idx[0] : idx[-1] + 1] / peak
    if len(s) > CLIP:
        start = (len(s) - CLIP) // 2
        s = s[start : start + CLIP]
    clip = np.zeros(CLIP, dtype=np.float64)
    off = int(rng.integers(0, CLIP - len(s) + 1))
    clip[off : off + len(s)] = s
    snr = float(rng.uniform(*snr_db))
    power = float(np.mean(s.astype(np.float64) ** 2))
    clip += rng.normal(0.0, np.sqrt(power / 10 ** (snr / 10)), CLIP)
    return clip, snr


def _features(clip: np.ndarray) -> np.ndarray:
    x = log_mel_spectrogram(clip, SAMPLE_RATE, **FEATURES)
    return ((x - x.mean()) / (x.std() + 1e-5)).astype(np.float32)


def make_speech_digits(
    n_voices: int | None = None,
    speeds: tuple[int, ...] = SPEEDS,
    pitches: tuple[int, ...] = PITCHES,
    snr_db: tuple[float, float] = SNR_DB,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Synthesise the clips (no cache): ``x`` (N, 40, 98) float32, ``y`` (N,) int64, and per clip
    ``voice`` (index into ``voices()``), ``speed``, ``pitch``, ``snr`` and ``test`` (held out)."""
    vs = voices(n_voices)
    jobs = [
        (d, k, s, p)
        for k in range(len(vs))
        for d in range(len(DIGITS))
        for s in speeds
        for p in pitches
    ]

    def one(i: int) -> tuple[np.ndarray, float]:
        d, k, s, p = jobs[i]
        speech = synthesize(DIGITS[d], vs[k][0], s, p)
        clip, snr = _place(speech, np.random.default_rng([seed, i]), snr_db)
        return _features(clip), snr

    _espeak()
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, range(len(jobs))))
    n_frames = num_frames(CLIP, FEATURES["n_fft"], FEATURES["hop_length"])
    x = (
        np.stack([r[0] for r in results])
        if results
        else np.zeros((0, FEATURES["n_mels"], n_frames), np.float32)
    )
    meta = np.array(jobs, dtype=np.int64).reshape(-1, 4)
    return {
        "x": x,
        "y": meta[:, 0].copy(),
        "voice": meta[:, 1].copy(),
        "speed": meta[:, 2].copy(),
        "pitch": meta[:, 3].copy(),
        "snr": np.array([r[1] for r in results], dtype=np.float32),
        "test": np.array([vs[k][1] for k in meta[:, 1]], dtype=bool),
    }


def describe(arrays: dict[str, np.ndarray]) -> str:
    """How many clips of each kind ``arrays`` holds, in a few lines."""
    vs = voices()
    y, test = arrays["y"], arrays["test"]
    held = sorted({vs[k][0] for k in arrays["voice"][test]})
    lines = [
        f"{len(y)} clips of {len(arrays['x'][0]) if len(y) else 0} mel bands x "
        f"{arrays['x'].shape[-1]} frames: "
        f"{len(np.unique(y))} digits x {len(np.unique(arrays['voice']))} voices x "
        f"{len(np.unique(arrays['speed']))} speeds x {len(np.unique(arrays['pitch']))} pitches",
        "  per digit: " + ", ".join(f"{DIGITS[d]} {int((y == d).sum())}" for d in np.unique(y)),
        "  per speed (wpm): "
        + ", ".join(f"{s} {int((arrays['speed'] == s).sum())}" for s in np.unique(arrays["speed"])),
        "  per pitch: "
        + ", ".join(f"{p} {int((arrays['pitch'] == p).sum())}" for p in np.unique(arrays["pitch"])),
        "  per voice: "
        + ", ".join(
            f"{vs[k][0]} {int((arrays['voice'] == k).sum())}" for k in np.unique(arrays["voice"])
        ),
        f"  noise: white, SNR {float(arrays['snr'].min()):.1f} to {float(arrays['snr'].max()):.1f} dB"
        if len(y)
        else "  noise: none",
        f"  train {int((~test).sum())} clips, test {int(test.sum())} clips "
        f"(held-out voices: {', '.join(held) or 'none'})",
    ]
    return "\n".join(lines)


def _cache_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x", "y", "voice", "speed", "pitch", "snr", "test")}
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: regenerate
        print(
            f"speech_digits: ignoring unreadable cache {path} ({type(e).__name__}: {e})",
            file=sys.stderr,
        )
        return None
    return arrays


def speech_digits(
    root: str | os.PathLike | None = None,
    n_voices: int | None = None,
    seed: int = 0,
    verbose: bool = True,
    workers: int | None = None,
) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) ``TensorDataset``\\ s of spoken digits: ``x`` (N, 40, 98) float32 log-mel
    spectrograms, ``y`` (N,) int64 (module docstring). ``n_voices``: only the first ``n_voices``
    of the 28 voices (smaller sets for quick tries). Cached under ``root`` (see the module
    docstring); ``verbose`` prints what was generated. Each dataset has ``.meta``: the per-clip
    arrays (voice, speed, pitch, snr) of its clips, and ``.description``."""
    settings = {
        "version": _VERSION,
        "voices": [v for v, _ in voices(n_voices)],
        "speeds": list(SPEEDS),
        "pitches": list(PITCHES),
        "snr_db": list(SNR_DB),
        "seed": int(seed),
        "features": FEATURES,
        "clip": CLIP,
    }
    base = Path(root).expanduser() if root is not None else default_root()
    path = base / f"speech_digits_v{_VERSION}_{_cache_key(settings)}.npz"
    arrays = _load(path)
    if arrays is None:
        t = time.perf_counter()
        arrays = make_speech_digits(n_voices, seed=seed, workers=workers)
        try:
            _save_cache(path, arrays)
            where = f"cached in {path}"
        except OSError as e:
            where = f"not cached ({e})"
        if verbose:
            print(
                f"speech_digits: synthesised with espeak-ng {espeak_version()} in "
                f"{time.perf_counter() - t:.1f}s, {where}:\n{describe(arrays)}",
                file=sys.stderr,
            )
    out = []
    for part in (~arrays["test"], arrays["test"]):
        ds = TensorDataset(arrays["x"][part], arrays["y"][part])
        ds.meta = {k: arrays[k][part] for k in ("voice", "speed", "pitch", "snr")}  # type: ignore[attr-defined]
        ds.description = describe(arrays)  # type: ignore[attr-defined]
        out.append(ds)
    return out[0], out[1]


def _main(argv: Any = None) -> None:  # python -m chainrule.data.datasets.speech [ROOT]
    args = sys.argv[1:] if argv is None else argv
    speech_digits(args[0] if args else None)


if __name__ == "__main__":
    _main()
