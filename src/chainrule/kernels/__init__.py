"""Fused CUDA kernels for the element-wise chains that dominate GPU time.

Each function takes arrays (not tensors) and dispatches on ``backend.array_module`` of its
first array: with real CuPy it launches a cached ``cupy.RawKernel`` compiled from
``cuda_sources`` (one pass over memory instead of one kernel per NumPy operation); with
anything else (NumPy, the test double of ``tests/fakecupy.py``, non-contiguous arrays, dtypes
without a kernel, or ``CHAINRULE_CUDA_KERNELS=0``) it runs a NumPy reference of the same maths,
written with ufuncs so that it runs on device arrays too.

- ``sgd_step``, ``adam_step``: one parameter's optimiser step, in place (PyTorch's rules);
- ``relu_backward``, ``sigmoid_backward``, ``tanh_backward``, ``gelu_backward``: grad * f';
- ``sigmoid_forward``, ``silu_forward``, ``gelu_forward``, ``softplus_forward``,
  ``elu_forward``, ``leaky_relu_forward``: the activation itself (the CPU's formulas);
- ``cross_entropy_forward``/``cross_entropy_backward``: softmax + cross-entropy over class
  indices with weights and ignore_index;
- ``layer_norm_forward``/``layer_norm_backward``: LayerNorm over the last dim;
- ``batch_norm_forward``/``batch_norm_backward``: training-mode BatchNorm with batch statistics
  per channel (one warp a channel for the sums, then one element-wise pass);
- ``conv_forward``/``conv_input_grad``/``conv_weight_grad``: direct convolution (no im2col),
  used by ``ops.conv`` with ``CHAINRULE_CUDA_CONV=direct``; these return None where no kernel
  applies (the caller's im2col is their reference).

Kernels exist for float32, float64, float16 and bfloat16 data (arithmetic in float32, float64
for float64).
"""

from .activation import (
    elu_forward,
    gelu_backward,
    gelu_forward,
    leaky_relu_forward,
    relu_backward,
    sigmoid_backward,
    sigmoid_forward,
    silu_forward,
    softplus_forward,
    tanh_backward,
)
from .conv import conv_forward, conv_input_grad, conv_weight_grad
from .cuda_sources import DTYPES, KERNELS, render
from .loss import cross_entropy_backward, cross_entropy_forward
from .norm import (
    batch_norm_backward,
    batch_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from .optim import adam_step, sgd_step

__all__ = [
    "DTYPES",
    "KERNELS",
    "adam_step",
    "batch_norm_backward",
    "batch_norm_forward",
    "conv_forward",
    "conv_input_grad",
    "conv_weight_grad",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "elu_forward",
    "gelu_backward",
    "gelu_forward",
    "layer_norm_backward",
    "layer_norm_forward",
    "leaky_relu_forward",
    "relu_backward",
    "render",
    "sgd_step",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_forward",
    "softplus_forward",
    "tanh_backward",
]
