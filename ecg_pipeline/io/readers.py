"""One entry point that reads a recording of any supported format as the configuration says."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.recording import RawRecording


def read_recording(path: str | os.PathLike, config: StudyConfig) -> RawRecording:
    """Read the ECG channel of one source file in the dataset's format (read-only)."""
    fmt = config.dataset.format
    channel = config.ingest.channel
    if fmt == "acq":
        from ecg_pipeline.io.acq import read_acq

        return read_acq(path, channel)
    if fmt == "dp_motion_csv":
        from ecg_pipeline.io.dp_motion import read_dp_motion_csv

        ts = config.ingest.timestamps
        return read_dp_motion_csv(
            path,
            nominal_fs_hz=ts.nominal_fs_hz,
            max_gap_s=ts.max_gap_s,
            min_segment_s=ts.min_segment_s,
        )
    if fmt == "wfdb":
        from ecg_pipeline.io.wfdb_records import read_wfdb_record

        choice = channel.index if channel.index is not None else channel.name
        return read_wfdb_record(path, channel=choice, channel_pattern=channel.pattern)
    raise ValueError(f"unknown dataset format {fmt!r}")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, streamed (the file is not held in memory)."""
    with open(Path(path), "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
