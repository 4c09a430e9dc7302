"""Convolution and pooling (functional and layers) against PyTorch.

Every case runs the same function on chainrule and torch with the same inputs and weights,
compares the outputs, backpropagates the same random upstream gradient and compares the
gradients of the input, weight and bias: float64 to 1e-10 relative, float32 to 1e-5 (relative
to the largest reference value, so that a near-zero entry from cancellation does not count as a
large relative error). Then: gradcheck / gradgradcheck in float64 on tiny shapes, a
create_graph (double backward) comparison, the layers (state_dict, repr, init, shape errors).

The comparisons with torch run on each ``device`` (conftest: the CPU, then CUDA, a GPU or the
fake CuPy): chainrule's inputs, weights and layers live there, torch's on the CPU. The numerical
gradchecks stay on the CPU.
"""

from __future__ import annotations

import math
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
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

DTYPES = ["float64", "float32"]


def _close(a: np.ndarray, b: np.ndarray, dtype: str, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs torch {b.shape}"
    assert a.dtype == np.dtype(dtype), f"{what}: dtype {a.dtype}, expected {dtype}"
    if dtype == "float64":
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=what)
    else:
        scale = max(1.0, float(np.nanmax(np.abs(b))) if b.size else 1.0)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def host(t: cr.Tensor) -> np.ndarray:
    """A chainrule tensor's values as a NumPy array (from any device)."""
    return t.detach().cpu().numpy()


def on(a: np.ndarray, device: str, requires_grad: bool = False) -> cr.Tensor:
    """A leaf tensor on ``device`` holding ``a``."""
    return cr.tensor(a).to(device).requires_grad_(requires_grad)


def check(
    f_cr: Callable,
    f_t: Callable,
    arrays: list,
    dtype: str,
    grad: tuple | None = None,
    seed: int = 1,
    device: str = "cpu",
) -> None:
    """Run ``f(*tensors)`` on both (chainrule's on ``device``); compare output and the gradients
    of the inputs in ``grad`` (indices; all by default). ``None`` entries of ``arrays`` are
    passed as None."""
    grad = tuple(range(len(arrays))) if grad is None else grad
    xs, ts = [], []
    for i, a in enumerate(arrays):
        if a is None:
            xs.append(None)
            ts.append(None)
            continue
        a = np.asarray(a, dtype)
        xs.append(on(a, device, i in grad))
        ts.append(torch.tensor(a, requires_grad=i in grad))
    y, yt = f_cr(*xs), f_t(*ts)
    assert y.device.type == device, f"output on {y.device}, expected {device}"
    _close(host(y), yt.detach().numpy(), dtype, "output")
    g = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    y.backward(on(g, device))
    yt.backward(torch.tensor(g))
    for i in grad:
        if xs[i] is not None:
            assert xs[i].grad.device.type == device
            _close(host(xs[i].grad), ts[i].grad.numpy(), dtype, f"gradient of input {i}")


def rnd(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape)


# ----------------------------------------------------------------------------- conv2d

CONV2D = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    dict(stride=3, padding=2, dilation=2),
    dict(padding="same"),
    dict(padding="same", dilation=2, k=(4, 3)),
    dict(padding="valid", k=(2, 4)),
    dict(groups=2, padding=1),
    dict(groups=4, cout=8, stride=2),  # depthwise
    dict(bias=False, stride=2),
    dict(n=1, k=(1, 1)),
    dict(n=0, padding=1),  # unbatched (C, H, W)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", CONV2D, ids=[str(c) for c in CONV2D])
def test_conv2d(kw: dict, dtype: str, device: str) -> None:
    kw = dict(kw)
    n, cout, k, bias = kw.pop("n", 2), kw.pop("cout", 6), kw.pop("k", (3, 3)), kw.pop("bias", True)
    cin, groups = 4, kw.get("groups", 1)
    x = rnd(n, cin, 7, 9) if n else rnd(cin, 7, 9)
    w = rnd(cout, cin // groups, *k, seed=1)
    b = rnd(cout, seed=2) if bias else None
    check(
        lambda x, w, b: F.conv2d(x, w, b, **kw),
        lambda x, w, b: TF.conv2d(x, w, b, **kw),
        [x, w, b],
        dtype,
        device=device,
    )


CONV1D = [
    dict(),
    dict(stride=2, padding=1, k=5),
    dict(stride=2, padding=1, dilation=2),
    dict(padding="same", k=4, dilation=3),
    dict(padding="valid"),
    dict(groups=2, stride=3, padding=2),
    dict(bias=False),
    dict(n=1),
    dict(n=0, stride=2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", CONV1D, ids=[str(c) for c in CONV1D])
def test_conv1d(kw: dict, dtype: str, device: str) -> None:
    kw = dict(kw)
    n, k, bias = kw.pop("n", 3), kw.pop("k", 3), kw.pop("bias", True)
    groups = kw.get("groups", 1)
    x = rnd(n, 4, 11) if n else rnd(4, 11)
    w = rnd(6, 4 // groups, k, seed=1)
    b = rnd(6, seed=2) if bias else None
    check(
        lambda x, w, b: F.conv1d(x, w, b, **kw),
        lambda x, w, b: TF.conv1d(x, w, b, **kw),
        [x, w, b],
        dtype,
        device=device,
    )


CONVT2D = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(2, 3), padding=(0, 1), output_padding=(1, 2), dilation=(2, 1)),
    dict(stride=1, output_padding=1, dilation=2),  # output_padding < dilation, >= stride
    dict(groups=2, stride=2),
    dict(bias=False, padding=1),
    dict(n=1, stride=3, k=(2, 2)),
    dict(n=0, stride=2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", CONVT2D, ids=[str(c) for c in CONVT2D])
def test_conv_transpose2d(kw: dict, dtype: str, device: str) -> None:
    kw = dict(kw)
    n, k, bias = kw.pop("n", 2), kw.pop("k", (3, 2)), kw.pop("bias", True)
    groups = kw.get("groups", 1)
    x = rnd(n, 4, 5, 6) if n else rnd(4, 5, 6)
    w = rnd(4, 6 // groups, *k, seed=1)
    b = rnd(6, seed=2) if bias else None
    check(
        lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw),
        [x, w, b],
        dtype,
        device=device,
    )


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1, output_padding=1, groups=2)])
def test_conv_transpose1d(kw: dict, device: str) -> None:
    x, w = rnd(2, 4, 7), rnd(4, 3, 3, seed=1)
    b = rnd(3 * kw.get("groups", 1), seed=2)  # out channels = weight.shape[1] * groups
    check(
        lambda x, w, b: F.conv_transpose1d(x, w, b, **kw),
        lambda x, w, b: TF.conv_transpose1d(x, w, b, **kw),
        [x, w, b],
        "float64",
        device=device,
    )


@pytest.mark.parametrize("batch_last", [True, False])
def test_conv_both_column_layouts(
    batch_last: bool, monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    """The kernels pick a column layout by output width; both give torch's results."""
    from chainrule.ops import conv as conv_ops

    monkeypatch.setattr(conv_ops, "_batch_last", lambda N, ow: batch_last)
    for kw in (dict(stride=2, padding=1, groups=2), dict(padding="same", dilation=(2, 1))):
        x, w, b = rnd(3, 4, 7, 9), rnd(6, 4 // kw.get("groups", 1), 3, 2, seed=1), rnd(6, seed=2)
        check(
            lambda x, w, b, kw=kw: F.conv2d(x, w, b, **kw),
            lambda x, w, b, kw=kw: TF.conv2d(x, w, b, **kw),
            [x, w, b],
            "float64",
            device=device,
        )
    x, w, b = rnd(2, 4, 5, 6), rnd(4, 3, 3, 2, seed=1), rnd(6, seed=2)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2)
    check(
        lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw),
        [x, w, b],
        "float64",
        device=device,
    )
    check(
        lambda x, w: F.conv1d(x, w, stride=2, padding=1),
        lambda x, w: TF.conv1d(x, w, stride=2, padding=1),
        [rnd(3, 2, 20), rnd(5, 2, 4, seed=1)],
        "float32",
        device=device,
    )
    if device != "cpu":
        return  # numerical gradchecks run on the CPU only
    args = [_leaf(2, 2, 5, 4), _leaf(2, 1, 2, 3, seed=1)]
    assert gradgradcheck(lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=1, groups=2), args)


def test_conv_noncontiguous_input(device: str) -> None:
    """A transposed (non-contiguous) input view gives the same result."""
    x, w = rnd(2, 3, 9, 8), rnd(5, 3, 3, 3, seed=1)
    check(
        lambda x, w: F.conv2d(x.transpose(2, 3), w, padding=1),
        lambda x, w: TF.conv2d(x.transpose(2, 3), w, padding=1),
        [x, w],
        "float64",
        device=device,
    )


def test_conv_float32_stays_float32(device: str) -> None:
    x = on(rnd(2, 3, 8, 8).astype(np.float32), device, True)
    w = on(rnd(4, 3, 3, 3, seed=1).astype(np.float32), device, True)
    y = F.conv2d(x, w, stride=2, padding=1)
    y.sum().backward()
    assert y.dtype == cr.float32 and x.grad.dtype == cr.float32 and w.grad.dtype == cr.float32
    assert x.grad.device.type == w.grad.device.type == device


BF16_CASES = {
    "conv1d": (lambda f, x, w, b: f.conv1d(x, w, b, padding=1, stride=2), [(2, 3, 9), (4, 3, 3), (4,)]),
    "conv2d": (lambda f, x, w, b: f.conv2d(x, w, b, padding=1, groups=2), [(2, 4, 6, 5), (6, 2, 3, 3), (6,)]),
    "max_pool1d": (lambda f, x: f.max_pool1d(x, 3, stride=2, padding=1), [(2, 3, 9)]),
    "max_pool2d": (lambda f, x: f.max_pool2d(x, 3, stride=2, padding=1), [(2, 3, 7, 6)]),
    "avg_pool1d": (lambda f, x: f.avg_pool1d(x, 3, stride=2), [(2, 3, 9)]),
    "avg_pool2d": (lambda f, x: f.avg_pool2d(x, 2, padding=1, count_include_pad=False), [(2, 3, 5, 6)]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BF16_CASES))
def test_bfloat16_matches_torch(name: str, device: str) -> None:
    """bfloat16 convolution and pooling: outputs and gradients stay bfloat16 and match torch's
    bfloat16 (products accumulated in float32 and rounded once, as PyTorch) to bfloat16's
    precision, relative to the largest value."""
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    fn, shapes = BF16_CASES[name]
    arrays = [rnd(*s, seed=i).astype(bf16) for i, s in enumerate(shapes)]
    xs = [on(a, device, True) for a in arrays]
    ts = [torch.tensor(a.astype(np.float32)).bfloat16().requires_grad_() for a in arrays]
    y, yt = fn(F, *xs), fn(TF, *ts)
    g = rnd(*y.shape, seed=9).astype(bf16)
    y.backward(on(g, device))
    yt.backward(torch.tensor(g.astype(np.float32)).bfloat16())
    pairs = [(y, yt, "output")] + [
        (x.grad, t.grad, f"grad {i}") for i, (x, t) in enumerate(zip(xs, ts))
    ]
    for got, want, what in pairs:
        assert got.dtype == cr.bfloat16 and got.device.type == device, what
        ref = want.detach().float().numpy()
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(host(got).astype(np.float32), ref, rtol=2e-2, atol=2e-2 * scale, err_msg=what)  # fmt: skip


# ----------------------------------------------------------------------------- pooling

MAXPOOL2D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=2),
    dict(kernel_size=2, stride=1),
    dict(kernel_size=3, ceil_mode=True),
    dict(kernel_size=(3, 2), dilation=(2, 3), ceil_mode=True, padding=(1, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", MAXPOOL2D, ids=[str(c) for c in MAXPOOL2D])
def test_max_pool2d(kw: dict, dtype: str, device: str) -> None:
    check(
        lambda x: F.max_pool2d(x, **kw),
        lambda x: TF.max_pool2d(x, **kw),
        [rnd(2, 3, 9, 10)],
        dtype,
        device=device,
    )


def test_max_pool2d_unbatched_and_indices(device: str) -> None:
    x = rnd(3, 7, 8)
    check(
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda x: TF.max_pool2d(x, 3, 2, 1),
        [x],
        "float64",
        device=device,
    )
    y, i = F.max_pool2d(on(x, device), 3, 2, 1, ceil_mode=True, return_indices=True)
    yt, it = TF.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    assert i.device.type == device and i.dtype == cr.int64
    np.testing.assert_array_equal(host(i), it.numpy())
    np.testing.assert_array_equal(host(y), yt.numpy())
    layer = nn.MaxPool1d(2, return_indices=True)
    y1, i1 = layer(on(rnd(2, 3, 9), device))
    _, it1 = TF.max_pool1d(torch.tensor(rnd(2, 3, 9)), 2, return_indices=True)
    np.testing.assert_array_equal(host(i1), it1.numpy())


@pytest.mark.parametrize("pool", ["max_pool2d", "max_pool1d"])
def test_max_pool_ties_inf_nan(pool: str, device: str) -> None:
    """The gradient goes to the same element as PyTorch's on ties (first in scan order), with
    -inf everywhere in a window, and with NaNs (the output is NaN, the gradient the last NaN)."""
    rng = np.random.default_rng(0)
    shape = (2, 3, 8, 9) if pool == "max_pool2d" else (2, 3, 11)
    x = rng.integers(0, 3, shape).astype(np.float64)  # many ties
    x.reshape(-1)[rng.choice(x.size, 8, replace=False)] = -np.inf
    x[0, 0, ..., :3] = -np.inf
    x.reshape(-1)[rng.choice(x.size, 6, replace=False)] = np.nan
    fc, ft = getattr(F, pool), getattr(TF, pool)
    for kw in (
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, ceil_mode=True),
    ):
        xc = on(x, device, True)
        xt = torch.tensor(x, requires_grad=True)
        y, yt = fc(xc, **kw), ft(xt, **kw)
        np.testing.assert_array_equal(host(y), yt.detach().numpy())
        g = rng.standard_normal(y.shape)
        y.backward(on(g, device))
        yt.backward(torch.tensor(g))
        # overlapping windows sum in another order: allow rounding, not a misplaced gradient
        np.testing.assert_allclose(host(xc.grad), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


MAXPOOL1D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=3, padding=1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", MAXPOOL1D, ids=[str(c) for c in MAXPOOL1D])
def test_max_pool1d(kw: dict, dtype: str, device: str) -> None:
    check(
        lambda x: F.max_pool1d(x, **kw),
        lambda x: TF.max_pool1d(x, **kw),
        [rnd(2, 3, 11)],
        dtype,
        device=device,
    )
    check(
        lambda x: F.max_pool1d(x, **kw),
        lambda x: TF.max_pool1d(x, **kw),
        [rnd(3, 10)],
        dtype,
        device=device,
    )


AVGPOOL2D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, divisor_override=4),
    dict(kernel_size=4, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", AVGPOOL2D, ids=[str(c) for c in AVGPOOL2D])
def test_avg_pool2d(kw: dict, dtype: str, device: str) -> None:
    check(
        lambda x: F.avg_pool2d(x, **kw),
        lambda x: TF.avg_pool2d(x, **kw),
        [rnd(2, 3, 9, 10)],
        dtype,
        device=device,
    )


AVGPOOL1D = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=4, stride=3, padding=2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", AVGPOOL1D, ids=[str(c) for c in AVGPOOL1D])
def test_avg_pool1d(kw: dict, dtype: str, device: str) -> None:
    check(
        lambda x: F.avg_pool1d(x, **kw),
        lambda x: TF.avg_pool1d(x, **kw),
        [rnd(2, 3, 11)],
        dtype,
        device=device,
    )
    check(
        lambda x: F.avg_pool1d(x, **kw),
        lambda x: TF.avg_pool1d(x, **kw),
        [rnd(3, 10)],
        dtype,
        device=device,
    )


ADAPTIVE2D = [(3, 4), (4, 3), 1, (2, 3), (None, 3), (10, 11), (1, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ADAPTIVE2D, ids=[str(s) for s in ADAPTIVE2D])
def test_adaptive_avg_pool2d(size: Any, dtype: str, device: str) -> None:
    f = (lambda x: F.adaptive_avg_pool2d(x, size), lambda x: TF.adaptive_avg_pool2d(x, size))
    check(*f, [rnd(2, 3, 8, 9)], dtype, device=device)
    check(*f, [rnd(3, 7, 6)], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 3, 4, 5, 12])
def test_adaptive_avg_pool1d(size: int, dtype: str, device: str) -> None:
    f = (lambda x: F.adaptive_avg_pool1d(x, size), lambda x: TF.adaptive_avg_pool1d(x, size))
    check(*f, [rnd(2, 3, 10)], dtype, device=device)
    check(*f, [rnd(3, 7)], dtype, device=device)


# ----------------------------------------------------------------------------- gradcheck


def _leaf(*shape: int, seed: int = 0) -> cr.Tensor:
    return cr.tensor(rnd(*shape, seed=seed), requires_grad=True)


GRADCHECK = [
    (
        "conv2d",
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
        ((1, 4, 5, 4), (4, 2, 2, 3), (4,)),
    ),
    (
        "conv2d_same_dil",
        lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=2),
        ((2, 2, 5, 5), (3, 2, 2, 3), (3,)),
    ),
    (
        "conv1d",
        lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2),
        ((2, 2, 7), (3, 2, 3), (3,)),
    ),
    (
        "conv_transpose2d",
        lambda x, w, b: F.conv_transpose2d(
            x, w, b, stride=2, padding=1, output_padding=1, groups=2
        ),
        ((1, 4, 3, 3), (4, 1, 3, 2), (2,)),
    ),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True), ((1, 2, 5, 6),)),
    (
        "avg_pool2d",
        lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        ((1, 2, 5, 6),),
    ),
    ("avg_pool1d", lambda x: F.avg_pool1d(x, 2, 1, 1), ((2, 2, 5),)),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), ((1, 2, 5, 4),)),
]


@pytest.mark.parametrize("name,fn,shapes", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck(name: str, fn: Callable, shapes: tuple) -> None:
    args = [_leaf(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(fn, args)


@pytest.mark.parametrize(
    "name,fn,shapes",
    [GRADCHECK[i] for i in (0, 2, 3, 4, 5)],
    ids=["conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "avg_pool2d"],
)
def test_gradgradcheck(name: str, fn: Callable, shapes: tuple) -> None:
    args = [_leaf(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize(
    "which", ["conv2d", "conv_transpose2d", "conv1d", "max_pool2d", "avg_pool2d"]
)
def test_double_backward_vs_torch(which: str, device: str) -> None:
    """A gradient penalty: d/d(params) of |d loss / d x|^2, through create_graph=True."""
    if which == "conv2d":
        shapes = [(2, 4, 6, 5), (6, 2, 3, 3), (6,)]

        def fn(m: Any, x: Any, w: Any, b: Any) -> Any:
            return m.conv2d(x, w, b, stride=2, padding=1, groups=2).tanh()
    elif which == "conv_transpose2d":
        shapes = [(2, 4, 3, 4), (4, 3, 3, 2), (3,)]

        def fn(m: Any, x: Any, w: Any, b: Any) -> Any:
            return m.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1).tanh()
    elif which == "conv1d":
        shapes = [(2, 3, 9), (4, 3, 3), (4,)]

        def fn(m: Any, x: Any, w: Any, b: Any) -> Any:
            return m.conv1d(x, w, b, stride=2, padding="valid", dilation=2).tanh()
    else:
        shapes = [(2, 3, 6, 7), (3, 3, 3, 3), (3,)]
        pool = which

        def fn(m: Any, x: Any, w: Any, b: Any) -> Any:
            return getattr(m, pool)(m.conv2d(x, w, b, padding=1).tanh(), 3, 2, 1)

    arrays = [rnd(*s, seed=i) for i, s in enumerate(shapes)]
    xs = [on(a, device, True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    (gx,) = cr.autograd.grad((fn(F, *xs) ** 2).sum(), [xs[0]], create_graph=True)
    (gxt,) = torch.autograd.grad((fn(TF, *ts) ** 2).sum(), [ts[0]], create_graph=True)
    _close(host(gx), gxt.detach().numpy(), "float64", "first gradient")
    (gx**2).sum().backward()
    (gxt**2).sum().backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        assert x.grad.device.type == device
        _close(host(x.grad), t.grad.numpy(), "float64", f"second-order gradient of input {i}")


# ----------------------------------------------------------------------------- layers


def _copy_params(layer: nn.Module, tl: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in tl.named_parameters():
            p.copy_(torch.tensor(getattr(layer, name).data))


LAYERS = [
    ("Conv2d", (3, 8, 3), dict(), (2, 3, 9, 8)),
    (
        "Conv2d",
        (4, 6, (3, 2)),
        dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2, bias=False),
        (2, 4, 9, 8),
    ),
    ("Conv2d", (3, 4, 3), dict(padding="same", padding_mode="reflect"), (2, 3, 7, 8)),
    ("Conv2d", (3, 4, 4), dict(padding="same", padding_mode="circular", dilation=2), (2, 3, 9, 8)),
    ("Conv2d", (3, 4, 3), dict(stride=2, padding=(1, 2), padding_mode="replicate"), (3, 7, 8)),
    ("Conv1d", (1, 25, 5), dict(stride=2, padding=1), (100, 1, 40)),
    ("Conv1d", (4, 6, 3), dict(padding=2, padding_mode="reflect", groups=2), (2, 4, 9)),
    ("Conv1d", (4, 6, 3), dict(padding="same"), (4, 9)),
    (
        "ConvTranspose2d",
        (4, 6, 3),
        dict(stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 5, 6),
    ),
    ("ConvTranspose2d", (4, 3, (2, 3)), dict(bias=False, dilation=2), (4, 5, 6)),
    ("ConvTranspose1d", (4, 3, 3), dict(stride=3), (2, 4, 5)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,args,kw,shape", LAYERS, ids=[f"{c[0]}{c[1]}{c[2]}" for c in LAYERS])
def test_conv_layers(
    name: str, args: tuple, kw: dict, shape: tuple, dtype: str, device: str
) -> None:
    cr.manual_seed(0)
    layer = getattr(nn, name)(*args, **kw, dtype=getattr(cr, dtype))
    tl = getattr(torch.nn, name)(*args, **kw, dtype=getattr(torch, dtype))
    assert repr(layer) == repr(tl)
    sd, tsd = layer.state_dict(), tl.state_dict()
    assert list(sd) == list(tsd)
    assert all(tuple(sd[k].shape) == tuple(tsd[k].shape) for k in sd)
    _copy_params(layer, tl)
    layer.to(device)
    params = [p for _, p in layer.named_parameters()]
    tparams = [p for _, p in tl.named_parameters()]
    x = rnd(*shape).astype(dtype)
    xc, xt = on(x, device, True), torch.tensor(x, requires_grad=True)
    y, yt = layer(xc), tl(xt)
    assert y.device.type == device
    _close(host(y), yt.detach().numpy(), dtype, "output")
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(on(g, device))
    yt.backward(torch.tensor(g))
    _close(host(xc.grad), xt.grad.numpy(), dtype, "input gradient")
    for p, tp in zip(params, tparams):
        assert p.grad.device.type == device
        _close(host(p.grad), tp.grad.numpy(), dtype, "parameter gradient")


def test_conv_transpose_output_size(device: str) -> None:
    layer = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    tl = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    _copy_params(layer, tl)
    layer.to(device)
    x = rnd(1, 3, 4, 5).astype(np.float32)
    y = layer(on(x, device), output_size=[8, 10])
    yt = tl(torch.tensor(x), output_size=[8, 10])
    assert y.shape == (1, 2, 8, 10)
    _close(host(y), yt.detach().numpy(), "float32", "output")
    with pytest.raises(ValueError, match="valid sizes range from"):
        layer(on(x, device), output_size=[9, 10])


POOL_LAYERS = [
    ("MaxPool2d", (2,), dict(), (2, 3, 8, 9)),
    ("MaxPool2d", (3, 2, 1), dict(dilation=1, ceil_mode=True), (3, 8, 9)),
    ("MaxPool1d", (3,), dict(stride=2), (2, 3, 11)),
    ("AvgPool2d", (3, 2, 1), dict(ceil_mode=True, count_include_pad=False), (2, 3, 8, 9)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (3, 8, 9)),
    ("AvgPool1d", (3,), dict(padding=1), (2, 3, 11)),
    ("AdaptiveAvgPool2d", ((None, 3),), dict(), (2, 3, 8, 9)),
    ("AdaptiveAvgPool2d", (1,), dict(), (2, 3, 8, 9)),
    ("AdaptiveAvgPool1d", (4,), dict(), (3, 11)),
]


@pytest.mark.parametrize(
    "name,args,kw,shape", POOL_LAYERS, ids=[f"{c[0]}{c[1]}{c[2]}" for c in POOL_LAYERS]
)
def test_pool_layers(name: str, args: tuple, kw: dict, shape: tuple, device: str) -> None:
    layer, tl = getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw)
    assert repr(layer) == repr(tl)
    check(layer.to(device), tl, [rnd(*shape)], "float64", device=device)


def test_layer_shape_errors() -> None:
    layer = nn.Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1))
    with pytest.raises(ValueError) as e:
        layer(cr.zeros(8, 1, 28, 28))
    assert (
        str(e.value)
        == "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1)) expects input (N, 3, H, W), got (8, 1, 28, 28)"
    )
    with pytest.raises(
        ValueError,
        match=r"Conv1d\(2, 4, kernel_size=\(3,\), stride=\(1,\)\) expects input \(N, 2, L\), got \(5, 3, 7\)",
    ):
        nn.Conv1d(2, 4, 3)(cr.zeros(5, 3, 7))
    with pytest.raises(ValueError, match=r"expects input \(N, 4, H, W\), got \(2, 4, 5\)"):
        nn.ConvTranspose2d(4, 2, 3)(cr.zeros(2, 4, 5))
    with pytest.raises(
        ValueError,
        match=r"MaxPool2d\(kernel_size=2, .*\) expects input \(N, C, H, W\) or \(C, H, W\), got \(4, 5\)",
    ):
        nn.MaxPool2d(2)(cr.zeros(4, 5))


def test_functional_errors() -> None:
    x = cr.zeros(8, 1, 28, 28)
    with pytest.raises(
        RuntimeError,
        match=r"Given groups=1, weight of size \[16, 3, 3, 3\], expected input\[8, 1, 28, 28\] to have 3 channels, but got 1 channels instead",
    ):
        F.conv2d(x, cr.zeros(16, 3, 3, 3))
    with pytest.raises(
        RuntimeError, match="Expected 3D \\(unbatched\\) or 4D \\(batched\\) input to conv2d"
    ):
        F.conv2d(cr.zeros(2, 3), cr.zeros(16, 3, 3, 3))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        F.conv2d(cr.zeros(1, 3, 2, 2), cr.zeros(4, 3, 3, 3))
    with pytest.raises(
        RuntimeError, match="padding='same' is not supported for strided convolutions"
    ):
        F.conv2d(x, cr.zeros(4, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(RuntimeError, match="Invalid padding string"):
        F.conv1d(cr.zeros(1, 1, 5), cr.zeros(1, 1, 3), padding="full")
    with pytest.raises(
        RuntimeError, match="output padding must be smaller than either stride or dilation"
    ):
        F.conv_transpose2d(cr.zeros(1, 4, 5, 5), cr.zeros(4, 2, 3, 3), output_padding=1)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        F.max_pool2d(cr.zeros(1, 1, 5, 5), 2, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.max_pool2d(cr.zeros(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(
        ValueError, match="padding='same' is not supported for strided convolutions"
    ):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")


@pytest.mark.parametrize(
    "name,args",
    [
        ("Conv2d", (16, 32, 5)),
        ("Conv1d", (25, 40, 3)),
        ("ConvTranspose2d", (32, 16, 4, 2, 1, 0, 2)),
    ],
)
def test_default_init(name: str, args: tuple) -> None:
    """kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias the same bound."""
    cr.manual_seed(0)
    layer = getattr(nn, name)(*args)
    tl = getattr(torch.nn, name)(*args)
    w = layer.weight.data
    assert w.dtype == np.float32 and layer.bias.dtype == cr.float32
    fan_in = w.shape[1] * math.prod(w.shape[2:])
    bound = 1 / math.sqrt(fan_in)
    for a, ta in ((w, tl.weight.detach().numpy()), (layer.bias.data, tl.bias.detach().numpy())):
        assert np.abs(a).max() <= bound and np.abs(ta).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    # uniform: mean 0, std bound / sqrt(3)
    assert abs(w.mean()) < 0.05 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert abs(w.std() - tl.weight.detach().numpy().std()) < 0.05 * bound


def test_conv_layers_in_a_network(device: str) -> None:
    """A small CNN (conv, relu, pool, flatten, linear) trained one step gives torch's update."""
    cr.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 3),
    )
    tnet.load_state_dict({k: torch.tensor(v.data) for k, v in net.state_dict().items()})
    net.to(device)
    x = rnd(5, 1, 10, 10).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    loss = F.cross_entropy(net(on(x, device)), on(y, device))
    tloss = TF.cross_entropy(tnet(torch.tensor(x)), torch.tensor(y))
    _close(host(loss), tloss.detach().numpy(), "float32", "loss")
    loss.backward()
    tloss.backward()
    for (k, p), (_, tp) in zip(net.named_parameters(), tnet.named_parameters()):
        assert p.grad.device.type == device
        _close(host(p.grad), tp.grad.numpy(), "float32", k)
