"""Fused affine map: ``linear(x, W, b) = x @ W.T + b`` as one node (one GEMM each way)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .linalg import _mm
from .util import promote_pair


class Linear(Op):
    """x: (..., in), W: (out, in), b: (out,) or None -> (..., out).
    gx = g W;  gW = g^T x (batch dims flattened);  gb = g summed over batch dims."""

    save_inputs = True

    def forward(ctx, x, w, b):
        if x.shape[-1:] != w.shape[1:]:
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied: input {x.shape} has {x.shape[-1] if x.ndim else 0} "
                f"features, weight {w.shape} expects {w.shape[1]}"
            )
        y = np.matmul(x, w.T) if x.dtype.kind != "V" else _mm(x, w.T)
        if b is not None:
            y += b
        return y

    def backward(ctx, g, m):
        x, w, b = ctx.inputs
        need = ctx.needs_input_grad
        gx = gw = gb = None
        mm = np.matmul if not m.graph and g.dtype.kind != "V" else m.matmul  # the hot path
        if need[0]:
            gx = mm(g, w)
        if need[1]:
            if x.ndim == 2:
                gw = mm(m.mT(g), x)
            else:
                g2 = m.reshape(g, (-1, w.shape[0]))
                gw = mm(m.mT(g2), m.reshape(x, (-1, w.shape[1])))
        if b is not None and need[2]:
            gb = m.sum(g, tuple(range(g.ndim - 1)), False) if g.ndim > 1 else g
        return gx, gw, gb


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight.T + bias`` with input (..., in_features), weight (out_features, in_features)."""
    if input.data.dtype is not weight.data.dtype:
        input, weight = promote_pair(input, weight)
    if bias is not None and bias.data.dtype is not weight.data.dtype:
        bias = bias.to(weight.dtype)
    return apply(Linear, input, weight, bias)


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Any:
    """y_k = x1^T W_k x2 + b_k with weight (out, in1, in2)."""
    from .linalg import einsum  # noqa: PLC0415

    y = einsum("...i,kij,...j->...k", input1, weight, input2)
    return y + bias if bias is not None else y
