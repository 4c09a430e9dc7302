"""The fused CUDA kernels, run on the CPU by ``cuda_emulator`` (C++ with one thread per lane):
each kernel, launched exactly as the Python launchers launch it on a GPU, against its own NumPy
reference (``CHAINRULE_CUDA_KERNELS=0``), in float32, float64, bfloat16 and float16, on shapes that leave
partial warps and blocks. The same comparison runs on a real GPU in
``test_kernels.py::test_gpu_kernel_matches_reference``."""

from __future__ import annotations

import numpy as np
import pytest

import cuda_emulator
from chainrule import kernels as K
from chainrule.kernels import _launch

pytestmark = pytest.mark.skipif(not cuda_emulator.available(), reason="needs g++ (C++20)")


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> list:
    """Host arrays take the kernel path, and kernels run in the emulator; yields the names of
    the kernels launched."""
    launched: list = []

    def get_kernel(kernel: str, dtype: str) -> cuda_emulator.Kernel:
        launched.append(f"{kernel}/{dtype}")
        return cuda_emulator.Kernel(*K.render(kernel, dtype))

    monkeypatch.setattr(_launch, "kernel_module", lambda *a: np if _launch._enabled() else None)
    monkeypatch.setattr(_launch, "get_kernel", get_kernel)
    return launched


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    return np.dtype(name)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize(
    "case",
    ["sgd", "adam", "activations", "act_forwards", "cross_entropy", "layer_norm", "batch_norm"],
)
def test_kernel_matches_its_reference(
    emulated: list, case: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dt = _dtype(dtype)
    rng = np.random.default_rng(6)
    tol = dict(rtol=2e-2, atol=2e-2) if dt.itemsize == 2 else dict(rtol=1e-5, atol=1e-6)

    def mk(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32).astype(dt)

    p, g, x, gx = mk(1000), mk(1000), mk(37, 129), mk(37, 129)
    t = rng.integers(0, 129, 37)
    t[::4] = -100  # ignore_index rows

    def sgd() -> list:
        out = []
        for kw in (
            dict(momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(momentum=0.9, dampening=0.1, first=True),
            dict(weight_decay=0.1, maximize=True),
        ):
            q, buf = p.copy(), g.copy()
            K.sgd_step(q, g, buf if kw.get("momentum") else None, lr=0.1, **kw)
            out += [q, buf]
        return out

    def adam() -> list:
        out = []
        for kw in (dict(amsgrad=True, decoupled=True, weight_decay=0.1), dict(weight_decay=0.01)):
            q, m, v, vm = p.copy(), g.copy(), g * g, g * g
            K.adam_step(q, g, m, v, vm, step=3, lr=0.01, **kw)
            out += [q, m, v, vm]
        return out

    def activations() -> list:
        out = [f(gx, x) for f in (K.relu_backward, K.sigmoid_backward, K.tanh_backward)]
        return out + [K.gelu_backward(gx, x), K.gelu_backward(gx, x, "tanh")]

    # large values (sigmoid's clamp, softplus's threshold), NaN and infinities
    xs = (x.astype(np.float32) * 30).astype(dt)
    xs[0, :4] = np.array([np.nan, np.inf, -np.inf, 0.0]).astype(dt)

    def act_forwards() -> list:
        out = [K.sigmoid_forward(v) for v in (x, xs)] + [K.silu_forward(xs)]
        out += [K.gelu_forward(xs), K.gelu_forward(xs, "tanh")]
        out += [K.softplus_forward(xs), K.softplus_forward(xs, 0.5, 3.0), K.softplus_forward(x, 2.0)]  # fmt: skip
        return out + [K.elu_forward(xs, 1.5), K.leaky_relu_forward(xs, 0.2)]

    def batch_norm() -> list:
        out = []
        # N HW = 4200 (long reductions), affine; (N, C) with N = 37 (a partial warp), no affine;
        # 4-d with a weight only
        for shape, affine in (((6, 3, 700), (1, 1)), ((37, 5), (0, 0)), ((3, 4, 5, 7), (1, 0))):
            xb = (rng.standard_normal(shape) * 2 + 3).astype(np.float32).astype(dt)
            gb = mk(*shape)
            C = shape[1]
            w = mk(C) if affine[0] else None
            b = mk(C) if affine[1] else None
            y, mean, var, invstd = K.batch_norm_forward(xb, w, b, eps=1e-3)
            out += [y, mean, var, invstd, *K.batch_norm_backward(gb, xb, mean, invstd, w)]
            out.append(K.batch_norm_backward(gb, xb, mean, invstd, w, need_weight_grads=False)[0])
        return out

    def cross_entropy() -> list:
        out = []
        for w, red in ((np.abs(x[0]), "mean"), (None, "sum"), (None, "none")):
            loss, lse, tot = K.cross_entropy_forward(x, t, w, reduction=red)
            out += [loss, lse, K.cross_entropy_backward(np.ones_like(loss), x, t, lse, tot, w)]
        return out

    def layer_norm() -> list:
        y, mean, rstd = K.layer_norm_forward(x, x[1], x[2])
        y2, _, _ = K.layer_norm_forward(x, None, None)
        return [y, y2, mean, rstd, *K.layer_norm_backward(gx, x, mean, rstd, x[1])]

    fn = locals()[case]
    state = rng.bit_generator.state  # batch_norm draws its inputs: the same for both runs
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 in GELU's references
        got = fn()
    rng.bit_generator.state = state
    assert emulated and all(k.endswith("/" + dtype) for k in emulated)  # the kernels ran
    n = len(emulated)
    monkeypatch.setenv("CHAINRULE_CUDA_KERNELS", "0")
    with np.errstate(invalid="ignore", over="ignore"):
        want = fn()
    assert len(emulated) == n  # the references did not launch kernels
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None or b is None:
            assert a is b, f"{case} output {i}"
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{case} output {i}"
        np.testing.assert_allclose(
            a.astype(np.float64), b.astype(np.float64), **tol, err_msg=f"{case} {dtype} output {i}"
        )


def test_emulator_catches_a_wrong_argument_type(emulated: list) -> None:
    """What the emulator is for: a launcher passing a scalar of the wrong C type is refused."""
    src, name = K.render("sgd", "float32")
    k = cuda_emulator.Kernel(src, name)
    p = np.zeros(4, np.float32)
    args = (p, p, p, np.int64(4), np.float64(0.1)) + (np.float32(0),) * 3 + (np.int32(0),) * 3
    with pytest.raises(TypeError, match=r"argument 4 \(lr: float\): expects float32, got float64"):
        k((1,), (256,), args)


# ------------------------------------------------------------------- direct convolution
# (N, C, Co, spatial, kernel, stride, padding, dilation, groups): 1-d (one spatial size) and
# 2-d; odd sizes leave partial warps and blocks; the last ones make the weight-gradient
# reduction (N * oh * ow) many times longer than a warp.
CONV_CASES = [
    (1, 3, 4, (11,), (3,), (1,), (0,), (1,), 1),
    (3, 4, 6, (13,), (3,), (2,), (1,), (2,), 2),
    (3, 2, 2, (9,), (5,), (1,), (2,), (1,), 2),
    (1, 3, 5, (7, 9), (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (3, 4, 4, (8, 7), (3, 2), (2, 1), (0, 2), (1, 2), 2),
    (3, 2, 4, (9, 10), (2, 3), (2, 2), (2, 1), (2, 1), 1),
    (3, 2, 3, (300,), (4,), (1,), (1,), (1,), 1),
    (2, 2, 2, (21, 23), (3, 3), (1, 1), (1, 1), (1, 1), 2),
]


def _conv_geom(case: tuple) -> tuple:
    N, C, Co, sp, k, s, p, d, G = case
    osize = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1 for n, ki, si, pi, di in zip(sp, k, s, p, d))  # fmt: skip
    two = (lambda t: (1, *t)) if len(sp) == 1 else (lambda t: t)
    pads = tuple((pi, pi) for pi in two(p))
    return (two(s), pads, two(d), G), osize


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{len(c[3])}d-{c}")
def test_direct_conv_matches_im2col(
    emulated: list, case: tuple, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The three direct convolution kernels, reached through ops.conv's dispatch
    (CHAINRULE_CUDA_CONV=direct), against its im2col path."""
    from chainrule.ops import conv as C

    dt = _dtype(dtype)
    rng = np.random.default_rng(7)
    N, Ci, Co, sp, k, _, _, _, G = case
    geom, osize = _conv_geom(case)

    def mk(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32).astype(dt)

    x, w, b = mk(N, Ci, *sp), mk(Co, Ci // G, *k), mk(Co)
    u, bt = mk(N, Co, *osize), mk(Ci)

    def run() -> list:
        return [
            C._conv(x, w, b, geom, osize),
            C.conv_arrays(x, w, geom, osize),
            C._conv_t(u, w, bt, geom, sp),
            C.conv_transpose_arrays(u, w, geom, sp),
            C.conv_wgrad_arrays(x, u, geom, k),
        ]

    monkeypatch.setattr(K.conv, "EMULATE_ON_HOST", True)
    monkeypatch.setenv("CHAINRULE_CUDA_CONV", "direct")
    got = run()
    assert sorted(set(emulated)) == [f"conv_{d}/{dtype}" for d in ("dw", "dx", "fwd")]
    monkeypatch.setenv("CHAINRULE_CUDA_CONV", "im2col")
    n = len(emulated)
    want = run()
    assert len(emulated) == n
    # sums of up to ~1000 products: absolute error relative to the output's scale
    rtol, atol = (2e-2, 1e-2) if dt.itemsize == 2 else (1e-5, 1e-5)
    for i, (a, e) in enumerate(zip(got, want, strict=True)):
        assert a.shape == e.shape and a.dtype == e.dtype, f"output {i}"
        a, e = a.astype(np.float64), e.astype(np.float64)
        scale = max(1.0, float(np.abs(e).max()))
        np.testing.assert_allclose(
            a, e, rtol=rtol, atol=atol * scale, err_msg=f"{case} {dtype} output {i}"
        )


def test_direct_conv_falls_back_where_no_kernel_applies(emulated: list) -> None:
    """A non-contiguous input or an integer dtype: the kernels decline (None), im2col runs."""
    geom, osize = _conv_geom(CONV_CASES[3])
    x = np.ones((1, 3, 9, 7), np.float32).transpose(0, 1, 3, 2)
    w = np.ones((5, 3, 3, 3), np.float32)
    assert K.conv_forward(x, w, None, geom, osize) is None
    assert K.conv_weight_grad(x.astype(np.int64), x, geom, (3, 3)) is None
    assert not emulated
