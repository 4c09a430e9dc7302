"""``chainrule generate RUN_DIR``: text from a trained character language model.

    chainrule generate runs/charlm-gru --prompt "def " --temperature 0.8 --length 200 --seed 1

Loads the run's ``config.toml`` and weights (``best``, the lowest held-out loss, by default), then
draws ``--length`` characters one at a time after ``--prompt``, each from
``softmax(logits / temperature)`` over the 96-character vocabulary: temperature 1 samples the
model's own distribution, lower is more conservative, 0 always takes the likeliest character.
``--seed`` makes the draw repeatable. The text goes to standard output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "generate"
HELP = "sample text from a trained character language model (charlm-gru, charlm-transformer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder of a text model (e.g. runs/charlm-gru)")
    parser.add_argument("--prompt", default="", help="the text to continue (default: a new line)")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="softmax temperature (0: greedy; default 0.8)",
    )
    parser.add_argument(
        "--length", type=int, default=200, help="characters to generate (default 200)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the sampling (default: random)"
    )
    parser.add_argument("--weights", choices=["best", "last"], default="best")
    from ..cli import add_device_argument  # noqa: PLC0415

    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from .. import config as C  # noqa: PLC0415
    from .. import io, presets  # noqa: PLC0415
    from ..applications import sample_text  # noqa: PLC0415
    from ..cli import CLIError  # noqa: PLC0415
    from ..data.datasets.text import Vocabulary  # noqa: PLC0415

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.toml").exists():
        raise CLIError(f"{run_dir} is not a run folder (no config.toml)")
    cfg = C.validate(C.load_toml(run_dir / "config.toml"))
    if cfg["data"]["dataset"] != "text":
        raise CLIError(
            f"{run_dir} is a {cfg['data']['dataset']!r} run; generate needs a text model (charlm-gru, charlm-transformer)"
        )
    if args.temperature < 0:
        raise CLIError(f"--temperature must be >= 0, got {args.temperature}")
    if args.length < 0:
        raise CLIError(f"--length must be >= 0, got {args.length}")
    dev = C.resolve_device(args.device)
    weights = run_dir / f"{args.weights}.safetensors"
    if not weights.exists():
        raise CLIError(
            f"{weights} does not exist (this run has: {', '.join(p.name for p in run_dir.glob('*.safetensors')) or 'no weights'})"
        )
    model = presets.build_model(cfg["model"])
    model.load_state_dict(io.load(weights))
    model.to(dev)
    text = sample_text(
        model, Vocabulary.ascii(), args.prompt, args.length, args.temperature, args.seed,
        context=cfg["data"].get("seq_len", 64),
    )  # fmt: skip
    print(text)
    return 0
