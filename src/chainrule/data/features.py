"""Audio features in NumPy: framing, a Hann window, the power spectrum and log-mel spectrograms.

    from chainrule.data.features import log_mel_spectrogram
    x = log_mel_spectrogram(signal, sample_rate=22050, n_fft=512, hop_length=220, n_mels=40)
    x.shape                      # (40, n_frames)

The steps, each a function of its own:

1. ``frame``: overlapping frames of ``frame_length`` samples every ``hop_length`` samples, with no
   padding (``center=False`` in librosa/torchaudio terms): ``1 + (len - frame_length) //
   hop_length`` frames (a signal shorter than one frame is zero-padded to one frame).
2. ``hann_window``: the *periodic* Hann window ``0.5 - 0.5 cos(2 pi n / N)`` (``torch.hann_window``'s
   default, ``scipy.signal.get_window("hann", N)``), the right one for spectral analysis.
3. ``power_spectrum``: ``|rfft(window * frame, n_fft)|^2``: ``n_fft // 2 + 1`` bins from 0 Hz to
   the Nyquist frequency, bin ``k`` at ``k * sample_rate / n_fft`` Hz.
4. ``mel_filterbank``: triangular filters evenly spaced on the **HTK mel scale**,
   ``mel = 2595 log10(1 + f / 700)``, each rising from 0 at its lower neighbour's centre to 1 at
   its own centre and back to 0 at its upper neighbour's centre, **not area-normalised** (peak 1):
   torchaudio's ``melscale_fbanks(..., norm=None, mel_scale="htk")`` and librosa's
   ``filters.mel(htk=True, norm=None)``. (Slaney's scale, linear below 1 kHz, and its
   area normalisation are not used.)
5. ``log_mel_spectrogram``: ``log(filterbank @ power + eps)`` (natural log), shaped
   ``(n_mels, n_frames)``: mel bands are channels, time is the last axis, as a ``Conv1d`` takes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "frame",
    "hann_window",
    "power_spectrum",
    "hz_to_mel",
    "mel_to_hz",
    "mel_frequencies",
    "mel_filterbank",
    "log_mel_spectrogram",
    "num_frames",
]


def num_frames(n_samples: int, frame_length: int, hop_length: int) -> int:
    """How many frames ``frame`` makes of ``n_samples`` samples (at least 1)."""
    return 1 + max(0, n_samples - frame_length) // hop_length


def frame(signal: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """The frames of a 1-D signal as a (n_frames, frame_length) array (a read-only view when no
    padding is needed): frame ``i`` is ``signal[i * hop_length : i * hop_length + frame_length]``."""
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"frame: expected a 1-D signal, got shape {x.shape}")
    if frame_length < 1 or hop_length < 1:
        raise ValueError(
            f"frame: frame_length and hop_length must be >= 1, got {frame_length}, {hop_length}"
        )
    if len(x) < frame_length:
        x = np.pad(x, (0, frame_length - len(x)))
    n = num_frames(len(x), frame_length, hop_length)
    windows = np.lib.stride_tricks.sliding_window_view(x, frame_length)
    return windows[: (n - 1) * hop_length + 1 : hop_length]


def hann_window(n: int, periodic: bool = True) -> np.ndarray:
    """The Hann window of ``n`` points (float64); ``periodic=False`` gives the symmetric one."""
    if n == 1:
        return np.ones(1)
    denom = n if periodic else n - 1
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / denom)


def power_spectrum(frames: np.ndarray, n_fft: int, window: np.ndarray | None = None) -> np.ndarray:
    """``|rfft(window * frames, n_fft)|^2`` over the last axis: (..., n_fft // 2 + 1). Frames
    shorter than ``n_fft`` are zero-padded (``np.fft.rfft`` does it); ``window`` defaults to the
    periodic Hann window of the frame length."""
    frames = np.asarray(frames, dtype=np.float64)
    if window is None:
        window = hann_window(frames.shape[-1])
    spec = np.fft.rfft(frames * window, n=n_fft, axis=-1)
    return spec.real**2 + spec.imag**2


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """The HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """The inverse of ``hz_to_mel``."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_frequencies(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """The ``n_mels + 2`` edge/centre frequencies (Hz) of the filter bank, evenly spaced in mel:
    filter ``m`` rises from ``f[m]``, peaks at ``f[m + 1]`` and falls to ``f[m + 2]``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: float, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular HTK-mel filters as a (n_mels, n_fft // 2 + 1) matrix (peak 1, not
    area-normalised; module docstring)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(
            f"mel_filterbank: need 0 <= fmin < fmax <= sample_rate / 2, got {fmin}, {fmax}, {sample_rate}"
        )
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    f = mel_frequencies(n_mels, fmin, fmax)
    lower, centre, upper = f[:-2, None], f[1:-1, None], f[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel_spectrogram(
    signal: np.ndarray,
    sample_rate: float,
    n_fft: int = 512,
    hop_length: int = 160,
    win_length: int | None = None,
    n_mels: int = 40,
    fmin: float = 0.0,
    fmax: float | None = None,
    eps: float = 1e-10,
) -> np.ndarray:
    """The log-mel spectrogram of a 1-D signal: (n_mels, n_frames) float32 (module docstring).
    ``win_length`` (default ``n_fft``) samples per frame, zero-padded to ``n_fft`` for the FFT."""
    win = n_fft if win_length is None else win_length
    if win > n_fft:
        raise ValueError(f"log_mel_spectrogram: win_length {win} > n_fft {n_fft}")
    frames = frame(np.asarray(signal, dtype=np.float64), win, hop_length)
    power = power_spectrum(frames, n_fft)  # (n_frames, n_fft // 2 + 1)
    mel = power @ mel_filterbank(n_mels, n_fft, sample_rate, fmin, fmax).T  # (n_frames, n_mels)
    return np.log(mel + eps).T.astype(np.float32)
