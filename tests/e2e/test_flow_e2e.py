"""The served ``ingest-train`` deployment end to end, on real servers and real processes.

No mocks: a Prefect server and an MLflow server on free loopback ports (state in a temp folder),
``python -m flows.serve`` and ``python -m ecg_pipeline.watch`` as subprocesses, a run started
with the ``prefect`` command line, and both servers' REST APIs read with urllib. The cohort is
tiny (3 subjects x 3 conditions x 20 s, one epoch on one thread) so that the module stays near
three minutes on a busy two-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ecg_pipeline.cohort.demo import write_demo_cohort, write_demo_recording
from ecg_pipeline.config import ServerSettings, load_config
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.servers import free_port, start_mlflow, start_prefect, stop_servers

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "ingest-train/default"
RUN_TIMEOUT_S = 300.0  # one small run takes about 40 s here; far more when the cores are busy
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- REST helpers ------------------------------------------------------------------------------
def _call(url: str, body: dict | None = None) -> dict | list:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        return json.loads(response.read())


def _flow_runs(api: str, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return _call(f"{api}/flow_runs/filter", body)


def _wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _mlflow_runs_of(mlflow: str, flow_run_id: str) -> list[dict]:
    exp = _call(f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo")
    body = {
        "experiment_ids": [exp["experiment"]["experiment_id"]],
        "filter": f"tags.prefect_flow_run_id = '{flow_run_id}'",
    }
    return _call(f"{mlflow}/api/2.0/mlflow/runs/search", body).get("runs", [])


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started and its group (the served flow runs are its children)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Both servers, a small study config and ``python -m flows.serve``; all stopped at the end."""
    root = tmp_path_factory.mktemp("e2e")
    settings = ServerSettings(
        prefect_port=free_port(), mlflow_port=free_port(),
        state_dir=root / "state", mlflow_dir=root / "mlflow",
    )  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        starts = [pool.submit(start_prefect, settings, timeout_s=180),
                  pool.submit(start_mlflow, settings, timeout_s=180)]  # fmt: skip
        try:
            prefect, mlflow = (f.result() for f in starts)
        except BaseException:
            pool.shutdown(wait=True)  # let the other start finish, so that it can be stopped
            stop_servers(settings.state_dir)
            raise
    config = root / "study.toml"
    config.write_text(f"""
[dataset]
name = "demo"
[discovery]
settle_s = 1.0
[store]
root = "{root / 'store'}"
[demo]
n_subjects = 3
duration_s = 20.0
inbox = "{root / 'inbox'}"
[training]
epochs = 1
cpu_threads = 1
out_dir = "{root / 'runs'}"
[servers]
prefect_port = {settings.prefect_port}
mlflow_port = {settings.mlflow_port}
state_dir = "{settings.state_dir}"
mlflow_dir = "{settings.mlflow_dir}"
""")
    env = dict(
        os.environ, PREFECT_API_URL=prefect.url, PREFECT_HOME=str(root / "client"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_RUNNER_POLL_FREQUENCY="2",
        MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    procs: list[subprocess.Popen] = []

    def spawn(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append(proc)
        return proc, log

    serve, serve_log = spawn("serve", "-m", "flows.serve", "--config", str(config))
    try:
        def deployment():
            assert serve.poll() is None, serve_log.read_text()
            try:
                return _call(f"{prefect.url}/deployments/name/{DEPLOYMENT}")
            except OSError:
                return None

        dep = _wait_for(deployment, 120, "the served deployment")
        yield {
            "root": root, "config": config, "env": env, "api": prefect.url, "mlflow": mlflow.url,
            "deployment_id": dep["id"], "spawn": spawn, "serve_log": serve_log,
        }  # fmt: skip
    finally:
        for proc in reversed(procs):
            _stop(proc)
        stop_servers(settings.state_dir)


# --- tests -------------------------------------------------------------------------------------
def test_deployment_run_ingests_trains_and_logs_to_mlflow(stack):
    write_demo_cohort(stack["root"] / "inbox", n_subjects=3, duration_s=20.0)
    time.sleep(1.5)  # past settle_s: the files were written in place just now
    done = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "deployment", "run", DEPLOYMENT,
         "-p", "epochs=1", "--watch", "--watch-timeout", str(int(RUN_TIMEOUT_S))],
        env=stack["env"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 60,
    )  # fmt: skip
    runs = _flow_runs(stack["api"], stack["deployment_id"])
    assert done.returncode == 0, done.stdout + done.stderr + stack["serve_log"].read_text()[-4000:]
    assert [r["state_type"] for r in runs] == ["COMPLETED"]
    assert runs[0]["parameters"]["epochs"] == 1

    logged = _mlflow_runs_of(stack["mlflow"], runs[0]["id"])
    assert len(logged) == 1
    run = logged[0]
    assert run["info"]["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert 0.0 <= metrics["heldout_score"] <= 1.0
    assert "identity_test_accuracy" in metrics and "activity_test_f1_macro" in metrics
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["prefect_flow_run_url"].endswith(f"/runs/flow-run/{runs[0]['id']}")
    assert tags["n_recordings"] == "9"


def test_files_dropped_into_the_inbox_trigger_exactly_one_run(stack):
    api, dep = stack["api"], stack["deployment_id"]
    before = {r["id"] for r in _flow_runs(api, dep)}
    watcher, log = stack["spawn"](
        "watch", "-m", "ecg_pipeline.watch", "--config", str(stack["config"]), "--debounce-s", "1"
    )
    _wait_for(lambda: "watching" in log.read_text(), 90, "the watcher to start", 0.5)
    assert "(0 file(s) not yet stored)" in log.read_text()  # the first run stored them all

    # Arrive the way a copy should: written elsewhere, then renamed into the inbox.
    staging, inbox = stack["root"] / "staging", (stack["root"] / "inbox").resolve()
    for condition in ("rest", "exercise"):
        written = write_demo_recording(staging, 4, condition, duration_s=20.0)
        os.replace(written, inbox / written.name)

    def new_run_finished():
        new = [r for r in _flow_runs(api, dep) if r["id"] not in before]
        return new if new and all(r["state_type"] in TERMINAL for r in new) else None

    new = _wait_for(new_run_finished, RUN_TIMEOUT_S, "the triggered run", 2.0)
    time.sleep(5)  # longer than debounce + poll: a second event would have made a run by now
    new = [r for r in _flow_runs(api, dep) if r["id"] not in before]
    assert len(new) == 1, new
    assert new[0]["state_type"] == "COMPLETED", stack["serve_log"].read_text()[-4000:]
    assert new[0]["parameters"]["recordings"] == str(inbox)
    assert log.read_text().count("emitted ecg.recordings.arrived") == 1
    assert watcher.poll() is None

    assert len(_mlflow_runs_of(stack["mlflow"], new[0]["id"])) == 1
    config = load_config(stack["config"])
    assert len(WindowStore(config.store.root, "demo").catalog()) == 11


def _logs_of(api: str, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    return "\n".join(row["message"] for row in _call(f"{api}/logs/filter", body))


def test_a_run_over_stored_bytes_skips_training(stack):
    api, dep = stack["api"], stack["deployment_id"]
    before = {r["id"] for r in _flow_runs(api, dep)}
    made = _call(f"{api}/deployments/{dep}/create_flow_run", {"parameters": {}})
    run = _wait_for(
        lambda: (r := _call(f"{api}/flow_runs/{made['id']}"))["state_type"] in TERMINAL and r,
        RUN_TIMEOUT_S, "the run over unchanged files", 2.0,
    )  # fmt: skip
    assert run["state_type"] == "COMPLETED"
    assert {r["id"] for r in _flow_runs(api, dep)} - before == {made["id"]}
    logs = _wait_for(lambda: "ingest-train:" in (t := _logs_of(api, made["id"])) and t, 30, "logs")
    summary = json.loads(logs.split("ingest-train: ", 1)[1].splitlines()[0])
    assert summary["counts"] == {"unchanged": 11}
    assert summary["trained"] is False and "training skipped" in summary["note"]
    assert _mlflow_runs_of(stack["mlflow"], made["id"]) == []


def test_logging_retries_connection_errors_only(stack):
    """The log task against a closed port: tried three times; a missing checkpoint: once."""
    config = stack["config"]
    run_dir = next((stack["root"] / "runs").iterdir())
    closed = f"servers.tracking_uri='http://127.0.0.1:{free_port()}'"  # nothing listens there
    script = f"""
from prefect import flow
from ecg_pipeline.config import load_config
from flows.ingest_train import log_mlflow

@flow
def probe():
    cfg = load_config({str(config)!r}, overrides=[{closed!r}])
    for run_dir in ({str(run_dir)!r}, {str(stack['root'] / 'no-such-run')!r}):
        state = log_mlflow.with_options(retry_delay_seconds=0)(
            run_dir, cfg, {str(stack['root'] / 'store')!r}, None, {{}}, return_state=True)
        print("STATE", state.type.value, flush=True)

probe()
"""
    # No retries inside MLflow's client, so that the task's own retries are what is counted.
    env = dict(stack["env"], MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    out = done.stdout + done.stderr
    assert out.count("STATE FAILED") == 2, out[-4000:]
    assert out.count("Retry 1/2") == 1 and out.count("Retry 2/2") == 1, out[-4000:]
