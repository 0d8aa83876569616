"""The DT4ECG model and its comparison baselines, built by name::

    from ecg_pipeline.models import TupleOutput, build_model

    model = build_model("dt4ecg", in_channels=1, n_samples=300,
                        heads={"identity": 15, "activity": 3})
    logits = model(x)             # x: (B, 1, 300) -> {"identity": (B, 15), "activity": (B, 3)}
    w = model.shared_layer()      # GradNorm's last shared parameter
    exportable = TupleOutput(model.eval())   # forward(x) -> (identity, activity) logits

Models (:data:`MODEL_NAMES`) are a backbone wrapped in
:class:`~ecg_pipeline.models.multitask.MultiTaskNet` (backbone -> attention -> global average
pooling -> one linear head per task). ``"dt4ecg"`` is ``"resnet1d"`` with SCA attention
(DT4ECG's Table I); every convolutional backbone takes any of :data:`ATTENTION_NAMES`
(Table III's ablation). Importing this package only defines classes; nothing is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

from torch import nn

from .attention import ATTENTION_NAMES, CBAM, SCA, SqueezeExcitation, TemporalMHA, build_attention
from .baselines import CNN1d, DenseNet1d, EfficientNet1d, LSTM1d, MLP1d, MobileNet1d
from .dt4ecg import DT4ECG, ResNet1d
from .ecg_sl import ECGSL, ECGSLBackbone
from .multitask import ConcatOutput, MultiTaskNet, TupleOutput, feature_shape

__all__ = [
    "ATTENTION_NAMES",
    "CBAM",
    "CNN1d",
    "DT4ECG",
    "DenseNet1d",
    "ECGSL",
    "EfficientNet1d",
    "LSTM1d",
    "MLP1d",
    "MODEL_NAMES",
    "MobileNet1d",
    "MultiTaskNet",
    "ResNet1d",
    "SCA",
    "SqueezeExcitation",
    "TemporalMHA",
    "ConcatOutput",
    "TupleOutput",
    "build_attention",
    "build_model",
    "feature_shape",
    "input_kind",
    "model_options",
]

# name -> backbone class; "dt4ecg" builds ResNet1d with SCA, see build_model.
_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "dt4ecg": ResNet1d,
    "lstm": LSTM1d,
    "mlp": MLP1d,
    "cnn1d": CNN1d,
    "mobilenet1d": MobileNet1d,
    "efficientnet1d": EfficientNet1d,
    "densenet1d": DenseNet1d,
    "resnet1d": ResNet1d,
    "ecg_sl": ECGSLBackbone,
}
# What each model reads: fixed-length windows (B, 1, T), or beat sequences (B, K, L + 2) cut
# around R peaks (see ecg_pipeline.models.ecg_sl).
_BEAT_MODELS = ("ecg_sl",)
MODEL_NAMES: tuple[str, ...] = tuple(_BACKBONES)

# Options build_model consumes itself; everything else goes to the backbone's constructor.
_WRAPPER_OPTIONS = ("shared_param", "head_dropout")


def _backbone_options(cls: Callable[..., nn.Module]) -> list[str]:
    params = inspect.signature(cls).parameters
    shape = ("self", "in_channels", "n_samples", "segment_samples", "max_beats")
    return [p for p in params if p not in shape]


def input_kind(name: str) -> str:
    """``"windows"`` ((B, 1, T) samples) or ``"beats"`` ((B, K, L + 2) beat sequences)."""
    return "beats" if str(name).lower() in _BEAT_MODELS else "windows"


def model_options(name: str) -> list[str]:
    """The options ``name`` takes besides the input shape, heads and attention.

    Raises
    ------
    ValueError
        Unknown model.
    """
    key = str(name).lower()
    if key not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
    return [*_backbone_options(_BACKBONES[key]), *_WRAPPER_OPTIONS, "attention_options"]


def build_model(
    name: str,
    *,
    in_channels: int,
    n_samples: int,
    heads: Mapping[str, int],
    attention: str | None = None,
    **options,
) -> MultiTaskNet:
    """Build the multi-task model ``name`` for (B, in_channels, n_samples) windows.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES` (case-insensitive).
    in_channels : int
        ECG leads per window; for a beat model ("ecg_sl"), K, the beats per window.
    n_samples : int
        Window length T. The MLP and SCA (a T' -> T' layer) are tied to it; the other models
        accept other lengths at run time. For a beat model, L, the samples per beat segment.
    heads : Mapping[str, int]
        Task name -> number of classes, in output order.
    attention : str or None
        One of :data:`ATTENTION_NAMES`, applied to the backbone's final (B, C, T') map.
        ``None`` means the model's own default: "sca" for "dt4ecg", "none" for the others.
        "dt4ecg" accepts only "sca" (use "resnet1d" for the ablation); "lstm" and "mlp" accept
        only "none" (they emit vectors, not time series).
    **options
        ``shared_param`` (str, dotted parameter name for :meth:`MultiTaskNet.shared_layer`),
        ``head_dropout`` (float), ``attention_options`` (dict for the attention module, e.g.
        ``{"reduction": 16}``); anything else goes to the backbone class (e.g. ``channels``,
        ``kernel_size``, ``strides`` for "dt4ecg"/"resnet1d"; ``hidden_size`` for "lstm").

    Returns
    -------
    MultiTaskNet
        In training mode, on the CPU; ``forward(x)`` returns ``{head: (B, n_classes)}``.

    Raises
    ------
    ValueError
        Unknown model, attention or option name (the message lists the valid ones), an
        attention the model does not take, or invalid heads.
    """
    key = str(name).lower()
    if key not in _BACKBONES:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")
    att = None if attention is None else str(attention).lower()
    if att is not None and att not in ATTENTION_NAMES:
        raise ValueError(
            f"unknown attention {attention!r}; valid: {', '.join(ATTENTION_NAMES)} (or None)"
        )
    wrapper = {k: options.pop(k) for k in _WRAPPER_OPTIONS if k in options}
    attention_options = dict(options.pop("attention_options", None) or {})
    cls = _BACKBONES[key]
    allowed = _backbone_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for model {key!r}; valid: "
            f"{', '.join(allowed + list(_WRAPPER_OPTIONS) + ['attention_options'])}"
        )

    if key in _BEAT_MODELS:
        if att not in (None, "none") or attention_options:
            raise ValueError(
                f"model {key!r} pools its beats with its own attention and takes no other "
                f"(got {attention!r})"
            )
        return ECGSL(n_samples, in_channels, heads, **options, **wrapper)

    if key == "dt4ecg":
        if att not in (None, "sca") or attention_options:
            raise ValueError(
                f"'dt4ecg' is resnet1d + SCA and takes no other attention (got {attention!r}, "
                f"options {attention_options}); use 'resnet1d' with attention=... for ablations"
            )
        return DT4ECG(in_channels, n_samples, heads, **options, **wrapper)

    if "n_samples" in inspect.signature(cls).parameters:  # the MLP's input size depends on T
        options["n_samples"] = n_samples
    backbone = cls(in_channels=in_channels, **options)
    if not backbone.emits_sequence:
        if att not in (None, "none") or attention_options:
            raise ValueError(
                f"model {key!r} emits feature vectors, so it takes no attention "
                f"(got {attention!r}); attention applies to convolutional backbones"
            )
        return MultiTaskNet(backbone, None, heads, **wrapper)
    c, t = feature_shape(backbone, in_channels, n_samples)  # (C, T') of the final map
    return MultiTaskNet(backbone, build_attention(att, c, t, **attention_options), heads, **wrapper)
