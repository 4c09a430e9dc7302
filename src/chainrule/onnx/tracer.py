"""The tracer hooked into ``engine.apply`` during an export, the traced values it binds to
ONNX names, and the registry of op converters (``_CONVERTERS``) it dispatches to."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..autograd import engine
from ..nn.module import Module
from ..tensor import Tensor

MIN_OPSET = 17


class ExportError(RuntimeError):
    """A model (or a part of it) that cannot be expressed in ONNX; the message names the op and
    the layer."""


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
        from .layers import _module_converter  # noqa: PLC0415  (layers imports this module)

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


def _flatten(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return [y for x in out for y in _flatten(x)]
    if isinstance(out, dict):
        return [y for x in out.values() for y in _flatten(x)]
    return [out]
