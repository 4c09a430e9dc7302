"""scikit-learn's 8x8 handwritten digits (``load_digits``): 1,797 images, 10 classes, values 0-16.

The data ship inside scikit-learn (no download); install it with ``pip install
'chainrule[digits]'``.
"""

from __future__ import annotations

import numpy as np

from ..dataset import TensorDataset

__all__ = ["digits"]


def _load_digits():  # noqa: ANN202
    try:
        from sklearn.datasets import load_digits  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "chainrule.data.datasets.digits needs scikit-learn, which ships the 8x8 digits: "
            "pip install 'chainrule[digits]'"
        ) from e
    return load_digits()


def digits(
    test_size: float = 0.2, seed: int | None = 0, flat: bool = False
) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) ``TensorDataset``\\ s of the 8x8 digits.

    Images are float32 scaled to [0, 1] (pixel / 16), shaped (N, 1, 8, 8), or (N, 64) with
    ``flat=True``; labels are int64. The split is stratified and deterministic: in each class,
    ``round(test_size * count)`` images chosen by a permutation seeded with ``seed`` go to the
    test set; both sets keep scikit-learn's order. ``seed=None`` splits without shuffling (the
    first images train, the last ``test_size`` fraction test): ``digits(test_size=0.5,
    seed=None)`` is the split of scikit-learn's "Recognizing hand-written digits" example.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"digits: test_size must be in (0, 1), got {test_size}")
    d = _load_digits()
    x = (np.asarray(d.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(d.target, dtype=np.int64)
    n = len(y)
    test = np.zeros(n, dtype=bool)
    if seed is None:
        test[n - int(np.ceil(test_size * n)) :] = True
    else:
        rng = np.random.Generator(np.random.PCG64(seed))
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            test[rng.permutation(idx)[: int(round(test_size * len(idx)))]] = True
    if not flat:
        x = x.reshape(n, 1, 8, 8)
    return TensorDataset(x[~test], y[~test]), TensorDataset(x[test], y[test])
