"""Re-runs are idempotent; new bytes replace; duplicates are refused; crashes leave no debris."""

import os
import time

import pytest

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.io import store as store_module
from helpers import demo_ecg, write_ecg_file

pytestmark = pytest.mark.integration


def settle(folder):
    old = time.time() - 3600
    for p in folder.rglob("*.acq"):
        os.utime(p, (old, old))


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    for subject in (1, 2):
        for condition in ("rest", "exercise"):
            ecg, _ = demo_ecg(duration_s=9.0, subject=subject, condition=condition)
            write_ecg_file(folder / f"S{subject:02d}_{condition}.acq", ecg)
    settle(folder)
    return folder


def store_state(config):
    root = config.dataset_store
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*.parquet"))}


def statuses(summary):
    return {os.path.basename(r.path): r.status for r in summary.results}


def test_rerun_writes_nothing(inbox, config):
    first = ingest_folder(inbox, config)
    assert set(statuses(first).values()) == {"written"}
    state = store_state(config)
    second = ingest_folder(inbox, config)
    assert set(statuses(second).values()) == {"unchanged"}
    assert store_state(config) == state
    assert second.window_counts().to_numpy().sum() == 4 * 3


def test_new_bytes_at_the_same_path_replace_only_that_recording(inbox, config):
    ingest_folder(inbox, config)
    before = store_state(config)
    ecg, _ = demo_ecg(duration_s=15.0, subject=1, condition="rest")
    write_ecg_file(inbox / "S01_rest.acq", ecg)
    settle(inbox)
    summary = ingest_folder(inbox, config)
    assert statuses(summary)["S01_rest.acq"] == "replaced"
    after = store_state(config)
    assert len(after) == 4  # the old file is gone, not kept beside the new one
    changed = set(before) ^ set(after)
    assert all("subject=S01/condition=rest" in str(p) for p in changed)
    assert {p: after[p] for p in after if p in before} == {p: before[p] for p in after if p in before}
    counts = summary.window_counts()
    assert counts.loc["S01", "rest"] == 5 and counts.loc["S02", "rest"] == 3


def test_another_file_for_a_stored_pair_is_a_duplicate(inbox, config, tmp_path):
    ingest_folder(inbox, config)
    other = tmp_path / "more"
    write_ecg_file(other / "S01_rest.acq", demo_ecg(duration_s=9.0, subject=7)[0])
    settle(other)
    summary = ingest_folder(other, config)
    (result,) = summary.results
    assert result.status == "rejected"
    assert "already stored from" in result.error.reason and str(inbox / "S01_rest.acq") in result.error.reason
    assert len(summary.catalog) == 4


def test_same_bytes_elsewhere_write_nothing(inbox, config, tmp_path):
    ingest_folder(inbox, config)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "S01_rest.acq").write_bytes((inbox / "S01_rest.acq").read_bytes())
    settle(copy)
    state = store_state(config)
    (result,) = ingest_folder(copy, config).results
    assert result.status == "unchanged" and "same bytes as" in result.note
    assert store_state(config) == state


def test_a_new_ingest_configuration_rewrites_windows_without_duplicates(inbox, config):
    ingest_folder(inbox, config)
    ingest = config.ingest.model_copy(
        update={"windows": config.ingest.windows.model_copy(update={"window_s": 4.5})}
    )
    changed: StudyConfig = config.model_copy(update={"ingest": ingest})
    summary = ingest_folder(inbox, changed)
    assert set(statuses(summary).values()) == {"replaced"}
    assert set(summary.catalog["config_hash"]) == {changed.ingest_hash()}
    assert len(summary.catalog) == 4 and summary.window_counts().to_numpy().sum() == 4 * 2


def test_crash_in_the_middle_of_a_batch_then_rerun(inbox, config, monkeypatch):
    real_write = store_module._write_parquet_file
    calls = {"n": 0}

    def crash_on_third(table, path):
        calls["n"] += 1
        if calls["n"] == 3:
            path.write_bytes(b"PAR1 partial")
            raise KeyboardInterrupt  # as if the process were stopped mid-write
        real_write(table, path)

    monkeypatch.setattr(store_module, "_write_parquet_file", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        ingest_folder(inbox, config)
    files = list(config.dataset_store.rglob("*"))
    assert not [p for p in files if p.name.startswith(".")]  # no temp file left visible or not
    assert len([p for p in files if p.suffix == ".parquet"]) == 2
    monkeypatch.setattr(store_module, "_write_parquet_file", real_write)
    summary = ingest_folder(inbox, config)
    assert sorted(statuses(summary).values()) == ["unchanged", "unchanged", "written", "written"]
    assert summary.window_counts().to_numpy().sum() == 4 * 3
