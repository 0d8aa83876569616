"""Helpers for tests: realistic synthetic ECG, small .acq files, folder checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def demo_ecg(duration_s: float = 12.0, fs_hz: float = 1000.0, subject: int = 1, condition="rest"):
    """A realistic synthetic ECG (mV) and respiration trace from the demo generator."""
    from ecg_pipeline.cohort.demo import synthesise_demo_recording

    return synthesise_demo_recording(subject, condition, duration_s=duration_s, fs_hz=fs_hz)


def write_ecg_file(
    path: Path,
    ecg_mV: np.ndarray,
    fs_hz: float = 1000.0,
    *,
    name: str = "ECG - ECG100C",
    extra: list[tuple[str, np.ndarray]] = (),
) -> Path:
    """Write a one-ECG-channel .acq file (plus optional extra channels at the same rate)."""
    from ecg_pipeline.io.acq_writer import AcqChannel, write_acq

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = [AcqChannel(name, "mV", np.asarray(ecg_mV, dtype=float))]
    channels += [AcqChannel(n, "mV", np.asarray(x, dtype=float)) for n, x in extra]
    return write_acq(path, channels, fs_hz)


def folder_checksums(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime (ns) of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def small_demo_study(root, *, epochs: int):
    """A 4-subject x 3-condition x 60-s demo cohort ingested under ``root``, and its config.

    Training settings: ``epochs``, one CPU thread, runs under ``root / "runs"``.
    """
    from ecg_pipeline.cohort.demo import write_demo_cohort
    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.ingest import ingest_folder

    write_demo_cohort(root / "inbox", n_subjects=4, duration_s=60.0)
    config = StudyConfig().with_overrides(
        {
            "store.root": root / "store",
            "discovery.settle_s": 0.0,
            "training.epochs": epochs,
            "training.cpu_threads": 1,
            "training.out_dir": root / "runs",
        }
    )
    assert ingest_folder(root / "inbox", config).count("written") == 12
    return config
