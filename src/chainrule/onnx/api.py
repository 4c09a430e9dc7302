"""``export``: trace a model and assemble, check and write the ONNX model."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes
from ..autograd import engine
from ..autograd.grad_mode import enable_grad
from ..nn.module import Module
from ..tensor import Tensor, wrap
from .tracer import MIN_OPSET, ExportError, _flatten, _static_dims, _Tracer

# ----------------------------------------------------------------------------- public API


def export(
    model: Module,
    example_input: Any,
    path: str | Path | None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    opset: int = 17,
) -> Any:
    """Trace ``model`` on ``example_input`` and write it to ``path`` as an ONNX model.

    ``example_input``: a Tensor or NumPy array, or a tuple/list of them (one per argument of
    ``forward``). Names default to ``input``/``output`` (``input_0``, ``input_1``, ... when there
    are several; the model may return a Tensor or a nested tuple/list of them). With
    ``dynamic_batch`` dim 0 of each input (and the matching dim of each output) is the symbolic
    "batch", else every size is fixed as traced. ``opset``: 17 or later. The model is traced in
    eval mode (its modes are restored after). Returns the ``onnx.ModelProto`` (also written to
    ``path`` unless it is None).
    """
    onnx = _require_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"export: expected a chainrule.nn.Module, got {type(model).__name__}")
    latest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= latest:
        raise ValueError(f"export: opset must be between {MIN_OPSET} and {latest}, got {opset}")
    if engine._tracer is not None:
        raise ExportError("export: already tracing a model (export() called from a forward?)")
    raw = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    if not raw:
        raise ValueError("export: example_input is empty")
    arrays = [np.array(a.data if isinstance(a, Tensor) else a) for a in raw]
    names_in = _names(input_names, len(arrays), "input")
    tr = _Tracer(model, opset)
    if dynamic_batch:
        dims0 = {a.shape[0] for a in arrays if a.ndim}
        if len(dims0) > 1:
            raise ExportError(
                f"export: with dynamic_batch the inputs must share their dim 0 (the batch), got "
                f"sizes {sorted(dims0)}; pass dynamic_batch=False to fix every size"
            )
        if dims0:
            tr.batch = dims0.pop()
            if tr.batch == 1:
                warnings.warn(
                    "chainrule.onnx.export: an example batch of 1 is ambiguous (a size-1 dim may or "
                    "may not be the batch); trace with a batch of 2 or more",
                    stacklevel=2,
                )
    inputs = []
    for a, name in zip(arrays, names_in):
        t = wrap(
            a, dtypes.is_floating(a.dtype)
        )  # requires grad: untraced computation shows a grad_fn
        bax = 0 if tr.batch is not None and a.ndim else None
        v = tr.bind(t, name, bax)
        tr.graph_inputs.append(v)
        if bax == 0 and tr.batch_input is None:
            tr.batch_input = v
        inputs.append(t)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    tr.install(model)
    engine._tracer = tr
    try:
        with enable_grad():
            out = model(*inputs)
    finally:
        engine._tracer = None
        tr.uninstall()
        for m, mode in modes:
            m.__dict__["training"] = mode
    outs = [o for o in _flatten(out) if o is not None]
    if not outs:
        raise ExportError("export: the model returned no tensors")
    bad = [type(o).__name__ for o in outs if not isinstance(o, Tensor)]
    if bad:
        raise ExportError(
            f"export: the model returns {', '.join(bad)}; only Tensors can be outputs"
        )
    names_out = _names(output_names, len(outs), "output")
    if set(names_out) & set(names_in):
        raise ValueError("export: input and output names must differ")
    tr.stack = []
    tracked = []
    for o, name in zip(outs, names_out):
        v = tr.v(o)
        if v.suspect and tr.batch_input is not None:
            v = tr.follow_batch(v)
        tr.nodes.append(
            onnx.helper.make_node("Identity", [v.name], [name], name=f"{name}/Identity")
        )
        tracked.append((name, o.data.dtype, tr.dims(o.shape, v.bax, v.bf)))
    used = {i for n in tr.nodes for i in n.input}
    opsets = [onnx.helper.make_opsetid("", opset)]
    from .. import __version__  # noqa: PLC0415

    def model_with(outputs: list) -> Any:
        graph = onnx.helper.make_graph(
            tr.nodes,
            type(model).__name__,
            [
                tr.value_info(v.name, v.dtype, tr.dims(v.shape, v.bax, v.bf))
                for v in tr.graph_inputs
            ],
            outputs,
            [i for i in tr.inits if i.name in used],  # constants replaced on the way are dropped
        )
        return onnx.helper.make_model(
            graph, opset_imports=opsets, producer_name="chainrule", producer_version=__version__
        )

    # output shapes: a size is declared only where ONNX's own shape inference finds it fixed
    # (or it is the batch), so that a size the tracer did not follow is left open, never wrong
    proto = model_with([tr.value_info(n, dt, None) for n, dt, _ in tracked])
    inferred = onnx.shape_inference.infer_shapes(proto)
    known = {vi.name: vi for vi in list(inferred.graph.output) + list(inferred.graph.value_info)}
    outputs = []
    for name, dt, dims in tracked:
        found = _static_dims(known.get(name))
        if found is not None and len(found) == len(dims):
            dims = [d if d == "batch" or d == f else None for d, f in zip(dims, found)]
        else:
            dims = [d if d == "batch" else None for d in dims]
        outputs.append(tr.value_info(name, dt, dims))
    proto = model_with(outputs)
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def _require_onnx() -> Any:
    try:
        import onnx  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "chainrule.onnx needs the onnx package: pip install 'chainrule[onnx]' "
            "(onnx, and onnxruntime to run the exported model)"
        ) from e
    return onnx


def _names(names: Sequence[str] | None, n: int, base: str) -> list[str]:
    if names is None:
        return [base] if n == 1 else [f"{base}_{i}" for i in range(n)]
    names = list(names)
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"export: expected {n} distinct {base} names, got {names}")
    return names
