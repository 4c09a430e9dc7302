"""Convolution primitives with PyTorch's semantics (NCHW / NCL layouts); pooling is ``ops.pooling``.

Convolution is im2col + one GEMM per direction. The column matrix is a strided *view* of the
padded input (copied once), laid out (C, kh, kw, [N,] oh, ow[, N]) so that each of the three
products is a single (batched over groups) matmul and the input gradient (col2im) is kh*kw slice
additions into a padded buffer (see ``_batch_last`` for the choice of layout). The columns are
recomputed in the backward (not saved, as PyTorch), and the large temporaries live in per-thread
scratch buffers (``_buf``; ``release_workspace()`` frees them). Three array kernels do the work:

    _conv(x, w)      y[n,o,i,j] = sum_{c,a,b} w[o,c,a,b] xp[n,c, i*s+a*d, j*s+b*d]
    _conv_t(u, w)    the adjoint of _conv in x (a transposed convolution)
    _conv_wgrad(x, u) the adjoint of _conv in w

They take NumPy or CuPy arrays (on a device: the same im2col, with CuPy's GEMM). Every
convolution, forward and backward, goes through these three. On real CuPy with
``CHAINRULE_CUDA_CONV=direct`` they run the direct CUDA kernels of ``kernels.conv`` instead (no
column matrix; falling back to im2col where no kernel applies). im2col stays the default until a
GPU has measured which of the two is faster.

and three Ops (``Conv``, ``ConvT``, ``ConvWGrad``) whose backward rules are written with each other
(through ``m.conv`` / ``m.conv_transpose`` / ``m.conv_wgrad``), so the backward is differentiable
for ``create_graph``. 1-d inputs are handled as 2-d with a height of 1 (a free view).

Geometry is passed around as ``geom = (stride, pads, dilation, groups)`` with 2-d tuples:
``stride = (sh, sw)``, ``pads = ((top, bottom), (left, right))``, ``dilation = (dh, dw)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend, dtypes
from ..autograd.engine import Op, apply
from ..kernels import conv as _kc
from ..tensor import Tensor, wrap
from ._conv_util import _as2d, _buf, _dims2, _padded, _strided, _sz2, _tuple
from ._conv_util import release_workspace as release_workspace
from .util import promote_pair

# ----------------------------------------------------------------------------- array kernels


def _to_cn(x: np.ndarray, pads: tuple) -> np.ndarray:
    """x (N, C, H, W) -> a zero-padded copy in the batch-last layout (C, Hp, Wp, N)."""
    (t, b), (lf, r) = pads
    N, C, H, W = x.shape
    xp = _buf("pad", (C, H + t + b, W + lf + r, N), x.dtype, backend.array_module(x))
    if t or b or lf or r:
        xp[:, :t] = 0
        xp[:, t + H :] = 0
        xp[:, t : t + H, :lf] = 0
        xp[:, t : t + H, lf + W :] = 0
    xp[:, t : t + H, lf : lf + W] = x.transpose(1, 2, 3, 0)
    return xp


# Two layouts of the columns. Batch-middle (C, kh, kw, N, oh, ow) reads the input in place and
# its GEMM output (Co, N, oh, ow) is one cheap transpose from NCHW, but every copy / addition
# runs over rows of only ``ow`` elements. Batch-last (C, kh, kw, oh, ow, N) runs over rows of
# ``ow * N`` elements, at the price of transposing the input, the output and its gradient to and
# from (C, H, W, N). With numpy's per-row overhead, batch-last wins for narrow outputs.
_PERM_IN = {True: (1, 2, 3, 0), False: (1, 0, 2, 3)}  # NCHW -> layout
_PERM_OUT = {True: (3, 0, 1, 2), False: (1, 0, 2, 3)}  # layout -> NCHW


def _batch_last(N: int, ow: int) -> bool:
    return N > 1 and ow < 16


def _layout(a: Any, N: int, ow: int) -> bool:
    """The layout for array ``a``'s convolution (True: batch-last). On a device every copy is one
    bandwidth-bound kernel whatever its row length, so batch-middle, with fewer transposing
    copies, always wins there."""
    return type(a) is np.ndarray and _batch_last(N, ow)


def _in_layout(C: int, N: int, h: int, w: int, bl: bool) -> tuple:
    return (C, h, w, N) if bl else (C, N, h, w)


def _im2col(x: np.ndarray, ksize: tuple, geom: tuple, osize: tuple, bl: bool) -> np.ndarray:
    """Columns of the 4-d input x (N, C, H, W), C-contiguous: (C, kh, kw, oh, ow, N) if ``bl``
    (batch-last) else (C, kh, kw, N, oh, ow). One copy of a strided view of the padded input."""
    (sh, sw), pads, (dh, dw), _ = geom
    (kh, kw), (oh, ow) = ksize, osize
    if bl:
        xp = _to_cn(x, pads)
        C, Hp, Wp, N = xp.shape
        sC, sH, sW, sN = xp.strides
    else:
        xp = _padded(x, pads, 0.0, "pad")
        N, C, Hp, Wp = xp.shape
        sN, sC, sH, sW = xp.strides
    if (oh - 1) * sh + (kh - 1) * dh >= Hp or (ow - 1) * sw + (kw - 1) * dw >= Wp:
        raise ValueError(f"windows of {osize} do not fit in a padded input of {(Hp, Wp)}")
    if bl:
        shape = (C, kh, kw, oh, ow, N)
        strides = (sC, dh * sH, dw * sW, sh * sH, sw * sW, sN)
    else:
        shape = (C, kh, kw, N, oh, ow)
        strides = (sC, dh * sH, dw * sW, sN, sh * sH, sw * sW)
    cols = _buf("cols", shape, x.dtype, backend.array_module(x))
    np.copyto(cols, _strided(xp, shape, strides))
    return cols


def _mm(a: np.ndarray, b: np.ndarray, slot: str | None = None) -> np.ndarray:
    """(G, m, k) @ (G, k, n), one plain GEMM when G == 1; into scratch ``slot`` if given."""
    out = None
    if slot is not None:
        dt = np.result_type(a.dtype, b.dtype)
        out = _buf(slot, (a.shape[0], a.shape[1], b.shape[2]), dt, backend.array_module(a))
    if a.shape[0] == 1:
        if out is None:
            return np.dot(a[0], b[0])[None]
        np.dot(a[0], b[0], out=out[0])
        return out
    return np.matmul(a, b, out=out)


def _by_group(u: np.ndarray, G: int, bl: bool) -> np.ndarray:
    """u (N, Co, oh, ow) -> (G, Co/G, oh*ow*N) in the layout (one transposing copy, scratch)."""
    N, Co, oh, ow = u.shape
    out = _buf("ut", _in_layout(Co, N, oh, ow, bl), u.dtype, backend.array_module(u))
    np.copyto(out, u.transpose(_PERM_IN[bl]))
    return out.reshape(G, Co // G, oh * ow * N)


def _f32(*arrays: Any) -> tuple:
    """bfloat16 operands in float32: NumPy has no bfloat16 GEMM, and PyTorch's bfloat16
    convolutions accumulate in float32 and round once (the callers round the result)."""
    return tuple(None if a is None else a.astype(np.float32) for a in arrays)


def _conv(x: np.ndarray, w: np.ndarray, b: Any, geom: tuple, osize: tuple) -> np.ndarray:
    """Convolution of x (N, C, [H,] W) with w (Co, C/G, [kh,] kw) (+ bias)."""
    if _kc.requested(x) and (r := _kc.conv_forward(x, w, b, geom, osize)) is not None:
        return r
    if x.dtype.kind == "V":
        return _conv(*_f32(x, w, b), geom, osize).astype(x.dtype)
    one = x.ndim == 3
    x2, w2 = _as2d(x), _as2d(w)
    G = geom[3]
    N = x2.shape[0]
    Co, Cg, kh, kw = w2.shape
    oh, ow = _sz2(osize)
    bl = _layout(x2, N, ow)
    cols = _im2col(x2, (kh, kw), geom, (oh, ow), bl)
    K = Cg * kh * kw
    y = _mm(w2.reshape(G, Co // G, K), cols.reshape(G, K, oh * ow * N), "y")
    yt = y.reshape(_in_layout(Co, N, oh, ow, bl)).transpose(_PERM_OUT[bl])
    out = backend.array_module(y).empty((N, Co, oh, ow), y.dtype)
    if b is None:
        np.copyto(out, yt)
    else:
        np.add(yt, b.reshape(Co, 1, 1).astype(y.dtype, copy=False), out=out)
    return out.reshape(N, Co, ow) if one else out


def _col2im(
    gcols: np.ndarray,
    C: int,
    N: int,
    ksize: tuple,
    osize: tuple,
    isize: tuple,
    geom: tuple,
    bl: bool,
) -> np.ndarray:
    """Sum the column gradient (in the layout of ``_im2col``) back into an input (N, C, H, W):
    kh*kw strided slice additions into a padded buffer."""
    (sh, sw), ((t, bt), (lf, r)), (dh, dw), _ = geom
    (kh, kw), (oh, ow), (H, W) = ksize, osize, isize
    Hp, Wp = H + t + bt, W + lf + r
    am = backend.array_module(gcols)
    if bl:
        gcols = gcols.reshape(C, kh, kw, oh, ow, N)
        xp = _buf("img", (C, Hp, Wp, N), gcols.dtype, am)
    else:
        gcols = gcols.reshape(C, kh, kw, N, oh, ow)
        xp = _buf("img", (C, N, Hp, Wp), gcols.dtype, am)
    xp[...] = 0
    for a in range(kh):
        hs = slice(a * dh, a * dh + sh * (oh - 1) + 1, sh)
        for c in range(kw):
            ws = slice(c * dw, c * dw + sw * (ow - 1) + 1, sw)
            if bl:
                xp[:, hs, ws] += gcols[:, a, c]
            else:
                xp[:, :, hs, ws] += gcols[:, a, c]
    if bl:
        inner = xp[:, t : t + H, lf : lf + W]
    else:
        inner = xp[:, :, t : t + H, lf : lf + W]
    return am.ascontiguousarray(inner.transpose(_PERM_OUT[bl]))


def _conv_t(u: np.ndarray, w: np.ndarray, b: Any, geom: tuple, isize: tuple) -> np.ndarray:
    """Transposed convolution: u (N, Co, [oh,] ow), w (Co, C/G, [kh,] kw) -> (N, C, [H,] W)."""
    if _kc.requested(u) and (r := _kc.conv_input_grad(u, w, b, geom, isize)) is not None:
        return r
    if u.dtype.kind == "V":
        return _conv_t(*_f32(u, w, b), geom, isize).astype(u.dtype)
    one = u.ndim == 3
    u2, w2 = _as2d(u), _as2d(w)
    G = geom[3]
    N, Co, oh, ow = u2.shape
    _, Cg, kh, kw = w2.shape
    K = Cg * kh * kw
    bl = _layout(u2, N, ow)
    gcols = _mm(w2.reshape(G, Co // G, K).transpose(0, 2, 1), _by_group(u2, G, bl), "gcols")
    x = _col2im(gcols, G * Cg, N, (kh, kw), (oh, ow), _sz2(isize), geom, bl)
    if b is not None:
        x += b.reshape(-1, 1, 1).astype(x.dtype, copy=False)
    return x.reshape(N, G * Cg, x.shape[-1]) if one else x


def _conv_wgrad(x: np.ndarray, u: np.ndarray, geom: tuple, ksize: tuple) -> np.ndarray:
    """Weight gradient: x (N, C, [H,] W), u (N, Co, [oh,] ow) -> (Co, C/G, [kh,] kw)."""
    if _kc.requested(x) and (r := _kc.conv_weight_grad(x, u, geom, ksize)) is not None:
        return r
    if x.dtype.kind == "V":
        return _conv_wgrad(*_f32(x, u), geom, ksize).astype(x.dtype)
    one = x.ndim == 3
    x2, u2 = _as2d(x), _as2d(u)
    G = geom[3]
    N, Co, oh, ow = u2.shape
    C = x2.shape[1]
    kh, kw = _sz2(ksize)
    bl = _layout(x2, N, ow)
    cols = _im2col(x2, (kh, kw), geom, (oh, ow), bl)
    K = (C // G) * kh * kw
    gw = _mm(_by_group(u2, G, bl), cols.reshape(G, K, oh * ow * N).transpose(0, 2, 1))
    return gw.reshape((Co, C // G, kw) if one else (Co, C // G, kh, kw))


def conv_arrays(x: np.ndarray, w: np.ndarray, geom: tuple, osize: tuple) -> np.ndarray:
    return _conv(x, w, None, geom, osize)


def conv_transpose_arrays(u: np.ndarray, w: np.ndarray, geom: tuple, isize: tuple) -> np.ndarray:
    return _conv_t(u, w, None, geom, isize)


def conv_wgrad_arrays(x: np.ndarray, u: np.ndarray, geom: tuple, ksize: tuple) -> np.ndarray:
    return _conv_wgrad(x, u, geom, ksize)


# ----------------------------------------------------------------------------- conv ops


def _bias_dims(nd: int) -> tuple:
    return (0,) + tuple(range(2, nd))


class Conv(Op):
    """y = conv(x, w) + b.  gx = conv_transpose(g, w);  gw = wgrad(x, g);  gb = sum of g."""

    save_inputs = True
    name = "conv"

    def forward(ctx, x: np.ndarray, w: np.ndarray, b: Any, geom: tuple, osize: tuple) -> Any:
        ctx.geom = geom
        return _conv(x, w, b, geom, osize)

    def backward(ctx, g: Any, m: Any) -> Any:
        x, w, b = ctx.inputs
        need = ctx.needs_input_grad
        geom = ctx.geom
        gx = gw = gb = None
        if need[0]:
            gx = m.conv_transpose(g, w, geom, tuple(x.shape[2:]))
        if need[1]:
            gw = m.conv_wgrad(x, g, geom, tuple(w.shape[2:]))
        if b is not None and need[2]:
            gb = m.sum(g, _bias_dims(g.ndim), False)
        return gx, gw, gb


class ConvT(Op):
    """x = conv_transpose(u, w) + b.  gu = conv(g, w);  gw = wgrad(g, u);  gb = sum of g."""

    save_inputs = True
    name = "conv_transpose"

    def forward(ctx, u: np.ndarray, w: np.ndarray, b: Any, geom: tuple, isize: tuple) -> Any:
        ctx.geom = geom
        return _conv_t(u, w, b, geom, isize)

    def backward(ctx, g: Any, m: Any) -> Any:
        u, w, b = ctx.inputs
        need = ctx.needs_input_grad
        geom = ctx.geom
        gu = gw = gb = None
        if need[0]:
            gu = m.conv(g, w, geom, tuple(u.shape[2:]))
        if need[1]:
            gw = m.conv_wgrad(g, u, geom, tuple(w.shape[2:]))
        if b is not None and need[2]:
            gb = m.sum(g, _bias_dims(g.ndim), False)
        return gu, gw, gb


class ConvWGrad(Op):
    """gw = wgrad(x, u), bilinear: for an upstream V, gx = conv_transpose(u, V), gu = conv(x, V)."""

    save_inputs = True
    name = "conv_weight_grad"

    def forward(ctx, x: np.ndarray, u: np.ndarray, geom: tuple, ksize: tuple) -> Any:
        ctx.geom = geom
        return _conv_wgrad(x, u, geom, ksize)

    def backward(ctx, v: Any, m: Any) -> Any:
        x, u = ctx.inputs
        need = ctx.needs_input_grad
        gx = gu = None
        if need[0]:
            gx = m.conv_transpose(u, v, ctx.geom, tuple(x.shape[2:]))
        if need[1]:
            gu = m.conv(x, v, ctx.geom, tuple(u.shape[2:]))
        return gx, gu


# ----------------------------------------------------------------------------- conv API


def _prep(input: Tensor, weight: Tensor, bias: Any, nd: int, name: str) -> tuple:  # noqa: A002
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be a Tensor, not {type(input).__name__}")
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(
            f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {name}, but got input "
            f"of size: {list(input.shape)}"
        )
    if weight.ndim != nd + 2:
        raise RuntimeError(
            f"{name}: expected weight to be {nd + 2}-dimensional, got {weight.ndim}-dimensional "
            f"weight of size {list(weight.shape)}"
        )
    unbatched = input.ndim == nd + 1
    if unbatched:
        input = input.reshape((1, *input.shape))  # noqa: A001
    if input.data.dtype is not weight.data.dtype:
        input, weight = promote_pair(input, weight)  # noqa: A001
    if not dtypes.is_floating(input.data.dtype):
        raise RuntimeError(f'"{name}" not implemented for integer input (dtype {input.dtype})')
    if bias is not None:
        if not isinstance(bias, Tensor):
            bias = wrap(backend.asarray(bias, weight.data.dtype, like=weight.data))
        elif bias.data.dtype is not weight.data.dtype:
            bias = bias.to(weight.dtype)
    return input, weight, bias, unbatched


def _too_small(name: str, padded: tuple, dk: tuple) -> RuntimeError:
    p = " x ".join(str(s) for s in padded)
    k = " x ".join(str(s) for s in dk)
    return RuntimeError(
        f"Calculated padded input size per channel: ({p}). Kernel size: ({k}). Kernel size can't "
        "be greater than actual input size"
    )


def _conv_nd(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    nd: int,
    name: str,
) -> Tensor:
    x, w, b, unbatched = _prep(input, weight, bias, nd, name)
    stride = _tuple(stride, nd, "stride")
    dilation = _tuple(dilation, nd, "dilation")
    groups = int(groups)
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("dilation should be greater than zero")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    Co, Cg = w.shape[:2]
    ksize = tuple(w.shape[2:])
    if Co % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size [{list(w.shape)}] instead"
        )
    if x.shape[1] != Cg * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
            f"{list(x.shape)} to have {Cg * groups} channels, but got {x.shape[1]} channels instead"
        )
    if b is not None and tuple(b.shape) != (Co,):
        raise RuntimeError(
            f"Given weight of size {list(w.shape)}, expected bias to be 1-dimensional with {Co} "
            f"elements, but got bias of size {list(b.shape)} instead"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nd
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            tot = [d * (k - 1) for d, k in zip(dilation, ksize)]
            pads = tuple((t // 2, t - t // 2) for t in tot)
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")
    else:
        p = _tuple(padding, nd, "padding")
        if any(i < 0 for i in p):
            raise RuntimeError("negative padding is not supported")
        pads = tuple((i, i) for i in p)
    spatial = tuple(x.shape[2:])
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads))
    dk = tuple(d * (k - 1) + 1 for d, k in zip(dilation, ksize))
    if any(p < k for p, k in zip(padded, dk)):
        raise _too_small(name, padded, dk)
    osize = tuple((p - k) // s + 1 for p, k, s in zip(padded, dk, stride))
    geom = (_dims2(stride), ((0, 0),) * (2 - nd) + pads, _dims2(dilation), groups)
    y = apply(Conv, x, w, b, geom=geom, osize=osize)
    return y.reshape(y.shape[1:]) if unbatched else y


def conv1d(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """1-d cross-correlation: input (N, C_in, L) or (C_in, L), weight (C_out, C_in/groups, k).
    ``padding`` is an int, a 1-tuple, 'valid' or 'same'."""
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor:
    """2-d cross-correlation: input (N, C_in, H, W) or (C_in, H, W), weight
    (C_out, C_in/groups, kh, kw). ``padding`` is an int, a pair, 'valid' or 'same'."""
    return _conv_nd(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def _conv_t_nd(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    groups: int,
    dilation: Any,
    nd: int,
    name: str,
    output_size: Any = None,
) -> Tensor:
    x, w, b, unbatched = _prep(input, weight, bias, nd, name)
    stride = _tuple(stride, nd, "stride")
    dilation = _tuple(dilation, nd, "dilation")
    pad = _tuple(padding, nd, "padding")
    groups = int(groups)
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    if any(d <= 0 for d in dilation):
        raise RuntimeError("dilation should be greater than zero")
    if any(p < 0 for p in pad):
        raise RuntimeError("negative padding is not supported")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    Cin, Cg = w.shape[:2]
    ksize = tuple(w.shape[2:])
    if Cin % groups:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size [{list(w.shape)}] instead"
        )
    if x.shape[1] != Cin:
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(w.shape)}, expected input{list(x.shape)} "
            f"to have {Cin} channels, but got {x.shape[1]} channels instead"
        )
    if b is not None and tuple(b.shape) != (Cg * groups,):
        raise RuntimeError(
            f"Given transposed=1, weight of size {list(w.shape)}, expected bias to be "
            f"1-dimensional with {Cg * groups} elements, but got bias of size {list(b.shape)} instead"
        )
    spatial = tuple(x.shape[2:])
    base = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + 1
        for i, s, p, d, k in zip(spatial, stride, pad, dilation, ksize)
    )
    if output_size is not None:
        osz = tuple(int(v) for v in output_size)[-nd:]
        if len(osz) != nd:
            raise ValueError(
                f"output_size must have {nd} or {nd + 2} elements (got {len(output_size)})"
            )
        op = tuple(o - bb for o, bb in zip(osz, base))
        for o, bb, s in zip(osz, base, stride):
            if not bb <= o < bb + s:
                raise ValueError(
                    f"requested an output size of {list(osz)}, but valid sizes range from "
                    f"{list(base)} to {[bb + s - 1 for bb, s in zip(base, stride)]} (for an input of "
                    f"{list(spatial)})"
                )
    else:
        op = _tuple(output_padding, nd, "output_padding")
    if any(o < 0 or (o >= s and o >= d) for o, s, d in zip(op, stride, dilation)):
        raise RuntimeError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding={list(op)}, stride={list(stride)}, dilation={list(dilation)}"
        )
    isize = tuple(bb + o for bb, o in zip(base, op))
    if any(s <= 0 for s in isize):
        raise RuntimeError(
            f"Given input size per channel: {list(spatial)}. Calculated output size per channel: "
            f"{list(isize)}. Output size is too small"
        )
    geom = (
        _dims2(stride),
        ((0, 0),) * (2 - nd) + tuple((p, p) for p in pad),
        _dims2(dilation),
        groups,
    )
    y = apply(ConvT, x, w, b, geom=geom, isize=isize)
    return y.reshape(y.shape[1:]) if unbatched else y


def conv_transpose1d(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """Transposed 1-d convolution; weight (C_in, C_out/groups, k)."""
    return _conv_t_nd(
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        1,
        "conv_transpose1d",
    )


def conv_transpose2d(
    input: Tensor,  # noqa: A002
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
) -> Tensor:
    """Transposed 2-d convolution (the gradient of conv2d in its input); weight
    (C_in, C_out/groups, kh, kw). Output size (H-1)*s - 2p + d*(k-1) + output_padding + 1."""
    return _conv_t_nd(
        input,
        weight,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        2,
        "conv_transpose2d",
    )


__all__ = [
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
]
