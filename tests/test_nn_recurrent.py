"""Recurrent layers and attention against PyTorch: weights copied through state_dict, then the
outputs and every gradient compared (float64 to 1e-10, float32 to 1e-5); gradcheck on the fused
cells; and two small models trained side by side with Adam, following torch's loss curve. The
parity tests run on the CPU and on the CUDA device (the ``device`` fixture: a GPU, or the fake
CuPy)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.ops import rnn as rnn_ops

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


def _copy(tm, cm) -> None:
    """torch module's state into the chainrule module (names must agree exactly)."""
    sd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    assert list(sd) == list(cm.state_dict())
    cm.load_state_dict(sd)


def _pair(a: np.ndarray, grad: bool = True, device: str = "cpu"):
    return torch.tensor(a, requires_grad=grad), cr.tensor(a, requires_grad=grad, device=device)


def _close(t, c, dtype: str, what: str = "", device: str | None = None) -> None:
    tv = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    if device is not None:
        assert c.device.type == device, what
    cv = c.detach().cpu().numpy() if isinstance(c, cr.Tensor) else c
    assert tv.shape == cv.shape, what
    np.testing.assert_allclose(cv, tv, err_msg=what, **TOL[dtype])


def _check_grads(tm, cm, pairs, dtype: str) -> None:
    for i, (t, c) in enumerate(pairs):
        _close(t.grad, c.grad, dtype, f"grad of input {i}")
    for name, p in tm.named_parameters():
        _close(p.grad, cm.get_parameter(name).grad, dtype, f"grad of {name}")


def _loss(outs, rng):
    """sum of each output times fixed random weights (the same for both libraries)."""
    ws = [rng.standard_normal(tuple(o.shape)) for o in outs]

    def f(xs, lib):
        total = 0
        for x, w in zip(xs, ws):
            wt = (
                torch.tensor(w, dtype=x.dtype)
                if lib == "t"
                else cr.tensor(w, device=x.device).to(x.dtype)
            )
            total = total + (x * wt).sum()
        return total

    return f


# ----------------------------------------------------------------------------- sequence layers

MODES = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("GRU", {}), ("LSTM", {})]
CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=False, h0=False),
    dict(num_layers=2, bidirectional=True, batch_first=False, h0=True),
    dict(num_layers=2, bidirectional=False, batch_first=True, h0=True, bias=False),
    dict(num_layers=1, bidirectional=True, batch_first=True, h0=False),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[0] + m[1].get("nonlinearity", ""))
def test_sequence_layer_matches_torch(mode, cfg, dtype, device):
    name, extra = mode
    cfg = dict(cfg)
    use_h0 = cfg.pop("h0")
    rng = np.random.default_rng(0)
    n_in, H, L, N = 3, 5, 4, 2
    tm = getattr(torch.nn, name)(n_in, H, **cfg, **extra).to(getattr(torch, dtype))
    cm = getattr(nn, name)(n_in, H, **cfg, **extra, device=device).to(getattr(cr, dtype))
    _copy(tm, cm)
    x = rng.standard_normal((N, L, n_in) if cfg["batch_first"] else (L, N, n_in)).astype(dtype)
    pairs = [_pair(x, device=device)]
    D = 2 if cfg["bidirectional"] else 1
    hx_t = hx_c = None
    if use_h0:
        states = [
            _pair(rng.standard_normal((cfg["num_layers"] * D, N, H)).astype(dtype), device=device)
            for _ in range(2 if name == "LSTM" else 1)
        ]
        pairs += states
        hx_t = tuple(s[0] for s in states) if name == "LSTM" else states[0][0]
        hx_c = tuple(s[1] for s in states) if name == "LSTM" else states[0][1]
    to, th = tm(pairs[0][0], hx_t)
    co, ch = cm(pairs[0][1], hx_c)
    t_outs = [to, *th] if name == "LSTM" else [to, th]
    c_outs = [co, *ch] if name == "LSTM" else [co, ch]
    for t, c in zip(t_outs, c_outs):
        _close(t, c, dtype, "forward", device)
    f = _loss(t_outs, rng)
    f(t_outs, "t").backward()
    f(c_outs, "c").backward()
    _check_grads(tm, cm, pairs, dtype)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m[0] + m[1].get("nonlinearity", ""))
@pytest.mark.parametrize("use_h0", [False, True])
def test_unbatched_sequence(mode, use_h0, device):
    name, extra = mode
    rng = np.random.default_rng(1)
    tm = getattr(torch.nn, name)(3, 4, num_layers=2, bidirectional=True, **extra).double()
    cm = getattr(nn, name)(3, 4, num_layers=2, bidirectional=True, **extra).double().to(device)
    _copy(tm, cm)
    pairs = [_pair(rng.standard_normal((5, 3)), device=device)]
    hx_t = hx_c = None
    if use_h0:
        states = [
            _pair(rng.standard_normal((4, 4)), device=device)
            for _ in range(2 if name == "LSTM" else 1)
        ]
        pairs += states
        hx_t = tuple(s[0] for s in states) if name == "LSTM" else states[0][0]
        hx_c = tuple(s[1] for s in states) if name == "LSTM" else states[0][1]
    to, th = tm(pairs[0][0], hx_t)
    co, ch = cm(pairs[0][1], hx_c)
    t_outs = [to, *th] if name == "LSTM" else [to, th]
    c_outs = [co, *ch] if name == "LSTM" else [co, ch]
    for t, c in zip(t_outs, c_outs):
        _close(t, c, "float64", "forward", device)
    f = _loss(t_outs, rng)
    f(t_outs, "t").backward()
    f(c_outs, "c").backward()
    _check_grads(tm, cm, pairs, "float64")


def test_lstm_unused_cell_state_and_h_n_only():
    """Gradients when only part of the outputs reach the loss (the others get zeros)."""
    rng = np.random.default_rng(2)
    tm, cm = torch.nn.LSTM(3, 4, 2).double(), nn.LSTM(3, 4, 2).double()
    _copy(tm, cm)
    tx, cx = _pair(rng.standard_normal((6, 2, 3)))
    (tm(tx)[1][0] ** 2).sum().backward()
    (cm(cx)[1][0] ** 2).sum().backward()
    _check_grads(tm, cm, [(tx, cx)], "float64")


def test_dropout_between_layers_train_vs_eval():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 3))
    tm, cm = torch.nn.GRU(3, 4, 3, dropout=0.5).double(), nn.GRU(3, 4, 3, dropout=0.5).double()
    _copy(tm, cm)
    tm.eval()
    cm.eval()
    _close(tm(torch.tensor(x))[0], cm(cr.tensor(x))[0], "float64", "eval: dropout is off")
    cm.train()
    cr.manual_seed(0)
    a = cm(cr.tensor(x))[0].data
    cr.manual_seed(0)
    b = cm(cr.tensor(x))[0].data
    c = cm(cr.tensor(x))[0].data
    np.testing.assert_array_equal(a, b)  # same seed, same masks
    assert not np.allclose(a, c)  # a fresh mask
    assert not np.allclose(a, tm(torch.tensor(x))[0].detach().numpy())
    # p = 0 in training is the identity, as torch's
    tm0, cm0 = torch.nn.LSTM(3, 4, 2, dropout=0.0).double(), nn.LSTM(3, 4, 2, dropout=0.0).double()
    _copy(tm0, cm0)
    _close(tm0(torch.tensor(x))[0], cm0(cr.tensor(x))[0], "float64")


def test_parameters_names_init_and_repr():
    for name in ("RNN", "GRU", "LSTM"):
        kw = dict(num_layers=2, bidirectional=True, batch_first=True, bias=False)
        tm, cm = getattr(torch.nn, name)(3, 16, **kw), getattr(nn, name)(3, 16, **kw)
        assert [(k, tuple(v.shape)) for k, v in tm.state_dict().items()] == [
            (k, tuple(v.shape)) for k, v in cm.state_dict().items()
        ]
        assert repr(tm) == repr(cm)
        assert len(cm.all_weights) == 4 and len(cm.all_weights[0]) == 2
    cm = nn.GRU(3, 16, 2)
    for p in cm.parameters():
        assert np.abs(p.data).max() <= 0.25 and p.data.std() > 0.1  # U(-1/4, 1/4)
    for name in ("RNNCell", "GRUCell", "LSTMCell"):
        tm, cm = getattr(torch.nn, name)(3, 16), getattr(nn, name)(3, 16)
        assert list(tm.state_dict()) == list(cm.state_dict())
        assert all(np.abs(p.data).max() <= 0.25 for p in cm.parameters())
        assert repr(tm) == repr(cm)
    with pytest.warns(UserWarning, match="dropout"):
        nn.GRU(3, 4, 1, dropout=0.2)


def test_recurrent_input_errors():
    m = nn.GRU(3, 4, 2)
    with pytest.raises(RuntimeError, match="input_size"):
        m(cr.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        m(cr.randn(5, 2, 3), cr.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(cr.randn(3))
    with pytest.raises(RuntimeError, match="dtype"):
        m(cr.randn(5, 2, 3, dtype=cr.float64))
    with pytest.raises(RuntimeError, match="tuple"):
        nn.LSTM(3, 4)(cr.randn(5, 2, 3), cr.zeros(1, 2, 4))


# ----------------------------------------------------------------------------- cells


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["RNNCell", "RNNCell-relu", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("use_h", [False, True])
def test_cell_matches_torch(name, batched, use_h, dtype, device):
    rng = np.random.default_rng(4)
    cls, _, nl = name.partition("-")
    kw = {"nonlinearity": nl} if nl else {}
    tm = getattr(torch.nn, cls)(3, 4, **kw).to(getattr(torch, dtype))
    cm = getattr(nn, cls)(3, 4, **kw, device=device, dtype=getattr(cr, dtype))
    _copy(tm, cm)
    lead = (2,) if batched else ()
    pairs = [_pair(rng.standard_normal(lead + (3,)).astype(dtype), device=device)]
    hx_t = hx_c = None
    if use_h:
        states = [
            _pair(rng.standard_normal(lead + (4,)).astype(dtype), device=device)
            for _ in range(2 if cls == "LSTMCell" else 1)
        ]
        pairs += states
        hx_t = tuple(s[0] for s in states) if cls == "LSTMCell" else states[0][0]
        hx_c = tuple(s[1] for s in states) if cls == "LSTMCell" else states[0][1]
    to, co = tm(pairs[0][0], hx_t), cm(pairs[0][1], hx_c)
    t_outs = list(to) if cls == "LSTMCell" else [to]
    c_outs = list(co) if cls == "LSTMCell" else [co]
    for t, c in zip(t_outs, c_outs):
        _close(t, c, dtype, "forward", device)
    f = _loss(t_outs, rng)
    f(t_outs, "t").backward()
    f(c_outs, "c").backward()
    _check_grads(tm, cm, pairs, dtype)


def test_fused_cells_gradcheck_and_double_backward():
    rng = np.random.default_rng(5)
    N, H = 2, 3

    def T(*s):
        return cr.tensor(rng.standard_normal(s), requires_grad=True)

    cases = [
        (rnn_ops.rnn_cell, (T(N, H), T(N, H), T(H, H), T(H))),
        (
            lambda x, h, w, b: rnn_ops.rnn_cell(x, h, w, b, "relu"),
            (T(N, H), T(N, H), T(H, H), T(H)),
        ),
        (rnn_ops.gru_cell, (T(N, 3 * H), T(N, H), T(3 * H, H), T(3 * H))),
        (rnn_ops.gru_cell, (T(1, N, 3 * H), T(1, N, H), T(3 * H, H), None)),
        (rnn_ops.lstm_cell, (T(N, 4 * H), T(N, H), T(N, H), T(4 * H, H), T(4 * H))),
        (rnn_ops.lstm_cell, (T(4 * H), T(H), T(H), T(4 * H, H), None)),
    ]
    for fn, args in cases:
        assert gradcheck(fn, args)
        assert gradgradcheck(fn, args)


@pytest.mark.parametrize(
    ("fused", "composed", "gates"),
    [
        (rnn_ops.gru_cell, rnn_ops.gru_cell_composed, 3),
        (rnn_ops.lstm_cell, rnn_ops.lstm_cell_composed, 4),
        (rnn_ops.rnn_cell, rnn_ops.rnn_cell_composed, 1),
    ],
)
@pytest.mark.parametrize("N", [1, 3])
def test_fused_cell_equals_composed_primitives(fused, composed, gates, N):
    rng = np.random.default_rng(6)
    H = 4
    args = [rng.standard_normal((N, gates * H)), rng.standard_normal((N, H))]
    if gates == 4:
        args.append(rng.standard_normal((N, H)))
    args += [rng.standard_normal((gates * H, H)), rng.standard_normal(gates * H)]
    res = []
    for fn in (fused, composed):
        ts = [cr.tensor(a, requires_grad=True) for a in args]
        out = fn(*ts)
        outs = out if isinstance(out, tuple) else (out,)
        sum(((o * (k + 1.5)) ** 2).sum() for k, o in enumerate(outs)).backward()
        res.append([o.data for o in outs] + [t.grad.data for t in ts])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_gru_layer_double_backward():
    """create_graph through a whole stacked GRU (the fused cells' differentiable rules)."""
    rng = np.random.default_rng(7)
    m = nn.GRU(2, 2, num_layers=2, bidirectional=True).double()
    x = cr.tensor(rng.standard_normal((3, 1, 2)), requires_grad=True)
    assert gradgradcheck(lambda x: m(x)[0], (x,))
    tm = torch.nn.GRU(2, 2, num_layers=2, bidirectional=True).double()
    _copy(tm, m)
    tx, cx = _pair(rng.standard_normal((3, 2, 2)))
    (gt,) = torch.autograd.grad(tm(tx)[0].sum(), tx, create_graph=True)
    (gc,) = cr.autograd.grad(m(cx)[0].sum(), cx, create_graph=True)
    _close(gt, gc, "float64")
    (gt**2).sum().backward()
    (gc**2).sum().backward()
    _check_grads(tm, m, [(tx, cx)], "float64")


# ----------------------------------------------------------------------------- attention


def _sdpa_case(kind: str, rng):
    L, S = 4, 6
    if kind == "none":
        return {}
    if kind == "bool":
        m = rng.random((L, S)) > 0.5
        m[1] = False  # a query that may attend nothing: zeros, as torch
        return {"attn_mask": m}
    if kind == "float":
        return {"attn_mask": rng.standard_normal((2, 1, L, S))}
    if kind == "causal":
        return {"is_causal": True}
    return {"scale": 0.3}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal", "scale"])
def test_sdpa_matches_torch(kind, dtype, device):
    rng = np.random.default_rng(8)
    arrays = [
        rng.standard_normal(s).astype(dtype) for s in ((2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7))
    ]
    pairs = [_pair(a, device=device) for a in arrays]
    kw = _sdpa_case(kind, rng)
    if kw.get("attn_mask") is not None and kw["attn_mask"].dtype.kind == "f":
        kw["attn_mask"] = kw["attn_mask"].astype(dtype)
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    to = TF.scaled_dot_product_attention(*(p[0] for p in pairs), **tkw)
    co = F.scaled_dot_product_attention(*(p[1] for p in pairs), **kw)  # host masks: moved
    _close(to, co, dtype, "output", device)
    f = _loss([to], rng)
    f([to], "t").backward()
    f([co], "c").backward()
    for t, c in pairs:
        _close(t.grad, c.grad, dtype, "grad", device)
        assert np.isfinite(c.grad.detach().cpu().numpy()).all()


def test_sdpa_errors_and_dropout():
    q = cr.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=cr.zeros(3, 3), is_causal=True)
    cr.manual_seed(0)
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    b = F.scaled_dot_product_attention(q, q, q)
    assert not np.allclose(a.data, b.data)


E, NH, LQ, SK, NB = 8, 2, 4, 5, 3
_KPM = np.zeros((NB, SK), bool)
_KPM[0, -2:] = True
_AM = np.random.default_rng(9).random((LQ, SK)) > 0.7
_AM[:, 0] = False
_CAUSAL = np.triu(np.ones((LQ, LQ), bool), 1)

MHA_CASES = [
    ("plain", {}, {}, {}),
    ("self", {}, {}, {"self_attn": True}),
    ("unbatched", {}, {}, {"batched": False}),
    ("batch_first_self", {"batch_first": True}, {}, {"self_attn": True}),
    ("no_weights", {}, {"need_weights": False}, {}),
    ("per_head_weights", {}, {"average_attn_weights": False}, {}),
    ("kpm", {}, {"key_padding_mask": _KPM}, {}),
    ("kpm_no_weights", {}, {"key_padding_mask": _KPM, "need_weights": False}, {}),
    ("bool_mask", {}, {"attn_mask": _AM}, {}),
    ("float_mask", {}, {"attn_mask": np.random.default_rng(10).standard_normal((LQ, SK))}, {}),
    (
        "3d_mask_float_kpm",
        {},
        {
            "attn_mask": np.random.default_rng(11).standard_normal((NB * NH, LQ, SK)),
            "key_padding_mask": np.random.default_rng(12).standard_normal((NB, SK)),
        },
        {},
    ),
    (
        "causal_sdpa",
        {},
        {"attn_mask": _CAUSAL, "is_causal": True, "need_weights": False},
        {"self_attn": True},
    ),
    ("causal_weights", {}, {"attn_mask": _CAUSAL, "is_causal": True}, {"self_attn": True}),
    ("kdim_vdim", {"kdim": 6, "vdim": 7}, {"key_padding_mask": _KPM}, {}),
    ("no_bias", {"bias": False}, {}, {}),
    ("bias_kv", {"add_bias_kv": True}, {"key_padding_mask": _KPM}, {}),
    ("zero_attn", {"add_zero_attn": True}, {"key_padding_mask": _KPM, "attn_mask": _AM}, {}),
    (
        "unbatched_3d_mask",
        {},
        {"attn_mask": np.random.default_rng(13).standard_normal((NH, LQ, SK))},
        {"batched": False},
    ),
]


def _mha_run(mk, fk, opts, dtype, train=False, device="cpu"):
    rng = np.random.default_rng(14)
    bf, batched = mk.get("batch_first", False), opts.get("batched", True)
    tm = torch.nn.MultiheadAttention(E, NH, **mk).to(getattr(torch, dtype))
    cm = nn.MultiheadAttention(E, NH, **mk, device=device).to(getattr(cr, dtype))
    _copy(tm, cm)
    tm.train(train)
    cm.train(train)

    def shp(n, d):
        return ((NB, n, d) if bf else (n, NB, d)) if batched else (n, d)

    L = LQ
    S = LQ if opts.get("self_attn") else SK
    pairs = [_pair(rng.standard_normal(shp(L, E)).astype(dtype), device=device)]
    if opts.get("self_attn"):
        pairs = pairs * 3
    else:
        pairs += [
            _pair(rng.standard_normal(shp(S, mk.get("kdim", E))).astype(dtype), device=device),
            _pair(rng.standard_normal(shp(S, mk.get("vdim", E))).astype(dtype), device=device),
        ]
    fk = {
        k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
        for k, v in fk.items()
    }
    if not batched and "key_padding_mask" in fk:
        fk["key_padding_mask"] = fk["key_padding_mask"][0]
    tfk = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in fk.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to, tw = tm(*(p[0] for p in pairs), **tfk)
    co, cw = cm(*(p[1] for p in pairs), **fk)
    return tm, cm, pairs, (to, tw), (co, cw), rng


@pytest.mark.parametrize("case", MHA_CASES, ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_matches_torch(case, device):
    _, mk, fk, opts = case
    dtype = "float64"
    tm, cm, pairs, (to, tw), (co, cw), rng = _mha_run(mk, fk, opts, dtype, device=device)
    _close(to, co, dtype, "attn_output", device)
    t_outs, c_outs = [to], [co]
    if tw is None:
        assert cw is None
    else:
        _close(tw, cw, dtype, "attn_weights", device)
        t_outs.append(tw)
        c_outs.append(cw)
    f = _loss(t_outs, rng)
    f(t_outs, "t").backward()
    f(c_outs, "c").backward()
    uniq = list({id(p[0]): p for p in pairs}.values())
    _check_grads(tm, cm, uniq, dtype)


@pytest.mark.parametrize("case", [MHA_CASES[0], MHA_CASES[7], MHA_CASES[13]], ids=lambda c: c[0])
def test_multihead_attention_float32(case, device):
    _, mk, fk, opts = case
    tm, cm, pairs, (to, tw), (co, cw), rng = _mha_run(mk, fk, opts, "float32", device=device)
    _close(to, co, "float32", "attn_output", device)
    f = _loss([to], rng)
    f([to], "t").backward()
    f([co], "c").backward()
    _check_grads(tm, cm, list({id(p[0]): p for p in pairs}.values()), "float32")


def test_multihead_attention_init_names_and_dropout():
    tm, cm = (
        torch.nn.MultiheadAttention(16, 4, kdim=6, vdim=7),
        nn.MultiheadAttention(16, 4, kdim=6, vdim=7),
    )
    assert [(k, tuple(v.shape)) for k, v in tm.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in cm.state_dict().items()
    ]
    m = nn.MultiheadAttention(16, 4)
    assert np.all(m.in_proj_bias.data == 0) and np.all(m.out_proj.bias.data == 0)
    bound = math.sqrt(6 / (16 + 48))  # xavier_uniform_ on (48, 16)
    assert np.abs(m.in_proj_weight.data).max() <= bound and m.in_proj_weight.data.std() > bound / 3
    with pytest.raises(AssertionError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    # dropout on the weights in training only; evaluation matches torch
    tm, cm = (
        torch.nn.MultiheadAttention(8, 2, dropout=0.5).double(),
        nn.MultiheadAttention(8, 2, dropout=0.5).double(),
    )
    _copy(tm, cm)
    x = np.random.default_rng(15).standard_normal((4, 2, 8))
    tm.eval()
    cm.eval()
    _close(tm(*[torch.tensor(x)] * 3)[0], cm(*[cr.tensor(x)] * 3)[0], "float64")
    cm.train()
    assert not np.allclose(
        cm(*[cr.tensor(x)] * 3)[0].data, tm(*[torch.tensor(x)] * 3)[0].detach().numpy()
    )
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        cm(*[cr.tensor(x)] * 3, is_causal=True)


TEL_CASES = [
    ("post_norm", {}, {}, False),
    ("pre_norm_gelu", {"norm_first": True, "activation": "gelu"}, {}, False),
    ("no_bias_batch_first", {"bias": False, "batch_first": True}, {}, False),
    ("kpm", {}, {"src_key_padding_mask": "kpm"}, False),
    ("causal", {}, {"src_mask": "causal_bool", "is_causal": True}, False),
    ("encoder", {}, {}, True),
    ("encoder_masks", {}, {"mask": "causal_float", "src_key_padding_mask": "kpm"}, True),
    (
        "encoder_pre_norm_batch_first",
        {"norm_first": True, "batch_first": True},
        {"mask": "causal_float"},
        True,
    ),
]


@pytest.mark.parametrize("case", TEL_CASES, ids=[c[0] for c in TEL_CASES])
@pytest.mark.parametrize("train", [False, True])
def test_transformer_encoder_matches_torch(case, train, device):
    _, lk, fk, enc = case
    rng = np.random.default_rng(16)
    L, N = 5, 3
    bf = lk.get("batch_first", False)
    masks = {
        "kpm": np.arange(L)[None, :] >= np.array([L, L - 2, L - 1])[:, None],
        "causal_bool": np.triu(np.ones((L, L), bool), 1),
        "causal_float": np.triu(np.full((L, L), -np.inf), 1),
    }
    fk = {k: masks[v] if isinstance(v, str) else v for k, v in fk.items()}
    # dropout 0 in training: the training code path, deterministic
    tl = torch.nn.TransformerEncoderLayer(E, NH, 16, dropout=0.0, **lk).double()
    cl = nn.TransformerEncoderLayer(E, NH, 16, dropout=0.0, **lk).double()
    if enc:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tm = torch.nn.TransformerEncoder(
                tl, 2, norm=torch.nn.LayerNorm(E).double(), enable_nested_tensor=False
            )
        cm = nn.TransformerEncoder(cl, 2, norm=nn.LayerNorm(E).double())
    else:
        tm, cm = tl, cl
    cm.to(device)
    _copy(tm, cm)
    tm.train(train)
    cm.train(train)
    pairs = [_pair(rng.standard_normal((N, L, E) if bf else (L, N, E)), device=device)]
    tfk = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in fk.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to = tm(pairs[0][0], **tfk)
    co = cm(pairs[0][1], **fk)  # the host masks go to the input's device
    _close(to, co, "float64", "output", device)
    f = _loss([to], rng)
    f([to], "t").backward()
    f([co], "c").backward()
    _check_grads(tm, cm, pairs, "float64")


def test_transformer_encoder_layers_are_independent_copies():
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    enc = nn.TransformerEncoder(layer, 3)
    ps = [id(p) for p in enc.parameters()]
    assert len(ps) == len(set(ps)) == 3 * len(list(layer.parameters()))
    assert np.array_equal(enc.layers[0].linear1.weight.data, enc.layers[2].linear1.weight.data)
    assert enc.layers[0].linear1.weight is not enc.layers[2].linear1.weight


# ----------------------------------------------------------------------------- training


def _train_side_by_side(t_model, c_model, t_step, c_step, batches, lr=1e-2, device="cpu"):
    c_model.to(device)
    _copy(t_model, c_model)
    t_opt = torch.optim.Adam(t_model.parameters(), lr=lr)
    c_opt = cr.optim.Adam(c_model.parameters(), lr=lr)
    t_losses, c_losses = [], []
    for xb, yb in batches:
        t_opt.zero_grad()
        loss = t_step(torch.tensor(xb), torch.tensor(yb))
        loss.backward()
        t_opt.step()
        t_losses.append(loss.item())
        c_opt.zero_grad()
        loss = c_step(cr.tensor(xb, device=device), cr.tensor(yb, device=device))
        loss.backward()
        c_opt.step()
        c_losses.append(loss.item())
    return np.array(t_losses), np.array(c_losses)


def test_gru_classifier_trains_like_torch(device):
    rng = np.random.default_rng(17)

    class TNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(4, 16, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.gru(x)[1][-1])

    class CNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 16, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.gru(x)[1][-1])

    torch.manual_seed(0)
    tnet, cnet = TNet().double(), CNet().double()
    xs = [rng.standard_normal((8, 6, 4)) for _ in range(30)]
    batches = [(x, x[:, :, :3].sum(1).argmax(1)) for x in xs]  # learnable labels
    tl, cl = _train_side_by_side(
        tnet,
        cnet,
        lambda x, y: TF.cross_entropy(tnet(x), y),
        lambda x, y: F.cross_entropy(cnet(x), y),
        batches,
        device=device,
    )
    np.testing.assert_allclose(cl, tl, rtol=1e-11)
    assert tl[-5:].mean() < tl[:5].mean()  # it learned something
    for name, p in tnet.named_parameters():
        c = cnet.get_parameter(name)
        assert c.device.type == device
        np.testing.assert_allclose(
            c.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-8, atol=1e-10
        )


def test_transformer_encoder_trains_like_torch(device):
    rng = np.random.default_rng(18)

    def build(lib):
        layer = lib.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        if lib is torch.nn:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enc = lib.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        else:
            enc = lib.TransformerEncoder(layer, 1)
        return lib.ModuleDict({"enc": enc, "head": lib.Linear(8, 1)}).double()

    torch.manual_seed(0)
    tnet, cnet = build(torch.nn), build(nn)
    batches = [(rng.standard_normal((4, 5, 8)), rng.standard_normal(4)) for _ in range(30)]

    def step(net, F_):
        def f(x, y):
            return F_.mse_loss(net["head"](net["enc"](x).mean(1)).squeeze(-1), y)

        return f

    tl, cl = _train_side_by_side(tnet, cnet, step(tnet, TF), step(cnet, F), batches, device=device)
    np.testing.assert_allclose(cl, tl, rtol=1e-11)
    for name, p in tnet.named_parameters():
        c = cnet.get_parameter(name)
        assert c.device.type == device
        np.testing.assert_allclose(
            c.detach().cpu().numpy(), p.detach().numpy(), rtol=1e-8, atol=1e-10
        )
