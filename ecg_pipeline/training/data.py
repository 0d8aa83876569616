"""Windows from the Parquet store as labelled arrays for training."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ecg_pipeline.instrument import count
from ecg_pipeline.io.store import WindowStore, caching_enabled
from ecg_pipeline.training.inputs import beat_input
from ecg_pipeline.training.splits import add_holdout_columns

TASK_COLUMNS = {"identity": "subject", "activity": "condition"}


@dataclass
class WindowData:
    """Normalised windows and their labels.

    Attributes
    ----------
    x : np.ndarray
        (N, 1, T) float32 windows (one ECG channel), or (N, K, L + 2) beat sequences for a
        beat model (see :mod:`ecg_pipeline.training.inputs`), normalised.
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
    store: WindowStore,
    tasks: Sequence[str],
    normalisation: str = "window",
    catalog: pd.DataFrame | None = None,
    beats: tuple[int, int] | None = None,
) -> WindowData:
    """Read every window of a dataset's store and encode the tasks' labels.

    The metadata gains the recording's ``date`` (from the store's catalog, or ``catalog`` when
    the caller holds it) and the derived
    ``last_record`` / ``later_date`` hold-out columns (see ``splits.add_holdout_columns``).
    A task whose label takes one value in the data (ECG-ID has no activity) is dropped, so such a
    dataset trains a single head.

    The last dataset loaded is kept for this process: a flow's train and evaluate tasks (or
    :func:`~ecg_pipeline.training.run.train_run` then ``evaluate_run``) read the windows once.
    It is used only while every stored file is the one it was read from (path, inode, size,
    modification time), and never when caching is off (:func:`ecg_pipeline.io.store.caching`).
    The arrays are shared with that cache: modify copies, never ``x`` or ``meta`` in place.

    ``beats`` = (max_beats, segment_samples) reads each window's beat sequence instead of its
    samples (ECG-SL); the windows, their order and labels are the same.
    """
    global _last
    key = (str(store.path.resolve()), tuple(tasks), normalisation, beats, _files_signature(store))
    with _lock:
        if caching_enabled() and _last is not None and _last[0] == key:
            count("training.window_data_reused")
            return replace(_last[1], labels=dict(_last[1].labels))
    data = _read_window_data(store, tasks, normalisation, catalog, beats)
    with _lock:
        _last = (key, data) if caching_enabled() else None
    return replace(data, labels=dict(data.labels))


def cached_window_data(
    store: WindowStore,
    tasks: Sequence[str],
    normalisation: str = "window",
    beats: tuple[int, int] | None = None,
) -> WindowData | None:
    """What :func:`load_window_data` would return without reading anything, or None."""
    key = (str(store.path.resolve()), tuple(tasks), normalisation, beats, _files_signature(store))
    with _lock:
        if caching_enabled() and _last is not None and _last[0] == key:
            return replace(_last[1], labels=dict(_last[1].labels))
    return None


_last: tuple[tuple, WindowData] | None = None
_lock = threading.Lock()


def _files_signature(store: WindowStore) -> tuple:
    out = []
    for f in store.recording_files():
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out.append((str(f), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _read_window_data(
    store: WindowStore,
    tasks: Sequence[str],
    normalisation: str,
    catalog: pd.DataFrame | None,
    beats: tuple[int, int] | None,
) -> WindowData:
    x, meta = store.read_windows(normalisation=normalisation)
    meta = _with_recording_columns(meta, store, catalog)
    order = np.lexsort((meta["window_index"].to_numpy(), meta["recording_id"].to_numpy()))
    x, meta = x[order], meta.iloc[order].reset_index(drop=True)
    if beats is not None:
        x = _beat_sequences(store, meta, normalisation, *beats)
    else:
        x = x[:, None, :]
    labels, classes = {}, {}
    for task in tasks:
        values = meta[TASK_COLUMNS[task]].astype(str)
        names = sorted(values.unique())
        if len(names) < 2:
            continue
        labels[task] = pd.Categorical(values, categories=names).codes.astype(np.int64)
        classes[task] = names
    if not labels and tasks:
        raise ValueError(f"no task has two or more classes in {store.path}")
    return WindowData(x, labels, classes, meta)


def _beat_sequences(
    store: WindowStore, meta: pd.DataFrame, normalisation: str, max_beats: int, segment_samples: int
) -> np.ndarray:
    """(N, K, L + 2) beat sequences in the row order of ``meta``."""
    segments, rr_s, beat_meta = store.read_beats()
    position = {
        key: i
        for i, key in enumerate(
            zip(beat_meta["recording_id"], beat_meta["window_index"], strict=True)
        )
    }
    rows = [position[key] for key in zip(meta["recording_id"], meta["window_index"], strict=True)]
    width = next((s.shape[1] for s in segments if len(s)), segment_samples)
    if width != segment_samples:
        raise ValueError(
            f"{store.path}: stored beat segments have {width} samples, the model expects "
            f"{segment_samples} ([ingest.beats] changed since the store was written: re-ingest)"
        )
    return beat_input(
        [segments[i] for i in rows], [rr_s[i] for i in rows], normalisation, max_beats, width
    )


def _with_recording_columns(
    meta: pd.DataFrame, store: WindowStore, catalog: pd.DataFrame | None
) -> pd.DataFrame:
    # The windows table carries no date (it is personal data, kept to the manifest in each
    # file's footer); the catalog has it, one row per recording (the caller's, when it has
    # one: a flow's batch report).
    if "date" not in meta.columns:
        catalog = store.catalog() if catalog is None else catalog
        dates = catalog.set_index("recording_id")["date"]
        meta = meta.assign(date=dates.reindex(meta["recording_id"]).to_numpy())
    return add_holdout_columns(meta)
