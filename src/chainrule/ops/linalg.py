"""Matrix products: matmul (with PyTorch's 1-d and batch-broadcasting rules) and einsum."""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from .. import backend
from ..autograd.engine import Op, apply
from ..tensor import Tensor, wrap
from .util import promote_pair

# bfloat16 is ml_dtypes' dtype (kind 'V'): NumPy has no BLAS product or einsum for it, and its
# matmul returns float32


def _mm(a: Any, b: Any) -> Any:
    """``a @ b`` in ``a``'s dtype. Host bfloat16 multiplies in float32 and rounds once (PyTorch's
    CPU arithmetic: low-precision operands, float32 accumulation)."""
    if a.dtype.kind != "V":
        return np.matmul(a, b)
    if type(a) is np.ndarray:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    r = np.matmul(a, b)
    return r if r.dtype == a.dtype else r.astype(a.dtype)


def _einsum(eq: str, *xs: Any, optimize: bool = False) -> Any:
    """``np.einsum`` in the operands' dtype; bfloat16 is computed in float32 and rounded once."""
    if xs[0].dtype.kind != "V":
        return np.einsum(eq, *xs, optimize=optimize)
    d = xs[0].dtype
    return np.einsum(eq, *[x.astype(np.float32) for x in xs], optimize=optimize).astype(d)


class Matmul(Op):
    """a @ b. 2-d: ga = g b^T, gb = a^T g; 1-d operands are treated as a row (a) or column (b)
    vector; broadcast batch dims are summed back by the engine."""

    save_inputs = True

    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise RuntimeError("both arguments to matmul need to be at least 1D")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise RuntimeError(
                f"inner dimensions differ: {a.shape[-1]} (last dim of {a.shape}) vs "
                f"{b.shape[-2 if b.ndim > 1 else 0]} (dim -2 of {b.shape})"
            )
        return np.matmul(a, b) if a.dtype.kind != "V" else _mm(a, b)

    def backward(ctx, g, m):
        a, b = ctx.inputs
        need = ctx.needs_input_grad
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:
            return (g * b if need[0] else None), (g * a if need[1] else None)
        if b.ndim == 1:  # (..., n, k) @ (k,) -> (..., n)
            gc = m.reshape(g, g.shape + (1,))
            if need[0]:
                ga = gc * b
            if need[1]:
                gb = m.reshape(m.matmul(m.mT(a), gc), a.shape[:-2] + (a.shape[-1],))
            return ga, gb
        if a.ndim == 1:  # (k,) @ (..., k, m) -> (..., m)
            gr = m.reshape(g, g.shape[:-1] + (1, g.shape[-1]))
            if need[0]:
                ga = m.reshape(m.matmul(gr, m.mT(b)), g.shape[:-1] + (a.shape[0],))
            if need[1]:
                gb = m.reshape(a, (a.shape[0], 1)) * gr
            return ga, gb
        if need[0]:
            ga = m.matmul(g, m.mT(b))
        if need[1]:
            gb = m.matmul(m.mT(a), g)
        return ga, gb


def matmul(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    if input.data.dtype is not other.data.dtype:
        input, other = promote_pair(input, other)
    return apply(Matmul, input, other)


def mm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(
            f"mm: both arguments must be 2-D, got shapes {tuple(input.shape)} and {tuple(mat2.shape)}"
        )
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:  # noqa: A002
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(
            f"bmm: expected two 3-D tensors with the same batch size, got shapes "
            f"{tuple(input.shape)} and {tuple(mat2.shape)}"
        )
    return matmul(input, mat2)


def mv(input: Tensor, vec: Tensor) -> Tensor:  # noqa: A002
    return matmul(input, vec)


def dot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError("dot: 1D tensors expected")
    return matmul(input, other)


inner = dot


def outer(input: Tensor, vec2: Tensor) -> Tensor:  # noqa: A002
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


ger = outer


def addmm(
    input: Tensor, mat1: Tensor, mat2: Tensor, *, beta: float = 1, alpha: float = 1
) -> Tensor:  # noqa: A002
    prod = matmul(mat1, mat2)
    if alpha != 1:
        prod = prod * alpha
    return (input if beta == 1 else input * beta) + prod


# ----------------------------------------------------------------------------- einsum


def _parse(eq: str, shapes: list) -> tuple[list[str], str]:
    """Subscripts with '...' expanded into explicit letters, and the explicit output."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise RuntimeError(f"einsum(): {len(ins)} operands in the equation but {len(shapes)} given")
    used = set(c for c in eq if c.isalpha())
    spare = [c for c in string.ascii_letters if c not in used]
    ell_nd = max([len(s) - (len(i) - 3) for i, s in zip(ins, shapes) if "..." in i] or [0])
    ell = "".join(spare[:ell_nd])
    exp = []
    for i, s in zip(ins, shapes):
        if "..." in i:
            k = len(s) - (len(i) - 3)
            i = i.replace("...", ell[ell_nd - k :] if k else "")
        if len(i) != len(s):
            raise RuntimeError(
                f"einsum(): subscripts '{i}' don't match an operand of shape {tuple(s)}"
            )
        exp.append(i)
    if not arrow:
        counts = {}
        for c in "".join(exp):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return exp, out


class Einsum(Op):
    """Einstein summation. The gradient of operand k is an einsum of the output gradient with the
    other operands, broadcast over the labels only operand k has."""

    save_inputs = True

    def forward(ctx, *xs, ins, out):
        ctx.ins, ctx.outsub = ins, out
        eq = ",".join(ins) + "->" + out
        return _einsum(eq, *xs, optimize=len(xs) > 2)

    def backward(ctx, g, m):
        xs = ctx.inputs
        ins, out = ctx.ins, ctx.outsub
        grads = []
        for k, sub in enumerate(ins):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            size = dict(zip(sub, tuple(xs[k].shape)))
            uniq = "".join(dict.fromkeys(sub))  # a repeated label ('ii') reads a diagonal
            others = [s for j, s in enumerate(ins) if j != k]
            avail = set(out).union(*others) if others else set(out)
            kept = "".join(c for c in uniq if c in avail)
            eq = ",".join([out] + others) + "->" + kept
            gk = m.einsum(eq, g, *[x for j, x in enumerate(xs) if j != k])
            if kept != uniq:  # labels only this operand had: the gradient is constant along them
                ushape = tuple(size[c] for c in uniq)
                ones = tuple(size[c] if c in avail else 1 for c in uniq)
                gk = m.expand(m.reshape(gk, ones), ushape)
            if uniq != sub:  # the gradient of the diagonal goes back onto it, zeros elsewhere
                gk = _undiagonal(gk, uniq, sub, size, m)
            grads.append(gk)
        return tuple(grads)


def _undiagonal(gk: Any, uniq: str, sub: str, size: dict, m: Any) -> Any:
    """Place ``gk`` (labels ``uniq``) on the diagonal of an array with labels ``sub`` (which
    repeats some of them): each repeat gets a fresh label tied to the first by an identity."""
    fresh = iter(c for c in string.ascii_letters if c not in sub)
    seen: set = set()
    new_sub, eyes, eye_subs = [], [], []
    arr = gk.data if isinstance(gk, Tensor) else gk
    dt, xp = arr.dtype, backend.array_module(arr)
    for c in sub:
        if c not in seen:
            seen.add(c)
            new_sub.append(c)
            continue
        f = next(fresh)
        new_sub.append(f)
        eye = xp.eye(size[c], dtype=dt)
        eyes.append(wrap(eye) if isinstance(gk, Tensor) else eye)
        eye_subs.append(c + f)
    return m.einsum(",".join([uniq] + eye_subs) + "->" + "".join(new_sub), gk, *eyes)


def einsum(equation: str, *operands: Any) -> Tensor:
    """``einsum('ij,jk->ik', a, b)``; operands may also be passed as one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops = list(operands)
    if len({o.data.dtype for o in ops}) > 1:
        ref = ops[0]
        for o in ops[1:]:
            ref, _ = promote_pair(ref, o)
        ops = [promote_pair(o, ref)[0] for o in ops]
    ins, out = _parse(equation, [o.shape for o in ops])
    return apply(Einsum, *ops, ins=ins, out=out)
