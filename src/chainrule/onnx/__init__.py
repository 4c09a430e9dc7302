"""Export a chainrule model to ONNX: ``chainrule.onnx.export(model, example_input, path)``.

    import chainrule.onnx
    chainrule.onnx.export(model, cr.zeros(2, 40), "model.onnx")   # dim 0 of every input: "batch"

    import onnxruntime as ort
    sess = ort.InferenceSession("model.onnx")
    (y,) = sess.run(None, {"input": x_numpy})                    # any batch size

How: by tracing. The model runs once (in eval mode) on the example input while a tracer hooked
into the engine's ``apply`` sees every op that runs, with its inputs, parameters and output, and
emits the equivalent ONNX nodes. Tracing at the op level was chosen over walking the module tree
because it exports what the model actually computes: the glue in a custom ``forward`` (residual
additions, ``cat``, ``reshape``, slicing, ``sigmoid`` ...) and functional calls are captured just
like layers, so user models built from chainrule ops export without writing converters. A few
layers are converted as a whole instead, because their forward loops or reshapes with sizes that
ONNX has a better, size-independent op for: ``RNN``/``GRU``/``LSTM`` (ONNX RNN/GRU/LSTM, gates
reordered, ``linear_before_reset=1`` for PyTorch's GRU), ``MultiheadAttention`` (a MatMul/Softmax
composition whose reshapes keep batch and sequence lengths dynamic) and ``Embedding`` (Gather).

Dynamic batch: dim 0 of every input is named "batch". The tracer follows the batch dim through
every op, so that a reshape writes -1 for the dim that carries the batch instead of the traced
size and an expand keeps it. A tensor made inside ``forward`` with the example batch size as its
dim 0 (``zeros(x.shape[0], H)`` as an initial state) follows the batch where it meets a batch dim,
if its rows are all equal; otherwise the export fails rather than bake one batch size in. Trace
with a batch of 2 or more (1 is ambiguous: a size-1 dim may or may not be the batch), distinct
from the other sizes of the model if you can. Output sizes are declared where ONNX's shape
inference finds them fixed (and "batch" where the batch is); any other size is left open.

Converters are per op class (``tracer._CONVERTERS``, filled by ``math_ops``, ``shape_ops`` and
``nn_ops``) and per layer class (``layers._module_converter``); the
tracer is installed for the duration of one ``export`` call (``engine._tracer``, None otherwise,
so that ``apply`` pays one global test), and modules are wrapped through an instance ``forward``
that is removed afterwards. Not thread-safe: ops run by other threads during an export are seen
by the tracer too.

What is not exported, with an error naming the op and the layer (``ExportError``), raised when
an output of the model depends on it: ops without a converter (``roll``, losses, gradient ops,
an ``autograd.Function``, anything computed outside chainrule's ops from values of the graph),
``MaxPool(return_indices=True)``, ``MultiheadAttention`` with ``key_padding_mask``,
``add_bias_kv`` or ``add_zero_attn``, ``Embedding(max_norm=...)``, reshapes that merge the batch
dim with the dims before it, ``cat``/``split`` along the batch dim. Python control flow and
Python numbers read from tensors (``.item()``, shapes used in arithmetic) are baked in as traced.

Needs the ``onnx`` package (``pip install 'chainrule[onnx]'``), imported only when exporting;
the result is checked with ``onnx.checker.check_model(full_check=True)``. ONNX opset 17 (for
LayerNormalization) or later.
"""

from __future__ import annotations

from . import math_ops, nn_ops, shape_ops  # noqa: F401  (they register the op converters)
from .api import export
from .tracer import ExportError

__all__ = ["ExportError", "export"]
