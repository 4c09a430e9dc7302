"""``fit`` and ``evaluate``: a training loop with metrics, validation, callbacks, checkpoints and
exact resume.

    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters()), train_loader,
                  val_loader, epochs=10, checkpoint_dir="runs/a")
    history.history["val_accuracy"]      # one value per epoch, as Keras

Customising the step. ``fit`` is ``Trainer(model, loss_fn, optimizer, metrics).fit(...)``; to
change what one step does, subclass ``Trainer`` and override ``train_step(batch)`` (and
``eval_step(batch)`` for validation), each returning ``(loss, output, target)``::

    class ClippedTrainer(Trainer):
        def train_step(self, batch):
            x, y = batch
            self.optimizer.zero_grad()
            out = self.model(x)
            loss = self.loss_fn(out, y)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            return loss, out, y

    ClippedTrainer(model, loss_fn, optimizer).fit(train_loader, epochs=5)

A batch is ``(inputs..., target)`` (a tuple or list, as ``TensorDataset`` gives): the model is
called as ``model(*inputs)``; override ``unpack(batch)`` for other layouts.

Checkpoints and exact resume. With ``checkpoint_dir`` (or a ``ModelCheckpoint`` callback) the
full training state is written at the end of every epoch (and every N steps if asked): model,
optimiser, scheduler, epoch, step, the data loader's position (``loader.state_dict()``), the
running metric sums of the current epoch, the history, the callbacks' state and the random
states (chainrule's global generator, NumPy's legacy global generator and Python's ``random``).
``fit(..., resume=True)`` loads it and continues bitwise-identically to a run that was never
interrupted: same batches in the same order, same dropout masks, same weights, same history.
(Condition: the data order comes from the loader's own generator, as ``DataLoader`` does, and
nothing else draws random numbers behind the trainer's back, e.g. a shuffled validation loader
without ``generator=``.) A loader without ``state_dict`` (a list of batches) is resumed by
skipping the batches already done, which is exact when its order is fixed.

Devices. ``Trainer(..., device='cuda')`` (or ``fit(..., device=...)``) moves the model there
and every batch on its way in, prefetched onto the GPU one batch ahead; metrics accumulate on
the device and are read once per epoch (or when a callback reads the batch logs); a checkpoint
holds host copies and resumes on either device. Without ``device``: the model's own device.
``train/devices.py`` says more, including what resuming does to the CUDA generator.

Ctrl-C. During ``fit`` the first Ctrl-C asks the loop to stop at the next consistent point (the
end of the current batch): the training checkpoint is saved there, mid-epoch, with the loader's
``batches_done``, a line on stderr says where, and ``KeyboardInterrupt`` is re-raised, so a
script stops rather than carrying on as if training had finished (``trainer.history`` holds the
epochs done, with ``interrupted = True``). A second Ctrl-C interrupts at once, without saving.
A ``KeyboardInterrupt`` raised by code between batches (e.g. a callback's ``on_batch_end``) is
treated the same way; one raised inside a training step or the end-of-epoch work (validation,
callbacks) cannot be saved consistently, so the last checkpoint written stays the one to resume
from.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np

from .. import backend
from ..autograd.grad_mode import no_grad
from ..random import manual_seed
from ..tensor import Tensor
from .callbacks import Callback, LRSchedulerCallback, ModelCheckpoint, ProgressBar
from .checkpointing import CheckpointMixin
from .devices import BatchLogs, batches_on, loss_value, place_model
from .history import History
from .leaks import default_callbacks
from .metrics import Metric, batch_size_of, get_metric

__all__ = ["History", "Trainer", "fit", "evaluate"]


def _to_float(x: Any) -> float:
    if isinstance(x, Tensor):
        return float(x.data)
    return float(x)


def _seed_all(seed: int) -> None:
    manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Trainer(CheckpointMixin):
    """Holds the model, loss, optimiser and metrics; ``fit`` trains, ``evaluate`` measures.
    Subclass and override ``train_step`` / ``eval_step`` / ``unpack`` to customise (module
    docstring). State during ``fit``: ``epoch`` (epochs completed), ``batch_in_epoch``,
    ``global_step`` (optimiser steps), ``history``, ``stop_training``.

    ``device``: where to train (``'cpu'``, ``'cuda'``, ``'cuda:1'``); the model is moved there
    when ``fit`` or ``evaluate`` starts and every batch on its way in. None: the model's device.
    The training state, checkpoints, resume and Ctrl-C are in ``checkpointing.py``.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        optimizer: Any = None,
        metrics: Iterable[Any] = ("loss", "accuracy"),
        device: Any = None,
    ) -> None:
        self.model = model
        self.device: backend.device | None = (
            backend.as_device(device) if device is not None else None
        )
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.metrics = tuple(metrics)
        self.history = History()
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.stop_training = False
        self.scheduler: Any = None
        self.train_loader: Any = None
        self.val_loader: Any = None
        self.callbacks: list[Callback] = []
        self.checkpoint_path: str | None = None
        self._train_metrics: list[Metric] = []
        self._requested: list[str] = []
        self._consistent = True
        self._interrupt_requested = False
        self._skip = 0
        self._source: Any = None  # what the training batches are read from (a DevicePrefetcher)

    # ------------------------------------------------------------------ the step (override these)
    def unpack(self, batch: Any) -> tuple[tuple, Any]:
        """``(inputs, target)`` of a batch ``(x..., y)``; the model is called as ``model(*inputs)``."""
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return tuple(batch[:-1]), batch[-1]
        raise TypeError(
            f"Trainer.unpack: expected a batch (inputs..., target), got {type(batch).__name__}; "
            "override Trainer.unpack (or train_step) for other batch layouts"
        )

    def train_step(self, batch: Any) -> tuple[Any, Any, Any]:
        """One optimisation step on ``batch``; returns ``(loss, output, target)`` for the metrics
        (``loss``: a 0-d Tensor or a float, the batch mean)."""
        inputs, target = self.unpack(batch)
        self.optimizer.zero_grad()
        output = self.model(*inputs)
        loss = self.loss_fn(output, target)
        loss.backward()
        self.optimizer.step()
        return loss, output, target

    def eval_step(self, batch: Any) -> tuple[Any, Any, Any]:
        """``(loss, output, target)`` of a batch, without updating anything (run under
        ``no_grad`` with the model in eval mode)."""
        inputs, target = self.unpack(batch)
        output = self.model(*inputs)
        return self.loss_fn(output, target), output, target

    # ------------------------------------------------------------------ metrics
    def _make_metrics(self) -> list[Metric]:
        threshold = 0.0 if type(self.loss_fn).__name__ == "BCEWithLogitsLoss" else 0.5
        specs = list(self.metrics)
        if not any(
            (s == "loss") if isinstance(s, str) else getattr(s, "name", None) == "loss"
            for s in specs
        ):
            specs.insert(0, "loss")
        import copy  # noqa: PLC0415

        out = [
            copy.deepcopy(s) if isinstance(s, Metric) else get_metric(s, threshold) for s in specs
        ]
        for m in out:
            m.reset()
        names = [m.name for m in out]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, got {names}")
        return out

    @staticmethod
    def _update(metrics: list[Metric], loss: Any, output: Any, target: Any) -> None:
        lv = loss_value(loss)
        n = batch_size_of(target, output)
        for m in metrics:
            m.update_batch(output, target, lv, n)

    # ------------------------------------------------------------------ devices
    def _place_model(self) -> backend.device:
        """Move the model (and loss) to ``self.device`` if set; the device training runs on."""
        return place_model(self.model, self.loss_fn, self.device)

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, loader: Iterable[Any], prefix: str = "") -> dict[str, float]:
        """The metrics over ``loader`` (model in eval mode, no gradients), as
        ``{prefix + name: value}``; the model's train/eval mode is restored afterwards."""
        was_training = getattr(self.model, "training", True)
        loader = batches_on(loader, self._place_model())
        self.model.eval()
        metrics = self._make_metrics()
        try:
            with no_grad():
                for batch in loader:
                    loss, output, target = self.eval_step(batch)
                    self._update(metrics, loss, output, target)
        finally:
            self.model.train(was_training)
        return {prefix + m.name: m.result() for m in metrics}

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        epochs: int = 1,
        callbacks: Iterable[Callback] = (),
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool | str | os.PathLike = False,
        seed: int | None = None,
        progress: bool = True,
        device: Any = None,
    ) -> History:
        """Train for ``epochs`` epochs (in total, counting those of a resumed run); see ``fit``.
        ``device`` replaces the trainer's."""
        if self.optimizer is None:
            raise ValueError("Trainer.fit needs an optimizer")
        if device is not None:
            self.device = backend.as_device(device)
        dev = self._place_model()
        if seed is not None:
            _seed_all(seed)
        cbs: list[Callback] = []
        if scheduler is not None:
            sc = LRSchedulerCallback(scheduler, scheduler_interval)
            sc.include_state = False  # saved as the checkpoint's "scheduler"
            cbs.append(sc)
        cbs += list(callbacks)
        own: ModelCheckpoint | None = None
        if checkpoint_dir is not None:
            where = os.path.realpath(checkpoint_dir)
            same = [c for c in cbs if isinstance(c, ModelCheckpoint) and c.save_training_state]
            same = [c for c in same if os.path.realpath(c.dirpath) == where]
            if same:
                own = same[0]
            else:
                own = ModelCheckpoint(checkpoint_dir)
                cbs.append(own)
        if progress and not any(isinstance(c, ProgressBar) for c in cbs):
            cbs.append(ProgressBar())
        cbs += default_callbacks(cbs)  # the leak guard (train/leaks.py)
        ckpt = [c for c in cbs if isinstance(c, ModelCheckpoint) and c.save_training_state]
        if own is None and ckpt:
            own = ckpt[0]
        self.checkpoint_path = own.checkpoint_path if own is not None else None
        self.callbacks, self.scheduler = cbs, scheduler
        self.train_loader, self.val_loader = train_loader, val_loader
        self._source = batches_on(train_loader, dev)
        self.history = History()
        self.epoch = self.batch_in_epoch = self.global_step = 0
        self.stop_training = False
        self._requested, self._skip, self._interrupt_requested = [], 0, False
        self._train_metrics = self._make_metrics()
        try:
            steps = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            steps = None
        for c in cbs:
            c.set_trainer(self)
            c.set_params({"epochs": epochs, "steps": steps})
        for c in cbs:
            c.on_train_begin()
        if resume:
            self._resume(resume)
        logs: dict = {}
        with self._deferred_sigint():
            try:
                while self.epoch < epochs and not self.stop_training:
                    logs = self._run_epoch()
            except KeyboardInterrupt:
                self._interrupted()
                raise
            except BaseException:
                for c in cbs:
                    c.on_train_failed()
                raise
        for c in cbs:
            c.on_train_end(logs)
        return self.history

    def _run_epoch(self) -> dict:
        e = self.epoch
        self.model.train()
        if self.batch_in_epoch == 0:
            for m in self._train_metrics:
                m.reset()
        for c in self.callbacks:
            c.on_epoch_begin(e)
        it: Iterator[Any] = iter(self._source)
        if self._skip:
            for _ in islice(it, self._skip):
                pass
            self._skip = 0
        try:
            while True:
                self._consistent = True
                self._check_interrupt()
                if self.stop_training:
                    break
                self._consistent = False
                try:
                    batch = next(it)
                except StopIteration:
                    break
                b = self.batch_in_epoch
                for c in self.callbacks:
                    c.on_batch_begin(b)
                loss, output, target = self.train_step(batch)
                self._update(self._train_metrics, loss, output, target)
                self.batch_in_epoch += 1
                self.global_step += 1
                self._consistent = True
                logs = BatchLogs(self._train_metrics)  # read (a GPU sync) only if looked at
                for c in self.callbacks:
                    c.on_batch_end(b, logs)
                self._write_requested()
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()
        # the end of the epoch: validation, logs, callbacks; consistent again once it is counted
        self._consistent = False
        logs = {m.name: m.result() for m in self._train_metrics}
        if self.val_loader is not None:
            logs.update(self.evaluate(self.val_loader, prefix="val_"))
        logs["lr"] = _to_float(self.optimizer.param_groups[0]["lr"])
        self.history.append(e, logs)
        for c in self.callbacks:
            c.on_epoch_end(e, logs)
        self.epoch += 1
        self.batch_in_epoch = 0
        for m in self._train_metrics:
            m.reset()
        self._consistent = True
        self._write_requested()
        self._check_interrupt()
        return logs


def fit(
    model: Any,
    loss_fn: Any,
    optimizer: Any,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    epochs: int = 1,
    metrics: Iterable[Any] = ("loss", "accuracy"),
    callbacks: Iterable[Callback] = (),
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    seed: int | None = None,
    progress: bool = True,
    device: Any = None,
) -> History:
    """Train ``model`` on ``train_loader`` for ``epochs`` epochs; returns the ``History``.

    Args:
        model, loss_fn, optimizer: ``loss_fn(model(*inputs), target)`` is minimised.
        train_loader, val_loader: iterables of ``(inputs..., target)`` batches (``DataLoader``);
            validation runs after every epoch, its metrics prefixed ``val_``.
        epochs: the total number of epochs (a resumed run continues up to it).
        metrics: names (``"loss"``, ``"accuracy"``, ``"top5_accuracy"``), ``Metric`` objects or
            functions ``fn(output, target) -> float``; ``loss`` is always logged. Each is
            averaged over the epoch weighted by batch size. ``lr`` (the first group's learning
            rate during the epoch) is logged too.
        callbacks: ``Callback`` objects (``EarlyStopping``, ``ModelCheckpoint``, ``CSVLogger``...).
        scheduler: stepped after every epoch (``scheduler_interval="epoch"``) or optimiser step
            (``"batch"``); ``ReduceLROnPlateau`` is given ``val_loss`` (else ``loss``).
        checkpoint_dir: adds ``ModelCheckpoint(checkpoint_dir)`` (unless ``callbacks`` has one
            for that directory): best and last weights, and the training state for resuming,
            every epoch. Without it, the first ``ModelCheckpoint`` in ``callbacks`` holds the
            training state that ``resume`` and Ctrl-C use.
        resume: True: continue from ``checkpoint_dir``'s training checkpoint if there is one
            (else start afresh); a path: continue from that file.
        seed: seeds chainrule's, NumPy's and Python's global generators first (the model's
            initial weights are already drawn: seed before building it to fix those too).
        progress: add a ``ProgressBar`` (tqdm on a terminal, a line per epoch otherwise).
        device: train there (``'cuda'``): the model is moved, batches are moved on the way in
            (prefetched on a side stream); None: the model's device (module docstring).

    Ctrl-C saves the training state and re-raises ``KeyboardInterrupt`` (module docstring).
    """
    return Trainer(model, loss_fn, optimizer, metrics, device=device).fit(
        train_loader, val_loader, epochs=epochs, callbacks=callbacks, scheduler=scheduler,
        scheduler_interval=scheduler_interval, checkpoint_dir=checkpoint_dir, resume=resume,
        seed=seed, progress=progress,
    )  # fmt: skip


def evaluate(
    model: Any,
    loss_fn: Any,
    loader: Iterable[Any],
    metrics: Iterable[Any] = ("loss", "accuracy"),
    device: Any = None,
) -> dict[str, float]:
    """The metrics of ``model`` over ``loader`` (eval mode, no gradients): ``{name: value}``,
    each averaged over samples. ``device``: move the model and the batches there first (None:
    the model's device)."""
    return Trainer(model, loss_fn, None, metrics, device=device).evaluate(loader)
