"""``chainrule export RUN_DIR --onnx [--out FILE]``: a run folder's trained model as ONNX.

The model is rebuilt from the run's config.toml, loaded with its best (or ``--weights last``)
weights, and traced on a zeros batch shaped like one sample of the run's dataset; dim 0 of the
input and output is a dynamic batch. Writes RUN_DIR/model.onnx unless ``--out`` says otherwise.
Needs ``pip install 'chainrule[onnx]'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "export"
HELP = "export a run folder's trained model (--onnx: an ONNX file with a dynamic batch size)"

EXAMPLE_BATCH = 3  # traced batch size: above 1, so that the batch dim is not ambiguous


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `chainrule train`")
    parser.add_argument(
        "--onnx", action="store_true", help="export to ONNX (the only format so far)"
    )
    parser.add_argument("--out", help="output file (default: RUN_DIR/model.onnx)")
    parser.add_argument("--weights", choices=["best", "last"], default="best")
    parser.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (17 or later; default 17)"
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from .. import config as C  # noqa: PLC0415
    from .. import io, presets  # noqa: PLC0415
    from ..cli import CLIError, build_data  # noqa: PLC0415
    from ..tensor import Tensor  # noqa: PLC0415

    if not args.onnx:
        raise CLIError("choose an export format: --onnx")
    run_dir = Path(args.run_dir)
    cfg_path = run_dir / "config.toml"
    if not cfg_path.exists():
        raise CLIError(f"{run_dir} is not a run folder (no config.toml)")
    cfg = C.validate(C.load_toml(cfg_path))
    weights = run_dir / f"{args.weights}.safetensors"
    if not weights.exists():
        have = ", ".join(p.name for p in run_dir.glob("*.safetensors")) or "no weights"
        raise CLIError(f"{weights} does not exist (this run has: {have})")
    try:
        from .. import onnx as cro  # noqa: PLC0415
        from ..onnx.api import _require_onnx  # noqa: PLC0415

        _require_onnx()
    except ImportError as e:
        raise CLIError(str(e)) from None
    model = presets.build_model(cfg["model"])
    model.load_state_dict(io.load(weights))
    train_ds, _, _ = build_data(cfg)
    sample: Any = train_ds[0]
    x = sample[0] if isinstance(sample, (tuple, list)) else sample
    arr = np.asarray(x.data if isinstance(x, Tensor) else x)
    example = np.zeros((EXAMPLE_BATCH, *arr.shape), arr.dtype)
    out = Path(args.out) if args.out else run_dir / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    cro.export(model, example, out, opset=args.opset)
    shape = ", ".join(["batch", *map(str, arr.shape)])
    print(
        f"chainrule: wrote {out} ({cfg['name']}, {weights.name}; input 'input' ({shape}) "
        f"{arr.dtype}, output 'output'; opset {args.opset})"
    )
    return 0
