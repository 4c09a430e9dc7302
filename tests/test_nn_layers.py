"""Normalisation, activation and embedding layers against PyTorch.

Each layer or function runs on both frameworks with the same weights (copied across through the
state_dict, which also checks that the names and shapes match) and the same inputs; outputs and
the gradients of the input and of every parameter are compared (float64 to 1e-10 relative,
float32 to 1e-5), in training and eval mode, and batch norm's running statistics after several
steps. The parity tests run on the CPU and on the CUDA device (the ``device`` fixture: a GPU, or
the fake CuPy), loading torch's weights from CPU arrays into the device module. Smooth functions
also pass gradcheck and gradgradcheck in float64. Then: erf against
math.erf, the surrogate gradients of Step/Sign value by value, and a tiny network of Step units
that learns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.ops.activation import erf, erf_array

torch.set_num_threads(1)

RTOL = {"float64": 1e-10, "float32": 1e-5}
# the absolute floor, relative to the largest magnitude compared: float32 gradients that are
# differences of O(1) terms (gelu's at x = -4, say) carry O(1e-7) absolute rounding on both sides
ATOL = {"float64": 1e-12, "float32": 1e-6}
DTYPES = ("float64", "float32")


def close(a, ref, dtype: str, what: str = "") -> None:
    """``a`` (chainrule Tensor or array) equals ``ref`` (torch Tensor or array) to the dtype's
    relative tolerance; the absolute floor scales with the largest magnitude involved."""
    a = a.detach().cpu().numpy() if isinstance(a, cr.Tensor) else np.asarray(a)
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert a.shape == ref.shape, f"{what}: shape {a.shape} != {ref.shape}"
    assert a.dtype == ref.dtype, f"{what}: dtype {a.dtype} != {ref.dtype}"
    rtol = RTOL[dtype]
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(a, ref, rtol=rtol, atol=ATOL[dtype] * scale, err_msg=what)


def leaf(a: np.ndarray, grad: bool = True, device: str = "cpu") -> tuple[cr.Tensor, torch.Tensor]:
    return cr.tensor(a, requires_grad=grad, device=device), torch.tensor(a, requires_grad=grad)


def on(t: cr.Tensor, device: str) -> bool:
    return t.device.type == device


def sync(mod: nn.Module, tmod: torch.nn.Module, rng: np.random.Generator) -> None:
    """Random weights in torch's module, loaded into ours through the state_dict."""
    with torch.no_grad():
        for p in tmod.parameters():
            p.copy_(torch.tensor(rng.uniform(0.5, 1.5, p.shape)))
    assert list(mod.state_dict()) == list(tmod.state_dict())
    devs = {t.device for t in mod.state_dict().values()}
    # CPU arrays into the module: they are copied to wherever its tensors live
    mod.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    assert {t.device for t in mod.state_dict().values()} == devs


def same_state(mod: nn.Module, tmod: torch.nn.Module, dtype: str, grads: bool = True) -> None:
    sd, tsd = mod.state_dict(), tmod.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        if sd[k].data.dtype.kind == "f":
            close(sd[k], tsd[k], dtype, k)
        else:
            np.testing.assert_array_equal(sd[k].cpu().numpy(), tsd[k].numpy(), err_msg=k)
    if grads:
        for (k, p), (_, tp) in zip(mod.named_parameters(), tmod.named_parameters()):
            assert p.grad.device == p.device, k
            close(p.grad, tp.grad, dtype, f"grad of {k}")


def step_both(mod, tmod, x: np.ndarray, dtype: str, rng, device: str = "cpu") -> None:
    """One forward/backward on both; compare output and input gradient, then every grad/state."""
    cx, tx = leaf(x, device=device)
    y, ty = mod(cx), tmod(tx)
    assert on(y, device)
    close(y, ty, dtype, "output")
    g = rng.standard_normal(y.shape).astype(dtype)
    y.backward(cr.tensor(g, device=device))
    ty.backward(torch.tensor(g))
    close(cx.grad, tx.grad, dtype, "input grad")
    same_state(mod, tmod, dtype)
    mod.zero_grad()
    tmod.zero_grad()


def tdt(dtype: str) -> tuple:
    return getattr(cr, dtype), getattr(torch, dtype)


# ----------------------------------------------------------------------------- erf


def test_erf_matches_math_erf_on_the_whole_real_line():
    xs = np.concatenate(
        [
            np.linspace(0, 7, 70001),
            np.logspace(-300, 2.5, 6001),
            [5e-324, 1e-310, 0.5, 6.0, 5.9, 27.0, 1e300, np.finfo(np.float64).max],
            0.5 + np.arange(23) * 0.25,  # the cell edges
            np.nextafter(0.5 + np.arange(23) * 0.25, 0),
        ]
    )
    xs = np.concatenate([xs, -xs])
    got = erf_array(xs)
    ref = np.array([math.erf(v) for v in xs])
    normal = np.abs(ref) > np.finfo(np.float64).tiny
    rel = np.abs(got - ref)[normal] / np.abs(ref)[normal]
    assert rel.max() < 1e-15, f"max relative error {rel.max():.3g} at {xs[normal][np.argmax(rel)]}"
    np.testing.assert_allclose(got[~normal], ref[~normal], rtol=0, atol=1e-322)
    assert np.array_equal(np.signbit(got), np.signbit(ref))  # erf(-0.0) = -0.0
    special = erf_array(np.array([np.inf, -np.inf, np.nan]))
    assert special[0] == 1 and special[1] == -1 and np.isnan(special[2])


def test_erf_dtypes_and_torch():
    x = np.linspace(-4, 4, 101)
    for dtype in DTYPES:
        out = erf(cr.tensor(x.astype(dtype)))
        close(out, torch.erf(torch.tensor(x.astype(dtype))), dtype, "erf")
    assert erf(cr.tensor([0, 1])).dtype == cr.float32  # ints -> the default float
    x = cr.tensor(np.linspace(-2, 2, 5), requires_grad=True)
    assert gradcheck(erf, (x,)) and gradgradcheck(erf, (x,))


# ----------------------------------------------------------------------------- activations

# (name, chainrule function, torch function, kwargs)
ACTIVATIONS = [
    ("leaky_relu", F.leaky_relu, torch.nn.functional.leaky_relu, {}),
    ("leaky_relu", F.leaky_relu, torch.nn.functional.leaky_relu, {"negative_slope": 0.2}),
    ("elu", F.elu, torch.nn.functional.elu, {}),
    ("elu", F.elu, torch.nn.functional.elu, {"alpha": 0.7}),
    ("gelu", F.gelu, torch.nn.functional.gelu, {}),
    ("gelu", F.gelu, torch.nn.functional.gelu, {"approximate": "tanh"}),
    ("silu", F.silu, torch.nn.functional.silu, {}),
    ("softplus", F.softplus, torch.nn.functional.softplus, {}),
    ("softplus", F.softplus, torch.nn.functional.softplus, {"beta": 2.0, "threshold": 5.0}),
    ("softplus", F.softplus, torch.nn.functional.softplus, {"beta": -1.5}),
    ("hardtanh", F.hardtanh, torch.nn.functional.hardtanh, {}),
    ("hardtanh", F.hardtanh, torch.nn.functional.hardtanh, {"min_val": -0.5, "max_val": 2.0}),
]
# kinks (0, the hardtanh bounds, softplus' threshold), large inputs (overflow), and noise
SPECIAL = np.array(
    [0.0, -0.0, 1.0, -1.0, 2.0, -0.5, 2.5, 10.0, -10.0, 30.0, -30.0, 100.0, -100.0, 800.0, -800.0]
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,fn,tfn,kw", ACTIVATIONS, ids=[f"{a[0]}-{a[3]}" for a in ACTIVATIONS])
def test_activation_values_and_grads(name, fn, tfn, kw, dtype, device):
    rng = np.random.default_rng(0)
    x = np.concatenate([SPECIAL, rng.uniform(-4, 4, 41)]).astype(dtype).reshape(8, 7)
    cx, tx = leaf(x, device=device)
    y, ty = fn(cx, **kw), tfn(tx, **kw)
    assert on(y, device) and np.isfinite(y.detach().cpu().numpy()).all()
    close(y, ty, dtype, name)
    g = rng.standard_normal(x.shape).astype(dtype)
    y.backward(cr.tensor(g, device=device))
    ty.backward(torch.tensor(g))
    close(cx.grad, tx.grad, dtype, f"{name} grad")


# away from the kinks, where the functions are smooth
SMOOTH = [(fn, kw) for name, fn, _, kw in ACTIVATIONS if name != "hardtanh"] + [
    (F.hardtanh, {"min_val": -0.5, "max_val": 2.0})
]


@pytest.mark.parametrize("fn,kw", SMOOTH, ids=[f"{f.__name__}-{kw}" for f, kw in SMOOTH])
def test_activation_gradcheck_and_gradgradcheck(fn, kw):
    x = np.array([[-2.3, -0.7, -0.2], [0.3, 1.1, 3.2]])
    if fn is F.softplus:
        x = np.concatenate([x, [[6.0, -7.0, 25.0]]])  # both regimes (beta x > threshold)
    cx = cr.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: fn(t, **kw), (cx,))
    assert gradgradcheck(lambda t: fn(t, **kw), (cx,))


def test_activation_modules_match_torch(device):
    pairs = [
        (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)),
        (nn.ELU(alpha=0.5), torch.nn.ELU(alpha=0.5)),
        (nn.GELU(), torch.nn.GELU()),
        (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        (nn.SiLU(), torch.nn.SiLU()),
        (nn.Softplus(beta=2, threshold=10), torch.nn.Softplus(beta=2, threshold=10)),
        (nn.Hardtanh(-2.0, 3.0), torch.nn.Hardtanh(-2.0, 3.0)),
    ]
    x = np.random.default_rng(1).uniform(-5, 5, (4, 5))
    for m, tm in pairs:
        assert repr(m) == repr(tm)
        close(m(cr.tensor(x, device=device)), tm(torch.tensor(x)), "float64", repr(m))
    with pytest.raises(AssertionError, match="must be greater"):
        nn.Hardtanh(1.0, 1.0)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(cr.tensor([1.0]), approximate="erf")


def test_elu_gelu_softplus_do_not_overflow():
    for dtype in DTYPES:
        big = np.array([-1e4, -800.0, -100.0, 100.0, 800.0, 1e4], dtype)
        for fn, x in [(F.elu, 3e38), (F.softplus, 3e38), (F.gelu, 0), (F.silu, 0)]:
            x = cr.tensor(np.append(big, np.array([x, -x], dtype)), requires_grad=True)
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                y = fn(x)
                y.sum().backward()
            assert np.isfinite(y.data).all() and np.isfinite(x.grad.data).all(), fn.__name__


# ----------------------------------------------------------------------------- surrogate units

XS = np.array([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0])


def _unit_grad(fn, **kw) -> tuple[np.ndarray, np.ndarray]:
    x = cr.tensor(XS, requires_grad=True)
    y = fn(x, **kw)
    y.backward(cr.ones_like(y))
    return y.data, x.grad.data


def test_step_and_sign_forward():
    for s in ("ste", "sigmoid", "triangle"):
        np.testing.assert_array_equal(_unit_grad(F.step, surrogate=s)[0], [0, 0, 0, 0, 1, 1, 1])
        np.testing.assert_array_equal(
            _unit_grad(F.sign_ste, surrogate=s)[0], [-1, -1, -1, 0, 1, 1, 1]
        )
    assert F.step(cr.tensor(np.ones(2, np.float32))).dtype == cr.float32
    np.testing.assert_array_equal(
        F.sign_ste(cr.tensor([-0.0, 0.0])).data, torch.sign(torch.tensor([-0.0, 0.0]))
    )


def test_surrogate_gradients_exact():
    # straight-through: 1 everywhere for step, 1 on |x| <= 1 (the hardtanh STE) for sign
    np.testing.assert_array_equal(_unit_grad(F.step)[1], [1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(_unit_grad(F.sign_ste)[1], [0, 1, 1, 1, 1, 1, 0])
    # triangle max(0, 1 - |x|), and k max(0, 1 - k|x|); twice that for sign
    np.testing.assert_array_equal(
        _unit_grad(F.step, surrogate="triangle")[1], [0, 0, 0.5, 1, 0.75, 0, 0]
    )
    np.testing.assert_array_equal(
        _unit_grad(F.sign_ste, surrogate="triangle")[1], [0, 0, 1, 2, 1.5, 0, 0]
    )
    np.testing.assert_array_equal(
        _unit_grad(F.step, surrogate="triangle", k=2.0)[1], [0, 0, 0, 2, 1, 0, 0]
    )
    # sigmoid: k s (1 - s), s = sigmoid(k x): k/4 at 0 (k = 4 by default)
    for k in (None, 1.0, 10.0):
        kk = 4.0 if k is None else k
        want = np.array([kk * math.exp(-kk * v) / (1 + math.exp(-kk * v)) ** 2 for v in XS])
        got = _unit_grad(F.step, surrogate="sigmoid", k=k)[1]
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
        assert got[3] == kk / 4
        np.testing.assert_allclose(
            _unit_grad(F.sign_ste, surrogate="sigmoid", k=k)[1], 2 * want, rtol=1e-15
        )
    # the modules are the functions
    x = cr.tensor(XS, requires_grad=True)
    nn.Sign("triangle")(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0, 1, 2, 1.5, 0, 0])
    assert repr(nn.Step("sigmoid", k=2.0)) == "Step(surrogate='sigmoid', k=2.0)"


def test_surrogate_arguments_are_checked():
    with pytest.raises(ValueError, match="surrogate must be one of"):
        nn.Step("tanh")
    with pytest.raises(ValueError, match="no effect"):
        F.sign_ste(cr.tensor([1.0]), "ste", k=2.0)
    with pytest.raises(ValueError, match="positive"):
        nn.Sign("sigmoid", k=0.0)


def test_surrogate_is_differentiable_under_create_graph():
    # d/dx of the sigmoid surrogate k s (1 - s) is k^2 s (1 - s) (1 - 2 s)
    x = cr.tensor(XS, requires_grad=True)
    (g,) = cr.autograd.grad(F.step(x, "sigmoid", k=2.0).sum(), x, create_graph=True)
    g.sum().backward()
    s = 1 / (1 + np.exp(-2 * XS))
    np.testing.assert_allclose(x.grad.data, 4 * s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("unit", ["step-sigmoid", "step-triangle", "sign-ste", "sign-sigmoid"])
def test_network_of_step_units_learns(unit):
    """Two Linear layers with 32 binary hidden units learn a nonlinear toy problem (points inside
    a circle) with the surrogate gradient; the loss falls and the accuracy is high. (Step's
    unclipped 'ste' is left out: with an identity gradient this net oscillates instead.)"""
    kind, surrogate = unit.split("-")
    cr.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (256, 2))
    y = ((X**2).sum(1) < 0.5).astype(np.float64)[:, None]
    X, y = cr.tensor(X), cr.tensor(y)
    unit_layer = nn.Step(surrogate) if kind == "step" else nn.Sign(surrogate)
    net = nn.Sequential(nn.Linear(2, 32), unit_layer, nn.Linear(32, 1)).double()
    opt = cr.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    acc = ((net(X).data > 0) == (y.data > 0.5)).mean()
    assert np.mean(losses[-10:]) < 0.6 * losses[0], losses[::15]
    assert acc > 0.85, acc


# ----------------------------------------------------------------------------- batch norm

BN_CASES = [
    ("1d-NC", lambda **kw: (nn.BatchNorm1d(3, **kw), torch.nn.BatchNorm1d(3, **kw)), (6, 3)),
    ("1d-NCL", lambda **kw: (nn.BatchNorm1d(3, **kw), torch.nn.BatchNorm1d(3, **kw)), (4, 3, 5)),
    ("2d", lambda **kw: (nn.BatchNorm2d(2, **kw), torch.nn.BatchNorm2d(2, **kw)), (3, 2, 4, 3)),
]
BN_OPTIONS = [
    {},
    {"momentum": None},
    {"momentum": 0.3, "eps": 1e-3},
    {"affine": False},
    {"bias": False},
    {"track_running_stats": False},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", BN_OPTIONS, ids=[str(o) for o in BN_OPTIONS])
@pytest.mark.parametrize("name,make,shape", BN_CASES, ids=[c[0] for c in BN_CASES])
def test_batchnorm_train_steps_then_eval(name, make, shape, opts, dtype, device):
    rng = np.random.default_rng(2)
    cdt, tdtype = tdt(dtype)
    m, tm = make(**opts)
    m.to(device, cdt)
    tm.to(tdtype)
    assert all(on(t, device) for t in m.state_dict().values())  # buffers too
    sync(m, tm, rng)
    for _ in range(3):  # the running statistics move each step
        x = rng.normal(1.5, 2.0, shape).astype(dtype)
        step_both(m, tm, x, dtype, rng, device)
    if m.track_running_stats:
        assert m.num_batches_tracked.dtype == cr.int64 and int(m.num_batches_tracked.item()) == 3
        assert on(m.running_mean, device) and on(m.num_batches_tracked, device)
    m.eval()
    tm.eval()
    for _ in range(2):  # eval: running statistics, unchanged
        step_both(m, tm, rng.normal(0, 1, shape).astype(dtype), dtype, rng, device)


def test_batchnorm_state_dict_and_repr():
    for m, tm in [
        (nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)),
        (nn.BatchNorm2d(4, affine=False), torch.nn.BatchNorm2d(4, affine=False)),
        (
            nn.BatchNorm2d(4, track_running_stats=False),
            torch.nn.BatchNorm2d(4, track_running_stats=False),
        ),
        (
            nn.BatchNorm1d(4, momentum=None, bias=False),
            torch.nn.BatchNorm1d(4, momentum=None, bias=False),
        ),
    ]:
        assert repr(m) == repr(tm)
        sd, tsd = m.state_dict(), tm.state_dict()
        assert list(sd) == list(tsd)
        for k in sd:
            np.testing.assert_array_equal(sd[k].data, tsd[k].numpy(), err_msg=k)
            assert sd[k].data.dtype == tsd[k].numpy().dtype, k
        assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    # a torch-trained state loads into ours and back
    tm = torch.nn.BatchNorm1d(3)
    tm(torch.randn(5, 3))
    m = nn.BatchNorm1d(3)
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    tm2 = torch.nn.BatchNorm1d(3)
    tm2.load_state_dict({k: torch.tensor(v.data) for k, v in m.state_dict().items()})
    for k, v in tm.state_dict().items():
        assert torch.equal(v, tm2.state_dict()[k]), k


def test_batchnorm_shape_errors():
    x = cr.randn(2, 3, 4, 5)
    with pytest.raises(
        ValueError,
        match=r"BatchNorm1d\(3.*expects input \(N, 3\) or \(N, 3, L\), got \(2, 3, 4, 5\)",
    ):
        nn.BatchNorm1d(3)(x)
    with pytest.raises(
        ValueError, match=r"BatchNorm2d\(4.*expects input \(N, 4, H, W\), got \(2, 3, 4, 5\)"
    ):
        nn.BatchNorm2d(4)(x)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(cr.randn(1, 3))
    nn.BatchNorm1d(3).eval()(cr.randn(1, 3))  # fine in eval mode
    with pytest.raises(RuntimeError, match="running_mean should contain 3 elements not 4"):
        F.batch_norm(cr.randn(2, 3), cr.zeros(4), cr.ones(4))


def test_batch_norm_functional_updates_running_stats_unbiased():
    rng = np.random.default_rng(3)
    x = rng.normal(2, 3, (5, 4, 3))
    rm, rv = cr.zeros(4, dtype=cr.float64), cr.ones(4, dtype=cr.float64)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    w, b = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    for _ in range(2):
        y = F.batch_norm(cr.tensor(x), rm, rv, cr.tensor(w), cr.tensor(b), True, 0.2, 1e-4)
        ty = torch.nn.functional.batch_norm(
            torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b), True, 0.2, 1e-4
        )
        close(y, ty, "float64")
    close(rm, trm, "float64")
    close(rv, trv, "float64")
    unbiased = x.transpose(1, 0, 2).reshape(4, -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(rv.data, 0.8**2 + (1 - 0.8**2) * unbiased, rtol=1e-12)
    with pytest.raises(RuntimeError, match="must be given"):
        F.batch_norm(cr.tensor(x), None, None, training=False)
    y = F.batch_norm(cr.tensor(x), None, None, training=True)  # no running stats: just normalise
    close(y, torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True), "float64")


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(training):
    rng = np.random.default_rng(4)
    x = cr.tensor(rng.normal(size=(3, 2, 2)), requires_grad=True)
    w = cr.tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True)
    b = cr.tensor(rng.normal(size=2), requires_grad=True)
    rm, rv = cr.tensor(rng.normal(size=2)), cr.tensor(rng.uniform(0.5, 2, 2))

    def f(x, w, b):  # copies: gradcheck runs it many times and must not drift the statistics
        return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5)

    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


# ----------------------------------------------------------------------------- layer norm

LN_CASES = [
    ((4, 5), 5, {}),
    ((2, 3, 4), (3, 4), {}),
    ((3, 6), 6, {"elementwise_affine": False}),
    ((2, 2, 5), [5], {"bias": False, "eps": 1e-3}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns,kw", LN_CASES, ids=[str(c) for c in LN_CASES])
def test_layernorm_matches_torch(shape, ns, kw, dtype, device):
    rng = np.random.default_rng(5)
    cdt, tdtype = tdt(dtype)
    m = nn.LayerNorm(ns, dtype=cdt, device=device, **kw)
    tm = torch.nn.LayerNorm(ns, dtype=tdtype, **kw)
    assert repr(m) == repr(tm)
    sync(m, tm, rng)
    for mode in ("train", "eval"):  # the same in both
        getattr(m, mode)() if mode == "eval" else m.train()
        step_both(m, tm, rng.normal(1, 2, shape).astype(dtype), dtype, rng, device)


def test_layer_norm_gradcheck_and_errors():
    rng = np.random.default_rng(6)
    x = cr.tensor(rng.normal(size=(2, 2, 3)), requires_grad=True)
    w = cr.tensor(rng.uniform(0.5, 1.5, (2, 3)), requires_grad=True)
    b = cr.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    f = lambda x, w, b: F.layer_norm(x, (2, 3), w, b)  # noqa: E731
    assert gradcheck(f, (x, w, b)) and gradgradcheck(f, (x, w, b))
    x1 = cr.tensor(rng.normal(size=(4,)), requires_grad=True)  # no leading dims
    assert gradgradcheck(
        lambda x, w: F.layer_norm(x, 4, w), (x1, cr.tensor(rng.normal(size=4), requires_grad=True))
    )
    with pytest.raises(
        ValueError, match=r"LayerNorm\(\(3, 4\).*expects input \(\*, 3, 4\), got \(2, 4, 3\)"
    ):
        nn.LayerNorm((3, 4))(cr.randn(2, 4, 3))
    with pytest.raises(
        RuntimeError, match=r"expected input with shape \[\*, 4\], but got input of size\[2, 3\]"
    ):
        F.layer_norm(cr.randn(2, 3), [4])


# ----------------------------------------------------------------------------- group norm

GN_CASES = [
    ((4, 6), 2, {}),
    ((2, 4, 5), 2, {}),
    ((2, 6, 3, 2), 3, {"affine": False}),
    ((3, 4, 3), 4, {"eps": 0.1}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups,kw", GN_CASES, ids=[str(c) for c in GN_CASES])
def test_groupnorm_matches_torch(shape, groups, kw, dtype, device):
    rng = np.random.default_rng(7)
    cdt, tdtype = tdt(dtype)
    C = shape[1]
    m, tm = (
        nn.GroupNorm(groups, C, dtype=cdt, device=device, **kw),
        torch.nn.GroupNorm(groups, C, dtype=tdtype, **kw),
    )
    assert repr(m) == repr(tm)
    sync(m, tm, rng)
    step_both(m, tm, rng.normal(-1, 3, shape).astype(dtype), dtype, rng, device)
    m.eval()
    tm.eval()
    step_both(m, tm, rng.normal(-1, 3, shape).astype(dtype), dtype, rng, device)


def test_group_norm_gradcheck_and_errors():
    rng = np.random.default_rng(8)
    x = cr.tensor(rng.normal(size=(2, 4, 2)), requires_grad=True)
    w = cr.tensor(rng.uniform(0.5, 1.5, 4), requires_grad=True)
    b = cr.tensor(rng.normal(size=4), requires_grad=True)
    f = lambda x, w, b: F.group_norm(x, 2, w, b)  # noqa: E731
    assert gradcheck(f, (x, w, b)) and gradgradcheck(f, (x, w, b))
    with pytest.raises(ValueError, match="must be divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(
        ValueError, match=r"GroupNorm\(2, 4.*expects input \(N, 4, \*\), got \(2, 6, 3\)"
    ):
        nn.GroupNorm(2, 4)(cr.randn(2, 6, 3))
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(cr.randn(2, 5, 3), 2)


# ----------------------------------------------------------------------------- embedding


def test_embedding_init_and_state_dict():
    cr.manual_seed(0)
    m = nn.Embedding(2000, 16, padding_idx=-3)
    tm = torch.nn.Embedding(2000, 16, padding_idx=-3)
    assert m.padding_idx == tm.padding_idx == 1997
    assert repr(m) == repr(tm) == "Embedding(2000, 16, padding_idx=1997)"
    assert list(m.state_dict()) == list(tm.state_dict()) == ["weight"]
    w = m.weight.data
    assert (w[1997] == 0).all() and (np.delete(w, 1997, 0) != 0).all()
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1)
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(5, 2, padding_idx=5)
    assert not nn.Embedding.from_pretrained(cr.ones(3, 2)).weight.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kw",
    [{}, {"padding_idx": 2}, {"padding_idx": -1, "scale_grad_by_freq": True}, {"max_norm": 1.5}],
)
def test_embedding_matches_torch(kw, dtype, device):
    rng = np.random.default_rng(9)
    cdt, tdtype = tdt(dtype)
    m = nn.Embedding(7, 4, dtype=cdt, device=device, **kw)
    tm = torch.nn.Embedding(7, 4, dtype=tdtype, **kw)
    sync(m, tm, rng)
    idx = np.array([[1, 2, 2, 6], [0, 2, 6, 6], [3, 3, 3, 2]])  # repeats, and the padding rows
    for index in (idx, idx[0, 1]):  # 2-D and 0-d indices
        y, ty = m(cr.tensor(index, device=device)), tm(torch.tensor(index))
        assert on(y, device)
        close(y, ty, dtype, "output")
        g = rng.standard_normal(y.shape).astype(dtype)
        y.backward(cr.tensor(g, device=device))
        ty.backward(torch.tensor(g))
        same_state(m, tm, dtype)  # weights (renormalised by max_norm) and their gradients
        if m.padding_idx is not None:
            assert (m.weight.grad.cpu().numpy()[m.padding_idx] == 0).all()
        m.zero_grad()
        tm.zero_grad()


def test_embedding_gradient_accumulates_repeats_and_gradgradcheck():
    w = cr.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    idx = cr.tensor([0, 3, 0, 0, 1])
    F.embedding(idx, w).sum().backward()
    np.testing.assert_array_equal(w.grad.data[:, 0], [3, 1, 0, 1])  # 0 three times, 2 never
    rng = np.random.default_rng(10)
    w = cr.tensor(rng.normal(size=(5, 2)), requires_grad=True)
    idx = cr.tensor([[4, 1], [1, 0], [4, 4]])
    f = lambda w: F.embedding(idx, w) ** 2  # noqa: E731
    assert gradcheck(f, (w,)) and gradgradcheck(f, (w,))
    # the padding row and the frequency scaling (not true gradients): the same under create_graph
    for kw in ({"padding_idx": 0}, {"padding_idx": 4, "scale_grad_by_freq": True}):
        y = F.embedding(idx, w, **kw) ** 2
        g = cr.tensor(rng.normal(size=y.shape))
        (a,) = cr.autograd.grad(y, w, g, retain_graph=True)
        (b,) = cr.autograd.grad(y, w, g, create_graph=True)
        assert b.requires_grad
        np.testing.assert_allclose(a.data, b.data, rtol=1e-15)
        assert (a.data[kw["padding_idx"]] == 0).all()
    with pytest.raises(IndexError, match="index out of range"):
        F.embedding(cr.tensor([5]), w)
    with pytest.raises(IndexError, match="index out of range"):
        F.embedding(cr.tensor([-1]), w)
    with pytest.raises(TypeError, match=r"Embedding\(5, 2\) expects integer indices"):
        nn.Embedding(5, 2)(cr.tensor([1.0]))


def test_embedding_backward_is_fast_for_many_repeats():
    import time

    m = nn.Embedding(1000, 64)
    idx = cr.tensor(np.random.default_rng(0).integers(0, 1000, (64, 512)))
    t0 = time.perf_counter()
    m(idx).sum().backward()
    assert time.perf_counter() - t0 < 2.0
    counts = np.bincount(idx.data.ravel(), minlength=1000)
    np.testing.assert_allclose(m.weight.grad.data, np.repeat(counts[:, None], 64, 1).astype(float))


# ----------------------------------------------------------------------------- devices

BUILDERS = [
    ("Linear", lambda **d: nn.Linear(4, 3, **d)),
    ("Bilinear", lambda **d: nn.Bilinear(3, 2, 4, **d)),
    ("Conv1d", lambda **d: nn.Conv1d(2, 3, 3, **d)),
    ("Conv2d", lambda **d: nn.Conv2d(2, 4, 3, groups=2, **d)),
    ("ConvTranspose2d", lambda **d: nn.ConvTranspose2d(2, 3, 2, **d)),
    ("BatchNorm1d", lambda **d: nn.BatchNorm1d(3, **d)),
    ("LayerNorm", lambda **d: nn.LayerNorm((2, 3), **d)),
    ("GroupNorm", lambda **d: nn.GroupNorm(2, 4, **d)),
    ("Embedding", lambda **d: nn.Embedding(6, 3, padding_idx=1, **d)),
    ("LSTMCell", lambda **d: nn.LSTMCell(3, 4, **d)),
    ("GRU", lambda **d: nn.GRU(3, 4, num_layers=2, bidirectional=True, **d)),
    ("MultiheadAttention", lambda **d: nn.MultiheadAttention(4, 2, kdim=3, add_bias_kv=True, **d)),
    ("TransformerEncoderLayer", lambda **d: nn.TransformerEncoderLayer(4, 2, 8, **d)),
]


@pytest.mark.parametrize("name,build", BUILDERS, ids=[b[0] for b in BUILDERS])
def test_layer_built_on_device_has_the_cpu_weights(name, build, cuda):
    """``device='cuda'`` draws the initial weights on the CPU and moves them: the same seed gives
    the same layer on every device; buffers move too."""
    cr.manual_seed(3)
    ref = build()
    cr.manual_seed(3)
    m = build(device=cuda)
    sd, rsd = m.state_dict(), ref.state_dict()
    assert list(sd) == list(rsd)
    for k, v in sd.items():
        assert on(v, "cuda"), k
        assert v.dtype == rsd[k].dtype, k
        np.testing.assert_array_equal(v.cpu().numpy(), rsd[k].numpy(), err_msg=k)
    # and the CPU generator advanced as much as for the CPU layer
    cr.manual_seed(3)
    build()
    a = cr.rand(3).numpy()
    cr.manual_seed(3)
    build(device=cuda)
    np.testing.assert_array_equal(cr.rand(3).numpy(), a)


def test_reset_parameters_on_device_draws_there(cuda):
    m = nn.Linear(5, 4, device=cuda)
    state = cr.get_rng_state()
    m.reset_parameters()
    assert on(m.weight, "cuda") and on(m.bias, "cuda")
    assert cr.get_rng_state() == state  # the CUDA generator drew, as in torch
    w = m.weight.detach().cpu().numpy()
    assert np.abs(w).max() <= 1 / math.sqrt(5) and len(np.unique(w)) == w.size


def test_dropout_draws_its_mask_on_the_input_device(cuda):
    cr.manual_seed(0)
    x = cr.ones(200, 50, dtype=cr.float64, device=cuda, requires_grad=True)
    state = cr.get_rng_state()
    y = F.dropout(x, 0.3)
    assert cr.get_rng_state() == state  # the CPU generator was not used
    assert on(y, "cuda")
    h = y.detach().cpu().numpy()
    assert set(np.unique(h)) <= {0.0, 1 / 0.7}
    assert abs((h == 0).mean() - 0.3) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), h)  # the mask (times 1/(1-p))
    d = nn.Dropout(0.5)
    assert on(d(x), "cuda")
    d.eval()
    assert d(x) is x
    cr.manual_seed(0)  # reseeding repeats the mask
    np.testing.assert_array_equal(F.dropout(x, 0.3).detach().cpu().numpy(), h)


def test_functional_array_arguments_follow_the_input_device(device):
    """Targets, weights and masks given as lists or host arrays are placed on the input's
    device; the values equal torch's."""
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(6, 4))
    target = [0, 3, 1, 1, 2, 0]
    weight = [0.5, 1.0, 2.0, 1.5]
    x, tx = leaf(logits, device=device)
    for kw in ({}, {"weight": weight}, {"weight": weight, "label_smoothing": 0.2}):
        tkw = {k: torch.tensor(v).double() if k == "weight" else v for k, v in kw.items()}
        y = F.cross_entropy(x, target, **kw)
        ty = torch.nn.functional.cross_entropy(tx, torch.tensor(target), **tkw)
        assert on(y, device)
        close(y, ty, "float64", str(kw))
    lsm = F.log_softmax(x, 1)
    close(F.nll_loss(lsm, np.array(target), weight=np.array(weight)),
          torch.nn.functional.nll_loss(torch.log_softmax(tx, 1), torch.tensor(target),
                                       weight=torch.tensor(weight).double()), "float64")  # fmt: skip
    p = F.sigmoid(x)
    t01 = (rng.random((6, 4)) > 0.5).astype(np.float64)
    w = rng.uniform(0.5, 2, (6, 4))
    close(F.binary_cross_entropy(p, t01, weight=w),
          torch.nn.functional.binary_cross_entropy(torch.sigmoid(tx), torch.tensor(t01),
                                                   weight=torch.tensor(w)), "float64")  # fmt: skip
    close(F.binary_cross_entropy_with_logits(x, t01, pos_weight=np.full(4, 2.0)),
          torch.nn.functional.binary_cross_entropy_with_logits(
              tx, torch.tensor(t01), pos_weight=torch.full((4,), 2.0, dtype=torch.float64)),
          "float64")  # fmt: skip
    close(F.mse_loss(x, logits.tolist()), torch.nn.functional.mse_loss(tx, torch.tensor(logits)),
          "float64")  # fmt: skip
    oh = F.one_hot(cr.tensor(target, device=device), 5)
    assert on(oh, device)
    np.testing.assert_array_equal(oh.cpu().numpy(), np.eye(5, dtype=np.int64)[target])
