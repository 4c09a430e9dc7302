"""A character-level language-modelling corpus that every Python installation carries: the Python
reference documentation text in the standard library's ``pydoc_data.topics`` (about 465,000
characters of English prose and code in Python 3.11).

    train, held_out = char_corpus(seq_len=64)
    x, y = train[0]              # 64 character ids, and the same window shifted by one
    train.vocab.decode(x)        # back to text

Corpus. The topics (``pydoc_data.topics.topics``, one per statement, type or special method
name) in sorted order, cut into paragraphs (at blank lines) and **deduplicated**: the topics
overlap (``specialnames`` contains ``attribute-access``, ``compound`` contains ``if``, ...; a fifth
of the text is repeated), so a paragraph is kept only where it first occurs. Paragraphs are joined
by blank lines and normalised to the **fixed vocabulary** below.

Vocabulary. Newline and the 95 printable ASCII characters (space to ``~``): 96 symbols, in
code-point order. The docs' few non-ASCII characters are mapped to ASCII (curly quotes to straight
ones, dashes to ``-``/``--``, ``…`` to ``...``, accented letters to their base letter), anything
else to ``?``. The vocabulary does not depend on the text, so a model trained on one Python's
topics has the same shape as on another's, and ``chainrule generate`` needs nothing but the run's
config and weights. (``Vocabulary.from_text`` builds one from a text's own characters instead.)

Split. By topic: a topic is held out when the CRC-32 of its name is 0 mod 10 (stable across
Python versions, since it depends only on the names), which holds out about 11% of the
deduplicated text; with the deduplication no held-out paragraph occurs in the training text. ``path=`` (``--data FILE``) trains on a
UTF-8 text file instead; its last 10% is held out.

Windows. Non-overlapping windows of ``seq_len + 1`` characters every ``seq_len``: the input is
the first ``seq_len`` ids, the target the last ``seq_len`` (each position predicts the next
character). Both int64, shaped (N, seq_len).
"""

from __future__ import annotations

import os
import re
import unicodedata
import zlib
from pathlib import Path

import numpy as np

from ..dataset import TensorDataset

__all__ = [
    "Vocabulary",
    "pydoc_topics",
    "pydoc_corpus",
    "split_topics",
    "char_windows",
    "char_corpus",
]

_ASCII = "\n" + "".join(chr(c) for c in range(32, 127))
_REPLACE = {
    "\t": "    ", "\r": "", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2013": "-", "\u2014": "--", "\u2026": "...", "\u00a0": " ", "\u00df": "ss", "\u00b0": " degrees",
}  # fmt: skip


class Vocabulary:
    """Characters <-> integer ids. ``encode(text)`` gives an int64 array (characters outside the
    vocabulary become ``unknown``, which must be in it); ``decode(ids)`` the text."""

    def __init__(self, chars: str, unknown: str = "?") -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("Vocabulary: characters must be distinct")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.unknown = unknown
        self._table = np.full(
            0x110000 if any(ord(c) > 0xFFFF for c in chars) else 0x10000, -1, np.int64
        )
        for c, i in self.stoi.items():
            self._table[ord(c)] = i

    @classmethod
    def ascii(cls) -> Vocabulary:
        """Newline and printable ASCII: the 96 symbols the presets use (module docstring)."""
        return cls(_ASCII)

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The distinct characters of ``text``, in code-point order."""
        return cls("".join(sorted(set(text))), unknown=min(text) if text else "?")

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} characters)"

    def normalize(self, text: str) -> str:
        """``text`` with characters outside the vocabulary mapped to ASCII look-alikes where
        there is one (module docstring), else to ``unknown``."""
        if all(c in self.stoi for c in text):
            return text
        out = []
        for c in text:
            if c in self.stoi:
                out.append(c)
                continue
            r = _REPLACE.get(c)
            if r is None:
                base = "".join(
                    ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch)
                )
                r = base if base and all(ch in self.stoi for ch in base) else self.unknown
            out.append("".join(ch if ch in self.stoi else self.unknown for ch in r))
        return "".join(out)

    def encode(self, text: str) -> np.ndarray:
        text = self.normalize(text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        return self._table[codes].copy() if len(codes) else np.zeros(0, np.int64)

    def decode(self, ids: object) -> str:
        a = np.asarray(getattr(ids, "data", ids)).reshape(-1)
        return "".join(self.chars[int(i)] for i in a)


def pydoc_topics() -> dict[str, str]:
    """``pydoc_data.topics.topics``: topic name -> text."""
    try:
        from pydoc_data.topics import topics  # noqa: PLC0415
    except ImportError as e:  # some distributions strip it; the text is then not available
        raise ImportError(
            "the standard library's pydoc_data.topics is missing from this Python (some "
            "distributions strip it): install the full standard library, or pass a UTF-8 text "
            "file with --data FILE"
        ) from e
    return dict(topics)


def _held_out(name: str) -> bool:
    return zlib.crc32(name.encode()) % 10 == 0


def split_topics(topics: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(train topic names, held-out topic names), each sorted (module docstring)."""
    names = sorted(pydoc_topics() if topics is None else topics)
    return [n for n in names if not _held_out(n)], [n for n in names if _held_out(n)]


def _paragraphs(topics: dict[str, str]) -> dict[str, list[str]]:
    """Each topic's paragraphs that did not occur in an earlier topic (sorted order)."""
    seen: set[str] = set()
    out = {}
    for name in sorted(topics):
        keep = []
        for para in re.split(r"\n[ \t]*\n", topics[name].strip("\n")):
            para = para.strip("\n")
            if para.strip() and para not in seen:
                seen.add(para)
                keep.append(para)
        out[name] = keep
    return out


def pydoc_corpus(split: str = "all") -> str:
    """The corpus text of ``split`` (``"train"``, ``"held_out"`` or ``"all"``): the deduplicated
    paragraphs of its topics joined by blank lines (not yet normalised; module docstring)."""
    topics = pydoc_topics()
    train, held = split_topics(topics)
    names = {"train": train, "held_out": held, "all": sorted(topics)}[split]
    paras = _paragraphs(topics)
    return "\n\n".join(p for n in names for p in paras[n]) + "\n"


def char_windows(ids: np.ndarray, seq_len: int) -> TensorDataset:
    """Non-overlapping (input, target) windows of ``ids``: input ``ids[i*T : i*T + T]``, target
    ``ids[i*T + 1 : i*T + T + 1]``; the tail shorter than ``T + 1`` is dropped."""
    ids = np.asarray(ids, dtype=np.int64)
    if seq_len < 1:
        raise ValueError(f"char_windows: seq_len must be >= 1, got {seq_len}")
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(
            f"char_windows: {len(ids)} characters are too few for one window of {seq_len} + 1"
        )
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return TensorDataset(x.copy(), y.copy())


def char_corpus(
    seq_len: int = 64, path: str | os.PathLike | None = None, vocab: Vocabulary | None = None
) -> tuple[TensorDataset, TensorDataset]:
    """(train, held-out) windows of the pydoc topics (or of the text file ``path``), each with
    ``.vocab`` (the ``Vocabulary``) and ``.text`` (its normalised text); module docstring."""
    vocab = Vocabulary.ascii() if vocab is None else vocab
    if path is None:
        texts = [pydoc_corpus("train"), pydoc_corpus("held_out")]
    else:
        p = Path(path)
        if p.is_dir():
            raise ValueError(
                f"data.path {str(p)!r} is a folder; the text dataset reads one UTF-8 text file"
            )
        try:
            whole = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{p}: not UTF-8 text ({e})") from None
        cut = int(len(whole) * 0.9)
        texts = [whole[:cut], whole[cut:]]
    out = []
    for text in texts:
        norm = vocab.normalize(text)
        ds = char_windows(vocab.encode(norm), seq_len)
        ds.vocab, ds.text = vocab, norm  # type: ignore[attr-defined]
        out.append(ds)
    return out[0], out[1]
