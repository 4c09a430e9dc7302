"""Saving and loading: state dicts and full training checkpoints as safetensors files.

- ``save(state_dict, path)`` / ``load(path)``: a flat ``{name: Tensor}`` (``Module.state_dict()``)
  as a safetensors file, interchangeable with ``safetensors.torch``: a file written by
  ``safetensors.torch.save_file(model.state_dict(), path)`` loads into the same chainrule model and
  vice versa.
- ``save_checkpoint(path, state)`` / ``load_checkpoint(path)``: a whole training state (nested
  dicts, lists and tuples of Tensors, arrays, ints, floats, bools, strings and None: model and
  optimiser state dicts, scheduler, epoch, step, data loader and random-generator states) in ONE
  safetensors file. Arrays are stored as tensors under path-like keys (``model/fc.weight``,
  ``optimizer/state/0/exp_avg``); everything else is JSON in the file's metadata, tagged so that
  the round trip gives back exactly the same types (tuples stay tuples, ints stay ints of any
  size, ``Counter`` and ``OrderedDict`` keep their type, dict keys may be ints).

Devices. Files hold host data: CUDA tensors are copied to the host when saved, so a file written
on a GPU machine opens anywhere. ``load`` and ``load_checkpoint`` give CPU tensors unless
``map_location`` says where to put them (``'cuda'``, ``'cuda:1'``, ``'cpu'``, a
``chainrule.device``), as ``torch.load(..., map_location=...)``; unlike ``torch.load`` the device a
tensor was saved from is not restored by default (the safetensors convention: ``load_file``
gives CPU tensors unless told otherwise).

Nothing here pickles: loading a file can never run code. Every write is atomic (a temporary
file in the same directory, flushed and fsynced, then ``os.replace``d over the target, and the
directory fsynced), so a crash leaves either the old file or the new one, never a torn one. Each
tensor's CRC32 is stored in the metadata and checked on load; a corrupt, truncated or foreign
file (a pickle, a zip from ``torch.save``, a text file) raises ``CheckpointError`` whose one-line
message names the file and the problem.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import zlib
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from . import backend
from .dtypes import _FROM_NP
from .tensor import Tensor, wrap

__all__ = ["CheckpointError", "save", "load", "save_checkpoint", "load_checkpoint"]

_FORMAT_VERSION = "1"
_KIND = "chainrule.kind"  # "state_dict" or "checkpoint"
_VERSION = "chainrule.version"
_STRUCTURE = "chainrule.structure"  # checkpoints: the JSON tree, tensors referred to by key
_CRC = "chainrule.crc32"  # JSON {key: crc32 of the tensor's bytes}
# dtype names in a safetensors header -> NumPy (safetensors.numpy's table)
_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "U64": np.uint64,
    "I32": np.int32, "U32": np.uint32, "I16": np.int16, "U16": np.uint16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_, "C64": np.complex64,
}  # fmt: skip
_MAX_HEADER = 100_000_000  # safetensors' own limit


class CheckpointError(Exception):
    """A file that is not a readable safetensors file or checkpoint; ``str()`` is one line
    ``"<path>: <problem>"``. ``.path`` and ``.problem`` hold the parts."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# ---------------------------------------------------------------------------------------- writing
def _atomic_write(path: Any, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers (and a crash) see the old file or the whole new
    one: temp file in the same directory, flush + fsync, ``os.replace``, fsync the directory."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 honours the umask, as an ordinary open() would (mkstemp gives 0o600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the temp file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories can't be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _serialize(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    import safetensors.numpy  # noqa: PLC0415  (keeps `import chainrule` light)

    # C order (safetensors.numpy writes the raw buffer); np.ascontiguousarray would make 0-d 1-d
    arrays = {k: a if a.flags.c_contiguous else a.copy(order="C") for k, a in arrays.items()}
    for k, a in arrays.items():
        if a.dtype.byteorder == ">":
            arrays[k] = a = a.astype(a.dtype.newbyteorder("<"))
        if a.dtype.type not in _ST_DTYPES.values():
            raise TypeError(
                f"can't save {k!r}: dtype {a.dtype} is not one safetensors stores with NumPy "
                f"(supported: {', '.join(np.dtype(t).name for t in _ST_DTYPES.values())})"
            )
    metadata = {**metadata, _CRC: json.dumps({k: _crc(a) for k, a in arrays.items()})}
    return safetensors.numpy.save(arrays, metadata=metadata)


def save(obj: dict, path: Any, metadata: dict[str, str] | None = None) -> None:
    """Save a flat ``{name: Tensor or ndarray}`` (e.g. ``model.state_dict()``) to ``path`` as a
    safetensors file that ``safetensors.torch.load_file`` reads (CUDA tensors are written from
    host copies). ``metadata``: extra ``{str: str}`` entries for the file's header. For nested
    training state use ``save_checkpoint``."""
    if not isinstance(obj, dict):
        hint = " (pass model.state_dict())" if hasattr(obj, "state_dict") else ""
        raise TypeError(f"save expects a dict of name -> Tensor, got {type(obj).__name__}{hint}")
    arrays = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TypeError(f"save: keys must be strings, got {k!r} ({type(k).__name__})")
        if k == "__metadata__":
            raise ValueError("save: '__metadata__' is reserved by the safetensors format")
        if isinstance(v, Tensor):
            arrays[k] = backend.to_host(v.data)
        elif isinstance(v, np.ndarray) or backend.is_device_array(v):
            arrays[k] = backend.to_host(v)
        else:
            raise TypeError(
                f"save: value of {k!r} is a {type(v).__name__}, not a Tensor (a flat dict of "
                "tensors is a state dict; for nested training state use "
                "chainrule.io.save_checkpoint)"
            )
    meta = {"format": "pt", _KIND: "state_dict", _VERSION: _FORMAT_VERSION}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("save: metadata must be a dict of str -> str")
        if k.startswith("chainrule."):
            raise ValueError(f"save: metadata key {k!r}: the 'chainrule.' prefix is reserved")
        meta[k] = v
    _atomic_write(path, _serialize(arrays, meta))


# ---------------------------------------------------------------------------------------- reading
def _foreign(head: bytes) -> str | None:
    """Name a well-known non-safetensors format from a file's first bytes."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            "is a pickle file (torch.save / pickle.dump?), not safetensors; chainrule never "
            "unpickles: re-save it with safetensors.torch.save_file"
        )
    if head.startswith(b"PK\x03\x04"):
        return (
            "is a zip archive (torch.save's format?), not safetensors; chainrule never unpickles: "
            "re-save it with safetensors.torch.save_file"
        )
    if head.startswith(b"\x93NUMPY"):
        return "is a NumPy .npy file, not safetensors (read it with numpy.load)"
    if head.startswith(b"\x89HDF"):
        return "is an HDF5 file, not safetensors"
    return None


def _read(path: Any) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """(arrays, metadata, keys in file order) of a safetensors file, or a ``CheckpointError``."""
    import safetensors.numpy  # noqa: PLC0415

    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError etc. propagate unchanged
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if (problem := _foreign(head)) is not None:
            raise CheckpointError(path, problem)
        if len(head) < 8:
            raise CheckpointError(
                path,
                f"truncated or empty: {size} bytes, less than the 8-byte safetensors header length",
            )
        n = int.from_bytes(head, "little")
        if n > size - 8:
            if head.isascii() and all(32 <= c < 127 or c in b"\t\r\n" for c in head):
                raise CheckpointError(path, "is a text file, not a safetensors file")
            if n > _MAX_HEADER:
                raise CheckpointError(
                    path, f"not a safetensors file (its first 8 bytes give a header length of {n})"
                )
            raise CheckpointError(
                path,
                f"truncated: the header needs {n} bytes but only {size - 8} follow the length field",
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(path, f"corrupt safetensors header (not valid JSON: {e})") from None
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(path, "corrupt safetensors header (metadata is not str -> str)")
    try:
        spans = sorted(
            (int(v["data_offsets"][0]), int(v["data_offsets"][1]), k) for k, v in header.items()
        )
        dtypes = {k: v["dtype"] for k, v in header.items()}
    except (TypeError, KeyError, ValueError, IndexError):
        raise CheckpointError(
            path, "corrupt safetensors header (malformed tensor entries)"
        ) from None
    end = 8 + n + (max(e for _, e, _ in spans) if spans else 0)
    if size < end:
        raise CheckpointError(path, f"truncated: {size} bytes, the header describes {end}")
    if size > end:
        raise CheckpointError(path, f"corrupt: {size - end} unexpected bytes after the last tensor")
    for k, dt in dtypes.items():
        if dt not in _ST_DTYPES:
            raise CheckpointError(
                path,
                f"tensor {k!r} has dtype {dt}, which NumPy cannot hold (convert it, e.g. "
                "to float32, before saving)",
            )
    try:
        arrays = safetensors.numpy.load_file(path)
    except Exception as e:  # SafetensorError: anything the checks above did not catch
        msg = " ".join(str(e).split())
        raise CheckpointError(path, f"not a valid safetensors file ({msg})") from None
    crcs = metadata.get(_CRC)
    if crcs is not None:
        try:
            crcs = json.loads(crcs)
        except ValueError:
            raise CheckpointError(path, "corrupt metadata (checksums are not valid JSON)") from None
        for k, c in crcs.items():
            if k not in arrays:
                raise CheckpointError(
                    path, f"corrupt: tensor {k!r} listed in the checksums is missing"
                )
            if _crc(arrays[k]) != c:
                raise CheckpointError(path, f"corrupt: tensor {k!r} fails its CRC32 checksum")
    order = [k for _, _, k in spans]
    if crcs is not None and len(crcs) == len(arrays):
        order = list(crcs)  # chainrule's own files: the order the dict was saved in
    return arrays, metadata, order


def _target(map_location: Any) -> backend.device | None:
    """The device ``map_location`` names (None: leave tensors on the host)."""
    if map_location is None:
        return None
    if not isinstance(map_location, (str, int, backend.device)) or isinstance(map_location, bool):
        raise TypeError(
            "map_location must be a device ('cpu', 'cuda', 'cuda:1', a chainrule.device), got "
            f"{type(map_location).__name__}"
        )
    dev = backend.as_device(map_location)
    if dev.type == "cpu":
        return None
    backend.cuda_module()  # no CUDA: the RuntimeError saying what to install, before reading
    return dev


def _placed(a: np.ndarray, dev: backend.device | None) -> Any:
    return a if dev is None else backend.to_device(a, dev)


def load(path: Any, map_location: Any = None) -> dict[str, Tensor]:
    """Load a safetensors state dict (written by ``save`` or ``safetensors.torch.save_file``) as
    ``{name: Tensor}`` (in the saved dict's order for files written by ``save``, else in the
    file's order); pass it to ``model.load_state_dict`` (which copies onto the model's device
    either way). ``map_location``: the device for the tensors (default: the CPU)."""
    dev = _target(map_location)
    arrays, metadata, order = _read(path)
    if metadata.get(_KIND) == "checkpoint":
        raise CheckpointError(
            path,
            "is a training checkpoint, not a state dict: load it with chainrule.io.load_checkpoint",
        )
    out = {}
    for k in order:
        a = arrays[k]
        if a.dtype not in _FROM_NP:
            raise CheckpointError(
                path, f"tensor {k!r} has dtype {a.dtype}, which chainrule tensors don't support"
            )
        out[k] = wrap(_placed(a, dev))
    return out


# ---------------------------------------------------------------------------------- checkpoints
# The JSON tree: JSON scalars and lists stand for themselves; a JSON object is a plain dict when
# none of its keys starts with "$", else a tagged value:
#   {"$tuple": [...]}                     a tuple
#   {"$dict": [[k, v], ...], "type": T}   a dict with keys that aren't plain strings, or a
#                                         Counter / OrderedDict (T), keys and values encoded
#   {"$float": "nan" | "inf" | "-inf"}    a non-finite float (JSON has none)
#   {"$tensor": key, "requires_grad": b}  a chainrule Tensor stored under ``key``
#   {"$ndarray": key}                     a NumPy array
#   {"$scalar": key}                      a NumPy scalar (np.float32(1.5), np.int64(3), ...)
_DICT_TYPES = {dict: None, OrderedDict: "OrderedDict", Counter: "Counter"}
_DICT_FROM_NAME = {"OrderedDict": OrderedDict, "Counter": Counter}


def _join(where: str, key: object) -> str:
    return f"{where}/{key}" if where else str(key)


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _key(self, where: str) -> str:
        key = where or "value"
        i = 1
        while key in self.arrays or key == "__metadata__":
            key = f"{where}#{i}"
            i += 1
        return key

    def encode(self, obj: Any, where: str) -> Any:
        t = type(obj)
        if obj is None or t is bool or t is int or t is str:
            return obj
        if t is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if t is list:
            return [self.encode(v, _join(where, i)) for i, v in enumerate(obj)]
        if t is tuple:
            return {"$tuple": [self.encode(v, _join(where, i)) for i, v in enumerate(obj)]}
        if t in _DICT_TYPES:
            name = _DICT_TYPES[t]
            if name is None and all(type(k) is str and not k.startswith("$") for k in obj):
                return {k: self.encode(v, _join(where, k)) for k, v in obj.items()}
            items = [
                [self.encode(k, _join(where, "key")), self.encode(v, _join(where, k))]
                for k, v in obj.items()
            ]
            return {"$dict": items, "type": name} if name else {"$dict": items}
        if isinstance(obj, Tensor):
            key = self._key(where)
            self.arrays[key] = backend.to_host(obj.data)
            return {"$tensor": key, "requires_grad": bool(obj.requires_grad)}
        if backend.is_device_array(obj):  # a bare CuPy array: stored as an array, from the host
            obj = backend.to_host(obj)
        if isinstance(obj, (np.ndarray, np.generic)):
            if obj.dtype.kind not in "biufc":
                raise TypeError(
                    f"save_checkpoint: can't store {where or 'the value'}: dtype {obj.dtype}"
                )
            key = self._key(where)
            self.arrays[key] = np.asarray(obj)
            return {"$ndarray" if isinstance(obj, np.ndarray) else "$scalar": key}
        raise TypeError(
            f"save_checkpoint: can't store {where or 'the value'}, a {t.__name__}: only dicts, "
            "lists, tuples, Tensors, NumPy arrays and scalars, int, float, bool, str and None"
        )


def _decode(obj: Any, arrays: dict[str, np.ndarray], path: str, dev: Any = None) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays, path, dev) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if not any(k.startswith("$") for k in obj):
        return {k: _decode(v, arrays, path, dev) for k, v in obj.items()}
    if "$tuple" in obj:
        return tuple(_decode(v, arrays, path, dev) for v in obj["$tuple"])
    if "$dict" in obj:
        out = _DICT_FROM_NAME.get(obj.get("type"), dict)()
        for k, v in obj["$dict"]:  # item by item: Counter(pairs) would count the pairs
            out[_decode(k, arrays, path, dev)] = _decode(v, arrays, path, dev)
        return out
    if "$float" in obj:
        return float(obj["$float"])
    for tag in ("$tensor", "$ndarray", "$scalar"):
        if tag in obj:
            key = obj[tag]
            if key not in arrays:
                raise CheckpointError(path, f"corrupt checkpoint: tensor {key!r} is missing")
            a = arrays[key]
            if tag == "$ndarray":
                return _placed(a, dev)
            if tag == "$scalar":
                return a[()]
            if a.dtype not in _FROM_NP:
                raise CheckpointError(path, f"tensor {key!r} has dtype {a.dtype}, unsupported")
            t = wrap(_placed(a, dev))
            if obj.get("requires_grad"):
                t.requires_grad_(True)
            return t
    raise CheckpointError(path, f"corrupt checkpoint: unknown tag in {sorted(obj)}")


def save_checkpoint(path: Any, state: Any) -> None:
    """Write a training state (see the module docstring for what it may hold) atomically to ONE
    safetensors file: arrays as tensors under path-like keys, the rest as JSON metadata. CUDA
    tensors and CuPy arrays are stored from host copies (they come back as CPU tensors and NumPy
    arrays unless ``load_checkpoint`` is given a ``map_location``)."""
    enc = _Encoder()
    tree = enc.encode(state, "")
    meta = {
        _KIND: "checkpoint",
        _VERSION: _FORMAT_VERSION,
        _STRUCTURE: json.dumps(tree, allow_nan=False, separators=(",", ":")),
    }
    _atomic_write(path, _serialize(enc.arrays, meta))


def load_checkpoint(path: Any, map_location: Any = None) -> Any:
    """Read back exactly what ``save_checkpoint`` wrote (same nesting, same types).
    ``map_location``: the device for its tensors and arrays (default: the CPU)."""
    dev = _target(map_location)
    arrays, metadata, _ = _read(path)
    if _STRUCTURE not in metadata:
        if metadata.get(_KIND) == "checkpoint":
            raise CheckpointError(path, "corrupt checkpoint: its structure metadata is missing")
        raise CheckpointError(
            path,
            "is a plain safetensors weights file, not a chainrule training checkpoint "
            "(load it with chainrule.load)",
        )
    try:
        tree = json.loads(metadata[_STRUCTURE])
    except ValueError as e:
        raise CheckpointError(path, f"corrupt checkpoint structure (invalid JSON: {e})") from None
    try:
        return _decode(tree, arrays, os.fspath(path), dev)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointError(
            path, f"corrupt checkpoint structure ({type(e).__name__}: {e})"
        ) from None
