"""Moving tensors between devices (host memory and a CUDA GPU) as a differentiable op.

``x.to('cuda')`` is recorded like any op: its backward copies the gradient back to ``x``'s
device, so a CPU leaf gets a CPU gradient even when the computation ran on the GPU.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..autograd.engine import Op, apply
from ..tensor import Tensor, check_device


class ToDevice(Op):
    name = "to_device"

    def forward(ctx, x, device, copy=False):
        ctx.src = backend.device_of(x)
        return backend.to_device(x, device, copy=copy)

    def backward(ctx, g, m):
        return m.to_device(g, ctx.src)


def to_device(input: Tensor, device: Any, copy: bool = False) -> Tensor:  # noqa: A002
    """``input`` on ``device`` (``input`` itself when it is already there and ``copy`` is
    False)."""
    d = check_device(device)
    if not copy and _same(input.device, d):
        return input
    return apply(ToDevice, input, device=d, copy=copy)


def _same(have: backend.device, want: backend.device) -> bool:
    return have.type == want.type and (want.index is None or have.index in (None, want.index))
