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


def recording_files(path: str | os.PathLike, fmt: str) -> list[Path]:
    """Every file whose bytes make up the recording named by ``path``.

    A WFDB record is its header plus the signal files it names (ECG-ID: ``rec_1.hea`` and
    ``rec_1.dat``); every other format is one file.
    """
    path = Path(path)
    if fmt != "wfdb":
        return [path]
    from ecg_pipeline.io.wfdb_records import signal_files

    return [path, *signal_files(path)]


def sha256_files(paths: list[Path]) -> str:
    """Hex sha256 identifying a recording: its files' bytes, streamed, one after another.

    For one file this is the plain sha256 of its bytes. Each further file is preceded by its
    name, so that moving bytes from one file of a record to another changes the identity.
    """
    digest = hashlib.sha256()
    for i, p in enumerate(paths):
        if i:
            digest.update(b"\0" + p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
