"""Log a finished training run to an MLflow tracking server (the client calls).

What is logged is assembled by the modules beside this one: :mod:`.keys` (metric and param
names), :mod:`.summaries` (the numbers), :mod:`.artifacts` (plots, tables, checkpoint, tags),
:mod:`.export` (the pickle-free model) and :mod:`.registry` (the champion alias).

One experiment per dataset, one MLflow run per training run. A run holds:

* params: the whole :class:`~ecg_pipeline.config.StudyConfig` as dotted keys
  (``training.augment.gain``), see :func:`flatten_params`;
* metrics: the per-epoch history with ``step=epoch`` and the test metrics per task (mean over
  folds, plus ``_std`` and per-fold values when there are several folds, prefixed
  ``fold_<name>/``); ``heldout_score`` is the mean test accuracy over tasks and folds;
  ``identity_unknown_threshold`` is the logged model's calibrated "unknown" threshold;
* artifacts: ``plots/`` (curves, GradNorm weights, confusion matrices, example windows),
  ``data/recordings.csv`` (ids, labels and sha256 only), ``data/rejections.csv``,
  ``results.json`` and the project's own ``checkpoint/`` (``model.pt`` + ``model.json``);
* tags: the caller's (the Prefect flow-run id and URL), ``git_commit``, ``git_dirty``,
  ``data_hash``, ``ingest_hash``;
* a ``pt2`` model (no pickle), registered as ``<model>-<dataset>``, whose ``champion`` alias
  moves only to a version with a higher ``heldout_score`` (:mod:`.registry`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.instrument import stage
from ecg_pipeline.tracking.abandoned import OWNER_TAG, fail_abandoned_runs, owner_tags
from ecg_pipeline.tracking.artifacts import (
    beat_example,
    describe_run,
    examples_from_store,
    logged_fold,
    run_tags,
    write_files,
    write_plots,
)
from ecg_pipeline.tracking.keys import (
    FINAL_METRICS,
    THRESHOLD_METRIC,
    flatten_params,
    heldout_protocol,
    metric_key,
)
from ecg_pipeline.tracking.lineage import recordings_table
from ecg_pipeline.tracking.registry import (
    load_champion,
    promote_if_better,
    registered_model_name,
    using_tracking_uri,
)
from ecg_pipeline.tracking.summaries import epoch_metrics, final_metrics, heldout_score_of
from ecg_pipeline.training.results import RunResult

__all__ = [
    "FINAL_METRICS",
    "THRESHOLD_METRIC",
    "TrackingResult",
    "epoch_metrics",
    "final_metrics",
    "flatten_params",
    "heldout_protocol",
    "heldout_score_of",
    "load_champion",
    "log_training_run",
    "metric_key",
]

# The parts of log_training_run that instrument.stage times (bench/orchestration.py).
LOG_STAGES = (
    "mlflow: params + metrics",
    "mlflow: plots (matplotlib)",
    "mlflow: files (CSV, checkpoint copy)",
    "mlflow: artifact upload",
    "mlflow: pt2 model (export, upload, register)",
)
_BATCH = 1000  # MLflow's limit on metrics per log_batch (params and tags: 100)


@dataclass(frozen=True)
class TrackingResult:
    """Where a logged run lives and what the registry made of it."""

    run_id: str
    run_url: str
    experiment_id: str
    model_uri: str | None
    registered_version: str | None
    is_champion: bool
    heldout_score: float
    registered_name: str | None = None

    def summary(self) -> dict:
        """The JSON-able account a flow returns (ids, addresses, the registry's decision)."""
        return {
            "mlflow_run_id": self.run_id,
            "mlflow_run_url": self.run_url,
            "model_uri": self.model_uri,
            "model_version": self.registered_version,
            "registered_model": self.registered_name,
            "is_champion": self.is_champion,
            "heldout_score": self.heldout_score,
        }


# --- the run ---------------------------------------------------------------------------------
def experiment_id(client, name: str) -> str:
    """The id of the experiment ``name``, created if missing (one per dataset)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by another run
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


REGISTRATION_TAG = "registration"


def discard_unfinished_attempts(
    client, exp_id: str, flow_run_id: str | None, keep: str | None = None
) -> None:
    """Delete the runs an earlier, failed attempt of the same flow run's logging left behind.

    A retried ``log-mlflow`` task must leave one run per flow run, not a FAILED one beside it:
    runs not FINISHED, and FINISHED runs whose registration never completed (tag
    ``registration = pending``), with any model version registered from them. The run ``keep``
    (the live run this attempt finishes) stays, but loses such versions too.
    """
    if not flow_run_id:
        return
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.prefect_flow_run_id = '{flow_run_id}'", max_results=50
    )
    for run in runs:
        unfinished = run.info.status in ("FAILED", "RUNNING", "SCHEDULED", "KILLED")
        if unfinished or run.data.tags.get(REGISTRATION_TAG) == "pending":
            # A version registered from it before the attempt failed goes too (with any alias
            # it took), so the registry never names a deleted run's model.
            for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
                client.delete_model_version(version.name, version.version)
            if run.info.run_id != keep:
                client.delete_run(run.info.run_id)


def _log_numbers(client, run_id: str, params: dict, metrics: list[tuple[str, float, int]]) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    items = list(params.items())
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i : i + 100]])
    for i in range(0, len(metrics), _BATCH):
        batch = [Metric(k, v, now, s) for k, v, s in metrics[i : i + _BATCH]]
        client.log_batch(run_id, metrics=batch)


def log_training_run(
    run_result: RunResult,
    config: StudyConfig,
    *,
    tracking_uri: str,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    recordings: pd.DataFrame | None = None,
    rejections: str | Path | None = None,
    quality_report: str | Path | None = None,
    example_x: np.ndarray | None = None,
    example_meta: pd.DataFrame | None = None,
    fs_hz: float | None = None,
    register: bool = True,
    model_fold: int | str = 0,
    heldout_score: float | None = None,
    live_run_id: str | None = None,
) -> TrackingResult:
    """Log one :class:`~ecg_pipeline.training.run.RunResult` as an MLflow run.

    Parameters
    ----------
    run_result : RunResult
        What ``train_and_evaluate`` returned; its checkpoints and ``results.json`` are read
        from ``run_result.run_dir``.
    config : StudyConfig
        The configuration the run was trained with.
    tracking_uri : str
        The tracking server (``config.servers.mlflow_uri``); also the model registry.
    experiment : str, optional
        Experiment name; the dataset's name by default (one experiment per dataset).
    run_name : str, optional
        The MLflow run's name; the run folder's name by default.
    tags : mapping, optional
        Extra tags, e.g. ``{"prefect_flow_run_id": ..., "prefect_flow_run_url": ...}``.
    recordings : pandas.DataFrame, optional
        The store's catalog (``WindowStore.catalog()``) at training time; read from
        ``config``'s store when None. Only ids, labels and sha256 are published.
    rejections : str or Path, optional
        The ingest's rejections CSV, published without folders or personal columns.
    quality_report : str or Path, optional
        The batch's signal-quality page (``tracking.quality_report``), logged as
        ``data/quality_report.html``.
    example_x, example_meta : optional
        Windows (N, 1, T) and their metadata (``condition``, ``subject``) for the examples page;
        by default the first windows of each recording in ``config``'s store.
    fs_hz : float, optional
        Their sampling rate; ``config.ingest.windows.target_fs_hz`` by default.
    register : bool
        Register the model as ``<model>-<dataset>`` and update the ``champion`` alias.
    model_fold : int or str
        Which fold's model to log (index or name); the first by default.
    heldout_score : float, optional
        Use this score for the champion decision instead of the computed one (tests, or a
        score from an external evaluation); the computed one is then logged as
        ``heldout_score_computed``.
    live_run_id : str, optional
        The run opened when training started (:class:`~ecg_pipeline.tracking.live.LiveRun`),
        which already holds the parameters and per-epoch metrics: it is finished here instead
        of a new run being created.

    Returns
    -------
    TrackingResult

    Raises
    ------
    FileNotFoundError
        When the chosen fold's checkpoint is missing.
    mlflow.exceptions.MlflowException
        When the server refuses a request; the run is then marked FAILED.
    """
    import mlflow
    from ecg_pipeline.tracking.export import log_checkpoint_model

    folds = run_result.folds
    fold, ckpt = logged_fold(run_result, model_fold)
    fs_hz = float(fs_hz if fs_hz is not None else config.ingest.windows.target_fs_hz)
    summary = final_metrics(folds)
    if fold.identity_threshold:
        # The logged model's own threshold, unprefixed whichever fold it is.
        summary[THRESHOLD_METRIC] = float(fold.identity_threshold["value"])
    score = summary["heldout_score"]
    if heldout_score is not None:
        summary["heldout_score_computed"], score = score, float(heldout_score)
        summary["heldout_score"] = score
    if recordings is None:
        from ecg_pipeline.io.store import WindowStore

        recordings = WindowStore(config.store.root, config.dataset.name).catalog()
    published = recordings_table(recordings) if len(recordings) else None
    if example_x is None and len(recordings):
        example_x, example_meta = examples_from_store(config)
    all_tags = run_tags(config, published, folds, fold, tags)
    registered_name = registered_model_name(config) if register else None

    with using_tracking_uri(tracking_uri), tempfile.TemporaryDirectory() as tmp:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        exp_id = experiment_id(client, experiment or config.dataset.name)
        fail_abandoned_runs(client, exp_id)
        discard_unfinished_attempts(
            client, exp_id, all_tags.get("prefect_flow_run_id"), keep=live_run_id
        )
        name = run_name or describe_run(config, run_result.run_dir)
        # The fluent run is needed by mlflow.pytorch.log_model; leaving the block ends it as
        # FINISHED, or FAILED when anything inside raised (a killed process: see abandoned.py).
        opened = (
            mlflow.start_run(run_id=live_run_id)
            if live_run_id
            else mlflow.start_run(experiment_id=exp_id, run_name=name, tags=all_tags | owner_tags())
        )
        with opened as run:
            run_id = run.info.run_id
            final = [(k, v, 0) for k, v in summary.items()]
            with stage(LOG_STAGES[0]):
                if live_run_id:  # parameters and epochs are there already
                    client.set_tag(run_id, OWNER_TAG, owner_tags()[OWNER_TAG])
                    for key, value in all_tags.items():
                        client.set_tag(run_id, key, value)
                    _log_numbers(client, run_id, {}, final)
                else:
                    params = flatten_params(config)
                    _log_numbers(client, run_id, params, epoch_metrics(folds) + final)
            out = Path(tmp)
            with stage(LOG_STAGES[1]):
                write_plots(
                    out / "plots",
                    folds,
                    example_x,
                    example_meta,
                    fs_hz,
                    beat_example(config, ckpt),
                )
            with stage(LOG_STAGES[2]):
                write_files(out, run_result, published, rejections, ckpt, quality_report)
            with stage(LOG_STAGES[3]):
                client.log_artifacts(run_id, str(out))
            with stage(LOG_STAGES[4]):
                info = log_checkpoint_model(
                    ckpt,
                    metadata={"fs_hz": fs_hz, "fold": fold.name, "heldout_score": score},
                    tags={"data_hash": all_tags["data_hash"]},
                )
            if registered_name is not None:
                # Until registration is done, a retry treats this run as unfinished.
                client.set_tag(run_id, REGISTRATION_TAG, "pending")
        # Registered only once the run has ended FINISHED: the champion alias can never point
        # at a version whose run a retry then deletes (discard_unfinished_attempts).
        version, is_champion = None, False
        if registered_name is not None:
            version = str(
                mlflow.register_model(
                    info.model_uri, registered_name, tags={"data_hash": all_tags["data_hash"]}
                ).version
            )
            promotion = promote_if_better(
                client, registered_name, version, score, protocol=heldout_protocol(config)
            )
            is_champion = promotion.is_champion
            # What the registry decided when this run was logged (the alias may move on).
            client.set_tag(run_id, "became_champion", str(is_champion).lower())
            client.set_tag(run_id, REGISTRATION_TAG, "done")
    return TrackingResult(
        run_id=run_id,
        run_url=f"{tracking_uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}",
        experiment_id=exp_id,
        model_uri=info.model_uri,
        registered_version=version,
        is_champion=is_champion,
        heldout_score=score,
        registered_name=registered_name,
    )
