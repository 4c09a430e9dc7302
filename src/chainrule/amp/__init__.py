"""Automatic mixed precision, as PyTorch's ``torch.amp``: ``autocast`` runs matrix products and
convolutions in float16/bfloat16 and precision-hungry ops in float32; ``GradScaler`` keeps small
float16 gradients from underflowing. ``chainrule.autocast`` is the same ``autocast``."""

from .autocast import (
    POLICY,
    autocast,
    clear_autocast_cache,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
)
from .grad_scaler import GradScaler, OptState

__all__ = [
    "POLICY",
    "GradScaler",
    "OptState",
    "autocast",
    "clear_autocast_cache",
    "get_autocast_dtype",
    "is_autocast_available",
    "is_autocast_enabled",
]
