"""What a model is built from and fed: the ``[model]`` options a network takes, its input
shape (windows or beat sequences) and the ``model.json`` spec saved with every checkpoint."""

from __future__ import annotations

from ecg_pipeline.config import StudyConfig

# The [model] widths that DT4ECG's backbone always takes; other backbones keep their own
# defaults unless the configuration changes one of these (then they must take it).
_RESNET_MODELS = ("dt4ecg", "resnet1d")
_WIDTH_KEYS = ("channels", "kernel_size", "strides")
# ECG-SL's own [model] keys, and the backbone option each one sets.
_SEQUENCE_KEYS = {
    "temporal": "temporal",
    "d_model": "d_model",
    "temporal_layers": "n_layers",
    "segment_pooling": "segment_pooling",
}


def model_options_of(m) -> dict:
    """The backbone options that ``[model]`` gives the chosen network.

    Raises
    ------
    ValueError
        A ``[model]`` setting changed from its default that the chosen network does not take
        (a mistake, not a no-op), naming the key and what the network takes.
    """
    from ecg_pipeline.models import input_kind, model_options

    defaults = type(m)()
    takes = set(model_options(m.name))
    options = {}
    for key in _WIDTH_KEYS:
        value = getattr(m, key)
        changed = value != getattr(defaults, key)
        if m.name in _RESNET_MODELS or (changed and key in takes):
            options[key] = list(value) if isinstance(value, tuple) else value
        elif changed:
            raise ValueError(
                f"[model] {key} = {value!r}: model {m.name!r} does not take {key!r} (it takes "
                f"{', '.join(sorted(takes)) or 'no options'}); remove it or choose a model "
                "that uses it"
            )
    beats = input_kind(m.name) == "beats"
    for key, option in _SEQUENCE_KEYS.items():
        value = getattr(m, key)
        if beats:
            options[option] = value
        elif value != getattr(defaults, key):
            raise ValueError(
                f"[model] {key} = {value!r} is an ECG-SL setting; model {m.name!r} does not take it"
            )
    for key in ("max_beats", "pretrained"):
        if not beats and getattr(m, key) != getattr(defaults, key):
            raise ValueError(
                f"[model] {key} = {getattr(m, key)!r} is an ECG-SL setting; model {m.name!r} "
                "does not take it"
            )
    return options


def check_trainable(config: StudyConfig) -> None:
    """Refuse settings the chosen model cannot train with, before any data is read."""
    model_options_of(config.model)
    kind, _, _ = input_shape(config, config.ingest.windows.window_samples)
    if kind == "beats" and config.training.augment.enabled:
        raise ValueError(
            "[training.augment] perturbs whole windows; model "
            f"{config.model.name!r} reads beat segments (switch augmentation off)"
        )


def input_shape(config: StudyConfig, window_samples: int) -> tuple[str, int, int]:
    """(kind, in_channels, n_samples) of the configured model's input.

    Window models: ("windows", 1, T). Beat models: ("beats", K = max_beats, L = samples per
    beat segment of ``[ingest.beats]``).
    """
    from ecg_pipeline.models import input_kind

    if input_kind(config.model.name) == "beats":
        return "beats", config.model.max_beats, config.ingest.beats.segment_samples
    return "windows", 1, window_samples


def model_spec(
    config: StudyConfig,
    heads: dict[str, int],
    classes: dict,
    n_samples: int,
    fs_hz: float | None = None,
) -> dict:
    """What ``model.json`` holds: how to rebuild the network and how to feed it.

    Besides the architecture: the class names, the normalisation and the ``[ingest]`` hash of
    the windows' preprocessing (prediction refuses a configuration that would preprocess new
    recordings differently), and the windows' rate.
    """
    m = config.model
    options = model_options_of(m)
    if m.shared_param:
        options["shared_param"] = m.shared_param
    kind, in_channels, n_samples = input_shape(config, n_samples)
    extra = {}
    if kind == "beats":
        extra["beats"] = config.ingest.beats.model_dump(mode="json")
        extra["beat_fs_hz"] = config.ingest.beats.segment_fs_hz
    return {
        "name": m.name,
        "attention": m.attention,
        "input": kind,
        **extra,
        "in_channels": in_channels,
        "n_samples": n_samples,
        "heads": heads,
        "options": options,
        "classes": classes,
        # The model only understands windows scaled the way it was trained on.
        "normalisation": config.store.normalisation,
        "ingest_hash": config.ingest_hash(),
        "fs_hz": float(fs_hz if fs_hz is not None else config.ingest.windows.target_fs_hz),
    }


def build_from_spec(spec: dict, seed: int):
    """The untrained network ``spec`` (:func:`model_spec`) describes, initialised with ``seed``."""
    import torch

    from ecg_pipeline.models import build_model

    torch.manual_seed(seed)
    return build_model(
        spec["name"],
        in_channels=spec["in_channels"],
        n_samples=spec["n_samples"],
        heads=spec["heads"],
        attention=spec["attention"],
        **spec["options"],
    )
