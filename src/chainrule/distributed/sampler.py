"""``DistributedSampler``: each rank's share of a dataset, PyTorch's semantics (see the
package docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..data.sampler import Sampler
from ..random import Generator
from .process_group import get_rank, get_world_size


class DistributedSampler(Sampler):
    """Each rank's share of ``dataset``, PyTorch's semantics (module docstring): a permutation
    drawn from ``seed + epoch`` (or the dataset order, ``shuffle=False``), padded by wrapping
    around to a multiple of ``num_replicas`` (or cut, ``drop_last``); rank ``r`` takes every
    ``num_replicas``-th index from ``r``. Call ``set_epoch(epoch)`` before each epoch.
    ``num_replicas``/``rank`` default to the process group's."""

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None:
            num_replicas = get_world_size()
        if rank is None:
            rank = get_rank()
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, global position) to start from

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _start(self, epoch: int) -> int:
        r = self._resume
        return r[1] if r is not None and r[0] == epoch else 0

    def _count(self, n: int) -> int:
        p = self.num_replicas
        return n // p if self.drop_last else -(-n // p)

    @property
    def num_samples(self) -> int:
        """Indices this rank gets this epoch."""
        return self._count(max(0, len(self.dataset) - self._start(self.epoch)))

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's global order of the dataset's indices (the same on every rank)."""
        n = len(self.dataset)
        e = self.epoch if epoch is None else epoch
        if self.shuffle:
            return Generator().manual_seed(self.seed + e).np.permutation(n).astype(np.int64)
        return np.arange(n, dtype=np.int64)

    def _indices(self) -> np.ndarray:
        idx = self.order()[self._start(self.epoch) :]
        p, total = self.num_replicas, self._count(len(idx)) * self.num_replicas
        if total > len(idx):  # pad by wrapping around (len(idx) > 0 here)
            idx = np.concatenate([idx, np.resize(idx, total - len(idx))])
        return idx[self.rank : total : p]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    # ------------------------------------------------------------------ resume
    def position(self, per_rank_done: int, epoch: int | None = None) -> int:
        """How far into the epoch's global order all ranks together are once each has taken
        ``per_rank_done`` indices of it (independent of the number of ranks)."""
        e = self.epoch if epoch is None else epoch
        return min(self._start(e) + per_rank_done * self.num_replicas, len(self.dataset))

    def resume_at(self, epoch: int, position: int) -> None:
        """Make epoch ``epoch`` start at ``position`` of its global order (whatever the number of
        ranks that got there); other epochs start at 0."""
        if not 0 <= position <= len(self.dataset):
            raise ValueError(
                f"DistributedSampler.resume_at: position {position} is outside 0..{len(self.dataset)}"
            )
        self._resume = (int(epoch), int(position))
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position(0)}

    def load_state_dict(self, state: dict) -> None:
        self.resume_at(state["epoch"], state["position"])
