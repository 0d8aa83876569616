"""One recording's signal quality, measured during ingest on the signal already in memory.

Two decisions and one account:

- :func:`check_heartbeat` refuses a channel named ECG that holds no heartbeat (mains hum,
  broadband noise, a detached lead) before any window is cut: an R-peak detector finds peaks
  in anything, so the test is the QRS band's rhythm (:mod:`ecg_pipeline.signal.heartbeat`).
- :func:`assess_recording` grades the windows (NeuroKit2 ``templatematch`` and ``averageQRS``,
  heart rate and its plausibility, flat / railed / clipped spans, windows kept and why others
  were dropped) and refuses a recording below ``[ingest.quality] min_recording_score`` when
  that threshold is set (off by default; the score is reported either way).

The account is a small JSON-able dict stored in the recording's Parquet footer beside its
lineage (one file, one ``[ingest]`` hash: it cannot go stale apart from the windows it
describes); :mod:`ecg_pipeline.tracking.quality_report` reads it back from the catalog.
"""

from __future__ import annotations

import numpy as np

from ecg_pipeline.config import IngestSettings
from ecg_pipeline.errors import LowQualityError, NoHeartbeatError
from ecg_pipeline.io.recording import RawRecording
from ecg_pipeline.signal.heartbeat import HeartbeatEvidence, heartbeat_evidence
from ecg_pipeline.signal.quality import millivolts_per_unit
from ecg_pipeline.signal.sqi import heart_rate_bpm, raw_window_kinds, spans_s, window_quality
from ecg_pipeline.signal.windows import Windows

# A channel with more of its power at 50/60 Hz than this is described as mains hum.
_MAINS_DOMINANT = 0.3


def recording_evidence(raw: RawRecording) -> HeartbeatEvidence | None:
    """:func:`heartbeat_evidence` over a recording's segments (those of its first rate)."""
    segments = [s for s in raw.segments if len(s.samples)]
    if not segments:
        return None
    fs_hz = segments[0].fs_hz
    x = np.concatenate([s.samples for s in segments if s.fs_hz == fs_hz])
    return heartbeat_evidence(x, fs_hz)


def check_heartbeat(raw: RawRecording, settings: IngestSettings) -> HeartbeatEvidence | None:
    """Refuse a channel that holds no heartbeat at all.

    A flat channel is left to the flat-lead test and a recording shorter than one window to
    the length test (their own reasons: a 2-s ECG holds too few beats for a rhythm); the test
    is off when ``[ingest.quality] min_heartbeat_periodicity`` is 0.

    Raises
    ------
    NoHeartbeatError
        The QRS band's energy does not recur at a heart's pace; the reason says what was
        measured and what the channel seems to hold instead.
    """
    q, b = settings.quality, settings.beats
    if q.min_heartbeat_periodicity <= 0 or raw.duration_s < settings.windows.window_s:
        return None
    to_mv = millivolts_per_unit(raw.units) or 1.0
    if all(np.std(s.samples) * to_mv < q.min_window_std for s in raw.segments if len(s.samples)):
        return None
    evidence = recording_evidence(raw)
    if evidence is None or evidence.periodicity >= q.min_heartbeat_periodicity:
        return evidence
    holds = (
        f"mostly mains hum ({evidence.mains_fraction:.0%} of its power within 1 Hz of 50/60 Hz)"
        if evidence.mains_fraction > _MAINS_DOMINANT
        else "broadband noise or a detached lead"
    )
    raise NoHeartbeatError(
        None,
        f"no heartbeat in channel {raw.channel_name!r}: its QRS-band (5-25 Hz) energy does not "
        f"recur at any heart rate of {60 / b.rr_max_s:.0f}-{60 / b.rr_min_s:.0f} bpm "
        f"(periodicity {evidence.periodicity:.2f} over {evidence.n_blocks} block(s), below "
        f"[ingest.quality] min_heartbeat_periodicity {q.min_heartbeat_periodicity:g}; real ECG "
        f"scores 0.27 and above); it holds {holds}. Check the lead, or choose another channel "
        "([ingest.channel])",
    )


def _raw_spans(raw: RawRecording, settings: IngestSettings) -> tuple[dict, dict]:
    """Flat, railed and clipped spans of the raw signal, in seconds from its start, and the
    number of windows of each kind."""
    q, win = settings.quality, settings.windows
    to_mv = millivolts_per_unit(raw.units) or 1.0
    out: dict[str, list] = {"flat": [], "railed": [], "clipped": []}
    counts = dict.fromkeys(out, 0)
    for seg in raw.segments:
        kinds = raw_window_kinds(
            seg.samples,
            seg.fs_hz,
            win.window_s,
            win.effective_hop_s,
            min_std=q.min_window_std / to_mv,
            max_extreme_fraction=q.max_extreme_fraction,
        )
        hop = max(int(round(win.effective_hop_s * seg.fs_hz)), 1)
        starts = seg.start_s + np.arange(len(kinds["flat"])) * hop / seg.fs_hz
        for name, mask in kinds.items():
            counts[name] += int(mask.sum())
            out[name] += [
                [round(a, 2), round(b, 2)] for a, b in spans_s(mask, starts, win.window_s)
            ]
    return out, counts


def assess_recording(raw: RawRecording, windows: Windows, settings: IngestSettings) -> dict:
    """The quality account of one recording (see the module's docstring for its keys' use).

    Raises
    ------
    LowQualityError
        ``[ingest.quality] min_recording_score`` is set and the recording scores below it.
    """
    q, b = settings.quality, settings.beats
    peak_s = windows.beats.peak_s if windows.beats is not None else [np.empty(0)] * len(windows)
    scored = scored_windows(len(windows), q.neurokit_max_windows)
    chosen = window_quality(
        windows.samples[scored], windows.fs_hz, [peak_s[i] for i in scored], q.neurokit_methods
    )
    scores = {}
    for method, values in chosen.items():  # windows not scored stay NaN ("not scored")
        scores[method] = np.full(len(windows), np.nan)
        scores[method][scored] = values
    tm = scores["templatematch"]
    hr = heart_rate_bpm(peak_s)
    hr_lo, hr_hi = 60.0 / b.rr_max_s, 60.0 / b.rr_min_s
    flags = windows.beats.flags if windows.beats is not None else np.full(len(windows), "", object)
    # NaN (NeuroKit2 could not score: too few beats) is never graded good.
    good = (np.nan_to_num(tm, nan=-1.0) >= q.min_window_score) & (flags == "")
    spans, counts = _raw_spans(raw, settings)
    total = len(windows) + windows.n_flat_dropped
    hr_median = float(np.nanmedian(hr)) if np.isfinite(hr).any() else float("nan")
    evidence = recording_evidence(raw)
    # The median window, so that one stretch of motion does not decide; None: unscored.
    score = _median(tm)
    account = {
        "score": score,
        "templatematch": score,
        "averageQRS": _median(scores["averageQRS"]),
        "heart_rate_bpm": None if np.isnan(hr_median) else round(hr_median, 1),
        "heart_rate_plausible": bool(hr_lo <= hr_median <= hr_hi),
        "heartbeat_periodicity": None if evidence is None else round(evidence.periodicity, 3),
        "mains_fraction": None if evidence is None else round(evidence.mains_fraction, 3),
        "windows_total": int(total),
        "windows_kept": len(windows),
        "kept_fraction": round(len(windows) / total, 3) if total else 0.0,
        # Windows are dropped when flat or railed on the raw signal (segments_to_windows
        # counts them together); the split is measured here on the same raw windows. Clipped
        # windows are kept and only reported.
        "dropped": int(windows.n_flat_dropped),
        "dropped_why": {"flat": counts["flat"], "railed": counts["railed"]},
        "clipped_windows": counts["clipped"],
        "flagged": {str(f): int((flags == f).sum()) for f in sorted(set(flags.tolist()) - {""})},
        "good_windows": int(good.sum()),
        "scored_windows": len(scored) if q.neurokit_methods else 0,
        "spans_s": spans,
        "min_window_score": q.min_window_score,
        "min_recording_score": q.min_recording_score,
        "below_min_recording_score": bool(
            q.min_recording_score is not None and (score or 0.0) < q.min_recording_score
        ),
        "windows": {
            "index": [int(i) for i in windows.window_index],
            "start_s": [round(float(s), 2) for s in windows.start_s],
            "templatematch": _rounded(scores["templatematch"]),
            "averageQRS": _rounded(scores["averageQRS"]),
            "heart_rate_bpm": _rounded(hr, 1),
            "good": [bool(g) for g in good],
        },
    }
    if account["below_min_recording_score"]:
        raise LowQualityError(
            None,
            f"signal quality {score or 0.0:.2f} (median NeuroKit2 templatematch over "
            f"{len(windows)} windows) is below [ingest.quality] min_recording_score "
            f"{q.min_recording_score:g}; {int(good.sum())} window(s) graded good. Lower or "
            "unset the threshold to keep it",
        )
    return account


def scored_windows(n_windows: int, max_windows: int) -> np.ndarray:
    """The indices of at most ``max_windows`` windows spread evenly over ``n_windows`` (all of
    them for 0), first and last included.

    Examples
    --------
    >>> scored_windows(60, 4).tolist()
    [0, 20, 39, 59]
    >>> scored_windows(3, 12).tolist()
    [0, 1, 2]
    """
    if max_windows <= 0 or n_windows <= max_windows:
        return np.arange(n_windows)
    return np.unique(np.round(np.linspace(0, n_windows - 1, max_windows)).astype(int))


def _median(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return round(float(np.nanmedian(values)), 3) if np.isfinite(values).any() else None


def _rounded(values: np.ndarray, digits: int = 3) -> list:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]
