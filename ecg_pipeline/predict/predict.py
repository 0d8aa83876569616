"""New recordings to one prediction per recording, with the model from the registry.

Each file goes through the ingest chain (:func:`ecg_pipeline.ingest.read_windows`: the same
reader, channel choice, filters, resampling, windows and flat-window checks) without needing a
subject or condition: new recordings may come from people the model never saw, under any file
name. Windows are scaled as the model's training windows were (its ``normalisation``), every
window is scored, and each task's answer is the argmax of the mean softmax over the recording's
windows (:mod:`.aggregate`); identity is "unknown" below the model's calibrated threshold
(:mod:`.calibration`).

A file that cannot be read, has no ECG channel or holds less than one window becomes an error
naming it, and the batch goes on. Source files are only ever opened for reading.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import IngestError, ModelMismatchError, UnreadableFileError
from ecg_pipeline.training.aggregate import decide, softmax
from ecg_pipeline.training.model_handle import Model

__all__ = [
    "PREDICTION_COLUMNS",
    "RecordingWindows",
    "check_model_fits",
    "find_recordings",
    "predict_recordings",
    "read_recording_windows",
]

# One row per recording, in this order (output.py writes them with these types).
PREDICTION_COLUMNS = (
    "file",
    "sha256",
    "duration_s",
    "n_windows",
    "identity",
    "identity_best",
    "identity_confidence",
    "identity_threshold",
    "activity",
    "activity_confidence",
    "model_name",
    "model_version",
    "ingest_hash",
    "predicted_at",
    "notes",
)
NO_THRESHOLD_NOTE = (
    "the model has no calibrated identity threshold (logged before thresholds existed): "
    "every recording is called a known subject"
)

NO_VERIFY_THRESHOLD_NOTE = (
    "the enrolment has no calibrated threshold (`ecg-pipeline verify` sets it): every recording "
    "is called its best-scoring enrolled person"
)


@dataclass
class RecordingWindows:
    """One new recording, ready for the model.

    Attributes
    ----------
    path : str
        The source file.
    sha256 : str
        Of its bytes (all of its files for a WFDB record): ties a prediction to exact data.
    x : np.ndarray
        (n_windows, 1, window_samples) float32 windows, or (n_windows, K, L + 2) beat
        sequences for a beat model, normalised as the model expects.
    duration_s : float
        Signal in the file.
    warnings : list of str
        From preprocessing (flat windows dropped, a notch skipped).
    """

    path: str
    sha256: str
    x: np.ndarray
    duration_s: float
    warnings: list[str] = field(default_factory=list)


def check_model_fits(
    model: Model, config: StudyConfig, config_source: str | None = None
) -> list[str]:
    """Refuse a configuration that would preprocess recordings unlike the model's training.

    Parameters
    ----------
    model : Model
        A loaded model (its ``ingest_hash`` and ``n_samples``).
    config : StudyConfig
        The configuration that will read the new recordings.
    config_source : str, optional
        Where ``config`` came from (a file), for the message.

    Returns
    -------
    list of str
        Notes for the batch (an unknown hash that could not be checked).

    Raises
    ------
    ModelMismatchError
        The ``[ingest]`` hashes or the window lengths differ.
    """
    where = f"{config_source} " if config_source else ""
    where += f"(dataset {config.dataset.name!r}, [ingest] hash {config.ingest_hash()})"
    notes = []
    model_hash = model.ingest_hash
    if model_hash is None:
        notes.append("the model records no [ingest] hash: its preprocessing was not checked")
    elif model_hash != config.ingest_hash():
        raise ModelMismatchError(
            model.describe(),
            where,
            f"it was trained on windows made with [ingest] hash {model_hash}; predict with the "
            "configuration it was trained with, or train a model on this one",
        )
    n_model, n_config = model.n_samples, config.ingest.windows.window_samples
    what = "windows"
    if model.input_kind == "beats":  # ECG-SL reads beat segments, not windows
        n_config, what = config.ingest.beats.segment_samples, "beat segments"
    if n_model is not None and int(n_model) != n_config:
        raise ModelMismatchError(
            model.describe(),
            where,
            f"it takes {what} of {n_model} samples; the configuration cuts {n_config}",
        )
    return notes


def find_recordings(
    paths: Sequence[str | os.PathLike], config: StudyConfig
) -> tuple[list[Path], list[IngestError]]:
    """The recordings named by ``paths``: files as given, folders searched like ingest's.

    Folders are searched by :func:`ecg_pipeline.cohort.labels.discover` (the dataset's file
    suffixes, dot-named temp files skipped, files still being copied deferred); a file named
    explicitly is taken whatever its name. A recording named twice is predicted once.

    Returns
    -------
    files : list of Path
        Absolute paths, in the order given (each folder's files sorted).
    errors : list of IngestError
        Paths that do not exist, and deferred files.
    """
    from ecg_pipeline.cohort.labels import discover

    files: dict[Path, None] = {}
    errors: list[IngestError] = []
    for p in map(Path, paths):
        if p.is_dir():
            ready, deferred = discover(p, config)
            files.update(dict.fromkeys(Path(f).resolve() for f in ready))
            errors += deferred
        elif p.is_file():
            files[p.resolve()] = None
        else:
            errors.append(UnreadableFileError(p, "no such file or folder"))
    return list(files), errors


def read_recording_windows(
    path: str | os.PathLike, config: StudyConfig, model: Model
) -> RecordingWindows:
    """Hash a file, read its ECG and cut and scale its windows, as ingest and training did.

    Raises
    ------
    IngestError
        A subclass naming the file and the reason (unreadable, not an AcqKnowledge file, no or
        ambiguous ECG channel, shorter than one window, flat lead).
    """
    from ecg_pipeline.ingest import read_windows
    from ecg_pipeline.io.readers import recording_files, sha256_files

    try:
        sha = sha256_files(recording_files(path, config.dataset.format))
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read file: {exc}") from exc
    raw, windows = read_windows(path, config)
    x = model.input_for(windows)  # scaled as the model's training input was
    return RecordingWindows(str(path), sha, x, float(raw.duration_s), list(windows.warnings))


def _predict_one(rec: RecordingWindows, model: Model, enrolled=None) -> dict:
    logits = model.logits(rec.x)
    row: dict = {
        "file": Path(rec.path).name,
        "sha256": rec.sha256,
        "duration_s": rec.duration_s,
        "n_windows": len(rec.x),
    }
    if enrolled is not None:
        row.update(_verify_one(rec, model, *enrolled))
    for task in ("identity", "activity"):
        if task not in logits or (task == "identity" and enrolled is not None):
            continue
        means = softmax(logits[task]).mean(axis=0, keepdims=True)
        labels, best, confidence = decide(
            means, model.classes[task], model.identity_threshold if task == "identity" else None
        )
        row[task], row[f"{task}_confidence"] = labels[0], float(confidence[0])
        if task == "identity":
            row["identity_best"] = best[0]
    return row


def _verify_one(rec: RecordingWindows, model: Model, names, templates, threshold) -> dict:
    """Identity from the enrolled templates: the best cosine score, "unknown" below threshold."""
    from ecg_pipeline.predict.enrol import recording_embedding

    scores = templates @ recording_embedding(model, rec.x)
    best = int(np.argmax(scores))
    accepted = threshold is None or scores[best] >= threshold
    return {
        "identity": names[best] if accepted else "unknown",
        "identity_best": names[best],
        "identity_confidence": float(scores[best]),
    }


def predict_recordings(
    paths: Sequence[str | os.PathLike],
    config: StudyConfig,
    model: Model,
    *,
    config_source: str | None = None,
    now: pd.Timestamp | None = None,
    enrolment=None,
) -> tuple[pd.DataFrame, list[IngestError]]:
    """Label new recordings: identity (or "unknown") and activity, each with a confidence.

    Parameters
    ----------
    paths : sequence of path-like
        Recordings, or folders of them (see :func:`find_recordings`); never modified.
    config : StudyConfig
        Says how to read the files; its ``[ingest]`` hash must be the model's.
    model : Model
        A loaded model: a checkpoint folder's
        (:func:`~ecg_pipeline.training.model_handle.load_checkpoint_model`) or a registered
        one (:func:`ecg_pipeline.tracking.registry.load_champion`).
    config_source : str, optional
        The configuration's file, named in a mismatch error.
    now : pandas.Timestamp, optional
        The ``predicted_at`` of every row (UTC); the current time by default.
    enrolment : Enrolment, optional
        Enrolled people (:func:`ecg_pipeline.predict.enrol.load_enrolment`): identity is then
        the enrolled person whose template scores highest (cosine similarity, in
        ``identity_confidence``), or "unknown" below the enrolment's threshold (calibrated on
        people left out of training, in ``identity_threshold``), instead of the identity head.

    Returns
    -------
    predictions : pandas.DataFrame
        One row per recording predicted, columns :data:`PREDICTION_COLUMNS`. ``file`` is the
        file's name only (folders can name a person); ``identity_best`` is the most probable
        subject whatever the threshold; ``identity_threshold`` is NaN for a model without one.
        Tasks the model lacks are left empty.
    errors : list of IngestError
        One per path or file that gave no prediction, naming it and why.

    Raises
    ------
    ModelMismatchError
        Before reading any file, when the configuration does not fit the model.
    """
    notes = check_model_fits(model, config, config_source)
    threshold, enrolled = model.identity_threshold, None
    if enrolment is not None:
        if not enrolment.people:
            raise ValueError(
                f"{enrolment.path}: nobody is enrolled; run `ecg-pipeline verify` on the "
                "training run or `ecg-pipeline enrol` first"
            )
        threshold = enrolment.threshold_value
        enrolled = (*enrolment.matrix(), threshold)
        notes.append(f"identity by {len(enrolment.people)} enrolled template(s), cosine score")
        if threshold is None:
            notes.append(NO_VERIFY_THRESHOLD_NOTE)
    elif threshold is None and "identity" in model.classes:
        notes.append(NO_THRESHOLD_NOTE)
    if model.normalisation is None:  # saved before it was recorded: the configuration's
        model = dataclasses.replace(model, normalisation=config.store.normalisation)
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    files, errors = find_recordings(paths, config)
    rows = []
    for path in files:
        try:
            rec = read_recording_windows(path, config, model)
        except IngestError as exc:
            errors.append(exc)
            continue
        row = _predict_one(rec, model, enrolled)
        row["notes"] = "; ".join([*rec.warnings, *notes])
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    table["identity_threshold"] = np.nan if threshold is None else float(threshold)
    table["model_name"] = model.name
    table["model_version"] = model.version
    table["ingest_hash"] = config.ingest_hash()
    table["predicted_at"] = now
    return table, errors
