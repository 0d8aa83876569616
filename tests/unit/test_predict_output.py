"""Writing a prediction batch: fixed types, no folders, no overwriting, atomic files."""

from __future__ import annotations

import pandas as pd
import pytest

from ecg_pipeline.errors import NotAcqFileError, StillBeingWrittenError, UnreadableFileError
from ecg_pipeline.predict.output import rejections_of, write_predictions
from ecg_pipeline.predict.predict import PREDICTION_COLUMNS

STAMP = pd.Timestamp("2026-11-03T10:15:02.5", tz="UTC")


def _row(**values) -> dict:
    row = dict.fromkeys(PREDICTION_COLUMNS)
    row.update(
        file="a.acq",
        sha256="ab" * 32,
        duration_s=30.0,
        n_windows=10,
        identity="unknown",
        identity_best="S01",
        identity_confidence=0.4,
        identity_threshold=0.5,
        activity="rest",
        activity_confidence=0.9,
        model_name="dt4ecg-demo",
        model_version="1",
        ingest_hash="0" * 16,
        predicted_at=STAMP,
        notes="",
    )
    return row | values


def test_predictions_and_rejections_are_written_with_names_only(tmp_path):
    errors = [
        NotAcqFileError("/home/jane.doe/visits/notes.acq", "not an AcqKnowledge file"),
        UnreadableFileError(
            "/home/jane.doe/visits/gone.acq",
            "cannot read file: [Errno 2] No such file: '/home/jane.doe/visits/gone.acq'",
        ),
        StillBeingWrittenError("/home/jane.doe/visits/new.acq", "modified 0.1 s ago"),
    ]
    table = pd.DataFrame([_row(), _row(file="b.acq", identity="S02", activity=None)])
    files = write_predictions(table, errors, tmp_path, "demo")
    assert files.predictions == tmp_path / "demo" / "predictions-20261103T101502Z.parquet"
    assert files.rejections.name == "rejections-20261103T101502Z.csv"
    back = pd.read_parquet(files.predictions)
    assert tuple(back.columns) == PREDICTION_COLUMNS
    assert back["predicted_at"].tolist() == [STAMP, STAMP]
    assert back["n_windows"].dtype == "int64" and back["activity"].isna().tolist() == [False, True]
    text = files.rejections.read_text()
    assert "jane.doe" not in text
    refused = pd.read_csv(files.rejections)
    assert refused["file"].tolist() == ["notes.acq", "gone.acq", "new.acq"]
    assert refused["status"].tolist() == ["rejected", "rejected", "deferred"]
    assert "'gone.acq'" in refused["reason"][1]
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]


def test_a_second_batch_in_the_same_second_gets_its_own_files(tmp_path):
    table = pd.DataFrame([_row()])
    first = write_predictions(table, [], tmp_path, "demo")
    second = write_predictions(table, [], tmp_path, "demo")
    assert second.predictions.name == "predictions-20261103T101502Z-2.parquet"
    assert first.predictions.is_file() and second.rejections.is_file()


def test_an_empty_batch_still_writes_a_typed_parquet(tmp_path):
    empty = pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    files = write_predictions(empty, [], tmp_path, "demo", stamp=STAMP)
    back = pd.read_parquet(files.predictions)
    assert len(back) == 0 and tuple(back.columns) == PREDICTION_COLUMNS
    assert str(back["predicted_at"].dtype) == "datetime64[us, UTC]"
    assert rejections_of([]).empty


def test_rejections_are_checked_by_the_contract():
    class Odd(NotAcqFileError):
        stage = "nowhere"

    with pytest.raises(Exception, match="stage"):
        rejections_of([Odd("x.acq", "why")])
