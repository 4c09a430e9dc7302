"""Error messages: each one says what went wrong, where, and what to do about it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd

# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "name, fn",
    [
        ("add", lambda a, b: a + b),
        ("sub", lambda a, b: a - b),
        ("mul", lambda a, b: a * b),
        ("div", lambda a, b: a / b),
    ],
)
def test_binary_op_shape_mismatch_names_op_and_both_shapes(name: str, fn: object) -> None:
    a, b = cr.ones(2, 3), cr.ones(4, 5)
    with pytest.raises(RuntimeError, match=rf"{name}.*\(2, 3\).*\(4, 5\)"):
        fn(a, b)


def test_binary_op_shape_mismatch_while_recording() -> None:
    a = cr.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"mul.*\(2, 3\).*\(3, 2\)"):
        a * cr.ones(3, 2)


@pytest.mark.parametrize(
    "fn",
    [lambda a, b: a @ b, lambda a, b: cr.matmul(a, b), lambda a, b: a.mm(b)],
    ids=["operator", "function", "mm"],
)
def test_matmul_shape_mismatch_names_op_and_both_shapes(fn: object) -> None:
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        fn(cr.ones(2, 3), cr.ones(4, 5))


def test_batched_matmul_shape_mismatch() -> None:
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3, 4\).*\(2, 5, 4\)"):
        cr.ones(2, 3, 4) @ cr.ones(2, 5, 4)


def test_cat_shape_mismatch_names_op_and_both_shapes() -> None:
    with pytest.raises(RuntimeError, match=r"cat.*\(2, 3\).*\(4, 5\)"):
        cr.cat([cr.ones(2, 3), cr.ones(4, 5)])
    with pytest.raises(RuntimeError, match=r"cat.*\(2, 3\).*\(2, 4\)"):
        cr.cat([cr.ones(2, 3), cr.ones(2, 4)], dim=0)


def test_backward_gradient_of_wrong_shape() -> None:
    y = cr.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(
        RuntimeError, match=r"gradient has shape \(3, 2\).*output has shape \(2, 3\)"
    ):
        y.backward(cr.ones(3, 2))


# ----------------------------------------------------------------------------- backward()


def test_backward_on_non_scalar_says_how_to_fix() -> None:
    y = cr.ones(3, requires_grad=True) * 2
    with pytest.raises(
        RuntimeError,
        match=r"only for scalar outputs.*shape \(3,\).*gradient=.*\.sum\(\)",
    ):
        y.backward()


def test_autograd_grad_on_non_scalar_says_how_to_fix() -> None:
    x = cr.ones(3, requires_grad=True)
    with pytest.raises(
        RuntimeError,
        match=r"grad\(\).*only for scalar outputs.*shape \(3,\).*Pass grad_outputs=.*\.sum\(\)",
    ):
        autograd.grad(x * 2, x)


def test_second_backward_through_freed_graph_names_the_op() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    loss = x.exp().sum()
    loss.backward()
    with pytest.raises(
        RuntimeError, match=r"backward through the graph a second time.*`exp`.*retain_graph=True"
    ):
        loss.backward()


def test_second_backward_names_the_first_freed_op_in_a_longer_graph() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.reshape(2, 1) * 3.0).tanh().sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"second time.*`tanh`.*retain_graph=True"):
        loss.backward()


# ----------------------------------------------------------------------------- requires_grad


@pytest.mark.parametrize(
    "make",
    [
        lambda: cr.tensor([1, 2], requires_grad=True),
        lambda: cr.tensor([True], requires_grad=True),
        lambda: cr.zeros(2, dtype=cr.int64, requires_grad=True),
        lambda: cr.arange(3, requires_grad=True),
        lambda: cr.tensor([1, 2]).requires_grad_(),
    ],
    ids=["tensor", "bool", "zeros", "arange", "requires_grad_"],
)
def test_requires_grad_on_int_tensor(make: object) -> None:
    with pytest.raises(
        RuntimeError, match=r"only floating-point tensors can require grad.*\.float\(\)"
    ):
        make()


# ----------------------------------------------------------------------------- in-place


def test_inplace_change_of_saved_output_raises_at_backward() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    loss = y.sum()
    with cr.no_grad():
        y.add_(1)  # allowed now ...
    with pytest.raises(  # ... but exp's saved output is stale
        RuntimeError,
        match=r"`exp` saved for backward \(its output.*modified in place.*version 0 -> 1.*"
        r"out-of-place op.*\.clone\(\)",
    ):
        loss.backward()


def test_inplace_change_of_saved_input_raises_at_backward() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    z = 3 * h * h  # the second mul saves (3h, h): h is its input 1
    with cr.no_grad():
        h.mul_(3)
    with pytest.raises(
        RuntimeError,
        match=r"`mul` saved for backward \(its input 1, shape \(2,\).*modified in place.*clone",
    ):
        z.sum().backward()


def test_inplace_change_through_a_view_or_detach_is_caught() -> None:
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.sin()
    loss = (y * y).sum()
    with cr.no_grad():
        y[0:2].mul_(2)  # a view shares the version counter
    with pytest.raises(RuntimeError, match=r"`mul` saved for backward.*modified in place"):
        loss.backward()
    y = x.exp()
    loss = y.sum()
    y.detach().zero_()  # so does detach()
    with pytest.raises(RuntimeError, match=r"`exp` saved for backward.*modified in place"):
        loss.backward()


def test_inplace_change_of_unsaved_tensor_is_fine() -> None:
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x + 1  # add saves nothing
    loss = (y + 2).sum()
    with cr.no_grad():
        y.mul_(5)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


@pytest.mark.parametrize(
    "update",
    [
        lambda p: p.add_(1),
        lambda p: p.mul_(2),
        lambda p: p.zero_(),
        lambda p: p.copy_(cr.ones(3)),
        lambda p: p.__setitem__(0, 5.0),
    ],
    ids=["add_", "mul_", "zero_", "copy_", "setitem"],
)
def test_inplace_update_of_leaf_requiring_grad_while_recording(update: object) -> None:
    p = cr.zeros(3, requires_grad=True)
    with pytest.raises(
        RuntimeError, match=r"in-place update of a leaf tensor that requires grad.*no_grad\(\)"
    ):
        update(p)
    np.testing.assert_array_equal(p.data, [0.0, 0.0, 0.0])  # nothing was changed
    with cr.no_grad():
        update(p)  # fine for an optimiser step


def test_augmented_assignment_on_leaf_requiring_grad() -> None:
    p = cr.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad"):
        p += 1
    with cr.no_grad():
        p += 1
    np.testing.assert_array_equal(p.data, [1.0, 1.0, 1.0])
    assert p.is_leaf and p.requires_grad


# ----------------------------------------------------------------------------- no path to a parameter


def test_no_path_detach() -> None:
    w = cr.ones(3, requires_grad=True)
    loss = ((w * 2).detach() ** 2).sum()
    with pytest.raises(
        RuntimeError, match=r"no path.*cut by `detach\(\)` \(of the output of `mul`\)"
    ):
        loss.backward()


def test_no_path_detach_of_leaf() -> None:
    w = cr.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no path.*cut by `detach\(\)` \(of a leaf\)"):
        w.detach().exp().sum().backward()


def test_no_path_argmax() -> None:
    w = cr.randn(4, requires_grad=True)
    loss = w.argmax().float() * 2
    with pytest.raises(RuntimeError, match=r"no path.*cut by `argmax`.*no gradient"):
        loss.backward()


def test_no_path_argmax_says_the_graph_was_cut() -> None:
    # the part of the argmax message that the engine owns
    w = cr.randn(4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no path.*graph was cut by .*\(it has no gradient\)"):
        (w.argmax().float() * 2).backward()


def test_no_path_cast_to_int() -> None:
    w = cr.randn(4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no path.*cut by `cast to an integer"):
        (w * 3).long().sum().float().backward()


def test_no_path_numpy_round_trip() -> None:
    w = cr.ones(3, requires_grad=True)
    y = w * 2
    back = cr.tensor(y.detach().numpy())
    loss = (back * 3).sum()
    with pytest.raises(RuntimeError, match=r"no path.*cut by a NumPy round trip.*detach\(\)"):
        loss.backward()


def test_no_path_numpy_round_trip_via_from_numpy() -> None:
    w = cr.ones(3, requires_grad=True)
    a = w.exp().detach().numpy()
    with pytest.raises(RuntimeError, match=r"cut by a NumPy round trip"):
        (cr.from_numpy(a) * 1.0).sum().backward()


def test_no_path_when_nothing_requires_grad() -> None:
    x = cr.ones(3)
    with pytest.raises(
        RuntimeError,
        match=r"no path to any tensor that requires grad: none of the tensors.*requires_grad=True",
    ):
        (x * 2).sum().backward()


def test_no_path_under_no_grad_mentions_no_grad() -> None:
    w = cr.ones(3, requires_grad=True)
    with cr.no_grad():
        loss = (w * 2).sum()
    with pytest.raises(RuntimeError, match=r"no path.*no_grad\(\)"):
        loss.backward()


def test_no_path_in_autograd_grad() -> None:
    x = cr.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"no path.*cut by `detach\(\)`"):
        autograd.grad(x.detach().sum(), x)


# ----------------------------------------------------------------------------- conversions


def test_numpy_on_tensor_requiring_grad() -> None:
    w = cr.ones(3, requires_grad=True)
    with pytest.raises(
        RuntimeError, match=r"numpy\(\) on a Tensor that requires grad.*detach\(\)\.numpy\(\)"
    ):
        w.numpy()
    with pytest.raises(RuntimeError, match=r"requires grad"):
        np.asarray(w * 2)
    assert w.detach().numpy() is w.data


def test_item_on_multi_element_tensor() -> None:
    with pytest.raises(RuntimeError, match=r"item\(\).*3 elements.*one-element"):
        cr.ones(3).item()
    assert cr.ones(1, 1).item() == 1.0


def test_bool_of_multi_element_tensor() -> None:
    with pytest.raises(RuntimeError, match=r"ambiguous"):
        bool(cr.ones(2))


# ----------------------------------------------------------------------------- autograd.grad


def test_autograd_grad_unused_input_without_allow_unused() -> None:
    x = cr.ones(3, requires_grad=True)
    u = cr.ones(2, requires_grad=True)
    with pytest.raises(
        RuntimeError, match=r"input 1 \(shape \(2,\)\) was not used.*allow_unused=True"
    ):
        autograd.grad((x * 2).sum(), [x, u])


def test_autograd_grad_input_not_requiring_grad() -> None:
    x = cr.ones(3, requires_grad=True)
    c = cr.ones(3)
    with pytest.raises(RuntimeError, match=r"input 1 does not require grad"):
        autograd.grad((x * c).sum(), [x, c])


def test_hook_on_tensor_without_grad() -> None:
    with pytest.raises(RuntimeError, match=r"doesn't require gradient"):
        cr.ones(2).register_hook(lambda g: g)


def test_retain_grad_on_tensor_without_grad() -> None:
    with pytest.raises(RuntimeError, match=r"retain_grad\(\).*does not require grad"):
        cr.ones(2).retain_grad()


def test_requires_grad_false_on_non_leaf() -> None:
    y = cr.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"non-leaf.*\.detach\(\)"):
        y.requires_grad_(False)


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "make",
    [
        lambda: cr.zeros(2, device="cuda"),
        lambda: cr.tensor([1.0], device="cuda"),
        lambda: cr.randn(2, device="cuda:0"),
        lambda: cr.ones(2).to("cuda"),
        lambda: cr.ones(2).cuda(),
    ],
    ids=["zeros", "tensor", "randn", "to", "cuda"],
)
def test_cuda_on_cpu_build_names_what_to_install(make: object) -> None:
    with pytest.raises(
        RuntimeError, match=r"CUDA is not available.*" + re.escape("chainrule[gpu]")
    ):
        make()


def test_unknown_device() -> None:
    with pytest.raises(RuntimeError, match=r"unknown device type 'tpu'"):
        cr.zeros(2, device="tpu")
