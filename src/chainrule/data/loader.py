"""``DataLoader``: batches from a dataset, prefetched on a background thread, resumable exactly.

Batching. A map-style dataset is read in the order of its sampler, ``batch_size`` indices at a
time. When the dataset has ``get_batch`` (``TensorDataset``, ``NpyDataset``, a ``Subset`` of
either) and ``collate_fn`` is the default, a batch is one gather per array (``x[indices]``); any
other dataset is read sample by sample and the samples are merged by ``collate_fn``
(``default_collate``: stack tensors, arrays and numbers, recurse into tuples, lists and dicts).

Prefetching (``prefetch=True``, chainrule's addition). A daemon thread reads batch ``k + 1`` (and
``k + 2``: a bounded queue of 2) while the training step runs on batch ``k``; NumPy releases the
GIL while it copies, so reading overlaps computing. An exception raised while reading is
re-raised, with its traceback, in the thread that iterates. The thread stops when its iterator is
exhausted, dropped (``for ... : break``) or ``close()``\\ d. The random order of an epoch is
drawn in the calling thread when the epoch starts, so prefetching never changes it; code in a
dataset's ``__getitem__`` does run on the prefetch thread, so a dataset that draws from the
global generator (random augmentation) should have its own ``cr.Generator`` or use
``prefetch=False`` to stay deterministic.

Exact resume. ``loader.state_dict()`` is ``{"epoch_rng": <state of the shuffling generator at
the start of the current epoch, or None when nothing is random>, "batches_done": <batches
handed out in this epoch>}``. After ``loader.load_state_dict(sd)`` (on this loader or a new one
over the same dataset), the next ``iter(loader)`` redraws that epoch's order from
``epoch_rng``, skips the first ``batches_done`` batches *without reading them*, and yields the
rest; the epochs after it are shuffled exactly as in an uninterrupted run, because the generator
is left where that epoch left it. Between epochs (after an epoch ran to the end, or before the
first) the state is the start of the next epoch with ``batches_done = 0``. With
``generator=None`` the shuffling generator is a private one, seeded once from the global
generator (``cr.manual_seed``) when first needed, so random numbers the model draws between
epochs do not change the data order. A custom sampler is resumable when it draws its randomness
from a generator it exposes as ``_rng()`` (chainrule's samplers do) or is deterministic. For an
``IterableDataset`` the skipped batches have to be read (there is no index to skip by).

Pinned memory and devices. ``pin_memory=True`` copies each batch into page-locked host memory
(from CuPy's pinned pool, on the prefetch thread) so that its copy to the GPU runs
asynchronously; without CUDA it warns and does nothing, as PyTorch does. ``device='cuda'``
(chainrule's addition) hands out batches already on the GPU: batch ``k + 1`` is copied on a side
CUDA stream while the step on batch ``k`` runs, one batch ahead (see ``data/device.py``); the
resume state counts the batches handed out, not the one read ahead, so it stays exact.
``DevicePrefetcher(loader, device)`` does the same for any loader, and ``fit(..., device=...)``
uses it by itself.

PyTorch's ``num_workers``, ``timeout``, ``worker_init_fn``, ``multiprocessing_context``,
``prefetch_factor``, ``persistent_workers``, ``pin_memory_device`` and ``in_order`` are accepted
and ignored: chainrule reads in one prefetch thread, never in worker processes.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..creation import as_tensor, tensor
from ..random import Generator
from ..tensor import Tensor, wrap
from .dataset import Dataset, IterableDataset
from .device import DeviceStager, Lookahead, pin_batch
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

# ---------------------------------------------------------------------------------------- collate


def default_convert(data: Any) -> Any:
    """Arrays (and NumPy scalars) to tensors, recursing into tuples, lists and dicts; other
    values unchanged (used when automatic batching is off: ``batch_size=None``)."""
    if isinstance(data, np.ndarray) and data.dtype.kind not in "SUOV":
        return as_tensor(data)
    if isinstance(data, np.generic) and data.dtype.kind not in "SUOV":
        return as_tensor(np.asarray(data))
    if isinstance(data, cabc.Mapping):
        return {k: default_convert(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, tuple):
        return [default_convert(v) for v in data]
    if isinstance(data, list):
        return [default_convert(v) for v in data]
    return data


def default_collate(batch: Sequence[Any]) -> Any:
    """Merge a list of samples into a batch, as PyTorch does.

    Tensors and arrays are stacked on a new first dimension; Python floats become a float64
    tensor, ints an int64 tensor, bools a bool tensor; strings stay a list; a dict of samples
    gives a dict of batches; a tuple or list of fields gives a *list* of batches (a named tuple
    stays a named tuple).
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        if any(t.requires_grad for t in batch):
            from ..ops.movement import stack  # noqa: PLC0415

            return stack(batch, 0)
        return wrap(np.stack([t.data for t in batch]))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "SUOV":
            raise TypeError(f"default_collate: cannot batch arrays of dtype {elem.dtype}")
        return as_tensor(np.stack(batch))
    if isinstance(elem, np.generic):
        return as_tensor(np.asarray(batch))
    if isinstance(elem, bool):
        return tensor(batch)
    if isinstance(elem, float):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, cabc.Mapping):
        return {k: default_collate([d[k] for d in batch]) for k in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(s) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        n = len(elem)
        if any(len(e) != n for e in batch):
            raise RuntimeError(
                "default_collate: each element in list of batch should be of equal size"
            )
        return [default_collate(s) for s in zip(*batch)]
    raise TypeError(
        "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        f"found {type(elem).__name__}"
    )


# ---------------------------------------------------------------------------------------- prefetch

_DONE = object()


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _produce(
    batches: Iterator[Any], fetch: Callable[[Any], Any], q: queue.Queue, stop: threading.Event
) -> None:
    """The prefetch thread: read batches into ``q`` until done, failed or told to stop. It holds
    no reference to the iterator object, so dropping the iterator stops it."""
    try:
        for b in batches:
            if stop.is_set():
                return
            if not _put(q, fetch(b), stop):
                return
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
        _put(q, _Raised(e), stop)
        return
    _put(q, _DONE, stop)


class _LoaderIter:
    """One epoch of a ``DataLoader``. Closes its prefetch thread when exhausted, on error, on
    ``close()`` and when garbage collected."""

    def __init__(
        self,
        loader: DataLoader,
        batches: Iterator[Any],
        fetch: Callable[[Any], Any],
        token: int,
        stager: DeviceStager | None = None,
    ) -> None:
        self._loader = loader
        self._token = token
        self._done = False
        self._thread: threading.Thread | None = None
        # with a device: one batch staged there ahead of the one handed out
        self._ahead = Lookahead(stager) if stager is not None else None
        if loader.prefetch:
            self._q: queue.Queue = queue.Queue(maxsize=2)
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=_produce,
                args=(batches, fetch, self._q, self._stop),
                name="chainrule-DataLoader-prefetch",
                daemon=True,
            )
            self._thread.start()
        else:
            self._batches, self._fetch = batches, fetch

    def __iter__(self) -> _LoaderIter:
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            if self._ahead is None:
                item = self._next_host()
            else:
                staged = self._ahead.next(self._next_host)
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            if self._thread is not None or self._ahead is not None:
                self.close()
            raise
        self._loader._advanced(self._token)  # counted when handed out, not when read ahead
        return item if self._ahead is None else self._ahead.stager.ready(staged)

    def _next_host(self) -> Any:
        """The next batch as read (StopIteration at the end; a read error is raised)."""
        if self._thread is None:
            return self._fetch(next(self._batches))
        item = self._get()
        if item is _DONE:
            raise StopIteration
        if isinstance(item, _Raised):
            raise item.exc
        return item

    def _get(self) -> Any:
        while True:
            try:
                return self._q.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    return _Raised(
                        RuntimeError("DataLoader: the prefetch thread ended unexpectedly")
                    )

    def _finish(self) -> None:
        self._loader._epoch_ended(self._token)
        self.close()

    def close(self) -> None:
        """Stop the prefetch thread (if any) and wait for it; the iterator is then exhausted."""
        self._done = True
        t = self._thread
        if t is None:
            return
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        if t is not threading.current_thread():
            t.join(timeout=10.0)
        self._thread = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass


# ---------------------------------------------------------------------------------------- loader


class DataLoader:
    """Iterate over ``dataset`` in batches (PyTorch's ``torch.utils.data.DataLoader``).

    Args:
        dataset: a map-style ``Dataset`` (``__getitem__`` + ``__len__``) or an
            ``IterableDataset``.
        batch_size: samples per batch; ``None`` turns batching off (one converted sample at a
            time).
        shuffle: a new random order every epoch, drawn from ``generator`` (see the module
            docstring for what happens without one).
        sampler / batch_sampler: a custom order (indices / lists of indices); exclusive with
            ``shuffle`` (and ``batch_sampler`` with ``batch_size``, ``drop_last``).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        collate_fn: merges a list of samples into a batch (default ``default_collate``).
        generator: a ``cr.Generator`` for the shuffling.
        prefetch: read the next batches on a background thread (chainrule's addition).
        pin_memory: batches in pinned host memory, for asynchronous copies to the GPU.
        device: hand out batches on this device (``'cuda'``), copied one batch ahead on a side
            stream (chainrule's addition; the module docstring says more).

    ``num_workers`` and the other worker options are accepted and ignored.
    ``state_dict()`` / ``load_state_dict()`` resume an epoch exactly (module docstring).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Sampler | Any = None,
        batch_sampler: Sampler | Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Generator | None = None,
        *,
        prefetch: bool = True,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        device: Any = None,
    ) -> None:
        self.dataset = dataset
        self.num_workers = num_workers  # ignored: one prefetch thread, never worker processes
        self.pin_memory = bool(pin_memory)
        self.device = backend.as_device(device) if device is not None else None
        self.timeout = timeout  # ignored
        self.prefetch = bool(prefetch)
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified sampler option, but got sampler={sampler}"
                )
            if batch_sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but got batch_sampler={batch_sampler}"
                )
        else:
            shuffle = bool(shuffle)
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
            if batch_sampler is not None:
                if batch_size != 1 or shuffle or sampler is not None or drop_last:
                    raise ValueError(
                        "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
                    )
                batch_size, drop_last = None, False
            elif batch_size is None and drop_last:
                raise ValueError(
                    "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
                )
            if sampler is None:
                sampler = (
                    RandomSampler(dataset, generator=generator)
                    if shuffle
                    else SequentialSampler(dataset)
                )
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        auto = batch_size is not None or batch_sampler is not None
        self.collate_fn = (
            collate_fn if collate_fn is not None else (default_collate if auto else default_convert)
        )
        # resume bookkeeping (see the module docstring)
        self._token = 0
        self._in_epoch = False
        self._epoch_rng: dict | None = None
        self._batches_done = 0
        self._pending: dict | None = None

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # type: ignore[arg-type]
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler if self._auto_collation else self.sampler)

    # ------------------------------------------------------------------ resume
    def _rng(self) -> Generator | None:
        """The generator the order of an epoch is drawn from (None if the order is not random
        or comes from a sampler that does not expose its generator)."""
        for s in (self.batch_sampler, self.sampler):
            f = getattr(s, "_rng", None)
            if f is not None:
                g = f()
                if g is not None:
                    return g
        return None

    def state_dict(self) -> dict:
        """``{"epoch_rng": ..., "batches_done": n}``: where this loader is (module docstring)."""
        if self._pending is not None:
            return copy.deepcopy(self._pending)
        if self._in_epoch:
            return {"epoch_rng": copy.deepcopy(self._epoch_rng), "batches_done": self._batches_done}
        g = self._rng()
        return {
            "epoch_rng": copy.deepcopy(g.get_state()) if g is not None else None,
            "batches_done": 0,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Make the next ``iter(self)`` resume the epoch that ``state_dict`` describes."""
        missing = {"epoch_rng", "batches_done"} - set(state_dict)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: missing keys {sorted(missing)}")
        n = state_dict["batches_done"]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(
                f"DataLoader.load_state_dict: batches_done must be an int >= 0, got {n!r}"
            )
        if state_dict["epoch_rng"] is not None and self._rng() is None:
            raise ValueError(
                "DataLoader.load_state_dict: the state has a generator state (a shuffled epoch) "
                "but this loader does not shuffle with a generator"
            )
        self._pending = {
            "epoch_rng": copy.deepcopy(state_dict["epoch_rng"]),
            "batches_done": int(n),
        }
        self._in_epoch = False

    def _advanced(self, token: int) -> None:
        if token == self._token:
            self._batches_done += 1

    def _epoch_ended(self, token: int) -> None:
        if token == self._token:
            self._in_epoch = False

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> _LoaderIter:
        return self._iter(self.device)

    def _iter(self, device: Any) -> _LoaderIter:
        """One epoch, its batches handed out on ``device`` (None: as read)."""
        stager = None
        if device is not None and backend.as_device(device).type != "cpu":
            stager = DeviceStager(device)  # first: no CUDA raises before anything is consumed
        resume, self._pending = self._pending, None
        skip = resume["batches_done"] if resume is not None else 0
        g = None if self._iterable else self._rng()
        if g is not None and resume is not None and resume["epoch_rng"] is not None:
            g.set_state(copy.deepcopy(resume["epoch_rng"]))
        self._epoch_rng = copy.deepcopy(g.get_state()) if g is not None else None
        batches, fetch = self._epoch_plan()  # draws this epoch's order, here, in this thread
        for _ in range(skip):  # index batches only: nothing is read (except for iterable data)
            if next(batches, _DONE) is _DONE:
                break
        if self.pin_memory and backend.cuda_available():
            read = fetch
            fetch = lambda b: pin_batch(read(b))  # noqa: E731 - on the prefetch thread
        elif self.pin_memory:
            pin_batch(None)  # warns: nothing to pin for
        self._token += 1
        self._in_epoch = True
        self._batches_done = skip
        return _LoaderIter(self, batches, fetch, self._token, stager)

    def _epoch_plan(self) -> tuple[Iterator[Any], Callable[[Any], Any]]:
        """(an iterator over what identifies each batch, a function that reads one)."""
        ds, collate = self.dataset, self.collate_fn
        if self._iterable:
            return _iterable_batches(iter(ds), self.batch_size, self.drop_last), collate
        if not self._auto_collation:
            return iter(self.sampler), lambda i: collate(ds[i])
        bs = self.batch_sampler
        f = getattr(bs, "_index_batches", None)
        batches = f() if f is not None else iter(bs)
        if collate is default_collate and callable(getattr(ds, "get_batch", None)):
            return batches, lambda idx: ds.get_batch(np.asarray(idx, dtype=np.int64))
        getitems = getattr(ds, "__getitems__", None)
        if callable(getitems):
            return batches, lambda idx: collate(getitems(_ints(idx)))
        return batches, lambda idx: collate([ds[i] for i in _ints(idx)])


def _ints(idx: Any) -> list:
    return idx.tolist() if isinstance(idx, np.ndarray) else list(idx)


def _iterable_batches(it: Iterator[Any], batch_size: int | None, drop_last: bool) -> Iterator[Any]:
    if batch_size is None:  # no batching: each sample is converted on its own
        yield from it
        return
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch and not drop_last:
        yield batch
