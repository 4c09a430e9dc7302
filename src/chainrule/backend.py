"""The array module behind every tensor.

This is the only file that names NumPy for array math; everything else asks it for ``xp``.
A CuPy backend slots in here later: ``array_module(a)`` will answer ``cupy`` for device arrays.
"""

from __future__ import annotations

import numpy as np

xp = np  # the array module for CPU tensors
ndarray = np.ndarray


def array_module(a: object) -> object:
    """The array module that owns ``a`` (NumPy for now)."""
    return np


def asarray(a: object, dtype: object = None) -> np.ndarray:
    """``a`` as an array (no copy when it already is one of ``dtype``)."""
    return np.asarray(a, dtype=dtype)


def is_array(a: object) -> bool:
    return isinstance(a, np.ndarray)
