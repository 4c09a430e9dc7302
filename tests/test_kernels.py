"""The fused CUDA kernels (chainrule.kernels) against PyTorch (CPU).

Every test takes the ``device`` fixture: on 'cpu' and on the fake CuPy the functions run their
NumPy reference; on a real GPU (``--device gpu``) they launch the compiled kernels, so the same
assertions check the CUDA code. ``test_compile`` compiles every source with NVRTC when CuPy's
NVRTC binding is importable (no GPU needed); ``test_gpu_kernel_matches_reference`` runs kernel
and reference side by side, half and bfloat16 included, on a real GPU only.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn.functional as F
import conftest
from chainrule import backend
from chainrule import kernels as K
from chainrule.kernels import _launch

SHAPES = [(0,), (1,), (7, 3), (257,)]
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def dev(a: np.ndarray, device: str) -> object:
    return backend.to_device(np.ascontiguousarray(a), device)


def host(a: object) -> np.ndarray:
    return np.asarray(backend.to_host(a))


# ------------------------------------------------------------------------------ optimisers
SGD_CONFIGS = [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(momentum=0.8, nesterov=True, weight_decay=0.1),
    dict(momentum=0.5, maximize=True),
    dict(weight_decay=0.2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_step_matches_torch(device: str, dtype: type, shape: tuple, cfg: dict) -> None:
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    tp = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.1, **cfg)
    p = dev(p0, device)
    buf = dev(np.zeros(shape, dtype), device)
    for i, g in enumerate(grads):
        tp.grad = torch.tensor(g)
        opt.step()
        K.sgd_step(p, dev(g, device), buf, lr=0.1, first=i == 0, **cfg)
    np.testing.assert_allclose(host(p), tp.detach().numpy(), **TOL[dtype])
    if cfg.get("momentum"):
        want = opt.state[tp]["momentum_buffer"].numpy()
        np.testing.assert_allclose(host(buf), want, **TOL[dtype])


ADAM_CONFIGS = [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, decoupled=True),
    dict(amsgrad=True, weight_decay=0.05),
    dict(maximize=True, decoupled=True, weight_decay=0.01, amsgrad=True),
    dict(betas=(0.3, 0.9)),  # 1 - beta1 >= 0.5: torch's other lerp branch
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam_step_matches_torch(device: str, dtype: type, shape: tuple, cfg: dict) -> None:
    rng = np.random.default_rng(1)
    cfg = dict(cfg)
    decoupled = cfg.pop("decoupled", False)
    b1, b2 = cfg.pop("betas", (0.9, 0.999))
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    tp = torch.tensor(p0, requires_grad=True)
    Opt = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = Opt([tp], lr=0.01, betas=(b1, b2), eps=1e-8, weight_decay=cfg.get("weight_decay", 0), amsgrad=cfg.get("amsgrad", False), maximize=cfg.get("maximize", False))  # fmt: skip
    p = dev(p0, device)
    m, v, vmax = (dev(np.zeros(shape, dtype), device) for _ in range(3))
    for t, g in enumerate(grads, 1):
        tp.grad = torch.tensor(g)
        opt.step()
        K.adam_step(p, dev(g, device), m, v, vmax, step=t, lr=0.01, beta1=b1, beta2=b2, decoupled=decoupled, **cfg)  # fmt: skip
    np.testing.assert_allclose(host(p), tp.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(host(m), opt.state[tp]["exp_avg"].numpy(), **TOL[dtype])
    np.testing.assert_allclose(host(v), opt.state[tp]["exp_avg_sq"].numpy(), **TOL[dtype])


def test_half_precision_optimiser_steps(device: str) -> None:
    """float16 parameters: computed in float32, stored in float16 (as torch's)."""
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(64).astype(np.float16)
    g = rng.standard_normal(64).astype(np.float16)
    tp = torch.tensor(p0, requires_grad=True)
    tp.grad = torch.tensor(g)
    torch.optim.SGD([tp], lr=0.1, momentum=0.9).step()
    p, buf = dev(p0, device), dev(np.zeros(64, np.float16), device)
    K.sgd_step(p, dev(g, device), buf, lr=0.1, momentum=0.9, first=True)
    assert host(p).dtype == np.float16
    np.testing.assert_allclose(host(p), tp.detach().numpy(), rtol=2e-3, atol=2e-3)


def test_optimiser_argument_errors() -> None:
    p = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="momentum buffer"):
        K.sgd_step(p, p, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        K.adam_step(p, p, p.copy(), p.copy(), step=1, lr=0.1, amsgrad=True)


# ---------------------------------------------------------------------------- activations
ACTS = {
    "relu": (torch.relu, lambda g, x, y: K.relu_backward(g, x)),
    "relu_from_output": (torch.relu, lambda g, x, y: K.relu_backward(g, y)),
    "sigmoid": (torch.sigmoid, lambda g, x, y: K.sigmoid_backward(g, y)),
    "tanh": (torch.tanh, lambda g, x, y: K.tanh_backward(g, y)),
    "gelu": (torch.nn.functional.gelu, lambda g, x, y: K.gelu_backward(g, x)),
    "gelu_tanh": (
        lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
        lambda g, x, y: K.gelu_backward(g, x, "tanh"),
    ),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 4)])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_backward_matches_autograd(
    device: str, dtype: type, shape: tuple, name: str
) -> None:
    f, ours = ACTS[name]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = f(tx)
    ty.backward(torch.tensor(g))
    y = ty.detach().numpy()
    got = ours(dev(g, device), dev(x, device), dev(y, device))
    assert host(got).dtype == dtype and host(got).shape == shape
    # float32: tanh-GELU's two terms cancel for large negative x (torch sums them in its order)
    tol = dict(rtol=2e-5, atol=1e-5) if dtype == np.float32 else TOL[dtype]
    np.testing.assert_allclose(host(got), tx.grad.numpy(), **tol)


def test_activation_backward_into_out_and_errors(device: str) -> None:
    x = dev(np.array([-1.0, 0.0, 2.0, np.nan], np.float32), device)
    g = dev(np.array([5.0, 6.0, 7.0, 8.0], np.float32), device)
    out = dev(np.zeros(4, np.float32), device)
    assert K.relu_backward(g, x, out=out) is out
    np.testing.assert_array_equal(host(out), [0, 0, 7, 8])  # NaN passes, as torch's
    with pytest.raises(ValueError, match="shape"):
        K.relu_backward(g, dev(np.zeros(3, np.float32), device))
    with pytest.raises(ValueError, match="approximate"):
        K.gelu_backward(g, x, "erf")


# -------------------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (1, 4), (9, 10), (33, 70)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_autograd(
    device: str, dtype: type, shape: tuple, weighted: bool, reduction: str
) -> None:
    N, C = shape
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    t = rng.integers(0, C, N)
    t[::3] = -100 if N > 2 else t[::3]  # some ignored rows
    w = rng.uniform(0.5, 2, C).astype(dtype) if weighted else None
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w) if weighted else None
    loss = torch.nn.functional.cross_entropy(tx, torch.tensor(t), weight=tw, reduction=reduction)
    g = rng.standard_normal(loss.shape).astype(dtype)
    loss.backward(torch.tensor(g))
    dx, dt, dw = dev(x, device), dev(t, device), None if w is None else dev(w, device)
    ours, stats, total = K.cross_entropy_forward(dx, dt, dw, reduction=reduction)
    assert host(ours).dtype == dtype
    np.testing.assert_allclose(host(ours), loss.detach().numpy(), **TOL[dtype])
    grad = K.cross_entropy_backward(dev(g, device), dx, dt, stats, total, dw, reduction=reduction)
    np.testing.assert_allclose(host(grad), tx.grad.numpy(), **TOL[dtype])


def test_cross_entropy_bad_target_gives_nan(device: str) -> None:
    x = dev(np.zeros((2, 3), np.float32), device)
    t = dev(np.array([1, 7]), device)
    loss, lse, total = K.cross_entropy_forward(x, t)
    assert np.isnan(host(loss))
    with pytest.raises(ValueError, match="reduction"):
        K.cross_entropy_forward(x, t, reduction="avg")


# ----------------------------------------------------------------------------- layer norm
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (2, 3, 16), (0, 5), (5, 300)])
@pytest.mark.parametrize("affine", [(False, False), (True, True), (True, False)])
def test_layer_norm_matches_autograd(device: str, dtype: type, shape: tuple, affine: tuple) -> None:
    rng = np.random.default_rng(5)
    D = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(D).astype(dtype) if affine[0] else None
    b = rng.standard_normal(D).astype(dtype) if affine[1] else None
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True) if w is not None else None
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = torch.nn.functional.layer_norm(tx, (D,), tw, tb, eps=1e-5)
    ty.backward(torch.tensor(g))
    on = lambda a: None if a is None else dev(a, device)  # noqa: E731
    y, mean, rstd = K.layer_norm_forward(on(x), on(w), on(b), eps=1e-5)
    tol = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
    np.testing.assert_allclose(host(y), ty.detach().numpy(), **tol[dtype])
    dx, dw, db = K.layer_norm_backward(on(g), on(x), mean, rstd, on(w))
    np.testing.assert_allclose(host(dx), tx.grad.numpy(), **tol[dtype])
    if tw is not None:
        np.testing.assert_allclose(host(dw), tw.grad.numpy(), **tol[dtype])
    if tb is not None:
        np.testing.assert_allclose(host(db), tb.grad.numpy(), **tol[dtype])
    assert K.layer_norm_backward(on(g), on(x), mean, rstd, need_weight_grads=False)[1] is None


# ------------------------------------------------------------------- dispatch and compiling
def test_dispatch_uses_kernels_only_on_real_cupy(device: str) -> None:
    a = dev(np.zeros(4, np.float32), device)
    real = device == "cuda" and not conftest.is_fake()
    assert (_launch.kernel_module(a) is not None) == real


# ------------------------------------------------------------------ the ops use the kernels
def _spy(monkeypatch: pytest.MonkeyPatch, *names: str) -> dict:
    """Wrap ``chainrule.kernels.<name>`` (the ops look them up there at call time) to count
    calls; returns {name: count}."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(K, name)

        def spy(*a: object, _real: object = real, _name: str = name, **k: object) -> object:
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(K, name, spy)
    return calls


def _run_ops(device: str) -> dict:
    """Forward and backward through GELU (both kinds), LayerNorm over the last dim and
    cross-entropy (2-d, and (N, C, d) with weights and 'none'); returns the gradients."""
    rng = np.random.default_rng(7)
    x = cr.tensor(rng.standard_normal((6, 5)), device=device, requires_grad=True)
    w = cr.tensor(rng.uniform(0.5, 2, 5), device=device, requires_grad=True)
    b = cr.tensor(rng.standard_normal(5), device=device, requires_grad=True)
    x3 = cr.tensor(rng.standard_normal((2, 5, 3)), device=device, requires_grad=True)
    t = cr.tensor(rng.integers(0, 5, 6), device=device)
    t3 = cr.tensor([[0, 4, -100], [2, 2, 1]], device=device)
    h = F.gelu(x) + F.gelu(x, approximate="tanh")
    h = F.layer_norm(h, (5,), w, b)
    loss = (
        F.cross_entropy(h, t) + F.cross_entropy(x3, t3, weight=w.detach(), reduction="none").sum()
    )
    loss.backward()
    return {"x": x.grad, "w": w.grad, "b": b.grad, "x3": x3.grad, "loss": loss}


FUSED = (
    "gelu_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
)


def test_ops_use_the_fused_kernels_on_device_arrays_only(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the ops call the kernel functions (each once per use above), and give the CPU's
    values; on the CPU they never call them (the CPU path is unchanged)."""
    calls = _spy(monkeypatch, *FUSED)
    got = _run_ops(device)
    want = {"gelu_backward": 2, "layer_norm_forward": 1, "layer_norm_backward": 1}
    want |= {"cross_entropy_forward": 2, "cross_entropy_backward": 2}
    assert calls == (want if device == "cuda" else dict.fromkeys(FUSED, 0))
    if device == "cuda":
        ref = _run_ops("cpu")
        for k, v in got.items():
            assert v.device.type == "cuda", k
            np.testing.assert_allclose(
                v.detach().cpu().numpy(), ref[k].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=k
            )


def test_fused_paths_fall_back_where_the_kernels_do_not_apply(
    cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LayerNorm over two dims, and any create_graph backward, keep the general rules on the
    device (the kernels cover the last dim and array backwards only)."""
    calls = _spy(monkeypatch, *FUSED)
    rng = np.random.default_rng(8)
    x = cr.tensor(rng.standard_normal((4, 2, 3)), device=cuda, requires_grad=True)
    F.layer_norm(x, (2, 3)).sum().backward()
    assert calls["layer_norm_forward"] == calls["layer_norm_backward"] == 0
    t = cr.tensor([0, 2, 1, 2], device=cuda)
    xs = x.reshape(4, 6)[:, :3]
    loss = F.cross_entropy(F.gelu(xs), t)
    (g,) = cr.autograd.grad(loss, [x], create_graph=True)
    (g * g).sum().backward()
    assert calls["cross_entropy_forward"] == 1  # the forward is fused either way
    assert calls["cross_entropy_backward"] == 0
    # the second (array) backward reaches the GELU node again through the softmax recomputed
    # from its output: that one is fused
    assert calls["gelu_backward"] == 1
    xc = cr.tensor(x.detach().cpu().numpy(), requires_grad=True)
    lc = F.cross_entropy(F.gelu(xc.reshape(4, 6)[:, :3]), cr.tensor([0, 2, 1, 2]))
    (gc,) = cr.autograd.grad(lc, [xc], create_graph=True)
    (gc * gc).sum().backward()
    np.testing.assert_allclose(host_t(x.grad), xc.grad.numpy(), rtol=1e-10, atol=1e-12)


ACT_KERNELS = ("relu_backward", "sigmoid_backward", "tanh_backward")


def _run_acts(device: str, create_graph: bool = False) -> dict:
    """ReLU, sigmoid and tanh (tensor methods and layers) forward and backward; with
    ``create_graph`` a differentiable first backward, then a second one."""
    rng = np.random.default_rng(9)
    x = cr.tensor(rng.standard_normal((6, 5)), device=device, requires_grad=True)
    h = cr.nn.ReLU()(x) * 2 + x.sigmoid() + cr.nn.Tanh()(x * 0.5)
    loss = (h * h).sum()
    if create_graph:
        (g,) = cr.autograd.grad(loss, [x], create_graph=True)
        loss = (g * g).sum()
    loss.backward()
    return {"x": x.grad, "loss": loss}


def test_activation_backwards_use_the_fused_kernels_on_device_arrays_only(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ReLU, Sigmoid and Tanh take their array backward through the kernels on CUDA (once per
    use) with the CPU's values; the CPU never calls them."""
    calls = _spy(monkeypatch, *ACT_KERNELS)
    got = _run_acts(device)
    assert calls == dict.fromkeys(ACT_KERNELS, 1 if device == "cuda" else 0)
    if device == "cuda":
        ref = _run_acts("cpu")
        for k, v in got.items():
            assert v.device.type == "cuda", k
            np.testing.assert_allclose(host_t(v), host_t(ref[k]), rtol=1e-10, atol=1e-12)


def test_activation_kernels_stay_out_of_create_graph_backwards(
    cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A differentiable backward keeps the recorded rules (same values as the CPU)."""
    calls = _spy(monkeypatch, *ACT_KERNELS)
    got = _run_acts(cuda, create_graph=True)
    ref = _run_acts("cpu", create_graph=True)
    np.testing.assert_allclose(host_t(got["x"]), host_t(ref["x"]), rtol=1e-10, atol=1e-12)
    # once each: the second backward reaches each activation node again through its output,
    # rematerialised by the first; the create_graph pass itself used none
    assert calls == dict.fromkeys(ACT_KERNELS, 1)


def host_t(t: object) -> np.ndarray:
    return t.detach().cpu().numpy()


def _nvrtc() -> object:
    try:
        return importlib.import_module("cupy.cuda.nvrtc")
    except Exception as e:  # noqa: BLE001 - no CuPy, or CuPy without its NVRTC library
        pytest.skip(f"CuPy's NVRTC is not importable here ({type(e).__name__}: {e})")


@pytest.mark.parametrize("dtype", sorted(K.DTYPES))
@pytest.mark.parametrize("kernel", sorted(K.KERNELS))
def test_compile(kernel: str, dtype: str) -> None:
    nvrtc = _nvrtc()
    src, name = K.render(kernel, dtype)
    prog = nvrtc.createProgram(src, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["-arch=compute_90"])
    except Exception:  # noqa: BLE001
        pytest.fail(nvrtc.getProgramLog(prog))
    assert f".entry {name}" in nvrtc.getPTX(prog).decode(errors="replace")


def test_render_errors() -> None:
    with pytest.raises(KeyError, match="no CUDA kernel"):
        K.render("sgd", "int8")
    with pytest.raises(KeyError, match="no CUDA kernel"):
        K.render("nope", "float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_gpu_kernel_matches_reference(
    cuda: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real GPU: every kernel against its own reference (CHAINRULE_CUDA_KERNELS=0), half
    and bfloat16 included, on shapes that leave partial warps and blocks."""
    if conftest.is_fake():
        pytest.skip("needs a real GPU (the fake CuPy cannot run kernels)")
    dt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    cp = backend.cuda_module()
    rng = np.random.default_rng(6)
    tol = dict(rtol=2e-2, atol=2e-2) if np.dtype(dt).itemsize == 2 else dict(rtol=1e-5, atol=1e-5)

    def mk(*shape: int) -> object:
        return cp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dt)

    p, g, x, gx = mk(1000), mk(1000), mk(37, 129), mk(37, 129)
    t = cp.asarray(rng.integers(0, 129, 37))
    t[::4] = -100

    def sgd() -> list:
        q, buf = p.copy(), g.copy()
        K.sgd_step(q, g, buf, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
        return [q, buf]

    def adam() -> list:
        q, m, v, vm = p.copy(), g.copy(), g * g, g * g
        K.adam_step(q, g, m, v, vm, step=3, lr=0.01, weight_decay=0.1, amsgrad=True, decoupled=True)  # fmt: skip
        return [q, m, v, vm]

    def acts() -> list:
        out = [f(gx, x) for f in (K.relu_backward, K.sigmoid_backward, K.tanh_backward)]
        return out + [K.gelu_backward(gx, x), K.gelu_backward(gx, x, "tanh")]

    def ce() -> list:
        w = cp.abs(x[0])
        loss, lse, tot = K.cross_entropy_forward(x, t, w, reduction="mean")
        return [loss, lse, K.cross_entropy_backward(loss, x, t, lse, tot, w)]

    def ln() -> list:
        y, mean, rstd = K.layer_norm_forward(x, x[1], x[2])
        return [y, mean, rstd, *K.layer_norm_backward(gx, x, mean, rstd, x[1])]

    def fwds() -> list:
        xs = x * 30
        out = [K.sigmoid_forward(xs), K.silu_forward(xs), K.gelu_forward(x)]
        out += [K.gelu_forward(x, "tanh"), K.softplus_forward(xs, 0.5, 3.0)]
        return out + [K.elu_forward(xs, 1.5), K.leaky_relu_forward(xs, 0.2)]

    xb = mk(6, 3, 700) * 2 + 3  # N HW = 4200 a channel

    def bn() -> list:
        w, b = xb[0, :, 0].copy(), xb[1, :, 0].copy()
        y, mean, var, invstd = K.batch_norm_forward(xb, w, b, eps=1e-3)
        y2, *_ = K.batch_norm_forward(x, None, None)
        gy = xb[::-1].copy()
        return [y, y2, mean, var, invstd, *K.batch_norm_backward(gy, xb, mean, invstd, w)]

    for fn in (sgd, adam, acts, fwds, ce, ln, bn):
        assert _launch.kernel_module(x) is not None
        got = fn()
        monkeypatch.setenv("CHAINRULE_CUDA_KERNELS", "0")
        want = fn()
        monkeypatch.delenv("CHAINRULE_CUDA_KERNELS")
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(
                cp.asnumpy(a.astype(np.float32)),
                cp.asnumpy(b.astype(np.float32)),
                **tol,
                err_msg=f"{fn.__name__} {dtype}",
            )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_gpu_direct_conv_matches_im2col(
    cuda: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a real GPU: the direct convolution kernels (CHAINRULE_CUDA_CONV=direct) against the
    im2col path, forward (with bias), transposed (input gradient, with bias) and weight
    gradient, on the geometries of the emulated test (1-d and 2-d, strides, padding, dilation,
    groups, partial warps, long weight-gradient reductions)."""
    if conftest.is_fake():
        pytest.skip("needs a real GPU (the fake CuPy cannot run kernels)")
    from chainrule.ops import conv as C
    from test_kernels_emulated import CONV_CASES, _conv_geom

    dt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    cp = backend.cuda_module()
    rng = np.random.default_rng(7)
    rtol, atol = (2e-2, 1e-2) if np.dtype(dt).itemsize == 2 else (1e-5, 1e-5)
    launched: list = []
    for name in ("conv_forward", "conv_input_grad", "conv_weight_grad"):

        def ran(*a: object, _real: object = getattr(K.conv, name), _name: str = name) -> object:
            out = _real(*a)
            launched.append((_name, out is not None))  # None: the kernel declined
            return out

        monkeypatch.setattr(K.conv, name, ran)
    for case in CONV_CASES:
        N, Ci, Co, sp, k, _, _, _, G = case
        geom, osize = _conv_geom(case)

        def mk(*shape: int) -> object:
            return cp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dt)

        x, w, b = mk(N, Ci, *sp), mk(Co, Ci // G, *k), mk(Co)
        u, bt = mk(N, Co, *osize), mk(Ci)

        got, want = [], []
        for mode, out in (("direct", got), ("im2col", want)):
            monkeypatch.setenv("CHAINRULE_CUDA_CONV", mode)
            out.append(C._conv(x, w, b, geom, osize))
            out.append(C._conv_t(u, w, bt, geom, sp))
            out.append(C.conv_wgrad_arrays(x, u, geom, k))
        for i, (a, e) in enumerate(zip(got, want, strict=True)):
            assert a.shape == e.shape and a.dtype == e.dtype, f"{case} output {i}"
            a, e = cp.asnumpy(a.astype(np.float64)), cp.asnumpy(e.astype(np.float64))
            scale = max(1.0, float(np.abs(e).max()))
            np.testing.assert_allclose(
                a, e, rtol=rtol, atol=atol * scale, err_msg=f"{case} {dtype} output {i}"
            )
    assert len(launched) == 3 * len(CONV_CASES) and all(ok for _, ok in launched)


# ------------------------------------------- activation forwards and BatchNorm use the kernels
FWD_KERNELS = (
    "sigmoid_forward",
    "silu_forward",
    "gelu_forward",
    "softplus_forward",
    "elu_forward",
    "leaky_relu_forward",
    "batch_norm_forward",
    "batch_norm_backward",
)


def _run_fwd_acts(device: str, create_graph: bool = False) -> dict:
    """The activations with a fused forward, and BatchNorm in training (a module with running
    statistics and momentum=None; functional without affine on (N, C)) and in eval mode,
    forward and backward; returns the results, gradients and running statistics."""
    rng = np.random.default_rng(10)
    x = cr.tensor(rng.standard_normal((6, 5)) * 4, device=device, requires_grad=True)
    h = x.sigmoid() + F.silu(x) + F.gelu(x) + F.gelu(x, approximate="tanh")
    h = h + F.softplus(x, beta=2.0, threshold=3.0) + F.elu(x, 1.5) + F.leaky_relu(x, 0.1)
    bn = cr.nn.BatchNorm2d(3, momentum=None).to(device)
    xb = cr.tensor(rng.standard_normal((4, 3, 5, 6)) + 2, device=device, requires_grad=True)
    yb = bn(xb)
    yb2 = F.batch_norm(h, None, None, training=True)
    bn.eval()
    ye = bn(xb * 0.5)
    loss = (h * h).sum() + (yb * yb * xb).sum() + (yb2 * x).sum() + (ye * ye).sum()
    if create_graph:
        (g,) = cr.autograd.grad(loss, [x], create_graph=True)
        loss = (g * g).sum()
    loss.backward()
    out = {"x": x.grad, "loss": loss, "rm": bn.running_mean, "rv": bn.running_var}
    if not create_graph:  # (the second backward reaches x only)
        out |= {"xb": xb.grad, "w": bn.weight.grad, "b": bn.bias.grad}
    return out


def test_forwards_and_batch_norm_use_the_fused_kernels_on_device_arrays_only(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the activation forwards and training-mode BatchNorm (forward and array
    backward) go through the kernels, with the CPU's values; the CPU never calls them."""
    calls = _spy(monkeypatch, *FWD_KERNELS)
    got = _run_fwd_acts(device)
    if device == "cpu":
        assert calls == dict.fromkeys(FWD_KERNELS, 0)
        return
    # sigmoid: its own forward, and the sigmoids of SiLU's and Softplus's backwards
    want = dict.fromkeys(FWD_KERNELS, 1) | {"sigmoid_forward": 3, "gelu_forward": 2}
    assert calls == want | {"batch_norm_forward": 2, "batch_norm_backward": 2}
    ref = _run_fwd_acts("cpu")
    for k, v in got.items():
        assert v.device.type == "cuda", k
        np.testing.assert_allclose(host_t(v), host_t(ref[k]), rtol=1e-10, atol=1e-10, err_msg=k)


def test_batch_norm_kernels_stay_out_of_create_graph_backwards(
    cuda: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A differentiable backward through training-mode BatchNorm keeps the recorded rules
    (exact second derivatives through the batch statistics), with the CPU's values."""
    calls = _spy(monkeypatch, "batch_norm_forward", "batch_norm_backward")
    got = _run_fwd_acts(cuda, create_graph=True)
    ref = _run_fwd_acts("cpu", create_graph=True)
    for k, v in got.items():
        np.testing.assert_allclose(host_t(v), host_t(ref[k]), rtol=1e-9, atol=1e-10, err_msg=k)
    # the create_graph pass used none; the second backward reaches the functional BatchNorm node
    # once as arrays (through its output, which d(yb2 * x)/dx holds): fused there
    assert calls == {"batch_norm_forward": 2, "batch_norm_backward": 1}
