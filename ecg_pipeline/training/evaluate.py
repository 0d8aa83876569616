"""Scoring a saved checkpoint on a store's windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.store import WindowStore


def evaluate_checkpoint(
    checkpoint: str | Path, config: StudyConfig, store_root: str | Path
) -> dict:
    """Metrics per task of a checkpoint on every window whose label the model knows.

    Windows of subjects or conditions the model never saw cannot be scored and are left out.
    Windows are normalised as the checkpoint was trained (its ``model.json``), whatever the
    configuration says; older checkpoints without that entry use the configuration's.
    """
    import pandas as pd
    import torch

    from ecg_pipeline.training.checkpoint import load_checkpoint
    from ecg_pipeline.training.data import TASK_COLUMNS
    from ecg_pipeline.training.loop import predict_logits
    from ecg_pipeline.training.metrics import classification_report, recording_accuracy

    model, spec = load_checkpoint(checkpoint)
    normalisation = spec.get("normalisation", config.store.normalisation)
    x, meta = WindowStore(store_root, config.dataset.name).read_windows(normalisation)
    logits = predict_logits(model, torch.as_tensor(x[:, None, :]))
    report = {}
    for task, classes in spec["classes"].items():
        codes = pd.Categorical(meta[TASK_COLUMNS[task]].astype(str), categories=classes).codes
        known = codes >= 0
        if not known.any():
            continue
        scores = logits[task].numpy()[known]
        y = codes[known].astype(np.int64)
        m = classification_report(y, scores.argmax(1), classes)
        recordings = meta["recording_id"].to_numpy()[known]
        m["recording_accuracy"] = recording_accuracy(y, scores, recordings)
        m["recording_accuracy_vote"] = recording_accuracy(y, scores, recordings, rule="vote")
        report[task] = m
    return report
