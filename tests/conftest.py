"""Shared fixtures: the CUDA device for tests.

Tests that take the ``device`` fixture run twice, on ``'cpu'`` and on ``'cuda'``. Which CUDA
that is, ``--device`` (or the environment variable ``CHAINRULE_TEST_DEVICE``) says:

- ``auto`` (the default): a real GPU through CuPy when one answers, else the NumPy-backed fake
  CuPy of ``fakecupy.py`` (so CI, which has no GPU, still runs every GPU code path);
- ``gpu``: a real GPU, failing when there is none (what the device check runs);
- ``fake``: always the fake;
- ``none``: skip the CUDA half.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import fakecupy
from chainrule import backend
from chainrule import random as cr_random


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=os.environ.get("CHAINRULE_TEST_DEVICE", "auto"),
        choices=("auto", "gpu", "fake", "none"),
        help="what the 'cuda' half of device tests runs on (default: a GPU if any, else fake CuPy)",
    )


def _real_cupy() -> object | None:
    try:
        import cupy  # noqa: PLC0415

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no GPU: all mean "none here"
        return None


@pytest.fixture
def cuda(request: pytest.FixtureRequest) -> Iterator[str]:
    """Makes ``'cuda'`` usable for one test and yields it; CUDA is unavailable again after."""
    mode = request.config.getoption("--device")
    if mode == "none":
        pytest.skip("CUDA tests switched off (--device none)")
    module = _real_cupy() if mode in ("auto", "gpu") else None
    if module is None:
        if mode == "gpu":
            pytest.fail("--device gpu: no GPU answered through CuPy")
        module = fakecupy.module()
    prev = backend._cuda
    backend.set_cuda_module(module)
    cr_random.cuda_generator.manual_seed(0)
    try:
        yield "cuda"
    finally:
        backend.set_cuda_module(prev)
        cr_random.cuda_generator.manual_seed(0)


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> str:
    """'cpu', then 'cuda' (see the module docstring for what CUDA is here)."""
    if request.param == "cuda":
        return request.getfixturevalue("cuda")
    return "cpu"


def is_fake() -> bool:
    return backend._cuda is fakecupy.module()
