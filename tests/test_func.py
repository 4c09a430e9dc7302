"""chainrule.func (grad, value_and_grad, vjp, jacobian, hessian) against torch.func, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import func as crf

RTOL = 1e-10
ATOL = 1e-12


def _np(x):
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()  # (chainrule's CUDA tensors too)


def close(a, b, rtol=RTOL, atol=ATOL):
    """Compare (nested tuples of) chainrule and torch tensors."""
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)), f"structure differs: {type(a)} vs {type(b)}"
        assert len(a) == len(b), f"lengths differ: {len(a)} vs {len(b)}"
        for x, y in zip(a, b):
            close(x, y, rtol, atol)
        return
    an, bn = _np(a), _np(b)
    assert an.shape == bn.shape, f"shape {an.shape} != {bn.shape}"
    np.testing.assert_allclose(an, bn, rtol=rtol, atol=atol)


def pair(*shape, seed=0, scale=1.0, shift=0.0):
    a = np.random.default_rng(seed).standard_normal(shape) * scale + shift
    return cr.tensor(a, dtype=cr.float64), torch.tensor(a, dtype=torch.float64)


# ---------------------------------------------------------------------- scalar functions
# Each takes a module-like namespace ``m`` (chainrule or torch) so one definition serves both.


def f_poly(m, x):
    return (3 * x**3 - 2 * x**2 + x - 5).sum()


def f_tanh_exp(m, x):
    return (m.tanh(x) * m.exp(0.3 * x) + m.exp(-x * x)).sum()


def f_matmul(m, x):
    A = x.reshape(3, 2) if x.numel() == 6 else x
    return (A.t() @ A).pow(2).sum() + m.tanh(A @ A.t()).sum()


def f_logsumexp(m, x):
    return m.logsumexp(x * x - x, dim=-1).sum() + (m.sigmoid(x) * x).mean()


SCALAR_FNS = [f_poly, f_tanh_exp, f_matmul, f_logsumexp]


@pytest.mark.parametrize("f", SCALAR_FNS, ids=lambda f: f.__name__)
def test_grad_matches_torch(f):
    x, tx = pair(6, seed=1)
    g = crf.grad(lambda x: f(cr, x))(x)
    tg = torch.func.grad(lambda x: f(torch, x))(tx)
    close(g, tg)
    assert not g.requires_grad
    assert not x.requires_grad, "grad must not change its argument"


@pytest.mark.parametrize("f", SCALAR_FNS, ids=lambda f: f.__name__)
def test_hessian_matches_torch(f):
    x, tx = pair(6, seed=2, scale=0.7)
    H = crf.hessian(lambda x: f(cr, x))(x)
    tH = torch.func.hessian(lambda x: f(torch, x))(tx)
    assert tuple(H.shape) == (6, 6)
    close(H, tH)
    np.testing.assert_allclose(_np(H), _np(H).T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f", SCALAR_FNS, ids=lambda f: f.__name__)
def test_hessian_vector_product_create_graph(f):
    x, tx = pair(6, seed=3, scale=0.8)
    v, tv = pair(6, seed=4)
    x.requires_grad_(True)
    tx.requires_grad_(True)
    (g,) = cr.autograd.grad(f(cr, x), x, create_graph=True)
    assert g.requires_grad
    (hv,) = cr.autograd.grad((g * v).sum(), x)
    (tg,) = torch.autograd.grad(f(torch, tx), tx, create_graph=True)
    (thv,) = torch.autograd.grad((tg * tv).sum(), tx)
    close(g, tg)
    close(hv, thv)
    # and it equals H @ v
    H = crf.hessian(lambda x: f(cr, x))(x.detach())
    np.testing.assert_allclose(_np(hv), _np(H) @ _np(v), rtol=1e-9, atol=1e-12)


def test_third_derivative_by_nested_grad():
    x, tx = pair(seed=5)  # 0-d

    def cr_f(x):
        return x**4 * cr.exp(x) + cr.tanh(x)

    def t_f(x):
        return x**4 * torch.exp(x) + torch.tanh(x)

    for k in (1, 2, 3):
        fn, tfn = cr_f, t_f
        for _ in range(k):
            fn, tfn = crf.grad(fn), torch.func.grad(tfn)
        close(fn(x), tfn(tx))
    # closed form of d^2/dx^2 x^3 = 6x
    x3 = cr.tensor(1.7, dtype=cr.float64)
    d2 = crf.grad(crf.grad(lambda x: x**3))(x3)
    assert abs(d2.item() - 6 * 1.7) < 1e-12


def test_value_and_grad_argnums_int_and_tuple():
    x, tx = pair(4, seed=6)
    y, ty = pair(4, seed=7)

    def f(m, x, y):
        return (m.sin(x) * y**2 + x * y).sum()

    v, g = crf.value_and_grad(lambda a, b: f(cr, a, b))(x, y)
    tg, tv = torch.func.grad_and_value(lambda a, b: f(torch, a, b))(tx, ty)
    close(v, tv)
    close(g, tg)

    v1, g1 = crf.value_and_grad(lambda a, b: f(cr, a, b), argnums=1)(x, y)
    tg1, _ = torch.func.grad_and_value(lambda a, b: f(torch, a, b), argnums=1)(tx, ty)
    close(g1, tg1)
    close(v1, tv)

    v2, gs = crf.value_and_grad(lambda a, b: f(cr, a, b), argnums=(0, 1))(x, y)
    tgs, _ = torch.func.grad_and_value(lambda a, b: f(torch, a, b), argnums=(0, 1))(tx, ty)
    assert isinstance(gs, tuple) and len(gs) == 2
    close(gs, tgs)
    assert not v2.requires_grad

    # argnums=(1,) gives a 1-tuple, as torch
    gs1 = crf.grad(lambda a, b: f(cr, a, b), argnums=(1,))(x, y)
    tgs1 = torch.func.grad(lambda a, b: f(torch, a, b), argnums=(1,))(tx, ty)
    assert isinstance(gs1, tuple) and len(gs1) == 1
    close(gs1, tgs1)


def test_grad_has_aux():
    x, tx = pair(5, seed=8)

    def f(m, x):
        y = m.tanh(x)
        aux = {"y": y}
        if m is cr:
            aux["n"] = 3  # non-tensor aux is passed through (torch.func only allows tensors)
        return (y * y).sum(), aux

    g, aux = crf.grad(lambda x: f(cr, x), has_aux=True)(x)
    tg, taux = torch.func.grad(lambda x: f(torch, x), has_aux=True)(tx)
    close(g, tg)
    assert aux["n"] == 3
    close(aux["y"], taux["y"])

    (v, aux2), g2 = crf.value_and_grad(lambda x: f(cr, x), has_aux=True)(x)
    (tg2, (tv, _)) = torch.func.grad_and_value(lambda x: f(torch, x), has_aux=True)(tx)
    close(v, tv)
    close(g2, tg2)
    close(aux2["y"], taux["y"])


def test_has_aux_requires_a_pair():
    x, _ = pair(3)
    with pytest.raises(RuntimeError, match=r"pair \(output, aux\)"):
        crf.grad(lambda a: (a * a).sum().reshape(1).expand(2), has_aux=True)(x)
    with pytest.raises(RuntimeError, match="pair"):
        crf.vjp(lambda a: a * 2, x, has_aux=True)
    with pytest.raises(RuntimeError, match="length 3"):
        crf.grad(lambda a: (a.sum(), 1, 2), has_aux=True)(x)


def test_hessian_of_linear_function_is_zero():
    x, tx = pair(3, seed=31)
    c, tc = pair(3, seed=32)
    H = crf.hessian(lambda a: (a * c).sum())(x)
    tH = torch.func.hessian(lambda a: (a * tc).sum())(tx)
    close(H, tH)
    np.testing.assert_array_equal(_np(H), np.zeros((3, 3)))


def test_grad_of_unused_argument_is_zero():
    x, tx = pair(3, seed=9)
    y, ty = pair(2, seed=10)
    gx, gy = crf.grad(lambda a, b: (a * a).sum(), argnums=(0, 1))(x, y)
    tgx, tgy = torch.func.grad(lambda a, b: (a * a).sum(), argnums=(0, 1))(tx, ty)
    close((gx, gy), (tgx, tgy))
    assert np.all(_np(gy) == 0)
    # a function that does not depend on its input at all
    g = crf.grad(lambda a: cr.tensor(2.0, dtype=cr.float64))(x)
    np.testing.assert_array_equal(_np(g), np.zeros(3))


def test_grad_requires_scalar_output():
    x, _ = pair(3)
    with pytest.raises(RuntimeError, match="one-element"):
        crf.grad(lambda a: a * 2)(x)


def test_grad_rejects_non_tensor_argnum():
    with pytest.raises(TypeError, match="argument 1"):
        crf.grad(lambda a, b: a.sum() * b, argnums=1)(cr.ones(2), 3.0)


# ---------------------------------------------------------------------- MLP loss w.r.t. weights


def mlp_loss(m, W1, b1, W2, b2, X, Y):
    h = m.tanh(X @ W1 + b1)
    out = h @ W2 + b2
    return ((out - Y) ** 2).mean()


def _mlp_data():
    rng = np.random.default_rng(11)
    arrs = [
        rng.standard_normal((4, 5)) * 0.5,
        rng.standard_normal(5) * 0.1,
        rng.standard_normal((5, 2)) * 0.5,
        rng.standard_normal(2) * 0.1,
        rng.standard_normal((7, 4)),
        rng.standard_normal((7, 2)),
    ]
    return (
        [cr.tensor(a, dtype=cr.float64) for a in arrs],
        [torch.tensor(a, dtype=torch.float64) for a in arrs],
    )


def test_mlp_loss_grad_wrt_weights():
    cargs, targs = _mlp_data()
    nums = (0, 1, 2, 3)
    v, gs = crf.value_and_grad(lambda *a: mlp_loss(cr, *a), argnums=nums)(*cargs)
    tgs, tv = torch.func.grad_and_value(lambda *a: mlp_loss(torch, *a), argnums=nums)(*targs)
    close(v, tv)
    close(gs, tgs)
    for g, w in zip(gs, cargs):
        assert g.shape == w.shape


def test_mlp_loss_hessian_wrt_output_layer():
    cargs, targs = _mlp_data()
    H = crf.hessian(lambda *a: mlp_loss(cr, *a), argnums=2)(*cargs)
    tH = torch.func.hessian(lambda *a: mlp_loss(torch, *a), argnums=2)(*targs)
    assert tuple(H.shape) == (5, 2, 5, 2)
    close(H, tH)


def test_hessian_tuple_argnums():
    x, tx = pair(3, seed=12)
    y, ty = pair(2, seed=13)

    def f(m, a, b):
        return (m.exp(a).sum() * m.sin(b)).sum() + (a[:2] * b).pow(2).sum()

    H = crf.hessian(lambda a, b: f(cr, a, b), argnums=(0, 1))(x, y)
    tH = torch.func.hessian(lambda a, b: f(torch, a, b), argnums=(0, 1))(tx, ty)
    close(H, tH)
    assert tuple(H[0][1].shape) == (3, 2)


# ---------------------------------------------------------------------- vjp and jacobian


def vec_fn(m, x):
    return m.tanh(x) * m.exp(x[..., :1]) + x**2


def test_vjp_matches_torch():
    x, tx = pair(3, 4, seed=14)
    v, tv = pair(3, 4, seed=15)
    out, fn = crf.vjp(lambda a: vec_fn(cr, a), x)
    tout, tfn = torch.func.vjp(lambda a: vec_fn(torch, a), tx)
    close(out, tout)
    (g,) = fn(v)
    (tg,) = tfn(tv)
    close(g, tg)
    # vjp_fn can be called again (the graph is retained)
    (g2,) = fn(v * 2)
    close(g2, tg * 2)


def test_vjp_multiple_primals_and_outputs_and_aux():
    x, tx = pair(3, seed=16)
    y, ty = pair(3, seed=17)

    def f(m, a, b):
        return (a * b, m.exp(a) - b), a.sum()

    (o1, o2), fn, aux = crf.vjp(lambda a, b: f(cr, a, b), x, y, has_aux=True)
    (t1, t2), tfn, taux = torch.func.vjp(lambda a, b: f(torch, a, b), tx, ty, has_aux=True)
    close((o1, o2, aux), (t1, t2, taux))
    c1, tc1 = pair(3, seed=18)
    c2, tc2 = pair(3, seed=19)
    gs = fn((c1, c2))
    tgs = tfn((tc1, tc2))
    assert len(gs) == 2
    close(gs, tgs)


def test_vjp_matmul():
    A, tA = pair(4, 3, seed=20)
    B, tB = pair(3, 5, seed=21)
    ct, tct = pair(4, 5, seed=22)
    out, fn = crf.vjp(lambda a, b: cr.tanh(a @ b), A, B)
    tout, tfn = torch.func.vjp(lambda a, b: torch.tanh(a @ b), tA, tB)
    close(out, tout)
    close(fn(ct), tfn(tct))


@pytest.mark.parametrize("shape", [(4,), (2, 3), ()])
def test_jacobian_matches_jacrev(shape):
    x, tx = pair(*shape, seed=23)
    J = crf.jacobian(lambda a: vec_fn(cr, a) if a.ndim else cr.tanh(a) * a)(x)
    tJ = torch.func.jacrev(lambda a: vec_fn(torch, a) if a.ndim else torch.tanh(a) * a)(tx)
    assert tuple(J.shape) == tuple(tJ.shape) == shape + shape
    close(J, tJ)


def test_jacobian_argnums_tuple_matmul():
    A, tA = pair(2, 3, seed=24)
    x, tx = pair(3, seed=25)
    JA, Jx = crf.jacrev(lambda a, v: cr.exp(a @ v), argnums=(0, 1))(A, x)
    tJA, tJx = torch.func.jacrev(lambda a, v: torch.exp(a @ v), argnums=(0, 1))(tA, tx)
    assert tuple(JA.shape) == (2, 2, 3) and tuple(Jx.shape) == (2, 3)
    close((JA, Jx), (tJA, tJx))


def test_jacobian_tuple_outputs():
    x, tx = pair(3, seed=26)
    Js = crf.jacobian(lambda a: (a * 2, cr.exp(a).sum()))(x)
    tJs = torch.func.jacrev(lambda a: (a * 2, torch.exp(a).sum()))(tx)
    close(Js, tJs)


def test_jacobian_of_grad_equals_hessian():
    x, tx = pair(4, seed=27)
    J = crf.jacobian(crf.grad(lambda a: f_tanh_exp(cr, a)))(x)
    tH = torch.func.hessian(lambda a: f_tanh_exp(torch, a))(tx)
    close(J, tH)


# ---------------------------------------------------------------------- composition


def test_no_perturbation_confusion():
    """d/dx [x * d/dy (x*y)] = d/dx x^2 = 2x: the inner grad must stay differentiable in x."""
    c = cr.tensor(1.0, dtype=cr.float64)
    x = cr.tensor(3.0, dtype=cr.float64)
    tc, tx = torch.tensor(1.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    r = crf.grad(lambda x: x * crf.grad(lambda y: x * y)(c))(x)
    tr = torch.func.grad(lambda x: x * torch.func.grad(lambda y: x * y)(tc))(tx)
    close(r, tr)
    assert r.item() == pytest.approx(6.0, rel=1e-12)


def test_grad_with_closed_over_parameter_is_differentiable():
    """grad(f)(x) where f closes over w (requires_grad): d/dw of the result via backward."""
    w = cr.tensor([0.5, -1.5], dtype=cr.float64, requires_grad=True)
    tw = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    x, tx = pair(2, seed=28)
    g = crf.grad(lambda a: (cr.sin(w * a)).sum())(x)
    tg = torch.func.grad(lambda a: (torch.sin(tw * a)).sum())(tx)
    close(g, tg)
    assert g.requires_grad
    g.sum().backward()
    tg.sum().backward()
    close(w.grad, tw.grad)


def test_grad_on_input_that_requires_grad_stays_in_graph():
    x = cr.tensor([0.3, 0.9, -0.4], dtype=cr.float64, requires_grad=True)
    tx = torch.tensor([0.3, 0.9, -0.4], dtype=torch.float64, requires_grad=True)
    g = crf.grad(lambda a: f_tanh_exp(cr, a))(x)
    tg = torch.func.grad(lambda a: f_tanh_exp(torch, a))(tx)
    close(g, tg)
    (g * g).sum().backward()
    (tg * tg).sum().backward()
    close(x.grad, tx.grad)


def test_vmap_free_hvp_via_vjp_of_grad():
    x, tx = pair(5, seed=29)
    v, tv = pair(5, seed=30)
    _, fn = crf.vjp(crf.grad(lambda a: f_logsumexp(cr, a)), x)
    _, tfn = torch.func.vjp(torch.func.grad(lambda a: f_logsumexp(torch, a)), tx)
    close(fn(v), tfn(tv))


# ---------------------------------------------------------------------- on a device


def test_transforms_on_device(device):
    """grad / value_and_grad / vjp / jacobian / hessian of functions of tensors on ``device``:
    results there, values as torch's (CPU)."""
    a = np.random.default_rng(20).standard_normal(6) * 0.7
    x, tx = cr.tensor(a, device=device), torch.tensor(a)
    for f in SCALAR_FNS:
        g = crf.grad(lambda x, f=f: f(cr, x))(x)
        H = crf.hessian(lambda x, f=f: f(cr, x))(x)
        assert g.device == x.device and H.device == x.device
        close(g, torch.func.grad(lambda x, f=f: f(torch, x))(tx))
        close(H, torch.func.hessian(lambda x, f=f: f(torch, x))(tx))
    J = crf.jacobian(lambda x: cr.tanh(x) * x.sum())(x)
    assert J.device == x.device
    close(J, torch.func.jacrev(lambda x: torch.tanh(x) * x.sum())(tx))
    out, vjp_fn = crf.vjp(lambda x: x.exp() * 2, x)
    (gv,) = vjp_fn(cr.ones(6, dtype=cr.float64, device=device))
    assert gv.device == x.device
    close(gv, 2 * np.exp(a))
    # gradients that are zero by construction (no path to the output) are made there too
    v, g0 = crf.value_and_grad(lambda x, y: (y * y).sum(), argnums=0)(x, x.detach() + 1)
    assert g0.device == x.device and not _np(g0).any()
    (z,) = crf.vjp(lambda x: cr.ones(2, device=device), x)[1](cr.ones(2, device=device))
    assert z.device == x.device and not _np(z).any()
    Jc = crf.jacobian(lambda x: cr.ones(2, dtype=cr.float64, device=device))(x)
    assert Jc.device == x.device and Jc.shape == (2, 6) and not _np(Jc).any()
