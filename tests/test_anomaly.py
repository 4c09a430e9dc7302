"""detect_anomaly: names the op (and where it was called) that first made a NaN/Inf."""

from __future__ import annotations

import inspect
import os
import re
import warnings

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule.autograd import (
    Function,
    detect_anomaly,
    is_anomaly_enabled,
    set_detect_anomaly,
)

THIS_FILE = os.path.basename(__file__)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's invalid-value notes


def _line() -> int:
    """Line number of the caller (to check that a report names the right line)."""
    return inspect.currentframe().f_back.f_lineno


@pytest.fixture(autouse=True)
def _anomaly_off():
    assert not is_anomaly_enabled()
    yield
    set_detect_anomaly(False)


def test_log_of_negative_names_op_line_and_input_stats():
    x = cr.tensor([1.0, -2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError) as ei:
        with detect_anomaly():
            ln = _line() + 1
            cr.log(x)
    msg = str(ei.value)
    assert "`log`" in msg
    assert "NaN" in msg
    assert f"{THIS_FILE}:{ln}" in msg
    assert "cr.log(x)" in msg  # the source line
    assert "shape (3,)" in msg and "min -2" in msg and "max 3" in msg
    assert not is_anomaly_enabled(), "the context must be left on an exception"


def test_zero_over_zero_names_div():
    z = cr.zeros(2, 2, requires_grad=True)
    with detect_anomaly():
        w = z + 1  # fine
        with pytest.raises(RuntimeError, match=r"`div` at .*produced NaN from finite inputs"):
            ln = _line() + 1
            _ = (w - 1) / (w - 1)
        assert np.all(np.isfinite(w.detach().numpy()))
    # the reported line is the division, not the line that made w
    with detect_anomaly():
        try:
            ln = _line() + 1
            _ = z / z
        except RuntimeError as e:
            assert f"{THIS_FILE}:{ln}" in str(e)
            assert str(e).count("input ") == 2  # statistics of both inputs
        else:
            pytest.fail("0/0 was not reported")


def test_nan_input_is_not_blamed_on_the_next_op():
    x = cr.tensor([float("nan"), 1.0])
    with detect_anomaly():
        y = cr.exp(x) * 2  # the NaN came in: no op produced it
    assert np.isnan(y.numpy()[0])


def test_backward_only_nan_names_the_backward_op():
    """sqrt(0) is finite; its backward g / (2*sqrt(x)) with g = 0 (from * 0) is 0/0 = NaN."""
    x = cr.tensor([0.0, 4.0], requires_grad=True)
    with detect_anomaly():
        ln = _line() + 1
        y = cr.sqrt(x) * 0.0
        assert np.all(np.isfinite(y.detach().numpy()))
        with pytest.raises(RuntimeError) as ei:
            y.sum().backward()
    msg = str(ei.value)
    assert "backward of `sqrt`" in msg
    assert f"{THIS_FILE}:{ln}" in msg, "the report should name the forward call"
    assert "1 NaN" in msg
    assert x.grad is None
    # without anomaly detection the NaN passes silently, as in PyTorch
    x2 = cr.tensor([0.0, 4.0], requires_grad=True)
    (cr.sqrt(x2) * 0.0).sum().backward()
    tx = torch.tensor([0.0, 4.0], requires_grad=True)
    (torch.sqrt(tx) * 0.0).sum().backward()
    np.testing.assert_array_equal(np.isnan(x2.grad.numpy()), np.isnan(tx.grad.numpy()))


def test_inf_in_forward_is_remembered_and_reported_when_backward_starts_from_nan():
    x = cr.tensor([0.0, 1.0], requires_grad=True)
    with detect_anomaly() as d:
        ln = _line() + 1
        y = 1.0 / x  # Inf: legitimate on its own, remembered
        loss = (y * 0.0).sum()  # inf * 0 = NaN, but from a non-finite input: not the origin
        assert d.first is not None and "`div`" in d.first
        with pytest.raises(RuntimeError, match="non-finite") as ei:
            loss.backward()
    msg = str(ei.value)
    assert "`div`" in msg and f"{THIS_FILE}:{ln}" in msg


def test_masked_fill_minus_inf_softmax_no_false_alarm():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((3, 5))
    mask = np.zeros((3, 5), bool)
    mask[0, 3:] = True
    mask[1, 1:] = True  # only one position left
    v = rng.standard_normal((3, 5))
    x = cr.tensor(s, requires_grad=True)
    with detect_anomaly():
        a = cr.softmax(x.masked_fill(cr.tensor(mask), float("-inf")), dim=-1)
        (a * cr.tensor(v)).sum().backward()
    tx = torch.tensor(s, requires_grad=True)
    ta = torch.softmax(tx.masked_fill(torch.tensor(mask), float("-inf")), dim=-1)
    (ta * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(a.detach().numpy(), ta.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-7)
    assert np.all(a.detach().numpy()[mask] == 0)


def test_additive_minus_inf_mask_no_false_alarm():
    x = cr.tensor([[0.5, 1.0, -0.3]], requires_grad=True)
    bias = cr.tensor([[0.0, float("-inf"), 0.0]])
    with detect_anomaly():
        out = cr.log_softmax(x + bias, dim=-1)
        out[:, 0].sum().backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g)) and g[0, 1] == 0


def test_decorator_form():
    @detect_anomaly()
    def step(t):
        """docstring kept"""
        return cr.log(t - 5.0)

    assert step.__name__ == "step" and step.__doc__ == "docstring kept"
    with pytest.raises(RuntimeError, match="`sub`|`log`"):
        step(cr.tensor([1.0, 2.0], requires_grad=True))
    assert not is_anomaly_enabled()
    # finite case returns the result
    r = step(cr.tensor([6.0]))
    assert abs(r.item()) < 1e-6


def test_outside_context_nothing_is_checked():
    with detect_anomaly():
        assert is_anomaly_enabled()
    assert not is_anomaly_enabled()
    x = cr.tensor([-1.0, 0.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = cr.log(x) * 2.0  # NaN in forward, no error
        z = cr.sqrt(x[1:]) * 0.0
        (y[1:].sum() * 0.0 + z.sum()).backward()  # NaN gradient (0/0 in sqrt's backward)
    assert np.isnan(y.detach().numpy()[0])
    assert np.isnan(x.grad.numpy()[1])


def test_set_detect_anomaly_and_check_nan_false():
    set_detect_anomaly(True)
    assert is_anomaly_enabled()
    with pytest.raises(RuntimeError, match="`log`"):
        cr.log(cr.tensor([-1.0]))
    set_detect_anomaly(False)
    assert not is_anomaly_enabled()
    with detect_anomaly(check_nan=False):
        y = cr.log(cr.tensor([-1.0]))
    assert np.isnan(y.item())


def test_nested_contexts_restore_previous_state():
    with detect_anomaly() as outer:
        with detect_anomaly(check_nan=False):
            cr.log(cr.tensor([-1.0]))  # not checked
        assert is_anomaly_enabled()
        with pytest.raises(RuntimeError):
            cr.log(cr.tensor([-1.0]))
        assert outer.first is not None
    assert not is_anomaly_enabled()


def test_custom_function_backward_nan_names_the_function():
    class BadBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with detect_anomaly():
        ln = _line() + 1
        y = BadBackward.apply(x)
        with pytest.raises(RuntimeError) as ei:
            y.sum().backward()
    msg = str(ei.value)
    assert "backward of `BadBackward`" in msg
    assert f"{THIS_FILE}:{ln}" in msg


def test_create_graph_backward_is_checked_too():
    x = cr.tensor([0.0, 1.0], requires_grad=True)
    with detect_anomaly():
        y = (x**3).sum()
        (g,) = cr.autograd.grad(y, x, create_graph=True)  # 3 x^2: finite
        assert np.all(np.isfinite(g.detach().numpy()))
        ln = _line() + 1
        z = cr.sqrt(g) * 0.0  # sqrt(0) = 0, its backward 0/0
        with pytest.raises(RuntimeError, match="backward of `sqrt`") as ei:
            cr.autograd.grad(z.sum(), x, create_graph=True)
    # the backward rule runs recorded ops: the one that made the NaN is named, with the
    # forward call of the op whose backward it belongs to
    msg = str(ei.value)
    assert "`div`" in msg
    assert f"{THIS_FILE}:{ln}" in msg


def test_report_mentions_first_forward_inf_on_backward_error():
    x = cr.tensor([0.0, 2.0], requires_grad=True)
    with detect_anomaly():
        big = cr.exp(x * 1000.0)  # Inf from finite inputs: remembered, not raised
        y = cr.sqrt(x) * 0.0
        loss = y.sum() + (big[1:] * 0.0).sum() * 0.0
        with pytest.raises(RuntimeError) as ei:
            loss.backward()
    msg = str(ei.value)
    assert re.search(r"`exp` at .*produced Inf", msg) or "non-finite" in msg


def test_custom_function_forward_nan_names_the_function():
    class NumpyLog(Function):
        @staticmethod
        def forward(ctx, x):
            return cr.tensor(np.log(x.detach().numpy()))  # NumPy: no chainrule op to check

        @staticmethod
        def backward(ctx, g):
            return g

    x = cr.tensor([1.0, -1.0], requires_grad=True)
    with detect_anomaly():
        with pytest.raises(RuntimeError, match="`NumpyLog` at .*produced NaN") as ei:
            ln = _line() + 1
            NumpyLog.apply(x)
    assert f"{THIS_FILE}:{ln}" in str(ei.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(NumpyLog.apply(x).detach().numpy()[1])  # unchecked outside
