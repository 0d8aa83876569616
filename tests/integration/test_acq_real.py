"""Every real BIOPAC file in ../shared/acq either reads or is refused with a clear reason."""

import numpy as np
import pytest
from helpers import demo_ecg, write_ecg_file

from ecg_pipeline.config import ChannelSettings
from ecg_pipeline.errors import AmbiguousChannelError, ChannelSelectionError, NoEcgChannelError
from ecg_pipeline.io.acq import list_channels, read_acq

pytestmark = pytest.mark.integration

# file -> (ECG channel name, rate, samples)
READABLE = {
    "physio-4.4.0.acq": ("EKG - ERS100C", 1000.0, 61893),  # rev 128, big-endian, uncompressed
    "physio-3.9.1-c.acq": ("EKG - ERS100C", 1000.0, 61893),  # rev 45, compressed
    "nojournal-5.0.1-c.acq": ("EKG - ERS100C", 1000.0, 61893),  # rev 132, compressed
    "small-unicode-4.4.0.acq": ("EKG - ERS100C", 1000.0, 4190),  # non-ASCII names
    "r42_test.acq": ("ECG (.05 - 150 Hz)", 1000.0, 7901),  # rev 42
}


@pytest.mark.parametrize("name", sorted(READABLE))
def test_real_files_read(acq_dir, name):
    rec = read_acq(acq_dir / name)
    channel, fs, n = READABLE[name]
    assert rec.channel_name == channel and rec.units == "mV"
    (seg,) = rec.segments
    assert seg.fs_hz == fs and seg.samples.shape == (n,)
    assert seg.samples.dtype == np.float64 and seg.samples.dtype.isnative
    assert np.isfinite(seg.samples).all() and seg.samples.std() > 0


def test_same_recording_saved_by_three_versions_gives_identical_ecg(acq_dir):
    arrays = [
        read_acq(acq_dir / f).segments[0].samples
        for f in ("physio-4.4.0.acq", "physio-3.9.1-c.acq", "nojournal-5.0.1-c.acq")
    ]
    np.testing.assert_array_equal(arrays[0], arrays[1])
    np.testing.assert_array_equal(arrays[0], arrays[2])


def test_mixed_rates_in_one_file_are_reported(acq_dir):
    rates = {c.name: c.fs_hz for c in list_channels(acq_dir / "physio-4.4.0.acq")}
    assert rates["EKG - ERS100C"] == 1000.0
    assert rates["RESP - RSP100C"] == pytest.approx(3.90625)
    assert rates["EDA - GSR100C"] == 2000.0


def test_no_ecg_channel_lists_what_was_found(acq_dir):
    with pytest.raises(NoEcgChannelError) as exc:
        read_acq(acq_dir / "iso_8859_1.acq")
    message = str(exc.value)
    assert "iso_8859_1.acq" in message and "no ECG channel" in message
    for name in ("Débit", "Poeso", "Paw", "Pgast"):
        assert name in message


def test_r35_refused_without_a_channel_choice(acq_dir):
    with pytest.raises(NoEcgChannelError, match="'Analog input', \\[1\\] 'Analog input'"):
        read_acq(acq_dir / "r35_test.acq")


def test_r35_reads_when_the_configuration_names_a_channel_by_index(acq_dir):
    rec = read_acq(acq_dir / "r35_test.acq", ChannelSettings(index=1))
    assert rec.native_fs_hz == 100.0 and len(rec.segments[0].samples) == 31486


def test_r35_name_alone_is_ambiguous(acq_dir):
    with pytest.raises(AmbiguousChannelError, match="2 channels are named 'Analog input'"):
        read_acq(acq_dir / "r35_test.acq", ChannelSettings(name="Analog input"))


def test_configured_index_out_of_range(acq_dir):
    with pytest.raises(ChannelSelectionError, match="index 9 not in file"):
        read_acq(acq_dir / "r42_test.acq", ChannelSettings(index=9))


def test_two_ecg_channels_are_ambiguous_unless_one_is_chosen(tmp_path):
    ecg, _ = demo_ecg(duration_s=4.0)
    f = write_ecg_file(tmp_path / "S01_rest.acq", ecg, extra=[("ECG100C - ECG100C", -ecg)])
    with pytest.raises(AmbiguousChannelError, match="2 channels look like ECG"):
        read_acq(f)
    rec = read_acq(f, ChannelSettings(name="ECG100C - ECG100C"))
    np.testing.assert_allclose(rec.segments[0].samples, -ecg, atol=1e-3)
    assert read_acq(f, ChannelSettings(index=0)).channel_name == "ECG - ECG100C"


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_float_channels_of_either_byte_order_come_back_native(tmp_path, byte_order):
    from ecg_pipeline.io.acq_writer import AcqChannel, write_acq

    ecg, _ = demo_ecg(duration_s=4.0)
    f = write_acq(
        tmp_path / "f.acq",
        [AcqChannel("ECG", "mV", ecg, encoding="float64")],
        1000.0,
        byte_order=byte_order,
    )
    samples = read_acq(f).segments[0].samples
    assert samples.dtype.isnative
    np.testing.assert_array_equal(samples, ecg)


def test_reader_opens_read_only(acq_dir, tmp_path):
    import shutil

    f = tmp_path / "ro.acq"
    shutil.copy(acq_dir / "r42_test.acq", f)
    f.chmod(0o444)
    assert read_acq(f).native_fs_hz == 1000.0


def _with_int(acq_dir, tmp_path, offset: int, value: int, fmt: str = ">i"):
    """physio-4.4.0.acq (big-endian) with one header integer overwritten."""
    import struct

    data = bytearray((acq_dir / "physio-4.4.0.acq").read_bytes())
    data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    out = tmp_path / "corrupt.acq"
    out.write_bytes(bytes(data))
    return out


def test_a_marker_count_the_file_cannot_hold_is_refused_at_once(acq_dir, tmp_path):
    # bioread would read 2**30 marker headers one Python object at a time (hours, gigabytes).
    import time

    from ecg_pipeline.errors import TruncatedFileError

    marker_header = 1371916  # physio-4.4.0.acq's MarkerHeader; its count (lMarkersExtra) at +4
    path = _with_int(acq_dir, tmp_path, marker_header + 4, 2**30)
    started = time.perf_counter()
    with pytest.raises(TruncatedFileError, match="header claims 1073741823 MarkerItemHeader"):
        read_acq(path)
    assert time.perf_counter() - started < 5


def test_frequency_dividers_whose_pattern_outgrows_the_data_are_refused(acq_dir, tmp_path):
    from ecg_pipeline.errors import NotAcqFileError

    ecg_header = 4276  # physio-4.4.0.acq's second channel header; nVarSampleDivider at +152
    path = _with_int(acq_dir, tmp_path, ecg_header + 152, 30011, ">h")
    with pytest.raises(NotAcqFileError, match="interleave samples in periods of"):
        read_acq(path)


def test_bioread_logs_nothing_to_the_console(acq_dir, tmp_path, capfd):
    # bioread adds a console handler on import and logs each header it fails to read ("Error
    # reading <class MarkerItemHeader> at offset ..."); the reason reaches our error instead.
    from ecg_pipeline.errors import TruncatedFileError

    data = (acq_dir / "physio-4.4.0.acq").read_bytes()
    cut = tmp_path / "cut.acq"
    cut.write_bytes(data[: 1371916 + 100])  # inside the marker items
    with pytest.raises(TruncatedFileError, match="MarkerItemHeader"):
        read_acq(cut)
    out, err = capfd.readouterr()
    assert "Error reading" not in out + err
