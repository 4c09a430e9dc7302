"""Datasets: map-style (``dataset[i]``, ``len(dataset)``) and iterable, as in ``torch.utils.data``.

The batch protocol (chainrule's addition): a map-style dataset may define
``get_batch(indices: np.ndarray) -> batch`` returning the *already collated* batch for an int64
index array, i.e. exactly what ``default_collate([dataset[i] for i in indices])`` would return,
but with one gather per array instead of one ``__getitem__`` per sample. ``DataLoader`` uses it
when ``collate_fn`` is the default. ``TensorDataset``, ``Subset`` (of a dataset that has it) and
``NpyDataset`` define it.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..creation import as_tensor, randperm
from ..random import Generator
from ..tensor import Tensor, wrap


class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(index)`` and usually ``__len__``."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: subclasses define ``__iter__``. ``DataLoader`` batches it in order
    (no shuffling, no sampler)."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other: Dataset) -> ChainDataset:
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """Iterable datasets one after the other."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)

    def __iter__(self) -> Iterator[Any]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError("ChainDataset only supports IterableDataset")
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)  # type: ignore[arg-type]


def _gather(t: Tensor, idx: np.ndarray) -> Tensor:
    """``t[idx]`` for an int64 index array: one NumPy gather, outside autograd unless ``t``
    requires grad (then the recorded indexing op, so gradients still flow). A tensor on a GPU
    is gathered there (the indices are copied over, as torch's indexing does)."""
    if type(t.data) is not np.ndarray:
        idx = backend.to_device(idx, backend.device_of(t.data))
    if t.requires_grad:
        return t[idx]
    return wrap(t.data[idx])


class TensorDataset(Dataset):
    """Samples are the ``i``-th rows of the given tensors: ``dataset[i] == (t0[i], t1[i], ...)``.

    Arrays are accepted too (wrapped without copying). All must have the same first dimension.
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        ts = tuple(t if isinstance(t, Tensor) else as_tensor(t) for t in tensors)
        n = ts[0].shape[0] if ts[0].ndim else None
        for i, t in enumerate(ts):
            if t.ndim == 0 or t.shape[0] != n:
                shapes = ", ".join(str(tuple(x.shape)) for x in ts)
                raise ValueError(
                    f"TensorDataset: size mismatch between tensors: every tensor needs the same "
                    f"first dimension, got shapes {shapes} (tensor {i} differs)"
                )
        self.tensors = ts

    def __getitem__(self, index: Any) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def get_batch(self, indices: np.ndarray) -> list:
        """The collated batch ``[t0[indices], t1[indices], ...]``: one gather per tensor."""
        return [_gather(t, indices) for t in self.tensors]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices
        self._idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if hasattr(dataset, "get_batch"):
            self.get_batch = self._get_batch

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list) -> list:
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def _get_batch(self, indices: np.ndarray) -> Any:
        return self.dataset.get_batch(self._idx[indices])


class ConcatDataset(Dataset):
    """Datasets one after the other: index ``i`` falls into the first dataset while ``i <
    len(d0)``, then into the second, and so on."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        if idx < 0:
            if -idx > len(self):
                raise IndexError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[d - 1] if d > 0 else 0
        return self.datasets[d][idx - start]


def random_split(
    dataset: Dataset, lengths: Sequence[int | float], generator: Generator | None = None
) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random ``Subset``\\ s of the given lengths.

    ``lengths`` are counts summing to ``len(dataset)``, or fractions summing to 1: then each
    subset gets ``floor(n * fraction)`` samples and the remainder is dealt one at a time to the
    subsets in order (PyTorch's rule). The permutation comes from ``generator`` (a
    ``cr.Generator``) or the global generator.
    """
    n = len(dataset)  # type: ignore[arg-type]
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(
                    f"random_split: length of split at index {i} is 0; this split will be empty",
                    stacklevel=2,
                )
        lengths = counts
    if any(int(x) != x or x < 0 for x in lengths):
        raise ValueError(
            f"random_split: lengths must be non-negative ints or fractions, got {lengths}"
        )
    lengths = [int(x) for x in lengths]
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length of "
            f"the input dataset ({n})"
        )
    perm = randperm(n, generator=generator).data.tolist()
    out, offset = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[offset : offset + length]))
        offset += length
    return out


# ------------------------------------------------------------------------------ data on disk


def _native(a: np.ndarray, dtype: Any, what: str) -> np.dtype | None:
    """The dtype a batch of ``a`` is cast to (None: keep the file's)."""
    from .. import dtypes  # noqa: PLC0415

    if dtype is not None:
        return dtypes.np_dtype(dtype)
    if a.dtype in dtypes._FROM_NP:
        return None
    native = a.dtype.newbyteorder("=")
    if native in dtypes._FROM_NP:
        return native
    raise TypeError(
        f"NpyDataset: {what} has dtype {a.dtype}, which chainrule tensors do not support; "
        "pass dtype= (e.g. dtype=cr.float32) to convert each batch"
    )


def _open(src: Any, mmap: bool, what: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return src
    a = np.load(src, mmap_mode="r" if mmap else None, allow_pickle=False)
    if not isinstance(a, np.ndarray):
        raise ValueError(f"NpyDataset: {what} {src!s} is an .npz archive; pass a .npy file")
    if a.ndim == 0:
        raise ValueError(
            f"NpyDataset: {what} {src!s} holds a 0-d array; expected one row per sample"
        )
    return a


class NpyDataset(Dataset):
    """Samples from ``.npy`` files too large for memory: row ``i`` of ``x`` (and of ``y``).

    With ``mmap=True`` the files are opened with ``np.load(mmap_mode="r")``: nothing is read
    until a batch asks for its rows, and the operating system keeps only the pages in use, so a
    file larger than RAM streams through a ``DataLoader`` batch by batch. ``dataset[i]`` is
    ``(x[i], y[i])`` (just ``x[i]`` without ``y_path``). A batch is one gather per file with its
    indices sorted (the disk is read forward; a run of consecutive indices is one slice) and
    the rows put back in the requested order. ``x_path`` / ``y_path`` may also be arrays
    (e.g. an ``np.memmap`` of a raw file). ``dtype`` converts each batch (e.g. ``cr.float32``
    for ``uint8`` images); a file's big-endian dtype is converted to the native one.
    """

    def __init__(
        self,
        x_path: Any,
        y_path: Any = None,
        mmap: bool = True,
        dtype: Any = None,
        y_dtype: Any = None,
    ) -> None:
        self.x = _open(x_path, mmap, "x_path")
        self.y = None if y_path is None else _open(y_path, mmap, "y_path")
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(
                f"NpyDataset: x has {len(self.x)} rows but y has {len(self.y)}: one label per sample"
            )
        self._xd = _native(self.x, dtype, "x")
        self._yd = None if self.y is None else _native(self.y, y_dtype, "y")

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def _rows(a: np.ndarray, idx: np.ndarray, d: np.dtype | None) -> Tensor:
        n = len(idx)
        if n and idx[0] >= 0 and idx[-1] - idx[0] == n - 1 and np.all(np.diff(idx) == 1):
            out = np.array(a[idx[0] : idx[-1] + 1], dtype=d)  # one contiguous read
        elif n > 1 and np.any(np.diff(idx) < 0):
            order = np.argsort(idx, kind="stable")
            rows = a[idx[order]]  # read forward through the file
            out = np.empty(rows.shape, dtype=d or rows.dtype)
            out[order] = rows
        else:
            out = np.asarray(a[idx], dtype=d)
        return wrap(np.asarray(out))

    def get_batch(self, indices: np.ndarray) -> Any:
        idx = np.asarray(indices, dtype=np.int64)
        idx = np.where(idx < 0, idx + len(self.x), idx)
        xb = self._rows(self.x, idx, self._xd)
        return xb if self.y is None else [xb, self._rows(self.y, idx, self._yd)]

    def __getitem__(self, index: int) -> Any:
        i = int(index)
        x = wrap(np.array(self.x[i], dtype=self._xd))
        return x if self.y is None else (x, wrap(np.array(self.y[i], dtype=self._yd)))
