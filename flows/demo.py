"""``make run``: the product end to end on the embedded default, in one command.

Starts (or reuses) the embedded Prefect and MLflow servers on 127.0.0.1 and the deployment server
(``python -m flows.serve``, in the background), writes the synthetic demo cohort as real ``.acq``
files into the inbox when it holds none, runs the deployment ``ingest-train/default`` once (what
``prefect deployment run ingest-train/default`` does) and waits for it, prints the Prefect
flow-run address, the MLflow run address and the test metrics, and leaves everything running for
the UIs and later runs (``make stop`` stops exactly those processes).

Run from the repository root: ``python -m flows.demo [--config F] [--epochs N] [--force]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    parser.add_argument(
        "--epochs",
        type=int,
        help="training epochs (default: the configuration's [training] epochs)",
    )
    parser.add_argument("--force", action="store_true", help="train even if nothing new arrived")
    args = parser.parse_args(argv)

    from ecg_pipeline.cohort.demo import write_study_cohort
    from ecg_pipeline.config import load_config
    from ecg_pipeline.report import render_flow_summary
    from ecg_pipeline.stack.servers import ServerError, start_stack, use_prefect_api

    config = load_config(args.config)
    try:
        handles = start_stack(args.config, config.servers, serve=True)
    except ServerError as exc:
        print(f"error: {exc}")
        return 2
    serving = handles[-1]
    for handle in handles:
        state = "started" if handle.started else "already running"
        print(f"{handle.name} {state}: {handle.ui_url} (log {handle.log_path})", flush=True)
    use_prefect_api(config.servers)  # before prefect is imported: it reads settings once

    inbox = config.demo.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    wrote_cohort = not any(p.suffix.lower() == ".acq" for p in inbox.iterdir())
    if wrote_cohort:
        files = write_study_cohort(inbox, config)
        print(f"wrote {len(files)} synthetic .acq recordings to {inbox}", flush=True)
        # Ingest defers files younger than [discovery] settle_s (they may still be copying);
        # these arrived whole by rename, so waiting that long once is all it costs.
        time.sleep(config.discovery.settle_s + 0.5)

    # Force when the cohort was just written: a running watcher may have started a run over it
    # first, and this run must still train and report.
    force = args.force or wrote_cohort
    parameters = {"recordings": str(inbox.resolve()), "force": force}
    if args.epochs:  # else the configuration's [training] epochs, as for every other start
        parameters["epochs"] = args.epochs
    deployment = f"ingest-train/{config.flow.deployment}"
    print(f"running {deployment} with {parameters} ...", flush=True)
    flow_run = _run_and_wait(deployment, parameters, serving)
    prefect_ui = config.servers.prefect_api.rstrip("/").removesuffix("/api")
    print(f"Prefect flow run: {prefect_ui}/runs/flow-run/{flow_run.id} ({flow_run.state.name})")
    if not flow_run.state.is_completed():
        print(
            f"error: the run ended {flow_run.state.name}: {flow_run.state.message}; "
            f"see the link above and {serving.log_path}"
        )
        return 1
    summary = _json_result(flow_run.state)
    print("\n" + render_flow_summary(summary))
    print(
        "\nThe servers and the deployment keep running for the UIs and for "
        "`prefect deployment run ingest-train/default`; `make stop` stops them."
    )
    return 0


def _run_and_wait(deployment: str, parameters: dict, serving, poll_s: float = 2.0):
    """Start ``deployment`` and wait for its final state, as long as the server serves."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from ecg_pipeline.stack.processes import alive

    flow_run = run_deployment(deployment, parameters=parameters, timeout=0)
    with get_client(sync_client=True) as client:
        while not flow_run.state.is_final():
            if not alive(serving.pid):
                raise SystemExit(
                    f"error: the deployment server (pid {serving.pid}) stopped; "
                    f"see {serving.log_path}"
                )
            time.sleep(poll_s)
            flow_run = client.read_flow_run(flow_run.id)
    return flow_run


def _json_result(state) -> dict:
    """The flow's summary, read only if it was stored as JSON (never unpickled)."""
    serializer = getattr(getattr(state.data, "serializer", None), "type", None)
    if serializer != "json":
        raise SystemExit(f"error: the run's result is stored as {serializer!r}, not JSON: not read")
    return state.result()


if __name__ == "__main__":
    raise SystemExit(main())
