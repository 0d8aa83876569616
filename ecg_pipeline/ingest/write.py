"""Step 5 of a batch: check the processed files against the contracts, write, record.

The recordings manifest and the windows table are checked by the pandera contracts as one table
per call (pandera's cost is mostly per call, not per row), then each recording is written
atomically and the files it replaces are removed. :func:`write_batch_tables` records the batch's
refusals and the store's recordings list beside the windows.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import (
    DuplicateRecordingError,
    IngestError,
    MetadataError,
    StoreFullError,
)
from ecg_pipeline.ingest.plan import key_text
from ecg_pipeline.ingest.process import ProcessedFile
from ecg_pipeline.ingest.results import FileResult
from ecg_pipeline.instrument import stage
from ecg_pipeline.io.atomic import atomic_write_text, folder_lock
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.io.tables import spreadsheet_safe, to_safe_csv


def rejections_table(errors: list[IngestError]) -> pd.DataFrame:
    """The rejections table, checked by :class:`data_contracts.rejections.RejectionsTable`."""
    from data_contracts.rejections import RejectionsTable

    rows = [
        {
            "file": e.path,
            "stage": e.stage,
            "status": e.status,
            "error": type(e).__name__,
            "reason": e.reason,
            "sha256": e.sha256,
        }
        for e in errors
    ]
    table = pd.DataFrame(rows, columns=["file", "stage", "status", "error", "reason", "sha256"])
    return RejectionsTable.validate(table) if rows else table


def validate_batch(
    processed: list[ProcessedFile], config: StudyConfig, dataset: str, ingest_hash: str
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
            "recording_id": np.repeat([p.recording_id for p in processed], sizes),
            "subject": manifest["subject"].to_numpy()[owner],
            "condition": manifest["condition"].to_numpy()[owner],
            "session": manifest["session"].to_numpy()[owner],
            "window_index": np.concatenate([p.windows.window_index for p in processed]),
            "start_s": np.concatenate([p.windows.start_s for p in processed]),
            "fs_hz": np.repeat([p.windows.fs_hz for p in processed], sizes),
            "source_path": manifest["source_path"].to_numpy()[owner],
            "source_sha256": manifest["sha256"].to_numpy()[owner],
            "ingest_hash": ingest_hash,
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
    processed: list[ProcessedFile], store: WindowStore, ingest_hash: str
) -> list[FileResult]:
    """Write each recording atomically, then remove the files it replaces.

    The recordings are committed under the store's lock, after checking the store as it is
    now: another ingest (a second CLI, flow run or watcher batch) may have stored the same
    subject x condition since this batch planned. Two ingests at once therefore never store
    two recordings for one key: the later one is refused as a duplicate, or finds its very
    bytes already stored (``unchanged``).
    """
    results = []
    if not processed:
        return results
    # One lock and one look at the store for the whole call: no other ingest commits while it
    # is held, and the plan already kept this batch's own files from colliding.
    with folder_lock(store.path, WRITE_LOCK), store_space(store):
        stored = store.catalog_rows()
        # The phases of one marker-split file replace its old windows together: what they
        # replace is removed once all are written, never a file one of them just wrote.
        written_by_source: dict[str, set[Path]] = {}
        for p in processed:
            meanwhile = stored_meanwhile(stored, p, ingest_hash)
            if meanwhile is not None:
                results.append(meanwhile)
                continue
            written = store.write_recording(
                p.manifest_row, p.windows, ingest_hash, recording_id=p.recording_id
            )
            written_by_source.setdefault(p.plan.labels.source_path, set()).add(written)
            results.append(_written(p))
        for p in processed:
            kept = written_by_source.get(p.plan.labels.source_path)
            if kept is not None:
                store.remove([f for f in p.plan.replaces if Path(f) not in kept])
    return results


def _written(p: ProcessedFile) -> FileResult:
    lab = p.plan.labels
    return FileResult(
        lab.source_path,
        "replaced" if p.plan.replaces else "written",
        lab.subject,
        lab.condition,
        p.recording_id,
        len(p.windows),
        "; ".join(p.windows.warnings),
    )


WRITE_LOCK = ".write.lock"


def stored_meanwhile(stored: list[dict], p: ProcessedFile, ingest_hash: str) -> FileResult | None:
    """What another ingest stored for this recording since the batch planned, if anything.

    ``stored`` is the store's catalog (:meth:`WindowStore.catalog_rows`), read under its lock.
    """
    lab = p.plan.labels
    key = (lab.subject, lab.condition, lab.session or None)
    superseded = {str(f) for f in p.plan.replaces}
    for row in stored:
        if row["file"] in superseded:
            continue
        same_key = (row["subject"], row["condition"], row.get("session") or None) == key
        # The same recording: the same bytes (and, for a marker-split file, the same phase).
        same_bytes = row["recording_id"] == p.recording_id
        if same_bytes and same_key and row["ingest_hash"] == ingest_hash:
            return FileResult(
                lab.source_path,
                "unchanged",
                lab.subject,
                lab.condition,
                row["recording_id"],
                int(row["n_windows"]),
                f"stored meanwhile by another ingest from {row['source_path']}",
            )
        if same_key or same_bytes:
            what = (
                f"{key_text(key)} was stored meanwhile by another ingest"
                if same_key
                else "identical bytes were stored meanwhile by another ingest under other labels"
            )
            return FileResult.refused(
                DuplicateRecordingError(
                    lab.source_path,
                    f"duplicate recording: {what}, from {row['source_path']} (sha256 "
                    f"{row['sha256'][:12]}); remove that recording from the store or correct the "
                    "labels",
                    pair=key if same_key else None,
                )
            )
    return None


def write_batch_tables(store: WindowStore, errors: list) -> tuple[pd.DataFrame, Path]:
    """Write the batch's ``_rejections.csv``, add its refusals to ``_rejections_history.csv``,
    and write the store's ``_recordings.csv`` (each atomically, formula-like cells neutralised).

    Returns the store's catalog and the rejections file's path.
    """
    with stage("finish: store catalog"):
        catalog = store.catalog()
    rejections_file = store.path / "_rejections.csv"
    table = rejections_table(errors)
    with store_space(store):
        store.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(rejections_file, to_safe_csv(table))
        append_rejections_history(store.path / HISTORY_FILE, table)
        if not catalog.empty:
            atomic_write_text(
                store.path / "_recordings.csv", to_safe_csv(catalog.drop(columns=["file"]))
            )
    return catalog, rejections_file


@contextlib.contextmanager
def store_space(store: WindowStore) -> Iterator[None]:
    """A full disk (or quota) under the store as :class:`StoreFullError` naming the store; the
    atomic writes have already removed their temp files."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(exc, StoreFullError):
            raise StoreFullError(store.path, exc) from exc
        raise


HISTORY_FILE = "_rejections_history.csv"
HISTORY_COLUMNS = [
    "first_seen",
    "last_seen",
    "times",
    "file",
    "sha256",
    "stage",
    "error",
    "reason",
]


def append_rejections_history(path: Path, rejections: pd.DataFrame) -> pd.DataFrame | None:
    """Keep every refusal: ``_rejections.csv`` holds the latest batch only, so the next batch
    would overwrite a refusal nobody has read yet.

    One row per (file, sha256, error, reason): new bytes under one name refused for the same
    reason are a row of their own. Each row says when it was first and last refused and by how
    many batches; deferred files (still being copied) are not refusals and are left out. A
    history written before the sha256 column gets it (empty for its old rows).
    Read-modify-write under the folder's lock, so batches finishing at once lose nothing.
    """
    import datetime as dt

    refused = rejections[rejections["status"] == "rejected"] if len(rejections) else rejections
    if refused.empty:  # nothing to add: the history is not read, nor rewritten
        return None
    with folder_lock(path.parent, ".history.lock"):
        history = (
            pd.read_csv(path, dtype=str, keep_default_na=False)
            if path.exists()
            else pd.DataFrame(columns=HISTORY_COLUMNS)
        )
        history = history.reindex(columns=HISTORY_COLUMNS, fill_value="")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        # Cells were stored neutralised; compare on the stored (neutralised) text.
        columns = ["file", "sha256", "stage", "error", "reason"]
        new = spreadsheet_safe(refused.reindex(columns=columns, fill_value="").astype(str))
        key = ["file", "sha256", "error", "reason"]
        index = {tuple(r): i for i, r in enumerate(history[key].itertuples(index=False))}
        history = history.copy()
        rows = []
        for r in new.itertuples(index=False):
            at = index.get((r.file, r.sha256, r.error, r.reason))
            if at is None:
                rows.append({"first_seen": now, "last_seen": now, "times": "1", **r._asdict()})
            else:
                history.loc[at, "last_seen"] = now
                history.loc[at, "times"] = str(int(history.loc[at, "times"]) + 1)
        history = pd.concat(
            [history, pd.DataFrame(rows, columns=HISTORY_COLUMNS)], ignore_index=True
        )
        atomic_write_text(path, history.to_csv(index=False))
    return history


def still_refused(history_path: Path, catalog: pd.DataFrame) -> pd.DataFrame:
    """The files any batch refused that are still there and not stored now (fixed files that
    were stored since, and files removed since, drop out): the latest history row of each."""
    if not history_path.is_file():
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    history = pd.read_csv(history_path, dtype=str, keep_default_na=False)
    history = history.reindex(columns=HISTORY_COLUMNS, fill_value="")
    latest = history.sort_values("last_seen").drop_duplicates("file", keep="last")
    stored = set(catalog["source_path"].astype(str)) if len(catalog) else set()
    # Absolute paths (what discovery records) never start like a formula: stored as they are.
    keep = [f not in stored and Path(f).exists() for f in latest["file"]]
    return latest[keep].reset_index(drop=True)
