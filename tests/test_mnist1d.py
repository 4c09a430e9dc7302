"""MNIST-1D generator: the same numbers as the reference ``mnist1d`` package, plus the cache."""

import importlib
import random
import time
import warnings

import numpy as np
import pytest

# the module, not the ``mnist1d`` function that chainrule.data.datasets re-exports under its name
m1d = importlib.import_module("chainrule.data.datasets.mnist1d")

REF_KEYS = ("x", "x_test", "y", "y_test", "t")


def _package_dataset(**overrides):
    """``mnist1d.data.make_dataset`` with the package defaults updated by ``overrides``; the
    global NumPy / ``random`` states it reseeds are restored afterwards."""
    data = pytest.importorskip("mnist1d.data")
    utils = pytest.importorskip("mnist1d.utils")
    args = data.get_dataset_args(as_dict=True)
    args.update(overrides)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return data.make_dataset(utils.ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _assert_same(ref, ours):
    for k in REF_KEYS:
        assert ours[k].dtype == ref[k].dtype, k
        assert ours[k].shape == ref[k].shape, k
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)  # bit-exact, not just 1e-12
    for k in ("x", "t", "y"):
        np.testing.assert_array_equal(ours["templates"][k], ref["templates"][k])


@pytest.fixture(scope="module")
def ours_default():
    t0 = time.perf_counter()
    d = m1d.make_mnist1d()
    print(f"\nmake_mnist1d(): 5000 samples in {time.perf_counter() - t0:.3f} s")
    return d


def test_matches_package_defaults(ours_default):
    _assert_same(_package_dataset(), ours_default)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=7, num_samples=1234, train_split=0.5, padding=(10, 30), max_translation=20),
        dict(seed=0, num_samples=600, scale_coeff=1.0, corr_noise_scale=1.0, iid_noise_scale=0.5,
             shear_scale=3.0, final_seq_length=64),
        dict(seed=123, num_samples=800, shuffle_seq=True),
    ],
)  # fmt: skip
def test_matches_package_other_args(kwargs):
    ref_args = {k: (list(v) if k == "padding" else v) for k, v in kwargs.items()}
    _assert_same(_package_dataset(**ref_args), m1d.make_mnist1d(**kwargs))


def test_gaussian_filter_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for sigma, n in [(2, 72), (2, 5), (1.3, 40), (0.2, 9), (3, 30)]:
        x = rng.normal(size=(4, n))
        ref = np.stack([ndimage.gaussian_filter(row, sigma) for row in x])
        np.testing.assert_array_equal(m1d.gaussian_filter1d(x, sigma), ref)


def test_global_random_state_untouched():
    np.random.seed(1234)
    random.seed(99)
    np_state, py_state = np.random.get_state(), random.getstate()
    m1d.make_mnist1d(num_samples=200, seed=5)
    after = np.random.get_state()
    assert after[0] == np_state[0] and after[2:] == np_state[2:]
    np.testing.assert_array_equal(after[1], np_state[1])
    assert random.getstate() == py_state


def test_shapes_dtypes_balance(ours_default):
    d = ours_default
    assert d["x"].shape == (4000, 40) and d["x_test"].shape == (1000, 40)
    assert d["x"].dtype == d["x_test"].dtype == d["t"].dtype == np.float64
    assert d["y"].dtype == d["y_test"].dtype == np.int64
    assert d["t"].shape == (40,)
    # 500 per class overall; the split follows the reference file (design doc section 4.1)
    counts = np.bincount(d["y"], minlength=10) + np.bincount(d["y_test"], minlength=10)
    assert counts.tolist() == [500] * 10
    assert np.bincount(d["y"]).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert d["y"][:10].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]
    allx = np.concatenate([d["x"], d["x_test"]])
    assert abs(allx.mean()) < 1e-12 and abs(allx.std() - 1) < 1e-12
    # deterministic, and a different seed gives different data
    d2 = m1d.make_mnist1d(num_samples=100, seed=1)
    np.testing.assert_array_equal(d2["x"], m1d.make_mnist1d(num_samples=100, seed=1)["x"])
    assert not np.array_equal(d2["x"], m1d.make_mnist1d(num_samples=100, seed=2)["x"])


def _arrays(ds):
    x, y = ds.tensors
    return x.numpy(), y.numpy()


def test_dataset_and_cache_round_trip(tmp_path, monkeypatch, ours_default):
    train = m1d.mnist1d(train=True, root=tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["mnist1d_seed42_v1.npz"]  # no temporary file left behind
    x, y = _arrays(train)
    assert len(train) == 4000 and x.shape == (4000, 40) and y.shape == (4000,)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, ours_default["x"].astype(np.float32))
    np.testing.assert_array_equal(y, ours_default["y"])
    xi, yi = train[3]
    np.testing.assert_array_equal(xi.numpy(), x[3])
    assert int(yi) == y[3]

    # the second call must come from the file, not from the generator
    def boom(seed):
        raise AssertionError("regenerated although the cache is valid")

    monkeypatch.setattr(m1d, "_generate_arrays", boom)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = m1d.mnist1d(train=False, root=tmp_path)
    xt, yt = _arrays(test)
    assert xt.shape == (1000, 40) and xt.dtype == np.float32 and yt.dtype == np.int64
    np.testing.assert_array_equal(xt, ours_default["x_test"].astype(np.float32))
    np.testing.assert_array_equal(yt, ours_default["y_test"])


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "wrong_dtype", "wrong_shape"])
def test_corrupt_cache_is_regenerated(tmp_path, corruption, ours_default):
    path = tmp_path / "mnist1d_seed42_v1.npz"
    if corruption == "garbage":
        path.write_bytes(b"this is not an npz file")
    else:
        good = {
            "x": ours_default["x"].astype(np.float32),
            "y": ours_default["y"],
            "x_test": ours_default["x_test"].astype(np.float32),
            "y_test": ours_default["y_test"],
        }
        if corruption == "wrong_dtype":
            good["x"] = good["x"].astype(np.float64)
        if corruption == "wrong_shape":
            good["y_test"] = good["y_test"][:-1]
        np.savez(path, **good)
        if corruption == "truncated":
            path.write_bytes(path.read_bytes()[:5000])
    with pytest.warns(UserWarning, match="corrupt cache"):
        ds = m1d.mnist1d(train=False, root=tmp_path)
    x, y = _arrays(ds)
    np.testing.assert_array_equal(x, ours_default["x_test"].astype(np.float32))
    np.testing.assert_array_equal(y, ours_default["y_test"])
    # the file was rewritten and now loads cleanly
    arrays = m1d._load_cache(path)
    np.testing.assert_array_equal(arrays["x"], ours_default["x"].astype(np.float32))


def test_cache_location_and_opt_out(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path / "env"))
    assert m1d.default_root() == tmp_path / "env"
    m1d.mnist1d(seed=3)
    assert (tmp_path / "env" / "mnist1d_seed3_v1.npz").is_file()
    m1d.mnist1d(seed=4, cache=False)
    assert not (tmp_path / "env" / "mnist1d_seed4_v1.npz").exists()
    monkeypatch.delenv("CHAINRULE_CACHE")
    assert m1d.default_root().parts[-2:] == (".cache", "chainrule")
