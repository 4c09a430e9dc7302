"""The trainer's training state: what a checkpoint holds (``state_dict`` / ``load_state_dict``),
writing and reading it, resuming from it, and Ctrl-C, which saves it at the next consistent point.
``Trainer`` has these methods from ``CheckpointMixin``; what is saved and why a resume is exact is
in ``trainer.py``'s module docstring.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import io
from .. import random as _random
from ..random import get_rng_state, set_rng_state
from .callbacks import ProgressBar
from .devices import reseed_cuda
from .history import History

_FORMAT = "chainrule.train.v1"


class CheckpointMixin:
    """``Trainer``'s checkpoint, resume and Ctrl-C methods (they use the trainer's attributes:
    ``model``, ``optimizer``, ``scheduler``, ``train_loader``, ``callbacks``, ``history``, ...)."""

    # ------------------------------------------------------------------ training state
    def state_dict(self) -> dict:
        """The full training state (what ``fit`` checkpoints)."""
        loader = self.train_loader
        has_state = callable(getattr(loader, "state_dict", None))
        if has_state and self._source is not None:
            loader = self._source  # its state counts the batches handed out, not read ahead
        return {
            "format": _FORMAT,
            "epoch": self.epoch,
            "batch": self.batch_in_epoch,
            "step": self.global_step,
            "stop_training": self.stop_training,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "loader": loader.state_dict() if has_state else None,
            "metrics": {m.name: m.state_dict() for m in self._train_metrics},
            "history": {"epoch": list(self.history.epoch), "history": self.history.history},
            "callbacks": [
                {"type": type(c).__name__, "state": c.state_dict()} for c in self.callbacks
            ],
            "rng": {
                "chainrule": get_rng_state(),
                "numpy": np.random.get_state(legacy=False),
                "python": random.getstate(),
                "cuda_seed": _random.cuda_generator.initial_seed(),  # its state can't be saved
            },
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` gave (the random states last: restoring a loader may draw
        from the global generator)."""
        if state.get("format") != _FORMAT:
            raise ValueError(f"not a chainrule training state (format {state.get('format')!r})")
        self.model.load_state_dict(state["model"])  # copied onto the model's device
        self.optimizer.load_state_dict(state["optimizer"])  # onto each parameter's device
        if state["scheduler"] is not None:
            if self.scheduler is None:
                warnings.warn(
                    "the checkpoint has a scheduler state but fit has no scheduler", stacklevel=3
                )
            else:
                self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch"]
        self.global_step = state["step"]
        self.stop_training = state["stop_training"]
        loader = self.train_loader
        self._skip = 0
        if state["loader"] is not None and callable(getattr(loader, "load_state_dict", None)):
            (self._source if self._source is not None else loader).load_state_dict(state["loader"])
        else:
            self._skip = self.batch_in_epoch  # a plain iterable: skip the batches done
        saved = state["metrics"]
        for m in self._train_metrics:
            if m.name in saved:
                m.load_state_dict(saved[m.name])
        self.history = History()
        self.history.epoch = list(state["history"]["epoch"])
        self.history.history = {k: list(v) for k, v in state["history"]["history"].items()}
        # pair callbacks by type, in order (the 2nd EarlyStopping gets the 2nd saved one's state)
        saved: dict[str, list] = {}
        for s in state["callbacks"]:
            saved.setdefault(s["type"], []).append(s["state"])
        for c in self.callbacks:
            states = saved.get(type(c).__name__)
            if states:
                c.load_state_dict(states.pop(0))
        lost = sorted(t for t, rest in saved.items() if any(rest))
        if lost:
            warnings.warn(
                f"the checkpoint holds the state of callbacks this fit doesn't have ({', '.join(lost)}): ignored",
                stacklevel=3,
            )
        rng = state["rng"]
        set_rng_state(rng["chainrule"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda_seed" in rng:
            reseed_cuda(rng["cuda_seed"], self.global_step)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the training state to ``path`` (one safetensors file, atomically). Tensors are
        stored as host copies, so it resumes on any device; the CUDA generator's state is not in
        it (it can't be saved): a resume re-seeds that generator (module docstring)."""
        io.save_checkpoint(path, self.state_dict())

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        self.load_state_dict(io.load_checkpoint(path))

    def request_checkpoint(self, path: str | os.PathLike) -> None:
        """Ask for the training state to be written to ``path`` once every callback has run for
        the current batch or epoch (what ``ModelCheckpoint`` calls)."""
        path = os.fspath(path)
        if path not in self._requested:
            self._requested.append(path)

    def _write_requested(self) -> None:
        for path in self._requested:
            self.save_checkpoint(path)
        self._requested.clear()

    def _resume(self, resume: bool | str | os.PathLike) -> None:
        explicit = not isinstance(resume, bool)
        path = os.fspath(resume) if explicit else self.checkpoint_path
        if path is None:
            raise ValueError(
                "fit(resume=True) needs checkpoint_dir (or a ModelCheckpoint callback)"
            )
        if not os.path.exists(path):
            if explicit:
                raise FileNotFoundError(f"fit(resume=...): no checkpoint at {path}")
            return  # nothing to resume from: a fresh start
        self.load_checkpoint(path)
        if any(isinstance(c, ProgressBar) for c in self.callbacks):
            print(
                f"Resuming from {path}: epoch {self.epoch + 1}, batch {self.batch_in_epoch}, "
                f"step {self.global_step}",
                file=sys.stderr,
            )

    # ------------------------------------------------------------------ Ctrl-C
    def _check_interrupt(self) -> None:
        if self._interrupt_requested:
            self._interrupt_requested = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def _deferred_sigint(self) -> Iterator[None]:
        """Turn the first Ctrl-C into a request honoured at the next consistent point (main
        thread only, and only when SIGINT has Python's default handler)."""
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self._interrupt_requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one: at once
            with contextlib.suppress(OSError):  # os.write: print could re-enter sys.stderr
                os.write(
                    2, b"\nInterrupted: stopping at the end of this batch (Ctrl-C again: now)\n"
                )

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _interrupted(self) -> None:
        self.history.interrupted = True
        self._requested.clear()
        path = self.checkpoint_path
        if path is None:
            msg = "Training interrupted; no checkpoint_dir, so nothing was saved."
        elif not self._consistent:
            last = (
                f" The last checkpoint, {path}, is the one to resume from."
                if os.path.exists(path)
                else ""
            )
            msg = (
                "Training interrupted inside a step or an epoch's end, where the state can't be "
                f"saved consistently: nothing saved.{last}"
            )
        else:
            self.save_checkpoint(path)
            msg = (
                f"Training interrupted at epoch {self.epoch + 1}, batch {self.batch_in_epoch} "
                f"(step {self.global_step}): checkpoint saved to {path}; fit(..., resume=True) "
                "continues from it."
            )
        for c in self.callbacks:
            c.on_train_interrupted()
        print(msg, file=sys.stderr)
