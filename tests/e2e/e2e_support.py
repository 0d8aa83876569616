"""REST helpers the end-to-end tests (and bench/orchestration.py) share: Prefect and MLflow read
with urllib."""

from __future__ import annotations

import json
import time
import urllib.request

RUN_TIMEOUT_S = 300.0  # one small run takes about 40 s here; far more when the cores are busy
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Loopback servers: a proxy from the environment must not sit in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, body: dict | None = None) -> dict | list:
    """GET ``url`` (or POST ``body`` as JSON) and return the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        return json.loads(response.read())


def flow_runs(api: str, deployment_id: str) -> list[dict]:
    """The deployment's flow runs, oldest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return call(f"{api}/flow_runs/filter", body)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def mlflow_runs_of(mlflow: str, flow_run_id: str, experiment: str = "demo") -> list[dict]:
    """The MLflow runs tagged with a Prefect flow run's id."""
    exp = call(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}")
    body = {
        "experiment_ids": [exp["experiment"]["experiment_id"]],
        "filter": f"tags.prefect_flow_run_id = '{flow_run_id}'",
    }
    return call(f"{mlflow}/api/2.0/mlflow/runs/search", body).get("runs", [])


def logs_of(api: str, flow_run_id: str) -> str:
    """A flow run's log messages, one per line."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return "\n".join(row["message"] for row in call(f"{api}/logs/filter", body))
