"""``DistributedTrainer``: ``Trainer`` run by every rank of a data-parallel job (see the
package docstring)."""

from __future__ import annotations

import contextlib
import copy
import os
from typing import Any

import numpy as np

from ..train.callbacks import CSVLogger, JSONLogger, ModelCheckpoint, ProgressBar
from ..train.metrics import Metric, batch_size_of
from ..train.trainer import Trainer, _to_float
from .collectives import all_reduce
from .process_group import _require, get_rank, report_failure
from .sampler import DistributedSampler


def _quiet_callbacks(callbacks: list) -> list:
    """Rank > 0's callbacks: nothing that prints or writes files; a ModelCheckpoint only keeps
    the training state's path (``DistributedTrainer.save_checkpoint`` writes on rank 0 only)."""
    out = []
    for c in callbacks:
        if isinstance(c, (ProgressBar, CSVLogger, JSONLogger)):
            continue
        if isinstance(c, ModelCheckpoint):
            c = copy.copy(c)
            c.save_best = c.save_last = False
        out.append(c)
    return out


class DistributedTrainer(Trainer):
    """``Trainer`` for a ``DistributedDataParallel`` model, run by every rank (module docstring).

    The train loader's sampler should be a ``DistributedSampler`` (its ``set_epoch`` is called at
    each epoch, and the checkpoint records the global data position, so ``resume`` works with
    another number of processes); give every rank its shard of the validation data
    (``shard(val_ds)``) — or the whole of it, which is correct but does the work on every rank.
    Metrics are summed over ranks from ``Metric.compute`` per batch. Checkpoints are written by
    rank 0 and read by every rank: the folder must be on a file system all ranks see."""

    _agreed_interrupt = False

    # ------------------------------------------------------------------ metrics over ranks
    def _update(self, metrics: list[Metric], loss: Any, output: Any, target: Any) -> None:
        lv = _to_float(loss)
        n = batch_size_of(target, output)
        k = len(metrics)
        v = np.empty(k + 2)
        for i, m in enumerate(metrics):
            v[i] = float(m.compute(output, target, lv)) * n
        v[k] = n
        v[k + 1] = 1.0 if self._interrupt_requested else 0.0  # a Ctrl-C on any rank stops all
        all_reduce(v)
        for i, m in enumerate(metrics):
            m.total += float(v[i])
            m.count += int(v[k])
        if v[k + 1] > 0:
            self._agreed_interrupt = True

    def _check_interrupt(self) -> None:
        if self._agreed_interrupt:
            self._agreed_interrupt = False
            self._interrupt_requested = False
            _require().agreed_stop = True
            raise KeyboardInterrupt

    def evaluate(self, loader: Any, prefix: str = "") -> dict[str, float]:
        """The metrics over every rank's ``loader`` together (each sample counted where it is
        evaluated); the model's train/eval mode is restored afterwards."""
        from ..autograd.grad_mode import no_grad  # noqa: PLC0415

        was_training = getattr(self.model, "training", True)
        self.model.eval()
        metrics = self._make_metrics()
        try:
            with no_grad():
                for batch in loader:
                    loss, output, target = self.eval_step(batch)
                    Trainer._update(metrics, loss, output, target)
        finally:
            self.model.train(was_training)
        v = np.array([m.total for m in metrics] + [m.count for m in metrics], np.float64)
        all_reduce(v)
        k = len(metrics)
        for i, m in enumerate(metrics):
            m.total, m.count = float(v[i]), int(v[k + i])
        return {prefix + m.name: m.result() for m in metrics}

    # ------------------------------------------------------------------ data position
    def _sampler(self) -> DistributedSampler | None:
        s = getattr(self.train_loader, "sampler", None)
        return s if isinstance(s, DistributedSampler) else None

    def _run_epoch(self) -> dict:
        s = self._sampler()
        if s is not None:
            s.set_epoch(self.epoch)
        return super()._run_epoch()

    def state_dict(self) -> dict:
        sd = super().state_dict()
        s, ld = self._sampler(), sd.get("loader")
        bs = getattr(getattr(self.train_loader, "batch_sampler", None), "batch_size", None)
        if s is not None and isinstance(ld, dict) and bs:
            pos = s.position(ld.get("batches_done", 0) * bs, epoch=self.epoch)
            sd["loader"] = {**ld, "distributed": {"epoch": self.epoch, "position": pos}}
        return sd

    def load_state_dict(self, state: dict) -> None:
        s, ld = self._sampler(), state.get("loader")
        if s is not None and isinstance(ld, dict) and "distributed" in ld:
            d = ld["distributed"]
            s.resume_at(d["epoch"], d["position"])
            state = {**state, "loader": {"epoch_rng": None, "batches_done": 0}}
        super().load_state_dict(state)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the training state (the same on every rank)."""
        if get_rank() == 0:
            super().save_checkpoint(path)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_loader: Any,
        val_loader: Any = None,
        epochs: int = 1,
        callbacks: Any = (),
        **kwargs: Any,
    ) -> Any:
        """``Trainer.fit`` on every rank (same arguments): see the class docstring."""
        g = _require("DistributedTrainer.fit")
        callbacks = list(callbacks)
        if g.rank != 0:
            callbacks = _quiet_callbacks(callbacks)
            kwargs["progress"] = False
            cd = kwargs.get("checkpoint_dir")
            if cd is not None and not any(
                isinstance(c, ModelCheckpoint)
                and os.path.realpath(c.dirpath) == os.path.realpath(cd)
                for c in callbacks
            ):
                callbacks.append(ModelCheckpoint(cd, save_best=False, save_last=False))
        g.agreed_stop = False
        try:
            return super().fit(train_loader, val_loader, epochs, callbacks, **kwargs)
        except BaseException as e:
            report_failure(e)  # not for a Ctrl-C that every rank agreed on
            raise

    def _interrupted(self) -> None:
        if get_rank() == 0:
            super()._interrupted()
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            super()._interrupted()
