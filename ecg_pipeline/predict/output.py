"""Writing a prediction batch: a Parquet of predictions and a CSV of refused files.

Both go to ``[predict] out_dir / <dataset> /`` under one UTC time stamp
(``predictions-20261103T101502Z.parquet`` and ``rejections-20261103T101502Z.csv``), each
written to a dot-named temp file and renamed, so a reader never sees half a file and an
earlier batch is never overwritten. Files are named, never their folders: these tables are
also logged to the tracking server, which more people read than the lab's data folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath

import pandas as pd

from ecg_pipeline.errors import IngestError
from ecg_pipeline.io.atomic import atomic_write_text
from ecg_pipeline.io.tables import to_safe_csv

__all__ = ["PredictionFiles", "prediction_table", "rejections_of", "write_predictions"]

_TYPES = {
    "file": "string",
    "sha256": "string",
    "duration_s": "float64",
    "n_windows": "int64",
    "identity": "string",
    "identity_best": "string",
    "identity_confidence": "float64",
    "identity_threshold": "float64",
    "activity": "string",
    "activity_confidence": "float64",
    "model_name": "string",
    "model_version": "string",
    "ingest_hash": "string",
    "notes": "string",
}


@dataclass(frozen=True)
class PredictionFiles:
    """Where one batch was written."""

    predictions: Path
    rejections: Path


def prediction_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """The predictions with fixed column types, so that every batch's Parquet reads alike."""
    out = predictions.astype({c: t for c, t in _TYPES.items() if c in predictions.columns})
    out["predicted_at"] = pd.to_datetime(out["predicted_at"], utc=True)
    return out.reset_index(drop=True)


def _arrow(table: pd.DataFrame):
    """The Arrow table with a fixed schema (an empty batch reads like a full one)."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64()}
    fields, arrays = [], []
    for column in table.columns:
        if column == "predicted_at":
            # Naive UTC values typed as UTC (pyarrow's own conversion of a tz-aware column goes
            # through a pandas accessor that pandas 3.1 deprecates).
            kind = pa.timestamp("us", tz="UTC")
            values = table[column].dt.tz_convert(None).to_numpy(dtype="datetime64[us]")
        else:
            kind, values = kinds[_TYPES[column]], table[column]
        fields.append(pa.field(column, kind))
        arrays.append(pa.array(values, type=kind, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def rejections_of(errors: list[IngestError]) -> pd.DataFrame:
    """Ingest's rejections table (same contract) with file names only, in ``file`` and ``reason``.

    OS errors quote a file's whole path; its folders may name a person.
    """
    from ecg_pipeline.ingest import rejections_table

    table = rejections_table(errors)
    paths = [e.path for e in errors]
    table["reason"] = [
        reason.replace(path, PurePath(path).name) if path else reason
        for reason, path in zip(table["reason"], paths, strict=True)
    ]
    table["file"] = [PurePath(path).name if path else path for path in paths]
    return table


def write_predictions(
    predictions: pd.DataFrame,
    errors: list[IngestError],
    out_dir: str | os.PathLike,
    dataset: str,
    *,
    stamp: pd.Timestamp | None = None,
) -> PredictionFiles:
    """Write the batch's predictions (Parquet) and rejections (CSV), atomically.

    Parameters
    ----------
    predictions : pandas.DataFrame
        From :func:`ecg_pipeline.predict.predict.predict_recordings`; may be empty (the Parquet
        then records that the batch ran and predicted nothing).
    errors : list of IngestError
        The files that gave no prediction.
    out_dir : path-like
        ``[predict] out_dir``; the files go to its ``<dataset>`` folder.
    dataset : str
        ``[dataset] name``.
    stamp : pandas.Timestamp, optional
        The batch's time (UTC) for the names; the rows' ``predicted_at`` by default.

    Returns
    -------
    PredictionFiles
    """
    import tempfile

    import pyarrow.parquet as pq

    table = prediction_table(predictions)
    if stamp is None:
        stamp = table["predicted_at"].iloc[0] if len(table) else pd.Timestamp.now(tz="UTC")
    folder = Path(out_dir) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    base = pd.Timestamp(stamp).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")
    fd, tmp = tempfile.mkstemp(prefix=".predictions-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        pq.write_table(_arrow(table), tmp, compression="zstd")
        # A hard link never replaces an existing file: two batches in the same second (the
        # command line and a served run, say) each get a name of their own, atomically.
        name, n = base, 1
        while True:
            try:
                os.link(tmp, folder / f"predictions-{name}.parquet")
                break
            except FileExistsError:
                n += 1
                name = f"{base}-{n}"
    finally:
        Path(tmp).unlink(missing_ok=True)
    files = PredictionFiles(
        folder / f"predictions-{name}.parquet", folder / f"rejections-{name}.csv"
    )
    atomic_write_text(files.rejections, to_safe_csv(rejections_of(errors)))
    return files
