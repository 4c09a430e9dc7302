"""Compile every fused CUDA kernel (chainrule.kernels) for every dtype with NVRTC: no GPU and
no chainrule install needed, only CuPy's NVRTC binding (cupy-cuda12x/13x and its nvrtc wheel).

    python tests/gpu/compile_kernels.py [--arch compute_90]

Loads src/chainrule/kernels/cuda_sources.py (and the sibling it imports) by path, as a stand-alone
package that does not run chainrule/kernels/__init__.py; exits 1 when any source fails.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "src/chainrule/kernels/cuda_sources.py"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="compute_90")
    args = ap.parse_args()
    try:
        from cupy.cuda import nvrtc
    except Exception as e:  # noqa: BLE001 - no CuPy or no NVRTC library
        print(f"compile_kernels: CuPy's NVRTC is not importable ({e}); nothing compiled")
        return 2
    pkg = types.ModuleType("crk")  # the kernels folder as a package of its own
    pkg.__path__ = [str(SOURCES.parent)]
    sys.modules["crk"] = pkg
    cs = importlib.import_module("crk.cuda_sources")
    failed = []
    for kernel in cs.KERNELS:
        for dtype in cs.DTYPES:
            src, name = cs.render(kernel, dtype)
            prog = nvrtc.createProgram(src, f"{name}.cu", [], [])
            try:
                nvrtc.compileProgram(prog, [f"-arch={args.arch}"])
                ptx = nvrtc.getPTX(prog)
                ok = f".entry {name}".encode() in ptx
            except Exception:  # noqa: BLE001 - NVRTC raises on compile errors
                ok = False
                print(f"--- {name}\n{nvrtc.getProgramLog(prog)}")
            if not ok:
                failed.append(name)
    total = len(cs.KERNELS) * len(cs.DTYPES)
    print(
        f"compile_kernels: NVRTC {'.'.join(map(str, nvrtc.getVersion()))}, -arch={args.arch}: "
        f"{total - len(failed)}/{total} kernels compiled"
        + (f"; FAILED: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
