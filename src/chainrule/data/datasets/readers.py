"""Readers for data files: IDX (the MNIST format), CSV, ``.npy`` and ``.npz`` (NumPy only).

A malformed file raises ``DataFormatError`` (a ``ValueError``) with a one-line message that names
the file and what is wrong with it.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import NpyDataset, TensorDataset

__all__ = ["DataFormatError", "read_idx", "write_idx", "mnist", "read_csv", "load_npy", "load_npz"]


class DataFormatError(ValueError):
    """A data file is corrupt, truncated or not in the expected format."""


# ------------------------------------------------------------------------------------------ IDX

# IDX (LeCun's MNIST format): bytes 0-1 zero, byte 2 the element type, byte 3 the number of
# dimensions; then each dimension as a big-endian uint32; then the elements, big-endian, row-major.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in an IDX file (raw, or gzip-compressed: detected from its first bytes, not the
    name), with native byte order. Raises ``DataFormatError`` for a file that is not IDX, has an
    unknown type code, is truncated or has bytes left over."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(raw) < 4:
        raise DataFormatError(
            f"{path}: not an IDX file: {len(raw)} bytes, too short for the 4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(
            f"{path}: not an IDX file: magic number 0x{raw[:4].hex()} should start with two zero bytes"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataFormatError(
            f"{path}: not an IDX file: unknown element type 0x{code:02x} in the magic number "
            "(expected 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e)"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataFormatError(
            f"{path}: truncated: the header of a {ndim}-d IDX array needs {head} bytes, the file has {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dt = np.dtype(_IDX_TYPES[code])
    count = math.prod(shape)
    need, have = count * dt.itemsize, len(raw) - head
    if have < need:
        raise DataFormatError(
            f"{path}: truncated: shape {shape} of {dt.newbyteorder('=')} needs {need} data bytes, the file has {have}"
        )
    if have > need:
        raise DataFormatError(
            f"{path}: {have - need} bytes left over after the data of shape {shape}: corrupt, or not an IDX file"
        )
    a = np.frombuffer(raw, dtype=dt, count=count, offset=head).reshape(shape)
    return a.astype(dt.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: Any) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(
            f"write_idx: IDX cannot hold dtype {a.dtype} (uint8, int8, int16, int32, float32, float64)"
        )
    body = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    body += np.ascontiguousarray(a, dtype=_IDX_TYPES[code]).tobytes()
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(gzip.compress(body) if path.endswith(".gz") else body)


# ---------------------------------------------------------------------------------------- MNIST

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(root: Path, name: str) -> Path:
    dotted = name.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors name them
    for d in (root, root / "MNIST" / "raw", root / "raw"):
        for n in (name, name + ".gz", dotted, dotted + ".gz"):
            p = d / n
            if p.is_file():
                return p
    raise FileNotFoundError(
        f"mnist: no {name}[.gz] under {root} (also looked in MNIST/raw and raw); chainrule does "
        "not download: put the four MNIST IDX files there"
    )


def mnist(
    root: str | os.PathLike, flatten: bool = False, scale: bool = True
) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) ``TensorDataset``\\ s from the four MNIST IDX files under ``root``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each optionally ``.gz`` (also found in ``root/MNIST/raw`` as
    torchvision stores them, and with ``.idx`` for ``-idx`` in the name).

    Images are float32, (N, 1, 28, 28) or (N, 784) with ``flatten=True``, scaled to [0, 1]
    (``scale=False`` keeps 0..255); labels are int64 class indices.
    """
    root = Path(root)
    out = []
    for split in ("train", "test"):
        ip, lp = (
            _find(root, MNIST_FILES[f"{split}_images"]),
            _find(root, MNIST_FILES[f"{split}_labels"]),
        )
        images, labels = read_idx(ip), read_idx(lp)
        if images.ndim != 3:
            raise DataFormatError(
                f"{ip}: expected a 3-d IDX array of images (N, rows, cols), got shape {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataFormatError(
                f"{lp}: expected {len(images)} labels (one per image in {ip.name}), got shape {labels.shape}"
            )
        x = images.astype(np.float32)
        if scale:
            x /= 255.0
        x = x.reshape(len(x), -1) if flatten else x[:, None]
        out.append(TensorDataset(x, labels.astype(np.int64)))
    return out[0], out[1]


# ------------------------------------------------------------------------------------------ CSV


def _isnum(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return s == ""


def read_csv(
    path: str | os.PathLike,
    target_column: int | str | None = -1,
    header: bool | str = "auto",
    delimiter: str = ",",
) -> TensorDataset:
    """A ``TensorDataset(x, y)`` from a CSV file of numbers (``TensorDataset(x)`` with
    ``target_column=None``).

    ``x`` is float32 (every column but the target; empty fields are NaN). ``y`` is int64 when
    every target is a whole number (class labels), float32 otherwise; a non-numeric target
    column is treated as class names: ``y`` holds indices into the sorted names, kept in
    ``dataset.classes``. ``header="auto"`` takes the first row for column names when one of
    its fields is not a number while the row below has a number there; ``target_column`` may
    then be a name. The names are in ``dataset.feature_names`` / ``dataset.target_name``.
    """
    path = os.fspath(path)
    with open(path, newline="") as f:
        rows = [
            [c.strip() for c in r]
            for r in csv.reader(f, delimiter=delimiter)
            if any(c.strip() for c in r)
        ]
    if not rows:
        raise DataFormatError(f"{path}: no rows")
    if header == "auto":
        header = len(rows) > 1 and any(
            not _isnum(a) and _isnum(b) for a, b in zip(rows[0], rows[1])
        )
    names = rows.pop(0) if header else None
    if not rows:
        raise DataFormatError(f"{path}: a header but no data rows")
    ncol = len(names) if names else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != ncol:
            line = i + 1 + bool(names)
            raise DataFormatError(f"{path}: row {line} has {len(r)} fields, expected {ncol}")
    if isinstance(target_column, str):
        if names is None or target_column not in names:
            raise KeyError(f"{path}: no column named {target_column!r} (columns: {names})")
        target_column = names.index(target_column)
    tcol = None if target_column is None else range(ncol)[target_column]
    fcols = [j for j in range(ncol) if j != tcol]
    cells = np.array(rows, dtype=object)
    cells[cells == ""] = "nan"
    try:
        x = cells[:, fcols].astype(np.float64).astype(np.float32)
    except ValueError:
        for i, r in enumerate(rows):
            for j in fcols:
                if not _isnum(r[j]):
                    col = repr(names[j]) if names else str(j)
                    raise DataFormatError(
                        f"{path}: row {i + 1 + bool(names)}, column {col}: {r[j]!r} is not a number"
                    ) from None
        raise
    tensors: list[Any] = [x]
    classes = None
    if tcol is not None:
        col = cells[:, tcol]
        if all(_isnum(v) for v in col):
            yf = col.astype(np.float64)
            whole = np.all(np.isfinite(yf)) and np.all(yf == np.round(yf))
            y = yf.astype(np.int64) if whole else yf.astype(np.float32)
        else:
            classes = sorted(set(col.tolist()))
            code = {c: i for i, c in enumerate(classes)}
            y = np.array([code[v] for v in col], dtype=np.int64)
        tensors.append(y)
    ds = TensorDataset(*tensors)
    ds.feature_names = [names[j] for j in fcols] if names else None
    ds.target_name = names[tcol] if names and tcol is not None else None
    ds.classes = classes
    return ds


# ------------------------------------------------------------------------------------ npy / npz


def load_npy(
    x_path: str | os.PathLike, y_path: str | os.PathLike | None = None, mmap: bool = False
) -> Any:
    """A dataset over ``.npy`` files: read into memory as a ``TensorDataset`` (``mmap=False``)
    or streamed from disk as an ``NpyDataset`` (``mmap=True``, for data larger than memory)."""
    if mmap:
        return NpyDataset(x_path, y_path, mmap=True)
    arrays = [np.load(p, allow_pickle=False) for p in (x_path, y_path) if p is not None]
    return TensorDataset(*arrays)


def load_npz(path: str | os.PathLike, x_key: str = "x", y_key: str | None = "y") -> TensorDataset:
    """A ``TensorDataset(x, y)`` from the arrays named ``x_key`` and ``y_key`` in an ``.npz``
    archive (``TensorDataset(x)`` with ``y_key=None``)."""
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        want = [k for k in (x_key, y_key) if k is not None]
        missing = [k for k in want if k not in keys]
        if missing:
            raise KeyError(
                f"{os.fspath(path)}: no array named {missing[0]!r}; the archive holds {keys}"
            )
        return TensorDataset(*(z[k] for k in want))
