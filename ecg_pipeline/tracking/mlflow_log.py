"""Log a finished training run to an MLflow tracking server.

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

import json
import math
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.tracking.lineage import (
    data_hash,
    git_commit,
    git_dirty,
    recordings_table,
    shareable_rejections,
)
from ecg_pipeline.tracking.registry import (
    load_champion,
    promote_if_better,
    registered_model_name,
    using_tracking_uri,
)

__all__ = [
    "FINAL_METRICS",
    "THRESHOLD_METRIC",
    "TrackingResult",
    "epoch_metrics",
    "final_metrics",
    "flatten_params",
    "heldout_score_of",
    "load_champion",
    "log_training_run",
    "metric_key",
]

# The test metrics of each task logged per run (classification_report's keys).
FINAL_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "recording_accuracy",
)
# The identity confidence below which a recording is "unknown" (training.run calibrates it).
THRESHOLD_METRIC = "identity_unknown_threshold"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
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


# --- names and values ------------------------------------------------------------------------
def metric_key(name: str) -> str:
    """``name`` made valid as an MLflow metric or param key.

    MLflow takes alphanumerics, ``_ - . /`` and spaces (colons too, but not on Windows, so
    not here) and refuses keys that change under path normalisation (``a//b``, ``./a``).
    Anything else becomes ``_``: ``fold_session=01`` gives ``fold_session_01``.
    """
    key = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))
    parts = ["_" if p in (".", "..") else p for p in key.split("/") if p]
    key = "/".join(parts) or "_"
    assert posixpath.normpath(key) == key, key
    return key


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > _MAX_PARAM_CHARS:
        text = text[: _MAX_PARAM_CHARS - 15] + "...[truncated]"
    return text


def flatten_params(config: StudyConfig) -> dict[str, str]:
    """The whole configuration as MLflow params: one dotted key per setting.

    Nested settings objects become dotted keys (``training.augment.gain``); every other value
    (numbers, lists, mappings such as ``dataset.condition_aliases``, None) is one param
    holding its JSON text, strings as they are. Values longer than MLflow's 6000 characters
    are cut and marked ``...[truncated]``.
    """
    from pydantic import BaseModel

    dumped = config.model_dump(mode="json")  # Paths and tuples as JSON-ready values
    out: dict[str, str] = {}

    def walk(model: BaseModel, values: dict, prefix: str) -> None:
        for field in type(model).model_fields:
            value = getattr(model, field)
            if isinstance(value, BaseModel):
                walk(value, values[field], f"{prefix}{field}.")
            else:
                out[metric_key(prefix + field)] = _param_value(values[field])

    walk(config, dumped, "")
    return out


def _fold_prefixes(folds: list[dict]) -> list[str]:
    """``""`` for a single fold; otherwise ``fold_<name>/``, made unique."""
    if len(folds) == 1:
        return [""]
    prefixes: list[str] = []
    for i, fold in enumerate(folds):
        p = metric_key(f"fold_{fold['name']}").replace("/", "_")
        prefixes.append(f"{p}/" if f"{p}/" not in prefixes else f"{p}_{i}/")
    return prefixes


def heldout_score_of(folds: list[dict]) -> float:
    """Mean test accuracy over tasks, then over folds: the number champions are chosen by."""
    return float(np.mean([np.mean([m["accuracy"] for m in f["metrics"].values()]) for f in folds]))


def epoch_metrics(folds: list[dict]) -> list[tuple[str, float, int]]:
    """``(key, value, epoch)`` for every numeric history entry of every fold."""
    out = []
    for prefix, fold in zip(_fold_prefixes(folds), folds, strict=True):
        for i, row in enumerate(fold["history"]):
            step = int(row.get("epoch", i))
            for key, value in row.items():
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if key != "epoch" and numeric:
                    out.append((metric_key(prefix + key), float(value), step))
    return out


def final_metrics(folds: list[dict]) -> dict[str, float]:
    """Test metrics per task (``identity_test_accuracy``): mean over folds, std and per fold.

    Also ``heldout_score``, and per fold ``best_epoch``, the window counts of each side and
    the calibrated identity threshold (:data:`THRESHOLD_METRIC`).
    """
    out: dict[str, float] = {"heldout_score": heldout_score_of(folds)}
    prefixes = _fold_prefixes(folds)
    for task in folds[0]["metrics"]:
        for key in FINAL_METRICS:
            values = [float(f["metrics"][task].get(key, math.nan)) for f in folds]
            out[f"{task}_test_{key}"] = float(np.mean(values))
            if len(folds) > 1:
                out[f"{task}_test_{key}_std"] = float(np.std(values))
                for prefix, v in zip(prefixes, values, strict=True):
                    out[f"{prefix}{task}_test_{key}"] = v
    for prefix, fold in zip(prefixes, folds, strict=True):
        out[f"{prefix}best_epoch"] = float(fold.get("best_epoch", math.nan))
        threshold = fold.get("identity_threshold")
        if threshold:
            out[f"{prefix}{THRESHOLD_METRIC}"] = float(threshold["value"])
        for side, n in fold.get("sizes", {}).items():
            out[f"{prefix}{side}_windows"] = float(n)
    return {metric_key(k): v for k, v in out.items()}


# --- artifacts -------------------------------------------------------------------------------
def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _write_plots(folder: Path, folds: list[dict], example_x, example_meta, fs_hz: float) -> None:
    from ecg_pipeline.tracking import plots

    suffixes = [p.rstrip("/").removeprefix("fold") for p in _fold_prefixes(folds)]
    for suffix, fold in zip(suffixes, folds, strict=True):
        history = fold["history"]
        if history:
            _save(
                plots.training_curves(history, best_epoch=fold.get("best_epoch")),
                folder / f"training_curves{suffix}.png",
            )
            if any(k.endswith("_weight") for k in history[0]):
                _save(plots.gradnorm_weights(history), folder / f"gradnorm_weights{suffix}.png")
    for task, first in folds[0]["metrics"].items():
        # Folds test disjoint windows, so their matrices add up to one pooled matrix.
        matrix = np.sum([np.asarray(f["metrics"][task]["confusion_matrix"]) for f in folds], axis=0)
        names = first.get("labels") or [str(i) for i in range(len(matrix))]
        title = f"{task} (test" + (f", {len(folds)} folds pooled)" if len(folds) > 1 else ")")
        _save(plots.confusion_matrix_figure(matrix, names, title), folder / f"confusion_{task}.png")
    if example_x is not None and example_meta is not None:
        _save(plots.example_windows(example_x, example_meta, fs_hz), folder / "example_windows.png")


def _write_files(out: Path, run_result, config, published, rejections, ckpt: Path) -> None:
    """Everything but the plots: data/, results.json and the project checkpoint."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    if published is not None:
        published.to_csv(out / "data" / "recordings.csv", index=False)
    if rejections is not None and Path(rejections).is_file():
        shareable_rejections(rejections).to_csv(out / "data" / "rejections.csv", index=False)
    (out / "results.json").write_text(_results_json(run_result, config), encoding="utf-8")
    (out / "checkpoint").mkdir()
    for name in ("model.pt", "model.json"):
        shutil.copy2(ckpt / name, out / "checkpoint" / name)


def _run_tags(config: StudyConfig, published, folds, fold, extra) -> dict[str, str]:
    """The caller's tags plus lineage: code, data and what was logged."""
    tags = {str(k): str(v) for k, v in (extra or {}).items()}
    tags |= {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "ingest_hash": config.ingest_hash(),
        "data_hash": "unknown",
        "n_recordings": "0",
        "dataset": config.dataset.name,
        "model": config.model.name,
        "n_folds": str(len(folds)),
        "model_fold": str(fold["name"]),
    }
    if published is not None:
        tags["data_hash"] = data_hash(published["sha256"], config.ingest_hash())
        tags["n_recordings"] = str(len(published))
    return tags


def _results_json(run_result, config: StudyConfig) -> str:
    saved = Path(run_result.run_dir) / "results.json"
    if saved.is_file():
        return saved.read_text(encoding="utf-8")
    payload = {"config": config.model_dump(mode="json"), "folds": run_result.folds}
    return json.dumps(payload, indent=1, default=float)


def _fold_dir(run_result, fold: int | str) -> tuple[dict, Path]:
    folds = run_result.folds
    if isinstance(fold, str):
        matches = [f for f in folds if f["name"] == fold]
        if not matches:
            raise ValueError(f"no fold named {fold!r}; folds: {[f['name'] for f in folds]}")
        chosen = matches[0]
    else:
        chosen = folds[fold]
    # training.run writes each fold's checkpoint under its name with '/' made '_'.
    folder = Path(run_result.run_dir) / chosen["name"].replace("/", "_")
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(f"{folder}: no model.pt for fold {chosen['name']!r}")
    return chosen, folder


def _examples_from_store(config: StudyConfig, per_recording: int = 2):
    """The first windows of every stored recording, as the model sees them (normalised).

    Reads only the rows asked for; the examples page then picks a few per condition.
    """
    import pyarrow.compute as pc

    from ecg_pipeline.io.store import WindowStore

    store = WindowStore(config.store.root, config.dataset.name)
    try:
        x, meta = store.read_windows(
            normalisation=config.store.normalisation,
            filter=pc.field("window_index") < per_recording,
        )
    except FileNotFoundError:
        return None, None
    return x, meta


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


def heldout_protocol(config: StudyConfig) -> str:
    """How the held-out score was measured: scores of different protocols are not compared."""
    t = config.training
    if t.split == "group":
        return f"group:{t.group_column}:{','.join(t.test_groups or ())}"
    return t.split


def discard_unfinished_attempts(client, exp_id: str, flow_run_id: str | None) -> None:
    """Delete the runs an earlier, failed attempt of the same flow run's logging left behind.

    A retried ``log-mlflow`` task must leave one run per flow run, not a FAILED one beside it.
    """
    if not flow_run_id:
        return
    runs = client.search_runs(
        [exp_id], filter_string=f"tags.prefect_flow_run_id = '{flow_run_id}'", max_results=50
    )
    for run in runs:
        if run.info.status in ("FAILED", "RUNNING", "SCHEDULED", "KILLED"):
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
    run_result,
    config: StudyConfig,
    *,
    tracking_uri: str,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    recordings: pd.DataFrame | None = None,
    rejections: str | Path | None = None,
    example_x: np.ndarray | None = None,
    example_meta: pd.DataFrame | None = None,
    fs_hz: float | None = None,
    register: bool = True,
    model_fold: int | str = 0,
    heldout_score: float | None = None,
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
    fold, ckpt = _fold_dir(run_result, model_fold)
    fs_hz = float(fs_hz if fs_hz is not None else config.ingest.windows.target_fs_hz)
    summary = final_metrics(folds)
    if fold.get("identity_threshold"):
        # The logged model's own threshold, unprefixed whichever fold it is.
        summary[THRESHOLD_METRIC] = float(fold["identity_threshold"]["value"])
    score = summary["heldout_score"]
    if heldout_score is not None:
        summary["heldout_score_computed"], score = score, float(heldout_score)
        summary["heldout_score"] = score
    if recordings is None:
        from ecg_pipeline.io.store import WindowStore

        recordings = WindowStore(config.store.root, config.dataset.name).catalog()
    published = recordings_table(recordings) if len(recordings) else None
    if example_x is None and len(recordings):
        example_x, example_meta = _examples_from_store(config)
    all_tags = _run_tags(config, published, folds, fold, tags)
    registered_name = registered_model_name(config) if register else None

    with using_tracking_uri(tracking_uri), tempfile.TemporaryDirectory() as tmp:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        exp_id = experiment_id(client, experiment or config.dataset.name)
        discard_unfinished_attempts(client, exp_id, all_tags.get("prefect_flow_run_id"))
        name = run_name or Path(run_result.run_dir).name
        # The fluent run is needed by mlflow.pytorch.log_model; leaving the block ends it as
        # FINISHED, or FAILED when anything inside raised.
        with mlflow.start_run(experiment_id=exp_id, run_name=name, tags=all_tags) as run:
            run_id = run.info.run_id
            metrics = epoch_metrics(folds) + [(k, v, 0) for k, v in summary.items()]
            _log_numbers(client, run_id, flatten_params(config), metrics)
            out = Path(tmp)
            _write_plots(out / "plots", folds, example_x, example_meta, fs_hz)
            _write_files(out, run_result, config, published, rejections, ckpt)
            client.log_artifacts(run_id, str(out))
            info = log_checkpoint_model(
                ckpt,
                registered_model_name=registered_name,
                metadata={"fs_hz": fs_hz, "fold": str(fold["name"]), "heldout_score": score},
                tags={"data_hash": all_tags["data_hash"]},
            )
            version, is_champion = None, False
            if registered_name is not None:
                version = str(info.registered_model_version)
                client.set_model_version_tag(
                    registered_name, version, "data_hash", all_tags["data_hash"]
                )
                promotion = promote_if_better(
                    client, registered_name, version, score, protocol=heldout_protocol(config)
                )
                is_champion = promotion.is_champion
                # What the registry decided when this run was logged (the alias may move on).
                client.set_tag(run_id, "became_champion", str(is_champion).lower())
    return TrackingResult(
        run_id=run_id,
        run_url=f"{tracking_uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}",
        experiment_id=exp_id,
        model_uri=info.model_uri,
        registered_version=version,
        is_champion=is_champion,
        heldout_score=score,
    )
