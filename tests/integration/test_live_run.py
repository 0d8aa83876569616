"""The MLflow run that exists while its model trains (a local SQLite store, no server)."""

from __future__ import annotations

import warnings

import pytest

from ecg_pipeline.config import StudyConfig

pytestmark = pytest.mark.integration


def test_epochs_reach_the_run_as_they_end_named_per_fold(tmp_path):
    import mlflow
    from ecg_pipeline.tracking.live import LiveRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    live = LiveRun.open(StudyConfig(), tracking_uri=uri, run_name="r", tags={"a": "b"})
    live.folds(["session=01", "session=02"])
    live.epoch("session=01", {"epoch": 1, "identity_train_loss": 2.0, "lr": 0.001})
    live.epoch("session=01", {"epoch": 2, "identity_train_loss": 1.5, "lr": 0.001})
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(live.run_id)
    assert run.info.status == "RUNNING" and run.data.tags["live"] == "true"
    assert run.data.params["training.epochs"] == "50"
    history = client.get_metric_history(live.run_id, "fold_session_01/identity_train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]


def test_a_tracking_server_gone_mid_training_warns_once_and_training_goes_on():
    from ecg_pipeline.tracking.live import LiveRun

    live = LiveRun("http://127.0.0.1:9", "0" * 32)  # nothing listens on port 9
    with pytest.warns(UserWarning, match="MLflow at http://127.0.0.1:9 took no epoch metrics"):
        live.epoch("time_block", {"epoch": 1, "identity_train_loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        live.epoch("time_block", {"epoch": 2, "identity_train_loss": 0.9})  # quiet now
