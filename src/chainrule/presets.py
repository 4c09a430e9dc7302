"""Named experiments for ``chainrule train --preset NAME``: each is a config (see ``config.py``)
plus the few models that are not a plain ``Sequential``."""

from __future__ import annotations

import copy
from typing import Any

from . import applications, nn

DEFAULT = "mnist1d-cnn"


def _seq(*layers: dict) -> dict:
    return {"layers": list(layers)}


def _lin(i: int, o: int) -> dict:
    return {"type": "Linear", "in_features": i, "out_features": o}


SIG = {"type": "Sigmoid"}
RELU = {"type": "ReLU"}

_MNIST1D = {"dataset": "mnist1d", "batch_size": 100, "shuffle": False, "val": "test"}
_MNIST1D_TRAIN = {"epochs": 150, "loss": "CrossEntropyLoss", "metrics": ["loss", "accuracy"]}
_ADAM = {"name": "Adam", "lr": 0.01}


def _classic(
    dataset: str, n: int | None, layers: list, lr: float, epochs: int, desc: str, init: float = 0.5
) -> dict:
    data = {"dataset": dataset, "batch_size": 1 << 16, "shuffle": False, "val": "train"}
    if n is not None:
        data["n"] = n
    return {
        "description": desc,
        "seed": 0,
        "data": data,
        "model": {"layers": layers, "init": {"uniform": init}},
        "optimizer": {"name": "SGD", "lr": lr, "momentum": 0.9},
        "train": {
            "epochs": epochs,
            "loss": "MSELoss",
            "loss_args": {"reduction": "sum"},
            "metrics": ["loss", "accuracy"],
        },
    }


PRESETS: dict[str, dict] = {
    "mnist1d-cnn": {
        "description": "MNIST-1D, the paper's CNN (3 strided Conv1d + Linear), Adam 1e-2, 6000 steps; published ~94% test accuracy",
        "seed": 42,
        "data": dict(_MNIST1D),
        "model": _seq(
            {"type": "Unflatten", "dim": 1, "unflattened_size": [1, 40]},  # (N, 40) -> (N, 1, 40)
            {
                "type": "Conv1d",
                "in_channels": 1,
                "out_channels": 25,
                "kernel_size": 5,
                "stride": 2,
                "padding": 1,
            },
            RELU,
            {
                "type": "Conv1d",
                "in_channels": 25,
                "out_channels": 25,
                "kernel_size": 3,
                "stride": 2,
                "padding": 1,
            },
            RELU,
            {
                "type": "Conv1d",
                "in_channels": 25,
                "out_channels": 25,
                "kernel_size": 3,
                "stride": 2,
                "padding": 1,
            },
            RELU,
            {"type": "Flatten"},
            _lin(125, 10),
        ),
        "optimizer": dict(_ADAM),
        "train": dict(_MNIST1D_TRAIN),
    },
    "mnist1d-mlp": {
        "description": "MNIST-1D, the paper's residual MLP 40-100-100-10, Adam 1e-2, 6000 steps; published ~68%",
        "seed": 42,
        "data": dict(_MNIST1D),
        "model": {"builtin": "mnist1d-mlp"},
        "optimizer": dict(_ADAM),
        "train": dict(_MNIST1D_TRAIN),
    },
    "mnist1d-logistic": {
        "description": "MNIST-1D, logistic regression Linear(40, 10), Adam 1e-2, 6000 steps; published ~32%",
        "seed": 42,
        "data": dict(_MNIST1D),
        "model": _seq(_lin(40, 10)),
        "optimizer": dict(_ADAM),
        "train": dict(_MNIST1D_TRAIN),
    },
    "mnist1d-gru": {
        "description": "MNIST-1D, bidirectional GRU(1, 6) over 40 steps + Linear(480, 10), Adam 1e-2; published ~91%",
        "seed": 42,
        "data": dict(_MNIST1D),
        "model": {"builtin": "mnist1d-gru"},
        "optimizer": dict(_ADAM),
        "train": dict(_MNIST1D_TRAIN, epochs=50),
    },
    "digits-mlp": {
        "description": "scikit-learn's 8x8 digits, MLP 64-64-10 (needs chainrule[digits])",
        "seed": 0,
        "data": {
            "dataset": "digits",
            "batch_size": 32,
            "shuffle": True,
            "val": "test",
            "flatten": True,
        },
        "model": _seq(_lin(64, 64), RELU, _lin(64, 10)),
        "optimizer": {"name": "Adam", "lr": 0.003},
        "train": {"epochs": 30, "loss": "CrossEntropyLoss", "metrics": ["loss", "accuracy"]},
    },
    "xor": _classic(
        "xor",
        None,
        [_lin(2, 2), SIG, _lin(2, 1), SIG],
        0.5,
        2000,
        "the 1986 XOR problem: 2-2-1 logistic net, sum-squared error, SGD momentum 0.9",
    ),
    "parity4": _classic(
        "parity",
        4,
        [_lin(4, 4), SIG, _lin(4, 1), SIG],
        0.5,
        3000,
        "4-bit parity: 4-4-1 logistic net (PDP ch. 8)",
    ),
    "encoder8": _classic(
        "encoder",
        8,
        [_lin(8, 3), SIG, _lin(3, 8), SIG],
        0.5,
        3000,
        "the 8-3-8 encoder: 8 one-hot patterns through 3 hidden units",
    ),
    "symmetry6": _classic(
        "symmetry",
        6,
        [_lin(6, 2), SIG, _lin(2, 1), SIG],
        0.1,
        3000,
        "mirror symmetry of 6-bit patterns: 6-2-1 logistic net (Nature 1986)",
        init=0.3,
    ),
    "family-trees": {
        "description": "Hinton's family trees (Nature 1986 data and net; PyTorch-style SGD, not the paper's schedule: see `chainrule reproduce rhw1986`)",
        "seed": 0,
        "data": {
            "dataset": "family_trees",
            "batch_size": 1 << 16,
            "shuffle": False,
            "val": "train",
        },
        "model": {"builtin": "family-trees", "init": {"uniform": 0.3}},
        "optimizer": {"name": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.002},
        "train": {
            "epochs": 1500,
            "loss": "MSELoss",
            "loss_args": {"reduction": "sum"},
            "metrics": ["loss", "accuracy"],
        },
    },
}

# images, speech and language (issue 9): digits-cnn, mnist-cnn, speech-digits, charlm-gru,
# charlm-transformer; their configs and models live in applications.py
PRESETS.update(applications.PRESETS)


def get(name: str) -> dict:
    if name not in PRESETS:
        from .config import ConfigError  # noqa: PLC0415

        raise ConfigError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)} (see `chainrule presets`)"
        )
    cfg = copy.deepcopy(PRESETS[name])
    cfg["name"] = name
    return cfg


# ----------------------------------------------------------------------------- builtin models


class MNIST1DMLP(nn.Module):
    """The paper's MLP: h = relu(L1 x); h = h + relu(L2 h); out = L3 h (40-100-100-10)."""

    def __init__(self, n_in: int = 40, hidden: int = 100, n_out: int = 10) -> None:
        super().__init__()
        self.linear1 = nn.Linear(n_in, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, n_out)

    def forward(self, x: Any) -> Any:
        h = self.linear1(x).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


class MNIST1DGRU(nn.Module):
    """Bidirectional GRU(1, 6) over the 40 steps; all outputs flattened into Linear(480, 10)."""

    def __init__(self, length: int = 40, hidden: int = 6, n_out: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden * length, n_out)

    def forward(self, x: Any) -> Any:
        out, _ = self.gru(x.reshape(x.shape[0], -1, 1))
        return self.linear(out.reshape(out.shape[0], -1))


class FamilyTreesNet(nn.Module):
    """Person (24) -> 6 and relationship (12) -> 6 logistic units, both -> 12 -> 6 -> 24 people."""

    def __init__(self, people: int = 24, relations: int = 12) -> None:
        super().__init__()
        self.people = people
        self.person = nn.Linear(people, 6)
        self.relation = nn.Linear(relations, 6)
        self.central = nn.Linear(12, 12)
        self.decode = nn.Linear(12, 6)
        self.out = nn.Linear(6, people)

    def forward(self, x: Any) -> Any:
        p = self.person(x[:, : self.people]).sigmoid()
        r = self.relation(x[:, self.people :]).sigmoid()
        from .ops.movement import cat  # noqa: PLC0415

        h = self.central(cat([p, r], 1)).sigmoid()
        return self.out(self.decode(h).sigmoid()).sigmoid()


BUILTIN = {
    "mnist1d-logistic": lambda: nn.Sequential(nn.Linear(40, 10)),
    "mnist1d-mlp": MNIST1DMLP,
    "mnist1d-cnn": lambda: build_layers(PRESETS["mnist1d-cnn"]["model"]["layers"]),
    "mnist1d-gru": MNIST1DGRU,
    "family-trees": FamilyTreesNet,
    **applications.MODELS,  # charlm-gru, charlm-transformer
}


def build_layers(layers: list[dict]) -> nn.Module:
    mods = []
    for spec in layers:
        args = {k: v for k, v in spec.items() if k != "type"}
        mods.append(getattr(nn, spec["type"])(**args))
    return nn.Sequential(*mods)


def build_model(model_cfg: dict) -> nn.Module:
    from .autograd.grad_mode import no_grad  # noqa: PLC0415

    if "builtin" in model_cfg:
        model = BUILTIN[model_cfg["builtin"]]()
    else:
        model = build_layers(model_cfg["layers"])
    init = model_cfg.get("init")
    if init:
        a = float(init["uniform"])
        with no_grad():
            for p in model.parameters():
                nn.init.uniform_(p, -a, a)
    return model
