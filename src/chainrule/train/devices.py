"""Training on a device: what ``Trainer`` / ``fit`` do with ``device=``.

The model is moved to the device in place (the optimiser keeps its parameters), and so is a loss
with tensors of its own (class weights); every batch, inputs and targets, is moved on its way in.
Without ``device`` the model's own device is used (its first parameter's), so a model moved with
``model.cuda()`` trains on the GPU too. On a GPU the training loader is wrapped in a
``DevicePrefetcher`` (``data/device.py``): the next batch is copied on a side stream while the
current step runs (``DataLoader(pin_memory=True)`` makes those copies asynchronous).

No per-step reads. A batch's loss and accuracy stay 0-d device arrays and the running sums are
kept on the device (``metrics.py``); the values are read back (one GPU sync) once per epoch, and
when a callback reads the batch logs handed to ``on_batch_end`` (``BatchLogs`` computes them on
first access): the tty progress bar does every ``refresh_every`` batches. Nothing calls
``.item()`` per step.

Checkpoints across devices. A checkpoint holds host copies of every tensor (``io.py``), so one
written by a CUDA run resumes on the CPU and vice versa: the model's tensors are copied into its
parameters wherever they live, and the optimiser's go to the device of the parameter they belong
to (``Optimizer.load_state_dict`` moves them, as PyTorch's does). The CPU generator's state is
restored exactly. The CUDA generator's (it draws dropout masks for CUDA tensors) cannot be saved (CuPy does not expose it, see ``chainrule.random``): a resumed
run re-seeds it from the run's CUDA seed (saved in the checkpoint) and the step it resumes at,
so a resume is repeatable, but its random draws are not those of an uninterrupted run.
"""

from __future__ import annotations

import collections.abc as cabc
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backend
from .. import random as _random
from ..data.device import DevicePrefetcher
from ..tensor import Tensor
from .metrics import Metric

__all__ = [
    "BatchLogs", "batches_on", "loss_value", "model_device", "place_model",
    "reseed_cuda",
]  # fmt: skip


def loss_value(loss: Any) -> Any:
    """A batch's loss for the metrics: a float, or (on a GPU) a 0-d device array, so that
    reading it does not wait for the GPU."""
    if isinstance(loss, Tensor):
        d = loss.data
        return float(d) if type(d) is np.ndarray else d
    return float(loss)


class BatchLogs(cabc.Mapping):
    """The running metrics handed to ``on_batch_end``: computed (one GPU sync) only when a
    callback reads them, then kept. Read them during the call (``dict(logs)`` keeps a copy):
    later reads would see the metrics of a later batch."""

    __slots__ = ("_metrics", "_values")

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics
        self._values: dict | None = None

    def _get(self) -> dict:
        if self._values is None:
            self._values = {m.name: m.result() for m in self._metrics}
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter([m.name for m in self._metrics])

    def __len__(self) -> int:
        return len(self._metrics)

    def __contains__(self, key: object) -> bool:
        return any(m.name == key for m in self._metrics)

    def copy(self) -> dict:
        return dict(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


def model_device(model: Any) -> backend.device:
    """The device of ``model``'s first parameter (the CPU when it has none)."""
    params = getattr(model, "parameters", None)
    for p in params() if callable(params) else ():
        return p.device
    return backend.CPU


def place_model(model: Any, loss_fn: Any, device: backend.device | None) -> backend.device:
    """Move ``model`` (and ``loss_fn``, when it has tensors of its own) to ``device``; returns
    the device training runs on (``model``'s own when ``device`` is None). Without CUDA, asking
    for it raises the backend's RuntimeError, which says what to install."""
    if device is None:
        return model_device(model)
    if device.type == "cuda":
        backend.cuda_module()
    model.to(device)
    loss_to = getattr(loss_fn, "to", None)  # a loss Module (class weights, pos_weight...)
    if callable(loss_to):
        loss_to(device)
    return device


def reseed_cuda(seed: int, step: int) -> None:
    """Re-seed the CUDA generator for a resumed run (its state can't be saved): from the run's
    CUDA seed and the step, so a resume is repeatable."""
    s = int(np.random.SeedSequence([seed % 2**63, step]).generate_state(2, np.uint64)[0] >> 1)
    _random.cuda_generator.manual_seed(s)


def batches_on(loader: Any, dev: backend.device) -> Any:
    """``loader`` as it yields batches on ``dev``: unchanged on the CPU, else wrapped in a
    ``DevicePrefetcher`` (unless it already delivers there)."""
    if dev.type == "cpu" or loader is None:
        return loader
    if isinstance(loader, DevicePrefetcher) and loader.device == dev:
        return loader
    if getattr(loader, "device", None) == dev and hasattr(loader, "_iter"):
        return loader  # a DataLoader(device=dev)
    return DevicePrefetcher(loader, dev)
