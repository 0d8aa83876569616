"""The windows table: one row per stored window, as the Parquet store holds it.

The samples column (a fixed-size list of float32) is checked with numpy when it is built; this
contract covers the columns a person filters and joins on.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.recordings import SHA256_PATTERN

WINDOW_META_COLUMNS = [
    "dataset",
    "recording_id",
    "subject",
    "condition",
    "session",
    "window_index",
    "start_s",
    "fs_hz",
    "source_path",
    "source_sha256",
    "ingest_hash",
]


class WindowsTable(pa.DataFrameModel):
    dataset: Series[str]
    recording_id: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    subject: Series[str]
    condition: Series[str]
    session: Series[str] = pa.Field(nullable=True)
    window_index: Series[int] = pa.Field(ge=0)
    start_s: Series[float] = pa.Field(ge=0)
    fs_hz: Series[float] = pa.Field(gt=0)
    source_path: Series[str]
    source_sha256: Series[str] = pa.Field(str_matches=SHA256_PATTERN)
    ingest_hash: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16}$")

    class Config:
        strict = "filter"  # the samples column is checked with numpy, not here
        coerce = True

    @pa.dataframe_check
    def one_row_per_window(cls, df) -> bool:
        return not df.duplicated(["recording_id", "window_index"]).any()
