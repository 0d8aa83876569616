"""The served ``ingest-train`` deployment end to end, on real servers and real processes.

No mocks: the session's ``stack`` (see conftest.py) runs both servers and the deployment
server as ``make serve`` does; runs start with the ``prefect`` command line or the watcher
``make watch`` starts, and both servers' REST APIs are read with urllib. The module stays near
three minutes on a busy two-core machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import (
    RUN_TIMEOUT_S,
    TERMINAL,
    call,
    flow_runs,
    logs_of,
    mlflow_runs_of,
    run_ended,
    wait_for,
)

from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.config import load_config
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.stack.processes import alive
from ecg_pipeline.stack.servers import free_port, start_watcher

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


# --- tests -------------------------------------------------------------------------------------
def test_deployment_run_ingests_trains_and_logs_to_mlflow(stack, trained_run):
    flow_run = trained_run["flow_run"]
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["parameters"]["epochs"] == 1

    logged = trained_run["mlflow_runs"]
    assert len(logged) == 1
    run = logged[0]
    assert run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert 0.0 <= metrics["heldout_score"] <= 1.0
    assert "identity_test_accuracy" in metrics and "activity_test_f1_macro" in metrics
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["prefect_flow_run_url"].endswith(f"/runs/flow-run/{flow_run['id']}")
    assert tags["n_recordings"] == "9"
    # Progress while it trained: a line per epoch in the flow run's log, and the MLflow run
    # open from the start with each epoch's metrics logged as it ended (before the test
    # metrics, which come after evaluation).
    logs = logs_of(stack["api"], flow_run["id"])
    assert "time_block epoch 1/1: identity loss" in logs and "validation" in logs
    assert tags["live"] == "true"
    stamps = {m["key"]: m["timestamp"] for m in run["data"]["metrics"]}
    assert stamps["identity_train_loss"] < stamps["heldout_score"]
    assert run["info"]["run_name"].startswith("dt4ecg, time_block, 1 epochs, seed 0")


def test_the_run_s_artifacts_and_champion_read_back_over_rest(stack, trained_run):
    """Artifacts and the registered model through MLflow's REST API; the model loaded back
    without pickle predicts what the project's own checkpoint predicts."""
    import torch

    from ecg_pipeline.tracking.registry import load_champion
    from ecg_pipeline.training.checkpoint import load_checkpoint

    mlflow, run = stack["mlflow"], trained_run["mlflow_runs"][0]
    run_id = run["info"]["run_id"]

    def listing(path: str = "") -> set[str]:
        query = f"run_id={run_id}" + (f"&path={path}" if path else "")
        return {f["path"] for f in call(f"{mlflow}/api/2.0/mlflow/artifacts/list?{query}")["files"]}

    assert listing() >= {"plots", "data", "checkpoint", "results.json"}
    assert {
        "plots/confusion_identity.png",
        "plots/training_curves.png",
        "plots/gradnorm_weights.png",
        "plots/example_windows.png",
    } <= listing("plots")
    assert "data/recordings.csv" in listing("data")
    alias = call(f"{mlflow}/api/2.0/mlflow/registered-models/alias?name=dt4ecg-demo&alias=champion")
    assert alias["model_version"]["run_id"] == run_id

    env = {k: v for k, v in os.environ.items()}
    try:
        loaded = load_champion(mlflow, "dt4ecg-demo")
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert loaded.version == alias["model_version"]["version"]
    fold_dir = next(p for p in Path(trained_run["run_dir"]).iterdir() if (p / "model.pt").is_file())
    model, _ = load_checkpoint(fold_dir)
    x, _ = WindowStore(load_config(stack["config"]).store.root, "demo").read_windows()
    x = torch.as_tensor(x[:5, None, :])
    with torch.no_grad():
        expected = model(x)
    got = loaded.logits(x.numpy())
    for task, logits in expected.items():
        torch.testing.assert_close(torch.as_tensor(got[task]), logits, atol=1e-5, rtol=0)


def test_files_dropped_into_the_inbox_trigger_exactly_one_run(stack, trained_run):
    api, dep = stack["api"], stack["deployment_id"]
    before = {r["id"] for r in flow_runs(api, dep)}
    # What `make watch` adds: the watcher in the background, ready once it watches.
    watcher = start_watcher(stack["config"], stack["settings"])
    log = watcher.log_path
    assert "(0 file(s) not yet stored)" in log.read_text()  # the first run stored them all

    # Arrive the way a copy should: written elsewhere, then renamed into the inbox.
    staging, inbox = stack["root"] / "staging", (stack["root"] / "inbox").resolve()
    for condition in ("rest", "exercise"):
        written = write_demo_recording(staging, 4, condition, duration_s=20.0)
        os.replace(written, inbox / written.name)

    def new_run_finished():
        new = [r for r in flow_runs(api, dep) if r["id"] not in before]
        return new if new and all(r["state_type"] in TERMINAL for r in new) else None

    new = wait_for(new_run_finished, RUN_TIMEOUT_S, "the triggered run", 2.0)
    time.sleep(5)  # longer than debounce + poll: a second event would have made a run by now
    new = [r for r in flow_runs(api, dep) if r["id"] not in before]
    assert len(new) == 1, new
    assert new[0]["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    assert new[0]["parameters"]["recordings"] == str(inbox)
    assert log.read_text().count("emitted ecg.recordings.arrived") == 1
    assert alive(watcher.pid)

    assert len(mlflow_runs_of(stack["mlflow"], new[0]["id"])) == 1
    config = load_config(stack["config"])
    assert len(WindowStore(config.store.root, "demo").catalog()) == 11


def test_a_run_over_stored_bytes_skips_training(stack, trained_run):
    api, dep = stack["api"], stack["deployment_id"]
    before = {r["id"] for r in flow_runs(api, dep)}
    made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {}})
    run = run_ended(api, made["id"], "the run over unchanged files")
    assert run["state_type"] == "COMPLETED"
    assert {r["id"] for r in flow_runs(api, dep)} - before == {made["id"]}
    logs = wait_for(lambda: "ingest-train:" in (t := logs_of(api, made["id"])) and t, 30, "logs")
    summary = json.loads(logs.split("ingest-train: ", 1)[1].splitlines()[0])
    assert summary["counts"] == {"unchanged": 11}
    assert summary["trained"] is False and "training skipped" in summary["note"]
    assert mlflow_runs_of(stack["mlflow"], made["id"]) == []


def test_force_trains_again_over_stored_bytes(stack, trained_run):
    """After a failed training the bytes are stored: force=true is how a lab trains again."""
    api, dep = stack["api"], stack["deployment_id"]
    made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True}})
    run = run_ended(api, made["id"], "the forced run")
    assert run["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    assert len(mlflow_runs_of(stack["mlflow"], made["id"])) == 1


def test_logging_retries_connection_errors_only(stack, trained_run):
    """The log task against a closed port: tried three times; a missing checkpoint: once."""
    config = stack["config"]
    run_dir = next((stack["root"] / "runs").iterdir())
    closed = f"servers.tracking_uri='http://127.0.0.1:{free_port()}'"  # nothing listens there
    script = f"""
import dataclasses
from pathlib import Path
from prefect import flow
from ecg_pipeline.config import load_config
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.training.results import RunResult
from flows.ingest_train import log_mlflow

@flow
def probe():
    cfg = load_config({str(config)!r}, overrides=[{closed!r}])
    run = RunResult.load({str(run_dir)!r})
    missing = dataclasses.replace(run, run_dir=Path({str(stack["root"] / "no-such-run")!r}))
    catalog = WindowStore({str(stack["root"] / "store")!r}, "demo").catalog()
    for each in (run, missing):
        state = log_mlflow.with_options(retry_delay_seconds=0)(
            each, cfg, catalog, None, {{}}, return_state=True)
        print("STATE", state.type.value, flush=True)

probe()
"""
    # No retries inside MLflow's client, so that the task's own retries are what is counted.
    env = dict(stack["env"], MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout + done.stderr
    assert out.count("STATE FAILED") == 2, out[-4000:]
    assert out.count("Retry 1/2") == 1 and out.count("Retry 2/2") == 1, out[-4000:]


def test_predict_deployment_labels_new_recordings_with_the_champion(stack, trained_run):
    """`prefect deployment run predict/default`: a known subject's and a stranger's recordings,
    one bad file; predictions in Parquet and a predict run in MLflow."""
    import pandas as pd

    new = stack["root"] / "new-recordings"
    written = [
        write_demo_recording(new, 2, "rest", duration_s=20.0, seed=7),
        write_demo_recording(new, 9, "exercise", duration_s=20.0, seed=7),
    ]
    (new / "broken.acq").write_bytes(b"not an AcqKnowledge file")
    time.sleep(1.5)  # past settle_s
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "prefect"),
            "deployment",
            "run",
            "predict/default",
            "-p",
            f"recordings={new}",
            "--watch",
            "--watch-timeout",
            str(int(RUN_TIMEOUT_S)),
        ],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
    )
    assert done.returncode == 0, done.stdout + done.stderr + stack["serve_log"].read_text()[-4000:]
    out = next((stack["root"] / "predictions" / "demo").glob("predictions-*.parquet"))
    table = pd.read_parquet(out)
    assert sorted(table["file"]) == sorted(p.name for p in written)
    assert set(table["identity_best"]) <= {"S01", "S02", "S03"}
    dep = call(f"{stack['api']}/deployments/name/predict/default")
    run = flow_runs(stack["api"], dep["id"])[-1]
    assert run["state_type"] == "COMPLETED"
    logs = logs_of(stack["api"], run["id"])
    assert "broken.acq" in logs
    assert len(mlflow_runs_of(stack["mlflow"], run["id"])) == 1


@pytest.mark.parametrize("runner", ["processes", "dask", "sequential"])
def test_other_task_runners_from_the_flow_settings_ingest_the_same(stack, trained_run, runner):
    """[flow] task_runner: the flow in a script of its own (a process pool re-imports the main
    module), ingest only, into a store of its own; a bad file's error crosses back as a refusal."""
    store = stack["root"] / f"store-{runner}"
    config = stack["root"] / f"study-{runner}.toml"
    text = stack["config"].read_text().replace(str(stack["root"] / "store"), str(store))
    config.write_text(text + f'[flow]\ntask_runner = "{runner}"\n')
    script = f"""
from ecg_pipeline.config import load_config
from flows.ingest_train import ingest_train_for

if __name__ == "__main__":
    cfg = load_config({str(config)!r})
    summary = ingest_train_for(cfg)(config={str(config)!r}, train=False)
    print("COUNTS", summary["counts"], flush=True)
"""
    broken = stack["root"] / "inbox" / "S05_rest.acq"  # a bad file must come back as a refusal
    if not broken.exists():
        broken.write_bytes(b"not an AcqKnowledge file")
        time.sleep(1.5)  # past settle_s
    (stack["root"] / f"run_{runner}.py").write_text(script)
    done = subprocess.run(
        [sys.executable, str(stack["root"] / f"run_{runner}.py")],
        cwd=REPO,
        env=dict(stack["env"], PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "COUNTS {'written': 11, 'rejected': 1}" in done.stdout, done.stdout[-3000:]


def test_a_refused_file_shows_where_people_look(stack, trained_run):
    """Not only _rejections.csv: a warning line, a table artifact of the batch, a record-batch
    state that is not plain success, and a readable summary ending the log."""
    api, dep = stack["api"], stack["deployment_id"]
    broken = stack["root"] / "inbox" / "S06_rest.acq"
    broken.write_bytes(b"this is not an AcqKnowledge recording")
    try:
        time.sleep(1.5)  # past settle_s
        made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"train": False}})
        run = run_ended(api, made["id"], "the run with a refused file")
        assert run["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]

        body = {"flow_runs": {"id": {"any_": [made["id"]]}}}
        task_runs = call(f"{api}/task_runs/filter", body)
        (record,) = [t for t in task_runs if t["name"].startswith("record-batch")]
        assert record["state"]["name"] == "Refused files"
        assert "refused" in record["state"]["message"]

        found = {"artifacts": {"flow_run_id": {"any_": [made["id"]]}}}
        (table,) = [a for a in call(f"{api}/artifacts/filter", found) if a["key"] == "ingest-batch"]
        rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
        (row,) = [r for r in rows if r["file"].endswith("S06_rest.acq")]
        assert row["status"] == "refused" and "AcqKnowledge" in row["reason"]

        logs = wait_for(lambda: "summary\n" in (t := logs_of(api, made["id"])) and t, 30, "logs")
        assert "S06_rest.acq" in logs.split("summary\n")[0]  # the warning, before the summary
        readable = logs.split("summary\n", 1)[1]
        assert "refused" in readable and "S06_rest.acq" in readable and "not trained" in readable
    finally:
        broken.unlink()


def test_ecg_sl_pretrains_fine_tunes_registers_and_predicts(stack, trained_run):
    """`-p model=ecg_sl -p pretrained=pretrain`: an encoder pre-trained on the store (test side
    unseen) and logged, ECG-SL fine-tuned from it, registered as ecgsl-demo in pt2 with a
    beat-segments plot, and its champion predicts through the same `predict` path."""
    from ecg_pipeline.cohort.demo import write_demo_recording
    from ecg_pipeline.predict.predict import predict_recordings
    from ecg_pipeline.tracking.registry import load_champion, registered_model_name

    api, dep, mlflow = stack["api"], stack["deployment_id"], stack["mlflow"]
    params = {"model": "ecg_sl", "pretrained": "pretrain", "epochs": 1, "force": True}
    made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": params})
    run = run_ended(api, made["id"], "the ECG-SL run")
    assert run["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    (logged,) = mlflow_runs_of(mlflow, made["id"])
    tags = {t["key"]: t["value"] for t in logged["data"]["tags"]}
    assert tags["model"] == "ecg_sl" and tags["pretrained_objective"] == "masked_beats"
    assert tags["pretraining_sees_test"] == "false"
    files = call(
        f"{mlflow}/api/2.0/mlflow/artifacts/list?run_id={logged['info']['run_id']}&path=plots"
    )
    names = {Path(f["path"]).name for f in files.get("files", [])}
    assert "beat_segments.png" in names, names
    # The encoder's own run and registered model.
    encoder = call(f"{mlflow}/api/2.0/mlflow/registered-models/get?name=ecgsl-encoder-demo")
    assert encoder["registered_model"]["name"] == "ecgsl-encoder-demo"
    # The champion alias and predict work for ECG-SL as for DT4ECG.
    config = load_config(stack["config"]).with_overrides({"model.name": "ecg_sl"})
    name = registered_model_name(config)
    champion = load_champion(config.servers.mlflow_uri, name)
    assert name == "ecgsl-demo" and champion.input_kind == "beats"
    path = write_demo_recording(stack["root"] / "ecgsl-new", 2, "rest", duration_s=12.0, seed=5)
    table, errors = predict_recordings([path], config, champion)
    assert not errors and table["n_windows"].tolist() == [4]
    assert table["identity_best"].iloc[0] in {"S01", "S02", "S03"}


def test_prefect_commands_typed_in_the_repository_need_no_export(stack, tmp_path):
    """A new shell (nothing exported) in a folder holding the prefect.toml the stack writes
    reaches the served deployment; removing the file leaves that shell without a server."""
    from ecg_pipeline.stack.prefect_toml import remove_prefect_toml, write_prefect_toml

    assert write_prefect_toml(stack["api"], tmp_path) is None
    clean = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    done = subprocess.run(
        [prefect, "deployment", "inspect", "ingest-train/default"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack["deployment_id"] in done.stdout
    assert remove_prefect_toml(tmp_path) and not (tmp_path / "prefect.toml").exists()
    shown = subprocess.run(
        [prefect, "config", "view"], cwd=tmp_path, env=clean, capture_output=True, text=True
    )
    assert stack["api"] not in shown.stdout
