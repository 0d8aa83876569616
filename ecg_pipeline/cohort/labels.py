"""Finding recordings and saying what each is of (subject, condition, session, date).

Labels come from a manifest CSV beside the recordings when there is one, else from the file name
(``<subject>_<condition>.acq``, split at the first underscore) or the dataset's own naming
(dp-motion-ecg, ECG-ID). They are validated as one table per batch by the pandera contract
before any file is read.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import (
    FormatError,
    IngestError,
    MetadataError,
    StillBeingWrittenError,
    UnsafePathError,
)
from ecg_pipeline.io.readers import recording_files

MANIFEST_COLUMNS = ["file", "subject", "condition", "session", "date"]


@dataclass(frozen=True)
class Labels:
    source_path: str
    subject: str
    # None: the file holds several conditions, found from its event markers at ingest
    # ([dataset.markers]); each phase is then stored with its own condition.
    condition: str | None
    session: str | None = None
    date: str | None = None

    @property
    def by_markers(self) -> bool:
        return self.condition is None


def discover(folder: str | os.PathLike, config: StudyConfig, *, now: float | None = None):
    """List the recordings under ``folder`` that are ready, and those not to be read now.

    Files whose name starts with ``.`` (temp files of a copy in progress) are ignored. A file
    modified less than ``[discovery] settle_s`` ago is deferred, not waited for: the next run
    picks it up. A symbolic link (to a file, or on the way to it) that resolves outside
    ``folder`` is refused without being opened: a link named like a recording must not make
    ingest read, hash or quote a file the lab never put there.

    Returns
    -------
    ready : list of Path
    not_ready : list of IngestError
        :class:`StillBeingWrittenError` (deferred) and :class:`UnsafePathError` (refused).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: recordings folder not found")
    # Absolute paths: a recording's lineage and "same path, new bytes" must not depend on how
    # the folder was typed.
    folder = folder.resolve()
    fmt = config.dataset.format
    if fmt == "dp_motion_csv":
        from ecg_pipeline.io.dp_motion import discover_dp_motion

        candidates = discover_dp_motion(folder)
    elif fmt == "wfdb":
        from ecg_pipeline.io.wfdb_records import discover_ecg_id

        candidates = discover_ecg_id(folder)
    else:
        suffixes = tuple(s.lower() for s in config.discovery.suffixes)
        candidates = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in suffixes
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.is_file()
        )
    now = time.time() if now is None else now
    ready, deferred = [], []
    for p in candidates:
        outside = _leads_outside(p, folder, fmt)
        if outside:
            deferred.append(UnsafePathError(p, outside))
            continue
        try:
            # Every file of the recording (a WFDB record's .dat too) must have settled.
            mtime = max(f.stat().st_mtime for f in recording_files(p, fmt) if f.exists())
        except (FileNotFoundError, ValueError):
            continue  # removed since the listing: nothing to ingest
        age_s = now - mtime
        # A modification time in the future (a share whose clock runs ahead) says nothing about
        # copying; deferring on it would defer the file until the clocks agree.
        if 0 <= age_s < config.discovery.settle_s:
            deferred.append(
                StillBeingWrittenError(
                    p,
                    f"modified {age_s:.1f} s ago (settle time {config.discovery.settle_s:g} s): "
                    "may still be copying; deferred to the next run",
                )
            )
        else:
            ready.append(p)
    return ready, deferred


def wait_until_settled(
    folder: str | os.PathLike,
    config: StudyConfig,
    *,
    max_wait_s: float,
    on_wait=None,
    clock=time.time,
    sleep=time.sleep,
) -> float:
    """Wait, at most ``max_wait_s``, until no recording under ``folder`` is still being copied.

    For an explicit command, which has no next run to defer to; the watched folder defers
    instead. Waits until the youngest unsettled file would reach ``[discovery] settle_s``, then
    looks again (a copy still going on keeps its file young). ``on_wait(n_files, bound_s)`` is
    called once, before the first wait.

    Returns
    -------
    float
        Seconds waited (0 when every file had settled).
    """
    started = clock()
    told = False
    while True:
        _, not_ready = discover(folder, config, now=clock())
        young = [e for e in not_ready if isinstance(e, StillBeingWrittenError)]
        waited = clock() - started
        if not young or waited >= max_wait_s:
            return waited
        if on_wait is not None and not told:
            on_wait(len(young), max_wait_s)
            told = True
        now = clock()
        remaining = []
        for e in young:
            try:
                mtime = max(
                    f.stat().st_mtime for f in recording_files(e.path, config.dataset.format)
                )
            except (FileNotFoundError, ValueError):
                continue
            remaining.append(config.discovery.settle_s - (now - mtime))
        pause = max(remaining, default=0.0) + 0.1
        sleep(min(max(pause, 0.1), max_wait_s - waited))


def _leads_outside(path: Path, folder: Path, fmt: str) -> str | None:
    """Why ``path`` (each file of its recording) is not inside ``folder`` once links are
    followed, or None. Nothing is opened: only the links are resolved."""
    try:
        # The named file first: a WFDB header is opened to find its signal files.
        files = [path] if not path.resolve().is_relative_to(folder) else recording_files(path, fmt)
    except (OSError, ValueError):
        return None  # vanished or unreadable: the steps after say so
    for f in files:
        target = f.resolve()
        if not target.is_relative_to(folder):
            return (
                "a symbolic link that leads outside the recordings folder (to "
                f"{_printable(str(target))}): refused unread"
            )
    return None


def _printable(text: str, limit: int = 120) -> str:
    """``text`` with control characters replaced and cut to ``limit`` characters, for messages."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV (columns ``file, subject, condition``; optional ``session, date``).

    ``file`` is relative to the manifest's folder (``/`` or ``\\`` separators). Every value is
    read as text so that ids such as ``007`` keep their zeros. Other columns (notes, or personal
    data such as age) are ignored: nothing beyond the labels is read or stored.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise FormatError(path, f"manifest is not a readable CSV: {exc}") from exc
    missing = {"file", "subject", "condition"} - set(df.columns)
    if missing:
        raise FormatError(
            path, f"manifest lacks column(s) {sorted(missing)}; has {list(df.columns)}"
        )
    for col in MANIFEST_COLUMNS:
        if col not in df.columns:
            df[col] = ""
    df = df[MANIFEST_COLUMNS].apply(lambda s: s.str.strip())
    dupes = df.loc[df["file"].duplicated(), "file"].tolist()
    if dupes:
        raise FormatError(path, f"manifest lists file(s) more than once: {dupes}")
    df["listed_as"] = df["file"]
    df["file"] = [str((path.parent / f.replace("\\", "/")).resolve()) for f in df["file"]]
    return df.replace({"": None})


def unsafe_manifest_entry(listed_as: str, resolved: Path, folder: Path | None) -> str | None:
    """Why a manifest's ``file`` cell must not be read, or None.

    An absolute path, a ``..`` part, or a path that leads outside the recordings folder once
    links are followed: a manifest names recordings in its folder, never other files.
    """
    text = listed_as.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return "an absolute path in the manifest: name recordings relative to its folder"
    if ".." in text.split("/"):
        return "a '..' in the manifest's path: name recordings inside its folder"
    if folder is not None and not resolved.is_relative_to(folder):
        return "leads outside the recordings folder (a symbolic link on the way): refused unread"
    return None


def labels_from_name(path: Path, config: StudyConfig) -> Labels:
    """Labels from the file's name, by the dataset's convention.

    Raises
    ------
    MetadataError
        The name does not follow the convention.
    """
    aliases = config.dataset.condition_aliases
    fmt = config.dataset.format
    if fmt == "dp_motion_csv":
        from ecg_pipeline.io.dp_motion import parse_dp_motion_name

        try:
            name = parse_dp_motion_name(path)
        except IngestError as exc:
            raise MetadataError(path, exc.reason) from exc
        return Labels(
            str(path), name.subject, aliases.get(name.activity, name.activity), name.session
        )
    if fmt == "wfdb":
        from ecg_pipeline.io.wfdb_records import parse_ecg_id_name

        try:
            name = parse_ecg_id_name(path)
        except IngestError as exc:
            raise MetadataError(path, exc.reason) from exc
        if len(config.dataset.conditions) != 1:
            raise MetadataError(path, "WFDB names carry no condition: configure exactly one")
        return Labels(str(path), name.person, config.dataset.conditions[0], name.record)
    subject, sep, condition = path.stem.partition("_")
    if not sep and subject and config.dataset.markers.phases:
        return Labels(str(path), subject, None)  # one subject, its phases named by markers
    if not sep or not subject or not condition:
        raise MetadataError(
            path,
            "unknown subject or condition: the file name must be <subject>_<condition>"
            f"{path.suffix} (e.g. S07_deep_breathing{path.suffix}) or be listed in a manifest",
        )
    return Labels(str(path), subject, aliases.get(condition, condition))


def label_files(
    files: list[Path],
    config: StudyConfig,
    manifest: pd.DataFrame | None = None,
    folder: str | os.PathLike | None = None,
) -> tuple[list[Labels], list[IngestError]]:
    """Labels for each file, from the manifest when given, else from its name.

    A manifest row naming an absolute path, a ``..`` part or a file outside ``folder`` (the
    recordings folder) is refused with :class:`UnsafePathError`, and no file is read for it.
    """
    by_file = {}
    errors: list[IngestError] = []
    if manifest is not None:
        root = Path(folder).resolve() if folder is not None else None
        for row in manifest.itertuples(index=False):
            listed = getattr(row, "listed_as", None) or row.file
            why = unsafe_manifest_entry(listed, Path(row.file), root)
            if why:
                errors.append(UnsafePathError(_printable(listed), why))
            else:
                by_file[row.file] = row
    labelled = []
    aliases = config.dataset.condition_aliases
    for p in files:
        try:
            if manifest is not None:
                row = by_file.get(str(p.resolve()))
                if row is None:
                    raise MetadataError(
                        p, "unknown subject or condition: not listed in the manifest"
                    )
                condition = (
                    aliases.get(row.condition, row.condition) if row.condition else row.condition
                )
                labelled.append(Labels(str(p), row.subject, condition, row.session, row.date))
            else:
                labelled.append(labels_from_name(p, config))
        except IngestError as exc:
            errors.append(exc)
    if manifest is not None:
        errors += [
            MetadataError(f, "listed in the manifest, but no such file")
            for f in by_file
            if not Path(f).exists()
        ]
    return labelled, errors


def validate_labels(
    labels: list[Labels], config: StudyConfig
) -> tuple[list[Labels], list[IngestError]]:
    """Check the batch's labels against the study's contract, once for the whole batch.

    Returns the valid labels and a :class:`MetadataError` per invalid file naming the field.
    """
    from pandera.errors import SchemaErrors

    from data_contracts._report import failures_by_row
    from data_contracts.recordings import labels_schema

    if not labels:
        return [], []
    by_markers_allowed = bool(config.dataset.markers.phases)
    unsplittable = [lab for lab in labels if lab.by_markers and not by_markers_allowed]
    labels = [lab for lab in labels if lab not in unsplittable]
    errors: list[IngestError] = [
        MetadataError(
            lab.source_path,
            "no condition: name it in the file name (<subject>_<condition>) or the manifest, "
            "or configure [dataset.markers] phases to split the file at its event markers",
        )
        for lab in unsplittable
    ]
    if not labels:
        return [], errors
    # A file split by markers is checked for its subject here and per phase after reading.
    df = pd.DataFrame(
        [vars(lab) | {"condition": lab.condition or config.dataset.conditions[0]} for lab in labels]
    )
    schema = labels_schema(
        config.dataset.conditions, config.dataset.subject_pattern, config.dataset.subjects
    )
    try:
        schema.validate(df, lazy=True)
        return labels, errors
    except SchemaErrors as exc:
        failures = failures_by_row(exc, df)
    if None in failures:
        raise ValueError(f"labels table malformed: {failures[None]}")
    ok = []
    allowed = ", ".join(config.dataset.conditions)
    for i, lab in enumerate(labels):
        if i in failures:
            hint = (
                f" (allowed conditions: {allowed})"
                if any("condition" in m for m in failures[i])
                else ""
            )
            errors.append(MetadataError(lab.source_path, "; ".join(failures[i]) + hint))
        else:
            ok.append(lab)
    return ok, errors
