"""The ``ingest-train`` flow: a folder of recordings to windows, a trained model and an MLflow run.

Each task is one call into ``ecg_pipeline``; tasks hand each other paths, ids and small
summaries, never arrays (a file's windows live only inside its own task, which writes them)::

    discover (list settled files, label them) -> validate-labels (pandera contract)
        -> plan (hash, decide against the store)
        -> ingest-file x N, in threads (read + check, preprocess, check the contracts, write)
        -> record-batch (rejections table, store catalog)
        -> train (torch; checkpoints) -> evaluate (test metrics)
        -> log-mlflow (retried on connection errors)

Bad input is never retried: the library turns it into a row of the rejections table and the
batch goes on. When every offered file was already stored with the same bytes, nothing is
trained and the returned summary says so.

Only this folder and ``ecg_pipeline/watch.py`` import prefect (see ``design.md``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import flow_run_tags, retry_on_connection_error


@dataclass
class Discovered:
    """What ``discover`` found: labelled files to plan, and the files already refused."""

    labels: list  # ecg_pipeline.cohort.labels.Labels
    errors: list  # ecg_pipeline.errors.IngestError


# --- tasks ------------------------------------------------------------------------------------
# NO_CACHE everywhere: a re-run must look at the folder and store again (the store's own
# sha256 + config-hash check skips what is already there), and hashing a config object for a
# cache key buys nothing. Task results are not persisted; only the flow's small JSON summary is.
@task(name="discover", cache_policy=NO_CACHE, persist_result=False)
def discover_files(folder: str, config, manifest: str | None) -> Discovered:
    """List the settled recordings under ``folder`` and label them (manifest or file names)."""
    from ecg_pipeline.cohort.labels import discover, label_files, read_manifest

    ready, deferred = discover(folder, config)
    manifest_path = Path(manifest) if manifest else Path(folder) / config.discovery.manifest_name
    table = read_manifest(manifest_path) if manifest or manifest_path.exists() else None
    labels, label_errors = label_files(ready, config, table)
    return Discovered(labels, [*deferred, *label_errors])


@task(name="validate-labels", cache_policy=NO_CACHE, persist_result=False)
def validate_labels(found: Discovered, config) -> Discovered:
    """Check subject and condition labels against the study (the pandera manifest contract)."""
    from ecg_pipeline.cohort.labels import validate_labels as check

    labels, invalid = check(found.labels, config)
    return Discovered(labels, [*found.errors, *invalid])


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)
def plan_files(labels: list, config, store_root: str):
    """Hash each file and decide against the store: write, replace, skip or refuse."""
    from ecg_pipeline.ingest import plan_batch
    from ecg_pipeline.io.atomic import remove_dead_temp_files
    from ecg_pipeline.io.store import WindowStore

    store = WindowStore(store_root, config.dataset.name)
    if store.path.exists():
        remove_dead_temp_files(store.path)  # left by a run killed mid-write
    plan = plan_batch(labels, store.catalog(), config.ingest_hash(), config.dataset.format)
    store.remove(plan.stale_files)
    return plan


@task(
    name="ingest-file",
    task_run_name="ingest-{planned.labels.subject}-{planned.labels.condition}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ingest_file(planned, config, store_root: str):
    """Read and check one file, cut it into windows, check the contracts and write it.

    The batch's manifest contract holds one cross-row rule (unique ``source_path``), which
    :func:`~ecg_pipeline.ingest.plan_batch` already guarantees, so checking file by file
    refuses exactly what checking the batch would.

    Returns
    -------
    ecg_pipeline.ingest.FileResult
        ``written``/``replaced``, or ``rejected`` carrying the error (never raised).
    """
    from ecg_pipeline.errors import IngestError
    from ecg_pipeline.ingest import FileResult, process_file, validate_batch, write_batch
    from ecg_pipeline.io.store import WindowStore

    config_hash = config.ingest_hash()
    try:
        processed = process_file(planned, config)
    except IngestError as exc:
        return FileResult(planned.labels.source_path, "rejected", error=exc)
    ok, errors = validate_batch([processed], config, config.dataset.name, config_hash)
    if errors:
        return FileResult(planned.labels.source_path, "rejected", error=errors[0])
    return write_batch(ok, WindowStore(store_root, config.dataset.name), config_hash)[0]


@task(name="record-batch", cache_policy=NO_CACHE, persist_result=False)
def record_batch(results: list, config, store_root: str) -> dict[str, Any]:
    """Write the rejections table and the store's recordings list, as ``ingest_folder`` does."""
    from ecg_pipeline.ingest import write_batch_tables
    from ecg_pipeline.io.store import WindowStore

    errors = [r.error for r in results if r.error is not None]
    catalog, rejections_file = write_batch_tables(
        WindowStore(store_root, config.dataset.name), errors
    )
    return {
        "counts": dict(Counter(r.status for r in results)),
        "rejected": [
            {"file": e.path, "error": type(e).__name__, "reason": e.reason} for e in errors
        ],
        "rejections_file": str(rejections_file),
        "stored_recordings": len(catalog),
    }


@task(name="train", cache_policy=NO_CACHE, persist_result=False)
def train_model(config, store_root: str, run_name: str) -> str:
    """Train every fold of the configured split on all stored windows; returns the run folder
    (checkpoints with their calibrated identity thresholds, ``results.json``)."""
    from ecg_pipeline.training.run import train_run

    return str(train_run(config, store_root=store_root, run_name=run_name).run_dir)


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_model(run_dir: str, config, store_root: str) -> dict[str, Any]:
    """Score the run's checkpoints on the test side of the split; returns the metrics per task."""
    from ecg_pipeline.training.run import evaluate_run

    return evaluate_run(run_dir, config, store_root=store_root).summary()


# Retries come from [flow] log_retries and log_retry_delay_s when the flow runs (with_options).
@task(
    name="log-mlflow",
    retries=2,
    retry_delay_seconds=5,
    persist_result=False,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
)
def log_mlflow(
    run_dir: str, config, store_root: str, rejections_file: str, tags: dict[str, str]
) -> dict[str, Any]:
    """Log the run in ``run_dir`` to the tracking server and register its model."""
    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.tracking.mlflow_log import log_training_run
    from ecg_pipeline.training.run import RunResult

    folds = json.loads((Path(run_dir) / "results.json").read_text())["folds"]
    tracked = log_training_run(
        RunResult(Path(run_dir), folds),
        config,
        tracking_uri=config.servers.mlflow_uri,
        tags=tags,
        recordings=WindowStore(store_root, config.dataset.name).catalog(),
        rejections=rejections_file,
    )
    return {
        "mlflow_run_id": tracked.run_id,
        "mlflow_run_url": tracked.run_url,
        "model_uri": tracked.model_uri,
        "model_version": tracked.registered_version,
        "is_champion": tracked.is_champion,
        "heldout_score": tracked.heldout_score,
    }


# --- the flow ---------------------------------------------------------------------------------
# The summary is persisted as JSON (never pickled) so that whoever started the run by
# deployment (make run, a script) can read it back from the API.
@flow(
    name="ingest-train",
    task_runner=ThreadPoolTaskRunner(max_workers=3),
    persist_result=True,
    result_serializer="json",
)
def ingest_train(
    recordings: str | None = None,
    manifest: str | None = None,
    config: str = "configs/demo.toml",
    epochs: int | None = None,
    split: str | None = None,
    model: str | None = None,
    train: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Ingest a folder of recordings, then train, evaluate and log a model on the whole store.

    Parameters
    ----------
    recordings : str, optional
        The recordings folder; the watched inbox by default (``[watch] folder``, else
        ``[demo] inbox``).
    manifest : str, optional
        A manifest CSV; by default the folder's ``[discovery] manifest_name`` when present.
    config : str
        The study configuration TOML (relative to the serving process's working folder).
    epochs, split, model : optional
        Override ``[training] epochs``, ``[training] split`` and ``[model] name``.
    train : bool
        False: ingest only.
    force : bool
        Train even when no recording is new or changed (say, after a failed training, or to
        train again with other settings over the same store).

    Returns
    -------
    dict
        Counts per file status, the rejected files with reasons, whether a model was trained
        (and why not), the test metrics and the MLflow run's id and address.
    """
    from ecg_pipeline.config import load_config
    from ecg_pipeline.errors import StillBeingWrittenError
    from ecg_pipeline.ingest import FileResult

    logger = get_run_logger()
    overrides = [f"training.epochs={epochs}"] * (epochs is not None)
    overrides += [f'training.split="{split}"'] * (split is not None)
    overrides += [f'model.name="{model}"'] * (model is not None)
    cfg = load_config(config, overrides=overrides)
    log_to_mlflow = log_mlflow.with_options(
        retries=cfg.flow.log_retries, retry_delay_seconds=cfg.flow.log_retry_delay_s
    )
    folder = str(Path(recordings or cfg.watch.folder or cfg.demo.inbox).resolve())
    store_root = str(Path(cfg.store.root).resolve())

    found = validate_labels(discover_files(folder, cfg, manifest), cfg)
    plan = plan_files(found.labels, cfg, store_root)
    futures = [ingest_file.submit(p, cfg, store_root) for p in plan.to_process]
    refused = [
        FileResult(
            e.path, "deferred" if isinstance(e, StillBeingWrittenError) else "rejected", error=e
        )
        for e in [*found.errors, *plan.errors]
    ]
    results = plan.unchanged + [f.result() for f in futures] + refused
    summary: dict[str, Any] = {"folder": folder, **record_batch(results, cfg, store_root)}
    changed = summary["counts"].get("written", 0) + summary["counts"].get("replaced", 0)
    summary["trained"] = False
    if not train:
        summary["note"] = "ingest only (train=False)"
    elif changed == 0 and not force:
        # Same bytes, same labels, same settings: a new model would be the one already logged.
        summary["note"] = (
            "no new or changed recordings (all bytes already stored): training skipped "
            "(force=true trains anyway)"
        )
    elif summary["stored_recordings"] == 0:
        summary["note"] = "nothing stored to train on"
    else:
        tags = flow_run_tags()
        # The flow run's id in the run folder's name ties the checkpoints to the flow run.
        run_name = f"{cfg.dataset.name}-{cfg.model.name}-{tags['prefect_flow_run_id'][:8]}"
        run_dir = train_model(cfg, store_root, run_name)
        metrics = evaluate_model(run_dir, cfg, store_root)
        logged = log_to_mlflow(run_dir, cfg, store_root, summary["rejections_file"], tags)
        summary.update(trained=True, run_dir=run_dir, metrics=metrics, **logged)
        summary["prefect_flow_run_url"] = tags["prefect_flow_run_url"]
    logger.info("ingest-train: %s", json.dumps(summary, default=str))
    return summary


def task_runner_for(settings):
    """The task runner that ``[flow] task_runner`` and ``read_workers`` name.

    Parameters
    ----------
    settings : ecg_pipeline.config.FlowSettings

    Returns
    -------
    prefect.task_runners.TaskRunner
        A thread pool (the default), a process pool, or a pool of one thread (sequential).
    """
    from prefect.task_runners import ProcessPoolTaskRunner

    if settings.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=settings.read_workers)
    workers = 1 if settings.task_runner == "sequential" else settings.read_workers
    return ThreadPoolTaskRunner(max_workers=workers)


def ingest_train_for(config) -> Flow:
    """``ingest_train`` with the task runner of ``config``'s ``[flow]`` table.

    A flow's task runner is fixed before it runs, so it comes from the configuration that the
    deployment is served with (or that a script runs), not from a run's ``config`` parameter.
    """
    return ingest_train.with_options(task_runner=task_runner_for(config.flow))
