"""Fused CUDA kernels for the element-wise chains that dominate GPU time.

Each function takes arrays (not tensors) and dispatches on ``backend.array_module`` of its
first array: with real CuPy it launches a cached ``cupy.RawKernel`` compiled from
``cuda_sources`` (one pass over memory instead of one kernel per NumPy operation); with
anything else (NumPy, the test double of ``tests/fakecupy.py``, non-contiguous arrays, dtypes
without a kernel, or ``CHAINRULE_CUDA_KERNELS=0``) it runs a NumPy reference of the same maths,
written with ufuncs so that it runs on device arrays too.

- ``sgd_step``, ``adam_step``: one parameter's optimiser step, in place (PyTorch's rules);
- ``relu_backward``, ``sigmoid_backward``, ``tanh_backward``, ``gelu_backward``: grad * f';
- ``cross_entropy_forward``/``cross_entropy_backward``: softmax + cross-entropy over class
  indices with weights and ignore_index;
- ``layer_norm_forward``/``layer_norm_backward``: LayerNorm over the last dim;
- ``conv_forward``/``conv_input_grad``/``conv_weight_grad``: direct convolution (no im2col),
  used by ``ops.conv`` with ``CHAINRULE_CUDA_CONV=direct``; these return None where no kernel
  applies (the caller's im2col is their reference).

Kernels exist for float32, float64, float16 and bfloat16 data (arithmetic in float32, float64
for float64).
"""

from .activation import gelu_backward, relu_backward, sigmoid_backward, tanh_backward
from .conv import conv_forward, conv_input_grad, conv_weight_grad
from .cuda_sources import DTYPES, KERNELS, render
from .loss import cross_entropy_backward, cross_entropy_forward
from .norm import layer_norm_backward, layer_norm_forward
from .optim import adam_step, sgd_step

__all__ = [
    "DTYPES",
    "KERNELS",
    "adam_step",
    "conv_forward",
    "conv_input_grad",
    "conv_weight_grad",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "gelu_backward",
    "layer_norm_backward",
    "layer_norm_forward",
    "relu_backward",
    "render",
    "sgd_step",
    "sigmoid_backward",
    "tanh_backward",
]
