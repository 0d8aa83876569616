"""Filter, resampler and window functions, checked on synthetic sines at named frequencies."""

import numpy as np
import pytest

from ecg_pipeline.signal import (
    design_ecg_filter,
    filter_ecg,
    flat_window_mask,
    minmax_normalise,
    resample_to,
    sliding_windows,
    window_count,
)

FS = 1000.0


def gain_db(freq_hz, process, fs_hz=FS, duration_s=40.0, out_fs_hz=None):
    """Gain of ``process`` for a unit sine at ``freq_hz``, measured away from the edges."""
    t = np.arange(int(duration_s * fs_hz)) / fs_hz
    y = process(np.sin(2 * np.pi * freq_hz * t))
    n = len(y)
    middle = y[n // 4 : 3 * n // 4]
    return 20 * np.log10(np.sqrt(2) * middle.std() + 1e-300)


def filtered(**kw):
    return lambda x: filter_ecg(x, FS, **kw)[0]


@pytest.mark.parametrize(
    "freq_hz, lo_db, hi_db",
    [
        (0.05, -200, -35),  # baseline wander: gone
        (0.2, -200, -14),
        (0.5, -6.5, -5.5),  # the cutoff: -3 dB per pass, -6 dB forwards and backwards
        (5.0, -0.05, 0.05),  # QRS and T energy: untouched
        (20.0, -0.05, 0.05),
    ],
)
def test_highpass_response(freq_hz, lo_db, hi_db):
    g = gain_db(freq_hz, filtered(mains_hz=None), duration_s=200 if freq_hz < 0.5 else 40)
    assert lo_db <= g <= hi_db, f"{freq_hz} Hz: {g:.2f} dB"


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_notch_removes_mains_and_spares_neighbours(mains_hz):
    f = filtered(mains_hz=mains_hz)
    assert gain_db(mains_hz, f) < -40
    assert gain_db(mains_hz - 5, f) > -0.5
    assert gain_db(mains_hz + 5, f) > -0.5
    assert gain_db(10.0, f) > -0.05


def test_filter_is_zero_phase():
    t = np.arange(20_000) / FS
    x = np.sin(2 * np.pi * 8 * t)
    y = filter_ecg(x, FS)[0]
    mid = slice(5000, 15000)
    lag = np.argmax(np.correlate(y[mid], x[mid], "full")) - (10_000 - 1)
    assert lag == 0


def test_notch_skipped_with_warning_at_or_above_nyquist():
    design = design_ecg_filter(100.0, mains_hz=50.0)
    assert len(design.sos) == 1  # high-pass only
    assert design.warnings and "Nyquist" in design.warnings[0]
    assert not design_ecg_filter(1000.0, mains_hz=50.0).warnings


def test_resampling_keeps_the_band_and_removes_aliases():
    down = lambda x: resample_to(x, FS, 100.0)  # noqa: E731
    assert abs(gain_db(10.0, down)) < 0.1
    # 70 Hz would fold to 30 Hz at 100 Hz; the anti-aliasing filter must remove it.
    assert gain_db(70.0, down) < -40
    assert gain_db(130.0, down) < -40


def test_resampling_length_and_fractional_rates():
    assert len(resample_to(np.zeros(61_893), 1000.0, 100.0)) == 6190
    assert len(resample_to(np.zeros(5000), 500.0, 100.0)) == 1000
    assert len(resample_to(np.zeros(4000), 2000.0, 100.0)) == 200
    y = resample_to(np.zeros(1024), 256.0, 100.0)
    assert len(y) == 400


def test_upsampling_refused():
    with pytest.raises(ValueError, match="upsampling"):
        resample_to(np.zeros(100), 50.0, 100.0)


def test_windows_no_overlap_and_partial_dropped():
    x = np.arange(1000.0)
    w = sliding_windows(x, 300, 300)
    assert w.shape == (3, 300)
    assert w[1, 0] == 300 and w[2, -1] == 899
    assert window_count(299, 300, 300) == 0
    assert sliding_windows(x[:299], 300, 300).shape == (0, 300)


def test_windows_with_overlap():
    w = sliding_windows(np.arange(1000.0), 300, 150)
    assert w.shape == (5, 300)
    assert w[1, 0] == 150


def test_minmax_per_window_and_per_recording():
    w = np.array([[0.0, 2.0, 4.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 1.0]])
    per_window = minmax_normalise(w)
    assert per_window.dtype == np.float32
    np.testing.assert_allclose(per_window[0], [0, 0.5, 1])
    np.testing.assert_allclose(per_window[1], [0, 0, 0])  # constant: zeros, not NaN
    whole = minmax_normalise(w, axis=(0, 1))
    assert whole.min() == 0 and whole.max() == 1
    np.testing.assert_allclose(whole[2], [0, 0.2, 0.4])


def test_zscore_per_window_is_less_swayed_by_one_spike_than_minmax():
    from ecg_pipeline.signal.windows import zscore_normalise

    t = np.arange(300) / 100.0
    ecg = np.sin(2 * np.pi * 1.2 * t)
    spiked = ecg.copy()
    spiked[150] = 40.0
    z = zscore_normalise(np.stack([ecg, spiked, np.ones(300)]))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(z[0].std(), 1, rtol=1e-5)
    np.testing.assert_allclose(z[2], 0)  # constant: zeros, not NaN
    # The spike shrinks the rest of the signal 40-fold under min-max, far less under a z-score.
    mm = minmax_normalise(np.stack([ecg, spiked]))
    keep = np.arange(300) != 150
    minmax_ratio = np.ptp(mm[1][keep]) / np.ptp(mm[0][keep])
    zscore_ratio = np.ptp(z[1][keep]) / np.ptp(z[0][keep])
    assert minmax_ratio < 0.06 and zscore_ratio > 0.25  # 0.05 against 0.29


def test_flat_window_mask():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, size=(4, 300))
    w[1] = 0.0
    w[3] = 3.2 + rng.normal(0, 1e-4, 300)
    assert flat_window_mask(w, 0.005).tolist() == [False, True, False, True]


@pytest.mark.parametrize("n", [10, 2001, 70_000, 200_000])
def test_in_place_filter_equals_sosfiltfilt(n):
    from scipy import signal as sps

    from ecg_pipeline.signal import zero_phase_filter

    x = np.random.default_rng(n).normal(size=n).cumsum()
    design = design_ecg_filter(FS)
    expected = sps.sosfiltfilt(
        design.sos, x, padtype="odd", padlen=min(design.settle_samples, n - 1)
    )
    np.testing.assert_allclose(zero_phase_filter(x, design), expected, rtol=0, atol=1e-9)


def test_filter_designs_are_cached():
    a = design_ecg_filter(FS, mains_hz=50.0)
    assert design_ecg_filter(1000, mains_hz=50) is a
    assert design_ecg_filter(FS, mains_hz=60.0) is not a


@pytest.mark.parametrize("fs_hz", [1000.0, 999.5])  # whole-sample hop (vectorised) and not
def test_raw_flat_and_railed_windows(fs_hz):
    from ecg_pipeline.signal.quality import flat_raw_windows

    rng = np.random.default_rng(3)
    n = int(30 * fs_hz)
    x = rng.normal(0, 0.3, n)
    w = int(3 * fs_hz)
    x[3 * w + 10 : 4 * w - 10] = 0.0  # window 3 flat (but for a few edge samples)
    x[6 * w : 7 * w] = np.where(np.arange(w) % 200 < 100, 9.99, -9.99)  # window 6 railed
    flags = flat_raw_windows(x, fs_hz, 3.0, 3.0, 10, min_std=0.05)
    assert np.flatnonzero(flags).tolist() == [3, 6]


@pytest.mark.parametrize(
    "fs_hz",
    [
        100.0,
        128.0,
        250.0,
        360.0,
        500.0,
        1000.0,
        2000.0,
        1000.0 / 3,
        2000.0 / 3,
        1024.0,
        9999.0,
        10_000.0,
    ],
)
def test_every_recorder_rate_has_a_small_polyphase_ratio(fs_hz):
    from ecg_pipeline.signal.resample import resampling_problem

    assert resampling_problem(fs_hz, 100.0) is None
    assert resampling_problem(fs_hz, 250.0) is None


@pytest.mark.parametrize("fs_hz", [968.108669237675, float("nan"), float("inf"), 0.0, -1000.0])
def test_a_rate_only_a_corrupt_header_gives_is_refused_before_any_filter_is_built(fs_hz):
    # 968.1087 Hz came from a fuzzed file: resampling it to 100 Hz would need polyphase factors
    # 197480 / 1911821, a filter of about 4 x 10^7 taps (seconds and gigabytes).
    from ecg_pipeline.signal.resample import resampling_problem

    assert resampling_problem(fs_hz, 100.0)
    with pytest.raises(ValueError):
        resample_to(np.zeros(5000), fs_hz, 100.0)
