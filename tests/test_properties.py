"""Property tests (hypothesis): broadcasting binary ops, reductions, reshape/permute round trips,
values and gradients against NumPy and PyTorch, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import chainrule as cr

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # the ``device`` fixture is set once per test (it installs the CUDA module), not per example
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
RTOL, ATOL = 1e-10, 1e-12


def _np(x):
    return x.detach().cpu().numpy()  # (chainrule's CUDA tensors too)


def leaf_pair(a, device="cpu"):
    """The same float64 leaf in chainrule (on ``device``) and in torch (on the CPU)."""
    return (
        cr.tensor(a, dtype=cr.float64, requires_grad=True, device=device),
        torch.tensor(a, dtype=torch.float64, requires_grad=True),
    )


# ---------------------------------------------------------------------- broadcasting binary ops

# (name, chainrule fn, torch fn, numpy fn, how to make operand values)
_pos = ("pos", lambda rng, s: rng.uniform(0.5, 2.0, s))
_any = ("any", lambda rng, s: rng.standard_normal(s))
_nonzero = ("nonzero", lambda rng, s: rng.choice([-1.0, 1.0], s) * rng.uniform(0.5, 2.0, s))

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, np.add, _any, _any),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, np.subtract, _any, _any),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, np.multiply, _any, _any),
    "div": (lambda a, b: a / b, lambda a, b: a / b, np.divide, _any, _nonzero),
    "pow": (lambda a, b: a**b, lambda a, b: a**b, np.power, _pos, _any),
    "maximum": (cr.maximum, torch.maximum, np.maximum, _any, _any),
    "minimum": (cr.minimum, torch.minimum, np.minimum, _any, _any),
    "where_gt": (
        lambda a, b: cr.where(a > b, a * b, a - b),
        lambda a, b: torch.where(a > b, a * b, a - b),
        lambda a, b: np.where(a > b, a * b, a - b),
        _any,
        _any,
    ),
}


@SETTINGS
@given(
    name=st.sampled_from(sorted(BINARY)),
    shapes=mutually_broadcastable_shapes(
        num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_broadcast_binary_forward_and_grads(name, shapes, seed, device):
    f_cr, f_t, f_np, (_, make_a), (_, make_b) = BINARY[name]
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    a, b = make_a(rng, sa), make_b(rng, sb)
    w = rng.standard_normal(out_shape)
    xa, ta = leaf_pair(a, device)
    xb, tb = leaf_pair(b, device)

    out = f_cr(xa, xb)
    expected = f_np(a, b)
    assert tuple(out.shape) == tuple(out_shape) == expected.shape
    assert out.device == xa.device
    np.testing.assert_allclose(_np(out), expected, rtol=RTOL, atol=ATOL)

    (out * cr.tensor(w, device=device)).sum().backward()
    (f_t(ta, tb) * torch.tensor(w)).sum().backward()
    for x, t, s in ((xa, ta, sa), (xb, tb, sb)):
        assert x.grad is not None and x.grad.device == x.device
        assert tuple(x.grad.shape) == tuple(s), f"grad shape {x.grad.shape} != input shape {s}"
        np.testing.assert_allclose(_np(x.grad), _np(t.grad), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(
    shapes=mutually_broadcastable_shapes(
        num_shapes=3, min_dims=0, max_dims=3, min_side=0, max_side=3
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_broadcast_chain_with_reused_input(shapes, seed, device):
    """x used twice with different broadcasts: both contributions summed back to x's shape."""
    sa, sb, sc = shapes.input_shapes
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal(s) for s in (sa, sb, sc)]
    (xa, ta), (xb, tb), (xc, tc) = (leaf_pair(a, device) for a in arrs)
    out = cr.tanh(xa * xb + xc) * xa - xb / (1.0 + xc * xc)
    tout = torch.tanh(ta * tb + tc) * ta - tb / (1.0 + tc * tc)
    np.testing.assert_allclose(_np(out), _np(tout), rtol=RTOL, atol=ATOL)
    out.sum().backward()
    tout.sum().backward()
    for x, t in ((xa, ta), (xb, tb), (xc, tc)):
        assert x.grad.shape == x.shape
        np.testing.assert_allclose(_np(x.grad), _np(t.grad), rtol=1e-9, atol=ATOL)


@SETTINGS
@given(
    shape=st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple),
    scalar=st.floats(-3, 3, allow_nan=False).filter(lambda v: abs(v) > 0.1),
    seed=st.integers(0, 2**31 - 1),
)
def test_python_scalar_operands(shape, scalar, seed):
    a = np.random.default_rng(seed).standard_normal(shape)
    x, t = leaf_pair(a)
    out = (x * scalar - scalar) / scalar + scalar / (x * x + 1.0)
    tout = (t * scalar - scalar) / scalar + scalar / (t * t + 1.0)
    assert out.shape == x.shape
    np.testing.assert_allclose(_np(out), _np(tout), rtol=RTOL, atol=ATOL)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(_np(x.grad), _np(t.grad), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- reductions


@st.composite
def reduction_case(draw, min_side=1):
    shape = tuple(draw(st.lists(st.integers(min_side, 4), min_size=1, max_size=4)))
    nd = len(shape)
    # an empty tuple reduces every dim, as in PyTorch
    dims = draw(st.lists(st.integers(0, nd - 1), min_size=0, max_size=nd, unique=True))
    # each dim may be written negatively
    dims = [d - nd if draw(st.booleans()) else d for d in dims]
    as_int = len(dims) == 1 and draw(st.booleans())
    dim = dims[0] if as_int else tuple(dims)
    keepdim = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return shape, dim, keepdim, seed


def _check_reduction(f_cr, f_t, shape, dim, keepdim, seed, rtol=RTOL, device="cpu"):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    x, t = leaf_pair(a, device)
    out = f_cr(x, dim, keepdim)
    tout = f_t(t, dim, keepdim)
    assert tuple(out.shape) == tuple(tout.shape), f"{out.shape} vs {tuple(tout.shape)}"
    assert out.device == x.device
    np.testing.assert_allclose(_np(out), _np(tout), rtol=rtol, atol=ATOL)
    w = rng.standard_normal(tuple(tout.shape))
    (out * cr.tensor(w, device=device)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    assert x.grad.shape == x.shape and x.grad.device == x.device
    np.testing.assert_allclose(_np(x.grad), _np(t.grad), rtol=rtol, atol=ATOL)


def _all(d):
    """torch.var/std reduce every dim for dim=() but their gradient then divides by 1 instead of
    n (a PyTorch bug); compare with dim=None, which means the same."""
    return None if d == () else d


REDUCTIONS = {
    "sum": (lambda x, d, k: cr.sum(x, d, k), lambda t, d, k: torch.sum(t, d, k)),
    "sum_method": (lambda x, d, k: x.sum(d, keepdim=k), lambda t, d, k: t.sum(d, keepdim=k)),
    "mean": (lambda x, d, k: cr.mean(x, d, k), lambda t, d, k: torch.mean(t, d, k)),
    "amax": (lambda x, d, k: cr.amax(x, d, k), lambda t, d, k: torch.amax(t, d, k)),
    "amin": (lambda x, d, k: cr.amin(x, d, k), lambda t, d, k: torch.amin(t, d, k)),
    "logsumexp": (
        lambda x, d, k: cr.logsumexp(x, d, k),
        lambda t, d, k: torch.logsumexp(t, d, k),
    ),
    "var": (
        lambda x, d, k: cr.var(x, d, keepdim=k, correction=0),
        lambda t, d, k: torch.var(t, _all(d), keepdim=k, correction=0),
    ),
    "var_unbiased": (
        lambda x, d, k: x.var(d, keepdim=k),
        lambda t, d, k: t.var(_all(d), keepdim=k),
    ),
    "std": (
        lambda x, d, k: cr.std(x, d, keepdim=k, correction=0),
        lambda t, d, k: torch.std(t, _all(d), keepdim=k, correction=0),
    ),
}


@SETTINGS
@given(name=st.sampled_from(sorted(REDUCTIONS)), case=reduction_case())
def test_reductions_vs_torch(name, case, device):
    shape, dim, keepdim, seed = case
    dims = (dim,) if isinstance(dim, int) else dim
    if name == "logsumexp" and dims == ():
        return  # torch.logsumexp rejects dim=()
    n = int(np.prod([shape[d] for d in (dims or range(len(shape)))]))
    if name == "var_unbiased" and n < 2:
        return  # 0/0: NaN in both, compared by test_var_single_element below
    f_cr, f_t = REDUCTIONS[name]
    _check_reduction(f_cr, f_t, *case, rtol=1e-9 if name == "std" else RTOL, device=device)


@SETTINGS
@given(case=reduction_case(min_side=0))
def test_sum_with_empty_dims(case):
    f_cr, f_t = REDUCTIONS["sum"]
    _check_reduction(f_cr, f_t, *case)


@SETTINGS
@given(case=reduction_case())
def test_reduction_composition_second_order(case, device):
    """Gradients of a gradient through logsumexp and mean: autograd.grad(create_graph=True)."""
    shape, dim, keepdim, seed = case
    if dim == ():
        dim = tuple(range(len(shape)))  # torch.logsumexp rejects dim=()
    a = np.random.default_rng(seed).standard_normal(shape)
    x, t = leaf_pair(a, device)
    y = cr.logsumexp(x * x, dim, keepdim).mean()
    ty = torch.logsumexp(t * t, dim, keepdim).mean()
    (g,) = cr.autograd.grad(y, x, create_graph=True)
    (tg,) = torch.autograd.grad(ty, t, create_graph=True)
    np.testing.assert_allclose(_np(g), _np(tg), rtol=RTOL, atol=ATOL)
    (gg,) = cr.autograd.grad((g * g).sum(), x)
    (tgg,) = torch.autograd.grad((tg * tg).sum(), t)
    np.testing.assert_allclose(_np(gg), _np(tgg), rtol=1e-9, atol=ATOL)


@pytest.mark.parametrize("name", ["sum", "mean", "var"])
def test_empty_dim_tuple_reduces_all_like_torch(name):
    a = np.arange(6.0).reshape(2, 3)
    out = getattr(cr, name)(cr.tensor(a), dim=())
    tout = getattr(torch, name)(torch.tensor(a), dim=())
    assert tuple(out.shape) == tuple(tout.shape)
    np.testing.assert_allclose(_np(out), _np(tout))


def test_var_single_element_is_nan_like_torch():
    x = cr.tensor([[1.5], [2.0]], dtype=cr.float64)
    t = torch.tensor([[1.5], [2.0]], dtype=torch.float64)
    np.testing.assert_array_equal(np.isnan(_np(x.var(1))), np.isnan(_np(t.var(1))))
    assert np.all(np.isnan(_np(x.var(1))))


def test_std_gradient_at_zero_variance():
    x = cr.tensor([[1.5], [2.0]], dtype=cr.float64, requires_grad=True)
    t = torch.tensor([[1.5], [2.0]], dtype=torch.float64, requires_grad=True)
    cr.std(x, 1, correction=0).sum().backward()  # one element per row: std 0
    torch.std(t, 1, correction=0).sum().backward()
    np.testing.assert_array_equal(_np(t.grad), np.zeros((2, 1)))
    np.testing.assert_array_equal(_np(x.grad), _np(t.grad))


# ---------------------------------------------------------------------- reshape / permute


@st.composite
def reshape_permute_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    n = int(np.prod(shape))
    # a random factorisation of n as the intermediate shape
    factors = []
    rest = n
    for p in (2, 3):
        while rest % p == 0:
            factors.append(p)
            rest //= p
    if rest > 1:
        factors.append(rest)
    draw(st.randoms()).shuffle(factors)
    k = draw(st.integers(1, max(1, len(factors))))
    groups = [1] * k
    for f in factors:
        groups[draw(st.integers(0, k - 1))] *= f
    mid = tuple(groups)
    if draw(st.booleans()):  # write one size as -1
        i = draw(st.integers(0, len(mid) - 1))
        mid_arg = mid[:i] + (-1,) + mid[i + 1 :]
    else:
        mid_arg = mid
    perm = tuple(draw(st.permutations(range(len(mid)))))
    seed = draw(st.integers(0, 2**31 - 1))
    return shape, mid, mid_arg, perm, seed


@SETTINGS
@given(case=reshape_permute_case())
def test_reshape_permute_round_trip_preserves_values_and_grads(case):
    shape, mid, mid_arg, perm, seed = case
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    x, t = leaf_pair(a)
    inv = tuple(np.argsort(perm))
    y = x.reshape(*mid_arg).permute(*perm)
    assert tuple(y.shape) == tuple(mid[p] for p in perm)
    back = y.permute(*inv).reshape(*shape)
    np.testing.assert_array_equal(_np(back), a)
    w = rng.standard_normal(shape)
    (back * cr.tensor(w)).sum().backward()
    np.testing.assert_array_equal(_np(x.grad), w)

    # a non-trivial computation in the permuted layout, vs torch
    x2, t2 = leaf_pair(a)
    wp = rng.standard_normal(tuple(mid[p] for p in perm))
    out = (cr.tanh(x2.reshape(*mid_arg).permute(*perm)) * cr.tensor(wp)).permute(*inv)
    tout = (torch.tanh(t2.reshape(*mid_arg).permute(*perm)) * torch.tensor(wp)).permute(*inv)
    out = out.reshape(-1).cumsum(0)
    tout = tout.reshape(-1).cumsum(0)
    np.testing.assert_allclose(_np(out), _np(tout), rtol=RTOL, atol=ATOL)
    v = rng.standard_normal(out.shape)
    (out * cr.tensor(v)).sum().backward()
    (tout * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(_np(x2.grad), _np(t2.grad), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
    data=st.data(),
)
def test_transpose_flatten_unflatten_grads(shape, data):
    nd = len(shape)
    d0 = data.draw(st.integers(-nd, nd - 1))
    d1 = data.draw(st.integers(-nd, nd - 1))
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    x, t = leaf_pair(a)
    y = x.transpose(d0, d1).flatten(1)
    ty = t.transpose(d0, d1).flatten(1)
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_array_equal(_np(y), _np(ty))
    w = rng.standard_normal(tuple(ty.shape))
    ((y * y) * cr.tensor(w)).sum().backward()
    ((ty * ty) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(_np(x.grad), _np(t.grad), rtol=RTOL, atol=ATOL)
