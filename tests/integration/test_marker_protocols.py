"""One long recording per subject, split at its event markers into one stored recording per
condition. Real bioread, real .acq files (the project's writer and the shared BIOPAC files),
real Parquet store."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import demo_ecg, folder_checksums

from ecg_pipeline.cohort.demo import write_study_cohort
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.io.acq import read_acq
from ecg_pipeline.io.acq_writer import AcqChannel, AcqMarker, write_acq
from ecg_pipeline.io.store import WindowStore

pytestmark = pytest.mark.integration

PHASES = {"Rest": "rest", "Post run": "exercise", "breath.*": "deep_breathing"}


def study(root, phases=PHASES, **more) -> StudyConfig:
    return StudyConfig().with_overrides(
        {
            "store.root": root / "store",
            "discovery.settle_s": 0.0,
            "dataset.markers.phases": phases,
            "demo.n_subjects": 2,
            "demo.duration_s": 20.0,
            **more,
        }
    )


def by_result(report):
    return [(r.path.rsplit("/", 1)[-1], r.status, r.condition) for r in report.results]


def write_marked(path, parts, fs_hz=1000.0):
    """An ECG file holding ``parts`` one after another, a marker at the start of each:
    ``parts`` is a list of (marker text, ecg_mV)."""
    markers, start = [], 0
    for text, ecg in parts:
        markers.append(AcqMarker(start, text))
        start += len(ecg)
    ecg = np.concatenate([e for _, e in parts])
    return write_acq(path, [AcqChannel("ECG - ECG100C", "mV", ecg)], fs_hz, markers=markers)


def test_the_marker_demo_stores_each_phase_as_the_per_condition_demo_does(tmp_path):
    marked = study(tmp_path, **{"demo.layout": "one_file_with_markers"})
    files = write_study_cohort(tmp_path / "marked", marked)
    assert [f.name for f in files] == ["S01.acq", "S02.acq"]
    assert [m.text for m in read_acq(files[0]).markers] == ["Rest", "Post run", "breath.*"]
    report = ingest_folder(tmp_path / "marked", marked)
    assert sorted(by_result(report)) == sorted(
        (f"S0{s}.acq", "written", c) for s in (1, 2) for c in ("rest", "exercise", "deep_breathing")
    )
    catalog = report.catalog.sort_values(["subject", "phase_start_s"])
    s01 = catalog[catalog["subject"] == "S01"]
    assert list(s01["condition"]) == ["rest", "exercise", "deep_breathing"]
    assert list(s01["marker"]) == ["Rest", "Post run", "breath.*"]
    assert list(s01["phase_start_s"]) == [0.0, 20.0, 40.0]
    assert list(s01["phase_end_s"]) == [20.0, 40.0, 60.0]
    assert set(s01["source_path"]) == {str(files[0])}
    assert s01["recording_id"].nunique() == 3

    # The same signals written one file per condition store the same windows.
    plain = study(tmp_path, **{"store.root": tmp_path / "plain"})
    write_study_cohort(tmp_path / "per_condition", plain)
    ingest_folder(tmp_path / "per_condition", plain)
    xa, ma = WindowStore(tmp_path / "store", "demo").read_windows("none")
    xb, mb = WindowStore(tmp_path / "plain", "demo").read_windows("none")
    for cond in ("rest", "exercise", "deep_breathing"):
        ia = ((ma["subject"] == "S02") & (ma["condition"] == cond)).to_numpy()
        ib = ((mb["subject"] == "S02") & (mb["condition"] == cond)).to_numpy()
        order_a = np.argsort(ma["window_index"].to_numpy()[ia])
        order_b = np.argsort(mb["window_index"].to_numpy()[ib])
        np.testing.assert_array_equal(xa[ia][order_a], xb[ib][order_b])


def test_a_rerun_is_idempotent_and_a_changed_map_splits_again_without_duplicates(tmp_path):
    config = study(tmp_path, **{"demo.layout": "one_file_with_markers"})
    write_study_cohort(tmp_path / "inbox", config)
    before = folder_checksums(tmp_path / "inbox")
    ingest_folder(tmp_path / "inbox", config)
    again = ingest_folder(tmp_path / "inbox", config)
    assert {r.status for r in again.results} == {"unchanged"} and len(again.results) == 6
    moved = config.with_overrides({"dataset.markers.offset_s": {"exercise": 5.0}})
    report = ingest_folder(tmp_path / "inbox", moved)
    assert {r.status for r in report.results} == {"replaced"}
    store = WindowStore(tmp_path / "store", "demo")
    assert len(store.recording_files()) == 6
    exercise = report.catalog[report.catalog["condition"] == "exercise"]
    assert set(exercise["phase_start_s"]) == {25.0}
    assert folder_checksums(tmp_path / "inbox") == before  # raw recordings untouched


def test_each_bad_marker_file_is_refused_with_its_reason_and_the_batch_goes_on(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ecg = [demo_ecg(duration_s=10.0, subject=s)[0] for s in range(1, 6)]
    # One known and one unknown phase: the known one is stored.
    write_marked(inbox / "S01.acq", [("Rest", ecg[0]), ("Stroop task", ecg[1])])
    write_acq(inbox / "S02.acq", [AcqChannel("ECG", "mV", ecg[1])], 1000.0)  # no markers
    write_marked(inbox / "S03.acq", [("Segment 1", ecg[2])])  # markers, none a phase
    # A phase shorter than one window: the others are kept.
    write_marked(inbox / "S04.acq", [("Rest", ecg[3][:2000]), ("Post run", ecg[3])])
    write_marked(inbox / "S05.acq", [("Rest", ecg[4])])
    report = ingest_folder(inbox, study(tmp_path))
    got = {(name, status, cond) for name, status, cond in by_result(report)}
    assert ("S01.acq", "written", "rest") in got
    assert ("S04.acq", "written", "exercise") in got
    assert ("S05.acq", "written", "rest") in got
    refusals = {r.path.rsplit("/", 1)[-1]: r.error for r in report.results if r.error}
    assert type(refusals["S02.acq"]).__name__ == "NoPhaseMarkersError"
    assert "no event markers in the file" in refusals["S02.acq"].reason
    assert type(refusals["S03.acq"]).__name__ == "NoPhaseMarkersError"
    assert "'Segment 1'" in refusals["S03.acq"].reason
    assert type(refusals["S04.acq"]).__name__ == "PhaseNotKeptError"
    assert "phase rest ('Rest', 0.0-2.0 s) is shorter than one 3-s window" in (
        refusals["S04.acq"].reason
    )
    s01 = next(r for r in report.results if r.path.endswith("S01.acq") and r.status == "written")
    assert "'Stroop task'" in s01.note
    history = pd.read_csv(report.store_path / "_rejections_history.csv")
    assert set(history["error"]) == {"NoPhaseMarkersError", "PhaseNotKeptError"}


def test_an_ambiguous_map_refuses_the_file_and_changes_nothing_stored(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = study(tmp_path, {"rest.*": "rest", ".*run": "exercise"})
    write_acq(inbox / "S02_rest.acq", [AcqChannel("ECG", "mV", demo_ecg(10.0, subject=2)[0])], 1e3)
    ingest_folder(inbox, config)
    stored = folder_checksums(tmp_path / "store" / "demo")
    write_marked(inbox / "S01.acq", [("rest after run", demo_ecg(duration_s=10.0)[0])])
    report = ingest_folder(inbox, config)
    (error,) = [r.error for r in report.results if r.error is not None]
    assert type(error).__name__ == "AmbiguousMarkerError"
    assert error.path.endswith("S01.acq") and "names two conditions" in error.reason
    after = folder_checksums(tmp_path / "store" / "demo")
    assert {k: v for k, v in after.items() if k.endswith(".parquet")} == {
        k: v for k, v in stored.items() if k.endswith(".parquet")
    }


def test_a_phase_and_a_file_claiming_one_subject_and_condition_are_both_refused(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ecg = demo_ecg(duration_s=10.0)[0]
    write_marked(inbox / "S01.acq", [("Rest", ecg), ("Post run", ecg * 0.9)])
    write_acq(inbox / "S01_rest.acq", [AcqChannel("ECG", "mV", ecg * 1.1)], 1000.0)
    report = ingest_folder(inbox, study(tmp_path))
    assert ("S01.acq", "written", "exercise") in by_result(report)
    dupes = [r for r in report.results if r.error is not None]
    assert {r.path.rsplit("/", 1)[-1] for r in dupes} == {"S01.acq", "S01_rest.acq"}
    assert all("subject S01 x condition rest" in r.error.reason for r in dupes)
    # Later, a phase whose subject x condition another file already stored is refused too.
    write_marked(inbox / "S01b.acq", [("Post run", ecg * 0.8)])
    manifest = pd.DataFrame(
        {
            "file": ["S01.acq", "S01_rest.acq", "S01b.acq"],
            "subject": ["S01"] * 3,
            "condition": ["", "rest", ""],
        }
    )
    manifest.to_csv(inbox / "manifest.csv", index=False)
    later = ingest_folder(inbox, study(tmp_path), manifest=inbox / "manifest.csv")
    refused = {r.path.rsplit("/", 1)[-1]: r.error.reason for r in later.results if r.error}
    assert "subject S01 x condition exercise" in refused["S01b.acq"]


def test_the_real_biopac_file_splits_at_its_deep_breath_markers(tmp_path, acq_dir):
    # physio-4.4.0.acq (AcqKnowledge 4.4): 10 markers, among them "Segment 1" at 0 s and
    # "Deep Breath 1-3" (6.2, 16.7, 36.8 s), and events on the EDA and respiration channels.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(acq_dir / "physio-4.4.0.acq", inbox / "P01.acq")
    config = study(tmp_path, {"segment 1": "rest", "deep breath.*": "deep_breathing"})
    report = ingest_folder(inbox, config)
    catalog = report.catalog.sort_values("phase_start_s")
    assert list(catalog["condition"]) == ["rest", "deep_breathing"]
    assert list(catalog["marker"]) == ["Segment 1", "Deep Breath 1"]
    assert catalog["phase_end_s"].iloc[0] == pytest.approx(6.1555)
    assert catalog["phase_end_s"].iloc[1] == pytest.approx(61.893, abs=1e-3)
    note = next(r.note for r in report.results if r.condition == "deep_breathing")
    assert "'Deep Breath 2' at 16.7 s continues deep_breathing" in note
    assert "'EDA Peak' (x2)" in note
