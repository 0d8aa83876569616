"""Log one prediction batch to MLflow: a run in the dataset's experiment, tagged ``kind=predict``.

A run holds:

* tags: ``kind=predict``, ``model_name``, ``model_version``, ``model_uri``, ``ingest_hash``,
  ``git_commit`` and the caller's (the Prefect flow-run id);
* metrics: ``n_recordings`` (predicted), ``n_unknown`` (identity below the threshold),
  ``n_rejected`` (files refused), ``n_deferred`` (files still being copied, for a later batch)
  and the model's ``identity_unknown_threshold``;
* artifacts: ``predictions/`` holding the batch's Parquet and rejections CSV, which name files
  without their folders (see :mod:`ecg_pipeline.predict.output`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.tracking.abandoned import fail_abandoned_runs, owner_tags
from ecg_pipeline.tracking.lineage import git_commit
from ecg_pipeline.tracking.registry import using_tracking_uri

__all__ = ["PredictRun", "log_predictions", "prediction_metrics"]


@dataclass(frozen=True)
class PredictRun:
    """Where a logged prediction batch lives."""

    run_id: str
    run_url: str
    experiment_id: str


def prediction_metrics(predictions: pd.DataFrame, rejections: pd.DataFrame) -> dict[str, float]:
    """``n_recordings``, ``n_unknown``, ``n_rejected``, ``n_deferred`` and the threshold.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The batch's predictions Parquet, read back.
    rejections : pandas.DataFrame
        Its rejections table (``status`` "rejected", or "deferred" for files still copying).
    """
    from ecg_pipeline.tracking.mlflow_log import THRESHOLD_METRIC
    from ecg_pipeline.training.aggregate import UNKNOWN

    out = {
        "n_recordings": float(len(predictions)),
        "n_unknown": float((predictions["identity"] == UNKNOWN).sum()),
        "n_rejected": float((rejections["status"] == "rejected").sum()),
        "n_deferred": float((rejections["status"] == "deferred").sum()),
    }
    thresholds = predictions["identity_threshold"].dropna()
    if len(thresholds) and math.isfinite(float(thresholds.iloc[0])):
        out[THRESHOLD_METRIC] = float(thresholds.iloc[0])
    return out


def log_predictions(
    files,
    config: StudyConfig,
    *,
    model_name: str,
    model_version: str,
    tracking_uri: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> PredictRun:
    """Log a written prediction batch as one MLflow run.

    The counts are read back from the written files, so the run describes exactly what it
    carries (and a flow can hand this step paths, not tables).

    Parameters
    ----------
    files : ecg_pipeline.predict.output.PredictionFiles
        The Parquet and the rejections CSV, logged under ``predictions/``.
    config : StudyConfig
        Its dataset names the experiment.
    model_name, model_version : str
        The registered model that predicted.
    tracking_uri : str, optional
        The tracking server; ``config.servers.mlflow_uri`` by default.
    run_name : str, optional
        ``predict-<UTC time stamp>`` by default.
    tags : mapping, optional
        Extra tags (``prefect_flow_run_id``).

    Returns
    -------
    PredictRun

    Raises
    ------
    mlflow.exceptions.MlflowException
        When the server refuses a request; a run already created is then marked FAILED.
    """
    from mlflow.entities import Metric

    import mlflow
    from ecg_pipeline.tracking.mlflow_log import discard_unfinished_attempts, experiment_id

    uri = tracking_uri or config.servers.mlflow_uri
    name = run_name or f"predict-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    all_tags = {str(k): str(v) for k, v in (tags or {}).items()} | {
        "kind": "predict",
        "model_name": model_name,
        "model_version": str(model_version),
        "model_uri": f"models:/{model_name}/{model_version}",
        "ingest_hash": config.ingest_hash(),
        "git_commit": git_commit(),
        "dataset": config.dataset.name,
    }
    with using_tracking_uri(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp_id = experiment_id(client, config.dataset.name)
        # A retried task must leave one predict run per flow run, not a FAILED one beside it.
        fail_abandoned_runs(client, exp_id)
        discard_unfinished_attempts(client, exp_id, all_tags.get("prefect_flow_run_id"))
        # Tagged as it is created: a process killed right after still names its owner.
        run = client.create_run(exp_id, run_name=name, tags=all_tags | owner_tags())
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            metrics = prediction_metrics(
                pd.read_parquet(files.predictions), pd.read_csv(files.rejections, dtype=str)
            )
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
            for path in (files.predictions, files.rejections):
                client.log_artifact(run_id, str(Path(path)), artifact_path="predictions")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    return PredictRun(run_id, f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}", exp_id)
