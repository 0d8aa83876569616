"""Dataset readers on the real public datasets in the shared folder (read in place, never copied).

The shared folder is ``$ECG_SHARED_DIR`` (default: ``<repo>/../shared``); the module is skipped
when its ``datasets/`` folder is absent.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ecg_pipeline.errors import AmbiguousChannelError, ChannelSelectionError
from ecg_pipeline.io.dp_motion import discover_dp_motion, parse_dp_motion_name, read_dp_motion_csv
from ecg_pipeline.io.wfdb_records import discover_ecg_id, parse_ecg_id_name, read_wfdb_record

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"
DP_MOTION = DATASETS / "dp-motion-ecg"
ECG_ID = DATASETS / "ecg-id"

pytestmark = pytest.mark.integration

if not DATASETS.is_dir():
    pytest.skip(
        f"shared datasets not found at {DATASETS} (set ECG_SHARED_DIR to the folder holding "
        "datasets/)",
        allow_module_level=True,
    )

needs_dp_motion = pytest.mark.skipif(not DP_MOTION.is_dir(), reason=f"{DP_MOTION} absent")
needs_ecg_id = pytest.mark.skipif(not ECG_ID.is_dir(), reason=f"{ECG_ID} absent")

ACTIVITIES = {"klud", "ruky", "chodza", "beh", "drepy"}


def dp_file(name: str) -> Path:
    return DP_MOTION / "data" / name[:2] / name


def timestamp_span_s(path: Path) -> float:
    """Last minus first timestamp, read independently of the reader."""
    lines = path.read_text().splitlines()
    first, last = (
        datetime.fromisoformat(line.split(";")[0].strip()) for line in (lines[0], lines[-1])
    )
    return (last - first).total_seconds()


# --- dp-motion-ecg --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dp_recordings():
    files = discover_dp_motion(DP_MOTION)
    return {f.name: read_dp_motion_csv(f) for f in files}


@needs_dp_motion
def test_dp_motion_names_parse_for_all_files():
    files = discover_dp_motion(DP_MOTION)
    assert len(files) == 150
    assert all("labels" not in f.parts for f in files)
    names = [parse_dp_motion_name(f) for f in files]
    assert {n.subject for n in names} == {f"{i:02d}" for i in range(1, 11)}
    assert {n.session for n in names} == {"01", "02", "03"}
    assert {n.activity for n in names} == ACTIVITIES
    assert len({(n.subject, n.session, n.activity) for n in names}) == 150


@needs_dp_motion
def test_dp_motion_every_file_reads_at_nominal_rate(dp_recordings):
    assert len(dp_recordings) == 150
    for name, rec in dp_recordings.items():
        assert rec.channel_name == "ECG" and rec.units == "adc", name
        assert rec.segments, name
        for seg in rec.segments:
            assert seg.fs_hz == 500.0, name
            assert seg.samples.dtype == np.float64 and seg.samples.ndim == 1, name
            assert np.isfinite(seg.samples).all(), name
            assert 0 <= seg.samples.min() and seg.samples.max() <= 4095, name  # 12-bit ADC
        starts = [s.start_s for s in rec.segments]
        assert starts == sorted(starts), name
        assert 495.0 < float(rec.header["measured_fs_hz"]) < 499.0, name
        assert 1.99 < float(rec.header["median_interval_ms"]) < 2.02, name


@needs_dp_motion
def test_dp_motion_duration_is_span_minus_gaps(dp_recordings):
    for name, rec in dp_recordings.items():
        h = rec.header
        # A backward clock step shortens the timestamp span without removing samples.
        expected_s = (
            timestamp_span_s(dp_file(name))
            - float(h["gaps_total_s"])
            - float(h["clock_steps_total_s"])
            - float(h["dropped_s"])
        )
        assert abs(rec.duration_s - expected_s) < 0.06, (name, rec.duration_s, expected_s)
        assert 55.0 < rec.duration_s < 70.0, name


@needs_dp_motion
def test_dp_motion_only_the_known_gaps_split(dp_recordings):
    split = {name for name, rec in dp_recordings.items() if rec.header["n_gaps"] != "0"}
    assert split == {"06_01_chodza.csv", "10_01_klud.csv", "10_03_drepy.csv"}
    # Delivery delays up to 55.6 ms (05_02_beh) are not gaps at the default threshold.
    assert len(dp_recordings["05_02_beh.csv"].segments) == 1
    assert float(dp_recordings["05_02_beh.csv"].header["largest_interval_s"]) > 0.05


@needs_dp_motion
def test_dp_motion_22_s_gap_in_06_01_chodza(dp_recordings):
    rec = dp_recordings["06_01_chodza.csv"]
    first, second = rec.segments
    assert first.start_s == 0.0
    assert 1.3 < first.duration_s < 1.5  # 707 samples before the gap
    gap_s = float(rec.header["largest_gap_s"])
    assert abs(gap_s - 22.517) < 0.001
    # The second segment starts where the first ends plus the gap, not straight after it.
    assert abs(second.start_s - (first.start_s + first.duration_s + gap_s)) < 0.01
    assert 64.0 < second.duration_s < 66.0


@needs_dp_motion
def test_dp_motion_short_stretches_dropped(dp_recordings):
    # 10_01_klud: 0.65 s before its 9.2 s gap; 10_03_drepy: 0.57 s after its 5.9 s gap.
    klud = dp_recordings["10_01_klud.csv"]
    (seg,) = klud.segments
    assert abs(seg.start_s - (0.647 + 9.2216)) < 0.01
    assert klud.header["n_dropped_segments"] == "1"
    (seg,) = dp_recordings["10_03_drepy.csv"].segments
    assert seg.start_s == 0.0
    kept = read_dp_motion_csv(dp_file("10_01_klud.csv"), min_segment_s=0.0)
    assert len(kept.segments) == 2


@needs_dp_motion
def test_dp_motion_backward_timestamp_in_02_03_klud(dp_recordings):
    rec = dp_recordings["02_03_klud.csv"]
    assert rec.header["n_clock_steps"] == "1"
    assert abs(float(rec.header["clock_steps_total_s"]) + 0.0805) < 0.001
    (seg,) = rec.segments  # not split: the samples around the step are consecutive
    assert seg.start_s == 0.0
    # No sample dropped: the duration is the sample count at the fitted rate.
    n_raw = int(rec.header["n_samples_raw"])
    assert abs(seg.duration_s - n_raw / float(rec.header["measured_fs_hz"])) < 0.004
    # The signal stays smooth across the step (line 23471): no jump larger than elsewhere.
    i = round(23470 * 500 / float(rec.header["measured_fs_hz"]))
    jumps = np.abs(np.diff(seg.samples))
    assert jumps[i - 20 : i + 20].max() <= np.percentile(jumps, 99.9)


@needs_dp_motion
def test_dp_motion_header_is_not_personal(dp_recordings):
    for rec in dp_recordings.values():
        assert not any("2024" in v or ":" in v for v in rec.header.values())


# --- ECG-ID ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecg_id_recordings():
    return {f: read_wfdb_record(f, channel="ECG I") for f in discover_ecg_id(ECG_ID)}


@needs_ecg_id
def test_ecg_id_discovery():
    files = discover_ecg_id(ECG_ID)
    assert len(files) == 310
    names = [parse_ecg_id_name(f) for f in files]
    assert len({n.person for n in names}) == 90
    assert names[0] == parse_ecg_id_name(ECG_ID / "Person_01" / "rec_1.hea")
    person_01 = [int(n.record) for n in names if n.person == "01"]
    assert person_01 == sorted(person_01) == list(range(1, len(person_01) + 1))
    counts = defaultdict(int)
    for n in names:
        counts[n.person] += 1
    assert min(counts.values()) == 1 and max(counts.values()) == 22


@needs_ecg_id
def test_ecg_id_record_reads(ecg_id_recordings):
    rec = ecg_id_recordings[ECG_ID / "Person_01" / "rec_1.hea"]
    assert rec.channel_name == "ECG I" and rec.units == "mV"
    (seg,) = rec.segments
    assert seg.fs_hz == 500.0 and len(seg.samples) == 10000 and seg.start_s == 0.0
    assert seg.samples.dtype == np.float64
    for path, rec in ecg_id_recordings.items():
        (seg,) = rec.segments
        assert len(seg.samples) == 10000 and seg.fs_hz == 500.0, path
        assert np.isfinite(seg.samples).all(), path
        assert seg.samples.std() > 0.01, path  # mV; raw lead I drifts (to 154 mV in Person_76)


@needs_ecg_id
def test_ecg_id_channel_selection():
    hea = ECG_ID / "Person_01" / "rec_1.hea"
    raw = read_wfdb_record(hea, channel="ECG I")
    filtered = read_wfdb_record(hea, channel="ECG I filtered")
    assert raw.channel_name == "ECG I" and raw.header["channel_index"] == "0"
    assert filtered.channel_name == "ECG I filtered" and filtered.header["channel_index"] == "1"
    assert not np.allclose(raw.segments[0].samples, filtered.segments[0].samples)
    by_index = read_wfdb_record(hea, channel=1)
    np.testing.assert_array_equal(by_index.segments[0].samples, filtered.segments[0].samples)
    with pytest.raises(AmbiguousChannelError, match="'ECG I'.*'ECG I filtered'"):
        read_wfdb_record(hea)
    with pytest.raises(ChannelSelectionError, match="ecg i"):
        read_wfdb_record(hea, channel="ecg i")  # names are exact


@needs_ecg_id
def test_ecg_id_header_dates_and_personal_fields(ecg_id_recordings):
    header = ecg_id_recordings[ECG_ID / "Person_01" / "rec_1.hea"].header
    assert header == {"age": "25", "sex": "male", "date": "2004-12-07", "channel_index": "0"}
    dates = defaultdict(list)  # in record order (discovery is natural order)
    for path, rec in ecg_id_recordings.items():
        h = rec.header
        assert h["age"].isdigit() and h["sex"] in {"male", "female"}, path
        assert datetime.strptime(h["date"], "%Y-%m-%d"), path
        dates[parse_ecg_id_name(path).person].append(h["date"])
    # The dataset README, on the 89 persons with more than one record: 69 were recorded on a
    # single date, and for 82 the last record has the date of an earlier one.
    several = [d for d in dates.values() if len(d) > 1]
    assert len(several) == 89
    assert sum(len(set(d)) == 1 for d in several) == 69
    assert sum(d[-1] in d[:-1] for d in several) == 82


@needs_dp_motion
@pytest.mark.parametrize("name", ["07_01_beh.csv", "04_01_chodza.csv"])
def test_dp_motion_running_recording_keeps_its_beats_through_the_fallback_detector(name):
    """`neurokit` locks onto motion artefacts here (its beats correlate 0.10-0.24 with their
    median beat); the fallback detector finds QRS complexes that do resemble each other."""
    from ecg_pipeline.config import load_config
    from ecg_pipeline.errors import NoBeatsError
    from ecg_pipeline.ingest.process import read_windows

    config = load_config(REPO / "configs" / "dp-motion.toml")
    _, windows = read_windows(dp_file(name), config)
    (note,) = [w for w in windows.warnings if "fallback" in w]
    assert "'elgendi2010'" in note and "'neurokit'" in note
    assert sum(len(p) for p in windows.beats.peak_s) > 50

    # A fallback no better than the first detector changes nothing: the recording is refused.
    same = config.with_overrides({"ingest.beats.fallback_method": "neurokit"})
    with pytest.raises(NoBeatsError, match="do not resemble each other"):
        read_windows(dp_file(name), same)
    off = config.with_overrides({"ingest.beats.fallback_method": "none"})
    assert off.ingest.beats.fallback_method is None
    with pytest.raises(NoBeatsError, match="do not resemble each other"):
        read_windows(dp_file(name), off)
