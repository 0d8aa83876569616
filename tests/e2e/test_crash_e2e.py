"""A served run killed with SIGKILL is marked Crashed in Prefect and FAILED in MLflow, and the next
run succeeds. Real Prefect and MLflow servers, the real deployment server (``stack``)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from e2e_support import RUN_TIMEOUT_S, TERMINAL, call, mlflow_runs_of, wait_for

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
    return wait_for(
        lambda: (r := call(f"{api}/flow_runs/{flow_run_id}"))["state_type"] in TERMINAL and r,
        120,
        "the killed run's end",
        1.0,
    )


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
    assert mlflow_runs_of(mlflow, made["id"]) == []  # nothing was opened, nothing dangles

    # 2. Killed while logging to MLflow: once its MLflow run exists, still RUNNING.
    made = call(
        f"{api}/deployments/{dep}/create_flow_run", {"parameters": {"force": True, "epochs": 1}}
    )
    opened = wait_for(
        lambda: [r for r in mlflow_runs_of(mlflow, made["id"]) if r["info"]["status"] == "RUNNING"],
        RUN_TIMEOUT_S,
        "the MLflow run of the logging task",
        0.2,
    )
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
    run = wait_for(
        lambda: (r := call(f"{api}/flow_runs/{made['id']}"))["state_type"] in TERMINAL and r,
        RUN_TIMEOUT_S,
        "the next run",
        2.0,
    )
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
    runs = [
        wait_for(
            lambda m=m: (r := call(f"{api}/flow_runs/{m['id']}"))["state_type"] in TERMINAL and r,
            2 * RUN_TIMEOUT_S,
            "both runs",
            2.0,
        )
        for m in made
    ]
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert second["start_time"] >= first["end_time"]  # serialised, not side by side
    for r in runs:
        assert [x["info"]["status"] for x in mlflow_runs_of(mlflow, r["id"])] == ["FINISHED"]
    assert "database is locked" not in stack["serve_log"].read_text()
