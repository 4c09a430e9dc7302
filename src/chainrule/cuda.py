"""``chainrule.cuda``: the GPU, as ``torch.cuda`` presents it (through CuPy).

Everything here works without a GPU: ``is_available()`` answers False, and the functions that
need a device raise a RuntimeError that says what to install.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from . import random as _random


def is_available() -> bool:
    """Whether CUDA tensors can be made here (CuPy installed and a GPU present)."""
    return backend.cuda_available()


def device_count() -> int:
    return backend.cuda_module().cuda.runtime.getDeviceCount() if is_available() else 0


def current_device() -> int:
    return int(backend.cuda_module().cuda.get_device_id())


def get_device_name(device: Any = None) -> str:
    idx = backend.as_device(device).index or 0 if device is not None else current_device()
    props = backend.cuda_module().cuda.runtime.getDeviceProperties(idx)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize(device: Any = None) -> None:
    """Wait until every kernel queued on the GPU has finished (for timing, as in PyTorch)."""
    backend.cuda_module()
    backend.synchronize()


def manual_seed(seed: int) -> None:
    """Seed the CUDA generator (random numbers drawn for CUDA tensors)."""
    _random.cuda_generator.manual_seed(seed)


manual_seed_all = manual_seed


def seed() -> int:
    return _random.cuda_generator.seed()


def initial_seed() -> int:
    return _random.cuda_generator.initial_seed()


def _pool() -> Any:
    return backend.cuda_module().get_default_memory_pool()


def memory_allocated(device: Any = None) -> int:
    """Bytes of GPU memory held by live CUDA tensors."""
    return int(_pool().used_bytes())


def memory_reserved(device: Any = None) -> int:
    """Bytes of GPU memory held by CuPy's caching allocator (live tensors plus cached blocks)."""
    return int(_pool().total_bytes())


def max_memory_reserved(device: Any = None) -> int:
    """The most memory the caching allocator has held since ``reset_peak_memory_stats``.

    CuPy's pool only grows until emptied, so what it holds now is its peak: the same quantity as
    ``torch.cuda.max_memory_reserved`` after ``torch.cuda.empty_cache()``."""
    return memory_reserved(device)


def empty_cache() -> None:
    """Return the cached, unused blocks to the driver."""
    _pool().free_all_blocks()


def reset_peak_memory_stats(device: Any = None) -> None:
    empty_cache()


def mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of the GPU."""
    free, total = backend.cuda_module().cuda.runtime.memGetInfo()
    return int(free), int(total)


def set_tf32(enabled: bool) -> None:
    """TF32 tensor-core matrix products for float32 (opt-in, as in PyTorch: about 10 bits of
    mantissa in the products, float32 accumulation). Same as
    ``chainrule.set_float32_matmul_precision('high')``."""
    cp = backend.cuda_module()
    core = getattr(cp, "_core", None)
    linalg = getattr(core, "_routines_linalg", None)
    if linalg is None or not hasattr(linalg, "set_compute_type"):
        raise RuntimeError("this CuPy has no switch for TF32 matrix products")
    kind = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.dtype(np.float32), kind)
    _state["tf32"] = bool(enabled)


_state = {"tf32": False}


def tf32_enabled() -> bool:
    return _state["tf32"]


# ----------------------------------------------------------------------------- streams and events
class Event:
    """``torch.cuda.Event``: a marker in a stream's queue of work, for timing GPU code without
    stopping the host (``start.record(); ...; end.record(); end.synchronize();
    start.elapsed_time(end)`` in milliseconds)."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False) -> None:
        cp = backend.cuda_module()
        self._event = cp.cuda.Event(block=blocking, disable_timing=not enable_timing)
        self.enable_timing = enable_timing

    def record(self, stream: Stream | None = None) -> None:
        self._event.record(None if stream is None else stream._stream)

    def synchronize(self) -> None:
        self._event.synchronize()

    def query(self) -> bool:
        return bool(self._event.done)

    def elapsed_time(self, end: Event) -> float:
        """Milliseconds from this event to ``end`` (both recorded, with ``enable_timing``)."""
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("elapsed_time needs both events made with enable_timing=True")
        return float(backend.cuda_module().cuda.get_elapsed_time(self._event, end._event))


class Stream:
    """``torch.cuda.Stream``: an independent queue of GPU work (``with cr.cuda.stream(s):``)."""

    def __init__(self, device: Any = None, priority: int = 0) -> None:
        self._stream = backend.cuda_module().cuda.Stream(non_blocking=True)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def wait_event(self, event: Event) -> None:
        self._stream.wait_event(event._event)

    def wait_stream(self, other: Stream) -> None:
        e = Event()
        e.record(other)
        self.wait_event(e)

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def __enter__(self) -> Stream:
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stream.__exit__(*exc)


def stream(s: Stream | None) -> Any:
    """``with cr.cuda.stream(s):`` queues the GPU work inside on ``s`` (None: no change)."""
    import contextlib  # noqa: PLC0415

    return contextlib.nullcontext() if s is None else s


def current_stream(device: Any = None) -> Stream:
    """The stream GPU work is queued on now."""
    s = Stream.__new__(Stream)
    s._stream = backend.cuda_module().cuda.get_current_stream()
    return s
