"""Dataset readers on small synthetic files: dp-motion CSV timing logic and WFDB channel choice."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ecg_pipeline.errors import (
    AmbiguousChannelError,
    ChannelSelectionError,
    FormatError,
    NoEcgChannelError,
)
from ecg_pipeline.io.dp_motion import (
    discover_dp_motion,
    parse_dp_motion_name,
    read_dp_motion_csv,
    resample_uniform,
)
from ecg_pipeline.io.wfdb_records import (
    discover_ecg_id,
    parse_ecg_id_name,
    parse_header_comments,
    read_wfdb_record,
)

T0 = datetime(2024, 3, 26, 14, 58, 13, 300910)
TRUE_FS_HZ = 497.0  # the device's real rate: the reader must resample it to 500 Hz
SINE_HZ = 7.0


def true_signal(t_s: np.ndarray) -> np.ndarray:
    """A smooth test signal in ADC-like counts, known at any time."""
    return 2000.0 + 300.0 * np.sin(2 * np.pi * SINE_HZ * t_s)


def write_csv(path: Path, t_s: np.ndarray, values: np.ndarray, extra: dict[int, str] | None = None):
    """Write ``timestamp ; value`` lines; ``extra`` replaces line i (1-based) by raw text."""
    lines = [
        f"{(T0 + timedelta(seconds=float(t))).strftime('%Y-%m-%d %H:%M:%S.%f')} ; {int(round(v))}"
        for t, v in zip(t_s, values, strict=True)
    ]
    for i, text in (extra or {}).items():
        lines[i - 1] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_times(n: int, fs_hz: float = TRUE_FS_HZ, seed: int = 0) -> np.ndarray:
    """Receive timestamps: uniform sample times plus small jitter (always late, like a host)."""
    rng = np.random.default_rng(seed)
    return np.arange(n) / fs_hz + rng.uniform(0, 0.0003, n)


def device_signal(n: int) -> np.ndarray:
    """What the ADC sampled: the test signal at uniform times, sample 0 at 0 s."""
    return true_signal(np.arange(n) / TRUE_FS_HZ)


def max_error(seg, offset_s: float = 0.0) -> float:
    """Largest deviation of a segment from the test signal, its first sample at ``offset_s``."""
    ts = offset_s + np.arange(len(seg.samples)) / seg.fs_hz
    return float(np.max(np.abs(seg.samples - true_signal(ts))))


# --- names and discovery --------------------------------------------------------------------


def test_parse_dp_motion_name():
    name = parse_dp_motion_name("data/01/01_03_klud.csv")
    assert (name.subject, name.session, name.activity) == ("01", "03", "klud")


@pytest.mark.parametrize(
    "bad", ["01_03_klud_2.csv", "1_03_klud.csv", "01_03_klud.txt", "01_03.csv", "01/02_01_beh.csv"]
)
def test_parse_dp_motion_name_refuses(bad):
    with pytest.raises(FormatError, match="ID_ELECTRODE_ACTIVITY|folder of subject"):
        parse_dp_motion_name(bad)


def test_discover_dp_motion_skips_labels(tmp_path):
    for rel in ["01/01_01_klud.csv", "01/01_02_beh.csv", "01/labels/01_01_klud_2.csv", "notes.csv"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_dp_motion(tmp_path)]
    assert found == ["01/01_01_klud.csv", "01/01_02_beh.csv"]


# --- dp-motion timing ------------------------------------------------------------------------


def test_resample_uniform_is_accurate():
    t_in = np.arange(4970) / TRUE_FS_HZ
    y = resample_uniform(true_signal(t_in), 1 / TRUE_FS_HZ, 500.0)
    t_out = np.arange(len(y)) / 500.0
    assert t_out[-1] <= t_in[-1] + 1e-9 and t_out[-1] > t_in[-1] - 1 / 500.0
    assert np.max(np.abs(y - true_signal(t_out))) < 0.15  # counts, of a 300-count sine


def test_clean_file_one_segment_at_nominal_rate(tmp_path):
    t = sample_times(5000)
    rec = read_dp_motion_csv(write_csv(tmp_path / "01_01_klud.csv", t, device_signal(5000)))
    assert rec.channel_name == "ECG" and rec.units == "adc"
    (seg,) = rec.segments
    assert seg.fs_hz == 500.0 and seg.start_s == 0.0
    assert abs(float(rec.header["measured_fs_hz"]) - TRUE_FS_HZ) < 0.05
    assert abs(seg.duration_s - 5000 / TRUE_FS_HZ) < 2 / 500
    assert max_error(seg) < 1.0  # ADC rounding (0.5) and the fitted clock


def test_gap_splits_without_interpolating(tmp_path):
    t = sample_times(3000)
    t[1500:] += 2.0  # 2 s of samples lost
    x = true_signal(np.r_[np.arange(1500), np.arange(1500, 3000) + 2.0 * TRUE_FS_HZ] / TRUE_FS_HZ)
    rec = read_dp_motion_csv(write_csv(tmp_path / "01_01_beh.csv", t, x), max_gap_s=0.1)
    first, second = rec.segments
    assert first.start_s == 0.0
    # from the fitted clock: within the jitter (0.3 ms) of the true start
    assert abs(second.start_s - (1500 / TRUE_FS_HZ + 2.0)) < 3e-4
    assert second.start_s - (first.start_s + first.duration_s) > 1.9
    assert abs(first.duration_s - 1500 / TRUE_FS_HZ) < 2 / 500
    assert rec.header["n_gaps"] == "1" and float(rec.header["largest_gap_s"]) > 2.0
    # each stretch follows the true signal up to its ends: nothing bridged across the gap
    assert max_error(first) < 1.0
    assert max_error(second, offset_s=1500 / TRUE_FS_HZ + 2.0) < 1.0


def test_delivery_delay_is_not_a_gap(tmp_path):
    # Samples 1000-1027 arrive late in one burst, as in 05_02_beh: none is lost.
    t = sample_times(3000)
    t[1000:1028] = t[1027] + 0.0001 * np.arange(28) / 28 + 0.002
    rec = read_dp_motion_csv(write_csv(tmp_path / "02_01_beh.csv", t, device_signal(3000)))
    (seg,) = rec.segments
    assert float(rec.header["largest_interval_s"]) > 0.05
    # Interpolating on the raw timestamps would draw a 55 ms ramp here (errors of ~100 counts).
    assert max_error(seg) < 1.0


def test_backward_clock_step_keeps_samples_consecutive(tmp_path):
    n = 3000
    x = device_signal(n)
    t = sample_times(n)
    t[2000:] -= 0.0805  # the host clock is stepped back, as in 02_03_klud
    rec = read_dp_motion_csv(write_csv(tmp_path / "02_03_klud.csv", t, x))
    (seg,) = rec.segments
    assert rec.header["n_clock_steps"] == "1"
    assert abs(float(rec.header["clock_steps_total_s"]) + 0.0805) < 0.003
    assert abs(seg.duration_s - n / TRUE_FS_HZ) < 2 / 500  # nothing dropped
    assert max_error(seg) < 1.0


def test_short_stretch_dropped_and_counted(tmp_path):
    t = sample_times(2000)
    t[200:] += 3.0  # 0.4 s before the gap
    rec = read_dp_motion_csv(write_csv(tmp_path / "10_01_klud.csv", t, true_signal(t)))
    (seg,) = rec.segments
    assert abs(seg.start_s - (200 / TRUE_FS_HZ + 3.0)) < 3e-4
    assert rec.header["n_dropped_segments"] == "1"
    kept = read_dp_motion_csv(tmp_path / "10_01_klud.csv", min_segment_s=0.0)
    assert len(kept.segments) == 2


def test_header_has_no_wall_clock(tmp_path):
    t = sample_times(1000)
    rec = read_dp_motion_csv(write_csv(tmp_path / "01_01_klud.csv", t, true_signal(t)))
    assert not any("2024" in v or ":" in v for v in rec.header.values())


@pytest.mark.parametrize(
    ("line", "text", "expected"),
    [
        (7, "2024-03-26 14:58:13.312000 ; abc", r"line 7: .*number after ';'.*abc"),
        (5, "garbage", r"line 5: .*number after ';'.*garbage"),
        (9, "yesterday ; 2100", r"line 9: timestamp .*yesterday"),
        (4, "2024-03-26 14:58:13.312000 ; 1 ; 2", r"line 4"),
        (1, "2024-03-26 14:58:13.300000 ; 1 ; 2", r"line 1: more than 2"),
    ],
)
def test_garbage_line_names_the_line(tmp_path, line, text, expected):
    t = sample_times(50)
    path = write_csv(tmp_path / "01_01_klud.csv", t, true_signal(t), extra={line: text})
    with pytest.raises(FormatError, match=expected) as info:
        read_dp_motion_csv(path)
    assert info.value.path == str(path)


def test_blank_lines_are_skipped_and_numbering_kept(tmp_path):
    t = sample_times(1000)
    path = write_csv(tmp_path / "01_01_klud.csv", t, true_signal(t))
    lines = path.read_text().splitlines()
    lines.insert(10, "")
    lines[20] = "x ; 1"  # line 21 of the file
    path.write_text("\n".join(lines) + "\n\n")
    with pytest.raises(FormatError, match="line 21"):
        read_dp_motion_csv(path)
    lines[20] = lines[21]
    path.write_text("\n".join(lines) + "\n\n")
    assert len(read_dp_motion_csv(path).segments) == 1


def test_empty_and_wrong_rate_refused(tmp_path):
    empty = tmp_path / "01_01_klud.csv"
    empty.write_text("")
    with pytest.raises(FormatError, match="empty"):
        read_dp_motion_csv(empty)
    t = np.arange(1000) / 250.0
    path = write_csv(tmp_path / "01_02_klud.csv", t, true_signal(t))
    with pytest.raises(FormatError, match="250.0 Hz.*nominal_fs_hz"):
        read_dp_motion_csv(path, nominal_fs_hz=500.0)


# --- WFDB -----------------------------------------------------------------------------------


COMMENTS = ["Age: 25", "Sex: male", "ECG date: 07.12.2004"]


def write_record(
    folder: Path, name: str = "rec_1", sig_name=("ECG I", "ECG I filtered"), comments=None
):
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(1000) / 500.0
    raw = 0.8 * np.sin(2 * np.pi * 1.2 * t) + 0.1
    signals = np.column_stack([raw, raw - 0.1][: len(sig_name)])
    wfdb.wrsamp(
        name,
        fs=500,
        units=["mV"] * len(sig_name),
        sig_name=list(sig_name),
        p_signal=signals,
        fmt=["16"] * len(sig_name),
        comments=COMMENTS if comments is None else comments,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea", raw


def test_wfdb_channel_choice(tmp_path):
    hea, raw = write_record(tmp_path / "Person_01")
    rec = read_wfdb_record(hea, channel="ECG I")
    assert rec.channel_name == "ECG I" and rec.units == "mV" and rec.header["channel_index"] == "0"
    (seg,) = rec.segments
    assert seg.fs_hz == 500.0 and len(seg.samples) == 1000 and seg.samples.dtype == np.float64
    assert np.max(np.abs(seg.samples - raw)) < 1e-3
    assert read_wfdb_record(hea, channel="ECG I filtered").channel_name == "ECG I filtered"
    assert read_wfdb_record(hea, channel=1).channel_name == "ECG I filtered"
    assert read_wfdb_record(str(hea.with_suffix("")), channel=0).channel_name == "ECG I"
    with pytest.raises(AmbiguousChannelError, match="'ECG I'.*'ECG I filtered'"):
        read_wfdb_record(hea)
    with pytest.raises(ChannelSelectionError, match="no channel named 'ECG II'.*'ECG I'"):
        read_wfdb_record(hea, channel="ECG II")
    with pytest.raises(ChannelSelectionError, match="index 5"):
        read_wfdb_record(hea, channel=5)
    with pytest.raises(ChannelSelectionError, match="negative"):
        read_wfdb_record(hea, channel=-1)
    assert read_wfdb_record(hea, channel_pattern="filtered").channel_name == "ECG I filtered"


def test_wfdb_pattern_single_and_none(tmp_path):
    hea, _ = write_record(tmp_path, sig_name=("Resp", "EKG lead II"))
    assert read_wfdb_record(hea).channel_name == "EKG lead II"
    hea, _ = write_record(tmp_path, name="rec_2", sig_name=("Resp", "PPG"))
    with pytest.raises(NoEcgChannelError, match="'Resp'.*'PPG'"):
        read_wfdb_record(hea)


def test_wfdb_header_comments(tmp_path):
    hea, _ = write_record(tmp_path)
    header = read_wfdb_record(hea, channel=0).header
    assert header["age"] == "25" and header["sex"] == "male" and header["date"] == "2004-12-07"
    assert parse_header_comments(["69 M 1085 1629 x1", "Reason: test"]) == {"reason": "test"}
    hea, _ = write_record(tmp_path, name="rec_3", comments=["ECG date: 31.02.2004"])
    with pytest.raises(FormatError, match="31.02.2004"):
        read_wfdb_record(hea, channel=0)


def test_wfdb_missing_or_broken_files(tmp_path):
    with pytest.raises(FormatError, match="header unreadable"):
        read_wfdb_record(tmp_path / "nothing.hea")
    hea, _ = write_record(tmp_path)
    hea.with_suffix(".dat").write_bytes(b"\x00" * 100)  # cut short
    with pytest.raises(FormatError):
        read_wfdb_record(hea, channel=0)


def test_ecg_id_names_and_natural_order(tmp_path):
    for person, rec in [("Person_02", 1), ("Person_01", 10), ("Person_01", 2), ("Person_01", 1)]:
        (tmp_path / person).mkdir(exist_ok=True)
        (tmp_path / person / f"rec_{rec}.hea").write_text("")
    (tmp_path / "Person_01" / "rec_1.atr").write_text("")
    found = [f"{p.parent.name}/{p.name}" for p in discover_ecg_id(tmp_path)]
    assert found == [
        "Person_01/rec_1.hea",
        "Person_01/rec_2.hea",
        "Person_01/rec_10.hea",
        "Person_02/rec_1.hea",
    ]
    name = parse_ecg_id_name(tmp_path / "Person_01" / "rec_10.hea")
    assert (name.person, name.record) == ("01", "10")
    with pytest.raises(FormatError, match="Person_NN/rec_K.hea"):
        parse_ecg_id_name(tmp_path / "rec_1.hea")
