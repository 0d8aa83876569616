"""The recordings manifest: one row per source recording.

Labels (subject, condition, session, date) come from a manifest CSV beside the recordings or from
file names; lineage (source path, sha256) and signal facts (channel, native rate, duration) from
reading the file. Subjects appear by pseudonymous id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import pandera.pandas as pa
from pandera.typing import Series

SHA256_PATTERN = r"^[0-9a-f]{64}$"
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
LABEL_COLUMNS = ["source_path", "subject", "condition", "session", "date"]


class RecordingLabels(pa.DataFrameModel):
    """What a recording is of: checked before any file is read."""

    source_path: Series[str] = pa.Field(unique=True)
    subject: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    condition: Series[str]
    session: Series[str] = pa.Field(nullable=True, str_length={"max_value": 64})
    date: Series[str] = pa.Field(nullable=True, str_matches=ISO_DATE_PATTERN)

    class Config:
        strict = True
        coerce = True


class RecordingsManifest(RecordingLabels):
    """Labels plus what reading the file established.

    A file split by event markers gives one row per phase: the same ``source_path`` (and
    sha256) with its own condition, the marker that opened the phase and its span in seconds
    from the start of the file; these are empty for a file that is one recording.
    """

    source_path: Series[str]  # unique with the condition (see Config.unique)
    sha256: Series[str] = pa.Field(str_matches=SHA256_PATTERN)
    channel: Series[str]
    native_fs_hz: Series[float] = pa.Field(gt=0)
    duration_s: Series[float] = pa.Field(gt=0)
    n_windows: Series[int] = pa.Field(ge=1)
    n_beats: Series[int] = pa.Field(ge=1)  # R peaks with a whole segment
    n_beat_flagged: Series[int] = pa.Field(ge=0)  # windows flagged too_few_beats/implausible_rr
    # Optional columns: a manifest of whole-file recordings need not carry them.
    marker: Optional[Series[str]] = pa.Field(nullable=True)  # noqa: UP045 (pandera reads Optional)
    phase_start_s: Optional[Series[float]] = pa.Field(nullable=True, ge=0)  # noqa: UP045 (pandera reads Optional)
    phase_end_s: Optional[Series[float]] = pa.Field(nullable=True, gt=0)  # noqa: UP045 (pandera reads Optional)
    markers_hash: Optional[Series[str]] = pa.Field(nullable=True)  # noqa: UP045 (pandera reads Optional)

    class Config:
        strict = True
        coerce = True
        unique = ["source_path", "condition"]


def _study_checks(
    schema: pa.DataFrameSchema,
    conditions: Sequence[str],
    subject_pattern: str,
    subjects: Sequence[str] = (),
) -> pa.DataFrameSchema:
    # Added to the model's own checks (the subject's length bound among them), not instead.
    subject_checks = [*schema.columns["subject"].checks, pa.Check.str_matches(subject_pattern)]
    if subjects:
        subject_checks.append(pa.Check.isin(list(subjects)))
    condition_checks = [*schema.columns["condition"].checks, pa.Check.isin(list(conditions))]
    return schema.update_columns(
        {"condition": {"checks": condition_checks}, "subject": {"checks": subject_checks}}
    )


def labels_schema(
    conditions: Sequence[str], subject_pattern: str, subjects: Sequence[str] = ()
) -> pa.DataFrameSchema:
    """:class:`RecordingLabels` with the study's conditions and subject ids."""
    return _study_checks(RecordingLabels.to_schema(), conditions, subject_pattern, subjects)


def manifest_schema(
    conditions: Sequence[str], subject_pattern: str, subjects: Sequence[str] = ()
) -> pa.DataFrameSchema:
    """:class:`RecordingsManifest` with the study's conditions and subject ids."""
    return _study_checks(RecordingsManifest.to_schema(), conditions, subject_pattern, subjects)
