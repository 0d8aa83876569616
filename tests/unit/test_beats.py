"""Beats: R peaks against the synthetic generator's truth, segments, per-window assignment and
flags, padding with a mask, and the store's beat columns through a real ingest."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_pipeline.cohort.synthetic import draw_subject_morphology, synthesise_components
from ecg_pipeline.config import IngestSettings
from ecg_pipeline.errors import NoBeatsError
from ecg_pipeline.ingest.process import check_beats, segments_to_windows
from ecg_pipeline.io.recording import Segment
from ecg_pipeline.signal.beats import (
    FLAG_IMPLAUSIBLE_RR,
    FLAG_TOO_FEW_BEATS,
    WindowBeats,
    beats_per_window,
    cut_segments,
    detect_r_peaks,
    normalise_beats,
    pad_beats,
    rr_intervals_s,
)
from ecg_pipeline.signal.filters import design_ecg_filter, zero_phase_filter

FS = 1000.0


def _recording(condition: str, seed: int = 3, duration_s: float = 30.0):
    rng = np.random.default_rng(seed)
    return synthesise_components(draw_subject_morphology(rng), condition, duration_s, FS, rng)


def _filtered(x: np.ndarray, fs_hz: float = FS) -> np.ndarray:
    f = IngestSettings().filters
    design = design_ecg_filter(
        fs_hz,
        highpass_hz=f.highpass_hz,
        highpass_order=f.highpass_order,
        mains_hz=f.mains_hz,
        notch_quality=f.notch_quality,
    )
    return zero_phase_filter(x, design)


@pytest.mark.parametrize("condition", ["rest", "exercise", "deep_breathing"])
def test_default_detector_finds_the_synthetic_beats(condition):
    rec = _recording(condition)
    b = IngestSettings().beats
    found_s = (
        detect_r_peaks(_filtered(rec.ecg_mV), FS, method=b.method, lowpass_hz=b.detector_lowpass_hz)
        / FS
    )
    truth_s = rec.r_peak_times_s[(rec.r_peak_times_s > 0.5) & (rec.r_peak_times_s < 29.5)]
    inner = found_s[(found_s > 0.5) & (found_s < 29.5)]
    nearest = np.abs(inner[:, None] - truth_s[None, :]).min(axis=1)
    # Every detection is a true beat (within 50 ms), and nearly every true beat is found.
    assert (nearest < 0.05).mean() > 0.97, f"{condition}: false detections"
    assert len(inner) >= 0.97 * len(truth_s), f"{condition}: missed beats"


def test_no_beats_in_a_flat_or_tiny_signal():
    assert detect_r_peaks(np.zeros(5000), FS).size == 0
    assert detect_r_peaks(np.ones(100), FS).size == 0  # shorter than two seconds
    with pytest.raises(ValueError, match="unknown R-peak method 'magic'"):
        detect_r_peaks(np.zeros(5000), FS, method="magic")


def test_rr_intervals_and_segments_in_seconds():
    peak_s = np.array([0.1, 1.0, 1.8, 2.9])
    rr = rr_intervals_s(peak_s)
    assert np.isnan(rr[0]) and np.allclose(rr[1:], [0.9, 0.8, 1.1])
    x = np.arange(3000, dtype=float)  # 3 s at 1000 Hz: a ramp shows where each cut starts
    segments, kept = cut_segments(x, 1000.0, peak_s, before_s=0.2, after_s=0.3)
    # The first beat's segment would start before the signal: dropped, not padded.
    assert kept.tolist() == [False, True, True, False]
    assert segments.shape == (2, 500) and segments.dtype == np.float32
    assert segments[0, 0] == 800 and segments[1, 200] == 1800  # the peak sits at before_s


def test_beats_are_assigned_to_windows_and_flagged():
    peak_s = np.array([0.5, 1.5, 2.5, 3.2, 3.25, 7.0])
    rr = rr_intervals_s(peak_s)
    segments = np.arange(6, dtype=np.float32)[:, None].repeat(4, axis=1)
    beats = beats_per_window(
        peak_s,
        rr,
        segments,
        np.array([0.0, 3.0, 6.0]),
        3.0,
        min_beats=2,
        rr_min_s=0.24,
        rr_max_s=2.0,
    )
    assert [len(p) for p in beats.peak_s] == [3, 2, 1]
    assert np.allclose(beats.peak_s[1], [0.2, 0.25])  # from the window's start
    # 0.05 s between two peaks is no heartbeat; one beat in 3 s is too few to trust.
    assert beats.flags.tolist() == ["", FLAG_IMPLAUSIBLE_RR, FLAG_TOO_FEW_BEATS]
    assert beats.segments[2][0, 0] == 5


def test_padding_keeps_real_beats_and_masks_the_rest():
    segs = [np.ones((3, 4), np.float32), np.zeros((0, 4), np.float32), np.ones((12, 4))]
    rrs = [np.array([np.nan, 0.8, 0.9], np.float32), np.zeros(0, np.float32), np.ones(12)]
    beats, rr, mask = pad_beats(segs, rrs, max_beats=10, segment_samples=4)
    assert beats.shape == (3, 10, 4) and mask.sum(axis=1).tolist() == [3, 0, 10]
    assert rr[0].tolist()[:4] == [0.0, pytest.approx(0.8), pytest.approx(0.9), 0.0]
    assert not beats[1].any()


def test_beats_are_scaled_together_and_padding_stays_zero():
    beats = np.zeros((1, 3, 2), np.float32)
    beats[0, 0], beats[0, 1] = [1.0, 3.0], [2.0, 5.0]
    mask = np.array([[True, True, False]])
    out = normalise_beats(beats, mask, "window")
    assert np.allclose(out[0, :2], [[0.0, 0.5], [0.25, 1.0]]) and not out[0, 2].any()
    z = normalise_beats(beats, mask, "window_zscore")
    assert abs(z[0, :2].mean()) < 1e-6 and not z[0, 2].any()


def test_windows_carry_their_beats():
    rec = _recording("rest", duration_s=12.0)
    w = segments_to_windows([Segment(rec.ecg_mV, FS)], IngestSettings())
    b = IngestSettings().beats
    assert len(w.beats) == len(w) == 4 and w.beat_fs_hz == b.segment_fs_hz
    for segments, peak_s in zip(w.beats.segments, w.beats.peak_s, strict=True):
        assert segments.shape == (len(peak_s), b.segment_samples)
        assert ((peak_s >= 0) & (peak_s < 3.0)).all()


@pytest.mark.parametrize("noise", [0.001, 0.1, 1.0])
def test_a_recording_without_heartbeats_is_refused_with_its_own_error(noise):
    rng = np.random.default_rng(0)
    t = np.arange(int(12 * FS)) / FS
    no_ecg = 0.5 * np.sin(2 * np.pi * 0.25 * t) + noise * rng.standard_normal(t.size)
    with pytest.raises(NoBeatsError, match="heartbeat"):
        segments_to_windows([Segment(no_ecg, FS)], IngestSettings())


def _window_beats(segments_per_window, rr_s=0.8, flags=None):
    n = len(segments_per_window)
    return WindowBeats(
        [np.arange(len(s), dtype=np.float32) * rr_s for s in segments_per_window],
        [np.full(len(s), rr_s, np.float32) for s in segments_per_window],
        list(segments_per_window),
        np.array(flags if flags is not None else [""] * n, dtype=object),
    )


def test_each_rule_of_the_beat_check_names_its_reason():
    settings = IngestSettings()
    none = _window_beats([np.zeros((0, 4))] * 2)
    with pytest.raises(NoBeatsError, match="no heartbeat found in 2 window"):
        check_beats(none, settings)
    # Peaks at a heart-like rate whose "beats" do not resemble each other: noise.
    rng = np.random.default_rng(1)
    noise = _window_beats([rng.standard_normal((10, 50)) for _ in range(4)])
    with pytest.raises(NoBeatsError, match="do not resemble each other"):
        check_beats(noise, settings)
    # Real-looking beats, but most windows flagged.
    beat = np.sin(np.linspace(0, np.pi, 50))[None, :].repeat(3, axis=0)
    flagged = _window_beats([beat] * 4, flags=["too_few_beats"] * 3 + [""])
    with pytest.raises(NoBeatsError, match="no steady heartbeat: 3 of 4 windows"):
        check_beats(flagged, settings)
    # One flagged window of four is kept and counted.
    ok = _window_beats([beat] * 4, flags=["implausible_rr", "", "", ""])
    assert check_beats(ok, settings) == [
        "1 window(s) flagged implausible_rr: an RR interval outside 0.24-2 s "
        "(kept, flagged in the store)"
    ]


def test_a_slow_recording_gets_interpolated_beats_and_says_so():
    rec = _recording("rest", duration_s=12.0)
    at_200 = rec.ecg_mV[::5]
    settings = IngestSettings(beats={"segment_fs_hz": 250.0})  # above this recording's rate
    w = segments_to_windows([Segment(at_200, 200.0)], settings)
    assert any("interpolated from 200 Hz to 250 Hz" in m for m in w.warnings)
    assert w.beats.segments[0].shape[1] == settings.beats.segment_samples
