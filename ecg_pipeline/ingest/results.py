"""What a batch did with each file, and what it leaves behind for a person to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ecg_pipeline.cohort.checks import CohortReport
from ecg_pipeline.errors import IngestError


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

    @classmethod
    def refused(cls, error: IngestError) -> FileResult:
        """A file the batch did not store: rejected or deferred, as its error's class says."""
        return cls(error.path, error.status, error=error)


@dataclass
class BatchReport:
    """The end of a batch: what happened to each file, the store's catalog, the cohort checks.

    Attributes
    ----------
    dataset : str
    store_path : Path
        The dataset's store folder.
    ingest_hash : str
        The ``[ingest]`` hash the batch wrote with.
    results : list of FileResult
        One per file offered, sorted by path.
    catalog : pandas.DataFrame
        One row per stored recording, after the batch (the whole store).
    cohort : CohortReport
        Missing and duplicate subject x condition pairs, files too short.
    rejections_file : Path
        ``_rejections.csv`` of this batch.
    still_refused : pandas.DataFrame
        Every file any batch refused that is still there and not stored now: the latest row
        of each from ``_rejections_history.csv`` (this batch's refusals included).
    """

    dataset: str
    store_path: Path
    ingest_hash: str
    results: list[FileResult]
    catalog: pd.DataFrame
    cohort: CohortReport
    rejections_file: Path
    still_refused: pd.DataFrame = field(default_factory=pd.DataFrame)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def counts(self) -> dict[str, int]:
        """Files per status (written, replaced, unchanged, rejected, deferred)."""
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def changed(self) -> int:
        """Recordings written or replaced by this batch."""
        return self.count("written") + self.count("replaced")

    @property
    def errors(self) -> list[IngestError]:
        return [r.error for r in self.results if r.error is not None]

    @property
    def rejections(self) -> pd.DataFrame:
        from ecg_pipeline.ingest.write import rejections_table

        return rejections_table(self.errors)

    def window_counts(self) -> pd.DataFrame:
        """Windows stored per subject (rows) and condition (columns), whole store."""
        if self.catalog.empty:
            return pd.DataFrame()
        return self.catalog.pivot_table(
            index="subject", columns="condition", values="n_windows", aggfunc="sum", fill_value=0
        )

    def summary(self) -> dict:
        """A small JSON-able account of the batch (what a flow returns and logs)."""
        return {
            "counts": self.counts,
            "rejected": [
                {"file": e.path, "error": type(e).__name__, "reason": e.reason} for e in self.errors
            ],
            "rejections_file": str(self.rejections_file),
            "stored_recordings": len(self.catalog),
            "cohort": self.cohort.lines(),
        }
