"""Every loss of ``chainrule.nn.functional`` (and its module) against PyTorch 2.13.

Each case feeds chainrule and torch the same arrays, compares the loss, backpropagates the same
random upstream gradient and compares the gradient of the input (and of a float target, where
torch differentiates it). float64 must agree to 1e-10, float32 to 1e-5. Then ``gradcheck`` runs
on every loss in float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

torch.set_num_threads(1)

TOL = {
    np.float64: {"rtol": 1e-10, "atol": 1e-12},
    np.float32: {"rtol": 1e-5, "atol": 1e-6},
}
REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [np.float64, np.float32]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def host(t: cr.Tensor) -> np.ndarray:
    """A chainrule tensor's values as a NumPy array (copied off the device)."""
    return t.detach().cpu().numpy()


def make(m: Any, a: np.ndarray, device: str = "cpu") -> Any:
    """``a`` as a constant tensor of the framework whose functional module is ``m`` (chainrule's
    on ``device``)."""
    return torch.tensor(a) if m is TF else cr.tensor(a, device=device)


def compare(
    fn: Callable[..., Any],
    tfn: Callable[..., Any] | None,
    arrays: list[np.ndarray],
    grad: list[bool],
    dtype: Any,
    seed: int = 1,
    device: str = "cpu",
) -> tuple[cr.Tensor, torch.Tensor]:
    """Run ``fn(*tensors)`` in chainrule and ``tfn`` (or ``fn`` with torch's F) in torch; compare
    outputs and the gradients of the inputs flagged in ``grad``. chainrule's inputs live on
    ``device`` (torch's on the CPU); its output and gradients must too."""
    tol = TOL[dtype]
    c_in = [cr.tensor(a, requires_grad=g, device=device) for a, g in zip(arrays, grad)]
    t_in = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grad)]
    c_out = fn(F, *c_in)
    t_out = (tfn or fn)(TF, *t_in)
    assert c_out.device.type == device, f"the loss is on {c_out.device}, not {device}"
    assert tuple(c_out.shape) == tuple(t_out.shape)
    assert c_out.data.dtype == t_out.detach().numpy().dtype
    np.testing.assert_allclose(host(c_out), t_out.detach().numpy(), **tol)
    assert np.isfinite(host(c_out)).all() == torch.isfinite(t_out).all().item()
    up = _rng(seed).standard_normal(tuple(t_out.shape)).astype(arrays[0].dtype)
    c_out.backward(cr.tensor(up, device=device))
    t_out.backward(torch.tensor(up))
    for i, g in enumerate(grad):
        if not g:
            continue
        assert c_in[i].grad is not None, f"input {i} got no gradient"
        assert c_in[i].grad.device == c_in[i].device, f"gradient of input {i} changed device"
        np.testing.assert_allclose(
            host(c_in[i].grad), t_in[i].grad.numpy(), err_msg=f"gradient of input {i}", **tol
        )
    return c_out, t_out


# ----------------------------------------------------------------------------- regression


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name,kw",
    [
        ("mse_loss", {}),
        ("l1_loss", {}),
        ("smooth_l1_loss", {}),
        ("smooth_l1_loss", {"beta": 0.5}),
        ("smooth_l1_loss", {"beta": 0.0}),
        ("huber_loss", {}),
        ("huber_loss", {"delta": 2.0}),
    ],
)
def test_regression_losses(name: str, kw: dict, reduction: str, dtype: Any, device: str) -> None:
    r = _rng(3)
    x = r.uniform(-3, 3, (4, 5)).astype(dtype)
    y = r.uniform(-3, 3, (4, 5)).astype(dtype)
    # kinks: d == 0 and |d| == beta/delta exactly
    y[0, 0] = x[0, 0]
    b = kw.get("beta", kw.get("delta", 1.0))
    y[0, 1] = x[0, 1] - dtype(b)
    y[0, 2] = x[0, 2] + dtype(b)
    compare(
        lambda m, a, t: getattr(m, name)(a, t, reduction=reduction, **kw),
        None,
        [x, y],
        [True, True],
        dtype,
        device=device,
    )


def test_regression_loss_modules_match_functional() -> None:
    r = _rng(4)
    x, y = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    pairs = [
        (nn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum")),
        (nn.L1Loss(), torch.nn.L1Loss()),
        (nn.SmoothL1Loss(beta=0.3), torch.nn.SmoothL1Loss(beta=0.3)),
        (
            nn.HuberLoss(reduction="none", delta=0.7),
            torch.nn.HuberLoss(reduction="none", delta=0.7),
        ),
    ]
    for c, t in pairs:
        assert repr(c) == repr(t)
        np.testing.assert_allclose(
            c(cr.tensor(x), cr.tensor(y)).data,
            t(torch.tensor(x), torch.tensor(y)).numpy(),
            rtol=1e-12,
        )


def test_regression_errors() -> None:
    x, y = cr.zeros(3, 4), cr.zeros(4, 3)
    for fn in (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss):
        with pytest.raises(
            ValueError, match=r"target size \(4, 3\) is different from input size \(3, 4\)"
        ):
            fn(x, y)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="negative values for beta"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.MSELoss(reduction="avg")


# ----------------------------------------------------------------------------- binary


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(weighted: bool, reduction: str, dtype: Any, device: str) -> None:
    r = _rng(5)
    p = r.uniform(0.02, 0.98, (4, 3)).astype(dtype)
    y = r.uniform(0, 1, (4, 3)).astype(dtype)
    y[0] = [0, 1, 0.5]
    arrays, grad = [p, y], [True, True]
    if weighted:
        arrays.append(r.uniform(0.5, 2, (3,)).astype(dtype))
        grad.append(False)

    def fn(m: Any, a: Any, t: Any, *w: Any) -> Any:
        return m.binary_cross_entropy(a, t, *w, reduction=reduction)

    compare(fn, None, arrays, grad, dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_at_0_and_1(dtype: Any, device: str) -> None:
    """Probabilities of exactly 0 and 1: the logs are clamped at -100 and the gradient is
    (p - y) / max(p (1 - p), 1e-12), both as PyTorch (finite, no NaN)."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-300 if dtype is np.float64 else 1e-30], dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5], dtype)
    for reduction in REDUCTIONS:
        c, _ = compare(
            lambda m, a, t, red=reduction: m.binary_cross_entropy(a, t, reduction=red),
            None,
            [p, y],
            [True, False],
            dtype,
            device=device,
        )
        assert np.isfinite(host(c)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
def test_binary_cross_entropy_with_logits(
    pos_weighted: bool, weighted: bool, reduction: str, dtype: Any, device: str
) -> None:
    r = _rng(6)
    x = r.uniform(-4, 4, (4, 3)).astype(dtype)
    x[0] = [0.0, 1000.0, -1000.0]  # the kink of relu/abs and overflow territory
    y = r.uniform(0, 1, (4, 3)).astype(dtype)
    y[1] = [0, 1, 0.5]
    w = r.uniform(0.5, 2, (4, 1)).astype(dtype) if weighted else None
    pw = r.uniform(0.5, 3, (3,)).astype(dtype) if pos_weighted else None

    def fn(m: Any, a: Any, t: Any) -> Any:
        kw = {}
        if w is not None:
            kw["weight"] = make(m, w, device)
        if pw is not None:
            kw["pos_weight"] = make(m, pw, device)
        return m.binary_cross_entropy_with_logits(a, t, reduction=reduction, **kw)

    c, _ = compare(fn, None, [x, y], [True, True], dtype, device=device)
    assert np.isfinite(host(c)).all()


def test_binary_errors() -> None:
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(cr.tensor([0.5, 1.5]), cr.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target size \(3,\) is different from input size \(2,\)"):
        F.binary_cross_entropy(cr.tensor([0.5, 0.5]), cr.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(
        ValueError, match=r"target size \(2, 1\) is different from input size \(2,\)"
    ):
        F.binary_cross_entropy_with_logits(cr.tensor([0.5, 0.5]), cr.tensor([[0.0], [1.0]]))


def test_binary_modules() -> None:
    r = _rng(7)
    x, y = r.standard_normal((5, 3)), r.uniform(0, 1, (5, 3))
    w, pw = r.uniform(0.5, 2, (3,)), r.uniform(0.5, 2, (3,))
    c = nn.BCEWithLogitsLoss(weight=cr.tensor(w), pos_weight=cr.tensor(pw), reduction="sum")
    t = torch.nn.BCEWithLogitsLoss(
        weight=torch.tensor(w), pos_weight=torch.tensor(pw), reduction="sum"
    )
    np.testing.assert_allclose(
        c(cr.tensor(x), cr.tensor(y)).data, t(torch.tensor(x), torch.tensor(y)).numpy(), rtol=1e-12
    )
    assert [k for k, _ in c.named_buffers()] == [k for k, _ in t.named_buffers()]
    p = 1 / (1 + np.exp(-x))
    c2, t2 = nn.BCELoss(weight=cr.tensor(w)), torch.nn.BCELoss(weight=torch.tensor(w))
    np.testing.assert_allclose(
        c2(cr.tensor(p), cr.tensor(y)).data,
        t2(torch.tensor(p), torch.tensor(y)).numpy(),
        rtol=1e-12,
    )


# ----------------------------------------------------------------------------- kl_div


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(log_target: bool, reduction: str, dtype: Any, device: str) -> None:
    r = _rng(8)
    logits = r.standard_normal((4, 5))
    x = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(dtype)
    q = r.uniform(0.01, 1, (4, 5))
    q /= q.sum(1, keepdims=True)
    if log_target:
        y = np.log(q).astype(dtype)
    else:
        q[0, :2] = 0.0  # zero-probability targets contribute 0 (no 0 * log 0 NaN)
        y = q.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about reduction='mean'
        compare(
            lambda m, a, t: m.kl_div(a, t, reduction=reduction, log_target=log_target),
            None,
            [x, y],
            [True, log_target],
            dtype,
            device=device,
        )
        if log_target:
            return
        # the target's gradient: torch's xlogy(t, t) gives NaN at t == 0 (d/dt t log t -> -inf);
        # chainrule deliberately gives 0 there (a zero-probability target contributes nothing)
        # and matches torch everywhere else
        c_x, c_y = cr.tensor(x, device=device), cr.tensor(y, requires_grad=True, device=device)
        t_x, t_y = torch.tensor(x), torch.tensor(y, requires_grad=True)
        F.kl_div(c_x, c_y, reduction="sum").backward()
        TF.kl_div(t_x, t_y, reduction="sum").backward()
        pos = y > 0
        c_gy = host(c_y.grad)
        np.testing.assert_allclose(c_gy[pos], t_y.grad.numpy()[pos], **TOL[dtype])
        assert np.isnan(t_y.grad.numpy()[~pos]).all()
        assert (c_gy[~pos] == 0).all()


def test_kl_div_module() -> None:
    r = _rng(9)
    x, y = np.log(r.uniform(0.1, 1, (3, 4))), r.uniform(0, 1, (3, 4))
    c = nn.KLDivLoss(reduction="batchmean")
    t = torch.nn.KLDivLoss(reduction="batchmean")
    assert repr(c) == repr(t)
    np.testing.assert_allclose(
        c(cr.tensor(x), cr.tensor(y)).data, t(torch.tensor(x), torch.tensor(y)).numpy(), rtol=1e-12
    )


# ----------------------------------------------------------------------------- nll / cross-entropy

SHAPES = {
    "1d": ((5,), ()),
    "2d": ((6, 5), (6,)),
    "4d": ((3, 5, 2, 4), (3, 2, 4)),
}


def _ce_inputs(shape_key: str, dtype: Any, seed: int = 10, scale: float = 2.0) -> tuple:
    xs, ts = SHAPES[shape_key]
    r = _rng(seed)
    x = (r.standard_normal(xs) * scale).astype(dtype)
    t = r.integers(0, xs[0 if len(xs) == 1 else 1], ts).astype(np.int64)
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"weight": True},
        {"ignore_index": 1},
        {"label_smoothing": 0.2},
        {"weight": True, "ignore_index": 2},
        {"weight": True, "label_smoothing": 0.1},
        {"ignore_index": 0, "label_smoothing": 0.3},
        {"weight": True, "ignore_index": 3, "label_smoothing": 0.15},
    ],
    ids=lambda o: "-".join(o) or "plain",
)
def test_cross_entropy_class_indices(
    opts: dict, shape: str, reduction: str, dtype: Any, device: str
) -> None:
    x, t = _ce_inputs(shape, dtype)
    if shape != "1d":
        t.flat[:3] = [0, 1, 2]  # make sure ignore_index values occur (not all of them)
    w = _rng(11).uniform(0.2, 2.0, (5,)).astype(dtype) if opts.get("weight") else None
    kw = {k: v for k, v in opts.items() if k != "weight"}

    def fn(m: Any, a: Any) -> Any:
        ww = None if w is None else make(m, w, device)
        return m.cross_entropy(a, make(m, t, device), weight=ww, reduction=reduction, **kw)

    compare(fn, None, [x], [True], dtype, device=device)
    # the module gives the same
    c_mod = nn.CrossEntropyLoss(
        weight=None if w is None else cr.tensor(w), reduction=reduction, **kw
    ).to(device)
    t_mod = torch.nn.CrossEntropyLoss(
        weight=None if w is None else torch.tensor(w), reduction=reduction, **kw
    )
    np.testing.assert_allclose(
        host(c_mod(cr.tensor(x, device=device), cr.tensor(t, device=device))),
        t_mod(torch.tensor(x), torch.tensor(t)).numpy(),
        **TOL[dtype],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "opts",
    [{}, {"weight": True}, {"label_smoothing": 0.25}, {"weight": True, "label_smoothing": 0.1}],
    ids=lambda o: "-".join(o) or "plain",
)
def test_cross_entropy_probabilities(
    opts: dict, shape: str, reduction: str, dtype: Any, device: str
) -> None:
    xs, _ = SHAPES[shape]
    r = _rng(12)
    x = (r.standard_normal(xs) * 2).astype(dtype)
    cdim = 0 if len(xs) == 1 else 1
    p = r.uniform(0, 1, xs)
    p = (p / p.sum(cdim, keepdims=True)).astype(dtype)
    w = r.uniform(0.2, 2.0, (5,)).astype(dtype) if opts.get("weight") else None
    kw = {k: v for k, v in opts.items() if k != "weight"}

    def fn(m: Any, a: Any, y: Any) -> Any:
        ww = None if w is None else make(m, w, device)
        return m.cross_entropy(a, y, weight=ww, reduction=reduction, **kw)

    compare(fn, None, [x, p], [True, True], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "opts",
    [{}, {"weight": True}, {"ignore_index": 1}, {"weight": True, "ignore_index": 4}],
    ids=lambda o: "-".join(o) or "plain",
)
def test_nll_loss(opts: dict, shape: str, reduction: str, dtype: Any, device: str) -> None:
    x, t = _ce_inputs(shape, dtype, seed=13)
    if shape != "1d":
        t.flat[:3] = [0, 1, 4]
    w = _rng(14).uniform(0.2, 2.0, (5,)).astype(dtype) if opts.get("weight") else None
    kw = {k: v for k, v in opts.items() if k != "weight"}

    def fn(m: Any, a: Any) -> Any:
        ww = None if w is None else make(m, w, device)
        return m.nll_loss(
            m.log_softmax(a, 0 if a.ndim == 1 else 1),
            make(m, t, device),
            weight=ww,
            reduction=reduction,
            **kw,
        )

    compare(fn, None, [x], [True], dtype, device=device)
    c_mod = nn.NLLLoss(weight=None if w is None else cr.tensor(w), reduction=reduction, **kw).to(
        device
    )
    t_mod = torch.nn.NLLLoss(
        weight=None if w is None else torch.tensor(w), reduction=reduction, **kw
    )
    np.testing.assert_allclose(
        host(c_mod(cr.tensor(x, device=device), cr.tensor(t, device=device))),
        t_mod(torch.tensor(x), torch.tensor(t)).numpy(),
        **TOL[dtype],
    )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_all_ignored(label_smoothing: float, reduction: str, device: str) -> None:
    """Every target ignored: 'mean' is 0/0 = NaN as in PyTorch, 'sum' is 0."""
    x = _rng(15).standard_normal((3, 4))
    t = np.full(3, -100)
    c = F.cross_entropy(
        cr.tensor(x, device=device),
        cr.tensor(t, device=device),
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    tt = TF.cross_entropy(
        torch.tensor(x), torch.tensor(t), reduction=reduction, label_smoothing=label_smoothing
    )
    np.testing.assert_equal(host(c), tt.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_stable_at_huge_logits(
    label_smoothing: float, reduction: str, dtype: Any, device: str
) -> None:
    x = np.array(
        [[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1000.0]], dtype
    )
    t = np.array([1, 1, 2])
    c, _ = compare(
        lambda m, a: m.cross_entropy(
            a,
            make(m, t, device),
            reduction=reduction,
            label_smoothing=label_smoothing,
        ),
        None,
        [x],
        [True],
        dtype,
        device=device,
    )
    assert np.isfinite(host(c)).all()
    # row 0: log-sum-exp is 1000, the target logit -1000: a loss of 2000 (1900 when smoothed)
    per_row = F.cross_entropy(
        cr.tensor(x, device=device),
        cr.tensor(t, device=device),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    expect0 = 2000 * (1 - label_smoothing) + label_smoothing / 3 * (2000 + 0 + 1000)
    np.testing.assert_allclose(host(per_row)[0], expect0, rtol=1e-6)
    # probabilities, and the logits versions of nll / bce
    p = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5]], dtype)
    c, _ = compare(
        lambda m, a, y: m.cross_entropy(a, y, reduction=reduction, label_smoothing=label_smoothing),
        None,
        [x, p],
        [True, True],
        dtype,
        device=device,
    )
    assert np.isfinite(host(c)).all()


def test_cross_entropy_errors() -> None:
    x = cr.zeros(4, 3, requires_grad=True)
    with pytest.raises(
        IndexError, match=r"target 3 is out of bounds: class indices must be in \[0, 2\]"
    ):
        F.cross_entropy(x, cr.tensor([0, 1, 2, 3]))
    with pytest.raises(IndexError, match=r"target -1 is out of bounds"):
        F.cross_entropy(x, cr.tensor([0, -1, 2, 1]))
    with pytest.raises(IndexError, match=r"nll_loss: target 7 is out of bounds"):
        F.nll_loss(x, cr.tensor([0, 7, 2, 1]))
    with pytest.raises(RuntimeError, match=r"needs a target of shape \(4,\), got \(3,\)"):
        F.cross_entropy(x, cr.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match=r"needs a target of shape \(4, 2\), got \(4,\)"):
        F.cross_entropy(cr.zeros(4, 3, 2), cr.tensor([0, 1, 2, 0]))
    with pytest.raises(
        ValueError, match=r"target size \(4, 2\) is different from input size \(4, 3\)"
    ):
        F.cross_entropy(x, cr.zeros(4, 2))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, cr.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, cr.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(RuntimeError, match="weight"):
        F.cross_entropy(x, cr.tensor([0, 1, 2, 0]), weight=cr.ones(4))
    # an ignored target may be any value, even out of range
    F.cross_entropy(x, cr.tensor([0, 1, 2, 99]), ignore_index=99).backward()
    assert x.grad.data[3].tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- gradcheck


def _gc(fn: Callable[..., Any], *arrays: np.ndarray, grad: tuple = (0,)) -> None:
    ins = tuple(cr.tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays))
    assert gradcheck(fn, ins, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_all_losses(reduction: str) -> None:
    r = _rng(16)
    x, y = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    for fn in (F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss):
        _gc(lambda a, b, f=fn: f(a, b, reduction=reduction), x, y, grad=(0, 1))
    _gc(lambda a, b: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.4), x, y, grad=(0, 1))
    _gc(lambda a, b: F.huber_loss(a, b, reduction=reduction, delta=0.4), x, y, grad=(0, 1))
    p, q = r.uniform(0.05, 0.95, (3, 4)), r.uniform(0, 1, (3, 4))
    w = cr.tensor(r.uniform(0.5, 2, (4,)))
    _gc(lambda a, b: F.binary_cross_entropy(a, b, w, reduction=reduction), p, q, grad=(0, 1))
    pw = cr.tensor(r.uniform(0.5, 2, (4,)))
    _gc(
        lambda a, b: F.binary_cross_entropy_with_logits(
            a, b, w, reduction=reduction, pos_weight=pw
        ),
        x,
        q,
        grad=(0, 1),
    )
    _gc(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
        x,
        q,
        grad=(0, 1),
    )
    lp = np.log(q / q.sum(1, keepdims=True))
    _gc(lambda a, b: F.kl_div(a, b, reduction=reduction), lp, q, grad=(0, 1))
    _gc(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=True), lp, lp, grad=(0, 1))
    t = cr.tensor(np.array([0, 3, -100]))
    wc = cr.tensor(r.uniform(0.5, 2, (4,)))
    for ls in (0.0, 0.2):
        _gc(lambda a, ls=ls: F.cross_entropy(a, t, wc, reduction=reduction, label_smoothing=ls), x)
        _gc(
            lambda a, b, ls=ls: F.cross_entropy(a, b, wc, reduction=reduction, label_smoothing=ls),
            x,
            q,
            grad=(0, 1),
        )
    x4, t4 = _ce_inputs("4d", np.float64)
    _gc(lambda a: F.cross_entropy(a, cr.tensor(t4), reduction=reduction, label_smoothing=0.1), x4)
    _gc(lambda a: F.nll_loss(a, t, wc, reduction=reduction), x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradgradcheck_fused_losses(reduction: str) -> None:
    """The fused primitives' backward is itself differentiable (create_graph)."""
    r = _rng(17)
    p = cr.tensor(r.uniform(0.1, 0.9, (3, 4)), requires_grad=True)
    q = cr.tensor(r.uniform(0, 1, (3, 4)), requires_grad=True)
    x = cr.tensor(r.standard_normal((3, 4)), requires_grad=True)
    w = cr.tensor(r.uniform(0.5, 2, (4,)))
    t = cr.tensor(np.array([0, 3, -100]))
    assert gradgradcheck(lambda a, b: F.binary_cross_entropy(a, b, w, reduction=reduction), (p, q))
    assert gradgradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, w, reduction=reduction, pos_weight=w),
        (x, q),
    )
    assert gradgradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), (x, q)
    )
    assert gradgradcheck(
        lambda a: F.cross_entropy(a, t, w, reduction=reduction, label_smoothing=0.1), (x,)
    )
    assert gradgradcheck(lambda a: F.nll_loss(a, t, w, reduction=reduction), (x,))


def test_constant_weights_are_not_differentiated() -> None:
    """As torch: BCE's weight and pos_weight cannot require grad."""
    x, y = cr.zeros(2, 3), cr.ones(2, 3) * 0.5
    w = cr.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        F.binary_cross_entropy(x.sigmoid(), y, w)
    with pytest.raises(
        RuntimeError, match="not differentiable with respect to argument 'pos_weight'"
    ):
        F.binary_cross_entropy_with_logits(x, y, pos_weight=w)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(x.sigmoid(), y * 3)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_elementwise_weight(name: str, reduction: str, device: str) -> None:
    """torch 2.13's ``weight`` of mse/l1/huber: 'mean' divides by the weights' sum for mse and
    l1 but by the element count for huber; the weight is differentiated too."""
    r = _rng(18)
    x, y, w = r.standard_normal((3, 4)), r.standard_normal((3, 4)), r.uniform(0.1, 2, (3, 4))
    compare(
        lambda m, a, t, ww: getattr(m, name)(a, t, reduction=reduction, weight=ww),
        None,
        [x, y, w],
        [True, True, True],
        np.float64,
        device=device,
    )
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        getattr(F, name)(cr.tensor(x), cr.tensor(y), weight=cr.ones(4))


@pytest.mark.parametrize(
    "size_average,reduce",
    [(None, False), (False, None), (False, True), (True, None), (True, False)],
)
def test_legacy_size_average_reduce(size_average: Any, reduce: Any) -> None:
    """The deprecated arguments still select the reduction, as in torch (they were ignored)."""
    r = _rng(19)
    x, y = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    logits, t = r.standard_normal((3, 4)), np.array([0, 3, 1])
    kw = {"size_average": size_average, "reduce": reduce}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = [
            (
                F.mse_loss(cr.tensor(x), cr.tensor(y), **kw),
                TF.mse_loss(torch.tensor(x), torch.tensor(y), **kw),
            ),
            (
                F.l1_loss(cr.tensor(x), cr.tensor(y), **kw),
                TF.l1_loss(torch.tensor(x), torch.tensor(y), **kw),
            ),
            (
                F.cross_entropy(cr.tensor(logits), cr.tensor(t), **kw),
                TF.cross_entropy(torch.tensor(logits), torch.tensor(t), **kw),
            ),
            (
                nn.NLLLoss(**kw)(cr.tensor(logits), cr.tensor(t)),
                torch.nn.NLLLoss(**kw)(torch.tensor(logits), torch.tensor(t)),
            ),
            (
                nn.SmoothL1Loss(**kw)(cr.tensor(x), cr.tensor(y)),
                torch.nn.SmoothL1Loss(**kw)(torch.tensor(x), torch.tensor(y)),
            ),
            (
                nn.BCEWithLogitsLoss(**kw)(cr.tensor(x), cr.tensor(y).sigmoid()),
                torch.nn.BCEWithLogitsLoss(**kw)(torch.tensor(x), torch.tensor(y).sigmoid()),
            ),
        ]
    for c, t_ in pairs:
        assert c.shape == tuple(t_.shape)
        np.testing.assert_allclose(c.data, t_.numpy(), rtol=1e-12)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        F.mse_loss(cr.tensor(x), cr.tensor(y), **kw)


def test_losses_refuse_operands_on_another_device(cuda: str) -> None:
    """A CPU target / weight next to a CUDA input: PyTorch's mixed-devices error, naming the
    loss (the target and weights reach the op as arrays, not as tensors the engine could move)."""
    x = cr.zeros(2, 3, device=cuda, requires_grad=True)
    p, y = x.sigmoid(), cr.zeros(2, 3, device=cuda)
    t, w = cr.tensor([0, 2]), cr.ones(3)
    cases = {
        "cross_entropy": lambda: F.cross_entropy(x, t),
        "nll_loss": lambda: F.nll_loss(x, cr.tensor([0, 2], device=cuda), weight=w),
        "binary_cross_entropy": lambda: F.binary_cross_entropy(p, y, weight=w),
        "binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(
            x, y, pos_weight=w
        ),
    }
    for name, f in cases.items():
        with pytest.raises(RuntimeError, match=f"{name}: expected all tensors to be on the same"):
            f()
    # on one device they run
    loss = F.cross_entropy(x, t.to(cuda), weight=w.to(cuda))
    loss.backward()
    assert loss.device == x.device and x.grad.device == x.device


# ------------------------------------------------------------- out-of-range targets on CUDA
BAD_TARGETS = {
    "cross_entropy": lambda x, t, **k: F.cross_entropy(x, t, **k),
    "nll_loss": lambda x, t, **k: F.nll_loss(x.log_softmax(1), t, **k),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(BAD_TARGETS))
def test_out_of_range_target_on_cuda_gives_nan_without_a_sync(
    name: str, reduction: str, cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a CUDA target outside [0, C) is not checked on the host (that would wait for
    the GPU every batch): it makes its loss and the gradient NaN instead of a wrong number; the
    other rows of a 'none' loss keep their values. The CPU raises at once."""
    monkeypatch.delenv("CHAINRULE_CUDA_STRICT", raising=False)
    x0 = _rng(20).standard_normal((3, 4))
    t0 = np.array([1, 7, -100])
    with pytest.raises(IndexError, match=rf"{name}: target 7 is out of bounds"):
        BAD_TARGETS[name](cr.tensor(x0), cr.tensor(t0), reduction=reduction)
    x = cr.tensor(x0, device=cuda, requires_grad=True)
    loss = BAD_TARGETS[name](x, cr.tensor(t0, device=cuda), reduction=reduction)
    loss.sum().backward()
    got, grad = host(loss), host(x.grad)
    if reduction == "none":
        assert np.isnan(got[1]) and got[2] == 0
        want = TF.cross_entropy(torch.tensor(x0[:1]), torch.tensor(t0[:1]), reduction="none")
        np.testing.assert_allclose(got[0], want.numpy()[0], **TOL[np.float64])
        assert np.isnan(grad[1]).all() and not np.isnan(grad[0]).any()
    else:
        assert np.isnan(got) and np.isnan(grad[1]).all()  # ('mean': every row, via the divisor)


@pytest.mark.parametrize("how", ["env", "anomaly"])
@pytest.mark.parametrize("name", list(BAD_TARGETS))
def test_out_of_range_target_on_cuda_raises_in_strict_mode(
    name: str, how: str, cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHAINRULE_CUDA_STRICT=1 or detect_anomaly: the CPU's error, naming the target and the
    class count (one sync per call); valid targets still give torch's values."""
    x0 = _rng(21).standard_normal((3, 4))
    x = cr.tensor(x0, device=cuda, requires_grad=True)
    bad, good = np.array([1, -2, 0]), np.array([3, -100, 0])
    if how == "env":
        monkeypatch.setenv("CHAINRULE_CUDA_STRICT", "1")
        mode = cr.autograd.detect_anomaly(check_nan=False)  # no anomaly mode: the env var alone
    else:
        monkeypatch.delenv("CHAINRULE_CUDA_STRICT", raising=False)
        mode = cr.autograd.detect_anomaly()
    with mode:
        with pytest.raises(
            IndexError,
            match=rf"{name}: target -2 is out of bounds: class indices must be in \[0, 3\]",
        ):
            BAD_TARGETS[name](x, cr.tensor(bad, device=cuda))
        loss = BAD_TARGETS[name](x, cr.tensor(good, device=cuda))
        loss.backward()
    tx = torch.tensor(x0, requires_grad=True)
    tl = TF.cross_entropy(tx, torch.tensor(good))
    tl.backward()
    np.testing.assert_allclose(host(loss), tl.detach().numpy(), **TOL[np.float64])
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), **TOL[np.float64])


# ------------------------------------------------------------- binary cross-entropy range on CUDA
@pytest.mark.parametrize("bad", ["input", "target"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_out_of_range_on_cuda_gives_nan_without_a_sync(
    bad: str, reduction: str, cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probability outside [0, 1] on CUDA is not checked on the host by default: its loss
    element and gradient are NaN (and the mean / sum); the other elements keep torch's values.
    The CPU raises at once."""
    monkeypatch.delenv("CHAINRULE_CUDA_STRICT", raising=False)
    p0 = np.array([[0.2, 0.7], [0.4, 0.9]])
    y0 = np.array([[0.0, 1.0], [0.5, 0.25]])
    (p0 if bad == "input" else y0)[1, 0] = 1.5
    with pytest.raises(RuntimeError, match=f"all elements of {bad} should be between 0 and 1"):
        F.binary_cross_entropy(cr.tensor(p0), cr.tensor(y0))
    p = cr.tensor(p0, device=cuda, requires_grad=True)
    loss = F.binary_cross_entropy(p, cr.tensor(y0, device=cuda), reduction=reduction)
    loss.sum().backward()
    got, grad = host(loss), host(p.grad)
    ok = np.ones((2, 2), bool)
    ok[1, 0] = False
    if reduction == "none":
        assert np.isnan(got[1, 0]) and np.isnan(grad[1, 0])
        want = TF.binary_cross_entropy(torch.tensor(p0[ok]), torch.tensor(y0[ok]), reduction="none")
        np.testing.assert_allclose(got[ok], want.numpy(), **TOL[np.float64])
        assert not np.isnan(grad[ok]).any()
    else:
        assert np.isnan(got) and np.isnan(grad[1, 0])


@pytest.mark.parametrize("how", ["env", "anomaly"])
def test_bce_out_of_range_on_cuda_raises_in_strict_mode(
    how: str, cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHAINRULE_CUDA_STRICT=1 or detect_anomaly: the CPU's error (one sync per call)."""
    if how == "env":
        monkeypatch.setenv("CHAINRULE_CUDA_STRICT", "1")
        mode = cr.autograd.detect_anomaly(check_nan=False)
    else:
        monkeypatch.delenv("CHAINRULE_CUDA_STRICT", raising=False)
        mode = cr.autograd.detect_anomaly()
    p = cr.tensor([0.2, -0.1], device=cuda, requires_grad=True)
    y = cr.tensor([0.0, 1.0], device=cuda)
    with mode:
        with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
            F.binary_cross_entropy(p, y)
        with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
            F.binary_cross_entropy(p.detach().abs(), y * 2)


@pytest.mark.parametrize("weighted", [False, True])
def test_label_smoothing_mean_on_device_matches_torch(weighted: bool, device: str) -> None:
    """The 'mean' divisor of label smoothing (the kept targets' weight) stays on the device;
    values and gradients are torch's, ignored targets included."""
    x0 = _rng(30).standard_normal((5, 4))
    t0 = np.array([1, -100, 3, 0, 3])
    w0 = np.array([0.5, 2.0, 1.0, 1.5]) if weighted else None
    x = cr.tensor(x0, device=device, requires_grad=True)
    w = None if w0 is None else cr.tensor(w0, device=device)
    loss = F.cross_entropy(x, cr.tensor(t0, device=device), weight=w, label_smoothing=0.3)
    loss.backward()
    tx = torch.tensor(x0, requires_grad=True)
    tw = None if w0 is None else torch.tensor(w0)
    tl = TF.cross_entropy(tx, torch.tensor(t0), weight=tw, label_smoothing=0.3)
    tl.backward()
    assert loss.device.type == device
    np.testing.assert_allclose(host(loss), tl.detach().numpy(), **TOL[np.float64])
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), **TOL[np.float64])
