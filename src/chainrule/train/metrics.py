"""Metrics for training loops: functions on one batch, and running averages over an epoch.

The functions take model outputs and targets (Tensors or arrays) and return a Python float:

- ``accuracy(output, target)``: the fraction of samples whose predicted class is the target.
  ``output`` (N, C, ...) with integer ``target`` (N, ...): argmax over dim 1 (the class dim, as
  ``CrossEntropyLoss``). ``target`` of ``output``'s shape with C > 1 (one-hot or probabilities):
  argmax of both. A single output per sample ((N,) or (N, 1)): binary, predicted positive when
  ``output > threshold`` (0.5 for probabilities; use 0.0 for logits, as ``BCEWithLogitsLoss``
  takes; ``fit`` picks 0.0 by itself for that loss).
- ``top_k_accuracy(output, target, k=5)``: the target is among the k highest scores.

The ``Metric`` classes accumulate an epoch: each batch's value is weighted by its batch size, so
the epoch's ``accuracy`` is exactly (correct samples) / (samples) and its ``loss`` the mean loss
per sample (for losses with ``reduction='mean'``), whatever the size of the last batch.

On a GPU a batch's value stays a 0-d device array and the running sum is kept on the device (in
float64, as the CPU's Python floats), so training does not wait for the GPU after every batch:
only ``result()`` and ``state_dict()`` read the sum back (one sync, when something logs it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = [
    "accuracy", "top_k_accuracy", "Mean", "Metric", "Loss", "Accuracy", "TopKAccuracy",
    "FunctionMetric", "BitsPerChar", "get_metric",
]  # fmt: skip


def _np(x: Any) -> Any:
    """The array of ``x`` (a Tensor's, on its device; anything else as a NumPy array)."""
    if isinstance(x, Tensor):
        return x.data
    return x if backend.is_array(x) else np.asarray(x)


def _batch_mean(c: Any) -> Any:
    """The mean of a boolean array: a float, or a 0-d device array left on the GPU."""
    if not c.size:
        return 0.0
    m = c.mean()
    return m if backend.is_device_array(m) else float(m)


def _correct(output: Any, target: Any, threshold: float = 0.5) -> np.ndarray:
    """A boolean array: which samples are classified correctly."""
    out, tgt = _np(output), _np(target)
    if out.ndim == tgt.ndim + 1:  # scores (N, C, ...) vs class indices (N, ...)
        if out.shape[1] == 1:  # a single score per sample: binary
            return (out[:, 0] > threshold) == (tgt > 0.5)
        return out.argmax(axis=1) == tgt
    if out.shape != tgt.shape:
        raise ValueError(
            f"accuracy: output of shape {out.shape} and target of shape {tgt.shape} don't "
            "match: expected scores (N, C, ...) with class indices (N, ...), or two arrays of "
            "the same shape"
        )
    if out.ndim >= 2 and out.shape[1] > 1:  # one-hot / probability targets
        return out.argmax(axis=1) == tgt.argmax(axis=1)
    return (out > threshold) == (tgt > 0.5)  # binary


def accuracy(output: Any, target: Any, threshold: float = 0.5) -> float:
    """Fraction of correctly classified samples in a batch (see the module docstring)."""
    return float(_batch_mean(_correct(output, target, threshold)))


def top_k_accuracy(output: Any, target: Any, k: int = 5) -> float:
    """Fraction of samples whose target class is among the ``k`` highest of ``output`` (N, C)
    (ties broken towards the lower class index); ``target``: class indices (N,)."""
    return float(_top_k(output, target, k))


def _top_k(output: Any, target: Any, k: int) -> Any:
    out, tgt = _np(output), _np(target)
    if out.ndim != 2 or tgt.shape != out.shape[:1]:
        raise ValueError(
            f"top_k_accuracy: expected output (N, C) and target (N,), got {out.shape} and {tgt.shape}"
        )
    if not 1 <= k:
        raise ValueError(f"top_k_accuracy: k must be >= 1, got {k}")
    if not len(tgt):
        return 0.0
    k = min(k, out.shape[1])
    xp = backend.array_module(out)
    # rank of the target = number of classes scoring strictly higher, plus ties at lower index
    t = out[xp.arange(len(tgt)), tgt][:, None]
    cols = xp.arange(out.shape[1])[None, :]
    rank = (out > t).sum(1) + ((out == t) & (cols < tgt[:, None])).sum(1)
    return _batch_mean(rank < k)


def batch_size_of(target: Any, output: Any = None) -> int:
    """The number of samples in a batch: the first dimension of ``target`` (or ``output``)."""
    for x in (target, output):
        shape = getattr(x, "shape", None)
        if shape:
            return int(shape[0])
        if isinstance(x, (list, tuple)) and x:
            return batch_size_of(x[0])
    return 1


class Mean:
    """A running mean of values weighted by counts: ``update(value, n)`` adds ``value`` (the mean
    over ``n`` samples); ``result()`` is ``sum(value * n) / sum(n)`` (NaN before any update).
    A ``value`` that is a 0-d device array is summed on the device (module docstring)."""

    def __init__(self) -> None:
        self.total: Any = 0.0  # a float, or a 0-d float64 device array
        self.count = 0

    def update(self, value: Any, n: int = 1) -> None:
        if type(value) is float or not backend.is_device_array(value):
            self.total += float(value) * n
        else:  # stays on the GPU: read back by result()
            self.total = self.total + value.astype(np.float64) * n
        self.count += n

    def result(self) -> float:
        return float(self.total) / self.count if self.count else float("nan")

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def state_dict(self) -> dict:
        return {"total": float(self.total), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.count = state["total"], state["count"]


class Metric(Mean):
    """A named running average over an epoch, fed one batch at a time.

    Subclasses define ``compute(output, target, loss) -> float`` (the batch's mean); the epoch's
    value is the batch-size-weighted mean of those. ``name`` is the key in logs and history."""

    name = "metric"

    def compute(self, output: Any, target: Any, loss: float) -> float:
        raise NotImplementedError

    def update_batch(self, output: Any, target: Any, loss: float, n: int) -> None:
        self.update(self.compute(output, target, loss), n)


class Loss(Metric):
    """The training (or validation) loss, averaged per sample over the epoch."""

    name = "loss"

    def compute(self, output: Any, target: Any, loss: float) -> float:
        return loss


class BitsPerChar(Metric):
    """The loss in bits: ``loss / ln 2``, for a cross-entropy in nats per predicted symbol (a
    language model's bits per character), named ``bits_per_char``."""

    name = "bits_per_char"

    def compute(self, output: Any, target: Any, loss: float) -> float:
        return loss / math.log(2)


class Accuracy(Metric):
    """Classification accuracy; ``threshold`` for binary outputs (module docstring)."""

    name = "accuracy"

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def compute(self, output: Any, target: Any, loss: float) -> Any:
        return _batch_mean(_correct(output, target, self.threshold))


class TopKAccuracy(Metric):
    """Top-k accuracy, named ``top{k}_accuracy``."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.k = k
        self.name = f"top{k}_accuracy"

    def compute(self, output: Any, target: Any, loss: float) -> Any:
        return _top_k(output, target, self.k)


class FunctionMetric(Metric):
    """Any ``fn(output, target) -> float`` (a batch mean), named ``name`` or ``fn.__name__``."""

    def __init__(self, fn: Callable[[Any, Any], Any], name: str | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")

    def compute(self, output: Any, target: Any, loss: float) -> Any:
        v = self.fn(output, target)
        if isinstance(v, Tensor):
            v = v.data
        return v if backend.is_device_array(v) else float(v)


def get_metric(spec: Any, threshold: float = 0.5) -> Metric:
    """A fresh ``Metric`` from a name (``"loss"``, ``"accuracy"``/``"acc"``, ``"top5_accuracy"``,
    ``"top_k_accuracy"`` (k=5)), a ``Metric`` instance (used as is) or a callable."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        s = spec.lower()
        if s == "loss":
            return Loss()
        if s in ("accuracy", "acc"):
            return Accuracy(threshold)
        if s in ("bits_per_char", "bpc"):
            return BitsPerChar()
        if s == "top_k_accuracy":
            return TopKAccuracy(5)
        if s.startswith("top") and s.endswith("_accuracy") and s[3:-9].isdigit():
            return TopKAccuracy(int(s[3:-9]))
        raise ValueError(
            f"unknown metric {spec!r}: use 'loss', 'accuracy', 'topK_accuracy' (e.g. "
            "'top5_accuracy'), 'bits_per_char', a Metric or a function fn(output, target) -> float"
        )
    if callable(spec):
        return FunctionMetric(spec)
    raise TypeError(f"a metric is a name, a Metric or a function, not a {type(spec).__name__}")
