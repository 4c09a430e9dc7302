"""``chainrule reproduce``: re-run classic published experiments and compare with the papers.

    chainrule reproduce rhw1986                  # the 1986 backprop experiments, 50 seeds
    chainrule reproduce rhw1986 --seeds 20 --out runs/r --only sweeps,family
    chainrule reproduce rhw1986 --quick          # smoke test: 3 seeds, short runs (seconds)
    chainrule reproduce mnist1d                  # logistic / MLP / CNN / GRU on MNIST-1D
    chainrule reproduce mnist1d --quick

Each writes ``results.md`` (the tables), one CSV per table and PNG figures to ``--out`` (default
``runs/reproduce-<name>/``) and prints the tables. See ``chainrule.reproduce`` and
``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "reproduce"
HELP = "re-run classic experiments (rhw1986: the 1986 backprop papers; mnist1d) next to the published numbers"

EXPERIMENTS = ("rhw1986", "mnist1d")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", choices=EXPERIMENTS, help="which reproduction to run")
    parser.add_argument("--seeds", type=int, default=None,
                        help="random starts per experiment (rhw1986: default 50, at least 20 for the report; mnist1d: default 3)")  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="output folder (default runs/reproduce-<experiment>)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seeds and short runs: checks the pipeline, not the results",
    )
    parser.add_argument("--only", default=None,
                        help="comma-separated parts to run (rhw1986: published,sweeps,chauvin,order,family,remedies; "
                             "mnist1d: logistic,mlp,cnn,gru)")  # fmt: skip
    parser.add_argument(
        "--no-torch", action="store_true", help="mnist1d: skip the PyTorch comparison"
    )


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError  # noqa: PLC0415

    if args.seeds is not None and args.seeds < 1:
        raise CLIError(f"--seeds must be at least 1, got {args.seeds}")
    out = Path(args.out) if args.out else Path("runs") / f"reproduce-{args.experiment}"
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.experiment == "rhw1986":
        from ..reproduce import rhw1986  # noqa: PLC0415

        if only is not None:
            bad = [s for s in only if s not in rhw1986.SECTIONS]
            if bad:
                raise CLIError(f"--only {','.join(bad)}: choose from {','.join(rhw1986.SECTIONS)}")
        _announce(args, out)
        rhw1986.main(
            out, seeds=args.seeds or 50, quick=args.quick, sections=only or rhw1986.SECTIONS,
            log=lambda s: print(s, flush=True),
        )  # fmt: skip
    else:
        from ..reproduce import mnist1d  # noqa: PLC0415

        if only is not None:
            bad = [s for s in only if s not in mnist1d.MODELS]
            if bad:
                raise CLIError(f"--only {','.join(bad)}: choose from {','.join(mnist1d.MODELS)}")
        _announce(args, out)
        mnist1d.main(
            out, seeds=args.seeds or 3, quick=args.quick, models=only or tuple(mnist1d.MODELS),
            torch=not args.no_torch, log=lambda s: print(s, flush=True),
        )  # fmt: skip
    return 0


def _announce(args: argparse.Namespace, out: Path) -> None:
    print(
        f"chainrule: reproducing {args.experiment}{' (quick)' if args.quick else ''} into {out}/",
        flush=True,
    )
