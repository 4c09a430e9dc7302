"""The engine's speed against PyTorch (CPU, same thread count) on three training workloads.

    python benchmarks/bench_engine.py            # all workloads, 5 rounds
    python benchmarks/bench_engine.py --rounds 7 --only xor mlp

Workloads (each a full training step: forward, loss, backward, SGD-with-momentum update):
  xor  2-4-1 sigmoid net on the 4 XOR patterns, full batch, MSE: per-op overhead dominates.
  mlp  784-512-512-10 ReLU net, batch 128, cross-entropy: BLAS and overhead both matter.
  big  4096-4096-4096-10 ReLU net, batch 512: BLAS dominates; reported as a fraction of the
       machine's float32 matrix-multiply rate on the same shapes, measured first.

The frameworks run interleaved, round after round, on the same data and initial weights; the
table quotes the median over rounds of the per-round ratio (noise on this shared machine hits
both sides of a ratio alike). A hand-written NumPy loop without autograd is the floor for xor/mlp.

OpenBLAS note: where OPENBLAS_CORETYPE is set (some machines set it for old OpenBLAS builds) NumPy
may run a slower kernel than it could; run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to
measure NumPy at its best. The script prints the kernel in use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import chainrule as cr
import chainrule.nn.functional as F

try:
    import torch
except ImportError:  # the comparison needs the test extra
    torch = None


# ----------------------------------------------------------------------------- model builders


def init_weights(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    rng = np.random.default_rng(seed)
    out = []
    for fin, fout in zip(sizes[:-1], sizes[1:]):
        k = 1 / np.sqrt(fin)
        out.append(
            (
                rng.uniform(-k, k, (fin, fout)).astype(np.float32),
                rng.uniform(-k, k, (fout,)).astype(np.float32),
            )
        )
    return out


class CrNet:
    """A plain MLP on chainrule tensors (no nn.Module: the engine alone), trained with
    chainrule.optim.SGD."""

    def __init__(self, weights: list, act: str, lr: float, momentum: float) -> None:
        self.params = []
        for w, b in weights:
            self.params += [cr.tensor(w, requires_grad=True), cr.tensor(b, requires_grad=True)]
        self.act = act
        self.opt = cr.optim.SGD(self.params, lr=lr, momentum=momentum)

    def forward(self, x: cr.Tensor) -> cr.Tensor:
        p = self.params
        n = len(p) // 2
        for i in range(n):
            x = x @ p[2 * i] + p[2 * i + 1]
            if self.act == "sigmoid" or i < n - 1:
                x = x.sigmoid() if self.act == "sigmoid" else x.relu()
        return x

    def step(self) -> None:
        self.opt.step()
        self.opt.zero_grad()


def cr_step_fn(net: CrNet, x: cr.Tensor, y: cr.Tensor, loss: str):
    def step() -> float:
        out = net.forward(x)
        if loss == "mse":
            lv = F.mse_loss(out, y)
        else:
            lv = F.cross_entropy(out, y)
        lv.backward()
        net.step()
        return lv

    return step


def torch_step_fn(weights: list, act: str, lr: float, mom: float, x, y, loss: str):
    layers = []
    for i, (w, b) in enumerate(weights):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if act == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        elif i < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom)
    lossf = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        lv = lossf(model(x), y)
        lv.backward()
        opt.step()
        return lv

    return step


def numpy_step_fn(weights: list, act: str, lr: float, mom: float, x, y, loss: str):
    """The same training step by hand, no autograd: the floor an engine on NumPy can approach."""
    W = [w.copy() for w, _ in weights]
    B = [b.copy() for _, b in weights]
    VW = [np.zeros_like(w) for w in W]
    VB = [np.zeros_like(b) for b in B]
    onehot = np.eye(10, dtype=np.float32)[y] if loss == "ce" else None
    n = len(W)

    def step() -> float:
        hs = [x]
        h = x
        for i in range(n):
            z = h @ W[i] + B[i]
            if act == "sigmoid":
                h = 1 / (1 + np.exp(-z))
            elif i < n - 1:
                h = np.maximum(z, 0)
            else:
                h = z
            hs.append(h)
        if loss == "mse":
            g = 2 * (h - y) / h.size
            lv = ((h - y) ** 2).mean()
        else:
            s = h - h.max(1, keepdims=True)
            lse = np.log(np.exp(s).sum(1, keepdims=True))
            p = np.exp(s - lse)
            lv = -((s - lse) * onehot).sum() / len(h)
            g = (p - onehot) / len(h)
        for i in reversed(range(n)):
            out = hs[i + 1]
            if act == "sigmoid":
                g = g * out * (1 - out)
            elif i < n - 1:
                g = g * (out > 0)
            gw = hs[i].T @ g
            gb = g.sum(0)
            if i > 0:
                g = g @ W[i].T
            VW[i] *= mom
            VW[i] += gw
            W[i] -= lr * VW[i]
            VB[i] *= mom
            VB[i] += gb
            B[i] -= lr * VB[i]
        return lv

    return step


# ----------------------------------------------------------------------------- workloads


def make(name: str) -> dict:
    rng = np.random.default_rng(1)
    if name == "xor":
        sizes, act, loss, lr, mom = [2, 4, 1], "sigmoid", "mse", 0.5, 0.9
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        y = np.array([[0], [1], [1], [0]], np.float32)
        steps, unit, batch = 2000, "steps/s", 1
    elif name == "mlp":
        sizes, act, loss, lr, mom = [784, 512, 512, 10], "relu", "ce", 0.01, 0.9
        x = rng.standard_normal((128, 784)).astype(np.float32)
        y = rng.integers(0, 10, 128)
        steps, unit, batch = 40, "samples/s", 128
    else:
        sizes, act, loss, lr, mom = [4096, 4096, 4096, 10], "relu", "ce", 0.001, 0.9
        x = rng.standard_normal((512, 4096)).astype(np.float32)
        y = rng.integers(0, 10, 512)
        steps, unit, batch = 3, "samples/s", 512
    w = init_weights(sizes)
    fns = {
        "chainrule": cr_step_fn(CrNet(w, act, lr, mom), cr.tensor(x), cr.tensor(y), loss),
        "numpy": numpy_step_fn(w, act, lr, mom, x, y, loss),
    }
    if torch is not None:
        ty = torch.from_numpy(y)
        fns["torch"] = torch_step_fn(w, act, lr, mom, torch.from_numpy(x), ty, loss)
    flops = 0
    for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:])):
        mult = 3 if i > 0 else 2  # forward, weight grad, input grad (none for the first layer)
        flops += mult * 2 * len(x) * fin * fout
    return {
        "fns": fns,
        "steps": steps,
        "unit": unit,
        "batch": batch,
        "flops": flops,
        "sizes": sizes,
    }


def timed(fn, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t


def matmul_rate(m: int, k: int, n: int, reps: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    a @ b
    best = min(timed(lambda: a @ b, reps) / reps for _ in range(3))
    return 2 * m * k * n / best


def blas_info() -> str:
    try:
        import threadpoolctl

        info = [i for i in threadpoolctl.threadpool_info() if i.get("internal_api") == "openblas"]
        if info:
            return f"OpenBLAS {info[0].get('version')} kernel {info[0].get('architecture')}, {info[0].get('num_threads')} threads"
    except ImportError:
        pass
    return "BLAS: (install threadpoolctl to see the kernel)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=["xor", "mlp", "big"])
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"# {threads} cores; {blas_info()}; torch {torch.__version__ if torch else 'absent'}")
    rows = []
    for name in args.only:
        w = make(name)
        fns = w["fns"]
        for fn in fns.values():  # warm up
            timed(fn, max(1, w["steps"] // 10))
        per = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                per[k].append(w["steps"] * w["batch"] / timed(fn, w["steps"]))
        med = {k: statistics.median(v) for k, v in per.items()}
        row = {"workload": name, "unit": w["unit"], **{k: med[k] for k in fns}}
        if "torch" in per:
            row["vs torch"] = statistics.median(
                c / t for c, t in zip(per["chainrule"], per["torch"])
            )
        row["vs numpy"] = statistics.median(c / n for c, n in zip(per["chainrule"], per["numpy"]))
        if name == "big":
            peak = matmul_rate(512, 4096, 4096)
            achieved = med["chainrule"] / w["batch"] * w["flops"]
            row["of matmul peak"] = achieved / peak
            row["peak GFLOP/s"] = peak / 1e9
        rows.append(row)
        print(_fmt(row), flush=True)


def _fmt(row: dict) -> str:
    parts = []
    for k, v in row.items():
        if isinstance(v, float):
            v = f"{v:.3g}" if "vs" in k or "of" in k else f"{v:,.0f}"
        parts.append(f"{k}={v}")
    return "  ".join(parts)


if __name__ == "__main__":
    main()
