"""Experiment descriptions: one schema for the built-in presets and for ``--config FILE.toml``.

A config is a dict (TOML tables):

    name = "my-run"                 # run folder name (default: the file's stem or the preset)
    description = "one line"
    seed = 0
    device = "cpu"                  # "cuda" (needs CuPy and a GPU), "cuda:1", or "auto"

    [data]
    dataset = "mnist1d"             # see DATASETS
    batch_size = 100
    shuffle = true
    val = "test"                    # "test" (the dataset's test split), a fraction such as 0.1, or "none"
    # dataset options, e.g. n = 4 for parity, path = "data.npz" for npz; path = the MNIST folder for
    # idx, a UTF-8 text file for text, the cache folder for speech_digits (n = how many voices);
    # shift = 2 (random-shift augmentation of training images), seq_len = 64 (text windows),
    # limit = 500 (only the first 500 samples of each split: quick tries)

    [model]
    layers = [ { type = "Linear", in_features = 40, out_features = 10 } ]   # a Sequential
    # or: builtin = "mnist1d-gru" (see BUILTIN_MODELS)
    init = { uniform = 0.3 }        # optional: every weight and bias ~ U(-0.3, 0.3)

    [optimizer]
    name = "Adam"                   # any class of chainrule.optim; the rest are its arguments
    lr = 0.01

    [scheduler]                     # optional: any class of chainrule.optim.lr_scheduler
    name = "CosineAnnealingLR"
    T_max = 100
    interval = "epoch"              # or "batch"

    [train]
    epochs = 10
    loss = "CrossEntropyLoss"       # any loss class of chainrule.nn, with its arguments in [train.loss_args]
    metrics = ["loss", "accuracy"]
    checkpoint_every = 0            # also write a resumable checkpoint every N steps (0: per epoch)

Every mistake is reported as one line naming the key, what was given and what is allowed.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key."""


SECTIONS = {
    "name", "description", "seed", "device", "data", "model", "optimizer", "scheduler", "train",
}  # fmt: skip
DATASETS = (
    "xor",
    "parity",
    "encoder",
    "symmetry",
    "family_trees",
    "mnist1d",
    "digits",
    "npz",
    "csv",
    "idx",
    "speech_digits",
    "text",
)
BUILTIN_MODELS = (
    "mnist1d-logistic",
    "mnist1d-mlp",
    "mnist1d-cnn",
    "mnist1d-gru",
    "family-trees",
    "charlm-gru",
    "charlm-transformer",
)
DATA_KEYS = {
    "dataset",
    "batch_size",
    "shuffle",
    "val",
    "n",
    "path",
    "target_column",
    "targets",
    "flatten",
    "drop_last",
    "shift",
    "seq_len",
    "limit",
}
TRAIN_KEYS = {"epochs", "loss", "loss_args", "metrics", "checkpoint_every"}
METRICS = ("loss", "accuracy", "top5_accuracy (any k)", "bits_per_char")


def load_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    try:
        cfg = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    cfg.setdefault("name", p.stem)
    return cfg


def _allowed(key: str, value: Any, allowed: Any) -> ConfigError:
    return ConfigError(
        f"{key} = {value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}"
    )


def _need(cfg: dict, key: str, typ: type | tuple, where: str) -> Any:
    if key not in cfg:
        raise ConfigError(f"{where}.{key} is missing")
    v = cfg[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"{where}.{key} must be a {want}, got {v!r}")
    return v


def _check_args(cls: type, args: dict, where: str) -> None:
    """Unknown or missing constructor arguments, named against the class's signature."""
    sig = inspect.signature(cls.__init__)
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL,)]
    for k in args:
        if k not in params:
            raise ConfigError(
                f"{where}: {cls.__name__} has no argument {k!r}; its arguments are: {', '.join(known)}"
            )
    for n, p in params.items():
        if n in ("params", "optimizer"):
            continue
        if (
            p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and n not in args
        ):
            raise ConfigError(f"{where}: {cls.__name__} needs argument {n!r}")


def validate(cfg: dict) -> dict:
    """Check a config and fill in defaults; returns a new dict. Raises ConfigError."""
    from . import nn, optim  # noqa: PLC0415
    from .optim import lr_scheduler  # noqa: PLC0415

    cfg = copy.deepcopy(cfg)
    for k in cfg:
        if k not in SECTIONS:
            raise _allowed("top-level key", k, sorted(SECTIONS))
    cfg.setdefault("name", "run")
    cfg.setdefault("description", "")
    cfg.setdefault("seed", 0)
    if not isinstance(cfg["seed"], int):
        raise ConfigError(f"seed must be an integer, got {cfg['seed']!r}")
    cfg.setdefault("device", "cpu")
    check_device(cfg["device"], "device")

    data = cfg.setdefault("data", {})
    for k in data:
        if k not in DATA_KEYS:
            raise _allowed("data key", k, sorted(DATA_KEYS))
    ds = _need(data, "dataset", str, "data")
    if ds not in DATASETS:
        raise _allowed("data.dataset", ds, DATASETS)
    data.setdefault("batch_size", 32)
    if not isinstance(data["batch_size"], int) or data["batch_size"] < 1:
        raise ConfigError(f"data.batch_size must be a positive integer, got {data['batch_size']!r}")
    data.setdefault("shuffle", True)
    data.setdefault("val", "test" if ds in ("mnist1d", "digits") else "none")
    val = data["val"]
    if not (val in ("test", "none", "train") or (isinstance(val, float) and 0 < val < 1)):
        raise ConfigError(
            f"data.val = {val!r} is not allowed; use 'test', 'train', 'none' or a fraction in (0, 1)"
        )
    if ds == "idx" and "path" not in data:
        raise ConfigError(
            "data.path is missing: dataset 'idx' reads MNIST from a folder holding train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may be .gz): pass --data DIR"
        )
    for key, least in (("shift", 0), ("seq_len", 1), ("limit", 1)):
        if key in data and (
            not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < least
        ):
            raise ConfigError(f"data.{key} must be an integer >= {least}, got {data[key]!r}")
    if ds in ("npz", "csv", "idx") and "path" not in data:
        raise ConfigError(f"data.path is missing: dataset {ds!r} reads a file or folder")

    model = cfg.setdefault("model", {})
    if "builtin" in model:
        if model["builtin"] not in BUILTIN_MODELS:
            raise _allowed("model.builtin", model["builtin"], BUILTIN_MODELS)
    elif "layers" in model:
        layers = model["layers"]
        if not isinstance(layers, list) or not layers:
            raise ConfigError(
                'model.layers must be a non-empty list of tables like { type = "Linear", ... }'
            )
        for i, spec in enumerate(layers):
            where = f"model.layers[{i}]"
            if not isinstance(spec, dict) or "type" not in spec:
                raise ConfigError(f"{where} must be a table with a 'type' key")
            cls = getattr(nn, spec["type"], None)
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or spec["type"] in (
                "Module",
                "Sequential",
            ):
                layer_names = sorted(
                    n
                    for n in dir(nn)
                    if isinstance(getattr(nn, n), type)
                    and issubclass(getattr(nn, n), nn.Module)
                    and n[0].isupper()
                )
                raise _allowed(f"{where}.type", spec["type"], layer_names)
            _check_args(cls, {k: v for k, v in spec.items() if k != "type"}, where)
    else:
        raise ConfigError('model needs either layers = [...] or builtin = "..."')
    for k in model:
        if k not in ("layers", "builtin", "init"):
            raise _allowed("model key", k, ["layers", "builtin", "init"])
    if "init" in model:
        init = model["init"]
        if not (
            isinstance(init, dict)
            and set(init) == {"uniform"}
            and isinstance(init["uniform"], (int, float))
        ):
            raise ConfigError(
                f"model.init = {init!r}: only {{ uniform = A }} (weights and biases ~ U(-A, A)) is supported"
            )

    opt = cfg.setdefault("optimizer", {"name": "Adam", "lr": 1e-3})
    name = _need(opt, "name", str, "optimizer")
    names = [n for n in optim.__all__ if n not in ("Optimizer", "lr_scheduler")]
    if name not in names:
        raise _allowed("optimizer.name", name, names)
    _check_args(getattr(optim, name), {k: v for k, v in opt.items() if k != "name"}, "optimizer")
    if "lr" in opt and (not isinstance(opt["lr"], (int, float)) or opt["lr"] < 0):
        raise ConfigError(f"optimizer.lr must be a number >= 0, got {opt['lr']!r}")

    if "scheduler" in cfg:
        sch = cfg["scheduler"]
        sname = _need(sch, "name", str, "scheduler")
        snames = [
            n for n in dir(lr_scheduler) if n.endswith(("LR", "Plateau")) and not n.startswith("_")
        ]
        if sname not in snames:
            raise _allowed("scheduler.name", sname, snames)
        sch.setdefault("interval", "epoch")
        if sch["interval"] not in ("epoch", "batch"):
            raise _allowed("scheduler.interval", sch["interval"], ["epoch", "batch"])
        _check_args(
            getattr(lr_scheduler, sname),
            {k: v for k, v in sch.items() if k not in ("name", "interval")},
            "scheduler",
        )

    train = cfg.setdefault("train", {})
    for k in train:
        if k not in TRAIN_KEYS:
            raise _allowed("train key", k, sorted(TRAIN_KEYS))
    train.setdefault("epochs", 10)
    if not isinstance(train["epochs"], int) or train["epochs"] < 1:
        raise ConfigError(f"train.epochs must be a positive integer, got {train['epochs']!r}")
    train.setdefault("loss", "CrossEntropyLoss")
    loss_cls = getattr(nn, train["loss"], None)
    loss_names = [n for n in dir(nn) if n.endswith("Loss")]
    if train["loss"] not in loss_names or loss_cls is None:
        raise _allowed("train.loss", train["loss"], loss_names)
    train.setdefault("loss_args", {})
    _check_args(loss_cls, train["loss_args"], "train.loss_args")
    train.setdefault("metrics", ["loss", "accuracy"])
    from .train.metrics import get_metric  # noqa: PLC0415

    for mname in train["metrics"]:
        try:
            get_metric(mname)
        except (ValueError, TypeError):
            raise _allowed("train.metrics entry", mname, METRICS) from None
    train.setdefault("checkpoint_every", 0)
    return cfg


def check_device(value: Any, key: str = "device") -> str:
    """``value`` if it names a device a config may ask for: ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    or ``"auto"`` (CUDA when available, else the CPU); a ConfigError naming ``key`` otherwise.
    Whether CUDA is usable here is checked when training starts, not here."""
    ok = isinstance(value, str) and (
        value in ("cpu", "cuda", "auto") or (value.startswith("cuda:") and value[5:].isdigit())
    )
    if not ok:
        raise ConfigError(
            f"{key} = {value!r} is not allowed; use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        )
    return value


def resolve_device(value: str) -> Any:
    """The ``chainrule.device`` a validated device name means here: ``"auto"`` is CUDA when
    ``chainrule.cuda.is_available()``, else the CPU; ``"cuda"`` without a usable GPU raises the
    backend's RuntimeError, which says what to install."""
    from . import backend  # noqa: PLC0415

    if value == "auto":
        return backend.device("cuda" if backend.cuda_available() else "cpu")
    dev = backend.as_device(value)
    if dev.type == "cuda":
        backend.cuda_module()
    return dev


def apply_overrides(cfg: dict, **overrides: Any) -> dict:
    """Command-line overrides (epochs, lr, batch_size, seed, data: data.path, device) on top of
    a config."""
    cfg = copy.deepcopy(cfg)
    if overrides.get("epochs") is not None:
        cfg.setdefault("train", {})["epochs"] = overrides["epochs"]
    if overrides.get("lr") is not None:
        cfg.setdefault("optimizer", {})["lr"] = overrides["lr"]
    if overrides.get("batch_size") is not None:
        cfg.setdefault("data", {})["batch_size"] = overrides["batch_size"]
    if overrides.get("seed") is not None:
        cfg["seed"] = overrides["seed"]
    if overrides.get("data") is not None:
        cfg.setdefault("data", {})["path"] = str(overrides["data"])
    if overrides.get("device") is not None:
        cfg["device"] = overrides["device"]
    return cfg


def to_toml(cfg: dict) -> str:
    """A config written back as TOML (for the run folder), readable by ``load_toml``."""
    lines = []
    for k, v in cfg.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_val(v)}")
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            for kk, vv in v.items():
                lines.append(f"{kk} = {_val(vv)}")
    return "\n".join(lines) + "\n"


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_val(x)}" for k, x in v.items()) + " }"
    raise ConfigError(f"cannot write {v!r} to TOML")
