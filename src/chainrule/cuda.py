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
