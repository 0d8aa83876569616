"""The ``predict`` flow: new recordings labelled by the registered champion, written and logged.

Each task is one call into ``ecg_pipeline``; tasks hand each other paths and small tables (one
row per recording), never windows::

    find-recordings -> predict-recordings (load the champion, read, score, aggregate)
        -> write-predictions (Parquet + rejections CSV, atomic) -> log-predictions (MLflow)

A file that cannot be read is a row of the rejections table, never a failed run. A
configuration whose ``[ingest]`` settings differ from the model's fails the run before any
file is read (``ModelMismatchError``). Logging is retried only when the server could not be
reached. Serve it as the deployment ``predict/<name>`` (``predict.serve(...)``); runs take
``recordings`` (files or folders) and ``config`` as parameters.

Only this folder and ``ecg_pipeline/stack/`` import prefect (see ``design.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import (
    FLOW_DEFAULTS,
    fail_mlflow_runs_of_crashed_run,
    flow_run_tags,
    retry_on_connection_error,
)


@task(name="find-recordings", cache_policy=NO_CACHE)
def find_files(recordings: list[str], config) -> tuple[list[str], list]:
    """The recordings under ``recordings`` (files as given, folders searched), and the
    paths that gave none (missing, still being copied)."""
    from ecg_pipeline.predict.predict import find_recordings

    files, errors = find_recordings(recordings, config)
    return [str(f) for f in files], errors


# Loading the champion needs the tracking server: retried when it could not be reached.
@task(
    name="predict-recordings",
    retries=FLOW_DEFAULTS.log_retries,
    retry_delay_seconds=FLOW_DEFAULTS.log_retry_delay_s,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
)
def predict_files(files: list[str], config, config_path: str, model_version: str | None):
    """Load the registered model and label each file; returns the predictions and the refusals.

    Returns
    -------
    predictions : pandas.DataFrame
        One row per recording (a few hundred bytes each).
    errors : list of IngestError
    model : dict
        ``name``, ``version`` and ``identity_threshold`` of the model used.
    """
    from ecg_pipeline.predict.predict import predict_recordings
    from ecg_pipeline.tracking.registry import load_champion, registered_model_name

    model = load_champion(
        config.servers.mlflow_uri, registered_model_name(config), version=model_version
    )
    table, errors = predict_recordings(files, config, model, config_source=config_path)
    info = {
        "name": model.name,
        "version": model.version,
        "identity_threshold": model.identity_threshold,
    }
    return table, errors, info


@task(name="write-predictions", cache_policy=NO_CACHE)
def write_files(table, errors: list, config, out_dir: str) -> dict[str, str]:
    """Write the predictions Parquet and the rejections CSV; returns their paths."""
    from ecg_pipeline.predict.output import write_predictions

    files = write_predictions(table, errors, out_dir, config.dataset.name)
    return {"predictions": str(files.predictions), "rejections": str(files.rejections)}


@task(
    name="log-predictions",
    retries=FLOW_DEFAULTS.log_retries,
    retry_delay_seconds=FLOW_DEFAULTS.log_retry_delay_s,
    retry_condition_fn=retry_on_connection_error,
    cache_policy=NO_CACHE,
)
def log_files(written: dict[str, str], config, model: dict, tags: dict[str, str]) -> dict[str, str]:
    """Log the written files as an MLflow run (``kind=predict``) in the dataset's experiment."""
    from ecg_pipeline.predict.output import PredictionFiles
    from ecg_pipeline.tracking.predict_log import log_predictions

    files = PredictionFiles(Path(written["predictions"]), Path(written["rejections"]))
    run = log_predictions(
        files, config, model_name=model["name"], model_version=model["version"], tags=tags
    )
    return {"mlflow_run_id": run.run_id, "mlflow_run_url": run.run_url}


@flow(name="predict", on_crashed=[fail_mlflow_runs_of_crashed_run])
def predict(
    recordings: list[str] | str,
    config: str = "configs/demo.toml",
    model_version: str | None = None,
    log: bool = True,
) -> dict[str, Any]:
    """Label new recordings with the registered model, write the predictions and log them.

    Parameters
    ----------
    recordings : list of str, or str
        Recording files, or folders of them (one path may be given as a string).
    config : str
        The study configuration TOML: the one the model was trained with (its ``[ingest]``
        settings must match), relative to the serving process's working folder.
    model_version : str, optional
        A registered version instead of the ``champion``.
    log : bool
        False: write the files only.

    Returns
    -------
    dict
        The files written, the model used, counts, one small row per recording and the refused
        files with reasons, and the MLflow run's id and address when logged.
    """
    from ecg_pipeline.config import load_config
    from ecg_pipeline.training.aggregate import UNKNOWN

    logger = get_run_logger()
    cfg = load_config(config)
    if isinstance(recordings, str):  # a single path given on the command line
        recordings = [recordings]
    retried = {"retries": cfg.flow.log_retries, "retry_delay_seconds": cfg.flow.log_retry_delay_s}
    files, missing = find_files(recordings, cfg)
    table, errors, model = predict_files.with_options(**retried)(files, cfg, config, model_version)
    errors = [*missing, *errors]
    written = write_files(table, errors, cfg, str(Path(cfg.predict.out_dir).resolve()))
    summary: dict[str, Any] = {
        **written,
        "model": model,
        "n_recordings": len(table),
        "n_unknown": int((table["identity"] == UNKNOWN).sum()),
        "n_rejected": len(errors),
        "recordings": table[
            ["file", "identity", "identity_confidence", "activity", "activity_confidence"]
        ].to_dict(orient="records"),
        "rejected": [
            {"file": Path(e.path).name, "error": type(e).__name__, "reason": e.reason}
            for e in errors
        ],
    }
    if log:
        summary.update(log_files.with_options(**retried)(written, cfg, model, flow_run_tags()))
    logger.info("predict: %s", summary)
    return summary
