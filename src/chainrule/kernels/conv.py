"""Direct (no im2col) convolution on the GPU: forward, input gradient and weight gradient.

Each function takes the arrays and geometry of ``ops.conv``'s array kernels (``_conv``,
``_conv_t``, ``_conv_wgrad``: NCHW, 1-d as 2-d of height 1, ``geom = (stride, pads, dilation,
groups)`` with 2-d tuples) and returns the result, or None when no kernel applies (not real
CuPy, ``CHAINRULE_CUDA_KERNELS=0``, a dtype without a kernel, or a non-contiguous array): the
caller then runs im2col. Accumulation is in float32 (float64 for float64) and each output is
rounded once, as im2col's GEMMs do.

- ``conv_forward``: one thread an output element, summing over its group's input channels and
  the kernel window (the zero padding is bounds checks, never materialised);
- ``conv_input_grad``: one thread an input element, summing over its group's output channels and
  the kernel taps whose output position is whole (stride divides it) and in range;
- ``conv_weight_grad``: one warp a weight element, the lanes striding over (batch, output
  position) and meeting in a warp reduction (deterministic, no atomics).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _launch as L

EMULATE_ON_HOST = False  # tests set it to run the kernels on host arrays (in the CPU emulator)


def requested(x: Any) -> bool:
    """Whether ``ops.conv`` should try these kernels for x: ``CHAINRULE_CUDA_CONV=direct`` and x
    a real CuPy array (im2col is the default until a GPU has measured which is faster)."""
    if type(x) is np.ndarray and not EMULATE_ON_HOST:
        return False  # the CPU path: not even an environment lookup
    return (
        os.environ.get("CHAINRULE_CUDA_CONV", "im2col") == "direct"
        and L.kernel_module(x) is not None
    )


def _geom(geom: tuple) -> tuple:
    (sh, sw), ((pt, _), (pl, _)), (dh, dw), _g = geom
    return tuple(L.i32(v) for v in (sh, sw, pt, pl, dh, dw))


def _dims(*shape: int) -> tuple:
    return tuple(L.i64(v) for v in shape)


def _kernel_for(*arrays: Any) -> tuple[Any, str] | None:
    """(CuPy, the kernel dtype) when a kernel runs on ``arrays`` (None entries skipped), else
    None."""
    arrays = tuple(a for a in arrays if a is not None)
    cp = L.kernel_module(arrays[0])
    dt = L.usable(*arrays) if cp is not None else None
    return None if dt is None else (cp, dt)


def _hw(size: tuple) -> tuple:
    """A spatial size as (height, width): 1-d sizes are of height 1."""
    return (1, *size) if len(size) == 1 else tuple(size)


def _as4d(a: Any) -> Any:
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]) if a.ndim == 3 else a


def conv_forward(x: Any, w: Any, b: Any, geom: tuple, osize: tuple) -> Any:
    """y (N, Co, [oh,] ow) = conv(x (N, C, [H,] W), w (Co, C/G, [kh,] kw)) + b (Co,), or None
    when no kernel applies."""
    k = _kernel_for(x, w, b)
    if k is None:
        return None
    cp, dt = k
    x4, w4 = _as4d(x), _as4d(w)
    N, C, H, W = x4.shape
    Co, _, kh, kw = w4.shape
    oh, ow = _hw(osize)
    y = cp.empty((N, Co, oh, ow), x.dtype)
    L.launch_flat(
        "conv_fwd", dt, N * Co * oh * ow,
        (x4, w4, w4 if b is None else b, L.i32(b is not None), y, *_dims(N, C, H, W, Co, geom[3]),
         L.i32(kh), L.i32(kw), *_dims(oh, ow), *_geom(geom)),
    )  # fmt: skip
    return y.reshape(N, Co, ow) if x.ndim == 3 else y


def conv_input_grad(u: Any, w: Any, b: Any, geom: tuple, isize: tuple) -> Any:
    """dx (N, C, [H,] W) = conv_transpose(u (N, Co, [oh,] ow), w (Co, C/G, [kh,] kw)) + b (C,),
    ``isize`` = ([H,] W), or None when no kernel applies."""
    k = _kernel_for(u, w, b)
    if k is None:
        return None
    cp, dt = k
    u4, w4 = _as4d(u), _as4d(w)
    N, Co, oh, ow = u4.shape
    _, Cg, kh, kw = w4.shape
    C = Cg * geom[3]
    H, W = _hw(isize)
    dx = cp.empty((N, C, H, W), u.dtype)
    L.launch_flat(
        "conv_dx", dt, N * C * H * W,
        (u4, w4, w4 if b is None else b, L.i32(b is not None), dx, *_dims(N, C, H, W, Co, geom[3]),
         L.i32(kh), L.i32(kw), *_dims(oh, ow), *_geom(geom)),
    )  # fmt: skip
    return dx.reshape(N, C, W) if u.ndim == 3 else dx


def conv_weight_grad(x: Any, u: Any, geom: tuple, ksize: tuple) -> Any:
    """dw (Co, C/G, [kh,] kw) = the weight gradient of conv(x (N, C, [H,] W)) given u
    (N, Co, [oh,] ow), ``ksize`` = ([kh,] kw), or None when no kernel applies."""
    k = _kernel_for(x, u)
    if k is None:
        return None
    cp, dt = k
    x4, u4 = _as4d(x), _as4d(u)
    N, C, H, W = x4.shape
    _, Co, oh, ow = u4.shape
    kh, kw = _hw(ksize)
    G = geom[3]
    dw = cp.empty((Co, C // G, kh, kw), x.dtype)
    if N * oh * ow == 0:
        dw[...] = 0
    else:
        L.launch_rows(
            "conv_dw", dt, dw.size,
            (x4, u4, dw, *_dims(N, C, H, W, Co, G), L.i32(kh), L.i32(kw), *_dims(oh, ow),
             *_geom(geom)),
        )  # fmt: skip
    return dw.reshape(Co, C // G, kw) if x.ndim == 3 else dw
