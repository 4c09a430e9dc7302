"""Mixed precision: ``cr.autocast`` against ``torch.autocast`` on the CPU (dtypes, values and
gradients), autocast on CUDA (the fake CuPy where there is no GPU), ``cr.bfloat16`` and its
promotion rules, and ``cr.amp.GradScaler`` against ``torch.amp.GradScaler('cpu')``."""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import dtypes
from chainrule.amp.autocast import _amp

try:
    import ml_dtypes  # noqa: F401

    HAVE_BF16 = True
except ImportError:
    HAVE_BF16 = False

needs_bf16 = pytest.mark.skipif(not HAVE_BF16, reason="bfloat16 needs ml_dtypes")

LOW = [
    pytest.param(cr.float16, torch.float16, 2e-3, id="float16"),
    pytest.param(cr.bfloat16, torch.bfloat16, 1.6e-2, marks=needs_bf16, id="bfloat16"),
]


def host(t: cr.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _close(a: np.ndarray, b: np.ndarray, eps: float) -> None:
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=4 * eps * scale)


@pytest.fixture(autouse=True)
def _no_autocast_leaks() -> None:
    yield
    assert cr.autograd.grad_mode.state.autocast is None
    assert not cr.amp.is_autocast_enabled("cpu") and not cr.amp.is_autocast_enabled("cuda")


# ----------------------------------------------------------------------------- bfloat16
@needs_bf16
def test_bfloat16_is_a_floating_dtype_with_torchs_promotion() -> None:
    b = cr.tensor(np.ones(3, dtype=ml_dtypes.bfloat16))
    assert b.dtype is cr.bfloat16 and cr.bfloat16.is_floating_point and cr.bfloat16.itemsize == 2
    assert cr.zeros(2, dtype=cr.bfloat16).dtype is cr.bfloat16
    assert cr.ones(2).to(cr.bfloat16).dtype is cr.bfloat16
    tb = torch.ones(3, dtype=torch.bfloat16)
    others = {
        "float16": (cr.ones(3, dtype=cr.float16), torch.ones(3, dtype=torch.float16)),
        "float32": (cr.ones(3), torch.ones(3)),
        "float64": (cr.ones(3, dtype=cr.float64), torch.ones(3, dtype=torch.float64)),
        "int64": (cr.ones(3, dtype=cr.int64), torch.ones(3, dtype=torch.int64)),
        "0-d float32": (cr.tensor(1.0), torch.tensor(1.0)),
        "float": (0.5, 0.5),
        "int": (2, 2),
    }
    for name, (o, to) in others.items():
        want = torch.result_type(tb, to)
        assert str(dtypes.promote(b, o)) == str(want).split(".")[1], name
        assert str(dtypes.promote(o, b)) == str(torch.result_type(to, tb)).split(".")[1], name
    assert (b + cr.ones(3, dtype=cr.float16)).dtype is cr.float32  # bf16 + f16 -> f32, as torch
    assert dtypes.to_dtype("bfloat16") is cr.bfloat16
    assert dtypes.to_dtype(ml_dtypes.bfloat16) is cr.bfloat16


@needs_bf16
def test_bfloat16_tensors_behave_as_floats() -> None:
    """bfloat16's NumPy kind is 'V', not 'f': everything that asks "floating?" must still say yes,
    and Python scalars must not push it to float32 (NumPy's rule for ml_dtypes)."""
    x = cr.tensor([1.0, 2.0, -0.3]).to(cr.bfloat16).requires_grad_()
    assert x.is_floating_point() and x.requires_grad
    assert (
        repr(x)
        == "tensor([ 1.    ,  2.    , -0.3008], dtype=chainrule.bfloat16, requires_grad=True)"
    )
    for y in (x * 0.5, x / 2, 1.5 - x, x**2, x.mean(), x.clamp(0, 1), x.masked_fill(x > 1, 0.5)):
        assert y.dtype is cr.bfloat16, y
    np.testing.assert_array_equal(host(x * 0.5), [0.5, 1.0, -0.150390625])
    (x.float() * cr.tensor([1.0, 2.0, 3.0])).sum().backward()  # the cast is differentiable
    assert x.grad.dtype is cr.bfloat16 and host(x.grad).tolist() == [1.0, 2.0, 3.0]
    m = cr.nn.BatchNorm1d(3).to(cr.bfloat16)
    dts = {k: v.dtype for k, v in m.state_dict().items()}
    assert (
        dts["weight"] is dts["running_var"] is cr.bfloat16
        and dts["num_batches_tracked"] is cr.int64
    )
    with pytest.raises(RuntimeError, match="NaN"), cr.autograd.detect_anomaly():
        (x * float("nan")).sum().backward()


def test_bfloat16_without_ml_dtypes_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cr.bfloat16, "np", None)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # `import ml_dtypes` now fails
    assert cr.bfloat16.is_floating_point and repr(cr.bfloat16) == "chainrule.bfloat16"
    with pytest.raises(ImportError, match="pip install ml_dtypes"):
        cr.zeros(2, dtype=cr.bfloat16)
    with pytest.raises(ImportError, match="pip install ml_dtypes"):
        cr.autocast("cpu")  # the CPU's default autocast dtype is bfloat16, as in torch
    with cr.autocast("cpu", dtype=cr.float16):  # float16 needs nothing extra
        assert F.linear(cr.ones(1, 2), cr.ones(3, 2)).dtype is cr.float16


# ----------------------------------------------------------------------------- CPU parity
def _inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((4, 6)).astype(np.float32),
        "w": rng.standard_normal((5, 6)).astype(np.float32) * 0.5,
        "b": rng.standard_normal(5).astype(np.float32),
        "img": rng.standard_normal((2, 3, 7, 7)).astype(np.float32),
        "k": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "kt": rng.standard_normal((3, 4, 3, 3)).astype(np.float32) * 0.3,
        "seq": rng.standard_normal((2, 3, 9)).astype(np.float32),
        "k1": rng.standard_normal((4, 3, 3)).astype(np.float32) * 0.3,
        "y": np.array([0, 1, 2, 4]),
        "p": rng.uniform(0.1, 0.9, (4, 5)).astype(np.float32),
    }


def _cases(m: object, f: object) -> dict:
    """name -> fn(tensor maker, params) for chainrule (m=cr, f=F) and torch (m=torch, f=TF)."""
    return {
        "linear": lambda T, P: f.linear(T("x"), P["w"], P["b"]),
        "matmul": lambda T, P: m.matmul(T("x"), P["w"].t()),
        "mm": lambda T, P: m.mm(T("x"), P["w"].t()),
        "bmm": lambda T, P: m.bmm(T("x")[None], P["w"].t()[None]),
        "einsum": lambda T, P: m.einsum("ij,kj->ik", T("x"), P["w"]),
        "conv1d": lambda T, P: f.conv1d(T("seq"), P["k1"]),
        "conv2d": lambda T, P: f.conv2d(T("img"), P["k"], padding=1),
        "conv_transpose2d": lambda T, P: f.conv_transpose2d(T("img"), P["kt"], stride=2),
        "relu(linear)": lambda T, P: f.relu(f.linear(T("x"), P["w"], P["b"])),
        "softmax": lambda T, P: f.softmax(T("x") @ P["w"].t(), -1),
        "cross_entropy": lambda T, P: f.cross_entropy(f.linear(T("x"), P["w"], P["b"]), T("y")),
        "bce_with_logits": lambda T, P: f.binary_cross_entropy_with_logits(
            f.linear(T("x"), P["w"], P["b"]), T("p")
        ),
        "mse": lambda T, P: f.mse_loss(f.linear(T("x"), P["w"], P["b"]), T("p")),
        "float32 softmax": lambda T, P: f.softmax(T("x"), -1) * P["b"].sum(),
    }


@pytest.mark.parametrize("name", list(_cases(cr, F)))
@pytest.mark.parametrize(("cdt", "tdt", "eps"), LOW)
def test_cpu_autocast_matches_torch(name: str, cdt: object, tdt: object, eps: float) -> None:
    a = _inputs()
    params = {k: cr.tensor(a[k], requires_grad=True) for k in ("w", "b", "k", "kt", "k1")}
    tparams = {k: torch.tensor(a[k], requires_grad=True) for k in params}
    with cr.autocast("cpu", dtype=cdt):
        out = _cases(cr, F)[name](lambda k: cr.tensor(a[k]), params)
    with torch.autocast("cpu", dtype=tdt):
        tout = _cases(torch, TF)[name](lambda k: torch.tensor(a[k]), tparams)
    assert str(out.dtype) == str(tout.dtype).replace("torch", "chainrule")
    _close(host(out), tout.detach().float().numpy(), eps)
    gt = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(tout.shape)))
    out.backward(cr.tensor(gt.numpy()).to(out.dtype))
    tout.backward(gt.to(tout.dtype))
    for k, p in params.items():
        tg = tparams[k].grad
        if tg is None:
            assert p.grad is None, k
            continue
        assert p.grad.dtype is cr.float32, k  # float32 master weights get float32 gradients
        _close(p.grad.numpy(), tg.numpy(), eps)


def test_outside_autocast_nothing_changes() -> None:
    x, w = cr.randn(3, 4), cr.randn(5, 4)
    assert F.linear(x, w).dtype is cr.float32
    with cr.autocast("cpu", dtype=cr.float16):
        assert cr.amp.is_autocast_enabled("cpu")
    assert not cr.amp.is_autocast_enabled("cpu")
    assert F.linear(x, w).dtype is cr.float32


def test_float64_and_integers_are_not_cast() -> None:
    x64, w64 = cr.randn(3, 4, dtype=cr.float64), cr.randn(5, 4, dtype=cr.float64)
    with cr.autocast("cpu", dtype=cr.float16):
        assert F.linear(x64, w64).dtype is cr.float64
        assert (cr.arange(6).reshape(2, 3) @ cr.arange(6).reshape(3, 2)).dtype is cr.int64
        assert F.cross_entropy(cr.randn(2, 3, dtype=cr.float64), cr.tensor([0, 2])).dtype is (
            cr.float64
        )


def test_low_precision_inputs_of_float32_ops_are_upcast() -> None:
    h = cr.randn(4, 5, dtype=cr.float16, requires_grad=True)
    with cr.autocast("cpu", dtype=cr.float16):
        loss = F.cross_entropy(h, cr.tensor([0, 1, 2, 3]))
        p = cr.prod(h[0])
    assert loss.dtype is cr.float32 and p.dtype is cr.float32
    loss.backward()
    assert h.grad.dtype is cr.float16  # the gradient comes back in the input's dtype


# ----------------------------------------------------------------------------- the region
def test_nested_autocast_and_enabled_false() -> None:
    x, w = cr.randn(3, 4), cr.randn(5, 4)
    with cr.autocast("cpu", dtype=cr.float16):
        assert cr.amp.is_autocast_enabled("cpu") and not cr.amp.is_autocast_enabled("cuda")
        assert cr.amp.get_autocast_dtype("cpu") is cr.float16
        with cr.autocast("cpu", enabled=False):
            assert F.linear(x, w).dtype is cr.float32
            assert not cr.amp.is_autocast_enabled("cpu")
            with cr.autocast("cpu"):  # no dtype: the enclosing region's, as torch
                assert F.linear(x, w).dtype is cr.float16
        assert F.linear(x, w).dtype is cr.float16
        if HAVE_BF16:
            with cr.autocast("cpu", dtype=cr.bfloat16):
                assert F.linear(x, w).dtype is cr.bfloat16
            assert F.linear(x, w).dtype is cr.float16
    assert F.linear(x, w).dtype is cr.float32
    assert cr.amp.get_autocast_dtype("cpu") is cr.bfloat16
    assert cr.amp.get_autocast_dtype("cuda") is cr.float16
    assert cr.amp.autocast is cr.autocast


def test_region_is_restored_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError), cr.autocast("cpu", dtype=cr.float16):
        raise ZeroDivisionError
    assert F.linear(cr.randn(1, 2), cr.randn(3, 2)).dtype is cr.float32


def test_decorator_form() -> None:
    @cr.autocast("cpu", dtype=cr.float16)
    def forward(x: cr.Tensor, w: cr.Tensor) -> cr.Tensor:
        assert cr.amp.is_autocast_enabled("cpu")
        return F.linear(x, w)

    x, w = cr.randn(3, 4), cr.randn(5, 4)
    assert forward(x, w).dtype is cr.float16
    assert forward(x, w).dtype is cr.float16  # reusable
    assert F.linear(x, w).dtype is cr.float32
    assert forward.__name__ == "forward"


def test_bad_arguments_like_torch() -> None:
    with pytest.raises(ValueError, match="device_type"):
        cr.autocast("tpu")
    with pytest.raises(ValueError, match="device_type"):
        cr.autocast(0)
    with pytest.warns(UserWarning, match="not supported"):
        ac = cr.autocast("cpu", dtype=cr.float32)
    with ac:
        assert not cr.amp.is_autocast_enabled("cpu")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ac = cr.autocast("cuda")
    with ac:
        assert not cr.amp.is_autocast_enabled("cuda")


def test_parameter_casts_are_cached_per_region() -> None:
    lin = cr.nn.Linear(4, 4)
    x = cr.randn(2, 4)
    state = _amp()
    with cr.autocast("cpu", dtype=cr.float16):
        y = lin(lin(x))  # the same weight twice: cast once
        assert len(state.cache) == 2  # weight and bias
        with cr.no_grad():
            lin(x)  # a no_grad cast is kept apart (it carries no graph)
        assert len(state.cache) == 4
        with cr.no_grad():
            lin.weight.mul_(0.5)  # in place: the cached cast is stale
        z = lin(x)
        np.testing.assert_allclose(
            host(z), host(F.linear(x, lin.weight.detach() * 1, lin.bias.detach())), atol=2e-2
        )
    assert len(state.cache) == 0  # dropped when the outermost region exits
    y.sum().backward()
    assert lin.weight.grad.dtype is cr.float32
    with cr.autocast("cpu", dtype=cr.float16, cache_enabled=False):
        lin(x)
        assert len(state.cache) == 0


def test_autocast_is_per_thread() -> None:
    seen = []

    def worker() -> None:
        seen.append(F.linear(cr.randn(1, 2), cr.randn(3, 2)).dtype)

    with cr.autocast("cpu", dtype=cr.float16):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen == [cr.float32]


# ----------------------------------------------------------------------------- CUDA
def test_cuda_autocast_casts_cuda_tensors_only(cuda: str) -> None:
    x, w = cr.randn(3, 4, device=cuda), cr.randn(5, 4, device=cuda, requires_grad=True)
    xc, wc = cr.randn(3, 4), cr.randn(5, 4)
    with cr.autocast("cuda"):
        assert cr.amp.get_autocast_dtype("cuda") is cr.float16
        h = F.linear(x, w)
        assert h.dtype is cr.float16 and h.is_cuda
        assert F.linear(xc, wc).dtype is cr.float32  # CPU tensors: untouched
        # CUDA's float32 list (wider than the CPU's): softmax, sum, exp, log_softmax
        assert F.softmax(h, -1).dtype is cr.float32
        assert h.sum().dtype is cr.float32
        assert cr.sum(h, dtype=cr.float16).dtype is cr.float16  # an explicit dtype wins
        assert h.exp().dtype is cr.float32
        assert F.log_softmax(h, -1).dtype is cr.float32
        img = cr.randn(2, 3, 6, 6, device=cuda)
        assert F.conv2d(img, cr.randn(4, 3, 3, 3, device=cuda)).dtype is cr.float16
        loss = F.cross_entropy(h, cr.tensor([0, 1, 4], device=cuda))
        assert loss.dtype is cr.float32
        with pytest.raises(RuntimeError, match="binary_cross_entropy_with_logits"):
            F.binary_cross_entropy(h.sigmoid(), cr.ones(3, 5, device=cuda))
    loss.backward()
    assert w.grad.dtype is cr.float32 and w.grad.is_cuda
    with cr.autocast("cpu", dtype=cr.float16):
        assert F.linear(x, w).dtype is cr.float32  # CPU autocast leaves CUDA tensors alone
        assert F.linear(xc, wc).dtype is cr.float16


@pytest.mark.parametrize(("cdt", "tdt", "eps"), LOW)
def test_cuda_autocast_values_and_gradients(
    cuda: str, cdt: object, tdt: object, eps: float
) -> None:
    a = _inputs(3)
    w = cr.tensor(a["w"], requires_grad=True, device=cuda)
    k = cr.tensor(a["k"], requires_grad=True, device=cuda)
    with cr.autocast("cuda", dtype=cdt):
        h = F.linear(cr.tensor(a["x"], device=cuda), w)
        c = F.conv2d(cr.tensor(a["img"], device=cuda), k, padding=1)
        e = cr.einsum("ij,kj->ik", cr.tensor(a["x"], device=cuda), w)
    assert h.dtype is cdt and c.dtype is cdt and e.dtype is cdt
    tw, tk = torch.tensor(a["w"], requires_grad=True), torch.tensor(a["k"], requires_grad=True)
    with torch.autocast("cpu", dtype=tdt):  # same arithmetic: low operands, float32 sums
        th = TF.linear(torch.tensor(a["x"]), tw)
        tc = TF.conv2d(torch.tensor(a["img"]), tk, padding=1)
    _close(host(h), th.detach().float().numpy(), eps)
    _close(host(e), th.detach().float().numpy(), eps)
    _close(host(c), tc.detach().float().numpy(), eps)
    (h.sum() + c.sum()).backward()
    (th.sum() + tc.sum()).backward()
    assert w.grad.dtype is cr.float32 and w.grad.is_cuda
    _close(host(w.grad), tw.grad.numpy(), 4 * eps)
    _close(host(k.grad), tk.grad.numpy(), 4 * eps)


# ----------------------------------------------------------------------------- GradScaler
def _scaler_run(lib: str, device: str = "cpu", steps: int = 14) -> tuple[list, list, dict, object]:
    """Both libraries: same model, same data, inf/NaN gradients injected at fixed steps."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    xs = rng.standard_normal((steps, 5, 4)).astype(np.float32)
    bad = {2: np.inf, 3: np.nan, 9: -np.inf}
    m = cr if lib == "cr" else torch
    w = m.tensor(w0, requires_grad=True)
    if lib == "cr" and device != "cpu":
        w = cr.tensor(w0, device=device, requires_grad=True)
    opt = (cr.optim.SGD if lib == "cr" else torch.optim.SGD)([w], lr=0.1)
    scaler = (cr.amp.GradScaler if lib == "cr" else torch.amp.GradScaler)(
        device, init_scale=2.0**10, growth_interval=3
    )
    scales, stepped = [], []
    for i in range(steps):
        opt.zero_grad()
        x = m.tensor(xs[i]) if lib == "torch" else cr.tensor(xs[i], device=device)
        loss = ((x @ w.t()) ** 2).mean()
        scaler.scale(loss).backward()
        if i in bad:
            if lib == "cr":
                w.grad.data[0, 1] = bad[i]
            else:
                w.grad[0, 1] = bad[i]
        before = np.array(w.detach().cpu().numpy())
        scaler.step(opt)
        scaler.update()
        stepped.append(not np.array_equal(before, w.detach().cpu().numpy()))
        scales.append(scaler.get_scale())
    return scales, stepped, scaler.state_dict(), w.detach().cpu().numpy()


def test_grad_scaler_matches_torch() -> None:
    scales, stepped, sd, w = _scaler_run("cr")
    tscales, tstepped, tsd, tw = _scaler_run("torch")
    assert scales == tscales
    assert stepped == tstepped and stepped.count(False) == 3
    assert sd == tsd
    np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)


def test_grad_scaler_on_cuda(cuda: str) -> None:
    scales, stepped, sd, w = _scaler_run("cr", cuda)
    tscales, tstepped, tsd, tw = _scaler_run("torch")
    assert scales == tscales and stepped == tstepped and sd == tsd
    np.testing.assert_allclose(w, tw, rtol=1e-5, atol=1e-6)


def test_grad_scaler_state_dict_round_trip() -> None:
    s = cr.amp.GradScaler("cpu", init_scale=8.0, growth_factor=4.0, growth_interval=7)
    w = cr.ones(2, requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.1)
    for _ in range(2):
        s.scale((w * w).sum()).backward()
        s.step(opt)
        s.update()
    sd = s.state_dict()
    assert sd == {
        "scale": 8.0,
        "growth_factor": 4.0,
        "backoff_factor": 0.5,
        "growth_interval": 7,
        "_growth_tracker": 2,
    }
    t = cr.amp.GradScaler("cpu")
    t.load_state_dict(sd)
    assert t.state_dict() == sd and t.get_scale() == 8.0
    ts = torch.amp.GradScaler("cpu")
    ts.load_state_dict(sd)
    assert ts.state_dict() == sd
    u = pickle.loads(pickle.dumps(s))
    assert u.state_dict() == sd
    with pytest.raises(RuntimeError, match="empty"):
        t.load_state_dict({})
    off = cr.amp.GradScaler("cpu", enabled=False)
    assert off.state_dict() == {} and off.get_scale() == 1.0


def test_grad_scaler_rules() -> None:
    w = cr.ones(2, requires_grad=True)
    opt = cr.optim.SGD([w], lr=0.5)
    s = cr.amp.GradScaler("cpu", init_scale=4.0)
    loss = s.scale((w * w).sum())
    assert float(loss) == 8.0
    assert [float(v) for v in s.scale([w.sum(), (w.sum(),)])[1]] == [8.0]
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [8.0, 8.0])
    s.unscale_(opt)  # e.g. to clip: the gradients are the true ones now
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0])
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)  # does not unscale a second time
    np.testing.assert_array_equal(w.detach().numpy(), [0.0, 0.0])
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    s.update()
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: None)
    s.update(2.0**5)
    assert s.get_scale() == 32.0
    with pytest.raises(AssertionError, match="No inf checks"):
        s.update()
    w.grad = cr.ones(2, dtype=cr.float16)
    with pytest.raises(ValueError, match="FP16 gradients"):
        s.unscale_(opt)
    off = cr.amp.GradScaler("cpu", enabled=False)
    assert off.scale(loss) is loss
    with pytest.raises(AssertionError, match="growth factor"):
        cr.amp.GradScaler("cpu", growth_factor=1.0)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert not cr.amp.GradScaler().is_enabled()


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize(("cdt", "tdt", "eps"), LOW)
def test_mixed_precision_training_tracks_float32(cdt: object, tdt: object, eps: float) -> None:
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((64, 10)).astype(np.float32))
    y = cr.tensor((rng.standard_normal((64, 10)) @ rng.standard_normal((10, 3))).argmax(1))

    def run(amp: bool) -> list[float]:
        cr.manual_seed(0)
        model = cr.nn.Sequential(cr.nn.Linear(10, 32), cr.nn.ReLU(), cr.nn.Linear(32, 3))
        opt = cr.optim.SGD(model.parameters(), lr=0.5)
        scaler = cr.amp.GradScaler("cpu", enabled=amp)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            with cr.autocast("cpu", dtype=cdt, enabled=amp):
                out = model(x)
                loss = F.cross_entropy(out, y)
            assert out.dtype is (cdt if amp else cr.float32) and loss.dtype is cr.float32
            scaler.scale(loss).backward()
            assert all(p.grad.dtype is cr.float32 for p in model.parameters())
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss))
        return losses

    mixed, full = run(True), run(False)
    assert mixed[-1] < 0.7 * mixed[0]
    np.testing.assert_allclose(mixed, full, rtol=20 * eps, atol=20 * eps)


@needs_bf16
def test_bfloat16_autocast_trains_a_conv1d_model(device: str) -> None:
    """A Conv1d / max-pool / Linear model trained under bfloat16 autocast: the convolution and
    the linear layer run in bfloat16 (float32 products rounded once), pooling and the loss take
    what they get, gradients reach the float32 parameters, and the loss tracks float32's."""
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((32, 2, 16)).astype(np.float32)
    x = cr.tensor(xs, device=device)
    y = cr.tensor((xs[:, 0, :8].sum(1) > xs[:, 1, 8:].sum(1)).astype(np.int64), device=device)

    def run(amp: bool) -> list[float]:
        cr.manual_seed(0)
        model = cr.nn.Sequential(
            cr.nn.Conv1d(2, 8, 3, padding=1),
            cr.nn.ReLU(),
            cr.nn.MaxPool1d(2),
            cr.nn.Flatten(),
            cr.nn.Linear(64, 2),
        ).to(device)
        opt = cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            with cr.autocast(device, dtype=cr.bfloat16, enabled=amp):
                h = model[0](x)
                out = model[4](model[3](model[2](model[1](h))))
                loss = F.cross_entropy(out, y)
            assert h.dtype is out.dtype is (cr.bfloat16 if amp else cr.float32)
            loss.backward()
            for p in model.parameters():
                assert p.grad.dtype is cr.float32 and p.grad.device.type == device
            opt.step()
            losses.append(float(loss))
        return losses

    mixed, full = run(True), run(False)
    assert mixed[-1] < 0.7 * mixed[0]
    np.testing.assert_allclose(mixed, full, rtol=0.1, atol=0.05)


@needs_bf16
def test_bfloat16_scalars_and_gradient_health() -> None:
    """``cr.tensor`` of an ml_dtypes bfloat16 scalar keeps its dtype; the gradient-health callback
    watches bfloat16 activations (saturated sigmoids, dead ReLUs) as float ones."""
    import chainrule.train as T  # noqa: PLC0415
    from chainrule.nn import Linear, MSELoss, ReLU, Sequential, Sigmoid  # noqa: PLC0415

    s = cr.tensor(ml_dtypes.bfloat16(1.5))
    assert s.dtype is cr.bfloat16 and s.shape == () and float(s) == 1.5
    cr.manual_seed(0)
    m = Sequential(Linear(4, 16), Sigmoid(), Linear(16, 8), ReLU(), Linear(8, 1))
    m[0].weight.data *= 200
    m[2].bias.data[:] = -1000.0
    m = m.to(cr.bfloat16)
    x, y = cr.randn(32, 4).to(cr.bfloat16), cr.randn(32, 1).to(cr.bfloat16)
    cb = T.GradientHealth(None, on_warning=lambda msg: None)
    T.fit(m, MSELoss(), cr.optim.SGD(m.parameters(), lr=0.01), [(x[:16], y[:16]), (x[16:], y[16:])],
          epochs=1, progress=False, callbacks=[cb])  # fmt: skip
    rows = {r["layer"]: r for r in cb.rows}
    assert rows["0"]["saturated"] > 0.9 and rows["2"]["dead_relu"] == 1.0
