"""The .acq writer, proven by reading its files back with bioread (and NeuroKit2)."""

from __future__ import annotations

import logging
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ecg_pipeline.io import acq_writer
from ecg_pipeline.io.acq_writer import AcqChannel, AcqMarker, write_acq

bioread = pytest.importorskip("bioread")
from bioread.reader import Reader  # noqa: E402  (after the importorskip)

# Revisions whose written layout differs (acq-format.md and bioread's header structs):
# 61 first post-4.0 layout (graph 2398 B, marker header 25 B, journal header 556 B),
# 108 journal header 590 B, 121 marker header 33 B, 124 graph header 2400 B (hExpectedPaddings),
# 128 marker header 41 B and journal header 594 B, 132 what AcqKnowledge 5 writes.
REVISIONS = [61, 108, 121, 124, 128, 132]
BYTE_ORDERS = ["<", ">"]
ECG100C_SCALE_GAIN_5000 = 10 / 32768 / 5000 * 1000  # mV per count, = 6.103515625e-05
SHARED_ACQ = Path(os.environ.get("ACQ_SAMPLE_DIR", "/work/shared/acq"))


# --- helpers ------------------------------------------------------------------------------------


def _signal(n: int, seed: int, amplitude: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return amplitude * (np.sin(2 * np.pi * t / 97.0) + 0.3 * rng.standard_normal(n))


def _mixed_channels(encoding: str, ticks: int = 3001) -> list[AcqChannel]:
    """ECG divider 1, a divider-3 channel and respiration divider 10, lengths as AcqKnowledge
    writes them (floor of the recording ticks / divider), non-ASCII names and units."""
    encodings = {
        "int16": ["int16"] * 3,
        "float64": ["float64"] * 3,
        "mixed": ["int16", "float64", "int16"],
    }[encoding]
    specs = [
        ("ECG - ECG100C", "mV", 1, 2.0),
        ("Débit", "μS", 3, 5.0),
        ("RESP — RSP100C", "V", 10, 0.5),
    ]
    return [
        AcqChannel(
            name, units, _signal(ticks // div, seed=i, amplitude=amp), divider=div, encoding=enc
        )
        for i, ((name, units, div, amp), enc) in enumerate(zip(specs, encodings))
    ]


def _tolerance(ch: AcqChannel, header_scale: float) -> float:
    """int16 values come back within half a count; float64 values exactly."""
    if ch.encoding == "float64":
        return 0.0
    return header_scale / 2 * (1 + 1e-9)


def _assert_no_bioread_problems(caplog) -> None:
    problems = [
        r for r in caplog.records if r.name.startswith("bioread") and r.levelno >= logging.WARNING
    ]
    assert not problems, [r.getMessage() for r in problems]


def _assert_matches(
    datafile, channels: list[AcqChannel], base_rate: float, loaded=None, n_markers: int = 0
) -> None:
    assert len(datafile.channels) == len(channels)
    assert datafile.samples_per_second == pytest.approx(base_rate, rel=1e-12)
    assert datafile.event_markers is not None
    assert len(datafile.event_markers) == n_markers
    for k, (got, want) in enumerate(zip(datafile.channels, channels)):
        assert got.name == want.name
        assert got.units == want.units
        assert got.frequency_divider == want.divider
        assert got.samples_per_second == pytest.approx(base_rate / want.divider, rel=1e-12)
        assert got.point_count == len(want.data)
        assert got.dtype.kind == ("f" if want.encoding == "float64" else "i")
        if loaded is not None and k not in loaded:
            assert got.data is None
            continue
        assert got.data is not None and len(got.data) == len(want.data)
        tol = _tolerance(want, got.raw_scale_factor)
        if tol == 0.0:
            np.testing.assert_array_equal(got.data, want.data)
        else:
            assert np.max(np.abs(got.data - want.data)) <= tol


def _reference_interleave(channels: list[AcqChannel], dtypes: list[np.dtype]) -> bytes:
    """The layout rule written as a plain tick loop, to check the vectorised writer against."""
    raws = [np.asarray(ch.data).astype(dt) for ch, dt in zip(channels, dtypes)]
    written = [0] * len(channels)
    out = bytearray()
    t = 0
    while any(w < len(r) for w, r in zip(written, raws)):
        for c, ch in enumerate(channels):
            if t % ch.divider == 0 and written[c] < len(raws[c]):
                out += raws[c][written[c] : written[c] + 1].tobytes()  # slice keeps byte order
                written[c] += 1
        t += 1
    return bytes(out)


def _data_block(path: Path) -> bytes:
    reader = Reader.read_headers(str(path))
    with open(path, "rb") as f:
        f.seek(reader.data_start_offset)
        return f.read(reader.data_length)


# --- round trips through bioread ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["int16", "float64", "mixed"])
@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("revision", REVISIONS)
def test_round_trip_matrix(tmp_path, caplog, revision, byte_order, encoding):
    channels = _mixed_channels(encoding)
    path = write_acq(
        tmp_path / "rec.acq", channels, 2000.0, revision=revision, byte_order=byte_order
    )
    assert path == tmp_path / "rec.acq"

    with caplog.at_level(logging.DEBUG, logger="bioread"):
        headers = bioread.read_headers(path)
        full = bioread.read(path)
        singles = [bioread.read(path, channel_indexes=[k]) for k in range(len(channels))]
    _assert_no_bioread_problems(caplog)

    reader = Reader.read_headers(str(path))
    assert reader.file_revision == revision
    assert reader.byte_order_char == byte_order
    assert not reader.is_compressed
    _assert_matches(headers, channels, 2000.0, loaded=set())
    _assert_matches(full, channels, 2000.0)
    for k, single in enumerate(singles):
        _assert_matches(single, channels, 2000.0, loaded={k})
    # Float channels come back in the file's byte order (byte-swapped for ">" on x86).
    for got, want in zip(full.channels, channels):
        if want.encoding == "float64":
            assert got.raw_data.dtype == np.dtype(byte_order + "f8")


@pytest.mark.parametrize("revision", REVISIONS)
def test_layout_sizes_follow_revision(tmp_path, revision):
    channels = _mixed_channels("mixed", ticks=301)
    path = write_acq(tmp_path / "rec.acq", channels, 1000.0, revision=revision)
    graph = 2398 + (2 if revision >= 124 else 0)
    marker = 25 + (8 if revision >= 121 else 0) + (8 if revision >= 128 else 0)
    n = len(channels)
    data = sum(len(ch.data) * (8 if ch.encoding == "float64" else 2) for ch in channels)
    reader = Reader.read_headers(str(path))
    assert reader.data_start_offset == graph + 154 * n + 4 + 4 * n
    assert reader.data_length == data
    assert path.stat().st_size == reader.data_start_offset + data + marker + 4
    # The journal length (last int32) covers only itself: "no journal".
    assert struct.unpack(">i", path.read_bytes()[-4:])[0] == 4
    assert reader.journal is None


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
def test_interleaving_matches_tick_loop(tmp_path, byte_order):
    """Random dividers and ragged lengths (slow channels outlasting fast ones, and the reverse)."""
    rng = np.random.default_rng(7)
    for trial in range(25):
        n_channels = int(rng.integers(1, 5))
        channels = [
            AcqChannel(
                f"ch{c}",
                "u",
                rng.standard_normal(int(rng.integers(1, 60))),
                divider=int(rng.choice([1, 2, 3, 4, 5, 8, 10, 512])),
                encoding=str(rng.choice(["int16", "float64"])),
            )
            for c in range(n_channels)
        ]
        path = write_acq(tmp_path / f"r{trial}.acq", channels, 1000.0, byte_order=byte_order)
        full = bioread.read(path)
        dtypes = [got.raw_data.dtype for got in full.channels]
        raw_in_file = [
            np.rint((ch.data - got.raw_offset) / got.raw_scale_factor)
            if ch.encoding == "int16"
            else ch.data
            for ch, got in zip(channels, full.channels)
        ]
        expected = _reference_interleave(
            [
                AcqChannel(c.name, c.units, r, c.divider, c.encoding)
                for c, r in zip(channels, raw_in_file)
            ],
            dtypes,
        )
        assert _data_block(path) == expected
        _assert_matches(full, channels, 1000.0)


def test_multi_chunk_file_with_channel_ending_early(tmp_path, caplog):
    """Larger than bioread's 256 KiB read chunks, with one channel ending in an early chunk."""
    channels = [
        AcqChannel("ECG - ECG100C", "mV", _signal(200_000, 1), divider=1),
        AcqChannel("short", "V", _signal(1_000, 2), divider=2, encoding="float64"),
        AcqChannel("RESP", "V", _signal(20_000, 3), divider=10),
    ]
    path = write_acq(tmp_path / "big.acq", channels, 1000.0)
    with caplog.at_level(logging.DEBUG, logger="bioread"):
        _assert_matches(bioread.read(path), channels, 1000.0)
        small_chunks = Reader.read(str(path), target_chunk_size=4096).datafile
    _assert_no_bioread_problems(caplog)
    _assert_matches(small_chunks, channels, 1000.0)


def test_given_ecg100c_scale_round_trips_counts_exactly(tmp_path):
    counts = np.random.default_rng(3).integers(-20000, 20000, size=5000)
    values = counts * ECG100C_SCALE_GAIN_5000
    ch = AcqChannel("ECG - ECG100C", "mV", values, scale=ECG100C_SCALE_GAIN_5000)
    full = bioread.read(write_acq(tmp_path / "ecg.acq", [ch], 1000.0))
    got = full.channels[0]
    assert got.raw_scale_factor == ECG100C_SCALE_GAIN_5000 == 6.103515625e-05
    np.testing.assert_array_equal(got.raw_data, counts)
    np.testing.assert_array_equal(got.data, values)


def test_auto_scale_leaves_headroom_and_honours_offset(tmp_path):
    values = 3.0 + _signal(4000, 4, amplitude=0.01)
    ch = AcqChannel("EDA", "μS", values, offset=3.0)
    got = bioread.read(write_acq(tmp_path / "eda.acq", [ch], 1000.0)).channels[0]
    assert got.raw_offset == 3.0
    peak_counts = int(np.max(np.abs(got.raw_data)))
    assert 29_000 <= peak_counts <= 32_000  # full resolution, a few percent below full scale
    assert np.max(np.abs(got.data - values)) <= got.raw_scale_factor / 2 * (1 + 1e-9)


def test_constant_zero_channel(tmp_path):
    ch = AcqChannel("flat", "mV", np.zeros(100))
    got = bioread.read(write_acq(tmp_path / "flat.acq", [ch], 500.0)).channels[0]
    np.testing.assert_array_equal(got.data, np.zeros(100))


def test_name_and_units_at_field_limits(tmp_path):
    name = "é" * 19 + "x"  # 39 bytes in UTF-8
    units = "μ" * 9 + "S"  # 19 bytes
    path = write_acq(tmp_path / "n.acq", [AcqChannel(name, units, np.ones(3))], 1000.0)
    got = bioread.read_headers(path)
    assert got.channels[0].name == name
    assert got.channels[0].units == units


def test_real_acqknowledge_data_blocks_are_reproduced(tmp_path):
    """Re-writing the channels of real AcqKnowledge 4.4 files gives their data block byte for byte
    (float64 + int16 channels, dividers 1, 2 and 512, ragged end lengths)."""
    names = ["physio-4.4.0.acq", "small-unicode-4.4.0.acq"]
    if not all((SHARED_ACQ / n).is_file() for n in names):
        pytest.skip(f"real .acq samples not found in {SHARED_ACQ}")
    for name in names:
        src = Reader.read(str(SHARED_ACQ / name))
        channels = [
            AcqChannel(c.name, c.units, c.data, divider=c.frequency_divider, encoding="float64")
            if c.dtype.kind == "f"
            else AcqChannel(
                c.name,
                c.units,
                c.data,
                divider=c.frequency_divider,
                scale=c.raw_scale_factor,
                offset=c.raw_offset,
            )
            for c in src.datafile.channels
        ]
        out = write_acq(
            tmp_path / name,
            channels,
            src.samples_per_second,
            revision=src.file_revision,
            byte_order=src.byte_order_char,
        )
        with open(SHARED_ACQ / name, "rb") as f:
            f.seek(src.data_start_offset)
            assert _data_block(out) == f.read(src.data_length), name


# --- determinism and atomicity ------------------------------------------------------------------


def test_same_inputs_give_identical_bytes(tmp_path):
    channels = _mixed_channels("mixed")
    a = write_acq(tmp_path / "a.acq", channels, 2000.0).read_bytes()
    b = write_acq(tmp_path / "b.acq", channels, 2000.0).read_bytes()
    write_acq(tmp_path / "a.acq", channels, 2000.0)  # overwrite in place
    assert a == b == (tmp_path / "a.acq").read_bytes()


def test_successful_write_leaves_only_the_target(tmp_path):
    write_acq(str(tmp_path / "rec.acq"), _mixed_channels("int16"), 1000.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.acq"]


def test_bad_channel_leaves_no_file(tmp_path):
    good = AcqChannel("ECG", "mV", np.zeros(10))
    bad = AcqChannel("RESP", "V", np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="RESP"):
        write_acq(tmp_path / "rec.acq", [good, bad], 1000.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [False, True])
def test_failure_while_writing_keeps_target_intact(tmp_path, monkeypatch, existing):
    target = tmp_path / "rec.acq"
    if existing:
        target.write_bytes(b"old complete file")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(acq_writer.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_acq(target, _mixed_channels("int16"), 1000.0)
    if existing:
        assert target.read_bytes() == b"old complete file"
        assert [p.name for p in tmp_path.iterdir()] == ["rec.acq"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_temporary_file_is_hidden_in_target_folder(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(acq_writer.os, "replace", spy)
    write_acq(tmp_path / "rec.acq", _mixed_channels("int16"), 1000.0)
    ((src, dst),) = seen
    assert src.parent == dst.parent == tmp_path
    # Hidden, and named like ecg_pipeline.io.atomic's temp files so that leftovers get cleaned.
    assert src.name.startswith(f".rec.acq.tmp-{os.getpid()}.")


# --- validation ---------------------------------------------------------------------------------


def _ch(**kw) -> AcqChannel:
    args = dict(name="ECG", units="mV", data=np.zeros(10))
    args.update(kw)
    return AcqChannel(**args)


@pytest.mark.parametrize(
    "channels, kwargs, message",
    [
        ([], {}, "no channels"),
        ([_ch(data=np.zeros((2, 5)))], {}, "1-D"),
        ([_ch(data=np.zeros(0))], {}, "1 to"),
        ([_ch(data=np.array([1.0, np.inf]))], {}, "finite"),
        ([_ch(data=np.array([np.nan]))], {}, "finite"),
        ([_ch(data=np.array([1 + 2j]))], {}, "real numbers"),
        ([_ch(data=np.array(["a"]))], {}, "real numbers"),
        ([_ch(divider=0)], {}, "divider"),
        ([_ch(divider=40000)], {}, "divider"),
        ([_ch(divider=2.0)], {}, "divider"),
        ([_ch(divider=4093), _ch(divider=4091)], {}, "repeat only every"),
        ([_ch(name="x" * 40)], {}, "40 bytes"),
        ([_ch(name="é" * 20)], {}, "40 bytes"),
        ([_ch(name="a\0b")], {}, "NUL"),
        ([_ch(units="u" * 20)], {}, "units"),
        ([_ch(encoding="int32")], {}, "encoding"),
        ([_ch(encoding="float64", scale=0.1)], {}, "int16 channels only"),
        ([_ch(encoding="float64", offset=1.0)], {}, "int16 channels only"),
        ([_ch(scale=0.0)], {}, "scale"),
        ([_ch(scale=-1.0)], {}, "scale"),
        ([_ch(offset=np.nan)], {}, "offset"),
        ([_ch(data=np.array([0.0, 2.1]), scale=ECG100C_SCALE_GAIN_5000)], {}, "do not fit int16"),
        (["not a channel"], {}, "not an AcqChannel"),
        ([_ch()], {"base_rate_hz": 0.0}, "base_rate_hz"),
        ([_ch()], {"base_rate_hz": -1000.0}, "base_rate_hz"),
        ([_ch()], {"base_rate_hz": float("nan")}, "base_rate_hz"),
        ([_ch()], {"base_rate_hz": float("inf")}, "base_rate_hz"),
        ([_ch()], {"revision": 60}, "revision"),
        ([_ch()], {"revision": 45}, "revision"),
        ([_ch()], {"revision": 70000}, "revision"),
        ([_ch()], {"revision": True}, "revision"),
        ([_ch()], {"byte_order": "="}, "byte_order"),
    ],
)
def test_invalid_inputs_raise_value_error(tmp_path, channels, kwargs, message):
    kwargs = {"base_rate_hz": 1000.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_acq(tmp_path / "rec.acq", channels, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_overflow_error_names_the_channel(tmp_path):
    ch = _ch(name="ECG - ECG100C", data=np.array([0.0, 2.1]), scale=ECG100C_SCALE_GAIN_5000)
    with pytest.raises(ValueError, match=r"channel 1 \('ECG - ECG100C'\)"):
        write_acq(tmp_path / "rec.acq", [_ch(name="other"), ch], 1000.0)


# --- event markers ------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DATE_MS = 1454430656276  # 2016-02-02 16:30:56.276 UTC, the date of physio-4.4.0's first marker


def _item_len(revision: int) -> int:
    """Marker item struct size: 16 bytes, + 8 unknown from 121, + llDateCreated from 128."""
    return 16 + (8 if revision >= 121 else 0) + (8 if revision >= 128 else 0)


def _markers(revision: int) -> list[AcqMarker]:
    """For _mixed_channels (3001 ticks, dividers 1, 3, 10): global and per-channel markers, the
    first and last tick, an empty and a non-ASCII text, given out of position order."""
    date = DATE_MS if revision >= 128 else 0
    return [
        AcqMarker(0, "Segment 1", type_code="apnd", date_created_ms=date),
        AcqMarker(1500, "post run", type_code="flag"),
        AcqMarker(500, "rest"),
        AcqMarker(2999, "Deep breathing", channel_index=2, type_code="usr1", date_created_ms=date),
        AcqMarker(1201, "Débit ↑ — pic 😀", channel_index=1, type_code="max "),
        AcqMarker(np.int64(3000), "", channel_index=0, type_code="qrs "),
    ]


def _assert_markers_match(datafile, markers: list[AcqMarker], channels, base_rate, revision):
    got = datafile.event_markers
    assert len(got) == len(markers)
    for g, m in zip(got, markers):
        assert g.text == m.text
        assert g.sample_index == m.sample_index
        assert g.time_index == pytest.approx(m.sample_index / base_rate, rel=1e-12)
        assert g.type_code == m.type_code
        if m.channel_index is None:
            assert g.channel_number is None
        else:
            # bioread reports the channel's nChanOrder (index + 1 as written), not the index.
            assert g.channel_number == m.channel_index + 1
            chan = datafile.channel_order_map[g.channel_number]
            assert chan.name == channels[m.channel_index].name
        if revision >= 128:
            assert g.date_created_utc == EPOCH + timedelta(milliseconds=m.date_created_ms)
        else:
            assert g.date_created_utc is None


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("revision", REVISIONS)
def test_markers_round_trip(tmp_path, caplog, revision, byte_order):
    channels = _mixed_channels("mixed")
    markers = _markers(revision)
    path = write_acq(
        tmp_path / "m.acq",
        channels,
        2000.0,
        revision=revision,
        byte_order=byte_order,
        markers=markers,
    )
    with caplog.at_level(logging.DEBUG, logger="bioread"):
        headers = bioread.read_headers(path)
        full = bioread.read(path)
        reader = Reader.read_headers(str(path))
    _assert_no_bioread_problems(caplog)
    for datafile in (headers, full):
        _assert_markers_match(datafile, markers, channels, 2000.0, revision)
    # The data and the (absent) journal after the markers are unaffected.
    _assert_matches(full, channels, 2000.0, n_markers=len(markers))
    assert reader.journal is None
    assert full.event_markers[1].type == "Flag"  # bioread's name for the style
    assert full.event_markers[0].type == "Append"
    # Item sizes follow the revision, each followed by its NUL-terminated UTF-8 text.
    items = reader.marker_reader.all_headers[1:]  # after the marker header
    assert [h.struct_length for h in items] == [_item_len(revision)] * len(markers)
    assert [h.text_length for h in items] == [len(m.text.encode()) + 1 for m in markers]
    marker_bytes = 25 + (8 if revision >= 121 else 0) + (8 if revision >= 128 else 0)
    marker_bytes += sum(h.effective_len_bytes for h in items)
    size = reader.data_start_offset + reader.data_length + marker_bytes + 4
    assert path.stat().st_size == size


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("revision", REVISIONS)
def test_no_markers_is_an_empty_list_and_the_default(tmp_path, revision, byte_order):
    channels = _mixed_channels("int16", ticks=300)
    kwargs = {"revision": revision, "byte_order": byte_order}
    default = write_acq(tmp_path / "d.acq", channels, 1000.0, **kwargs)
    empty = write_acq(tmp_path / "e.acq", channels, 1000.0, markers=[], **kwargs)
    assert default.read_bytes() == empty.read_bytes()
    assert bioread.read(empty).event_markers == []


def test_marker_fields_at_their_limits(tmp_path):
    channels = [_ch(data=np.zeros(5)), _ch(name="slow", data=np.zeros(3), divider=4)]
    markers = [
        AcqMarker(11, "x" * 32766, channel_index=1),  # last tick of the longest channel (3 x 4)
        AcqMarker(0, "é" * 16383, type_code="    ", date_created_ms=2**63),
    ]
    full = bioread.read(write_acq(tmp_path / "l.acq", channels, 1000.0, markers=markers))
    assert [(m.sample_index, m.text, m.channel_number) for m in full.event_markers] == [
        (11, "x" * 32766, 2),
        (0, "é" * 16383, None),
    ]
    assert full.event_markers[1].type_code == "    "
    assert full.event_markers[1].date_created_utc is None  # too far out for a datetime


def _mk(**kw) -> AcqMarker:
    args = dict(sample_index=0, text="rest")
    args.update(kw)
    return AcqMarker(**args)


@pytest.mark.parametrize(
    "markers, kwargs, message",
    [
        ([_mk(sample_index=-1)], {}, "sample_index"),
        ([_mk(sample_index=10)], {}, r"0 to 9, not 10"),  # 10 samples: ticks 0 to 9
        ([_mk(sample_index=2.0)], {}, "sample_index"),
        ([_mk(sample_index=True)], {}, "sample_index"),
        ([_mk(sample_index=None)], {}, "sample_index"),
        ([_mk(text="x" * 32767)], {}, "32767 bytes"),
        ([_mk(text="é" * 16384)], {}, "32768 bytes"),
        ([_mk(text="a\0b")], {}, "NUL"),
        ([_mk(text=None)], {}, "str text"),
        ([_mk(channel_index=-1)], {}, "channel_index"),
        ([_mk(channel_index=1)], {}, "channel_index"),  # one channel: index 0 only
        ([_mk(channel_index=0.0)], {}, "channel_index"),
        ([_mk(type_code="usr")], {}, "type_code"),
        ([_mk(type_code="flags")], {}, "type_code"),
        ([_mk(type_code="flaé")], {}, "type_code"),
        ([_mk(type_code="fl\0g")], {}, "type_code"),
        ([_mk(type_code=b"flag")], {}, "type_code"),
        ([_mk(date_created_ms=-1)], {}, "date_created_ms"),
        ([_mk(date_created_ms=2**64)], {}, "date_created_ms"),
        ([_mk(date_created_ms=DATE_MS)], {"revision": 124}, "revision 128"),
        ([_mk(), ("rest", 5)], {}, "marker 1 must be an AcqMarker"),
    ],
)
def test_invalid_markers_raise_value_error(tmp_path, markers, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_acq(tmp_path / "rec.acq", [_ch()], 1000.0, markers=markers, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_marker_error_names_the_marker(tmp_path):
    markers = [_mk(), _mk(sample_index=99, text="post run")]
    with pytest.raises(ValueError, match=r"marker 1 \('post run'\): sample_index"):
        write_acq(tmp_path / "rec.acq", [_ch()], 1000.0, markers=markers)


@pytest.mark.parametrize("revision, byte_order", [(128, ">"), (132, "<"), (121, ">"), (61, "<")])
def test_real_markers_are_rewritten(tmp_path, acq_dir, revision, byte_order):
    """physio-4.4.0.acq's 10 markers (4 global, 6 on channels with nChanOrder 1, 7 and 8; styles
    apnd, rein, reot, flag, scr) written back come out with the same texts, positions, channels,
    styles and (from revision 128) creation dates."""
    src = bioread.read(acq_dir / "physio-4.4.0.acq")
    assert len(src.event_markers) == 10
    channels = [
        AcqChannel(c.name, c.units, c.data, divider=c.frequency_divider, encoding="float64")
        for c in src.channels
    ]
    index_of_order = {c.order_num: k for k, c in enumerate(src.channels)}
    markers = [
        AcqMarker(
            m.sample_index,
            m.text,
            channel_index=None if m.channel_number is None else index_of_order[m.channel_number],
            type_code=m.type_code,
            date_created_ms=(m.date_created_utc - EPOCH) // timedelta(milliseconds=1)
            if revision >= 128
            else 0,
        )
        for m in src.event_markers
    ]
    path = write_acq(
        tmp_path / "physio.acq",
        channels,
        src.samples_per_second,
        revision=revision,
        byte_order=byte_order,
        markers=markers,
    )
    out = bioread.read_headers(path)
    _assert_markers_match(out, markers, channels, src.samples_per_second, revision)
    for got, want in zip(out.event_markers, src.event_markers):
        assert (got.text, got.sample_index, got.time_index, got.type_code) == (
            want.text,
            want.sample_index,
            want.time_index,
            want.type_code,
        )
        if want.channel_number is None:
            assert got.channel_number is None
        else:
            got_chan = out.channel_order_map[got.channel_number]
            assert got_chan.name == src.channel_order_map[want.channel_number].name
    if revision >= 128:
        assert [m.date_created_utc for m in out.event_markers] == [
            m.date_created_utc for m in src.event_markers
        ]


# --- other readers ------------------------------------------------------------------------------


def test_neurokit2_reads_written_file(tmp_path):
    nk = pytest.importorskip("neurokit2")
    ecg = _signal(18_000, 5, amplitude=1.5)
    resp = _signal(1_800, 6)
    path = write_acq(
        tmp_path / "nk.acq",
        [
            AcqChannel("ECG - ECG100C", "mV", ecg),
            AcqChannel("RESP - RSP100C", "V", resp, divider=10),
        ],
        1000.0,
    )
    df, rate = nk.read_acqknowledge(str(path))
    assert rate == 1000.0
    assert list(df.columns) == ["ECG - ECG100C", "RESP - RSP100C"]
    assert len(df) == 18_000  # resp resampled from 100 Hz up to the ECG rate
    scale = bioread.read_headers(path).channels[0].raw_scale_factor
    assert np.max(np.abs(df["ECG - ECG100C"].to_numpy() - ecg)) <= scale / 2 * (1 + 1e-9)
