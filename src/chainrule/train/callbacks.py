"""Keras-style callbacks: hooks the trainer calls around training, epochs and batches.

A callback overrides any of ``on_train_begin(logs)``, ``on_train_end(logs)``,
``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch, logs)``,
``on_batch_end(batch, logs)``, ``on_train_interrupted()`` (``epoch`` counts from 0; ``batch`` is the index within the epoch).
``self.trainer`` is the ``Trainer`` (``.model``, ``.optimizer``, ``.history``, ``.epoch``,
``.global_step``, ``.stop_training``), ``self.params`` is ``{"epochs": E, "steps": batches per
epoch or None}``. ``on_batch_end`` gets the running averages of the epoch so far
(``{"loss": ..., "accuracy": ...}``); ``on_epoch_end`` gets the epoch's train and validation
values (``val_`` prefix) and ``lr``. A callback with state that must survive an interruption
implements ``state_dict()`` / ``load_state_dict()``: it is saved in the training checkpoint.

Setting ``self.trainer.stop_training = True`` stops after the current batch (from
``on_batch_end``) or epoch (from ``on_epoch_end``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from typing import Any

from .. import io
from ..tensor import wrap

__all__ = [
    "Callback", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "CSVLogger",
    "JSONLogger", "ProgressBar",
]  # fmt: skip


class Callback:
    """Base class: every hook does nothing."""

    trainer: Any = None
    params: dict = {}  # noqa: RUF012 - replaced per instance by set_params

    def set_trainer(self, trainer: Any) -> None:
        self.trainer = trainer

    def set_params(self, params: dict) -> None:
        self.params = params

    @property
    def model(self) -> Any:
        return self.trainer.model

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_train_interrupted(self) -> None:
        """Called when ``fit`` is stopped by Ctrl-C (``KeyboardInterrupt``), before it re-raises;
        ``on_train_end`` is not called then."""

    def on_train_failed(self) -> None:
        """Called when an error ends ``fit``, before it propagates: release what the callback
        holds (threads, hooks, open files); nothing is saved."""

    def state_dict(self) -> dict:
        """What to keep in a training checkpoint (values ``save_checkpoint`` can store)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":  # as Keras: accuracies go up, everything else down
        return "max" if "acc" in monitor or monitor.endswith("auc") else "min"
    return mode


def _monitored(logs: dict | None, monitor: str | None, who: str) -> tuple[str, float | None]:
    """(name, value) of the monitored quantity; ``monitor=None``: ``val_loss`` if there is one,
    else ``loss``. Warns (once per name) and gives None when it isn't in ``logs``."""
    logs = logs or {}
    name = monitor or ("val_loss" if "val_loss" in logs else "loss")
    if name not in logs:
        key = (who, name)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(
                f"{who}: the monitored quantity {name!r} is not available (have: "
                f"{', '.join(sorted(logs)) or 'nothing'}); skipping",
                RuntimeWarning,
                stacklevel=3,
            )
        return name, None
    return name, float(logs[name])


_warned: set = set()


def _copy_state(model: Any) -> dict:
    return {k: wrap(v.data.copy()) for k, v in model.state_dict().items()}


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode``: ``'min'``, ``'max'`` or ``'auto'`` (max for accuracies). With
    ``restore_best_weights`` the model gets the weights of its best epoch back when training is
    stopped. ``stopped_epoch`` and ``best_epoch`` tell what happened (``stopped_epoch`` is None if
    it never stopped)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        mode: str = "auto",
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ) -> None:
        self.monitor = monitor
        self.patience = int(patience)
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta = abs(float(min_delta))
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict | None = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        _, value = _monitored(logs, self.monitor, "EarlyStopping")
        if value is None:
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = _copy_state(self.model)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {
            "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
            "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped_epoch, self.best_weights = state["stopped_epoch"], state["best_weights"]


class ModelCheckpoint(Callback):
    """Write checkpoints into ``dirpath``:

    - ``best.safetensors``: the model weights (``cr.save``) of the best epoch by ``monitor``
      (default ``val_loss`` when there is validation, else ``loss``), if ``save_best``;
    - ``last.safetensors``: the weights at the end of the latest epoch, if ``save_last``;
    - ``checkpoint.safetensors``: the full training state (model, optimiser, scheduler, epoch,
      step, data loader position, random states, history, callbacks) that
      ``fit(..., resume=True)`` continues from, at the end of every epoch and, with
      ``every_n_steps=N``, every N optimiser steps.

    The training state is written by the trainer once every callback has run for that batch or
    epoch, so it is consistent whatever the order of the callbacks. Every write is atomic. Temp
    files left by a killed run are removed when training begins."""

    def __init__(
        self,
        dirpath: str | os.PathLike,
        monitor: str | None = None,
        mode: str = "auto",
        save_best: bool = True,
        save_last: bool = True,
        save_training_state: bool = True,
        every_n_steps: int | None = None,
    ) -> None:
        self.dirpath = os.fspath(dirpath)
        self.monitor = monitor
        self.mode = mode
        self.save_best, self.save_last = save_best, save_last
        self.save_training_state = save_training_state
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.best: float | None = None
        self.best_epoch: int | None = None

    best_path = property(lambda self: os.path.join(self.dirpath, "best.safetensors"))
    last_path = property(lambda self: os.path.join(self.dirpath, "last.safetensors"))
    checkpoint_path = property(lambda self: os.path.join(self.dirpath, "checkpoint.safetensors"))

    def on_train_begin(self, logs: dict | None = None) -> None:
        os.makedirs(self.dirpath, exist_ok=True)
        for name in os.listdir(self.dirpath):  # temp files of writes killed half-way
            for target in ("best", "last", "checkpoint"):
                if name.startswith(f".{target}.safetensors.") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.dirpath, name))

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        n = self.every_n_steps
        if self.save_training_state and n and self.trainer.global_step % n == 0:
            self.trainer.request_checkpoint(self.checkpoint_path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        meta = {"epoch": str(epoch), "step": str(self.trainer.global_step)}
        if self.save_last:
            io.save(self.model.state_dict(), self.last_path, metadata=meta)
        if self.save_best:
            name, value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if value is not None and not math.isnan(value):
                mode = _resolve_mode(self.mode, name)
                better = self.best is None or (
                    value < self.best if mode == "min" else value > self.best
                )
                if better:
                    self.best, self.best_epoch = value, epoch
                    io.save(
                        self.model.state_dict(),
                        self.best_path,
                        metadata={**meta, name: repr(value)},
                    )
        if self.save_training_state:
            self.trainer.request_checkpoint(self.checkpoint_path)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class LRSchedulerCallback(Callback):
    """Step ``scheduler`` after every epoch (``interval='epoch'``) or every batch
    (``'batch'``, e.g. ``OneCycleLR``). A ``ReduceLROnPlateau`` is given the value of ``monitor``
    (default ``val_loss`` when there is validation, else ``loss``)."""

    def __init__(self, scheduler: Any, interval: str = "epoch", monitor: str | None = None) -> None:
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor
        self.include_state = True  # the trainer keeps the state of the scheduler given to fit

    def _step(self, logs: dict | None) -> None:
        from ..optim.lr_scheduler import ReduceLROnPlateau  # noqa: PLC0415

        if isinstance(self.scheduler, ReduceLROnPlateau):
            _, value = _monitored(logs, self.monitor, "LRSchedulerCallback")
            if value is not None:
                self.scheduler.step(value)
        else:
            self.scheduler.step()

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.interval == "batch":
            self._step(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interval == "epoch":
            self._step(logs)

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()} if self.include_state else {}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def _rows(history: Any) -> tuple[list[str], list[dict]]:
    h = history.history
    keys = list(h)
    n = len(history.epoch)
    return keys, [
        {"epoch": history.epoch[i], **{k: h[k][i] for k in keys if i < len(h[k])}} for i in range(n)
    ]


class CSVLogger(Callback):
    """Write the history to a CSV file (``epoch`` then one column per metric), rewritten
    atomically at every epoch end, so after a resume it holds every epoch exactly once."""

    def __init__(self, path: str | os.PathLike, separator: str = ",") -> None:
        self.path = os.fspath(path)
        self.separator = separator

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        keys, rows = _rows(self.trainer.history)
        sep = self.separator
        lines = [sep.join(["epoch", *keys])]
        lines += [
            sep.join([str(r["epoch"]), *(repr(r.get(k, "")) if k in r else "" for k in keys)])
            for r in rows
        ]
        io._atomic_write(self.path, ("\n".join(lines) + "\n").encode())


class JSONLogger(Callback):
    """Write the history as JSON Lines: one object per epoch (``{"epoch": 0, "loss": ...}``),
    rewritten atomically at every epoch end. Non-finite values are written as null."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        _, rows = _rows(self.trainer.history)

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        text = "".join(json.dumps({k: clean(v) for k, v in r.items()}) + "\n" for r in rows)
        io._atomic_write(self.path, text.encode())


def _fmt(k: str, v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if k == "lr" else f"{v:.4f}"
    return str(v)


class ProgressBar(Callback):
    """Progress on ``file`` (default ``sys.stdout``): when it is a terminal, a tqdm bar per epoch
    with the running loss and accuracy (one bar for the whole run when there are more than 50
    epochs); otherwise (a log file, a pipe, CI) one line per epoch (about 50 lines in all for a
    longer run)::

        Epoch 3/10 - 0.42s - loss: 0.3121 - accuracy: 0.9012 - val_loss: 0.3342 - lr: 0.01

    ``tty`` forces one mode or the other. The bar's running metrics are read every
    ``refresh_every`` batches (and at the end of the epoch): on a GPU each read waits for the
    queued work, so reading them every batch would slow training down."""

    def __init__(self, file: Any = None, tty: bool | None = None, refresh_every: int = 10) -> None:
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {refresh_every}")
        self.file = file
        self.tty = tty
        self.refresh_every = int(refresh_every)
        self._bar = None

    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stdout

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return self.tty
        try:
            return bool(self._out().isatty())
        except (AttributeError, ValueError):
            return False

    MANY = 50  # more epochs than this: one bar over the epochs, or about 50 log lines

    def _many(self) -> bool:
        return (self.params.get("epochs") or 0) > self.MANY

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        if not self._is_tty():
            return
        from tqdm import tqdm  # noqa: PLC0415

        epochs = self.params.get("epochs")
        if self._many():  # many short epochs: one bar for the run
            if self._bar is None:
                self._bar = tqdm(
                    total=epochs, initial=epoch, desc="Training", file=self._out(),
                    unit="epoch", dynamic_ncols=True, leave=True,
                )  # fmt: skip
            return
        self._bar = tqdm(
            total=self.params.get("steps"), initial=self.trainer.batch_in_epoch,
            desc=f"Epoch {epoch + 1}/{epochs}", file=self._out(),
            unit="batch", dynamic_ncols=True, leave=True,
        )  # fmt: skip

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None and not self._many():
            if (batch + 1) % self.refresh_every == 0:  # reading logs waits for the GPU
                post = {k: _fmt(k, v) for k, v in (logs or {}).items()}
                self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        parts = [f"{k}: {_fmt(k, v)}" for k, v in (logs or {}).items()]
        if self._bar is not None:
            self._bar.set_postfix_str(" - ".join(parts), refresh=not self._many())
            if self._many():
                self._bar.update(1)
                return
            self._bar.close()
            self._bar = None
            return
        epochs = self.params.get("epochs") or 1
        every = -(-epochs // self.MANY)
        if epoch and (epoch + 1) % every and epoch + 1 != epochs:
            return  # about MANY lines for a long run
        dt = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        line = " - ".join([f"Epoch {epoch + 1}/{epochs}", f"{dt:.2f}s", *parts])
        print(line, file=self._out(), flush=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    on_train_interrupted = on_train_failed = on_train_end
