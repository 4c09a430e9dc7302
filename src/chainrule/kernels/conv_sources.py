"""CUDA C sources of the direct convolution kernels (``kernels/conv.py``), a part of
``cuda_sources`` kept apart by concept. Like it, this module imports nothing (it is loaded by
path with it by ``tests/gpu/compile_kernels.py``); the sources use its prelude (``T``, ``A``,
``ld``, ``st``, ``CR_LOOP``, ``warp_sum``).
"""

# ---------------------------------------------------------------------- direct convolution
# NCHW, C-contiguous; a 1-d convolution is a 2-d one of height 1. G groups: input channel c
# belongs to group c / Cg, output channel o to o / Cog. pt/pl: top/left zero padding (the
# bottom/right padding only sets the output size, which the caller passes).
CONV_FWD = r"""
// One thread an output element: y[n,o,r,q] = b[o] + sum_{c<Cg,a,e} w[o,c,a,e]
// x[n, g Cg + c, r sh - pt + a dh, q sw - pl + e dw] (zero outside x).
extern "C" __global__ void $NAME(const T* x, const T* w, const T* b, int has_bias, T* y,
                                 long long N, long long C, long long H, long long W,
                                 long long Co, long long G, int kh, int kw, long long oh,
                                 long long ow, int sh, int sw, int pt, int pl, int dh, int dw) {
    const long long Cg = C / G, Cog = Co / G;
    CR_LOOP(i, N * Co * oh * ow) {
        long long t = i / ow;
        const long long q = i - t * ow;
        const long long r = t % oh;
        t /= oh;
        const long long o = t % Co;
        const long long n = t / Co;
        const T* xg = x + (n * C + (o / Cog) * Cg) * H * W;
        const T* wo = w + o * Cg * kh * kw;
        const long long h0 = r * sh - pt, w0 = q * sw - pl;
        A s = 0;
        for (long long c = 0; c < Cg; ++c) {
            const T* xc = xg + c * H * W;
            const T* wc = wo + c * kh * kw;
            for (int a = 0; a < kh; ++a) {
                const long long h = h0 + (long long)a * dh;
                if (h < 0 || h >= H) continue;
                for (int e = 0; e < kw; ++e) {
                    const long long v = w0 + (long long)e * dw;
                    if (v >= 0 && v < W) s += ld(xc[h * W + v]) * ld(wc[a * kw + e]);
                }
            }
        }
        if (has_bias) s += ld(b[o]);
        y[i] = st(s);
    }
}
"""

CONV_DX = r"""
// One thread an input element (the adjoint of conv_fwd in x, a transposed convolution):
// dx[n,c,h,v] = b[c] + sum over o of c's group and kernel taps (a, e) whose output position
// r = (h + pt - a dh) / sh, q = (v + pl - e dw) / sw is whole and inside (oh, ow) of
// u[n,o,r,q] w[o, c - g Cg, a, e].
extern "C" __global__ void $NAME(const T* u, const T* w, const T* b, int has_bias, T* dx,
                                 long long N, long long C, long long H, long long W,
                                 long long Co, long long G, int kh, int kw, long long oh,
                                 long long ow, int sh, int sw, int pt, int pl, int dh, int dw) {
    const long long Cg = C / G, Cog = Co / G;
    CR_LOOP(i, N * C * H * W) {
        long long t = i / W;
        const long long v = i - t * W;
        const long long h = t % H;
        t /= H;
        const long long c = t % C;
        const long long n = t / C;
        const long long g = c / Cg;
        const T* un = u + (n * Co + g * Cog) * oh * ow;
        const T* wc = w + (g * Cog * Cg + (c - g * Cg)) * kh * kw;
        A s = 0;
        for (int a = 0; a < kh; ++a) {
            const long long hp = h + pt - (long long)a * dh;
            if (hp < 0 || hp % sh) continue;
            const long long r = hp / sh;
            if (r >= oh) continue;
            for (int e = 0; e < kw; ++e) {
                const long long vp = v + pl - (long long)e * dw;
                if (vp < 0 || vp % sw) continue;
                const long long q = vp / sw;
                if (q >= ow) continue;
                for (long long o = 0; o < Cog; ++o)
                    s += ld(un[(o * oh + r) * ow + q]) * ld(wc[(o * Cg * kh + a) * kw + e]);
            }
        }
        if (has_bias) s += ld(b[c]);
        dx[i] = st(s);
    }
}
"""

CONV_DW = r"""
// One warp a weight element (the adjoint of conv_fwd in w): dw[o,c,a,e] = sum_{n,r,q}
// u[n,o,r,q] x[n, g Cg + c, r sh - pt + a dh, q sw - pl + e dw], the lanes striding over
// (n, r, q) and meeting in warp_sum: deterministic, no atomics.
extern "C" __global__ void $NAME(const T* x, const T* u, T* dw_out, long long N, long long C,
                                 long long H, long long W, long long Co, long long G, int kh,
                                 int kw, long long oh, long long ow, int sh, int sw, int pt,
                                 int pl, int dh, int dw) {
    const long long Cg = C / G, Cog = Co / G;
    const long long L = N * oh * ow;
    CR_ROWS(row, lane, Co * Cg * kh * kw) {
        long long t = row / kw;
        const int e = (int)(row - t * kw);
        const int a = (int)(t % kh);
        t /= kh;
        const long long c = t % Cg;
        const long long o = t / Cg;
        const long long hoff = (long long)a * dh - pt, voff = (long long)e * dw - pl;
        const T* xc = x + ((o / Cog) * Cg + c) * H * W;
        A s = 0;
        for (long long j = lane; j < L; j += 32) {
            long long m = j / ow;
            const long long q = j - m * ow;
            const long long r = m % oh;
            const long long n = m / oh;
            const long long h = r * sh + hoff, v = q * sw + voff;
            if (h >= 0 && h < H && v >= 0 && v < W)
                s += ld(u[((n * Co + o) * oh + r) * ow + q]) * ld(xc[n * C * H * W + h * W + v]);
        }
        s = warp_sum(s);
        if (lane == 0) dw_out[row] = st(s);
    }
}
"""
