"""The pandera contracts refuse what they should and say which field."""

import pandas as pd
import pytest
from pandera.errors import SchemaError, SchemaErrors

from data_contracts._report import failures_by_row
from data_contracts.recordings import manifest_schema
from data_contracts.rejections import RejectionsTable
from data_contracts.windows import WindowsTable

CONDITIONS = ["rest", "exercise", "deep_breathing"]


def manifest_row(**over):
    row = {
        "source_path": "/in/S01_rest.acq",
        "subject": "S01",
        "condition": "rest",
        "session": None,
        "date": None,
        "sha256": "0" * 64,
        "channel": "ECG",
        "native_fs_hz": 1000.0,
        "duration_s": 180.0,
        "n_windows": 60,
        "n_beats": 220,
        "n_beat_flagged": 0,
    }
    row.update(over)
    return row


def test_a_good_manifest_passes():
    df = pd.DataFrame([manifest_row(), manifest_row(source_path="/in/b.acq", condition="exercise")])
    manifest_schema(CONDITIONS, r"^S\d+$").validate(df, lazy=True)


@pytest.mark.parametrize(
    "field, value",
    [
        ("sha256", "abc"),
        ("condition", "sleep"),
        ("subject", "Jane Doe"),
        ("native_fs_hz", 0.0),
        ("duration_s", -1.0),
        ("n_windows", 0),
        ("date", "yesterday"),
    ],
)
def test_each_field_violation_is_named(field, value):
    df = pd.DataFrame([manifest_row(), manifest_row(source_path="/in/bad.acq", **{field: value})])
    with pytest.raises(SchemaErrors) as exc:
        manifest_schema(CONDITIONS, r"^S\d+$").validate(df, lazy=True)
    failures = failures_by_row(exc.value, df)
    assert list(failures) == [1]
    assert f"field {field!r}" in failures[1][0]


def test_unknown_columns_are_refused():
    df = pd.DataFrame([manifest_row(age=31)])
    with pytest.raises(SchemaErrors):
        manifest_schema(CONDITIONS, r"^S\d+$").validate(df, lazy=True)


def windows_meta(n=3):
    return pd.DataFrame(
        {
            "dataset": "demo",
            "recording_id": "0123456789abcdef",
            "subject": "S01",
            "condition": "rest",
            "session": None,
            "window_index": range(n),
            "start_s": [3.0 * i for i in range(n)],
            "fs_hz": 100.0,
            "source_path": "/in/S01_rest.acq",
            "source_sha256": "f" * 64,
            "ingest_hash": "0123456789abcdef",
        }
    )


def test_windows_table_one_row_per_window():
    WindowsTable.validate(windows_meta(), lazy=True)
    dup = pd.concat([windows_meta(), windows_meta(1)])
    with pytest.raises(SchemaErrors, match="one_row_per_window"):
        WindowsTable.validate(dup, lazy=True)


def test_windows_table_negative_start_refused():
    df = windows_meta()
    df.loc[0, "start_s"] = -3.0
    with pytest.raises(SchemaErrors, match="start_s"):
        WindowsTable.validate(df, lazy=True)


def test_rejections_table_stages_and_statuses():
    good = pd.DataFrame(
        [
            {
                "file": "a",
                "stage": "read",
                "status": "rejected",
                "error": "E",
                "reason": "r",
                "sha256": "",
            }
        ]
    )
    RejectionsTable.validate(good)
    RejectionsTable.validate(good.assign(sha256="ab" * 32))
    with pytest.raises(SchemaError):
        RejectionsTable.validate(good.assign(stage="dreaming"))
    with pytest.raises(SchemaError):
        RejectionsTable.validate(good.assign(sha256="not a hash"))
