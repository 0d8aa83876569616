"""A batch of recordings into the window store: the one sequence every caller runs.

``ingest_folder`` (the command line, scripts), each task of the ``ingest-train`` flow and the
benchmarks call these same functions, in this order::

    store = open_store(config)                       # removes temp files of a killed run
    found = discover_batch(folder, config)           # 1 settled files + their labels
    found = check_labels(found, config)              # 2 the pandera labels contract
    plan = plan_files(found, store, config)          # 3 hash, decide against the catalog
    results = ingest_files(plan.to_process, config, store)  # 4-5 read, window, check, write
    report = finish_batch(store, config, found, plan, results)  # tables + cohort report
    decision = training_decision(report, train=True, force=False)

A flow runs step 4-5 once per file (a task each, so files are read side by side and each shows
in the UI); a script runs it once for the whole batch. Both go through :func:`ingest_files`.
Bad input never stops the batch: each refused file becomes a row of the rejections table.
Source recordings are only ever opened for reading.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ecg_pipeline.cohort.checks import cohort_report
from ecg_pipeline.cohort.labels import Labels, discover, label_files, read_manifest, validate_labels
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import DuplicateRecordingError, IngestError, TooShortError
from ecg_pipeline.ingest.plan import Plan, PlannedFile, key_text, plan_batch
from ecg_pipeline.ingest.process import ProcessedFile, process_planned
from ecg_pipeline.ingest.results import BatchReport, FileResult
from ecg_pipeline.ingest.write import (
    HISTORY_FILE,
    WRITE_LOCK,
    still_refused,
    validate_batch,
    write_batch,
    write_batch_tables,
)
from ecg_pipeline.instrument import stage
from ecg_pipeline.io.atomic import folder_lock, remove_dead_temp_files
from ecg_pipeline.io.store import WindowStore


@dataclass
class Discovered:
    """Files found and labelled (steps 1-2), and the files already refused."""

    folder: str
    labels: list[Labels] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)


@dataclass(frozen=True)
class TrainDecision:
    """Whether a batch should be followed by training, and why (said in the run's summary)."""

    train: bool
    reason: str


def open_store(config: StudyConfig, store_root: str | os.PathLike | None = None) -> WindowStore:
    """The dataset's window store, with the temp files of a run killed mid-write removed."""
    store = WindowStore(store_root or config.store.root, config.dataset.name)
    if store.path.exists():
        remove_dead_temp_files(store.path)
    return store


def discover_batch(
    folder: str | os.PathLike,
    config: StudyConfig,
    *,
    manifest: str | os.PathLike | None = None,
    now: float | None = None,
) -> Discovered:
    """Step 1: the settled recordings under ``folder`` and their labels (manifest or names).

    Parameters
    ----------
    folder : path-like
        The recordings; never modified, moved or deleted.
    config : StudyConfig
    manifest : path-like, optional
        A manifest CSV; by default ``<folder>/<[discovery] manifest_name>`` when it exists,
        else labels come from file names.
    now : float, optional
        The time against which the settle time is measured (tests).
    """
    with stage("discover"):
        ready, deferred = discover(folder, config, now=now)
        manifest_path = (
            Path(manifest) if manifest else Path(folder) / config.discovery.manifest_name
        )
        table = read_manifest(manifest_path) if manifest or manifest_path.exists() else None
        labels, label_errors = label_files(ready, config, table, folder)
    return Discovered(str(folder), labels, [*deferred, *label_errors])


def check_labels(found: Discovered, config: StudyConfig) -> Discovered:
    """Step 2: subject and condition labels against the study (the pandera labels contract)."""
    with stage("validate labels"):
        labels, invalid = validate_labels(found.labels, config)
    return Discovered(found.folder, labels, [*found.errors, *invalid])


def plan_files(found: Discovered, store: WindowStore, config: StudyConfig) -> Plan:
    """Step 3: hash each file and decide against the store; stale files are removed now."""
    with stage("plan"):
        with stage("plan: store catalog"):
            catalog = store.catalog()
        plan = plan_batch(
            found.labels,
            catalog,
            config.ingest_hash(),
            config.dataset.format,
            config.markers_hash(),
        )
        with folder_lock(store.path, WRITE_LOCK):
            store.remove(plan.stale_files)
    return plan


def ingest_files(
    planned: list[PlannedFile],
    config: StudyConfig,
    store: WindowStore,
    *,
    progress: bool = False,
) -> list[FileResult]:
    """Steps 4-5 for some planned files: read and window each, check them as one table, write.

    Returns
    -------
    list of FileResult
        ``written`` or ``replaced``, or ``rejected`` carrying the error (never raised), in the
        order of ``planned``.
    """
    ingest_hash = config.ingest_hash()
    processed, refused = [], []
    for p in _progress(planned, progress):
        try:
            with stage("process"):
                recordings, phases_refused = process_planned(p, config)
            processed += recordings
            refused += [FileResult.refused(e) for e in phases_refused]
        except IngestError as exc:
            refused.append(FileResult.refused(exc))
    processed, clashes = refuse_batch_duplicates(processed)
    refused += [FileResult.refused(e) for e in clashes]
    with stage("validate contracts"):
        processed, contract_errors = validate_batch(
            processed, config, config.dataset.name, ingest_hash
        )
    with stage("write"):
        written = write_batch(processed, store, ingest_hash)
    refused += [FileResult.refused(e) for e in contract_errors]
    stored_now = {r.path for r in written if r.status in ("written", "replaced")}
    _drop_superseded(refused, planned, store, kept=stored_now)
    results = written + refused
    order = {p.labels.source_path: i for i, p in enumerate(planned)}
    return sorted(results, key=lambda r: order.get(r.path, len(order)))


def refuse_batch_duplicates(
    processed: list[ProcessedFile],
) -> tuple[list[ProcessedFile], list[IngestError]]:
    """Refuse every recording of a subject x condition (x session) that two files of the batch
    claim. The plan does this for labelled files; a marker-split file's conditions are known
    only once it has been read, so the check is made again here."""
    claims = defaultdict(set)
    for p in processed:
        lab = p.plan.labels
        claims[(lab.subject, lab.condition, lab.session or None)].add(lab.source_path)
    kept, errors = [], []
    for p in processed:
        lab = p.plan.labels
        key = (lab.subject, lab.condition, lab.session or None)
        others = sorted(claims[key] - {lab.source_path})
        if not others:
            kept.append(p)
            continue
        errors.append(
            DuplicateRecordingError(
                lab.source_path,
                f"duplicate recording: {key_text(key)} is also claimed by {', '.join(others)} "
                "in this batch; keep one",
                pair=key,
            )
        )
        errors[-1].sha256 = p.plan.sha256
    return kept, errors


def _drop_superseded(
    refused: list[FileResult], planned: list[PlannedFile], store, kept: set[str] = frozenset()
) -> None:
    """Remove the stored windows a refused file would have replaced, and say so in its reason.

    They were made from an earlier version of the file or with other ``[ingest]`` settings;
    the settings and bytes of today refuse the recording, so keeping them would leave windows
    that no current ingest would make (and training refuses a store of mixed settings).
    Deferred files keep theirs: nothing is known to be wrong with them yet.
    """
    by_path = {p.labels.source_path: p for p in planned}
    for result in refused:
        p = by_path.get(result.path)
        # A marker-split file with some phases written has replaced its windows already.
        if result.status != "rejected" or p is None or not p.replaces or result.path in kept:
            continue
        with folder_lock(store.path, WRITE_LOCK):
            store.remove(p.replaces)
        error = result.error
        error.reason += (
            f"; the windows stored from it before ({len(p.replaces)} file(s), an earlier "
            "version or other [ingest] settings) were removed"
        )
        error.args = (f"{error.path}: {error.reason}",)


def finish_batch(
    store: WindowStore,
    config: StudyConfig,
    found: Discovered,
    plan: Plan,
    written: list[FileResult],
) -> BatchReport:
    """The end of a batch: every file's result, the rejections table, the recordings list and
    the cohort report (missing and duplicate subject x condition pairs, files too short)."""
    with stage("finish"):
        errors = [*found.errors, *plan.errors]
        results = [*plan.unchanged, *written, *(FileResult.refused(e) for e in errors)]
        results.sort(key=lambda r: r.path)
        hashed = {p.labels.source_path: p.sha256 for p in plan.to_process}
        for r in results:  # files refused while being read: their bytes were hashed when planned
            if r.error is not None and not r.error.sha256:
                r.error.sha256 = hashed.get(r.path, "")
        catalog, rejections_file = write_batch_tables(
            store, [r.error for r in results if r.error is not None]
        )
        refused = [r.error for r in results if r.error is not None]
        duplicates = {e.pair for e in refused if isinstance(e, DuplicateRecordingError) and e.pair}
        # Expected pairs cover every subject known: stored, configured, or offered in this batch.
        subjects = set(config.dataset.subjects) | {lab.subject for lab in found.labels}
        too_short = [e.path for e in refused if isinstance(e, TooShortError)]
        cohort = cohort_report(
            catalog, config.dataset.conditions, sorted(duplicates, key=str), too_short, subjects
        )
        still = still_refused(store.path / HISTORY_FILE, catalog)
    return BatchReport(
        config.dataset.name,
        store.path,
        config.ingest_hash(),
        results,
        catalog,
        cohort,
        rejections_file,
        still,
    )


def training_decision(
    report: BatchReport, *, train: bool = True, force: bool = False
) -> TrainDecision:
    """Whether to train after ``report``'s batch.

    - ``train=False``: never (ingest only);
    - nothing stored at all: nothing to train on, even with ``force``;
    - no recording written or replaced: a new model would be the one already logged (same bytes,
      same labels, same settings), so only ``force`` trains;
    - otherwise: train.
    """
    if not train:
        return TrainDecision(False, "ingest only (train=False)")
    if report.catalog.empty:
        return TrainDecision(False, "nothing stored to train on")
    if report.changed == 0 and not force:
        return TrainDecision(
            False,
            "no new or changed recordings (all bytes already stored): training skipped "
            "(force=true trains anyway)",
        )
    if report.changed == 0:
        return TrainDecision(True, "forced: no recording changed")
    return TrainDecision(True, f"{report.changed} recording(s) new or changed")


def ingest_folder(
    folder: str | os.PathLike,
    config: StudyConfig,
    *,
    manifest: str | os.PathLike | None = None,
    store_root: str | os.PathLike | None = None,
    progress: bool = False,
    now: float | None = None,
) -> BatchReport:
    """Ingest every ready recording under ``folder`` into the dataset's window store.

    Parameters
    ----------
    folder : path-like
        The recordings; never modified, moved or deleted.
    config : StudyConfig
        The study's configuration.
    manifest : path-like, optional
        A manifest CSV (see :func:`discover_batch`).
    store_root : path-like, optional
        Overrides ``[store] root``.
    progress : bool
        Show a progress bar on stderr.
    now : float, optional
        The time against which the settle time is measured (tests).

    Returns
    -------
    BatchReport
        Every file's result, the store's catalog, the cohort report and the rejections file.

    Examples
    --------
    >>> from ecg_pipeline import ingest_folder, load_config         # doctest: +SKIP
    >>> report = ingest_folder("data/inbox", load_config("configs/demo.toml"))  # doctest: +SKIP
    >>> report.counts                                               # doctest: +SKIP
    {'written': 45}
    """
    store = open_store(config, store_root)
    found = check_labels(discover_batch(folder, config, manifest=manifest, now=now), config)
    plan = plan_files(found, store, config)
    written = ingest_files(plan.to_process, config, store, progress=progress)
    return finish_batch(store, config, found, plan, written)


def _progress(items: list, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="file", desc="ingest", leave=False)
