"""Layers, losses and optimisers against PyTorch (CPU, same thread count): training throughput
and peak memory of one training loop per model.

    python benchmarks/bench_nn.py                 # all models, 5 rounds, with memory
    python benchmarks/bench_nn.py --only mlp gru --rounds 7 --no-memory

Models (each trained with cross-entropy; the same weights in both frameworks, copied from
chainrule's initialisation through state_dict):
  mlp      784-512-512-10 ReLU, batch 128, SGD momentum 0.9
  cnn1d    the MNIST-1D CNN: Conv1d 1->25 k5 s2 p1, 25->25 k3 s2 p1 (x2), ReLU, Linear(125, 10);
           batch 100, Adam
  cnn2d    28x28 inputs: [Conv2d k5 -> ReLU -> MaxPool2d 2] x2 (8, 16 channels), Linear(256, 10);
           batch 64, SGD momentum
  gru      the MNIST-1D GRU: bidirectional GRU(1, 6) over 40 steps, Linear(480, 10); batch 100, Adam

Speed: the frameworks alternate, round after round; the table quotes the median over rounds of
the per-round ratio chainrule / PyTorch (> 1 means chainrule is faster).
Memory: each (framework, model) runs alone in a fresh process; the figure is the growth of the
process's peak resident memory over a few training steps, measured from just before the first
step (Linux resets the peak through /proc/self/clear_refs), so library code is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = ("mlp", "cnn1d", "cnn2d", "gru")


def build(M, name: str):  # noqa: ANN201 - M is the chainrule or torch module
    nn = M.nn
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
    if name == "cnn1d":
        return nn.Sequential(
            nn.Conv1d(1, 25, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(25, 25, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(125, 10),
        )
    if name == "cnn2d":
        return nn.Sequential(
            nn.Conv2d(1, 8, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 10),
        )
    if name == "gru":

        class GRUNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.gru = nn.GRU(1, 6, batch_first=True, bidirectional=True)
                self.fc = nn.Linear(480, 10)

            def forward(self, x):  # noqa: ANN001, ANN202
                out, _ = self.gru(x)
                return self.fc(out.reshape(out.shape[0], -1))

        return GRUNet()
    raise ValueError(name)


def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = {
        "mlp": (128, 784),
        "cnn1d": (100, 1, 40),
        "cnn2d": (64, 1, 28, 28),
        "gru": (100, 40, 1),
    }[name]
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, shape[0])


def optimizer(M, name: str, params):  # noqa: ANN001, ANN201
    if name in ("cnn1d", "gru"):
        return M.optim.Adam(params, lr=1e-2)
    return M.optim.SGD(params, lr=0.01, momentum=0.9)


def setup(fw: str, name: str):  # noqa: ANN201
    import chainrule as cr

    cr.manual_seed(0)
    ref = build(cr, name)
    x, y = data(name)
    if fw == "chainrule":
        model, M = ref, cr
        xb, yb = cr.tensor(x), cr.tensor(y)
    else:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        M = torch
        model = build(torch, name)
        model.load_state_dict(
            {k: torch.from_numpy(v.numpy().copy()) for k, v in ref.state_dict().items()}
        )
        xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    opt = optimizer(M, name, model.parameters())
    lossf = M.nn.CrossEntropyLoss()

    def step() -> float:
        opt.zero_grad()
        loss = lossf(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    return step, len(x)


def timed(step, n: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - t


def speed(names: list[str], rounds: int) -> list[dict]:
    rows = []
    for name in names:
        steps = {fw: setup(fw, name) for fw in ("chainrule", "torch")}
        batch = steps["chainrule"][1]
        # calibrate: about 0.3 s of chainrule work per timing
        steps["chainrule"][0]()
        steps["torch"][0]()
        n = max(3, int(0.3 / max(timed(steps["chainrule"][0], 2) / 2, 1e-5)))
        per = {fw: [] for fw in steps}
        for _ in range(rounds):
            for fw, (step, _) in steps.items():
                per[fw].append(n * batch / timed(step, n))
        ratio = statistics.median(c / t for c, t in zip(per["chainrule"], per["torch"]))
        rows.append(
            {
                "model": name,
                "chainrule samples/s": statistics.median(per["chainrule"]),
                "torch samples/s": statistics.median(per["torch"]),
                "ratio": ratio,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def memory_child(fw: str, name: str) -> None:
    step, _ = setup(fw, name)
    base = _status("VmRSS:")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    for _ in range(3):
        step()
    print(json.dumps({"peak_growth": _status("VmHWM:") - base}))


def memory(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        row = {"model": name}
        for fw in ("chainrule", "torch"):
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--memory-child", fw, name],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            row[f"{fw} MiB"] = json.loads(out)["peak_growth"] / 2**20
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=list(MODELS))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", nargs=2)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(f"# {os.cpu_count()} cores")
    speed(args.only, args.rounds)
    if not args.no_memory:
        memory(args.only)


if __name__ == "__main__":
    main()
