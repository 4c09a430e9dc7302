"""``DistributedDataParallel``: rank 0's weights everywhere, and gradients averaged during
``backward()`` with bucketed non-blocking all-reduce (see the package docstring)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..autograd import backward_pass
from ..nn.module import Module
from ..tensor import Tensor, wrap
from .collectives import all_gather_object
from .process_group import DistributedError, _Group, _on_all_ranks, _require, _wait


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
            current = backward_pass._end_callbacks[-1]  # this backward pass's callbacks
            if not self._sync or not current.accumulate:  # no_sync(), or autograd.grad()
                return
            if self._queued is not current:  # the first hook of this backward pass
                if self._queued is not None:
                    self._reset()
                backward_pass.queue_callback(self.finish_gradient_sync)
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
