"""Re-runs are idempotent; new bytes replace; duplicates are refused; crashes leave no debris."""

import os
import time
from pathlib import Path

import pytest
from helpers import demo_ecg, write_ecg_file

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.io import store as store_module

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
    assert {p: after[p] for p in after if p in before} == {
        p: before[p] for p in after if p in before
    }
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
    assert (
        "already stored from" in result.error.reason
        and str(inbox / "S01_rest.acq") in result.error.reason
    )
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
    changed: StudyConfig = config.with_overrides({"ingest.windows.window_s": 4.5})
    summary = ingest_folder(inbox, changed)
    assert set(statuses(summary).values()) == {"replaced"}
    assert set(summary.catalog["ingest_hash"]) == {changed.ingest_hash()}
    assert len(summary.catalog) == 4 and summary.window_counts().to_numpy().sum() == 4 * 2


def test_a_recording_the_new_settings_refuse_loses_its_old_windows_and_training_says_why(
    inbox, config
):
    """Settings under which one recording is refused: its windows from the old settings go
    (named in its reason), and a store of mixed settings is refused by training."""
    from ecg_pipeline.training.run import train_run

    ingest_folder(inbox, config)
    # S02_rest shortened below two windows of 4.5 s: the new settings refuse it as too short.
    ecg, _ = demo_ecg(duration_s=9.0, subject=2, condition="rest")
    changed: StudyConfig = config.with_overrides({"ingest.windows.window_s": 4.5})
    stale = config.dataset_store
    (old_file,) = (stale / "subject=S02" / "condition=rest").glob("*.parquet")
    old_bytes = old_file.read_bytes()
    write_ecg_file(inbox / "S02_rest.acq", ecg[: int(len(ecg) * 0.4)])
    settle(inbox)
    summary = ingest_folder(inbox, changed)
    result = {os.path.basename(r.path): r for r in summary.results}["S02_rest.acq"]
    assert result.status == "rejected"
    assert "windows stored from it before (1 file(s)" in result.error.reason
    assert "were removed" in summary.rejections["reason"].iloc[0]
    assert len(summary.catalog) == 3
    assert set(summary.catalog["ingest_hash"]) == {changed.ingest_hash()}
    assert not list((stale / "subject=S02" / "condition=rest").glob("*.parquet"))

    # The old file put back, as a store written by hand or by an older version would hold it.
    old_file.write_bytes(old_bytes)
    with pytest.raises(ValueError, match=r"1 of 4 stored recording\(s\) were written with other"):
        train_run(changed.with_overrides({"training.epochs": 1}))


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
    # no temp file left, visible or not (the lock files stay: they hold no data)
    assert not [p for p in files if p.name.startswith(".") and p.suffix != ".lock"]
    assert len([p for p in files if p.suffix == ".parquet"]) == 2
    monkeypatch.setattr(store_module, "_write_parquet_file", real_write)
    summary = ingest_folder(inbox, config)
    assert sorted(statuses(summary).values()) == ["unchanged", "unchanged", "written", "written"]
    assert summary.window_counts().to_numpy().sum() == 4 * 3


def test_same_path_typed_relative_or_absolute_is_one_recording(inbox, config, monkeypatch):
    monkeypatch.chdir(inbox.parent)
    ingest_folder("inbox", config)
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=12.0, subject=1)[0])
    settle(inbox)
    summary = ingest_folder(inbox.resolve(), config)
    assert statuses(summary)["S01_rest.acq"] == "replaced"
    assert all(p.startswith("/") for p in summary.catalog["source_path"])


def test_relabelling_stored_bytes_in_the_manifest_moves_the_recording(inbox, config):
    (inbox / "manifest.csv").write_text(
        "file,subject,condition\nS01_rest.acq,S1,rest\nS01_exercise.acq,S01,exercise\n"
        "S02_rest.acq,S02,rest\nS02_exercise.acq,S02,exercise\n"
    )
    ingest_folder(inbox, config)
    (inbox / "manifest.csv").write_text(
        "file,subject,condition\nS01_rest.acq,S01,rest\nS01_exercise.acq,S01,exercise\n"
        "S02_rest.acq,S02,rest\nS02_exercise.acq,S02,exercise\n"
    )
    summary = ingest_folder(inbox, config)
    assert statuses(summary)["S01_rest.acq"] == "replaced"
    assert sorted(summary.catalog["subject"].unique()) == ["S01", "S02"]
    assert len(list(config.dataset_store.rglob("*.parquet"))) == 4


def test_same_bytes_under_other_labels_in_a_later_batch_is_a_conflict(inbox, config, tmp_path):
    ingest_folder(inbox, config)
    other = tmp_path / "other"
    other.mkdir()
    (other / "S06_exercise.acq").write_bytes((inbox / "S01_rest.acq").read_bytes())
    settle(other)
    (result,) = ingest_folder(other, config).results
    assert result.status == "rejected"
    assert (
        "identical bytes are already stored as subject S01 x condition rest" in result.error.reason
    )


def test_a_run_stopped_between_writing_and_removing_heals_on_the_next(inbox, config):
    ingest_folder(inbox, config)
    (old,) = config.dataset_store.glob("subject=S01/condition=rest/*.parquet")
    saved = old.read_bytes()
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=12.0, subject=1)[0])
    settle(inbox)
    ingest_folder(inbox, config)
    old.write_bytes(saved)  # the old version back, as a stop before its removal leaves it
    summary = ingest_folder(inbox, config)
    result = next(r for r in summary.results if r.path.endswith("S01_rest.acq"))
    assert result.status == "unchanged" and "removed windows of an earlier version" in result.note
    assert not old.exists()
    assert summary.window_counts().loc["S01", "rest"] == 4


def test_a_changed_wfdb_signal_file_is_a_new_recording(acq_dir, tmp_path):
    import shutil

    from ecg_pipeline.config import load_config

    source = acq_dir.parent / "datasets" / "ecg-id" / "Person_01"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    person = tmp_path / "ecg-id" / "Person_01"
    person.mkdir(parents=True)
    for suffix in (".hea", ".dat"):
        shutil.copy(source / f"rec_1{suffix}", person / f"rec_1{suffix}")
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "ecg-id.toml")
    config = config.with_overrides({"store.root": tmp_path / "s"})
    assert ingest_folder(person.parent, config).count("written") == 1
    data = bytearray((person / "rec_1.dat").read_bytes())
    data[1000:9000] = bytes(8000)
    (person / "rec_1.dat").write_bytes(bytes(data))
    settle(person)
    assert ingest_folder(person.parent, config).count("replaced") == 1
