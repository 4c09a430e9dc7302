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

Converters are per op class (``_CONVERTERS``) and per layer class (``_module_converter``); the
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

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .autograd import engine
from .autograd.grad_mode import enable_grad
from .nn.layers import embedding as EMB
from .nn.module import Module
from .ops import activation as A
from .ops import conv as C
from .ops import elementwise as E
from .ops import linalg as LA
from .ops import linear as LI
from .ops import movement as M
from .ops import nn as N
from .ops import norm as NO
from .ops import reduce as R
from .ops import rnn as RN
from .tensor import Tensor, wrap

__all__ = ["ExportError", "export"]

MIN_OPSET = 17
_I64_MAX = 2**63 - 1
_I64_MIN = -(2**63)


class ExportError(RuntimeError):
    """A model (or a part of it) that cannot be expressed in ONNX; the message names the op and
    the layer."""


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
        t = wrap(a, a.dtype.kind == "f")  # requires grad: untraced computation shows a grad_fn
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
    from . import __version__  # noqa: PLC0415

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


def _flatten(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return [y for x in out for y in _flatten(x)]
    if isinstance(out, dict):
        return [y for x in out.values() for y in _flatten(x)]
    return [out]


# ----------------------------------------------------------------------------- the tracer


class _Value:
    """A traced tensor: its ONNX name, traced shape and dtype, and where the batch is: dim
    ``bax`` holds ``bf`` times the batch size (None: no dim depends on the batch). ``const`` is
    the array of an initializer; ``error`` marks a value that could not be converted;
    ``suspect`` one made outside the graph whose dim 0 has the example batch size (it may have to
    follow the batch: see ``_Tracer.align``)."""

    __slots__ = ("name", "shape", "dtype", "bax", "bf", "const", "error", "suspect", "ref")

    def __init__(
        self,
        name: str | None,
        shape: tuple,
        dtype: np.dtype,
        bax: int | None = None,
        bf: int = 1,
        const: np.ndarray | None = None,
        error: str | None = None,
    ) -> None:
        self.name, self.shape, self.dtype = name, tuple(shape), np.dtype(dtype)
        self.bax, self.bf, self.const, self.error = bax, bf, const, error
        self.suspect: str | None = None  # where a constant with a batch-sized dim 0 came from
        self.ref: Any = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


class _Tracer:
    def __init__(self, model: Module, opset: int) -> None:
        import onnx  # noqa: PLC0415
        from onnx import numpy_helper  # noqa: PLC0415

        self.helper, self.numpy_helper = onnx.helper, numpy_helper
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self.graph_inputs: list[_Value] = []
        self.values: dict[int, _Value] = {}  # id(Tensor) -> value
        self.by_data: dict[int, _Value] = {}  # id(ndarray) -> value (indices passed as arrays)
        self.cache: dict[Any, str] = {}  # constants already emitted
        self.used: set[str] = set()
        self.stack: list[tuple[str, Module]] = []
        self.saved: list = []
        self.batch: int | None = None
        self.batch_input: _Value | None = None
        self.seq0 = engine._seq
        self.param_names = {id(p): n for n, p in model.named_parameters()}
        self.param_names.update({id(b): n for n, b in model.named_buffers() if b is not None})
        self.owned = {
            id(v) for m in model.modules() for v in m.__dict__.values() if isinstance(v, Tensor)
        }
        self.owned.update(self.param_names)
        self.model_name = type(model).__name__

    # ------------------------------------------------------------------ hooks
    def __call__(self, op: type, args: tuple, kw: dict) -> Any:
        """Installed as ``engine._tracer``: run the op untraced, then convert it."""
        engine._tracer = None
        try:
            out = engine.apply(op, *args, **kw)
        finally:
            engine._tracer = self
        outs = list(out) if type(out) is tuple else [out]
        conv = _CONVERTERS.get(op)
        try:
            if conv is None:
                raise self.error(
                    f"op `{_op_name(op)}` ({op.__module__}.{op.__qualname__}) has no ONNX converter"
                )
            res = conv(self, args, kw, outs)
            sus = next(
                (
                    v.suspect
                    for a in args
                    if isinstance(a, Tensor)
                    for v in (self.values.get(id(a)),)
                    if v is not None and v.suspect
                ),
                None,
            )
            for t, (name, bax, bf) in zip(outs, res):
                v = self.bind(t, name, bax, bf)
                if sus and bax is None and t.ndim and t.shape[0] == self.batch:
                    v.suspect = sus  # computed from such a constant, still batch-sized
        except ExportError as e:
            for t in outs:
                self.poison(t, str(e))
        return out

    def install(self, model: Module) -> None:
        for qn, m in model.named_modules():
            self.saved.append((m, m.__dict__.get("forward")))
            m.__dict__["forward"] = self._wrap(qn, m, m.forward, _module_converter(m))

    def uninstall(self) -> None:
        for m, prev in self.saved:
            if prev is None:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = prev
        self.saved = []

    def _wrap(self, qn: str, m: Module, orig: Callable, conv: Callable | None) -> Callable:
        def forward(*args: Any, **kwargs: Any) -> Any:
            self.stack.append((qn, m))
            try:
                if engine._tracer is not self:
                    return orig(*args, **kwargs)
                if conv is None:
                    out = orig(*args, **kwargs)
                    self._check_untraced(out)
                    return out
                engine._tracer = None  # the layer's own ops are not traced: it converts as one
                try:
                    out = orig(*args, **kwargs)
                finally:
                    engine._tracer = self
                try:
                    conv(self, m, _bind(m, args, kwargs), out)
                except ExportError as e:
                    for t in _flatten(out):
                        if isinstance(t, Tensor):
                            self.poison(t, str(e))
                return out
            finally:
                self.stack.pop()

        return forward

    # ------------------------------------------------------------------ values
    def where(self) -> str:
        if not self.stack:
            return f"the model ({self.model_name})"
        qn, m = self.stack[-1]
        return f"layer '{qn}' ({type(m).__name__})" if qn else f"the model ({type(m).__name__})"

    def error(self, msg: str) -> ExportError:
        return ExportError(f"chainrule.onnx.export: {msg}, in {self.where()}")

    def bind(self, t: Tensor, name: str, bax: int | None = None, bf: int = 1) -> _Value:
        v = _Value(name, t.shape, t.data.dtype, bax, bf)
        v.ref = t  # keeps the tensor (and so its id) alive while tracing
        self.values[id(t)] = v
        self.by_data[id(t.data)] = v
        return v

    def _check_untraced(self, out: Any) -> None:
        """Outputs of a layer made by an untraced op (an autograd.Function, say): an error
        naming this layer if the model's output depends on them."""
        for t in _flatten(out):
            if isinstance(t, Tensor) and id(t) not in self.values:
                try:
                    self._constant_tensor(t)
                except ExportError as e:
                    self.poison(t, str(e))

    def poison(self, t: Tensor, msg: str) -> None:
        v = _Value(None, t.shape, t.data.dtype, error=msg)
        v.ref = t
        self.values[id(t)] = v

    def v(self, a: Any, dtype: Any = None) -> _Value:
        """The value of an op's argument: a traced tensor, or a constant (tensor, array, scalar)."""
        if isinstance(a, Tensor):
            val = self.values.get(id(a))
            if val is None or val.ref is not a:
                val = self._constant_tensor(a)
        elif (
            isinstance(a, np.ndarray)
            and id(a) in self.by_data
            and self.by_data[id(a)].ref.data is a
        ):
            val = self.by_data[id(a)]
        else:
            arr = np.asarray(a, dtype=dtype)
            val = _Value(self.const(arr), arr.shape, arr.dtype, const=arr)
            if isinstance(a, np.ndarray):  # an index array made in forward
                self._check_batch_sized(val, a)
        if val.error is not None:
            raise ExportError(val.error)
        return val

    def _constant_tensor(self, t: Tensor) -> _Value:
        fn = t.grad_fn
        if fn is not None and getattr(fn, "seq", 0) > self.seq0:
            raise self.error(
                f"a tensor computed by `{fn.name()}` did not go through the traced ops (an "
                "autograd.Function or a NumPy round trip?); it cannot be exported"
            )
        arr = t.data
        name = self.param_names.get(id(t), "const")
        v = _Value(self.const(arr, name, ("tensor", id(t))), arr.shape, arr.dtype, const=arr)
        v.ref = t
        if id(t) not in self.owned:
            self._check_batch_sized(v, arr)
        self.values[id(t)] = v
        return v

    def _check_batch_sized(self, v: _Value, arr: np.ndarray) -> None:
        if self.batch and self.batch > 1 and arr.ndim and arr.shape[0] == self.batch:
            v.suspect = f"a tensor of shape {tuple(arr.shape)} made in {self.where()}"

    def align(self, vals: list, out_ndim: int, expand: bool = False) -> list:
        """Values about to be broadcast (or, with ``expand``, concatenated) together. A suspect
        (a tensor made outside the graph with the example batch size as dim 0, such as
        ``zeros(x.shape[0], H)``) whose dim 0 meets the batch dim of another value must follow
        the batch: when its rows are all equal it becomes its first row (broadcasting does the
        rest) or, with ``expand``, that row repeated to the runtime batch; otherwise it cannot be
        exported."""
        ref = next(
            (v for v in vals if isinstance(v, _Value) and v.bax is not None and not v.suspect), None
        )
        if ref is None:
            return vals
        pos = ref.bax + out_ndim - ref.ndim
        out = []
        for v in vals:
            if isinstance(v, _Value) and v.suspect and v.ndim and out_ndim - v.ndim == pos:
                v = self.follow_batch(v, ref) if expand else self._first_row(v)
            out.append(v)
        return out

    def _first_row(self, v: _Value) -> _Value:
        data = v.const if v.const is not None else v.ref.data
        if not (data == data[:1]).all():
            raise ExportError(
                f"chainrule.onnx.export: {v.suspect} has the example batch size ({self.batch}) as dim 0 and differs "
                "from sample to sample, so it cannot follow a dynamic batch (compute it from the "
                "inputs with chainrule ops, trace with another batch size if the match is a "
                "coincidence, or pass dynamic_batch=False)"
            )
        if v.const is not None:
            name = self.const(np.ascontiguousarray(v.const[:1]))
        else:
            name = self.emit("Slice", [v.name, self.i64([0]), self.i64([1]), self.i64([0])])
        return _Value(name, (1, *v.shape[1:]), v.dtype)

    def follow_batch(self, v: _Value, ref: _Value | None = None) -> _Value:
        """A suspect (returned by the model, or an index) with its equal rows repeated for the
        runtime batch (the size of ``ref``'s batch dim, by default the first input's)."""
        r = self._first_row(v)
        ref = ref or self.batch_input
        n = self.emit("Shape", [ref.name], start=ref.bax, end=ref.bax + 1)
        dims = self.emit("Concat", [n, self.i64(list(v.shape[1:]))], axis=0) if v.ndim > 1 else n
        return _Value(self.emit("Expand", [r.name, dims]), v.shape, v.dtype, 0, 1)

    # ------------------------------------------------------------------ emitting
    def fresh(self, base: str) -> str:
        base = base or "v"
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def emit(self, op_type: str, inputs: list, n_out: int = 1, **attrs: Any) -> Any:
        scope = self.stack[-1][0] if self.stack else ""
        outs = [self.fresh(f"{scope}/{op_type}" if scope else op_type) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node_name = self.fresh(f"node:{outs[0]}")
        self.nodes.append(
            self.helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs)
        )
        return outs[0] if n_out == 1 else outs

    def const(self, arr: np.ndarray, hint: str = "const", key: Any = None) -> str:
        arr = np.asarray(arr)  # (not ascontiguousarray: it makes a 0-d array 1-d)
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        if key is None and arr.size <= 64:
            key = ("array", arr.dtype.str, arr.shape, arr.tobytes())
        if key is not None and key in self.cache:
            return self.cache[key]
        name = self.fresh(hint)
        self.inits.append(self.numpy_helper.from_array(arr, name))
        if key is not None:
            self.cache[key] = name
        return name

    def i64(self, values: Any) -> str:
        return self.const(np.asarray(list(values) if not np.isscalar(values) else values, np.int64))

    def scalar(self, x: Any, dtype: Any) -> str:
        return self.const(np.asarray(x, dtype))

    def transposed(self, w: _Value) -> str:
        """w^T (2-D): a transposed initializer for a constant, else a Transpose node."""
        if w.const is not None:
            return self.const(np.ascontiguousarray(w.const.T), f"{w.name}_T", ("T", w.name))
        return self.emit("Transpose", [w.name], perm=[1, 0])

    def reduce(self, op: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        if op == "ReduceSum" or self.opset >= 18:
            return self.emit(op, [x, self.i64(list(axes))], keepdims=int(keepdims))
        return self.emit(op, [x], axes=list(axes), keepdims=int(keepdims))

    def cast(self, x: str, dtype: Any) -> str:
        return self.emit("Cast", [x], to=self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def dims(self, shape: tuple, bax: int | None, bf: int) -> list:
        dims: list = list(shape)
        if bax is not None:
            dims[bax] = "batch" if bf == 1 else None
        return dims

    def value_info(self, name: str, dtype: Any, dims: list | None) -> Any:
        elem = self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return self.helper.make_tensor_value_info(name, elem, dims)


def _static_dims(vi: Any) -> list | None:
    """The sizes ONNX inferred for a value (None for a size it could not fix), or None."""
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def _op_name(op: type) -> str:
    return getattr(op, "name", None) or op.__name__.lower()


def _bind(m: Module, args: tuple, kwargs: dict) -> dict:
    ba = inspect.signature(type(m).forward).bind(m, *args, **kwargs)
    ba.apply_defaults()
    return dict(ba.arguments)


# ----------------------------------------------------------------------------- op converters

_CONVERTERS: dict[type, Callable] = {}


def _conv(*ops: type) -> Callable:
    def deco(fn: Callable) -> Callable:
        for op in ops:
            _CONVERTERS[op] = fn
        return fn

    return deco


def _same(name: str, v: _Value) -> list:
    return [(name, v.bax, v.bf)]


def _bcast(vals: Sequence[Any], out_ndim: int) -> tuple:
    """Where the batch lands in a broadcast result (inputs aligned on their last dims)."""
    for v in vals:
        if isinstance(v, _Value) and v.bax is not None:
            return v.bax + out_ndim - v.ndim, v.bf
    return None, 1


def _operand_dtype(args: Sequence[Any], default: Any) -> np.dtype:
    for a in args:
        if isinstance(a, Tensor):
            return a.data.dtype
    return np.dtype(default)


# ------------------------------------------------------------------ element-wise

_UNARY = {
    E.Neg: "Neg", E.Exp: "Exp", E.Log: "Log", E.Sqrt: "Sqrt", E.Sin: "Sin", E.Cos: "Cos",
    E.Tan: "Tan", E.Tanh: "Tanh", E.Sigmoid: "Sigmoid", E.Relu: "Relu", E.Abs: "Abs",
    E.Sign: "Sign", E.Floor: "Floor", E.Ceil: "Ceil", E.Reciprocal: "Reciprocal",
    E.Clone: "Identity", A.Erf: "Erf", A.SignSurrogate: "Sign",
}  # fmt: skip


def _make_unary(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(t.emit(onnx_op, [x.name]), x)

    return conv


for _op, _name in _UNARY.items():
    _CONVERTERS[_op] = _make_unary(_name)


def _unary_fn(fn: Callable) -> Callable:
    """A converter for a one-input op written as ``fn(t, x_value, kw) -> name``."""

    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(fn(t, x, kw), x)

    return conv


def _c(t: _Tracer, x: _Value, value: float) -> str:
    return t.scalar(value, x.dtype)


_CONVERTERS[E.Log1p] = _unary_fn(
    lambda t, x, kw: t.emit("Log", [t.emit("Add", [x.name, _c(t, x, 1)])])
)
_CONVERTERS[E.Expm1] = _unary_fn(
    lambda t, x, kw: t.emit("Sub", [t.emit("Exp", [x.name]), _c(t, x, 1)])
)
_CONVERTERS[E.Rsqrt] = _unary_fn(lambda t, x, kw: t.emit("Reciprocal", [t.emit("Sqrt", [x.name])]))
_CONVERTERS[E.Square] = _unary_fn(lambda t, x, kw: t.emit("Mul", [x.name, x.name]))
_CONVERTERS[E.Trunc] = _unary_fn(
    lambda t, x, kw: t.emit(
        "Where",
        [
            t.emit("Less", [x.name, _c(t, x, 0)]),
            t.emit("Ceil", [x.name]),
            t.emit("Floor", [x.name]),
        ],
    )
)
_CONVERTERS[A.LeakyRelu] = _unary_fn(
    lambda t, x, kw: t.emit("LeakyRelu", [x.name], alpha=float(kw["negative_slope"]))
)
_CONVERTERS[A.Elu] = _unary_fn(lambda t, x, kw: t.emit("Elu", [x.name], alpha=float(kw["alpha"])))
_CONVERTERS[A.Silu] = _unary_fn(
    lambda t, x, kw: t.emit("Mul", [x.name, t.emit("Sigmoid", [x.name])])
)
_CONVERTERS[A.Step] = _unary_fn(
    lambda t, x, kw: t.cast(t.emit("Greater", [x.name, _c(t, x, 0)]), x.dtype)
)
_CONVERTERS[A.Hardtanh] = _unary_fn(
    lambda t, x, kw: t.emit("Clip", [x.name, _c(t, x, kw["min_val"]), _c(t, x, kw["max_val"])])
)


@_conv(E.Round)
def _round(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d = kw.get("decimals", 0) or 0
    if not d:
        return _same(t.emit("Round", [x.name]), x)
    s = _c(t, x, 10.0**d)
    return _same(t.emit("Div", [t.emit("Round", [t.emit("Mul", [x.name, s])]), s]), x)


@_conv(A.Gelu)
def _gelu(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    if kw.get("approximate") == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = t.emit("Mul", [t.emit("Mul", [x.name, x.name]), x.name])
        inner = t.emit("Add", [x.name, t.emit("Mul", [x3, _c(t, x, A._GELU_KAPPA)])])
        th = t.emit("Tanh", [t.emit("Mul", [inner, _c(t, x, A._GELU_BETA)])])
        y = t.emit(
            "Mul", [t.emit("Mul", [x.name, _c(t, x, 0.5)]), t.emit("Add", [th, _c(t, x, 1)])]
        )
    else:  # x * 0.5 (1 + erf(x / sqrt 2))
        erf = t.emit("Erf", [t.emit("Mul", [x.name, _c(t, x, A._SQRT1_2)])])
        cdf = t.emit("Mul", [t.emit("Add", [erf, _c(t, x, 1)]), _c(t, x, 0.5)])
        y = t.emit("Mul", [x.name, cdf])
    return _same(y, x)


@_conv(A.Softplus)
def _softplus(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    beta, thr = float(kw["beta"]), float(kw["threshold"])
    xb = x.name if beta == 1 else t.emit("Mul", [x.name, _c(t, x, beta)])
    soft = t.emit("Softplus", [xb])
    if beta != 1:
        soft = t.emit("Div", [soft, _c(t, x, beta)])
    y = t.emit("Where", [t.emit("Greater", [xb, _c(t, x, thr)]), x.name, soft])
    return _same(y, x)


@_conv(E.Clamp)
def _clamp(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    lo, hi = kw.get("min"), kw.get("max")
    ins = [x.name, _c(t, x, lo) if lo is not None else "", _c(t, x, hi) if hi is not None else ""]
    while ins[-1] == "":
        ins.pop()
    return _same(t.emit("Clip", ins), x)


@_conv(E.Cast, E.NonDiffCast)
def _cast(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    return _same(t.cast(x.name, kw["dtype"]), x)


_BINARY = {E.Add: "Add", E.Sub: "Sub", E.Mul: "Mul", E.Div: "Div", E.Pow: "Pow",
           E.Maximum: "Max", E.Minimum: "Min"}  # fmt: skip


def _pair(t: _Tracer, args: tuple, out_ndim: int) -> tuple:
    dt = _operand_dtype(args, np.float32)
    return tuple(t.align([t.v(args[0], dt), t.v(args[1], dt)], out_ndim))


def _make_binary(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        a, b = _pair(t, args, outs[0].ndim)
        return [(t.emit(onnx_op, [a.name, b.name]), *_bcast([a, b], outs[0].ndim))]

    return conv


for _op, _name in _BINARY.items():
    _CONVERTERS[_op] = _make_binary(_name)


@_conv(E.Remainder)
def _remainder(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = _pair(t, args, outs[0].ndim)
    if a.dtype.kind == "f":  # Python's a % b (sign of b): a - floor(a / b) * b
        fl = t.emit("Floor", [t.emit("Div", [a.name, b.name])])
        y = t.emit("Sub", [a.name, t.emit("Mul", [fl, b.name])])
    else:
        y = t.emit("Mod", [a.name, b.name], fmod=0)
    return [(y, *_bcast([a, b], outs[0].ndim))]


@_conv(E.FloorDivide)
def _floor_divide(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = _pair(t, args, outs[0].ndim)
    if a.dtype.kind == "f":
        y = t.emit("Floor", [t.emit("Div", [a.name, b.name])])
    else:  # exact: (a - a mod b) / b, with Python's mod
        y = t.emit(
            "Div", [t.emit("Sub", [a.name, t.emit("Mod", [a.name, b.name], fmod=0)]), b.name]
        )
    return [(y, *_bcast([a, b], outs[0].ndim))]


_COMPARE = {np.equal: "Equal", np.less: "Less", np.less_equal: "LessOrEqual",
            np.greater: "Greater", np.greater_equal: "GreaterOrEqual"}  # fmt: skip
_LOGICAL = {np.logical_and: "And", np.logical_or: "Or", np.logical_xor: "Xor",
            np.bitwise_and: "And", np.bitwise_or: "Or", np.bitwise_xor: "Xor"}  # fmt: skip
_BITWISE = {np.bitwise_and: "BitwiseAnd", np.bitwise_or: "BitwiseOr", np.bitwise_xor: "BitwiseXor"}


@_conv(E.Compare)
def _compare(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    fn = kw["fn"]
    a, b = _pair(t, args, outs[0].ndim)
    ins = [a.name, b.name]
    if fn in _COMPARE:
        y = t.emit(_COMPARE[fn], ins)
    elif fn is np.not_equal:
        y = t.emit("Not", [t.emit("Equal", ins)])
    elif fn in _BITWISE and a.dtype.kind in "iu":
        if t.opset < 18:
            raise t.error(f"`{fn.__name__}` on integers needs opset 18 or later")
        y = t.emit(_BITWISE[fn], ins)
    elif fn in _LOGICAL:
        ins = [n if v.dtype == bool else t.cast(n, bool) for n, v in zip(ins, (a, b))]
        y = t.emit(_LOGICAL[fn], ins)
    else:
        raise t.error(f"comparison `{getattr(fn, '__name__', fn)}` has no ONNX converter")
    return [(y, *_bcast([a, b], outs[0].ndim))]


@_conv(E.Predicate)
def _predicate(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    fn = kw["fn"]
    x = t.v(args[0])
    if fn is np.isnan:
        y = t.emit("IsNaN", [x.name])
    elif fn is np.isinf:
        y = t.emit("IsInf", [x.name])
    elif fn is np.isfinite:
        y = t.emit("Not", [t.emit("Or", [t.emit("IsNaN", [x.name]), t.emit("IsInf", [x.name])])])
    elif fn is np.logical_not or (fn is np.invert and x.dtype == bool):
        y = t.emit("Not", [x.name if x.dtype == bool else t.cast(x.name, bool)])
    elif fn is np.invert and t.opset >= 18:
        y = t.emit("BitwiseNot", [x.name])
    else:
        raise t.error(f"`{getattr(fn, '__name__', fn)}` has no ONNX converter")
    return _same(y, x)


@_conv(E.Where)
def _where(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    dt = outs[0].data.dtype
    c, a, b = t.align([t.v(args[0]), t.v(args[1], dt), t.v(args[2], dt)], outs[0].ndim)
    cn = c.name if c.dtype == bool else t.cast(c.name, bool)
    return [(t.emit("Where", [cn, a.name, b.name]), *_bcast([c, a, b], outs[0].ndim))]


# ------------------------------------------------------------------ products, softmax


@_conv(LI.Linear)
def _linear(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    if x.bax is not None and x.bax == x.ndim - 1:
        raise t.error("linear over the batch dim")
    if x.ndim == 2:
        y = t.emit("Gemm", [x.name, w.name] + ([b.name] if b else []), transB=1)
    else:
        y = t.emit("MatMul", [x.name, t.transposed(w)])
        if b is not None:
            y = t.emit("Add", [y, b.name])
    return _same(y, x)


def _matmul_bax(a: _Value, b: _Value, out_ndim: int) -> tuple:
    na, nb = a.ndim, b.ndim
    if a.bax is not None:
        if na == 1 or a.bax == na - 1:
            return None, 1  # contracted away
        if a.bax == na - 2:
            return (out_ndim - 2 if nb >= 2 else out_ndim - 1), a.bf
        return a.bax + out_ndim - na + (1 if nb == 1 else 0), a.bf
    if b.bax is not None:
        if nb == 1 or b.bax == nb - 2:
            return None, 1
        if b.bax == nb - 1:
            return out_ndim - 1, b.bf
        return b.bax + out_ndim - nb + (1 if na == 1 else 0), b.bf
    return None, 1


@_conv(LA.Matmul)
def _matmul(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    a, b = t.v(args[0]), t.v(args[1])
    return [(t.emit("MatMul", [a.name, b.name]), *_matmul_bax(a, b, outs[0].ndim))]


@_conv(LA.Einsum)
def _einsum(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    vals = [t.v(a) for a in args]
    ins, out = kw["ins"], kw["out"]
    eq = ",".join(ins) + "->" + out
    bax, bf = None, 1
    for v, sub in zip(vals, ins):
        if v.bax is not None:
            c = sub[v.bax]
            bax, bf = (out.index(c), v.bf) if c in out else (None, 1)
            break
    return [(t.emit("Einsum", [v.name for v in vals], equation=eq), bax, bf)]


def _make_softmax(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        return _same(t.emit(onnx_op, [x.name], axis=int(kw["dim"])), x)

    return conv


_CONVERTERS[N.Softmax] = _make_softmax("Softmax")
_CONVERTERS[N.LogSoftmax] = _make_softmax("LogSoftmax")


# ------------------------------------------------------------------ reductions


def _reduced_bax(v: _Value, axes: Sequence[int], keepdim: bool) -> tuple:
    if v.bax is None or v.bax in axes:
        return None, 1
    if keepdim:
        return v.bax, v.bf
    return v.bax - sum(1 for a in axes if a < v.bax), v.bf


def _make_reduce(onnx_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        name = x.name
        dt = kw.get("dtype")
        if dt is not None and np.dtype(dt) != x.dtype:
            name = t.cast(name, dt)
        axes = R.reduce_dims(kw.get("dim"), x.ndim)
        keep = bool(kw.get("keepdim", False))
        if not axes:
            return _same(t.emit("Identity", [name]), x)
        return [(t.reduce(onnx_op, name, axes, keep), *_reduced_bax(x, axes, keep))]

    return conv


for _op, _name in (
    (R.Sum, "ReduceSum"),
    (R.Mean, "ReduceMean"),
    (R.Prod, "ReduceProd"),
    (R.Amax, "ReduceMax"),
    (R.Amin, "ReduceMin"),
    (R.LogSumExp, "ReduceLogSumExp"),
):
    _CONVERTERS[_op] = _make_reduce(_name)


@_conv(R.MaxDim)
def _max_dim(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    axes = R.norm_dims(kw["dim"], x.ndim)
    if not axes:
        return _same(t.emit("Identity", [x.name]), x)
    keep = bool(kw["keepdim"])
    op = "ReduceMax" if kw["largest"] else "ReduceMin"
    return [(t.reduce(op, x.name, axes, keep), *_reduced_bax(x, axes, keep))]


@_conv(R.Norm)
def _norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    p = float(kw["p"])
    axes = R.reduce_dims(kw.get("dim"), x.ndim)
    keep = bool(kw.get("keepdim", False))
    if not axes:
        axes = ()
    ab = t.emit("Abs", [x.name])
    if p == 2:
        y = t.reduce("ReduceL2", x.name, axes, keep)
    elif p == 1:
        y = t.reduce("ReduceL1", x.name, axes, keep)
    elif p == math.inf:
        y = t.reduce("ReduceMax", ab, axes, keep)
    elif p == -math.inf:
        y = t.reduce("ReduceMin", ab, axes, keep)
    elif p == 0:
        nz = t.cast(t.emit("Not", [t.emit("Equal", [x.name, _c(t, x, 0)])]), x.dtype)
        y = t.reduce("ReduceSum", nz, axes, keep)
    else:
        s = t.reduce("ReduceSum", t.emit("Pow", [ab, _c(t, x, p)]), axes, keep)
        y = t.emit("Pow", [s, _c(t, x, 1.0 / p)])
    return [(y, *_reduced_bax(x, axes, keep))]


@_conv(R.Cumsum)
def _cumsum(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    if x.ndim == 0:
        return _same(t.emit("Identity", [x.name]), x)
    (d,) = R.norm_dims(kw["dim"], x.ndim)
    return _same(t.emit("CumSum", [x.name, t.i64(d)]), x)


def _make_arg(op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        dim, keep = kw.get("dim"), bool(kw.get("keepdim", False))
        if x.ndim == 0:
            raise t.error(f"{op.lower()} of a 0-d tensor")
        if dim is None:  # over the flattened tensor
            y = t.emit(op, [t.emit("Reshape", [x.name, t.i64([-1])])], axis=0, keepdims=0)
            if keep:
                y = t.emit("Reshape", [y, t.i64([1] * x.ndim)])
            return [(y, None, 1)]
        (d,) = R.norm_dims(dim, x.ndim)
        return [(t.emit(op, [x.name], axis=d, keepdims=int(keep)), *_reduced_bax(x, (d,), keep))]

    return conv


def _make_all_any(reduce_op: str) -> Callable:
    def conv(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
        x = t.v(args[0])
        axes = R.norm_dims(kw.get("dim"), x.ndim)
        keep = bool(kw.get("keepdim", False))
        xi = t.cast(x.name if x.dtype == bool else t.cast(x.name, bool), np.int32)
        if not axes:
            return _same(t.cast(xi, bool), x)
        y = t.reduce(reduce_op, xi, axes, keep)
        return [(t.cast(y, bool), *_reduced_bax(x, axes, keep))]

    return conv


_CONVERTERS[R.ArgMax] = _make_arg("ArgMax")
_CONVERTERS[R.ArgMin] = _make_arg("ArgMin")
_CONVERTERS[R.AllOf] = _make_all_any("ReduceMin")
_CONVERTERS[R.AnyOf] = _make_all_any("ReduceMax")


# ------------------------------------------------------------------ movement


def _prod(xs: Sequence[int]) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


@_conv(M.Reshape)
def _reshape(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    shape = list(outs[0].shape)
    if x.bax is None:
        return [(t.emit("Reshape", [x.name, t.i64(shape)]), None, 1)]
    k, B = x.bax, t.batch
    P = _prod(x.shape[:k])
    cands = [
        j for j in range(len(shape)) if _prod(shape[:j]) == P and shape[j] and shape[j] % B == 0
    ]
    if not cands:
        raise t.error(
            f"reshape {tuple(x.shape)} -> {tuple(shape)} merges the batch dim (dim {k}) with the "
            "dims before it, which a dynamic batch cannot follow (pass dynamic_batch=False)"
        )
    j = next((j for j in cands if shape[j] == x.shape[k]), cands[0])
    target = list(shape)
    target[j] = -1
    return [(t.emit("Reshape", [x.name, t.i64(target)]), j, shape[j] // B)]


@_conv(M.Permute)
def _permute(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    dims = [int(d) for d in kw["dims"]]
    bax = dims.index(x.bax) if x.bax is not None else None
    return [(t.emit("Transpose", [x.name], perm=dims), bax, x.bf)]


@_conv(M.Expand)
def _expand(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    shape = list(kw["shape"])
    bax = None
    if x.bax is not None:
        bax = x.bax + len(shape) - x.ndim
        shape[bax] = 1  # broadcasting keeps the input's (batch) size
    return [(t.emit("Expand", [x.name, t.i64(shape)]), bax, x.bf)]


def _static_slice(s: slice) -> bool:
    """Whether x[s] along a dim has a length that does not depend on that dim's size."""
    if s.step not in (None, 1):
        return False
    start = s.start or 0
    if start >= 0:
        return s.stop is not None and s.stop >= 0
    return s.stop is None or s.stop < 0


@_conv(M.GetItem, M.GetItemView)
def _getitem(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    idx = kw["index"]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    consumed = 0
    for i in items:
        if isinstance(i, np.ndarray) and i.dtype == bool:
            raise t.error("indexing with a boolean mask (its result size depends on the data)")
        if i is not None and i is not Ellipsis:
            consumed += 1
    rest = [slice(None)] * (x.ndim - consumed)
    ell = [n for n, i in enumerate(items) if i is Ellipsis]
    items = items[: ell[0]] + rest + items[ell[0] + 1 :] if ell else items + rest
    arrays = [n for n, i in enumerate(items) if isinstance(i, np.ndarray)]
    if arrays:
        return _advanced_index(t, x, items, arrays)
    name = x.name
    sl: dict[str, list] = {"starts": [], "ends": [], "axes": [], "steps": []}
    ints, nones = [], []
    ax = pos = 0
    bax = None
    for it in items:
        if it is None:
            nones.append(pos)
            pos += 1
            continue
        if isinstance(it, (int, np.integer)):
            ints.append((ax, int(it)))
            ax += 1
            continue
        full = it.start in (None, 0) and it.stop is None and it.step in (None, 1)
        if ax == x.bax:
            if full:
                bax = pos
            elif not _static_slice(it):
                raise t.error(
                    f"slicing the batch dim with [{it.start}:{it.stop}:{it.step}] gives a size "
                    "that depends on the batch (pass dynamic_batch=False)"
                )
        if not full:
            step = 1 if it.step is None else int(it.step)
            start = it.start if it.start is not None else (0 if step > 0 else _I64_MAX)
            stop = it.stop if it.stop is not None else (_I64_MAX if step > 0 else _I64_MIN)
            for k, val in zip(("starts", "ends", "axes", "steps"), (start, stop, ax, step)):
                sl[k].append(int(val))
        ax += 1
        pos += 1
    if sl["axes"]:
        name = t.emit("Slice", [name] + [t.i64(sl[k]) for k in ("starts", "ends", "axes", "steps")])
    for a, i in sorted(ints, reverse=True):
        name = t.emit("Gather", [name, t.i64(i)], axis=a)
    if nones:
        name = t.emit("Unsqueeze", [name, t.i64(nones)])
    if name == x.name:
        name = t.emit("Identity", [name])
    return [(name, bax, x.bf if bax is not None else 1)]


def _advanced_index(t: _Tracer, x: _Value, items: list, arrays: list) -> list:
    if len(arrays) > 1 or any(
        not (isinstance(i, slice) and i == slice(None))
        for n, i in enumerate(items)
        if n != arrays[0]
    ):
        raise t.error(
            "indexing with an index array combined with other indices (only x[..., idx, ...] with full slices elsewhere converts)"
        )
    a = arrays[0]
    iv = t.v(items[a])
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    y = t.emit("Gather", [x.name, idx], axis=a)
    if x.bax == a:
        bax, bf = (iv.bax + a, iv.bf) if iv.bax is not None else (None, 1)
    elif x.bax is not None:
        bax, bf = (x.bax + iv.ndim - 1 if x.bax > a else x.bax), x.bf
    else:
        bax, bf = (iv.bax + a, iv.bf) if iv.bax is not None else (None, 1)
    return [(y, bax, bf)]


@_conv(M.Gather)
def _gather(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d, index = kw["dim"], kw["index"]
    iv = t.v(index)
    if x.ndim == 0:
        raise t.error("gather from a 0-d tensor")
    if iv.suspect and x.bax == 0 and x.bf == 1 and d != 0:
        iv = t.follow_batch(iv, x)
    name = x.name
    small = [i for i in range(x.ndim) if i != d and iv.shape[i] < x.shape[i]]
    if small:
        if x.bax in small:
            raise t.error("gather with an index smaller than the input along the batch dim")
        name = t.emit(
            "Slice",
            [name, t.i64([0] * len(small)), t.i64([iv.shape[i] for i in small]), t.i64(small)],
        )
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    y = t.emit("GatherElements", [name, idx], axis=d)
    if iv.bax is not None:
        return [(y, iv.bax, iv.bf)]
    return [(y, None, 1)]


@_conv(M.Cat)
def _cat(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    vals = t.align([t.v(a) for a in args], outs[0].ndim, expand=True)
    d = int(kw["dim"])
    bax, bf = _bcast(vals, outs[0].ndim)
    if bax == d:
        raise t.error("cat along the batch dim (its size would not follow the batch)")
    return [(t.emit("Concat", [v.name for v in vals], axis=d), bax, bf)]


@_conv(M.Split)
def _split(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    d, sizes = int(kw["dim"]), [int(s) for s in kw["sizes"]]
    if x.bax == d:
        raise t.error("split along the batch dim")
    ys = t.emit("Split", [x.name, t.i64(sizes)], n_out=len(sizes), axis=d)
    return [(y, x.bax, x.bf) for y in ys]


@_conv(M.Flip)
def _flip(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    dims = list(kw["dims"])
    if not dims:
        return _same(t.emit("Identity", [x.name]), x)
    n = len(dims)
    y = t.emit(
        "Slice", [x.name, t.i64([-1] * n), t.i64([_I64_MIN] * n), t.i64(dims), t.i64([-1] * n)]
    )
    return _same(y, x)


@_conv(M.Tril)
def _tril(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    y = t.emit("Trilu", [x.name, t.i64(int(kw["diagonal"]))], upper=int(bool(kw["upper"])))
    return _same(y, x)


@_conv(M.Repeat)
def _repeat(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    reps = [int(r) for r in kw["reps"]]
    extra = len(reps) - x.ndim
    name = x.name
    if extra:
        name = t.emit("Unsqueeze", [name, t.i64(list(range(extra)))])
    bax = x.bax + extra if x.bax is not None else None
    bf = x.bf * reps[bax] if bax is not None else 1
    return [(t.emit("Tile", [name, t.i64(reps)]), bax, bf)]


@_conv(M.Pad)
def _pad(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    pads = [tuple(int(p) for p in lh) for lh in kw["pads"]]
    if x.bax is not None and pads[x.bax] != (0, 0):
        raise t.error("padding the batch dim")
    flat = [lo for lo, _ in pads] + [hi for _, hi in pads]
    y = t.emit("Pad", [x.name, t.i64(flat), _c(t, x, kw.get("value", 0.0) or 0)], mode="constant")
    return _same(y, x)


# ------------------------------------------------------------------ convolution, pooling


def _need_batch0(t: _Tracer, x: _Value, what: str) -> None:
    if x.bax is not None and (x.bax != 0 or x.bf != 1):
        raise t.error(f"{what} on an input whose dim {x.bax} (not 0) holds the batch")


def _geom(x: _Value, seq: Sequence) -> list:
    """The last ``nd`` entries of a 2-d geometry (1-d ops are computed as 2-d with H = 1)."""
    return list(seq)[2 - (x.ndim - 2) :]


@_conv(C.Conv)
def _conv_op(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    _need_batch0(t, x, "conv")
    stride, pads, dil, groups = kw["geom"]
    pads = _geom(x, pads)
    y = t.emit(
        "Conv",
        [x.name, w.name] + ([b.name] if b else []),
        kernel_shape=list(w.shape[2:]),
        strides=_geom(x, stride),
        dilations=_geom(x, dil),
        pads=[lo for lo, _ in pads] + [hi for _, hi in pads],
        group=int(groups),
    )
    return _same(y, x)


@_conv(C.ConvT)
def _conv_t(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x, w = t.v(args[0]), t.v(args[1])
    b = t.v(args[2]) if args[2] is not None else None
    _need_batch0(t, x, "conv_transpose")
    stride, pads, dil, groups = kw["geom"]
    stride, pads, dil = _geom(x, stride), _geom(x, pads), _geom(x, dil)
    ksize, isize = list(w.shape[2:]), list(kw["isize"])
    base = [
        (i - 1) * s - 2 * p[0] + d * (k - 1) + 1
        for i, s, p, d, k in zip(x.shape[2:], stride, pads, dil, ksize)
    ]
    y = t.emit(
        "ConvTranspose",
        [x.name, w.name] + ([b.name] if b else []),
        kernel_shape=ksize,
        strides=stride,
        dilations=dil,
        group=int(groups),
        pads=[lo for lo, _ in pads] + [hi for _, hi in pads],
        output_padding=[o - bb for o, bb in zip(isize, base)],
    )
    return _same(y, x)


def _pool_pads(x: _Value, ksize: list, stride: list, pads: list, dil: list, osize: list) -> list:
    """Explicit pads giving exactly ``osize`` windows with floor rounding (the right side only
    as far as the last window reaches, so no window ends in padding it should not count)."""
    lo = [p[0] for p in pads]
    hi = [
        max(0, (o - 1) * s + d * (k - 1) + 1 - n - lo_)
        for o, s, d, k, n, lo_ in zip(osize, stride, dil, ksize, x.shape[2:], lo)
    ]
    return lo + hi


@_conv(C.MaxPool)
def _max_pool(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "max_pool")
    if kw.get("return_indices"):
        raise t.error(
            "max pooling with return_indices=True (the indices have no ONNX equivalent here)"
        )
    ksize, stride, pads, dil, osize = (
        _geom(x, kw[k]) for k in ("ksize", "stride", "pads", "dil", "osize")
    )
    y = t.emit(
        "MaxPool",
        [x.name],
        kernel_shape=ksize,
        strides=stride,
        dilations=dil,
        pads=_pool_pads(x, ksize, stride, pads, dil, osize),
    )
    return _same(y, x)


@_conv(C.AvgPool)
def _avg_pool(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "avg_pool")
    ksize2, stride2, pads2, osize2, include_pad, divisor = args[1:7]
    ksize, stride, pads, osize = (_geom(x, v) for v in (ksize2, stride2, pads2, osize2))
    dil = [1] * len(ksize)
    # a window sum (an average over the full window, padding counted) times PyTorch's divisors
    y = t.emit(
        "AveragePool",
        [x.name],
        kernel_shape=ksize,
        strides=stride,
        count_include_pad=1,
        pads=_pool_pads(x, ksize, stride, pads, dil, osize),
    )
    scale = C._avg_scale(x.shape, ksize2, stride2, pads2, osize2, include_pad, divisor, x.dtype)
    factor = (np.asarray(scale, np.float64) * _prod(ksize)).astype(x.dtype)
    if factor.ndim:
        factor = factor.reshape(osize)
    if not np.all(factor == 1):
        y = t.emit("Mul", [y, t.const(factor, "avg_pool_scale")])
    return _same(y, x)


# ------------------------------------------------------------------ normalisation


def _ones_or(t: _Tracer, v: Any, shape: tuple, dtype: np.dtype, fill: float) -> str:
    return t.v(v).name if v is not None else t.const(np.full(shape, fill, dtype))


@_conv(NO.BatchNorm)
def _batch_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "batch_norm")
    C_ = x.shape[1]
    eps = float(kw.get("eps", 1e-5))
    w = _ones_or(t, args[1], (C_,), x.dtype, 1.0)
    b = _ones_or(t, args[2], (C_,), x.dtype, 0.0)
    if not kw.get("training", True):
        mean = t.const(np.asarray(kw["running_mean"], x.dtype), "running_mean")
        var = t.const(np.asarray(kw["running_var"], x.dtype), "running_var")
        return _same(t.emit("BatchNormalization", [x.name, w, b, mean, var], epsilon=eps), x)
    # batch statistics (track_running_stats=False): normalise over N and the positions
    axes = [0] + list(range(2, x.ndim))
    pshape = t.i64([C_] + [1] * (x.ndim - 2))
    mean = t.reduce("ReduceMean", x.name, axes, True)
    d = t.emit("Sub", [x.name, mean])
    var = t.reduce("ReduceMean", t.emit("Mul", [d, d]), axes, True)
    rstd = t.emit("Reciprocal", [t.emit("Sqrt", [t.emit("Add", [var, _c(t, x, eps)])])])
    y = t.emit("Mul", [d, rstd])
    y = t.emit("Mul", [y, t.emit("Reshape", [w, pshape])])
    y = t.emit("Add", [y, t.emit("Reshape", [b, pshape])])
    return _same(y, x)


@_conv(NO.LayerNorm)
def _layer_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    k = int(kw["k"])
    if x.bax is not None and x.bax >= x.ndim - k:
        raise t.error("layer_norm over the batch dim")
    shape = tuple(x.shape[x.ndim - k :])
    ins = [x.name, _ones_or(t, args[1], shape, x.dtype, 1.0)]
    if args[2] is not None:
        ins.append(t.v(args[2]).name)
    return _same(t.emit("LayerNormalization", ins, axis=-k, epsilon=float(kw["eps"])), x)


@_conv(NO.GroupNorm)
def _group_norm(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    x = t.v(args[0])
    _need_batch0(t, x, "group_norm")
    G, C_ = int(kw["num_groups"]), x.shape[1]
    # as (N, G, rest): InstanceNormalization normalises each (sample, group) over its last dim
    xr = t.emit("Reshape", [x.name, t.i64([0, G, -1])])
    xn = t.emit(
        "InstanceNormalization",
        [xr, t.const(np.ones(G, x.dtype)), t.const(np.zeros(G, x.dtype))],
        epsilon=float(kw["eps"]),
    )
    y = t.emit("Reshape", [xn, t.emit("Shape", [x.name])])
    pshape = t.i64([C_] + [1] * (x.ndim - 2))
    if args[1] is not None:
        y = t.emit("Mul", [y, t.emit("Reshape", [t.v(args[1]).name, pshape])])
    if args[2] is not None:
        y = t.emit("Add", [y, t.emit("Reshape", [t.v(args[2]).name, pshape])])
    return _same(y, x)


# ------------------------------------------------------------------ embedding, recurrent cells


@_conv(EMB.EmbeddingLookup)
def _embedding_op(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    w = t.v(args[0])
    index = kw["index"]
    # F.embedding copies its indices: find the traced value they came from
    hits = [
        v
        for v in list(t.values.values())[::-1]
        if v.error is None
        and v.shape == index.shape
        and v.dtype.kind in "iu"
        and v.const is None
        and np.array_equal(v.ref.data, index)
    ]
    if len({v.name for v in hits}) > 1:
        raise t.error("embedding: the indices match several traced tensors; use nn.Embedding")
    iv = hits[0] if hits else t.v(index)
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    return [(t.emit("Gather", [w.name, idx], axis=0), iv.bax, iv.bf)]


def _affine(t: _Tracer, h: str, w: _Value, b: Any) -> str:
    y = t.emit("MatMul", [h, t.transposed(w)])
    return t.emit("Add", [y, t.v(b).name]) if b is not None else y


@_conv(RN.RNNCellOp)
def _rnn_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h = t.align([t.v(args[0]), t.v(args[1])], outs[0].ndim)
    w = t.v(args[2])
    a = t.emit("Add", [xg.name, _affine(t, h.name, w, args[3])])
    y = t.emit("Relu" if kw["nonlinearity"] == "relu" else "Tanh", [a])
    return [(y, *_bcast([xg, h], outs[0].ndim))]


@_conv(RN.GRUCellOp)
def _gru_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h = t.align([t.v(args[0]), t.v(args[1])], outs[0].ndim)
    w = t.v(args[2])
    H = h.shape[-1]
    xr, xz, xn = t.emit("Split", [xg.name, t.i64([H] * 3)], n_out=3, axis=-1)
    hr, hz, hn = t.emit("Split", [_affine(t, h.name, w, args[3]), t.i64([H] * 3)], n_out=3, axis=-1)
    r = t.emit("Sigmoid", [t.emit("Add", [xr, hr])])
    z = t.emit("Sigmoid", [t.emit("Add", [xz, hz])])
    n = t.emit("Tanh", [t.emit("Add", [xn, t.emit("Mul", [r, hn])])])
    y = t.emit("Add", [t.emit("Mul", [t.emit("Sub", [h.name, n]), z]), n])
    return [(y, *_bcast([xg, h], outs[0].ndim))]


@_conv(RN.LSTMCellOp)
def _lstm_cell(t: _Tracer, args: tuple, kw: dict, outs: list) -> list:
    xg, h, c = t.align([t.v(args[0]), t.v(args[1]), t.v(args[2])], outs[0].ndim)
    w = t.v(args[3])
    H = h.shape[-1]
    a = t.emit("Add", [xg.name, _affine(t, h.name, w, args[4])])
    i, f, g, o = t.emit("Split", [a, t.i64([H] * 4)], n_out=4, axis=-1)
    i, f, o = (t.emit("Sigmoid", [v]) for v in (i, f, o))
    c2 = t.emit("Add", [t.emit("Mul", [f, c.name]), t.emit("Mul", [i, t.emit("Tanh", [g])])])
    h2 = t.emit("Mul", [o, t.emit("Tanh", [c2])])
    bax = _bcast([xg, h, c], outs[0].ndim)
    return [(h2, *bax), (c2, *bax)]


# ----------------------------------------------------------------------------- layer converters


def _module_converter(m: Module) -> Callable | None:
    from .nn.layers.attention import MultiheadAttention  # noqa: PLC0415
    from .nn.layers.embedding import Embedding  # noqa: PLC0415
    from .nn.layers.recurrent import GRU, LSTM, RNN  # noqa: PLC0415

    for cls, fn in (
        (RNN, _rnn_layer),
        (GRU, _rnn_layer),
        (LSTM, _rnn_layer),
        (MultiheadAttention, _mha_layer),
        (Embedding, _embedding_layer),
    ):
        if isinstance(m, cls) and type(m).forward is cls.forward:
            return fn
    return None


def _embedding_layer(t: _Tracer, m: Module, a: dict, out: Tensor) -> None:
    if m.max_norm is not None:
        raise t.error("Embedding with max_norm (it renormalises the looked-up rows in place)")
    iv = t.v(a["input"])
    idx = iv.name if iv.dtype == np.int64 else t.cast(iv.name, np.int64)
    t.bind(out, t.emit("Gather", [t.v(m.weight).name, idx], axis=0), iv.bax, iv.bf)


# PyTorch's gate order -> ONNX's: GRU (r, z, n) -> (z, r, h); LSTM (i, f, g, o) -> (i, o, f, c)
_GATE_ORDER = {"GRU": (1, 0, 2), "LSTM": (0, 3, 1, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}


def _rnn_layer(t: _Tracer, m: Module, a: dict, out: tuple) -> None:
    x = t.v(a["input"])
    hx = a.get("hx")
    mode, H, L = m.mode, m.hidden_size, m.num_layers
    if x.dtype != np.float32:
        warnings.warn(
            f"chainrule.onnx.export: {type(m).__name__} in {x.dtype}: the ONNX op allows it, but "
            "onnxruntime runs RNN/GRU/LSTM in float32 only (export a .float() model for it)",
            stacklevel=2,
        )
    D = 2 if m.bidirectional else 1
    batched = x.ndim == 3
    n_axis = 0 if m.batch_first else 1  # where N is in a batched input
    X = x.name
    if not batched:
        X = t.emit("Unsqueeze", [X, t.i64([1])])
    elif m.batch_first:
        X = t.emit("Transpose", [X], perm=[1, 0, 2])
    lstm = mode == "LSTM"
    states: list = []
    if hx is not None:
        for s in hx if isinstance(hx, tuple) else (hx,):
            sn = t.v(s).name
            states.append(sn if batched else t.emit("Unsqueeze", [sn, t.i64([1])]))
    order = _GATE_ORDER[mode]

    def gates(w: np.ndarray) -> np.ndarray:
        return np.concatenate([w[i * H : (i + 1) * H] for i in order], 0)

    finals: list[list] = [[], []]
    for layer in range(L):
        Ws, Rs, Bs = [], [], []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = m._weights(layer, d)
            Ws.append(gates(w_ih.data))
            Rs.append(gates(w_hh.data))
            if m.bias:
                Bs.append(np.concatenate([gates(b_ih.data), gates(b_hh.data)]))
        pre = f"{t.stack[-1][0]}.l{layer}" if t.stack[-1][0] else f"l{layer}"
        ins = [
            X,
            t.const(np.stack(Ws), f"{pre}.W"),
            t.const(np.stack(Rs), f"{pre}.R"),
            t.const(np.stack(Bs), f"{pre}.B") if Bs else "",
            "",
        ]
        for s in states:
            ins.append(
                t.emit("Slice", [s, t.i64([layer * D]), t.i64([(layer + 1) * D]), t.i64([0])])
            )
        while ins[-1] == "":
            ins.pop()
        attrs: dict = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if mode == "GRU":
            attrs["linear_before_reset"] = 1
        elif not lstm:
            attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * D
        op = "LSTM" if lstm else ("GRU" if mode == "GRU" else "RNN")
        res = t.emit(op, ins, n_out=3 if lstm else 2, **attrs)
        Y = t.emit("Transpose", [res[0]], perm=[0, 2, 1, 3])  # (L, D, N, H) -> (L, N, D, H)
        X = t.emit("Reshape", [Y, t.i64([0, 0, -1])])
        for k, yh in enumerate(res[1:]):
            finals[k].append(yh)
    output = X
    hn = [t.emit("Concat", f, axis=0) if len(f) > 1 else f[0] for f in finals if f]
    if not batched:
        output = t.emit("Squeeze", [output, t.i64([1])])
        hn = [t.emit("Squeeze", [h, t.i64([1])]) for h in hn]
    elif m.batch_first:
        output = t.emit("Transpose", [output], perm=[1, 0, 2])
    t.bind(out[0], output, x.bax, x.bf)
    h_bax = 1 if batched and x.bax == n_axis else None
    finals_t = out[1] if lstm else (out[1],)
    for ft, h in zip(finals_t, hn):
        t.bind(ft, h, h_bax, x.bf if h_bax is not None else 1)


def _float_mask_value(t: _Tracer, mask: Any, dtype: np.dtype) -> tuple:
    """An attention mask as an additive float value (-inf where True means ignore), and its
    array when it is a constant."""
    if mask is None:
        return None, None
    mv = t.v(mask)
    if mv.const is not None:
        arr = mv.const
        if arr.dtype == bool:
            arr = np.where(arr, -np.inf, 0.0)
        arr = arr.astype(dtype)
        return t.const(arr, "attn_mask"), arr
    if mv.dtype == bool:
        ninf, zero = t.scalar(-np.inf, dtype), t.scalar(0.0, dtype)
        return t.emit("Where", [mv.name, ninf, zero]), None
    return (mv.name if mv.dtype == dtype else t.cast(mv.name, dtype)), None


def _mha_layer(t: _Tracer, m: Module, a: dict, out: tuple) -> None:
    from .nn.layers.attention import _causal_keep  # noqa: PLC0415

    if a.get("key_padding_mask") is not None:
        raise t.error("MultiheadAttention with key_padding_mask")
    if m.bias_k is not None or m.add_zero_attn:
        raise t.error("MultiheadAttention with add_bias_kv or add_zero_attn")
    q, k, v = t.v(a["query"]), t.v(a["key"]), t.v(a["value"])
    batched = q.ndim == 3
    dt = q.dtype
    E_, h, hd = m.embed_dim, m.num_heads, m.head_dim

    def nle(val: _Value) -> str:  # -> (N, L, E)
        if not batched:
            return t.emit("Unsqueeze", [val.name, t.i64([0])])
        return val.name if m.batch_first else t.emit("Transpose", [val.name], perm=[1, 0, 2])

    b = m.in_proj_bias.data if m.in_proj_bias is not None else None
    if m._qkv_same_embed_dim:
        W = m.in_proj_weight.data
        ws = [W[i * E_ : (i + 1) * E_] for i in range(3)]
    else:
        ws = [m.q_proj_weight.data, m.k_proj_weight.data, m.v_proj_weight.data]
    scope = t.stack[-1][0] or "attn"
    heads = []
    names: dict = {}
    for i, (val, tag) in enumerate(((q, "q"), (k, "k"), (v, "v"))):
        src = names.get(val.name) or nle(val)
        names[val.name] = src
        y = t.emit("MatMul", [src, t.const(np.ascontiguousarray(ws[i].T), f"{scope}.{tag}_proj_T")])
        if b is not None:
            y = t.emit("Add", [y, t.const(b[i * E_ : (i + 1) * E_], f"{scope}.{tag}_bias")])
        y = t.emit("Reshape", [y, t.i64([0, 0, h, hd])])
        heads.append(t.emit("Transpose", [y], perm=[0, 2, 3, 1] if tag == "k" else [0, 2, 1, 3]))
    Q, Kt, V = heads
    scores = t.emit("MatMul", [t.emit("Mul", [Q, t.scalar(math.sqrt(1.0 / hd), dt)]), Kt])
    need_weights = bool(a.get("need_weights", True))
    L, S = (
        q.shape[0 if not batched or not m.batch_first else 1],
        k.shape[0 if not batched or not m.batch_first else 1],
    )
    if a.get("is_causal") and not need_weights:
        mask, arr = _float_mask_value(t, np.where(_causal_keep(L, S), 0.0, -np.inf).astype(dt), dt)
    else:
        mask, arr = _float_mask_value(t, a.get("attn_mask"), dt)
    dead = None
    if mask is not None:
        if arr is not None and arr.ndim == 3:
            mask = t.emit("Reshape", [mask, t.i64([-1, h, arr.shape[1], arr.shape[2]])])
        if arr is not None and not need_weights:  # PyTorch's safe softmax: a row that may attend
            rows = np.isneginf(arr).all(-1, keepdims=True)  # nothing gives zeros, not NaN
            if rows.any():
                arr2 = np.where(np.broadcast_to(rows, arr.shape), 0.0, arr).astype(dt)
                mask = t.const(arr2, "attn_mask")
                if arr2.ndim == 3:
                    mask = t.emit("Reshape", [mask, t.i64([-1, h, arr.shape[1], arr.shape[2]])])
                keep = (~rows).astype(dt)
                dead = t.const(
                    keep.reshape((-1, h) + keep.shape[1:]) if keep.ndim == 3 else keep, "attn_keep"
                )
        scores = t.emit("Add", [scores, mask])
    w = t.emit("Softmax", [scores], axis=-1)
    if dead is not None:
        w = t.emit("Mul", [w, dead])
    o = t.emit("Transpose", [t.emit("MatMul", [w, V])], perm=[0, 2, 1, 3])  # (N, L, h, hd)
    o = t.emit("Reshape", [o, t.i64([0, 0, E_])])
    o = _affine(t, o, t.v(m.out_proj.weight), m.out_proj.bias)
    if not batched:
        o = t.emit("Squeeze", [o, t.i64([0])])
    elif not m.batch_first:
        o = t.emit("Transpose", [o], perm=[1, 0, 2])
    t.bind(out[0], o, q.bax, q.bf)
    if need_weights and out[1] is not None:
        if a.get("average_attn_weights", True):
            w = t.reduce("ReduceMean", w, [1], False)  # (N, L, S)
        if not batched:
            w = t.emit("Squeeze", [w, t.i64([0])])
        # where the query's batch (or length) dim landed: N -> 0, L -> the weights' L dim
        l_axis = 0 if not batched or not m.batch_first else 1
        wl = (1 if a.get("average_attn_weights", True) else 2) - (0 if batched else 1)
        if q.bax is None:
            wb = None
        elif q.bax == l_axis:
            wb = wl
        else:
            wb = 0
        t.bind(out[1], w, wb, q.bf if wb is not None else 1)
