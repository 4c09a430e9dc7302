"""chainrule.data: datasets, samplers, DataLoader (order, seeding, prefetch thread, exact
resume), memory-mapped streaming under a memory limit, the 1986 datasets and the file readers."""

from __future__ import annotations

import collections
import contextlib
import gc
import gzip
import json
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    NpyDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)
from chainrule.data import datasets as D


def _ds(n=10):
    return TensorDataset(cr.arange(n).float() * 10, cr.arange(n))


def _ids(loader):
    """Each batch's sample ids (the second tensor of a TensorDataset of arange)."""
    return [b[1].tolist() for b in loader]


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "chainrule-DataLoader-prefetch"]


def _no_prefetch_threads(timeout=2.0):
    gc.collect()
    end = time.monotonic() + timeout
    while _prefetch_threads() and time.monotonic() < end:
        time.sleep(0.01)
    return not _prefetch_threads()


class Counting(Dataset):
    """A map-style dataset without get_batch (per-sample path) that counts its reads."""

    def __init__(self, n=10, fail_at=None, delay=0.0):
        self.n, self.fail_at, self.delay = n, fail_at, delay
        self.reads = []
        self.threads = set()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        self.threads.add(threading.current_thread().name)
        if i == self.fail_at:
            raise ValueError(f"bad sample {i}")
        self.reads.append(i)
        return np.float32(i * 10), i


class CountingTensorDataset(TensorDataset):
    def __init__(self, *t):
        super().__init__(*t)
        self.batches_read = 0

    def get_batch(self, indices):
        self.batches_read += 1
        return super().get_batch(indices)


# ------------------------------------------------------------------------------ order, batches


@pytest.mark.parametrize("prefetch", [True, False])
def test_sequential_batches_last_partial_and_drop_last(prefetch):
    loader = DataLoader(_ds(10), batch_size=4, prefetch=prefetch)
    assert len(loader) == 3
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = next(iter(loader))
    assert x.dtype == cr.float32 and y.dtype == cr.int64 and x.tolist() == [0, 10, 20, 30]
    loader = DataLoader(_ds(10), batch_size=4, drop_last=True, prefetch=prefetch)
    assert len(loader) == 2 and _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert _ids(DataLoader(_ds(8), batch_size=4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_fast_path_equals_per_sample_collation():
    ds = TensorDataset(cr.randn(9, 2, 3), cr.arange(9), cr.rand(9) > 0.5)
    plain = [ds[i] for i in range(9)]  # a list of tuples: no get_batch, per-sample collation
    g1, g2 = cr.Generator().manual_seed(3), cr.Generator().manual_seed(3)
    fast = list(DataLoader(ds, batch_size=4, shuffle=True, generator=g1))
    slow = list(DataLoader(plain, batch_size=4, shuffle=True, generator=g2))
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow):
        assert isinstance(a, list) and isinstance(b, list)  # PyTorch: a tuple sample -> a list
        for ta, tb in zip(a, b):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            np.testing.assert_array_equal(ta.numpy(), tb.numpy())
    # the gathered batch is a copy: writing into it leaves the dataset alone
    x, _, _ = next(iter(DataLoader(ds, batch_size=4)))
    x.data[:] = 0
    assert float(ds.tensors[0].abs().sum()) > 0


def test_custom_collate_and_batch_size_none():
    loader = DataLoader(_ds(5), batch_size=2, collate_fn=lambda b: [int(s[1]) for s in b])
    assert list(loader) == [[0, 1], [2, 3], [4]]
    one = list(DataLoader([np.arange(3), np.arange(3) + 1], batch_size=None))
    assert [t.tolist() for t in one] == [[0, 1, 2], [1, 2, 3]] and isinstance(one[0], cr.Tensor)


def test_samplers_and_option_errors():
    ds = _ds(7)
    assert _ids(DataLoader(ds, sampler=[6, 0, 3], batch_size=2)) == [[6, 0], [3]]
    bs = BatchSampler(SequentialSampler(ds), 3, False)
    assert list(bs) == [[0, 1, 2], [3, 4, 5], [6]] and len(bs) == 3
    assert _ids(DataLoader(ds, batch_sampler=[[1, 2], [5]])) == [[1, 2], [5]]
    rs = RandomSampler(
        ds, replacement=True, num_samples=20, generator=cr.Generator().manual_seed(0)
    )
    assert len(list(rs)) == 20 and set(rs) <= set(range(7))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(ds, batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    # PyTorch's worker options are accepted and ignored; pin_memory without CUDA warns
    no_cuda = not cr.cuda.is_available()
    with pytest.warns(UserWarning, match="pin_memory") if no_cuda else contextlib.nullcontext():
        ids = _ids(
            DataLoader(ds, batch_size=4, num_workers=4, pin_memory=True, persistent_workers=True)
        )
    assert ids == [
        [0, 1, 2, 3],
        [4, 5, 6],
    ]


def test_iterable_dataset():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([(np.float32(i), i) for i in range(7)])

    out = list(DataLoader(Stream(), batch_size=3))
    assert [b[1].tolist() for b in out] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b[1].tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(), shuffle=True)


# ------------------------------------------------------------------------------ seeding


def test_shuffle_is_seeded_by_the_generator():
    def epochs(seed, n=3):
        loader = DataLoader(
            _ds(20), batch_size=6, shuffle=True, generator=cr.Generator().manual_seed(seed)
        )
        return [_ids(loader) for _ in range(n)]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert a == b and a != c
    for ep in a:  # each epoch is a permutation, in batches of 6, 6, 6, 2
        assert sorted(sum(ep, [])) == list(range(20)) and [len(x) for x in ep] == [6, 6, 6, 2]
    assert a[0] != a[1] != a[2]  # a new order every epoch


def test_shuffle_without_generator_follows_manual_seed_and_ignores_model_draws():
    cr.manual_seed(5)
    la = DataLoader(_ds(20), batch_size=5, shuffle=True)
    a = [_ids(la) for _ in range(2)]
    cr.manual_seed(5)
    lb = DataLoader(_ds(20), batch_size=5, shuffle=True)
    b = [_ids(lb)]
    cr.randn(100)  # the model draws random numbers between epochs (dropout, ...)
    b.append(_ids(lb))
    assert a == b
    cr.manual_seed(6)
    assert _ids(DataLoader(_ds(20), batch_size=5, shuffle=True)) != a[0]


def test_random_split():
    ds = _ds(10)
    parts = random_split(ds, [3, 7], generator=cr.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [3, 7]
    ids = [[int(p[i][1]) for i in range(len(p))] for p in parts]
    assert sorted(ids[0] + ids[1]) == list(range(10))
    again = random_split(ds, [3, 7], generator=cr.Generator().manual_seed(0))
    assert [list(p.indices) for p in again] == [list(p.indices) for p in parts]
    other = random_split(ds, [3, 7], generator=cr.Generator().manual_seed(1))
    assert [list(p.indices) for p in other] != [list(p.indices) for p in parts]
    assert [len(p) for p in random_split(ds, [0.3, 0.3, 0.4])] == [3, 3, 4]
    assert [len(p) for p in random_split(_ds(11), [0.5, 0.5])] == [6, 5]  # remainder dealt in order
    with pytest.raises(ValueError, match="does not equal"):
        random_split(ds, [3, 6])
    # a Subset of a TensorDataset keeps the one-gather fast path, in the subset's order
    sub = Subset(ds, [9, 2, 4])
    assert _ids(DataLoader(sub, batch_size=2)) == [[9, 2], [4]]


def test_concat_dataset():
    cat = ConcatDataset([_ds(3), _ds(2)])
    assert len(cat) == 5 and [int(cat[i][1]) for i in range(5)] == [0, 1, 2, 0, 1]
    assert int(cat[-1][1]) == 1 and len(_ds(2) + _ds(4)) == 6
    assert _ids(DataLoader(cat, batch_size=3)) == [[0, 1, 2], [0, 1]]


# ------------------------------------------------------------------------------ collate


def test_default_collate_nested_matches_torch():
    import torch
    from torch.utils.data import default_collate as torch_collate

    Point = collections.namedtuple("Point", "x y")
    samples = [
        {
            "img": np.full((2, 2), i, np.float32),
            "meta": (i, float(i) / 2, f"s{i}"),
            "p": Point(i, [i, -i]),
        }
        for i in range(3)
    ]
    ours, theirs = default_collate(samples), torch_collate(samples)

    def same(a, b):
        if isinstance(b, torch.Tensor):
            assert (
                isinstance(a, cr.Tensor)
                and str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1]
            )
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        elif isinstance(b, dict):
            assert isinstance(a, dict) and a.keys() == b.keys()
            for k in b:
                same(a[k], b[k])
        elif isinstance(b, (list, tuple)):
            assert type(a) is type(b) and len(a) == len(b)
            for u, v in zip(a, b):
                same(u, v)
        else:
            assert a == b

    same(ours, theirs)
    assert isinstance(ours["p"], Point) and ours["meta"][1].dtype == cr.float64
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object(), object()])


# ------------------------------------------------------------------------------ prefetch thread


def test_prefetch_reads_on_a_thread_and_stays_bounded():
    ds = Counting(40)
    it = iter(DataLoader(ds, batch_size=2))
    next(it)
    time.sleep(0.2)  # let the thread run ahead as far as it may
    # 1 batch consumed, at most 2 queued and 1 in hand (blocked on the full queue): <= 4 batches
    assert len(ds.reads) <= 8
    assert ds.threads == {"chainrule-DataLoader-prefetch"}
    assert len(list(it)) == 19
    assert _no_prefetch_threads()


def test_prefetch_reraises_in_the_main_thread_and_stops():
    ds = Counting(10, fail_at=5)
    got = []
    with pytest.raises(ValueError, match="bad sample 5"):
        for b in DataLoader(ds, batch_size=2):
            got.append(b[1].tolist())
    assert got == [[0, 1], [2, 3]]
    assert _no_prefetch_threads()


def test_early_break_and_dropped_iterators_leak_no_thread():
    base = threading.active_count()
    loader = DataLoader(Counting(100, delay=0.001), batch_size=2)
    for _ in range(5):
        for i, _b in enumerate(loader):
            if i == 1:
                break
    it = iter(loader)
    next(it)
    del it
    it = iter(loader)
    next(it)
    it.close()
    assert _no_prefetch_threads() and threading.active_count() <= base
    with pytest.raises(StopIteration):
        next(it)


# ------------------------------------------------------------------------------ exact resume


@pytest.mark.parametrize("seeded", [True, False])
def test_exact_resume_mid_epoch(seeded):
    def make(seed, ds=None):
        if not seeded:
            cr.manual_seed(seed)
        g = cr.Generator().manual_seed(seed) if seeded else None
        return DataLoader(ds or _ds(10), batch_size=3, shuffle=True, generator=g)

    ref = make(0)
    want = [_ids(ref) for _ in range(5)]  # 5 epochs of 4 batches, uninterrupted
    flat = sum(want, [])

    run = make(0)
    got = [_ids(run), _ids(run)]
    it = iter(run)
    got.append([next(it)[1].tolist(), next(it)[1].tolist()])  # epoch 3, two batches in
    sd = json.loads(json.dumps(run.state_dict()))  # a plain, serialisable dict
    assert sd["batches_done"] == 2
    del it

    ds = CountingTensorDataset(*_ds(10).tensors)
    new = make(123, ds)  # a fresh process: another seed, reset by load_state_dict
    new.load_state_dict(sd)
    assert new.state_dict() == sd
    resumed = _ids(new)
    assert ds.batches_read == 2  # the first two batches of the epoch were skipped, not read
    assert got[2] + resumed == want[2]
    assert [_ids(new), _ids(new)] == want[3:]  # later epochs as in the uninterrupted run
    assert sum(got[:2], []) + got[2] + resumed + want[3] + want[4] == flat


def test_resume_at_epoch_boundaries_and_without_shuffle():
    g = cr.Generator().manual_seed(7)
    loader = DataLoader(_ds(10), batch_size=4, shuffle=True, generator=g)
    _ids(loader)
    sd = loader.state_dict()  # between epochs: the start of the next
    assert sd["batches_done"] == 0
    nxt = _ids(loader)
    other = DataLoader(_ds(10), batch_size=4, shuffle=True, generator=cr.Generator())
    other.load_state_dict(sd)
    assert _ids(other) == nxt
    plain = DataLoader(_ds(10), batch_size=4, prefetch=False)
    it = iter(plain)
    next(it)
    sd = plain.state_dict()
    assert sd == {"epoch_rng": None, "batches_done": 1}
    fresh = DataLoader(_ds(10), batch_size=4)
    fresh.load_state_dict(sd)
    assert _ids(fresh) == [[4, 5, 6, 7], [8, 9]] and _ids(fresh) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    with pytest.raises(ValueError, match="does not shuffle"):
        DataLoader(_ds(10)).load_state_dict(loader.state_dict())


# ------------------------------------------------------------------------------ onto a device


def _dev_batches(loader):
    """Each batch as ((x, ids) on the host, whether both were CUDA tensors)."""
    out = []
    for x, i in loader:
        out.append(((x.cpu().tolist(), i.cpu().tolist()), x.is_cuda and i.is_cuda))
    return out


@pytest.mark.parametrize("prefetch", [True, False])
def test_device_loader_yields_cuda_batches_in_order_and_resumes_exactly(cuda, prefetch):
    def make(seed, **kw):
        g = cr.Generator().manual_seed(seed)
        return DataLoader(_ds(11), batch_size=3, shuffle=True, generator=g, prefetch=prefetch, **kw)

    ref = make(0)
    want = [[b for b, _ in _dev_batches(ref)] for _ in range(3)]
    run = make(0, device=cuda, pin_memory=True)
    first = _dev_batches(run)
    assert [b for b, _ in first] == want[0] and all(on for _, on in first)
    it = iter(run)
    got = [next(it), next(it)]
    assert all(x.is_cuda for x, _ in got)
    sd = run.state_dict()  # the batch read ahead onto the GPU is not counted
    assert sd["batches_done"] == 2
    del it
    new = make(5, device=cuda)
    new.load_state_dict(sd)
    rest = [b for b, _ in _dev_batches(new)]
    assert [(x.cpu().tolist(), i.cpu().tolist()) for x, i in got] + rest == want[1]
    assert new.state_dict()["batches_done"] == 0  # the epoch ran out: the next one's start
    assert [b for b, _ in _dev_batches(new)] == want[2]
    # at the very end of an epoch (last batch handed out, end not yet seen): still in it
    it = iter(make(0, device=cuda))
    for _ in range(4):
        next(it)
    assert it._loader.state_dict()["batches_done"] == 4
    assert _no_prefetch_threads()


def test_device_prefetcher_over_any_loader(cuda):
    from chainrule.data import DevicePrefetcher

    loader = DataLoader(
        _ds(10), batch_size=4, shuffle=True, generator=cr.Generator().manual_seed(1)
    )
    want = [b for b, _ in _dev_batches(DataLoader(_ds(10), batch_size=4, shuffle=True,
                                                  generator=cr.Generator().manual_seed(1)))]  # fmt: skip
    pf = DevicePrefetcher(loader, cuda)
    assert len(pf) == 3
    got = _dev_batches(pf)
    assert [b for b, _ in got] == want and all(on for _, on in got)

    class Stateful:  # a loader of its own with a position
        def __init__(self):
            self.pos = 0

        def __iter__(self):
            while self.pos < 5:
                self.pos += 1
                yield (np.full(2, self.pos, np.float32), {"id": np.array(self.pos)})

        def state_dict(self):
            return {"pos": self.pos}

        def load_state_dict(self, sd):
            self.pos = sd["pos"]

    src = Stateful()
    pf = DevicePrefetcher(src, cuda)
    it = iter(pf)
    x, meta = next(it)
    assert x.is_cuda and x.cpu().tolist() == [1.0, 1.0] and meta["id"].is_cuda
    assert src.pos == 2 and pf.state_dict() == {"pos": 1}  # one read ahead, one handed out
    next(it)
    assert pf.state_dict() == {"pos": 2}
    plain = [(cr.tensor([1.0]), cr.tensor([0])), (cr.tensor([2.0]), cr.tensor([1]))]
    assert [x.item() for x, _ in DevicePrefetcher(plain, cuda)] == [1.0, 2.0]


def test_device_loader_raises_a_read_error_at_its_batch(cuda):
    got = []
    with pytest.raises(ValueError, match="bad sample 5"):
        for _, i in DataLoader(Counting(10, fail_at=5), batch_size=2, device=cuda):
            got.append(i.cpu().tolist())
    assert got == [[0, 1], [2, 3]]
    assert _no_prefetch_threads()


def test_pinned_batches_and_no_cuda(cuda, monkeypatch):
    from chainrule import backend
    from chainrule.data import pin_batch

    b = pin_batch((cr.tensor([[1.0, 2.0]]), np.arange(3), "label"))
    assert b[0].tolist() == [[1.0, 2.0]] and not b[0].is_cuda and b[1].tolist() == [0, 1, 2]
    assert b[2] == "label"
    monkeypatch.setitem(sys.modules, "cupy", None)  # no CuPy: a RuntimeError says what to install
    monkeypatch.setattr(backend, "_cuda", None)
    monkeypatch.setattr(backend, "_cuda_types", ())
    monkeypatch.setattr(backend, "_cuda_error", None)
    with pytest.raises(RuntimeError, match="pip install"):
        iter(DataLoader(_ds(4), batch_size=2, device="cuda"))


# ------------------------------------------------------------------------------ .npy on disk


def test_npy_dataset_order_and_dtypes(tmp_path):
    x = np.arange(60, dtype=">f4").reshape(20, 3)  # big-endian on disk: converted per batch
    y = np.arange(20, dtype=np.int64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    ds = NpyDataset(tmp_path / "x.npy", tmp_path / "y.npy")
    assert isinstance(ds.x, np.memmap) and len(ds) == 20
    xb, yb = ds.get_batch(np.array([7, 2, 19, 2, 0]))  # unsorted, with a repeat
    assert yb.tolist() == [7, 2, 19, 2, 0] and xb.dtype == cr.float32
    np.testing.assert_array_equal(xb.numpy(), x[[7, 2, 19, 2, 0]])
    got = list(DataLoader(ds, batch_size=6, shuffle=True, generator=cr.Generator().manual_seed(0)))
    assert sorted(sum((b[1].tolist() for b in got), [])) == list(range(20))
    for xb, yb in got:
        np.testing.assert_array_equal(xb.numpy(), x[yb.numpy()])
    xs, ys = ds[3]
    assert ys.item() == 3 and xs.tolist() == [9, 10, 11]
    only_x = NpyDataset(tmp_path / "x.npy", dtype=cr.float64)
    assert only_x.get_batch(np.arange(4, 8)).dtype == cr.float64  # a contiguous run: one slice
    with pytest.raises(ValueError, match="one label per sample"):
        NpyDataset(tmp_path / "x.npy", np.arange(3))


_STREAM_SCRIPT = textwrap.dedent(
    """
    import re, resource, sys
    import numpy as np
    import chainrule as cr
    from chainrule import nn
    from chainrule.data import DataLoader, NpyDataset

    def vmdata():
        status = open("/proc/self/status").read()
        return int(re.search(r"VmData:\\s+(\\d+) kB", status).group(1)) * 1024

    x_path, y_path = sys.argv[1], sys.argv[2]
    cr.manual_seed(0)
    model = nn.Linear(100, 1)
    opt = cr.optim.SGD(model.parameters(), lr=0.05)
    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())
    step(cr.zeros(8, 100), cr.zeros(8, 1))  # everything imported and warmed up
    # RLIMIT_DATA caps private writable memory (heap, anonymous maps, thread stacks) but not a
    # read-only file mapping (RLIMIT_AS would count the mapping itself)
    limit = vmdata() + 150 * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    try:
        np.load(x_path)
        print("EAGER_LOADED")
    except MemoryError:
        print("EAGER_MEMORYERROR")
    loader = DataLoader(NpyDataset(x_path, y_path), batch_size=8192, shuffle=True)
    losses = [step(x, y) for x, y in loader]
    print("STEPS", len(losses), "FIRST", losses[0], "LAST", losses[-1])
    print("VMDATA_GROWTH_MB", (vmdata() - limit + 150 * 2**20) / 2**20)
    """
)


def test_npy_streams_larger_than_the_memory_limit(tmp_path):
    """A ~400 MB float32 file trains a linear model for one epoch in a process whose data
    segment may grow by only 150 MB; loading the same file without mmap fails there."""
    n, d = 1_000_000, 100
    xp, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    rng = np.random.default_rng(0)
    w = rng.standard_normal((d, 1)).astype(np.float32) / 10
    block = rng.standard_normal((50_000, d), dtype=np.float32)
    xm = np.lib.format.open_memmap(xp, mode="w+", dtype=np.float32, shape=(n, d))
    ym = np.lib.format.open_memmap(yp, mode="w+", dtype=np.float32, shape=(n, 1))
    for i in range(0, n, len(block)):
        xm[i : i + len(block)] = np.roll(block, i // len(block), axis=1)
        ym[i : i + len(block)] = xm[i : i + len(block)] @ w
    xm.flush()
    ym.flush()
    del xm, ym
    assert xp.stat().st_size > 390e6
    r = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT, str(xp), str(yp)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "EAGER_MEMORYERROR" in out, out
    steps = out.split("STEPS ")[1].split()
    assert int(steps[0]) == -(-n // 8192)
    first, last = float(steps[2]), float(steps[4])
    assert last < first / 10  # it learned


# ------------------------------------------------------------------------------ 1986 datasets


def test_classic_boolean_problems():
    x, t = D.xor().tensors
    assert x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and t.tolist() == [[0], [1], [1], [0]]
    assert x.dtype == cr.float32 and t.dtype == cr.float32
    assert np.allclose(D.xor(soft_targets=True).tensors[1].numpy().ravel(), [0.1, 0.9, 0.9, 0.1])
    x, t = D.parity(4).tensors
    assert x.shape == (16, 4) and len({tuple(r) for r in x.tolist()}) == 16
    np.testing.assert_array_equal(t.numpy().ravel(), x.numpy().sum(1) % 2)
    x, t = D.encoder(8).tensors
    assert x.shape == t.shape == (8, 8) and np.array_equal(x.numpy(), np.eye(8))
    for n in (4, 5, 6):
        x, t = D.symmetry(n).tensors
        assert x.shape == (2**n, n) and int(t.sum()) == 2 ** ((n + 1) // 2)
        for row, target in zip(x.tolist(), t.numpy().ravel()):
            assert bool(target) == (row == row[::-1])
    x, t = D.negation().tensors
    assert x.shape == (16, 4) and t.shape == (16, 3)
    for row, out in zip(x.tolist(), t.tolist()):
        assert out == ([1 - b for b in row[1:]] if row[0] else row[1:])
    x, t = D.addition(2).tensors
    assert x.shape == (16, 4) and t.shape == (16, 3)
    val = lambda bits: int("".join(str(int(b)) for b in bits), 2)  # noqa: E731
    for row, out in zip(x.tolist(), t.tolist()):
        assert val(out) == val(row[:2]) + val(row[2:])
    assert t.tolist()[-1] == [1, 1, 0]  # 11 + 11 = 110


def test_family_trees():
    ds = D.family_trees()
    x, t = ds.tensors
    assert x.shape == (104, 36) and t.shape == (104, 24) and len(ds) == 104
    assert np.all(x.numpy()[:, :24].sum(1) == 1) and np.all(x.numpy()[:, 24:].sum(1) == 1)
    assert int(t.sum()) == 112 and int((t.sum(1) == 2).sum()) == 8
    assert len(ds.people) == 24 and len(ds.relations) == 12 and len(ds.triples) == 112
    people = {p for p, _, _ in ds.cases} | {a for *_, ans in ds.cases for a in ans}
    english = set(ds.people[:12])
    assert len(people & english) == 12 and len(people - english) == 12
    for p, _, ans in ds.cases:  # no relation crosses between the two trees
        assert all((a in english) == (p in english) for a in ans)
    per_rel = collections.Counter(r for _, r, _ in ds.cases)
    assert per_rel == {"father": 12, "mother": 12, "son": 12, "daughter": 12, "husband": 10, "wife": 10,
                       "nephew": 8, "niece": 8, "brother": 6, "sister": 6, "uncle": 4, "aunt": 4}  # fmt: skip
    cases = {(p, r): set(a) for p, r, a in ds.cases}
    assert cases["Colin", "aunt"] == {"Jennifer", "Margaret"}  # Fig. 3: in-laws count
    assert cases["Colin", "uncle"] == {"Arthur", "Charles"}
    assert cases["Alfonso", "aunt"] == {"Angela", "Gina"}  # the isomorphic Italian case
    assert cases["Victoria", "husband"] == {"James"} and cases["Emilio", "sister"] == {"Lucia"}
    assert cases["Christopher", "son"] == {"Arthur"} and ("Christopher", "father") not in cases
    i = next(k for k, (p, r, _) in enumerate(ds.cases) if (p, r) == ("Charlotte", "mother"))
    assert (
        ds.people[int(x[i, :24].argmax())] == "Charlotte"
        and ds.relations[int(x[i, 24:].argmax())] == "mother"
    )
    assert [ds.people[j] for j in np.flatnonzero(t[i].numpy())] == ["Victoria"]
    assert float(D.family_trees(soft_targets=True).tensors[1].max()) == pytest.approx(0.9)


# ------------------------------------------------------------------------------ readers


def _idx_bytes(code, shape, payload):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_idx_round_trip(tmp_path):
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(0x08, img.shape, img.tobytes()))  # written by hand
    np.testing.assert_array_equal(D.read_idx(tmp_path / "a.idx"), img)
    f = np.array([1.5, -2.25, 3e9], dtype=np.float32)
    (tmp_path / "f.gz").write_bytes(
        gzip.compress(_idx_bytes(0x0D, f.shape, f.astype(">f4").tobytes()))
    )
    got = D.read_idx(tmp_path / "f.gz")
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, f)
    for a in (
        np.arange(-5, 5, dtype=np.int16),
        np.arange(6, dtype=np.int32).reshape(2, 3),
        np.ones((2, 2)),
    ):
        D.write_idx(tmp_path / "w.idx.gz", a)
        np.testing.assert_array_equal(D.read_idx(tmp_path / "w.idx.gz"), a)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            _idx_bytes(0x08, (2, 3), bytes(5)),
            "truncated: shape (2, 3) of uint8 needs 6 data bytes, the file has 5",
        ),
        (_idx_bytes(0x08, (2,), bytes(3)), "1 bytes left over"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "not an IDX file: magic number 0x89504e47"),
        (_idx_bytes(0x0A, (2,), bytes(2)), "unknown element type 0x0a"),
        (b"\x00\x00", "too short"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated: the header"),
        (gzip.compress(_idx_bytes(0x08, (4,), bytes(4)))[:-6], "corrupt or truncated gzip"),
    ],
)
def test_idx_errors_name_the_file_and_the_problem(tmp_path, data, message):
    p = tmp_path / "bad-file"
    p.write_bytes(data)
    with pytest.raises(D.DataFormatError) as e:
        D.read_idx(p)
    msg = str(e.value)
    assert str(p) in msg and message in msg and "\n" not in msg


def test_mnist_from_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"  # torchvision's layout
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        D.write_idx(
            raw / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        D.write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    train, test = D.mnist(tmp_path)
    assert len(train) == 5 and len(test) == 3
    x, y = train.tensors
    assert (
        x.shape == (5, 1, 28, 28)
        and x.dtype == cr.float32
        and 0 <= float(x.min()) <= float(x.max()) <= 1
    )
    assert y.dtype == cr.int64
    assert D.mnist(tmp_path, flatten=True)[1].tensors[0].shape == (3, 784)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        D.mnist(tmp_path)


def test_read_csv(tmp_path):
    p = tmp_path / "iris.csv"
    p.write_text("sepal,petal,species\n5.1,1.4,setosa\n7.0,4.7,versicolor\n\n6.3,,setosa\n")
    ds = D.read_csv(p)
    x, y = ds.tensors
    assert x.dtype == cr.float32 and x.shape == (3, 2) and np.isnan(x.numpy()[2, 1])
    assert ds.classes == ["setosa", "versicolor"] and y.tolist() == [0, 1, 0]
    assert ds.feature_names == ["sepal", "petal"] and ds.target_name == "species"
    q = tmp_path / "num.csv"
    q.write_text("1,2,3\n4,5,6\n")
    x, y = D.read_csv(q).tensors  # no header: every row is data; whole targets -> int64
    assert x.tolist() == [[1, 2], [4, 5]] and y.tolist() == [3, 6] and y.dtype == cr.int64
    x, y = D.read_csv(q, target_column=0).tensors
    assert x.tolist() == [[2, 3], [5, 6]] and y.tolist() == [1, 4]
    assert D.read_csv(q, target_column=None).tensors[0].shape == (2, 3)
    r = tmp_path / "reg.csv"
    r.write_text("a;b;target\n1;2;0.5\n3;4;1.25\n")
    ds = D.read_csv(r, target_column="target", delimiter=";")
    assert ds.tensors[1].dtype == cr.float32 and ds.tensors[1].tolist() == [0.5, 1.25]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,x,1\n")
    with pytest.raises(D.DataFormatError, match=r"bad.csv: row 3, column 'b': 'x' is not a number"):
        D.read_csv(bad)
    bad.write_text("1,2,0\n3,1\n")
    with pytest.raises(D.DataFormatError, match="row 2 has 2 fields, expected 3"):
        D.read_csv(bad)


def test_npy_and_npz_helpers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2), np.float32), y=np.arange(4))
    x, y = D.load_npz(tmp_path / "d.npz").tensors
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]
    with pytest.raises(KeyError, match=r"no array named 'labels'; the archive holds \['x', 'y'\]"):
        D.load_npz(tmp_path / "d.npz", y_key="labels")
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(3, 2))
    assert isinstance(D.load_npy(tmp_path / "x.npy"), TensorDataset)
    assert isinstance(D.load_npy(tmp_path / "x.npy", mmap=True), NpyDataset)


def test_digits():
    pytest.importorskip("sklearn", reason="scikit-learn (the 'digits' extra) is not installed")
    train, test = D.digits(test_size=0.2, seed=0)
    assert len(train) + len(test) == 1797 and abs(len(test) - 360) <= 5
    x, y = train.tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == cr.float32 and y.dtype == cr.int64
    assert float(x.min()) == 0 and float(x.max()) == 1
    assert np.bincount(test.tensors[1].numpy()).min() >= 34  # stratified: every class in test
    again, other = D.digits(seed=0)[1], D.digits(seed=1)[1]
    assert np.array_equal(again.tensors[1].numpy(), test.tensors[1].numpy())
    assert not np.array_equal(other.tensors[0].numpy(), test.tensors[0].numpy())
    flat_train, flat_test = D.digits(test_size=0.5, seed=None, flat=True)
    assert flat_train.tensors[0].shape == (898, 64) and len(flat_test) == 899


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'chainrule\[digits\]'"):
        D.digits()
