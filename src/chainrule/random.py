"""Random number generation: one global generator (``manual_seed``) and ``Generator`` objects."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend


class Generator:
    """A seedable source of random numbers (PyTorch's ``torch.Generator``): NumPy's PCG64 on the
    CPU, CuPy's default generator (XORWOW) for ``device='cuda'``, drawing on the GPU."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = backend.as_device(device)
        self.manual_seed(int(np.random.SeedSequence().entropy % (2**63)))

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        if self.device.type == "cuda":
            self._np = None  # made on first use: seeding must not need a GPU
        else:
            self._np = np.random.Generator(np.random.PCG64(self._seed))
        return self

    @property
    def np(self) -> Any:
        """The underlying generator (``numpy.random.Generator`` or ``cupy.random.Generator``)."""
        if self._np is None:
            self._np = backend.cuda_module().random.default_rng(self._seed)
        return self._np

    def seed(self) -> int:
        return self.manual_seed(int(np.random.SeedSequence().entropy % (2**63)))._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        if self.device.type == "cuda":
            raise RuntimeError(
                "the CUDA generator's state cannot be saved (CuPy does not expose it); "
                "re-seed it with chainrule.cuda.manual_seed instead"
            )
        return self.np.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        self.np.bit_generator.state = state
        return self


default_generator = Generator()
cuda_generator = Generator("cuda")  # draws for CUDA tensors (dropout masks, randn(device='cuda'))


def manual_seed(seed: int) -> Generator:
    """Seed the global generators, CPU and CUDA (every random function without ``generator=``
    uses them), as ``torch.manual_seed`` does."""
    cuda_generator.manual_seed(seed)
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _gen(generator: Generator | None, device: Any = None) -> Any:
    """The generator to draw from: ``generator``'s, else the default one for ``device``."""
    if generator is not None:
        return generator.np
    if device is not None and backend.as_device(device).type == "cuda":
        return cuda_generator.np
    return default_generator.np
