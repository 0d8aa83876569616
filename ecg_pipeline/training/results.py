"""Typed results of a training run: one :class:`FoldResult` per fold inside a :class:`RunResult`.

A run folder holds one sub-folder per fold (:func:`fold_dir`: ``model.pt`` + ``model.json``)
and ``results.json`` (:meth:`RunResult.save`). Everything that reads a run (evaluation, the
MLflow logging, the multi-seed summaries, the README table, the command line) goes through
these classes, never through the JSON's keys.

Recording-level figures follow the product's rule (:mod:`ecg_pipeline.training.aggregate`: the
class with the highest mean probability over a recording's windows, what ``predict`` answers);
the majority vote is kept beside it under its own name. Results written before the rule was
settled hold only the vote, under ``recording_accuracy``: :meth:`FoldResult.from_json` files
it under ``recording_accuracy_vote``, so an old figure is never read as the new rule's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecg_pipeline.io.atomic import atomic_write_text
from ecg_pipeline.training.metrics import SUMMARY_METRICS, mean_and_sd

RESULTS_FILE = "results.json"
# What ``recording_accuracy`` means in a results file (absent in files written before).
RECORDING_RULE = "mean_probability"


def fold_dir(run_dir: str | Path, fold_name: str) -> Path:
    """The folder of one fold's checkpoint inside a run folder (``session=01`` -> itself;
    a ``/`` in a fold's name would nest folders, so it becomes ``_``)."""
    return Path(run_dir) / fold_name.replace("/", "_")


@dataclass
class FoldResult:
    """One fold: how it trained and, once evaluated, how it scored on its test side.

    Attributes
    ----------
    name : str
        The split's name (``"session=01"``, ``"window"``, ``"time_block"``).
    best_epoch : int
        The epoch whose weights were kept (best validation score).
    history : list of dict
        One row per epoch (losses, validation accuracy, task weights).
    sizes : dict of str to int
        Windows in ``train``, ``val`` and ``test``.
    identity_threshold : dict, optional
        The "unknown" threshold calibrated on the validation part
        (:class:`~ecg_pipeline.training.calibration.IdentityThreshold` as a dict).
    metrics : dict, optional
        Per task, the test classification report plus ``recording_accuracy`` (highest mean
        probability) and ``recording_accuracy_vote`` (majority vote); None until evaluated.
    recordings : dict, optional
        Per task, one row per test recording (``recording_id``, ``y_true``, ``y_pred``,
        ``confidence``, ``y_vote``), so a recording-level rule can be re-scored later.
    pretrained : dict, optional
        The pre-trained encoder this fold was fine-tuned from (folder, objective, datasets,
        and ``sees_test``: whether its pre-training read this fold's test windows).
    selection : dict, optional
        How this fold's recipe was chosen among candidates on inner folds of its training side
        (see :mod:`ecg_pipeline.training.selection`); None when no choice was made.
    """

    name: str
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    identity_threshold: dict | None = None
    metrics: dict[str, dict] | None = None
    recordings: dict[str, list[dict]] | None = None
    pretrained: dict | None = None
    selection: dict | None = None

    @property
    def evaluated(self) -> bool:
        return self.metrics is not None

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics or {})

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, rule: str | None = RECORDING_RULE) -> FoldResult:
        """Read a fold written by :meth:`to_json`, or by a version before the classes existed.

        ``rule`` is the run's ``recording_rule``; None (older files) means the stored
        ``recording_accuracy`` is a majority vote.
        """
        metrics = data.get("metrics")
        if metrics is not None and rule is None:
            metrics = {task: _vote_only(report) for task, report in metrics.items()}
        return cls(
            name=str(data["name"]),
            best_epoch=int(data["best_epoch"]),
            history=list(data.get("history", [])),
            sizes=dict(data.get("sizes", {})),
            identity_threshold=data.get("identity_threshold"),
            metrics=metrics,
            recordings=data.get("recordings"),
            pretrained=data.get("pretrained"),
            selection=data.get("selection"),
        )


def _vote_only(report: dict) -> dict:
    report = dict(report)
    if "recording_accuracy" in report and "recording_accuracy_vote" not in report:
        report["recording_accuracy_vote"] = report.pop("recording_accuracy")
    return report


@dataclass
class RunResult:
    """A training run: its folder, its folds and what it was trained with.

    Attributes
    ----------
    run_dir : Path
        Holds one folder per fold (:func:`fold_dir`) and ``results.json``.
    folds : list of FoldResult
    config : dict
        The whole :class:`~ecg_pipeline.config.StudyConfig`, as JSON.
    ingest_hash : str, optional
        The ``[ingest]`` hash of the windows trained on.
    data_signature : str, optional
        Which windows the run saw (evaluation refuses a store that changed since).
    max_windows_per_recording : int, optional
        Set for quick checks that used only the first windows of each recording.
    candidates : dict of str to str, optional
        The recipes each fold chose among (name -> hash of its whole configuration).
    """

    run_dir: Path
    folds: list[FoldResult]
    config: dict = field(default_factory=dict)
    ingest_hash: str | None = None
    data_signature: str | None = None
    max_windows_per_recording: int | None = None
    candidates: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def seed(self) -> int | None:
        return self.config.get("training", {}).get("seed")

    @property
    def split(self) -> str | None:
        return self.config.get("training", {}).get("split")

    @property
    def evaluated(self) -> bool:
        return bool(self.folds) and all(f.evaluated for f in self.folds)

    def fold(self, name: str | int) -> FoldResult:
        """A fold by name, or by position."""
        if isinstance(name, int):
            return self.folds[name]
        for f in self.folds:
            if f.name == name:
                return f
        raise KeyError(f"{self.run_dir}: no fold {name!r} (folds: {[f.name for f in self.folds]})")

    def fold_dir(self, name: str | int) -> Path:
        return fold_dir(self.run_dir, self.fold(name).name)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per task, the mean and sample standard deviation over folds of the test metrics
        (:data:`~ecg_pipeline.training.metrics.SUMMARY_METRICS`, those the folds hold)."""
        return fold_statistics(self.folds)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "ingest_hash": self.ingest_hash,
            "seed": self.seed,
            "split": self.split,
            "max_windows_per_recording": self.max_windows_per_recording,
            "data_signature": self.data_signature,
            "candidates": self.candidates,
            "recording_rule": RECORDING_RULE,
            "summary": self.summary() if self.evaluated else None,
            "folds": [f.to_json() for f in self.folds],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], run_dir: str | Path) -> RunResult:
        rule = data.get("recording_rule")
        return cls(
            run_dir=Path(run_dir),
            folds=[FoldResult.from_json(f, rule=rule) for f in data.get("folds", [])],
            config=dict(data.get("config") or {}),
            # "config_hash": the name results files used before it was settled.
            ingest_hash=data.get("ingest_hash", data.get("config_hash")),
            data_signature=data.get("data_signature"),
            max_windows_per_recording=data.get("max_windows_per_recording"),
            candidates=data.get("candidates"),
        )

    def save(self) -> Path:
        """Write ``results.json`` atomically; returns its path."""
        path = self.run_dir / RESULTS_FILE
        atomic_write_text(path, json.dumps(self.to_json(), indent=1, default=float))
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        """Read ``<run_dir>/results.json``."""
        run_dir = Path(run_dir)
        data = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
        return cls.from_json(data, run_dir)


def fold_statistics(
    folds: Iterable[FoldResult], metrics: Iterable[str] = SUMMARY_METRICS
) -> dict[str, dict[str, float]]:
    """Per task, ``{metric: mean, metric_std: sample sd}`` over the evaluated folds.

    A metric is averaged over the folds that hold it (the mean-probability recording accuracy
    is absent from folds evaluated before it was measured) and left out when none does.

    The one place fold statistics are made: ``results.json``, ``summary.json`` (over seeds x
    folds), the README table and MLflow all use it, with one standard-deviation convention
    (:func:`~ecg_pipeline.training.metrics.mean_and_sd`).
    """
    folds = [f for f in folds if f.evaluated]
    out: dict[str, dict[str, float]] = {}
    if not folds:
        return out
    for task in folds[0].tasks:
        for key in metrics:
            values = [f.metrics[task][key] for f in folds if key in f.metrics.get(task, {})]
            if not values:
                continue
            mean, sd = mean_and_sd(values)
            out.setdefault(task, {})[key] = mean
            out[task][f"{key}_std"] = sd
    return out
