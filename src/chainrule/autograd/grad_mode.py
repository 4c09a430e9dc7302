"""Grad mode: whether operations record a graph. Thread-local, like PyTorch's.

``no_grad``, ``enable_grad``, ``set_grad_enabled`` and ``inference_mode`` work as context managers
and as decorators.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class _State(threading.local):
    grad_enabled = True
    inference = False
    anomaly = None  # the active detect_anomaly context, or None
    # chainrule.amp: this thread's autocast settings (created on first use), and the same object
    # while some device autocasts, else None: the engine's apply checks only ``autocast``
    amp = None
    autocast = None


state = _State()


def is_grad_enabled() -> bool:
    return state.grad_enabled


def is_inference_mode_enabled() -> bool:
    return state.inference


class _GradModeContext:
    """Base for the context managers below: saves the mode on enter, restores it on exit."""

    _enabled = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # ``@no_grad`` without parentheses (PyTorch accepts it): decorate the function directly
        if len(args) == 1 and not kwargs and callable(args[0]):
            return cls()(args[0])
        return super().__new__(cls)

    def __enter__(self) -> None:
        self._prev = state.grad_enabled
        state.grad_enabled = self._enabled

    def __exit__(self, *exc: object) -> None:
        state.grad_enabled = self._prev

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.__class__(*self._args()):
                return fn(*args, **kwargs)

        return wrapper

    def _args(self) -> tuple:
        return ()


class no_grad(_GradModeContext):  # noqa: N801 - PyTorch's name
    """Operations inside record no graph: their results have ``requires_grad=False``."""

    _enabled = False


class enable_grad(_GradModeContext):  # noqa: N801
    """Turn recording back on inside a ``no_grad`` block."""

    _enabled = True


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Turn recording on or off; takes effect immediately, so it also works as a plain call."""

    def __init__(self, mode: bool) -> None:
        self._enabled = bool(mode)
        self._prev = state.grad_enabled
        state.grad_enabled = self._enabled

    def __new__(cls, mode: bool) -> Any:
        return object.__new__(cls)

    def __enter__(self) -> None:
        pass

    def __call__(self, fn: Callable) -> Callable:
        # used as a decorator: the switch made by __init__ must not outlive the decoration
        state.grad_enabled = self._prev
        return super().__call__(fn)

    def _args(self) -> tuple:
        return (self._enabled,)


class inference_mode(_GradModeContext):  # noqa: N801
    """Like ``no_grad`` (this engine has no extra bookkeeping to skip beyond it)."""

    def __init__(self, mode: bool = True) -> None:
        self._mode = bool(mode)
        self._enabled = not self._mode

    def __enter__(self) -> None:
        self._prev = state.grad_enabled
        self._prev_inf = state.inference
        state.grad_enabled = self._enabled  # inference_mode(False) turns grad on, as PyTorch
        state.inference = self._mode

    def __exit__(self, *exc: object) -> None:
        state.grad_enabled = self._prev
        state.inference = self._prev_inf

    def _args(self) -> tuple:
        return (self._mode,)
