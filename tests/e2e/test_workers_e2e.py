"""Work-pool workers instead of ``serve``: the deployment registered on a process work pool
(``python -m flows.deploy``), two ``prefect worker start`` processes taking its runs from one
pool, as workers on two machines would. Real Prefect and MLflow servers (``stack``).
Runs after ``test_flow_e2e.py`` (by name), whose run counts it must not disturb."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import RUN_TIMEOUT_S, call, run_ended

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
POOL = "ecg-test-pool"


def test_two_workers_take_the_runs_of_one_pool(stack, trained_run, tmp_path):
    api, env = stack["api"], dict(stack["env"], PREFECT_WORKER_QUERY_SECONDS="1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.deploy",
            "--config",
            str(stack["config"]),
            "--pool",
            POOL,
            "--name",
            "pool",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    dep = call(f"{api}/deployments/name/ingest-train/pool")
    assert dep["work_pool_name"] == POOL

    workers, logs = [], []
    try:
        for name in ("worker-a", "worker-b"):
            log = tmp_path / f"{name}.log"
            logs.append(log)
            workers.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "prefect"),
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--name",
                        name,
                        "--limit",
                        "1",
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        made = [
            call(f"{api}/deployments/{dep['id']}/create_flow_run", {"parameters": {"train": False}})
            for _ in range(4)
        ]
        runs = [run_ended(api, m["id"], "the pool's runs", 2 * RUN_TIMEOUT_S, 1.0) for m in made]
        assert [r["state_type"] for r in runs] == ["COMPLETED"] * 4, [r["state"] for r in runs]
        texts = [log.read_text() for log in logs]
        took = [[m["id"] for m in made if _ran(text, m["id"])] for text in texts]
        assert sorted(sum(took, [])) == sorted(m["id"] for m in made), (took, texts)
        assert min(len(t) for t in took) >= 1, took  # both workers took runs
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)


def _ran(worker_log: str, flow_run_id: str) -> bool:
    # A worker may start to submit a run another worker has just claimed; the server then
    # tells it to abort, and it logs so.
    return (
        f"submitting flow run '{flow_run_id}'" in worker_log
        and f"Aborted submission of flow run '{flow_run_id}'" not in worker_log
    )
