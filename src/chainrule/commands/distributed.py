"""``chainrule train --distributed``: data-parallel training over MPI (``chainrule.distributed``).

    mpiexec -n 4 chainrule train --preset mnist1d-cnn --distributed
    mpiexec -n 2 chainrule train --preset mnist1d-cnn --distributed --resume   # any -n

Every process builds the same model and data; ``DistributedDataParallel`` broadcasts rank 0's
weights and averages the gradients, a ``DistributedSampler`` gives each process its share of every
batch, and ``DistributedTrainer`` sums the metrics over processes. The config's batch size is the
*global* batch: with ``-n p`` each process takes ``batch_size / p`` samples per step (it must
divide evenly), so a run follows the same trajectory (to rounding) on any number of processes,
and ``--resume`` may continue it on another number (the checkpoint holds the global position in
the data). Rank 0 alone prints progress and writes the run folder, which must be on a file system
every process sees. An error on one process stops all of them (``chainrule.distributed``'s
failure protocol). Without ``mpiexec`` it runs as a group of one process.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training over MPI: mpiexec -n N chainrule train --distributed "
        "(the batch size is the global batch, split over the N processes; needs chainrule[mpi])",
    )  # fmt: skip


def loaders(
    dist: Any, train_ds: Any, val_ds: Any, batch_size: int, shuffle: bool, seed: int
) -> tuple:
    """(train loader, validation loader or None) for this rank: its share of each global batch of
    ``batch_size`` (a ``DistributedSampler`` with ``seed``), and its shard of the validation
    data."""
    from ..cli import CLIError  # noqa: PLC0415
    from ..data import DataLoader  # noqa: PLC0415

    p = dist.get_world_size()
    if batch_size % p:
        ok = max(p, batch_size - batch_size % p)
        err = CLIError(
            f"--distributed: the batch size {batch_size} is the global batch, split evenly over the "
            f"{p} processes: use a multiple of {p} (e.g. --batch-size {ok})"
        )
        err.chainrule_all_ranks = True  # every rank stops here: nobody waits, nothing to report
        raise err
    sampler = dist.DistributedSampler(train_ds, shuffle=shuffle, seed=seed)
    loader = DataLoader(train_ds, batch_size=batch_size // p, sampler=sampler)
    val = None
    if val_ds is not None:
        val = DataLoader(dist.shard(val_ds), batch_size=max(batch_size, 256))
    return loader, val


def on_error(args: argparse.Namespace, exc: BaseException, status: int) -> None:
    """``chainrule`` met an error: tell the other processes (they stop with a clear error rather
    than wait for this one) and make this one end the MPI job with ``status`` at exit."""
    if getattr(args, "distributed", False):
        from .. import distributed  # noqa: PLC0415

        distributed.report_failure(exc, status)
