"""Faults while the deployment is served: a run killed with SIGKILL (marked Crashed in Prefect and
FAILED in MLflow), two runs requested at once, the MLflow server stopped during training, the
Prefect server restarted while files arrive; after each, the next run succeeds. Real Prefect and
MLflow servers, the real deployment server and watcher (``stack``).

Last of the e2e modules (by name): it trains extra versions and adds recordings, which the
checks of ``test_flow_e2e.py`` (the champion, the store's count) must not see.
"""

from __future__ import annotations

import os
import random
import signal
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
from ecg_pipeline.stack.servers import start_mlflow, start_prefect, start_watcher, stop

pytestmark = pytest.mark.e2e


def _flow_run_processes(flow_run_id: str) -> list[int]:
    """The processes the deployment server started for one flow run (by their environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _task_running(api: str, flow_run_id: str, task: str) -> bool:
    body = {
        "flow_runs": {"id": {"any_": [flow_run_id]}},
        "task_runs": {"name": {"like_": f"{task}-"}},
    }
    return any(t["state_type"] == "RUNNING" for t in call(f"{api}/task_runs/filter", body))


def _kill(flow_run_id: str) -> None:
    pids = wait_for(lambda: _flow_run_processes(flow_run_id), 30, "the flow run's process")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _ended(api: str, flow_run_id: str) -> dict:
    return run_ended(api, flow_run_id, "the killed run's end", 120, 1.0)


def test_a_run_killed_while_training_or_logging_is_marked_and_the_next_succeeds(stack, trained_run):
    api, dep, mlflow = stack["api"], stack["deployment_id"], stack["mlflow"]
    rng = random.Random(0)

    # 1. Killed while training (many epochs), at a random moment of the first seconds.
    made = call(
        f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True, "epochs": 500}}
    )
    wait_for(lambda: _task_running(api, made["id"], "train"), RUN_TIMEOUT_S, "training", 0.5)
    time.sleep(rng.uniform(0.5, 3.0))
    _kill(made["id"])
    run = _ended(api, made["id"])
    assert run["state_type"] == "CRASHED", run["state"]
    # Its MLflow run, open since training began, does not dangle: the hook ends it FAILED.
    dead = wait_for(
        lambda: [r for r in mlflow_runs_of(mlflow, made["id"]) if r["info"]["status"] == "FAILED"],
        60,
        "the training's MLflow run ended FAILED",
        1.0,
    )
    assert len(mlflow_runs_of(mlflow, made["id"])) == 1 == len(dead)

    # 2. Killed while logging to MLflow: its run exists (since training began), still RUNNING.
    made = call(
        f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True, "epochs": 1}}
    )
    wait_for(lambda: _task_running(api, made["id"], "log-mlflow"), RUN_TIMEOUT_S, "logging", 0.2)
    opened = [r for r in mlflow_runs_of(mlflow, made["id"]) if r["info"]["status"] == "RUNNING"]
    _kill(made["id"])
    run = _ended(api, made["id"])
    assert run["state_type"] == "CRASHED", run["state"]
    # The deployment server's on_crashed hook ends the MLflow run FAILED, saying why.
    failed = wait_for(
        lambda: [r for r in mlflow_runs_of(mlflow, made["id"]) if r["info"]["status"] == "FAILED"],
        60,
        "the MLflow run ended FAILED",
        1.0,
    )
    assert [r["info"]["run_id"] for r in failed] == [opened[0]["info"]["run_id"]]
    tags = {t["key"]: t["value"] for t in failed[0]["data"]["tags"]}
    assert "the Prefect flow run crashed" in tags["failure"], tags

    # 3. The next run succeeds and logs one finished run.
    made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True}})
    run = run_ended(api, made["id"], "the next run")
    assert run["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    assert [r["info"]["status"] for r in mlflow_runs_of(mlflow, made["id"])] == ["FINISHED"]


def test_two_runs_requested_at_once_run_one_after_the_other_without_locking_errors(
    stack, trained_run
):
    """The embedded servers keep their state in SQLite, which refuses concurrent writers
    ("database is locked"); the deployment server takes one run at a time (limit=1), so two
    runs requested together both complete, the second after the first."""
    api, dep, mlflow = stack["api"], stack["deployment_id"], stack["mlflow"]
    made = [
        call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True}})
        for _ in range(2)
    ]
    runs = [run_ended(api, m["id"], "both runs", 2 * RUN_TIMEOUT_S, 2.0) for m in made]
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert second["start_time"] >= first["end_time"]  # serialised, not side by side
    for r in runs:
        assert [x["info"]["status"] for x in mlflow_runs_of(mlflow, r["id"])] == ["FINISHED"]
    assert "database is locked" not in stack["serve_log"].read_text()


def test_mlflow_stopped_during_training_fails_the_run_naming_it_and_registers_nothing(
    stack, trained_run
):
    api, dep, mlflow = stack["api"], stack["deployment_id"], stack["mlflow"]
    settings = stack["settings"]
    versions = f"{mlflow}/api/2.0/mlflow/model-versions/search"
    before = len(call(versions).get("model_versions", []))

    made = call(
        f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True, "epochs": 3}}
    )
    wait_for(lambda: _task_running(api, made["id"], "train"), RUN_TIMEOUT_S, "training", 0.5)
    stop(start_mlflow(settings))  # the running server (reused by the call), stopped by pid
    try:
        run = _ended(api, made["id"])
        assert run["state_type"] == "FAILED", run["state"]
        logs = logs_of(api, made["id"])
        assert f"MLflow at {mlflow} is not answering" in logs, logs[-3000:]
        assert "Retry 2/2" in logs or "Retrying" in logs or logs.count("not answering") >= 2
    finally:
        start_mlflow(settings, timeout_s=120)
    # Nothing half-logged: the failed flow run's MLflow run (open since training began) never
    # finished, and no model version was registered.
    failed_id = made["id"]
    assert "FINISHED" not in [r["info"]["status"] for r in mlflow_runs_of(mlflow, failed_id)]
    assert len(call(versions).get("model_versions", [])) == before

    made = call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True}})
    run = _ended(api, made["id"])
    assert run["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    assert [r["info"]["status"] for r in mlflow_runs_of(mlflow, made["id"])] == ["FINISHED"]
    # The next logging ended the abandoned run FAILED (its process is gone).
    assert [r["info"]["status"] for r in mlflow_runs_of(mlflow, failed_id)] == ["FAILED"]


def test_prefect_restarted_while_served_loses_no_arrival(stack, trained_run):
    """The Prefect server goes away while the deployment is served and files arrive: the
    watcher keeps the event it could not send and sends it once the server is back, and the
    deployment server, still polling, starts the run."""
    api, dep = stack["api"], stack["deployment_id"]
    settings = stack["settings"]
    watcher = start_watcher(stack["config"], settings)
    before = {r["id"] for r in flow_runs(api, dep)}

    stop(start_prefect(settings))
    try:
        staging, inbox = stack["root"] / "staging2", (stack["root"] / "inbox").resolve()
        arrived = []
        for subject in (21, 22):
            written = write_demo_recording(staging, subject, "rest", duration_s=20.0)
            os.replace(written, inbox / written.name)
            arrived.append(written.name)
        wait_for(
            lambda: "file(s) kept" in watcher.log_path.read_text(),
            60,
            "the watcher keeping the burst",
            0.5,
        )
    finally:
        start_prefect(settings, timeout_s=120)

    def new_run_finished():
        new = [r for r in flow_runs(api, dep) if r["id"] not in before]
        return new if new and all(r["state_type"] in TERMINAL for r in new) else None

    new = wait_for(new_run_finished, RUN_TIMEOUT_S, "the run of the kept arrival", 2.0)
    assert [r["state_type"] for r in new] == ["COMPLETED"], stack["serve_log"].read_text()[-4000:]
    assert alive(watcher.pid)
    stored = WindowStore(load_config(stack["config"]).store.root, "demo").catalog()
    assert {Path(p).name for p in stored["source_path"]} >= set(arrived)
