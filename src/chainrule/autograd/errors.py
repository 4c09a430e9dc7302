"""The errors the engine raises, each saying what went wrong and what to do about it: an op that
failed on its inputs (``OpError``, with the input shapes; mixed devices), a backward with no path
to a tensor that requires grad, a second backward through freed buffers, a saved tensor modified in
place, a backward rule that returned a gradient of the wrong shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import backend
from ..tensor import Tensor

if TYPE_CHECKING:
    from .engine import Node


class OpError(RuntimeError):
    """An op got inputs it cannot work with (most often: shapes that do not fit)."""


def _op_name(op: type) -> str:
    return getattr(op, "name", None) or op.__name__.lower()


def _device_retry(op: type, args: Sequence[Any], arrays: list, err: Exception) -> list | None:
    """After a failed forward: the arguments with 0-d CPU tensors moved to the CUDA device when
    that is all that mixes devices (PyTorch lets CPU scalars into CUDA ops); raises a clear error
    for any other mix of devices; None when devices are not the problem."""
    err2 = backend.same_device_error(_op_name(op), arrays)
    if err2 is None:
        return None
    dev = next(a for a in arrays if backend.is_device_array(a))
    movable = [isinstance(a, Tensor) and a.device.type == "cpu" and a.ndim == 0 for a in args]
    host_left = any(
        not m and backend.is_array(x) and not backend.is_device_array(x)
        for m, x in zip(movable, arrays)
    )
    if host_left or not any(movable):  # a CPU tensor with dims, or a bare host array
        raise err2 from err
    from ..ops.device import to_device  # noqa: PLC0415 - the differentiable copy

    return [
        to_device(a, backend.device_of(dev))
        if isinstance(a, Tensor) and a.device.type == "cpu"
        else a
        for a in args
    ]


def _op_error(op: type, args: Sequence[Any], err: Exception) -> OpError:
    name = _op_name(op)
    shapes = [tuple(a.shape) for a in args if isinstance(a, Tensor)]
    what = " and ".join(str(s) for s in shapes) if shapes else "scalars"
    return OpError(f"{name}: {err} (input shapes: {what})")


def _no_path_error(t: Tensor) -> RuntimeError:
    if t._cut:
        why = (
            f"the graph was cut by {t._cut}: the values it was computed from carry no history. "
            "Keep the computation on tensors (no .detach(), no NumPy round trip) up to the loss."
        )
    else:
        why = (
            "none of the tensors it was computed from requires grad. Create the parameters with "
            "requires_grad=True (nn.Parameter does this), and do not compute the loss under "
            "no_grad()/inference_mode()."
        )
    return RuntimeError(
        f"backward(): this tensor (shape {tuple(t.shape)}) has no path to any tensor that "
        f"requires grad: {why}"
    )


def _freed_error(node: Node) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time: the buffers that `{node.name()}` "
        "saved for its backward were freed by the first backward(). Pass retain_graph=True to the "
        "first backward() (or autograd.grad) if you need to backward through it again."
    )


def _version_error(
    node: Node, t: Tensor, saved: int, i: int | None, now: int | None = None
) -> RuntimeError:
    which = "its output" if i is None else f"its input {i}"
    return RuntimeError(
        f"a tensor that `{node.name()}` saved for backward ({which}, shape {tuple(t.shape)}, "
        f"dtype {t.dtype}) was modified in place after it was saved (version {saved} -> "
        f"{t._vc[0] if now is None else now}), so its gradient would be wrong. Use an "
        "out-of-place op (x = x + y instead of x.add_(y)) or .clone() the tensor before changing it."
    )


def _shape_error(node: Node | None, g: Any, shape: tuple) -> RuntimeError:
    who = f"`{node.name()}`" if node is not None else "the supplied gradient"
    return RuntimeError(
        f"backward of {who} produced a gradient of shape {tuple(g.shape)} for an input of shape "
        f"{tuple(shape)}"
    )
