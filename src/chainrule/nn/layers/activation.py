"""Activation modules (wrappers over ``chainrule.nn.functional``)."""

from __future__ import annotations

from ...ops.activation import _surrogate_params
from ...tensor import Tensor
from .. import functional as F
from ..module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.relu(input)


class Sigmoid(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.tanh(input)


class Softmax(Module):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.log_softmax(input, self.dim)


class LeakyReLU(Module):
    """``x`` for x > 0, ``negative_slope * x`` otherwise."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.elu(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """``x * Phi(x)`` (Phi the standard normal CDF, via erf); ``approximate='tanh'`` for the tanh
    approximation."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', not {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.silu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Softplus(Module):
    """``log(1 + exp(beta * x)) / beta``, linear (``x``) where ``beta * x > threshold``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """``clamp(x, min_val, max_val)``; gradient 1 strictly inside, 0 at and beyond the bounds."""

    def __init__(
        self,
        min_val: float = -1.0,
        max_val: float = 1.0,
        inplace: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> None:
        super().__init__()
        min_val = min_val if min_value is None else min_value  # PyTorch's deprecated names
        max_val = max_val if max_value is None else max_value
        if max_val <= min_val:
            raise AssertionError(f"max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        inplace = ", inplace=True" if self.inplace else ""
        return f"min_val={self.min_val}, max_val={self.max_val}{inplace}"


class Step(Module):
    """Heaviside step unit: 1 where x > 0, else 0 (so step(0) = 0).

    Its true derivative is 0 almost everywhere; the backward uses a surrogate instead:

    - ``'ste'`` (straight-through): gradient 1 everywhere. ``k`` must be None.
    - ``'sigmoid'``: ``k * s * (1 - s)`` with ``s = sigmoid(k * x)``, the derivative of
      ``sigmoid(k * x)``; ``k`` defaults to 4.
    - ``'triangle'``: ``k * max(0, 1 - k * |x|)``, the derivative of a ramp from 0 to 1 over
      ``|x| <= 1/k``; ``k`` defaults to 1, giving ``max(0, 1 - |x|)``.
    """

    def __init__(self, surrogate: str = "ste", k: float | None = None) -> None:
        super().__init__()
        _surrogate_params("Step", surrogate, k)  # validate the arguments now
        self.surrogate, self.k = surrogate, k

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.step(input, self.surrogate, self.k)

    def extra_repr(self) -> str:
        return f"surrogate={self.surrogate!r}" + (f", k={self.k}" if self.k is not None else "")


class Sign(Step):
    """Sign unit: -1, 0, +1 as ``torch.sign`` (so sign(0) = 0), trained with a surrogate gradient:

    - ``'ste'``: 1 where ``|x| <= 1``, 0 outside (the hardtanh straight-through estimator of
      binarised networks). ``k`` must be None.
    - ``'sigmoid'``: ``2 * k * s * (1 - s)``, ``s = sigmoid(k * x)``: the derivative of
      ``2 * sigmoid(k * x) - 1``; ``k`` defaults to 4.
    - ``'triangle'``: ``2 * k * max(0, 1 - k * |x|)``, the derivative of a ramp from -1 to 1;
      ``k`` defaults to 1.

    The smooth surrogates are twice those of ``Step``: sign jumps by 2 where step jumps by 1.
    """

    def __init__(self, surrogate: str = "ste", k: float | None = None) -> None:
        Module.__init__(self)
        _surrogate_params("Sign", surrogate, k)
        self.surrogate, self.k = surrogate, k

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return F.sign_ste(input, self.surrogate, self.k)
