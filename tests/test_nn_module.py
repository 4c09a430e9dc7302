"""``chainrule.nn.Module`` and its containers against ``torch.nn.Module``: discovery by attribute
assignment, names and order of parameters/buffers/modules, state_dict round trips with torch,
modes, hooks, repr, ``Linear``'s errors and initialisation, dtype conversion; and the same on the
CUDA device (the ``device`` fixture: a GPU, or the fake CuPy): state_dicts stay on the device,
CPU state loads onto it, and a model trained there equals the one trained on the CPU."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn as nn

torch.set_num_threads(1)


def build(lib: Any) -> Any:
    """The same model in torch (``lib = torch``) or chainrule (``lib = cr``): nested containers,
    a bare Parameter, persistent / non-persistent buffers, a None parameter, a shared module."""
    L = lib.nn

    class Block(L.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.fc = L.Linear(d, d)
            self.scale = L.Parameter(lib.ones(d))
            self.register_buffer("running", lib.zeros(d))
            self.register_buffer("scratch", lib.zeros(2), persistent=False)
            self.register_parameter("unused", None)

        def forward(self, x: Any) -> Any:
            return self.fc(x) * self.scale + self.running

    class Net(L.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = L.Linear(3, 4)
            self.blocks = L.ModuleList([Block(4), Block(4)])
            self.heads = L.ModuleDict({"b": L.Linear(4, 2), "a": L.Linear(4, 2, bias=False)})
            self.seq = L.Sequential(L.ReLU(), L.Dropout(0.0), L.Linear(4, 4))
            self.shared = self.embed  # the same module twice: listed once
            self.temperature = L.Parameter(lib.ones(1) * 2)
            self.register_buffer("step", lib.zeros(1))

        def forward(self, x: Any) -> Any:
            h = self.embed(x)
            for b in self.blocks:
                h = b(h)
            h = self.seq(h)
            return self.heads["a"](h) + self.heads["b"](h) * self.temperature

    return Net()


def torch_state_as_numpy(m: torch.nn.Module) -> OrderedDict:
    return OrderedDict((k, v.detach().numpy().copy()) for k, v in m.state_dict().items())


def synced(device: str = "cpu") -> tuple[Any, torch.nn.Module]:
    torch.manual_seed(0)
    tm = build(torch).double()
    cm = build(cr).double().to(device)
    cm.load_state_dict(torch_state_as_numpy(tm))  # host arrays, copied onto the device
    return cm, tm


def host(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- discovery


def test_attribute_assignment_registers_parameters_modules_buffers() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(cr.ones(2))
            self.lin = nn.Linear(2, 2)
            self.plain = cr.ones(3)  # a plain tensor is neither a parameter nor a buffer
            self.buf = nn.Buffer(cr.zeros(2))
            self.tmp = nn.Buffer(cr.zeros(1), persistent=False)

    m = M()
    assert list(m._parameters) == ["w"]
    assert list(m._modules) == ["lin"]
    assert list(m._buffers) == ["buf", "tmp"]
    assert [k for k, _ in m.named_parameters()] == ["w", "lin.weight", "lin.bias"]
    # own parameters, own persistent buffers (not tmp), then the children's: torch's order
    assert list(m.state_dict()) == ["w", "buf", "lin.weight", "lin.bias"]
    assert m.w is m._parameters["w"] and m.lin is m._modules["lin"]
    # re-assigning None keeps the slot; a non-Parameter in a parameter slot is an error
    m.w = None
    assert "w" in m._parameters and m.w is None
    assert [k for k, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = cr.ones(2)
    # a module replaced by a parameter of the same name moves stores
    m.lin = nn.Parameter(cr.zeros(1))
    assert "lin" not in m._modules and "lin" in m._parameters
    del m.lin
    assert "lin" not in m._parameters
    with pytest.raises(AttributeError, match="'M' object has no attribute 'lin'"):
        _ = m.lin
    m.buf = cr.ones(2)  # a plain tensor assigned to a buffer name replaces the buffer
    assert m.buf.data.tolist() == [1.0, 1.0] and "buf" in m._buffers

    class Early(nn.Module):
        def __init__(self) -> None:
            self.x = nn.Parameter(cr.ones(1))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Early()


def test_names_and_order_equal_torch() -> None:
    torch.manual_seed(0)
    tm, cm = build(torch), build(cr)
    assert [k for k, _ in cm.named_parameters()] == [k for k, _ in tm.named_parameters()]
    assert [k for k, _ in cm.named_buffers()] == [k for k, _ in tm.named_buffers()]
    assert [k for k, _ in cm.named_modules()] == [k for k, _ in tm.named_modules()]
    assert [k for k, _ in cm.named_children()] == [k for k, _ in tm.named_children()]
    assert [type(m).__name__ for m in cm.modules()] == [type(m).__name__ for m in tm.modules()]
    assert [k for k, _ in cm.blocks[0].named_parameters(prefix="p", recurse=False)] == [
        k for k, _ in tm.blocks[0].named_parameters(prefix="p", recurse=False)
    ]
    assert [k for k, _ in cm.named_modules(remove_duplicate=False)] == [
        k for k, _ in tm.named_modules(remove_duplicate=False)
    ]
    ts, cs = tm.state_dict(), cm.state_dict()
    assert list(cs) == list(ts)
    assert [tuple(v.shape) for v in cs.values()] == [tuple(v.shape) for v in ts.values()]
    assert len(list(cm.parameters())) == len(list(tm.parameters()))
    assert cm.num_parameters() == sum(p.numel() for p in tm.parameters())
    assert cm.get_parameter("blocks.1.fc.weight") is cm.blocks[1].fc.weight
    assert cm.get_submodule("heads.a") is cm.heads["a"]


def test_load_torch_state_dict_gives_identical_outputs(device: str) -> None:
    cm, tm = synced(device)
    x = np.random.default_rng(0).standard_normal((5, 3))
    out_c = cm(cr.tensor(x, device=device))
    out_t = tm(torch.tensor(x))
    assert out_c.device.type == device
    np.testing.assert_allclose(host(out_c), out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    # gradients of every parameter too
    out_c.sum().backward()
    out_t.sum().backward()
    tg = dict(tm.named_parameters())
    for k, p in cm.named_parameters():
        assert p.grad.device.type == device, k
        np.testing.assert_allclose(
            host(p.grad), tg[k].grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=k
        )
    # and back: chainrule's state_dict loads into torch
    torch.manual_seed(1)
    tm2 = build(torch).double()
    tm2.load_state_dict({k: torch.tensor(host(v)) for k, v in cm.state_dict().items()})
    np.testing.assert_allclose(tm2(torch.tensor(x)).detach().numpy(), host(out_c), rtol=1e-12)


def test_state_dict_is_detached_and_keep_vars() -> None:
    cm, _ = synced()
    sd = cm.state_dict()
    assert all(not v.requires_grad for v in sd.values())
    kv = cm.state_dict(keep_vars=True)
    assert kv["embed.weight"] is cm.embed.weight


def test_load_state_dict_strict_errors_list_everything() -> None:
    cm, tm = synced()
    before = cm.embed.weight.data.copy()
    sd = torch_state_as_numpy(tm)
    del sd["blocks.0.fc.bias"]
    del sd["step"]
    sd["blocks.0.extra"] = np.zeros(3)
    sd["heads.a.weight"] = np.zeros((3, 4))
    sd["embed.weight"] = sd["embed.weight"] + 1
    with pytest.raises(RuntimeError) as e:
        cm.load_state_dict(sd)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "step", "blocks.0.fc.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "blocks.0.extra".' in msg
    assert (
        "size mismatch for heads.a.weight: copying a param with shape (3, 4) from checkpoint, "
        "the shape in current model is (2, 4)." in msg
    )
    # torch's message, line for line (it prints shapes as torch.Size([...]) and ends lines in " ")
    with pytest.raises(RuntimeError) as te:
        tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    t_msg = re.sub(r"torch\.Size\(\[([\d, ]*)\]\)", r"(\1)", str(te.value))
    assert [ln.rstrip() for ln in msg.splitlines()] == [ln.rstrip() for ln in t_msg.splitlines()]
    # deliberate difference: a failed load changes nothing (torch copies the keys that fit)
    np.testing.assert_array_equal(cm.embed.weight.data, before)


def test_load_state_dict_non_strict_returns_lists() -> None:
    cm, tm = synced()
    sd = torch_state_as_numpy(tm)
    del sd["blocks.1.fc.weight"]
    sd["bogus"] = np.zeros(1)
    sd["seq.2.bias"] = sd["seq.2.bias"] + 5
    res = cm.load_state_dict(sd, strict=False)
    tres = tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=False)
    assert res.missing_keys == tres.missing_keys == ["blocks.1.fc.weight"]
    assert res.unexpected_keys == tres.unexpected_keys == ["bogus"]
    missing, unexpected = res  # a named tuple, as torch's
    assert (missing, unexpected) == (["blocks.1.fc.weight"], ["bogus"])
    np.testing.assert_array_equal(cm.seq[2].bias.data, sd["seq.2.bias"])
    # shape mismatches are errors even when not strict (as torch)
    sd["embed.bias"] = np.zeros(7)
    with pytest.raises(
        RuntimeError, match=r"size mismatch for embed.bias: copying a param with shape \(7,\)"
    ):
        cm.load_state_dict(sd, strict=False)


def test_load_state_dict_keeps_parameter_objects_and_dtype(device: str) -> None:
    m = nn.Linear(3, 2, device=device)
    w = m.weight
    m.load_state_dict({"weight": np.ones((2, 3), np.float64), "bias": np.zeros(2)})
    assert m.weight is w and m.weight.dtype == cr.float32 and m.weight.device.type == device
    assert host(m.weight).tolist() == [[1.0] * 3] * 2
    m.load_state_dict(
        {
            "weight": cr.full((2, 3), 2.0, dtype=cr.float64, device=device),
            "bias": cr.zeros(2, device=device),
        },
        assign=True,
    )
    assert m.weight is w and host(m.weight)[0, 0] == 2.0 and m.weight.device.type == device


# ----------------------------------------------------------------------------- modes, grads, apply


def test_train_eval_propagate() -> None:
    cm, tm = synced()
    assert cm.training and all(m.training for m in cm.modules())
    assert cm.eval() is cm
    tm.eval()
    assert (
        [m.training for m in cm.modules()]
        == [m.training for m in tm.modules()]
        == [False] * len(list(tm.modules()))
    )
    cm.blocks.train()
    tm.blocks.train()
    assert [m.training for m in cm.modules()] == [m.training for m in tm.modules()]
    assert not cm.training and cm.blocks[1].fc.training
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        cm.train("yes")

    # train() goes through each child's own train(), which it may override (as torch)
    calls = []

    class Frozen(nn.Module):
        def train(self, mode: bool = True) -> Any:
            calls.append(mode)
            return super().train(False)

    seq = nn.Sequential(nn.Linear(1, 1), Frozen())
    seq.train()
    assert calls == [True] and seq.training and not seq[1].training


def test_dropout_follows_mode() -> None:
    m = nn.Sequential(nn.Dropout(0.5))
    x = cr.ones(1000)
    assert (m(x).data == 0).any()
    m.eval()
    assert (m(x).data == 1).all()


def test_zero_grad() -> None:
    cm, _ = synced()
    cm(cr.ones(2, 3, dtype=cr.float64)).sum().backward()
    assert all(p.grad is not None for p in cm.parameters())
    cm.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.data.any() for p in cm.parameters())
    cm.zero_grad()
    assert all(p.grad is None for p in cm.parameters())


def test_apply_visits_children_first_like_torch() -> None:
    cm, tm = synced()
    c_seen, t_seen = [], []
    assert cm.apply(lambda m: c_seen.append(type(m).__name__)) is cm
    tm.apply(lambda m: t_seen.append(type(m).__name__))
    assert c_seen == t_seen

    def init(m: Any) -> None:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)

    cm.apply(init)
    assert all((m.weight.data == 0.5).all() for m in cm.modules() if isinstance(m, nn.Linear))


def test_requires_grad_() -> None:
    m = nn.Linear(2, 2)
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    assert m.num_parameters(trainable_only=True) == 0 and m.num_parameters() == 6


# ----------------------------------------------------------------------------- hooks


def test_forward_hooks_and_pre_hooks() -> None:
    m = nn.Linear(2, 2, bias=False)
    nn.init.eye_(m.weight)
    x = cr.tensor([[1.0, 2.0]])
    log = []

    def pre(mod: Any, args: tuple) -> Any:
        log.append(("pre", mod is m, len(args)))
        return args[0] * 10  # a single value replaces the args

    def post(mod: Any, args: tuple, out: Any) -> Any:
        log.append(("post", args[0].data.tolist()))
        return out + 1

    def observe(mod: Any, args: tuple, out: Any) -> None:
        log.append(("observe", out.data.tolist()))  # returning None keeps the output

    h1 = m.register_forward_pre_hook(pre)
    h2 = m.register_forward_hook(post)
    h3 = m.register_forward_hook(observe)
    assert m(x).data.tolist() == [[11.0, 21.0]]
    assert log == [("pre", True, 1), ("post", [[10.0, 20.0]]), ("observe", [[11.0, 21.0]])]
    h1.remove()
    assert m(x).data.tolist() == [[2.0, 3.0]]
    h2.remove()
    h2.remove()  # removing twice is harmless
    assert m(x).data.tolist() == [[1.0, 2.0]]
    h3.remove()
    with m.register_forward_hook(lambda mod, a, o: o * 0):
        assert m(x).data.tolist() == [[0.0, 0.0]]
    assert m(x).data.tolist() == [[1.0, 2.0]]  # the with-block removed it

    # the same behaviour in torch
    tmod = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.eye_(tmod.weight)
    tmod.register_forward_pre_hook(lambda mod, args: args[0] * 10)
    tmod.register_forward_hook(lambda mod, args, out: out + 1)
    assert tmod(torch.tensor([[1.0, 2.0]])).tolist() == [[11.0, 21.0]]


def test_pre_hook_tuple_replaces_all_args() -> None:
    class Two(nn.Module):
        def forward(self, a: Any, b: Any) -> Any:
            return a - b

    m = Two()
    m.register_forward_pre_hook(lambda mod, args: (args[1], args[0]))
    assert m(cr.tensor(5.0), cr.tensor(2.0)).item() == -3.0


def test_hooks_on_submodules_see_intermediates() -> None:
    cm, tm = synced()
    c_acts, t_acts = {}, {}
    for name, mod in cm.named_modules():
        if isinstance(mod, nn.Linear):
            mod.register_forward_hook(lambda m, a, o, n=name: c_acts.__setitem__(n, o.data.copy()))
    for name, mod in tm.named_modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_hook(
                lambda m, a, o, n=name: t_acts.__setitem__(n, o.detach().numpy().copy())
            )
    x = np.random.default_rng(1).standard_normal((2, 3))
    cm(cr.tensor(x))
    tm(torch.tensor(x))
    assert list(c_acts) == list(t_acts) and len(c_acts) == 6  # the shared embed once
    for k in c_acts:
        np.testing.assert_allclose(c_acts[k], t_acts[k], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- repr


def test_repr_equals_torch() -> None:
    def seq(L: Any) -> Any:
        return L.Sequential(
            L.Linear(4, 8),
            L.ReLU(),
            L.Dropout(0.25),
            L.Sequential(L.Linear(8, 2, bias=False), L.Dropout()),
            L.Identity(),
            L.Flatten(),
        )

    assert repr(seq(nn)) == repr(seq(torch.nn))
    assert repr(nn.Sequential()) == repr(torch.nn.Sequential()) == "Sequential()"
    assert repr(build(cr)) == repr(build(torch))
    lst = [nn.Linear(1, 1), nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1)]
    tlst = [torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), torch.nn.ReLU(), torch.nn.Linear(1, 1)]
    assert repr(nn.ModuleList(lst)) == repr(torch.nn.ModuleList(tlst))
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())
    d = OrderedDict([("a", nn.Tanh()), ("b", nn.Softmax(dim=1))])
    td = OrderedDict([("a", torch.nn.Tanh()), ("b", torch.nn.Softmax(dim=1))])
    assert repr(nn.Sequential(d)) == repr(torch.nn.Sequential(td))
    assert repr(nn.ModuleDict(d)) == repr(torch.nn.ModuleDict(td))

    class Multi(nn.Module):  # a multi-line extra_repr and no children
        def extra_repr(self) -> str:
            return "a=1\nb=2"

    assert repr(Multi()) == "Multi(\n  a=1\n  b=2\n)"


def test_parameter_repr_equals_torch() -> None:
    assert repr(nn.Parameter(cr.tensor([1.0, 2.0]))) == repr(
        torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    )
    assert repr(nn.Parameter(cr.tensor([[3.0, -1.0]]), requires_grad=False)) == repr(
        torch.nn.Parameter(torch.tensor([[3.0, -1.0]]), requires_grad=False)
    )
    assert repr(nn.Parameter(cr.tensor([1.0], dtype=cr.float64))).startswith(
        "Parameter containing:\ntensor([1.], dtype="
    )
    p = nn.Parameter(cr.zeros(2))
    assert isinstance(p, cr.Tensor) and p.requires_grad and p.is_leaf


# ----------------------------------------------------------------------------- Linear


def test_linear_shape_error_names_layer_expected_and_got() -> None:
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError) as e:
        m(cr.zeros(4, 5))
    msg = str(e.value)
    assert "Linear(in_features=3, out_features=2, bias=True)" in msg
    assert "(..., 3)" in msg and "(4, 5)" in msg
    with pytest.raises(ValueError, match=r"got \(\)"):
        m(cr.tensor(1.0))
    assert m(cr.zeros(3)).shape == (2,)  # unbatched input, as torch
    assert m(cr.zeros(2, 7, 3)).shape == (2, 7, 2)


def test_linear_default_init_bounds_and_distribution() -> None:
    cr.manual_seed(0)
    fan_in = 64
    m = nn.Linear(fan_in, 256)
    bound = 1 / math.sqrt(fan_in)
    for p in (m.weight, m.bias):
        a = p.data
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.95 * bound  # fills the interval
    w = m.weight.data
    assert abs(w.mean()) < 0.1 * bound
    np.testing.assert_allclose(
        w.std(), bound / math.sqrt(3), rtol=0.03
    )  # U(-b, b) has std b/sqrt(3)
    # torch's Linear draws from the same interval
    tw = torch.nn.Linear(fan_in, 256).weight.detach().numpy()
    assert np.abs(tw).max() <= bound
    np.testing.assert_allclose(tw.std(), w.std(), rtol=0.05)
    assert nn.Linear(2, 3, bias=False).bias is None
    assert [k for k, _ in nn.Linear(2, 3, bias=False).named_parameters()] == ["weight"]
    assert nn.Linear(2, 3, dtype=cr.float64).weight.dtype == cr.float64


def test_module_to_float64_keeps_parameter_objects() -> None:
    cm = build(cr)
    params = list(cm.parameters())
    bufs = list(cm.buffers())
    cm(cr.ones(1, 3)).sum().backward()
    opt = cr.optim.SGD(cm.parameters(), lr=0.1)
    assert cm.to(cr.float64) is cm
    assert all(a is b for a, b in zip(params, cm.parameters()))
    assert all(a is b for a, b in zip(bufs, cm.buffers()))
    assert all(p.dtype == cr.float64 for p in cm.parameters())
    assert all(p.grad.dtype == cr.float64 for p in cm.parameters())
    assert all(b.dtype == cr.float64 for b in cm.buffers())
    assert all(p.requires_grad and p.is_leaf for p in cm.parameters())
    before = cm.embed.weight.data.copy()
    opt.step()  # the optimiser still holds the same (now float64) parameters
    assert cm.embed.weight.dtype == cr.float64
    assert not np.array_equal(cm.embed.weight.data, before)
    assert cm(cr.ones(1, 3, dtype=cr.float64)).dtype == cr.float64
    cm.float()
    assert all(p.dtype == cr.float32 for p in cm.parameters())
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        cm.to(cr.int64)


def test_unexpected_keys_order_and_rule_equal_torch() -> None:
    cm, tm = synced()
    sd = torch_state_as_numpy(tm)
    extra = OrderedDict(
        [
            ("blocks.1.fc.extra", np.zeros(1)),
            ("zz", np.zeros(1)),
            ("heads.c.weight", np.zeros(1)),
            ("a.b", np.zeros(1)),
        ]
    )
    sd = OrderedDict(list(extra.items()) + list(sd.items()))
    res = cm.load_state_dict(sd, strict=False)
    tres = tm.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=False)
    assert res.unexpected_keys == tres.unexpected_keys
    assert sorted(res.unexpected_keys) == sorted(extra)


# ----------------------------------------------------------------------------- devices


def test_cuda_model_state_dict_round_trip(cuda: str) -> None:
    cm, tm = synced()
    params, bufs = list(cm.parameters()), list(cm.buffers())
    cm(cr.ones(2, 3, dtype=cr.float64)).sum().backward()
    assert cm.to(cuda) is cm
    # the same objects, now on the device, gradients too
    assert all(a is b for a, b in zip(params, cm.parameters()))
    assert all(a is b for a, b in zip(bufs, cm.buffers()))
    assert all(p.device.type == "cuda" and p.grad.device.type == "cuda" for p in params)
    assert all(b.device.type == "cuda" for b in bufs)
    sd = cm.state_dict()
    assert all(v.device.type == "cuda" and not v.requires_grad for v in sd.values())
    ref = torch_state_as_numpy(tm)
    for k, v in sd.items():
        np.testing.assert_array_equal(host(v), ref[k], err_msg=k)
    # a CUDA state_dict into a CPU model: copied to the host
    cpu = build(cr).double()
    cpu.load_state_dict(sd)
    assert all(p.device.type == "cpu" for p in cpu.parameters())
    for k, v in cpu.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k], err_msg=k)
    # CPU tensors into a CUDA model: copied onto the device, the Parameter objects kept
    other = build(cr).double().cuda()
    before = list(other.parameters())
    other.load_state_dict(cpu.state_dict())
    assert all(a is b for a, b in zip(before, other.parameters()))
    assert all(v.device.type == "cuda" for v in other.state_dict().values())
    x = np.random.default_rng(3).standard_normal((4, 3))
    np.testing.assert_array_equal(
        host(other(cr.tensor(x, device=cuda))), host(cm(cr.tensor(x, device=cuda)))
    )
    np.testing.assert_allclose(
        host(cm(cr.tensor(x, device=cuda))), tm(torch.tensor(x)).detach().numpy(), rtol=1e-12
    )
    # and back to the CPU
    cm.cpu()
    assert all(v.device.type == "cpu" for v in cm.state_dict().values())
    np.testing.assert_array_equal(
        cm(cr.tensor(x)).detach().numpy(), host(other(cr.tensor(x, device=cuda)))
    )


class _Mixed(nn.Module):
    """A little of everything: embedding, conv + batch norm, GRU, layer norm, dropout 0, heads."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6, padding_idx=0)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.gru = nn.GRU(6, 8, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.0)
        self.head = nn.Linear(16, 3)

    def forward(self, idx: cr.Tensor) -> cr.Tensor:
        h = self.embed(idx).transpose(1, 2)  # (N, 6, L)
        h = self.bn(self.conv(h).relu()).transpose(1, 2)
        out, _ = self.gru(h)
        return self.head(self.drop(self.norm(out.mean(1))))


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_cuda_training_equals_cpu_training(cuda: str, opt_name: str) -> None:
    """The same model trained on the CPU and on the device for a few steps on the same batches,
    in float64: parameters, buffers and losses agree to 1e-10 (device arrays never reach the
    host on the way: the fake CuPy would refuse)."""
    cr.manual_seed(0)
    cpu_model = _Mixed().double()
    cr.manual_seed(0)
    dev_model = _Mixed().double().to(cuda)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 10, (5, 7)), rng.integers(0, 3, 5)) for _ in range(6)]
    losses = {}
    for model, dev in ((cpu_model, "cpu"), (dev_model, cuda)):
        kw = {"lr": 0.05, "momentum": 0.9, "nesterov": True} if opt_name == "SGD" else {"lr": 0.01}
        opt = getattr(cr.optim, opt_name)(model.parameters(), weight_decay=1e-3, **kw)
        sched = cr.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
        losses[dev] = []
        for idx, y in batches:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(
                model(cr.tensor(idx, device=dev)), cr.tensor(y, device=dev)
            )
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses[dev].append(loss.item())
        states = [v for st in opt.state.values() for v in st.values() if cr.backend.is_array(v)]
        assert states and all(cr.backend.device_of(v).type == dev for v in states)
    np.testing.assert_allclose(losses[cuda], losses["cpu"], rtol=1e-10)
    assert losses["cpu"][-1] != losses["cpu"][0]
    csd, dsd = cpu_model.state_dict(), dev_model.state_dict()
    assert list(csd) == list(dsd)
    for k in csd:
        assert dsd[k].device.type == "cuda", k
        np.testing.assert_allclose(host(dsd[k]), csd[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
