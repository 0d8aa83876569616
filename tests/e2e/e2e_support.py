"""REST helpers of the end-to-end tests: Prefect and MLflow read with urllib
(:mod:`ecg_pipeline.stack.rest`, shared with bench/orchestration.py, plus test-only reads)."""

from __future__ import annotations

RUN_TIMEOUT_S = 300.0  # one small run takes about 40 s here; far more when the cores are busy
# The shared REST helpers live in the library, where the benchmarks find them too.
from ecg_pipeline.stack.rest import TERMINAL, call, flow_runs, wait_for  # noqa: E402,F401


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
