"""The application presets (issue 9) in chainrule and in PyTorch, same model, same initial
weights, same batches: final accuracy / bits per character and wall time.

    python benchmarks/bench_applications.py                          # all presets, default epochs
    python benchmarks/bench_applications.py --only digits-cnn --epochs 3
    python benchmarks/bench_applications.py --mnist DIR              # mnist-cnn needs the IDX files
    python benchmarks/bench_applications.py --json results.json

chainrule runs the preset exactly as ``chainrule train --preset NAME`` does
(``cli.train_from_config``: checkpoints, logs and curves included). PyTorch trains a twin of
the model (the same layers under the same parameter names) whose weights are copied from
chainrule's initialisation through ``state_dict``, with the same optimiser settings, on the very
same batches: chainrule's ``DataLoader`` with the preset's seed, the same random shifts, converted
to torch tensors; after every epoch it is evaluated on the same held-out split. Dropout masks
differ (each framework draws its own), so the curves are close, not identical.

Threads: both frameworks get ``--threads`` (default 1: NumPy's BLAS through threadpoolctl,
``torch.set_num_threads``); on a 2-core machine shared with other jobs one thread each gives
stable times. Wall time is training plus the per-epoch evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PRESETS = ("digits-cnn", "mnist-cnn", "speech-digits", "charlm-gru", "charlm-transformer")


def torch_twin(cfg: dict):  # noqa: ANN201
    """The PyTorch model with chainrule's architecture and parameter names."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    m = cfg["model"]
    if "layers" in m:
        return nn.Sequential(
            *[
                getattr(nn, s["type"])(**{k: v for k, v in s.items() if k != "type"})
                for s in m["layers"]
            ]
        )
    if m["builtin"] == "charlm-gru":

        class CharGRU(nn.Module):
            def __init__(self, vocab: int = 96, embed: int = 64, hidden: int = 256) -> None:
                super().__init__()
                self.embed = nn.Embedding(vocab, embed)
                self.gru = nn.GRU(embed, hidden, batch_first=True)
                self.out = nn.Linear(hidden, vocab)

            def forward(self, x):  # noqa: ANN201
                h, _ = self.gru(self.embed(x))
                return self.out(h).permute(0, 2, 1)

        return CharGRU()
    if m["builtin"] == "charlm-transformer":

        class CharTransformer(nn.Module):
            def __init__(
                self,
                vocab: int = 96,
                d: int = 128,
                nhead: int = 4,
                layers: int = 2,
                max_len: int = 256,
            ) -> None:
                super().__init__()
                self.embed = nn.Embedding(vocab, d)
                self.pos = nn.Embedding(max_len, d)
                layer = nn.TransformerEncoderLayer(
                    d, nhead, 4 * d, dropout=0.1, batch_first=True, norm_first=True
                )
                self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
                self.norm = nn.LayerNorm(d)
                self.out = nn.Linear(d, vocab)

            def forward(self, x):  # noqa: ANN201
                t = x.shape[1]
                h = self.embed(x) + self.pos(torch.arange(t))
                mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
                return self.out(self.norm(self.encoder(h, mask=mask, is_causal=True))).permute(
                    0, 2, 1
                )

        return CharTransformer()
    raise ValueError(f"no PyTorch twin for {m}")


def chainrule_run(cfg: dict, threads: int) -> tuple[dict, dict]:
    """Train with the CLI's code path; returns (summary, initial state dict as arrays)."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    from chainrule import cli, presets  # noqa: PLC0415
    from chainrule.random import manual_seed  # noqa: PLC0415

    # the initial weights train_from_config will draw: same seed, same order (data, then model)
    manual_seed(cfg["seed"])
    cli.build_data(cfg)
    init = {k: np.array(v.data) for k, v in presets.build_model(cfg["model"]).state_dict().items()}
    with threadpool_limits(threads), tempfile.TemporaryDirectory() as d:
        summary = cli.train_from_config(cfg, Path(d), progress=False)
    return summary, init


def torch_run(cfg: dict, init: dict, threads: int) -> dict:
    import torch  # noqa: PLC0415

    from chainrule import cli  # noqa: PLC0415
    from chainrule.data import DataLoader  # noqa: PLC0415
    from chainrule.random import Generator, manual_seed  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.manual_seed(cfg["seed"])
    manual_seed(cfg["seed"])
    train_ds, val_ds, _ = cli.build_data(cfg)
    d, t = cfg["data"], cfg["train"]
    loader = DataLoader(
        train_ds,
        batch_size=d["batch_size"],
        shuffle=d["shuffle"],
        generator=Generator().manual_seed(cfg["seed"]),
    )
    val_loader = DataLoader(val_ds, batch_size=max(d["batch_size"], 256))
    model = torch_twin(cfg)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in init.items()}, strict=True)
    o = dict(cfg["optimizer"])
    opt = getattr(torch.optim, o.pop("name"))(model.parameters(), **o)
    sched = None
    if "scheduler" in cfg:
        s = dict(cfg["scheduler"])
        assert s.pop("interval") == "epoch"
        sched = getattr(torch.optim.lr_scheduler, s.pop("name"))(opt, **s)
    loss_fn = torch.nn.CrossEntropyLoss()

    def tt(b):  # noqa: ANN001, ANN202
        return torch.from_numpy(np.ascontiguousarray(b.data))

    # the same function at the start: chainrule's model with these weights vs the twin (eval mode)
    from chainrule import presets  # noqa: PLC0415
    from chainrule.autograd.grad_mode import no_grad  # noqa: PLC0415
    from chainrule.creation import tensor  # noqa: PLC0415

    ours = presets.build_model(cfg["model"])
    ours.load_state_dict({k: tensor(v) for k, v in init.items()})
    ours.eval()
    model.eval()
    xb, _ = next(iter(val_loader))
    with no_grad(), torch.no_grad():
        gap = float(np.abs(ours(xb).data - model(tt(xb)).numpy()).max())
    print(f"  initial outputs agree to {gap:.1e}", file=sys.stderr)

    start = time.perf_counter()
    logs: dict = {}
    for epoch in range(t["epochs"]):
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(tt(xb)), tt(yb))
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
        model.eval()
        tot = correct = n = 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                x, y = tt(xb), tt(yb)
                out = model(x)
                tot += float(loss_fn(out, y)) * len(y)
                correct += float((out.argmax(1) == y).float().mean()) * len(y)
                n += len(y)
        logs = {"val_loss": tot / n, "val_accuracy": correct / n}
    logs["wall"] = time.perf_counter() - start
    logs["initial_gap"] = gap
    return logs


def _fmt(preset: str, v: dict) -> str:
    if preset.startswith("charlm"):
        return f"{v['val_loss'] / math.log(2):.3f} bits/char ({v['val_accuracy']:.1%} next char)"
    return f"{v['val_accuracy']:.2%} test accuracy"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", nargs="+", choices=PRESETS)
    p.add_argument("--epochs", type=int, help="override every preset's epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--mnist", help="folder with the four MNIST IDX files (mnist-cnn is skipped without it)"
    )
    p.add_argument(
        "--speech-cache",
        help="speech_digits cache folder (default: $CHAINRULE_CACHE or ~/.cache/chainrule)",
    )
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()

    from chainrule import config, presets  # noqa: PLC0415

    rows = []
    for name in args.only or PRESETS:
        cfg = presets.get(name)
        if name == "mnist-cnn":
            if not args.mnist:
                print(f"{name}: skipped (no --mnist DIR)", file=sys.stderr)
                continue
            cfg["data"]["path"] = args.mnist
        if name == "speech-digits" and args.speech_cache:
            cfg["data"]["path"] = args.speech_cache
        cfg = config.validate(config.apply_overrides(cfg, epochs=args.epochs))
        print(f"{name}: chainrule ...", file=sys.stderr, flush=True)
        summary, init = chainrule_run(cfg, args.threads)
        print(f"{name}: PyTorch ...", file=sys.stderr, flush=True)
        ref = torch_run(cfg, init, args.threads)
        f = summary["final"]
        row = {
            "preset": name,
            "epochs": cfg["train"]["epochs"],
            "parameters": summary["parameters"],
            "chainrule": {
                "val_accuracy": f["val_accuracy"],
                "val_loss": f["val_loss"],
                "wall": summary["wall"],
            },
            "torch": ref,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    print("\n| preset | epochs | params | chainrule | PyTorch | chainrule time | PyTorch time |")
    print("|---|---:|---:|---|---|---:|---:|")
    for r in rows:
        c, t = r["chainrule"], r["torch"]
        print(
            f"| {r['preset']} | {r['epochs']} | {r['parameters']:,} | {_fmt(r['preset'], c)} | {_fmt(r['preset'], t)} | {c['wall']:.0f} s | {t['wall']:.0f} s |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
