"""Serve ``ingest-train/default`` (on demand or by event) and ``predict/default`` (on demand).

Run ``python -m flows.serve --config configs/demo.toml`` from the repository root and leave it
running, or let ``make serve`` (``ecg-pipeline servers start --serve``) run it in the
background. With ``PREFECT_API_URL`` set, any shell starts runs:
``prefect deployment run ingest-train/default`` trains, and so does the watcher
(``python -m ecg_pipeline.stack.watch``) when it emits ``ecg.recordings.arrived`` for an inbox;
``prefect deployment run predict/default -p recordings=FOLDER`` labels new recordings with the
champion model.

One run at a time (``limit=1``): a burst of arrivals queues up instead of training twice on a
half-written store, one run at a time decides the champion, and a prediction waits for a running
training. The deployments stay unpaused when this process stops, so runs asked for meanwhile
start when it is back.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def serve(config_path: str | os.PathLike) -> None:
    """Register both deployments (ingest-train's with its event trigger) and run their flow runs.

    Blocks until interrupted.

    Parameters
    ----------
    config_path : path-like
        The study configuration; every run gets it as its ``config`` parameter, its
        ``[servers]`` table names the Prefect API, and its inbox is the one whose events
        start ``ingest-train``.
    """
    from ecg_pipeline.config import load_config
    from ecg_pipeline.stack.servers import use_prefect_api
    from ecg_pipeline.stack.watch import EVENT, inbox_resource_id

    config_path = str(Path(config_path).resolve())
    config = load_config(config_path)
    use_prefect_api(config.servers)  # before prefect is imported: it reads settings once
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", str(config.flow.runner_poll_s))

    from prefect import serve as serve_deployments
    from prefect.events import DeploymentEventTrigger

    from flows.ingest_train import ingest_train_for
    from flows.predict import predict

    trigger = DeploymentEventTrigger(
        expect={EVENT},
        # Only this study's inbox: another watcher's events never start this deployment.
        match={"prefect.resource.id": inbox_resource_id(config.watch.folder or config.demo.inbox)},
        parameters={"recordings": "{{ event.payload.folder }}", "config": config_path},
    )
    serve_deployments(
        ingest_train_for(config).to_deployment(
            name=config.flow.deployment, parameters={"config": config_path}, triggers=[trigger]
        ),
        predict.to_deployment(name=config.flow.deployment, parameters={"config": config_path}),
        limit=1,
        pause_on_shutdown=False,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    serve(parser.parse_args(argv).config)


if __name__ == "__main__":
    main()
