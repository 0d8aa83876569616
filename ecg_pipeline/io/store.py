"""The Parquet window store: one folder per dataset, one file per recording.

Layout (hive-partitioned)::

    <root>/<dataset>/subject=S01/condition=rest/<recording_id>.parquet

A recording's identity is the sha256 of its source bytes (``recording_id`` is its first 16 hex
digits), so replacing one recording never touches another. Each file's footer carries the
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
PARTITIONING = ds.partitioning(
    pa.schema([("subject", pa.string()), ("condition", pa.string())]), flavor="hive"
)


def windows_schema(window_samples: int) -> pa.Schema:
    """Arrow schema of a recording file (samples: fixed-size list of float32)."""
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
        ]
    )


def recording_id_of(sha256: str) -> str:
    return sha256[:16]


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
        rows = []
        for f in self.recording_files():
            row = _footer_row(f)
            if row is not None:
                rows.append(row)
        count("store.catalog_calls")
        return pd.DataFrame(rows, columns=CATALOG_COLUMNS)

    # Writing --------------------------------------------------------------------------------
    def write_recording(self, manifest_row: dict, windows: Windows, ingest_hash: str) -> Path:
        """Write one recording's windows atomically; returns the file written.

        ``manifest_row`` is the recording's validated manifest row (labels, lineage, rate).
        An existing file of the same recording is replaced in one rename.
        """
        sha = manifest_row["sha256"]
        rid = recording_id_of(sha)
        n = len(windows)
        target = self.file_for(manifest_row["subject"], manifest_row["condition"], rid)
        footer = dict(manifest_row, recording_id=rid, ingest_hash=ingest_hash)
        footer["warnings"] = list(windows.warnings)

        def column(value) -> pa.Array:
            return pa.array([value] * n, pa.string())

        samples = np.ascontiguousarray(windows.samples, dtype=np.float32)
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
            ],
            schema=windows_schema(samples.shape[1]).with_metadata(
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
        table = self.read_table(filter=filter)
        count("store.window_reads")
        samples_col = table.column("samples").combine_chunks()
        width = samples_col.type.list_size
        x = samples_col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        meta = table.drop_columns(["samples"]).to_pandas()
        groups = meta["recording_id"].to_numpy() if normalisation == "recording" else None
        x = normalise_windows(x, normalisation, groups)
        return x, meta


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
