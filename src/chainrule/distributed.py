"""Data-parallel training over MPI (``mpi4py``), with PyTorch's ``torch.distributed`` names.

    mpiexec -n 4 python train.py          # or: mpiexec -n 4 chainrule train --distributed

    import chainrule.distributed as dist
    dist.init_process_group()                          # backend "mpi": every process of mpiexec
    model = dist.DistributedDataParallel(model)        # same weights everywhere; grads averaged
    sampler = dist.DistributedSampler(train_ds, seed=0)
    loader = DataLoader(train_ds, batch_size=B, sampler=sampler)   # B samples per process
    for epoch in range(epochs):
        sampler.set_epoch(epoch)                       # a new shared shuffle each epoch
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()            # returns with the averaged gradients
            opt.step()
    dist.destroy_process_group()

Install: ``pip install 'chainrule[mpi]'`` brings ``mpi4py`` and MPICH (the ``mpich`` wheel:
``mpiexec`` and ``libmpi`` in the environment); mpi4py's wheel loads whichever ``libmpi`` it finds
first (the environment's, then the system's). ``docs/distributed.md`` tells how to use a
cluster's own MPI instead.

Collectives. ``all_reduce`` (``ReduceOp.SUM``, ``AVG``, ``PRODUCT``, ``MIN``, ``MAX``, ``BAND``,
``BOR``, ``BXOR``), ``broadcast``, ``all_gather``, ``barrier``, ``broadcast_object_list`` and
``all_gather_object`` work in place on tensors (any NumPy dtype MPI knows), every process calling
them in the same order, as in PyTorch; ``async_op=True`` gives a ``Work`` to ``wait()`` on.
Chainrule tensors live on the CPU (NumPy), so there is no GPU path yet (see the docs).

``DistributedDataParallel(model)`` (DDP). At construction, every rank sends the names, shapes
and dtypes of its parameters and buffers; if they differ anywhere, every rank raises the same
``ValueError`` naming the first difference. Then rank 0's parameters and buffers are broadcast.
Gradients are averaged during ``backward()`` with bucketed, non-blocking all-reduce, as in
PyTorch: the parameters are grouped, in reverse registration order (about the order their
gradients are produced), into buckets of at most ``bucket_cap_mb`` (25 MiB) per dtype, one
flat buffer each; a hook on every parameter (``Tensor.register_hook``) copies its gradient into
its bucket and, when a bucket is complete, starts its ``MPI_Iallreduce`` (buckets start in index
order on every rank, as MPI requires of collectives). The first hook of a backward pass queues
an end-of-backward callback (``autograd.engine.queue_callback``) that starts the buckets not
yet started, waits for all of them and writes the averages into ``.grad`` — so ``backward()``
returns with synchronised gradients and ``optimizer.step()`` needs nothing else (call
``model.finish_gradient_sync()`` yourself only in code that bypasses backward). Parameters that
got no gradient on some rank count as zero there; one that got none on every rank keeps
``.grad = None``. ``no_sync()`` skips the averaging (gradient accumulation): the next synced
backward averages the accumulated ``.grad``. ``autograd.grad()`` through the model is not
averaged (it does not touch ``.grad``). ``state_dict()`` / ``load_state_dict()`` are the
wrapped module's (no ``module.`` prefix, unlike PyTorch), so a checkpoint loads into the plain
model. Note: chainrule's engine accumulates leaf gradients after the whole graph has run, so the
hooks fire together at the end of backward: a bucket's all-reduce overlaps the copying of later
buckets, not the backward computation itself.

``DistributedSampler`` (PyTorch's semantics): each epoch one permutation of the dataset, drawn
from ``seed + epoch`` (``set_epoch``), padded by wrapping around (or cut, ``drop_last``) to a
multiple of the number of processes; rank ``r`` takes positions ``r, r + p, r + 2p, ...``. So
step ``k`` of all ranks together (per-rank batch ``B``) covers positions ``[kBp, (k+1)Bp)`` of the
permutation: with ``num_replicas=1`` and batch ``Bp`` one process sees the same global batches.
``position()`` / ``resume_at()`` express where an epoch is in that permutation, independently of
the number of processes (what ``DistributedTrainer`` checkpoints).

``DistributedTrainer`` is ``train.Trainer`` for DDP models: per-batch metrics are summed over
ranks (so logs, history and checkpoints hold global values), validation is sharded and its sums
combined, rank 0 alone shows progress and writes files (``ModelCheckpoint`` keeps only the
training state on the others, ``CSVLogger``/``JSONLogger``/``ProgressBar`` run on rank 0
only), a Ctrl-C is agreed on by all ranks before stopping, and the checkpoint stores the global
data position, so ``resume`` works with any number of processes.

Faults (the protocol). MPI offers no way to cancel a collective that a dead peer will never join,
and ``MPI_Finalize`` waits for the others, so a rank that simply exits after an exception leaves
the rest hanging. Instead: (1) every wait in this module polls its requests together with a
side channel (a duplicate of ``COMM_WORLD``) for failure notices, and gives up after ``timeout``
(default 1800 s, ``CHAINRULE_DIST_TIMEOUT``); (2) a rank that fails — an uncaught exception
(``sys.excepthook``, installed by ``init_process_group``), an exception leaving
``DistributedTrainer.fit``, or ``report_failure()`` — sends a notice with its error to every
other rank, and the others raise ``DistributedError("rank 1 failed: ValueError: ...")`` from
their next wait; (3) at exit (``atexit``), a process in that state says "done" to the others,
waits up to 5 s for theirs (so each has printed its own error) and calls ``MPI_Abort``, which
makes ``mpiexec`` end every process. A rank that dies outright (a signal, ``os._exit``) is
noticed by ``mpiexec``, which kills the others at once. A process that exits normally without
``destroy_process_group()`` first waits, still watching for notices, for the others to exit.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import pickle
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np

from .autograd import engine
from .data.dataset import Subset
from .data.sampler import Sampler
from .nn.module import Module
from .random import Generator
from .tensor import Tensor, wrap
from .train.callbacks import CSVLogger, JSONLogger, ModelCheckpoint, ProgressBar
from .train.metrics import Metric, batch_size_of
from .train.trainer import Trainer, _to_float

__all__ = [
    "DistributedDataParallel", "DistributedError", "DistributedSampler", "DistributedTrainer",
    "ReduceOp", "Work", "all_gather", "all_gather_object", "all_reduce", "barrier", "broadcast",
    "broadcast_object_list", "destroy_process_group", "get_backend", "get_rank",
    "get_world_size", "init_process_group", "is_available", "is_initialized", "report_failure",
    "run_on_rank0", "shard",
]  # fmt: skip

DEFAULT_TIMEOUT = 1800.0  # seconds, as PyTorch's default for CPU process groups
_ABORT_GRACE = 5.0  # seconds a failing process waits for the others to report before MPI_Abort
_SPIN = 0.05  # seconds a wait spins (yielding the CPU) before it sleeps between polls
_NOTICE, _DONE = 7001, 7002  # tags on the side channel


class DistributedError(RuntimeError):
    """A collective could not complete: another rank failed (``peer`` is its rank), or the wait
    timed out."""

    def __init__(self, message: str, peer: int | None = None) -> None:
        super().__init__(message)
        self.peer = peer


class ReduceOp:
    """Reductions for ``all_reduce`` (PyTorch's names). ``AVG`` is ``SUM`` divided by the number
    of processes (floating-point tensors only)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


# ----------------------------------------------------------------------------- the process group


class _Group:
    def __init__(self, mpi: Any, timeout: float) -> None:
        self.MPI = mpi
        world = mpi.COMM_WORLD
        self.comm = world.Dup()  # tensor collectives
        self.side = world.Dup()  # failure notices and the exit handshake
        self.rank = world.Get_rank()
        self.size = world.Get_size()
        self.timeout = timeout
        self.failure: str | None = None  # why this process is stopping, once it is
        self.status = 1  # the exit status MPI_Abort gives when it is
        self.notified = False
        self.sends: list = []  # notices in flight
        self.destroyed = False
        self.agreed_stop = False  # set by DistributedTrainer when all ranks stop on a Ctrl-C


_group: _Group | None = None
_hooks_installed = False


def is_available() -> bool:
    """Whether ``mpi4py`` can be imported (it loads an MPI library)."""
    try:
        import mpi4py  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "chainrule.distributed needs mpi4py and an MPI library: pip install 'chainrule[mpi]' "
            f"(mpi4py plus the mpich wheel), or mpi4py built against your cluster's MPI ({e})"
        ) from e
    return MPI


def init_process_group(
    backend: str | None = "mpi",
    init_method: str | None = None,
    timeout: float | timedelta | None = None,
    world_size: int = -1,
    rank: int = -1,
    **kwargs: Any,
) -> None:
    """Join the processes started by ``mpiexec`` (all of ``MPI_COMM_WORLD``); a process started
    without ``mpiexec`` is a group of one. ``timeout``: how long any collective waits before
    raising (seconds or a timedelta; default ``CHAINRULE_DIST_TIMEOUT`` or 1800 s).
    ``world_size``/``rank``, if given, must agree with MPI's. Installs the failure protocol (module
    docstring): a ``sys.excepthook`` and an ``atexit`` handler."""
    global _group, _hooks_installed
    if backend not in (None, "mpi"):
        raise ValueError(f"init_process_group: backend {backend!r} is not supported; use 'mpi'")
    if _group is not None and not _group.destroyed:
        raise RuntimeError("trying to initialize the default process group twice!")
    MPI = _import_mpi()
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if timeout is None:
        timeout = float(os.environ.get("CHAINRULE_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if timeout <= 0:
        raise ValueError(f"init_process_group: timeout must be > 0 seconds, got {timeout}")
    g = _Group(MPI, float(timeout))
    if world_size not in (-1, None) and world_size != g.size:
        raise ValueError(
            f"init_process_group: world_size={world_size} but MPI started {g.size} processes"
        )
    if rank not in (-1, None) and rank != g.rank:
        raise ValueError(f"init_process_group: rank={rank} but MPI says this is rank {g.rank}")
    _group = g
    if not _hooks_installed:
        _hooks_installed = True
        previous = sys.excepthook

        def excepthook(tp: type, value: BaseException, tb: Any) -> None:
            previous(tp, value, tb)
            report_failure(value, status=1)

        sys.excepthook = excepthook
        atexit.register(_at_exit)


def _require(what: str = "this") -> _Group:
    g = _group
    if g is None or g.destroyed:
        raise RuntimeError(
            f"chainrule.distributed: {what} needs the process group: call "
            "chainrule.distributed.init_process_group() first"
        )
    return g


def is_initialized() -> bool:
    return _group is not None and not _group.destroyed


def get_backend(group: Any = None) -> str:
    _require("get_backend")
    return "mpi"


def get_rank(group: Any = None) -> int:
    """This process's rank, 0 .. world size - 1."""
    return _require("get_rank").rank


def get_world_size(group: Any = None) -> int:
    return _require("get_world_size").size


def destroy_process_group(group: Any = None) -> None:
    """Leave the group: waits (a barrier) for every rank to get here, then frees its
    communicators. MPI itself is finalised when the process exits."""
    g = _group
    if g is None or g.destroyed:
        return
    barrier()
    _drain(g, _NOTICE)
    g.destroyed = True
    for c in (g.comm, g.side):
        with contextlib.suppress(Exception):
            c.Free()


# ----------------------------------------------------------------------------- failures


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def report_failure(exc: BaseException | str, status: int | None = None) -> None:
    """Mark this process as failed: the other ranks are told (their next collective raises
    ``DistributedError``) unless the failure came from them, and at exit this process waits
    briefly for them and calls ``MPI_Abort(status)`` (default 1). An exception with
    ``chainrule_all_ranks = True`` (one that every rank raises at the same point, so that no rank
    waits for another) is not a failure: the processes exit normally. Called by the excepthook, by
    ``DistributedTrainer.fit`` and by ``chainrule train --distributed``."""
    g = _group
    if g is None or g.destroyed:
        return
    if isinstance(exc, KeyboardInterrupt) and g.agreed_stop:
        return  # every rank stopped at the same batch: not a failure
    if getattr(exc, "chainrule_all_ranks", False):
        return  # raised by every rank at the same point: no one is left waiting
    peer = getattr(exc, "peer", None)
    if g.failure is None:
        g.failure = exc if isinstance(exc, str) else _describe(exc)
    if status:  # the latest word on the exit status (the CLI's comes after the trainer's)
        g.status = int(status)
    if peer is None and not g.notified:
        g.notified = True
        msg = pickle.dumps(g.failure)
        for r in range(g.size):
            if r != g.rank:
                with contextlib.suppress(Exception):
                    g.sends.append(g.side.Isend([msg, g.MPI.BYTE], dest=r, tag=_NOTICE))


def _poll_notices(g: _Group, what: str) -> None:
    """Raise if another rank has reported a failure."""
    MPI = g.MPI
    st = MPI.Status()
    if g.side.Iprobe(source=MPI.ANY_SOURCE, tag=_NOTICE, status=st):
        src = st.Get_source()
        buf = bytearray(st.Get_count(MPI.BYTE))
        g.side.Recv([buf, MPI.BYTE], source=src, tag=_NOTICE)
        msg = pickle.loads(bytes(buf))
        err = DistributedError(
            f"rank {src} of {g.size} failed ({msg}); rank {g.rank} stopped in {what}", peer=src
        )
        report_failure(err)
        raise err


def _wait(reqs: list, what: str) -> None:
    """Wait for MPI requests, watching for failure notices and the timeout (the only way this
    module waits)."""
    g = _require(what)
    MPI = g.MPI
    if g.failure is not None:
        raise DistributedError(f"{what}: this process is stopping after a failure ({g.failure})")
    if MPI.Request.Testall(reqs):
        return
    start = time.monotonic()
    spin_until, deadline = start + _SPIN, start + g.timeout
    while not MPI.Request.Testall(reqs):
        _poll_notices(g, what)
        now = time.monotonic()
        if now > deadline:
            err = DistributedError(
                f"{what} timed out after {g.timeout:g} s on rank {g.rank} of {g.size}: another "
                "rank is stuck, or stopped without reporting an error (timeout: "
                "init_process_group(timeout=...) or CHAINRULE_DIST_TIMEOUT)"
            )
            report_failure(err)
            raise err
        if now < spin_until:
            os.sched_yield()
        else:
            time.sleep(0.001)


def _drain(g: _Group, tag: int) -> list:
    MPI = g.MPI
    st = MPI.Status()
    got = []
    while g.side.Iprobe(source=MPI.ANY_SOURCE, tag=tag, status=st):
        buf = bytearray(st.Get_count(MPI.BYTE))
        g.side.Recv([buf, MPI.BYTE], source=st.Get_source(), tag=tag)
        got.append(st.Get_source())
    return got


def _at_exit() -> None:
    g = _group
    if g is None or g.destroyed or g.size == 1:
        return  # (a group of one has no one to wait for, nor to stop)
    MPI = g.MPI
    if g.failure is None:
        # A normal exit without destroy_process_group(): MPI_Finalize would wait for the other
        # ranks anyway; wait here instead, where a failure notice can still end the wait.
        try:
            req = g.side.Ibarrier()
            deadline = time.monotonic() + g.timeout
            while not req.Test():
                if g.side.Iprobe(source=MPI.ANY_SOURCE, tag=_NOTICE) or g.side.Iprobe(
                    source=MPI.ANY_SOURCE, tag=_DONE
                ):
                    g.failure = g.failure or "another rank failed"
                    break
                if time.monotonic() > deadline:
                    g.failure = "timed out waiting for the other ranks at exit"
                    break
                time.sleep(0.001)
            else:
                return
        except Exception as e:  # noqa: BLE001 - an MPI error at exit: abort rather than hang
            g.failure = _describe(e)
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            f.flush()
    # say "done" (this process has reported its error) and wait, briefly, for the others'
    # so that each has printed its own before MPI_Abort ends them all
    with contextlib.suppress(Exception):
        for r in range(g.size):
            if r != g.rank:
                g.sends.append(g.side.Isend([b"", MPI.BYTE], dest=r, tag=_DONE))
        seen: set = set()
        deadline = time.monotonic() + min(_ABORT_GRACE, g.timeout)
        while len(seen) < g.size - 1 and time.monotonic() < deadline:
            seen.update(_drain(g, _DONE))
            _drain(g, _NOTICE)
            time.sleep(0.001)
    MPI.COMM_WORLD.Abort(g.status)
    os._exit(g.status)  # MPICH's MPI_Abort may return before the process manager acts


# ----------------------------------------------------------------------------- collectives

_MPI_OPS = {
    ReduceOp.SUM: "SUM", ReduceOp.AVG: "SUM", ReduceOp.PRODUCT: "PROD", ReduceOp.MIN: "MIN",
    ReduceOp.MAX: "MAX", ReduceOp.BAND: "BAND", ReduceOp.BOR: "BOR", ReduceOp.BXOR: "BXOR",
}  # fmt: skip


class Work:
    """A collective started with ``async_op=True``: ``wait()`` finishes it (and raises if it
    failed), ``is_completed()`` tells without waiting."""

    def __init__(self, reqs: list, what: str, then: Any = None) -> None:
        self._reqs, self._what, self._then, self._done = reqs, what, then, False

    def is_completed(self) -> bool:
        return self._done or bool(_require(self._what).MPI.Request.Testall(self._reqs))

    def wait(self, timeout: Any = None) -> bool:
        if not self._done:
            _wait(self._reqs, self._what)
            self._done = True
            if self._then is not None:
                self._then()
        return True


def _finish(work: Work, async_op: bool) -> Work | None:
    if async_op:
        return work
    work.wait()
    return None


def _array(t: Any, what: str) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.data
    if isinstance(t, np.ndarray):
        return t
    raise TypeError(f"{what}: expected a Tensor, got {type(t).__name__}")


def _contiguous(a: np.ndarray) -> tuple[np.ndarray, Any]:
    """(a C-contiguous buffer for ``a``, a function that copies it back, or None)."""
    if a.flags.c_contiguous and a.flags.writeable:
        return a, None
    buf = np.ascontiguousarray(a)

    def back() -> None:
        a[...] = buf

    return buf, back


def _bump(t: Any) -> None:
    if isinstance(t, Tensor):
        t._vc[0] += 1


def all_reduce(
    tensor: Tensor, op: str = ReduceOp.SUM, group: Any = None, async_op: bool = False
) -> Work | None:
    """Reduce ``tensor`` over all ranks, in place: every rank ends with the result."""
    g = _require("all_reduce")
    a = _array(tensor, "all_reduce")
    if op not in _MPI_OPS:
        raise ValueError(
            f"all_reduce: unknown op {op!r}; use ReduceOp.SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR or BXOR"
        )
    if op == ReduceOp.AVG and a.dtype.kind not in "fc":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got {a.dtype}")
    buf, back = _contiguous(a)
    req = g.comm.Iallreduce(g.MPI.IN_PLACE, buf, op=getattr(g.MPI, _MPI_OPS[op]))

    def then() -> None:
        if op == ReduceOp.AVG:
            np.divide(buf, g.size, out=buf)
        if back is not None:
            back()
        _bump(tensor)

    return _finish(Work([req], "all_reduce", then), async_op)


def broadcast(
    tensor: Tensor, src: int = 0, group: Any = None, async_op: bool = False
) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor`` (same shape and dtype)."""
    g = _require("broadcast")
    _check_rank(src, g, "broadcast")
    buf, back = _contiguous(_array(tensor, "broadcast"))
    req = g.comm.Ibcast(buf, root=src)

    def then() -> None:
        if back is not None:
            back()
        _bump(tensor)

    return _finish(Work([req], "broadcast", then), async_op)


def all_gather(
    tensor_list: list, tensor: Tensor, group: Any = None, async_op: bool = False
) -> Work | None:
    """``tensor_list[r]`` receives rank ``r``'s ``tensor`` (every tensor of the same shape)."""
    g = _require("all_gather")
    a = _array(tensor, "all_gather")
    if len(tensor_list) != g.size:
        raise ValueError(
            f"all_gather: tensor_list has {len(tensor_list)} tensors for {g.size} ranks"
        )
    outs = [_array(t, "all_gather") for t in tensor_list]
    for o in outs:
        if o.shape != a.shape or o.dtype != a.dtype:
            raise ValueError(
                f"all_gather: every tensor must have the input's shape {tuple(a.shape)} and dtype "
                f"{a.dtype}, got {tuple(o.shape)} {o.dtype}"
            )
    send = np.ascontiguousarray(a)
    recv = np.empty((g.size, *a.shape), a.dtype)
    req = g.comm.Iallgather(send, recv)

    def then() -> None:
        for i, o in enumerate(outs):
            o[...] = recv[i]
            _bump(tensor_list[i])

    return _finish(Work([req], "all_gather", then), async_op)


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    """Wait until every rank has called ``barrier``."""
    g = _require("barrier")
    return _finish(Work([g.comm.Ibarrier()], "barrier"), async_op)


def _check_rank(r: int, g: _Group, what: str) -> None:
    if not 0 <= r < g.size:
        raise ValueError(f"{what}: rank {r} is not in 0..{g.size - 1}")


def _bcast_bytes(g: _Group, data: bytes | None, src: int, what: str) -> bytes:
    n = np.array([len(data) if g.rank == src else 0], np.int64)
    _wait([g.comm.Ibcast(n, root=src)], what)
    buf = np.frombuffer(data, np.uint8).copy() if g.rank == src else np.empty(int(n[0]), np.uint8)
    _wait([g.comm.Ibcast(buf, root=src)], what)
    return buf.tobytes()


def broadcast_object_list(
    object_list: list, src: int = 0, group: Any = None, device: Any = None
) -> None:
    """Replace ``object_list``'s items by rank ``src``'s (any picklable objects)."""
    g = _require("broadcast_object_list")
    _check_rank(src, g, "broadcast_object_list")
    data = pickle.dumps(list(object_list)) if g.rank == src else None
    got = pickle.loads(_bcast_bytes(g, data, src, "broadcast_object_list"))
    object_list[:] = got


def all_gather_object(object_list: list, obj: Any, group: Any = None) -> None:
    """``object_list[r]`` receives rank ``r``'s ``obj`` (picklable)."""
    g = _require("all_gather_object")
    if len(object_list) != g.size:
        raise ValueError(
            f"all_gather_object: object_list has {len(object_list)} items for {g.size} ranks"
        )
    mine = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = np.empty(g.size, np.int64)
    _wait([g.comm.Iallgather(np.array([mine.size], np.int64), sizes)], "all_gather_object")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    recv = np.empty(int(sizes.sum()), np.uint8)
    _wait([g.comm.Iallgatherv(mine, [recv, (sizes, offsets)])], "all_gather_object")
    for r in range(g.size):
        object_list[r] = pickle.loads(recv[offsets[r] : offsets[r] + sizes[r]].tobytes())


def run_on_rank0(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run by rank 0 alone; every rank gets its result — or raises the
    exception it raised (so an error met by rank 0 alone stops every rank, with its message)."""
    g = _require("run_on_rank0")
    box: list = [None]
    if g.rank == 0:
        try:
            box = [("ok", fn(*args, **kwargs))]
        except Exception as e:  # noqa: BLE001 - handed to every rank
            box = [("err", e)]
    broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "err":
        raise _on_all_ranks(value)
    return value


def _on_all_ranks(exc: BaseException) -> BaseException:
    """Mark an error that every rank raises at the same point (not a failure to report)."""
    exc.chainrule_all_ranks = True
    return exc


def shard(dataset: Any) -> Subset:
    """This rank's share of ``dataset`` for evaluation: samples ``rank, rank + p, ...`` (no
    padding, so the shards together hold every sample exactly once)."""
    g = _require("shard")
    return Subset(dataset, range(g.rank, len(dataset), g.size))


# ----------------------------------------------------------------------------- DDP


class _Bucket:
    __slots__ = ("params", "offsets", "numel", "send", "recv", "ready", "req", "index")

    def __init__(self, params: list, dtype: np.dtype, index: int) -> None:
        self.params = params
        self.offsets = []
        n = 0
        for p in params:
            self.offsets.append(n)
            n += p.data.size
        self.numel = n
        # the flat gradients, then one "had a gradient" count per parameter
        self.send = np.zeros(n + len(params), dtype)
        self.recv = np.empty_like(self.send)
        self.ready = 0
        self.req: Any = None
        self.index = index


class DistributedDataParallel(Module):
    """Wraps ``module`` for data-parallel training: broadcasts rank 0's weights, checks that every
    rank has the same parameters, and averages gradients over ranks during ``backward()`` with
    bucketed non-blocking all-reduce (module docstring). ``bucket_cap_mb``: bucket size in MiB
    (PyTorch's default, 25). ``broadcast_buffers``: copy rank 0's buffers (e.g. BatchNorm running
    statistics) to every rank at each forward in training mode. PyTorch's other arguments
    (``device_ids``, ``find_unused_parameters``, ...) are accepted and ignored: parameters without
    a gradient are always handled. ``comm_seconds``/``steps``: time spent waiting for the
    all-reduce at the end of backward, and the number of synchronised backward passes."""

    def __init__(
        self,
        module: Module,
        device_ids: Any = None,
        output_device: Any = None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group: Any = None,
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        g = _require("DistributedDataParallel")
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}"
            )
        self.module = module
        d = self.__dict__
        d["broadcast_buffers"] = broadcast_buffers
        d["bucket_cap_mb"] = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if d["bucket_cap_mb"] <= 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb}"
            )
        d["_group"] = g
        d["_comm"] = g.comm.Dup()  # its own communicator: user collectives can't interleave
        _check_same_model(module, g)
        self._broadcast_state()
        d["_buckets"] = self._make_buckets()
        d["_where"] = {id(p): (b, j) for b in self._buckets for j, p in enumerate(b.params)}
        d["_next"] = 0  # the next bucket to start (they start in index order on every rank)
        d["_queued"] = None  # the backward pass whose end-of-backward callback is queued
        d["_sync"] = True
        d["comm_seconds"] = 0.0
        d["steps"] = 0
        d["_handles"] = [
            p.register_hook(self._hook_for(p)) for b in self._buckets for p in b.params
        ]

    # ------------------------------------------------------------------ set-up
    def _broadcast_state(self) -> None:
        tensors = [
            t for t in self.module.state_dict(keep_vars=True).values() if isinstance(t, Tensor)
        ]
        _bcast_flat(self._comm, tensors)

    def _make_buckets(self) -> list[_Bucket]:
        cap = self.bucket_cap_mb * 2**20
        params = [p for p in self.module.parameters() if p.requires_grad][::-1]
        filling: dict = {}  # dtype -> the bucket being filled
        nbytes: dict = {}
        groups: list[list] = []
        for p in params:
            dt = p.data.dtype
            if dt in filling and nbytes[dt] + p.data.nbytes > cap:
                groups.append(filling.pop(dt))
            if dt not in filling:
                filling[dt], nbytes[dt] = [], 0
            filling[dt].append(p)
            nbytes[dt] += p.data.nbytes
        groups += list(filling.values())
        # start order: the bucket holding the earliest-ready (last registered) parameter first
        order = {id(p): i for i, p in enumerate(params)}
        groups.sort(key=lambda ps: min(order[id(p)] for p in ps))
        return [_Bucket(ps, ps[0].data.dtype, i) for i, ps in enumerate(groups)]

    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes of gradient in each bucket, in start order."""
        return [b.numel * b.send.itemsize for b in self._buckets]

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.broadcast_buffers and self.training:
            bufs = [b for b in self.module.buffers() if isinstance(b, Tensor)]
            if bufs and self._group.size > 1:
                _bcast_flat(self._comm, bufs)
        return self.module(*args, **kwargs)

    def _reset(self) -> None:
        """Forget a backward pass that raised half-way (its end-of-backward callback never ran)."""
        if any(b.req is not None for b in self._buckets):
            raise DistributedError(
                "DistributedDataParallel: a previous backward stopped after some gradient "
                "buckets were sent, so the ranks are out of step; this run cannot continue"
            )
        for b in self._buckets:
            b.ready = 0
            b.send[b.numel :] = 0
        self.__dict__["_next"] = 0
        self.__dict__["_queued"] = None

    # ------------------------------------------------------------------ gradient sync
    def _hook_for(self, p: Tensor) -> Any:
        def hook(grad: Tensor) -> None:
            current = engine._end_callbacks[-1]  # this backward pass's callbacks
            if not self._sync or not current.accumulate:  # no_sync(), or autograd.grad()
                return
            if self._queued is not current:  # the first hook of this backward pass
                if self._queued is not None:
                    self._reset()
                engine.queue_callback(self.finish_gradient_sync)
                self.__dict__["_queued"] = current
            b, j = self._where[id(p)]
            off, n = b.offsets[j], p.data.size
            flat = b.send[off : off + n]
            np.copyto(flat, np.asarray(grad.data).reshape(-1))
            if p.grad is not None:  # accumulated (no_sync or several backward passes)
                flat += p.grad.data.reshape(-1)
            b.send[b.numel + j] = 1
            b.ready += 1
            if b.ready == len(b.params):
                self._start_ready()

        return hook

    def _start(self, b: _Bucket) -> None:
        b.req = self._comm.Iallreduce(b.send, b.recv, op=self._group.MPI.SUM)

    def _start_ready(self) -> None:
        bs = self._buckets
        while self._next < len(bs) and bs[self._next].ready == len(bs[self._next].params):
            self._start(bs[self._next])
            self.__dict__["_next"] += 1

    def finish_gradient_sync(self) -> None:
        """Start the buckets not started yet (their parameters without a gradient count as zero,
        or as their accumulated ``.grad``), wait for every all-reduce and write the averages into
        ``.grad``. Called by the engine at the end of each backward; a no-op if nothing is
        pending."""
        if self._queued is None:
            return
        bs = self._buckets
        for b in bs[self._next :]:
            if b.ready < len(b.params):
                for j, p in enumerate(b.params):
                    if b.send[b.numel + j] == 0:  # this parameter's hook didn't run
                        flat = b.send[b.offsets[j] : b.offsets[j] + p.data.size]
                        if p.grad is None:
                            flat.fill(0)
                        else:
                            np.copyto(flat, p.grad.data.reshape(-1))
                            b.send[b.numel + j] = 1
            self._start(b)
        self.__dict__["_next"] = len(bs)
        t0 = time.perf_counter()
        try:
            _wait([b.req for b in bs], "DistributedDataParallel's gradient all-reduce")
        finally:
            self.__dict__["comm_seconds"] += time.perf_counter() - t0
        size = self._group.size
        for b in bs:
            counts = b.recv[b.numel :]
            for j, p in enumerate(b.params):
                if counts[j] == 0:  # no rank had a gradient for it: leave .grad alone
                    continue
                off = b.offsets[j]
                avg = (b.recv[off : off + p.data.size] / size).reshape(p.data.shape)
                if p.grad is None:
                    p.grad = wrap(avg)
                else:
                    p.grad.data[...] = avg
                    p.grad._vc[0] += 1
            b.req = None
            b.ready = 0
            b.send[b.numel :] = 0
        self.__dict__["_next"] = 0
        self.__dict__["_queued"] = None
        self.__dict__["steps"] += 1

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate local gradients without averaging them; the first
        synced backward after it averages the accumulated ``.grad``."""
        old = self._sync
        self.__dict__["_sync"] = False
        try:
            yield
        finally:
            self.__dict__["_sync"] = old

    # ------------------------------------------------------------------ state: the module's
    def state_dict(self, *args: Any, **kwargs: Any) -> dict:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"world_size={self._group.size}, buckets={len(self._buckets)}"


def _signature(module: Module) -> list:
    sig = [
        ("parameter", n, tuple(p.shape), str(p.data.dtype)) for n, p in module.named_parameters()
    ]
    sig += [("buffer", n, tuple(b.shape), str(b.data.dtype)) for n, b in module.named_buffers()]
    return sig


def _check_same_model(module: Module, g: _Group) -> None:
    """Every rank must hold the same parameters and buffers (names, shapes, dtypes): the first
    difference is raised on every rank."""
    sigs: list = [None] * g.size
    all_gather_object(sigs, _signature(module))
    ref = sigs[0]
    for r in range(1, g.size):
        mine = sigs[r]
        if mine == ref:
            continue
        for a, b in zip(ref, mine):
            if a != b:
                if a[:2] == b[:2]:
                    raise _mismatch(
                        f"DistributedDataParallel: the model differs between ranks: {a[0]} "
                        f"{a[1]!r} has shape {a[2]} ({a[3]}) on rank 0 but {b[2]} ({b[3]}) on rank {r}"
                    )
                raise _mismatch(
                    f"DistributedDataParallel: the model differs between ranks: rank 0 has {a[0]} "
                    f"{a[1]!r} {a[2]} where rank {r} has {b[0]} {b[1]!r} {b[2]}"
                )
        longer, who, other = (ref, 0, r) if len(ref) > len(mine) else (mine, r, 0)
        extra = longer[min(len(ref), len(mine))]
        raise _mismatch(
            f"DistributedDataParallel: the model differs between ranks: rank {who} has {extra[0]} "
            f"{extra[1]!r} {extra[2]} which rank {other} lacks ({len(ref)} parameters and buffers "
            f"on rank 0, {len(mine)} on rank {r})"
        )


def _mismatch(msg: str) -> ValueError:
    return _on_all_ranks(ValueError(msg))  # type: ignore[return-value]


def _bcast_flat(comm: Any, tensors: list) -> None:
    """Broadcast tensors from rank 0, one flat message per dtype."""
    by_dtype: dict = {}
    for t in tensors:
        by_dtype.setdefault(t.data.dtype, []).append(t)
    for dt, ts in by_dtype.items():
        flat = np.concatenate([t.data.reshape(-1) for t in ts]) if ts else np.empty(0, dt)
        _wait([comm.Ibcast(flat, root=0)], "DistributedDataParallel's broadcast from rank 0")
        off = 0
        for t in ts:
            n = t.data.size
            t.data[...] = flat[off : off + n].reshape(t.data.shape)
            t._vc[0] += 1
            off += n


# ----------------------------------------------------------------------------- sampler


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


# ----------------------------------------------------------------------------- trainer


def _quiet_callbacks(callbacks: list) -> list:
    """Rank > 0's callbacks: nothing that prints or writes files; a ModelCheckpoint only keeps
    the training state's path (``DistributedTrainer.save_checkpoint`` writes on rank 0 only)."""
    out = []
    for c in callbacks:
        if isinstance(c, (ProgressBar, CSVLogger, JSONLogger)):
            continue
        if isinstance(c, ModelCheckpoint):
            c = copy.copy(c)
            c.save_best = c.save_last = False
        out.append(c)
    return out


class DistributedTrainer(Trainer):
    """``Trainer`` for a ``DistributedDataParallel`` model, run by every rank (module docstring).

    The train loader's sampler should be a ``DistributedSampler`` (its ``set_epoch`` is called at
    each epoch, and the checkpoint records the global data position, so ``resume`` works with
    another number of processes); give every rank its shard of the validation data
    (``shard(val_ds)``) — or the whole of it, which is correct but does the work on every rank.
    Metrics are summed over ranks from ``Metric.compute`` per batch. Checkpoints are written by
    rank 0 and read by every rank: the folder must be on a file system all ranks see."""

    _agreed_interrupt = False

    # ------------------------------------------------------------------ metrics over ranks
    def _update(self, metrics: list[Metric], loss: Any, output: Any, target: Any) -> None:
        lv = _to_float(loss)
        n = batch_size_of(target, output)
        k = len(metrics)
        v = np.empty(k + 2)
        for i, m in enumerate(metrics):
            v[i] = float(m.compute(output, target, lv)) * n
        v[k] = n
        v[k + 1] = 1.0 if self._interrupt_requested else 0.0  # a Ctrl-C on any rank stops all
        all_reduce(v)
        for i, m in enumerate(metrics):
            m.total += float(v[i])
            m.count += int(v[k])
        if v[k + 1] > 0:
            self._agreed_interrupt = True

    def _check_interrupt(self) -> None:
        if self._agreed_interrupt:
            self._agreed_interrupt = False
            self._interrupt_requested = False
            _require().agreed_stop = True
            raise KeyboardInterrupt

    def evaluate(self, loader: Any, prefix: str = "") -> dict[str, float]:
        """The metrics over every rank's ``loader`` together (each sample counted where it is
        evaluated); the model's train/eval mode is restored afterwards."""
        from .autograd.grad_mode import no_grad  # noqa: PLC0415

        was_training = getattr(self.model, "training", True)
        self.model.eval()
        metrics = self._make_metrics()
        try:
            with no_grad():
                for batch in loader:
                    loss, output, target = self.eval_step(batch)
                    Trainer._update(metrics, loss, output, target)
        finally:
            self.model.train(was_training)
        v = np.array([m.total for m in metrics] + [m.count for m in metrics], np.float64)
        all_reduce(v)
        k = len(metrics)
        for i, m in enumerate(metrics):
            m.total, m.count = float(v[i]), int(v[k + i])
        return {prefix + m.name: m.result() for m in metrics}

    # ------------------------------------------------------------------ data position
    def _sampler(self) -> DistributedSampler | None:
        s = getattr(self.train_loader, "sampler", None)
        return s if isinstance(s, DistributedSampler) else None

    def _run_epoch(self) -> dict:
        s = self._sampler()
        if s is not None:
            s.set_epoch(self.epoch)
        return super()._run_epoch()

    def state_dict(self) -> dict:
        sd = super().state_dict()
        s, ld = self._sampler(), sd.get("loader")
        bs = getattr(getattr(self.train_loader, "batch_sampler", None), "batch_size", None)
        if s is not None and isinstance(ld, dict) and bs:
            pos = s.position(ld.get("batches_done", 0) * bs, epoch=self.epoch)
            sd["loader"] = {**ld, "distributed": {"epoch": self.epoch, "position": pos}}
        return sd

    def load_state_dict(self, state: dict) -> None:
        s, ld = self._sampler(), state.get("loader")
        if s is not None and isinstance(ld, dict) and "distributed" in ld:
            d = ld["distributed"]
            s.resume_at(d["epoch"], d["position"])
            state = {**state, "loader": {"epoch_rng": None, "batches_done": 0}}
        super().load_state_dict(state)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the training state (the same on every rank)."""
        if get_rank() == 0:
            super().save_checkpoint(path)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_loader: Any,
        val_loader: Any = None,
        epochs: int = 1,
        callbacks: Any = (),
        **kwargs: Any,
    ) -> Any:
        """``Trainer.fit`` on every rank (same arguments): see the class docstring."""
        g = _require("DistributedTrainer.fit")
        callbacks = list(callbacks)
        if g.rank != 0:
            callbacks = _quiet_callbacks(callbacks)
            kwargs["progress"] = False
            cd = kwargs.get("checkpoint_dir")
            if cd is not None and not any(
                isinstance(c, ModelCheckpoint)
                and os.path.realpath(c.dirpath) == os.path.realpath(cd)
                for c in callbacks
            ):
                callbacks.append(ModelCheckpoint(cd, save_best=False, save_last=False))
        g.agreed_stop = False
        try:
            return super().fit(train_loader, val_loader, epochs, callbacks, **kwargs)
        except BaseException as e:
            report_failure(e)  # not for a Ctrl-C that every rank agreed on
            raise

    def _interrupted(self) -> None:
        if get_rank() == 0:
            super()._interrupted()
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            super()._interrupted()
