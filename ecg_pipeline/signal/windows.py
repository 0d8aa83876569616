"""Cutting signals into fixed-length windows and scaling them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .beats import WindowBeats


@dataclass(frozen=True)
class Windows:
    """Filtered, resampled windows of one recording, in physical units.

    Attributes
    ----------
    samples : np.ndarray
        (n_windows, window_samples) float32.
    start_s : np.ndarray
        (n_windows,) start of each window from the start of the recording.
    window_index : np.ndarray
        (n_windows,) position among all whole windows of the recording, flat ones included, so a
        dropped window leaves a gap in the numbering.
    fs_hz : float
        The target rate.
    n_flat_dropped : int
        Windows dropped as flat (disconnected lead).
    warnings : list of str
        Things a person should know (a notch skipped, a segment too short to use).
    beats : WindowBeats or None
        The R peaks, RR intervals and beat segments of each window (None: not detected).
    beat_fs_hz : float or None
        The beat segments' rate.
    quality : dict or None
        The quality account ingest measured (None: not measured, e.g. in prediction).
    """

    samples: np.ndarray
    start_s: np.ndarray
    window_index: np.ndarray
    fs_hz: float
    n_flat_dropped: int = 0
    warnings: list[str] = field(default_factory=list)
    beats: WindowBeats | None = None
    beat_fs_hz: float | None = None
    # The recording's quality account (ecg_pipeline.ingest.quality), stored in its footer.
    quality: dict | None = None

    def __len__(self) -> int:
        return len(self.samples)


def window_count(n_samples: int, window_samples: int, hop_samples: int) -> int:
    """How many whole windows fit in ``n_samples`` (a partial window at the end is dropped)."""
    if window_samples <= 0 or hop_samples <= 0:
        raise ValueError("window and hop lengths must be positive")
    if n_samples < window_samples:
        return 0
    return (n_samples - window_samples) // hop_samples + 1


def sliding_windows(x: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Whole windows of ``x`` as rows, ``hop_samples`` apart (a read-only view, no copy).

    Parameters
    ----------
    x : np.ndarray
        1-D signal.
    window_samples : int
        Samples per window (300 for 3 s at 100 Hz).
    hop_samples : int
        Step between window starts; equal to ``window_samples`` for no overlap.

    Returns
    -------
    np.ndarray
        Shape (n_windows, window_samples); n_windows may be 0.
    """
    x = np.asarray(x)
    n = window_count(len(x), window_samples, hop_samples)
    if n == 0:
        return np.empty((0, window_samples), dtype=x.dtype)
    view = np.lib.stride_tricks.sliding_window_view(x, window_samples)
    return view[: (n - 1) * hop_samples + 1 : hop_samples]


def minmax_normalise(windows: np.ndarray, *, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """Scale to [0, 1] along ``axis`` (the paper: each window on its own).

    A constant stretch maps to zeros rather than dividing by zero.

    Parameters
    ----------
    windows : np.ndarray
        Any shape; typically (n_windows, window_samples).
    axis : int or tuple of int
        Axes over which min and max are taken: ``-1`` per window, ``None``-like tuples of all axes
        for one scale over a whole recording.

    Returns
    -------
    np.ndarray
        float32 array of the same shape.
    """
    w = np.asarray(windows, dtype=np.float32)
    lo = w.min(axis=axis, keepdims=True)
    span = w.max(axis=axis, keepdims=True) - lo
    return np.divide(w - lo, span, out=np.zeros_like(w), where=span > 0)


def zscore_normalise(windows: np.ndarray, *, axis: int | tuple[int, ...] = -1) -> np.ndarray:
    """Zero mean and unit standard deviation along ``axis``.

    Less swayed than min-max by one artefact spike, which sets a window's whole range but moves
    its standard deviation little. A constant stretch maps to zeros.

    Parameters
    ----------
    windows : np.ndarray
        Any shape; typically (n_windows, window_samples).
    axis : int or tuple of int
        Axes over which mean and deviation are taken (``-1``: each window on its own).

    Returns
    -------
    np.ndarray
        float32 array of the same shape.
    """
    w = np.asarray(windows, dtype=np.float32)
    centred = w - w.mean(axis=axis, keepdims=True)
    sd = centred.std(axis=axis, keepdims=True)
    return np.divide(centred, sd, out=np.zeros_like(w), where=sd > 0)


NORMALISATIONS = ("window", "recording", "window_zscore", "none")


def normalise_windows(
    windows: np.ndarray, normalisation: str, groups: np.ndarray | None = None
) -> np.ndarray:
    """Scale windows the way a model was trained on them (``[store] normalisation``).

    The one place that maps a setting to a scaling, so that training (the store's reader) and
    prediction (``ecg_pipeline.predict``) cannot drift apart.

    Parameters
    ----------
    windows : np.ndarray
        (n_windows, window_samples).
    normalisation : {"window", "recording", "window_zscore", "none"}
        Min-max to [0, 1] per window (the paper) or per recording, zero mean and unit deviation
        per window, or none.
    groups : np.ndarray, optional
        (n_windows,) recording of each window, for ``"recording"``; None: all windows are one
        recording.

    Returns
    -------
    np.ndarray
        float32, the shape of ``windows``.
    """
    if normalisation == "window":
        return minmax_normalise(windows, axis=-1)
    if normalisation == "window_zscore":
        return zscore_normalise(windows, axis=-1)
    if normalisation == "none":
        return np.asarray(windows, dtype=np.float32)
    if normalisation != "recording":
        raise ValueError(f"unknown normalisation {normalisation!r}; valid: {NORMALISATIONS}")
    w = np.asarray(windows, dtype=np.float32)
    if groups is None:
        return minmax_normalise(w, axis=tuple(range(w.ndim)))
    out = np.empty_like(w)
    groups = np.asarray(groups)
    for key in dict.fromkeys(groups.tolist()):  # first-appearance order, no sort of mixed types
        idx = np.flatnonzero(groups == key)
        out[idx] = minmax_normalise(w[idx], axis=tuple(range(w.ndim)))
    return out
