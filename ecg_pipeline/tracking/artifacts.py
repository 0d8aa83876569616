"""What a training run publishes besides numbers: plots, the recordings table and
rejections (without personal data), ``results.json``, the project checkpoint and the tags that
say what the run was trained on. Files are written into a folder the caller uploads; nothing
here talks to a server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.tables import spreadsheet_safe
from ecg_pipeline.tracking.keys import fold_prefixes
from ecg_pipeline.tracking.lineage import data_hash, git_commit, git_dirty, shareable_rejections
from ecg_pipeline.training.results import RECORDING_RULE, FoldResult, RunResult


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def write_plots(
    folder: Path,
    folds: list[FoldResult],
    example_x,
    example_meta,
    fs_hz: float,
    beat_example: dict | None = None,
) -> None:
    """Training curves and GradNorm weights per fold, pooled confusion matrices, examples, and
    (ECG-SL) one window's beats with the weights the model gave them."""
    from ecg_pipeline.tracking import plots

    suffixes = [p.rstrip("/").removeprefix("fold") for p in fold_prefixes(folds)]
    for suffix, fold in zip(suffixes, folds, strict=True):
        history = fold.history
        if history:
            _save(
                plots.training_curves(history, best_epoch=fold.best_epoch),
                folder / f"training_curves{suffix}.png",
            )
            if any(k.endswith("_weight") for k in history[0]):
                _save(plots.gradnorm_weights(history), folder / f"gradnorm_weights{suffix}.png")
    for task, first in folds[0].metrics.items():
        # Folds test disjoint windows, so their matrices add up to one pooled matrix.
        matrix = np.sum([np.asarray(f.metrics[task]["confusion_matrix"]) for f in folds], axis=0)
        names = first.get("labels") or [str(i) for i in range(len(matrix))]
        title = f"{task} (test" + (f", {len(folds)} folds pooled)" if len(folds) > 1 else ")")
        _save(plots.confusion_matrix_figure(matrix, names, title), folder / f"confusion_{task}.png")
    if example_x is not None and example_meta is not None:
        _save(plots.example_windows(example_x, example_meta, fs_hz), folder / "example_windows.png")
    if beat_example is not None:
        _save(plots.beat_segments_figure(**beat_example), folder / "beat_segments.png")


def beat_example(config: StudyConfig, checkpoint: Path) -> dict | None:
    """One stored window's beats and the weights the checkpoint's model gives them.

    The first window of the first stored recording with at least two unflagged beats; None
    when the model reads no beats or the store holds none.
    """
    import pyarrow.compute as pc
    import torch

    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.training.checkpoint import load_checkpoint
    from ecg_pipeline.training.inputs import beat_input

    model, spec = load_checkpoint(checkpoint)
    if spec.get("input") != "beats":
        return None
    store = WindowStore(config.store.root, config.dataset.name)
    try:
        table = store.read_table(
            columns=["samples", "r_peak_s", "rr_s", "beat_segments", "beat_flag", "fs_hz"],
            filter=(pc.field("beat_flag") == "") & (pc.field("window_index") < 3),
        )
    except (FileNotFoundError, ValueError):
        return None
    if table.num_rows == 0:
        return None
    row = table.slice(0, 1).to_pylist()[0]
    segments = np.asarray(row["beat_segments"], dtype=np.float32).reshape(-1, spec["n_samples"])
    rr = np.asarray(row["rr_s"], dtype=np.float32)
    x = beat_input([segments], [rr], spec["normalisation"], spec["in_channels"], spec["n_samples"])
    with torch.no_grad():
        weights = model.beat_weights(torch.as_tensor(x))[0].numpy()[: len(segments)]
    beats = spec["beats"]
    return {
        "window": np.asarray(row["samples"], dtype=np.float32),
        "fs_hz": float(row["fs_hz"]),
        "peak_s": np.asarray(row["r_peak_s"], dtype=np.float32),
        "segments": segments,
        "beat_fs_hz": float(beats["segment_fs_hz"]),
        "before_s": float(beats["before_s"]),
        "weights": weights,
    }


def write_files(
    out: Path, run: RunResult, published, rejections, checkpoint: Path, quality_report=None
) -> None:
    """Everything but the plots: data/ (with the batch's signal-quality page when given),
    results.json and the project checkpoint."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    if quality_report is not None and Path(quality_report).is_file():
        shutil.copy2(quality_report, out / "data" / "quality_report.html")
    if published is not None:
        spreadsheet_safe(published).to_csv(out / "data" / "recordings.csv", index=False)
    if rejections is not None and Path(rejections).is_file():
        spreadsheet_safe(shareable_rejections(rejections)).to_csv(
            out / "data" / "rejections.csv", index=False
        )
    (out / "results.json").write_text(
        json.dumps(run.to_json(), indent=1, default=float), encoding="utf-8"
    )
    (out / "checkpoint").mkdir()
    for name in ("model.pt", "model.json"):
        shutil.copy2(checkpoint / name, out / "checkpoint" / name)


def run_tags(
    config: StudyConfig, published, folds: list[FoldResult], fold: FoldResult, extra
) -> dict[str, str]:
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
        # What differs between runs, as sortable columns of the run list.
        "split": config.training.split,
        "epochs": str(config.training.epochs),
        "seed": str(config.training.seed),
        "n_folds": str(len(folds)),
        "model_fold": fold.name,
        # What the run's *_recording_accuracy means (the vote is *_recording_accuracy_vote).
        "recording_rule": RECORDING_RULE,
    }
    if published is not None:
        tags["data_hash"] = data_hash(published["sha256"], config.ingest_hash())
        tags["n_recordings"] = str(len(published))
    if fold.pretrained:
        # The pre-training this model was fine-tuned from (design.md: traceable lineage).
        tags |= {
            "pretrained_from": str(fold.pretrained["folder"]),
            "pretrained_objective": str(fold.pretrained["objective"]),
            "pretraining_sees_test": str(bool(fold.pretrained["sees_test"])).lower(),
        }
    return tags


def describe_run(config: StudyConfig, run_dir: str | Path) -> str:
    """A run name that says what differs between runs in MLflow's list: model, split, epochs,
    seed, then the run folder (which ties it to its Prefect flow run)."""
    t = config.training
    split = t.split if t.split != "group" else f"leave-one-{t.group_column}-out"
    started_from = ", fine-tuned" if config.model.pretrained else ""
    scarce = f", {round(100 * t.label_fraction)} % labels" if t.label_fraction < 1 else ""
    return (
        f"{config.model.name}{started_from}, {split}, {t.epochs} epochs, seed {t.seed}{scarce}"
        f" ({Path(run_dir).name})"
    )


def logged_fold(run: RunResult, fold: int | str) -> tuple[FoldResult, Path]:
    """The fold whose model is logged, and its checkpoint folder (which must hold model.pt)."""
    chosen = run.fold(fold)
    folder = run.fold_dir(chosen.name)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(f"{folder}: no model.pt for fold {chosen.name!r}")
    return chosen, folder


def examples_from_store(config: StudyConfig, per_recording: int = 2):
    """The first windows of every stored recording, as the model sees them (normalised).

    Taken from the windows this process already loaded for training when they are still the
    store's (no read at all), else read with a row filter (only the rows asked for); the
    examples page then picks a few per condition.
    """
    import pyarrow.compute as pc

    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.training.data import cached_window_data

    store = WindowStore(config.store.root, config.dataset.name)
    cached = cached_window_data(store, config.training.tasks, config.store.normalisation)
    if cached is not None:
        rows = np.flatnonzero(cached.meta["window_index"].to_numpy() < per_recording)
        return cached.x[rows, 0, :], cached.meta.iloc[rows].reset_index(drop=True)
    try:
        x, meta = store.read_windows(
            normalisation=config.store.normalisation,
            filter=pc.field("window_index") < per_recording,
        )
    except FileNotFoundError:
        return None, None
    return x, meta
