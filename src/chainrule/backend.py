"""The array modules behind tensors, and where tensors live.

A CPU tensor holds a NumPy array, a CUDA tensor a CuPy array. Code that makes new arrays asks
``array_module(a)`` (or ``xp_for(device)``) for the module that owns them; NumPy functions and
ufuncs called on a CuPy array dispatch to CuPy by themselves (``__array_function__`` and
``__array_ufunc__``), so most op code is written once against ``np``. CuPy is imported lazily,
the first time a CUDA device is asked for: the CPU package never needs it.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

xp = np  # the array module for CPU tensors
ndarray = np.ndarray

_cuda: Any = None  # the CUDA array module once loaded (CuPy, or a test double)
_cuda_error: str | None = None  # why it could not be loaded (said again on every request)
_cuda_types: tuple = ()  # its ndarray type, for isinstance checks


class device:  # noqa: N801 - PyTorch's name
    """Where a tensor lives: ``'cpu'`` or ``'cuda'`` (``'cuda:N'`` for the N-th GPU)."""

    __slots__ = ("type", "index")

    def __init__(self, type: Any = "cpu", index: int | None = None) -> None:  # noqa: A002
        if isinstance(type, device):
            type, index = type.type, type.index
        elif isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type  # torch.device(0) is cuda:0
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string like 'cpu' or 'cuda:0', got {type!r}")
        if ":" in type:
            type, idx = type.split(":", 1)
            if not idx.isdigit():
                raise RuntimeError(f"invalid device string '{type}:{idx}': expected 'cuda:N'")
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(f"unknown device type {type!r}: expected 'cpu' or 'cuda'")
        if type == "cpu" and index not in (None, 0):
            raise RuntimeError(f"invalid device 'cpu:{index}': there is one CPU device")
        self.type, self.index = type, index

    def __repr__(self) -> str:
        idx = f", index={self.index}" if self.index is not None else ""
        return f"device(type='{self.type}'{idx})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")


def as_device(dev: Any) -> device:
    """``dev`` (a string, index or ``device``) as a ``device``; None means the CPU."""
    if dev is None:
        return CPU
    return dev if isinstance(dev, device) else device(dev)


# ------------------------------------------------------------------ the CUDA module
def set_cuda_module(module: Any) -> None:
    """Use ``module`` as the CUDA array module (tests install a NumPy-backed double; None resets
    to importing CuPy on the next request)."""
    global _cuda, _cuda_error, _cuda_types
    _cuda, _cuda_error = module, None
    _cuda_types = (module.ndarray,) if module is not None else ()


def _load_cuda() -> Any:
    """CuPy, with a GPU that answers; raises RuntimeError saying what to install otherwise."""
    global _cuda_error
    if _cuda is not None:
        return _cuda
    if _cuda_error is None:
        try:
            import cupy  # noqa: PLC0415 - optional dependency, imported on first use
        except ImportError:
            _cuda_error = (
                "CUDA needs CuPy, which is not installed: pip install 'chainrule[gpu]' "
                "(CuPy for CUDA 12; for CUDA 13 install cupy-cuda13x instead)"
            )
        else:
            try:
                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as e:  # noqa: BLE001 - CuPy raises its own runtime errors
                _cuda_error = f"CuPy is installed but CUDA is not usable here ({e})"
            else:
                if n == 0:
                    _cuda_error = "CuPy is installed but this machine has no NVIDIA GPU"
                else:
                    set_cuda_module(cupy)
                    return cupy
    raise RuntimeError(f"CUDA is not available: {_cuda_error}")


def cuda_available() -> bool:
    try:
        _load_cuda()
    except RuntimeError:
        return False
    return True


def cuda_module() -> Any:
    """The CUDA array module (CuPy); raises a RuntimeError naming what is missing."""
    return _cuda if _cuda is not None else _load_cuda()


# ------------------------------------------------------------------ arrays and devices
def array_module(a: object) -> Any:
    """The array module that owns ``a``: NumPy for host arrays and scalars, CuPy for device
    arrays."""
    if type(a) is np.ndarray or not _cuda_types:
        return np
    return _cuda if isinstance(a, _cuda_types) else np


def common_module(*arrays: object) -> Any:
    """The module owning the first device array among ``arrays`` (NumPy when there is none)."""
    if _cuda_types:
        for a in arrays:
            if isinstance(a, _cuda_types):
                return _cuda
    return np


def xp_for(dev: Any) -> Any:
    """The array module for tensors on ``dev``."""
    return np if dev is None or as_device(dev).type == "cpu" else cuda_module()


def is_device_array(a: object) -> bool:
    return bool(_cuda_types) and isinstance(a, _cuda_types)


def is_array(a: object) -> bool:
    return isinstance(a, np.ndarray) or is_device_array(a)


def device_of(a: object) -> device:
    if type(a) is np.ndarray or not is_device_array(a):
        return CPU
    return device("cuda", int(getattr(a.device, "id", 0)))


def to_host(a: Any) -> np.ndarray:
    """``a`` as a NumPy array (a device-to-host copy for device arrays)."""
    if is_device_array(a):
        return _cuda.asnumpy(a)
    return np.asarray(a)


def to_device(a: Any, dev: Any, copy: bool = False) -> Any:
    """The array ``a`` on ``dev`` (the same object when it is already there and ``copy`` is
    False)."""
    d = as_device(dev)
    if d.type == "cpu":
        h = to_host(a)
        return h.copy() if copy and h is a else h
    cp = cuda_module()
    if is_device_array(a) and (d.index is None or device_of(a).index == d.index):
        return a.copy() if copy else a
    with cp.cuda.Device(d.index or 0):
        return cp.array(a) if copy else cp.asarray(a)


def asarray(a: object, dtype: object = None, like: object = None) -> Any:
    """``a`` as an array of ``like``'s module (no copy when it already is one of ``dtype``)."""
    return array_module(like).asarray(a, dtype=dtype)


def same_device_error(op: str, arrays: list) -> RuntimeError | None:
    """The error for an op whose inputs live on different devices (None when they agree)."""
    devs = {str(device_of(a)) for a in arrays if is_array(a)}
    if len(devs) < 2:
        return None
    a, b = sorted(devs)
    return RuntimeError(
        f"{op}: expected all tensors to be on the same device, but found at least two "
        f"devices, {b} and {a}; move one with .to(device)"
    )


def synchronize() -> None:
    """Wait for all queued GPU work (nothing to do on the CPU)."""
    if _cuda is not None:
        _cuda.cuda.Device().synchronize()


def module_name(m: types.ModuleType | Any) -> str:
    return "NumPy" if m is np else getattr(m, "__name__", "CuPy")


def as_array(a: Any) -> Any:
    """An op's result as an array: arrays pass through, NumPy scalars become 0-d arrays."""
    if type(a) is np.ndarray or is_device_array(a):
        return a
    return np.asarray(a)


def fresh_copy(a: Any) -> Any:
    """A copy of ``a`` that nobody else holds (NumPy scalars become 0-d arrays)."""
    if type(a) is np.ndarray or is_device_array(a):
        return a.copy()
    return np.array(a)


def writeable(a: Any) -> bool:
    """Whether ``a`` may be written to (device arrays always may)."""
    return type(a) is not np.ndarray or a.flags.writeable
