"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm``, ``GroupNorm``.

Parameters and buffers have PyTorch's names, shapes, dtypes and initial values (weight 1,
bias 0, running_mean 0, running_var 1, num_batches_tracked an int64 scalar 0), so state_dicts
load across in both directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import dtypes
from ...ops.norm import batch_norm, group_norm, layer_norm
from ...tensor import Tensor, check_device, wrap
from .. import init
from ..module import Module, Parameter, expect, place


def _empty(shape: tuple, dtype: Any, device: Any) -> np.ndarray:
    check_device(device)
    return np.empty(
        shape, dtypes.np_dtype(dtype) if dtype is not None else dtypes.defaults.float.np
    )


def _affine_parameters(
    layer: Module, shape: tuple, affine: bool, bias: bool, dtype: Any, device: Any
) -> None:
    """The learnable scale ``weight`` (and shift ``bias``) of a normalisation, or None for each."""
    layer.register_parameter("weight", Parameter(_empty(shape, dtype, device)) if affine else None)
    has_bias = affine and bias
    layer.register_parameter("bias", Parameter(_empty(shape, dtype, device)) if has_bias else None)


def _reset_affine(layer: Module) -> None:
    """Scale 1, shift 0: the normalisation starts as the identity map on normalised values."""
    if layer.weight is not None:
        init.ones_(layer.weight)
    if layer.bias is not None:
        init.zeros_(layer.bias)


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: what differs is only the input shapes they accept."""

    _version = 2

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _affine_parameters(self, (num_features,), affine, bias, dtype, device)
        if track_running_stats:
            self.register_buffer("running_mean", wrap(_empty((num_features,), dtype, device)))
            self.register_buffer("running_var", wrap(_empty((num_features,), dtype, device)))
            self.register_buffer("num_batches_tracked", wrap(np.array(0, np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()
        place(self, device)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            for t, v in (
                (self.running_mean, 0),
                (self.running_var, 1),
                (self.num_batches_tracked, 0),
            ):
                t.data[...] = v
                t._vc[0] += 1

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002
        raise NotImplementedError

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        self._check_input_dim(input)
        # as PyTorch: momentum=None averages all batches seen (factor 1/num_batches_tracked)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            nbt = self.num_batches_tracked
            nbt.data[...] += 1
            nbt._vc[0] += 1
            if self.momentum is None:
                n = nbt.data
                # on a GPU a 0-d device array: float() would make the host wait every batch
                factor = 1.0 / float(n) if type(n) is np.ndarray else 1.0 / n
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, per channel C.

    In training, normalises with the batch's mean and (biased) variance and updates
    ``running_mean`` / ``running_var`` (unbiased variance) with factor ``momentum``, or with the
    cumulative average if ``momentum=None``; in eval mode, normalises with the running
    statistics. ``track_running_stats=False`` keeps no buffers and always uses batch
    statistics; ``affine=False`` has no weight and bias.
    """

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002
        C = self.num_features
        expect(
            input.ndim in (2, 3) and input.shape[1] == C, self, f"(N, {C}) or (N, {C}, L)", input
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel C (see ``BatchNorm1d``)."""

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002
        C = self.num_features
        expect(input.ndim == 4 and input.shape[1] == C, self, f"(N, {C}, H, W)", input)


class LayerNorm(Module):
    """Normalise each sample over its trailing dims ``normalized_shape`` (mean 0, variance 1,
    biased, plus ``eps``), then apply an element-wise affine map (weight 1, bias 0 at first)
    unless ``elementwise_affine=False``; ``bias=False`` keeps only the weight."""

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _affine_parameters(self, self.normalized_shape, elementwise_affine, bias, dtype, device)
        self.reset_parameters()
        place(self, device)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        ns = self.normalized_shape
        k = len(ns)
        ok = input.ndim >= k and tuple(input.shape[input.ndim - k :]) == ns
        expect(ok, self, "(*, " + ", ".join(map(str, ns)) + ")", input)
        return layer_norm(input, ns, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """Split the C channels of (N, C, *) inputs into ``num_groups`` groups and normalise each
    sample's group over its channels and positions; then a per-channel affine map (weight 1,
    bias 0) unless ``affine=False``. No running statistics: train and eval behave the same."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _affine_parameters(self, (num_channels,), affine, bias, dtype, device)
        self.reset_parameters()
        place(self, device)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        C = self.num_channels
        expect(input.ndim >= 2 and input.shape[1] == C, self, f"(N, {C}, *)", input)
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )
