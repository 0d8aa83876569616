"""Several seeds of one training configuration, and the mean and spread that a table reports.

One seed can move activity accuracy by several points on the same split, so a figure worth
reporting is a mean over seeds (and over folds). ``run_seeds`` trains the same configuration once
per seed into ``<out>/<name>/seed<k>/`` and writes ``<out>/<name>/summary.json``: the command
that produced it, the configuration, and per task the mean and standard deviation over every
(seed, fold) pair, plus each seed's own mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.atomic import atomic_write_text
from ecg_pipeline.training.run import RunResult, train_and_evaluate

METRICS = ("accuracy", "f1_macro", "f1_weighted", "recording_accuracy")


def recipe_departures(config: StudyConfig) -> list[str]:
    """The training settings in which ``config`` departs from the paper's recipe (empty: the paper's)."""
    t, paper = config.training, type(config.training)()
    out = [
        f"{key}={getattr(t, key)}"
        for key in ("weight_decay", "label_smoothing", "schedule", "group_validation")
        if getattr(t, key) != getattr(paper, key)
    ]
    if t.augment.enabled:
        out.append("augment")
    if config.store.normalisation != "window":
        out.append(f"normalisation={config.store.normalisation}")
    return out


def summarise_runs(runs: Sequence[tuple[int, RunResult]]) -> dict:
    """Mean and standard deviation of each task's test metrics over every (seed, fold) pair.

    Returns
    -------
    dict
        ``{"n_seeds", "n_folds", "tasks": {task: {metric: mean, metric_std: sd}},
        "per_seed": {seed: {task: {metric: mean over folds}}}}``.
    """
    values: dict[str, dict[str, list[float]]] = {}
    per_seed: dict[str, dict] = {}
    for seed, run in runs:
        seed_means: dict[str, dict[str, float]] = {}
        for task in run.folds[0]["metrics"]:
            for key in METRICS:
                fold_values = [f["metrics"][task][key] for f in run.folds]
                values.setdefault(task, {}).setdefault(key, []).extend(fold_values)
                seed_means.setdefault(task, {})[key] = float(np.mean(fold_values))
        per_seed[str(seed)] = seed_means
    tasks = {
        task: {
            **{key: float(np.mean(v)) for key, v in metrics.items()},
            **{f"{key}_std": float(np.std(v)) for key, v in metrics.items()},
        }
        for task, metrics in values.items()
    }
    return {
        "n_seeds": len(runs),
        "n_folds": len(runs[0][1].folds) if runs else 0,
        "tasks": tasks,
        "per_seed": per_seed,
    }


def run_seeds(
    config: StudyConfig,
    seeds: Sequence[int],
    *,
    name: str,
    store_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    command: str | None = None,
    max_windows_per_recording: int | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
) -> tuple[list[tuple[int, RunResult]], dict]:
    """Train ``config`` once per seed and write the summary beside the runs.

    Parameters
    ----------
    config : StudyConfig
        Everything but the seed, which each run replaces.
    seeds : sequence of int
    name : str
        The experiment's folder under ``out_dir`` (``[training] out_dir`` by default).
    command : str, optional
        The command line to record, so each figure names how to reproduce it.

    Returns
    -------
    (runs, summary)
        Each seed with its ``RunResult``, and the dict written to ``summary.json``.
    """
    if not seeds:
        raise ValueError("no seeds given")
    out = Path(out_dir or config.training.out_dir) / name
    runs = []
    for seed in seeds:
        seeded = config.model_copy(
            update={"training": config.training.model_copy(update={"seed": seed})}
        )
        run = train_and_evaluate(
            seeded, store_root=store_root, out_dir=out, run_name=f"seed{seed}",
            max_windows_per_recording=max_windows_per_recording,
            on_epoch=(lambda fold, row, s=seed: on_epoch(f"seed {s} {fold}", row)) if on_epoch else None,
        )  # fmt: skip
        runs.append((seed, run))
    summary = {
        "name": name,
        "command": command,
        "dataset": config.dataset.name,
        "model": config.model.name,
        "attention": config.model.attention,
        "split": config.training.split,
        "weighting": config.training.weighting,
        "epochs": config.training.epochs,
        "departures": recipe_departures(config),
        "seeds": list(seeds),
        "folds": [f["name"] for f in runs[0][1].folds],
        **summarise_runs(runs),
        "config": config.model_dump(mode="json"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return runs, summary
