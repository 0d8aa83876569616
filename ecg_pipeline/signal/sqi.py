"""Per-window signal-quality indices: NeuroKit2's ``ecg_quality``, heart rate, bad spans.

Two of NeuroKit2's methods, given the R peaks the pipeline already found (so nothing is
detected twice): ``templatematch`` (Orphanidou et al., 2015: each beat's correlation with the
recording's average beat; absolute, 1 is a beat shaped like all the others) and ``averageQRS``
(each beat's distance from the average QRS, rescaled to 0-1 within the recording; relative,
so it ranks windows of one recording but does not compare recordings). ``zhao2018`` is not
used: in NeuroKit2 0.2.12 it calls ``np.trapz``, which numpy 2 removed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

QUALITY_METHODS = ("templatematch", "averageQRS")


def window_quality(
    windows: np.ndarray,
    fs_hz: float,
    peak_s: Sequence[np.ndarray],
    methods: Sequence[str] = QUALITY_METHODS,
) -> dict[str, np.ndarray]:
    """Mean NeuroKit2 quality of each window, by ``templatematch`` and ``averageQRS``.

    The windows are laid end to end and each method runs once over them (the average beat is
    the recording's, not one window's); a window's score is the mean of the per-sample index
    over it. A window without a beat scores 0; a method NeuroKit2 cannot run (fewer than two
    beats in the recording) gives NaN for every window.

    Parameters
    ----------
    windows : np.ndarray
        (n_windows, window_samples) filtered ECG at ``fs_hz``.
    fs_hz : float
        Their sampling rate.
    peak_s : sequence of np.ndarray
        Each window's R peaks, in seconds from the window's start.
    methods : sequence of str
        Which of :data:`QUALITY_METHODS` to run (NeuroKit2 costs about 3.5 ms per beat and
        method, pandas-bound; a method left out gives NaN).

    Returns
    -------
    dict of str to np.ndarray
        ``{"templatematch": (n_windows,), "averageQRS": (n_windows,)}``, each in [0, 1] or NaN.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 100.0
    >>> t = np.arange(300) / fs
    >>> w = np.stack([np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)] * 4)
    >>> q = window_quality(w, fs, [np.array([0.4, 1.2, 2.0, 2.8])] * 4)
    >>> bool(q["templatematch"].min() > 0.9)
    True
    """
    import neurokit2 as nk  # heavy import, paid only by those who assess quality

    w = np.asarray(windows, dtype=np.float64)
    n, length = w.shape
    flat = w.reshape(-1)
    peaks = np.concatenate(
        [
            np.round(np.asarray(p, dtype=np.float64) * fs_hz).astype(np.int64) + k * length
            for k, p in enumerate(peak_s)
        ]
        or [np.empty(0, np.int64)]
    )
    peaks = peaks[(peaks >= 0) & (peaks < flat.size)]
    has_beat = np.array([len(p) > 0 for p in peak_s], dtype=bool)
    out = {}
    for method in QUALITY_METHODS:
        scores = np.full(n, np.nan)
        if method in methods and len(peaks) >= 2:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    index = nk.ecg_quality(
                        flat, rpeaks=peaks, sampling_rate=int(round(fs_hz)), method=method
                    )
                scores = np.nan_to_num(np.asarray(index, dtype=np.float64)).reshape(n, length)
                scores = np.clip(scores.mean(axis=1), 0.0, 1.0)
                scores[~has_beat] = 0.0
            except (ValueError, ZeroDivisionError, IndexError):
                # NeuroKit2 fails on too few or too irregular beats: no score, not a crash.
                pass
        out[method] = scores
    return out


def heart_rate_bpm(peak_s: Sequence[np.ndarray]) -> np.ndarray:
    """Each window's heart rate from the median interval between its R peaks (NaN: fewer
    than two peaks)."""
    out = np.full(len(peak_s), np.nan)
    for k, p in enumerate(peak_s):
        rr = np.diff(np.asarray(p, dtype=np.float64))
        if len(rr) and np.median(rr) > 0:
            out[k] = 60.0 / float(np.median(rr))
    return out


def clipped_windows(
    x: np.ndarray,
    fs_hz: float,
    window_s: float,
    hop_s: float,
    *,
    min_fraction: float = 0.01,
) -> np.ndarray:
    """Windows of the raw signal where the recording's own minimum or maximum is held.

    An amplifier or converter at its limit repeats one value: a real ECG touches the
    recording's extreme in one or two samples (the tallest R peak), a clipped one in a plateau.
    A window is clipped when more than ``min_fraction`` of its samples (and at least 3) equal
    the recording's minimum or maximum. Railed windows (mostly at the extremes) are clipped too.

    Parameters
    ----------
    x : np.ndarray
        Raw 1-D signal at ``fs_hz``.
    fs_hz : float
        Its sampling rate.
    window_s, hop_s : float
        Window length and step, in seconds.
    min_fraction : float
        Share of a window's samples at the extremes above which it is clipped.

    Returns
    -------
    np.ndarray
        Boolean mask, one per whole window.
    """
    x = np.asarray(x)
    length = max(int(round(window_s * fs_hz)), 1)
    hop = max(int(round(hop_s * fs_hz)), 1)
    if len(x) < length:
        return np.zeros(0, dtype=bool)
    at_limit = (x == x.min()) | (x == x.max())
    counts = np.concatenate([[0], np.cumsum(at_limit)])
    starts = np.arange(0, len(x) - length + 1, hop)
    held = counts[starts + length] - counts[starts]
    return (held > min_fraction * length) & (held >= 3)


def raw_window_kinds(
    x: np.ndarray,
    fs_hz: float,
    window_s: float,
    hop_s: float,
    *,
    min_std: float,
    max_extreme_fraction: float,
) -> dict[str, np.ndarray]:
    """Which whole windows of the raw signal are flat, railed or clipped (each one kind only).

    The same tests as the flat-lead check of ingest (:func:`~ecg_pipeline.signal.quality.
    flat_raw_windows`), told apart: *flat* when the standard deviation is below ``min_std``,
    *railed* when more than ``max_extreme_fraction`` of the samples sit at the window's own
    extremes, *clipped* (:func:`clipped_windows`) when the recording's limit is held for a
    while but not most of the window.

    Parameters
    ----------
    x : np.ndarray
        Raw 1-D signal at ``fs_hz``, in the unit of ``min_std``.
    fs_hz : float
        Its sampling rate.
    window_s, hop_s : float
        Window length and step, in seconds.
    min_std : float
        Flat threshold, same unit as ``x``.
    max_extreme_fraction : float
        Railed threshold, a fraction of the window's samples.

    Returns
    -------
    dict of str to np.ndarray
        ``{"flat", "railed", "clipped"}``: boolean masks, one entry per whole window.

    Examples
    --------
    >>> x = np.r_[np.zeros(300), np.sin(np.arange(300)), np.sign(np.sin(np.arange(300)))]
    >>> {k: v.tolist() for k, v in raw_window_kinds(
    ...     x, 100.0, 3.0, 3.0, min_std=0.01, max_extreme_fraction=0.5).items()}
    {'flat': [True, False, False], 'railed': [False, False, True], 'clipped': [False, False, False]}
    """
    x = np.asarray(x)
    length = max(int(round(window_s * fs_hz)), 1)
    hop = max(int(round(hop_s * fs_hz)), 1)
    n = (len(x) - length) // hop + 1 if len(x) >= length else 0
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return {"flat": empty, "railed": empty, "clipped": empty}
    view = np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n]
    flat = view.std(axis=1) < min_std
    lo, hi = view.min(axis=1), view.max(axis=1)
    extreme = (view == lo[:, None]).sum(axis=1) + (view == hi[:, None]).sum(axis=1)
    railed = ~flat & (extreme > max_extreme_fraction * length)
    clipped = clipped_windows(x, fs_hz, window_s, hop_s)[:n] & ~flat & ~railed
    return {"flat": flat, "railed": railed, "clipped": clipped}


def spans_s(mask: np.ndarray, start_s: np.ndarray, window_s: float) -> list[tuple[float, float]]:
    """Merge the flagged windows of ``mask`` into (start_s, end_s) spans.

    Parameters
    ----------
    mask : np.ndarray
        Boolean, one per window.
    start_s : np.ndarray
        Each window's start, seconds.
    window_s : float
        Window length, seconds.

    Examples
    --------
    >>> spans_s(np.array([True, True, False, True]), np.array([0.0, 3.0, 6.0, 9.0]), 3.0)
    [(0.0, 6.0), (9.0, 12.0)]
    """
    out: list[tuple[float, float]] = []
    for flagged, start in zip(np.asarray(mask, bool), np.asarray(start_s, float), strict=True):
        if not flagged:
            continue
        end = start + window_s
        if out and start <= out[-1][1] + 1e-9:
            out[-1] = (out[-1][0], float(max(out[-1][1], end)))
        else:
            out.append((float(start), float(end)))
    return out
