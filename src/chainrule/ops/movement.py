"""Ops that move data: reshape, permute, expand, squeeze, cat/split, flip, roll, tril/triu,
repeat, pad. Views share their input's memory (and version counter). Indexing, gather/scatter and
masks are in ``indexing.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..tensor import Tensor, wrap
from .reduce import norm_dims
from .util import promote_pair


def _shape_arg(shape: tuple) -> tuple:
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) like PyTorch."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _dim(d: int, ndim: int) -> int:
    if not -ndim <= d < ndim:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], but got {d})"
        )
    return d % ndim


# ----------------------------------------------------------------------------- shape changes


class Reshape(Op):
    is_view = True

    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    def backward(ctx, g, m):
        return m.reshape(g, ctx.shape)


class Permute(Op):
    is_view = True

    def forward(ctx, x, dims):
        ctx.dims = dims
        return np.transpose(x, dims)

    def backward(ctx, g, m):
        return m.permute(g, tuple(np.argsort(ctx.dims)))


class Expand(Op):
    is_view = True

    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return np.broadcast_to(x, shape)

    def backward(ctx, g, m):
        return m.sum_to(g, ctx.shape)


def reshape(input: Tensor, *shape: Any) -> Tensor:  # noqa: A002
    shape = _shape_arg(shape)
    if shape == input.data.shape:
        return input
    return apply(Reshape, input, shape=shape)


def view(input: Tensor, *shape: Any) -> Tensor:  # noqa: A002
    """Same as ``reshape`` (NumPy copies only when it must; PyTorch would refuse instead)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
        return view_dtype(input, dtypes.np_dtype(shape[0]))
    return reshape(input, *shape)


def view_dtype(input: Tensor, d: np.dtype) -> Tensor:  # noqa: A002
    return wrap(input.data.view(d))


def permute(input: Tensor, *dims: Any) -> Tensor:  # noqa: A002
    dims = _shape_arg(dims)
    nd = input.ndim
    if len(dims) != nd:
        raise RuntimeError(
            f"permute: number of dims don't match: the input has {nd} dims, got {len(dims)} ({dims})"
        )
    dims = tuple(_dim(d, nd) for d in dims)
    if len(set(dims)) != nd:
        raise RuntimeError(f"permute: repeated dim in {dims}")
    return apply(Permute, input, dims=dims)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:  # noqa: A002
    nd = input.ndim
    if nd == 0:
        return input
    d0, d1 = _dim(dim0, nd), _dim(dim1, nd)
    if d0 == d1:
        return input
    dims = list(range(nd))
    dims[d0], dims[d1] = d1, d0
    return apply(Permute, input, dims=tuple(dims))


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:  # noqa: A002
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but got {input.ndim}")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:  # noqa: A002
    nd = input.ndim
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src = [_dim(s, nd) for s in src]
    dst = [_dim(d, nd) for d in dst]
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, order)


moveaxis = movedim


def expand(input: Tensor, *sizes: Any) -> Tensor:  # noqa: A002
    """Broadcast to ``sizes`` without copying; -1 keeps a dim's size."""
    sizes = _shape_arg(sizes)
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({input.ndim})"
        )
    shape = tuple(
        input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes)
    )
    if shape == input.data.shape:
        return input
    return apply(Expand, input, shape=shape)


def broadcast_to(input: Tensor, shape: Sequence[int]) -> Tensor:  # noqa: A002
    return expand(input, tuple(shape))


def expand_as(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    return expand(input, other.shape)


def broadcast_tensors(*tensors: Tensor) -> tuple:
    shape = np.broadcast_shapes(*(t.shape for t in tensors))
    return tuple(expand(t, shape) for t in tensors)


def squeeze(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """Drop size-1 dims (only those in ``dim`` if given; a dim of another size is left alone)."""
    axes = norm_dims(dim, input.ndim)
    shape = tuple(s for i, s in enumerate(input.shape) if not (i in axes and s == 1))
    return reshape(input, shape)


def unsqueeze(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    nd = input.ndim + 1
    d = _dim(dim, nd)
    shape = list(input.shape)
    shape.insert(d, 1)
    return reshape(input, tuple(shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = _dim(start_dim, input.ndim), _dim(end_dim, input.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.shape
    n = 1
    for x in shape[s : e + 1]:
        n *= x
    return reshape(input, shape[:s] + (n,) + shape[e + 1 :])


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:  # noqa: A002
    d = _dim(dim, input.ndim)
    shape = input.shape
    sizes = list(sizes)
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = shape[d] // known if known else 0
    if int(np.prod(sizes)) != shape[d]:
        raise RuntimeError(
            f"unflatten: sizes {tuple(sizes)} don't multiply up to the size of dim {dim} ({shape[d]})"
        )
    return reshape(input, shape[:d] + tuple(sizes) + shape[d + 1 :])


# ----------------------------------------------------------------------------- joining, splitting


class Cat(Op):
    def forward(ctx, *xs, dim):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in xs]
        return np.concatenate(xs, axis=dim)

    def backward(ctx, g, m):
        return tuple(m.split(g, ctx.sizes, ctx.dim))


class Split(Op):
    """Multi-output: the pieces of ``x`` along ``dim`` (views); missing gradients count as 0."""

    is_view = True

    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        bounds = np.cumsum(sizes)[:-1].tolist()
        return tuple(np.split(x, bounds, axis=dim))

    def backward(ctx, gs, m):
        return m.cat(list(gs), ctx.dim)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    # PyTorch's legacy rule: 1-d empty tensors are skipped
    nonempty = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
    if nonempty and len(nonempty) != len(tensors):
        tensors = nonempty
    ref = tensors[0]
    d = _dim(dim, ref.ndim) if ref.ndim else 0
    for t in tensors[1:]:
        if t.data.dtype != ref.data.dtype:
            tensors = _promote_all(tensors)
            break
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(
            a != b for j, (a, b) in enumerate(zip(t.shape, ref.shape)) if j != d
        ):
            raise RuntimeError(
                f"cat: sizes of tensors must match except in dimension {dim}: tensor 0 has shape "
                f"{tuple(ref.shape)} and tensor {i} has shape {tuple(t.shape)}"
            )
    if len(tensors) == 1:
        return tensors[0] * 1 if tensors[0].requires_grad else wrap(tensors[0].data.copy())
    return apply(Cat, *tensors, dim=d)


concat = concatenate = cat


def _promote_all(tensors: list) -> list:
    d = tensors[0]
    for t in tensors[1:]:
        d, _ = promote_pair(d, t)
    return [promote_pair(t, d)[0] for t in tensors]


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack(): expected a non-empty list of Tensors")
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {tuple(shape)} at entry 0 "
                f"and {tuple(t.shape)} at entry {i}"
            )
    d = _dim(dim, len(shape) + 1)
    return cat([unsqueeze(t, d) for t in tensors], d)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple:
    """Pieces of ``split_size`` along ``dim`` (the last may be smaller), or of the listed sizes."""
    d = _dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        s = int(split_size_or_sections)
        if s <= 0 and n > 0:
            raise RuntimeError(f"split: split_size must be positive, got {s}")
        sizes = [s] * (n // s) + ([n % s] if n % s else []) if n else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size "
                f"at dimension {dim}), but got split_sizes={sizes}"
            )
    if len(sizes) == 1:
        return (tensor,)
    return apply(Split, tensor, sizes=sizes, dim=d)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:  # noqa: A002
    n = input.shape[_dim(dim, input.ndim)]
    size = -(-n // chunks) if n else 1
    return split(input, max(size, 1), dim)


def tensor_split(input: Tensor, sections: int, dim: int = 0) -> tuple:  # noqa: A002
    n = input.shape[_dim(dim, input.ndim)]
    q, r = divmod(n, sections)
    return split(input, [q + 1] * r + [q] * (sections - r), dim)


def unbind(input: Tensor, dim: int = 0) -> tuple:  # noqa: A002
    d = _dim(dim, input.ndim)
    n = input.shape[d]
    if n == 0:
        return ()
    if n == 1:
        return (squeeze(input, d),)
    return tuple(squeeze(p, d) for p in split(input, 1, d))


# ----------------------------------------------------------------------------- rearranging


class Flip(Op):
    def forward(ctx, x, dims):
        ctx.dims = dims
        return np.flip(x, dims) if dims else x.copy()

    def backward(ctx, g, m):
        return m.flip(g, ctx.dims)


def flip(input: Tensor, dims: Any) -> Tensor:  # noqa: A002
    if isinstance(dims, int):
        dims = (dims,)
    return apply(Flip, input, dims=tuple(_dim(d, input.ndim) for d in dims) if input.ndim else ())


def fliplr(input: Tensor) -> Tensor:  # noqa: A002
    return flip(input, (1,))


def flipud(input: Tensor) -> Tensor:  # noqa: A002
    return flip(input, (0,))


class Roll(Op):
    def forward(ctx, x, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return np.roll(x, shifts, dims)

    def backward(ctx, g, m):
        neg = tuple(-s for s in ctx.shifts) if isinstance(ctx.shifts, tuple) else -ctx.shifts
        return m.roll(g, neg, ctx.dims)


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:  # noqa: A002
    if isinstance(shifts, list):
        shifts = tuple(shifts)
    if isinstance(dims, list):
        dims = tuple(dims)
    return apply(Roll, input, shifts=shifts, dims=dims)


class Tril(Op):
    def forward(ctx, x, diagonal, upper):
        ctx.diagonal, ctx.upper = diagonal, upper
        return (np.triu if upper else np.tril)(x, diagonal)

    def backward(ctx, g, m):
        return m.tri(g, ctx.diagonal, ctx.upper)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    if input.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return apply(Tril, input, diagonal=diagonal, upper=False)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    if input.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return apply(Tril, input, diagonal=diagonal, upper=True)


class Repeat(Op):
    """torch's ``repeat`` (NumPy's ``tile``): the gradient sums the copies."""

    def forward(ctx, x, reps):
        shape = (1,) * (len(reps) - x.ndim) + x.shape
        ctx.shape, ctx.xshape, ctx.reps = shape, x.shape, reps
        return np.tile(x.reshape(shape), reps)

    def backward(ctx, g, m):
        split = []
        for r, s in zip(ctx.reps, ctx.shape):
            split += [r, s]
        gs = m.reshape(g, tuple(split))
        gs = m.sum(gs, tuple(range(0, 2 * len(ctx.reps), 2)), False)
        return m.reshape(gs, ctx.xshape)


def repeat(input: Tensor, *sizes: Any) -> Tensor:  # noqa: A002
    reps = _shape_arg(sizes)
    if len(reps) < input.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor"
        )
    return apply(Repeat, input, reps=reps)


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:  # noqa: A002
    dims = tuple(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, dims)


def repeat_interleave(input: Tensor, repeats: int, dim: Any = None) -> Tensor:  # noqa: A002
    if dim is None:
        input, dim = flatten(input), 0
    d = _dim(dim, input.ndim)
    if isinstance(repeats, Tensor):  # (the output's size depends on the values: a device sync)
        repeats = backend.to_host(repeats.data)
    from .indexing import index_select  # noqa: PLC0415 - indexing imports this module

    idx = np.repeat(np.arange(input.shape[d]), repeats)
    return index_select(input, d, idx)


class Pad(Op):
    """Constant padding; negative amounts crop. The backward is the same op with negated amounts."""

    def forward(ctx, x, pads, value):
        ctx.pads = pads
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
        out = np.pad(x, widths, constant_values=value) if any(w != (0, 0) for w in widths) else x
        crop = tuple(
            slice(-min(lo, 0), out.shape[i] + min(hi, 0)) for i, (lo, hi) in enumerate(pads)
        )
        return out[crop] if any(lo < 0 or hi < 0 for lo, hi in pads) else out

    def backward(ctx, g, m):
        return m.pad_raw(g, [(-lo, -hi) for lo, hi in ctx.pads])


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:  # noqa: A002
    """Pad the last len(pad)/2 dims: ``pad = (left, right, top, bottom, ...)``, last dim first.

    Modes: 'constant' (with ``value``), 'reflect', 'replicate', 'circular'.
    """
    pad = list(pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise RuntimeError(f"pad: padding length must be even and at most 2*ndim, got {len(pad)}")
    pads = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        pads[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    if mode == "constant":
        return apply(Pad, input, pads=pads, value=0.0 if value is None else value)
    from .indexing import index_select  # noqa: PLC0415 - indexing imports this module

    out = input
    for d, (lo, hi) in enumerate(pads):
        if lo == hi == 0:
            continue
        n = out.shape[d]
        if mode == "reflect":
            if lo >= n or hi >= n:
                raise RuntimeError(
                    f"pad: reflect padding ({lo}, {hi}) must be smaller than the dim ({n})"
                )
            idx = np.concatenate(
                [np.arange(lo, 0, -1), np.arange(n), np.arange(n - 2, n - 2 - hi, -1)]
            )
        elif mode == "replicate":
            idx = np.concatenate([np.zeros(lo, int), np.arange(n), np.full(hi, n - 1)])
        elif mode == "circular":
            idx = np.arange(-lo, n + hi) % n
        else:
            raise ValueError(f"pad: unknown mode {mode!r}")
        out = index_select(out, d, idx.astype(np.int64))
    return out
