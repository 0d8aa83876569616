"""Signal quality: the heartbeat test, NeuroKit2's indices per window, spans, the account."""

import dataclasses

import numpy as np
import pytest
from helpers import demo_ecg

from ecg_pipeline.config import IngestSettings
from ecg_pipeline.errors import LowQualityError, NoHeartbeatError
from ecg_pipeline.ingest.process import segments_to_windows
from ecg_pipeline.ingest.quality import assess_recording, check_heartbeat
from ecg_pipeline.io.recording import RawRecording, Segment
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.signal.heartbeat import envelope_periodicity, heartbeat_evidence, mains_fraction
from ecg_pipeline.signal.sqi import (
    clipped_windows,
    heart_rate_bpm,
    raw_window_kinds,
    spans_s,
    window_quality,
)
from ecg_pipeline.tracking.quality_report import (
    quality_table,
    render_short_table,
    write_quality_report,
)

FS = 500.0


@pytest.fixture(scope="module")
def ecg():
    x, _ = demo_ecg(duration_s=30.0, fs_hz=FS)
    return x


def _noise(duration_s=30.0, scale_mv=0.5, seed=0):
    return np.random.default_rng(seed).normal(0, scale_mv, int(duration_s * FS))


def _hum(duration_s=30.0, mains_hz=60.0):
    t = np.arange(int(duration_s * FS)) / FS
    return 0.3 * np.sin(2 * np.pi * mains_hz * t) + _noise(duration_s, 0.02)


def _raw(x, units="mV", name="ECG"):
    return RawRecording("f.acq", name, units, [Segment(np.asarray(x, float), FS, 0.0)])


# --- signal/heartbeat.py ----------------------------------------------------------------------
def test_a_heartbeat_recurs_and_noise_or_hum_does_not(ecg):
    assert heartbeat_evidence(ecg, FS).periodicity > 0.4
    assert heartbeat_evidence(_noise(), FS).periodicity < 0.25
    assert heartbeat_evidence(_hum(), FS).periodicity < 0.25


def test_the_pace_is_the_heart_rate(ecg):
    peaks = np.arange(0.5, 29.5, 0.75)  # 80 bpm
    t = np.arange(int(30 * FS)) / FS
    spikes = np.exp(-((t[:, None] - peaks[None, :]) ** 2) / (2 * 0.01**2)).sum(axis=1)
    ev = heartbeat_evidence(spikes, FS)
    assert ev.pace_bpm == pytest.approx(80, rel=0.05) and ev.n_blocks == 3


def test_the_test_is_scale_free(ecg):
    a = heartbeat_evidence(ecg, FS).periodicity
    assert heartbeat_evidence(ecg / 1000.0, FS).periodicity == pytest.approx(a)


def test_a_constant_envelope_has_no_periodicity():
    assert envelope_periodicity(np.ones(500), 50.0, 0.24, 2.0)[0] == 0.0


def test_mains_fraction_names_hum():
    assert mains_fraction(_hum(), FS) > 0.9
    assert mains_fraction(_noise(), FS) < 0.05


# --- signal/sqi.py ----------------------------------------------------------------------------
def test_spans_merge_adjacent_windows():
    mask = np.array([True, True, False, True, False])
    starts = np.arange(5) * 3.0
    assert spans_s(mask, starts, 3.0) == [(0.0, 6.0), (9.0, 12.0)]
    assert spans_s(np.zeros(3, bool), np.arange(3.0), 1.0) == []


def test_clipped_windows_find_a_plateau_at_the_limit(ecg):
    x = ecg.copy()
    top = x.max() + 1.0
    x[int(10 * FS) : int(10.5 * FS)] = top  # half a second held at the converter's limit
    mask = clipped_windows(x, FS, 3.0, 3.0)
    assert mask.sum() == 1 and mask[3]
    assert not clipped_windows(ecg, FS, 3.0, 3.0).any()


def test_heart_rate_per_window():
    hr = heart_rate_bpm([np.array([0.2, 1.2, 2.2]), np.array([0.5]), np.array([])])
    assert hr[0] == pytest.approx(60.0) and np.isnan(hr[1:]).all()


def test_window_quality_scores_alike_beats_high():
    fs = 100.0
    t = np.arange(300) / fs
    w = np.stack([np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)] * 5)
    q = window_quality(w, fs, [np.array([0.4, 1.2, 2.0, 2.8])] * 5)
    assert set(q) == {"templatematch", "averageQRS"}
    assert q["templatematch"].min() > 0.9
    assert np.isfinite(q["averageQRS"]).all()


def test_window_quality_without_beats_is_nan_not_a_crash():
    q = window_quality(np.zeros((3, 300)), 100.0, [np.array([])] * 3)
    assert all(np.isnan(v).all() for v in q.values())


# --- ingest/quality.py ------------------------------------------------------------------------
def test_noise_in_a_channel_named_ecg_is_refused_with_its_own_reason():
    settings = IngestSettings()
    with pytest.raises(NoHeartbeatError, match="broadband noise or a detached lead"):
        check_heartbeat(_raw(_noise()), settings)
    with pytest.raises(NoHeartbeatError, match="mostly mains hum"):
        check_heartbeat(_raw(_hum()), settings)


def test_real_ecg_passes_in_any_voltage_unit(ecg):
    settings = IngestSettings()
    assert check_heartbeat(_raw(ecg), settings).periodicity > 0.4
    assert check_heartbeat(_raw(ecg / 1000.0, units="Volts"), settings) is not None


def test_a_flat_lead_is_left_to_the_flat_test_and_the_check_can_be_off():
    assert check_heartbeat(_raw(np.zeros(int(30 * FS))), IngestSettings()) is None
    # Shorter than one window: left to TooShortError, even when it is noise.
    assert check_heartbeat(_raw(_noise(duration_s=2.0)), IngestSettings()) is None
    off = IngestSettings.model_validate({"quality": {"min_heartbeat_periodicity": 0}})
    assert check_heartbeat(_raw(_noise()), off) is None


def _windows(x, settings):
    raw = _raw(x)
    return raw, segments_to_windows(raw.segments, settings, units="mV")


def test_the_account_of_a_clean_recording(ecg):
    settings = IngestSettings()
    raw, windows = _windows(ecg, settings)
    acc = assess_recording(raw, windows, settings)
    assert acc["score"] > 0.9 and acc["kept_fraction"] == 1.0 and acc["dropped"] == 0
    assert 40 < acc["heart_rate_bpm"] < 120 and acc["heart_rate_plausible"]
    assert len(acc["windows"]["templatematch"]) == len(windows) == 10
    assert acc["below_min_recording_score"] is False and acc["min_recording_score"] is None


def test_flat_and_clipped_spans_are_reported(ecg):
    settings = IngestSettings()
    x = ecg.copy()
    x[int(3 * FS) : int(6 * FS)] = 0.0  # one flat window, dropped
    x[int(15 * FS) : int(15.3 * FS)] = x.max() + 0.5  # clipped, kept
    raw, windows = _windows(x, settings)
    acc = assess_recording(raw, windows, settings)
    assert acc["spans_s"]["flat"] == [[3.0, 6.0]] and acc["dropped"] == 1
    assert acc["dropped_why"] == {"flat": 1, "railed": 0}
    assert acc["spans_s"]["clipped"] == [[15.0, 18.0]] and acc["clipped_windows"] == 1
    assert acc["kept_fraction"] == pytest.approx(0.9)


def test_the_threshold_refuses_only_when_set(ecg):
    strict = IngestSettings.model_validate({"quality": {"min_recording_score": 0.999}})
    raw, windows = _windows(ecg, strict)
    with pytest.raises(LowQualityError, match="below \\[ingest.quality\\] min_recording_score"):
        assess_recording(raw, windows, strict)
    off = IngestSettings.model_validate({"quality": {"min_recording_score": "none"}})
    assert off.quality.min_recording_score is None


def test_quality_table_reads_the_footers(ecg):
    settings = IngestSettings()
    raw, windows = _windows(ecg, settings)
    acc = assess_recording(raw, windows, settings)
    rows = [
        {"recording_id": "b", "subject": "S02", "condition": "rest", "quality": acc},
        {"recording_id": "a", "subject": "S01", "condition": "rest", "n_windows": 3},
    ]
    table = quality_table(rows)
    assert list(table["recording_id"]) == ["a", "b"]
    assert np.isnan(table.loc[0, "score"]) and table.loc[1, "score"] > 0.9
    assert table.loc[1, "flat_s"] == 0.0


# --- tracking/quality_report.py ---------------------------------------------------------------
def _row(sha, subject, condition):
    return {
        "source_path": f"/in/{subject}_{condition}.acq",
        "subject": subject,
        "condition": condition,
        "session": None,
        "date": None,
        "sha256": sha,
        "channel": "ECG",
        "native_fs_hz": FS,
        "duration_s": 30.0,
        "n_windows": 10,
    }


def test_the_report_is_one_self_contained_page_beside_the_store(tmp_path, ecg):
    settings = IngestSettings()
    store = WindowStore(tmp_path, "demo")
    noisy = ecg + _noise(scale_mv=0.3, seed=2)
    for k, (x, subject) in enumerate(((ecg, "S01"), (noisy, "S02"))):
        raw, windows = _windows(x, settings)
        windows = dataclasses.replace(windows, quality=assess_recording(raw, windows, settings))
        store.write_recording(_row(str(k) * 64, subject, "rest"), windows, "0" * 16)
    page = write_quality_report(store)
    assert page == store.path / "_quality_report.html"
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 1  # the overview
    assert text.count("<svg") == 2 and text.count("<polyline") >= 2 * 4  # one per recording
    assert "src='http" not in text and "<script" not in text and "/in/" not in text
    assert "S01 / rest" in text and "S02 / rest" in text
    table = quality_table(store.catalog_rows())
    assert table.loc[0, "score"] > table.loc[1, "score"]
    printed = render_short_table(table)
    assert printed.splitlines()[0] == "signal quality (poorest first)"
    assert printed.splitlines()[2].split()[0] == "S02"  # the noisier recording first
    assert store.recording_files() and all(f.suffix == ".parquet" for f in store.recording_files())


def test_a_store_without_recordings_gives_a_page_and_a_line(tmp_path):
    store = WindowStore(tmp_path, "demo")
    assert "0 recording(s) stored" in write_quality_report(store).read_text(encoding="utf-8")
    assert render_short_table(quality_table([])) == "signal quality: no recording stored"


def test_the_neurokit_methods_can_be_skipped(ecg):
    settings = IngestSettings.model_validate({"quality": {"neurokit_methods": []}})
    raw, windows = _windows(ecg, settings)
    acc = assess_recording(raw, windows, settings)
    assert acc["score"] is None and acc["averageQRS"] is None and acc["good_windows"] == 0
    assert acc["heart_rate_plausible"] and acc["kept_fraction"] == 1.0
    only = window_quality(windows.samples, 100.0, windows.beats.peak_s, ["averageQRS"])
    assert np.isnan(only["templatematch"]).all() and np.isfinite(only["averageQRS"]).all()


def test_raw_window_kinds_tell_flat_railed_and_clipped_apart(ecg):
    x = ecg.copy()
    x[: int(3 * FS)] = 0.0  # flat
    x[int(3 * FS) : int(6 * FS)] = np.where(np.arange(int(3 * FS)) % 2, 5.0, -5.0)  # railed
    x[int(9 * FS) : int(9.2 * FS)] = 5.0  # the limit held for 0.2 s: clipped
    kinds = raw_window_kinds(x, FS, 3.0, 3.0, min_std=0.005, max_extreme_fraction=0.5)
    assert kinds["flat"][:4].tolist() == [True, False, False, False]
    assert kinds["railed"][:4].tolist() == [False, True, False, False]
    assert kinds["clipped"][:4].tolist() == [False, False, False, True]
    assert all(len(m) == 10 for m in kinds.values())
    assert all(
        len(m) == 0
        for m in raw_window_kinds(
            x[:10], FS, 3.0, 3.0, min_std=1, max_extreme_fraction=0.5
        ).values()
    )


def test_periodicity_stays_in_range_on_a_short_signal():
    """A few seconds hold few lags: a short ECG scores high, but so can noise (4 s of it
    scores 0.58 here), so the test has little power below one 10-s block (README)."""
    x, _ = demo_ecg(duration_s=2.0, fs_hz=FS)
    assert heartbeat_evidence(x, FS).periodicity == pytest.approx(1.0)
    assert 0.0 <= heartbeat_evidence(_noise(duration_s=4.0), FS).periodicity <= 1.0


def test_the_quality_settings_at_their_defaults_leave_the_ingest_hash_of_older_stores():
    from ecg_pipeline.config import StudyConfig

    # The hash the demo configuration had before the quality settings existed (with its beat
    # segments at 250 Hz, the default of that time): stores and the evaluation table's runs made
    # with it stay valid.
    before = StudyConfig().with_overrides({"ingest.beats.segment_fs_hz": 250.0})
    assert before.ingest_hash() == "c5fd4bd28ebcff7d"
    for key, value in (
        ("ingest.quality.min_heartbeat_periodicity", 0.3),
        ("ingest.quality.neurokit_methods", ["templatematch"]),
        ("ingest.quality.neurokit_max_windows", 0),
        ("ingest.quality.min_recording_score", 0.5),
    ):
        changed = before.with_overrides({key: value})
        assert changed.ingest_hash() != "c5fd4bd28ebcff7d", key


def test_ingest_scores_a_sample_of_windows_spread_over_the_recording():
    from ecg_pipeline.ingest.quality import scored_windows

    assert scored_windows(60, 12).tolist() == [0, 5, 11, 16, 21, 27, 32, 38, 43, 48, 54, 59]
    assert scored_windows(5, 12).tolist() == [0, 1, 2, 3, 4]
    assert scored_windows(60, 0).tolist() == list(range(60))
