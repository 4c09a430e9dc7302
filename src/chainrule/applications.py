"""The three applications of backpropagation as presets of ``chainrule train``: images, speech
and language, each a real model on real data that needs no download (docs/applications.md).

    chainrule train --preset digits-cnn            # CNN on scikit-learn's 8x8 digit scans
    chainrule train --preset mnist-cnn --data DIR  # the same idea on MNIST's four IDX files
    chainrule train --preset speech-digits         # 1-D CNN on spoken digits made by espeak-ng
    chainrule train --preset charlm-gru            # character-level GRU language model
    chainrule train --preset charlm-transformer    # small causal transformer, same data
    chainrule generate runs/charlm-gru --prompt "def " --temperature 0.8

This module holds their configs (merged into ``presets.PRESETS``), the two language models
(``presets.BUILTIN``), text sampling, and the callbacks ``chainrule train`` adds for them
(``extra_callbacks``): ``SetEpoch`` for the random-shift augmentation, ``SampleText`` to print a
sample of generated text after every epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import backend, nn
from .train.callbacks import Callback

__all__ = [
    "PRESETS",
    "MODELS",
    "CharGRU",
    "CharTransformer",
    "sample_text",
    "SampleText",
    "extra_callbacks",
]

RELU = {"type": "ReLU"}


def _conv2d(i: int, o: int, k: int) -> list[dict]:
    return [
        {
            "type": "Conv2d",
            "in_channels": i,
            "out_channels": o,
            "kernel_size": k,
            "padding": k // 2,
        },
        {"type": "BatchNorm2d", "num_features": o},
        RELU,
    ]


def _conv1d(i: int, o: int, k: int) -> list[dict]:
    return [
        {
            "type": "Conv1d",
            "in_channels": i,
            "out_channels": o,
            "kernel_size": k,
            "padding": k // 2,
        },
        {"type": "BatchNorm1d", "num_features": o},
        RELU,
    ]


def _pool2d() -> dict:
    return {"type": "MaxPool2d", "kernel_size": 2}


def _head(n_in: int, hidden: int, p: float) -> list[dict]:
    return [
        {"type": "Flatten"},
        {"type": "Dropout", "p": p},
        {"type": "Linear", "in_features": n_in, "out_features": hidden},
        RELU,
        {"type": "Dropout", "p": p},
        {"type": "Linear", "in_features": hidden, "out_features": 10},
    ]


_CLASSIFY = {"loss": "CrossEntropyLoss", "metrics": ["loss", "accuracy"]}
_LM_TRAIN = {"loss": "CrossEntropyLoss", "metrics": ["loss", "accuracy", "bits_per_char"]}

PRESETS: dict[str, dict] = {
    "digits-cnn": {
        "description": "scikit-learn's 8x8 digits, LeNet-style CNN with BatchNorm and Dropout, random 1-pixel shifts (needs chainrule[digits])",
        "seed": 0,
        "data": {"dataset": "digits", "batch_size": 32, "shuffle": True, "val": "test", "shift": 1},
        "model": {
            "layers": [
                *_conv2d(1, 16, 3),
                *_conv2d(16, 32, 3),
                _pool2d(),  # 8x8 -> 4x4
                *_conv2d(32, 64, 3),
                _pool2d(),  # -> 2x2
                *_head(256, 64, 0.25),
            ]
        },  # fmt: skip
        "optimizer": {"name": "Adam", "lr": 0.002},
        "train": {"epochs": 20, **_CLASSIFY},
    },
    "mnist-cnn": {
        "description": "MNIST from its four IDX files (--data DIR), LeNet-style CNN with BatchNorm and Dropout, random 2-pixel shifts",
        "seed": 0,
        # path: --data DIR; "data" finds torchvision's download folder (data/MNIST/raw) too
        "data": {
            "dataset": "idx",
            "path": "data",
            "batch_size": 64,
            "shuffle": True,
            "val": "test",
            "shift": 2,
        },
        "model": {
            "layers": [
                *_conv2d(1, 16, 5),
                _pool2d(),  # 28x28 -> 14x14
                *_conv2d(16, 32, 5),
                _pool2d(),  # -> 7x7
                *_head(32 * 7 * 7, 128, 0.25),
            ]
        },  # fmt: skip
        "optimizer": {"name": "Adam", "lr": 0.001},
        "train": {"epochs": 3, **_CLASSIFY},
    },
    "speech-digits": {
        "description": "spoken digits synthesised by espeak-ng (28 voices, 7 unseen in training), log-mel 1-D CNN",
        "seed": 0,
        "data": {"dataset": "speech_digits", "batch_size": 32, "shuffle": True, "val": "test"},
        "model": {
            "layers": [
                *_conv1d(40, 64, 5),
                {"type": "MaxPool1d", "kernel_size": 2},  # 98 frames -> 49
                *_conv1d(64, 96, 5),
                {"type": "MaxPool1d", "kernel_size": 2},  # -> 24
                *_conv1d(96, 128, 3),
                {"type": "MaxPool1d", "kernel_size": 2},  # -> 12
                {"type": "Flatten"},
                {"type": "Dropout", "p": 0.3},
                {"type": "Linear", "in_features": 128 * 12, "out_features": 10},
            ]
        },  # fmt: skip
        "optimizer": {"name": "Adam", "lr": 0.001},
        "train": {"epochs": 10, **_CLASSIFY},
    },
    "charlm-gru": {
        "description": "character-level GRU language model on Python's pydoc topics; bits per character on held-out topics",
        "seed": 0,
        "data": {
            "dataset": "text",
            "batch_size": 64,
            "shuffle": True,
            "val": "test",
            "seq_len": 64,
        },
        "model": {"builtin": "charlm-gru"},
        "optimizer": {"name": "Adam", "lr": 0.003},
        "scheduler": {"name": "CosineAnnealingLR", "T_max": 10, "interval": "epoch"},
        "train": {"epochs": 10, **_LM_TRAIN},
    },
    "charlm-transformer": {
        "description": "character-level causal transformer (2 layers, learned positions) on Python's pydoc topics; bits per character",
        "seed": 0,
        "data": {
            "dataset": "text",
            "batch_size": 64,
            "shuffle": True,
            "val": "test",
            "seq_len": 64,
        },
        "model": {"builtin": "charlm-transformer"},
        "optimizer": {"name": "Adam", "lr": 0.003},
        "scheduler": {"name": "CosineAnnealingLR", "T_max": 8, "interval": "epoch"},
        "train": {"epochs": 8, **_LM_TRAIN},
    },
}


# ----------------------------------------------------------------------------- language models


class CharGRU(nn.Module):
    """Embedding(96, 64) -> GRU(64, 256) -> Linear(256, 96). Input (N, T) character ids; output
    (N, 96, T) logits of the next character (class dim 1, as ``CrossEntropyLoss`` takes)."""

    def __init__(self, vocab: int = 96, embed: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: Any) -> Any:
        h, _ = self.gru(self.embed(x))
        return self.out(h).permute(0, 2, 1)


class CharTransformer(nn.Module):
    """A small causal (decoder-only) transformer: token and learned position embeddings (d=128),
    2 pre-norm ``TransformerEncoderLayer``\\ s (4 heads, feed-forward 512, dropout 0.1) with a
    causal mask, LayerNorm, Linear(128, 96). Input (N, T <= 256); output (N, 96, T)."""

    def __init__(
        self,
        vocab: int = 96,
        d_model: int = 128,
        nhead: int = 4,
        layers: int = 2,
        max_len: int = 256,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, 4 * d_model, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab)
        self._masks: dict[int, Any] = {}

    def _mask(self, t: int, device: Any) -> Any:
        from .creation import tensor  # noqa: PLC0415

        key = (t, str(device))
        if key not in self._masks:  # True: may not attend
            self._masks[key] = tensor(np.triu(np.ones((t, t), dtype=bool), 1), device=device)
        return self._masks[key]

    def forward(self, x: Any) -> Any:
        from .creation import arange  # noqa: PLC0415

        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"CharTransformer: a context of {t} characters is longer than its {self.max_len} positions"
            )
        h = self.embed(x) + self.pos(arange(t, device=x.device))
        h = self.encoder(h, mask=self._mask(t, x.device), is_causal=True)
        return self.out(self.norm(h)).permute(0, 2, 1)


MODELS = {"charlm-gru": CharGRU, "charlm-transformer": CharTransformer}


# ----------------------------------------------------------------------------- sampling


def sample_text(
    model: Any,
    vocab: Any,
    prompt: str = "",
    length: int = 200,
    temperature: float = 0.8,
    seed: int | None = None,
    context: int = 64,
) -> str:
    """``prompt`` followed by ``length`` characters drawn one at a time from ``model`` (a
    character language model: (1, T) ids -> (1, V, T) logits) with probabilities
    ``softmax(logits / temperature)`` (``temperature=0``: always the likeliest), looking at the
    last ``context`` characters. Uses its own generator (``seed``), never the global one, and the
    model in eval mode without gradients (its mode is restored), on the model's device."""
    from .autograd.grad_mode import no_grad  # noqa: PLC0415
    from .creation import tensor  # noqa: PLC0415

    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    prompt = vocab.normalize(prompt)
    ids = [int(i) for i in vocab.encode(prompt or "\n")]
    start = len(ids) if prompt else 1
    was = getattr(model, "training", False)
    dev = next((p.device for p in model.parameters()), None)
    model.eval()
    try:
        with no_grad():
            for _ in range(length):
                x = tensor(np.asarray(ids[-context:], dtype=np.int64)[None], device=dev)
                last = model(x).data[0, :, -1]  # one GPU read per character: it picks the next
                logits = backend.to_host(last).astype(np.float64)
                if temperature == 0:
                    nxt = int(logits.argmax())
                else:
                    z = logits / temperature
                    p = np.exp(z - z.max())
                    nxt = int(rng.choice(len(p), p=p / p.sum()))
                ids.append(nxt)
    finally:
        model.train(was)
    return prompt + vocab.decode(ids[start:])


class SampleText(Callback):
    """After every epoch, prints ``length`` characters sampled after ``prompt`` and appends them
    to ``path`` (e.g. ``samples.txt`` in the run folder). The sample of epoch ``e`` is drawn with
    seed ``(seed, e)``, so it is the same in a resumed run."""

    def __init__(
        self,
        vocab: Any,
        prompt: str = "The ",
        length: int = 200,
        temperature: float = 0.8,
        seed: int = 0,
        context: int = 64,
        path: str | Path | None = None,
        stream: Any = None,
    ) -> None:
        self.vocab, self.prompt, self.length, self.temperature = vocab, prompt, length, temperature
        self.seed, self.context, self.path, self.stream = seed, context, path, stream

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        text = sample_text(
            self.model, self.vocab, self.prompt, self.length, self.temperature, seed, self.context
        )
        bpc = (logs or {}).get("val_bits_per_char")
        head = f"--- sample after epoch {epoch + 1}" + (
            f" (held-out {bpc:.3f} bits/char)" if bpc is not None else ""
        )
        print(
            f"{head}, temperature {self.temperature}:\n{text}\n---",
            file=self.stream or sys.stdout,
            flush=True,
        )
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{head}\n{text}\n\n")


def extra_callbacks(cfg: dict, train_ds: Any, run_dir: Path | None = None) -> list[Callback]:
    """The callbacks ``chainrule train`` adds for a config: ``SetEpoch`` when the training data
    has ``set_epoch`` (augmentation), ``SampleText`` for the text dataset."""
    from .data.augment import SetEpoch  # noqa: PLC0415

    out: list[Callback] = []
    if callable(getattr(train_ds, "set_epoch", None)):
        out.append(SetEpoch(train_ds))
    d = cfg["data"]
    if d["dataset"] == "text":
        from .data.datasets.text import Vocabulary  # noqa: PLC0415

        out.append(
            SampleText(
                Vocabulary.ascii(), seed=cfg["seed"], context=d.get("seq_len", 64),
                path=None if run_dir is None else Path(run_dir) / "samples.txt",
            )
        )  # fmt: skip
    return out
