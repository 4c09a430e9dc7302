"""The ``chainrule`` command.

    chainrule train                      # the default preset (MNIST-1D CNN), generated locally
    chainrule train --preset xor         # any of `chainrule presets`
    chainrule train --config run.toml    # a model/data/optimiser description (see config.py)
    chainrule train --epochs 5 --lr 0.01 --batch-size 64 --seed 1 --out runs/try
    chainrule train --resume             # continue the latest run of that preset (or --resume DIR)
    chainrule train --device cuda        # on the GPU (CuPy); auto: the GPU when there is one
    chainrule train --preset mnist-cnn --data DIR   # --data sets data.path (MNIST folder, text file, ...)
    chainrule presets                    # one line per preset
    chainrule eval runs/mnist1d-cnn      # a saved run's weights on its test (or validation) data

A run folder holds: config.toml, metrics.csv, history.jsonl, curves.png, best.safetensors, last.safetensors,
checkpoint.safetensors (for --resume) and summary.json. Errors print one line and exit with
status 2 (1 for an interrupted run); --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RUNS = Path("runs")


class CLIError(Exception):
    """A problem to report on one line."""


# ----------------------------------------------------------------------------- data


def build_data(cfg: dict) -> tuple[Any, Any, Any]:
    """(train, val, test) datasets for a validated config (val/test may be None)."""
    from .data import datasets as D  # noqa: PLC0415
    from .data import random_split  # noqa: PLC0415
    from .random import Generator  # noqa: PLC0415

    d = cfg["data"]
    name = d["dataset"]
    test = None
    if name in ("xor", "family_trees"):
        train = getattr(D, name)()
    elif name in ("parity", "encoder", "symmetry"):
        train = getattr(D, name)(**({"n": d["n"]} if "n" in d else {}))
    elif name == "mnist1d":
        train, test = D.mnist1d(train=True), D.mnist1d(train=False)
    elif name == "digits":
        train, test = D.digits(seed=cfg["seed"], flat=bool(d.get("flatten", False)))
    elif name == "npz":
        train = D.load_npz(_path(d["path"]))
    elif name == "csv":
        train = D.read_csv(_path(d["path"]), target_column=d.get("target_column", -1))
    elif name == "idx":
        files = ", ".join(D.MNIST_FILES.values())
        if not Path(d["path"]).exists():
            raise CLIError(
                f"no MNIST folder {d['path']!r}: pass --data DIR, a folder holding {files} (each may be .gz)"
            )
        try:
            train, test = D.mnist(d["path"], flatten=bool(d.get("flatten", False)))
        except FileNotFoundError as e:
            raise CLIError(f"{e} (expected: {files})") from None
    elif name == "speech_digits":
        from .data.datasets.speech import speech_digits  # noqa: PLC0415

        train, test = speech_digits(d.get("path"), n_voices=d.get("n"))
    elif name == "text":
        from .data.datasets.text import char_corpus  # noqa: PLC0415

        train, test = char_corpus(
            d.get("seq_len", 64), path=_path(d["path"]) if "path" in d else None
        )
    else:  # validate() has already refused anything else
        raise CLIError(f"data.dataset = {name!r} is not supported")
    if "limit" in d:  # the first `limit` samples of each split
        from .data import Subset  # noqa: PLC0415

        train, test = (
            s if s is None else Subset(s, range(min(d["limit"], len(s)))) for s in (train, test)
        )
    val = None
    v = d["val"]
    if v == "test":
        if test is None:
            raise CLIError(
                f"data.val = 'test' but dataset {name!r} has no test split; use a fraction such as 0.1, 'train' or 'none'"
            )
        val = test
    elif v == "train":
        val = train
    elif isinstance(v, float):
        n_val = max(1, int(round(len(train) * v)))
        train, val = random_split(
            train, [len(train) - n_val, n_val], generator=Generator().manual_seed(cfg["seed"])
        )
    if d.get("shift"):  # random-shift augmentation of the training images (data/augment.py)
        from .data.augment import RandomShift  # noqa: PLC0415

        train = RandomShift(train, d["shift"], seed=cfg["seed"])
    return train, val, test


def _path(p: str) -> str:
    if not Path(p).exists():
        raise CLIError(f"data.path {p!r} does not exist")
    return p


# ----------------------------------------------------------------------------- train


def _resolve_run_dir(name: str, out: str | None, resume: str | bool | None) -> tuple[Path, bool]:
    """The run folder, and whether to resume in it."""
    if isinstance(resume, str):
        d = Path(resume)
        if not (d / "checkpoint.safetensors").exists():
            raise CLIError(f"--resume {d}: no checkpoint.safetensors there to resume from")
        return d, True
    if out is not None:
        d = Path(out)
        if resume:
            return d, (d / "checkpoint.safetensors").exists()
        if (d / "checkpoint.safetensors").exists():
            raise CLIError(
                f"{d} already holds a run: pass --resume to continue it, or choose another --out"
            )
        return d, False
    base = RUNS / name
    candidates = [base] + sorted(
        (p for p in RUNS.glob(f"{name}-*") if p.name[len(name) + 1 :].isdigit()),
        key=lambda p: int(p.name[len(name) + 1 :]),
    )
    existing = [p for p in candidates if _taken(p)]
    if resume:
        for p in reversed(existing):
            if (p / "checkpoint.safetensors").exists():
                return p, True
    if not _taken(base):
        return base, False
    i = 2
    while _taken(RUNS / f"{name}-{i}"):
        i += 1
    return RUNS / f"{name}-{i}", False


def _taken(d: Path) -> bool:
    """A folder holding a run (a folder left by a run that failed before training is reused)."""
    return (d / "checkpoint.safetensors").exists() or (d / "summary.json").exists()


def cmd_train(args: argparse.Namespace) -> int:
    from . import config as C  # noqa: PLC0415
    from . import presets  # noqa: PLC0415

    if args.config:
        cfg = C.load_toml(args.config)
    else:
        cfg = presets.get(args.preset or presets.DEFAULT)
    cfg = C.apply_overrides(
        cfg,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        data=args.data,
        device=args.device,
    )
    cfg = C.validate(cfg)
    dev = C.resolve_device(cfg["device"])  # no CUDA: one line saying what to install
    if dev.type != "cpu" and getattr(args, "distributed", False):
        raise CLIError("--distributed trains on the CPU: leave out --device (or device = 'cpu')")
    dist = _distributed(args)
    if dist is None:
        run_dir, resume = _resolve_run_dir(cfg["name"], args.out, args.resume)
    else:  # rank 0 decides, for every rank (and an error it meets stops them all)
        run_dir, resume = dist.run_on_rank0(_resolve_run_dir, cfg["name"], args.out, args.resume)
    main = dist is None or dist.get_rank() == 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(C.to_toml(cfg))
        where = "" if dev.type == "cpu" else f" on {dev}"
        print(
            f"chainrule: {'resuming' if resume else 'training'} {cfg['name']} in {run_dir}/{where} — {cfg['description']}",
            flush=True,
        )
    summary = train_from_config(
        cfg, run_dir, resume=resume, progress=not args.no_progress, args=args
    )
    if dist is not None:
        dist.destroy_process_group()
    if not main:
        return 0
    print(
        "chainrule: done in {wall:.1f}s; ".format(**summary)
        + ", ".join(
            f"{k} {v:.4g}"
            for k, v in summary["final"].items()
            if k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_bits_per_char")
        )
        + f"; files in {run_dir}/"
    )
    return 0


def train_from_config(
    cfg: dict,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    args: argparse.Namespace | None = None,
) -> dict:
    """Build everything a config describes, train, and write the run folder. Returns the summary."""
    from . import (  # noqa: PLC0415
        nn,
        optim,
        presets,  # noqa: PLC0415
    )
    from .config import resolve_device  # noqa: PLC0415
    from .data import DataLoader  # noqa: PLC0415
    from .optim import lr_scheduler  # noqa: PLC0415
    from .random import Generator, manual_seed  # noqa: PLC0415
    from .train import CSVLogger, JSONLogger, ModelCheckpoint, Trainer  # noqa: PLC0415

    dist = _distributed(args)  # None, or chainrule.distributed (mpiexec ... train --distributed)
    dev = resolve_device(cfg.get("device", "cpu"))
    manual_seed(cfg["seed"])
    train_ds, val_ds, test_ds = build_data(cfg)
    model = presets.build_model(cfg["model"])
    d, t = cfg["data"], cfg["train"]
    if dist is None:
        loader = DataLoader(
            train_ds,
            batch_size=d["batch_size"],
            shuffle=d["shuffle"],
            generator=Generator().manual_seed(cfg["seed"]),
            pin_memory=dev.type == "cuda",  # asynchronous copies to the GPU
        )
        val_loader = (
            DataLoader(val_ds, batch_size=max(d["batch_size"], 256)) if val_ds is not None else None
        )
    else:  # the batch size is the global one: each rank takes its share (commands/distributed.py)
        from .commands.distributed import loaders  # noqa: PLC0415

        loader, val_loader = loaders(
            dist, train_ds, val_ds, d["batch_size"], d["shuffle"], cfg["seed"]
        )
    _check_shapes(model, train_ds)
    if dist is not None:
        model = dist.DistributedDataParallel(model)
    loss_fn = getattr(nn, t["loss"])(**t["loss_args"])
    o = dict(cfg["optimizer"])
    opt = getattr(optim, o.pop("name"))(model.parameters(), **o)
    sched, interval = None, "epoch"
    if "scheduler" in cfg:
        s = dict(cfg["scheduler"])
        name, interval = s.pop("name"), s.pop("interval")
        sched = getattr(lr_scheduler, name)(opt, **s)
    callbacks = [
        ModelCheckpoint(run_dir, every_n_steps=t["checkpoint_every"] or None),
        CSVLogger(run_dir / "metrics.csv"),
        JSONLogger(run_dir / "history.jsonl"),
    ]
    from .applications import extra_callbacks  # noqa: PLC0415 - augmentation epochs, text samples

    callbacks += extra_callbacks(cfg, train_ds, run_dir)
    if args is not None:
        for mod in _command_modules():
            if hasattr(mod, "train_callbacks"):
                callbacks += mod.train_callbacks(args, cfg, run_dir)
    if dist is None:
        trainer = Trainer(model, loss_fn, opt, t["metrics"], device=dev)
    else:
        trainer = dist.DistributedTrainer(model, loss_fn, opt, t["metrics"])
    start = time.perf_counter()
    history = trainer.fit(
        loader, val_loader, epochs=t["epochs"], callbacks=callbacks, scheduler=sched,
        scheduler_interval=interval, checkpoint_dir=run_dir, resume=resume, progress=progress,
    )  # fmt: skip
    wall = time.perf_counter() - start
    final = {k: v[-1] for k, v in history.history.items() if v}
    summary: dict = {
        "name": cfg["name"],
        "description": cfg["description"],
        "epochs": len(next(iter(history.history.values()), [])),
        "parameters": sum(p.numel() for p in model.parameters()),
        "wall": wall,
        "final": final,
    }
    if "val_accuracy" in history.history:
        accs = history.history["val_accuracy"]
        summary["best_val_accuracy"] = max(accs)
        summary["best_epoch"] = accs.index(max(accs)) + 1
    if test_ds is not None and test_ds is not val_ds:
        summary["test"] = trainer.evaluate(
            DataLoader(test_ds if dist is None else dist.shard(test_ds), batch_size=512)
        )
    if dist is not None and dist.get_rank() != 0:
        return summary  # rank 0 writes the files
    try:
        from .train import plot_history  # noqa: PLC0415

        plot_history(history, run_dir / "curves.png")
        summary["curves"] = "curves.png"
    except ImportError as e:
        summary["curves"] = None
        print(f"chainrule: no curves.png ({e})", file=sys.stderr)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def _check_shapes(model: Any, ds: Any) -> None:
    """Run one sample through the model so a data/model mismatch is one clear line, not a
    traceback from deep inside the first training step."""
    from .autograd.grad_mode import no_grad  # noqa: PLC0415

    sample = ds[0]
    x = sample[0] if isinstance(sample, (tuple, list)) else sample
    from .creation import tensor  # noqa: PLC0415
    from .tensor import Tensor  # noqa: PLC0415

    xb = (x if isinstance(x, Tensor) else tensor(x))[None]
    was = model.training
    try:
        with no_grad():
            model.eval()
            model(xb)
    except Exception as e:  # noqa: BLE001 - reported as one line
        raise CLIError(
            f"the model does not accept this data: a sample of shape {tuple(xb.shape[1:])} gives: {e}"
        ) from None
    finally:
        model.train(was)


# ----------------------------------------------------------------------------- eval, presets


def cmd_eval(args: argparse.Namespace) -> int:
    from . import config as C  # noqa: PLC0415
    from . import io, nn, presets  # noqa: PLC0415
    from .data import DataLoader  # noqa: PLC0415
    from .train import evaluate  # noqa: PLC0415

    run = Path(args.run_dir)
    cfg_path = run / "config.toml"
    if not cfg_path.exists():
        raise CLIError(f"{run} is not a run folder (no config.toml)")
    cfg = C.validate(C.load_toml(cfg_path))
    dev = C.resolve_device(args.device)
    weights = run / f"{args.weights}.safetensors"
    if not weights.exists():
        raise CLIError(
            f"{weights} does not exist (this run has: {', '.join(p.name for p in run.glob('*.safetensors')) or 'no weights'})"
        )
    model = presets.build_model(cfg["model"])
    model.load_state_dict(io.load(weights))
    train_ds, val_ds, test_ds = build_data(cfg)
    ds = {"test": test_ds or val_ds, "val": val_ds, "train": train_ds}[args.split]
    if ds is None:
        raise CLIError(f"this run's data has no {args.split!r} split")
    t = cfg["train"]
    res = evaluate(
        model,
        getattr(nn, t["loss"])(**t["loss_args"]),
        DataLoader(ds, batch_size=512),
        t["metrics"],
        device=dev,
    )
    print(
        f"{cfg['name']} ({weights.name}) on {args.split} ({len(ds)} samples): "
        + ", ".join(f"{k} {v:.4g}" for k, v in res.items())
    )
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from . import presets  # noqa: PLC0415

    width = max(len(n) for n in presets.PRESETS)
    for name, cfg in presets.PRESETS.items():
        mark = " (default)" if name == presets.DEFAULT else ""
        print(f"{name:<{width}}  {cfg['description']}{mark}")
    return 0


# ----------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chainrule", description="Train neural networks by backpropagation."
    )
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train a preset or a config file (default: the MNIST-1D CNN)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a built-in experiment (see `chainrule presets`)")
    src.add_argument("--config", help="a TOML file describing data, model, optimiser and training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--data",
        metavar="PATH",
        help="sets data.path: the MNIST folder for mnist-cnn, a text file for charlm-*, ...",
    )
    t.add_argument("--out", help="run folder (default: runs/<name>, or runs/<name>-N if taken)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="DIR",
        help="continue the latest run of this preset/config (or the run in DIR)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_argument(t, default=None, what="train", says="the config's device, else cpu")
    t.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    e = sub.add_parser("eval", help="evaluate a run folder's saved weights")
    e.add_argument("run_dir")
    e.add_argument("--weights", choices=["best", "last"], default="best")
    e.add_argument("--split", choices=["test", "val", "train"], default="test")
    add_device_argument(e)
    e.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    pr = sub.add_parser("presets", help="list the built-in experiments")
    pr.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    for mod in _command_modules():
        if hasattr(mod, "add_train_arguments"):
            mod.add_train_arguments(t)
        if hasattr(mod, "NAME"):
            c = sub.add_parser(mod.NAME, help=mod.HELP)
            c.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
            mod.add_arguments(c)
    return p


def _device_name(value: str) -> str:
    from .config import ConfigError, check_device  # noqa: PLC0415

    try:
        return check_device(value, "--device")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).replace("--device = ", "")) from None


def add_device_argument(
    parser: argparse.ArgumentParser,
    default: str | None = "cpu",
    what: str = "run the model",
    says: str = "cpu",
) -> None:
    """``--device {cpu,cuda,auto}`` (``cuda:N`` too) on a command that runs a model."""
    parser.add_argument(
        "--device",
        type=_device_name,
        default=default,
        metavar="{cpu,cuda,auto}",
        help=f"where to {what}: cuda needs CuPy and an NVIDIA GPU (cuda:N picks one), auto is "
        f"cuda when there is one, else cpu (default: {says})",
    )


def _distributed(args: argparse.Namespace | None) -> Any:
    """``chainrule.distributed``, its process group started, for ``train --distributed``
    (an option added by commands/distributed.py); None otherwise."""
    if not getattr(args, "distributed", False):
        return None
    from . import distributed  # noqa: PLC0415

    if not distributed.is_initialized():
        distributed.init_process_group()
    return distributed


def _command_modules() -> list:
    from .commands import modules  # noqa: PLC0415

    return modules()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = args.command or "train"
    if args.command is None:
        args = parser().parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    try:
        commands = {"train": cmd_train, "eval": cmd_eval, "presets": cmd_presets}
        commands.update({m.NAME: m.run for m in _command_modules() if hasattr(m, "NAME")})
        return commands[command](args)
    except KeyboardInterrupt as e:
        print(
            "\nchainrule: interrupted; the training state is saved — run again with --resume to continue",
            file=sys.stderr,
        )
        return _failed(args, e, 1)
    except Exception as e:  # noqa: BLE001 - every problem is one line unless --debug
        if getattr(args, "debug", False) or os.environ.get("CHAINRULE_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"chainrule: error: {msg}", file=sys.stderr)
        return _failed(args, e, 2)


def _failed(args: argparse.Namespace, exc: BaseException, status: int) -> int:
    """Tell the command modules that want to know (``on_error(args, exc, status)``); the status."""
    for mod in _command_modules():
        if hasattr(mod, "on_error"):
            mod.on_error(args, exc, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
