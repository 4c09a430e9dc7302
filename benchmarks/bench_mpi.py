"""Data-parallel training over MPI: samples/s on 1 and 2 processes, and the time spent in
communication per step (``chainrule.distributed``).

    python benchmarks/bench_mpi.py                     # both models, every layout, 3 rounds
    python benchmarks/bench_mpi.py --only mlp --steps 40 --rounds 5 --json out.json

Models (synthetic data, cross-entropy, a plain loop: zero_grad, forward, backward, step):
  cnn1d  the MNIST-1D CNN (Conv1d 1->25 k5 s2 p1, 25->25 k3 s2 p1 x2, ReLU, Linear(125, 10)),
         Adam, 100 samples per process per step
  mlp    784-512-512-10 ReLU, SGD momentum 0.9, 128 samples per process per step

Layouts, each a separate ``mpiexec`` run (the thread count is fixed through OMP_NUM_THREADS and
friends before NumPy loads):
  1 proc x 1 thread    the baseline
  1 proc x 2 threads   what one process gets from both cores through BLAS threads
  2 procs x 1 thread   DistributedDataParallel, the same per-process batch (weak scaling: twice
                       the samples per step)
  2 procs x 1 thread, half batch   the same global batch as the baseline (strong scaling)

Reported per layout: samples/s (global samples per second of wall time: the best round, the
least disturbed by other work on the machine, and the median), ms per step (best round), and for
DDP: "wait" (ms per step inside backward waiting for the gradient all-reduce: communication plus
waiting for the slower rank) and "all-reduce" (ms for the same buckets all-reduced alone, no
computation: the pure cost of communication), both from the best round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = {"cnn1d": 100, "mlp": 128}
LAYOUTS = [  # (name, processes, threads, batch divisor)
    ("1 proc x 1 thread", 1, 1, 1),
    ("1 proc x 2 threads", 1, 2, 1),
    ("2 procs x 1 thread", 2, 1, 1),
    ("2 procs x 1 thread, half batch", 2, 1, 2),
]


def build(nn, name: str):  # noqa: ANN001, ANN201
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
    return nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10),
    )  # fmt: skip


def worker(name: str, batch: int, warmup: int, steps: int) -> None:
    """Runs under mpiexec: train, time, print one JSON line on rank 0."""
    import chainrule as cr  # noqa: PLC0415
    import chainrule.distributed as dist  # noqa: PLC0415
    from chainrule import nn, optim  # noqa: PLC0415

    dist.init_process_group()
    rank, p = dist.get_rank(), dist.get_world_size()
    cr.manual_seed(0)
    model = dist.DistributedDataParallel(build(nn, name))
    rng = np.random.default_rng(rank)
    width = 784 if name == "mlp" else 40
    x = cr.tensor(rng.standard_normal((batch, width)).astype(np.float32))
    y = cr.tensor(rng.integers(0, 10, batch))
    opt = (optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if name == "mlp"
           else optim.Adam(model.parameters(), lr=1e-2))  # fmt: skip
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    dist.barrier()
    model.comm_seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    wall = time.perf_counter() - t0
    wait = model.comm_seconds / steps
    # the same buckets, all-reduced alone (no computation between)
    comm = model._comm
    reps = max(20, steps)
    bufs = [(b.send, b.recv) for b in model._buckets]
    dist.barrier()
    t1 = time.perf_counter()
    for _ in range(reps):
        reqs = [comm.Iallreduce(s, r) for s, r in bufs]
        dist._wait(reqs, "benchmark")
    alone = (time.perf_counter() - t1) / reps
    walls: list = [None] * p
    dist.all_gather_object(walls, wall)
    if rank == 0:
        print(
            json.dumps(
                {
                    "model": name,
                    "processes": p,
                    "batch": batch,
                    "steps": steps,
                    "wall": max(walls),
                    "samples_per_s": p * batch * steps / max(walls),
                    "ms_per_step": 1e3 * max(walls) / steps,
                    "wait_ms": 1e3 * wait,
                    "allreduce_ms": 1e3 * alone if p > 1 else 0.0,
                    "bucket_bytes": model.bucket_sizes,
                }
            ),
            flush=True,
        )
    dist.destroy_process_group()


def run(name: str, procs: int, threads: int, batch: int, warmup: int, steps: int) -> dict:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(threads)
    cmd = [str(mpiexec), "-n", str(procs), sys.executable, __file__, "--worker", name,
           "--batch", str(batch), "--warmup", str(warmup), "--steps", str(steps)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.batch, a.warmup, a.steps)
        return
    print(f"# load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    rows = []
    for name in a.only:
        per: dict = {lay[0]: [] for lay in LAYOUTS}
        for _ in range(a.rounds):  # the layouts alternate, round after round
            for lname, procs, threads, div in LAYOUTS:
                per[lname].append(run(name, procs, threads, MODELS[name] // div, a.warmup, a.steps))
        base = max(r["samples_per_s"] for r in per[LAYOUTS[0][0]])
        for lname, procs, _, div in LAYOUTS:
            rs = per[lname]
            best = max(rs, key=lambda r: r["samples_per_s"])
            rows.append({
                "model": name, "layout": lname, "batch/proc": MODELS[name] // div,
                "samples/s": best["samples_per_s"],
                "median": statistics.median(r["samples_per_s"] for r in rs),
                "speed-up": best["samples_per_s"] / base, "ms/step": best["ms_per_step"],
                "wait ms/step": best["wait_ms"] if procs > 1 else None,
                "all-reduce ms": best["allreduce_ms"] if procs > 1 else None,
                "gradient KiB": sum(rs[0]["bucket_bytes"]) / 1024,
            })  # fmt: skip
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    cols = [
        "model",
        "layout",
        "batch/proc",
        "samples/s",
        "median",
        "speed-up",
        "ms/step",
        "wait ms/step",
        "all-reduce ms",
        "gradient KiB",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append(
                "-"
                if v is None
                else f"{v:.0f}"
                if c in ("samples/s", "median", "gradient KiB")
                else f"{v:.2f}"
                if isinstance(v, float)
                else str(v)
            )
        print("| " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
