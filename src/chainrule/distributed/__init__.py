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
an end-of-backward callback (``autograd.backward_pass.queue_callback``) that starts the buckets
not yet started, waits for all of them and writes the averages into ``.grad`` — so ``backward()``
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

from .collectives import (
    Work,
    all_gather,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    run_on_rank0,
    shard,
)
from .ddp import DistributedDataParallel
from .process_group import (
    DEFAULT_TIMEOUT,
    DistributedError,
    ReduceOp,
    _wait,  # noqa: F401 (benchmarks/bench_mpi.py times it)
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    report_failure,
)
from .sampler import DistributedSampler
from .trainer import DistributedTrainer

__all__ = [
    "DistributedDataParallel", "DistributedError", "DistributedSampler", "DistributedTrainer",
    "ReduceOp", "Work", "all_gather", "all_gather_object", "all_reduce", "barrier", "broadcast",
    "broadcast_object_list", "destroy_process_group", "get_backend", "get_rank",
    "get_world_size", "init_process_group", "is_available", "is_initialized", "report_failure",
    "run_on_rank0", "shard",
]  # fmt: skip
