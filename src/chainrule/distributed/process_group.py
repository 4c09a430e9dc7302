"""The MPI process group (``init_process_group`` and friends) and the fault protocol
(failure notices on a side channel, the exit handshake): see the package docstring."""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import sys
import time
from datetime import timedelta
from typing import Any

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
    from .collectives import barrier  # noqa: PLC0415 (collectives import this module)

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


def _on_all_ranks(exc: BaseException) -> BaseException:
    """Mark an error that every rank raises at the same point (not a failure to report)."""
    exc.chainrule_all_ranks = True
    return exc


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
