"""The numbers a training run logs: per-epoch history, test metrics per task with their fold
statistics, and the held-out score that champions are chosen by.

Means and spreads come from :func:`ecg_pipeline.training.results.fold_statistics`, the one
function (and one standard-deviation convention, the sample sd) behind ``results.json``,
``summary.json``, the README table and MLflow. Pure functions of typed folds: no mlflow import.
"""

from __future__ import annotations

import numpy as np

from ecg_pipeline.tracking.keys import FINAL_METRICS, THRESHOLD_METRIC, fold_prefixes, metric_key
from ecg_pipeline.training.results import FoldResult, fold_statistics


def heldout_score_of(folds: list[FoldResult]) -> float:
    """Mean test accuracy over tasks, then over folds: the number champions are chosen by."""
    return float(np.mean([np.mean([m["accuracy"] for m in f.metrics.values()]) for f in folds]))


def epoch_metrics(folds: list[FoldResult]) -> list[tuple[str, float, int]]:
    """``(key, value, epoch)`` for every numeric history entry of every fold."""
    out = []
    for prefix, fold in zip(fold_prefixes(folds), folds, strict=True):
        for i, row in enumerate(fold.history):
            step = int(row.get("epoch", i))
            for key, value in row.items():
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if key != "epoch" and numeric:
                    out.append((metric_key(prefix + key), float(value), step))
    return out


def final_metrics(folds: list[FoldResult]) -> dict[str, float]:
    """Test metrics per task (``identity_test_accuracy``): mean over folds, sample sd and per fold.

    Also ``heldout_score``, and per fold ``best_epoch``, the window counts of each side and
    the calibrated identity threshold (:data:`THRESHOLD_METRIC`).
    """
    out: dict[str, float] = {"heldout_score": heldout_score_of(folds)}
    prefixes = fold_prefixes(folds)
    for task, stats in fold_statistics(folds, FINAL_METRICS).items():
        for key in FINAL_METRICS:
            if key not in stats:
                continue
            out[f"{task}_test_{key}"] = stats[key]
            if len(folds) > 1:
                out[f"{task}_test_{key}_std"] = stats[f"{key}_std"]
                for prefix, fold in zip(prefixes, folds, strict=True):
                    if key in fold.metrics.get(task, {}):
                        out[f"{prefix}{task}_test_{key}"] = float(fold.metrics[task][key])
    for prefix, fold in zip(prefixes, folds, strict=True):
        out[f"{prefix}best_epoch"] = float(fold.best_epoch)
        if fold.identity_threshold:
            out[f"{prefix}{THRESHOLD_METRIC}"] = float(fold.identity_threshold["value"])
        for side in ("train", "val", "test"):
            if side in fold.sizes:
                out[f"{prefix}{side}_windows"] = float(fold.sizes[side])
        if "train_recordings" in fold.sizes:  # label scarcity keeps whole recordings
            out[f"{prefix}train_recordings"] = float(fold.sizes["train_recordings"])
    return {metric_key(k): v for k, v in out.items()}
