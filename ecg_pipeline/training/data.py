"""Windows from the Parquet store as labelled arrays for training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.training.splits import add_holdout_columns

TASK_COLUMNS = {"identity": "subject", "activity": "condition"}


@dataclass
class WindowData:
    """Normalised windows and their labels.

    Attributes
    ----------
    x : np.ndarray
        (N, 1, T) float32 in [0, 1] (one ECG channel).
    labels : dict of str to np.ndarray
        Task name to (N,) int64 class indices.
    classes : dict of str to list of str
        Task name to class names, index order.
    meta : pandas.DataFrame
        One row per window (recording_id, subject, condition, session, window_index, ...).
    """

    x: np.ndarray
    labels: dict[str, np.ndarray]
    classes: dict[str, list[str]]
    meta: pd.DataFrame

    @property
    def heads(self) -> dict[str, int]:
        return {task: len(names) for task, names in self.classes.items()}


def load_window_data(
    store: WindowStore, tasks: Sequence[str], normalisation: str = "window"
) -> WindowData:
    """Read every window of a dataset's store and encode the tasks' labels.

    The metadata gains the recording's ``date`` (from the store's catalog) and the derived
    ``last_record`` / ``later_date`` hold-out columns (see ``splits.add_holdout_columns``).
    A task whose label takes one value in the data (ECG-ID has no activity) is dropped, so such a
    dataset trains a single head.
    """
    x, meta = store.read_windows(normalisation=normalisation)
    meta = _with_recording_columns(meta, store)
    order = np.lexsort((meta["window_index"].to_numpy(), meta["recording_id"].to_numpy()))
    x, meta = x[order], meta.iloc[order].reset_index(drop=True)
    labels, classes = {}, {}
    for task in tasks:
        values = meta[TASK_COLUMNS[task]].astype(str)
        names = sorted(values.unique())
        if len(names) < 2:
            continue
        labels[task] = pd.Categorical(values, categories=names).codes.astype(np.int64)
        classes[task] = names
    if not labels:
        raise ValueError(f"no task has two or more classes in {store.path}")
    return WindowData(x[:, None, :], labels, classes, meta)


def _with_recording_columns(meta: pd.DataFrame, store: WindowStore) -> pd.DataFrame:
    # The windows table carries no date (it is personal data, kept to the manifest in each
    # file's footer); the catalog has it, one row per recording.
    if "date" not in meta.columns:
        dates = store.catalog().set_index("recording_id")["date"]
        meta = meta.assign(date=dates.reindex(meta["recording_id"]).to_numpy())
    return add_holdout_columns(meta)
