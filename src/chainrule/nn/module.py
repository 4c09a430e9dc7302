"""``Module``: parameters and submodules discovered by attribute assignment, as in PyTorch.

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 4)        # a submodule: its parameters become "fc.weight", ...
        self.scale = nn.Parameter(cr.ones(1))

    def forward(self, x):
        return self.fc(x) * self.scale
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .. import backend, dtypes
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, check_device, wrap


class Parameter(Tensor):
    """A Tensor that is a module's learnable parameter (``requires_grad=True`` by default)."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            arr = np.empty((0,), dtypes.defaults.float.np)
        elif isinstance(data, Tensor):
            arr = data.data
        else:
            arr = data if backend.is_device_array(data) else np.asarray(data)
        self.data = arr
        self.grad = None
        self.grad_fn = None
        self._vc = data._vc if isinstance(data, Tensor) else [0]
        self._out_nr = 0
        self._hooks = None
        self._cut = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Buffer(Tensor):
    """Marks a tensor to register as a buffer when assigned to a module attribute
    (``persistent=False``: kept out of the state_dict)."""

    __slots__ = ("persistent",)

    def __init__(self, data: Any, persistent: bool = True) -> None:
        if isinstance(data, Tensor):
            arr = data.data
        else:
            arr = data if backend.is_device_array(data) else np.asarray(data)
        self.data, self.grad, self.grad_fn = arr, None, None
        self._vc, self._out_nr, self._hooks, self._cut = [0], 0, None, None
        self.requires_grad = False
        self.persistent = persistent


class _IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


class RemovableHandle:
    def __init__(self, store: dict, key: int) -> None:
        self._store, self._key = store, key

    def remove(self) -> None:
        self._store.pop(self._key, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_hook_ids = iter(range(1 << 62))


class Module:
    """Base class of every layer and model: override ``forward``; call the module to run it."""

    training: bool
    _version = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._forward_pre_hooks and not self._forward_hooks:
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            r = hook(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            r = hook(self, args, out)
            if r is not None:
                out = r
        return out

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() call: call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        params, bufs, mods = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            self._drop(name)
            params[name] = value
        elif isinstance(value, Module):
            self._drop(name)
            mods[name] = value
        elif isinstance(value, Buffer):
            self._drop(name)
            bufs[name] = wrap(value.data)
            if not value.persistent:
                d["_non_persistent_buffers_set"].add(name)
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                    "(chainrule.nn.Parameter or None expected)"
                )
            params[name] = None
        elif name in mods:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}'")
            mods[name] = None
        elif name in bufs:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}'")
            bufs[name] = value
        else:
            object.__setattr__(self, name, value)

    def _drop(self, name: str) -> None:
        d = self.__dict__
        d.pop(name, None)
        for k in ("_parameters", "_buffers", "_modules"):
            d[k].pop(name, None)
        d["_non_persistent_buffers_set"].discard(name)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            store = d.get(k)
            if store is not None and name in store:
                return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for k in ("_parameters", "_buffers", "_modules"):
            if name in d[k]:
                del d[k][name]
                d["_non_persistent_buffers_set"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list:
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}'")
        self._check_name(name)
        self._drop(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}'")
        self._check_name(name)
        self._drop(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_name(name)
        self._drop(name)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f'attribute name must be a non-empty string without ".", got {name!r}')

    def get_submodule(self, target: str) -> Module:
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule `{part}`")
            mod = mod._modules[part]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    # ------------------------------------------------------------------ traversal
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(
                memo, prefix + ("." if prefix else "") + name, remove_duplicate
            )

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(
        self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True
    ) -> Iterator:
        seen = set()
        mods = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for mprefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + name, v

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ state
    def state_dict(
        self, *args: Any, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict:
        """Every parameter and persistent buffer by dotted name (detached unless ``keep_vars``)."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(
                    destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars
                )
        return destination

    def load_state_dict(
        self, state_dict: dict, strict: bool = True, assign: bool = False
    ) -> _IncompatibleKeys:
        """Copy values into this module's parameters and buffers by name.

        With ``strict`` any missing key, unexpected key or shape mismatch is an error that lists
        them all; without it, keys are matched where they can be and the lists are returned.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = self._unexpected_keys(state_dict)
        mismatched = []
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                shape = tuple(v.shape) if hasattr(v, "shape") else np.shape(v)
                if shape != tuple(t.shape):
                    mismatched.append(
                        f"size mismatch for {k}: copying a param with shape {shape} from "
                        f"checkpoint, the shape in current model is {tuple(t.shape)}."
                    )
        problems = list(mismatched)
        if strict:
            if unexpected:
                problems.insert(
                    0,
                    "Unexpected key(s) in state_dict: "
                    + ", ".join(f'"{k}"' for k in unexpected)
                    + ".",
                )
            if missing:
                problems.insert(
                    0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + "."
                )
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(problems)
            )
        with no_grad():
            for k, t in own.items():
                if k not in state_dict:
                    continue
                v = state_dict[k]
                arr = v.data if isinstance(v, Tensor) else v
                if not backend.is_device_array(arr):
                    arr = np.asarray(arr)
                if assign:  # as torch: the loaded tensor's device, the module's dtype
                    t.data = backend.array_module(arr).array(arr, dtype=t.data.dtype)
                else:  # into the module's arrays, wherever they live (a copy across devices)
                    np.copyto(t.data, backend.to_device(arr, t.device), casting="unsafe")
                t._vc[0] += 1
        return _IncompatibleKeys(missing, unexpected)

    def _unexpected_keys(self, state_dict: dict) -> list:
        """PyTorch's rule and order: walking the modules, a key under a module's prefix is
        unexpected there if its next name is neither a child nor a parameter/persistent buffer."""
        out: list = []
        for prefix, m in self.named_modules(remove_duplicate=False):
            p = prefix + "." if prefix else ""
            local = {k for k, v in m._parameters.items() if v is not None}
            local |= {
                k
                for k, v in m._buffers.items()
                if v is not None and k not in m._non_persistent_buffers_set
            }
            for key in state_dict:
                if key.startswith(p):
                    name = key[len(p) :].split(".", 1)[0]
                    if name not in m._modules and name not in local and key not in out:
                        out.append(key)
        return out

    # ------------------------------------------------------------------ modes and conversion
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.__dict__["training"] = mode
        for m in self.children():  # through each child's train(), which it may override
            m.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data.fill(0)

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _cast(self, fn: Callable[[np.ndarray], np.ndarray], floats_only: bool = True) -> Module:
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is None or (floats_only and not dtypes.is_floating(t.data.dtype)):
                        continue
                    t.data = fn(t.data)
                    if t.grad is not None:
                        t.grad.data = fn(t.grad.data)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(dtype)`` / ``to(device)`` / ``to(device, dtype)``: parameters and buffers change
        in place (the same Parameter objects, so optimisers keep working). A dtype applies to the
        floating ones; a device to all."""
        dtype = kwargs.get("dtype")
        dev = kwargs.get("device")
        for a in args:
            if isinstance(a, (str, backend.device)):
                dev = a
            elif isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif a is not None:
                dtype = a
        if dev is not None:
            d = check_device(dev)
            self._cast(lambda a: backend.to_device(a, d), floats_only=False)
        if dtype is not None:
            nd = dtypes.np_dtype(dtype)
            if not dtypes.is_floating(nd):
                raise TypeError(
                    f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}"
                )
            self._cast(lambda a: a.astype(nd))
        return self

    def float(self) -> Module:
        return self.to(dtypes.float32)

    def double(self) -> Module:
        return self.to(dtypes.float64)

    def half(self) -> Module:
        return self.to(dtypes.float16)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: Any = None) -> Module:
        return self.to(f"cuda:{device}" if isinstance(device, int) else device or "cuda")

    def type(self, dst_type: Any) -> Module:
        return self.to(dst_type)

    # ------------------------------------------------------------------ hooks
    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward; a non-None return replaces output."""
        k = next(_hook_ids)
        self._forward_hooks[k] = hook
        return RemovableHandle(self._forward_hooks, k)

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """``hook(module, args)`` runs before forward; a non-None return replaces the args."""
        k = next(_hook_ids)
        self._forward_pre_hooks[k] = hook
        return RemovableHandle(self._forward_pre_hooks, k)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()
        ]
        lines = extra_lines + child_lines
        if not lines:
            return f"{self._get_name()}()"
        if len(extra_lines) == 1 and not child_lines:
            return f"{self._get_name()}({extra_lines[0]})"
        return f"{self._get_name()}(\n  " + "\n  ".join(lines) + "\n)"

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def place(module: Module, device: Any) -> None:
    """Move a freshly initialised layer to ``device`` (PyTorch's ``device=`` factory kwarg).

    Layers draw their initial weights on the CPU from the global generator and then move them,
    so the same seed gives the same weights on every device."""
    if device is not None and backend.as_device(device).type != "cpu":
        module.to(device)


def expect(cond: bool, layer: Module, expected: str, x: Tensor) -> None:
    """Raise the shape error every layer gives: which layer, what it expects, what it got."""
    if not cond:
        raise ValueError(f"{layer!r} expects input {expected}, got {tuple(x.shape)}")
