"""Fused recurrent cells: one node per time step computes the hidden-to-hidden product, the gates
and the new state, and one rule takes the whole step back.

Each cell takes the input projection ``xg = x W_ih^T + b_ih`` already computed (a recurrent layer
does that for all time steps with one GEMM) and applies PyTorch's cell (gate order and formulas
as ``torch.nn.RNN/GRU/LSTM``):

    RNN   h' = act(xg + h W^T + b)                               act = tanh or relu
    GRU   r, z = sigmoid(xg_rz + (h W^T + b)_rz)                 gates r, z, n
          n = tanh(xg_n + r * (h W_n^T + b_n));  h' = (h - n) * z + n
    LSTM  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (xg + h W^T + b)
          c' = f * c + i * g;  h' = o * tanh(c')

``xg`` is (..., G*H), ``h`` and ``c`` are (..., H) with the same leading dims, W is (G*H, H), b is
(G*H,) or None. On arrays the rules reuse the gates saved by the forward; for a differentiable
backward (``create_graph``) they recompute the gates from the inputs with recorded ops, so the
gradient is itself differentiable. ``*_composed`` give the same cells as a chain of primitives
(used for that recomputation, and to measure what fusing gains).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd.engine import Op, apply
from ..tensor import Tensor
from .linalg import _mm
from .linear import linear
from .movement import split
from .unary import relu, sigmoid, tanh


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """Sigmoid in place as (1 + tanh(x / 2)) / 2: NumPy's tanh is its fastest vectorised
    transcendental (about 2x the clamped 1 / (1 + exp(-x))), and it cannot overflow. The error is
    absolute, at the rounding level of 1 (1e-16 in float64, 6e-8 in float32): gates very close to
    0 lose relative (never absolute) precision."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _gate_major(a: np.ndarray, gates: int) -> np.ndarray:
    """(N, G*H) -> a (G, N, H) view, so that each gate's block is one contiguous run once
    computed into a (G, N, H) buffer (vectorised maths is much faster on contiguous blocks)."""
    n = a.shape[0]
    return a.reshape(n, gates, -1).transpose(1, 0, 2)


def _check(name: str, xg: np.ndarray, h: np.ndarray, w: np.ndarray, gates: int) -> int:
    H = h.shape[-1]
    if w.shape != (gates * H, H) or xg.shape != h.shape[:-1] + (gates * H,):
        raise RuntimeError(
            f"{name}: expected input projection (..., {gates * H}), hidden (..., {H}) and weight_hh "
            f"({gates * H}, {H}), got {xg.shape}, {h.shape} and {w.shape}"
        )
    return H


def _weight_grads(ctx: Any, da: Any, h2: Any, m: Any) -> tuple:
    """Gradients of W and b in ``da = d(h W^T + b)``: da^T h and the column sums of da."""
    need = ctx.needs_input_grad
    gw = m.matmul(m.mT(da), h2) if need[-2] else None
    gb = m.sum(da, (0,), False) if ctx.inputs[-1] is not None and need[-1] else None
    return gw, gb


# ----------------------------------------------------------------------------- Elman RNN


class RNNCellOp(Op):
    """h' = act(xg + h W^T + b), act tanh or relu; backward from the saved output."""

    save_inputs = True
    save_output = True
    name = "rnn_cell"

    def forward(ctx, xg, h, w, b, nonlinearity):
        H = _check("rnn_cell", xg, h, w, 1)
        ctx.relu = nonlinearity == "relu"
        a = _mm(h.reshape(-1, H), w.T)
        a += xg.reshape(-1, H)
        if b is not None:
            a += b
        if ctx.relu:
            np.maximum(a, 0, out=a)
        else:
            np.tanh(a, out=a)
        return a.reshape(h.shape)

    def backward(ctx, g, m):
        xg, h, w, b = ctx.inputs
        H = h.shape[-1]
        out = m.reshape(ctx.out, (-1, H))
        g2 = m.reshape(g, (-1, H))
        da = g2 * (out > 0) if ctx.relu else g2 * (1 - out * out)
        need = ctx.needs_input_grad
        gx = m.reshape(da, xg.shape) if need[0] else None
        gh = m.reshape(m.matmul(da, w), h.shape) if need[1] else None
        gw, gb = _weight_grads(ctx, da, m.reshape(h, (-1, H)), m)
        return gx, gh, gw, gb


def rnn_cell_composed(
    xg: Tensor, h: Tensor, w: Tensor, b: Tensor | None, nonlinearity: str = "tanh"
) -> Tensor:
    a = xg + linear(h, w, b)
    return relu(a) if nonlinearity == "relu" else tanh(a)


def rnn_cell(
    xg: Tensor, h: Tensor, w: Tensor, b: Tensor | None, nonlinearity: str = "tanh"
) -> Tensor:
    """One Elman step on a precomputed input projection ``xg`` (one node)."""
    return apply(RNNCellOp, xg, h, w, b, nonlinearity=nonlinearity)


# ----------------------------------------------------------------------------- GRU


def _gru_gates(xg: Any, h: Any, w: Any, b: Any) -> tuple:
    """r, z, n and h W_n^T + b_n as recorded ops on (N, 3H) / (N, H) Tensors."""
    H = h.shape[-1]
    xr, xz, xn = split(xg, H, -1)
    hr, hz, hn = split(linear(h, w, b), H, -1)
    r = sigmoid(xr + hr)
    z = sigmoid(xz + hz)
    n = tanh(xn + r * hn)
    return r, z, n, hn


class GRUCellOp(Op):
    """PyTorch's GRU step. With a = pre-activations, dn = g (1 - z), dz = g (h - n):
    da_n = dn (1 - n^2), da_z = dz z (1 - z), da_r = da_n hn r (1 - r); the hidden product gets
    [da_r, da_z, da_n r], the input projection [da_r, da_z, da_n], and h also g z directly."""

    save_inputs = True
    name = "gru_cell"

    def forward(ctx, xg, h, w, b):
        H = _check("gru_cell", xg, h, w, 3)
        h2 = h.reshape(-1, H)
        xv = _gate_major(xg.reshape(-1, 3 * H), 3)
        gh = _mm(h2, w.reshape(3, H, H).transpose(0, 2, 1))  # (3, N, H): becomes r, z, hn
        if b is not None:
            gh += b.reshape(3, 1, H)
        rz = gh[:2]
        rz += xv[:2]
        _sigmoid_(rz)
        n = gh[2] * gh[0]
        n += xv[2]
        np.tanh(n, out=n)
        out = h2 - n
        out *= gh[1]
        out += n
        ctx.gh, ctx.n = gh, n
        return out.reshape(h.shape)

    def backward(ctx, g, m):
        if m.graph:
            return _gru_backward_graph(ctx, g, m)
        xg, h, w, b = ctx.inputs
        H = h.shape[-1]
        need = ctx.needs_input_grad
        gh, n = ctx.gh, ctx.n
        r, z, hn = gh
        g2 = g.reshape(-1, H)
        h2 = h.reshape(-1, H)
        one_m = 1 - gh[:2]  # 1 - r, 1 - z
        da = np.empty_like(gh)  # (3, N, H): d of the pre-activations of r, z, n
        dr, dz, dn = da
        np.multiply(n, n, out=dn)
        np.subtract(1, dn, out=dn)
        dn *= g2
        dn *= one_m[1]  # g (1 - z) (1 - n^2)
        np.subtract(h2, n, out=dz)
        dz *= g2
        dz *= z
        dz *= one_m[1]  # g (h - n) z (1 - z)
        np.multiply(dn, hn, out=dr)
        dr *= r
        dr *= one_m[0]  # da_n hn r (1 - r)
        gx = None
        if need[0]:  # a copy in (N, 3H) layout: da changes below
            gx = backend.array_module(da).empty((da.shape[1], 3, H), da.dtype)
            np.copyto(gx.transpose(1, 0, 2), da)
            gx = gx.reshape(xg.shape)
        dn *= r  # da becomes the gradient of the hidden product: [da_r, da_z, da_n r]
        gh_ = None
        if need[1]:
            gh_ = _mm(da, w.reshape(3, H, H)).sum(0)
            gh_ += g2 * z
            gh_ = gh_.reshape(h.shape)
        gw = _mm(da.transpose(0, 2, 1), h2).reshape(3 * H, H) if need[2] else None
        gb = da.sum(1).reshape(3 * H) if b is not None and need[3] else None
        return gx, gh_, gw, gb


def _gru_backward_graph(ctx: Any, g: Any, m: Any) -> tuple:
    xg, h, w, b = ctx.inputs
    H = h.shape[-1]
    need = ctx.needs_input_grad
    h2 = m.reshape(h, (-1, H))
    r, z, n, hn = _gru_gates(m.reshape(xg, (-1, 3 * H)), h2, w, b)
    g2 = m.reshape(g, (-1, H))
    dn = g2 * (1 - z) * (1 - n * n)
    dz = g2 * (h2 - n) * (z * (1 - z))
    dr = dn * hn * (r * (1 - r))
    gx = m.reshape(m.cat([dr, dz, dn], 1), xg.shape) if need[0] else None
    dgh = m.cat([dr, dz, dn * r], 1)
    gh = m.reshape(m.matmul(dgh, w) + g2 * z, h.shape) if need[1] else None
    gw, gb = _weight_grads(ctx, dgh, h2, m)
    return gx, gh, gw, gb


def gru_cell_composed(xg: Tensor, h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    _, z, n, _ = _gru_gates(xg, h, w, b)
    return (h - n) * z + n


def gru_cell(xg: Tensor, h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """One GRU step on a precomputed input projection ``xg`` (one node)."""
    return apply(GRUCellOp, xg, h, w, b)


# ----------------------------------------------------------------------------- LSTM


def _lstm_gates(xg: Any, h: Any, w: Any, b: Any) -> tuple:
    H = h.shape[-1]
    a_i, a_f, a_g, a_o = split(xg + linear(h, w, b), H, -1)
    return sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)


class LSTMCellOp(Op):
    """PyTorch's LSTM step; two outputs (h', c'). With tc = tanh(c'):
    dc = g_c + g_h o (1 - tc^2); da = [dc g i(1-i), dc c f(1-f), dc i (1-g^2), g_h tc o(1-o)];
    dc_prev = dc f."""

    save_inputs = True
    name = "lstm_cell"

    def forward(ctx, xg, h, c, w, b):
        H = _check("lstm_cell", xg, h, w, 4)
        if c.shape != h.shape:
            raise RuntimeError(f"lstm_cell: hidden state {h.shape} and cell state {c.shape} differ")
        a = _mm(h.reshape(-1, H), w.reshape(4, H, H).transpose(0, 2, 1))  # (4, N, H)
        a += _gate_major(xg.reshape(-1, 4 * H), 4)
        if b is not None:
            a += b.reshape(4, 1, H)
        _sigmoid_(a[:2])
        np.tanh(a[2], out=a[2])
        _sigmoid_(a[3])
        i, f, gg, o = a
        c2 = f * c.reshape(-1, H)
        c2 += i * gg
        tc = np.tanh(c2)
        h2 = o * tc
        ctx.gates, ctx.tc = a, tc
        return h2.reshape(h.shape), c2.reshape(h.shape)

    def backward(ctx, grads, m):
        if m.graph:
            return _lstm_backward_graph(ctx, grads, m)
        xg, h, c, w, b = ctx.inputs
        H = h.shape[-1]
        need = ctx.needs_input_grad
        g_h, g_c = (x.reshape(-1, H) for x in grads)
        c2d = c.reshape(-1, H)
        h2 = h.reshape(-1, H)
        a, tc = ctx.gates, ctx.tc
        i, f, gg, o = a
        dc = tc * tc
        np.subtract(1, dc, out=dc)
        dc *= o
        dc *= g_h
        dc += g_c  # g_c + g_h o (1 - tanh(c')^2)
        one_m = 1 - a
        da = np.empty_like(a)  # (4, N, H)
        d_i, d_f, d_g, d_o = da
        np.multiply(dc, gg, out=d_i)
        d_i *= i
        d_i *= one_m[0]
        np.multiply(dc, c2d, out=d_f)
        d_f *= f
        d_f *= one_m[1]
        np.multiply(gg, gg, out=d_g)
        np.subtract(1, d_g, out=d_g)
        d_g *= dc
        d_g *= i
        np.multiply(g_h, tc, out=d_o)
        d_o *= o
        d_o *= one_m[3]
        gx = da.transpose(1, 0, 2).reshape(xg.shape) if need[0] else None
        gh = _mm(da, w.reshape(4, H, H)).sum(0).reshape(h.shape) if need[1] else None
        gc = (dc * f).reshape(c.shape) if need[2] else None
        gw = _mm(da.transpose(0, 2, 1), h2).reshape(4 * H, H) if need[3] else None
        gb = da.sum(1).reshape(4 * H) if b is not None and need[4] else None
        return gx, gh, gc, gw, gb


def _lstm_backward_graph(ctx: Any, grads: Any, m: Any) -> tuple:
    xg, h, c, w, b = ctx.inputs
    H = h.shape[-1]
    g_h, g_c = (m.reshape(x, (-1, H)) for x in grads)
    c2d = m.reshape(c, (-1, H))
    h2 = m.reshape(h, (-1, H))
    i, f, gg, o = _lstm_gates(m.reshape(xg, (-1, 4 * H)), h2, w, b)
    tc = tanh(f * c2d + i * gg)
    dc = g_c + g_h * o * (1 - tc * tc)
    da = m.cat(
        [
            dc * gg * (i * (1 - i)),
            dc * c2d * (f * (1 - f)),
            dc * i * (1 - gg * gg),
            g_h * tc * (o * (1 - o)),
        ],
        1,
    )
    need = ctx.needs_input_grad
    gx = m.reshape(da, xg.shape) if need[0] else None
    gh = m.reshape(m.matmul(da, w), h.shape) if need[1] else None
    gc = m.reshape(dc * f, c.shape) if need[2] else None
    gw, gb = _weight_grads(ctx, da, h2, m)
    return gx, gh, gc, gw, gb


def lstm_cell_composed(xg: Tensor, h: Tensor, c: Tensor, w: Tensor, b: Tensor | None) -> tuple:
    i, f, gg, o = _lstm_gates(xg, h, w, b)
    c2 = f * c + i * gg
    return o * tanh(c2), c2


def lstm_cell(xg: Tensor, h: Tensor, c: Tensor, w: Tensor, b: Tensor | None) -> tuple:
    """One LSTM step on a precomputed input projection ``xg`` (one node); returns (h', c')."""
    return apply(LSTMCellOp, xg, h, c, w, b)
