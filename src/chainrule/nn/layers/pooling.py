"""Pooling layers: ``MaxPool1d/2d``, ``AvgPool1d/2d``, ``AdaptiveAvgPool1d/2d`` (PyTorch's
arguments, defaults, attributes and reprs)."""

from __future__ import annotations

from typing import Any

from ...ops import pooling as pl
from ...tensor import Tensor
from ..module import Module, expect


def _single(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


class _Pool(Module):
    _nd = 2

    def _check(self, x: Tensor) -> None:
        nd = self._nd
        sp = "L" if nd == 1 else "H, W"
        ok = isinstance(x, Tensor) and x.ndim in (nd + 1, nd + 2)
        expect(ok, self, f"(N, C, {sp}) or (C, {sp})", x)


class _MaxPoolNd(_Pool):
    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Any:  # noqa: A002
        self._check(input)
        fn = pl.max_pool1d if self._nd == 1 else pl.max_pool2d
        return fn(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """Max over windows of (N, C, L) or (C, L); ``stride`` defaults to ``kernel_size``."""

    _nd = 1


class MaxPool2d(_MaxPoolNd):
    """Max over windows of (N, C, H, W) or (C, H, W); ``stride`` defaults to ``kernel_size``."""

    _nd = 2


class AvgPool1d(_Pool):
    """Mean over windows of (N, C, L) or (C, L)."""

    _nd = 1

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check(input)
        return pl.avg_pool1d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool):
    """Mean over windows of (N, C, H, W) or (C, H, W)."""

    _nd = 2

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if (stride is not None) else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check(input)
        return pl.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool1d(_Pool):
    """Mean over adaptive windows of (N, C, L) or (C, L) to length ``output_size``."""

    _nd = 1

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check(input)
        return pl.adaptive_avg_pool1d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(AdaptiveAvgPool1d):
    """Mean over adaptive windows of (N, C, H, W) or (C, H, W) to ``output_size`` (an int or a
    pair; None keeps that size)."""

    _nd = 2

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check(input)
        return pl.adaptive_avg_pool2d(input, self.output_size)
