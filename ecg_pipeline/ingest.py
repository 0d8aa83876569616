"""Batch ingest: a folder of recordings into the dataset's window store.

The steps, each a function the command line and the Prefect flow both call:

1. :func:`~ecg_pipeline.cohort.labels.discover`: ready files, and files still being written;
2. :func:`~ecg_pipeline.cohort.labels.label_files` and ``validate_labels``: subject and
   condition per file, checked as one table by the pandera contract;
3. :func:`plan_batch`: hash each file and decide, against the store, what to write, replace,
   skip (same bytes) or refuse (duplicate subject x condition);
4. :func:`process_file`: read the ECG channel once, filter, resample, window (in memory;
   :func:`read_windows`, which prediction shares);
5. :func:`write_batch`: validate the batch's manifest and windows tables, write each recording
   atomically, remove what it replaces.

Bad input never stops the batch: each refused file becomes a row of the rejections table.
Source recordings are only ever opened for reading.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.cohort.checks import CohortReport, cohort_report
from ecg_pipeline.cohort.labels import Labels, discover, label_files, read_manifest, validate_labels
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import (
    DuplicateRecordingError,
    IngestError,
    MetadataError,
    StillBeingWrittenError,
    TooShortError,
    UnexpectedIngestError,
    UnreadableFileError,
)
from ecg_pipeline.io.atomic import atomic_write_text, remove_dead_temp_files
from ecg_pipeline.io.readers import read_recording, recording_files, sha256_files
from ecg_pipeline.io.recording import RawRecording
from ecg_pipeline.io.store import WindowStore, recording_id_of
from ecg_pipeline.signal.preprocess import Windows, segments_to_windows


@dataclass
class PlannedFile:
    labels: Labels
    sha256: str
    replaces: list[str] = field(default_factory=list)  # store files superseded by this one


@dataclass
class ProcessedFile:
    plan: PlannedFile
    manifest_row: dict
    windows: Windows


@dataclass
class FileResult:
    """What happened to one file: written, replaced, unchanged, rejected or deferred."""

    path: str
    status: str
    subject: str | None = None
    condition: str | None = None
    recording_id: str | None = None
    n_windows: int = 0
    note: str = ""
    error: IngestError | None = None


@dataclass
class IngestSummary:
    dataset: str
    store_path: Path
    config_hash: str
    results: list[FileResult]
    catalog: pd.DataFrame
    cohort: CohortReport
    rejections_file: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def rejections(self) -> pd.DataFrame:
        return rejections_table([r.error for r in self.results if r.error is not None])

    def window_counts(self) -> pd.DataFrame:
        """Windows stored per subject (rows) and condition (columns), whole store."""
        if self.catalog.empty:
            return pd.DataFrame()
        return self.catalog.pivot_table(
            index="subject", columns="condition", values="n_windows", aggfunc="sum", fill_value=0
        )


# --- 1-2: discover and label ------------------------------------------------------------------
def rejections_table(errors: list[IngestError]) -> pd.DataFrame:
    """The rejections table, checked by :class:`data_contracts.rejections.RejectionsTable`."""
    from data_contracts.rejections import RejectionsTable

    rows = [
        {
            "file": e.path,
            "stage": e.stage,
            "status": "deferred" if isinstance(e, StillBeingWrittenError) else "rejected",
            "error": type(e).__name__,
            "reason": e.reason,
        }
        for e in errors
    ]
    table = pd.DataFrame(rows, columns=["file", "stage", "status", "error", "reason"])
    return RejectionsTable.validate(table) if rows else table


# --- 3: plan against the store ----------------------------------------------------------------
@dataclass
class Plan:
    """What a batch will do: process these, skip those, refuse the rest, remove stale files."""

    to_process: list[PlannedFile]
    unchanged: list[FileResult]
    errors: list[IngestError]
    stale_files: list[str]


def plan_batch(labels: list[Labels], catalog: pd.DataFrame, config_hash: str, fmt: str) -> Plan:
    """Decide per file: write, replace, skip (bytes already stored) or refuse (duplicate).

    - the same bytes already stored with the same labels and config hash: nothing is written;
    - the same path with new bytes, or new labels for the same bytes: the stored recording is
      replaced;
    - the same bytes under an older config hash: processed again, replacing the old windows;
    - the same bytes stored from another file under other labels: refused (a label conflict);
    - another file with a stored subject x condition (x session), or two files of the batch
      with the same one: refused as duplicates, naming the other file.
    Stored files left from an earlier version of a path (a run stopped between writing the new
    version and removing the old one) are listed in ``stale_files`` for removal.
    """
    to_process: list[PlannedFile] = []
    unchanged: list[FileResult] = []
    errors: list[IngestError] = []
    stale: list[str] = []
    rows = list(catalog.itertuples(index=False))
    by_sha = {row.sha256: row for row in rows}
    by_key, files_by_path, files_by_sha = defaultdict(list), defaultdict(set), defaultdict(set)
    for row in rows:
        by_key[(row.subject, row.condition, row.session or None)].append(row)
        files_by_path[row.source_path].add(row.file)
        files_by_sha[row.sha256].add(row.file)
    seen_sha: dict[str, str] = {}
    for lab in labels:
        try:
            sha = sha256_files(recording_files(lab.source_path, fmt))
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
        key = (lab.subject, lab.condition, lab.session or None)
        stored = by_sha.get(sha)
        if stored is not None:
            stored_key = (stored.subject, stored.condition, stored.session or None)
            if stored.source_path != lab.source_path and stored_key != key:
                errors.append(
                    DuplicateRecordingError(
                        lab.source_path,
                        f"identical bytes are already stored as {_key_text(stored_key)} from "
                        f"{stored.source_path}; one of the two labels is wrong",
                    )
                )
                continue
            if stored.config_hash == config_hash and stored_key == key:
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
                    f"duplicate recording: {_key_text(key)} is already stored from "
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
        groups[(p.labels.subject, p.labels.condition, p.labels.session or None)].append(p)
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
                    f"duplicate recording: {_key_text(key)} is also claimed by "
                    f"{', '.join(others)} in this batch; keep one",
                    pair=key,
                )
            )
    order = {id(p): i for i, p in enumerate(to_process)}
    kept.sort(key=lambda p: order[id(p)])
    return Plan(kept, unchanged, errors, stale)


def _key_text(key: tuple) -> str:
    subject, condition, session = key
    return f"subject {subject} x condition {condition}" + (
        f" x session {session}" if session else ""
    )


# --- 4: read and preprocess one file ------------------------------------------------------------
def read_windows(path: str | os.PathLike, config: StudyConfig) -> tuple[RawRecording, Windows]:
    """Read one file's ECG channel once and cut it into windows as ``[ingest]`` says.

    The chain shared by ingest and prediction (``ecg_pipeline.predict``), so that a model sees
    new recordings exactly as it saw its training windows. Needs no labels.

    Raises
    ------
    IngestError
        A subclass naming the file and the reason; unexpected failures are wrapped too, so that
        one bad file never stops a batch.
    """
    path = str(path)
    try:
        raw = read_recording(path, config)
        return raw, segments_to_windows(raw.segments, config.ingest)
    except IngestError as exc:
        if exc.path:
            raise
        raise type(exc)(path, exc.reason) from exc
    except MemoryError as exc:
        raise UnreadableFileError(path, "not enough memory to read this file") from exc
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read file: {exc}") from exc
    except Exception as exc:  # a reader bug or an unforeseen layout: report, do not crash
        raise UnexpectedIngestError(path, f"unexpected {type(exc).__name__}: {exc}") from exc


def process_file(plan: PlannedFile, config: StudyConfig) -> ProcessedFile:
    """Read one file's ECG channel once and turn it into windows (nothing is written).

    Raises
    ------
    IngestError
        See :func:`read_windows`.
    """
    path = plan.labels.source_path
    raw, windows = read_windows(path, config)
    lab = plan.labels
    row = {
        "source_path": path,
        "subject": lab.subject,
        "condition": lab.condition,
        "session": lab.session,
        "date": lab.date or raw.header.get("date"),
        "sha256": plan.sha256,
        "channel": raw.channel_name,
        "native_fs_hz": float(raw.native_fs_hz),
        "duration_s": float(raw.duration_s),
        "n_windows": len(windows),
    }
    return ProcessedFile(plan, row, windows)


# --- 5: validate as a batch and write ------------------------------------------------------------
def validate_batch(
    processed: list[ProcessedFile], config: StudyConfig, dataset: str, config_hash: str
) -> tuple[list[ProcessedFile], list[IngestError]]:
    """Check the batch's recordings manifest and windows table against the contracts, once."""
    from pandera.errors import SchemaErrors

    from data_contracts._report import failures_by_row
    from data_contracts.recordings import manifest_schema
    from data_contracts.windows import WindowsTable

    if not processed:
        return [], []
    manifest = pd.DataFrame([p.manifest_row for p in processed])
    schema = manifest_schema(
        config.dataset.conditions, config.dataset.subject_pattern, config.dataset.subjects
    )
    bad: dict[int, list[str]] = {}
    try:
        schema.validate(manifest, lazy=True)
    except SchemaErrors as exc:
        bad.update({k: v for k, v in failures_by_row(exc, manifest).items() if k is not None})
    sizes = [len(p.windows) for p in processed]
    owner = np.repeat(np.arange(len(processed)), sizes)
    windows_meta = pd.DataFrame(
        {
            "dataset": dataset,
            "recording_id": np.repeat([recording_id_of(p.plan.sha256) for p in processed], sizes),
            "subject": manifest["subject"].to_numpy()[owner],
            "condition": manifest["condition"].to_numpy()[owner],
            "session": manifest["session"].to_numpy()[owner],
            "window_index": np.concatenate([p.windows.window_index for p in processed]),
            "start_s": np.concatenate([p.windows.start_s for p in processed]),
            "fs_hz": np.repeat([p.windows.fs_hz for p in processed], sizes),
            "source_path": manifest["source_path"].to_numpy()[owner],
            "source_sha256": manifest["sha256"].to_numpy()[owner],
            "config_hash": config_hash,
        }
    )
    try:
        WindowsTable.validate(windows_meta, lazy=True)
    except SchemaErrors as exc:
        for row, msgs in failures_by_row(exc, windows_meta).items():
            if row is None:
                raise ValueError(f"windows table malformed: {msgs}") from exc
            bad.setdefault(int(owner[row]), []).extend(msgs[:1])
    ok = [p for i, p in enumerate(processed) if i not in bad]
    errors = [
        MetadataError(processed[i].plan.labels.source_path, "; ".join(msgs))
        for i, msgs in sorted(bad.items())
    ]
    return ok, errors


def write_batch(
    processed: list[ProcessedFile], store: WindowStore, config_hash: str
) -> list[FileResult]:
    """Write each recording atomically, then remove the files it replaces."""
    results = []
    for p in processed:
        written = store.write_recording(p.manifest_row, p.windows, config_hash)
        stale = [f for f in p.plan.replaces if Path(f) != written]
        store.remove(stale)
        lab = p.plan.labels
        results.append(
            FileResult(
                lab.source_path,
                "replaced" if p.plan.replaces else "written",
                lab.subject,
                lab.condition,
                recording_id_of(p.plan.sha256),
                len(p.windows),
                "; ".join(p.windows.warnings),
            )
        )
    return results


# --- the whole batch ---------------------------------------------------------------------------
def ingest_folder(
    folder: str | os.PathLike,
    config: StudyConfig,
    *,
    manifest: str | os.PathLike | None = None,
    store_root: str | os.PathLike | None = None,
    progress: bool = False,
    now: float | None = None,
) -> IngestSummary:
    """Ingest every ready recording under ``folder`` into the dataset's window store.

    Parameters
    ----------
    folder : path-like
        The recordings; never modified, moved or deleted.
    config : StudyConfig
        The study's configuration.
    manifest : path-like, optional
        A manifest CSV; by default ``<folder>/<[discovery] manifest_name>`` when it exists,
        else labels come from file names.
    store_root : path-like, optional
        Overrides ``[store] root``.
    progress : bool
        Show a progress bar on stderr.
    now : float, optional
        The time against which the settle time is measured (tests).
    """
    folder = Path(folder)
    store = WindowStore(store_root or config.store.root, config.dataset.name)
    config_hash = config.ingest_hash()
    if store.path.exists():
        remove_dead_temp_files(store.path)

    ready, deferred = discover(folder, config, now=now)
    errors: list[IngestError] = list(deferred)
    manifest_path = Path(manifest) if manifest else folder / config.discovery.manifest_name
    table = None
    if manifest or manifest_path.exists():
        table = read_manifest(manifest_path)
    labels, label_errors = label_files(ready, config, table)
    errors += label_errors
    labels, invalid = validate_labels(labels, config)
    errors += invalid

    plan = plan_batch(labels, store.catalog(), config_hash, config.dataset.format)
    planned, results = plan.to_process, plan.unchanged
    errors += plan.errors
    store.remove(plan.stale_files)

    processed = []
    for plan in _progress(planned, progress):
        try:
            processed.append(process_file(plan, config))
        except IngestError as exc:
            errors.append(exc)
    processed, contract_errors = validate_batch(processed, config, config.dataset.name, config_hash)
    errors += contract_errors
    results += write_batch(processed, store, config_hash)
    results += [
        FileResult(
            e.path, "deferred" if isinstance(e, StillBeingWrittenError) else "rejected", error=e
        )
        for e in errors
    ]
    results.sort(key=lambda r: r.path)

    catalog, rejections_file = write_batch_tables(store, errors)
    dup_keys = {e.pair for e in errors if isinstance(e, DuplicateRecordingError) and e.pair}
    # Expected pairs cover every subject known: stored, configured, or offered in this batch.
    subjects = set(config.dataset.subjects) | {lab.subject for lab in labels}
    too_short = [e.path for e in errors if isinstance(e, TooShortError)]
    report = cohort_report(
        catalog, config.dataset.conditions, sorted(dup_keys, key=str), too_short, subjects
    )
    return IngestSummary(
        config.dataset.name, store.path, config_hash, results, catalog, report, rejections_file
    )


def write_batch_tables(store: WindowStore, errors: list) -> tuple[pd.DataFrame, Path]:
    """Write the batch's ``_rejections.csv`` and the store's ``_recordings.csv`` (atomically).

    Returns the store's catalog and the rejections file's path.
    """
    catalog = store.catalog()
    rejections_file = store.path / "_rejections.csv"
    store.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rejections_file, rejections_table(errors).to_csv(index=False))
    if not catalog.empty:
        atomic_write_text(
            store.path / "_recordings.csv", catalog.drop(columns=["file"]).to_csv(index=False)
        )
    return catalog, rejections_file


def _progress(items: list, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="file", desc="ingest", leave=False)
