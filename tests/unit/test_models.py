"""The model package: shapes for every model x attention, SCA's maths, GradNorm's shared layer,
export, seeding, helpful errors, and that DT4ECG can fit a tiny batch."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from ecg_pipeline.models import (
    ATTENTION_NAMES,
    DT4ECG,
    MODEL_NAMES,
    SCA,
    MultiTaskNet,
    TupleOutput,
    build_attention,
    build_model,
)

T = 300
HEADS = {"identity": 15, "activity": 3}
CONV_MODELS = ["resnet1d", "cnn1d", "mobilenet1d", "efficientnet1d", "densenet1d"]
VECTOR_MODELS = ["lstm", "mlp"]

# (model, attention): every conv backbone with every attention; dt4ecg with its SCA; the
# vector models without attention.
COMBOS = (
    [(m, a) for m in CONV_MODELS for a in ATTENTION_NAMES]
    + [("dt4ecg", None), ("dt4ecg", "sca")]
    + [(m, None) for m in VECTOR_MODELS]
)


def _build(name, *, in_channels=1, heads=HEADS, attention=None, seed=0, **options):
    torch.manual_seed(seed)
    return build_model(
        name, in_channels=in_channels, n_samples=T, heads=heads, attention=attention, **options
    )


def _x(name: str, batch: int) -> torch.Tensor:
    """A random input the model reads: (B, 1, T) windows, or (B, 1, T + 2) one-beat sequences
    for ECG-SL (built by _build with K = 1 beat of L = T samples)."""
    if name == "ecg_sl":
        x = torch.rand(batch, 1, T + 2)
        x[..., -2], x[..., -1] = 0.8, 1.0  # RR interval (s), a real beat
        return x
    return torch.rand(batch, 1, T)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_names_cover_the_papers_tables():
    assert set(MODEL_NAMES) == {
        "dt4ecg",
        "lstm",
        "mlp",
        "cnn1d",
        "mobilenet1d",
        "efficientnet1d",
        "densenet1d",
        "resnet1d",
        "ecg_sl",
    }
    assert set(ATTENTION_NAMES) == {"none", "se", "cbam", "mha", "sca"}


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize(("name", "attention"), COMBOS)
def test_forward_shapes(name, attention, in_channels):
    model = _build(name, in_channels=in_channels, attention=attention)
    x = torch.rand(2, in_channels, T)  # (B, C, T), windows normalised to [0, 1]
    out = model(x)
    assert list(out) == list(HEADS)
    for head, n in HEADS.items():
        assert out[head].shape == (2, n)
        assert torch.isfinite(out[head]).all()
    # Eval mode with a batch of one (BatchNorm uses running statistics) works too.
    model.eval()
    with torch.no_grad():
        assert model(x[:1])["activity"].shape == (1, 3)


def test_dt4ecg_uses_sca_and_equals_resnet1d_with_sca():
    model = _build("dt4ecg")
    assert isinstance(model, DT4ECG)
    assert isinstance(model.attention, SCA)
    assert model.attention.seq_len == 75  # 300 -> strides 1, 2, 2
    twin = _build("resnet1d", attention="sca")
    assert type(twin) is MultiTaskNet
    assert model.state_dict().keys() == twin.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k]), k


def test_attention_modules_keep_shape():
    x = torch.randn(4, 24, 37)  # (B, C, T)
    for name in ATTENTION_NAMES:
        assert build_attention(name, 24, 37)(x).shape == x.shape, name
    assert build_attention(None, 24, 37)(x) is x


def test_sca_matches_hand_computation():
    g = torch.Generator().manual_seed(1)
    b, c, t = 2, 3, 5
    sca = SCA(c, t)
    w_c, b_c = torch.randn(c, c, generator=g), torch.randn(c, generator=g)
    w_s, b_s = torch.randn(t, t, generator=g), torch.randn(t, generator=g)
    with torch.no_grad():
        sca.channel_conv.weight.copy_(w_c.unsqueeze(-1))  # Conv1d weight (C_out, C_in, 1)
        sca.channel_conv.bias.copy_(b_c)
        sca.sequence_fc.weight.copy_(w_s)
        sca.sequence_fc.bias.copy_(b_s)
    x = torch.randn(b, c, t, generator=g)

    # By hand, in float64 numpy, one sample at a time, straight from the paper's equations.
    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    xn, wc, bc, ws, bs = (a.double().numpy() for a in (x, w_c, b_c, w_s, b_s))
    expected = np.empty_like(xn)
    for i in range(b):
        alpha = sigmoid(wc @ xn[i].mean(axis=1) + bc)  # (C,)  from AvgPool over T
        x1 = xn[i] * alpha[:, None]  # X' = X * alpha
        beta = sigmoid(ws @ x1.mean(axis=0) + bs)  # (T,)  from AvgPool over C of X'
        expected[i] = xn[i] * alpha[:, None] * beta[None, :]  # X * alpha * beta

    got = sca(x)
    assert got.shape == (b, c, t)
    np.testing.assert_allclose(got.detach().double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_sca_rejects_another_length():
    with pytest.raises(ValueError, match="T=5"):
        SCA(3, 5)(torch.randn(1, 3, 6))


def test_sca_length_follows_n_samples():
    torch.manual_seed(0)
    model = build_model("dt4ecg", in_channels=1, n_samples=301, heads=HEADS)
    assert model.attention.seq_len == 76  # ceil(ceil(301 / 2) / 2)
    assert model(torch.randn(2, 1, 301))["identity"].shape == (2, 15)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_head_model(name):
    model = _build(name, heads={"identity": 15})
    out = model(_x(name, 3))
    assert list(out) == ["identity"] and out["identity"].shape == (3, 15)
    (logits,) = model.forward_tuple(_x(name, 3))
    assert logits.shape == (3, 15)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shared_layer_receives_gradient_from_every_head(name):
    model = _build(name)
    shared = model.shared_layer()
    assert isinstance(shared, nn.Parameter) and shared.requires_grad
    assert any(shared is p for p in model.backbone.parameters())  # below the heads
    out = model(_x(name, 4))
    for head in HEADS:
        (grad,) = torch.autograd.grad(out[head].pow(2).sum(), shared, retain_graph=True)
        assert grad.shape == shared.shape
        assert grad.abs().sum() > 0, f"{name}: head {head} does not reach the shared layer"


def test_shared_layer_is_configurable():
    model = _build("dt4ecg", shared_param="backbone.blocks.1.conv2.weight")
    assert model.shared_layer() is model.backbone.blocks[1].conv2.weight
    default = _build("dt4ecg")
    assert default.shared_layer() is default.backbone.blocks[2].conv2.weight
    with pytest.raises(ValueError, match="not a parameter"):
        _build("dt4ecg", shared_param="backbone.nope.weight")


def test_default_dt4ecg_parameter_count():
    n = _n_params(_build("dt4ecg"))
    print(f"\nDT4ECG default (32-64-128, k=7, SCA, heads 15 + 3, C=1, T=300): {n:,} parameters")
    assert 250_000 < n < 280_000  # the lead's estimate: ~265k
    assert n == _n_params(DT4ECG())  # the class's defaults are the paper's set-up


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_baselines_are_small(name):
    n = _n_params(_build(name))
    assert 10_000 < n < 400_000, f"{name}: {n} parameters"


@pytest.mark.parametrize("name", ["dt4ecg", "mobilenet1d", "mlp"])
def test_tuple_output_matches_dict(name):
    model = _build(name).eval()
    x = torch.rand(5, 1, T)
    with torch.no_grad():
        as_dict = model(x)
        as_tuple = TupleOutput(model)(x)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(HEADS)
    assert TupleOutput(model).head_names == tuple(HEADS)
    for head, tensor in zip(HEADS, as_tuple, strict=True):
        assert torch.equal(as_dict[head], tensor)


def test_torch_export_of_dt4ecg_tuple_wrapper():
    wrapped = TupleOutput(_build("dt4ecg")).eval()
    start = time.perf_counter()
    # A static export with the (1, 1, 300) example, as MLflow's signature example will be.
    program = torch.export.export(wrapped, (torch.rand(1, 1, T),))
    elapsed = time.perf_counter() - start
    if elapsed > 20:  # a loaded CI machine; the export itself worked
        pytest.skip(f"torch.export took {elapsed:.0f} s")
    x = torch.rand(1, 1, T)
    with torch.no_grad():
        for a, b in zip(program.module()(x), wrapped(x), strict=True):
            torch.testing.assert_close(a, b)
    # A dynamic batch needs an example batch > 1: torch.export specialises sizes 0 and 1.
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = torch.export.export(wrapped, (torch.rand(2, 1, T),), dynamic_shapes=({0: batch},))
    x = torch.rand(7, 1, T)
    with torch.no_grad():
        for a, b in zip(dynamic.module()(x), wrapped(x), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["dt4ecg", "efficientnet1d", "lstm"])
def test_seeded_init_is_deterministic(name):
    a, b, c = _build(name, seed=7), _build(name, seed=7), _build(name, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_unknown_names_raise_helpfully():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*dt4ecg.*densenet1d"):
        _build("resnet50")
    with pytest.raises(ValueError, match="unknown attention 'eca'.*cbam.*sca"):
        _build("cnn1d", attention="eca")
    with pytest.raises(ValueError, match="unknown option.*'widths'.*channels"):
        _build("resnet1d", widths=(8, 16))
    with pytest.raises(ValueError, match="resnet1d"):  # dt4ecg is resnet1d + SCA, nothing else
        _build("dt4ecg", attention="se")
    with pytest.raises(ValueError, match="convolutional"):
        _build("lstm", attention="sca")
    with pytest.raises(ValueError, match="unknown attention"):
        build_attention("bogus", 8, 8)
    with pytest.raises(ValueError, match="n_classes"):
        _build("cnn1d", heads={"identity": 0})
    with pytest.raises(ValueError, match="non-empty"):
        _build("cnn1d", heads={})
    with pytest.raises(ValueError, match=r"expected input \(B, 1, T\)"):
        _build("cnn1d")(torch.rand(2, 3, T))


def test_options_reach_the_backbone_and_attention():
    model = _build(
        "resnet1d",
        attention="se",
        channels=(8, 16),
        strides=(1, 2),
        kernel_size=5,
        attention_options={"reduction": 4},
    )
    assert model.backbone.out_channels == 16 and len(model.backbone.blocks) == 2
    assert model.attention.fc1.out_features == 4
    assert model(torch.rand(2, 1, T))["identity"].shape == (2, 15)


def test_dt4ecg_overfits_four_samples():
    torch.manual_seed(0)
    model = DT4ECG(in_channels=1, n_samples=T, heads={"identity": 2, "activity": 2})
    x = torch.rand(4, 1, T)  # four random "windows"
    y = {"identity": torch.tensor([0, 1, 0, 1]), "activity": torch.tensor([1, 1, 0, 0])}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # the paper's optimiser and rate
    losses = []
    for _ in range(50):
        out = model(x)
        loss = sum(nn.functional.cross_entropy(out[k], y[k]) for k in y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    with torch.no_grad():
        out = model(x)  # training-mode BN: the statistics it was fitted with
    for k in y:
        assert torch.equal(out[k].argmax(1), y[k])


def test_fit_without_validation_windows_keeps_the_last_epoch_and_says_so():
    """Recordings too short for a validation part: the documented fallback, not a crash."""
    from ecg_pipeline.config import TrainingSettings
    from ecg_pipeline.training.loop import fit

    rng = np.random.default_rng(0)
    x = rng.random((8, 1, T), dtype=np.float32)
    labels = {"identity": np.array([0, 1] * 4), "activity": np.array([0, 0, 1, 1] * 2)}
    model = DT4ECG(in_channels=1, n_samples=T, heads={"identity": 2, "activity": 2})
    settings = TrainingSettings(epochs=3, batch_size=4, cpu_threads=1)
    with pytest.warns(UserWarning, match="no validation windows.*last of the 3 epochs"):
        result = fit(model, x, labels, np.arange(8), np.array([], dtype=np.int64), settings)
    assert result.best_epoch == 3 and result.best_state is not None
    assert all(np.isnan(row["val_score"]) for row in result.history)
    assert set(model.state_dict()) == set(result.best_state)


@pytest.mark.parametrize("name", ["dt4ecg", "mlp"])
def test_concat_output_puts_the_heads_side_by_side(name):
    """What MLflow serves: one (B, sum of n_classes) tensor, split back by head sizes."""
    from ecg_pipeline.models import ConcatOutput

    model = _build(name).eval()
    wrapped = ConcatOutput(model)
    x = torch.rand(5, 1, T)
    with torch.no_grad():
        as_dict, together = model(x), wrapped(x)
    assert together.shape == (5, sum(wrapped.head_sizes))
    parts = torch.split(together, wrapped.head_sizes, dim=1)
    for head, part in zip(wrapped.head_names, parts, strict=True):
        assert torch.equal(as_dict[head], part)
