"""Run the fused CUDA kernels on the CPU: each kernel source is compiled as C++ with a small shim
(CUDA's built-ins as C++), and launched with one OS thread per lane, a warp at a time, so warp
shuffles meet at a barrier as on a GPU.

This checks what NVRTC's compile check cannot: the kernels' arithmetic and indexing, their
grid-stride loops over partial blocks and warps, and, above all, that the arguments the Python
launchers pass (their order and their C types: CuPy passes a NumPy scalar's raw bytes, so a
``float32`` where the kernel reads ``long long`` silently corrupts) match each kernel's signature.
float16's two PTX conversions are replaced by C++ ``_Float16`` conversions (the same IEEE
round-to-nearest-even). It cannot check speed, nor anything a GPU's memory model adds (the kernels
use no shared memory and no atomics).

Needs a C++20 compiler (``g++``); ``available()`` says whether one is there.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_SHIM = r"""
#include <atomic>
#include <chrono>
#include <cmath>
#include <math.h>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __align__(n) alignas(n)
struct cr_dim3 { long long x = 0, y = 0, z = 0; };
static thread_local cr_dim3 blockIdx, threadIdx;
static cr_dim3 blockDim, gridDim;
static std::atomic<int> cr_failed{0};

struct cr_warp_t {  // a barrier for the 32 lanes of the warp being run, with a time limit
    std::mutex mu; std::condition_variable cv; int waiting = 0; long long phase = 0;
    double slot[32];
    void wait() {
        std::unique_lock<std::mutex> lk(mu);
        long long ph = phase;
        if (++waiting == 32) { waiting = 0; ++phase; cv.notify_all(); return; }
        if (!cv.wait_for(lk, std::chrono::seconds(5), [&] { return phase != ph || cr_failed; })) {
            cr_failed = 1; cv.notify_all();  // lanes diverged at a shuffle: a kernel bug
        }
    }
};
static thread_local cr_warp_t* cr_warp = nullptr;
template <class V> V __shfl_xor_sync(unsigned, V v, int o) {
    int lane = (int)(threadIdx.x & 31);
    cr_warp->slot[lane] = (double)v;
    cr_warp->wait();
    V r = (V)cr_warp->slot[lane ^ o];
    cr_warp->wait();
    return r;
}
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
static inline double __longlong_as_double(long long i) {
    double d; std::memcpy(&d, &i, 8); return d;
}
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
"""

_LAUNCH = r"""
extern "C" int cr_launch(long long cr_grid, long long cr_block, $PARAMS) {
    gridDim.x = cr_grid; blockDim.x = cr_block; cr_failed = 0;
    for (long long cr_b = 0; cr_b < cr_grid; ++cr_b) {
        for (long long cr_w = 0; cr_w < cr_block / 32; ++cr_w) {
            cr_warp_t cr_wp;
            if (!$SHUFFLES) {  // no warp shuffles: the lanes can run one after another
                for (int cr_l = 0; cr_l < 32; ++cr_l) {
                    blockIdx.x = cr_b; threadIdx.x = cr_w * 32 + cr_l; cr_warp = &cr_wp;
                    $NAME($ARGS);
                }
                continue;
            }
            std::vector<std::thread> cr_lanes;
            for (int cr_l = 0; cr_l < 32; ++cr_l) {
                cr_lanes.emplace_back([&, cr_l] {
                    blockIdx.x = cr_b; threadIdx.x = cr_w * 32 + cr_l; cr_warp = &cr_wp;
                    $NAME($ARGS);
                });
            }
            for (auto& t : cr_lanes) t.join();
            if (cr_failed) return 1;
        }
    }
    return 0;
}
"""

# C parameter type -> (ctypes type, the NumPy scalar type CuPy must be given for it)
_SCALARS = {
    "float": (ctypes.c_float, np.float32),
    "double": (ctypes.c_double, np.float64),
    "int": (ctypes.c_int, np.int32),
    "long long": (ctypes.c_longlong, np.int64),
}
_POINTEE = {  # pointer element type -> NumPy dtypes whose memory it reads
    "float": ("float32",),
    "double": ("float64",),
    "long long": ("int64",),
    "cr_bf16": ("bfloat16",),
    "cr_half": ("float16",),
}


def available() -> bool:
    return shutil.which("g++") is not None


def _params(src: str, name: str) -> list[tuple[str, str, bool]]:
    """``(C type, parameter name, is_pointer)`` for each parameter of kernel ``name``."""
    m = re.search(r"__global__\s+void\s+" + re.escape(name) + r"\s*\(([^)]*)\)", src)
    if m is None:
        raise ValueError(f"no kernel {name} in its source")
    out = []
    for p in m.group(1).split(","):
        p = " ".join(p.replace("const ", "").split())
        ptr = "*" in p
        ctype, pname = p.replace("*", " ").rsplit(None, 1)
        out.append((" ".join(ctype.split()), pname, ptr))
    return out


EMULATED_DTYPES = ("float32", "float64", "bfloat16", "float16")

# float16's loads and stores are PTX conversions (cvt.f32.f16, cvt.rn.f16.f32): IEEE conversions,
# round to nearest even, which C++'s _Float16 performs the same way on the CPU
_PTX_HALF = {
    'float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x)); return f;': (
        "_Float16 h; std::memcpy(&h, &v.x, 2); return (float)h;"
    ),
    'cr_half h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(v)); return h;': (
        "_Float16 f = (_Float16)v; cr_half h; std::memcpy(&h.x, &f, 2); return h;"
    ),
}


def _cpu_source(src: str) -> str:
    """The kernel source with its PTX half conversions in C++ (the only assembly it holds)."""
    for ptx, cpp in _PTX_HALF.items():
        src = src.replace(ptx, cpp)
    if "asm(" in src:
        raise ValueError("a kernel holds PTX assembly the emulator does not translate")
    return src


def _unit(src: str, name: str, typedefs: tuple) -> str:
    """One kernel's source and its launcher ``cr_launch_<name>``, in a namespace of its own (each
    source declares its own ``T``/``A`` and helpers)."""
    params = _params(src, name)
    subst = dict(typedefs)
    decl = ", ".join(
        f"{subst.get(t, t)}* {n}" if ptr else f"{subst.get(t, t)} {n}" for t, n, ptr in params
    )
    body = src[src.index('extern "C"') :]
    shuffles = any(w in body for w in ("warp_sum(", "warp_max(", "__shfl"))
    launch = (
        _LAUNCH.replace("cr_launch(", f"cr_launch_{name}(")
        .replace("$SHUFFLES", "1" if shuffles else "0")
        .replace("$PARAMS", decl)
        .replace("$NAME", name)
        .replace("$ARGS", ", ".join(n for _, n, _ in params))
    )
    return f"namespace ns_{name} {{\n{src}\n{launch}\n}}\n"


def _typedefs(src: str) -> tuple:
    return tuple((alias, real) for real, alias in re.findall(r"typedef\s+(\w+)\s+(\w+)\s*;", src))


@functools.cache
def _library() -> ctypes.CDLL:
    """Every kernel of ``chainrule.kernels`` in every emulated dtype, compiled once into one
    shared library (cached on disk by the sources' hash)."""
    from chainrule.kernels import KERNELS, render  # noqa: PLC0415

    units = []
    for k in KERNELS:
        for dt in EMULATED_DTYPES:
            src, name = render(k, dt)
            units.append(_unit(_cpu_source(src), name, _typedefs(src)))
    code = _SHIM + "".join(units)
    key = hashlib.sha256(code.encode()).hexdigest()[:16]
    d = Path(tempfile.gettempdir()) / "chainrule-cuda-emulator"
    d.mkdir(exist_ok=True)
    lib = d / f"kernels-{key}.so"
    if not lib.exists():
        cpp = d / f"kernels-{key}.cpp"
        cpp.write_text(code)
        tmp = d / f"kernels-{key}.{id(code)}.tmp"
        cmd = ["g++", "-std=c++20", "-O0", "-shared", "-fPIC", "-pthread", "-w", str(cpp)]
        res = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"g++ could not build the kernels:\n{res.stderr[-3000:]}")
        tmp.replace(lib)
    return ctypes.CDLL(str(lib))


class Kernel:
    """Stands in for ``cupy.RawKernel(src, name)``: ``kernel((grid,), (block,), args)``."""

    def __init__(self, src: str, name: str) -> None:
        self.src, self.name = src, name
        self.typedefs = _typedefs(src)

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        params = _params(self.src, self.name)
        fn = getattr(_library(), f"cr_launch_{self.name}")
        fn.restype = ctypes.c_int
        if len(args) != len(params):
            raise TypeError(f"{self.name}: {len(params)} parameters, {len(args)} arguments")
        subst = dict(self.typedefs)
        cargs: list[Any] = [ctypes.c_longlong(grid[0]), ctypes.c_longlong(block[0])]
        keep = []
        for i, (a, (ctype, pname, ptr)) in enumerate(zip(args, params)):
            ctype = subst.get(ctype, ctype)
            where = f"{self.name} argument {i} ({pname}: {ctype}{'*' if ptr else ''})"
            if ptr:
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{where}: expects an array, got {type(a).__name__}")
                if a.dtype.name not in _POINTEE[ctype]:
                    raise TypeError(f"{where}: expects {_POINTEE[ctype]}, got {a.dtype}")
                if not a.flags.c_contiguous:
                    raise TypeError(f"{where}: expects a C-contiguous array")
                keep.append(a)
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cty, npt = _SCALARS[ctype]
                if type(a) is not npt:
                    raise TypeError(f"{where}: expects {npt.__name__}, got {type(a).__name__}")
                cargs.append(cty(a.item()))
        if fn(*cargs):
            raise RuntimeError(f"{self.name}: the lanes of a warp diverged at a shuffle")
