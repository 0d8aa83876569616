"""A trained model and everything needed to feed it and read its answers: :class:`Model`.

Two sources give the same handle: a checkpoint folder written by training (``model.pt`` +
``model.json``, loaded here without pickle and without any server) and a registered MLflow
model (:func:`ecg_pipeline.tracking.registry.load_champion`, the pickle-free ``pt2`` export).
Prediction reads only this handle, never attributes attached to a network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_BATCH = 256  # windows per forward pass: a few MB, whatever the recording's length


@dataclass(frozen=True)
class Model:
    """A trained network with its class names, threshold and input conventions.

    Attributes
    ----------
    network : callable
        ``network(x)`` on a float32 tensor of shape (B, 1, n_samples) (or (B, K, L + 2) beat
        sequences for ECG-SL, see :attr:`input_kind`) returns the logits of
        each head: a ``{task: (B, n_classes)}`` dict (a project checkpoint), or one
        (B, sum of n_classes) tensor of the heads side by side in :attr:`head_names` order (an
        exported MLflow model; a tuple per head for models logged before).
    head_names : tuple of str
        The tasks, in output order (``("identity", "activity")``).
    classes : dict of str to list of str
        Class names per task, in logit order.
    identity_threshold : float or None
        Mean-probability confidence below which a recording's identity is "unknown"; None for
        a model trained before thresholds were calibrated.
    normalisation : str or None
        How its training windows were scaled (``[store] normalisation``); None for a model
        saved before it was recorded (prediction then uses the configuration's).
    ingest_hash : str or None
        The ``[ingest]`` hash of its training windows (prediction refuses other settings).
    n_samples : int
        Samples per window; ``fs_hz`` their rate.
    name, version : str
        A registered model's name and version, or a checkpoint folder's name and None.
    source : str
        Where it was loaded from (a folder, or ``models:/<name>/<version>``).
    threshold_info : dict or None
        How the threshold was calibrated (see :mod:`ecg_pipeline.training.calibration`).
    metadata : dict
        Everything else stored with it (``model.json``, or the MLflow model's metadata).

    Examples
    --------
    >>> model = load_checkpoint_model("data/runs/demo/seed0/time_block")  # doctest: +SKIP
    >>> model.logits(windows)["identity"].shape                      # doctest: +SKIP
    (20, 15)
    """

    network: Callable[..., Any]
    head_names: tuple[str, ...]
    classes: dict[str, list[str]]
    identity_threshold: float | None
    normalisation: str | None
    ingest_hash: str | None
    n_samples: int | None
    fs_hz: float | None
    name: str
    version: str | None = None
    source: str = ""
    threshold_info: dict | None = None
    metadata: dict = field(default_factory=dict, repr=False)

    @property
    def head_sizes(self) -> tuple[int, ...]:
        """Classes per head in :attr:`head_names` order (the columns of a concatenated output)."""
        return tuple(len(self.classes[h]) for h in self.head_names)

    @property
    def input_kind(self) -> str:
        """``"windows"`` ((B, 1, T) samples) or ``"beats"`` ((B, K, L + 2), ECG-SL)."""
        return self.metadata.get("input", "windows")

    def input_for(self, windows) -> np.ndarray:
        """What this network reads, from one recording's freshly cut windows.

        Parameters
        ----------
        windows : ecg_pipeline.signal.windows.Windows
            As ``ecg_pipeline.ingest.read_windows`` returns them (beats included).
        """
        from ecg_pipeline.training.inputs import beat_input, window_input

        normalisation = self.normalisation or "window"
        if self.input_kind == "beats":
            b = windows.beats
            return beat_input(
                b.segments,
                b.rr_s,
                normalisation,
                int(self.metadata["in_channels"]),
                int(self.metadata["n_samples"]),
            )
        # float32 first, as the store keeps windows: scaling then sees the values training saw.
        return window_input(np.ascontiguousarray(windows.samples, dtype=np.float32), normalisation)

    def describe(self) -> str:
        """``'dt4ecg-demo' version 3`` or ``checkpoint 'time_block'``, for messages."""
        if self.version is None:
            return f"checkpoint {self.name!r} ({self.source})"
        return f"{self.name!r} version {self.version}"

    def logits(self, x: np.ndarray, batch_size: int = _BATCH) -> dict[str, np.ndarray]:
        """Every window's logits per task.

        Parameters
        ----------
        x : np.ndarray
            (n_windows, 1, n_samples) float32, normalised as :attr:`normalisation` says.
        batch_size : int
            Windows per forward pass.

        Returns
        -------
        dict of str to np.ndarray
            (n_windows, n_classes) float32 per task.
        """
        import torch

        parts: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.as_tensor(np.ascontiguousarray(x[start : start + batch_size]))
                out = self.network(batch)
                if isinstance(out, torch.Tensor):  # ConcatOutput: heads side by side
                    out = dict(
                        zip(self.head_names, torch.split(out, self.head_sizes, dim=1), strict=True)
                    )
                elif not isinstance(out, Mapping):  # TupleOutput (models logged before)
                    out = dict(zip(self.head_names, out, strict=True))
                for task, logits in out.items():
                    parts.setdefault(task, []).append(logits.float().cpu().numpy())
        return {task: np.concatenate(p) for task, p in parts.items()}

    @property
    def has_embeddings(self) -> bool:
        """Whether :meth:`embeddings` can answer (a checkpoint's network; not an export)."""
        return callable(getattr(self.network, "features", None))

    def embeddings(self, x: np.ndarray, batch_size: int = _BATCH) -> np.ndarray:
        """Every window's backbone feature: the shared representation the heads read.

        For DT4ECG (and every convolutional model) the attention-weighted map averaged over
        time; for ECG-SL the attention-pooled beat sequence (``MultiTaskNet.features``).

        Parameters
        ----------
        x : np.ndarray
            As for :meth:`logits`.

        Returns
        -------
        np.ndarray
            (n_windows, n_features) float32, not normalised
            (:mod:`ecg_pipeline.training.verification` normalises).

        Raises
        ------
        ValueError
            The network has no ``features``: a registered model's ``pt2`` export keeps the
            heads' logits only, so enrol and verify with its checkpoint folder.
        """
        import torch

        if not self.has_embeddings:
            raise ValueError(
                f"{self.describe()} exposes no backbone features (an exported model keeps the "
                "heads' logits only): verify and enrol with the training run's checkpoint "
                "folder (model.pt + model.json) instead"
            )
        parts = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = torch.as_tensor(np.ascontiguousarray(x[start : start + batch_size]))
                parts.append(self.network.features(batch).float().cpu().numpy())
        if not parts:
            return np.empty((0, 0), dtype=np.float32)
        return np.concatenate(parts)


def threshold_value(info: Mapping | None) -> float | None:
    """The threshold's value from its stored dict (None when absent)."""
    return float(info["value"]) if info else None


def load_checkpoint_model(folder: str | os.PathLike) -> Model:
    """A :class:`Model` from a checkpoint folder (``model.pt`` + ``model.json``), no server.

    The weights are loaded with ``weights_only=True`` into the network ``model.json`` names.

    Raises
    ------
    FileNotFoundError
        The folder holds no ``model.json`` or ``model.pt``.
    """
    from ecg_pipeline.training.checkpoint import SPEC_FILE, WEIGHTS_FILE, load_checkpoint

    folder = Path(folder)
    for needed in (SPEC_FILE, WEIGHTS_FILE):
        if not (folder / needed).is_file():
            raise FileNotFoundError(
                f"{folder}: no {needed}; a checkpoint folder is one fold of a training run "
                "(it holds model.pt and model.json)"
            )
    network, spec = load_checkpoint(folder)
    info = spec.get("identity_threshold")
    return Model(
        network=network,
        head_names=tuple(spec.get("head_order", spec["heads"])),
        classes={task: list(names) for task, names in spec["classes"].items()},
        identity_threshold=threshold_value(info),
        normalisation=spec.get("normalisation"),
        ingest_hash=spec.get("ingest_hash"),
        n_samples=spec.get("n_samples"),
        fs_hz=spec.get("fs_hz"),
        name=folder.name,
        version=None,
        source=str(folder),
        threshold_info=dict(info) if info else None,
        metadata=json.loads(json.dumps(spec)),
    )
