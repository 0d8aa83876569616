"""MLflow runs whose process died: marked FAILED, never left "running" forever.

A process killed while it logs (SIGKILL, the machine's power, the out-of-memory killer) cannot
end its MLflow run, which then shows as running in the UI for ever. Every run the project opens
carries an ``owner`` tag naming its host, process id and the process's start time; before a new
run is opened, runs of the same experiment still RUNNING whose owner process on this host no
longer exists (or is another process that reused the pid) are ended FAILED with the reason in a
``failure`` tag. Served flow runs are covered sooner: when the deployment server sees a flow
run's process die it marks the flow run Crashed and its ``on_crashed`` hook ends that flow
run's MLflow runs (:func:`fail_runs_of_flow_run`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

OWNER_TAG = "owner"
FAILURE_TAG = "failure"


def owner_tags() -> dict[str, str]:
    """The ``owner`` tag of a run this process opens: ``host:pid:start``."""
    pid = os.getpid()
    return {OWNER_TAG: f"{socket.gethostname()}:{pid}:{_process_start(pid)}"}


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so that a pid reused by a
    later process is not mistaken for the owner; "" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return stat.rsplit(")", 1)[1].split()[19]


def owner_is_gone(owner: str) -> bool:
    """True when ``owner`` names a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's process: not ours to judge
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return bool(start) and _process_start(pid) not in ("", start)


def fail_abandoned_runs(client, experiment_id: str) -> list[str]:
    """End FAILED the experiment's RUNNING runs whose owner process on this host is gone."""
    failed = []
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
    )
    for run in runs:
        owner = run.data.tags.get(OWNER_TAG, "")
        if owner and owner_is_gone(owner):
            _fail(client, run.info.run_id, f"its process ({owner}) ended without finishing it")
            failed.append(run.info.run_id)
    return failed


def fail_runs_of_flow_run(tracking_uri: str, flow_run_id: str, reason: str) -> list[str]:
    """End FAILED every RUNNING run tagged with ``flow_run_id``, in every experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        filter_string=(
            f"tags.prefect_flow_run_id = '{flow_run_id}' and attributes.status = 'RUNNING'"
        ),
        max_results=200,
    )
    for run in runs:
        _fail(client, run.info.run_id, reason)
    return [run.info.run_id for run in runs]


def _fail(client, run_id: str, reason: str) -> None:
    client.set_tag(run_id, FAILURE_TAG, reason)
    client.set_terminated(run_id, "FAILED")
