"""``chainrule.optim`` (optimisers, lr schedulers), ``chainrule.nn.utils`` and ``chainrule.nn.init``
against PyTorch 2.13.

Optimisers: the same float64 weights and the same fixed random gradients, 30 steps, every option;
the parameters must agree with torch's to 1e-10, on the CPU and on the CUDA device (the ``device``
fixture: a GPU, or the fake CuPy). Schedulers: the learning-rate (and momentum) sequences must
agree step for step.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.nn as nn
from chainrule.optim import lr_scheduler as cs

torch.set_num_threads(1)

TS = torch.optim.lr_scheduler
SHAPES = [(3, 4), (4,), (2, 2, 3)]
STEPS = 30
TOL = {"rtol": 1e-10, "atol": 1e-12}


def host(t: Any) -> np.ndarray:
    """A chainrule tensor's values as a NumPy array, wherever they live."""
    return t.detach().cpu().numpy()


def _data(steps: int = STEPS, seed: int = 0) -> tuple[list, list]:
    r = np.random.default_rng(seed)
    w0 = [r.standard_normal(s) for s in SHAPES]
    grads = [[r.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    return w0, grads


def _groups(params: list, spec: list[dict] | None) -> Any:
    if spec is None:
        return params
    out, i = [], 0
    for g in spec:
        n = g["n"]
        out.append({"params": params[i : i + n], **{k: v for k, v in g.items() if k != "n"}})
        i += n
    return out


def run_both(
    c_cls: Any,
    t_cls: Any,
    kw: dict,
    groups: list[dict] | None = None,
    steps: int = STEPS,
    skip: Callable[[int, int], bool] = lambda step, i: False,
    device: str = "cpu",
) -> tuple[list, list, Any, Any]:
    """``steps`` updates of chainrule (on ``device``) and torch on the same weights and
    gradients; parameter i gets no gradient at a step where ``skip(step, i)``."""
    w0, grads = _data(steps)
    cps = [nn.Parameter(cr.tensor(w, device=device)) for w in w0]
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    copt = c_cls(_groups(cps, groups), **kw)
    topt = t_cls(_groups(tps, groups), **kw)
    for k in range(steps):
        for i, (cp, tp, g) in enumerate(zip(cps, tps, grads[k])):
            if skip(k, i):
                cp.grad, tp.grad = None, None
            else:
                cp.grad, tp.grad = cr.tensor(g, device=device), torch.tensor(g)
        copt.step()
        topt.step()
    for st in copt.state.values():  # the state lives with the parameters
        for v in st.values():
            assert not cr.backend.is_array(v) or cr.backend.device_of(v).type == device
    return cps, tps, copt, topt


def assert_params_equal(cps: list, tps: list, **tol: Any) -> None:
    for i, (c, t) in enumerate(zip(cps, tps)):
        assert c.device == cps[0].device
        np.testing.assert_allclose(
            host(c), t.detach().numpy(), err_msg=f"param {i}", **(tol or TOL)
        )


OPTIMISERS = [
    # SGD
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "maximize": True}),
    (
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True},
    ),
    ("SGD", {"lr": 0.05, "momentum": 0.7, "dampening": 0.5, "weight_decay": 0.2}),
    # Adam / AdamW
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    (
        "Adam",
        {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "weight_decay": 0.05},
    ),
    ("Adam", {"lr": 0.01, "maximize": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "betas": (0.5, 0.9)}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    # RMSprop
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "alpha": 0.9}),
    ("RMSprop", {"lr": 0.01, "eps": 1e-3, "maximize": True}),
    # Adagrad
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.05}),
    ("Adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1, "eps": 1e-4}),
    (
        "Adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.01,
            "initial_accumulator_value": 0.2,
            "weight_decay": 0.05,
            "maximize": True,
        },
    ),
]
IDS = [f"{n}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for n, kw in OPTIMISERS]


@pytest.mark.parametrize("name,kw", OPTIMISERS, ids=IDS)
def test_optimiser_matches_torch(name: str, kw: dict, device: str) -> None:
    cps, tps, _, _ = run_both(
        getattr(cr.optim, name), getattr(torch.optim, name), kw, device=device
    )
    assert_params_equal(cps, tps)
    assert cps[0].device.type == device
    w0, _ = _data()
    assert not np.allclose(host(cps[0]), w0[0])  # it did move


@pytest.mark.parametrize("name,kw", OPTIMISERS[::3], ids=IDS[::3])
def test_param_groups_and_missing_grads(name: str, kw: dict, device: str) -> None:
    """Two groups with their own lr (and a per-group override); a parameter without a gradient at
    some steps is skipped (its state does not advance), as in torch."""
    kw = dict(kw)
    base_lr = kw.pop("lr")
    groups = [{"n": 2, "lr": base_lr * 0.5}, {"n": 1}]
    if "weight_decay" in kw:
        groups[1]["weight_decay"] = kw["weight_decay"] * 2
    cps, tps, copt, topt = run_both(
        getattr(cr.optim, name),
        getattr(torch.optim, name),
        {"lr": base_lr, **kw},
        groups=groups,
        skip=lambda step, i: i == 1 and 5 <= step < 12 or i == 2 and step % 4 == 0,
        device=device,
    )
    assert_params_equal(cps, tps)
    assert [g["lr"] for g in copt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert [len(g["params"]) for g in copt.param_groups] == [2, 1]


def _state_keys(opt: Any) -> list:
    return [sorted(opt.state_dict()["state"][i]) for i in sorted(opt.state_dict()["state"])]


@pytest.mark.parametrize("name,kw", OPTIMISERS, ids=IDS)
def test_state_dict_round_trip_continues_identically(name: str, kw: dict, device: str) -> None:
    c_cls, t_cls = getattr(cr.optim, name), getattr(torch.optim, name)
    w0, grads = _data()
    cps = [nn.Parameter(cr.tensor(w, device=device)) for w in w0]
    copt = c_cls(_groups(cps, [{"n": 1, "lr": kw["lr"] * 2}, {"n": 2}]), **kw)

    def step(opt: Any, ps: list, k: int) -> None:
        for p, g in zip(ps, grads[k]):
            p.grad = cr.tensor(g, device=device)
        opt.step()

    def val(v: Any) -> Any:
        return host(v) if isinstance(v, cr.Tensor) else v

    for k in range(10):
        step(copt, cps, k)
    sd = copt.state_dict()
    for st in sd["state"].values():  # state tensors stay on the parameters' device
        assert all(v.device.type == device for v in st.values() if isinstance(v, cr.Tensor))
    frozen = {i: {k: val(v) for k, v in st.items()} for i, st in sd["state"].items()}
    # the state dict is a snapshot: stepping on does not change it
    clone = [nn.Parameter(p.detach().clone()) for p in cps]
    step(copt, cps, 10)
    for i in sd["state"]:
        for k, v in sd["state"][i].items():
            np.testing.assert_array_equal(val(v), frozen[i][k])
    # a fresh optimiser loading it continues exactly as the original did; so does one loading
    # the state saved to the CPU (torch moves loaded state to each parameter's device)
    copt2 = c_cls(_groups(clone, [{"n": 1, "lr": 123.0}, {"n": 2}]), **kw)
    copt2.load_state_dict(sd)
    on_cpu = {
        "state": {
            i: {k: v.cpu() if isinstance(v, cr.Tensor) else v for k, v in st.items()}
            for i, st in sd["state"].items()
        },
        "param_groups": copy.deepcopy(sd["param_groups"]),
    }
    clone3 = [nn.Parameter(p.detach().clone()) for p in clone]
    copt3 = c_cls(_groups(clone3, [{"n": 1}, {"n": 2}]), **kw)
    copt3.load_state_dict(on_cpu)
    for st in copt3.state.values():
        assert all(
            cr.backend.device_of(v).type == device for v in st.values() if cr.backend.is_array(v)
        )
    assert copt2.param_groups[0]["lr"] == kw["lr"] * 2
    step(copt2, clone, 10)
    step(copt3, clone3, 10)
    for k in range(11, STEPS):
        step(copt, cps, k)
        step(copt2, clone, k)
        step(copt3, clone3, k)
    for a, b, c in zip(cps, clone, clone3):
        np.testing.assert_array_equal(host(a), host(b))
        np.testing.assert_array_equal(host(a), host(c))
    # ... and as torch did without interruption; the state has torch's names
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    topt = t_cls(_groups(tps, [{"n": 1, "lr": kw["lr"] * 2}, {"n": 2}]), **kw)
    for k in range(STEPS):
        for p, g in zip(tps, grads[k]):
            p.grad = torch.tensor(g)
        topt.step()
    assert_params_equal(clone, tps)
    assert _state_keys(copt2) == _state_keys(topt)
    c_groups, t_groups = copt2.state_dict()["param_groups"], topt.state_dict()["param_groups"]
    assert [g["params"] for g in c_groups] == [g["params"] for g in t_groups] == [[0], [1, 2]]
    for cg, tg in zip(c_groups, t_groups):
        for k, v in cg.items():
            assert tg[k] == v, k


def test_state_dict_load_errors() -> None:
    p = nn.Parameter(cr.zeros(2))
    sd = cr.optim.SGD([p], lr=0.1).state_dict()
    two = cr.optim.SGD([{"params": [p]}, {"params": [nn.Parameter(cr.zeros(1))]}], lr=0.1)
    with pytest.raises(ValueError, match="parameter groups"):
        two.load_state_dict(sd)
    bigger = cr.optim.SGD([p, nn.Parameter(cr.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        bigger.load_state_dict(sd)


def test_step_closure_and_zero_grad() -> None:
    p = nn.Parameter(cr.tensor([1.0, -2.0], dtype=cr.float64))
    opt = cr.optim.SGD([p], lr=0.1)

    def closure() -> Any:
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(p.data, [0.8, -1.6])
    opt.zero_grad()
    assert p.grad is None
    closure()
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.data.any()


def test_optimiser_errors() -> None:
    p = nn.Parameter(cr.zeros(2))
    for cls in (cr.optim.SGD, cr.optim.Adam, cr.optim.AdamW, cr.optim.RMSprop, cr.optim.Adagrad):
        name = cls.__name__
        with pytest.raises(ValueError, match=f"{name} got an empty parameter list"):
            cls([], lr=0.1)
        with pytest.raises(ValueError, match=r"Invalid learning rate: -0.1"):
            cls([p], lr=-0.1)
        with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
            cls([p * 2], lr=0.1)
        with pytest.raises(TypeError, match="single Tensor"):
            cls(p, lr=0.1)
        with pytest.raises(ValueError, match="more than one parameter group"):
            cls([{"params": [p]}, {"params": [p]}], lr=0.1)
        with pytest.raises(ValueError, match=r"Invalid learning rate: -1"):
            cls([{"params": [p], "lr": -1}], lr=0.1)
        # and torch agrees that these are errors
        with pytest.raises(ValueError):
            getattr(torch.optim, name)([], lr=0.1)
        with pytest.raises(ValueError):
            getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], lr=-0.1)
    with pytest.raises(ValueError, match="Invalid momentum value"):
        cr.optim.SGD([p], lr=0.1, momentum=-0.5)
    with pytest.raises(
        ValueError, match="Nesterov momentum requires a momentum and zero dampening"
    ):
        cr.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        cr.optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        cr.optim.Adam([p], eps=-1.0)
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        cr.optim.RMSprop([p], eps=-1.0)
    with pytest.raises(ValueError, match="Invalid weight_decay value"):
        cr.optim.RMSprop([p], weight_decay=-1.0)
    with pytest.raises(ValueError, match="Invalid weight_decay value"):
        cr.optim.Adagrad([p], weight_decay=-1.0)
    with pytest.raises(ValueError, match="Invalid initial_accumulator_value value"):
        cr.optim.Adagrad([p], initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        cr.optim.Adagrad([p], eps=-1.0)


# ----------------------------------------------------------------------------- schedulers


def _sched_opts(opt: str = "SGD", lrs: tuple = (0.1, 0.03)) -> tuple[Any, Any]:
    cps = [nn.Parameter(cr.zeros(1)) for _ in lrs]
    tps = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    kw = {"momentum": 0.9} if opt == "SGD" else {}
    c = getattr(cr.optim, opt)([{"params": [p], "lr": lr} for p, lr in zip(cps, lrs)], **kw)
    t = getattr(torch.optim, opt)([{"params": [p], "lr": lr} for p, lr in zip(tps, lrs)], **kw)
    return c, t


def lr_sequences(
    make: Callable[[Any, Any], Any],
    steps: int = STEPS,
    opt: str = "SGD",
    metrics: list | None = None,
    extra: tuple = (),
) -> tuple[list, list]:
    """Record, before every step, each group's lr (and the ``extra`` group keys) and
    get_last_lr(), for chainrule and torch."""
    copt, topt = _sched_opts(opt)
    seqs = []
    for lib, o in ((cs, copt), (TS, topt)):
        s = make(lib, o)
        seq = []
        for k in range(steps):
            seq.append(
                [[g["lr"], *(g[e] for e in extra)] for g in o.param_groups]
                + [list(s.get_last_lr())]
            )
            o.step()
            if metrics is None:
                s.step()
            else:
                s.step(metrics[k])
        seq.append([[g["lr"], *(g[e] for e in extra)] for g in o.param_groups])
        seqs.append(seq)
    return seqs[0], seqs[1]


def _flat(seq: list) -> np.ndarray:
    out = []
    for row in seq:
        for item in row:
            for v in item:
                out.extend(v if isinstance(v, tuple) else [v])
    return np.array(out, dtype=float)


SCHEDULERS = {
    "StepLR": lambda L, o: L.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, milestones=[2, 5, 5, 9, 20], gamma=0.3),
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
    "CosineAnnealingLR-no-min": lambda L, o: L.CosineAnnealingLR(o, T_max=10),
    "LinearLR": lambda L, o: L.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=7),
    "LinearLR-default": lambda L, o: L.LinearLR(o),
    "LinearLR-decay": lambda L, o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=12),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lambda e: 0.95**e + 0.01 * (e % 3)),
    "LambdaLR-per-group": lambda L, o: L.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.9**e]),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o,
        [L.LinearLR(o, start_factor=0.1, total_iters=5), L.ExponentialLR(o, gamma=0.8)],
        milestones=[5],
    ),
    "SequentialLR-3": lambda L, o: L.SequentialLR(
        o,
        [
            L.LinearLR(o, start_factor=0.5, total_iters=4),
            L.CosineAnnealingLR(o, T_max=6, eta_min=0.002),
            L.StepLR(o, step_size=2, gamma=0.5),
        ],
        milestones=[4, 13],
    ),
    "OneCycleLR-SGD": lambda L, o: L.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS),
    "OneCycleLR-linear-3phase": lambda L, o: L.OneCycleLR(
        o,
        max_lr=0.4,
        epochs=3,
        steps_per_epoch=10,
        anneal_strategy="linear",
        three_phase=True,
        pct_start=0.25,
        base_momentum=0.8,
        max_momentum=0.9,
        div_factor=10.0,
        final_div_factor=100.0,
    ),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_lr_sequence_matches_torch(name: str) -> None:
    steps = 45 if name.startswith("Cosine") else STEPS  # cosine: well past T_max (it cycles back)
    extra = ("momentum",) if name.startswith("OneCycle") else ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, t = lr_sequences(
            SCHEDULERS[name],
            steps=steps if not name.startswith("OneCycle") else STEPS - 1,
            extra=extra,
        )
    assert len(c) == len(t)
    np.testing.assert_allclose(_flat(c), _flat(t), rtol=1e-13, atol=1e-15)
    lrs = _flat(c)
    assert len(set(np.round(lrs, 12))) > 3  # the schedule actually changes the lr


def test_cosine_annealing_past_t_max_rises_again() -> None:
    c, t = lr_sequences(lambda L, o: L.CosineAnnealingLR(o, T_max=5, eta_min=0.01), steps=25)
    lr0 = [row[0][0] for row in c]
    np.testing.assert_allclose(lr0, [row[0][0] for row in t], rtol=1e-13)
    assert lr0[5] == pytest.approx(0.01) and lr0[10] == pytest.approx(0.1)  # back up after 2 T_max
    assert lr0[15] == pytest.approx(0.01)


def test_one_cycle_with_adam_cycles_beta1() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, t = lr_sequences(
            lambda L, o: L.OneCycleLR(o, max_lr=0.01, total_steps=25, pct_start=0.4),
            steps=24,
            opt="Adam",
            extra=("betas",),
        )
    np.testing.assert_allclose(_flat(c), _flat(t), rtol=1e-13, atol=1e-15)
    beta1 = [row[0][1][0] for row in c]
    assert beta1[0] == pytest.approx(0.95) and min(beta1) == pytest.approx(0.85, abs=1e-3)
    # stepping past total_steps is an error, as in torch
    copt, _ = _sched_opts()
    s = cs.OneCycleLR(copt, max_lr=0.1, total_steps=3)
    s.step()
    s.step()
    s.step()
    with pytest.raises(
        ValueError, match="Tried to step 4 times. The specified number of total steps is 3"
    ):
        s.step()


METRICS = [
    1.0,
    0.9,
    0.95,
    0.94,
    0.96,
    0.97,
    0.93,
    0.99,
    0.98,
    0.9,
    0.89,
    0.9,
    0.91,
    0.92,
    0.93,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    1.0,
    1.1,
    1.2,
    1.3,
    1.4,
    1.5,
    1.6,
    1.7,
    1.8,
    1.9,
]


@pytest.mark.parametrize(
    "kw",
    [
        {"patience": 2},
        {"patience": 1, "factor": 0.5, "cooldown": 2},
        {"mode": "max", "patience": 0, "factor": 0.7, "threshold": 0.05},
        {"patience": 1, "threshold_mode": "abs", "threshold": 0.02, "min_lr": [0.02, 0.001]},
        {"mode": "max", "threshold_mode": "abs", "patience": 3, "min_lr": 0.01, "eps": 1e-3},
    ],
)
def test_reduce_lr_on_plateau_matches_torch(kw: dict) -> None:
    c, t = lr_sequences(
        lambda L, o: L.ReduceLROnPlateau(o, **kw), steps=len(METRICS), metrics=METRICS
    )
    np.testing.assert_allclose(_flat(c), _flat(t), rtol=1e-13)
    assert len(set(_flat(c))) > 2  # it did reduce


def test_scheduler_state_dict_round_trip() -> None:
    for make in (SCHEDULERS["CosineAnnealingLR"], SCHEDULERS["StepLR"], SCHEDULERS["SequentialLR"]):
        copt, _ = _sched_opts()
        s = make(cs, copt)
        for _ in range(8):
            copt.step()
            s.step()
        sd = copy.deepcopy(s.state_dict())
        opt_sd = copy.deepcopy(copt.state_dict())
        ref = []
        for _ in range(10):
            copt.step()
            s.step()
            ref.append(s.get_last_lr())
        copt2, _ = _sched_opts()
        s2 = make(cs, copt2)
        copt2.load_state_dict(opt_sd)
        s2.load_state_dict(sd)
        got = []
        for _ in range(10):
            copt2.step()
            s2.step()
            got.append(s2.get_last_lr())
        assert got == ref


def test_scheduler_errors() -> None:
    copt, _ = _sched_opts()
    with pytest.raises(TypeError, match="is not an Optimizer"):
        cs.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        cs.StepLR(copt, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        cs.ReduceLROnPlateau(copt, factor=1.5)
    with pytest.raises(ValueError, match="expects 1 milestones|milestone"):
        cs.SequentialLR(copt, [cs.StepLR(copt, 2), cs.StepLR(copt, 3)], milestones=[])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        cs.LambdaLR(copt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="momentum or beta1"):
        cs.OneCycleLR(cr.optim.Adagrad([nn.Parameter(cr.zeros(1))]), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="total_steps"):
        cs.OneCycleLR(copt, max_lr=0.1)


# ----------------------------------------------------------------------------- nn.utils


def _grads_pair(
    dtype: Any, seed: int = 0, scale: float = 1.0, device: str = "cpu"
) -> tuple[list, list]:
    r = np.random.default_rng(seed)
    arrays = [(r.standard_normal(s) * scale).astype(dtype) for s in SHAPES]
    cps, tps = [], []
    cdt = cr.float64 if dtype == np.float64 else cr.float32
    for a in arrays:
        cp, tp = (
            nn.Parameter(cr.zeros(*a.shape, dtype=cdt, device=device)),
            torch.nn.Parameter(
                torch.zeros(a.shape, dtype=torch.float64 if dtype == np.float64 else torch.float32)
            ),
        )
        cp.grad, tp.grad = cr.tensor(a.copy(), device=device), torch.tensor(a.copy())
        cps.append(cp)
        tps.append(tp)
    return cps, tps


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, -math.inf, 0])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(
    max_norm: float, norm_type: float, dtype: Any, device: str
) -> None:
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == np.float64 else {"rtol": 2e-6, "atol": 1e-7}
    cps, tps = _grads_pair(dtype, device=device)
    cn = nn.utils.clip_grad_norm_(cps, max_norm, norm_type=norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type=norm_type)
    assert cn.device.type == device
    np.testing.assert_allclose(host(cn), tn.numpy(), **tol)
    assert cn.data.dtype == tn.numpy().dtype
    for c, t in zip(cps, tps):
        assert c.grad.device.type == device
        np.testing.assert_allclose(host(c.grad), t.grad.numpy(), **tol)


def test_clip_grad_norm_edge_cases(device: str) -> None:
    # a single tensor, no gradients, non-finite norms
    p = nn.Parameter(cr.zeros(3, dtype=cr.float64, device=device))
    p.grad = cr.tensor([3.0, 4.0, 0.0], device=device)
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(host(p.grad), np.array([3.0, 4.0, 0.0]) / (5.0 + 1e-6))
    assert nn.utils.clip_grad_norm_([nn.Parameter(cr.zeros(2))], 1.0).item() == 0.0
    for bad in (np.nan, np.inf):
        cps, tps = _grads_pair(np.float64, device=device)
        cps[0].grad.data[0, 0] = bad
        tps[0].grad[0, 0] = bad
        with pytest.raises(RuntimeError, match="non-finite"):
            nn.utils.clip_grad_norm_(cps, 1.0, error_if_nonfinite=True)
        with pytest.raises(RuntimeError, match="non-finite"):
            torch.nn.utils.clip_grad_norm_(tps, 1.0, error_if_nonfinite=True)
        cn = nn.utils.clip_grad_norm_(cps, 1.0)
        tn = torch.nn.utils.clip_grad_norm_(tps, 1.0)
        np.testing.assert_equal(host(cn), tn.numpy())
        for c, t in zip(cps, tps):  # torch scales by max_norm / norm even so (NaN or 0)
            np.testing.assert_equal(host(c.grad), t.grad.numpy())


def test_clip_grad_norm_on_cuda_needs_no_host_sync(cuda: str, monkeypatch) -> None:
    """Without error_if_nonfinite, clipping device gradients never turns a device value into a
    Python number (each would be a GPU sync)."""
    cps, tps = _grads_pair(np.float64, device=cuda)
    mod = cr.backend.cuda_module()

    def refuse(self: Any) -> None:
        raise AssertionError("a device value was read on the host")

    if hasattr(mod.ndarray, "_a"):  # the fake: its scalar conversions are where syncs happen
        for name in ("__float__", "__bool__", "item", "__int__"):
            monkeypatch.setattr(mod.ndarray, name, refuse)
    cn = nn.utils.clip_grad_norm_(cps, 0.5)
    monkeypatch.undo()
    tn = torch.nn.utils.clip_grad_norm_(tps, 0.5)
    np.testing.assert_allclose(host(cn), tn.numpy(), rtol=1e-12)
    for c, t in zip(cps, tps):
        np.testing.assert_allclose(host(c.grad), t.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("clip", [0.1, 0.7, 5.0])
def test_clip_grad_value_matches_torch(clip: float, device: str) -> None:
    cps, tps = _grads_pair(np.float64, scale=2, device=device)
    cps[1].grad.data[0] = np.nan
    tps[1].grad[0] = np.nan
    assert nn.utils.clip_grad_value_(cps, clip) is None
    torch.nn.utils.clip_grad_value_(tps, clip)
    for c, t in zip(cps, tps):
        assert c.grad.device.type == device
        np.testing.assert_equal(host(c.grad), t.grad.numpy())
        assert np.nanmax(np.abs(host(c.grad))) <= clip


def test_parameters_to_vector_and_back(device: str) -> None:
    w0, _ = _data(1)
    cps = [nn.Parameter(cr.tensor(w, device=device)) for w in w0]
    tps = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
    cv = nn.utils.parameters_to_vector(cps)
    tv = torch.nn.utils.parameters_to_vector(tps)
    assert cv.device.type == device
    np.testing.assert_array_equal(host(cv), tv.detach().numpy())
    assert cv.shape == (sum(int(np.prod(s)) for s in SHAPES),)
    # differentiable
    (cv * cv).sum().backward()
    np.testing.assert_allclose(host(cps[0].grad), 2 * w0[0])
    new = np.arange(cv.numel(), dtype=np.float64)
    nn.utils.vector_to_parameters(cr.tensor(new, device=device), cps)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), tps)
    for c, t in zip(cps, tps):
        np.testing.assert_array_equal(host(c), t.detach().numpy())
    with pytest.raises(RuntimeError, match="vector has 3 elements"):
        nn.utils.vector_to_parameters(cr.zeros(3, device=device), cps)


# ----------------------------------------------------------------------------- nn.init

GAINS = [
    ("linear", None),
    ("conv2d", None),
    ("sigmoid", None),
    ("tanh", None),
    ("relu", None),
    ("leaky_relu", None),
    ("leaky_relu", 0.2),
    ("selu", None),
]


def test_calculate_gain_and_fans_match_torch() -> None:
    for nl, param in GAINS:
        assert nn.init.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")
    for shape in [(5, 3), (8, 4, 3, 3), (6, 2, 5)]:
        assert nn.init._calculate_fan_in_and_fan_out(cr.zeros(*shape)) == (
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
        )
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(cr.zeros(3))


def _stats(t: Any) -> tuple[float, float, float]:
    a = host(t).astype(np.float64)
    return float(a.mean()), float(a.std()), float(np.abs(a).max())


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_init_distributions(shape: tuple, device: str) -> None:
    cr.manual_seed(0)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(cr.zeros(*shape))
    t = cr.empty(*shape, device=device)

    # xavier uniform: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))
    a = 1.5 * math.sqrt(6 / (fan_in + fan_out))
    mean, std, amax = _stats(nn.init.xavier_uniform_(t, gain=1.5))
    assert amax <= a and amax > 0.99 * a
    assert std == pytest.approx(a / math.sqrt(3), rel=0.02) and abs(mean) < 0.02 * a
    # xavier normal: std = gain sqrt(2 / (fan_in + fan_out))
    mean, std, _ = _stats(nn.init.xavier_normal_(t, gain=0.5))
    assert std == pytest.approx(0.5 * math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    for mode, fan in (("fan_in", fan_in), ("fan_out", fan_out)):
        for nl, slope in (("relu", 0), ("leaky_relu", 0.1), ("tanh", 0)):
            gain = torch.nn.init.calculate_gain(nl, slope if nl == "leaky_relu" else None)
            bound = gain * math.sqrt(3 / fan)
            _, std, amax = _stats(nn.init.kaiming_uniform_(t, a=slope, mode=mode, nonlinearity=nl))
            assert amax <= bound * (1 + 1e-6) and amax > 0.99 * bound
            assert std == pytest.approx(bound / math.sqrt(3), rel=0.02)
            _, std, _ = _stats(nn.init.kaiming_normal_(t, a=slope, mode=mode, nonlinearity=nl))
            assert std == pytest.approx(gain / math.sqrt(fan), rel=0.02)
    # the same distributions as torch's (moments of a big sample)
    tt = torch.empty(shape)
    torch.manual_seed(0)
    torch.nn.init.kaiming_uniform_(tt, a=math.sqrt(5))
    _, std, _ = _stats(nn.init.kaiming_uniform_(t, a=math.sqrt(5)))
    assert std == pytest.approx(float(tt.std()), rel=0.03)
    assert t.device.type == device
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        nn.init.kaiming_uniform_(t, mode="fan_avg")


@pytest.mark.parametrize(
    "shape,gain", [((6, 10), 1.0), ((10, 6), 2.0), ((8, 2, 3, 3), 0.5), ((5, 5), 1.0)]
)
def test_orthogonal(shape: tuple, gain: float, device: str) -> None:
    cr.manual_seed(1)
    t = nn.init.orthogonal_(cr.empty(*shape, dtype=cr.float64, device=device), gain=gain)
    assert t.device.type == device
    w = host(t).reshape(shape[0], -1)
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-12)
    # and a second draw differs
    t2 = nn.init.orthogonal_(cr.empty(*shape, dtype=cr.float64, device=device), gain=gain)
    assert not np.allclose(host(t), host(t2))


def test_deterministic_inits_equal_torch(device: str) -> None:
    for fn, args, shape in [
        ("eye_", (), (3, 5)),
        ("eye_", (), (4, 2)),
        ("dirac_", (), (4, 2, 3)),
        ("dirac_", (2,), (4, 2, 3, 3)),
        ("constant_", (0.3,), (2, 3)),
        ("ones_", (), (2, 2)),
        ("zeros_", (), (3,)),
    ]:
        c = getattr(nn.init, fn)(cr.empty(*shape, dtype=cr.float64, device=device), *args)
        t = getattr(torch.nn.init, fn)(torch.empty(shape, dtype=torch.float64), *args)
        assert c.device.type == device
        np.testing.assert_array_equal(host(c), t.numpy(), err_msg=f"{fn}{shape}")


def test_init_in_place_no_grad_and_generator(device: str) -> None:
    p = nn.Parameter(cr.zeros(50, 40, device=device))
    v = p._version
    out = nn.init.normal_(p, 1.0, 0.1)
    assert out is p and p.requires_grad and p.is_leaf and p.grad_fn is None and p._version > v
    assert p.device.type == device
    assert abs(host(p).mean() - 1.0) < 0.01
    g1, g2 = cr.Generator().manual_seed(5), cr.Generator().manual_seed(5)
    a = nn.init.uniform_(cr.empty(10, device=device), -2, 3, generator=g1)
    b = nn.init.uniform_(cr.empty(10, device=device), -2, 3, generator=g2)
    np.testing.assert_array_equal(host(a), host(b))
    assert host(a).min() >= -2 and host(a).max() < 3
    tn = nn.init.trunc_normal_(cr.empty(20000, device=device), mean=0.5, std=1.0, a=-0.5, b=1.0)
    assert tn.device.type == device
    tnh = host(tn)
    assert tnh.min() >= -0.5 and tnh.max() <= 1.0
    ref = torch.nn.init.trunc_normal_(torch.empty(20000), mean=0.5, std=1.0, a=-0.5, b=1.0)
    assert float(tnh.mean()) == pytest.approx(float(ref.mean()), abs=0.02)
    assert float(tnh.std()) == pytest.approx(float(ref.std()), abs=0.02)


RESUMED = {
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, 0.9, last_epoch=3),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, 10, eta_min=0.01, last_epoch=3),
    "LinearLR": lambda L, o: L.LinearLR(o, 0.5, total_iters=6, last_epoch=3),
    "StepLR": lambda L, o: L.StepLR(o, 2, last_epoch=3),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, [5, 8], last_epoch=3),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lambda e: 1 / (e + 1), last_epoch=3),
    "SequentialLR-milestone-0": lambda L, o: L.SequentialLR(
        o, [L.ExponentialLR(o, 0.5), L.StepLR(o, 2)], milestones=[0]
    ),
    "SequentialLR-nested": lambda L, o: L.SequentialLR(
        o,
        [
            L.SequentialLR(
                o, [L.LinearLR(o, 0.5, total_iters=3), L.ExponentialLR(o, 0.7)], milestones=[3]
            ),
            L.CosineAnnealingLR(o, 5),
        ],
        milestones=[6],
    ),
}


@pytest.mark.parametrize("name", list(RESUMED))
def test_scheduler_resumed_or_nested_matches_torch(name: str) -> None:
    """``last_epoch >= 0`` (resuming: the initial step keeps the current lr), a milestone at 0,
    and a SequentialLR inside a SequentialLR."""

    def make(L: Any, o: Any) -> Any:
        for g in o.param_groups:
            g.setdefault("initial_lr", g["lr"] * 2)
        return RESUMED[name](L, o)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, t = lr_sequences(make, steps=15)
    np.testing.assert_allclose(_flat(c), _flat(t), rtol=1e-13, atol=1e-15)


def test_reduce_lr_on_plateau_is_a_scheduler_and_validates() -> None:
    copt, _ = _sched_opts()
    s = cs.ReduceLROnPlateau(copt)
    assert isinstance(s, cs.LRScheduler) and isinstance(s, cs._LRScheduler)
    assert s.get_last_lr() == [0.1, 0.03]
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
        cs.ReduceLROnPlateau(copt, min_lr=[0.1])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        cs.SequentialLR(copt, [cs.StepLR(copt, 2), s], milestones=[3])
    with pytest.raises(ValueError, match="pct_start"):
        cs.OneCycleLR(copt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="expected 2 values for max_lr, got 3"):
        cs.OneCycleLR(copt, max_lr=[0.1, 0.2, 0.3], total_steps=10)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
def test_training_with_one_cycle_matches_torch(opt_name: str) -> None:
    """End to end: a two-layer net, cross-entropy, an optimiser whose momentum / beta1 the
    OneCycleLR schedule cycles every step, and gradient clipping: torch's weights after 20 steps."""
    r = np.random.default_rng(3)
    X, y = r.standard_normal((16, 5)), r.integers(0, 3, 16)
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    cnet = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    cnet.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    kw = (
        {"lr": 0.1, "momentum": 0.9, "nesterov": True}
        if opt_name == "SGD"
        else {"lr": 0.01, "weight_decay": 0.01}
    )
    copt = getattr(cr.optim, opt_name)(cnet.parameters(), **kw)
    topt = getattr(torch.optim, opt_name)(tnet.parameters(), **kw)
    csched = cs.OneCycleLR(copt, max_lr=0.2, total_steps=20)
    tsched = TS.OneCycleLR(topt, max_lr=0.2, total_steps=20)
    for _ in range(20):
        copt.zero_grad()
        topt.zero_grad()
        closs = nn.functional.cross_entropy(cnet(cr.tensor(X)), cr.tensor(y), label_smoothing=0.1)
        tloss = torch.nn.functional.cross_entropy(
            tnet(torch.tensor(X)), torch.tensor(y), label_smoothing=0.1
        )
        np.testing.assert_allclose(closs.item(), tloss.item(), rtol=1e-10)
        closs.backward()
        tloss.backward()
        cn = nn.utils.clip_grad_norm_(cnet.parameters(), 1.0)
        tn = torch.nn.utils.clip_grad_norm_(tnet.parameters(), 1.0)
        np.testing.assert_allclose(cn.item(), tn.item(), rtol=1e-10)
        copt.step()
        topt.step()
        csched.step()
        tsched.step()
    tparams = dict(tnet.named_parameters())
    for k, p in cnet.named_parameters():
        np.testing.assert_allclose(
            p.data, tparams[k].detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=k
        )


def test_add_param_group_later_matches_torch() -> None:
    """A group added after construction (Adagrad's state then starts lazily, from the
    constructor's initial_accumulator_value, as torch)."""
    for name, kw, extra in [
        (
            "Adagrad",
            {"lr": 0.1, "initial_accumulator_value": 0.3},
            {"initial_accumulator_value": 0.5, "lr": 0.2},
        ),
        ("Adam", {"lr": 0.01, "amsgrad": True}, {"lr": 0.02, "amsgrad": False}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}, {"momentum": 0.5}),
        ("RMSprop", {"lr": 0.01}, {"centered": True}),
    ]:
        w0, grads = _data(12)
        cps = [nn.Parameter(cr.tensor(w)) for w in w0]
        tps = [torch.nn.Parameter(torch.tensor(w)) for w in w0]
        copt = getattr(cr.optim, name)([{"params": cps[:2], **extra}], **kw)
        topt = getattr(torch.optim, name)([{"params": tps[:2], **extra}], **kw)
        for k in range(12):
            if k == 4:
                copt.add_param_group({"params": [cps[2]], **extra})
                topt.add_param_group({"params": [tps[2]], **extra})
            for cp, tp, g in zip(cps, tps, grads[k]):
                cp.grad, tp.grad = cr.tensor(g), torch.tensor(g)
            copt.step()
            topt.step()
        assert_params_equal(cps, tps)


@pytest.mark.parametrize(
    "kw",
    [
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        {},
        {"momentum": 0.5, "dampening": 0.3},
    ],
)
def test_sgd_chunked_threads_match_serial_and_torch(monkeypatch, kw) -> None:
    """Big parameters are updated in chunks by a thread pool: bitwise the same as one call."""
    import chainrule.optim.optimizer as O

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((37, 29))
    grads = [rng.standard_normal((37, 29)) for _ in range(5)]

    def run(chunk_min):  # noqa: ANN001, ANN202
        monkeypatch.setattr(O, "CHUNK_MIN", chunk_min)
        p = cr.tensor(w0.copy(), requires_grad=True)
        opt = cr.optim.SGD([p], lr=0.1, **kw)
        for g in grads:
            p.grad = cr.tensor(g.copy())
            opt.step()
        return p.detach().numpy().copy()

    serial, chunked = run(1 << 30), run(8)
    assert np.array_equal(serial, chunked)
    tp = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1, **kw)
    for g in grads:
        tp.grad = torch.tensor(g.copy())
        topt.step()
    np.testing.assert_allclose(chunked, tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_sgd_never_chunks_device_arrays(cuda: str, monkeypatch) -> None:
    """The threaded chunked update is for host arrays only: on the device one call does it."""
    import chainrule.optim.optimizer as O

    monkeypatch.setattr(O, "CHUNK_MIN", 8)
    real = O.in_chunks

    def host_only(fn, *arrays, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        assert all(a is None or type(a) is np.ndarray for a in arrays), "device arrays chunked"
        return real(fn, *arrays, **kw)

    monkeypatch.setattr(O, "in_chunks", host_only)
    import chainrule.optim.sgd as S

    monkeypatch.setattr(S, "in_chunks", host_only)
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((37, 29))
    grads = [rng.standard_normal((37, 29)) for _ in range(4)]
    out = {}
    for dev in ("cpu", cuda):
        p = cr.tensor(w0.copy(), device=dev, requires_grad=True)
        opt = cr.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
        for g in grads:
            p.grad = cr.tensor(g, device=dev)
            opt.step()
        assert p.device.type == dev
        out[dev] = host(p)
    np.testing.assert_array_equal(out["cpu"], out[cuda])
