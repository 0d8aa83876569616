"""Signal quality: flat or disconnected leads."""

from __future__ import annotations

import numpy as np

# A channel's declared unit, as AcqKnowledge and WFDB spell them, to millivolts: thresholds
# are set in mV, so an ECG stored in volts or microvolts is judged like one in millivolts.
_MILLIVOLTS_PER_UNIT = {
    "v": 1000.0,
    "volt": 1000.0,
    "volts": 1000.0,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "µv": 0.001,
    "μv": 0.001,  # Greek mu, as some files spell it
    "uv": 0.001,
    "microvolt": 0.001,
    "microvolts": 0.001,
}


def millivolts_per_unit(units: str | None) -> float | None:
    """How many millivolts one of ``units`` is (``"Volts"``: 1000), or None for a unit that is
    not a voltage (ADC counts, an empty name): thresholds then apply in the channel's own units.
    """
    return _MILLIVOLTS_PER_UNIT.get((units or "").strip().lower())


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
    x: np.ndarray,
    fs_hz: float,
    window_s: float,
    hop_s: float,
    n_windows: int,
    min_std: float,
    max_extreme_fraction: float = 0.5,
) -> np.ndarray:
    """Flat or saturated windows, measured on the raw signal before any filter.

    A disconnected lead sits at a rail or at zero, or flips between the rails. Measured after
    the high-pass, the steps into and out of such a stretch ring for seconds and hide it, so the
    test runs on the raw samples: a window is unusable when its standard deviation is below
    ``min_std`` or when more than ``max_extreme_fraction`` of its samples sit exactly at the
    window's minimum or maximum (a real ECG touches its extremes in a handful of samples; a
    clipped or railed lead in most of them). One window at a time, so no copy is made.

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
    max_extreme_fraction : float
        Fraction of samples at the window's extremes above which it counts as saturated.

    Returns
    -------
    np.ndarray
        Boolean mask of shape (n_windows,), True for flat or saturated windows.
    """
    length = max(int(round(window_s * fs_hz)), 1)
    hop = hop_s * fs_hz
    if (
        n_windows
        and abs(hop - round(hop)) < 1e-9
        and (n_windows - 1) * round(hop) + length <= len(x)
    ):
        # Whole-sample windows: one strided view, reductions in C, no copy of the signal.
        view = np.lib.stride_tricks.sliding_window_view(x, length)[:: int(round(hop))][:n_windows]
        mean = view.mean(axis=1)
        # E[x^2] - E[x]^2 from dot products: no (n, length) float temporary.
        var = np.einsum("ij,ij->i", view, view) / length - mean**2
        lo, hi = view.min(axis=1), view.max(axis=1)
        at_extremes = (view == lo[:, None]).sum(axis=1) + (view == hi[:, None]).sum(axis=1)
        return (np.sqrt(np.maximum(var, 0.0)) < min_std) | (
            at_extremes > max_extreme_fraction * length
        )
    out = np.zeros(n_windows, dtype=bool)
    for k in range(n_windows):
        start = int(round(k * hop_s * fs_hz))
        chunk = x[start : start + length]
        if chunk.size == 0 or chunk.std() < min_std:
            out[k] = True
            continue
        at_extremes = np.count_nonzero(chunk == chunk.min()) + np.count_nonzero(
            chunk == chunk.max()
        )
        out[k] = at_extremes > max_extreme_fraction * chunk.size
    return out
