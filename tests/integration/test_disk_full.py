"""The store's disk full in the middle of a batch: a clear error, no partial file, raw files
untouched, and a re-run with space completes the store. The store lives on a small tmpfs the
test mounts (root only); elsewhere the test is skipped with the reason."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import StoreFullError
from ecg_pipeline.ingest import ingest_folder, open_store
from ecg_pipeline.io.atomic import TEMP_MARKER

pytestmark = pytest.mark.integration


def _mount_tmpfs(folder: Path, size_bytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'})")


def _config(store_root: Path) -> StudyConfig:
    return StudyConfig().with_overrides({"store.root": store_root, "discovery.settle_s": 0.0})


def _fingerprints(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        f.name: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
        for f in sorted(folder.iterdir())
    }


def test_a_full_disk_stops_the_batch_cleanly_and_a_rerun_completes(tmp_path):
    inbox = tmp_path / "inbox"
    for subject in range(1, 9):
        write_demo_recording(inbox, subject, "rest", duration_s=60.0)
    reference = _config(tmp_path / "reference")
    ingest_folder(inbox, reference)
    needed = sum(f.stat().st_size for f in (tmp_path / "reference").rglob("*") if f.is_file())
    raw_before = _fingerprints(inbox)

    small = tmp_path / "small"
    _mount_tmpfs(small, needed // 2)  # room for about half of the recordings
    try:
        config = _config(small)
        with pytest.raises(StoreFullError, match="disk is full") as caught:
            ingest_folder(inbox, config)
        assert str(small) in str(caught.value)

        store_path = small / "demo"
        assert not [f for f in store_path.rglob("*") if TEMP_MARKER in f.name]
        written = open_store(config).recording_files()
        assert 0 < len(written) < 8  # it stopped in the middle
        for f in written:  # what is there is whole, and is what an unhindered run writes
            stored, twin = (
                pq.read_table(f),
                pq.read_table(next((tmp_path / "reference").rglob(f.name))),
            )
            # RR intervals hold NaN (no beat before the first), which Arrow's equals rejects.
            assert stored.drop(["rr_s"]).equals(twin.drop(["rr_s"]))
            np.testing.assert_array_equal(
                stored["rr_s"].combine_chunks().flatten(), twin["rr_s"].combine_chunks().flatten()
            )
        assert _fingerprints(inbox) == raw_before

        subprocess.run(["mount", "-o", f"remount,size={needed * 4}", str(small)], check=True)
        rerun = ingest_folder(inbox, config)
        assert {r.status for r in rerun.results} <= {"written", "unchanged"}
        x, meta = open_store(config).read_windows(normalisation="none")
        x_ref, meta_ref = open_store(reference).read_windows(normalisation="none")
        order = np.lexsort((meta["window_index"], meta["recording_id"]))
        order_ref = np.lexsort((meta_ref["window_index"], meta_ref["recording_id"]))
        np.testing.assert_array_equal(x[order], x_ref[order_ref])
        assert _fingerprints(inbox) == raw_before
    finally:
        subprocess.run(["umount", str(small)], check=False)
