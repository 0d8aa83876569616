"""MLflow tracking against a real server: a trained run is logged, read back over REST,
registered with a champion alias that only a better score moves, and loaded without pickles.

No mocks: a real ``mlflow server`` (SQLite store, proxied artifacts) on a free loopback port
(the ``mlflow_server`` fixture in conftest.py), a real 2-epoch training on a small synthetic
cohort, and the server's REST API read with urllib.
"""

from __future__ import annotations

import csv
import io
import json
import os
import urllib.parse
import urllib.request

import pytest
import torch
from helpers import small_demo_study

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.tracking.lineage import RECORDING_COLUMNS
from ecg_pipeline.tracking.mlflow_log import (
    FINAL_METRICS,
    epoch_metrics,
    final_metrics,
    flatten_params,
    load_champion,
    log_training_run,
    metric_key,
)
from ecg_pipeline.tracking.quality_report import write_quality_report
from ecg_pipeline.training.checkpoint import load_checkpoint
from ecg_pipeline.training.data import load_window_data
from ecg_pipeline.training.results import FoldResult
from ecg_pipeline.training.run import train_and_evaluate

pytestmark = pytest.mark.integration

MODEL_NAME = "dt4ecg-demo"
MLFLOW_WARNINGS: list[str] = []  # what MLflow warned while the module's run was logged


# --- helpers ----------------------------------------------------------------------------------
def _get(base: str, endpoint: str, **query) -> dict:
    url = f"{base}{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _get_text(base: str, endpoint: str, **query) -> str:
    url = f"{base}{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


# --- a trained run ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    config = small_demo_study(root, epochs=2)
    run = train_and_evaluate(config, run_name="tracked")
    store = WindowStore(config.store.root, config.dataset.name)
    data = load_window_data(store, config.training.tasks, config.store.normalisation)
    write_quality_report(store, root / "quality.html")
    rejections = root / "rejections.csv"
    rejections.write_text(
        "file,stage,status,error,reason\n"
        "/home/jane.doe/inbox/S09_rest.acq,read,rejected,AcqReadError,"
        "cannot read file: [Errno 5] Input/output error: '/home/jane.doe/inbox/S09_rest.acq'\n"
    )
    return config, run, data, store.catalog(), rejections


@pytest.fixture(scope="module")
def logged(mlflow_server, trained):
    import logging

    config, run, data, catalog, rejections = trained
    before = os.environ.get("MLFLOW_TRACKING_URI")

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    said = MLFLOW_WARNINGS
    keep = Keep(level=logging.WARNING)
    logging.getLogger("mlflow").addHandler(keep)
    try:
        result = log_training_run(
            run,
            config,
            tracking_uri=mlflow_server,
            recordings=catalog,
            rejections=rejections,
            quality_report=rejections.parent / "quality.html",
            tags={"prefect_flow_run_id": "flow-run-123"},
            example_x=data.x,
            example_meta=data.meta,
            fs_hz=100.0,
        )
    finally:
        logging.getLogger("mlflow").removeHandler(keep)
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # global state put back
    return result


def test_logging_the_model_raises_no_serving_example_warning(logged):
    """MLflow checks the input example as a served model would be called; a tuple output fails
    that check with a warning in every run's log, a single concatenated output passes."""
    assert not [w for w in MLFLOW_WARNINGS if "serving input example" in w], MLFLOW_WARNINGS


# --- the tests -------------------------------------------------------------------------------
def test_run_holds_params_final_metrics_and_lineage_tags(mlflow_server, trained, logged):
    config, run, _, catalog, _ = trained
    got = _get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=logged.run_id)["run"]
    assert got["info"]["status"] == "FINISHED"
    assert got["info"]["experiment_id"] == logged.experiment_id
    exp, run_id = logged.experiment_id, logged.run_id
    assert logged.run_url == f"{mlflow_server}/#/experiments/{exp}/runs/{run_id}"
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["training.epochs"] == "2"
    assert params["training.augment.gain"] == "0.2"
    assert params["dataset.name"] == "demo"
    metrics = {m["key"]: m["value"] for m in got["data"]["metrics"]}
    fold = run.folds[0]
    for task in ("identity", "activity"):
        for key in ("accuracy", "f1_macro", "precision_weighted", "recording_accuracy"):
            assert metrics[f"{task}_test_{key}"] == pytest.approx(fold.metrics[task][key])
    assert metrics["heldout_score"] == pytest.approx(logged.heldout_score)
    threshold = fold.identity_threshold
    assert metrics["identity_unknown_threshold"] == pytest.approx(threshold["value"])
    assert 0.0 < threshold["value"] <= 1.0 and threshold["n_recordings"] == len(catalog)
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert tags["prefect_flow_run_id"] == "flow-run-123"
    # The run list tells runs apart by what differs between them.
    assert tags["mlflow.runName"] == "dt4ecg, time_block, 2 epochs, seed 0 (tracked)"
    assert (tags["split"], tags["epochs"], tags["seed"]) == ("time_block", "2", "0")
    assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
    assert len(tags["data_hash"]) == 64 and tags["n_recordings"] == str(len(catalog))
    # The data hash follows the recordings, not their order.
    from ecg_pipeline.tracking.lineage import data_hash

    assert tags["data_hash"] == data_hash(catalog["sha256"][::-1], config.ingest_hash())


def test_per_epoch_history_is_logged_with_epoch_steps(mlflow_server, trained, logged):
    history = trained[1].folds[0].history
    for key in ("identity_train_loss", "activity_val_acc", "identity_weight"):
        got = _get(
            mlflow_server,
            "/api/2.0/mlflow/metrics/get-history",
            run_id=logged.run_id,
            metric_key=key,
        )["metrics"]
        got = sorted(got, key=lambda m: m["step"])
        assert [m["step"] for m in got] == [1, 2]
        assert [m["value"] for m in got] == pytest.approx([row[key] for row in history])


def test_artifacts_hold_plots_checkpoint_and_a_recordings_list_without_dates(mlflow_server, logged):
    def listing(path=None):
        query = {"run_id": logged.run_id} | ({"path": path} if path else {})
        files = _get(mlflow_server, "/api/2.0/mlflow/artifacts/list", **query)["files"]
        return {f["path"] for f in files}

    assert listing() >= {"plots", "data", "checkpoint", "results.json"}
    assert listing("plots") == {
        f"plots/{n}.png"
        for n in (
            "training_curves",
            "gradnorm_weights",
            "confusion_identity",
            "confusion_activity",
            "example_windows",
        )
    }
    assert listing("checkpoint") == {"checkpoint/model.pt", "checkpoint/model.json"}

    def artifact(path):
        return _get_text(mlflow_server, "/get-artifact", run_id=logged.run_id, path=path)

    text = artifact("data/recordings.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 12 and tuple(rows[0]) == RECORDING_COLUMNS  # no date, no source path
    rejected = artifact("data/rejections.csv")
    assert "S09_rest.acq" in rejected and "jane.doe" not in rejected
    page = artifact("data/quality_report.html")
    assert page.startswith("<!doctype html>") and page.count("<svg") == 12


def test_champion_moves_only_to_a_better_version(mlflow_server, trained, logged):
    config, run, *_ = trained

    def champion() -> str:
        alias = _get(
            mlflow_server,
            "/api/2.0/mlflow/registered-models/alias",
            name=MODEL_NAME,
            alias="champion",
        )
        return alias["model_version"]["version"]

    assert logged.registered_version == "1" and logged.is_champion
    assert champion() == "1"
    worse = log_training_run(
        run, config, tracking_uri=mlflow_server, heldout_score=logged.heldout_score - 0.1
    )
    assert (worse.registered_version, worse.is_champion) == ("2", False)
    assert champion() == "1"
    better = log_training_run(
        run, config, tracking_uri=mlflow_server, heldout_score=logged.heldout_score + 0.1
    )
    assert (better.registered_version, better.is_champion) == ("3", True)
    assert champion() == "3"
    endpoint = "/api/2.0/mlflow/model-versions/get"
    version = _get(mlflow_server, endpoint, name=MODEL_NAME, version="3")
    tags = {t["key"]: t["value"] for t in version["model_version"]["tags"]}
    assert float(tags["heldout_score"]) == pytest.approx(logged.heldout_score + 0.1)


def test_a_score_measured_on_another_split_never_takes_the_champion(mlflow_server, trained, logged):
    """A leaky `window` split scores higher; it must not displace a held-out-session champion."""
    config, run, *_ = trained
    window = config.with_overrides({"training.split": "window"})
    before = _get(
        mlflow_server, "/api/2.0/mlflow/registered-models/alias", name=MODEL_NAME, alias="champion"
    )["model_version"]["version"]
    leaky = log_training_run(run, window, tracking_uri=mlflow_server, heldout_score=0.999)
    assert leaky.is_champion is False
    after = _get(
        mlflow_server, "/api/2.0/mlflow/registered-models/alias", name=MODEL_NAME, alias="champion"
    )["model_version"]["version"]
    assert after == before
    version = _get(
        mlflow_server,
        "/api/2.0/mlflow/model-versions/get",
        name=MODEL_NAME,
        version=leaky.registered_version,
    )["model_version"]
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags["heldout_protocol"] == "window"


def test_a_retried_log_leaves_one_run_per_flow_run(mlflow_server, trained):
    """An earlier attempt's FAILED run (tagged with the same flow run) is deleted by the retry."""
    import mlflow

    config, run, *_ = trained
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("demo").experiment_id
    tags = {"prefect_flow_run_id": "retried-flow-run"}
    failed = client.create_run(exp, tags=tags)
    client.set_terminated(failed.info.run_id, status="FAILED")
    logged = log_training_run(run, config, tracking_uri=mlflow_server, tags=tags, register=False)
    found = client.search_runs([exp], filter_string="tags.prefect_flow_run_id = 'retried-flow-run'")
    assert [r.info.run_id for r in found] == [logged.run_id]
    assert client.get_run(failed.info.run_id).info.lifecycle_stage == "deleted"


def test_a_retry_after_a_half_done_registration_leaves_no_alias_on_a_deleted_run(
    mlflow_server, trained
):
    """The first attempt registered a version (and it took the champion alias) but failed
    before marking its registration done; the retry removes that run and its version."""
    import mlflow

    config, run, *_ = trained
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    name = "dt4ecg-halfdone"
    config = config.with_overrides({"dataset.name": "halfdone"})
    tags = {"prefect_flow_run_id": "half-done-flow-run"}
    first = log_training_run(run, config, tracking_uri=mlflow_server, tags=tags)
    assert first.is_champion and client.get_model_version_by_alias(name, "champion")
    client.set_tag(first.run_id, "registration", "pending")  # as if it died right there

    second = log_training_run(run, config, tracking_uri=mlflow_server, tags=tags)
    exp = client.get_experiment_by_name("halfdone").experiment_id
    found = client.search_runs(
        [exp], filter_string="tags.prefect_flow_run_id = 'half-done-flow-run'"
    )
    assert [r.info.run_id for r in found] == [second.run_id]
    assert client.get_run(first.run_id).info.lifecycle_stage == "deleted"
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version == second.registered_version
    assert champion.run_id == second.run_id
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == [
        second.registered_version
    ]
    assert client.get_run(second.run_id).data.tags["registration"] == "done"


def test_a_stopped_mlflow_server_is_named_within_seconds(trained):
    """Nothing listening, or a listener that never answers: a clear error, not minutes of
    retries."""
    import socket
    import time

    from ecg_pipeline.stack.servers import free_port
    from ecg_pipeline.tracking.registry import TrackingUnavailableError

    config, run, *_ = trained
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into the backlog, never answers
    try:
        for url in (
            f"http://127.0.0.1:{free_port()}",
            f"http://127.0.0.1:{silent.getsockname()[1]}",
        ):
            started = time.monotonic()
            with pytest.raises(TrackingUnavailableError, match=f"MLflow at {url} is not answering"):
                log_training_run(run, config, tracking_uri=url, register=False)
            assert time.monotonic() - started < 15
    finally:
        silent.close()


def test_champion_loads_without_pickle_and_predicts_like_the_trained_model(
    mlflow_server, trained, logged, monkeypatch
):
    config, run, data, *_ = trained
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = load_champion(mlflow_server, MODEL_NAME)
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    # What prediction needs travels with the model.
    assert loaded.identity_threshold == run.folds[0].identity_threshold["value"]
    assert loaded.threshold_info == run.folds[0].identity_threshold
    assert loaded.ingest_hash == config.ingest_hash()
    assert (loaded.normalisation, loaded.n_samples, loaded.fs_hz) == ("window", 300, 100.0)
    # model.json stores heads sorted by name, so a rebuilt model's outputs come in that order;
    # compare by name, as the metadata names them.
    assert sorted(loaded.head_names) == ["activity", "identity"]
    assert loaded.classes["identity"] == ["S01", "S02", "S03", "S04"]
    model, _ = load_checkpoint(run.fold_dir(0))
    x = torch.as_tensor(data.x[:7])  # not the example's batch size: the batch dim is dynamic
    with torch.no_grad():
        expected = model(x)
        served = loaded.network(x)  # one tensor: the heads side by side, as MLflow serves it
    assert served.shape == (7, sum(loaded.head_sizes))
    got = loaded.logits(data.x[:7])
    assert set(got) == set(expected)
    for task, logits in expected.items():
        torch.testing.assert_close(torch.as_tensor(got[task]), logits, atol=1e-5, rtol=0)


# --- names and numbers, without a server ------------------------------------------------------
def _fold(name, acc, epochs=2):
    report = dict.fromkeys(FINAL_METRICS, acc)
    history = [
        {"epoch": e, "identity_train_loss": 1.0 / e, "identity_weight": 1.0, "lr": 1e-3}
        for e in range(1, epochs + 1)
    ]
    return FoldResult(
        name=name,
        best_epoch=1,
        history=history,
        metrics={"identity": dict(report), "activity": dict(report, accuracy=acc / 2)},
        sizes={"train": 10, "val": 2, "test": 3},
    )


def test_params_are_the_whole_config_as_dotted_keys():
    params = flatten_params(StudyConfig())
    assert params["training.augment.gain"] == "0.2"
    assert params["model.channels"] == "[32, 64, 128]"
    assert params["dataset.condition_aliases"] == "{}"
    assert params["training.test_groups"] == "null"
    assert all(metric_key(k) == k and len(v) <= 6000 for k, v in params.items())


def test_several_folds_get_valid_prefixed_names_and_means():
    folds = [_fold("session=01", 0.8), _fold("session=02", 0.6)]
    assert metric_key("fold_session=01/identity_acc") == "fold_session_01/identity_acc"
    steps = {(k, s) for k, _, s in epoch_metrics(folds)}
    assert ("fold_session_01/identity_train_loss", 2) in steps
    assert ("fold_session_02/identity_weight", 1) in steps
    final = final_metrics(folds)
    assert final["identity_test_accuracy"] == pytest.approx(0.7)
    # The sample standard deviation, as results.json, summary.json and the README table give.
    assert final["identity_test_accuracy_std"] == pytest.approx(0.2 / 2**0.5)
    assert final["fold_session_02/activity_test_accuracy"] == pytest.approx(0.3)
    assert final["heldout_score"] == pytest.approx((0.8 + 0.4 + 0.6 + 0.3) / 4)
    assert final["fold_session_01/test_windows"] == 3
    single = final_metrics(folds[:1])
    assert "identity_test_accuracy_std" not in single and single["best_epoch"] == 1


def test_a_run_whose_process_was_killed_is_ended_failed_by_the_next_logging(mlflow_server, trained):
    """SIGKILL leaves an MLflow run "running" for ever; the next log of the experiment ends it
    FAILED, naming the dead process, and leaves a live process's run alone."""
    import multiprocessing
    import signal

    import mlflow
    from ecg_pipeline.tracking.abandoned import FAILURE_TAG, fail_abandoned_runs, owner_tags

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp_id = client.create_experiment("killed-runs")
    opened = multiprocessing.get_context("fork").Queue()

    def open_a_run_and_hang():
        # What log_training_run does first: a run tagged with its owner, then work.
        child = mlflow.MlflowClient(tracking_uri=mlflow_server)
        opened.put(child.create_run(exp_id, tags=owner_tags()).info.run_id)
        signal.pause()

    process = multiprocessing.get_context("fork").Process(target=open_a_run_and_hang)
    process.start()
    dead_run = opened.get(timeout=60)
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    live_run = client.create_run(exp_id, tags=owner_tags()).info.run_id  # this process's

    assert client.get_run(dead_run).info.status == "RUNNING"
    assert fail_abandoned_runs(client, exp_id) == [dead_run]
    ended = client.get_run(dead_run)
    assert ended.info.status == "FAILED" and ended.info.end_time is not None
    assert f":{process.pid}:" in ended.data.tags[FAILURE_TAG]
    assert client.get_run(live_run).info.status == "RUNNING"
    client.set_terminated(live_run)
