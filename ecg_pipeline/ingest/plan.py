"""Step 3 of a batch: decide, against the store, what each labelled file becomes.

Each file is hashed (all of its files for a WFDB record) and compared with the store's catalog:
write it, replace an older version, skip it (the same bytes are already stored with the same
labels and ``[ingest]`` hash), or refuse it (a duplicate subject x condition, or the same bytes
under other labels). Nothing is read beyond the bytes that are hashed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from ecg_pipeline.cohort.labels import Labels
from ecg_pipeline.errors import (
    DuplicateRecordingError,
    IngestError,
    NotAcqFileError,
    UnreadableFileError,
)
from ecg_pipeline.ingest.results import FileResult
from ecg_pipeline.instrument import stage
from ecg_pipeline.io.readers import recording_files, sha256_files


@dataclass
class PlannedFile:
    labels: Labels
    sha256: str
    replaces: list[str] = field(default_factory=list)  # store files superseded by this one


@dataclass
class Plan:
    """What a batch will do: process these, skip those, refuse the rest, remove stale files."""

    to_process: list[PlannedFile]
    unchanged: list[FileResult]
    errors: list[IngestError]
    stale_files: list[str]


def plan_batch(
    labels: list[Labels],
    catalog: pd.DataFrame,
    ingest_hash: str,
    fmt: str,
    markers_hash: str | None = None,
) -> Plan:
    """Decide per file: write, replace, skip (bytes already stored) or refuse (duplicate).

    - the same bytes already stored with the same labels and ingest hash: nothing is written;
    - the same path with new bytes, or new labels for the same bytes: the stored recording is
      replaced;
    - the same bytes under an older ingest hash: processed again, replacing the old windows;
    - the same bytes stored from another file under other labels: refused (a label conflict);
    - another file with a stored subject x condition (x session), or two files of the batch
      with the same one: refused as duplicates, naming the other file.
    Stored files left from an earlier version of a path (a run stopped between writing the new
    version and removing the old one) are listed in ``stale_files`` for removal.

    A file split by event markers (no condition in its labels) is one unit: unchanged when
    every phase stored from its bytes has today's ``ingest_hash`` and ``markers_hash``
    (``[dataset.markers]``), else processed again, replacing them all. Its conditions are known
    only once it is read, so its duplicates are found when it is written.
    """
    to_process: list[PlannedFile] = []
    unchanged: list[FileResult] = []
    errors: list[IngestError] = []
    stale: list[str] = []
    rows = list(catalog.itertuples(index=False))
    by_sha = {row.sha256: row for row in rows}
    rows_by_sha = defaultdict(list)
    for row in rows:
        rows_by_sha[row.sha256].append(row)
    by_key, files_by_path, files_by_sha = defaultdict(list), defaultdict(set), defaultdict(set)
    for row in rows:
        by_key[(row.subject, row.condition, row.session or None)].append(row)
        files_by_path[row.source_path].add(row.file)
        files_by_sha[row.sha256].add(row.file)
    seen_sha: dict[str, str] = {}
    hashed: dict[str, str] = {}  # source path -> sha256, for the refusals' history
    for lab in labels:
        try:
            files = recording_files(lab.source_path, fmt)
            # What is wrong with the file itself comes before its identity: ten empty files
            # are ten "empty file" refusals, not one and nine "identical bytes".
            empty = [f for f in files if f.stat().st_size == 0]
            if empty:
                errors.append(NotAcqFileError(lab.source_path, _empty_reason(files, empty)))
                continue
            with stage("plan: sha256"):
                sha = sha256_files(files)
            hashed[lab.source_path] = sha
        except OSError as exc:
            errors.append(UnreadableFileError(lab.source_path, f"cannot read file: {exc}"))
            continue
        if sha in seen_sha:
            errors.append(
                DuplicateRecordingError(
                    lab.source_path, f"identical bytes to {seen_sha[sha]} in the same batch"
                )
            )
            continue
        seen_sha[sha] = lab.source_path
        if lab.by_markers:
            decided = _plan_marker_file(
                lab, sha, rows_by_sha[sha], ingest_hash, markers_hash, files_by_path
            )
            if isinstance(decided, IngestError):
                errors.append(decided)
            elif isinstance(decided, list):
                unchanged += decided
            else:
                to_process.append(decided)
            continue
        key = (lab.subject, lab.condition, lab.session or None)
        stored = by_sha.get(sha)
        if stored is not None:
            stored_key = (stored.subject, stored.condition, stored.session or None)
            if stored.source_path != lab.source_path and stored_key != key:
                errors.append(
                    DuplicateRecordingError(
                        lab.source_path,
                        f"identical bytes are already stored as {key_text(stored_key)} from "
                        f"{stored.source_path}; one of the two labels is wrong",
                    )
                )
                continue
            if stored.ingest_hash == ingest_hash and stored_key == key:
                note = (
                    ""
                    if stored.source_path == lab.source_path
                    else f"same bytes as {stored.source_path}"
                )
                old_versions = files_by_path[lab.source_path] - files_by_sha[sha]
                if old_versions:
                    stale += sorted(old_versions)
                    note = "; ".join(filter(None, [note, "removed windows of an earlier version"]))
                unchanged.append(
                    FileResult(
                        lab.source_path,
                        "unchanged",
                        stored.subject,
                        stored.condition,
                        stored.recording_id,
                        int(stored.n_windows),
                        note,
                    )
                )
                continue
        others = [
            r for r in by_key.get(key, []) if r.source_path != lab.source_path and r.sha256 != sha
        ]
        if others:
            errors.append(
                DuplicateRecordingError(
                    lab.source_path,
                    f"duplicate recording: {key_text(key)} is already stored from "
                    f"{others[0].source_path} (sha256 {others[0].sha256[:12]}); remove that "
                    "recording from the store or correct the labels",
                    pair=key,
                )
            )
            continue
        replaces = sorted(files_by_path[lab.source_path] | files_by_sha[sha])
        to_process.append(PlannedFile(lab, sha, replaces))

    # Two new files claiming one subject x condition: neither is trusted over the other.
    groups = defaultdict(list)
    for p in to_process:
        # A marker-split file's key is its path until it is read (its phases are checked then).
        condition = p.labels.condition if not p.labels.by_markers else p.labels.source_path
        groups[(p.labels.subject, condition, p.labels.session or None)].append(p)
    kept = []
    for key, group in groups.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        for p in group:
            others = [q.labels.source_path for q in group if q is not p]
            errors.append(
                DuplicateRecordingError(
                    p.labels.source_path,
                    f"duplicate recording: {key_text(key)} is also claimed by "
                    f"{', '.join(others)} in this batch; keep one",
                    pair=key,
                )
            )
    order = {id(p): i for i, p in enumerate(to_process)}
    kept.sort(key=lambda p: order[id(p)])
    for e in errors:
        e.sha256 = hashed.get(e.path, "")
    return Plan(kept, unchanged, errors, stale)


def _plan_marker_file(
    lab: Labels,
    sha: str,
    stored: list,
    ingest_hash: str,
    markers_hash: str | None,
    files_by_path: dict,
) -> PlannedFile | list[FileResult] | IngestError:
    """The plan of one file split by event markers: process it, leave it, or refuse it."""
    for row in stored:
        if row.source_path != lab.source_path and (row.subject, row.session or None) != (
            lab.subject,
            lab.session or None,
        ):
            return DuplicateRecordingError(
                lab.source_path,
                f"identical bytes are already stored as subject {row.subject} from "
                f"{row.source_path}; one of the two labels is wrong",
            )
    current = bool(stored) and all(
        row.ingest_hash == ingest_hash
        and getattr(row, "markers_hash", None) == markers_hash
        and (row.subject, row.session or None) == (lab.subject, lab.session or None)
        for row in stored
    )
    if current:
        return [
            FileResult(
                lab.source_path,
                "unchanged",
                row.subject,
                row.condition,
                row.recording_id,
                int(row.n_windows),
                f"phase {row.condition} from marker {row.marker!r}",
            )
            for row in stored
        ]
    replaces = sorted(files_by_path[lab.source_path] | {row.file for row in stored})
    return PlannedFile(lab, sha, replaces)


def _empty_reason(files: list, empty: list) -> str:
    if len(files) == 1:
        return "empty file (0 bytes)"
    return f"empty file (0 bytes): {', '.join(f.name for f in empty)} of the recording"


def key_text(key: tuple) -> str:
    subject, condition, session = key
    return f"subject {subject} x condition {condition}" + (
        f" x session {session}" if session else ""
    )
