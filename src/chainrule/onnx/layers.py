"""Layers converted as a whole (``_module_converter``): RNN/GRU/LSTM, MultiheadAttention and
Embedding."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor
from .nn_ops import _affine
from .tracer import _Tracer, _Value

# ----------------------------------------------------------------------------- layer converters


def _module_converter(m: Module) -> Callable | None:
    from ..nn.layers.attention import MultiheadAttention  # noqa: PLC0415
    from ..nn.layers.embedding import Embedding  # noqa: PLC0415
    from ..nn.layers.recurrent import GRU, LSTM, RNN  # noqa: PLC0415

    for cls, fn in (
        (RNN, _rnn_layer),
        (GRU, _rnn_layer),
        (LSTM, _rnn_layer),
        (MultiheadAttention, _mha_layer),
        (Embedding, _embedding_layer),
    ):
        if isinstance(m, cls) and type(m).forward is cls.forward:
            return fn
    return None


def _embedding_layer(t: _Tracer, m: Module, a: dict, out: Tensor) -> None:
    if m.max_norm is not None:
        raise t.error("Embedding with max_norm (it renormalises the looked-up rows in place)")
    iv = t.v(a["input"])
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    t.bind(out, t.emit("Gather", [t.v(m.weight).name, idx], axis=0), iv.bax, iv.bf)


# PyTorch's gate order -> ONNX's: GRU (r, z, n) -> (z, r, h); LSTM (i, f, g, o) -> (i, o, f, c)
_GATE_ORDER = {"GRU": (1, 0, 2), "LSTM": (0, 3, 1, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}


def _rnn_layer(t: _Tracer, m: Module, a: dict, out: tuple) -> None:
    x = t.v(a["input"])
    hx = a.get("hx")
    mode, H, L = m.mode, m.hidden_size, m.num_layers
    if x.dtype != np.float32:
        warnings.warn(
            f"chainrule.onnx.export: {type(m).__name__} in {x.dtype}: the ONNX op allows it, but "
            "onnxruntime runs RNN/GRU/LSTM in float32 only (export a .float() model for it)",
            stacklevel=2,
        )
    D = 2 if m.bidirectional else 1
    batched = x.ndim == 3
    n_axis = 0 if m.batch_first else 1  # where N is in a batched input
    X = x.name
    if not batched:
        X = t.emit("Unsqueeze", [X, t.i64([1])])
    elif m.batch_first:
        X = t.emit("Transpose", [X], perm=[1, 0, 2])
    lstm = mode == "LSTM"
    states: list = []
    if hx is not None:
        for s in hx if isinstance(hx, tuple) else (hx,):
            sn = t.v(s).name
            states.append(sn if batched else t.emit("Unsqueeze", [sn, t.i64([1])]))
    order = _GATE_ORDER[mode]

    def gates(w: np.ndarray) -> np.ndarray:
        return np.concatenate([w[i * H : (i + 1) * H] for i in order], 0)

    finals: list[list] = [[], []]
    for layer in range(L):
        Ws, Rs, Bs = [], [], []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = m._weights(layer, d)
            Ws.append(gates(w_ih.data))
            Rs.append(gates(w_hh.data))
            if m.bias:
                Bs.append(np.concatenate([gates(b_ih.data), gates(b_hh.data)]))
        pre = f"{t.stack[-1][0]}.l{layer}" if t.stack[-1][0] else f"l{layer}"
        ins = [
            X,
            t.const(np.stack(Ws), f"{pre}.W"),
            t.const(np.stack(Rs), f"{pre}.R"),
            t.const(np.stack(Bs), f"{pre}.B") if Bs else "",
            "",
        ]
        for s in states:
            ins.append(
                t.emit("Slice", [s, t.i64([layer * D]), t.i64([(layer + 1) * D]), t.i64([0])])
            )
        while ins[-1] == "":
            ins.pop()
        attrs: dict = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if mode == "GRU":
            attrs["linear_before_reset"] = 1
        elif not lstm:
            attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * D
        op = "LSTM" if lstm else ("GRU" if mode == "GRU" else "RNN")
        res = t.emit(op, ins, n_out=3 if lstm else 2, **attrs)
        Y = t.emit("Transpose", [res[0]], perm=[0, 2, 1, 3])  # (L, D, N, H) -> (L, N, D, H)
        X = t.emit("Reshape", [Y, t.i64([0, 0, -1])])
        for k, yh in enumerate(res[1:]):
            finals[k].append(yh)
    output = X
    hn = [t.emit("Concat", f, axis=0) if len(f) > 1 else f[0] for f in finals if f]
    if not batched:
        output = t.emit("Squeeze", [output, t.i64([1])])
        hn = [t.emit("Squeeze", [h, t.i64([1])]) for h in hn]
    elif m.batch_first:
        output = t.emit("Transpose", [output], perm=[1, 0, 2])
    t.bind(out[0], output, x.bax, x.bf)
    h_bax = 1 if batched and x.bax == n_axis else None
    finals_t = out[1] if lstm else (out[1],)
    for ft, h in zip(finals_t, hn):
        t.bind(ft, h, h_bax, x.bf if h_bax is not None else 1)


def _float_mask_value(t: _Tracer, mask: Any, dtype: np.dtype) -> tuple:
    """An attention mask as an additive float value (-inf where True means ignore), and its
    array when it is a constant."""
    if mask is None:
        return None, None
    mv = t.v(mask)
    if mv.const is not None:
        arr = mv.const
        if arr.dtype == bool:
            arr = np.where(arr, -np.inf, 0.0)
        arr = arr.astype(dtype)
        return t.const(arr, "attn_mask"), arr
    if mv.dtype == bool:
        ninf, zero = t.scalar(-np.inf, dtype), t.scalar(0.0, dtype)
        return t.emit("Where", [mv.name, ninf, zero]), None
    return (mv.name if mv.dtype == dtype else t.cast(mv.name, dtype)), None


def _mha_layer(t: _Tracer, m: Module, a: dict, out: tuple) -> None:
    from ..nn.layers.attention import _causal_keep  # noqa: PLC0415

    if a.get("key_padding_mask") is not None:
        raise t.error("MultiheadAttention with key_padding_mask")
    if m.bias_k is not None or m.add_zero_attn:
        raise t.error("MultiheadAttention with add_bias_kv or add_zero_attn")
    q, k, v = t.v(a["query"]), t.v(a["key"]), t.v(a["value"])
    batched = q.ndim == 3
    dt = q.dtype
    E_, h, hd = m.embed_dim, m.num_heads, m.head_dim

    def nle(val: _Value) -> str:  # -> (N, L, E)
        if not batched:
            return t.emit("Unsqueeze", [val.name, t.i64([0])])
        return val.name if m.batch_first else t.emit("Transpose", [val.name], perm=[1, 0, 2])

    b = m.in_proj_bias.data if m.in_proj_bias is not None else None
    if m._qkv_same_embed_dim:
        W = m.in_proj_weight.data
        ws = [W[i * E_ : (i + 1) * E_] for i in range(3)]
    else:
        ws = [m.q_proj_weight.data, m.k_proj_weight.data, m.v_proj_weight.data]
    scope = t.stack[-1][0] or "attn"
    heads = []
    names: dict = {}
    for i, (val, tag) in enumerate(((q, "q"), (k, "k"), (v, "v"))):
        src = names.get(val.name) or nle(val)
        names[val.name] = src
        y = t.emit("MatMul", [src, t.const(np.ascontiguousarray(ws[i].T), f"{scope}.{tag}_proj_T")])
        if b is not None:
            y = t.emit("Add", [y, t.const(b[i * E_ : (i + 1) * E_], f"{scope}.{tag}_bias")])
        y = t.emit("Reshape", [y, t.i64([0, 0, h, hd])])
        heads.append(t.emit("Transpose", [y], perm=[0, 2, 3, 1] if tag == "k" else [0, 2, 1, 3]))
    Q, Kt, V = heads
    scores = t.emit("MatMul", [t.emit("Mul", [Q, t.scalar(math.sqrt(1.0 / hd), dt)]), Kt])
    need_weights = bool(a.get("need_weights", True))
    L, S = (
        q.shape[0 if not batched or not m.batch_first else 1],
        k.shape[0 if not batched or not m.batch_first else 1],
    )
    if a.get("is_causal") and not need_weights:
        mask, arr = _float_mask_value(t, np.where(_causal_keep(L, S), 0.0, -np.inf).astype(dt), dt)
    else:
        mask, arr = _float_mask_value(t, a.get("attn_mask"), dt)
    dead = None
    if mask is not None:
        if arr is not None and arr.ndim == 3:
            mask = t.emit("Reshape", [mask, t.i64([-1, h, arr.shape[1], arr.shape[2]])])
        if arr is not None and not need_weights:  # PyTorch's safe softmax: a row that may attend
            rows = np.isneginf(arr).all(-1, keepdims=True)  # nothing gives zeros, not NaN
            if rows.any():
                arr2 = np.where(np.broadcast_to(rows, arr.shape), 0.0, arr).astype(dt)
                mask = t.const(arr2, "attn_mask")
                if arr2.ndim == 3:
                    mask = t.emit("Reshape", [mask, t.i64([-1, h, arr.shape[1], arr.shape[2]])])
                keep = (~rows).astype(dt)
                dead = t.const(
                    keep.reshape((-1, h) + keep.shape[1:]) if keep.ndim == 3 else keep, "attn_keep"
                )
        scores = t.emit("Add", [scores, mask])
    w = t.emit("Softmax", [scores], axis=-1)
    if dead is not None:
        w = t.emit("Mul", [w, dead])
    o = t.emit("Transpose", [t.emit("MatMul", [w, V])], perm=[0, 2, 1, 3])  # (N, L, h, hd)
    o = t.emit("Reshape", [o, t.i64([0, 0, E_])])
    o = _affine(t, o, t.v(m.out_proj.weight), m.out_proj.bias)
    if not batched:
        o = t.emit("Squeeze", [o, t.i64([0])])
    elif not m.batch_first:
        o = t.emit("Transpose", [o], perm=[1, 0, 2])
    t.bind(out[0], o, q.bax, q.bf)
    if need_weights and out[1] is not None:
        if a.get("average_attn_weights", True):
            w = t.reduce("ReduceMean", w, [1], False)  # (N, L, S)
        if not batched:
            w = t.emit("Squeeze", [w, t.i64([0])])
        # where the query's batch (or length) dim landed: N -> 0, L -> the weights' L dim
        l_axis = 0 if not batched or not m.batch_first else 1
        wl = (1 if a.get("average_attn_weights", True) else 2) - (0 if batched else 1)
        if q.bax is None:
            wb = None
        elif q.bax == l_axis:
            wb = wl
        else:
            wb = 0
        t.bind(out[1], w, wb, q.bf if wb is not None else 1)
