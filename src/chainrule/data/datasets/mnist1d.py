"""MNIST-1D (Greydanus 2020; Greydanus & Kobak, ICML 2024), generated locally with NumPy only.

``make_mnist1d`` reproduces ``mnist1d.data.make_dataset(get_dataset_args())`` from the reference
package (``mnist1d`` 0.0.2.post1) number for number, without SciPy and without touching NumPy's
global random state: the package reseeds the global legacy generator with ``np.random.seed(seed)``
and draws from it; we draw the same stream, in the same order, from a private
``np.random.RandomState(seed)``.

Per example (``mnist1d.transform.transform``; the order of the random draws matters):

1. pad the template (``x + 1e-8``) with ``p = low + int(U * (high - low + 1))`` zeros;
2. linearly interpolate to ``template_len + padding[1]`` points (``scipy.interpolate.interp1d``
   with ``kind="linear"``, which SciPy delegates to ``np.interp`` for 1-D float64 data);
3. scale by ``1 + scale_coeff * (U - 0.5)``;
4. circularly shift right by ``k = choice(max_translation)``;
5. where the signal is exactly zero, use ``gaussian_filter(corr_noise_scale * N(0, 1), sigma=2)``
   (``scipy.ndimage``: mode ``"reflect"``, truncate 4, i.e. a 17-tap kernel);
6. add ``iid_noise_scale * N(0, 1)`` everywhere;
7. subtract the ramp ``shear_scale * (U - 0.5) * linspace(-0.5, 0.5)``;
8. linearly interpolate to ``final_seq_length`` points.

Then one permutation of all examples, optionally one permutation of the time axis
(``shuffle_seq``), global standardisation (mean and std over train and test together) and the
train/test split. No file is ever downloaded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_templates", "make_mnist1d", "mnist1d", "gaussian_filter1d", "default_root"]

_EPS = 1e-8  # ``transform(..., eps=1e-8)``: keeps template zeros apart from padding zeros
_CACHE_VERSION = 1

# The ten hand-made 12-point digit templates (``mnist1d.data.get_templates``).
_TEMPLATES = (
    (5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5),
    (5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5),
    (5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5),
    (5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5),
    (5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5),
    (5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5),
    (5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5),
    (5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5),
    (5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5),
    (5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5),
)


def get_templates() -> dict[str, np.ndarray]:
    """The 10 digit templates: ``x`` (10, 12) standardised, starting at 0, divided by 6;
    ``t`` = linspace(-5, 5, 12) / 6; ``y`` = 0..9."""
    x = np.asarray(_TEMPLATES, dtype=np.float64)
    x -= x.mean(1, keepdims=True)
    x /= x.std(1, keepdims=True)
    x -= x[:, :1]
    return {
        "x": x / 6.0,
        "t": np.linspace(-5, 5, x.shape[1]) / 6.0,
        "y": np.arange(10),
    }


def _interpolate(x: np.ndarray, n: int) -> np.ndarray:
    """``mnist1d.transform.interpolate``: resample a 1-D signal on [0, 1] to ``n`` points."""
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def gaussian_filter1d(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter1d(x, sigma, axis=-1, mode="reflect", truncate=truncate)``.

    Same kernel and the same floating-point operations, in the same order, as SciPy's C loop for
    a symmetric kernel (``out = x[i] * w[0]``, then ``out += (x[i - j] + x[i + j]) * w[j]`` for
    ``j = r .. 1``), so the result is bit-identical. Works row-wise on any leading shape.
    """
    sd = float(sigma)
    radius = int(truncate * sd + 0.5)
    taps = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sd * sd) * taps**2)
    w = phi / phi.sum()  # symmetric: w[radius - j] == w[radius + j]
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if radius == 0:
        return x * w[0]
    pad = [(0, 0)] * (x.ndim - 1) + [(radius, radius)]
    xp = np.pad(x, pad, mode="symmetric")  # numpy "symmetric" == scipy.ndimage "reflect"
    out = xp[..., radius : radius + n] * w[radius]
    for j in range(radius, 0, -1):
        left, right = xp[..., radius - j : radius - j + n], xp[..., radius + j : radius + j + n]
        out += (left + right) * w[radius - j]
    return out


def make_mnist1d(
    num_samples: int = 5000,
    train_split: float = 0.8,
    template_len: int = 12,
    padding: tuple[int, int] = (36, 60),
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    final_seq_length: int = 40,
    seed: int = 42,
    *,
    shuffle_seq: bool = False,
) -> dict[str, Any]:
    """Generate MNIST-1D exactly as ``mnist1d.data.make_dataset`` does for the same arguments.

    Returns a dict with ``x`` (N_train, L) and ``x_test`` (N_test, L) float64 (the package's
    dtype), ``y`` / ``y_test`` int64 labels, ``t`` (L,) float64 (the resampled time axis divided
    by the data's std) and ``templates`` (``get_templates()``). With the defaults: 4,000 train and
    1,000 test examples of length 40. ``shuffle_seq=True`` also permutes the time axis (the
    package's "features shuffled" variant). NumPy's global random state is left untouched.
    """
    templates = get_templates()
    if template_len != templates["x"].shape[1]:
        raise ValueError(
            f"template_len={template_len} but the templates have {templates['x'].shape[1]} points"
        )
    low, high = int(padding[0]), int(padding[-1])
    length = template_len + high  # length after the dilation step
    n_classes = len(templates["y"])
    per_class = num_samples // n_classes
    n = per_class * n_classes
    if n == 0:
        raise ValueError(f"num_samples={num_samples} gives no example per class")

    rs = np.random.RandomState(seed)  # the package calls np.random.seed(seed) instead

    # 1. Draw every random number in the package's order (per example: pad U, scale U,
    #    translation, correlated noise, iid noise, shear U). Only these draws need a Python loop.
    u_pad = np.empty(n)
    u_scale = np.empty(n)
    u_shear = np.empty(n)
    shift = np.empty(n, dtype=np.int64)
    corr = np.empty((n, length))
    iid = np.empty((n, length))
    for i in range(n):
        u_pad[i] = rs.rand()
        u_scale[i] = rs.rand()
        shift[i] = rs.choice(max_translation)
        corr[i] = rs.randn(length)
        iid[i] = rs.randn(length)
        u_shear[i] = rs.rand()
    perm = rs.permutation(n)
    seq_perm = rs.permutation(final_seq_length) if shuffle_seq else None

    # 2. Pad + dilate: the result depends only on (class, pad length), so interpolate each
    #    distinct pair once.
    labels = np.repeat(templates["y"], per_class)
    pad_len = low + (u_pad * (high - low + 1)).astype(np.int64)  # int() truncates; U >= 0
    x = np.empty((n, length))
    for c, p in {(int(c), int(p)) for c, p in zip(labels, pad_len)}:
        padded = np.concatenate([templates["x"][c] + _EPS, np.zeros(p)])
        x[(labels == c) & (pad_len == p)] = _interpolate(padded, length)

    # 3. Scale (elementwise, the same float operations as the package's scalar code).
    x *= (1 + scale_coeff * (u_scale - 0.5))[:, None]

    # 4. Translate: x[-k:] ++ x[:-k] is a circular shift right by k.
    x = x[np.arange(n)[:, None], (np.arange(length)[None, :] - shift[:, None]) % length]

    # 5-6. Correlated noise fills the (exactly zero) padding, then iid noise everywhere.
    mask = x != 0
    x = mask * x + (1 - mask) * gaussian_filter1d(corr_noise_scale * corr, 2)
    x = x + iid_noise_scale * iid

    # 7. Shear.
    x = x - (shear_scale * (u_shear - 0.5))[:, None] * np.linspace(-0.5, 0.5, length)

    # 8. Subsample to the final length.
    grid_in = np.linspace(0, 1, length)
    grid_out = np.linspace(0, 1, final_seq_length)
    xs = np.empty((n, final_seq_length))
    for i in range(n):
        xs[i] = np.interp(grid_out, grid_in, x[i])
    new_t = _interpolate(_interpolate(templates["t"], length), final_seq_length)

    # Shuffle the examples, maybe the time axis, standardise globally, split.
    xs = xs[perm]
    ys = labels[perm]
    if seq_perm is not None:
        xs = xs[..., seq_perm]
    new_t = new_t / xs.std()
    xs = (xs - xs.mean()) / xs.std()
    split = int(n * train_split)
    return {
        "x": xs[:split],
        "x_test": xs[split:],
        "y": ys[:split],
        "y_test": ys[split:],
        "t": new_t,
        "templates": templates,
    }


# ----------------------------------------------------------------------------- dataset + cache


def default_root() -> Path:
    """``$CHAINRULE_CACHE`` if set, else ``~/.cache/chainrule``."""
    env = os.environ.get("CHAINRULE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "chainrule"


_CACHE_KEYS = ("x", "y", "x_test", "y_test")


def _expected_layout(num_samples: int = 5000, train_split: float = 0.8) -> dict[str, tuple]:
    n = (num_samples // 10) * 10
    n_train = int(n * train_split)
    return {
        "x": ((n_train, 40), np.dtype(np.float32)),
        "y": ((n_train,), np.dtype(np.int64)),
        "x_test": ((n - n_train, 40), np.dtype(np.float32)),
        "y_test": ((n - n_train,), np.dtype(np.int64)),
    }


def _generate_arrays(seed: int) -> dict[str, np.ndarray]:
    d = make_mnist1d(seed=seed)
    return {
        "x": np.ascontiguousarray(d["x"], dtype=np.float32),
        "y": np.ascontiguousarray(d["y"], dtype=np.int64),
        "x_test": np.ascontiguousarray(d["x_test"], dtype=np.float32),
        "y_test": np.ascontiguousarray(d["y_test"], dtype=np.int64),
    }


def _load_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if the file is absent; raises ValueError if it is unusable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _CACHE_KEYS}
    except Exception as e:  # truncated zip, missing key, pickled object, ...
        raise ValueError(f"{type(e).__name__}: {' '.join(str(e).split())}") from e
    for key, (shape, dtype) in _expected_layout().items():
        a = arrays[key]
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(f"{key} has shape {a.shape} dtype {a.dtype}, expected {shape} {dtype}")
    for key in ("y", "y_test"):
        if arrays[key].min() < 0 or arrays[key].max() > 9:
            raise ValueError(f"{key} holds labels outside 0..9")
    if not (np.isfinite(arrays["x"]).all() and np.isfinite(arrays["x_test"]).all()):
        raise ValueError("x holds non-finite values")
    return arrays


def _save_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as .npz, atomically (``chainrule.io``'s temp-file-and-rename)."""
    from ...io import _atomic_write  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write(path, buf.getvalue())


def mnist1d(
    train: bool = True,
    seed: int = 42,
    cache: bool = True,
    root: str | os.PathLike | None = None,
) -> Any:
    """MNIST-1D as a ``TensorDataset`` of ``x`` (N, 40) float32 and ``y`` (N,) int64.

    ``train=True`` gives the 4,000 training examples, ``train=False`` the 1,000 test examples of
    ``make_mnist1d(seed=seed)`` (the reference dataset for ``seed=42``). With ``cache=True`` the
    arrays are kept in ``<root>/mnist1d_seed<seed>_v1.npz`` (``root`` defaults to
    ``$CHAINRULE_CACHE`` or ``~/.cache/chainrule``), written atomically and checked by shape and
    dtype on load; a corrupt or stale file is regenerated with a warning. Nothing is downloaded.
    """
    from chainrule.creation import from_numpy
    from chainrule.data.dataset import TensorDataset

    arrays = None
    path = None
    if cache:
        path = Path(root).expanduser() if root is not None else default_root()
        path = path / f"mnist1d_seed{int(seed)}_v{_CACHE_VERSION}.npz"
        try:
            arrays = _load_cache(path)
        except ValueError as e:
            warnings.warn(
                f"mnist1d: ignoring corrupt cache {path} ({e}); regenerating", stacklevel=2
            )
    if arrays is None:
        arrays = _generate_arrays(seed)
        if path is not None:
            try:
                _save_cache(path, arrays)
            except OSError as e:
                warnings.warn(f"mnist1d: could not write cache {path} ({e})", stacklevel=2)
    x, y = (arrays["x"], arrays["y"]) if train else (arrays["x_test"], arrays["y_test"])
    return TensorDataset(from_numpy(x), from_numpy(y))
