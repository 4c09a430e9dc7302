"""Compiling and launching the kernels of ``cuda_sources`` through ``cupy.RawKernel``."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from .. import backend
from .cuda_sources import DTYPES, THREADS, WARPS, render

MAX_BLOCKS = 8192  # grid-stride loops cover the rest; enough blocks to fill any current GPU


def _enabled() -> bool:
    return os.environ.get("CHAINRULE_CUDA_KERNELS", "1") != "0"


def kernel_module(*arrays: Any) -> Any:
    """Real CuPy when the first array is a CuPy array and fused kernels are on, else None (the
    caller then runs the NumPy reference: host arrays, the test double, or
    ``CHAINRULE_CUDA_KERNELS=0``)."""
    xp = backend.array_module(arrays[0])
    if xp is np or getattr(xp, "__name__", "") != "cupy" or not _enabled():
        return None
    return xp


def dtype_name(dt: Any) -> str | None:
    """The ``DTYPES`` key of a dtype, or None when no kernel exists for it."""
    name = np.dtype(dt).name
    return name if name in DTYPES else None


def usable(*arrays: Any) -> str | None:
    """The kernel dtype when every array is C-contiguous and they share one supported dtype;
    None (run the reference) otherwise."""
    name = dtype_name(arrays[0].dtype)
    if name is None:
        return None
    for a in arrays:
        if a.dtype != arrays[0].dtype or not a.flags.c_contiguous:
            return None
    return name


def acc_dtype(dt: Any) -> np.dtype:
    """The arithmetic dtype for data of dtype ``dt``: float64 for float64, else float32."""
    return np.dtype(np.float64) if np.dtype(dt) == np.float64 else np.dtype(np.float32)


@functools.cache
def get_kernel(kernel: str, dtype: str) -> Any:
    """The compiled ``cupy.RawKernel`` (compiled once per process and device: CuPy caches the
    binary on disk too)."""
    cp = backend.cuda_module()
    src, name = render(kernel, dtype)
    return cp.RawKernel(src, name)


def launch_flat(kernel: str, dtype: str, n: int, args: tuple) -> None:
    """Launch an element-wise kernel over ``n`` elements (nothing for n == 0)."""
    if n <= 0:
        return
    blocks = min((n + THREADS - 1) // THREADS, MAX_BLOCKS)
    get_kernel(kernel, dtype)((blocks,), (THREADS,), args)


def launch_rows(kernel: str, dtype: str, rows: int, args: tuple) -> None:
    """Launch a warp-per-row kernel over ``rows`` rows."""
    if rows <= 0:
        return
    blocks = min((rows + WARPS - 1) // WARPS, MAX_BLOCKS)
    get_kernel(kernel, dtype)((blocks,), (THREADS,), args)


def scalar(value: float, dtype: str) -> Any:
    """A kernel scalar argument in the arithmetic type (CuPy needs NumPy scalars to pick the
    C type: a Python float would be passed as double)."""
    return acc_dtype(_np_dtype(dtype)).type(value)


def _np_dtype(dtype: str) -> Any:
    if dtype == "bfloat16":
        return np.float32  # only its arithmetic type matters here
    return np.dtype(dtype)


i32 = np.int32
i64 = np.int64
