"""Signal quality on real files, read in place: channels named ECG that hold no heartbeat are
refused with their own reason; real ECG is never refused and scores high."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecg_pipeline.config import load_config
from ecg_pipeline.errors import NoHeartbeatError, SignalQualityError
from ecg_pipeline.ingest.process import read_raw, read_windows
from ecg_pipeline.ingest.quality import assess_recording, check_heartbeat

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared"))
PUBLIC = SHARED / "acq-public"
DP_MOTION = SHARED / "datasets" / "dp-motion-ecg" / "data"
needs_public = pytest.mark.skipif(not PUBLIC.is_dir(), reason=f"{PUBLIC} absent")

# file -> what its channel named ECG holds (looked at: no QRS complex anywhere in it)
NO_HEARTBEAT = {
    "acqtools_example.acq": "mostly mains hum",  # 'ecg', V, 200 Hz: 60-Hz hum and noise
    "acqtools_testfile.acq": "broadband noise or a detached lead",  # 'ECG', V, 203 s
    "pspm_Acq_ECG_SCR_Marker.acq": "mostly mains hum",  # 'ECG', V, 10 s
}
# Real ECG (the bioread physio recording, EKG - ERS100C, 61.9 s, and other real files).
REAL_ECG = [
    *(f"acq-public/bioread_physio-{v}.acq" for v in ("3.8.1", "4.1.0-c", "5.0.1")),
    *(f"acq-public/bioread_nojournal-{v}.acq" for v in ("3.9.1", "4.4.0-c")),
    "acq/physio-4.4.0.acq",
    "acq/nojournal-5.0.1-c.acq",
    "acq/r42_test.acq",
]


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "configs" / "demo.toml")


@needs_public
@pytest.mark.parametrize("name", sorted(NO_HEARTBEAT))
def test_a_channel_named_ecg_without_a_heartbeat_is_refused(config, name):
    with pytest.raises(NoHeartbeatError) as exc:
        read_windows(PUBLIC / name, config)
    error = exc.value
    assert error.path == str(PUBLIC / name) and error.stage == "quality"
    assert "no heartbeat in channel" in error.reason and NO_HEARTBEAT[name] in error.reason
    assert "periodicity" in error.reason and "min_heartbeat_periodicity" in error.reason


@needs_public
def test_the_acqtools_testfile_was_ingested_before_and_is_refused_now(config):
    """Its noise (57 mV standard deviation) is far above the flat-lead threshold and the
    fallback R-peak detector's peaks correlate just above min_template_correlation: only the
    heartbeat test refuses it."""
    off = config.with_overrides({"ingest.quality.min_heartbeat_periodicity": 0.0})
    _, windows = read_windows(PUBLIC / "acqtools_testfile.acq", off)
    assert len(windows) > 60


@needs_public
def test_a_detached_impedance_lead_is_still_refused_as_flat(config):
    with pytest.raises(SignalQualityError, match="flat or disconnected lead"):
        read_windows(PUBLIC / "pspm_impedance_acq.acq", config)


@pytest.mark.parametrize("name", REAL_ECG)
def test_real_ecg_is_not_refused_and_scores_high(config, name):
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    raw, windows = read_windows(path, config)
    account = assess_recording(raw, windows, config.ingest)
    assert account["score"] > 0.9 and account["heart_rate_plausible"]
    assert account["heartbeat_periodicity"] >= 0.45 and account["kept_fraction"] == 1.0


@pytest.mark.skipif(not DP_MOTION.is_dir(), reason=f"{DP_MOTION} absent")
@pytest.mark.parametrize("name", ["10_01_beh.csv", "07_01_beh.csv", "01_01_beh.csv"])
def test_the_least_periodic_real_ecg_passes_the_heartbeat_test(name):
    """The lowest periodicities of all 150 dp-motion recordings (running, 0.27-0.41)."""
    config = load_config(REPO / "configs" / "dp-motion.toml")
    raw = read_raw(DP_MOTION / name[:2] / name, config)
    assert check_heartbeat(raw, config.ingest).periodicity >= 0.25


@pytest.mark.parametrize("record", ["Person_14/rec_1", "Person_47/rec_2", "Person_36/rec_1"])
def test_the_least_periodic_ecg_id_records_pass_the_heartbeat_test(record):
    """ECG-ID's raw lead I at its noisiest (0.30-0.33; the lowest of its 310 records)."""
    path = SHARED / "datasets" / "ecg-id" / record
    if not path.with_suffix(".hea").is_file():
        pytest.skip(f"{path} absent")
    config = load_config(REPO / "configs" / "ecg-id.toml")
    assert check_heartbeat(read_raw(path, config), config.ingest).periodicity >= 0.25


def test_ingest_stores_the_account_prints_the_table_and_writes_the_page(tmp_path):
    """`ecg-pipeline ingest` end to end: the noise file is refused for its missing heartbeat,
    the ECG is stored with its quality account, the table and the page's path are printed."""
    import subprocess
    import sys
    import time

    import numpy as np
    from helpers import demo_ecg, write_ecg_file

    from ecg_pipeline.io.store import QUALITY_KEY, WindowStore

    inbox = tmp_path / "in"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=30.0)[0])
    noise = np.random.default_rng(0).normal(0, 0.5, 30_000)
    write_ecg_file(inbox / "S02_rest.acq", noise)
    old = time.time() - 60
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    out = subprocess.run(
        [sys.executable, "-m", "ecg_pipeline", "ingest", str(inbox), "--out", str(tmp_path / "s")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 3, out.stderr
    assert "S02_rest.acq: no heartbeat in channel 'ECG - ECG100C'" in out.stdout
    assert "signal quality (poorest first)" in out.stdout
    page = tmp_path / "s" / "demo" / "_quality_report.html"
    assert f"signal-quality report (whole store): {page}" in out.stdout and page.is_file()
    (row,) = WindowStore(tmp_path / "s", "demo").catalog_rows()
    assert row["subject"] == "S01" and row[QUALITY_KEY]["score"] > 0.9


def test_a_recording_shorter_than_a_window_is_still_refused_as_too_short(tmp_path):
    """Two seconds hold too few beats for a rhythm: the length test gives the reason."""
    from helpers import demo_ecg, write_ecg_file

    from ecg_pipeline.errors import TooShortError

    path = write_ecg_file(tmp_path / "S10_rest.acq", demo_ecg()[0][:2000])
    with pytest.raises(TooShortError, match="no whole 3-s window"):
        read_windows(path, load_config(REPO / "configs" / "demo.toml"))
