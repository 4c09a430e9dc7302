"""A GPU performance guard that runs without a GPU: a training step makes no device-to-host
synchronisation.

On a GPU, ``float(x)``, ``x.item()``, ``.get()``, ``bool(x)`` or an output whose shape depends on
the data (``nonzero``, a boolean mask) make the host wait for the device, which stops it queuing
kernels ahead (PyTorch's training step has none). The fake CuPy (tests/fakecupy.py) records each
such wait with its call site; every test here runs two warm-up steps of a model on 'cuda', then
counts the waits in one step (zero_grad, forward, loss, backward, optimiser step) and asserts
there are none. The counter exists only in the fake: on a real GPU these tests are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import chainrule as cr
import fakecupy
from chainrule import nn
from chainrule.data import DataLoader, TensorDataset
from chainrule.train import Callback, fit
from conftest import is_fake

Step = Callable[[], Any]


@pytest.fixture
def fake(cuda: str) -> Iterator[str]:
    if not is_fake():
        pytest.skip("counts the host waits of the fake CuPy (a real GPU has no counter)")
    cr.manual_seed(0)
    yield cuda


def _syncs_in_one_step(step: Step, warmup: int = 2) -> list[fakecupy.Sync]:
    """The host waits of one ``step()`` after ``warmup`` steps (lazy state is created in those)."""
    for _ in range(warmup):
        step()
    with fakecupy.syncs() as recs:
        step()
    return recs


def _report(recs: list[fakecupy.Sync]) -> str:
    return f"{len(recs)} host wait(s) in a training step:\n  " + "\n  ".join(map(str, recs))


def _assert_no_syncs(step: Step, known: dict[str, str] | None = None) -> None:
    """Fails on any host wait in a step; ``known``: {call site prefix: reason} of waits in code
    this guard can't fix yet — if those are the only ones, the test is an xfail that says so."""
    recs = _syncs_in_one_step(step)
    if not recs:
        return
    known = known or {}
    unknown = [r for r in recs if not any(r.site.startswith(k) for k in known)]
    if unknown:
        pytest.fail(_report(unknown), pytrace=False)
    pytest.xfail("; ".join(sorted({known[k] for r in recs for k in known if r.site.startswith(k)})))


def _train_step(
    model: nn.Module, loss_fn: Any, opt: Any, x: Any, y: Any, before_step: Step | None = None
) -> Step:
    def step() -> None:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        if before_step is not None:
            before_step()
        opt.step()

    return step


def _classes(n: int, k: int, dev: str) -> cr.Tensor:
    return cr.randint(0, k, (n,), device=dev)


def _mlp(dev: str) -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5)).to(dev)


# ------------------------------------------------------------------------------ the fake's counter
def test_the_counter_sees_every_kind_of_host_wait(fake: str) -> None:
    cp = fakecupy.module()
    a = cp.arange(6.0)
    with fakecupy.syncs() as recs:
        len(a), list(a)  # the shape only; iteration yields device views (CuPy's __iter__)
        a + 1, a.sum(), a.reshape(2, 3), a[1:3], cp.where(a > 1, a, 0), a.repeat(2)
    assert recs == []
    with fakecupy.syncs() as recs:
        float(a.sum()), int(a[0]), bool(a[1]), complex(a[2]), a[3].item(), a.tolist(), a.get()
        cp.asnumpy(a), a[a > 2], cp.nonzero(a), np.nonzero(a), a.nonzero()
        cp.argwhere(a), cp.flatnonzero(a), cp.unique(a), cp.where(a > 1), cp.compress(a > 1, a)
        a.repeat(cp.arange(6)), cp.bincount(a.astype(np.int64))
    kinds = [r.kind for r in recs]
    assert kinds == [
        "float", "int", "bool", "complex", "item", "tolist", "get", "asnumpy",
        "boolean index", "nonzero", "nonzero", "nonzero", "argwhere", "flatnonzero", "unique",
        "where", "compress", "repeat", "bincount",
    ]  # fmt: skip
    assert all(r.site.startswith("test_gpu_syncs.py:") for r in recs), recs
    with fakecupy.syncs() as outer, fakecupy.syncs() as inner:
        float(a[0])
    assert len(outer) == len(inner) == 1


# ------------------------------------------------------------------------------ models
def test_mlp_cross_entropy_sgd_momentum(fake: str) -> None:
    model = _mlp(fake)
    opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, x, y))


def test_mlp_adam_weight_decay(fake: str) -> None:
    model = _mlp(fake)
    opt = cr.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2, amsgrad=True)
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, x, y))


def test_mnist1d_cnn_adam(fake: str) -> None:
    model = nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10),
    ).to(fake)  # fmt: skip
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)
    x, y = cr.randn(32, 40, device=fake), _classes(32, 10, fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, x, y))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_cnn2d_batchnorm_maxpool_dropout(fake: str, momentum: float | None) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=momentum), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8, momentum=momentum), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 4),
    ).to(fake)  # fmt: skip
    opt = cr.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x, y = cr.randn(8, 3, 12, 12, device=fake), _classes(8, 4, fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, x, y))


class _GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(6, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: cr.Tensor) -> cr.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def test_gru_classifier(fake: str) -> None:
    model = _GRUClassifier().to(fake)
    opt = cr.optim.RMSprop(model.parameters(), lr=1e-3)
    x, y = cr.randn(8, 7, 6, device=fake), _classes(8, 3, fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, x, y))


class _TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 30, d: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(d))
        self.head = nn.Linear(d, 4)

    def forward(self, tokens: cr.Tensor) -> cr.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))


def test_transformer_encoder_embedding_layernorm(fake: str) -> None:
    model = _TinyTransformer().to(fake)
    opt = cr.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = cr.randint(0, 30, (4, 9), device=fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, tokens, _classes(4, 4, fake)))


def test_transformer_encoder_with_masks(fake: str) -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True, norm_first=True)
    enc, head = nn.TransformerEncoder(layer, 2).to(fake), nn.Linear(16, 4).to(fake)
    opt = cr.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3)
    x, y = cr.randn(4, 9, 16, device=fake), _classes(4, 4, fake)
    pad = cr.zeros(4, 9, dtype=cr.bool, device=fake)
    pad[:, -2:] = True
    causal = cr.triu(cr.full((9, 9), float("-inf"), device=fake), 1)
    calls = {
        "padding": {"src_key_padding_mask": pad},
        "causal": {"mask": causal, "is_causal": True},
        "bool mask": {"mask": cr.triu(cr.ones(9, 9, dtype=cr.bool, device=fake), 1), "is_causal": False},
        "mask, is_causal unsaid": {"mask": causal},
    }  # fmt: skip
    for what, kw in calls.items():

        def step(kw: dict = kw) -> None:
            opt.zero_grad()
            nn.CrossEntropyLoss()(head(enc(x, **kw).mean(1)), y).backward()
            opt.step()

        recs = _syncs_in_one_step(step)
        if what == "mask, is_causal unsaid":
            # torch's TransformerEncoder compares the mask with a causal one on the host too
            # (_detect_is_causal_mask): one wait, gone when is_causal is given
            assert len(recs) <= 1 and all("nn/layers/attention.py" in r.site for r in recs), (
                _report(recs)
            )
        elif recs:
            pytest.fail(f"{what}: " + _report(recs), pytrace=False)


def test_gelu_erf(fake: str) -> None:
    model = nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 5)).to(fake)
    opt = cr.optim.Adam(model.parameters(), lr=1e-3)
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)
    _assert_no_syncs(
        _train_step(model, nn.CrossEntropyLoss(), opt, x, y),
        known={
            "chainrule/kernels/activation.py:": (
                "kernels/activation.py:73 (_erf): without real CuPy (no cupyx.scipy.special) "
                "GELU's erf backward reads x with .get(); a wait of the fake only, real CuPy "
                "runs the fused kernel"
            )
        },
    )


@pytest.mark.parametrize(
    "kw",
    [{"padding_idx": 0}, {"scale_grad_by_freq": True}, {"max_norm": 1.0}],
    ids=["padding_idx", "scale_grad_by_freq", "max_norm"],
)
def test_embedding_options(fake: str, kw: dict) -> None:
    model = nn.Sequential(nn.Embedding(10, 6, **kw), nn.Flatten(), nn.Linear(18, 3)).to(fake)
    opt = cr.optim.Adam(model.parameters(), lr=1e-2)
    tokens = cr.randint(0, 10, (4, 3), device=fake)
    _assert_no_syncs(_train_step(model, nn.CrossEntropyLoss(), opt, tokens, _classes(4, 3, fake)))


def test_reductions_std_and_prod(fake: str) -> None:
    w = cr.randn(6, 5, device=fake, requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.01)
    x = cr.randn(7, 6, device=fake)

    def step() -> None:
        opt.zero_grad()
        h = x @ w
        (h.std(1).sum() + h.prod(1).sum() + h.var(0).sum() + h.logsumexp(1).sum()).backward()
        opt.step()

    _assert_no_syncs(step)


def test_multihead_attention_with_a_padding_mask(fake: str) -> None:
    mha = nn.MultiheadAttention(16, 4, batch_first=True).to(fake)
    head = nn.Linear(16, 1).to(fake)
    params = [*mha.parameters(), *head.parameters()]
    opt = cr.optim.Adam(params, lr=1e-3)
    x = cr.randn(3, 5, 16, device=fake)
    pad = cr.zeros(3, 5, dtype=cr.bool, device=fake)
    pad[:, -1] = True

    def step() -> None:
        opt.zero_grad()
        out, _ = mha(x, x, x, key_padding_mask=pad)
        loss = nn.MSELoss()(head(out).squeeze(-1), cr.zeros(3, 5, device=fake))
        loss.backward()
        opt.step()

    _assert_no_syncs(step)


def test_adamw_clip_grad_norm_and_a_scheduler(fake: str) -> None:
    model = _mlp(fake)
    opt = cr.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = cr.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=100)
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)
    step = _train_step(
        model, nn.CrossEntropyLoss(), opt, x, y,
        before_step=lambda: nn.utils.clip_grad_norm_(model.parameters(), 1.0),
    )  # fmt: skip

    def step_and_schedule() -> None:
        step()
        sched.step()

    _assert_no_syncs(step_and_schedule)


@pytest.mark.parametrize("sched", ["StepLR", "CosineAnnealingLR", "LambdaLR"])
def test_sgd_with_a_scheduler(fake: str, sched: str) -> None:
    model = _mlp(fake)
    opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ls = cr.optim.lr_scheduler
    s = {
        "StepLR": lambda: ls.StepLR(opt, 2),
        "CosineAnnealingLR": lambda: ls.CosineAnnealingLR(opt, 10),
        "LambdaLR": lambda: ls.LambdaLR(opt, lambda e: 0.9**e),
    }[sched]()
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)
    step = _train_step(model, nn.CrossEntropyLoss(), opt, x, y)

    def step_and_schedule() -> None:
        step()
        s.step()

    _assert_no_syncs(step_and_schedule)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autocast_and_grad_scaler_read_found_inf_once(fake: str, dtype: str) -> None:
    # GELU's erf: the fake has no cupyx.scipy.special, kernels/activation.py reads it through the
    # host (a wait real CuPy doesn't make); the tanh form is all ufuncs
    model = nn.Sequential(
        nn.Linear(20, 32), nn.LayerNorm(32), nn.GELU(approximate="tanh"), nn.Linear(32, 5)
    )
    model.to(fake)
    opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = cr.amp.GradScaler("cuda")
    loss_fn = nn.CrossEntropyLoss()
    x, y = cr.randn(16, 20, device=fake), _classes(16, 5, fake)

    def step() -> None:
        opt.zero_grad()
        with cr.autocast("cuda", dtype=getattr(cr, dtype)):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()

    recs = _syncs_in_one_step(step)
    # torch's GradScaler reads found_inf in _maybe_opt_step too: the one wait allowed
    assert len(recs) == 1 and "amp/grad_scaler.py" in recs[0].site, _report(recs)


# ------------------------------------------------------------------------------ what changed
def test_batchnorm_cumulative_average_on_the_device_is_the_cpus(fake: str) -> None:
    """momentum=None: 1/num_batches_tracked stays on the device, the numbers are the CPU's."""
    rng = np.random.default_rng(0)
    xs = [rng.normal(1.0, 2.0, (5, 3, 4)).astype(np.float32) for _ in range(4)]
    cpu, gpu = nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None).to(fake)
    for x in xs:
        cpu(cr.from_numpy(x))
        gpu(cr.from_numpy(x).to(fake))
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(gpu.state_dict()[k].cpu().numpy(), v.numpy(), err_msg=k)


def test_embedding_index_out_of_range_on_the_device(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No host check by default: the bad position's row is NaN and its gradient reaches row 0
    as NaN; strict mode (or detect_anomaly) raises the CPU's IndexError."""
    emb = nn.Embedding(5, 2).to(fake)
    idx = cr.tensor([[1, 7], [4, -1]]).to(fake)
    out = emb(idx)
    rows = out.detach().cpu().numpy()
    assert np.isnan(rows[0, 1]).all() and np.isnan(rows[1, 1]).all()
    want = emb.weight.detach().cpu().numpy()
    np.testing.assert_array_equal(rows[0, 0], want[1])
    np.testing.assert_array_equal(rows[1, 0], want[4])
    out.sum().backward()
    g = emb.weight.grad.cpu().numpy()
    assert np.isnan(g[0]).all() and np.isfinite(g[1:]).all()
    monkeypatch.setenv("CHAINRULE_CUDA_STRICT", "1")
    with pytest.raises(
        IndexError, match="index out of range in self: embedding index -1 for a table of 5"
    ):
        emb(idx)
    monkeypatch.delenv("CHAINRULE_CUDA_STRICT")
    with cr.autograd.detect_anomaly(), pytest.raises(IndexError, match="index out of range"):
        emb(idx)
    with pytest.raises(IndexError, match="index out of range"):  # the CPU checks always
        nn.Embedding(5, 2)(cr.tensor([5]))


# ------------------------------------------------------------------------------ the fit loop
class _BatchWaits(Callback):
    """Marks where each batch starts in a running ``syncs()`` record."""

    def __init__(self, recs: list[fakecupy.Sync]) -> None:
        super().__init__()
        self.recs = recs
        self.marks: list[int] = []

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.marks.append(len(self.recs))


@pytest.mark.parametrize("data_on", ["cpu", "cuda"])
def test_fit_over_a_prefetching_loader_waits_only_at_the_end_of_an_epoch(
    fake: str, data_on: str
) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 20)).astype(np.float32)
    y = rng.integers(0, 5, 100)
    data = TensorDataset(cr.from_numpy(x).to(data_on), cr.from_numpy(y).to(data_on))
    loader = DataLoader(data, batch_size=8, shuffle=True, pin_memory=data_on == "cpu")
    val = DataLoader(TensorDataset(cr.from_numpy(x[:20]), cr.from_numpy(y[:20])), batch_size=8)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 5))
    opt = cr.optim.Adam(model.parameters(), lr=1e-3)
    sched = cr.optim.lr_scheduler.StepLR(opt, 5)
    with fakecupy.syncs() as recs:
        marks = _BatchWaits(recs)
        fit(
            model, nn.CrossEntropyLoss(), opt, loader, val, epochs=2, callbacks=[marks],
            scheduler=sched, scheduler_interval="batch", device=fake, progress=False,
        )  # fmt: skip
    per_epoch = len(loader)
    assert len(marks.marks) == 2 * per_epoch
    for e in range(2):
        m = marks.marks[e * per_epoch : (e + 1) * per_epoch]
        # from the first batch's start to the last one's: every step and what the loop does
        # between them (metrics, callbacks, the next batch from the prefetcher)
        inside = recs[m[0] : m[-1]]
        assert not inside, f"epoch {e}: " + _report(inside)
    # the end of an epoch reads the epoch's metrics (train and validation) and the lr
    assert len(recs) - marks.marks[per_epoch] < 20, _report(recs[marks.marks[per_epoch] :])
