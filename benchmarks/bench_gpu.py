"""chainrule on CuPy against PyTorch CUDA, on one GPU, in the same process: training throughput,
achieved TFLOP/s and peak GPU memory.

    python benchmarks/bench_gpu.py                     # every case, 5 rounds
    python benchmarks/bench_gpu.py --quick             # a short smoke run (2 rounds, short timings)
    python benchmarks/bench_gpu.py --only mlp big --modes fp32 tf32 --rounds 7
    python benchmarks/bench_gpu.py --only cnn1d cnn2d --conv direct  # direct conv kernels

Cases (cross-entropy; the same initial weights in both frameworks, copied from chainrule's
initialisation through state_dict):
  mlp     784-512-512-10 ReLU, batch 4096, SGD momentum 0.9        (fp32, tf32, bf16 autocast)
  cnn1d   the MNIST-1D CNN (3 strided Conv1d + Linear), batch 8192, Adam          (fp32, tf32)
  cnn2d   32x32x3 inputs: [Conv2d 3x3 pad 1 -> ReLU -> MaxPool2d 2] x3 (32, 64, 128 channels),
          Linear(2048, 10); batch 256, SGD momentum                              (fp32, tf32)
  big     4096-4096-4096-10 ReLU, batch 8192, SGD momentum                        (fp32, tf32)

Speed: the frameworks alternate round after round (synchronising the GPU around each timing);
the ratio is the median over rounds of chainrule / PyTorch samples/s (> 1: chainrule faster).
TFLOP/s: training FLOPs (3x the forward's multiply-adds x 2, from the layers' shapes) per second,
and as a fraction of the GPU's measured 8192^3 matmul rate in the same precision (PyTorch's
cuBLAS call; fp32 and TF32; bf16 for autocast). Memory: each framework's caching allocator's
peak over the case (chainrule: cr.cuda.max_memory_reserved() after cr.cuda.empty_cache();
PyTorch: torch.cuda.max_memory_reserved() after reset_peak_memory_stats()).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time

import numpy as np

import bench_nn  # the CPU benchmark's model definitions (this folder is on sys.path)

CASES = {
    "mlp": (4096, ("fp32", "tf32", "bf16")),
    "cnn1d": (8192, ("fp32", "tf32")),
    "cnn2d": (256, ("fp32", "tf32")),
    "big": (8192, ("fp32", "tf32")),
}


def build(M, name: str):  # noqa: ANN201 - M is chainrule or torch
    nn = M.nn
    if name in ("mlp", "cnn1d"):  # the CPU benchmark's models (cnn1d: the 'mnist1d-cnn' preset)
        return bench_nn.build(M, name)
    if name == "big":
        return nn.Sequential(
            nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10)
        )
    if name == "cnn2d":
        layers, c = [], 3
        for out in (32, 64, 128):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2048, 10))
    raise ValueError(name)


def input_shape(name: str, batch: int) -> tuple:
    return {"mlp": (batch, 784), "big": (batch, 4096), "cnn1d": (batch, 1, 40)}.get(
        name, (batch, 3, 32, 32)
    )


def train_flops(name: str, batch: int) -> float:
    """Multiply-add FLOPs of one training step: 2 per MAC, forward + input grad + weight grad
    (the first layer's input gradient counted too: an upper bound by at most a third of it)."""
    import torch

    model = build(torch, name)
    macs = [0]

    def hook(mod, inp, out):  # noqa: ANN001, ANN202
        if isinstance(mod, torch.nn.Linear):
            macs[0] += out.numel() * mod.in_features
        elif isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d)):
            k = int(np.prod(mod.kernel_size)) * mod.in_channels // mod.groups
            macs[0] += out.numel() * k

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros((1,) + input_shape(name, batch)[1:]))
    return 6.0 * macs[0] * batch


def set_mode(cr, torch, mode: str) -> None:  # noqa: ANN001
    tf32 = mode == "tf32"
    cr.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(M, mode: str):  # noqa: ANN001, ANN201
    import contextlib

    if mode != "bf16":
        return contextlib.nullcontext()
    return M.autocast(device_type="cuda", dtype=M.bfloat16)


def setup(fw: str, name: str, batch: int, mode: str):  # noqa: ANN201
    import chainrule as cr

    cr.manual_seed(0)
    ref = build(cr, name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_shape(name, batch)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    if fw == "chainrule":
        M, model = cr, ref.to("cuda")
        xb, yb = cr.tensor(x).to("cuda"), cr.tensor(y).to("cuda")
    else:
        import torch

        M, model = torch, build(torch, name)
        model.load_state_dict(
            {k: torch.from_numpy(v.numpy().copy()) for k, v in ref.state_dict().items()}
        )
        model = model.to("cuda")
        xb, yb = torch.from_numpy(x).to("cuda"), torch.from_numpy(y).to("cuda")
    opt = (
        M.optim.Adam(model.parameters(), lr=1e-2)
        if name == "cnn1d"
        else M.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    )
    lossf = M.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        with autocast(M, mode):
            loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()

    return step


def timed(step, n: int, sync) -> float:  # noqa: ANN001
    sync()
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return time.perf_counter() - t


def matmul_rates(cr, torch, quick: bool) -> dict:  # noqa: ANN001
    """TFLOP/s of an 8192^3 matmul: PyTorch (cuBLAS) fp32, TF32, bf16; chainrule fp32, TF32."""
    n = 4096 if quick else 8192
    flops = 2.0 * n**3
    out = {}
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
    for mode, dt in (("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)):
        set_mode(cr, torch, mode)
        a2, b2 = a.to(dt), b.to(dt)
        (a2 @ b2).sum().item()
        reps = 3 if quick else 10
        t = timed(lambda a2=a2, b2=b2: a2 @ b2, reps, torch.cuda.synchronize)
        out[f"torch {mode}"] = flops * reps / t / 1e12
    ca, cb = cr.randn(n, n, device="cuda"), cr.randn(n, n, device="cuda")
    for mode in ("fp32", "tf32"):
        set_mode(cr, torch, mode)
        ca @ cb
        reps = 3 if quick else 10
        t = timed(lambda ca=ca, cb=cb: ca @ cb, reps, cr.cuda.synchronize)
        out[f"chainrule {mode}"] = flops * reps / t / 1e12
    set_mode(cr, torch, "fp32")
    del a, b, a2, b2, ca, cb
    return out


def run_case(cr, torch, name: str, mode: str, rounds: int, seconds: float, peak: dict) -> dict:  # noqa: ANN001
    batch = CASES[name][0]
    set_mode(cr, torch, mode)
    gc.collect()
    cr.cuda.empty_cache()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    steps = {fw: setup(fw, name, batch, mode) for fw in ("chainrule", "torch")}
    syncs = {"chainrule": cr.cuda.synchronize, "torch": torch.cuda.synchronize}
    for fw, step in steps.items():  # warm-up: kernel compilation, allocator growth, cuDNN picks
        for _ in range(3):
            step()
        syncs[fw]()
    per_step = timed(steps["chainrule"], 2, syncs["chainrule"]) / 2
    n = max(2, int(seconds / max(per_step, 1e-6)))
    per = {fw: [] for fw in steps}
    for _ in range(rounds):
        for fw, step in steps.items():
            per[fw].append(n * batch / timed(step, n, syncs[fw]))
    flops = train_flops(name, batch)
    ref_rate = peak.get(f"torch {mode}", float("nan"))
    row = {"case": name, "mode": mode, "batch": batch}
    for fw in steps:
        sps = statistics.median(per[fw])
        tflops = flops / batch * sps / 1e12
        row[f"{fw} samples/s"] = round(sps, 1)
        row[f"{fw} TFLOP/s"] = round(tflops, 2)
        row[f"{fw} of matmul peak"] = round(tflops / ref_rate, 3)
    row["ratio"] = round(
        statistics.median(c / t for c, t in zip(per["chainrule"], per["torch"])), 3
    )
    row["chainrule peak MiB"] = round(cr.cuda.max_memory_reserved() / 2**20, 1)
    row["torch peak MiB"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    row["memory ratio"] = round(row["chainrule peak MiB"] / max(row["torch peak MiB"], 1e-9), 3)
    del steps
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per timing (per framework)")
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--modes", nargs="*", default=["fp32", "tf32", "bf16"])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 0.05 s timings")
    ap.add_argument(
        "--conv",
        choices=["im2col", "direct"],
        default=None,
        help="chainrule's GPU convolutions (sets CHAINRULE_CUDA_CONV; default: the environment's)",
    )
    args = ap.parse_args()
    if args.conv is not None:
        os.environ["CHAINRULE_CUDA_CONV"] = args.conv
    if args.quick:
        args.rounds, args.seconds = 2, 0.05
    try:
        import torch

        import chainrule as cr
    except ImportError as e:
        print(f"bench_gpu: needs chainrule and torch ({e}); nothing measured")
        return 0
    if not torch.cuda.is_available():
        print("bench_gpu: no GPU here (PyTorch sees no CUDA device); nothing measured")
        return 0
    if not cr.cuda.is_available():
        try:
            cr.backend.cuda_module()
        except RuntimeError as e:
            print(f"bench_gpu: chainrule cannot use the GPU ({e}); nothing measured")
            return 0
    conv = os.environ.get("CHAINRULE_CUDA_CONV", "im2col")
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}, conv {conv}", flush=True)
    peak = matmul_rates(cr, torch, args.quick)
    print(json.dumps({"matmul TFLOP/s": {k: round(v, 1) for k, v in peak.items()}}), flush=True)
    has_autocast = hasattr(cr, "autocast")
    for name in args.only:
        for mode in CASES[name][1]:
            if mode not in args.modes:
                continue
            if mode == "bf16" and not has_autocast:
                print(json.dumps({"case": name, "mode": mode, "skipped": "no cr.autocast yet"}))
                continue
            try:
                row = run_case(cr, torch, name, mode, args.rounds, args.seconds, peak)
            except Exception as e:  # noqa: BLE001 - one failing case must not hide the others
                row = {"case": name, "mode": mode, "error": f"{type(e).__name__}: {e}"[:500]}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
