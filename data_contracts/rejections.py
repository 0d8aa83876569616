"""The rejections table: every file the batch refused or deferred, and why."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

STAGES = [
    "discover",
    "read",
    "channel",
    "metadata",
    "markers",
    "signal",
    "quality",
    "beats",
    "store",
    "ingest",
]


class RejectionsTable(pa.DataFrameModel):
    file: Series[str]
    stage: Series[str] = pa.Field(isin=STAGES)
    # "rejected": fix the file or the configuration; "deferred": tried again on the next run.
    status: Series[str] = pa.Field(isin=["rejected", "deferred"])
    error: Series[str]
    reason: Series[str] = pa.Field(str_length={"min_value": 1})
    # Of the refused bytes when they were hashed; empty for files refused before being read.
    sha256: Series[str] = pa.Field(str_matches=r"^([0-9a-f]{64})?$")

    class Config:
        strict = True
        coerce = True
