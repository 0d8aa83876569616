"""Logging a trained checkpoint to MLflow as a pickle-free ``pt2`` model.

The network returns a dict of logits, while MLflow's pyfunc serving takes one output tensor
(and warns, on every ``log_model``, that a tuple-output model fails its serving-example check),
so the model is exported through :class:`ecg_pipeline.models.ConcatOutput`: every head's logits
side by side in one (B, sum of n_classes) tensor, with the head names and sizes stored in the
model's metadata (``head_names``, ``head_sizes``) to split it. ``pt2`` needs an input example to
trace and a ``TensorSpec`` signature whose ``-1`` marks the dynamic batch dimension.
Requirements are given explicitly: MLflow's inference of them re-imports the model in a
subprocess and took 8 s of the 9 s a ``log_model`` call cost (shared notes, stack.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = [
    "EXAMPLE_BATCH",
    "input_example",
    "log_checkpoint_model",
    "model_signature",
    "pip_requirements",
]

# torch.export fixes any dimension whose example size is 1 (MLflow marks it Dim.AUTO and
# torch specialises size-1 dims), so a (1, 1, T) example gives a model that only takes
# batches of one. Two windows keep the batch dimension dynamic.
EXAMPLE_BATCH = 2


def input_example(n_samples: int, in_channels: int = 1, kind: str = "windows") -> np.ndarray:
    """A (2, C, T) float32 example in [0, 1] (min-max windows' range).

    Random rather than real windows: the example is stored next to the model in plain JSON,
    and a subject's ECG is personal data. For a beat model, (2, K, L + 2): random segments,
    an RR interval of 0.8 s and every beat marked real.
    """
    rng = np.random.default_rng(0)
    if kind == "beats":
        x = rng.random((EXAMPLE_BATCH, in_channels, n_samples + 2), dtype=np.float32)
        x[..., -2], x[..., -1] = 0.8, 1.0
        return x
    return rng.random((EXAMPLE_BATCH, in_channels, n_samples), dtype=np.float32)


def model_signature(
    heads: Mapping[str, int], n_samples: int, in_channels: int = 1, kind: str = "windows"
):
    """Input (-1, C, T) float32; one (-1, sum of n_classes) float32 output, ``logits``: the
    heads' columns side by side in ``heads`` order (:class:`~ecg_pipeline.models.ConcatOutput`).

    A beat model's input is (-1, K, L + 2).
    """
    if kind == "beats":
        n_samples += 2
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    # The input stays unnamed: with a name, pyfunc turns an ndarray into {name: array}, which
    # the PyTorch flavour refuses.
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, in_channels, n_samples))]),
        outputs=Schema([TensorSpec(f32, (-1, sum(int(n) for n in heads.values())), "logits")]),
    )


def pip_requirements() -> list[str]:
    """The pinned packages that serving the model needs (torch without its ``+cpu`` tag)."""
    import torch

    import mlflow

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
    ]


def log_checkpoint_model(
    checkpoint_dir: str | Path,
    *,
    registered_model_name: str | None = None,
    metadata: Mapping | None = None,
    tags: Mapping[str, str] | None = None,
):
    """Log the project checkpoint in ``checkpoint_dir`` as the active run's model ``"model"``.

    Parameters
    ----------
    checkpoint_dir : str or Path
        A folder written by :func:`ecg_pipeline.training.checkpoint.save_checkpoint`.
    registered_model_name : str, optional
        Also register it under this name (a new version).
    metadata : mapping, optional
        Extra entries for the MLmodel metadata, next to ``head_names``, ``head_sizes``, ``classes``,
        ``n_samples``, ``normalisation``, ``ingest_hash``, ``fs_hz`` and
        ``identity_threshold`` (a dict, see ``ecg_pipeline.training.calibration``) taken from
        the checkpoint's spec; an entry here wins over the spec's.
    tags : mapping, optional
        Tags of the LoggedModel.

    Returns
    -------
    mlflow.models.model.ModelInfo
        ``model_uri`` (``models:/m-...``) and ``registered_model_version``.

    Notes
    -----
    Needs an active MLflow run (``mlflow.start_run``) and the tracking/registry URIs set.
    """
    import mlflow
    from ecg_pipeline.models import ConcatOutput
    from ecg_pipeline.training.checkpoint import load_checkpoint

    # Rebuilt from the checkpoint on the CPU: a pt2 archive cannot move devices once saved.
    model, spec = load_checkpoint(checkpoint_dir, device="cpu")
    wrapped = ConcatOutput(model).eval()
    n_samples, in_channels = int(spec["n_samples"]), int(spec.get("in_channels", 1))
    kind = spec.get("input", "windows")
    info = {
        "head_names": list(wrapped.head_names),
        "head_sizes": list(wrapped.head_sizes),  # columns of the one output, per head
        "classes": {k: [str(c) for c in v] for k, v in spec.get("classes", {}).items()},
        "n_samples": n_samples,
        # What a beat model reads: (B, K = in_channels, L = n_samples + 2), see models/ecg_sl.
        "input": kind,
        "in_channels": in_channels,
        # What prediction needs to feed the model as it was trained and to say "unknown";
        # None for checkpoints written before these were recorded.
        "normalisation": spec.get("normalisation"),
        "ingest_hash": spec.get("ingest_hash"),
        "fs_hz": spec.get("fs_hz"),
        "identity_threshold": spec.get("identity_threshold"),
        **dict(metadata or {}),
    }
    return mlflow.pytorch.log_model(
        wrapped,
        name="model",
        serialization_format="pt2",
        input_example=input_example(n_samples, in_channels, kind),
        signature=model_signature(model.n_classes, n_samples, in_channels, kind),
        pip_requirements=pip_requirements(),
        metadata=info,
        tags=dict(tags or {}),
        registered_model_name=registered_model_name,
    )
