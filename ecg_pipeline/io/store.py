"""The Parquet window store: one folder per dataset, one file per recording.

Layout (hive-partitioned)::

    <root>/<dataset>/subject=S01/condition=rest/<recording_id>.parquet

A recording's identity is the sha256 of its source bytes (``recording_id`` is its first 16 hex
digits; a phase of a file split by event markers adds its condition, :func:`phase_recording_id`),
so replacing one recording never touches another. Each file's footer carries the
recording's manifest row, so the catalog of what is stored is read from footers alone and there is
no second index to drift out of step. Files are written to a dot-named temp file and renamed:
readers (pyarrow ignores names starting with ``.`` or ``_``) never see a partial file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ecg_pipeline.instrument import count
from ecg_pipeline.io.atomic import atomic_target
from ecg_pipeline.signal.windows import Windows, normalise_windows

FOOTER_KEY = b"ecg_pipeline.recording"
# The footer's key for the recording's signal-quality account (ecg_pipeline.ingest.quality).
QUALITY_KEY = "quality"
PARTITIONING = ds.partitioning(
    pa.schema([("subject", pa.string()), ("condition", pa.string())]), flavor="hive"
)


# Per-window beat columns (see ecg_pipeline.signal.beats): R-peak times from the window's start
# and the RR interval before each (s), each beat's segment at the footer's beat_fs_hz, and why
# the window's beats are not to be trusted ("" when they are).
BEAT_COLUMNS = ("r_peak_s", "rr_s", "beat_segments", "beat_flag")


def windows_schema(window_samples: int, beat_samples: int | None = None) -> pa.Schema:
    """Arrow schema of a recording file (samples: fixed-size list of float32).

    With ``beat_samples``, the :data:`BEAT_COLUMNS` follow (segments: a list per window of
    fixed-size lists of float32).
    """
    beat_fields = []
    if beat_samples is not None:
        beat_fields = [
            ("r_peak_s", pa.list_(pa.float32())),
            ("rr_s", pa.list_(pa.float32())),
            ("beat_segments", pa.list_(pa.list_(pa.float32(), beat_samples))),
            ("beat_flag", pa.string()),
        ]
    return pa.schema(
        [
            ("dataset", pa.string()),
            ("recording_id", pa.string()),
            ("subject", pa.string()),
            ("condition", pa.string()),
            ("session", pa.string()),
            ("window_index", pa.int32()),
            ("start_s", pa.float64()),
            ("fs_hz", pa.float64()),
            ("samples", pa.list_(pa.float32(), window_samples)),
            ("source_path", pa.string()),
            ("source_sha256", pa.string()),
            ("ingest_hash", pa.string()),
            *beat_fields,
        ]
    )


def recording_id_of(sha256: str) -> str:
    return sha256[:16]


def phase_recording_id(sha256: str, condition: str) -> str:
    """The id of one condition's phase of a file split by event markers: the file's bytes and
    the condition, so each phase is a recording of its own and stays one across re-runs."""
    import hashlib

    return hashlib.sha256(f"{sha256}:{condition}".encode()).hexdigest()[:16]


def _partition_value(value: str) -> str:
    # Hive paths must not contain separators; ids are validated upstream, this is a last guard.
    if not value or "/" in value or "\\" in value or value in {".", ".."}:
        raise ValueError(f"unsafe partition value {value!r}")
    return value


class WindowStore:
    """The windows of one dataset.

    Parameters
    ----------
    root : path-like
        The store root (``[store] root``); the dataset's folder is ``root / dataset``.
    dataset : str
        Dataset name (``[dataset] name``).
    """

    def __init__(self, root: str | os.PathLike, dataset: str):
        self.dataset = dataset
        self.path = Path(root) / dataset

    def __repr__(self) -> str:
        return f"WindowStore({str(self.path)!r})"

    # Where things are -----------------------------------------------------------------------
    def file_for(self, subject: str, condition: str, recording_id: str) -> Path:
        return (
            self.path
            / f"subject={_partition_value(subject)}"
            / f"condition={_partition_value(condition)}"
            / f"{recording_id}.parquet"
        )

    def recording_files(self) -> list[Path]:
        if not self.path.exists():
            return []
        return sorted(
            p
            for p in self.path.glob("subject=*/condition=*/*.parquet")
            if not p.name.startswith((".", "_"))
        )

    # The catalog ----------------------------------------------------------------------------
    def catalog(self) -> pd.DataFrame:
        """One row per stored recording, read from the files' footers (no samples read).

        Columns: the recordings manifest's (source_path, subject, condition, session, date,
        sha256, channel, native_fs_hz, duration_s, n_windows) plus recording_id, ingest_hash,
        warnings and file.

        A footer is parsed once per process: later calls stat the files and parse only those
        written or replaced since (see :func:`caching`).
        """
        return pd.DataFrame(self.catalog_rows(), columns=CATALOG_COLUMNS)

    def catalog_rows(self) -> list[dict]:
        """The catalog as plain dicts, one per stored recording: what a check under the
        store's lock reads once per written recording, without building a DataFrame."""
        rows = []
        for f in self.recording_files():
            row = _footer_row(f)
            if row is not None:
                rows.append(row)
        count("store.catalog_calls")
        return rows

    # Writing --------------------------------------------------------------------------------
    def write_recording(
        self,
        manifest_row: dict,
        windows: Windows,
        ingest_hash: str,
        recording_id: str | None = None,
    ) -> Path:
        """Write one recording's windows atomically; returns the file written.

        ``manifest_row`` is the recording's validated manifest row (labels, lineage, rate).
        ``recording_id`` defaults to the source bytes' (:func:`recording_id_of`); a phase of a
        marker-split file has its own (:func:`phase_recording_id`). An existing file of the same
        recording is replaced in one rename.
        """
        sha = manifest_row["sha256"]
        rid = recording_id or recording_id_of(sha)
        n = len(windows)
        target = self.file_for(manifest_row["subject"], manifest_row["condition"], rid)
        footer = dict(manifest_row, recording_id=rid, ingest_hash=ingest_hash)
        footer["warnings"] = list(windows.warnings)
        if windows.beats is not None:
            footer["beat_fs_hz"] = windows.beat_fs_hz
        if windows.quality is not None:
            footer[QUALITY_KEY] = windows.quality

        def column(value) -> pa.Array:
            return pa.array([value] * n, pa.string())

        samples = np.ascontiguousarray(windows.samples, dtype=np.float32)
        beat_arrays, beat_samples = [], None
        if windows.beats is not None:
            beat_arrays, beat_samples = _beat_arrays(windows.beats)
        table = pa.Table.from_arrays(
            [
                column(self.dataset),
                column(rid),
                column(manifest_row["subject"]),
                column(manifest_row["condition"]),
                column(manifest_row.get("session")),
                pa.array(windows.window_index, pa.int32()),
                pa.array(windows.start_s, pa.float64()),
                pa.array(np.full(n, windows.fs_hz), pa.float64()),
                pa.FixedSizeListArray.from_arrays(pa.array(samples.ravel()), samples.shape[1]),
                column(manifest_row["source_path"]),
                column(sha),
                column(ingest_hash),
                *beat_arrays,
            ],
            schema=windows_schema(samples.shape[1], beat_samples).with_metadata(
                {FOOTER_KEY: json.dumps(footer, default=str).encode()}
            ),
        )
        atomic_write_parquet(table, target)
        _remember_footer(target, {**footer, "file": str(target)})
        return target

    def remove(self, files: Sequence[str | os.PathLike]) -> None:
        """Remove stored recording files (never source recordings)."""
        for f in files:
            f = Path(f)
            if self.path not in f.parents:
                raise ValueError(f"{f} is not inside the store {self.path}")
            f.unlink(missing_ok=True)

    # Reading --------------------------------------------------------------------------------
    def read_table(self, columns: Sequence[str] | None = None, filter=None) -> pa.Table:
        """Read selected columns and rows, e.g. ``filter=pc.field("subject") == "S01"``."""
        files = self.recording_files()
        if not files:
            raise FileNotFoundError(f"no windows stored in {self.path}")
        view = ds.dataset(str(self.path), format="parquet", partitioning=PARTITIONING)
        return view.to_table(columns=list(columns) if columns else None, filter=filter)

    def read_windows(
        self, normalisation: str = "window", filter=None
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Windows as a (n, window_samples) float32 array plus their metadata, normalised.

        Parameters
        ----------
        normalisation : {"window", "recording", "window_zscore", "none"}
            Min-max to [0, 1] per window (the paper) or per recording, zero mean and unit
            deviation per window, or none.
        filter : pyarrow expression, optional
            Which rows to read.
        """
        names = ds.dataset(str(self.path), format="parquet", partitioning=PARTITIONING)
        columns = [c for c in names.schema.names if c not in BEAT_COLUMNS or c == "beat_flag"]
        table = self.read_table(columns=columns, filter=filter)
        count("store.window_reads")
        samples_col = table.column("samples").combine_chunks()
        width = samples_col.type.list_size
        x = samples_col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        meta = table.drop_columns(["samples"]).to_pandas()
        groups = meta["recording_id"].to_numpy() if normalisation == "recording" else None
        x = normalise_windows(x, normalisation, groups)
        return x, meta

    def read_beats(self, filter=None) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
        """Each window's beat segments and RR intervals, in physical units, with identifiers.

        Returns
        -------
        segments : list of np.ndarray
            Per window, (k, L) float32 beat segments.
        rr_s : list of np.ndarray
            Per window, (k,) float32 interval before each beat (NaN: none before it).
        meta : pandas.DataFrame
            recording_id, window_index, beat_flag of each window, in the same order.

        Raises
        ------
        ValueError
            The store holds windows written without beats (re-ingest it).
        """
        table = self.read_table(
            columns=["recording_id", "window_index", "beat_flag", "rr_s", "beat_segments"],
            filter=filter,
        )
        count("store.beat_reads")
        return _split_beats(table)


def _beat_arrays(beats) -> tuple[list[pa.Array], int]:
    """The :data:`BEAT_COLUMNS` arrays of one recording's :class:`WindowBeats`."""
    counts = np.array([len(p) for p in beats.peak_s], dtype=np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    width = next((s.shape[1] for s in beats.segments if s.ndim == 2), 0)

    def flat(parts: list[np.ndarray]) -> pa.Array:
        if not parts or counts.sum() == 0:
            return pa.array(np.empty(0, np.float32))
        return pa.array(np.concatenate(parts).astype(np.float32).ravel())

    segment_values = pa.FixedSizeListArray.from_arrays(flat(beats.segments), width)
    return [
        pa.ListArray.from_arrays(offsets, flat(beats.peak_s)),
        pa.ListArray.from_arrays(offsets, flat(beats.rr_s)),
        pa.ListArray.from_arrays(offsets, segment_values),
        pa.array([str(f) for f in beats.flags], pa.string()),
    ], width


def _split_beats(table: pa.Table) -> tuple[list[np.ndarray], list[np.ndarray], pd.DataFrame]:
    if "beat_segments" not in table.column_names:
        raise ValueError("the store holds windows written without beats: re-ingest it")
    segments_col = table.column("beat_segments").combine_chunks()
    rr_col = table.column("rr_s").combine_chunks()
    width = segments_col.type.value_type.list_size
    values = segments_col.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    rr_values = rr_col.flatten().to_numpy(zero_copy_only=False)
    # A sliced array's offsets need not start at 0; flatten() starts at the first one.
    offsets = segments_col.offsets.to_numpy()
    offsets = offsets - offsets[0]
    rr_offsets = rr_col.offsets.to_numpy()
    rr_offsets = rr_offsets - rr_offsets[0]
    segments = [values[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    rr = [rr_values[a:b] for a, b in zip(rr_offsets[:-1], rr_offsets[1:], strict=True)]
    meta = table.select(["recording_id", "window_index", "beat_flag"]).to_pandas()
    return segments, rr, meta


CATALOG_COLUMNS = [
    "recording_id",
    "source_path",
    "subject",
    "condition",
    "session",
    "date",
    "sha256",
    "channel",
    "native_fs_hz",
    "duration_s",
    "n_windows",
    "n_beats",
    "n_beat_flagged",
    # A phase of a file split by event markers: the marker, its span in the file (s) and the
    # [dataset.markers] hash it was cut with; empty for a file stored whole.
    "marker",
    "phase_start_s",
    "phase_end_s",
    "markers_hash",
    "ingest_hash",
    "warnings",
    "file",
]

# Parsed footers by file, with the (inode, size, mtime) they were parsed at: a file replaced by
# a rename has a new inode, so a stale entry is never used.
_footers: dict[str, tuple[tuple[int, int, int], dict]] = {}
_footers_lock = threading.Lock()
_caching = True


@contextlib.contextmanager
def caching(enabled: bool) -> Iterator[None]:
    """Turn the in-process caches of footers and loaded windows on or off (benchmarks compare).

    Off, every :meth:`WindowStore.catalog` parses every footer and every load of a dataset's
    windows reads the files again, as before the caches existed. A process-wide switch (a
    flow's tasks run in worker threads), meant for one benchmark at a time.
    """
    global _caching
    saved, _caching = _caching, enabled
    try:
        yield
    finally:
        _caching = saved


def caching_enabled() -> bool:
    return _caching


def _file_key(f: Path) -> tuple[int, int, int]:
    st = f.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _footer_row(f: Path) -> dict | None:
    try:
        key = _file_key(f)
        with _footers_lock:
            hit = _footers.get(str(f)) if _caching else None
        if hit is not None and hit[0] == key:
            return dict(hit[1])
        meta = pq.read_schema(f).metadata or {}
    except FileNotFoundError:  # removed by a concurrent batch since it was listed
        return None
    count("store.footers_read")
    if FOOTER_KEY not in meta:
        return None
    row = json.loads(meta[FOOTER_KEY])
    if "ingest_hash" not in row:  # footers written before the name was settled
        row["ingest_hash"] = row.pop("config_hash", None)
    row["file"] = str(f)
    if _caching:
        with _footers_lock:
            _footers[str(f)] = (key, dict(row))
    return row


def _remember_footer(f: Path, row: dict) -> None:
    """The footer of a file this process just wrote: a later catalog need not parse it."""
    if not _caching:
        return
    try:
        key = _file_key(f)
    except FileNotFoundError:
        return
    with _footers_lock:
        _footers[str(f)] = (key, json.loads(json.dumps(row, default=str)))


def atomic_write_parquet(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` atomically (see :func:`ecg_pipeline.io.atomic.atomic_target`)."""
    with atomic_target(target) as tmp:
        _write_parquet_file(table, tmp)


def _write_parquet_file(table: pa.Table, path: Path) -> None:
    # zstd keeps float32 ECG windows smaller than snappy at similar speed.
    pq.write_table(table, path, compression="zstd")
