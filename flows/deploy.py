"""Register ``ingest-train`` and ``predict`` on a Prefect work pool, for workers to run.

``python -m flows.serve`` runs the flow runs itself, on the machine that serves them. With a work
pool, any number of workers (``prefect worker start --pool NAME``), on this machine or others,
take the runs instead: each worker needs this repository at the same path (the deployments
point at its source), the project's environment, and the recordings, the store and the
servers at the addresses the configuration names. Run from the repository root::

    python -m flows.deploy --config configs/demo.toml --pool ecg-pipeline
    prefect worker start --pool ecg-pipeline      # on each machine that should take runs

The pool is created (type ``process``) when missing. The event trigger of ``flows.serve`` is
not registered here: a lab uses one of the two ways to run its study's deployments.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def deploy(config_path: str | os.PathLike, pool: str, name: str | None = None) -> list[str]:
    """Create the process work pool ``pool`` if missing and register both deployments on it,
    as ``ingest-train/<name>`` and ``predict/<name>`` (``[flow] deployment`` by default; a
    served deployment of the same name would be taken over by the pool).

    Returns the deployments' ids.
    """
    from ecg_pipeline.config import load_config
    from ecg_pipeline.stack.servers import use_prefect_api

    config_path = str(Path(config_path).resolve())
    config = load_config(config_path)
    use_prefect_api(config.servers)  # before prefect is imported: it reads settings once

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
    ids = []
    for entrypoint in ("flows/ingest_train.py:ingest_train", "flows/predict.py:predict"):
        source = flow.from_source(source=str(REPO), entrypoint=entrypoint)
        ids.append(
            str(
                source.deploy(
                    name=name or config.flow.deployment,
                    work_pool_name=pool,
                    parameters={"config": config_path},
                    # Workers start the flow in the repository, where relative paths of the
                    # configuration resolve as they do for the deployment server.
                    job_variables={"working_dir": str(REPO)},
                    build=False,
                    push=False,
                    print_next_steps=False,
                )
            )
        )
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    parser.add_argument("--pool", default="ecg-pipeline")
    parser.add_argument("--name", help="the deployments' name (default: [flow] deployment)")
    args = parser.parse_args(argv)
    for deployment_id in deploy(args.config, args.pool, args.name):
        print(f"deployment {deployment_id} on work pool {args.pool!r}")


if __name__ == "__main__":
    main()
