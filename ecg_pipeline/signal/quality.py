"""Signal quality: flat or disconnected leads."""

from __future__ import annotations

import numpy as np


def flat_window_mask(windows: np.ndarray, min_std: float) -> np.ndarray:
    """Which windows carry no ECG: standard deviation below ``min_std``.

    Parameters
    ----------
    windows : np.ndarray
        Shape (n_windows, window_samples), in physical units.
    min_std : float
        Threshold in the same units (0.005 mV by default for BIOPAC ECG).

    Returns
    -------
    np.ndarray
        Boolean mask of shape (n_windows,), True for flat windows.
    """
    w = np.asarray(windows)
    if w.ndim != 2:
        raise ValueError(f"expected (n_windows, window_samples), got shape {w.shape}")
    return w.std(axis=1) < min_std


def flat_raw_windows(
    x: np.ndarray, fs_hz: float, window_s: float, hop_s: float, n_windows: int, min_std: float
) -> np.ndarray:
    """Flatness of each window measured on the raw signal, before any filter.

    A disconnected lead sits at a rail or at zero. Measured after the high-pass, the steps into
    and out of such a stretch ring for seconds and hide it, so the test runs on the raw samples.
    One window at a time, so no copy of the signal is made.

    Parameters
    ----------
    x : np.ndarray
        Raw 1-D signal at ``fs_hz``, physical units.
    fs_hz : float
        Its sampling rate.
    window_s, hop_s : float
        Window length and step, as used for cutting the filtered signal.
    n_windows : int
        Number of windows to test (those cut from the filtered signal).
    min_std : float
        Threshold in the signal's units.

    Returns
    -------
    np.ndarray
        Boolean mask of shape (n_windows,), True for flat windows.
    """
    length = max(int(round(window_s * fs_hz)), 1)
    out = np.zeros(n_windows, dtype=bool)
    for k in range(n_windows):
        start = int(round(k * hop_s * fs_hz))
        chunk = x[start : start + length]
        out[k] = chunk.size == 0 or chunk.std() < min_std
    return out
