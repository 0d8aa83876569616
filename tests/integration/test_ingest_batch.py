"""A batch of good and bad files: each bad one gets a specific reason, the rest goes on.

Real bioread, real files written as AcqKnowledge by the project's writer, real Parquet store.
"""

import os
import shutil
import struct
import time

import numpy as np
import pandas as pd
import pytest
from helpers import demo_ecg, folder_checksums, write_ecg_file

from ecg_pipeline.ingest import ingest_folder

pytestmark = pytest.mark.integration

N_CLAIMED = 12_347  # a distinctive sample count to find in the channel header


def header_claims_more(path):
    data = bytearray(path.read_bytes())
    needle = struct.pack(">i", N_CLAIMED)
    assert data.count(needle) == 1
    i = data.index(needle)
    data[i : i + 4] = struct.pack(">i", 2**30)  # 8 GiB as float64 if allocated
    path.write_bytes(bytes(data))


@pytest.fixture
def bad_batch(tmp_path, acq_dir):
    """A folder with two good recordings and one of every kind of bad input."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ecg, _ = demo_ecg(duration_s=12.0)
    write_ecg_file(inbox / "S01_rest.acq", ecg)
    write_ecg_file(inbox / "S02_rest.acq", demo_ecg(duration_s=12.0, subject=2)[0])
    (inbox / "S03_rest.acq").write_bytes(b"")
    (inbox / "S04_rest.acq").write_bytes(np.random.default_rng(1).bytes(5000))
    (inbox / "S05_rest.acq").write_text("subject,condition\nS05,rest\n")
    full = (acq_dir / "physio-4.4.0.acq").read_bytes()
    (inbox / "S06_rest.acq").write_bytes(full[: len(full) // 4])  # cut inside the data block
    claims = write_ecg_file(inbox / "S07_rest.acq", demo_ecg(duration_s=12.347)[0])
    header_claims_more(claims)
    shutil.copy(acq_dir / "iso_8859_1.acq", inbox / "S08_rest.acq")
    write_ecg_file(inbox / "S09_rest.acq", ecg, extra=[("EKG lead II", ecg)])
    write_ecg_file(inbox / "S10_rest.acq", ecg[:2000])
    write_ecg_file(inbox / "S11_rest.acq", demo_ecg(duration_s=12.0, fs_hz=50.0)[0], fs_hz=50.0)
    write_ecg_file(inbox / "S12_rest.acq", np.full(12_000, 1.25))
    # A lead flipping between the amplifier's rails (+-10 mV at gain 1000): railed, not ECG.
    rails = np.where(np.sin(2 * np.pi * 0.7 * np.arange(12_000) / 1000.0) > 0, 9.99, -9.99)
    write_ecg_file(inbox / "S16_rest.acq", rails)
    write_ecg_file(inbox / "S13_jogging.acq", ecg * 0.9)
    write_ecg_file(inbox / "recording.acq", ecg * 0.8)
    write_ecg_file(inbox / "S01_rest_copy2.acq", ecg * 1.1)  # subject S01, condition "rest_copy2"
    sub = inbox / "again"
    write_ecg_file(sub / "S14_exercise.acq", ecg * 0.7)
    write_ecg_file(inbox / "S14_exercise.acq", ecg * 0.6)  # same subject x condition: duplicate
    old = time.time() - 3600
    for p in inbox.rglob("*.acq"):
        os.utime(p, (old, old))
    write_ecg_file(inbox / "S15_rest.acq", ecg)  # just arrived: still settling
    return inbox


EXPECTED = {
    "S03_rest.acq": ("read", "NotAcqFileError", "empty file"),
    "S04_rest.acq": ("read", "NotAcqFileError", "not an AcqKnowledge file"),
    "S05_rest.acq": ("read", "NotAcqFileError", "looks like a text file"),
    "S06_rest.acq": ("read", "TruncatedFileError", "truncated"),
    "S07_rest.acq": ("read", "TruncatedFileError", "header claims 1073741824 samples"),
    "S08_rest.acq": ("channel", "NoEcgChannelError", "no ECG channel"),
    "S09_rest.acq": ("channel", "AmbiguousChannelError", "2 channels look like ECG"),
    "S10_rest.acq": ("signal", "TooShortError", "no whole 3-s window"),
    "S11_rest.acq": ("signal", "SamplingRateError", "50 Hz is below the target rate 100 Hz"),
    "S12_rest.acq": ("quality", "SignalQualityError", "flat or disconnected lead"),
    "S16_rest.acq": ("quality", "SignalQualityError", "railed"),
    "S13_jogging.acq": ("metadata", "MetadataError", "field 'condition' = 'jogging'"),
    "recording.acq": ("metadata", "MetadataError", "unknown subject or condition"),
    "S01_rest_copy2.acq": ("metadata", "MetadataError", "field 'condition' = 'rest_copy2'"),
    "S14_exercise.acq": ("store", "DuplicateRecordingError", "also claimed by"),
    "again/S14_exercise.acq": ("store", "DuplicateRecordingError", "also claimed by"),
    "S15_rest.acq": ("discover", "StillBeingWrittenError", "may still be copying"),
}


def test_every_bad_input_is_named_and_the_batch_goes_on(bad_batch, config):
    config = config.with_overrides({"discovery.settle_s": 30.0})
    before = folder_checksums(bad_batch)
    summary = ingest_folder(bad_batch, config)

    written = sorted(os.path.basename(r.path) for r in summary.results if r.status == "written")
    assert written == ["S01_rest.acq", "S02_rest.acq"]
    assert sorted(summary.catalog["subject"]) == ["S01", "S02"]

    table = summary.rejections.assign(
        file=lambda d: d["file"].map(lambda f: os.path.relpath(f, bad_batch))
    )
    got = {row.file: (row.stage, row.error, row.reason) for row in table.itertuples()}
    assert set(got) == set(EXPECTED)
    for name, (stage, error, words) in EXPECTED.items():
        assert got[name][:2] == (stage, error), name
        assert words in got[name][2], (name, got[name][2])
    assert (table.loc[table.file == "S15_rest.acq", "status"] == "deferred").all()

    on_disk = pd.read_csv(summary.rejections_file)
    assert len(on_disk) == len(EXPECTED)
    # Raw recordings untouched: same bytes, same mtimes, nothing added or removed.
    assert folder_checksums(bad_batch) == before


def test_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path, config):
    import tracemalloc

    from ecg_pipeline.errors import TruncatedFileError
    from ecg_pipeline.io.acq import read_acq

    f = write_ecg_file(tmp_path / "S01_rest.acq", demo_ecg(duration_s=12.347)[0])
    header_claims_more(f)
    tracemalloc.start()
    with pytest.raises(TruncatedFileError, match="only .* bytes follow the header"):
        read_acq(f)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20


def test_truncated_compressed_file_is_refused(tmp_path, acq_dir):
    from ecg_pipeline.errors import TruncatedFileError
    from ecg_pipeline.io.acq import read_acq

    full = (acq_dir / "physio-3.9.1-c.acq").read_bytes()
    f = tmp_path / "cut.acq"
    f.write_bytes(full[: int(len(full) * 0.8)])
    with pytest.raises(TruncatedFileError):
        read_acq(f)
