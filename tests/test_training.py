"""End to end: small models train in chainrule exactly as in PyTorch (float64, same initial
weights, same batches, same optimiser) and the loss falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn as nn


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
