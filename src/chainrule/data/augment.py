"""Data augmentation that is deterministic and survives an interrupted run.

    train = RandomShift(train, max_shift=1, seed=0)     # images moved by up to 1 pixel
    train.set_epoch(e)                                  # at the start of every epoch

Random numbers are not drawn from a running generator, whose position would depend on how far a
prefetching ``DataLoader`` has read ahead and would be lost on ``--resume``. Instead the shifts of
an epoch are one table, drawn from a private ``numpy.random.Generator`` seeded with ``(seed,
epoch)``: sample ``i`` in epoch ``e`` is always moved by the same amount, whatever order, batch
size or thread reads it, and a resumed run sees exactly the images an uninterrupted one would.
The epoch is told by ``set_epoch`` (as PyTorch's ``DistributedSampler``); ``chainrule train``
does it through the ``SetEpoch`` callback. Without ``set_epoch`` every epoch uses epoch 0's table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor, wrap
from ..train.callbacks import Callback
from .dataset import Dataset

__all__ = ["RandomShift", "shift_images", "SetEpoch"]


def shift_images(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Images ``x`` (N, ..., H, W) moved by ``shifts`` (N, 2) = (down, right) pixels each, the
    uncovered border filled with zeros."""
    x = np.asarray(x)
    out = np.zeros_like(x)
    H, W = x.shape[-2:]
    for i, (dy, dx) in enumerate(np.asarray(shifts, dtype=np.int64)):
        dy, dx = int(dy), int(dx)
        if abs(dy) >= H or abs(dx) >= W:
            continue
        out[i, ..., max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = x[
            i, ..., max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)
        ]
    return out


class RandomShift(Dataset):
    """``dataset``'s images (the first element of each sample, (..., H, W)) moved by a random
    whole number of pixels in ``[-max_shift, max_shift]`` along each axis, zero-filled; the other
    elements (labels) unchanged. Deterministic per ``(seed, epoch, index)`` (module docstring)."""

    def __init__(self, dataset: Any, max_shift: int = 1, seed: int = 0) -> None:
        if not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(
                f"RandomShift: max_shift must be a non-negative integer, got {max_shift!r}"
            )
        self.dataset, self.max_shift, self.seed = dataset, max_shift, int(seed)
        self.epoch = 0
        self._table: tuple[int, np.ndarray] | None = None
        if hasattr(dataset, "get_batch"):
            self.get_batch = self._get_batch

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def shifts(self, indices: Any, epoch: int | None = None) -> np.ndarray:
        """The (down, right) shifts of samples ``indices`` in ``epoch`` (default: the current)."""
        e = self.epoch if epoch is None else int(epoch)
        table = self._table
        if table is None or table[0] != e:
            rng = np.random.Generator(np.random.PCG64([self.seed, e]))
            table = (e, rng.integers(-self.max_shift, self.max_shift + 1, size=(len(self), 2)))
            if epoch is None or e == self.epoch:
                self._table = table
        return table[1][np.asarray(indices, dtype=np.int64)]

    def _apply(self, x: Any, shifts: np.ndarray) -> Any:
        arr = x.data if isinstance(x, Tensor) else np.asarray(x)
        out = shift_images(arr, shifts)
        return wrap(out) if isinstance(x, Tensor) else out

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        first, rest = (
            (sample[0], tuple(sample[1:])) if isinstance(sample, (tuple, list)) else (sample, None)
        )
        arr = first.data if isinstance(first, Tensor) else np.asarray(first)
        moved = shift_images(arr[None], self.shifts([index]))[0]
        moved = wrap(moved) if isinstance(first, Tensor) else moved
        return moved if rest is None else (moved, *rest)

    def _get_batch(self, indices: np.ndarray) -> Any:
        batch = self.dataset.get_batch(indices)
        s = self.shifts(indices)
        if isinstance(batch, (tuple, list)):
            return [self._apply(batch[0], s), *batch[1:]]
        return self._apply(batch, s)


class SetEpoch(Callback):
    """Calls ``dataset.set_epoch(epoch)`` at the start of every epoch (and of a resumed one)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.dataset.set_epoch(epoch)
