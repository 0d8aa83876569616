"""Verification figures of a trained run: known people's held-out records against strangers.

For each fold of each seed, with the fold's saved checkpoint:

* **enrolment**: every known person's template from their training-side recordings (the
  fold's training and validation windows), as ``ecg-pipeline enrol`` would make it;
* **calibration**: the "unknown" threshold from the calibration strangers (people left out of
  training, ``[training] holdout_people``, first share of them) at
  ``[verify] stranger_accept_rate``: the only choice made, and made without the test side;
* **genuine probes**: the test-side recordings of known people (ECG-ID ``later_date``: records
  of a later day; dp-motion-ecg: a held-out electrode session);
* **impostor probes**: every recording of the test strangers (never used to choose anything).

Reported: the 1:1 equal error rate, FAR at ``[verify] fixed_frr``, FRR at ``fixed_far``, FAR and
FRR at the calibrated threshold, the open-set rates ``predict`` would give (strangers accepted
as someone, known people refused or taken for someone else), the share of the known people's
own training recordings refused (a copy of a training recording should pass), and the ROC
points. :func:`verify_experiment` writes them, with their mean and spread over runs, as one
JSON file; the templates and threshold of each fold are returned for ``predict/enrol.py`` to
store beside the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.training.verification import (
    calibrate_stranger_threshold,
    cosine_scores,
    equal_error_rate,
    error_rates,
    far_at_frr,
    frr_at_far,
    open_set_rates,
    person_templates,
    recording_embeddings,
    roc_points,
)

__all__ = ["FoldVerification", "verify_experiment", "verify_fold", "verify_seed"]

# Points kept of each ROC curve in the results file: every corner of a curve over up to ~500
# genuine scores (ECG-ID: 35), evenly spaced beyond.
_ROC_POINTS = 1000
# The figures averaged over seeds and folds in the summary.
SUMMARY_KEYS = (
    "eer",
    "far_at_fixed_frr",
    "frr_at_fixed_far",
    "far_at_threshold",
    "frr_at_threshold",
    "stranger_accepted",
    "known_rejected",
    "known_misidentified",
    "known_correct",
    "training_recordings_refused",
    "threshold",
)


@dataclass
class FoldVerification:
    """One fold's figures (``results``, plain JSON) and what enrolment stores (``templates``)."""

    results: dict
    templates: dict[str, dict]
    threshold: dict


def _by_recording(model, x, meta):
    """(recording ids, their people, unit embeddings) of the windows ``x`` with rows ``meta``."""
    if not len(x):
        return np.array([], dtype=object), np.array([], dtype=object), np.empty((0, 0))
    ids = meta["recording_id"].astype(str).to_numpy()
    keys, emb = recording_embeddings(model.embeddings(x), ids)
    person_of = dict(zip(ids, meta["subject"].astype(str), strict=True))  # one per recording
    return keys, np.array([person_of[k] for k in keys], dtype=object), emb


def _thin(roc: dict, n: int = _ROC_POINTS) -> dict:
    """The corners of the step curve (where FRR changes, and the point before), so that the
    stored curve is exact; thinned evenly only beyond ``n`` of them."""
    steps = np.flatnonzero(np.diff(roc["frr"]) != 0)
    keep = np.unique(np.concatenate([[0, len(roc["frr"]) - 1], steps, steps + 1]))
    if len(keep) > n:
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, n).astype(int))]
    return {k: [float(v) for v in roc[k][keep]] for k in ("threshold", "far", "frr")}


def verify_fold(model, everyone, data, split, people, settings) -> FoldVerification:
    """Figures of one fold (see the module docstring).

    Parameters
    ----------
    model : Model
        The fold's checkpoint (:func:`~ecg_pipeline.training.model_handle.load_checkpoint_model`).
    everyone, data : WindowData
        Every window, and the windows trained on (without the held-out people).
    split : Split
        The fold's positions into ``data``.
    people : HeldOutPeople
        The strangers by role.
    settings : VerifySettings
        ``[verify]``.

    Raises
    ------
    ValueError
        No calibration or test strangers, or no genuine probe.
    """
    subject = everyone.meta["subject"].astype(str)
    enrol_rows = np.union1d(split.train, split.val)
    enrol_ids, enrol_people, enrol_emb = _by_recording(
        model, data.x[enrol_rows], data.meta.iloc[enrol_rows]
    )
    names, templates = person_templates(enrol_emb, enrol_people)
    probe_ids, probe_people, probe_emb = _by_recording(
        model, data.x[split.test], data.meta.iloc[split.test]
    )
    probe_ids, probe_people, probe_emb = (
        a[np.isin(probe_people, names)] for a in (probe_ids, probe_people, probe_emb)
    )
    strangers = {}
    for role in ("calibration", "test"):
        rows = np.flatnonzero(subject.isin(getattr(people, role)).to_numpy())
        strangers[role] = _by_recording(model, everyone.x[rows], everyone.meta.iloc[rows])
        if not len(strangers[role][0]):
            raise ValueError(
                f"fold {split.name}: no {role} strangers; train with [training] holdout_people "
                "of two or more so that people are left out to calibrate and to test on"
            )
    if not len(probe_ids):
        raise ValueError(f"fold {split.name}: no test-side recording of a known person to verify")

    cal_scores = cosine_scores(strangers["calibration"][2], templates)
    threshold = calibrate_stranger_threshold(
        cal_scores.max(axis=1),
        settings.stranger_accept_rate,
        n_people=len(people.calibration),
    )
    t = threshold.value
    column = {str(n): i for i, n in enumerate(names)}
    probe_scores = cosine_scores(probe_emb, templates)
    genuine = probe_scores[np.arange(len(probe_ids)), [column[p] for p in probe_people]]
    test_scores = cosine_scores(strangers["test"][2], templates)
    impostor = test_scores.ravel()  # every test stranger's recording against every template
    eer, eer_t = equal_error_rate(genuine, impostor)
    far_fixed, _ = far_at_frr(genuine, impostor, settings.fixed_frr)
    frr_fixed, _ = frr_at_far(genuine, impostor, settings.fixed_far)
    far_t, frr_t = error_rates(genuine, impostor, t)
    open_set = open_set_rates(
        np.vstack([probe_scores, test_scores]),
        names,
        np.concatenate([probe_people, strangers["test"][1]]),
        t,
    )
    own = cosine_scores(enrol_emb, templates)[
        np.arange(len(enrol_ids)), [column[p] for p in enrol_people]
    ]
    results = {
        "fold": split.name,
        "enrolled_people": len(names),
        "enrolment_recordings": len(enrol_ids),
        "genuine_recordings": len(probe_ids),
        "genuine_people": len(set(probe_people)),
        "calibration_strangers": len(people.calibration),
        "calibration_recordings": len(strangers["calibration"][0]),
        "test_strangers": len(people.test),
        "test_stranger_recordings": len(strangers["test"][0]),
        "impostor_pairs": len(impostor),
        "threshold": t,
        "threshold_info": threshold.as_dict(),
        "eer": eer,
        "eer_threshold": eer_t,
        "fixed_frr": settings.fixed_frr,
        "far_at_fixed_frr": far_fixed,
        "fixed_far": settings.fixed_far,
        "frr_at_fixed_far": frr_fixed,
        "far_at_threshold": far_t,
        "frr_at_threshold": frr_t,
        **{k: v for k, v in open_set.items() if not k.startswith("n_")},
        "training_recordings_refused": float(np.mean(own < t)),
        "roc": _thin(roc_points(genuine, impostor)),
    }
    stored = {
        str(name): {
            "template": [float(v) for v in templates[i]],
            "n_recordings": int(np.sum(enrol_people == name)),
            "source": "training",
        }
        for i, name in enumerate(names)
    }
    return FoldVerification(results, stored, threshold.as_dict())


def _seed_folders(folder: Path) -> list[Path]:
    from ecg_pipeline.training.results import RESULTS_FILE

    if (folder / RESULTS_FILE).is_file():
        return [folder]
    seeds = sorted(p for p in folder.glob("seed*") if (p / RESULTS_FILE).is_file())
    if not seeds:
        raise FileNotFoundError(
            f"{folder}: no results.json here or in seed*/; name a training run folder "
            "(`ecg-pipeline train --name ...` writes <out>/<name>/seed<k>/)"
        )
    return seeds


def verify_seed(run_dir, *, store_root=None, overrides: dict | None = None):
    """Every fold of one trained seed: (config, its per-fold :class:`FoldVerification`, people).

    The configuration is the one stored in the run's ``results.json`` (so the windows, splits
    and held-out people are rebuilt exactly), with ``overrides`` (``[verify]`` settings) laid
    over it.
    """
    from ecg_pipeline.training.model_handle import load_checkpoint_model
    from ecg_pipeline.training.results import RunResult, fold_dir
    from ecg_pipeline.training.run import load_with_strangers

    run = RunResult.load(run_dir)
    config = StudyConfig.model_validate(run.config).with_overrides(overrides or {})
    if not config.training.holdout_people:
        raise ValueError(
            f"{run_dir}: trained with no people left out, so there are no strangers to "
            "calibrate and measure on; train with --set training.holdout_people=N"
        )
    everyone, data, splits, people = load_with_strangers(
        config, store_root, run.max_windows_per_recording
    )
    folds = []
    for split in splits:
        model = load_checkpoint_model(fold_dir(run_dir, split.name))
        folds.append((split, verify_fold(model, everyone, data, split, people, config.verify)))
    return config, folds, people


def verify_experiment(
    folders, *, store_root=None, overrides: dict | None = None, command: str | None = None
) -> tuple[dict, dict[Path, FoldVerification], StudyConfig]:
    """Verify every seed of one or more training experiments, pooled into one result.

    Parameters
    ----------
    folders : path-like or sequence of them
        ``<out>/<name>`` (its ``seed*/`` runs) or one seed's folder; several (one held-out
        group each, say) are pooled: the summary is over every (run, fold).
    overrides : dict, optional
        Dotted ``[verify]`` settings over each run's stored configuration.
    command : str, optional
        Recorded, so every figure names the command that rebuilds it.

    Returns
    -------
    results : dict
        ``runs`` (``<experiment>/seed<k>`` -> seed, held-out people and the folds' figures)
        and ``summary`` (mean and sample standard deviation over every (run, fold) of
        :data:`SUMMARY_KEYS`).
    enrolments : dict of Path to FoldVerification
        Each fold folder's templates and threshold.
    config : StudyConfig
        The last run's stored configuration with ``overrides`` (its ``[verify]`` settings).
    """
    from ecg_pipeline.training.metrics import mean_and_sd
    from ecg_pipeline.training.results import fold_dir

    if isinstance(folders, (str, Path)):
        folders = [folders]
    runs, enrolments, config = {}, {}, None
    for folder in map(Path, folders):
        for run_dir in _seed_folders(folder):
            config, folds, people = verify_seed(run_dir, store_root=store_root, overrides=overrides)
            label = f"{run_dir.parent.name}/{run_dir.name}" if run_dir != folder else folder.name
            runs[label] = {
                "seed": config.training.seed,
                "held_out_people": people.as_dict(),
                "folds": [f.results for _, f in folds],
            }
            for split, fold in folds:
                enrolments[fold_dir(run_dir, split.name)] = fold
    rows = [f for run in runs.values() for f in run["folds"]]
    summary = {}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in rows if r[key] == r[key]]  # NaN: no probe of that kind
        if values:
            summary[key], summary[f"{key}_std"] = mean_and_sd(values)
    results = {
        "experiments": [str(f) for f in folders],
        "command": command,
        "dataset": config.dataset.name,
        "model": config.model.name,
        "split": config.training.split,
        "group_column": config.training.group_column,
        "holdout_people": config.training.holdout_people,
        "verify": config.verify.model_dump(mode="json"),
        "seeds": sorted({run["seed"] for run in runs.values()}),
        "n_runs": len(runs),
        "n_folds": len(rows),
        "summary": summary,
        "runs": runs,
    }
    return results, enrolments, config


def write_results(results: dict, path) -> Path:
    """The results as indented JSON, atomically."""
    from ecg_pipeline.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(results, indent=1, default=float))
    return path
