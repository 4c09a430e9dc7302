"""Converters of the movement and indexing ops: reshape, permute, expand, x[i], cat, pad ..."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ops import indexing as Ix
from ..ops import movement as M
from .math_ops import _c
from .tracer import _bcast, _conv, _same, _Tracer, _Value

_I64_MAX = 2**63 - 1
_I64_MIN = -(2**63)


# ------------------------------------------------------------------ movement


def _prod(xs: Sequence[int]) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


@_conv(M.Reshape)
def _reshape(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    shape = list(outs[0].shape)
    if x.bax is None:
        return [(t.emit("Reshape", [x.name, t.i64(shape)]), None, 1)]
    k, B = x.bax, t.batch
    P = _prod(x.shape[:k])
    cands = [
        j for j in range(len(shape)) if _prod(shape[:j]) == P and shape[j] and shape[j] % B == 0
    ]
    if not cands:
        raise t.error(
            f"reshape {tuple(x.shape)} -> {tuple(shape)} merges the batch dim (dim {k}) with the "
            "dims before it, which a dynamic batch cannot follow (pass dynamic_batch=False)"
        )
    j = next((j for j in cands if shape[j] == x.shape[k]), cands[0])
    target = list(shape)
    target[j] = -1
    return [(t.emit("Reshape", [x.name, t.i64(target)]), j, shape[j] // B)]


@_conv(M.Permute)
def _permute(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    dims = [int(d) for d in kw["dims"]]
    bax = dims.index(x.bax) if x.bax is not None else None
    return [(t.emit("Transpose", [x.name], perm=dims), bax, x.bf)]


@_conv(M.Expand)
def _expand(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    shape = list(kw["shape"])
    bax = None
    if x.bax is not None:
        bax = x.bax + len(shape) - x.ndim
        shape[bax] = 1  # broadcasting keeps the input's (batch) size
    return [(t.emit("Expand", [x.name, t.i64(shape)]), bax, x.bf)]


def _static_slice(s: slice) -> bool:
    """Whether x[s] along a dim has a length that does not depend on that dim's size."""
    if s.step not in (None, 1):
        return False
    start = s.start or 0
    if start >= 0:
        return s.stop is not None and s.stop >= 0
    return s.stop is None or s.stop < 0


@_conv(Ix.GetItem, Ix.GetItemView)
def _getitem(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    idx = kw["index"]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    consumed = 0
    for i in items:
        if isinstance(i, np.ndarray) and i.dtype == bool:
            raise t.error("indexing with a boolean mask (its result size depends on the data)")
        if i is not None and i is not Ellipsis:
            consumed += 1
    rest = [slice(None)] * (x.ndim - consumed)
    ell = [n for n, i in enumerate(items) if i is Ellipsis]
    items = items[: ell[0]] + rest + items[ell[0] + 1 :] if ell else items + rest
    arrays = [n for n, i in enumerate(items) if isinstance(i, np.ndarray)]
    if arrays:
        return _advanced_index(t, x, items, arrays)
    name = x.name
    sl: dict[str, list] = {"starts": [], "ends": [], "axes": [], "steps": []}
    ints, nones = [], []
    ax = pos = 0
    bax = None
    for it in items:
        if it is None:
            nones.append(pos)
            pos += 1
            continue
        if isinstance(it, (int, np.integer)):
            ints.append((ax, int(it)))
            ax += 1
            continue
        full = it.start in (None, 0) and it.stop is None and it.step in (None, 1)
        if ax == x.bax:
            if full:
                bax = pos
            elif not _static_slice(it):
                raise t.error(
                    f"slicing the batch dim with [{it.start}:{it.stop}:{it.step}] gives a size "
                    "that depends on the batch (pass dynamic_batch=False)"
                )
        if not full:
            step = 1 if it.step is None else int(it.step)
            start = it.start if it.start is not None else (0 if step > 0 else _I64_MAX)
            stop = it.stop if it.stop is not None else (_I64_MAX if step > 0 else _I64_MIN)
            for k, val in zip(("starts", "ends", "axes", "steps"), (start, stop, ax, step)):
                sl[k].append(int(val))
        ax += 1
        pos += 1
    if sl["axes"]:
        name = t.emit("Slice", [name] + [t.i64(sl[k]) for k in ("starts", "ends", "axes", "steps")])
    for a, i in sorted(ints, reverse=True):
        name = t.emit("Gather", [name, t.i64(i)], axis=a)
    if nones:
        name = t.emit("Unsqueeze", [name, t.i64(nones)])
    if name == x.name:
        name = t.emit("Identity", [name])
    return [(name, bax, x.bf if bax is not None else 1)]


def _advanced_index(t: _Tracer, x: _Value, items: list, arrays: list) -> list:
    if len(arrays) > 1 or any(
        not (isinstance(i, slice) and i == slice(None))
        for n, i in enumerate(items)
        if n != arrays[0]
    ):
        raise t.error(
            "indexing with an index array combined with other indices (only x[..., idx, ...] with full slices elsewhere converts)"
        )
    a = arrays[0]
    iv = t.v(items[a])
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    y = t.emit("Gather", [x.name, idx], axis=a)
    if x.bax == a:
        bax, bf = (iv.bax + a, iv.bf) if iv.bax is not None else (None, 1)
    elif x.bax is not None:
        bax, bf = (x.bax + iv.ndim - 1 if x.bax > a else x.bax), x.bf
    else:
        bax, bf = (iv.bax + a, iv.bf) if iv.bax is not None else (None, 1)
    return [(y, bax, bf)]


@_conv(Ix.Gather)
def _gather(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d, index = kw["dim"], kw["index"]
    iv = t.v(index)
    if x.ndim == 0:
        raise t.error("gather from a 0-d tensor")
    if iv.suspect and x.bax == 0 and x.bf == 1 and d != 0:
        iv = t.follow_batch(iv, x)
    name = x.name
    small = [i for i in range(x.ndim) if i != d and iv.shape[i] < x.shape[i]]
    if small:
        if x.bax in small:
            raise t.error("gather with an index smaller than the input along the batch dim")
        name = t.emit(
            "Slice",
            [name, t.i64([0] * len(small)), t.i64([iv.shape[i] for i in small]), t.i64(small)],
        )
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    y = t.emit("GatherElements", [name, idx], axis=d)
    if iv.bax is not None:
        return [(y, iv.bax, iv.bf)]
    return [(y, None, 1)]


@_conv(M.Cat)
def _cat(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    vals = t.align([t.v(a) for a in args], outs[0].ndim, expand=True)
    d = int(kw["dim"])
    bax, bf = _bcast(vals, outs[0].ndim)
    if bax == d:
        raise t.error("cat along the batch dim (its size would not follow the batch)")
    return [(t.emit("Concat", [v.name for v in vals], axis=d), bax, bf)]


@_conv(M.Split)
def _split(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d, sizes = int(kw["dim"]), [int(s) for s in kw["sizes"]]
    if x.bax == d:
        raise t.error("split along the batch dim")
    ys = t.emit("Split", [x.name, t.i64(sizes)], n_out=len(sizes), axis=d)
    return [(y, x.bax, x.bf) for y in ys]


@_conv(M.Flip)
def _flip(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    dims = list(kw["dims"])
    if not dims:
        return _same(t.emit("Identity", [x.name]), x)
    n = len(dims)
    y = t.emit(
        "Slice", [x.name, t.i64([-1] * n), t.i64([_I64_MIN] * n), t.i64(dims), t.i64([-1] * n)]
    )
    return _same(y, x)


@_conv(M.Tril)
def _tril(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    y = t.emit("Trilu", [x.name, t.i64(int(kw["diagonal"]))], upper=int(bool(kw["upper"])))
    return _same(y, x)


@_conv(M.Repeat)
def _repeat(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    reps = [int(r) for r in kw["reps"]]
    extra = len(reps) - x.ndim
    name = x.name
    if extra:
        name = t.emit("Unsqueeze", [name, t.i64(list(range(extra)))])
    bax = x.bax + extra if x.bax is not None else None
    bf = x.bf * reps[bax] if bax is not None else 1
    return [(t.emit("Tile", [name, t.i64(reps)]), bax, bf)]


@_conv(M.Pad)
def _pad(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    pads = [tuple(int(p) for p in lh) for lh in kw["pads"]]
    if x.bax is not None and pads[x.bax] != (0, 0):
        raise t.error("padding the batch dim")
    flat = [lo for lo, _ in pads] + [hi for _, hi in pads]
    y = t.emit("Pad", [x.name, t.i64(flat), _c(t, x, kw.get("value", 0.0) or 0)], mode="constant")
    return _same(y, x)
