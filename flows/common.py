"""What the flows share: when to retry a task, and the tags that tie an MLflow run to its flow run."""

from __future__ import annotations

from ecg_pipeline.config import FlowSettings

# The decorators' defaults, from the configuration (a run's own [flow] table replaces them with
# with_options): the one source of these numbers.
FLOW_DEFAULTS = FlowSettings()

# Names of exceptions (requests, urllib3, http.client) that mean "the server was not reachable".
_CONNECTION_ERRORS = {
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "MaxRetryError",
    "NewConnectionError",
    "ProtocolError",
    "RemoteDisconnected",
}


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says a server could not be reached.

    MLflow wraps a refused connection in an ``MlflowException`` raised inside the ``except``
    block, so the original error is on ``__context__``.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if type(exc).__name__ in _CONNECTION_ERRORS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_on_connection_error(task, task_run, state) -> bool:
    """A task's ``retry_condition_fn``: retry only when a server could not be reached."""
    # A refused or timed-out connection may heal within seconds (a server restarting); a bad
    # request or a missing checkpoint will not, so those fail at once.
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_connection_error(exc)


def flow_run_tags() -> dict[str, str]:
    """The Prefect flow run's id and UI address, for the MLflow run's lineage tags."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    run_id = str(flow_run.id)
    ui = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return {"prefect_flow_run_id": run_id, "prefect_flow_run_url": f"{ui}/runs/flow-run/{run_id}"}


def fail_mlflow_runs_of_crashed_run(flow, flow_run, state) -> None:
    """``on_crashed`` hook: the flow run's process died (killed, out of memory), so end the
    MLflow runs it had open FAILED instead of leaving them "running" for ever.

    The deployment server runs it when it sees the process exit; the next logging run also
    ends any run whose process is gone (``ecg_pipeline.tracking.abandoned``).
    """
    from ecg_pipeline.config import load_config
    from ecg_pipeline.tracking.abandoned import fail_runs_of_flow_run
    from ecg_pipeline.tracking.registry import using_tracking_uri

    default = flow.parameters.properties.get("config", {}).get("default")
    config = load_config(flow_run.parameters.get("config") or default)
    uri = config.servers.mlflow_uri
    with using_tracking_uri(uri):
        fail_runs_of_flow_run(
            uri, str(flow_run.id), f"the Prefect flow run crashed: {state.message}"
        )
