"""Custom autograd.Function (against torch.autograd.Function twins) and gradcheck/gradgradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule.autograd import Function, GradcheckError, gradcheck, gradgradcheck


def _np(x):
    if isinstance(x, (cr.Tensor, torch.Tensor)):  # (chainrule's CUDA tensors too)
        return x.detach().cpu().numpy()
    return np.asarray(x)


def close(a, b, rtol=1e-10, atol=1e-12):
    an, bn = _np(a), _np(b)
    assert an.shape == bn.shape, f"shape {an.shape} != {bn.shape}"
    np.testing.assert_allclose(an, bn, rtol=rtol, atol=atol)


def pair(*shape, seed=0, requires_grad=True):
    a = np.random.default_rng(seed).standard_normal(shape)
    return (
        cr.tensor(a, dtype=cr.float64, requires_grad=requires_grad),
        torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad),
    )


def twins(body):
    """Build a chainrule Function and a torch Function from the same static methods.

    ``body(m)`` returns a dict of staticmethods written against the namespace ``m``.
    """
    ns_cr, ns_t = body(cr), body(torch)
    CrF = type("CrF", (Function,), {k: staticmethod(v) for k, v in ns_cr.items()})
    TF = type("TF", (torch.autograd.Function,), {k: staticmethod(v) for k, v in ns_t.items()})
    return CrF, TF


# ---------------------------------------------------------------------- single output


def exp_body(m):
    def forward(ctx, x):
        y = m.exp(x)
        ctx.save_for_backward(y)  # saves its output
        return y

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y

    return {"forward": forward, "backward": backward}


def test_single_output_saving_output():
    CrExp, TExp = twins(exp_body)
    x, tx = pair(3, 4, seed=1)
    y, ty = CrExp.apply(x), TExp.apply(tx)
    close(y, ty)
    assert y.requires_grad and y.grad_fn is not None and not y.is_leaf
    w, tw = pair(3, 4, seed=2, requires_grad=False)
    (y * w).sum().backward()
    (ty * tw).sum().backward()
    close(x.grad, tx.grad)
    close(x.grad, np.exp(_np(x)) * _np(w))


def test_double_backward_through_saved_output_vs_torch():
    CrExp, TExp = twins(exp_body)
    x, tx = pair(5, seed=3)
    (g,) = cr.autograd.grad(CrExp.apply(x).sum() * 1.0, x, create_graph=True)
    (tg,) = torch.autograd.grad(TExp.apply(tx).sum() * 1.0, tx, create_graph=True)
    close(g, tg)
    assert g.requires_grad
    (gg,) = cr.autograd.grad((g * g).sum(), x)
    (tgg,) = torch.autograd.grad((tg * tg).sum(), tx)
    close(gg, tgg)
    close(gg, 2 * np.exp(2 * _np(x)))


def cube_body(m):
    def forward(ctx, x):
        ctx.save_for_backward(x)  # saves its input
        return x * x * x

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * g * x * x

    return {"forward": forward, "backward": backward}


def test_double_backward_saved_input_gradgradcheck():
    CrCube, TCube = twins(cube_body)
    x, tx = pair(4, seed=4)
    assert gradcheck(CrCube.apply, (x,))
    assert gradgradcheck(CrCube.apply, (x,))
    assert torch.autograd.gradgradcheck(TCube.apply, (tx,))
    # third derivative through the custom backward
    (g,) = cr.autograd.grad(CrCube.apply(x).sum(), x, create_graph=True)
    (h,) = cr.autograd.grad(g.sum(), x, create_graph=True)
    (t,) = cr.autograd.grad(h.sum(), x)
    close(h, 6 * _np(x))
    close(t, np.full(4, 6.0))


# ---------------------------------------------------------------------- multiple outputs


def sincos_body(m):
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return m.sin(x), m.cos(x)

    def backward(ctx, gs, gc):
        (x,) = ctx.saved_tensors
        return gs * m.cos(x) - gc * m.sin(x)

    return {"forward": forward, "backward": backward}


def test_multiple_outputs_both_used():
    CrF, TF = twins(sincos_body)
    x, tx = pair(2, 3, seed=5)
    s, c = CrF.apply(x)
    ts, tc = TF.apply(tx)
    close(s, ts)
    close(c, tc)
    assert s.grad_fn is c.grad_fn
    (s * s * 2 + c * 3).sum().backward()
    (ts * ts * 2 + tc * 3).sum().backward()
    close(x.grad, tx.grad)


@pytest.mark.parametrize("which", [0, 1])
def test_multiple_outputs_one_used_gets_zero_grad_for_other(which):
    CrF, TF = twins(sincos_body)
    x, tx = pair(4, seed=6)
    CrF.apply(x)[which].sum().backward()
    TF.apply(tx)[which].sum().backward()
    close(x.grad, tx.grad)


def test_multiple_outputs_double_backward():
    CrF, TF = twins(sincos_body)
    x, tx = pair(3, seed=7)
    assert gradgradcheck(lambda a: CrF.apply(a), (x,))
    s, c = CrF.apply(x)
    ts, tc = TF.apply(tx)
    (g,) = cr.autograd.grad((s * c).sum(), x, create_graph=True)
    (tg,) = torch.autograd.grad((ts * tc).sum(), tx, create_graph=True)
    close(g, tg)
    (gg,) = cr.autograd.grad(g.sum(), x, retain_graph=True)
    (tgg,) = torch.autograd.grad(tg.sum(), tx)
    close(gg, tgg)


# ---------------------------------------------------------------------- non-tensor arguments


def scale_body(m):
    def forward(ctx, x, k, y, square):
        ctx.k, ctx.square = k, square
        ctx.save_for_backward(x)
        return (x * x if square else x) * k + y

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        gx = g * ctx.k * (2 * x if ctx.square else 1)
        return gx, None, g, None

    return {"forward": forward, "backward": backward}


@pytest.mark.parametrize("square", [True, False])
def test_non_tensor_arguments(square):
    CrF, TF = twins(scale_body)
    x, tx = pair(3, seed=8)
    y, ty = pair(3, seed=9)
    out = CrF.apply(x, 2.5, y, square)
    tout = TF.apply(tx, 2.5, ty, square)
    close(out, tout)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    close(x.grad, tx.grad)
    close(y.grad, ty.grad)


def test_backward_with_too_few_gradients_is_an_error():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g

    x, _ = pair(2)
    y, _ = pair(2, seed=1)
    with pytest.raises(RuntimeError, match="returned 1 gradients.*2 inputs"):
        Bad.apply(x, y).sum().backward()


def test_extra_none_gradients_are_allowed():
    class Extra(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2, None, None

    x, _ = pair(3)
    Extra.apply(x).sum().backward()
    np.testing.assert_array_equal(_np(x.grad), np.full(3, 2.0))


def test_non_tensor_output_is_passed_through():
    class WithCount(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, 7

        @staticmethod
        def backward(ctx, g, g_count):
            assert g_count is None
            return g * 2

    x, _ = pair(3)
    y, n = WithCount.apply(x)
    assert n == 7
    y.sum().backward()
    np.testing.assert_array_equal(_np(x.grad), np.full(3, 2.0))


# ---------------------------------------------------------------------- needs_input_grad


def mul_body(m, seen):
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    def backward(ctx, g):
        seen.append(ctx.needs_input_grad)  # a tuple in PyTorch
        a, b = ctx.saved_tensors
        ga = g * b if ctx.needs_input_grad[0] else None
        gb = g * a if ctx.needs_input_grad[1] else None
        return ga, gb

    return {"forward": forward, "backward": backward}


@pytest.mark.parametrize("ra,rb", [(True, True), (True, False), (False, True)])
def test_needs_input_grad(ra, rb):
    seen_cr: list = []
    seen_t: list = []
    CrF = type("CrMul", (Function,), {k: staticmethod(v) for k, v in mul_body(cr, seen_cr).items()})
    TF = type(
        "TMul",
        (torch.autograd.Function,),
        {k: staticmethod(v) for k, v in mul_body(torch, seen_t).items()},
    )
    a, ta = pair(3, seed=10, requires_grad=ra)
    b, tb = pair(3, seed=11, requires_grad=rb)
    CrF.apply(a, b).sum().backward()
    TF.apply(ta, tb).sum().backward()
    assert seen_cr == seen_t == [(ra, rb)]
    assert isinstance(seen_cr[0], tuple)
    for t, tt, r in ((a, ta, ra), (b, tb, rb)):
        if r:
            close(t.grad, tt.grad)
        else:
            assert t.grad is None


def test_needs_input_grad_visible_in_forward_and_non_tensor_is_false():
    seen = []

    class F(Function):
        @staticmethod
        def forward(ctx, x, k, y):
            seen.append(tuple(ctx.needs_input_grad))
            return x * k + y

        @staticmethod
        def backward(ctx, g):
            seen.append(tuple(ctx.needs_input_grad))
            return g, None, None

    x, _ = pair(2)
    y, _ = pair(2, requires_grad=False)
    F.apply(x, 3.0, y).sum().backward()
    assert seen == [(True, False, False), (True, False, False)]


def test_no_graph_when_no_input_requires_grad_or_under_no_grad():
    CrExp, _ = twins(exp_body)
    x, _ = pair(3, requires_grad=False)
    y = CrExp.apply(x)
    assert not y.requires_grad and y.grad_fn is None
    xr, _ = pair(3)
    with cr.no_grad():
        y = CrExp.apply(xr)
    assert not y.requires_grad and y.grad_fn is None
    close(y, np.exp(_np(xr)))


def test_identity_function_returns_a_new_node():
    class Identity(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 3  # deliberately scaled, to see that this backward runs

    x, _ = pair(3)
    y = Identity.apply(x)
    assert y is not x and y.grad_fn is not None and x.is_leaf
    y.sum().backward()
    np.testing.assert_array_equal(_np(x.grad), np.full(3, 3.0))


# ---------------------------------------------------------------------- mark_non_differentiable


def sort_body(m):
    def forward(ctx, x):
        vals, idx = m.sort(x, dim=-1) if m is torch else _cr_sort(x)
        ctx.mark_non_differentiable(idx)
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return vals, idx

    def backward(ctx, g_vals, g_idx):
        (idx,) = ctx.saved_tensors
        out = m.zeros(ctx.shape, dtype=g_vals.dtype)
        return (
            out.scatter_add(-1, idx, g_vals) if m is torch else m.scatter_add(out, -1, idx, g_vals)
        )

    return {"forward": forward, "backward": backward}


def _cr_sort(x):
    idx = np.argsort(x.data, axis=-1, kind="stable")
    return cr.tensor(np.take_along_axis(x.data, idx, -1)), cr.tensor(idx)


def test_mark_non_differentiable_sort():
    CrF, TF = twins(sort_body)
    x, tx = pair(3, 5, seed=12)
    v, i = CrF.apply(x)
    tv, ti = TF.apply(tx)
    close(v, tv)
    np.testing.assert_array_equal(_np(i), _np(ti))
    assert v.requires_grad
    assert not i.requires_grad and i.grad_fn is None
    w, tw = pair(3, 5, seed=13, requires_grad=False)
    (v * w).sum().backward()
    (tv * tw).sum().backward()
    close(x.grad, tx.grad)


def test_mark_non_differentiable_first_output():
    class ArgmaxAndMax(Function):
        @staticmethod
        def forward(ctx, x):
            i = cr.tensor(np.argmax(x.data, axis=0))
            ctx.mark_non_differentiable(i)
            ctx.save_for_backward(i)
            ctx.n = x.shape[0]
            return i, x.amax(0)

        @staticmethod
        def backward(ctx, g_i, g_v):
            (i,) = ctx.saved_tensors
            onehot = (cr.arange(ctx.n).reshape(-1, 1) == i.reshape(1, -1)).to(g_v.dtype)
            return onehot * g_v

    x, tx = pair(4, 3, seed=14)
    i, v = ArgmaxAndMax.apply(x)
    assert not i.requires_grad and v.requires_grad
    (v * v).sum().backward()
    tv = tx.amax(0)
    (tv * tv).sum().backward()
    close(x.grad, tx.grad)


# ---------------------------------------------------------------------- setup_context style


def mul_sc_body(m):
    def forward(a, b):
        return a * b

    def setup_context(ctx, inputs, output):
        a, b = inputs
        ctx.save_for_backward(a, b, output)

    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        return g * b + 0 * out, g * a

    return {"forward": forward, "setup_context": setup_context, "backward": backward}


def test_setup_context_style():
    CrF, TF = twins(mul_sc_body)
    a, ta = pair(2, 3, seed=15)
    b, tb = pair(2, 3, seed=16)
    out, tout = CrF.apply(a, b), TF.apply(ta, tb)
    close(out, tout)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    close(a.grad, ta.grad)
    close(b.grad, tb.grad)


def test_setup_context_inherited_by_subclass():
    CrF, TF = twins(mul_sc_body)
    Sub = type("Sub", (CrF,), {})
    TSub = type("TSub", (TF,), {})
    a, ta = pair(3, seed=17)
    b, tb = pair(3, seed=18)
    Sub.apply(a, b).sum().backward()
    TSub.apply(ta, tb).sum().backward()
    close(a.grad, ta.grad)
    close(b.grad, tb.grad)


def test_setup_context_double_backward():
    CrF, TF = twins(mul_sc_body)
    a, ta = pair(3, seed=19)
    b, tb = pair(3, seed=20)
    assert gradgradcheck(CrF.apply, (a, b))
    (ga, gb) = cr.autograd.grad((CrF.apply(a, b) ** 2).sum(), (a, b), create_graph=True)
    (tga, tgb) = torch.autograd.grad((TF.apply(ta, tb) ** 2).sum(), (ta, tb), create_graph=True)
    (h,) = cr.autograd.grad((ga * gb).sum(), a)
    (th,) = torch.autograd.grad((tga * tgb).sum(), ta)
    close(h, th)


# ---------------------------------------------------------------------- saved tensors: lifetime and versions


def test_saved_tensors_after_backward_are_freed():
    CrExp, _ = twins(exp_body)
    x, _ = pair(3)
    y = CrExp.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="freed") as ei:
        _ = y.grad_fn.saved_tensors
    assert "retain_graph=True" in str(ei.value)
    # and a second backward through it says the same
    with pytest.raises(RuntimeError, match="second time"):
        y.sum().backward()


def test_saved_tensors_kept_with_retain_graph():
    CrCube, _ = twins(cube_body)
    x, _ = pair(3)
    y = CrCube.apply(x)
    y.sum().backward(retain_graph=True)
    (saved,) = y.grad_fn.saved_tensors
    assert saved is x
    y.sum().backward()
    close(x.grad, 2 * 3 * _np(x) ** 2)


def test_inplace_change_of_saved_input_raises_at_backward():
    CrF = twins(lambda m: mul_body(m, []))[0]
    x, _ = pair(3)
    w, _ = pair(3, seed=1, requires_grad=False)
    y = CrF.apply(x, w)
    w.mul_(2)  # allowed: w does not require grad; but the Function saved it
    with pytest.raises(RuntimeError, match="modified in place") as ei:
        y.sum().backward()
    assert "CrF" in str(ei.value)


def test_inplace_change_of_saved_leaf_under_no_grad_raises():
    CrCube, _ = twins(cube_body)
    x, _ = pair(3)
    y = CrCube.apply(x)
    with cr.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match=r"modified in place.*version 0 -> 1"):
        y.sum().backward()


def test_inplace_change_of_saved_output_raises_at_backward():
    CrExp, TExp = twins(exp_body)
    x, tx = pair(3)
    y, ty = CrExp.apply(x), TExp.apply(tx)
    with cr.no_grad():
        y.mul_(2)
    with torch.no_grad():
        ty.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ty.sum().backward()
    with pytest.raises(RuntimeError, match="its output.*modified in place"):
        y.sum().backward()


# ---------------------------------------------------------------------- gradcheck API


class WrongSin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.sin()  # wrong: should be cos


class SinRightValueWrongSecond(Function):
    """First derivative right, but computed from a detached input: no second derivative."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.detach().cos()


@pytest.mark.parametrize(
    "fn,shapes",
    [
        (lambda a: cr.tanh(a) * cr.exp(a), [(3, 2)]),
        (lambda a, b: a @ b, [(2, 3), (3, 4)]),
        (lambda a, b: (a / (b * b + 1)).sum(0), [(3, 2), (2,)]),
        (lambda a: cr.softmax(a, dim=-1), [(2, 4)]),
        (lambda a: cr.logsumexp(a, dim=0), [(3, 2)]),
    ],
)
def test_gradcheck_and_gradgradcheck_pass_on_smooth_ops(fn, shapes):
    rng = np.random.default_rng(21)
    ins = tuple(
        cr.tensor(rng.standard_normal(s), dtype=cr.float64, requires_grad=True) for s in shapes
    )
    assert gradcheck(fn, ins) is True
    assert gradgradcheck(fn, ins) is True


def test_gradcheck_detects_wrong_backward():
    x = cr.tensor([0.3, -1.1, 2.0], dtype=cr.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="Jacobian mismatch") as ei:
        gradcheck(WrongSin.apply, (x,))
    assert isinstance(ei.value, RuntimeError)
    assert "numerical" in str(ei.value) and "analytical" in str(ei.value)
    assert gradcheck(WrongSin.apply, (x,), raise_exception=False) is False
    # the torch twin of the same mistake fails torch's gradcheck too
    tx = torch.tensor([0.3, -1.1, 2.0], dtype=torch.float64, requires_grad=True)

    class TWrongSin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x.sin()

    assert torch.autograd.gradcheck(TWrongSin.apply, (tx,), raise_exception=False) is False


def test_gradcheck_wrong_gradient_for_second_input_only():
    class HalfWrong(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a * 2

    a = cr.tensor([1.0, 2.0], dtype=cr.float64, requires_grad=True)
    b = cr.tensor([0.5, -3.0], dtype=cr.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(HalfWrong.apply, (a, b))
    # only checking a (b does not require grad) passes
    assert gradcheck(HalfWrong.apply, (a, b.detach()))


def test_gradgradcheck_detects_wrong_second_derivative():
    x = cr.tensor([0.3, -1.1, 2.0], dtype=cr.float64, requires_grad=True)
    assert gradcheck(SinRightValueWrongSecond.apply, (x,))
    assert gradgradcheck(SinRightValueWrongSecond.apply, (x,), raise_exception=False) is False
    with pytest.raises(GradcheckError):
        gradgradcheck(SinRightValueWrongSecond.apply, (x,))


def test_gradcheck_requires_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        gradcheck(lambda a: a * 2, (cr.ones(2, dtype=cr.float64),))


def test_gradcheck_warns_on_float32():
    x = cr.tensor([0.5, 1.0], dtype=cr.float32, requires_grad=True)
    with pytest.warns(UserWarning, match="float64"):
        assert gradcheck(lambda a: a * 2, (x,), eps=1e-2, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------- on a device


def test_function_on_device(device):
    """A Function whose forward and backward use Tensor ops runs where its inputs live: outputs,
    saved tensors, gradients (first and second order) and an unused output's zero gradient."""

    class ExpAndDouble(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y, x * 2, 3

        @staticmethod
        def backward(ctx, g_exp, g_double, g_count):
            (y,) = ctx.saved_tensors
            return g_exp * y + g_double * 2

    a = np.random.default_rng(30).standard_normal((2, 3))
    x = cr.tensor(a, requires_grad=True, device=device)
    y, d, n = ExpAndDouble.apply(x)
    assert n == 3 and y.device == x.device and d.device == x.device
    (g,) = cr.autograd.grad(y.sum(), x, create_graph=True)  # d unused: a zero gradient for it
    assert g.device == x.device and g.requires_grad
    close(g, np.exp(a))
    (gg,) = cr.autograd.grad(g.sum(), x, retain_graph=True)
    close(gg, np.exp(a))
    (y * 0 + d).sum().backward()
    assert x.grad.device == x.device
    close(x.grad, np.full((2, 3), 2.0))
    assert gradcheck(lambda t: ExpAndDouble.apply(t)[0], (x,))
