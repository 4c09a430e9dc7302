"""Recurrent layers with PyTorch's parameters, initialisation and semantics: the cells
``RNNCell``, ``GRUCell``, ``LSTMCell`` and the sequence layers ``RNN``, ``GRU``, ``LSTM``
(stacked, bidirectional, batch_first, dropout between layers, unbatched input).

A sequence layer computes the input projections of all time steps with one GEMM per layer and
direction, then runs one fused cell node per time step (``chainrule.ops.rnn``). Weights are
named as PyTorch's (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so a state_dict moves between
the two unchanged. All are initialised U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ... import creation, dtypes
from ...ops.linear import linear
from ...ops.movement import cat, split, squeeze, transpose, unsqueeze
from ...ops.rnn import gru_cell, lstm_cell, rnn_cell
from ...tensor import Tensor, check_device
from .. import functional as F
from .. import init
from ..module import Module, Parameter, place

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _param(shape: tuple, dtype: Any, device: Any) -> Parameter:
    check_device(device)
    return Parameter(creation.empty(*shape, dtype=dtype or dtypes.defaults.float))


def _check_dtype(who: str, x: Tensor, w: Tensor, what: str = "input") -> None:
    if x.data.dtype != w.data.dtype:
        raise RuntimeError(
            f"{who}: {what} has dtype {x.dtype} but the weights have {w.dtype}; convert one of "
            f"them (module.to(dtype) or {what}.to(dtype))"
        )


# ----------------------------------------------------------------------------- cells


class RNNCellBase(Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = _param((num_chunks * hidden_size, input_size), dtype, device)
        self.weight_hh = _param((num_chunks * hidden_size, hidden_size), dtype, device)
        if bias:
            self.bias_ih = _param((num_chunks * hidden_size,), dtype, device)
            self.bias_hh = _param((num_chunks * hidden_size,), dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        place(self, device)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, input: Tensor, hx: Any) -> tuple:  # noqa: A002
        """Check shapes, make the input (N, in) and the states (N, H); say if it was unbatched."""
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected "
                f"{self.input_size}"
            )
        _check_dtype(name, input, self.weight_ih)
        batched = input.ndim == 2
        if not batched:
            input = unsqueeze(input, 0)
        states = hx if isinstance(hx, tuple) else (hx,)
        out = []
        for s in states:
            if s is None:
                s = creation.zeros(
                    input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device
                )
            else:
                want = (input.shape[0], self.hidden_size) if batched else (self.hidden_size,)
                if tuple(s.shape) != want:
                    raise RuntimeError(f"{name}: Expected hidden size {want}, got {tuple(s.shape)}")
                _check_dtype(name, s, self.weight_ih, "hx")
                if not batched:
                    s = unsqueeze(s, 0)
            out.append(s)
        return input, out, batched

    def _xg(self, input: Tensor) -> Tensor:  # noqa: A002
        return linear(input, self.weight_ih, self.bias_ih)


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu). x: (N, in) or (in,)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        x, (h,), batched = self._prepare(input, hx)
        out = rnn_cell(self._xg(x), h, self.weight_hh, self.bias_hh, self.nonlinearity)
        return out if batched else squeeze(out, 0)


class GRUCell(RNNCellBase):
    """PyTorch's GRU cell (gates r, z, n). x: (N, in) or (in,); returns h'."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        x, (h,), batched = self._prepare(input, hx)
        out = gru_cell(self._xg(x), h, self.weight_hh, self.bias_hh)
        return out if batched else squeeze(out, 0)


class LSTMCell(RNNCellBase):
    """PyTorch's LSTM cell (gates i, f, g, o). x: (N, in) or (in,); hx = (h, c); returns (h', c')."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:  # noqa: A002
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise RuntimeError("LSTMCell: hx must be a tuple (h_0, c_0)")
        x, (h, c), batched = self._prepare(input, tuple(hx) if hx is not None else (None, None))
        h2, c2 = lstm_cell(self._xg(x), h, c, self.weight_hh, self.bias_hh)
        return (h2, c2) if batched else (squeeze(h2, 0), squeeze(c2, 0))


# ----------------------------------------------------------------------------- sequence layers


class RNNBase(Module):
    """Stacked (bi)directional recurrence over a sequence; see RNN, GRU, LSTM."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if (
            not isinstance(dropout, (int, float))
            or isinstance(dropout, bool)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed"
            )
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError("hidden_size must be an integer greater than zero")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError("num_layers must be an integer greater than zero")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        if proj_size:
            raise NotImplementedError("LSTM with proj_size > 0 is not supported yet")
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size
        G = _GATES[mode] * hidden_size
        D = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                n_in = input_size if layer == 0 else hidden_size * D
                names = [f"weight_ih{sfx}", f"weight_hh{sfx}"]
                setattr(self, names[0], _param((G, n_in), dtype, device))
                setattr(self, names[1], _param((G, hidden_size), dtype, device))
                if bias:
                    names += [f"bias_ih{sfx}", f"bias_hh{sfx}"]
                    setattr(self, names[2], _param((G,), dtype, device))
                    setattr(self, names[3], _param((G,), dtype, device))
                self._flat_weights_names.extend(names)
        self.reset_parameters()
        place(self, device)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op (PyTorch's packs weights for cuDNN)."""

    @property
    def all_weights(self) -> list:
        D = 2 if self.bidirectional else 1
        per = 4 if self.bias else 2
        ws = [getattr(self, n) for n in self._flat_weights_names]
        return [ws[i * per : (i + 1) * per] for i in range(self.num_layers * D)]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # ------------------------------------------------------------------ forward
    def _weights(self, layer: int, d: int) -> tuple:
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        b_ih = getattr(self, f"bias_ih{sfx}") if self.bias else None
        b_hh = getattr(self, f"bias_hh{sfx}") if self.bias else None
        return getattr(self, f"weight_ih{sfx}"), getattr(self, f"weight_hh{sfx}"), b_ih, b_hh

    def _check_hidden(self, hx: Tensor, want: tuple, name: str) -> None:
        if tuple(hx.shape) != want:
            raise RuntimeError(f"Expected {name} size {want}, got {list(hx.shape)}")
        _check_dtype(type(self).__name__, hx, self.weight_ih_l0, name)

    def _run(self, input: Tensor, hx: Any) -> tuple:  # noqa: A002
        """The shared driver. ``hx``: None, a Tensor, or (h0, c0) for LSTM; returns (output,
        final states as a tuple)."""
        name = type(self).__name__
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                f"{input.shape[-1]}"
            )
        _check_dtype(name, input, self.weight_ih_l0)
        batched = input.ndim == 3
        x = input
        if not batched:
            x = unsqueeze(x, 1)
        elif self.batch_first:
            x = transpose(x, 0, 1)
        L, N = x.shape[0], x.shape[1]
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        lstm = self.mode == "LSTM"
        n_states = 2 if lstm else 1
        states = hx if isinstance(hx, tuple) else (hx,) * (1 if hx is not None else n_states)
        if hx is not None and len(states) != n_states:
            raise RuntimeError(f"{name}: expected hx to be a tuple of {n_states} tensors")
        init_states = []  # per state kind: a list of (1, N, H) pieces, one per layer & direction
        for k, s in enumerate(states):
            if s is None:
                z = creation.zeros(1, N, H, dtype=input.dtype, device=input.device)
                init_states.append([z] * (self.num_layers * D))
                continue
            want = (self.num_layers * D, N, H) if batched else (self.num_layers * D, H)
            if not batched and s.ndim != 2:
                raise RuntimeError(
                    f"For unbatched 2-D input, hx should also be 2-D but got {s.ndim}-D tensor"
                )
            if batched and s.ndim != 3:
                raise RuntimeError(
                    f"For batched 3-D input, hx should also be 3-D but got {s.ndim}-D tensor"
                )
            self._check_hidden(s, want, "hidden" if k == 0 else "cell state")
            if not batched:
                s = unsqueeze(s, 1)
            init_states.append(list(split(s, 1, 0)))
        finals: list[list] = [[] for _ in range(n_states)]
        layer_in = x
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                layer_in = F.dropout(layer_in, self.dropout, True)
            outs = []
            for d in range(D):
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, d)
                xg = linear(layer_in, w_ih, b_ih)  # (L, N, G*H): all time steps in one GEMM
                steps = split(xg, 1, 0)
                st = [init_states[k][layer * D + d] for k in range(n_states)]
                seq = []
                order = range(L - 1, -1, -1) if d else range(L)
                for t in order:
                    if lstm:
                        st = list(lstm_cell(steps[t], st[0], st[1], w_hh, b_hh))
                    elif self.mode == "GRU":
                        st = [gru_cell(steps[t], st[0], w_hh, b_hh)]
                    else:
                        nl = "tanh" if self.mode == "RNN_TANH" else "relu"
                        st = [rnn_cell(steps[t], st[0], w_hh, b_hh, nl)]
                    seq.append(st[0])
                if d:
                    seq.reverse()
                outs.append(cat(seq, 0) if L > 1 else seq[0])
                for k in range(n_states):
                    finals[k].append(st[k])
            layer_in = cat(outs, 2) if D > 1 else outs[0]
        output = layer_in
        h_n = tuple(cat(f, 0) if len(f) > 1 else f[0] for f in finals)
        if not batched:
            output = squeeze(output, 1)
            h_n = tuple(squeeze(s, 1) for s in h_n)
        elif self.batch_first:
            output = transpose(output, 0, 1)
        return output, h_n


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), stacked.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False); forward(input, hx=None) -> (output, h_n).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        if nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(mode, *args, **kwargs)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:  # noqa: A002
        output, (h_n,) = self._run(input, hx)
        return output, h_n


class GRU(RNNBase):
    """PyTorch's GRU (gates r, z, n), stacked; forward(input, hx=None) -> (output, h_n).

    input (L, N, H_in) (or (N, L, H_in) with batch_first, or unbatched (L, H_in)); h_0 and h_n
    (num_layers * num_directions, N, H); output (L, N, num_directions * H).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple:  # noqa: A002
        output, (h_n,) = self._run(input, hx)
        return output, h_n


class LSTM(RNNBase):
    """PyTorch's LSTM (gates i, f, g, o), stacked; forward(input, (h_0, c_0)=None) ->
    (output, (h_n, c_n))."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:  # noqa: A002
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError("LSTM: hx must be a tuple (h_0, c_0)")
            hx = tuple(hx)
        output, (h_n, c_n) = self._run(input, hx)
        return output, (h_n, c_n)
