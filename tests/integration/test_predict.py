"""Prediction with the registered champion, end to end on a real MLflow server.

No mocks: a tiny model trained for one epoch on the small synthetic cohort, logged and
registered on a real ``mlflow server``, loaded back without pickles, and new ``.acq`` files
written by the project's writer under arbitrary names: one of a known subject, one of a subject
never trained on, and files that must be refused (text, truncated, too short, no ECG channel).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import torch
from helpers import demo_ecg, folder_checksums, small_demo_study, write_ecg_file

from ecg_pipeline.cli import main
from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.config import load_config
from ecg_pipeline.errors import ModelMismatchError
from ecg_pipeline.ingest import read_windows
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.predict.predict import (
    NO_THRESHOLD_NOTE,
    PREDICTION_COLUMNS,
    predict_recordings,
    read_recording_windows,
)
from ecg_pipeline.tracking.mlflow_log import log_training_run
from ecg_pipeline.tracking.registry import ModelNotFoundError, load_champion
from ecg_pipeline.training.checkpoint import load_checkpoint
from ecg_pipeline.training.run import RunResult, train_and_evaluate

pytestmark = pytest.mark.integration

MODEL_NAME = "dt4ecg-demo"
GOOD = ("visit-0001.acq", "visit-0002.acq")  # S02 (trained on) and S09 (never trained on)
BAD = {
    "notes.acq": "NotAcqFileError",
    "visit-0003.acq": "TruncatedFileError",
    "visit-0004.acq": "TooShortError",
    "visit-0005.acq": "NoEcgChannelError",
}


def _get(base: str, endpoint: str, body: dict | None = None, **query) -> dict:
    url = f"{base}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _experiment_id(mlflow_server: str, name: str = "demo") -> str:
    found = _get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=name)
    return found["experiment"]["experiment_id"]


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = small_demo_study(root, epochs=1)
    return root, config, train_and_evaluate(config, run_name="predict")


@pytest.fixture(scope="module")
def champion(mlflow_server, study):
    _, config, run = study
    logged = log_training_run(run, config, tracking_uri=mlflow_server)
    assert logged.registered_version == "1" and logged.is_champion
    return load_champion(mlflow_server, MODEL_NAME)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """New recordings under names that say nothing about who is in them, and bad files."""
    staging, folder = tmp_path_factory.mktemp("staging"), tmp_path_factory.mktemp("new")
    known = write_demo_recording(staging, 2, "exercise", duration_s=30.0, seed=0)
    stranger = write_demo_recording(staging, 9, "rest", duration_s=30.0, seed=0)
    short = write_demo_recording(staging, 3, "rest", duration_s=2.0, seed=0)
    os.replace(known, folder / "visit-0001.acq")
    os.replace(stranger, folder / "visit-0002.acq")
    os.replace(short, folder / "visit-0004.acq")
    (folder / "visit-0003.acq").write_bytes((folder / "visit-0001.acq").read_bytes()[:3000])
    (folder / "notes.acq").write_text("subject S01, rest, 2026-11-03\n")
    _, resp = demo_ecg(duration_s=12.0)
    write_ecg_file(folder / "visit-0005.acq", resp, name="RSP - RSP100C")
    return folder


def _config_file(tmp_path: Path, mlflow_server: str) -> Path:
    # The recordings were written a moment ago: no settle time for folders.
    lines = [
        "[servers]",
        f'tracking_uri = "{mlflow_server}"',
        "[predict]",
        f'out_dir = "{tmp_path / "predictions"}"',
        "[discovery]",
        "settle_s = 0.0",
    ]
    path = tmp_path / "study.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the tests ---------------------------------------------------------------------------------
def test_champion_carries_its_threshold_and_preprocessing(study, champion):
    _, config, run = study
    fold_dir = run.run_dir / "time_block"
    spec = json.loads((fold_dir / "model.json").read_text())
    assert spec["identity_threshold"] == run.folds[0].identity_threshold
    assert champion.threshold_info == spec["identity_threshold"]
    assert champion.identity_threshold == spec["identity_threshold"]["value"]
    assert champion.ingest_hash == config.ingest_hash()
    assert (champion.normalisation, champion.n_samples) == ("window", 300)
    assert champion.name == MODEL_NAME and champion.version == "1"


def test_cli_predicts_new_recordings_refuses_bad_files_and_logs_a_run(
    study, champion, recordings, mlflow_server, tmp_path, capsys
):
    before = folder_checksums(recordings)
    config_file = _config_file(tmp_path, mlflow_server)
    assert main(["predict", str(recordings), "--config", str(config_file)]) == 0
    printed = capsys.readouterr().out
    assert folder_checksums(recordings) == before  # raw recordings untouched

    (parquet,) = (tmp_path / "predictions" / "demo").glob("predictions-*.parquet")
    (rejections,) = (tmp_path / "predictions" / "demo").glob("rejections-*.csv")
    table = pd.read_parquet(parquet)
    assert tuple(table.columns) == PREDICTION_COLUMNS
    assert sorted(table["file"]) == sorted(GOOD)
    assert (table["n_windows"] == 10).all()  # 30 s in 3-s windows
    classes = champion.classes["identity"]
    threshold = champion.identity_threshold
    for row in table.itertuples():
        assert row.identity_best in classes and 0 < row.identity_confidence <= 1
        expected = row.identity_best if row.identity_confidence >= threshold else "unknown"
        assert row.identity == expected and row.identity_threshold == threshold
        assert row.activity in champion.classes["activity"]
        assert (row.model_name, row.model_version) == (MODEL_NAME, "1")
        assert row.file in printed
    assert str(table["predicted_at"].dtype) == "datetime64[us, UTC]"

    refused = pd.read_csv(rejections)
    assert dict(zip(refused["file"], refused["error"], strict=True)) == BAD
    assert str(recordings) not in rejections.read_text()  # names, never folders
    for name in BAD:
        assert name in printed
    assert str(parquet) in printed

    found = _get(
        mlflow_server,
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [_experiment_id(mlflow_server)],
            "filter": "tags.kind = 'predict'",
        },
    )["runs"]
    assert len(found) == 1
    run = found[0]
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"].startswith("predict-")
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert (tags["model_name"], tags["model_version"]) == (MODEL_NAME, "1")
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["n_recordings"] == 2 and metrics["n_rejected"] == len(BAD)
    assert metrics["n_deferred"] == 0
    assert metrics["n_unknown"] == (table["identity"] == "unknown").sum()
    assert metrics["identity_unknown_threshold"] == pytest.approx(threshold)
    listed = _get(
        mlflow_server,
        "/api/2.0/mlflow/artifacts/list",
        run_id=run["info"]["run_id"],
        path="predictions",
    )["files"]
    assert {f["path"] for f in listed} == {f"predictions/{f.name}" for f in (parquet, rejections)}


def test_predictions_are_what_the_checkpoint_model_gives_on_the_same_windows(
    study, champion, recordings
):
    _, config, run = study
    table, errors = predict_recordings([recordings], config, champion)
    assert sorted(Path(e.path).name for e in errors) == sorted(BAD)
    model, spec = load_checkpoint(run.run_dir / "time_block")
    for row in table.itertuples():
        _, windows = read_windows(recordings / row.file, config)
        w = windows.samples.astype(np.float32)
        lo, hi = w.min(axis=1, keepdims=True), w.max(axis=1, keepdims=True)
        x = torch.as_tensor((w - lo) / (hi - lo))[:, None, :]
        with torch.no_grad():
            logits = model(x)
        for task, answer in (("identity", row.identity_best), ("activity", row.activity)):
            mean = torch.softmax(logits[task].double(), dim=1).mean(dim=0)
            best = int(mean.argmax())
            assert answer == spec["classes"][task][best]
            assert getattr(row, f"{task}_confidence") == pytest.approx(float(mean[best]), abs=1e-5)


def test_a_training_file_is_windowed_exactly_as_the_store_holds_it(study, champion):
    root, config, _ = study
    rec = read_recording_windows(root / "inbox" / "S01_rest.acq", config, champion)
    stored, _ = WindowStore(config.store.root, "demo").read_windows(
        "window", filter=pc.field("source_sha256") == rec.sha256
    )
    np.testing.assert_array_equal(rec.x[:, 0, :], stored)
    table, errors = predict_recordings([root / "inbox" / "S01_rest.acq"], config, champion)
    assert not errors and table["sha256"].tolist() == [rec.sha256]


def test_a_model_logged_before_thresholds_calls_every_recording_known(
    study, champion, recordings, mlflow_server, tmp_path
):
    """An older checkpoint (no threshold, no hash in model.json) logged as version 2 and chosen
    by number: everything is known, the note says why, and the hash comes from the run's tag."""
    _, config, run = study
    old_dir = tmp_path / "old-run"
    shutil.copytree(run.run_dir, old_dir)
    spec_file = old_dir / "time_block" / "model.json"
    spec = json.loads(spec_file.read_text())
    for key in ("identity_threshold", "ingest_hash", "fs_hz"):
        spec.pop(key)
    spec_file.write_text(json.dumps(spec))
    (old_dir / "results.json").unlink()
    folds = [dataclasses.replace(f, identity_threshold=None) for f in run.folds]
    logged = log_training_run(
        RunResult(old_dir, folds), config, tracking_uri=mlflow_server, heldout_score=-1.0
    )
    assert not logged.is_champion
    old = load_champion(mlflow_server, MODEL_NAME, version=logged.registered_version)
    assert old.identity_threshold is None and old.ingest_hash == config.ingest_hash()
    table, _ = predict_recordings([recordings], config, old)
    assert (table["identity"] == table["identity_best"]).all() and len(table) == 2
    assert table["identity_threshold"].isna().all()
    assert all(NO_THRESHOLD_NOTE in n for n in table["notes"])
    assert (table["model_version"] == logged.registered_version).all()


def test_other_ingest_settings_are_refused_before_reading_a_file(study, champion, recordings):
    _, config, _ = study
    sixty = config.with_overrides({"ingest.filters.mains_hz": 60.0})
    with pytest.raises(ModelMismatchError, match=r"'dt4ecg-demo' version 1 .*us\.toml") as err:
        predict_recordings([recordings], sixty, champion, config_source="us.toml")
    assert champion.ingest_hash in str(err.value) and sixty.ingest_hash() in str(err.value)


def test_a_missing_version_is_a_clear_error(champion, mlflow_server, recordings, tmp_path, capsys):
    with pytest.raises(ModelNotFoundError, match="dt4ecg-demo.*version 99"):
        load_champion(mlflow_server, MODEL_NAME, version=99)
    config = str(_config_file(tmp_path, mlflow_server))
    assert main(["predict", str(recordings), "--config", config, "--model-version", "99"]) == 2
    assert "no registered model 'dt4ecg-demo' with version 99" in capsys.readouterr().err
    assert not (tmp_path / "predictions").exists()


def test_the_flow_s_tasks_chain_on_paths(study, champion, recordings, mlflow_server, tmp_path):
    """The predict flow's task bodies (``.fn``: no Prefect engine, no API) hand on paths."""
    from flows.predict import find_files, log_files, predict_files, write_files

    config_file = _config_file(tmp_path, mlflow_server)
    cfg = load_config(config_file)
    files, missing = find_files.fn([str(recordings), str(tmp_path / "absent.acq")], cfg)
    assert len(files) == 2 + len(BAD) and [Path(e.path).name for e in missing] == ["absent.acq"]
    table, errors, model = predict_files.fn(files, cfg, str(config_file), None)
    assert model["version"] == "1" and len(table) == 2
    written = write_files.fn(table, [*missing, *errors], cfg, str(tmp_path / "out"))
    assert all(isinstance(p, str) and Path(p).is_file() for p in written.values())
    logged = log_files.fn(written, cfg, model, {"prefect_flow_run_id": "test"})
    got = _get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=logged["mlflow_run_id"])
    metrics = {m["key"]: m["value"] for m in got["run"]["data"]["metrics"]}
    assert metrics["n_rejected"] == len(BAD) + 1


def test_a_one_window_recording_is_predicted_like_the_checkpoint(study, champion, tmp_path):
    _, config, run = study
    path = write_demo_recording(tmp_path, 1, "rest", duration_s=4.0, seed=0)
    table, errors = predict_recordings([path], config, champion)
    assert not errors and table["n_windows"].tolist() == [1]
    rec = read_recording_windows(path, config, champion)
    model, spec = load_checkpoint(run.run_dir / "time_block")
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(rec.x))["identity"].double(), dim=1)[0]
    assert table["identity_best"][0] == spec["classes"]["identity"][int(p.argmax())]
    assert table["identity_confidence"][0] == pytest.approx(float(p.max()), abs=1e-5)


def test_no_log_writes_the_files_only(champion, mlflow_server, recordings, tmp_path, capsys):
    def predict_runs() -> int:
        body = {
            "experiment_ids": [_experiment_id(mlflow_server)],
            "filter": "tags.kind = 'predict'",
        }
        return len(_get(mlflow_server, "/api/2.0/mlflow/runs/search", body).get("runs", []))

    before = predict_runs()
    config = str(_config_file(tmp_path, mlflow_server))
    out = tmp_path / "elsewhere"
    argv = ["predict", str(recordings / "visit-0002.acq"), "--config", config, "--out", str(out)]
    assert main([*argv, "--no-log"]) == 0
    assert "mlflow run" not in capsys.readouterr().out
    (parquet,) = (out / "demo").glob("predictions-*.parquet")
    assert pd.read_parquet(parquet)["file"].tolist() == ["visit-0002.acq"]
    assert predict_runs() == before
    # Only bad files: nothing predicted, exit 1, the refusal written all the same.
    assert main(["predict", str(recordings / "notes.acq"), "--config", config, "--no-log"]) == 1
