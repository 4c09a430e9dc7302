"""The program ``tests/test_distributed.py`` runs under ``mpiexec -n N`` (one scenario per call).

    python mpi_worker.py loop --batch 8 --epochs 2 --out w.npz        # DDP in a plain loop
    python mpi_worker.py trainer --batch 12 --epochs 2 --out DIR [--copy-at 3] [--resume FILE]
    python mpi_worker.py raise|die|hang|mismatch                      # faults (rank 1 misbehaves)

Everything is float64 and seeded, so runs on different numbers of processes can be compared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn, optim
from chainrule.data import DataLoader, TensorDataset
from chainrule.train import Callback, ModelCheckpoint

N = 60


def data() -> TensorDataset:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, 1, 12))
    y = rng.integers(0, 3, size=N)
    return TensorDataset(cr.tensor(x), cr.tensor(y))


def model(width: int = 4) -> nn.Module:
    cr.manual_seed(11)
    return nn.Sequential(
        nn.Conv1d(1, width, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(width * 5, 8),
        nn.Tanh(), nn.Linear(8, 3),
    )  # fmt: skip


def run_loop(a: argparse.Namespace) -> None:
    """DDP without the trainer: zero_grad, forward, backward, step (a bucket per parameter or so)."""
    ds = data()
    ddp = dist.DistributedDataParallel(model(), bucket_cap_mb=a.bucket_mb)
    sampler = dist.DistributedSampler(ds, shuffle=True, seed=3)
    loader = DataLoader(ds, batch_size=a.batch, sampler=sampler)
    opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            step += 1
            if a.fault == "raise" and dist.get_rank() == 1 and step == 3:
                raise ValueError("boom on purpose")
            if a.fault == "die" and dist.get_rank() == 1 and step == 3:
                os._exit(7)
            if a.fault == "hang" and dist.get_rank() == 1 and step == 3:
                time.sleep(600)
            opt.zero_grad()
            loss_fn(ddp(x), y).backward()
            opt.step()
    if dist.get_rank() == 0:
        np.savez(a.out, *[p.data for p in ddp.parameters()], buckets=len(ddp.bucket_sizes))
    dist.destroy_process_group()


class CopyCheckpoint(Callback):
    """Keep a copy of the training checkpoint as it was after step ``at`` (rank 0)."""

    def __init__(self, src: str, dst: str, at: int) -> None:
        self.src, self.dst, self.at = src, dst, at

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.trainer.global_step == self.at and dist.get_rank() == 0:
            shutil.copy(self.src, self.dst)


def run_trainer(a: argparse.Namespace) -> None:
    """DistributedTrainer with a global batch of ``a.batch`` split over the ranks."""
    ds = data()
    p = dist.get_world_size()
    ddp = dist.DistributedDataParallel(model())
    sampler = dist.DistributedSampler(ds, shuffle=True, seed=3)
    loader = DataLoader(ds, batch_size=a.batch // p, sampler=sampler)
    val = DataLoader(dist.shard(ds), batch_size=7)
    opt = optim.Adam(ddp.parameters(), lr=0.01)
    trainer = dist.DistributedTrainer(ddp, nn.CrossEntropyLoss(), opt)
    ckpt = os.path.join(a.out, "checkpoint.safetensors")
    cbs = [ModelCheckpoint(a.out, every_n_steps=1)]
    if a.copy_at:
        cbs.append(CopyCheckpoint(ckpt, os.path.join(a.out, "mid.safetensors"), a.copy_at))
    h = trainer.fit(
        loader, val, epochs=a.epochs, callbacks=cbs, checkpoint_dir=a.out,
        resume=a.resume or False, progress=False,
    )  # fmt: skip
    if dist.get_rank() == 0:
        np.savez(
            os.path.join(a.out, "result.npz"), *[q.data for q in ddp.parameters()],
            loss=np.array(h["loss"]), val_loss=np.array(h["val_loss"]),
            accuracy=np.array(h["accuracy"]),
        )  # fmt: skip
    dist.destroy_process_group()


def run_collectives(a: argparse.Namespace) -> None:
    """Every collective against what it must give; prints one OK line per rank."""
    r, p = dist.get_rank(), dist.get_world_size()
    t = cr.tensor(np.arange(6.0).reshape(2, 3) + r)
    dist.all_reduce(t)
    assert np.array_equal(t.data, p * np.arange(6.0).reshape(2, 3) + sum(range(p))), t
    for op, want in [
        (dist.ReduceOp.AVG, (p - 1) / 2), (dist.ReduceOp.MAX, p - 1), (dist.ReduceOp.MIN, 0),
        (dist.ReduceOp.PRODUCT, float(np.prod(np.arange(p) + 1))),
    ]:  # fmt: skip
        v = cr.tensor([float(r + 1 if op == dist.ReduceOp.PRODUCT else r)])
        dist.all_reduce(v, op=op)
        assert v.data[0] == want, (op, v.data, want)
    i = cr.tensor(np.array([1 << r], np.int64))
    dist.all_reduce(i, op=dist.ReduceOp.BOR)
    assert i.data[0] == (1 << p) - 1
    view = cr.tensor(np.ones((4, 4)))[:, 1]  # not contiguous: reduced through a copy
    work = dist.all_reduce(view, async_op=True)
    work.wait()
    assert np.array_equal(view.data, np.full(4, float(p)))
    b = cr.tensor(np.full(3, float(r)))
    dist.broadcast(b, src=p - 1)
    assert np.array_equal(b.data, np.full(3, p - 1.0))
    out = [cr.zeros(2, dtype=cr.float32) for _ in range(p)]
    dist.all_gather(out, cr.tensor([r, 10.0 * r], dtype=cr.float32))
    assert [o.data.tolist() for o in out] == [[q, 10.0 * q] for q in range(p)]
    objs: list = [None] * p
    dist.all_gather_object(objs, {"rank": r, "s": "x" * r})
    assert objs == [{"rank": q, "s": "x" * q} for q in range(p)]
    lst = [f"from {r}", r]
    dist.broadcast_object_list(lst, src=1 % p)
    assert lst == [f"from {1 % p}", 1 % p]
    dist.barrier()
    try:
        dist.run_on_rank0(lambda: 1 / 0)
    except ZeroDivisionError as e:
        assert e.chainrule_all_ranks
    else:
        raise AssertionError("run_on_rank0 did not raise")
    print(f"rank {r} of {p}: collectives OK", flush=True)
    dist.destroy_process_group()


def run_mismatch(a: argparse.Namespace) -> None:
    dist.DistributedDataParallel(model(width=5 if dist.get_rank() == 1 else 4))
    print("constructed: the mismatch was not detected", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "scenario", choices=["loop", "trainer", "raise", "die", "hang", "mismatch", "collectives"]
    )
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--out", default="out.npz")
    ap.add_argument("--copy-at", type=int, default=0)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--timeout", type=float, default=None)
    a = ap.parse_args()
    cr.set_default_dtype(cr.float64)
    dist.init_process_group(timeout=a.timeout)
    if a.scenario in ("raise", "die", "hang"):
        a.fault, a.scenario = a.scenario, "loop"
    else:
        a.fault = None
    run = {"loop": run_loop, "trainer": run_trainer, "mismatch": run_mismatch}
    run["collectives"] = run_collectives
    run[a.scenario](a)


if __name__ == "__main__":
    sys.exit(main())
