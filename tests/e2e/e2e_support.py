"""REST helpers of the end-to-end tests: Prefect and MLflow read with urllib
(:mod:`ecg_pipeline.stack.rest`, shared with bench/orchestration.py, plus test-only reads)."""

from __future__ import annotations

from pathlib import Path

RUN_TIMEOUT_S = 300.0  # one small run takes about 40 s here; far more when the cores are busy
# The shared REST helpers live in the library, where the benchmarks find them too.
from ecg_pipeline.stack.rest import TERMINAL, call, flow_runs, wait_for  # noqa: E402,F401


def write_study(root: Path, settings, extra: str = "") -> Path:
    """A small demo study under ``root`` (one epoch, 3 subjects) wired to ``settings``' servers;
    ``extra`` TOML is appended (more sections, never ones already written here)."""
    database = ""
    if settings.prefect_database_url:
        database += f'prefect_database_url = "{settings.prefect_database_url}"\n'
    if settings.mlflow_backend_uri:
        database += f'mlflow_backend_uri = "{settings.mlflow_backend_uri}"\n'
    config = root / "study.toml"
    config.write_text(f"""
[dataset]
name = "demo"
[discovery]
settle_s = 1.0
[store]
root = "{root / "store"}"
[demo]
n_subjects = 3
duration_s = 20.0
inbox = "{root / "inbox"}"
[training]
epochs = 1
cpu_threads = 1
out_dir = "{root / "runs"}"
[servers]
prefect_port = {settings.prefect_port}
mlflow_port = {settings.mlflow_port}
state_dir = "{settings.state_dir}"
mlflow_dir = "{settings.mlflow_dir}"
{database}{extra}""")
    return config


def run_ended(
    api: str, flow_run_id: str, what: str, timeout_s: float = RUN_TIMEOUT_S, every_s: float = 2.0
) -> dict:
    """The flow run once its state is terminal (completed, failed, crashed, cancelled)."""
    return wait_for(
        lambda: (r := call(f"{api}/flow_runs/{flow_run_id}"))["state_type"] in TERMINAL and r,
        timeout_s,
        what,
        every_s,
    )


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
