"""Input a lab folder should never be able to turn against the machine or the people reading it.

Links and manifest rows that lead outside the recordings folder are refused unread; what is wrong
with a file is said before whether it duplicates another; a refusal is never lost to the next
batch; CSVs the project writes open in a spreadsheet as text. Real bioread, real store.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import demo_ecg, write_ecg_file

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.io.tables import spreadsheet_safe

pytestmark = pytest.mark.integration

SECRET = "SECRET-BYTES-0123456789"
_opened: list[str] = []


def _audit(event: str, args) -> None:
    # Every open() of the process passes here; the tests read the list for one path only.
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _opened_during(action) -> tuple[object, list[str]]:
    start = len(_opened)
    result = action()
    return result, _opened[start:]


@pytest.fixture
def config(tmp_path) -> StudyConfig:
    return StudyConfig().with_overrides(
        {"store.root": tmp_path / "store", "discovery.settle_s": 0.0}
    )


def _results(report) -> dict[str, object]:
    return {Path(r.path).name: r for r in report.results}


def test_a_link_leading_outside_the_folder_is_refused_unread(tmp_path, config):
    outside = tmp_path / "elsewhere" / "system-file"
    outside.parent.mkdir()
    outside.write_text(SECRET * 10)
    inbox = tmp_path / "inbox"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    (inbox / "S11_rest.acq").symlink_to(outside)
    # A link inside the folder to a recording inside it is an ordinary recording.
    (inbox / "day2").mkdir()
    write_ecg_file(inbox / "day2" / "real.bin", demo_ecg(duration_s=9.0, subject=2)[0])
    (inbox / "S02_rest.acq").symlink_to(inbox / "day2" / "real.bin")
    # A linked folder that leads outside: its files are outside too.
    (tmp_path / "elsewhere" / "S12_rest.acq").write_text(SECRET)
    (inbox / "linked").symlink_to(tmp_path / "elsewhere")

    report, opened = _opened_during(lambda: ingest_folder(inbox, config))
    results = _results(report)
    link = results["S11_rest.acq"]
    assert link.status == "rejected" and type(link.error).__name__ == "UnsafePathError"
    assert "leads outside the recordings folder" in link.error.reason
    assert results["S02_rest.acq"].status == "written"
    assert "S12_rest.acq" not in results or results["S12_rest.acq"].status == "rejected"
    assert not [p for p in opened if Path(p).resolve().parent == outside.parent.resolve()]
    for table in ("_rejections.csv", "_rejections_history.csv"):
        assert SECRET not in (report.store_path / table).read_text()


def test_no_message_quotes_more_than_a_short_printable_prefix(tmp_path, config):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "S01_rest.acq").write_text(SECRET + "x" * 5000)
    (inbox / "S02_rest.acq").write_bytes(b"\x1b[31mred\x00" * 300)
    report = ingest_folder(inbox, config)
    for r in report.results:
        assert r.status == "rejected"
        assert SECRET not in r.error.reason and "\x1b" not in r.error.reason
        assert r.error.reason.isprintable() and len(r.error.reason) <= 1000
    text = _results(report)["S01_rest.acq"].error.reason
    assert "starts 'SECRET-B'" in text


def test_ten_empty_files_are_ten_empty_files_not_nine_duplicates(tmp_path, config):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(10):
        (inbox / f"S{i:02d}_rest.acq").write_bytes(b"")
    report = ingest_folder(inbox, config)
    reasons = {r.error.reason for r in report.results}
    assert len(report.results) == 10 and reasons == {"empty file (0 bytes)"}


def test_manifest_rows_leading_outside_the_folder_are_refused_with_a_reason(tmp_path, config):
    outside = tmp_path / "outside.acq"
    write_ecg_file(outside, demo_ecg(duration_s=9.0)[0])
    inbox = tmp_path / "inbox"
    write_ecg_file(inbox / "a.acq", demo_ecg(duration_s=9.0, subject=2)[0])
    write_ecg_file(inbox / "sub" / "b.acq", demo_ecg(duration_s=9.0, subject=3)[0])
    (inbox / "manifest.csv").write_text(
        "file,subject,condition\n"
        "a.acq,S02,rest\n"
        "../outside.acq,S01,rest\n"
        f"{outside},S01,exercise\n"
        "sub/../a.acq,S03,exercise\n"
        "=cmd|' /C calc'!A0/../b.acq,S04,rest\n"
    )
    report, opened = _opened_during(lambda: ingest_folder(inbox, config))
    refused = {r.path: r.error for r in report.results if r.status == "rejected"}
    assert type(refused["../outside.acq"]).__name__ == "UnsafePathError"
    assert "'..'" in refused["../outside.acq"].reason
    assert "absolute path" in refused[str(outside)].reason
    assert "'..'" in refused["sub/../a.acq"].reason
    assert not [p for p in opened if Path(p).resolve() == outside.resolve()]
    assert {r.path for r in report.results if r.status == "written"} == {
        str((inbox / "a.acq").resolve())
    }
    # The formula-like row is plain data: refused for its '..', and written as text.
    rejections = pd.read_csv(report.rejections_file, dtype=str, keep_default_na=False)
    formula_rows = rejections[rejections["file"].str.contains("cmd")]
    assert len(formula_rows) == 1 and formula_rows["file"].iloc[0].startswith("'=")


def test_a_refusal_is_kept_when_the_next_batch_refuses_something_else(tmp_path, config):
    inbox = tmp_path / "inbox"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    (inbox / "S02_rest.acq").write_bytes(b"not ecg at all")
    first = ingest_folder(inbox, config)
    (inbox / "S02_rest.acq").unlink()  # someone removed the bad file
    (inbox / "S03_rest.acq").write_bytes(b"")
    second = ingest_folder(inbox, config)
    latest = pd.read_csv(second.rejections_file, dtype=str)
    assert [Path(f).name for f in latest["file"]] == ["S03_rest.acq"]
    history = pd.read_csv(first.store_path / "_rejections_history.csv", dtype=str)
    assert sorted(Path(f).name for f in history["file"]) == ["S02_rest.acq", "S03_rest.acq"]
    ingest_folder(inbox, config)  # the same refusal again: counted, not repeated
    history = pd.read_csv(first.store_path / "_rejections_history.csv", dtype=str)
    row = history[history["file"].str.endswith("S03_rest.acq")]
    assert len(history) == 2 and row["times"].tolist() == ["2"]
    assert row["first_seen"].iloc[0] <= row["last_seen"].iloc[0]


def test_the_history_keys_refusals_by_bytes_and_the_report_shows_what_is_still_refused(
    tmp_path, config
):
    from ecg_pipeline.report import render_summary

    inbox, other = tmp_path / "inbox", tmp_path / "other"
    bad = inbox / "S02_rest.acq"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not ecg at all")
    first = ingest_folder(inbox, config)
    bad.write_bytes(b"still not ecg, other bytes")  # a new version, refused for the same reason
    ingest_folder(inbox, config)
    history = pd.read_csv(first.store_path / "_rejections_history.csv", dtype=str)
    assert len(history) == 2 and history["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert history["sha256"].nunique() == 2

    # A batch that does not offer the bad file still says it is refused.
    write_ecg_file(other / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    elsewhere = ingest_folder(other, config)
    assert elsewhere.still_refused["file"].tolist() == [str(bad.resolve())]
    text = render_summary(elsewhere)
    assert "still refused from earlier batches (1;" in text and "S02_rest.acq" in text

    # Fixed: stored, so no longer refused.
    write_ecg_file(bad, demo_ecg(duration_s=9.0, subject=2)[0])
    fixed = ingest_folder(inbox, config)
    assert fixed.count("written") == 1 and fixed.still_refused.empty


def test_formula_like_cells_are_written_as_text():
    table = pd.DataFrame(
        {
            "file": ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "plain", "a=b"],
            "n": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    safe = spreadsheet_safe(table)
    assert safe["file"].tolist() == [
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tx",
        "plain",
        "a=b",
    ]
    assert safe["n"].tolist() == table["n"].tolist()


def test_manifest_cells_with_control_characters_or_huge_values_are_refused_as_data(
    tmp_path, config
):
    inbox = tmp_path / "inbox"
    for name, subject in (("good.acq", 1), ("huge.acq", 2), ("ctrl.acq", 3), ("formula.acq", 4)):
        write_ecg_file(inbox / name, demo_ecg(duration_s=9.0, subject=subject)[0])
    huge = "S" + "9" * 200_000
    (inbox / "manifest.csv").write_text(
        "file,subject,condition\n"
        "good.acq,S01,rest\n"
        f"huge.acq,{huge},rest\n"
        'ctrl.acq,"S0\x1b[31m3\x07",rest\n'
        "formula.acq,S04,=cmd|' /C calc'!A0\n",
        encoding="utf-8",
    )
    report = ingest_folder(inbox, config)
    by_name = {Path(r.path).name: r for r in report.results}
    assert by_name["good.acq"].status == "written"
    for name in ("huge.acq", "ctrl.acq", "formula.acq"):
        error = by_name[name].error
        assert by_name[name].status == "rejected" and type(error).__name__ == "MetadataError"
        assert error.reason.isprintable() and len(error.reason) <= error.MAX_REASON_CHARS
    assert "subject" in by_name["huge.acq"].error.reason
    assert "\x1b" not in by_name["ctrl.acq"].error.reason
    assert "condition" in by_name["formula.acq"].error.reason
    # What reaches the tables is bounded and inert: nothing a spreadsheet would run.
    for table in ("_rejections.csv", "_rejections_history.csv"):
        text = (report.store_path / table).read_text(encoding="utf-8")
        assert len(text) < 20_000 and "\x1b" not in text and "\x07" not in text
        rows = pd.read_csv(report.store_path / table, dtype=str, keep_default_na=False)
        for column in rows.columns:
            assert not rows[column].str.match(r"^[=+\-@\t\r]").any(), (table, column)


@pytest.mark.parametrize("units, scale", [("Volts", 1e-3), ("mV", 1.0), ("µV", 1e3)])
def test_a_real_ecg_is_judged_in_millivolts_whatever_unit_it_declares(
    tmp_path, config, units, scale
):
    """The flat-lead threshold is in mV: an ECG stored in volts (a 1-mV QRS is 0.001 V, below
    a threshold read in the channel's own units) is stored like the same ECG in mV."""
    from ecg_pipeline.io.acq_writer import AcqChannel, write_acq

    ecg_mv = demo_ecg(duration_s=12.0)[0]
    path = tmp_path / "inbox" / "S01_rest.acq"
    path.parent.mkdir(parents=True)
    write_acq(path, [AcqChannel("ECG - ECG100C", units, ecg_mv * scale)], 1000.0)
    report = ingest_folder(path.parent, config)
    assert report.count("written") == 1, [r.error for r in report.results]
    assert report.catalog["n_windows"].iloc[0] == 4

    # A lead that is off is still refused, in any unit: 1 µV of noise is flat.
    flat = tmp_path / "flat" / "S02_rest.acq"
    flat.parent.mkdir()
    noise = np.random.default_rng(0).normal(0, 0.001, 12_000)  # mV
    write_acq(flat, [AcqChannel("ECG - ECG100C", units, noise * scale)], 1000.0)
    refused = ingest_folder(flat.parent, config)
    (result,) = refused.results
    assert result.status == "rejected" and "below 0.005 mV" in result.error.reason
