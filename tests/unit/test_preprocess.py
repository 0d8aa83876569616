import numpy as np
import pytest
from helpers import demo_ecg

from ecg_pipeline.config import IngestSettings
from ecg_pipeline.errors import SamplingRateError, SignalQualityError, TooShortError
from ecg_pipeline.ingest.process import segments_to_windows
from ecg_pipeline.io.recording import Segment


def test_one_recording_becomes_paper_windows():
    ecg, _ = demo_ecg(duration_s=30.5)
    w = segments_to_windows([Segment(ecg, 1000.0)], IngestSettings())
    assert w.samples.shape == (10, 300) and w.samples.dtype == np.float32
    assert w.fs_hz == 100.0
    np.testing.assert_allclose(w.start_s, np.arange(10) * 3.0)
    assert w.window_index.tolist() == list(range(10))
    assert not w.warnings
    # Baseline removed: each window's mean is near zero (the synthetic wander is 0.1-0.6 mV).
    assert np.abs(w.samples.mean(axis=1)).max() < 0.15


def test_segments_keep_their_offsets_and_no_window_straddles_a_gap():
    ecg, _ = demo_ecg(duration_s=20.0)
    segs = [Segment(ecg[:7000], 1000.0, 0.0), Segment(ecg[9000:], 1000.0, 9.0)]
    w = segments_to_windows(segs, IngestSettings())
    np.testing.assert_allclose(w.start_s, [0.0, 3.0, 9.0, 12.0, 15.0])
    assert w.window_index.tolist() == [0, 1, 2, 3, 4]


def test_short_segment_skipped_with_warning():
    ecg, _ = demo_ecg(duration_s=10.0)
    segs = [Segment(ecg[:1500], 1000.0, 0.0), Segment(ecg[2000:], 1000.0, 2.0)]
    w = segments_to_windows(segs, IngestSettings())
    assert len(w) == 2
    assert any("shorter than one" in m for m in w.warnings)


def test_too_short_recording_refused():
    ecg, _ = demo_ecg(duration_s=2.5)
    with pytest.raises(TooShortError, match="2.50 s of signal holds no whole 3-s window"):
        segments_to_windows([Segment(ecg, 1000.0)], IngestSettings())


def test_native_rate_below_target_refused():
    with pytest.raises(SamplingRateError, match="50 Hz is below the target rate 100 Hz"):
        segments_to_windows([Segment(np.zeros(1000), 50.0)], IngestSettings())


def test_flat_lead_refused():
    with pytest.raises(SignalQualityError, match="flat or disconnected lead: 4 of 4 windows"):
        segments_to_windows([Segment(np.full(12_000, 2.5), 1000.0)], IngestSettings())


def test_a_few_flat_windows_are_dropped_and_counted():
    ecg, _ = demo_ecg(duration_s=30.0)
    ecg = ecg.copy()
    ecg[9000:12000] = ecg[9000]  # lead off for exactly window 3
    w = segments_to_windows([Segment(ecg, 1000.0)], IngestSettings())
    assert w.n_flat_dropped >= 1
    assert 3 not in w.window_index.tolist()
    assert any("flat window" in m for m in w.warnings)


def test_notch_skipped_at_a_native_rate_of_100_hz_is_reported():
    ecg, _ = demo_ecg(duration_s=9.0, fs_hz=100.0)
    w = segments_to_windows([Segment(ecg, 100.0)], IngestSettings())
    assert len(w) == 3
    assert any("notch at 50 Hz skipped" in m for m in w.warnings)
