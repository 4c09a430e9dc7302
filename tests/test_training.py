"""End to end: small models train in chainrule exactly as in PyTorch (float64, same initial
weights, same batches, same optimiser) and the loss falls; ``fit`` on a CUDA device (the fake
CuPy without a GPU) gives the CPU's weights, syncs once per epoch, and its checkpoints resume on
the other device."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn as nn
import fakecupy
from chainrule.data import DataLoader, TensorDataset
from chainrule.train import Callback, ModelCheckpoint, ProgressBar, Trainer, fit
from conftest import is_fake


def _models(build, dtype=np.float64):  # noqa: ANN001, ANN202
    cr.manual_seed(0)
    ours = build(cr).to(cr.float64 if dtype == np.float64 else cr.float32)
    theirs = build(torch).to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()}
    )
    return ours, theirs


def _train(model, M, opt, sched, batches, loss_name="cross_entropy"):  # noqa: ANN001, ANN202
    losses = []
    lossf = getattr(M.nn.functional, loss_name)
    for x, y in batches:
        xb = M.tensor(x)
        yb = M.tensor(y)
        opt.zero_grad()
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(float(loss.item()))
    return np.array(losses)


def _batches(shape, n_classes, steps, seed=0):  # noqa: ANN001, ANN202
    """Four fixed batches, cycled: a training set small enough to fit in a few epochs, labelled
    by the argmax of a fixed random projection."""
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((int(np.prod(shape)), n_classes))
    xs = rng.standard_normal((4, 16) + tuple(shape))
    data = [(x, np.argmax(x.reshape(16, -1) @ proj, axis=1)) for x in xs]
    return [data[i % 4] for i in range(steps)]


def small_cnn(M):  # noqa: ANN001, ANN201
    nn_ = M.nn
    return nn_.Sequential(
        nn_.Conv2d(1, 8, 3, padding=1),
        nn_.ReLU(),
        nn_.MaxPool2d(2),
        nn_.Conv2d(8, 8, 3, stride=1),
        nn_.ReLU(),
        nn_.AvgPool2d(2),
        nn_.Flatten(),
        nn_.Linear(32, 3),
    )


def mnist1d_cnn(M):  # noqa: ANN001, ANN201
    nn_ = M.nn
    return nn_.Sequential(
        nn_.Conv1d(1, 5, 5, stride=2, padding=1),
        nn_.ReLU(),
        nn_.Conv1d(5, 5, 3, stride=2, padding=1),
        nn_.ReLU(),
        nn_.Flatten(),
        nn_.Linear(25, 4),
    )


def mlp_bn(M):  # noqa: ANN001, ANN201
    nn_ = M.nn
    return nn_.Sequential(nn_.Linear(6, 16), nn_.BatchNorm1d(16), nn_.Tanh(), nn_.Linear(16, 3))


@pytest.mark.parametrize(
    "build, shape, classes, make_opt",
    [
        (
            small_cnn,
            (1, 12, 12),
            3,
            lambda M, p: (M.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True), None),
        ),
        (mnist1d_cnn, (1, 20), 4, lambda M, p: (M.optim.Adam(p, lr=1e-2), None)),
        (
            mlp_bn,
            (6,),
            3,
            lambda M, p: (
                o := M.optim.AdamW(p, lr=3e-2),
                M.optim.lr_scheduler.CosineAnnealingLR(o, 10),
            ),
        ),
    ],
    ids=["cnn2d-sgd", "cnn1d-adam", "mlp-batchnorm-adamw-cosine"],
)
def test_follows_pytorch_and_learns(build, shape, classes, make_opt) -> None:  # noqa: ANN001
    ours, theirs = _models(build)
    batches = _batches(shape, classes, steps=80)
    o1, s1 = make_opt(cr, list(ours.parameters()))
    o2, s2 = make_opt(torch, list(theirs.parameters()))
    l1 = _train(ours, cr, o1, s1, batches)
    l2 = _train(theirs, torch, o2, s2, batches)
    np.testing.assert_allclose(l1, l2, rtol=1e-8, atol=1e-10)
    for (k, a), (k2, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == k2
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-7, atol=1e-9, err_msg=k)
    assert l1[-8:].mean() < 0.7 * l1[:8].mean(), f"loss did not fall: {l1[:8]} -> {l1[-8:]}"


def test_float32_run_stays_close_to_pytorch() -> None:
    ours, theirs = _models(small_cnn, np.float32)
    batches = [(x.astype(np.float32), y) for x, y in _batches((1, 12, 12), 3, steps=10)]
    l1 = _train(ours, cr, cr.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), None, batches)
    l2 = _train(
        theirs, torch, torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9), None, batches
    )
    np.testing.assert_allclose(l1, l2, rtol=1e-4)


def test_xor_learns_with_backpropagation() -> None:
    """The 1986 demonstration: a 2-2-1 logistic network learns XOR by gradient descent."""
    cr.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1), nn.Sigmoid())
    x = cr.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = cr.tensor([[0.0], [1.0], [1.0], [0.0]])
    opt = cr.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2000):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01
    assert ((net(x) > 0.5).float() == y).all().item()


# ------------------------------------------------------------------------------ fit on a device
def _device_setup(dtype: object = cr.float64, batch_size: int = 16) -> dict:
    """A classifier without dropout (the CUDA generator draws other masks than the CPU's), a
    shuffled loader with a short last batch, validation, Adam and a per-batch scheduler."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((90, 4))
    y = ((x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)).clip(0, 2)
    x = x.astype(cr.dtypes.np_dtype(dtype))
    ds = TensorDataset(cr.from_numpy(x), cr.from_numpy(y))
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    opt = cr.optim.Adam(model.parameters(), lr=0.02)
    return {
        "model": model,
        "optimizer": opt,
        "scheduler": cr.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
        "train": DataLoader(
            ds, batch_size=batch_size, shuffle=True, generator=cr.Generator().manual_seed(3)
        ),
        "val": DataLoader(TensorDataset(cr.from_numpy(x[:40]), cr.from_numpy(y[:40])), 32),
    }


def _device_fit(run: dict, device: object, epochs: int = 4, **kw: object) -> object:
    kw.setdefault("progress", False)
    return fit(
        run["model"], nn.CrossEntropyLoss(), run["optimizer"], run["train"], run["val"],
        epochs=epochs, scheduler=run["scheduler"], device=device, **kw,
    )  # fmt: skip


def _host_weights(model: nn.Module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _assert_close(a: dict, b: dict, tol: float) -> None:
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


def _assert_history_close(h1: object, h2: object, tol: float) -> None:
    assert h1.epoch == h2.epoch and list(h1.history) == list(h2.history)
    for k in h1.history:
        np.testing.assert_allclose(h1.history[k], h2.history[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("dtype, tol", [(cr.float64, 1e-12), (cr.float32, 1e-6)])
def test_fit_on_cuda_gives_the_cpu_weights(cuda: str, dtype: object, tol: float) -> None:
    cpu = _device_setup(dtype)
    h_cpu = _device_fit(cpu, "cpu")
    gpu = _device_setup(dtype)
    h_gpu = _device_fit(gpu, cuda)
    assert all(p.is_cuda for p in gpu["model"].parameters())
    assert not any(p.is_cuda for p in cpu["model"].parameters())
    _assert_close(_host_weights(gpu["model"]), _host_weights(cpu["model"]), tol)
    _assert_history_close(h_gpu, h_cpu, tol)
    assert all(type(v) is float for vs in h_gpu.history.values() for v in vs)
    # evaluate on the device; a model moved with .cuda() trains there without device=
    res = Trainer(gpu["model"], nn.CrossEntropyLoss(), device=cuda).evaluate(gpu["val"])
    assert res["loss"] == pytest.approx(h_gpu.history["val_loss"][-1], rel=tol)
    again = _device_setup(dtype)
    again["model"].cuda()
    _device_fit(again, None)
    _assert_close(_host_weights(again["model"]), _host_weights(cpu["model"]), tol)


_SYNCS = ("__float__", "__int__", "__bool__", "item", "get", "tolist")


def _caller_is_the_training_loop() -> bool:
    """Whether the innermost chainrule frame asking is in chainrule.train or chainrule.data
    (reads inside ops, layers and optimisers are theirs to avoid, not the loop's)."""
    f = sys._getframe(2)
    while f is not None:
        path = f.f_code.co_filename.replace("\\", "/")
        if "/chainrule/" in path:
            return "/chainrule/train/" in path or "/chainrule/data/" in path
        f = f.f_back
    return False


def test_fit_on_cuda_reads_the_gpu_once_per_epoch_not_per_batch(
    cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not is_fake():
        pytest.skip("counts reads of the fake CuPy's arrays")
    reads = []
    for name in _SYNCS:
        orig = getattr(fakecupy.ndarray, name)

        def counted(self: object, *a: object, _o: object = orig, _n: str = name, **k: object):  # noqa: ANN202
            if _caller_is_the_training_loop():
                reads.append(_n)
            return _o(self, *a, **k)

        monkeypatch.setattr(fakecupy.ndarray, name, counted)
    run = _device_setup(batch_size=4)  # 23 batches an epoch
    _device_fit(run, cuda, epochs=2)
    # per epoch: loss and accuracy of training and of validation, nothing per batch
    assert len(reads) <= 2 * 4, reads

    class Reads(Callback):  # a callback that looks at the batch logs makes them read
        def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
            assert set(logs) == {"loss", "accuracy"} and isinstance(logs["loss"], float)

    reads.clear()
    _device_fit(_device_setup(batch_size=4), cuda, epochs=1, callbacks=[Reads()])
    assert len(reads) >= 23 * 2
    reads.clear()  # the tty progress bar reads them every refresh_every batches
    bar = ProgressBar(file=open(os.devnull, "w"), tty=True, refresh_every=10)  # noqa: SIM115
    _device_fit(_device_setup(batch_size=4), cuda, epochs=1, callbacks=[bar])
    bar.file.close()
    assert len(reads) <= 2 * (23 // 10) + 4, reads


class _CrashError(Exception):
    """What _CrashAt raises to kill a run mid-epoch."""


class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.trainer.global_step == self.step:
            raise _CrashError


@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_the_other_device(
    cuda: str, tmp_path: Path, first: str, then: str
) -> None:
    ref = _device_setup()
    h_ref = _device_fit(ref, "cpu", seed=1)
    run = _device_setup()
    with pytest.raises(_CrashError):  # mid-epoch 2, with a checkpoint after every step
        _device_fit(run, first, seed=1, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1), _CrashAt(9)])  # fmt: skip
    ck = cr.io.load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert ck["step"] == 8 and ck["loader"]["batches_done"] == 2
    assert not any(t.is_cuda for t in ck["model"].values())
    again = _device_setup()
    with cr.no_grad():
        for p in again["model"].parameters():
            p.mul_(0.0)  # other weights: the checkpoint must restore them
    h = _device_fit(
        again, then, seed=1, resume=True, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=1)]
    )
    assert all(p.device.type == then for p in again["model"].parameters())
    st = again["optimizer"].state[next(again["model"].parameters())]
    assert all(cr.backend.device_of(v).type == then for v in st.values() if hasattr(v, "shape"))
    _assert_close(_host_weights(again["model"]), _host_weights(ref["model"]), 1e-12)
    _assert_history_close(h, h_ref, 1e-12)


def test_the_cuda_generator_is_reseeded_on_resume(cuda: str, tmp_path: Path) -> None:
    """Its state can't be saved: a resumed run re-seeds it from the run's seed and the step,
    so two resumes from the same checkpoint draw the same dropout masks."""

    def run(resume: bool) -> dict:
        cr.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).double()
        x = cr.randn(24, 4, dtype=cr.float64)
        y = cr.randint(0, 3, (24,))
        opt = cr.optim.SGD(m.parameters(), lr=0.1)
        loader = DataLoader(TensorDataset(x, y), batch_size=8)
        cbs = [ModelCheckpoint(tmp_path, every_n_steps=1)]
        fit(m, nn.CrossEntropyLoss(), opt, loader, epochs=2 if resume else 1, device=cuda,
            progress=False, callbacks=cbs, resume=resume)  # fmt: skip
        return _host_weights(m)

    run(False)
    first = cr.io.load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert first["rng"]["cuda_seed"] == 0
    a = run(True)
    cr.io.save_checkpoint(tmp_path / "checkpoint.safetensors", first)
    b = run(True)
    _assert_close(a, b, 0.0)
