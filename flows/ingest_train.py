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

Only this folder and ``ecg_pipeline/stack/`` import prefect (see ``design.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import (
    FLOW_DEFAULTS,
    fail_mlflow_runs_of_crashed_run,
    flow_run_tags,
    retry_on_connection_error,
)


# --- tasks ------------------------------------------------------------------------------------
# NO_CACHE everywhere: a re-run must look at the folder and store again (the store's own
# sha256 + ingest-hash check skips what is already there), and hashing a config object for a
# cache key buys nothing. Task results are not persisted; only the flow's small JSON summary is.
@task(name="discover", cache_policy=NO_CACHE, persist_result=False)
def discover_files(folder: str, config, manifest: str | None):
    """List the settled recordings under ``folder`` and label them (manifest or file names)."""
    from ecg_pipeline.ingest import discover_batch

    return discover_batch(folder, config, manifest=manifest)


@task(name="validate-labels", cache_policy=NO_CACHE, persist_result=False)
def validate_labels(found, config):
    """Check subject and condition labels against the study (the pandera labels contract)."""
    from ecg_pipeline.ingest import check_labels

    return check_labels(found, config)


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)
def plan_files(found, config, store_root: str):
    """Hash each file and decide against the store: write, replace, skip or refuse."""
    from ecg_pipeline.ingest import open_store, plan_files

    return plan_files(found, open_store(config, store_root), config)


@task(
    name="ingest-file",
    task_run_name="ingest-{planned.labels.subject}-{planned.labels.condition}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def ingest_file(planned, config, store_root: str):
    """Read and check one file, cut it into windows, check the contracts and write it.

    The batch's manifest contract holds one cross-row rule (unique ``source_path``), which the
    plan already guarantees, so checking file by file refuses exactly what checking the batch
    would.

    Returns
    -------
    ecg_pipeline.ingest.FileResult
        ``written``/``replaced``, or ``rejected`` carrying the error (never raised).
    """
    from ecg_pipeline.ingest import ingest_files
    from ecg_pipeline.io.store import WindowStore

    return ingest_files([planned], config, WindowStore(store_root, config.dataset.name))[0]


@task(name="record-batch", cache_policy=NO_CACHE, persist_result=False)
def record_batch(found, plan, written: list, config, store_root: str):
    """Write the rejections table and the store's recordings list; report the cohort.

    Refusals are made visible where people look: a warning line per refused or deferred file,
    a table artifact of the whole batch, and a task state named "Refused files" (completed,
    since the batch goes on, but not plain success) when any file was refused.
    """
    from prefect.artifacts import create_table_artifact
    from prefect.states import Completed

    from ecg_pipeline.ingest import finish_batch
    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.tracking.quality_report import write_quality_report

    store = WindowStore(store_root, config.dataset.name)
    batch = finish_batch(store, config, found, plan, written)
    logger = get_run_logger()
    logger.info("signal-quality report: %s", write_quality_report(store))
    for r in batch.results:
        if r.error is not None:
            logger.warning("%s %s: %s", r.status, r.path, r.error.reason)
    create_table_artifact(
        key="ingest-batch",
        table=batch_table(batch),
        description=f"Files of this batch and what happened to each: {batch.counts}",
    )
    refused = batch.count("rejected")
    if refused:
        return Completed(
            data=batch,
            name="Refused files",
            message=f"{refused} of {len(batch.results)} files refused; see the warnings",
        )
    return batch


def batch_table(batch) -> list[dict[str, str]]:
    """One row per file offered: file, status, stage and reason (empty when stored)."""
    return [
        {
            "file": r.path,
            "status": "refused" if r.status == "rejected" else r.status,
            "stage": r.error.stage if r.error is not None else "",
            "reason": r.error.reason if r.error is not None else r.note,
        }
        for r in batch.results
    ]


@task(
    name="open-mlflow-run",
    retries=FLOW_DEFAULTS.log_retries,
    retry_delay_seconds=FLOW_DEFAULTS.log_retry_delay_s,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def open_mlflow_run(config, run_name: str, tags: dict[str, str]) -> str:
    """Create the MLflow run before training, so it shows (with its epochs) while it trains."""
    from ecg_pipeline.tracking.artifacts import describe_run
    from ecg_pipeline.tracking.live import LiveRun

    live = LiveRun.open(
        config,
        tracking_uri=config.servers.mlflow_uri,
        run_name=describe_run(config, run_name),
        tags=tags,
    )
    return live.run_id


@task(name="train", cache_policy=NO_CACHE, persist_result=False)
def train_model(config, store_root: str, run_name: str, catalog, live_run_id: str | None = None):
    """Train every fold of the configured split on all stored windows.

    Each epoch is a line of the run's log and, with ``live_run_id``, metrics of that MLflow
    run as soon as the epoch ends. Returns the typed run result (its folder holds the
    checkpoints with their calibrated identity thresholds and ``results.json``).
    """
    from ecg_pipeline.tracking.live import LiveRun
    from ecg_pipeline.training.run import train_run

    live = LiveRun(config.servers.mlflow_uri, live_run_id) if live_run_id else None
    logger = get_run_logger()
    epochs = config.training.epochs

    def progress(fold: str, row: dict) -> None:  # a line per epoch in the run's log
        losses = ", ".join(
            f"{k.removesuffix('_train_loss')} loss {v:.3f}"
            for k, v in row.items()
            if k.endswith("_train_loss")
        )
        logger.info(
            "%s epoch %d/%d: %s, validation %.3f", fold, row["epoch"], epochs, losses,
            row["val_score"],
        )  # fmt: skip
        if live is not None:
            live.epoch(fold, row)

    # The run folder is named after the flow run, so a retry of this task (or of the whole
    # flow run) finds the folds and epochs already done and continues after them.
    return train_run(
        config,
        store_root=store_root,
        run_name=run_name,
        catalog=catalog,
        resume=True,
        on_epoch=progress,
        on_folds=live.folds if live is not None else None,
    )


@task(name="pretrain", cache_policy=NO_CACHE, persist_result=False)
def pretrain_encoder(config, store_root: str, run_name: str) -> str:
    """Pre-train ECG-SL encoders on the stored windows (labels unused, test sides unseen) and
    log them to MLflow; returns the folder that fine-tuning starts from."""
    from ecg_pipeline.tracking.pretrain_log import log_pretraining
    from ecg_pipeline.training.pretrain import pretrain_run

    # Named after the flow run: a retried run continues the encoders it had started.
    result = pretrain_run(config, store_root=store_root, run_name=run_name, resume=True)
    log_pretraining(result, config)
    return str(result.out_dir)


@task(name="resolve-encoder", cache_policy=NO_CACHE, persist_result=False)
def resolve_encoder(reference: str, config) -> str:
    """A registered encoder (``models:/ecgsl-encoder-<dataset>/<version>``) as a local folder."""
    from ecg_pipeline.tracking.pretrain_log import download_encoder

    return download_encoder(reference, config)


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_model(run, config, store_root: str):
    """Score the run's checkpoints on the test side of the split (metrics per fold and task)."""
    from ecg_pipeline.training.run import evaluate_run

    return evaluate_run(run, config, store_root=store_root)


# Retries come from [flow] log_retries and log_retry_delay_s when the flow runs (with_options).
@task(
    name="log-mlflow",
    retries=FLOW_DEFAULTS.log_retries,
    retry_delay_seconds=FLOW_DEFAULTS.log_retry_delay_s,
    persist_result=False,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
)
def log_mlflow(
    run,
    config,
    recordings,
    rejections_file: str | None,
    tags: dict[str, str],
    live_run_id: str | None = None,
    quality_report: str | None = None,
) -> dict[str, Any]:
    """Finish the MLflow run opened for the training (or log a new one): the evaluated run (a
    ``RunResult``) with the batch's catalog of the recordings it trained on, its rejections
    file and its signal-quality page; then register its model."""
    from ecg_pipeline.tracking.mlflow_log import log_training_run

    tracked = log_training_run(
        run,
        config,
        tracking_uri=config.servers.mlflow_uri,
        tags=tags,
        recordings=recordings,
        rejections=rejections_file,
        quality_report=quality_report,
        live_run_id=live_run_id,
    )
    return tracked.summary()


# --- the flow ---------------------------------------------------------------------------------
# The summary is persisted as JSON (never pickled) so that whoever started the run by
# deployment (make run, a script) can read it back from the API.
@flow(
    name="ingest-train",
    task_runner=ThreadPoolTaskRunner(max_workers=FLOW_DEFAULTS.read_workers),
    persist_result=True,
    result_serializer="json",
    on_crashed=[fail_mlflow_runs_of_crashed_run],
)
def ingest_train(
    recordings: str | None = None,
    manifest: str | None = None,
    config: str = "configs/demo.toml",
    epochs: int | None = None,
    split: str | None = None,
    model: str | None = None,
    pretrained: str | None = None,
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
        Override ``[training] epochs``, ``[training] split`` and ``[model] name``
        (``model=ecg_sl`` trains ECG-SL).
    pretrained : str, optional
        ECG-SL only (implies ``model=ecg_sl``): fine-tune from a pre-trained encoder, given as
        a folder written by ``ecg-pipeline pretrain``, a registered encoder
        ``models:/ecgsl-encoder-<dataset>/<version>``, or ``"pretrain"`` to pre-train one on
        the store first (``[pretrain]`` settings; the test sides stay unseen).
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
    from ecg_pipeline.ingest import training_decision
    from ecg_pipeline.report import render_flow_summary

    logger = get_run_logger()
    cfg = load_config(config).with_overrides(
        {
            "training.epochs": epochs,
            "training.split": split,
            "model.name": "ecg_sl" if pretrained and not model else model,
        }
    )
    log_to_mlflow = log_mlflow.with_options(
        retries=cfg.flow.log_retries, retry_delay_seconds=cfg.flow.log_retry_delay_s
    )
    train_resumably = train_model.with_options(retries=cfg.flow.train_retries)
    folder = str(Path(recordings or cfg.watch.folder or cfg.demo.inbox).resolve())
    store_root = str(Path(cfg.store.root).resolve())

    found = validate_labels(discover_files(folder, cfg, manifest), cfg)
    plan = plan_files(found, cfg, store_root)
    written = [
        f.result() for f in [ingest_file.submit(p, cfg, store_root) for p in plan.to_process]
    ]
    # The task may end in a state of its own ("Refused files"), which a plain call would return
    # in place of the batch: ask for the state and read its result.
    batch = record_batch(found, plan, written, cfg, store_root, return_state=True).result()
    decision = training_decision(batch, train=train, force=force)
    summary: dict[str, Any] = {"folder": folder, **batch.summary(), "trained": decision.train}
    summary["note"] = decision.reason
    if decision.train:
        # The batch's counts beside the model in MLflow (refusals visible in the run list).
        tags = flow_run_tags() | {f"ingest_{k}": str(v) for k, v in batch.counts.items()}
        # The flow run's id in the run folder's name ties the checkpoints to the flow run.
        run_name = f"{cfg.dataset.name}-{cfg.model.name}-{tags['prefect_flow_run_id'][:8]}"
        if pretrained == "pretrain":
            encoder = pretrain_encoder(cfg, store_root, run_name)
        elif pretrained and pretrained.startswith("models:/"):
            encoder = resolve_encoder(pretrained, cfg)
        else:
            encoder = pretrained
        cfg = cfg.with_overrides({"model.pretrained": encoder})
        open_run = open_mlflow_run.with_options(
            retries=cfg.flow.log_retries, retry_delay_seconds=cfg.flow.log_retry_delay_s
        )
        live_run_id = open_run(cfg, run_name, tags)
        trained = train_resumably(cfg, store_root, run_name, batch.catalog, live_run_id)
        run = evaluate_model(trained, cfg, store_root)
        from ecg_pipeline.tracking.quality_report import REPORT_NAME

        logged = log_to_mlflow(
            run,
            cfg,
            batch.catalog,
            str(batch.rejections_file),
            tags,
            live_run_id,
            str(batch.store_path / REPORT_NAME),
        )
        summary.update(run_dir=str(run.run_dir), metrics=run.summary(), **logged)
        summary["prefect_flow_run_url"] = tags["prefect_flow_run_url"]
    # One JSON line for scripts, then the same for people (the last lines of --watch).
    logger.info("ingest-train: %s", json.dumps(summary, default=str))
    logger.info("summary\n%s", render_flow_summary(summary))
    return summary


def task_runner_for(settings):
    """The task runner that ``[flow] task_runner`` and ``read_workers`` name.

    Parameters
    ----------
    settings : ecg_pipeline.config.FlowSettings

    Returns
    -------
    prefect.task_runners.TaskRunner
        A thread pool (the default), a process pool, a Dask cluster (local, of ``read_workers``
        single-threaded worker processes, or the one at ``dask_address``), or a pool of one
        thread (sequential).
    """
    from prefect.task_runners import ProcessPoolTaskRunner

    if settings.task_runner == "processes":
        return ProcessPoolTaskRunner(max_workers=settings.read_workers)
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        # One thread per worker process: NeuroKit2 and the filters hold the GIL for part of
        # each file, so processes, not threads, scale the reads.
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.read_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    workers = 1 if settings.task_runner == "sequential" else settings.read_workers
    return ThreadPoolTaskRunner(max_workers=workers)


def ingest_train_for(config) -> Flow:
    """``ingest_train`` with the task runner of ``config``'s ``[flow]`` table.

    A flow's task runner is fixed before it runs, so it comes from the configuration that the
    deployment is served with (or that a script runs), not from a run's ``config`` parameter.
    """
    return ingest_train.with_options(task_runner=task_runner_for(config.flow))
