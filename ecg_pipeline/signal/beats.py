"""Heartbeats: R peaks, RR intervals and fixed-length beat segments (ECG-SL's input).

Pure functions over numpy arrays. R peaks are found at the native rate on the filtered signal
(:func:`detect_r_peaks`, NeuroKit2's detectors); everything after works on peak times in seconds,
so the segment rate and the window rate are free to differ from the native one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

# The detectors compared over ECG-ID's 310 annotated records (bench/rpeaks.py, README).
R_PEAK_METHODS = ("neurokit", "pantompkins1985", "elgendi2010", "kalidas2017", "promac")

# Why a window's beats are not to be trusted (stored per window; "" means none).
FLAG_TOO_FEW_BEATS = "too_few_beats"
FLAG_IMPLAUSIBLE_RR = "implausible_rr"


def qrs_polarity(ecg: np.ndarray) -> int:
    """+1 when the QRS complexes point up, -1 when the lead is inverted (they point down).

    Decided by the larger of the signal's extreme deflections from its median (the 99.9th
    percentile above it against the 0.1th below it): QRS complexes are the largest,
    steepest deflections of an ECG. The detectors assume upright R waves; on an inverted lead
    they mark T waves or noise.
    """
    x = np.asarray(ecg, dtype=np.float64)
    if x.size == 0:
        return 1
    centre = np.median(x[::4])  # a strided view is enough for the centre, and 4x cheaper
    up, down = np.percentile(x, 99.9) - centre, centre - np.percentile(x, 0.1)
    return -1 if down > 1.2 * up else 1


def detect_r_peaks(
    ecg: np.ndarray,
    fs_hz: float,
    *,
    method: str = "neurokit",
    lowpass_hz: float | None = None,
) -> np.ndarray:
    """R-peak sample positions in ``ecg`` (filtered, at its native rate).

    An inverted lead (:func:`qrs_polarity`) is flipped for the detector, so the positions are
    those of the QRS complexes' main deflection whichever way it points. With ``lowpass_hz``
    the detector reads a low-passed copy (Butterworth order 2, zero phase): NeuroKit2's own
    detector works on the signal's slope, which a raw lead's high-frequency noise swamps (F1
    88.7 % -> 98.8 % against ECG-ID's annotations at 40 Hz, README "R peaks"). The positions
    are samples of ``ecg`` either way (a zero-phase filter moves no peak).

    Parameters
    ----------
    ecg : np.ndarray
        1-D filtered ECG (high-passed, notched), in any unit.
    fs_hz : float
        Its sampling rate.
    method : str
        One of :data:`R_PEAK_METHODS` (NeuroKit2's ``ecg_peaks`` methods).

    Returns
    -------
    np.ndarray
        (n_peaks,) int64 sample indices, increasing; empty when no beat is found (a flat line,
        a channel holding no heartbeat, a segment shorter than the detector's window).
    """
    if method not in R_PEAK_METHODS:
        raise ValueError(f"unknown R-peak method {method!r}; valid: {', '.join(R_PEAK_METHODS)}")
    x = np.asarray(ecg, dtype=np.float64)
    if x.size < int(2 * fs_hz) or not np.isfinite(x).all() or np.ptp(x) == 0:
        return np.empty(0, np.int64)
    import neurokit2 as nk  # lazy: a second's import, needed only when beats are detected

    if lowpass_hz is not None and lowpass_hz < fs_hz / 2:
        from scipy import signal as sps

        x = sps.sosfiltfilt(sps.butter(2, lowpass_hz, "lowpass", fs=fs_hz, output="sos"), x)
    x = x * qrs_polarity(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns on short or odd signals; we check
        try:
            # ecg_findpeaks, not ecg_peaks: the same detector without the per-sample DataFrame
            # ecg_peaks builds around it (a third of the time, most of the memory).
            info = nk.ecg_findpeaks(x, sampling_rate=fs_hz, method=method)
        except (ValueError, IndexError, ZeroDivisionError):  # detectors fail on beatless input
            return np.empty(0, np.int64)
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    peaks = np.unique(peaks[(peaks >= 0) & (peaks < x.size)])
    return peaks


def rr_intervals_s(peak_s: np.ndarray) -> np.ndarray:
    """The interval before each peak, in seconds; NaN for the first (nothing precedes it).

    Parameters
    ----------
    peak_s : np.ndarray
        (n,) increasing peak times in seconds.
    """
    peak_s = np.asarray(peak_s, dtype=np.float64)
    out = np.full(peak_s.shape, np.nan)
    out[1:] = np.diff(peak_s)
    return out


def cut_segments(
    ecg: np.ndarray, fs_hz: float, peak_s: np.ndarray, *, before_s: float, after_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """One fixed-length segment of ``ecg`` around each peak.

    Parameters
    ----------
    ecg : np.ndarray
        1-D signal at ``fs_hz`` (the segment rate).
    fs_hz : float
        Its rate.
    peak_s : np.ndarray
        (n,) peak times in seconds from ``ecg``'s first sample.
    before_s, after_s : float
        The segment spans ``[peak - before_s, peak + after_s)``.

    Returns
    -------
    segments : np.ndarray
        (n_kept, L) float32 with ``L = round(before_s*fs) + round(after_s*fs)``.
    kept : np.ndarray
        (n,) bool: peaks whose segment lies wholly inside ``ecg`` (edge beats are not padded).
    """
    n_before, n_after = round(before_s * fs_hz), round(after_s * fs_hz)
    centre = np.rint(np.asarray(peak_s, dtype=np.float64) * fs_hz).astype(np.int64)
    kept = (centre - n_before >= 0) & (centre + n_after <= len(ecg))
    starts = centre[kept] - n_before
    offsets = np.arange(n_before + n_after)
    segments = np.asarray(ecg, dtype=np.float32)[starts[:, None] + offsets[None, :]]
    return segments.reshape(len(starts), n_before + n_after), kept


def template_correlation(segments: np.ndarray) -> np.ndarray:
    """Each beat's Pearson correlation with the median beat of its recording.

    Heartbeats of one lead resemble each other (a real ECG's median is typically above 0.8);
    peaks a detector finds in noise or in a channel holding no ECG do not (near 0). Beats cut at
    one fixed offset from their peak line up, so no alignment is needed.

    Parameters
    ----------
    segments : np.ndarray
        (n, L) beat segments.

    Returns
    -------
    np.ndarray
        (n,) correlations in [-1, 1]; empty for no beats, 0 for a flat segment.
    """
    s = np.asarray(segments, dtype=np.float64)
    if len(s) == 0:
        return np.empty(0)
    centred = s - s.mean(axis=1, keepdims=True)
    template = np.median(s, axis=0)
    template = template - template.mean()
    norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(template)
    return np.divide(centred @ template, norms, out=np.zeros(len(s)), where=norms > 0)


@dataclass(frozen=True)
class WindowBeats:
    """The beats whose R peak falls inside each window.

    Attributes
    ----------
    peak_s : list of np.ndarray
        Per window, (k,) float32 peak times from the window's start, in seconds.
    rr_s : list of np.ndarray
        Per window, (k,) float32 interval before each peak (NaN when none precedes it).
    segments : list of np.ndarray
        Per window, (k, L) float32 beat segments at the segment rate.
    flags : np.ndarray
        (n_windows,) str: "" or one of the ``FLAG_*`` reasons.
    """

    peak_s: list[np.ndarray]
    rr_s: list[np.ndarray]
    segments: list[np.ndarray]
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.flags)


def beats_per_window(
    peak_s: np.ndarray,
    rr_s: np.ndarray,
    segments: np.ndarray,
    window_start_s: np.ndarray,
    window_s: float,
    *,
    min_beats: int,
    rr_min_s: float,
    rr_max_s: float,
) -> WindowBeats:
    """Assign beats to the windows their R peak falls in, and flag implausible windows.

    Parameters
    ----------
    peak_s, rr_s : np.ndarray
        (n,) times and preceding intervals of the beats that have a segment, in seconds.
    segments : np.ndarray
        (n, L) their segments.
    window_start_s : np.ndarray
        (n_windows,) window starts on the same clock.
    window_s : float
        Window length.
    min_beats : int
        Fewer beats than this flags a window ``too_few_beats``.
    rr_min_s, rr_max_s : float
        An interval outside this physiological range flags ``implausible_rr`` (a missed or a
        false detection, or no ECG at all).
    """
    peak_s = np.asarray(peak_s, dtype=np.float64)
    lo = np.searchsorted(peak_s, window_start_s, side="left")
    hi = np.searchsorted(peak_s, np.asarray(window_start_s) + window_s, side="left")
    out_peaks, out_rr, out_segments, flags = [], [], [], []
    for start, a, b in zip(window_start_s, lo, hi, strict=True):
        rr = rr_s[a:b].astype(np.float32)
        out_peaks.append((peak_s[a:b] - start).astype(np.float32))
        out_rr.append(rr)
        out_segments.append(segments[a:b])
        known = rr[np.isfinite(rr)]
        if b - a < min_beats:
            flags.append(FLAG_TOO_FEW_BEATS)
        elif ((known < rr_min_s) | (known > rr_max_s)).any():
            flags.append(FLAG_IMPLAUSIBLE_RR)
        else:
            flags.append("")
    return WindowBeats(out_peaks, out_rr, out_segments, np.asarray(flags, dtype=object))


def pad_beats(
    segments: list[np.ndarray], rr_s: list[np.ndarray], max_beats: int, segment_samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variable beat counts as fixed arrays with a mask (the first ``max_beats`` beats kept).

    Returns
    -------
    beats : np.ndarray
        (n_windows, max_beats, segment_samples) float32, zero where padded.
    rr : np.ndarray
        (n_windows, max_beats) float32 seconds; 0 where padded or unknown.
    mask : np.ndarray
        (n_windows, max_beats) bool, True for a real beat.
    """
    n = len(segments)
    beats = np.zeros((n, max_beats, segment_samples), np.float32)
    rr = np.zeros((n, max_beats), np.float32)
    mask = np.zeros((n, max_beats), bool)
    for i, (seg, r) in enumerate(zip(segments, rr_s, strict=True)):
        k = min(len(seg), max_beats)
        beats[i, :k] = seg[:k]
        rr[i, :k] = np.nan_to_num(r[:k], nan=0.0)
        mask[i, :k] = True
    return beats, rr, mask


def normalise_beats(beats: np.ndarray, mask: np.ndarray, normalisation: str) -> np.ndarray:
    """Scale each window's beats together (so beats keep their relative amplitude).

    Parameters
    ----------
    beats : np.ndarray
        (n_windows, K, L) float32.
    mask : np.ndarray
        (n_windows, K) bool; padded beats stay zero and do not set the scale.
    normalisation : {"window", "window_zscore", "recording", "none"}
        As ``[store] normalisation``; "recording" is applied per window here (beat segments are
        cut around peaks, so a recording-wide range adds nothing but one artefact's reach).
    """
    if normalisation == "none":
        return np.asarray(beats, dtype=np.float32)
    b = np.asarray(beats, dtype=np.float64)
    m = np.broadcast_to(np.asarray(mask)[:, :, None], b.shape)
    count = m.sum(axis=(1, 2), keepdims=True)
    if normalisation == "window_zscore":
        mean = np.where(m, b, 0).sum(axis=(1, 2), keepdims=True) / np.maximum(count, 1)
        centred = np.where(m, b - mean, 0)
        sd = np.sqrt((centred**2).sum(axis=(1, 2), keepdims=True) / np.maximum(count, 1))
        out = np.divide(centred, sd, out=np.zeros_like(b), where=sd > 0)
    else:  # min-max to [0, 1] over the window's real beats
        lo = np.where(m, b, np.inf).min(axis=(1, 2), keepdims=True)
        hi = np.where(m, b, -np.inf).max(axis=(1, 2), keepdims=True)
        span = np.where(np.isfinite(hi - lo), hi - lo, 0)
        out = np.divide(b - lo, span, out=np.zeros_like(b), where=span > 0)
        out = np.where(m, out, 0)
    return out.astype(np.float32)
