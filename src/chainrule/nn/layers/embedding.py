"""``Embedding``: a lookup table of learnable vectors, and ``embedding``, its functional form.

The lookup is one node; its backward scatters the output gradient into the rows that were
looked up, summing the contributions of repeated indices (on the CPU one ``bincount`` over the
distinct rows: no Python loop, no ``np.add.at``; on a GPU an atomic ``add.at``, since the
distinct rows have a data-dependent count that the host would have to wait for). The padding row
gets no gradient. The scatter is an op too, whose own backward is the lookup again, so
``create_graph`` works through embeddings.

Index range on CUDA: as for cross-entropy's targets (ops/loss.py), checking the indices on the
host would stop the GPU every batch. So on device arrays an index outside [0, num_embeddings) is
not checked: its output row is NaN and its gradient goes to row 0 as NaN, never a silently wrong
number. ``detect_anomaly`` or ``CHAINRULE_CUDA_STRICT=1`` run the CPU's check (an IndexError, one
sync per call); on the CPU it always runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import backend, dtypes
from ...autograd.engine import Op, apply
from ...autograd.grad_mode import no_grad
from ...ops.loss import strict_device_checks
from ...tensor import Tensor, check_device
from .. import init
from ..module import Module, Parameter, place


def _grad_factor(
    index: np.ndarray,
    num: int,
    padding_idx: int | None,
    scale: bool,
    dtype: Any,
    bad: Any = None,
) -> np.ndarray | None:
    """Per looked-up position: 0 at the padding index, 1/count(index) with scale_grad_by_freq,
    NaN where ``bad`` (device indices out of range, sent to row 0)."""
    if padding_idx is None and not scale and bad is None:
        return None
    if type(index) is not np.ndarray:
        return _device_grad_factor(index, num, padding_idx, scale, dtype, bad)
    f = np.ones(index.shape, dtype)
    if scale:
        counts = np.bincount(index.ravel(), minlength=num)
        f /= counts[index]
    if padding_idx is not None:
        f[index == padding_idx] = 0
    return f[..., None]


def _device_grad_factor(
    index: Any, num: int, padding_idx: int | None, scale: bool, dtype: Any, bad: Any
) -> Any:
    """``_grad_factor`` without a host wait (bincount and a boolean mask would need one)."""
    xp = backend.array_module(index)
    f = xp.ones(index.shape, dtype)
    if scale:
        flat = index.ravel()
        counts = xp.zeros(num, np.float64)  # float64 counts: exact, and 1/c rounds as the CPU's
        np.add.at(counts, flat, xp.ones(flat.size, np.float64))
        f /= counts[index]
    if padding_idx is not None:
        f = xp.where(index == padding_idx, 0, f).astype(dtype, copy=False)
    if bad is not None:
        f = xp.where(bad, np.nan, f).astype(dtype, copy=False)
    return f[..., None]


def _scatter_rows(
    g: np.ndarray, index: np.ndarray, num: int, factor: np.ndarray | None
) -> np.ndarray:
    """out[r] = sum of factor_i * g_i over the positions i with index_i == r; out: (num, D)."""
    D = g.shape[-1]
    g2 = g.reshape(-1, D) if factor is None else (g * factor).reshape(-1, D)
    flat = index.ravel()
    xp = backend.array_module(g)
    if xp is not np:  # atomic adds in float32 (float64 for float64), as torch's accumulation
        acc = np.float64 if g.dtype == np.float64 else np.float32
        out = xp.zeros((num, D), acc)
        if flat.size and D:
            np.add.at(out, flat, g2.astype(acc, copy=False))
        return out.astype(g.dtype, copy=False)
    out = xp.zeros((num, D), g.dtype)
    if flat.size == 0 or D == 0:
        return out
    rows, inv = np.unique(flat, return_inverse=True)
    lin = inv.reshape(-1, 1) * D + xp.arange(D)
    acc = np.bincount(lin.ravel(), weights=g2.ravel(), minlength=rows.size * D)
    out[rows] = acc.reshape(rows.size, D)
    return out


class EmbeddingBackward(Op):
    """The scatter (N..., D) -> (num, D) that is the lookup's gradient; its own gradient is the
    lookup of the incoming gradient (times the same per-position factor)."""

    name = "embedding_backward"

    def forward(ctx, g: Any, index: Any, num: Any, factor: Any) -> Any:  # noqa: N805
        ctx.index, ctx.factor = index, factor
        return _scatter_rows(g, index, num, factor)

    def backward(ctx, gg: Any, m: Any) -> Any:  # noqa: N805
        rows = m.getitem(gg, ctx.index, False)
        return rows if ctx.factor is None else rows * ctx.factor


class EmbeddingLookup(Op):
    """weight (num, D), index (N...) of integers -> weight[index] (N..., D)."""

    name = "embedding"

    def forward(
        ctx,  # noqa: N805
        weight: Any,
        index: Any,
        padding_idx: Any,
        scale_grad_by_freq: Any,
        bad: Any = None,
    ) -> Any:
        """``bad``: on a GPU, where the caller's indices were out of range (``index`` holds 0
        there); those output rows are NaN."""
        ctx.index, ctx.num = index, weight.shape[0]
        ctx.pad, ctx.scale, ctx.bad = padding_idx, scale_grad_by_freq, bad
        out = weight[index]
        if bad is not None and out.dtype.kind in "fcV":
            out = np.where(bad[..., None], np.nan, out).astype(out.dtype, copy=False)
        return out

    def backward(ctx, g: Any, m: Any) -> Any:  # noqa: N805
        dtype = g.data.dtype if isinstance(g, Tensor) else g.dtype
        factor = _grad_factor(ctx.index, ctx.num, ctx.pad, ctx.scale, dtype, ctx.bad)
        if m.graph:
            return apply(EmbeddingBackward, g, index=ctx.index, num=ctx.num, factor=factor)
        return _scatter_rows(g, ctx.index, ctx.num, factor)


def _renorm_(weight: Tensor, index: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Scale the looked-up rows whose ``norm_type``-norm exceeds ``max_norm`` down to it, in
    place and without recording (PyTorch's ``embedding_renorm_``)."""
    if type(index) is not np.ndarray:
        _device_renorm_(weight, index, max_norm, norm_type)
        return
    rows = np.unique(index)
    w = weight.data
    sub = w[rows]
    if sub.size:
        norms = np.linalg.norm(sub, ord=norm_type, axis=1)
    else:
        norms = backend.array_module(w).zeros(0)
    big = norms > max_norm
    if big.any():
        scale = max_norm / (norms[big] + 1e-7)
        w[rows[big]] = sub[big] * scale[:, None].astype(w.dtype)
        weight._vc[0] += 1


def _device_renorm_(weight: Tensor, index: Any, max_norm: float, norm_type: float) -> None:
    """``_renorm_`` without a host wait: every looked-up position's row is rescaled (by 1 when
    within ``max_norm``; repeated rows write the same values). Always a new version of the
    weight, as torch's in-place ``embedding_renorm_``."""
    w = weight.data
    flat = index.ravel()
    sub = w[flat]
    if sub.size:
        norms = backend.array_module(w).linalg.norm(sub, ord=norm_type, axis=1)
        scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1)
        w[flat] = sub * scale[:, None].astype(w.dtype)
    weight._vc[0] += 1


def embedding(
    input: Any,  # noqa: A002
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the integer indices ``input``:
    output shape ``input.shape + (embedding_dim,)``.

    ``padding_idx`` (negative counts from the end) gets no gradient; ``max_norm`` renormalises
    the looked-up rows in place first; ``scale_grad_by_freq`` divides each row's gradient by how
    often its index occurs in ``input``. Sparse gradients are not supported.
    """
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported; use sparse=False")
    if weight.ndim != 2:
        raise RuntimeError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {tuple(weight.shape)}"
        )
    num = weight.shape[0]
    # a copy: the backward must see the indices of this call even if the caller's change;
    # plain lists and host arrays go to the table's device, index tensors must be there already
    if isinstance(input, Tensor):
        err = backend.same_device_error("embedding", [input.data, weight.data])
        if err is not None:
            raise err
        src = input.data
    else:
        src = input
    index = backend.array_module(weight.data).array(src)
    if index.dtype.kind not in "iu":
        raise RuntimeError(
            "Expected tensor for argument #1 'indices' to have one of the following scalar types: "
            f"Long, Int; but got {index.dtype} instead"
        )
    kw = {}
    if type(index) is np.ndarray or strict_device_checks():
        _check_range(index, num)
    elif index.size:  # out-of-range device indices: NaN rows (module docstring), no host wait
        bad = (index < 0) | (index >= num)
        index = np.where(bad, 0, index)
        kw["bad"] = bad
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx = padding_idx + num if padding_idx < 0 else padding_idx
    if max_norm is not None:
        with no_grad():
            _renorm_(weight, index, float(max_norm), float(norm_type))
    return apply(
        EmbeddingLookup,
        weight,
        index=index,
        padding_idx=padding_idx,
        scale_grad_by_freq=bool(scale_grad_by_freq),
        **kw,
    )


def _check_range(index: Any, num: int) -> None:
    """The IndexError for indices outside [0, num) (on a GPU: one host wait)."""
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= num:
            raise IndexError(
                f"index out of range in self: embedding index {lo if lo < 0 else hi} for a "
                f"table of {num} rows"
            )


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by index.

    Input: integer tensor of any shape; output: that shape + (embedding_dim,). The weight is
    initialised N(0, 1) with the ``padding_idx`` row (if any; negative counts from the end) set
    to zero, and that row gets no gradient. Arguments as PyTorch's ``nn.Embedding``.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: Tensor | None = None,
        _freeze: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_device(device)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise AssertionError("Padding_idx must be within num_embeddings")
            if padding_idx < 0:
                padding_idx = num_embeddings + padding_idx
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        if sparse:
            raise NotImplementedError(
                "Embedding: sparse gradients are not supported; use sparse=False"
            )
        self.sparse = sparse
        if _weight is None:
            d = dtypes.np_dtype(dtype) if dtype is not None else dtypes.defaults.float.np
            self.weight = Parameter(
                np.empty((num_embeddings, embedding_dim), d), requires_grad=not _freeze
            )
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise AssertionError(
                    "Shape of weight does not match num_embeddings and embedding_dim"
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)
        place(self, device)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0
            self.weight._vc[0] += 1

    def forward(self, input: Any) -> Tensor:  # noqa: A002
        index = input.data if isinstance(input, Tensor) else np.asarray(input)
        if index.dtype.kind not in "iu":
            raise TypeError(
                f"{self!r} expects integer indices (any shape), got dtype {index.dtype} "
                f"of shape {tuple(index.shape)}"
            )
        return embedding(
            input,
            self.weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        return s

    @classmethod
    def from_pretrained(
        cls,
        embeddings: Tensor,
        freeze: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> Embedding:
        """An Embedding holding ``embeddings`` (2-D), frozen unless ``freeze=False``."""
        if embeddings.ndim != 2:
            raise ValueError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        return cls(
            rows,
            cols,
            _weight=embeddings,
            _freeze=freeze,
            padding_idx=padding_idx,
            max_norm=max_norm,
            norm_type=norm_type,
            scale_grad_by_freq=scale_grad_by_freq,
            sparse=sparse,
        )
