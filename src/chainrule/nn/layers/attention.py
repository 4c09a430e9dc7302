"""Attention with PyTorch's semantics and parameter names: ``scaled_dot_product_attention``,
``MultiheadAttention``, ``TransformerEncoderLayer`` and ``TransformerEncoder``.

Everything is composed from recorded primitives (fused linear, batched matmul, fused softmax), so
gradients, double gradients and hooks come for free. Mask conventions follow PyTorch, which
differ between the two entry points: for ``scaled_dot_product_attention`` a boolean mask marks
the positions that TAKE PART; for ``MultiheadAttention`` (``attn_mask``, ``key_padding_mask``) a
boolean True marks a position to IGNORE. Float masks are added to the scores in both.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import backend, creation, dtypes
from ...ops.elementwise import where
from ...ops.linear import linear
from ...ops.movement import cat, chunk, repeat_interleave, split, squeeze, transpose, unsqueeze
from ...ops.nn import softmax
from ...tensor import Tensor, check_device, wrap
from .. import init
from ..containers import ModuleList
from ..module import Module, Parameter, place
from .dropout import Dropout
from .linear import Linear
from .normalization import LayerNorm

# ----------------------------------------------------------------------------- masks


def _causal_keep(L: int, S: int, xp: Any = np) -> Any:
    """True where query i may attend key j (j <= i), PyTorch's ``ones(L, S).tril()``; an array
    of ``xp`` (NumPy or CuPy)."""
    return xp.tril(xp.ones((L, S), dtype=bool))


def _causal_bias(L: int, S: int, dtype: Any, xp: Any) -> Any:
    """The additive causal mask: 0 where j <= i, -inf above the diagonal."""
    return xp.where(_causal_keep(L, S, xp), 0.0, -np.inf).astype(dtype)


def _as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """A mask as a Tensor; array-likes go to ``like``'s device."""
    if isinstance(x, Tensor):
        return x
    if like is None or backend.is_device_array(x):
        return wrap(x if backend.is_device_array(x) else np.asarray(x))
    return wrap(backend.array_module(like.data).asarray(x))


def _float_mask(
    mask: Any, dtype: np.dtype, true_means_ignore: bool, name: str, like: Tensor | None = None
) -> Tensor | None:
    """A boolean or float mask as an additive float mask of ``dtype`` (-inf where ignored), on
    the mask's device (array-likes: ``like``'s)."""
    if mask is None:
        return None
    mask = _as_tensor(mask, like)
    kind = mask.data.dtype.kind
    if kind == "b":
        ignore = mask.data if true_means_ignore else ~mask.data
        return wrap(np.where(ignore, -np.inf, 0.0).astype(dtype))
    if not dtypes.is_floating(mask.data.dtype):
        raise AssertionError(f"only bool and floating types of {name} are supported")
    if mask.data.dtype != dtype:
        return mask.to(dtypes._FROM_NP[np.dtype(dtype)])
    return mask


def generate_square_subsequent_mask(sz: int, device: Any = None, dtype: Any = None) -> Tensor:
    """The float causal mask PyTorch's transformers use: 0 on and below the diagonal, -inf above."""
    d = dtypes.np_dtype(dtype) if dtype is not None else dtypes.defaults.float.np
    return wrap(_causal_bias(sz, sz, d, backend.xp_for(check_device(device))))


# ----------------------------------------------------------------------------- functional


def _dropout(x: Tensor, p: float) -> Tensor:
    from .. import functional as F  # noqa: PLC0415 - functional imports this module

    return F.dropout(x, p, True)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(Q K^T * scale + mask) V over the last two dims; leading dims broadcast.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). ``attn_mask``: bool
    (True = may attend) or float (added), broadcastable to (..., L, S). ``is_causal`` masks
    j > i (no explicit mask allowed with it). ``scale`` defaults to 1/sqrt(E). Dropout is applied
    to the attention weights whenever ``dropout_p > 0`` (as PyTorch: pass 0.0 in evaluation).
    A query row that may attend nothing gives zeros (PyTorch's safe softmax), not NaN.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise RuntimeError(
            "scaled_dot_product_attention: query, key and value must be at least 2-D"
        )
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    if key.shape[-1] != E:
        raise RuntimeError(
            f"scaled_dot_product_attention: query and key must have the same last dim, got "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    if value.shape[-2] != S:
        raise RuntimeError(
            f"scaled_dot_product_attention: key and value must have the same sequence length, got "
            f"{tuple(key.shape)} and {tuple(value.shape)}"
        )
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or hq % value.shape[-3]:
            raise RuntimeError(
                f"enable_gqa: {hq} query heads are not a multiple of {hk} key/value heads"
            )
        key = repeat_interleave(key, hq // hk, -3)
        value = repeat_interleave(value, hq // value.shape[-3], -3)
    dt = query.data.dtype
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError(
                "_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True"
            )
        attn_mask = wrap(_causal_keep(L, S, backend.array_module(query.data)))
    bias = _float_mask(attn_mask, dt, False, "attn_mask", query)
    s = 1.0 / math.sqrt(E) if scale is None else scale
    out, _ = _attend(query * s, key, value, bias, dropout_p, safe=True)
    return out


def _attend(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, dropout_p: float, safe: bool
) -> tuple:
    """softmax(q k^T + bias) v for pre-scaled q; returns (output, attention weights)."""
    scores = q @ transpose(k, -2, -1)
    dead = None
    if bias is not None:
        if safe:
            dead = np.isneginf(bias.data).all(-1, keepdims=True)  # rows that may attend nothing
            # give them a finite row (0), and zero their weights below; on a GPU always (the
            # same result when no row is dead), so that no host sync asks whether one is
            if type(dead) is not np.ndarray or dead.any():
                bias = where(wrap(np.broadcast_to(dead, bias.shape)), 0.0, bias)
            else:
                dead = None
        scores = scores + bias
    w = softmax(scores, -1)
    if dead is not None:
        w = w * wrap((~dead).astype(w.data.dtype))
    if dropout_p > 0.0:
        w = _dropout(w, dropout_p)
    return w @ v, w


# ----------------------------------------------------------------------------- MultiheadAttention


def _param(shape: tuple, dtype: Any, device: Any) -> Parameter:
    check_device(device)
    return Parameter(creation.empty(*shape, dtype=dtype or dtypes.defaults.float))


class MultiheadAttention(Module):
    """PyTorch's ``nn.MultiheadAttention``: attention over ``num_heads`` heads of size
    embed_dim // num_heads, with input projections packed in ``in_proj_weight`` (3E, E) (or
    ``q/k/v_proj_weight`` when kdim/vdim differ from embed_dim) and ``out_proj``.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (attn_output, attn_weights or None).
    query (L, N, E) (or (N, L, E) with batch_first, or unbatched (L, E)); key/value (S, N, kdim/
    vdim). ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * num_heads, L, S): bool
    True = ignore, float = added. Weights (N, L, S) averaged over heads, else (N, heads, L, S).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                f"num_heads={num_heads} instead"
            )
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads, self.dropout, self.batch_first = num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = _param((embed_dim, embed_dim), dtype, device)
            self.k_proj_weight = _param((embed_dim, self.kdim), dtype, device)
            self.v_proj_weight = _param((embed_dim, self.vdim), dtype, device)
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = _param((3 * embed_dim, embed_dim), dtype, device)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = _param((3 * embed_dim,), dtype, device)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        if add_bias_kv:
            self.bias_k = _param((1, 1, embed_dim), dtype, device)
            self.bias_v = _param((1, 1, embed_dim), dtype, device)
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()
        place(self, device)

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple:
        E = self.embed_dim
        b = self.in_proj_bias
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:  # self-attention: one GEMM
                return tuple(chunk(linear(query, w, b), 3, -1))
            ws = split(w, E, 0)
            bs = split(b, E, 0) if b is not None else (None,) * 3
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
            bs = split(b, E, 0) if b is not None else (None,) * 3
        return tuple(linear(x, wi, bi) for x, wi, bi in zip((query, key, value), ws, bs))

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple:
        name = type(self).__name__
        if query.ndim not in (2, 3):
            raise AssertionError(
                f"{name}: query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query tensor"
            )
        batched = query.ndim == 3
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise AssertionError(
                f"{name}: For {'batched (3-D)' if batched else 'unbatched (2-D)'} `query`, expected "
                f"`key` and `value` to be {query.ndim}-D but found {key.ndim}-D and {value.ndim}-D "
                "tensors respectively"
            )
        same_kv, same_qk = key is value, query is key
        if batched and self.batch_first:
            query = transpose(query, 0, 1)
            key = query if same_qk else transpose(key, 0, 1)
            value = key if same_kv else transpose(value, 0, 1)
        if not batched:
            query = unsqueeze(query, 1)
            key = query if same_qk else unsqueeze(key, 1)
            value = key if same_kv else unsqueeze(value, 1)
            if key_padding_mask is not None:
                key_padding_mask = unsqueeze(_as_tensor(key_padding_mask, query), 0)
        L, N, E = query.shape
        S = key.shape[0]
        h, hd = self.num_heads, self.head_dim
        if E != self.embed_dim:
            raise AssertionError(
                f"{name}: was expecting embedding dimension of {self.embed_dim}, but got {E}"
            )
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(
                f"{name}: key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}"
            )
        dt = query.data.dtype
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                "module method `generate_square_subsequent_mask` to create this mask."
            )
        kpm = _float_mask(key_padding_mask, dt, True, "key_padding_mask", query)
        if is_causal and kpm is None and not need_weights:  # PyTorch: SDPA's own
            mask = wrap(_causal_bias(L, S, dt, backend.array_module(query.data)))
        else:
            mask = _float_mask(attn_mask, dt, True, "attn_mask", query)
        if mask is not None:
            if mask.ndim == 2:
                if tuple(mask.shape) != (L, S):
                    raise RuntimeError(
                        f"The shape of the 2D attn_mask is {tuple(mask.shape)}, but should be {(L, S)}."
                    )
                mask = unsqueeze(mask, 0)
            elif mask.ndim == 3:
                if tuple(mask.shape) != (N * h, L, S):
                    raise RuntimeError(
                        f"The shape of the 3D attn_mask is {tuple(mask.shape)}, but should be {(N * h, L, S)}."
                    )
            else:
                raise RuntimeError(f"attn_mask's dimension {mask.ndim} is not supported")

        q, k, v = self._project(query, key, value)
        if self.bias_k is not None:
            k = cat([k, self.bias_k.expand(1, N, E)], 0)
            v = cat([v, self.bias_v.expand(1, N, E)], 0)
            mask = _pad_last(mask)
            kpm = _pad_last(kpm)
        # heads: (L, N, E) -> (N * h, L, hd), as PyTorch lays them out
        q = transpose(q.reshape(L, N * h, hd), 0, 1)
        k = transpose(k.reshape(k.shape[0], N * h, hd), 0, 1)
        v = transpose(v.reshape(v.shape[0], N * h, hd), 0, 1)
        if self.add_zero_attn:
            z = wrap(backend.array_module(k.data).zeros((N * h, 1, hd), dt))
            k, v = cat([k, z], 1), cat([v, z], 1)
            mask, kpm = _pad_last(mask), _pad_last(kpm)
        S = k.shape[1]
        if kpm is not None:
            if tuple(kpm.shape) != (N, S):
                raise AssertionError(
                    f"expecting key_padding_mask shape of {(N, S)}, but got {tuple(kpm.shape)}"
                )
            kpm = kpm.reshape(N, 1, 1, S).expand(N, h, 1, S).reshape(N * h, 1, S)
            mask = kpm if mask is None else mask + kpm
        p = self.dropout if self.training else 0.0
        out, w = _attend(q * math.sqrt(1.0 / hd), k, v, mask, p, safe=not need_weights)
        out = transpose(out, 0, 1).reshape(L * N, E)
        out = linear(out, self.out_proj.weight, self.out_proj.bias).reshape(L, N, E)
        weights = None
        if need_weights:
            weights = w.reshape(N, h, L, S)
            if average_attn_weights:
                weights = weights.mean(1)
            if not batched:
                weights = squeeze(weights, 0)
        if not batched:
            out = squeeze(out, 1)
        elif self.batch_first:
            out = transpose(out, 0, 1)
        return out, weights


def _pad_last(mask: Tensor | None) -> Tensor | None:
    """One more key position that everyone may attend (a zero column at the end)."""
    if mask is None:
        return None
    z = wrap(backend.array_module(mask.data).zeros(mask.shape[:-1] + (1,), mask.data.dtype))
    return cat([mask, z], -1)


# ----------------------------------------------------------------------------- Transformer encoder


def _activation(activation: Any) -> Callable:
    from .. import functional as F  # noqa: PLC0415

    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if isinstance(activation, str):
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return activation


class TransformerEncoderLayer(Module):
    """PyTorch's ``nn.TransformerEncoderLayer``: self-attention then a feed-forward block
    (linear1 -> activation -> dropout -> linear2), each with dropout, a residual connection and
    LayerNorm, after the block (default) or before it (``norm_first``).

    forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: Any = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)

    def forward(
        self,
        src: Tensor,
        src_mask: Any = None,
        src_key_padding_mask: Any = None,
        is_causal: bool = False,
    ) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(
        self, x: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool
    ) -> Tensor:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of ``encoder_layer`` (each with its own weights), then
    ``norm`` if given. forward(src, mask=None, src_key_padding_mask=None, is_causal=None); with
    ``is_causal=None`` a mask equal to the causal mask is detected, as PyTorch does.
    """

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check

    def forward(
        self,
        src: Tensor,
        mask: Any = None,
        src_key_padding_mask: Any = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        dt = src.data.dtype
        kpm = _float_mask(src_key_padding_mask, dt, True, "src_key_padding_mask", src)
        mask = _float_mask(mask, dt, True, "mask", src)
        if is_causal is None:
            is_causal = False
            if mask is not None:
                L = src.shape[1 if (self.layers[0].self_attn.batch_first and src.ndim == 3) else 0]
                if tuple(mask.shape) == (L, L):
                    causal = _causal_bias(L, L, mask.data.dtype, backend.array_module(mask.data))
                    is_causal = bool((mask.data == causal).all())
        out = src
        for mod in self.layers:
            out = mod(out, src_mask=mask, is_causal=is_causal, src_key_padding_mask=kpm)
        if self.norm is not None:
            out = self.norm(out)
        return out
