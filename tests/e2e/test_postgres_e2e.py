"""The whole DAG with both servers on PostgreSQL: Prefect's database and MLflow's backend store on
a real PostgreSQL server the test starts on a free loopback port (and stops), artifacts behind
MLflow's proxy. Skipped, with the reason, where no PostgreSQL server binaries are installed
(``.ci/run`` installs Debian's ``postgresql`` as it does chromium)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from e2e_support import RUN_TIMEOUT_S, call, flow_runs, mlflow_runs_of, write_study

from ecg_pipeline.cohort.demo import write_demo_cohort
from ecg_pipeline.config import ServerSettings
from ecg_pipeline.stack.servers import (
    free_port,
    start_both,
    start_deployment_server,
    stop_servers,
)

pytestmark = pytest.mark.e2e


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, so its own user runs it.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free loopback port, with databases ``prefect`` and ``mlflow``."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl) installed")
    if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode:
        pytest.skip("running as root and there is no 'postgres' user to run the server")
    # Not under pytest's temp folder, which is private to the user running the tests: the
    # server's own user must be able to reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="ecg-pipeline-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        for folder in (root, sockets):
            shutil.chown(folder, "postgres")
    port = free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    run([str(bin_dir / "initdb"), "-D", str(data), "-U", "ecg", "--auth=trust", "-E", "UTF8"])
    run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -k {sockets} -h 127.0.0.1",
        ]
    )
    try:
        for db in ("prefect", "mlflow"):
            run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ecg", db])
        yield {"port": port, "bin": bin_dir}
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )


def _count(postgres: dict, db: str, table: str) -> int:
    done = subprocess.run(
        _as_postgres(
            [
                str(postgres["bin"] / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(postgres["port"]),
                "-U",
                "ecg",
                "-d",
                db,
                "-tAc",
                f"select count(*) from {table}",
            ]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.strip())


def test_the_dag_runs_with_both_servers_on_postgresql(postgres, tmp_path):
    port = postgres["port"]
    settings = ServerSettings(
        prefect_port=free_port(),
        mlflow_port=free_port(),
        state_dir=tmp_path / "state",
        mlflow_dir=tmp_path / "mlflow",
        prefect_database_url=f"postgresql+asyncpg://ecg@127.0.0.1:{port}/prefect",
        mlflow_backend_uri=f"postgresql+psycopg2://ecg@127.0.0.1:{port}/mlflow",
    )
    config = write_study(tmp_path, settings)
    prefect, mlflow = start_both(settings)
    try:
        start_deployment_server(config, settings)
        write_demo_cohort(tmp_path / "inbox", n_subjects=3, duration_s=20.0)
        time.sleep(1.5)  # past settle_s
        env = dict(os.environ, PREFECT_API_URL=prefect.url, PREFECT_HOME=str(tmp_path / "client"))
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "prefect"),
                "deployment",
                "run",
                "ingest-train/default",
                "--watch",
                "--watch-timeout",
                str(int(RUN_TIMEOUT_S)),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S + 60,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        dep = call(f"{prefect.url}/deployments/name/ingest-train/default")
        (run,) = flow_runs(prefect.url, dep["id"])
        assert run["state_type"] == "COMPLETED"
        logged = mlflow_runs_of(mlflow.url, run["id"])
        assert [r["info"]["status"] for r in logged] == ["FINISHED"]
        versions = call(f"{mlflow.url}/api/2.0/mlflow/model-versions/search")["model_versions"]
        assert len(versions) == 1
        # Both servers really keep their state in PostgreSQL, not in a SQLite file.
        assert _count(postgres, "prefect", "flow_run") >= 1
        assert _count(postgres, "mlflow", "runs") == 1
        assert not (settings.state_dir / "prefect" / "prefect.db").exists()
        assert not (settings.mlflow_dir / "mlflow.db").exists()
        # Artifacts went through MLflow's proxy into its own folder.
        assert list((settings.mlflow_dir / "artifacts").rglob("*.png"))
    finally:
        stop_servers(settings.state_dir)
