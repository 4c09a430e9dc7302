"""Batches on a device: moving nested batches, pinned host memory, and prefetching onto the GPU.

- ``move_batch(batch, device)``: every tensor and numeric array in a batch (tuples, lists, dicts
  and named tuples are walked) on ``device``; anything else is left as it is.
- ``pin_batch(batch)``: the batch's CPU tensors copied into page-locked (pinned) host memory,
  which the GPU reads without a staging copy, so a host-to-device copy from it runs
  asynchronously (``DataLoader(pin_memory=True)`` does this on its prefetch thread).
- ``DevicePrefetcher(loader, device)``: iterates ``loader`` with each batch already on
  ``device``. Batch ``k + 1`` is copied while the step on batch ``k`` runs: on a GPU the copy is
  issued on a separate non-blocking CUDA stream, an event is recorded after it, and the stream
  that computes waits on that event (on the GPU, not in Python) before it may use the batch. The
  copy stream in turn first waits for the work already queued on the compute stream, so memory
  that a finished batch gave back to CuPy's pool is never overwritten while a kernel still reads
  it. ``state_dict()`` counts the batches handed out, not those read ahead, so a checkpoint
  resumes exactly. ``DataLoader(..., device='cuda')`` does the same inside the loader.
"""

from __future__ import annotations

import collections
import collections.abc as cabc
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, wrap

__all__ = ["DevicePrefetcher", "move_batch", "pin_batch"]


# ---------------------------------------------------------------------------------------- moving
def _walk(batch: Any, leaf: Callable[[Any], Any]) -> Any:
    """``batch`` with ``leaf`` applied to every Tensor and array in it (containers rebuilt)."""
    if isinstance(batch, Tensor) or backend.is_array(batch):
        return leaf(batch)
    if isinstance(batch, cabc.Mapping):
        items = {k: _walk(v, leaf) for k, v in batch.items()}
        try:
            return type(batch)(items)  # type: ignore[call-arg]
        except TypeError:  # a mapping type that can't be built from a dict (defaultdict...)
            return items
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_walk(v, leaf) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_walk(v, leaf) for v in batch)
    return batch


def move_batch(batch: Any, device: Any) -> Any:
    """``batch`` with every Tensor on ``device`` (NumPy arrays become Tensors there); tuples,
    lists, dicts and named tuples are walked, other values are left alone. A tensor already on
    ``device`` is passed through; one that requires grad moves differentiably (``.to``)."""
    dev = backend.as_device(device)

    def leaf(x: Any) -> Any:
        if isinstance(x, Tensor):
            if x.device == dev:
                return x
            return x.to(dev) if x.requires_grad else wrap(backend.to_device(x.data, dev))
        if x.dtype.kind not in "biufc":  # strings and objects stay on the host, as they are
            return x
        return wrap(backend.to_device(x, dev))

    return _walk(batch, leaf)


def pin_batch(batch: Any) -> Any:
    """``batch`` with its CPU tensors copied into pinned (page-locked) host memory from CuPy's
    pinned pool, so that copies to the GPU run asynchronously. Without CUDA: a warning, as
    PyTorch gives, and the batch unchanged."""
    if not backend.cuda_available():
        warnings.warn(
            "pin_memory=True but CUDA is not available: batches are not pinned",
            UserWarning,
            stacklevel=3,
        )
        return batch
    cp = backend.cuda_module()

    def leaf(x: Any) -> Any:
        a = x.data if isinstance(x, Tensor) else x
        if isinstance(x, Tensor) and x.requires_grad:
            return x  # part of a graph: not replaced
        if type(a) is not np.ndarray or a.size == 0 or a.dtype.kind not in "biufc":
            return x
        p = np.ndarray(a.shape, a.dtype, buffer=cp.cuda.alloc_pinned_memory(a.nbytes))
        p[...] = a
        return wrap(p) if isinstance(x, Tensor) else p

    return _walk(batch, leaf)


# ---------------------------------------------------------------------------------------- staging
class _Staged:
    """A batch whose copy to the device has been issued (``event`` marks its end), with the
    source's state once it had been read (for exact resume)."""

    __slots__ = ("batch", "event", "host", "state")

    def __init__(self, batch: Any, event: Any, host: Any, state: Any) -> None:
        self.batch, self.event, self.host, self.state = batch, event, host, state


class DeviceStager:
    """Copies host batches to ``device``: on a side CUDA stream when the CUDA module has streams
    (real CuPy; the test double's are no-ops), else directly. A host batch is kept alive until
    its copy has finished (its pinned buffer must not go back to the pool while the GPU still
    reads it)."""

    MAX_IN_FLIGHT = 4  # host batches kept for unfinished copies; beyond that, wait for the oldest

    def __init__(self, device: Any) -> None:
        self.device = backend.as_device(device)
        self._stream: Any = None
        self._cp: Any = None
        self._in_flight: collections.deque = collections.deque()  # (event, host batch)
        if self.device.type == "cuda":
            self._cp = backend.cuda_module()
            cuda = getattr(self._cp, "cuda", None)
            if cuda is not None and hasattr(cuda, "Stream") and hasattr(cuda, "Event"):
                with cuda.Device(self.device.index or 0):
                    self._stream = cuda.Stream(non_blocking=True)

    def stage(self, host: Any, state: Any = None) -> _Staged:
        """Issue the copy of ``host`` (a batch) to the device; returns at once on a GPU."""
        s = self._stream
        if s is None:
            return _Staged(move_batch(host, self.device), None, None, state)
        cuda = self._cp.cuda
        with cuda.Device(self.device.index or 0):
            # the copy may reuse pool memory freed by earlier batches: wait for their kernels
            s.wait_event(cuda.get_current_stream().record())
            with s:
                batch = move_batch(host, self.device)
                event = s.record()
        return _Staged(batch, event, host, state)

    def ready(self, staged: _Staged) -> Any:
        """The staged batch, once the compute stream has been told to wait for its copy (on the
        GPU: this does not block)."""
        if staged.event is not None:
            with self._cp.cuda.Device(self.device.index or 0):
                self._cp.cuda.get_current_stream().wait_event(staged.event)
            self._in_flight.append((staged.event, staged.host))
            staged.host = None
            q = self._in_flight
            while q and (len(q) > self.MAX_IN_FLIGHT or getattr(q[0][0], "done", True)):
                if len(q) > self.MAX_IN_FLIGHT:
                    q[0][0].synchronize()
                q.popleft()
        return staged.batch


_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Lookahead:
    """Keeps one batch staged on the device ahead of the one handed out. ``next(pull)`` gives
    the next ``_Staged`` (call ``stager.ready`` on it) and reads the one after with ``pull()``
    (which raises StopIteration at the end); it raises StopIteration at the end and re-raises a
    read error at the batch it belongs to. ``snapshot()`` (optional) records the source's state
    right after each read. (``pull`` is passed per call so that an iterator holding a
    ``Lookahead`` is not in a reference cycle: dropping it must close it at once.)"""

    def __init__(self, stager: DeviceStager, snapshot: Callable[[], Any] | None = None) -> None:
        self.stager, self._snapshot = stager, snapshot
        self._next: Any = None  # not read yet

    def _read(self, pull: Callable[[], Any]) -> Any:
        try:
            host = pull()
        except StopIteration:
            return _END
        except Exception as e:  # noqa: BLE001 - raised again when the consumer gets there
            return _Failed(e)
        return self.stager.stage(host, self._snapshot() if self._snapshot else None)

    def next(self, pull: Callable[[], Any]) -> _Staged:
        if self._next is None:
            self._next = self._read(pull)
        cur = self._next
        if cur is _END:
            raise StopIteration
        if isinstance(cur, _Failed):
            self._next = _END
            raise cur.exc
        self._next = self._read(pull)  # its copy overlaps the step on ``cur``
        return cur


# ---------------------------------------------------------------------------------------- prefetcher
class DevicePrefetcher:
    """Iterate ``loader`` with every batch on ``device``, the next batch's host-to-device copy
    overlapping the current step (module docstring). ``len``, ``state_dict`` and
    ``load_state_dict`` are the loader's, with the read-ahead batch not counted as done.

    A ``DataLoader`` is iterated with its own device staging (``DataLoader(device=...)``); any
    other iterable of batches works too (its ``state_dict``, if it has one, is recorded after
    each batch is read and reported for the batch handed out)."""

    def __init__(self, loader: Iterable[Any], device: Any) -> None:
        self.loader = loader
        self.device = backend.as_device(device)
        self._state: Any = None  # the source's state for what has been handed out
        self._has_state = callable(getattr(loader, "state_dict", None))

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        from .loader import DataLoader  # noqa: PLC0415

        if isinstance(self.loader, DataLoader):
            return self.loader._iter(self.device)
        if self.device.type == "cpu":
            return (move_batch(b, self.device) for b in self.loader)
        return _PrefetchIter(self)

    def state_dict(self) -> Any:
        """The loader's state for the batches handed out so far (not those read ahead)."""
        from .loader import DataLoader  # noqa: PLC0415

        if not self._has_state:
            raise TypeError(f"{type(self.loader).__name__} has no state_dict")
        if self._state is None or isinstance(self.loader, DataLoader):
            return self.loader.state_dict()  # type: ignore[attr-defined]
        return copy.deepcopy(self._state)

    def load_state_dict(self, state: Any) -> None:
        self._state = None
        self.loader.load_state_dict(state)  # type: ignore[attr-defined]


class _PrefetchIter:
    """One pass of a ``DevicePrefetcher`` over an iterable that is not a ``DataLoader``."""

    def __init__(self, owner: DevicePrefetcher) -> None:
        self._owner = owner
        self._it = iter(owner.loader)
        snap = owner.loader.state_dict if owner._has_state else None  # type: ignore[attr-defined]
        owner._state = snap() if snap is not None else None
        self._ahead = Lookahead(DeviceStager(owner.device), snap)

    def __iter__(self) -> _PrefetchIter:
        return self

    def __len__(self) -> int:
        return len(self._owner)

    def __next__(self) -> Any:
        try:
            staged = self._ahead.next(self._pull)
        except StopIteration:
            if self._owner._has_state:
                self._owner._state = self._owner.loader.state_dict()  # type: ignore[attr-defined]
            raise
        if self._owner._has_state:
            self._owner._state = staged.state
        return self._ahead.stager.ready(staged)

    def _pull(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if callable(close):
            close()
