"""Enrolled people: one template per person, stored beside the model, pickle-free.

``templates.json`` in a checkpoint folder holds, for the weights beside it (their sha256, so
templates never outlive the network that made them):

* ``people``: per person the template (the mean of their enrolment recordings' unit
  embeddings, :mod:`ecg_pipeline.training.verification`), how many recordings made it, where
  they came from (``"training"``: ``ecg-pipeline verify`` from the person's training-side
  recordings; ``"enrol"``: ``ecg-pipeline enrol`` from new recordings, with their sha256), and
  when;
* ``threshold``: the cosine similarity below which ``predict`` answers "unknown", calibrated by
  ``verify`` on people left out of training (None until it has run).

Every change is read, checked and written whole (:func:`~ecg_pipeline.io.atomic.atomic_write_text`):
an enrolment that fails (a recording refused by ingest's checks, a person already enrolled)
leaves the file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.errors import (
    AlreadyEnrolledError,
    EnrolmentError,
    EnrolmentRecordingError,
    IngestError,
    TemplatesFileError,
    TemplatesWeightsError,
)

__all__ = [
    "TEMPLATES_FILE",
    "Enrolment",
    "enrol_person",
    "load_enrolment",
    "store_training_enrolment",
]

TEMPLATES_FILE = "templates.json"
FORMAT = 1
# A person's name is a file-name-safe token: it is printed, logged and written into tables.
PERSON_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@dataclass
class Enrolment:
    """The enrolled people of one model and its "unknown" threshold.

    Attributes
    ----------
    path : Path
        Its ``templates.json``.
    weights_sha256 : str
        Of the ``model.pt`` the templates were made with.
    people : dict of str to dict
        Person -> ``{"template": [floats], "n_recordings", "source", ...}``.
    threshold : dict or None
        :class:`~ecg_pipeline.training.verification.StrangerThreshold` as a dict.
    """

    path: Path
    weights_sha256: str
    people: dict[str, dict] = field(default_factory=dict)
    threshold: dict | None = None

    @property
    def threshold_value(self) -> float | None:
        return float(self.threshold["value"]) if self.threshold else None

    def matrix(self) -> tuple[list[str], np.ndarray]:
        """The people (sorted) and their templates, one unit row each."""
        names = sorted(self.people)
        return names, np.array([self.people[n]["template"] for n in names], dtype=np.float64)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "weights_sha256": self.weights_sha256,
            "threshold": self.threshold,
            "people": {n: self.people[n] for n in sorted(self.people)},
        }

    def save(self) -> None:
        from ecg_pipeline.io.atomic import atomic_write_text

        atomic_write_text(self.path, json.dumps(self.to_json(), indent=1))


def _folder(model) -> Path:
    folder = Path(model.source)
    if model.version is not None or not (folder / "model.pt").is_file():
        raise EnrolmentError(
            model.source,
            f"{model.describe()} is not a checkpoint folder: templates are stored beside "
            "model.pt, and need the backbone's features; name the fold folder of the training "
            "run (it holds model.pt and model.json)",
        )
    return folder


def _weights_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()


def load_enrolment(model) -> Enrolment:
    """The model's enrolment (empty when nothing is enrolled yet).

    Raises
    ------
    EnrolmentError
        The model is not a checkpoint folder.
    TemplatesFileError
        The file is not valid JSON of this format.
    TemplatesWeightsError
        It was made with other weights than the folder's ``model.pt`` now holds.
    """
    folder = _folder(model)
    path, sha = folder / TEMPLATES_FILE, _weights_sha256(folder)
    if not path.is_file():
        return Enrolment(path, sha)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
        people = {str(k): dict(v) for k, v in raw["people"].items()}
        stored_sha = str(raw["weights_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TemplatesFileError(
            path, f"not a templates file this version can read ({exc}); move it aside"
        ) from exc
    if stored_sha != sha:
        raise TemplatesWeightsError(
            path,
            "made with other weights than model.pt now holds (the model was retrained): run "
            "`ecg-pipeline verify` and enrol the people again",
        )
    return Enrolment(path, sha, people, raw.get("threshold"))


def recording_embedding(model, x: np.ndarray) -> np.ndarray:
    """One recording's unit embedding from its model input windows."""
    from ecg_pipeline.training.verification import recording_embeddings

    _, emb = recording_embeddings(model.embeddings(x), np.zeros(len(x), dtype=np.int64))
    return emb[0]


def enrol_person(
    person: str,
    paths: Sequence[str | os.PathLike],
    config,
    model,
    *,
    replace: bool = False,
    now: pd.Timestamp | None = None,
) -> Enrolment:
    """Add (or with ``replace``, replace) one person's template from a few recordings.

    Parameters
    ----------
    person : str
        The name ``predict`` will answer with (letters, digits, ``_ . -``).
    paths : sequence of path-like
        The person's recordings; each is read, checked and windowed as ingest does.
    config : StudyConfig
        The configuration the model was trained with (its ``[ingest]`` hash is checked).
    model : Model
        A checkpoint folder's model.
    replace : bool
        Replace a person already enrolled (otherwise refused).

    Returns
    -------
    Enrolment
        As stored.

    Raises
    ------
    AlreadyEnrolledError
        The person is enrolled and ``replace`` was not asked for.
    EnrolmentRecordingError
        A recording refused by ingest's checks (naming the file, ingest's stage and the
        reason) or named twice.
    EnrolmentError
        A bad name, no recording, or the model not a checkpoint folder (and the
        :func:`load_enrolment` errors). Nothing stored is changed in any case.
    ModelMismatchError
        The configuration does not fit the model.
    """
    from ecg_pipeline.predict.predict import check_model_fits, read_recording_windows

    if not re.match(PERSON_PATTERN, str(person)):
        raise EnrolmentError(
            None,
            f"person {person!r}: use 1 to 64 letters, digits, '_', '.' or '-' (starting with a "
            "letter or digit)",
        )
    enrolment = load_enrolment(model)
    if person in enrolment.people and not replace:
        held = enrolment.people[person]
        raise AlreadyEnrolledError(
            enrolment.path,
            f"{person} is already enrolled ({held.get('source')}, {held.get('n_recordings')} "
            "recording(s)); pass --replace to replace the template, or choose another name",
        )
    if not paths:
        raise EnrolmentError(None, f"no recording given for {person}")
    check_model_fits(model, config)
    embeddings, files = [], []
    for path in paths:
        try:
            rec = read_recording_windows(path, config, model)
        except IngestError as exc:
            raise EnrolmentRecordingError(
                path,
                f"refused by ingest's checks ({type(exc).__name__}): {exc.reason}; nothing was "
                "enrolled",
                stage=exc.stage,
            ) from exc
        if rec.sha256 in {f["sha256"] for f in files}:
            raise EnrolmentRecordingError(path, "named twice (same contents as another file given)")
        embeddings.append(recording_embedding(model, rec.x))
        files.append({"file": Path(path).name, "sha256": rec.sha256, "n_windows": len(rec.x)})
    from ecg_pipeline.training.verification import person_templates

    _, template = person_templates(np.array(embeddings), [person] * len(embeddings))
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    enrolment.people[person] = {
        "template": [float(v) for v in template[0]],
        "n_recordings": len(files),
        "source": "enrol",
        "recordings": files,
        "enrolled_at": now.isoformat(),
    }
    enrolment.save()
    return enrolment


def store_training_enrolment(model, templates: dict[str, dict], threshold: dict) -> Enrolment:
    """Store ``verify``'s templates of the known people and its threshold for ``model``.

    People enrolled with ``enrol`` are kept; people of the training side are replaced (their
    templates are rebuilt from the same recordings each time).
    """
    try:
        enrolment = load_enrolment(model)
    except TemplatesWeightsError:
        # Retrained: the old templates belong to other weights; start again.
        folder = _folder(model)
        enrolment = Enrolment(folder / TEMPLATES_FILE, _weights_sha256(folder))
    kept = {n: p for n, p in enrolment.people.items() if p.get("source") == "enrol"}
    enrolment.people = {**templates, **kept}
    enrolment.threshold = dict(threshold)
    enrolment.save()
    return enrolment
