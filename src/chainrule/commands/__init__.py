"""Extra ``chainrule`` subcommands, one module each, found by ``chainrule.cli`` at start-up.

A command module defines:

    NAME = "reproduce"                      # the subcommand
    HELP = "one line for `chainrule --help`"
    def add_arguments(parser): ...          # its argparse options
    def run(args) -> int: ...               # exit status; raise cli.CLIError for a one-line error

and optionally, to extend `chainrule train`:

    def add_train_arguments(parser): ...    # extra `train` options
    def train_callbacks(args, cfg, run_dir) -> list: ...   # extra trainer callbacks
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules() -> list[ModuleType]:
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            out.append(importlib.import_module(f"{__name__}.{info.name}"))
    return out
