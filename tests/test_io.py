"""``chainrule.io``: safetensors state dicts (interchangeable with ``safetensors.torch``), full
training checkpoints (exact types), atomic writes and clear errors for bad files."""

from __future__ import annotations

import ast
import os
import random
import struct
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import chainrule as cr
import chainrule.io as cio
import chainrule.nn as nn
from chainrule.io import CheckpointError, load_checkpoint, save_checkpoint

torch.set_num_threads(1)


def _cr_model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))


def _torch_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.ReLU(), torch.nn.Linear(7, 3)
    )


def _same(a: object, b: object) -> None:
    """Equal values of exactly the same types, recursively (NaN equals NaN)."""
    assert type(a) is type(b), f"{type(a).__name__} != {type(b).__name__}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, cr.Tensor):
        assert a.data.dtype == b.data.dtype and a.shape == b.shape
        assert a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.data, b.data)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and a != a:
        assert b != b
    elif isinstance(a, (float, np.floating)):
        assert a == b and np.signbit(a) == np.signbit(b)
    else:
        assert a == b


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------------------ state dicts
def test_save_load_round_trip_dtypes_and_views(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    sd = {
        "f32": cr.randn(3, 4),
        "f64": cr.tensor([1.5, -0.0, np.inf], dtype=cr.float64),
        "f16": cr.tensor([0.1, 2.0], dtype=cr.float16),
        "i64": cr.tensor(7, dtype=cr.int64),  # 0-d
        "i32": cr.tensor([1, -2], dtype=cr.int32),
        "u8": cr.tensor([0, 255], dtype=cr.uint8),
        "bool": cr.tensor([True, False, True]),
        "empty": cr.zeros(0, 3),
        "transposed": cr.from_numpy(base.T),  # not contiguous: must be written in logical order
        "strided": cr.from_numpy(base[:, ::2]),
    }
    cr.save(sd, tmp_path / "w.safetensors")
    back = cr.load(tmp_path / "w.safetensors")
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert isinstance(back[k], cr.Tensor)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k].data, v.data)
        assert back[k].data.flags.writeable
    assert _leftovers(tmp_path) == []


def test_save_load_model_state_dict(tmp_path: Path) -> None:
    m = _cr_model()
    m(cr.randn(8, 5))  # move the BatchNorm running statistics
    cr.save(m.state_dict(), tmp_path / "m.safetensors")
    m2 = _cr_model()
    m2.load_state_dict(cr.load(tmp_path / "m.safetensors"))
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=k)


def test_torch_file_loads_into_chainrule(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tm = _torch_model()
    tm.train()
    tm(torch.randn(16, 5))  # running stats and num_batches_tracked
    tm.eval()
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tm.state_dict(), str(path))
    m = _cr_model()
    m.load_state_dict(cr.load(path))
    m.eval()
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m(cr.from_numpy(x)).data, want, rtol=1e-5, atol=1e-6)


def test_chainrule_file_loads_into_torch(tmp_path: Path) -> None:
    cr.manual_seed(0)
    m = _cr_model()
    m(cr.randn(16, 5))
    path = tmp_path / "cr.safetensors"
    cr.save(m.state_dict(), path)
    sd = safetensors.torch.load_file(str(path))
    tm = _torch_model()
    tm.load_state_dict(sd)  # strict: same names, shapes and dtypes (int64 num_batches_tracked)
    for k, v in m.state_dict().items():
        assert sd[k].dtype == getattr(torch, v.dtype.name)
        np.testing.assert_array_equal(sd[k].numpy(), v.data)


def test_save_rejects_what_is_not_a_flat_state_dict(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="state_dict"):
        cr.save(_cr_model(), tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="save_checkpoint"):
        cr.save({"a": {"b": cr.ones(1)}}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="keys must be strings"):
        cr.save({1: cr.ones(1)}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    assert _leftovers(tmp_path) == []


def test_user_metadata_is_kept(tmp_path: Path) -> None:
    cr.save({"w": cr.ones(2)}, tmp_path / "w.safetensors", metadata={"note": "hello"})
    with safetensors.safe_open(str(tmp_path / "w.safetensors"), "np") as f:
        assert f.metadata()["note"] == "hello"


# ------------------------------------------------------------------------------ checkpoints
def _training_state() -> dict:
    cr.manual_seed(0)
    m = _cr_model()
    opt = cr.optim.Adam(m.parameters(), lr=1e-3, betas=(0.8, 0.9), amsgrad=True)
    sched = cr.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.5)
    for _ in range(2):
        opt.zero_grad()
        m(cr.randn(8, 5)).pow(2).mean().backward()
        opt.step()
        sched.step()
    plateau = cr.optim.lr_scheduler.ReduceLROnPlateau(cr.optim.SGD(m.parameters(), lr=0.1))
    return {
        "model": m.state_dict(),
        "optimizer": opt.state_dict(),  # int keys, tuples (betas), Tensors
        "scheduler": sched.state_dict(),  # a Counter with int keys
        "plateau": plateau.state_dict(),  # best = inf
        "epoch": 3,
        "step": 2**70,  # bigger than any JSON double holds exactly
        "lr": 0.1 + 0.2,
        "loader": {"epoch_rng": cr.Generator().manual_seed(3).get_state(), "batches_done": 5},
        "rng": cr.get_rng_state(),
        "np_pcg": np.random.default_rng(7).bit_generator.state,
        "np_philox": np.random.Generator(np.random.Philox(1)).bit_generator.state,
        "np_mt_legacy": np.random.RandomState(2).get_state(),  # a tuple with a uint32 array
        "np_mt_dict": np.random.RandomState(2).get_state(legacy=False),
        "python_random": random.Random(4).getstate(),  # (3, tuple of 625 ints, None)
        "mixed": (1, 2.0, True, None, "x", [False, (np.float32(1.5), np.int64(-3))]),
        "specials": [float("nan"), float("inf"), -float("inf"), -0.0, 1e-320],
        "keys": {0: "int", (1, "a"): "tuple", None: "none", 2.5: "float", True: "bool"},
        "dollar": {"$tensor": "not a tag", "$x": [1]},
        "odict": OrderedDict([("b", 1), ("a", 2)]),
        "counter": Counter({"x": 3}),
        "text": 'ünïcødé ✓ \n "quoted" / slash',
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "grad_leaf": cr.ones(2, requires_grad=True),
        "empty": {"list": [], "tuple": (), "dict": {}},
    }


def test_checkpoint_round_trip_exact_types(tmp_path: Path) -> None:
    state = _training_state()
    save_checkpoint(tmp_path / "ck.safetensors", state)
    back = load_checkpoint(tmp_path / "ck.safetensors")
    _same(state, back)
    assert _leftovers(tmp_path) == []


def test_checkpoint_is_one_safetensors_file_with_path_keys(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck.safetensors", _training_state())
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]
    with safetensors.safe_open(str(tmp_path / "ck.safetensors"), "np") as f:
        keys = set(f.keys())
    assert "model/0.weight" in keys and "optimizer/state/0/exp_avg" in keys
    assert "np_mt_legacy/1" in keys  # the array inside the legacy MT19937 state tuple


def test_restored_generator_states_continue_the_same_streams(tmp_path: Path) -> None:
    g = np.random.default_rng(11)
    g.standard_normal(5)
    rs = np.random.RandomState(3)
    rs.standard_normal(3)  # has_gauss / cached gaussian set
    py = random.Random(5)
    cr.manual_seed(9)
    cr.randn(3)
    state = {
        "g": g.bit_generator.state,
        "rs": rs.get_state(),
        "py": py.getstate(),
        "cr": cr.get_rng_state(),
    }
    save_checkpoint(tmp_path / "rng.safetensors", state)
    back = load_checkpoint(tmp_path / "rng.safetensors")
    g2 = np.random.default_rng()
    g2.bit_generator.state = back["g"]
    rs2 = np.random.RandomState()
    rs2.set_state(back["rs"])
    py2 = random.Random()
    py2.setstate(back["py"])
    want_cr = cr.randn(4).data
    cr.set_rng_state(back["cr"])
    np.testing.assert_array_equal(cr.randn(4).data, want_cr)
    np.testing.assert_array_equal(g2.standard_normal(4), g.standard_normal(4))
    np.testing.assert_array_equal(rs2.standard_normal(4), rs.standard_normal(4))
    assert [py2.random() for _ in range(3)] == [py.random() for _ in range(3)]


def test_checkpoint_rejects_unstorable_values(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="a set"):
        save_checkpoint(tmp_path / "ck.safetensors", {"a": {1, 2}})
    with pytest.raises(TypeError, match=r"opt/fn, a function"):
        save_checkpoint(tmp_path / "ck.safetensors", {"opt": {"fn": lambda: 0}})
    assert list(tmp_path.iterdir()) == []


def test_load_and_load_checkpoint_refuse_each_others_files(tmp_path: Path) -> None:
    cr.save({"w": cr.ones(2)}, tmp_path / "w.safetensors")
    save_checkpoint(tmp_path / "c.safetensors", {"w": cr.ones(2)})
    with pytest.raises(CheckpointError, match="not a chainrule training checkpoint"):
        load_checkpoint(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="is a training checkpoint"):
        cr.load(tmp_path / "c.safetensors")


# ------------------------------------------------------------------------------ atomic writes
def test_overwrite_is_atomic_and_fsyncs_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.safetensors"
    cr.save({"w": cr.zeros(3)}, path)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os,
        "fsync",
        lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")), real_fsync(fd)),
    )
    cr.save({"w": cr.ones(3)}, path)
    np.testing.assert_array_equal(cr.load(path)["w"].data, np.ones(3, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    if sys.platform.startswith("linux"):
        assert str(tmp_path.resolve()) in synced  # the directory, after the rename
        assert any(s.endswith(".tmp") for s in synced)  # the temp file, before the rename


@pytest.mark.parametrize("fail", ["replace", "write"])
def test_crash_mid_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, {"epoch": 1, "w": cr.zeros(4)})

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash")

    if fail == "replace":
        monkeypatch.setattr(os, "replace", boom)
    else:  # dies after part of the data is written
        monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"epoch": 2, "w": cr.ones(4)})
    monkeypatch.undo()
    back = load_checkpoint(path)
    assert back["epoch"] == 1
    np.testing.assert_array_equal(back["w"].data, np.zeros(4, np.float32))
    assert _leftovers(tmp_path) == []


def test_keyboard_interrupt_mid_write_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.safetensors"
    cr.save({"w": cr.zeros(2)}, path)

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cr.save({"w": cr.ones(2)}, path)
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []
    np.testing.assert_array_equal(cr.load(path)["w"].data, np.zeros(2, np.float32))


# ------------------------------------------------------------------------------ bad files
def _good_bytes(tmp_path: Path) -> bytes:
    p = tmp_path / "good.safetensors"
    save_checkpoint(p, {"a": cr.arange(50, dtype=cr.float32), "n": 1})
    return p.read_bytes()


def _error(path: Path, load: object = load_checkpoint) -> str:
    with pytest.raises(CheckpointError) as info:
        load(path)  # type: ignore[operator]
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path) + ": "), msg
    assert info.value.path == str(path)
    return msg


@pytest.mark.parametrize("load", [cr.load, load_checkpoint], ids=["load", "load_checkpoint"])
def test_truncated_files(tmp_path: Path, load: object) -> None:
    data = _good_bytes(tmp_path)
    n = struct.unpack("<Q", data[:8])[0]
    for cut, what in [
        (0, "truncated or empty"),
        (5, "truncated or empty"),
        (8 + n // 2, "truncated"),
        (len(data) - 7, "truncated"),
    ]:
        p = tmp_path / f"cut{cut}.safetensors"
        p.write_bytes(data[:cut])
        assert what in _error(p, load)


def test_corrupt_files(tmp_path: Path) -> None:
    data = _good_bytes(tmp_path)
    n = struct.unpack("<Q", data[:8])[0]
    # a flipped byte in the JSON header
    bad = bytearray(data)
    bad[8] = ord("[")
    (tmp_path / "header.safetensors").write_bytes(bytes(bad))
    assert "corrupt safetensors header" in _error(tmp_path / "header.safetensors")
    # a flipped bit in the tensor data: caught by the CRC32
    bad = bytearray(data)
    bad[8 + n + 20] ^= 0x10
    (tmp_path / "data.safetensors").write_bytes(bytes(bad))
    assert "fails its CRC32 checksum" in _error(tmp_path / "data.safetensors")
    # garbage after the last tensor
    (tmp_path / "tail.safetensors").write_bytes(data + b"\0" * 16)
    assert "unexpected bytes" in _error(tmp_path / "tail.safetensors")
    # random bytes
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(256))
    assert "not a safetensors file" in _error(tmp_path / "noise.bin")


def test_foreign_files(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")  # a zip of pickles
    assert "zip archive" in _error(tmp_path / "model.pt", cr.load)
    (tmp_path / "raw.pkl").write_bytes(b"\x80\x04K\x01.")  # pickle protocol 4 of the int 1
    assert "is a pickle file" in _error(tmp_path / "raw.pkl", cr.load)
    (tmp_path / "notes.txt").write_text("epoch,loss\n0,0.5\n")
    assert "is a text file" in _error(tmp_path / "notes.txt", cr.load)
    np.save(tmp_path / "a.npy", np.ones(3))
    assert "NumPy .npy" in _error(tmp_path / "a.npy", load_checkpoint)


def test_bfloat16_from_torch_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, str(p))
    assert "BF16" in _error(p, cr.load)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cr.load(tmp_path / "nope.safetensors")


# ------------------------------------------------------------------------------ no pickle
def test_no_pickle_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # statically: the saving code imports no serialiser that can run code on load
    src = Path(cio.__file__).parent
    for f in [src / "io.py", *sorted((src / "train").glob("*.py"))]:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in {
                    "pickle",
                    "cPickle",
                    "dill",
                    "cloudpickle",
                    "marshal",
                    "shelve",
                    "joblib",
                    "torch",
                }, (f, name)
        text = f.read_text()
        assert "allow_pickle" not in text and "pickle.load" not in text, f
    # dynamically: saving and loading never touches pickle
    import pickle

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("pickle used")

    for name in ("dump", "dumps", "load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(pickle, "Pickler", forbidden)
    state = _training_state()
    save_checkpoint(tmp_path / "c.safetensors", state)
    _same(state, load_checkpoint(tmp_path / "c.safetensors"))
    cr.save(state["model"], tmp_path / "m.safetensors")
    cr.load(tmp_path / "m.safetensors")


# ------------------------------------------------------------------------------ devices
def test_cuda_tensors_are_saved_from_host_copies_and_load_where_asked(
    tmp_path: Path, cuda: str
) -> None:
    cr.manual_seed(0)
    m = _cr_model().to(cuda)
    sd = m.state_dict()
    assert all(t.is_cuda for t in sd.values())
    cr.save(sd, tmp_path / "w.safetensors")
    with safetensors.safe_open(str(tmp_path / "w.safetensors"), "np") as f:  # a plain file
        assert sorted(f.keys()) == sorted(sd)
    host = cr.load(tmp_path / "w.safetensors")  # default: CPU tensors, as load_file gives
    assert not any(t.is_cuda for t in host.values())
    for k, t in sd.items():
        np.testing.assert_array_equal(host[k].numpy(), t.detach().cpu().numpy())
    on = cr.load(tmp_path / "w.safetensors", map_location=cuda)
    assert all(t.is_cuda for t in on.values())
    assert not any(t.is_cuda for t in cr.load(tmp_path / "w.safetensors", "cpu").values())
    assert all(t.is_cuda for t in cr.load(tmp_path / "w.safetensors", cr.device(cuda)).values())
    cpu_model = _cr_model()
    cpu_model.load_state_dict(on)  # copied across devices into the CPU model
    np.testing.assert_array_equal(
        cpu_model[0].weight.detach().numpy(), sd["0.weight"].detach().cpu().numpy()
    )
    with pytest.raises(TypeError, match="map_location"):
        cr.load(tmp_path / "w.safetensors", map_location={"cuda:0": "cpu"})
    with pytest.raises(RuntimeError, match="unknown device type"):
        cr.load(tmp_path / "w.safetensors", map_location="tpu")


def test_checkpoint_of_cuda_state_round_trips_to_either_device(tmp_path: Path, cuda: str) -> None:
    cp = cr.backend.cuda_module()
    state = {
        "model": {"w": cr.randn(3, 2, device=cuda), "b": cr.zeros(2, requires_grad=True).cuda()},
        "raw": cp.arange(4),  # a bare CuPy array (an optimiser's buffer)
        "step": 7,
    }
    save_checkpoint(tmp_path / "ck.safetensors", state)
    back = load_checkpoint(tmp_path / "ck.safetensors")
    assert not back["model"]["w"].is_cuda and type(back["raw"]) is np.ndarray
    np.testing.assert_array_equal(back["model"]["w"].numpy(), state["model"]["w"].cpu().numpy())
    assert back["model"]["b"].requires_grad and back["step"] == 7
    on = load_checkpoint(tmp_path / "ck.safetensors", map_location=cuda)
    assert on["model"]["w"].is_cuda and cr.backend.is_device_array(on["raw"])
    assert on["raw"].tolist() == [0, 1, 2, 3]
