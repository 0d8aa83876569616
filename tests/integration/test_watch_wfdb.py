"""The watcher's start-up scan identifies a WFDB record by all of its files, as ingest does.

Before, it hashed the ``.hea`` alone, so every stored ECG-ID record looked new at start-up and
triggered a needless run. Real ECG-ID records from ../shared, copied into a temp inbox.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ecg_pipeline.config import load_config
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.stack.watch import unstored_files

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ECG_ID = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared")) / "datasets" / "ecg-id"


@pytest.fixture
def inbox_and_config(tmp_path):
    if not ECG_ID.is_dir():
        pytest.skip(f"{ECG_ID} absent (set ECG_SHARED_DIR)")
    inbox = tmp_path / "inbox"
    for person, record in (("Person_01", "rec_1"), ("Person_02", "rec_1")):
        (inbox / person).mkdir(parents=True)
        for suffix in (".hea", ".dat"):
            shutil.copy2(ECG_ID / person / f"{record}{suffix}", inbox / person)
    config = load_config(REPO / "configs" / "ecg-id.toml").with_overrides(
        {"store.root": tmp_path / "store"}
    )
    return inbox, config


def test_stored_wfdb_records_do_not_look_new(inbox_and_config):
    inbox, config = inbox_and_config
    headers = sorted(str(p) for p in inbox.rglob("*.hea"))
    assert sorted(unstored_files(inbox, config)) == headers  # nothing stored yet
    report = ingest_folder(inbox, config)
    assert report.count("written") == 2
    assert unstored_files(inbox, config) == []


def test_a_changed_signal_file_makes_its_record_new(inbox_and_config):
    inbox, config = inbox_and_config
    ingest_folder(inbox, config)
    dat = inbox / "Person_02" / "rec_1.dat"
    data = bytearray(dat.read_bytes())
    data[-1] ^= 0xFF  # the header is unchanged; the record's bytes are not
    dat.write_bytes(bytes(data))
    assert unstored_files(inbox, config) == [str(inbox / "Person_02" / "rec_1.hea")]
