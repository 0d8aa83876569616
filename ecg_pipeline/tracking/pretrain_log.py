"""Logging a pre-training run to MLflow: its settings, curves and encoders, and the registered
encoder ``ecgsl-encoder-<dataset>`` (a pickle-free ``pt2`` program of the backbone).

One MLflow run per ``pretrain_run`` in the experiment ``<dataset>-pretrain``; every fold's
encoder folder is an artefact, and the first fold's is registered (a fine-tuning names its
encoder folder, which these artefacts hold).
"""

from __future__ import annotations

import json
from pathlib import Path

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.tracking.abandoned import fail_abandoned_runs, owner_tags
from ecg_pipeline.tracking.keys import flatten_params
from ecg_pipeline.tracking.mlflow_log import _log_numbers, experiment_id
from ecg_pipeline.tracking.registry import using_tracking_uri
from ecg_pipeline.training.pretrain import ENCODER_SPEC, PretrainResult


def encoder_model_name(config: StudyConfig) -> str:
    return f"ecgsl-encoder-{config.dataset.name}"


def log_pretraining(
    result: PretrainResult, config: StudyConfig, *, tracking_uri: str | None = None
) -> dict:
    """Log ``result`` and register its first encoder; returns ``{"run_id", "model"}``."""
    import torch

    import mlflow
    from ecg_pipeline.models.ecg_sl import ECGSLBackbone
    from ecg_pipeline.tracking.export import EXAMPLE_BATCH, pip_requirements
    from ecg_pipeline.tracking.lineage import git_commit

    uri = tracking_uri or config.servers.mlflow_uri
    folds = list(result.encoders)
    first = result.encoders[folds[0]]
    metrics = []
    for fold, spec in result.encoders.items():
        for row in spec["history"]:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float):
                    metrics.append((f"{fold}/{key}", float(value), int(row["epoch"])))
        metrics.append((f"{fold}/best_val_loss", float(spec["best_val_loss"]), 0))
    tags = {
        "kind": "pretrain",
        "dataset": config.dataset.name,
        "objective": first["objective"],
        "transductive": str(bool(first["transductive"])).lower(),
        "datasets": ",".join(first["datasets"]),
        "folds": ",".join(folds),
        "git_commit": git_commit(),
        "ingest_hash": config.ingest_hash(),
        "seed": str(first["seed"]),
    }
    # `pretrain --seeds` writes NAME/seed<k>: each seed is its own run, named so.
    out = Path(result.out_dir)
    run_name = f"{out.parent.name}/{out.name}" if out.name == f"seed{first['seed']}" else out.name
    backbone = ECGSLBackbone(first["segment_samples"], first["max_beats"], **first["options"])
    folder = result.out_dir / folds[0]
    state = torch.load(folder / "encoder.pt", map_location="cpu", weights_only=True)
    backbone.load_state_dict(state)
    backbone.eval()
    example = torch.rand(EXAMPLE_BATCH, first["max_beats"], first["segment_samples"] + 2)
    example[..., -2], example[..., -1] = 0.8, 1.0
    name = encoder_model_name(config)
    with using_tracking_uri(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp_id = experiment_id(client, f"{config.dataset.name}-pretrain")
        fail_abandoned_runs(client, exp_id)
        with mlflow.start_run(
            experiment_id=exp_id, run_name=run_name, tags=tags | owner_tags()
        ) as run:
            _log_numbers(client, run.info.run_id, flatten_params(config), metrics)
            for fold in folds:
                client.log_artifacts(
                    run.info.run_id, str(result.out_dir / fold), f"encoders/{fold}"
                )
            info = mlflow.pytorch.log_model(
                backbone,
                name="encoder",
                serialization_format="pt2",
                input_example=example.numpy(),
                pip_requirements=pip_requirements(),
                metadata={
                    "folder": str(folder),
                    "spec": json.loads((folder / ENCODER_SPEC).read_text(encoding="utf-8"))
                    | {"history": None, "windows_seen": None},
                },
                registered_model_name=name,
            )
    return {
        "run_id": run.info.run_id,
        "model": f"models:/{name}/{info.registered_model_version}",
    }


def download_encoder(
    reference: str, config: StudyConfig, *, tracking_uri: str | None = None
) -> str:
    """Download a registered encoder's run folders (``encoders/<fold>``) and return the root.

    ``reference`` is ``models:/ecgsl-encoder-<dataset>/<version>``; the folder it returns
    holds one encoder per fold, as ``ecg-pipeline pretrain`` wrote them.
    """
    import tempfile

    import mlflow

    uri = tracking_uri or config.servers.mlflow_uri
    name, _, version = reference.removeprefix("models:/").partition("/")
    if not name or not version:
        raise ValueError(f"{reference!r}: expected models:/<name>/<version>")
    with using_tracking_uri(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        run_id = client.get_model_version(name, version).run_id
        target = Path(tempfile.mkdtemp(prefix=f"{name}-{version}-"))
        client.download_artifacts(run_id, "encoders", str(target))
    return str(target / "encoders")
