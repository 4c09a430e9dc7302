"""CUDA C sources of the fused kernels, one per (kernel, dtype), made by string substitution.

This module and ``conv_sources.py`` beside it import only the standard library (and each other),
so a script can load the two by path and compile every source with NVRTC on a machine with no
GPU and no chainrule installed (``tests/gpu/compile_kernels.py``).

Every source is self-contained: no ``#include``. Half and bfloat16 are stored as 16-bit words
(``cr_half``/``cr_bf16``) and converted with PTX ``cvt`` (half) or bit arithmetic (bfloat16), so
the sources compile with any NVRTC without CUDA's ``cuda_fp16.h``/``cuda_bf16.h`` on an include
path (a CuPy wheel without the CUDA toolkit has neither). Arithmetic runs in ``A``: double for
double data, float for float, half and bfloat16 (PyTorch's "opmath" type).

Element-wise kernels use 256 threads a block and a grid-stride loop over 64-bit indices; row
kernels (softmax/cross-entropy, LayerNorm) give one warp to a row, eight rows to a block.
"""

from __future__ import annotations

from string import Template

from .conv_sources import CONV_DW, CONV_DX, CONV_FWD

THREADS = 256  # threads per block, every kernel
WARPS = THREADS // 32  # rows per block in the warp-per-row kernels

# dtype name -> (storage type T, arithmetic type A, T -> A body, A -> T body)
DTYPES: dict[str, tuple[str, str, str, str]] = {
    "float32": ("float", "float", "return v;", "return v;"),
    "float64": ("double", "double", "return v;", "return v;"),
    "float16": (
        "cr_half",
        "float",
        'float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x)); return f;',
        'cr_half h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(v)); return h;',
    ),
    "bfloat16": (
        "cr_bf16",
        "float",
        "return __uint_as_float(((unsigned int)v.x) << 16);",
        # round to nearest even; NaN stays a (quiet) NaN
        "unsigned int u = __float_as_uint(v); cr_bf16 h;"
        " if ((u & 0x7fffffffu) > 0x7f800000u) { h.x = (unsigned short)((u >> 16) | 0x40u); }"
        " else { u += 0x7fffu + ((u >> 16) & 1u); h.x = (unsigned short)(u >> 16); }"
        " return h;",
    ),
}

_PRELUDE = Template(r"""
struct __align__(2) cr_half { unsigned short x; };
struct __align__(2) cr_bf16 { unsigned short x; };
typedef $T T;
typedef $A A;
__device__ __forceinline__ A ld(T v) { $LOAD }
__device__ __forceinline__ T st(A v) { $STORE }

__device__ __forceinline__ float cr_exp(float x) { return expf(x); }
__device__ __forceinline__ double cr_exp(double x) { return exp(x); }
__device__ __forceinline__ float cr_log(float x) { return logf(x); }
__device__ __forceinline__ double cr_log(double x) { return log(x); }
__device__ __forceinline__ float cr_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double cr_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float cr_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double cr_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float cr_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double cr_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float cr_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double cr_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float cr_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double cr_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float cr_erf(float x) { return erff(x); }
__device__ __forceinline__ double cr_erf(double x) { return erf(x); }
__device__ __forceinline__ float cr_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double cr_max(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float cr_neg_inf(float) { return __int_as_float(0xff800000); }
__device__ __forceinline__ double cr_neg_inf(double) {
    return __longlong_as_double(0xfff0000000000000ULL);
}
__device__ __forceinline__ float cr_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double cr_nan(double) {
    return __longlong_as_double(0x7ff8000000000000ULL);
}
// NaN-propagating max (as torch.max: a NaN anywhere in the row wins)
__device__ __forceinline__ A cr_nanmax(A a, A b) { return (a != a || b != b) ? a + b : cr_max(a, b); }
__device__ __forceinline__ A warp_sum(A v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ A warp_max(A v) {
    for (int o = 16; o > 0; o >>= 1) v = cr_nanmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
#define CR_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
#define CR_ROWS(row, lane, rows) \
    const int lane = threadIdx.x & 31; \
    for (long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < (rows); \
         row += ((long long)blockDim.x * gridDim.x) >> 5)
""")

# --------------------------------------------------------------------------------- optimisers
_SGD = r"""
// PyTorch's SGD on one parameter, in place: g += wd p; b = first ? g : mom b + (1 - damp) g;
// g = nesterov ? g + mom b : b; p -= lr g.
extern "C" __global__ void $NAME(T* p, const T* g, T* buf, long long n, A lr, A momentum,
                                 A dampening, A wd, int nesterov, int maximize, int first) {
    CR_LOOP(i, n) {
        A pi = ld(p[i]);
        A gi = ld(g[i]);
        if (maximize) gi = -gi;
        if (wd != 0) gi += wd * pi;
        if (momentum != 0) {
            A b = first ? gi : momentum * ld(buf[i]) + (1 - dampening) * gi;
            T bt = st(b);
            buf[i] = bt;
            b = ld(bt);  // later uses see the stored (rounded) buffer, as PyTorch's do
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = st(pi - lr * gi);
    }
}
"""

_ADAM = r"""
// PyTorch's Adam/AdamW (_single_tensor_adam) on one parameter, in place. step_size = lr / bc1,
// bc2_sqrt = sqrt(1 - beta2^t): the bias corrections are computed on the host per step.
extern "C" __global__ void $NAME(T* p, const T* g, T* m, T* v, T* vmax, long long n, A lr,
                                 A beta1, A beta2, A eps, A wd, A step_size, A bc2_sqrt,
                                 int decoupled, int amsgrad, int maximize) {
    const A w1 = 1 - beta1;
    CR_LOOP(i, n) {
        A pi = ld(p[i]);
        A gi = ld(g[i]);
        if (maximize) gi = -gi;
        if (wd != 0) {
            if (decoupled) pi = ld(st(pi * (1 - lr * wd)));
            else gi += wd * pi;
        }
        // exp_avg.lerp_(g, 1 - beta1), in torch's two-branch form
        A mi = ld(m[i]);
        mi = (w1 < (A)0.5) ? mi + w1 * (gi - mi) : gi - (gi - mi) * (1 - w1);
        T mt = st(mi);
        m[i] = mt;
        mi = ld(mt);
        A vi = ld(v[i]) * beta2 + (1 - beta2) * gi * gi;
        T vt = st(vi);
        v[i] = vt;
        vi = ld(vt);
        if (amsgrad) {
            vi = cr_max(ld(vmax[i]), vi);
            T vmt = st(vi);
            vmax[i] = vmt;
            vi = ld(vmt);
        }
        A denom = cr_sqrt(vi) / bc2_sqrt + eps;
        p[i] = st(pi - step_size * (mi / denom));
    }
}
"""

# -------------------------------------------------------------------- activation backwards
_ACT = r"""
// grad * f'(.) in one pass; s is what the backward needs (see the kernel table in Python).
extern "C" __global__ void $NAME(const T* grad, const T* s, T* out, long long n) {
    CR_LOOP(i, n) {
        A g = ld(grad[i]);
        A x = ld(s[i]);
        $BODY
        out[i] = st(r);
    }
}
"""

_ACT_BODIES = {
    # threshold_backward(grad, x or relu(x), 0): 0 where x <= 0 (NaN passes the gradient)
    "relu_bwd": "A r = (x <= (A)0) ? (A)0 : g;",
    # s = sigmoid(x): grad * (1 - y) * y
    "sigmoid_bwd": "A r = g * ((A)1 - x) * x;",
    # s = tanh(x): grad * (1 - y^2)
    "tanh_bwd": "A r = g * ((A)1 - x * x);",
    # s = x: grad * (Phi(x) + x phi(x))
    "gelu_erf_bwd": (
        "const A kAlpha = (A)0.3989422804014327;"  # 1 / sqrt(2 pi)
        " const A kSqrt1_2 = (A)0.7071067811865476;"
        " A cdf = (A)0.5 * ((A)1 + cr_erf(x * kSqrt1_2));"
        " A pdf = cr_exp((A)-0.5 * x * x) * kAlpha;"
        " A r = g * (cdf + x * pdf);"
    ),
    # s = x: PyTorch's tanh-approximation derivative, term by term
    "gelu_tanh_bwd": (
        "const A kBeta = (A)0.7978845608028654;"  # sqrt(2 / pi)
        " const A kKappa = (A)0.044715;"
        " A x_sq = x * x; A x_cube = x_sq * x;"
        " A inner = kBeta * (x + kKappa * x_cube);"
        " A t = cr_tanh(inner);"
        " A left = (A)0.5 * x; A right = (A)1 + t;"
        " A left_d = (A)0.5 * right;"
        " A tanh_d = (A)1 - t * t;"
        " A inner_d = kBeta * ((A)1 + (A)3 * kKappa * x_sq);"
        " A right_d = left * tanh_d * inner_d;"
        " A r = g * (left_d + right_d);"
    ),
}

# --------------------------------------------------------------------- activation forwards
_ACT_FWD = r"""
// y = f(x) in one pass; p0 and p1 are the activation's parameters (see the table in Python).
extern "C" __global__ void $NAME(const T* in, T* out, long long n, A p0, A p1) {
    CR_LOOP(i, n) {
        A x = ld(in[i]);
        $BODY
        out[i] = st(r);
    }
}
"""

# 1 / (1 + exp(min(-x, clamp))), the CPU's clamp (p0) included; written so that NaN stays NaN
# (fmin would drop it)
_SIGMOID = "A e = -x; if (e > p0) e = p0; A s = (A)1 / ((A)1 + cr_exp(e));"

_ACT_FWD_BODIES = {
    "sigmoid_fwd": _SIGMOID + " A r = s;",
    "silu_fwd": _SIGMOID + " A r = x * s;",
    # x * (0.5 (1 + erf(x / sqrt 2)))
    "gelu_erf_fwd": "A r = x * ((A)0.5 * ((A)1 + cr_erf(x * (A)0.7071067811865476)));",
    "gelu_tanh_fwd": (
        "A inner = (A)0.7978845608028654 * (x + (A)0.044715 * (x * x * x));"
        " A r = (A)0.5 * x * ((A)1 + cr_tanh(inner));"
    ),
    # p0 = beta, p1 = threshold: x where beta x > threshold, else log1p(exp(beta x)) / beta
    "softplus_fwd": "A xb = x * p0; A r = (xb > p1) ? x : cr_log1p(cr_exp(xb)) / p0;",
    # p0 = alpha: x for x > 0, else alpha expm1(x) (NaN stays NaN)
    "elu_fwd": "A r = (x > (A)0) ? x : cr_expm1(x) * p0;",
    # p0 = negative slope
    "leaky_relu_fwd": "A r = (x > (A)0) ? x : x * p0;",
}

# --------------------------------------------------------------- softmax + cross-entropy
_CE_FWD = r"""
// One warp a row of x (rows x C): stats[row] = max, stats[rows + row] = log(sum(exp(x - max)))
// (kept apart: their sum, the log-sum-exp, would lose the small part next to a large max);
// loss = w[t] (logsum - (x[t] - max)) as -w[t] log_softmax(x)[t], wrow = w[t]; an ignored row
// gives 0 and 0; a target outside [0, C) gives NaN and NaN.
extern "C" __global__ void $NAME(const T* x, const long long* target, const T* weight,
                                 int has_weight, A* loss, A* stats, A* wrow, long long rows,
                                 long long C, long long ignore_index) {
    CR_ROWS(row, lane, rows) {
        const T* xr = x + row * C;
        A mx = cr_neg_inf((A)0);
        for (long long c = lane; c < C; c += 32) mx = cr_nanmax(mx, ld(xr[c]));
        mx = warp_max(mx);
        A s = 0;
        for (long long c = lane; c < C; c += 32) s += cr_exp(ld(xr[c]) - mx);
        s = warp_sum(s);
        if (lane == 0) {
            A ls = cr_log(s);
            stats[row] = mx;
            stats[rows + row] = ls;
            long long t = target[row];
            if (t == ignore_index) {
                loss[row] = 0;
                wrow[row] = 0;
            } else if (t < 0 || t >= C) {
                loss[row] = cr_nan((A)0);
                wrow[row] = cr_nan((A)0);
            } else {
                A w = has_weight ? ld(weight[t]) : (A)1;
                loss[row] = w * (ls - (ld(xr[t]) - mx));
                wrow[row] = w;
            }
        }
    }
}
"""

_CE_BWD = r"""
// dx[r, c] = scale[r * scale_stride] * w[t_r] * (softmax(x)[r, c] - (c == t_r)), the softmax as
// exp((x - max) - logsum) from the forward's stats (as exp(log_softmax)): the whole backward in
// one pass over x. scale is grad / total weight ('mean'), grad ('sum', stride 0) or the per-row
// grad ('none', stride 1), kept on the device (no host sync).
extern "C" __global__ void $NAME(const T* x, const long long* target, const T* weight,
                                 int has_weight, const A* stats, const A* scale,
                                 long long scale_stride, T* dx, long long rows, long long C,
                                 long long ignore_index) {
    CR_LOOP(i, rows * C) {
        long long row = i / C;
        long long c = i - row * C;
        long long t = target[row];
        A coef;
        if (t == ignore_index) coef = 0;
        else if (t < 0 || t >= C) coef = cr_nan((A)0);
        else coef = scale[row * scale_stride] * (has_weight ? ld(weight[t]) : (A)1);
        A p = cr_exp((ld(x[i]) - stats[row]) - stats[rows + row]);
        dx[i] = st(coef * (p - (c == t ? (A)1 : (A)0)));
    }
}
"""

# --------------------------------------------------------------------------- layer norm
_LN_FWD = r"""
// One warp a row of x (rows x D): mean, biased variance (two passes), rstd = 1/sqrt(var + eps),
// y = (x - mean) rstd w + b.
extern "C" __global__ void $NAME(const T* x, const T* w, const T* b, int has_weight,
                                 int has_bias, T* y, A* mean, A* rstd, long long rows,
                                 long long D, A eps) {
    CR_ROWS(row, lane, rows) {
        const T* xr = x + row * D;
        A s = 0;
        for (long long j = lane; j < D; j += 32) s += ld(xr[j]);
        A mu = warp_sum(s) / (A)D;
        A q = 0;
        for (long long j = lane; j < D; j += 32) {
            A d = ld(xr[j]) - mu;
            q += d * d;
        }
        A r = cr_rsqrt(warp_sum(q) / (A)D + eps);
        for (long long j = lane; j < D; j += 32) {
            A v = (ld(xr[j]) - mu) * r;
            if (has_weight) v *= ld(w[j]);
            if (has_bias) v += ld(b[j]);
            y[row * D + j] = st(v);
        }
        if (lane == 0) {
            mean[row] = mu;
            rstd[row] = r;
        }
    }
}
"""

_LN_BWD_DX = r"""
// One warp a row: with h = dy w and xhat = (x - mean) rstd,
// dx = rstd (h - mean_j(h) - xhat mean_j(h xhat)).
extern "C" __global__ void $NAME(const T* dy, const T* x, const T* w, int has_weight,
                                 const A* mean, const A* rstd, T* dx, long long rows,
                                 long long D) {
    CR_ROWS(row, lane, rows) {
        const T* dyr = dy + row * D;
        const T* xr = x + row * D;
        A mu = mean[row], r = rstd[row];
        A sh = 0, shx = 0;
        for (long long j = lane; j < D; j += 32) {
            A h = ld(dyr[j]);
            if (has_weight) h *= ld(w[j]);
            sh += h;
            shx += h * (ld(xr[j]) - mu) * r;
        }
        sh = warp_sum(sh) / (A)D;
        shx = warp_sum(shx) / (A)D;
        for (long long j = lane; j < D; j += 32) {
            A h = ld(dyr[j]);
            if (has_weight) h *= ld(w[j]);
            A xh = (ld(xr[j]) - mu) * r;
            dx[row * D + j] = st(r * (h - sh - xh * shx));
        }
    }
}
"""

_LN_BWD_DWDB = r"""
// Partial column sums over chunks of `chunk` rows: dw_part[k, j] = sum dy xhat, db_part[k, j]
// = sum dy over rows [k chunk, (k + 1) chunk). The caller sums the chunks: deterministic, no
// atomics. Consecutive threads take consecutive columns (coalesced).
extern "C" __global__ void $NAME(const T* dy, const T* x, const A* mean, const A* rstd,
                                 A* dw_part, A* db_part, long long rows, long long D,
                                 long long chunk) {
    long long chunks = (rows + chunk - 1) / chunk;
    CR_LOOP(i, chunks * D) {
        long long k = i / D;
        long long j = i - k * D;
        long long end = (k + 1) * chunk < rows ? (k + 1) * chunk : rows;
        A sw = 0, sb = 0;
        for (long long r = k * chunk; r < end; ++r) {
            A g = ld(dy[r * D + j]);
            sw += g * (ld(x[r * D + j]) - mean[r]) * rstd[r];
            sb += g;
        }
        dw_part[i] = sw;
        db_part[i] = sb;
    }
}
"""

# --------------------------------------------------------------------------- batch norm
# x: (N, C, HW) C-contiguous (HW = 1 for (N, C)); channel c's M = N HW values are x[n, c, j].
# One warp a channel, its lanes over m = n HW + j (consecutive lanes, consecutive j), meeting in
# warp_sum: deterministic, no atomics.
_BN_STATS = r"""
// mean[c], biased var[c] (two passes: the sum of squared deviations from the mean, no
// cancellation) and invstd[c] = 1 / sqrt(var + eps).
extern "C" __global__ void $NAME(const T* x, A* mean, A* var, A* invstd, long long N,
                                 long long C, long long HW, A eps) {
    const long long M = N * HW;
    CR_ROWS(c, lane, C) {
        const T* xc = x + c * HW;
        A s = 0;
        for (long long m = lane; m < M; m += 32) {
            long long n = m / HW;
            s += ld(xc[n * C * HW + (m - n * HW)]);
        }
        A mu = warp_sum(s) / (A)M;
        A q = 0;
        for (long long m = lane; m < M; m += 32) {
            long long n = m / HW;
            A d = ld(xc[n * C * HW + (m - n * HW)]) - mu;
            q += d * d;
        }
        A v = warp_sum(q) / (A)M;
        if (lane == 0) {
            mean[c] = mu;
            var[c] = v;
            invstd[c] = (A)1 / cr_sqrt(v + eps);
        }
    }
}
"""

_BN_APPLY = r"""
// y = (x - mean[c]) invstd[c] w[c] + b[c], c = (i / HW) % C.
extern "C" __global__ void $NAME(const T* x, const T* w, const T* b, int has_weight,
                                 int has_bias, const A* mean, const A* invstd, T* y,
                                 long long n, long long C, long long HW) {
    CR_LOOP(i, n) {
        long long c = (i / HW) % C;
        A v = (ld(x[i]) - mean[c]) * invstd[c];
        if (has_weight) v *= ld(w[c]);
        if (has_bias) v += ld(b[c]);
        y[i] = st(v);
    }
}
"""

_BN_BWD_SUMS = r"""
// sum_dy[c] = sum dy, sum_dyxhat[c] = sum dy (x - mean[c]) invstd[c] over channel c's values.
extern "C" __global__ void $NAME(const T* dy, const T* x, const A* mean, const A* invstd,
                                 A* sum_dy, A* sum_dyxhat, long long N, long long C,
                                 long long HW) {
    const long long M = N * HW;
    CR_ROWS(c, lane, C) {
        const A mu = mean[c], r = invstd[c];
        A s = 0, sx = 0;
        for (long long m = lane; m < M; m += 32) {
            long long n = m / HW;
            long long k = n * C * HW + c * HW + (m - n * HW);
            A g = ld(dy[k]);
            s += g;
            sx += g * (ld(x[k]) - mu) * r;
        }
        s = warp_sum(s);
        sx = warp_sum(sx);
        if (lane == 0) {
            sum_dy[c] = s;
            sum_dyxhat[c] = sx;
        }
    }
}
"""

_BN_BWD_DX = r"""
// dx = invstd w (dy - sum_dy / M - xhat sum_dyxhat / M), xhat = (x - mean) invstd, per channel
// c = (i / HW) % C, M = N HW.
extern "C" __global__ void $NAME(const T* dy, const T* x, const T* w, int has_weight,
                                 const A* mean, const A* invstd, const A* sum_dy,
                                 const A* sum_dyxhat, T* dx, long long n, long long C,
                                 long long HW, long long M) {
    CR_LOOP(i, n) {
        long long c = (i / HW) % C;
        A r = invstd[c];
        A xh = (ld(x[i]) - mean[c]) * r;
        A v = ld(dy[i]) - sum_dy[c] / (A)M - xh * (sum_dyxhat[c] / (A)M);
        A k = has_weight ? r * ld(w[c]) : r;
        dx[i] = st(k * v);
    }
}
"""

KERNELS: dict[str, str] = {
    "sgd": _SGD,
    "adam": _ADAM,
    **{name: Template(_ACT).safe_substitute(BODY=body) for name, body in _ACT_BODIES.items()},
    **{name: Template(_ACT_FWD).safe_substitute(BODY=b) for name, b in _ACT_FWD_BODIES.items()},
    "ce_fwd": _CE_FWD,
    "ce_bwd": _CE_BWD,
    "ln_fwd": _LN_FWD,
    "ln_bwd_dx": _LN_BWD_DX,
    "ln_bwd_dwdb": _LN_BWD_DWDB,
    "bn_stats": _BN_STATS,
    "bn_apply": _BN_APPLY,
    "bn_bwd_sums": _BN_BWD_SUMS,
    "bn_bwd_dx": _BN_BWD_DX,
    "conv_fwd": CONV_FWD,
    "conv_dx": CONV_DX,
    "conv_dw": CONV_DW,
}


def function_name(kernel: str, dtype: str) -> str:
    """The ``extern "C"`` name of ``kernel`` for ``dtype`` (e.g. ``cr_sgd_float32``)."""
    return f"cr_{kernel}_{dtype}"


def render(kernel: str, dtype: str) -> tuple[str, str]:
    """(CUDA C source, function name) of ``kernel`` (a key of ``KERNELS``) for ``dtype`` (a
    key of ``DTYPES``)."""
    if kernel not in KERNELS:
        raise KeyError(f"no CUDA kernel {kernel!r}; there are {sorted(KERNELS)}")
    if dtype not in DTYPES:
        raise KeyError(f"no CUDA kernel for dtype {dtype!r}; supported: {sorted(DTYPES)}")
    T, A, load, store = DTYPES[dtype]
    name = function_name(kernel, dtype)
    prelude = _PRELUDE.substitute(T=T, A=A, LOAD=load, STORE=store)
    return prelude + Template(KERNELS[kernel]).substitute(NAME=name), name
