"""Samplers: the order in which a ``DataLoader`` visits a map-style dataset (PyTorch's names).

A sampler that draws random numbers exposes the ``cr.Generator`` it draws from through
``_rng()``; ``DataLoader.state_dict`` records that generator's state at the start of each epoch,
which is what makes exact resume possible. Without ``generator=``, a random sampler seeds a
private generator from the global one, once, the first time it needs it: the data order then
depends on ``cr.manual_seed`` but not on how many random numbers the model draws between epochs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..random import Generator, default_generator


class Sampler:
    """Yields dataset indices; subclasses define ``__iter__`` (and ``__len__`` when known)."""

    def __init__(self, data_source: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError

    def _indices(self) -> np.ndarray | None:
        """One epoch's indices as an int64 array, or None if this sampler cannot say (then the
        loader iterates it). Random samplers draw here, exactly as ``__iter__`` would."""
        return None


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source

    def _indices(self) -> np.ndarray:
        return np.arange(len(self.data_source), dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class _RandomMixin:
    generator: Generator | None
    _private: Generator | None = None

    def _rng(self) -> Generator:
        """The generator this sampler draws from (a private one seeded from the global
        generator, once, if none was given)."""
        if self.generator is not None:
            return self.generator
        if self._private is None:
            seed = int(default_generator.np.integers(0, 2**63 - 1))
            self._private = Generator().manual_seed(seed)
        return self._private


class RandomSampler(_RandomMixin, Sampler):
    """A random permutation of the indices each epoch (or, with ``replacement=True``,
    ``num_samples`` independent uniform draws)."""

    def __init__(
        self,
        data_source: Any,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: Generator | None = None,
    ) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer, got {self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _indices(self) -> np.ndarray:
        g = self._rng().np
        n, k = len(self.data_source), self.num_samples
        if self.replacement:
            return g.integers(0, n, size=k, dtype=np.int64)
        reps = [g.permutation(n) for _ in range(-(-k // n))]
        return np.concatenate(reps)[:k].astype(np.int64, copy=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(_RandomMixin, Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None) -> None:
        self.indices = indices
        self.generator = generator

    def _indices(self) -> np.ndarray:
        idx = np.asarray(self.indices, dtype=np.int64)
        return idx[self._rng().np.permutation(len(idx))]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``; the last, shorter one is
    dropped with ``drop_last=True``."""

    def __init__(self, sampler: Sampler | Iterable[int], batch_size: int, drop_last: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(
                f"batch_size should be a positive integer value, but got batch_size={batch_size}"
            )
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def _rng(self) -> Generator | None:
        f = getattr(self.sampler, "_rng", None)
        return f() if f is not None else None

    def _index_batches(self) -> Iterator[Any]:
        """One epoch of batches as int64 arrays (slices of one index array when the sampler can
        give it whole; otherwise grouped while iterating the sampler). Randomness is drawn when
        this is called, not lazily."""
        f = getattr(self.sampler, "_indices", None)
        idx = f() if f is not None else None
        if idx is None:
            return self._grouped(iter(self.sampler))
        bs = self.batch_size
        stop = len(idx) - len(idx) % bs if self.drop_last else len(idx)
        return (idx[i : i + bs] for i in range(0, stop, bs))

    def _grouped(self, it: Iterator[int]) -> Iterator[list]:
        batch = []
        for i in it:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __iter__(self) -> Iterator[list]:
        for b in self._index_batches():
            yield b.tolist() if isinstance(b, np.ndarray) else b

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
