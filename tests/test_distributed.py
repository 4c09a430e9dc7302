"""``chainrule.distributed`` over MPI: ``mpiexec -n N`` runs of ``tests/mpi_worker.py`` (and of
``chainrule train --distributed``) for exactness (2 processes x batch B == 1 process x batch 2B in
float64; resume on another number of processes), faults (a raising, dying or hanging rank stops
the others within a bounded time; a model that differs between ranks is refused at start-up),
and the sampler's semantics in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import distributed as dist

HERE = Path(__file__).parent
WORKER = str(HERE / "mpi_worker.py")
# the mpiexec of this environment (the mpich wheel's) first: it matches the libmpi mpi4py loads
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
needs_mpi = pytest.mark.skipif(
    not (dist.is_available() and MPIEXEC),
    reason="needs mpi4py and mpiexec: pip install 'chainrule[mpi]' (mpi4py + the mpich wheel)",
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def mpirun(n: int, *args: str, timeout: float = 60, cwd: Path | None = None) -> tuple:
    """(CompletedProcess, seconds) of ``mpiexec -n n python args...``."""
    t0 = time.monotonic()
    r = subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, *args], capture_output=True, text=True,
        timeout=timeout, env=ENV, cwd=cwd,
    )  # fmt: skip
    return r, time.monotonic() - t0


def weights(path: Path) -> list[np.ndarray]:
    z = np.load(path)
    return [
        z[k] for k in sorted((k for k in z.files if k.startswith("arr_")), key=lambda k: int(k[4:]))
    ]


def max_diff(a: list, b: list) -> float:
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- exactness


@needs_mpi
def test_two_processes_batch_b_equal_one_process_batch_2b(tmp_path: Path) -> None:
    # tiny buckets: several all-reduce messages per step, started as the buckets fill
    r2, _ = mpirun(
        2,
        WORKER,
        "loop",
        "--batch",
        "6",
        "--bucket-mb",
        "0.0005",
        "--out",
        str(tmp_path / "p2.npz"),
    )
    assert r2.returncode == 0, r2.stderr
    r1, _ = mpirun(1, WORKER, "loop", "--batch", "12", "--out", str(tmp_path / "p1.npz"))
    assert r1.returncode == 0, r1.stderr
    assert int(np.load(tmp_path / "p2.npz")["buckets"]) >= 3
    w2, w1 = weights(tmp_path / "p2.npz"), weights(tmp_path / "p1.npz")
    assert max_diff(w2, w1) < 1e-10
    # and the comparison means something: the same run with batch 6 on 1 process differs
    r0, _ = mpirun(1, WORKER, "loop", "--batch", "6", "--out", str(tmp_path / "b6.npz"))
    assert r0.returncode == 0, r0.stderr
    assert max_diff(weights(tmp_path / "b6.npz"), w1) > 1e-3


@needs_mpi
def test_trainer_resumes_mid_epoch_on_another_number_of_processes(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    r, _ = mpirun(2, WORKER, "trainer", "--batch", "12", "--out", str(ref), "--copy-at", "3")
    assert r.returncode == 0, r.stderr
    assert (ref / "mid.safetensors").exists() and (ref / "best.safetensors").exists()
    want = np.load(ref / "result.npz")
    for n in (1, 3):  # step 3 of 5 in the first epoch, continued with 12/n samples per process
        d = tmp_path / f"n{n}"
        d.mkdir()
        shutil.copy(ref / "mid.safetensors", d / "mid.safetensors")
        r, _ = mpirun(
            n,
            WORKER,
            "trainer",
            "--batch",
            "12",
            "--out",
            str(d),
            "--resume",
            str(d / "mid.safetensors"),
        )
        assert r.returncode == 0, r.stderr
        got = np.load(d / "result.npz")
        assert max_diff(weights(d / "result.npz"), weights(ref / "result.npz")) < 1e-10
        for k in ("loss", "val_loss", "accuracy"):  # metrics summed over ranks: the same history
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12)


@needs_mpi
def test_collectives_on_three_processes() -> None:
    r, _ = mpirun(3, WORKER, "collectives")
    assert r.returncode == 0, r.stdout + r.stderr
    for i in range(3):
        assert f"rank {i} of 3: collectives OK" in r.stdout


# ----------------------------------------------------------------------------- faults


@needs_mpi
def test_a_raising_rank_stops_the_others_with_a_clear_error(tmp_path: Path) -> None:
    r, secs = mpirun(2, WORKER, "raise", "--out", str(tmp_path / "x.npz"), timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert secs < 20, f"took {secs:.1f}s"
    assert "ValueError: boom on purpose" in out  # rank 1's own traceback
    assert "rank 1 of 2 failed (ValueError: boom on purpose); rank 0 stopped in" in out
    assert not (tmp_path / "x.npz").exists()


@needs_mpi
def test_a_dying_rank_ends_the_job(tmp_path: Path) -> None:
    r, secs = mpirun(2, WORKER, "die", "--out", str(tmp_path / "x.npz"), timeout=60)
    assert r.returncode != 0 and secs < 20, (r.returncode, secs)


@needs_mpi
def test_a_stuck_rank_makes_the_others_time_out(tmp_path: Path) -> None:
    r, secs = mpirun(
        2, WORKER, "hang", "--timeout", "2", "--out", str(tmp_path / "x.npz"), timeout=60
    )
    assert r.returncode != 0 and secs < 20, (r.returncode, secs)
    assert "timed out after 2 s on rank 0 of 2" in r.stdout + r.stderr


@needs_mpi
def test_a_model_that_differs_between_ranks_is_refused_at_start_up() -> None:
    r, secs = mpirun(2, WORKER, "mismatch", timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and secs < 20
    msg = "the model differs between ranks: parameter '0.weight' has shape (4, 1, 3) (float64) on rank 0 but (5, 1, 3) (float64) on rank 1"
    assert out.count(msg) == 2  # every rank raises the same error
    assert "constructed" not in out


# ----------------------------------------------------------------------------- the CLI


CONFIG = """
name = "tiny-cnn"
description = "the MNIST-1D CNN on 240 random samples"
seed = 5
[data]
dataset = "npz"
path = "{path}"
batch_size = 40
shuffle = true
val = 0.25
[model]
layers = [
  {{ type = "Unflatten", dim = 1, unflattened_size = [1, 40] }},
  {{ type = "Conv1d", in_channels = 1, out_channels = 25, kernel_size = 5, stride = 2, padding = 1 }}, {{ type = "ReLU" }},
  {{ type = "Conv1d", in_channels = 25, out_channels = 25, kernel_size = 3, stride = 2, padding = 1 }}, {{ type = "ReLU" }},
  {{ type = "Conv1d", in_channels = 25, out_channels = 25, kernel_size = 3, stride = 2, padding = 1 }}, {{ type = "ReLU" }},
  {{ type = "Flatten" }}, {{ type = "Linear", in_features = 125, out_features = 10 }},
]
[optimizer]
name = "Adam"
lr = 0.01
[train]
epochs = 3
loss = "CrossEntropyLoss"
metrics = ["loss", "accuracy"]
"""


def cli(n: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    r, _ = mpirun(
        n,
        "-m",
        "chainrule.cli",
        "train",
        "--distributed",
        "--no-progress",
        *args,
        cwd=cwd,
        timeout=120,
    )
    return r


@needs_mpi
def test_chainrule_train_distributed_and_resume_on_another_number_of_processes(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.normal(size=(320, 40)).astype(np.float32),
        y=rng.integers(0, 10, 320),
    )
    (tmp_path / "c.toml").write_text(CONFIG.format(path=tmp_path / "d.npz"))
    full = cli(2, "--config", "c.toml", "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    # rank 0 alone speaks and writes
    assert (
        full.stdout.count("chainrule: training tiny-cnn") == 1
        and full.stdout.count("chainrule: done") == 1
    )
    assert len((tmp_path / "full" / "metrics.csv").read_text().strip().splitlines()) == 4
    for f in (
        "summary.json",
        "curves.png",
        "best.safetensors",
        "last.safetensors",
        "checkpoint.safetensors",
    ):
        assert (tmp_path / "full" / f).exists(), f
    # 1 epoch on 2 processes, then the rest on 1 process: the same run
    part = cli(2, "--config", "c.toml", "--out", "part", "--epochs", "1", cwd=tmp_path)
    assert part.returncode == 0, part.stderr
    rest = cli(1, "--config", "c.toml", "--resume", "part", cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert "resuming tiny-cnn" in rest.stdout
    a, b = (
        cr.load(tmp_path / "full" / "last.safetensors"),
        cr.load(tmp_path / "part" / "last.safetensors"),
    )
    for k in a:
        np.testing.assert_allclose(b[k].data, a[k].data, rtol=1e-4, atol=1e-5)
    rows_a = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert len(rows_b) == len(rows_a) == 4
    # a global batch that does not split evenly is one clear line, from every rank, status 2
    bad = cli(3, "--config", "c.toml", "--out", "bad", cwd=tmp_path)
    assert bad.returncode == 2
    assert (
        "the batch size 40 is the global batch, split evenly over the 3 processes: use a multiple of 3 (e.g. --batch-size 39)"
        in bad.stderr
    )


# ----------------------------------------------------------------------------- in-process


def test_distributed_sampler_partitions_as_pytorch_does() -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    for n, p, drop in [(10, 3, False), (10, 3, True), (9, 3, False), (2, 4, False), (7, 2, True)]:
        ds = list(range(n))
        ours = [
            list(dist.DistributedSampler(ds, p, r, shuffle=False, drop_last=drop)) for r in range(p)
        ]
        theirs = [
            list(torch_data.DistributedSampler(ds, p, r, shuffle=False, drop_last=drop))
            for r in range(p)
        ]
        assert ours == theirs, (n, p, drop)
        assert [len(dist.DistributedSampler(ds, p, r, drop_last=drop)) for r in range(p)] == [
            len(t) for t in theirs
        ]


def test_distributed_sampler_shuffles_per_epoch_and_resumes_at_a_global_position() -> None:
    ds = list(range(23))
    s = [dist.DistributedSampler(ds, 2, r, seed=4) for r in range(2)]
    e0 = [list(x) for x in s]
    order = s[0].order()
    assert sorted(order.tolist()) == ds and s[1].order().tolist() == order.tolist()
    padded = np.concatenate([order, order[:1]])  # 23 -> 24: wraps around
    assert e0[0] == padded[0::2].tolist() and e0[1] == padded[1::2].tolist()
    for x in s:
        x.set_epoch(1)
    assert [list(x) for x in s] != e0  # a new shuffle, the same on every rank
    assert (
        s[0].order().tolist()
        == dist.DistributedSampler(ds, 5, 3, seed=4, shuffle=True).order(1).tolist()
    )
    # 3 steps of 2 x 2 samples = position 12 of epoch 1, continued on 3 ranks
    assert s[0].position(6, epoch=1) == 12 and s[0].position(100) == 23
    s3 = [dist.DistributedSampler(ds, 3, r, seed=4) for r in range(3)]
    for x in s3:
        x.resume_at(1, 12)
    rest = s[0].order(1)[12:]  # 11 left -> padded to 12
    rest = np.concatenate([rest, rest[:1]])
    assert [list(x) for x in s3] == [rest[r::3].tolist() for r in range(3)]
    assert len(s3[0]) == 4 and s3[0].position(2) == 12 + 6
    s3[0].set_epoch(2)
    assert len(s3[0]) == 8  # the offset only applies to the resumed epoch
    st = s3[0].state_dict()
    assert st == {"epoch": 2, "position": 0}
    with pytest.raises(ValueError, match="Invalid rank 3"):
        dist.DistributedSampler(ds, 3, 3)


def test_engine_runs_queued_callbacks_once_every_grad_is_accumulated() -> None:
    from chainrule.autograd import backward_pass

    w = cr.tensor([1.0, 2.0], requires_grad=True)
    b = cr.tensor([3.0], requires_grad=True)
    seen: list = []

    def hook(g: cr.Tensor) -> None:
        p = backward_pass._end_callbacks[-1]
        seen.append(("hook", p.accumulate))
        backward_pass.queue_callback(
            lambda: seen.append(("end", w.grad.data.tolist(), b.grad.data.tolist()))
        )

    w.register_hook(hook)
    ((w * w).sum() + b.sum()).backward()
    assert seen == [("hook", True), ("end", [2.0, 4.0], [1.0])]
    seen.clear()
    cr.autograd.grad((w * w).sum(), w)
    assert seen[0] == ("hook", False) and len(seen) == 2
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        backward_pass.queue_callback(lambda: None)


def test_without_a_process_group_the_functions_say_what_to_do() -> None:
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match=r"init_process_group\(\) first"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match=r"init_process_group\(\) first"):
        dist.DistributedSampler(list(range(4)))
    with pytest.raises(ValueError, match="backend 'nccl' is not supported"):
        dist.init_process_group("nccl")


@needs_mpi
def test_a_single_process_without_mpiexec_is_a_group_of_one(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import numpy as np, chainrule as cr, chainrule.distributed as dist
        from chainrule import nn
        dist.init_process_group()
        m = dist.DistributedDataParallel(nn.Linear(3, 2))
        x = cr.tensor(np.ones((4, 3), np.float32))
        m(x).sum().backward()
        g = m.module.weight.grad.data.copy()
        m.module.weight.grad = None
        with m.no_sync():
            m(x).sum().backward()
        assert np.array_equal(m.module.weight.grad.data, g) and m.steps == 1
        (gw,) = cr.autograd.grad(m(x).sum(), [m.module.weight])  # not averaged, .grad untouched
        assert np.array_equal(gw.data, g) and m.steps == 1
        print(dist.get_rank(), dist.get_world_size(), m.bucket_sizes)
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1", "[32]"]
