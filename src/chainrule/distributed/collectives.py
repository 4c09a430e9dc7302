"""Tensor and object collectives over the process group (``all_reduce``, ``broadcast``,
``all_gather``, ``barrier``, ...), ``Work`` for ``async_op=True``, and ``shard``."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from ..data.dataset import Subset
from ..tensor import Tensor
from .process_group import ReduceOp, _Group, _on_all_ranks, _require, _wait

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


def shard(dataset: Any) -> Subset:
    """This rank's share of ``dataset`` for evaluation: samples ``rank, rank + p, ...`` (no
    padding, so the shards together hold every sample exactly once)."""
    g = _require("shard")
    return Subset(dataset, range(g.rank, len(dataset), g.size))
