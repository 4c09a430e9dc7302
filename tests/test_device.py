"""Devices: where tensors live, moving them, and the errors for mixing them.

The 'cuda' tests run on a real GPU when CuPy finds one, else on the NumPy-backed fake CuPy
(tests/fakecupy.py), which keeps CuPy's rules (no implicit host conversion, no host arrays in
device maths) so that every GPU code path runs on CI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import backend


def host(t: cr.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- the device object
def test_device_object_mirrors_torch() -> None:
    for spec in ("cpu", "cuda", "cuda:1"):
        d, t = cr.device(spec), torch.device(spec)
        assert (d.type, d.index) == (t.type, t.index)
        assert str(d) == str(t) and repr(d) == repr(t)
    assert cr.device("cuda", 0) == cr.device("cuda:0") == "cuda:0"
    assert cr.device("cuda") != cr.device("cuda:0")  # as in torch
    assert cr.device(0) == cr.device("cuda:0")
    assert len({cr.device("cpu"), cr.device("cpu")}) == 1
    with pytest.raises(RuntimeError, match="unknown device type 'tpu'"):
        cr.device("tpu")
    with pytest.raises(RuntimeError, match="cuda:x"):
        cr.device("cuda:x")


def test_cpu_tensors_report_cpu() -> None:
    x = cr.ones(2)
    assert x.device == cr.device("cpu") and not x.is_cuda
    assert x.to("cpu") is x and x.cpu() is x
    assert not cr.cuda.is_available()  # the fixture below installs CUDA only inside a test


def test_cuda_unavailable_says_what_to_install() -> None:
    assert cr.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match=r"CUDA is not available.*chainrule\[gpu\]"):
        cr.nn.Linear(2, 2).cuda()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        cr.cuda.synchronize()


# ----------------------------------------------------------------------------- moving tensors
def test_to_and_back(cuda: str) -> None:
    a = np.arange(6.0).reshape(2, 3)
    x = cr.tensor(a)
    y = x.to(cuda)
    assert y.device == cr.device("cuda:0") and y.is_cuda and str(y.device) == "cuda:0"
    assert y.dtype == x.dtype and y.shape == x.shape
    assert backend.is_device_array(y.data)
    assert y.to("cuda") is y and y.cuda() is y
    z = y.cpu()
    assert z.device == cr.device("cpu") and type(z.data) is np.ndarray
    np.testing.assert_array_equal(z.numpy(), a)
    assert x.to(cuda, cr.float32).dtype == cr.float32
    assert x.to(cr.float32).device.type == "cpu"
    assert cr.ones(2).to(y).device == y.device  # to(other) takes other's device and dtype
    assert "device='cuda:0'" in repr(y)


def test_to_is_differentiable_both_ways(cuda: str) -> None:
    w = cr.tensor([1.0, -2.0, 3.0], requires_grad=True)  # a CPU leaf
    loss = (w.to(cuda) * 2).pow(2).sum()
    assert loss.device.type == "cuda"
    loss.backward()
    assert w.grad.device.type == "cpu"  # the gradient comes back to the leaf's device
    np.testing.assert_allclose(w.grad.numpy(), 8 * w.detach().numpy())
    v = cr.tensor([0.5, 1.5], device=cuda, requires_grad=True)  # a CUDA leaf
    (v.cpu() ** 3).sum().backward()
    assert v.grad.device.type == "cuda"
    np.testing.assert_allclose(host(v.grad), 3 * np.array([0.5, 1.5]) ** 2)


def test_numpy_of_a_cuda_tensor_refuses_like_torch(cuda: str) -> None:
    x = cr.ones(3, device=cuda)
    with pytest.raises(TypeError, match=r"can't convert cuda:0 device type tensor to numpy"):
        x.numpy()
    with pytest.raises(TypeError, match="cpu"):
        np.asarray(x)
    assert x.tolist() == [1.0, 1.0, 1.0] and x.sum().item() == 3.0
    assert float(x.sum()) == 3.0 and bool(x.sum() > 2)


def test_creation_on_the_device(cuda: str) -> None:
    cr.manual_seed(0)
    made = [
        cr.zeros(2, 3, device=cuda),
        cr.ones(2, device=cuda),
        cr.empty(4, device=cuda),
        cr.full((2,), 7.0, device=cuda),
        cr.arange(5, device=cuda),
        cr.linspace(0, 1, 5, device=cuda),
        cr.eye(3, device=cuda),
        cr.tensor([[1, 2]], device=cuda),
        cr.rand(3, device=cuda),
        cr.randn(3, device=cuda),
        cr.randint(0, 9, (4,), device=cuda),
    ]
    for t in made:
        assert t.device.type == "cuda", t
    np.testing.assert_array_equal(host(made[3]), [7.0, 7.0])
    np.testing.assert_array_equal(host(made[4]), np.arange(5))
    x = made[0]
    for like in (cr.zeros_like(x), cr.ones_like(x), cr.full_like(x, 2.0), cr.rand_like(x)):
        assert like.device.type == "cuda" and like.shape == (2, 3)  # *_like follow the input
    assert cr.zeros_like(x, device="cpu").device.type == "cpu"
    assert x.new_zeros(2).device.type == "cuda" and x.new_tensor([1.0]).device.type == "cuda"


def test_cuda_random_numbers_are_seeded(cuda: str) -> None:
    cr.manual_seed(3)  # seeds the CUDA generator too, as torch.manual_seed does
    a = host(cr.randn(5, device=cuda))
    cr.cuda.manual_seed(3)
    b = host(cr.randn(5, device=cuda))
    np.testing.assert_array_equal(a, b)
    u = host(cr.rand(1000, device=cuda))
    assert 0 <= u.min() and u.max() < 1 and 0.4 < u.mean() < 0.6
    with pytest.raises(RuntimeError, match="cannot be saved"):
        cr.random.cuda_generator.get_state()


# ----------------------------------------------------------------------------- mixing devices
def test_mixing_devices_names_both(cuda: str) -> None:
    x = cr.ones(2, 3, device=cuda)
    y = cr.ones(2, 3)
    for fn in (lambda: x + y, lambda: y * x, lambda: cr.matmul(x, y.T), lambda: cr.cat([x, y])):
        with pytest.raises(RuntimeError, match=r"same device.*cuda:0 and cpu"):
            fn()


def test_cpu_scalars_mix_with_cuda_tensors(cuda: str) -> None:
    x = cr.tensor([1.0, 2.0], device=cuda, requires_grad=True)
    s = cr.tensor(3.0, requires_grad=True)  # a 0-d CPU tensor, allowed as in torch
    y = (x * s).sum() + 2.0
    assert y.device.type == "cuda"
    y.backward()
    np.testing.assert_allclose(host(x.grad), [3.0, 3.0])
    assert s.grad.device.type == "cpu" and s.grad.item() == pytest.approx(3.0)


def test_backward_gradient_on_the_wrong_device(cuda: str) -> None:
    y = cr.ones(2, device=cuda, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="same device"):
        y.backward(cr.ones(2))


# ----------------------------------------------------------------------------- modules
def test_module_to_moves_parameters_in_place(cuda: str) -> None:
    cr.manual_seed(0)
    m = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.BatchNorm1d(4), cr.nn.Linear(4, 2))
    params = list(m.parameters())
    before = [p.detach().numpy().copy() for p in params]
    opt = cr.optim.SGD(m.parameters(), lr=0.1)
    assert m.to(cuda) is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]  # same objects
    for p, b in zip(m.parameters(), before):
        assert p.device.type == "cuda"
        np.testing.assert_array_equal(host(p), b)
    for name, buf in m.named_buffers():
        assert buf.device.type == "cuda", name  # running stats and num_batches_tracked too
    assert opt.param_groups[0]["params"][0] is params[0]
    m.cpu()
    assert all(p.device.type == "cpu" for p in m.parameters())


def test_same_weights_same_result_on_both_devices(cuda: str) -> None:
    cr.manual_seed(0)
    m = cr.nn.Sequential(cr.nn.Linear(5, 8), cr.nn.Tanh(), cr.nn.Linear(8, 3)).double()
    x = np.random.default_rng(0).standard_normal((6, 5))
    t = np.array([0, 2, 1, 1, 0, 2])
    loss_cpu = cr.nn.functional.cross_entropy(m(cr.tensor(x)), cr.tensor(t))
    loss_cpu.backward()
    grads_cpu = [p.grad.numpy().copy() for p in m.parameters()]
    m.zero_grad()
    m.to(cuda)
    loss_gpu = cr.nn.functional.cross_entropy(m(cr.tensor(x, device=cuda)), cr.tensor(t).cuda())
    loss_gpu.backward()
    assert loss_gpu.item() == pytest.approx(loss_cpu.item(), rel=1e-12)
    for g, p in zip(grads_cpu, m.parameters()):
        np.testing.assert_allclose(host(p.grad), g, rtol=1e-10, atol=1e-12)


def test_cuda_module_helpers(cuda: str) -> None:
    assert cr.cuda.is_available() and cr.cuda.device_count() >= 1
    assert cr.cuda.current_device() == 0
    assert isinstance(cr.cuda.get_device_name(), str)
    cr.cuda.synchronize()
    x = cr.ones(1000, device=cuda)
    assert cr.cuda.memory_allocated() >= 0 and cr.cuda.memory_reserved() >= 0
    del x
    cr.cuda.empty_cache()
    free, total = cr.cuda.mem_get_info()
    assert 0 <= free <= total


# ----------------------------------------------------------------------------- x[i] = v, copy_
def test_setitem_on_cuda_moves_cpu_indices_and_values(cuda: str) -> None:
    """A CUDA tensor takes CPU index tensors and lists, Python and 0-d CPU values, host arrays and
    (through a basic index, a copy_ in torch) CPU tensors; torch's index_put_ refuses a CPU
    tensor with dims through an advanced index, and so does chainrule."""
    x = cr.zeros(4, 3, device=cuda)
    ref = torch.zeros(4, 3)
    steps = [
        (lambda t, m: t.__setitem__([0, 2], 1.0)),
        (lambda t, m: t.__setitem__(m.tensor([1]), 2.0)),
        (lambda t, m: t.__setitem__(m.tensor([False, False, False, True]), m.tensor(3.0))),
        (lambda t, m: t.__setitem__((0, 1), m.tensor(5.0))),
        (lambda t, m: t.__setitem__((m.tensor([3, 1]), m.tensor([2, 0])), m.tensor(-1.0))),
        (lambda t, m: t.__setitem__(slice(1, 3), m.ones(2, 3) * 7)),
        (lambda t, m: t.__setitem__((slice(None), 2), m.tensor([4.0, 3.0, 2.0, 1.0]))),
    ]
    for step in steps:
        step(x, cr)
        step(ref, torch)
        assert x.device.type == "cuda"
        np.testing.assert_array_equal(host(x), ref.numpy())
    x[:, 0] = np.arange(4.0)  # a host array is copied over
    x[0] = [9.0, 8.0, 7.0]
    np.testing.assert_array_equal(host(x)[:, 0], [9.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(host(x)[0], [9.0, 8.0, 7.0])
    with pytest.raises(RuntimeError, match="same device, but found .*cuda:0 and cpu"):
        x[[0, 1]] = cr.ones(2, 3)
    with pytest.raises(RuntimeError, match="same device"):
        x[x[:, 0] > 2] = cr.ones(1, 3)


def test_setitem_on_cpu_with_cuda_operands(cuda: str) -> None:
    x = cr.zeros(3, 2)
    x[1:] = cr.ones(2, 2, device=cuda)  # basic index: copied back, as torch's copy_
    x[0, 0] = cr.tensor(4.0, device=cuda)  # a 0-d value crosses either way
    np.testing.assert_array_equal(x.numpy(), [[4.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(RuntimeError, match="same device"):
        x[[0, 1]] = cr.ones(2, 2, device=cuda)
    with pytest.raises(RuntimeError, match="indices should be either on cpu"):
        x[cr.tensor([0], device=cuda)] = 1.0


def test_copy_crosses_devices(cuda: str) -> None:
    y = cr.zeros(2, 3, device=cuda)
    y.copy_(cr.arange(6.0).reshape(2, 3))
    assert y.device.type == "cuda"
    np.testing.assert_array_equal(host(y), np.arange(6.0).reshape(2, 3))
    y.copy_(cr.tensor([1.0, 2.0, 3.0], dtype=cr.float64))  # broadcast and cast, as torch
    np.testing.assert_array_equal(host(y), [[1.0, 2.0, 3.0]] * 2)
    z = cr.zeros(2, 3, dtype=cr.float64)
    z.copy_(y * 2)
    assert z.device.type == "cpu" and z.dtype is cr.float64
    np.testing.assert_array_equal(z.numpy(), [[2.0, 4.0, 6.0]] * 2)
    y.copy_(np.ones((2, 3)))  # a host array too
    np.testing.assert_array_equal(host(y), np.ones((2, 3)))
    with cr.no_grad():
        w = cr.zeros(3, device=cuda, requires_grad=True)
        w.copy_(cr.ones(3))
    assert w.requires_grad and host(w).tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- a real GPU only
def _real_gpu_only() -> None:
    from conftest import is_fake  # noqa: PLC0415

    if is_fake():
        pytest.skip("needs a real GPU (the fake CuPy computes with NumPy)")


def test_gpu_float32_and_tf32_matmul_tolerances(cuda: str) -> None:
    """float32 products on the GPU match the CPU to 1e-5; TF32 (opt-in) to the documented 5e-3."""
    _real_gpu_only()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 512, 512)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(exact).max()
    x, y = cr.tensor(a, device=cuda), cr.tensor(b, device=cuda)
    try:
        cr.set_float32_matmul_precision("highest")
        assert np.abs(host(x @ y) - exact).max() / scale < 1e-5
        cr.set_float32_matmul_precision("high")
        err = np.abs(host(x @ y) - exact).max() / scale
        assert err < 5e-3
    finally:
        cr.set_float32_matmul_precision("highest")


def test_gpu_bf16_autocast_tolerance(cuda: str) -> None:
    """A Linear layer under bf16 autocast on the GPU: bf16 output within the documented 2e-2."""
    _real_gpu_only()
    cr.manual_seed(0)
    lin = cr.nn.Linear(256, 128).to(cuda)
    x = cr.randn(64, 256, device=cuda)
    ref = host(lin(x))
    with cr.autocast(device_type="cuda", dtype=cr.bfloat16):
        y = lin(x)
    assert y.dtype == cr.bfloat16
    out = host(y.float())
    assert np.abs(out - ref).max() / np.abs(ref).max() < 2e-2


def test_cuda_events_and_streams(cuda: str) -> None:
    """torch.cuda's timing idiom works: events on the default stream, a side stream."""
    start, end = cr.cuda.Event(enable_timing=True), cr.cuda.Event(enable_timing=True)
    start.record()
    y = (cr.ones(256, 256, device=cuda) @ cr.ones(256, 256, device=cuda)).sum()
    end.record()
    end.synchronize()
    assert end.query() and start.elapsed_time(end) >= 0
    assert y.item() == 256.0**3
    s = cr.cuda.Stream()
    with cr.cuda.stream(s):
        z = cr.ones(4, device=cuda) * 2
    s.synchronize()
    cr.cuda.current_stream().synchronize()
    np.testing.assert_array_equal(host(z), [2.0] * 4)
    with pytest.raises(RuntimeError, match="enable_timing"):
        cr.cuda.Event().elapsed_time(end)
