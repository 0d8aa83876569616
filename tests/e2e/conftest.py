"""The end-to-end stack, shared by every e2e module: real servers, the served flow, one run.

``stack`` starts a Prefect server and an MLflow server on free loopback ports (state in a temp
folder) and the deployment server as ``make serve`` does (``start_deployment_server``); ``trained_run`` writes a tiny demo cohort
(3 subjects x 3 conditions x 20 s, one epoch on one thread) and runs the deployment once with
the ``prefect`` command line. Both are session-scoped: one training serves every check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import RUN_TIMEOUT_S, call, flow_runs, mlflow_runs_of, write_study

from ecg_pipeline.cohort.demo import write_demo_cohort
from ecg_pipeline.config import ServerSettings
from ecg_pipeline.stack.servers import free_port, start_both, start_deployment_server, stop_servers

DEPLOYMENT = "ingest-train/default"


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """Both servers, a small study config and the served deployments; all stopped by pid."""
    root = tmp_path_factory.mktemp("e2e")
    settings = ServerSettings(
        prefect_port=free_port(),
        mlflow_port=free_port(),
        state_dir=root / "state",
        mlflow_dir=root / "mlflow",
    )
    prefect, mlflow = start_both(settings)
    config = write_study(
        root,
        settings,
        f"""
[pretrain]
epochs = 2
out_dir = "{root / "pretrained"}"
[predict]
out_dir = "{root / "predictions"}"
[watch]
debounce_s = 1.0
""",
    )
    env = dict(
        os.environ,
        PREFECT_API_URL=prefect.url,
        PREFECT_HOME=str(root / "client"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    try:
        # What `make serve` runs: the deployment server in the background, by pid file.
        serving = start_deployment_server(config, settings)
        dep = call(f"{prefect.url}/deployments/name/{DEPLOYMENT}")
        yield {
            "root": root,
            "config": config,
            "settings": settings,
            "env": env,
            "api": prefect.url,
            "mlflow": mlflow.url,
            "prefect_ui": prefect.ui_url,
            "mlflow_ui": mlflow.ui_url,
            "deployment_id": dep["id"],
            "serve_log": serving.log_path,
        }
    finally:
        stop_servers(settings.state_dir)  # the watcher, the deployment server, both servers


@pytest.fixture(scope="session")
def trained_run(stack):
    """One ``prefect deployment run ingest-train/default -p epochs=1`` over a fresh demo cohort.

    Returns the command's output, the Prefect flow run and its MLflow runs (REST JSON) and
    the run folder; the tests that read them assert on them.
    """
    write_demo_cohort(stack["root"] / "inbox", n_subjects=3, duration_s=20.0)
    time.sleep(1.5)  # past settle_s: the files were written in place just now
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "prefect"),
            "deployment",
            "run",
            DEPLOYMENT,
            "-p",
            "epochs=1",
            "--watch",
            "--watch-timeout",
            str(int(RUN_TIMEOUT_S)),
        ],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
    )
    runs = flow_runs(stack["api"], stack["deployment_id"])
    assert done.returncode == 0, done.stdout + done.stderr + stack["serve_log"].read_text()[-4000:]
    assert len(runs) == 1, runs
    logged = mlflow_runs_of(stack["mlflow"], runs[0]["id"])
    # training.run names the run folder after the flow run (its id's first 8 characters).
    run_dirs = list((stack["root"] / "runs").glob(f"*-{runs[0]['id'][:8]}"))
    return {
        "command": done,
        "flow_run": runs[0],
        "mlflow_runs": logged,
        "run_dir": run_dirs[0] if run_dirs else None,
    }
