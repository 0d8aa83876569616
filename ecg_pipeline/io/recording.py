"""The in-memory form every reader returns, whatever the file format."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Segment:
    """A gap-free stretch of one channel, sampled uniformly.

    Attributes
    ----------
    samples : np.ndarray
        1-D float array in physical units (native byte order).
    fs_hz : float
        Sampling rate of ``samples``.
    start_s : float
        Offset of the first sample from the start of the recording, in seconds.
    """

    samples: np.ndarray
    fs_hz: float
    start_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.fs_hz


@dataclass(frozen=True)
class EventMarker:
    """One event marker of a recording, as the file stores it.

    Attributes
    ----------
    text : str
        The marker's label ("Rest", "Post run").
    time_s : float
        Its position from the start of the recording, in seconds.
    channel : str or None
        The channel it is attached to, or None for a global marker.
    """

    text: str
    time_s: float
    channel: str | None = None


@dataclass(frozen=True)
class RawRecording:
    """One ECG channel of one source file, before filtering.

    Most formats give one segment; formats with timestamp gaps (dp-motion-ecg CSVs) give one
    segment per gap-free stretch, so that no window straddles a gap.
    """

    source_path: str
    channel_name: str
    units: str
    segments: list[Segment]
    # Metadata the file itself carries (e.g. WFDB header comments). Kept for lineage only:
    # personal fields (age, sex, dates) must not travel further than the ingest summary.
    header: dict[str, str] = field(default_factory=dict)
    # Event markers in file order (AcqKnowledge files; empty for formats without them).
    markers: tuple[EventMarker, ...] = ()

    @property
    def native_fs_hz(self) -> float:
        return self.segments[0].fs_hz if self.segments else float("nan")

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)
