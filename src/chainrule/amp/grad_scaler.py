"""Gradient scaling for float16 training (PyTorch's ``torch.amp.GradScaler``).

Small float16 gradients underflow to zero. ``scaler.scale(loss).backward()`` multiplies the loss
(and so every gradient) by a large factor; ``scaler.step(optimizer)`` divides the gradients by it
again and runs the step only if none is inf/NaN; ``scaler.update()`` halves the factor after a
skipped step and doubles it after ``growth_interval`` good steps in a row::

    scaler = cr.amp.GradScaler('cuda')
    for x, y in loader:
        opt.zero_grad()
        with cr.autocast('cuda'):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

The scale and the inf check stay on the device (no GPU sync per gradient); ``step`` reads one
number to decide whether to step, as PyTorch's does.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from enum import Enum
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor, wrap


class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _fresh_state() -> dict:
    return {"stage": OptState.READY, "found_inf_per_device": {}}


class GradScaler:
    """Dynamic loss scaling. ``device``: where the scale lives ('cuda' or 'cpu'); ``init_scale``
    (2**16), ``growth_factor`` (2.0), ``backoff_factor`` (0.5), ``growth_interval`` (2000) and
    ``enabled`` as in PyTorch. A disabled scaler passes everything through unchanged."""

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        self._device = str(device)
        self._enabled = bool(enabled)
        if self._device == "cuda" and self._enabled and not backend.cuda_available():
            warnings.warn(
                "GradScaler is enabled, but CUDA is not available.  Disabling.", stacklevel=2
            )
            self._enabled = False
        if self._enabled:
            if growth_factor <= 1.0:
                raise AssertionError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise AssertionError("The backoff factor must be < 1.0.")
            self._init_scale = float(init_scale)
            self._scale: Tensor | None = None  # created by the first scale(), on its device
            self._growth_factor = float(growth_factor)
            self._backoff_factor = float(backoff_factor)
            self._growth_interval = int(growth_interval)
            self._init_growth_tracker = 0
            self._growth_tracker: Any = None  # 0-d int32 array next to the scale
            self._per_optimizer_states: dict = defaultdict(_fresh_state)

    # ------------------------------------------------------------------ scaling
    def _lazy_init(self, like: Tensor) -> None:
        xp = backend.array_module(like.data)
        self._scale = wrap(xp.full((), self._init_scale, dtype=np.float32))
        self._growth_tracker = xp.full((), self._init_growth_tracker, dtype=np.int32)

    def _check_scale(self, funcname: str) -> tuple[Tensor, Any]:
        if self._scale is None:
            raise AssertionError(
                f"Attempted {funcname} but _scale is None.  This may indicate your script did "
                "not use scaler.scale(loss or outputs) earlier in the iteration."
            )
        return self._scale, self._growth_tracker

    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a Tensor, or an iterable of Tensors) times the scale factor."""
        if not self._enabled:
            return outputs

        def one(t: Tensor) -> Tensor:
            if self._scale is None:
                self._lazy_init(t)
            s = self._scale
            if t.device != s.device:
                s = wrap(backend.to_device(s.data, t.device))
            return t * s

        def each(v: Any) -> Any:
            if isinstance(v, Tensor):
                return one(v)
            if isinstance(v, Iterable):
                it = map(each, v)
                return type(v)(it) if isinstance(v, (list, tuple)) else it
            raise ValueError("outputs must be a Tensor or an iterable of Tensors")

        return each(outputs)

    def _unscale_grads_(self, optimizer: Any, inv_scale: Any, allow_fp16: bool) -> dict:
        """Multiply every gradient by ``inv_scale`` in place; per device, a 0-d float32 array
        that is 1 where some gradient held an inf or NaN."""
        found: dict = {}
        invs: dict = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                a = g.data
                if not allow_fp16 and a.dtype == np.float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                dev = str(backend.device_of(a))
                inv = invs.get(dev)
                if inv is None:
                    inv = invs[dev] = backend.to_device(inv_scale, dev)
                    xp = backend.array_module(inv)
                    found[dev] = xp.zeros((), dtype=np.float32)
                xp = backend.array_module(a)
                bad = ~xp.isfinite(a).all()
                xp.maximum(found[dev], bad, out=found[dev])
                # the product in float32 (PyTorch's opmath), stored back in the gradient's dtype
                xp.multiply(a, inv, out=a, casting="unsafe")
                g._vc[0] += 1
        return found

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale now (e.g. before clipping them); at most
        once per optimizer between ``update()`` calls. ``step`` then does not unscale again."""
        if not self._enabled:
            return
        scale, _ = self._check_scale("unscale_")
        st = self._per_optimizer_states[id(optimizer)]
        if st["stage"] is OptState.UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        # 1/scale computed in float64, then float32 (as PyTorch)
        inv = (1.0 / scale.data.astype(np.float64)).astype(np.float32)
        st["found_inf_per_device"] = self._unscale_grads_(optimizer, inv, False)
        st["stage"] = OptState.UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """Unscale the gradients (unless ``unscale_`` did) and run ``optimizer.step`` unless one
        of them is inf/NaN; returns what ``optimizer.step`` returned (None when skipped)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_scale("step")
        st = self._per_optimizer_states[id(optimizer)]
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st["stage"] is OptState.READY:
            self.unscale_(optimizer)
        found = st["found_inf_per_device"]
        if not found:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        retval = None
        if not sum(float(v) for v in found.values()):  # the one device-to-host read
            retval = optimizer.step(*args, **kwargs)
        st["stage"] = OptState.STEPPED
        return retval

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Back off after a skipped step, grow after ``growth_interval`` clean ones; or set the
        scale to ``new_scale``. Call once per iteration, after every ``step``."""
        if not self._enabled:
            return
        scale, tracker = self._check_scale("update")
        s = scale.data
        if new_scale is not None:
            if isinstance(new_scale, float):
                s[...] = new_scale
            else:
                reason = (
                    "new_scale should be a float or a 1-element float32 Tensor with "
                    "requires_grad=False."
                )
                if not isinstance(new_scale, Tensor) or new_scale.device != scale.device:
                    raise AssertionError(reason)
                if new_scale.numel() != 1 or new_scale.requires_grad:
                    raise AssertionError(reason)
                s[...] = new_scale.data.reshape(())
        else:
            found = [
                backend.to_device(f, scale.device)
                for st in self._per_optimizer_states.values()
                for f in st["found_inf_per_device"].values()
            ]
            if not found:
                raise AssertionError("No inf checks were recorded prior to update.")
            total = found[0]
            for f in found[1:]:
                total = total + f
            self._update_scale(s, tracker, total)
        self._per_optimizer_states = defaultdict(_fresh_state)

    def _update_scale(self, s: Any, tracker: Any, found_inf: Any) -> None:
        """PyTorch's ``_amp_update_scale_``, on the device: no host round trip."""
        xp = backend.array_module(s)
        inf = found_inf > 0
        succ = tracker + np.int32(1)
        grow = succ == self._growth_interval
        s64 = s.astype(np.float64)
        backed = (s64 * self._backoff_factor).astype(np.float32)
        grown = (s64 * self._growth_factor).astype(np.float32)
        kept = xp.where(grow & xp.isfinite(grown), grown, s)
        s[...] = xp.where(inf, backed, kept)
        tracker[...] = xp.where(inf | grow, np.int32(0), succ)

    # ------------------------------------------------------------------ state
    def get_scale(self) -> float:
        """The current scale (1.0 when disabled); reads it from the device."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale.data)

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = new_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = new_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = new_interval

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        if self._growth_tracker is None:
            return self._init_growth_tracker
        return int(self._growth_tracker)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict[str, Any]:
        """``scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval`` and
        ``_growth_tracker`` (empty when disabled); save it after ``update()``."""
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._get_growth_tracker(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved "
                "from a disabled instance of GradScaler."
            )
        self._init_scale = float(state_dict["scale"])
        if self._scale is not None:
            self._scale.data[...] = self._init_scale
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._growth_tracker is not None:
            self._growth_tracker[...] = self._init_growth_tracker

    def __getstate__(self) -> dict[str, Any]:
        st = self.__dict__.copy()
        if self._enabled:
            if len(self._per_optimizer_states) != 0:
                raise AssertionError(
                    "A GradScaler instance may only be pickled at the beginning "
                    "of an iteration, or at the end after scaler.update()."
                )
            st["_init_scale"] = self.get_scale()
            st["_init_growth_tracker"] = self._get_growth_tracker()
            st["_scale"] = None
            st["_growth_tracker"] = None
            st["_per_optimizer_states"] = None
        return st

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)
        if self._enabled:
            self._per_optimizer_states = defaultdict(_fresh_state)
