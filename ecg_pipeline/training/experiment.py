"""Several seeds of one training configuration, and the mean and spread that a table reports.

One seed can move activity accuracy by several points on the same split, so a figure worth
reporting is a mean over seeds (and over folds). ``run_seeds`` trains the same configuration once
per seed into ``<out>/<name>/seed<k>/`` and writes ``<out>/<name>/summary.json``: the command
that produced it, the configuration, and per task the mean and the sample standard deviation
over every (seed, fold) pair, the standard deviation of the seeds' means, and each seed's own
mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.atomic import atomic_write_text
from ecg_pipeline.training.metrics import SUMMARY_METRICS, mean_and_sd
from ecg_pipeline.training.results import RESULTS_FILE, FoldResult, RunResult, fold_statistics
from ecg_pipeline.training.run import stored_run_matches, train_and_evaluate


def recipe_departures(config: StudyConfig) -> list[str]:
    """The training settings in which ``config`` departs from the paper's recipe (empty: the paper's)."""
    t, paper = config.training, type(config.training)()
    keys = (
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "label_smoothing",
        "schedule",
        "group_validation",
    )
    out = [f"{key}={getattr(t, key)}" for key in keys if getattr(t, key) != getattr(paper, key)]
    if t.augment.enabled:
        out.append("augment")
    if config.store.normalisation != "window":
        out.append(f"normalisation={config.store.normalisation}")
    return out


def summarise_folds(per_seed: dict[int, list[FoldResult]]) -> dict:
    """Mean and spread of each task's test metrics over every (seed, fold) pair.

    Precision, recall and F1 are re-computed from each fold's stored confusion matrix with the
    current :func:`report_from_confusion`, so stored results are always summarised by the same
    rules; recording accuracies are taken as stored (by rule: the product's mean-probability
    rule, and the majority vote).

    Parameters
    ----------
    per_seed : dict of int to list of FoldResult
        Each seed's evaluated folds.

    Returns
    -------
    dict
        ``{"n_seeds", "n_folds", "tasks": {task: {metric: mean, metric_std: sample sd over
        seeds x folds, metric_seed_std: sample sd of the seeds' means}}, "per_seed": {seed:
        {task: {metric: mean over folds}}}}``. A metric no fold of a task holds (the
        mean-probability recording accuracy of results written before it was measured) is left
        out.
    """
    from ecg_pipeline.training.metrics import report_from_confusion

    rescored: dict[int, list[FoldResult]] = {}
    for seed, folds in per_seed.items():
        rescored[seed] = []
        for fold in folds:
            metrics = {}
            for task, stored in fold.metrics.items():
                scores = report_from_confusion(stored["confusion_matrix"], stored["labels"])
                for key in ("recording_accuracy", "recording_accuracy_vote"):
                    if key in stored:
                        scores[key] = stored[key]
                metrics[task] = scores
            rescored[seed].append(replace(fold, metrics=metrics))
    per_seed_means = {str(seed): fold_statistics(folds) for seed, folds in rescored.items()}
    pooled = fold_statistics([f for folds in rescored.values() for f in folds])
    tasks: dict[str, dict[str, float]] = {}
    for task, stats in pooled.items():
        tasks[task] = dict(stats)
        for key in SUMMARY_METRICS:
            if key not in stats:
                continue
            seed_means = [m[task][key] for m in per_seed_means.values() if key in m.get(task, {})]
            tasks[task][f"{key}_seed_std"] = mean_and_sd(seed_means)[1]
    first = next(iter(per_seed.values()), [])
    return {
        "n_seeds": len(per_seed),
        "n_folds": len(first),
        "tasks": tasks,
        "per_seed": {
            seed: {t: {k: v for k, v in m.items() if not k.endswith("_std")} for t, m in st.items()}
            for seed, st in per_seed_means.items()
        },
    }


def summarise_runs(runs: Sequence[tuple[int, RunResult]]) -> dict:
    """:func:`summarise_folds` of runs made in this process, and how their choices were made."""
    return {
        **summarise_folds({seed: run.folds for seed, run in runs}),
        **choices_of({seed: run.folds for seed, run in runs}),
    }


def choices_of(per_seed: dict[int, list[FoldResult]]) -> dict:
    """What the folds were fine-tuned from and which recipes inner validation chose.

    ``{"chosen": {candidate: count over (seed, fold)}}`` when recipes were chosen on inner
    folds; ``{"pretrained": {"objective", "sees_test"}}`` when fine-tuned from an encoder;
    ``{"labelled_share": mean share}`` when training kept only some recordings' labels.
    """
    folds = [f for fs in per_seed.values() for f in fs]
    out: dict = {}
    chosen = [f.selection["chosen"] for f in folds if f.selection]
    if chosen:
        out["chosen"] = {name: chosen.count(name) for name in sorted(set(chosen))}
    offered = [f.sizes for f in folds if f.sizes.get("train_recordings_offered")]
    if offered and any(z["train_recordings"] < z["train_recordings_offered"] for z in offered):
        # Label scarcity: the share of training recordings that kept their labels, which can
        # exceed the asked fraction (one recording per person is the floor).
        shares = [z["train_recordings"] / z["train_recordings_offered"] for z in offered]
        out["labelled_share"] = sum(shares) / len(shares)
    pretrained = [f.pretrained for f in folds if f.pretrained]
    if pretrained:
        out["pretrained"] = {
            "objective": pretrained[0]["objective"],
            "sees_test": any(p["sees_test"] for p in pretrained),
        }
    return out


def load_summary(path: str | Path) -> dict:
    """A ``summary.json`` with its statistics re-computed from the ``seed*/results.json`` beside it.

    The table is therefore always built by the current metric rules, whatever version of the
    code wrote the summary.
    """
    path = Path(path)
    summary = json.loads(path.read_text())
    per_seed = {}
    for seed in summary["seeds"]:
        run_dir = path.parent / f"seed{seed}"
        if not (run_dir / RESULTS_FILE).is_file():
            raise FileNotFoundError(
                f"{run_dir / RESULTS_FILE} is missing: {path} cannot be re-computed"
            )
        per_seed[seed] = RunResult.load(run_dir).folds
    return {**summary, **summarise_folds(per_seed), **choices_of(per_seed)}


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
    candidates: dict[str, StudyConfig] | None = None,
    resume: bool = False,
    on_reuse: Callable[[int, str], None] | None = None,
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
    candidates : dict, optional
        Recipes to choose among, per fold, on inner folds of its training side
        (:mod:`~ecg_pipeline.training.selection`); ``config`` then gives the split and data.
    resume : bool
        Reuse a seed's stored ``seed<k>/results.json`` when it was trained with this very
        configuration, data and candidates (:func:`~ecg_pipeline.training.run.stored_run_matches`);
        an interrupted experiment, or seeds trained side by side as separate commands, then
        end in one summary without training anything twice; a seed whose training was
        stopped mid-way continues from its last finished epoch. ``on_reuse(seed, why)`` is told
        what was decided for each seed.

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
        seeded = config.with_overrides({"training.seed": seed})
        if resume:
            stored, why = stored_run_matches(
                out / f"seed{seed}",
                seeded,
                store_root=store_root,
                max_windows_per_recording=max_windows_per_recording,
                candidates=candidates,
            )
            if on_reuse is not None:
                on_reuse(seed, ("reused: " if stored else "training: ") + why)
            if stored is not None:
                runs.append((seed, stored))
                continue
        run = train_and_evaluate(
            seeded,
            store_root=store_root,
            out_dir=out,
            run_name=f"seed{seed}",
            max_windows_per_recording=max_windows_per_recording,
            candidates=candidates,
            on_epoch=(lambda fold, row, s=seed: on_epoch(f"seed {s} {fold}", row))
            if on_epoch
            else None,
            resume=resume,
        )
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
        "folds": [f.name for f in runs[0][1].folds],
        **summarise_runs(runs),
        "config": config.model_dump(mode="json"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return runs, summary
