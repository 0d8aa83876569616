"""The synthetic ECG generator, checked by measuring its output as one would a real recording."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy.signal import find_peaks

from ecg_pipeline.cohort.synthetic import (
    CONDITIONS,
    draw_subject_morphology,
    heart_rate_bpm,
    synthesise_clean_ecg_mV,
    synthesise_components,
    synthesise_recording,
)

FS = 1000.0
N_SUBJECTS = 6


def _morphology(subject: int, seed: int = 0):
    return draw_subject_morphology(np.random.default_rng([seed, subject]))


def _components(subject: int, condition: str, duration_s: float = 180.0, seed: int = 0, **kw):
    rng = np.random.default_rng([seed, subject, CONDITIONS.index(condition)])
    return synthesise_components(_morphology(subject, seed), condition, duration_s, FS, rng, **kw)


@pytest.fixture(scope="module")
def cohort():
    """6 subjects x 3 conditions x 180 s at 1000 Hz, with every part kept."""
    return {(s, c): _components(s, c) for s in range(N_SUBJECTS) for c in CONDITIONS}


def _r_peaks_s(clean_mV: np.ndarray, fs_hz: float = FS) -> np.ndarray:
    # R is the tallest wave; 0.3 s refractory (200 bpm) hides T and P next to it.
    peaks, _ = find_peaks(clean_mV, height=0.5 * clean_mV.max(), distance=int(0.3 * fs_hz))
    return peaks / fs_hz


def _instantaneous_hr(r_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time of each RR interval's midpoint, its rate in bpm)."""
    return (r_s[1:] + r_s[:-1]) / 2, 60.0 / np.diff(r_s)


def _templates(
    clean_mV: np.ndarray, r_s: np.ndarray, before_s: float, after_s: float
) -> np.ndarray:
    lo, hi = int(before_s * FS), int(after_s * FS)
    idx = np.rint(r_s * FS).astype(int)
    idx = idx[(idx >= lo) & (idx + hi <= len(clean_mV))]
    return np.stack([clean_mV[i - lo : i + hi] for i in idx])


def _single_beat(morphology, hr_bpm: float = 60.0) -> np.ndarray:
    """One isolated beat with its R at 1.0 s, mid-breath, in 2 s at FS."""
    return synthesise_clean_ecg_mV(
        morphology, np.array([1.0]), np.array([hr_bpm]), np.array([0.5]), int(2 * FS), FS
    )


# --- heart rate per condition -------------------------------------------------------------------


def test_detected_r_peaks_are_the_synthesised_beats(cohort):
    for (s, c), parts in cohort.items():
        r_s = _r_peaks_s(parts.clean_ecg_mV)
        # A peak on the first or last sample is no local maximum for find_peaks.
        true_s = parts.r_peak_times_s
        true_s = true_s[(true_s > 0.05) & (true_s < len(parts.ecg_mV) / FS - 0.05)]
        r_s = r_s[(r_s > 0.05) & (r_s < len(parts.ecg_mV) / FS - 0.05)]
        assert len(r_s) == len(true_s), (s, c)
        assert np.abs(r_s - true_s).max() < 0.002, (s, c)


def test_rest_heart_rate_in_range_with_mild_variability(cohort):
    for s in range(N_SUBJECTS):
        r_s = _r_peaks_s(cohort[s, "rest"].clean_ecg_mV)
        _, hr = _instantaneous_hr(r_s)
        assert 60.0 <= hr.mean() <= 75.0, s
        assert 50.0 <= hr.min() and hr.max() <= 85.0, s
        sdnn_ms = 1000 * np.diff(r_s).std()
        assert 10.0 <= sdnn_ms <= 80.0, (s, sdnn_ms)  # HRV present, but a resting one


def test_exercise_heart_rate_starts_high_and_recovers(cohort):
    for s in range(N_SUBJECTS):
        t, hr = _instantaneous_hr(_r_peaks_s(cohort[s, "exercise"].clean_ecg_mV))
        first, last = hr[t < 20].mean(), hr[t > 160].mean()
        assert 105.0 <= hr[t < 5].mean() <= 145.0, s
        assert first > last + 10.0, (s, first, last)
        assert last >= 70.0, s  # recovering, not yet back at rest after 4 minutes
        # Recovery is monotone apart from HRV: 30-s means fall one after the other.
        means = [hr[(t >= a) & (t < a + 30)].mean() for a in range(0, 180, 30)]
        assert np.all(np.diff(means) < 1.0), (s, means)


def _hr_on_grid(parts, grid_fs_hz: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    t, hr = _instantaneous_hr(_r_peaks_s(parts.clean_ecg_mV))
    grid = np.arange(t[0], t[-1], 1.0 / grid_fs_hz)
    return grid, np.interp(grid, t, hr)


def test_deep_breathing_heart_rate_oscillates_at_0_1_hz(cohort):
    for s in range(N_SUBJECTS):
        parts = cohort[s, "deep_breathing"]
        grid, hr = _hr_on_grid(parts)
        assert 65.0 <= hr.mean() <= 80.0, s
        detrended = hr - np.polyval(np.polyfit(grid, hr, 1), grid)
        power = np.abs(np.fft.rfft(detrended * np.hanning(len(grid)))) ** 2
        freqs = np.fft.rfftfreq(len(grid), 0.25)
        band = freqs > 0.03
        assert abs(freqs[band][np.argmax(power[band])] - 0.1) < 0.01, s
        # E-I difference per 10-s breath: semi-amplitude 8-15 bpm, i.e. 16-30 bpm peak to trough.
        cycles = [hr[(grid >= a) & (grid < a + 10)] for a in np.arange(grid[0], grid[-1] - 10, 10)]
        ei = np.median([np.ptp(c) for c in cycles])
        assert 12.0 <= ei <= 35.0, (s, ei)


def test_deep_breathing_heart_rate_rises_with_inspiration(cohort):
    for s in range(N_SUBJECTS):
        parts = cohort[s, "deep_breathing"]
        grid, hr = _hr_on_grid(parts)
        resp = np.interp(grid, np.arange(len(parts.respiration_V)) / FS, parts.respiration_V)
        assert np.corrcoef(hr, resp)[0, 1] > 0.6, s
        # In phase: the cross-correlation peaks within 1.5 s of zero lag (a breath is 10 s).
        lags = np.arange(-20, 21)  # +-5 s at 4 Hz
        h, r = hr - hr.mean(), resp - resp.mean()
        xc = [
            np.dot(h[max(0, k) : len(h) + min(0, k)], r[max(0, -k) : len(r) - max(0, k)])
            for k in lags
        ]
        assert abs(lags[int(np.argmax(xc))] / 4.0) <= 1.5, s


def test_breathing_rate_per_condition(cohort):
    expected = {"rest": (12, 20), "exercise": (20, 30), "deep_breathing": (5.7, 6.3)}
    for (s, c), parts in cohort.items():
        resp = parts.respiration_V - parts.respiration_V.mean()
        freqs = np.fft.rfftfreq(len(resp), 1 / FS)
        power = np.abs(np.fft.rfft(resp)) ** 2
        band = (freqs > 0.05) & (freqs < 1.0)
        per_min = 60 * freqs[band][np.argmax(power[band])]
        assert expected[c][0] <= per_min <= expected[c][1], (s, c, per_min)
        # The belt rises on inspiration: it follows lung volume.
        assert np.corrcoef(parts.respiration_V, parts.lung_volume)[0, 1] > 0.9


def test_heart_rate_trajectory_rejects_unknown_condition():
    with pytest.raises(ValueError, match="unknown condition"):
        heart_rate_bpm("running", np.zeros(10), FS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown condition"):
        synthesise_recording(_morphology(0), "Rest", 10.0, FS, np.random.default_rng(0))


# --- morphology ---------------------------------------------------------------------------------


def test_drawn_morphologies_stay_in_physiological_ranges():
    for i in range(300):
        m = _morphology(i, seed=7)
        assert 0.6 <= m.r_amp_mV <= 2.0
        assert -0.6 <= m.s_amp_mV <= -0.05 and m.q_amp_mV < 0 and m.p_amp_mV > 0
        assert 0.070 <= m.qrs_width_s <= 0.110
        assert 0.360 <= m.qt_at_60bpm_s <= 0.440
        assert 0.12 <= m.pr_interval_s <= 0.20
        assert m.t_polarity in (-1, 1) and 0.1 <= m.t_amp_mV <= 0.6


def test_qrs_width_measured_on_the_waveform_is_in_range():
    widths, measured = [], []
    for i in range(100):
        # P and T removed so the QRS boundaries can be read off a plain threshold.
        m = dataclasses.replace(_morphology(i), p_amp_mV=0.0, t_amp_mV=0.0)
        above = np.flatnonzero(np.abs(_single_beat(m)) > 0.01 * np.abs(_single_beat(m)).max())
        widths.append(m.qrs_width_s)
        measured.append((above[-1] - above[0] + 1) / FS)
    widths, measured = np.array(widths), np.array(measured)
    assert measured.min() >= 0.065 and measured.max() <= 0.115
    assert np.all(np.abs(measured / widths - 1) < 0.15)
    assert np.corrcoef(widths, measured)[0, 1] > 0.9  # the parameter really drives the width


def test_qt_shortens_with_heart_rate():
    for i in range(20):
        m = _morphology(i)
        lags = []
        for hr in (60.0, 120.0):
            x = m.t_polarity * _single_beat(m, hr)
            window = slice(int(1.1 * FS), int(1.5 * FS))  # after the QRS, before any next beat
            lags.append((np.argmax(x[window]) + window.start) / FS - 1.0)
        # Fridericia: QT(120 bpm) = QT(60 bpm) * 0.5 ** (1/3), about 80 ms shorter.
        assert 0.040 <= lags[0] - lags[1] <= 0.100, (i, lags)


def test_subjects_differ_more_than_conditions(cohort):
    # QRS-centred mean beats: the QRS does not change with rate, so within a subject only
    # breathing and noise-free jitter remain, while subjects differ in shape and amplitude.
    tpl = {}
    for (s, c), parts in cohort.items():
        tpl[s, c] = _templates(parts.clean_ecg_mV, parts.r_peak_times_s, 0.08, 0.08).mean(0)
    within = max(
        np.linalg.norm(tpl[s, a] - tpl[s, b])
        for s in range(N_SUBJECTS)
        for a in CONDITIONS
        for b in CONDITIONS
    )
    between = min(
        np.linalg.norm(tpl[s, c] - tpl[u, c])
        for s in range(N_SUBJECTS)
        for u in range(s + 1, N_SUBJECTS)
        for c in CONDITIONS
    )
    assert within < between, (within, between)
    # Full beats at similar rates (rest vs deep breathing): every subject correlates better with
    # itself than any two subjects do with each other.
    full = {
        k: _templates(p.clean_ecg_mV, p.r_peak_times_s, 0.2, 0.45).mean(0)
        for k, p in cohort.items()
        if k[1] != "exercise"
    }
    same = [
        np.corrcoef(full[s, "rest"], full[s, "deep_breathing"])[0, 1] for s in range(N_SUBJECTS)
    ]
    other = [
        np.corrcoef(full[s, "rest"], full[u, "rest"])[0, 1]
        for s in range(N_SUBJECTS)
        for u in range(s + 1, N_SUBJECTS)
    ]
    assert np.min(same) > np.max(other), (same, other)


# --- noise --------------------------------------------------------------------------------------


def _line_ratio(x: np.ndarray, f_hz: float) -> float:
    """Power in the f_hz bin over the median power of the +-5 Hz around it."""
    freqs = np.fft.rfftfreq(len(x), 1 / FS)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    near = (np.abs(freqs - f_hz) < 5) & (np.abs(freqs - f_hz) > 0.5)
    return power[np.argmin(np.abs(freqs - f_hz))] / np.median(power[near])


def test_mains_line_at_mains_hz(cohort):
    for (s, c), parts in cohort.items():
        assert _line_ratio(parts.ecg_mV, 50.0) > 100, (s, c)
        assert 0.02 <= np.abs(parts.mains_mV).max() <= 0.14, (s, c)
    us = _components(0, "rest", 60.0, mains_hz=60.0)
    assert _line_ratio(us.ecg_mV, 60.0) > 100
    assert _line_ratio(us.ecg_mV, 50.0) < 10


def test_baseline_wander_and_muscle_noise_levels(cohort):
    for (s, c), parts in cohort.items():
        assert 0.1 <= np.ptp(parts.baseline_mV) <= 0.6, (s, c)
        # Wander is slow, muscle noise is above 20 Hz.
        freqs = np.fft.rfftfreq(len(parts.emg_mV), 1 / FS)
        emg_power = np.abs(np.fft.rfft(parts.emg_mV)) ** 2
        assert emg_power[freqs < 15].sum() < 1e-6 * emg_power.sum()
        wander = parts.baseline_mV - parts.baseline_mV.mean()
        wander_power = np.abs(np.fft.rfft(wander * np.hanning(len(wander)))) ** 2  # no edge leakage
        assert wander_power[freqs > 5].sum() < 1e-3 * wander_power.sum()
        np.testing.assert_allclose(
            parts.ecg_mV, parts.clean_ecg_mV + parts.baseline_mV + parts.mains_mV + parts.emg_mV
        )
    for s in range(N_SUBJECTS):
        assert cohort[s, "exercise"].emg_mV.std() > 1.5 * cohort[s, "rest"].emg_mV.std()


# --- determinism, shapes, speed -----------------------------------------------------------------


def test_same_seed_same_arrays_and_different_seed_differs():
    m = _morphology(3)
    a = synthesise_recording(m, "deep_breathing", 30.0, FS, np.random.default_rng(11))
    b = synthesise_recording(m, "deep_breathing", 30.0, FS, np.random.default_rng(11))
    c = synthesise_recording(m, "deep_breathing", 30.0, FS, np.random.default_rng(12))
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        assert not np.allclose(x, z)
    assert _morphology(3) == m and _morphology(4) != m


def test_mains_frequency_changes_only_the_mains_part():
    a = _components(1, "exercise", 20.0, mains_hz=50.0)
    b = _components(1, "exercise", 20.0, mains_hz=60.0)
    np.testing.assert_array_equal(a.clean_ecg_mV, b.clean_ecg_mV)
    np.testing.assert_array_equal(a.respiration_V, b.respiration_V)
    assert not np.allclose(a.mains_mV, b.mains_mV)


@pytest.mark.parametrize("fs_hz", [100.0, 250.0, 1000.0])
def test_output_shapes_and_values(fs_hz):
    ecg, resp = synthesise_recording(_morphology(2), "rest", 12.5, fs_hz, np.random.default_rng(0))
    assert ecg.shape == resp.shape == (round(12.5 * fs_hz),)
    assert np.isfinite(ecg).all() and np.isfinite(resp).all()
    assert np.abs(ecg).max() < 4.0 and 0.0 < resp.min() and resp.max() < 2.5


def test_rejects_bad_arguments():
    m, rng = _morphology(0), np.random.default_rng(0)
    with pytest.raises(ValueError):
        synthesise_recording(m, "rest", 10.0, 0.0, rng)
    with pytest.raises(ValueError):
        synthesise_recording(m, "rest", 0.0, FS, rng)
    with pytest.raises(ValueError):
        synthesise_recording(m, "rest", 10.0, FS, rng, mains_hz=0.0)


def test_three_minutes_at_1000_hz_synthesise_in_well_under_half_a_second():
    m = _morphology(0)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        synthesise_recording(m, "exercise", 180.0, 1000.0, np.random.default_rng(0))
        best = min(best, time.perf_counter() - start)
    assert best < 0.5, best
