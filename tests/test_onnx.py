"""ONNX export round trips: every exportable layer, op family and preset model is exported,
checked by ``onnx.checker`` and run in onnxruntime on random inputs at two batch sizes (the batch
dim is dynamic); outputs match chainrule's to 1e-5. Plus the errors for what cannot be exported
and ``chainrule export RUN_DIR --onnx`` end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install 'chainrule[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'chainrule[onnx]'")

import chainrule as cr  # noqa: E402
import chainrule.onnx as cro  # noqa: E402
from chainrule import nn, presets  # noqa: E402
from chainrule.autograd import Function  # noqa: E402

BATCHES = (3, 5)  # traced at 3, run at both


def _session(proto: object) -> object:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _flat(out: object) -> list:
    if isinstance(out, (tuple, list)):
        return [y for x in out for y in _flat(x)]
    return [] if out is None else [out]


def roundtrip(model: nn.Module, make: object, opset: int = 17, batches: tuple = BATCHES) -> object:
    """Export ``model`` traced on ``make(batches[0])`` and compare onnxruntime with chainrule
    on fresh random inputs for every batch size; ``make(b)`` returns a tuple of arrays."""
    model.eval()
    proto = cro.export(model, make(batches[0]), None, opset=opset)
    sess = _session(proto)
    names = [i.name for i in sess.get_inputs()]
    for b in batches:
        xs = make(b)
        with cr.no_grad():
            ref = _flat(model(*[cr.tensor(x) for x in xs]))
        got = sess.run(None, dict(zip(names, xs)))
        assert len(got) == len(ref)
        for g, r in zip(got, ref):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-5, atol=1e-5)
    return proto


def rand(*shape: int, seed: list = [0]) -> np.ndarray:  # noqa: B006 - a counter across calls
    seed[0] += 1
    return np.random.default_rng(seed[0]).standard_normal(shape).astype(np.float32)


def inp(*shape: int) -> object:
    """Inputs of shape (batch, *shape)."""
    return lambda b: (rand(b, *shape),)


def randomize(model: nn.Module) -> nn.Module:
    """Non-trivial weights and running statistics (affine 1/0 and stats 0/1 would hide bugs)."""
    rng = np.random.default_rng(123)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t is None or t.data.dtype.kind != "f":
            continue
        if name.endswith("running_var"):
            t.data[...] = rng.uniform(0.5, 2.0, t.shape)
        elif name.endswith(("running_mean", "bias")) or t.data.ndim == 1:
            t.data[...] = rng.uniform(-0.5, 0.5, t.shape)
    return model


class SelfAttn(nn.Module):
    def __init__(self, mha: nn.Module, **kw: object) -> None:
        super().__init__()
        self.mha, self.kw = mha, kw

    def forward(self, x: cr.Tensor) -> object:
        return self.mha(x, x, x, **self.kw)


class CrossAttn(SelfAttn):
    def forward(self, q: cr.Tensor, k: cr.Tensor, v: cr.Tensor) -> object:
        return self.mha(q, k, v, **self.kw)


class Two(nn.Module):
    """A two-input layer (Bilinear) or a cell called with its state."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, a: cr.Tensor, b: cr.Tensor) -> object:
        return self.layer(a, b)


class GRUWithState(Two):
    """h0 comes in batch first (every input's dim 0 is the batch) and goes in as (layers, N, H)."""

    def forward(self, x: cr.Tensor, h: cr.Tensor) -> object:
        return self.layer(x, h.transpose(0, 1))


class LSTMCellWithState(Two):
    def forward(self, x: cr.Tensor, h: cr.Tensor) -> object:
        return self.layer(x, (h, h * 0.5))


def _causal(n: int) -> cr.Tensor:
    return cr.tensor(np.triu(np.full((n, n), -np.inf, np.float32), 1))


LAYERS = {
    # affine and shape layers
    "Linear": (lambda: nn.Linear(6, 4), inp(6)),
    "Linear-3d": (lambda: nn.Linear(6, 4), inp(2, 6)),
    "Linear-nobias": (lambda: nn.Linear(6, 4, bias=False), inp(6)),
    "Bilinear": (lambda: Two(nn.Bilinear(3, 4, 5)), lambda b: (rand(b, 3), rand(b, 4))),
    "Identity": (lambda: nn.Identity(), inp(4)),
    "Flatten": (lambda: nn.Flatten(), inp(2, 3, 4)),
    "Unflatten": (lambda: nn.Unflatten(1, (3, 4)), inp(12)),
    "Dropout": (lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)), inp(4)),
    # convolution and pooling
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), inp(3, 11)),
    "Conv1d-dilated-groups": (lambda: nn.Conv1d(4, 6, 3, dilation=2, groups=2, bias=False), inp(4, 12)),
    "Conv2d": (lambda: nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 0)), inp(3, 9, 7)),
    "Conv2d-same-reflect": (lambda: nn.Conv2d(2, 3, 3, padding="same", padding_mode="reflect"), inp(2, 6, 5)),
    "Conv2d-circular": (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), inp(2, 5, 5)),
    "ConvTranspose1d": (lambda: nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1), inp(3, 7)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), inp(4, 5, 4)),
    "MaxPool1d": (lambda: nn.MaxPool1d(3, stride=2, padding=1), inp(2, 10)),
    "MaxPool2d-ceil-dilated": (lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True), inp(2, 8, 7)),
    "MaxPool2d-dilation": (lambda: nn.MaxPool2d(2, stride=1, dilation=2), inp(2, 6, 6)),
    "AvgPool1d": (lambda: nn.AvgPool1d(3, stride=2, padding=1), inp(2, 10)),
    "AvgPool2d-ceil-nopad": (lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), inp(2, 8, 7)),
    "AvgPool2d-divisor": (lambda: nn.AvgPool2d(2, divisor_override=3), inp(2, 6, 6)),
    "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(4), inp(2, 10)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((3, 2)), inp(2, 7, 6)),
    "AdaptiveAvgPool2d-global": (lambda: nn.AdaptiveAvgPool2d(1), inp(2, 5, 5)),
    # normalisation
    "BatchNorm1d": (lambda: randomize(nn.BatchNorm1d(4)), inp(4)),
    "BatchNorm1d-3d": (lambda: randomize(nn.BatchNorm1d(4)), inp(4, 6)),
    "BatchNorm2d": (lambda: randomize(nn.BatchNorm2d(3)), inp(3, 4, 5)),
    "BatchNorm2d-batchstats": (lambda: randomize(nn.BatchNorm2d(3, track_running_stats=False)), inp(3, 4, 5)),
    "LayerNorm": (lambda: randomize(nn.LayerNorm(6)), inp(3, 6)),
    "LayerNorm-2d-noaffine": (lambda: nn.LayerNorm((3, 6), elementwise_affine=False), inp(3, 6)),
    "GroupNorm": (lambda: randomize(nn.GroupNorm(2, 6)), inp(6, 5)),
    # embedding
    "Embedding": (lambda: nn.Embedding(10, 4), lambda b: (np.random.default_rng(b).integers(0, 10, (b, 7)),)),
    # recurrent
    "RNN-tanh": (lambda: nn.RNN(3, 5), inp(4, 3)),
    "RNN-relu-2layer-bi": (lambda: nn.RNN(3, 5, num_layers=2, nonlinearity="relu", bidirectional=True, batch_first=True), inp(4, 3)),
    "GRU": (lambda: nn.GRU(3, 5, batch_first=True), inp(6, 3)),
    "GRU-2layer-bi": (lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True), inp(5, 3)),
    "GRU-nobias": (lambda: nn.GRU(3, 4, bias=False, batch_first=True), inp(5, 3)),
    "LSTM": (lambda: nn.LSTM(3, 5, batch_first=True), inp(6, 3)),
    "LSTM-2layer-bi": (lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True), inp(5, 3)),
    "GRU-with-h0": (lambda: GRUWithState(nn.GRU(3, 4, num_layers=2, batch_first=True)),
                    lambda b: (rand(b, 5, 3), rand(b, 2, 4))),
    "RNNCell": (lambda: nn.RNNCell(3, 5), inp(3)),
    "GRUCell": (lambda: nn.GRUCell(3, 5), inp(3)),
    "LSTMCell": (lambda: nn.LSTMCell(3, 5), inp(3)),
    "GRUCell-state": (lambda: Two(nn.GRUCell(3, 5)), lambda b: (rand(b, 3), rand(b, 5))),
    "LSTMCell-state": (lambda: LSTMCellWithState(nn.LSTMCell(3, 5)), lambda b: (rand(b, 3), rand(b, 5))),
    # attention
    "MultiheadAttention": (lambda: SelfAttn(randomize(nn.MultiheadAttention(8, 2, batch_first=True))), inp(5, 8)),
    "MultiheadAttention-seqfirst-heads": (
        lambda: SelfAttn(randomize(nn.MultiheadAttention(8, 4)), average_attn_weights=False), inp(3, 8)),
    "MultiheadAttention-causal": (
        lambda: SelfAttn(randomize(nn.MultiheadAttention(8, 2, batch_first=True)), need_weights=False,
                         attn_mask=_causal(5), is_causal=True), inp(5, 8)),
    "MultiheadAttention-cross-kdim": (
        lambda: CrossAttn(randomize(nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True))),
        lambda b: (rand(b, 5, 8), rand(b, 7, 6), rand(b, 7, 4))),
    "TransformerEncoderLayer": (lambda: randomize(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)), inp(5, 8)),
    "TransformerEncoderLayer-gelu-normfirst": (
        lambda: randomize(nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", norm_first=True)), inp(5, 8)),
    "TransformerEncoder": (
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2,
                                      norm=nn.LayerNorm(8)), inp(5, 8)),
    # activations
    **{
        f"act-{name}": ((lambda mk=mk: nn.Sequential(nn.Linear(5, 6), mk())), inp(5))
        for name, mk in {
            "ReLU": nn.ReLU, "LeakyReLU": lambda: nn.LeakyReLU(0.2), "ELU": lambda: nn.ELU(0.7),
            "GELU": nn.GELU, "GELU-tanh": lambda: nn.GELU("tanh"), "SiLU": nn.SiLU,
            "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Softmax": lambda: nn.Softmax(-1),
            "LogSoftmax": lambda: nn.LogSoftmax(1), "Softplus": lambda: nn.Softplus(2.0, 1.0),
            "Hardtanh": lambda: nn.Hardtanh(-0.5, 0.3), "Step": nn.Step, "Sign": nn.Sign,
        }.items()
    },
}  # fmt: skip


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_roundtrip(name: str) -> None:
    cr.manual_seed(0)
    make_model, make_input = LAYERS[name]
    roundtrip(make_model(), make_input)


class OpsNet(nn.Module):
    """Element-wise, reduction and movement ops as written in a custom forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.blocks = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)])
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 3), "b": nn.Linear(6, 3)})

    def forward(self, x: cr.Tensor) -> object:
        h = self.lin(x).tanh()
        for blk in self.blocks:
            h = h + blk(h).relu()  # residual
        a, b = self.heads["a"](h), self.heads["b"](h)
        y = cr.cat([a, b * 2.0 - 1.0], 1)  # (B, 6)
        z = y.reshape(y.shape[0], 2, 3).transpose(1, 2)  # (B, 3, 2)
        parts = z.chunk(2, -1)
        w = cr.stack([parts[0].squeeze(-1), parts[1].squeeze(-1)], 1)  # (B, 2, 3)
        stats = [
            w.sum(1),
            w.mean(-1, keepdim=True).expand(-1, -1, 3).reshape(-1, 6),
            w.amax(1),
            w.amin(2),
            w.max(1)[0],
            w.var(2),
            w.std(1),
            w.logsumexp(2),
            w.norm(dim=2),
            w.norm(p=1, dim=1),
            w.abs().prod(2),
            w.softmax(1)[:, 0],
            w.log_softmax(2)[:, :, 1:],
            w.cumsum(2)[:, 1],
        ]
        e = [
            y.exp().log1p(),
            y.clamp(-0.5, 0.5),
            y.clamp(min=0.1),
            (y.abs() + 1).sqrt().rsqrt(),
            y.sigmoid(),
            y.square(),
            y.sin() + y.cos(),
            y.pow(2.0) / (1 + y * y),
            2.0 ** y.clamp(-1, 1),
            cr.where(y > 0, y, y * 0.1),
            cr.maximum(y, a.repeat(1, 2)),
            cr.minimum(y, 0.2),
            (y * 3).floor(),
            (y * 3).ceil(),
            (y * 3).round(),
            (y * 3).trunc(),
            y.sign(),
            y.neg(),
            (y * 7) % 2.5,
            (y * 7) // 2.0,
            y.flip(1),
            x[:, 1:5:2],
            x[:, None, -1],
            x[..., ::-1],
            (y > 0.1).float() + (y <= -0.2).float() + (y != 0).float() + (y == y).float(),
            ((y > 0) & (y < 0.5)).float() + ((y > 0) | (y < -0.5)).float() + (~(y > 0)).float(),
            (y > 0).all(1, keepdim=True).float() + (y > 0).any(1, keepdim=True).float(),
            y.argmax(1, keepdim=True).float() + y.argmin(1, keepdim=True).float(),
            cr.nn.functional.pad(y, (1, 2), value=0.5),
            y.expm1(),
            (y.abs() + 0.1).reciprocal(),
            cr.tril(y.reshape(-1, 2, 3)).flatten(1),
            y[:, [0, 2, 2]],
            y.gather(1, cr.tensor(np.array([[1, 0]]).repeat(y.shape[0], 0))),
            cr.einsum("bi,bj->bij", y, x).flatten(1),
            y.unsqueeze(1).repeat(1, 2, 1).flatten(1),
            y.clone(),
            y.double().float(),
            y.isfinite().float() + y.isnan().float(),
        ]
        return [s.reshape(s.shape[0], -1) for s in stats + e]


class FunctionalEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(cr.randn(10, 3))

    def forward(self, i: cr.Tensor) -> cr.Tensor:
        from chainrule.nn.layers.embedding import embedding

        return embedding(i, self.w) * 2


class LoopRNN(nn.Module):
    """A recurrence written out: zeros(batch, H) made in forward must follow the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.W, self.U = nn.Linear(3, 5), nn.Linear(5, 5, bias=False)

    def forward(self, x: cr.Tensor) -> object:
        h = cr.zeros(x.shape[0], 5)
        for t in range(x.shape[1]):
            h = (self.W(x[:, t]) + self.U(h)).tanh()
        pad = cr.zeros(x.shape[0], 2)
        return cr.cat([h, pad], 1), pad + 1, cr.ones(x.shape[0], 3)  # cat; outputs made in forward


def test_functional_embedding_and_batch_sized_constants() -> None:
    cr.manual_seed(3)
    roundtrip(FunctionalEmbedding(), lambda b: (np.random.default_rng(b).integers(0, 10, (b, 4)),))
    roundtrip(LoopRNN(), inp(4, 3))


def test_ops_roundtrip() -> None:
    cr.manual_seed(1)
    roundtrip(OpsNet(), inp(6))


def test_opset_18_reductions_and_layernorm() -> None:
    cr.manual_seed(2)
    roundtrip(OpsNet(), inp(6), opset=18)
    roundtrip(
        randomize(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)), inp(5, 8), opset=18
    )


def preset_input(cfg: dict) -> object:
    """Random inputs shaped like a sample of the preset's dataset (without loading it)."""
    d = cfg["data"]
    ds = d["dataset"]
    if ds == "text":  # character ids
        return lambda b: (np.random.default_rng(b).integers(0, 96, (b, d.get("seq_len", 64))),)
    shapes = {
        "mnist1d": (40,), "xor": (2,), "family_trees": (36,), "speech_digits": (40, 98),
        "digits": (64,) if d.get("flatten") else (1, 8, 8),
        "idx": (784,) if d.get("flatten") else (1, 28, 28),
        **{k: (d.get("n", 0),) for k in ("parity", "encoder", "symmetry")},
    }  # fmt: skip
    if ds not in shapes:
        pytest.skip(f"no example input for dataset {ds!r}: add its sample shape to preset_input")
    return inp(*shapes[ds])


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_preset_models_roundtrip(name: str) -> None:
    cfg = presets.get(name)
    cr.manual_seed(cfg["seed"])
    model = presets.build_model(cfg["model"])
    make = preset_input(cfg)
    # a few training steps, so that the weights (and batch-norm statistics) are not the initial ones
    opt = cr.optim.SGD(model.parameters(), lr=0.05)
    for step in range(2):
        (x,) = make(4 + step)
        out = model(cr.tensor(x))
        loss = (out * out).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    roundtrip(model, make)


def test_export_writes_file_and_names(tmp_path: Path) -> None:
    model = Two(nn.Bilinear(3, 4, 2))
    p = tmp_path / "m.onnx"
    cro.export(model, (rand(3, 3), rand(3, 4)), p, input_names=["a", "b"], output_names=["y"])
    m = onnx.load(str(p))
    onnx.checker.check_model(m)
    assert [i.name for i in m.graph.input] == ["a", "b"]
    assert [o.name for o in m.graph.output] == ["y"]
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    assert m.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_static_batch() -> None:
    proto = cro.export(nn.Linear(3, 2), rand(4, 3), None, dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_model_modes_restored_and_batch_one_warns() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.2))
    model.train()
    with pytest.warns(UserWarning, match="ambiguous"):
        cro.export(model, rand(1, 3), None)
    assert model.training and model[1].training
    assert "forward" not in model.__dict__ and "forward" not in model[0].__dict__


# ----------------------------------------------------------------------------- errors


class Roller(nn.Module):
    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return x.roll(1, 1)


class Double(Function):
    @staticmethod
    def forward(ctx: object, x: cr.Tensor) -> cr.Tensor:
        return cr.tensor(x.detach().numpy() * 2)

    @staticmethod
    def backward(ctx: object, g: cr.Tensor) -> cr.Tensor:
        return g * 2


class FnLayer(nn.Module):
    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return Double.apply(x)


class MergesBatch(nn.Module):
    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return x.transpose(0, 1).reshape(-1)  # the batch dim merged with the one before it


class FlattensAll(nn.Module):
    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return x.reshape(-1) * 2  # (batch * 4,): follows the batch


def test_unsupported_op_names_op_and_layer() -> None:
    model = nn.Sequential(nn.Linear(4, 4), Roller())
    with pytest.raises(cro.ExportError, match=r"`roll`.*layer '1' \(Roller\)"):
        cro.export(model, rand(3, 4), None)


def test_unsupported_layer_config_names_layer() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(cro.ExportError, match=r"return_indices.*layer '1' \(MaxPool2d\)"):
        cro.export(model, rand(3, 1, 8, 8), None)
    mha = SelfAttn(nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(cro.ExportError, match=r"add_bias_kv.*MultiheadAttention"):
        cro.export(mha, rand(3, 2, 4), None)


def test_function_and_numpy_round_trip_refused() -> None:
    with pytest.raises(cro.ExportError, match=r"Double.*layer '1' \(FnLayer\)"):
        cro.export(nn.Sequential(nn.Linear(4, 4), FnLayer()), rand(3, 4), None)


def test_batch_merging_reshape_refused_but_static_works() -> None:
    with pytest.raises(cro.ExportError, match="merges the batch"):
        cro.export(MergesBatch(), rand(3, 4), None)
    cro.export(MergesBatch(), rand(3, 4), None, dynamic_batch=False)
    roundtrip(FlattensAll(), inp(4))


class PerSample(nn.Module):
    def forward(self, x: cr.Tensor) -> cr.Tensor:
        return x + cr.tensor(np.arange(x.shape[0] * 4, dtype=np.float32).reshape(-1, 4))


def test_per_sample_constant_refused() -> None:
    with pytest.raises(cro.ExportError, match=r"shape \(3, 4\) made in the model \(PerSample\)"):
        cro.export(PerSample(), rand(3, 4), None)


def test_unused_unsupported_op_is_fine() -> None:
    class Logs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x: cr.Tensor) -> cr.Tensor:
            self.seen = x.roll(1, 0)  # not part of the output
            return self.lin(x)

    roundtrip(Logs(), inp(4))


def test_no_tracer_left_behind() -> None:
    from chainrule.autograd import engine

    model = nn.Sequential(nn.Linear(4, 4), Roller())
    with pytest.raises(cro.ExportError):
        cro.export(model, rand(3, 4), None)
    assert engine._tracer is None
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert float((cr.ones(2) + 1).sum()) == 4.0


# ----------------------------------------------------------------------------- CLI


def _cli(args: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chainrule.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_export_onnx(tmp_path: Path) -> None:
    run = tmp_path / "xor-run"
    r = _cli(
        ["train", "--preset", "xor", "--epochs", "2", "--out", str(run), "--no-progress"], tmp_path
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "exported" / "xor.onnx"
    r = _cli(["export", str(run), "--onnx", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and out.exists()
    from chainrule import config, io

    cfg = config.validate(config.load_toml(run / "config.toml"))
    model = presets.build_model(cfg["model"])
    model.load_state_dict(io.load(run / "best.safetensors"))
    model.eval()
    sess = _session(onnx.load(str(out)))
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [1, 1], [0, 1], [0.5, 0.5]], np.float32)
    (got,) = sess.run(None, {"input": x})
    with cr.no_grad():
        np.testing.assert_allclose(got, model(cr.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)
    r = _cli(["export", str(run)], tmp_path)
    assert r.returncode == 2 and "--onnx" in r.stderr
    r = _cli(["export", str(tmp_path), "--onnx"], tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr
