"""MIT-format annotation reader: ECG-ID's real .atr files, hand-built bytes, truncated files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ecg_pipeline.errors import FormatError
from ecg_pipeline.io.wfdb_annotations import (
    BEAT_SYMBOLS,
    annotation_symbol,
    parse_annotations,
    read_annotation_samples,
    read_annotations,
)

ECG_ID = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ecg-id"
REC_1 = ECG_ID / "Person_01" / "rec_1.atr"


def _ecg_id_atr() -> Path:
    if not REC_1.is_file():
        pytest.skip(f"ECG-ID not found at {ECG_ID}")
    return REC_1


# --- hand-built bytes ---------------------------------------------------------------------------
def word(code: int, value: int = 0) -> bytes:
    return struct.pack("<H", (code << 10) | (value & 0x3FF))


def skip(interval: int) -> bytes:
    """SKIP and its 32-bit interval, high 16-bit word first, each word little-endian."""
    u = interval & 0xFFFFFFFF
    return word(59) + struct.pack("<HH", u >> 16, u & 0xFFFF)


def aux(text: bytes) -> bytes:
    return word(63, len(text)) + text + (b"\0" if len(text) % 2 else b"")


EOF = b"\0\0"
RESOLUTION = word(22, 0) + aux(b"## time resolution: 360")
HAND_BUILT = (
    RESOLUTION
    + word(1, 100)  # N at 100
    + word(62, 1)  # ... on channel 1 (carries over)
    + word(60, 7)  # ... num 7 (carries over)
    + word(27, 50)  # t at 150
    + skip(5000)  # the clock jumps 5000 samples ...
    + word(5, 10)  # ... V at 5160
    + word(61, 3)  # ... subtype 3 (this annotation only)
    + aux(b"(B")  # ... rhythm text
    + skip(-1)
    + word(0, 1)  # null annotation at 5160 (WFDB's way of writing one): not returned
    + word(1, 1023)  # N at 6183
    + word(22, 2)  # a NOTE that is not a definition, at 6185
    + aux(b"odd")
    + EOF
)


def test_hand_built_bytes_with_skip_and_modifiers():
    ann = parse_annotations(HAND_BUILT, "hand.atr")
    assert ann.fs_hz == 360.0
    assert ann.sample.tolist() == [100, 150, 5160, 6183, 6185]
    assert ann.symbol == ["N", "t", "V", "N", '"']
    assert ann.chan.tolist() == [1, 1, 1, 1, 1]
    assert ann.num.tolist() == [7, 7, 7, 7, 7]
    assert ann.subtype.tolist() == [0, 0, 3, 0, 0]
    assert ann.aux == ["", "", "(B", "", "odd"]
    assert ann.is_beat.tolist() == [True, False, True, True, False]
    assert ann.sample.dtype == np.int64


def test_read_annotation_samples_keeps_beats(tmp_path):
    path = tmp_path / "hand.atr"
    path.write_bytes(HAND_BUILT)
    samples, symbols = read_annotation_samples(path)
    assert samples.tolist() == [100, 5160, 6183]
    assert symbols == ["N", "V", "N"]
    all_samples, all_symbols = read_annotation_samples(path, beats_only=False)
    assert len(all_samples) == len(all_symbols) == 5


def test_negative_skip_and_signed_fields():
    data = word(1, 1000) + word(60, 0xFF) + skip(-400) + word(1, 0) + EOF
    ann = parse_annotations(data)
    assert ann.sample.tolist() == [1000, 600]
    assert ann.num.tolist() == [-1, -1]  # num is a signed char, as in the WFDB library
    assert ann.fs_hz is None


def test_symbols_follow_the_wfdb_table():
    assert [annotation_symbol(c) for c in (0, 1, 5, 12, 14, 22, 27, 41)] == [
        " ",
        "N",
        "V",
        "/",
        "~",
        '"',
        "t",
        "r",
    ]
    assert annotation_symbol(45) == "[45]"
    assert "t" not in BEAT_SYMBOLS and "N" in BEAT_SYMBOLS and len(BEAT_SYMBOLS) == 19


def test_hand_built_bytes_match_wfdb_rdann(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    (tmp_path / "hand.atr").write_bytes(HAND_BUILT)
    ref = wfdb.rdann(str(tmp_path / "hand"), "atr")
    ann = read_annotations(tmp_path / "hand.atr")
    assert ann.sample.tolist() == ref.sample.tolist()
    assert ann.symbol == list(ref.symbol)
    assert ann.subtype.tolist() == ref.subtype.tolist()
    assert ann.chan.tolist() == ref.chan.tolist()
    assert ann.num.tolist() == ref.num.tolist()
    assert ann.aux == list(ref.aux_note)
    assert ann.fs_hz == ref.fs


# --- ECG-ID's real files ------------------------------------------------------------------------
def test_real_ecg_id_annotation():
    path = _ecg_id_atr()
    ann = read_annotations(path)
    assert ann.fs_hz == 500.0
    assert len(ann) == 20 and set(ann.symbol) == {"N", "t"}  # R and T peaks of the first beats
    samples, symbols = read_annotation_samples(path)
    assert symbols == ["N"] * 10
    assert samples[:3].tolist() == [352, 727, 1135]
    assert np.all(np.diff(samples) > 0)


def test_real_ecg_id_annotations_match_wfdb_rdann():
    _ecg_id_atr()
    wfdb = pytest.importorskip("wfdb")
    records = (ECG_ID / "RECORDS").read_text().split()
    for record in records[::10]:  # 31 of the 310, every person's first records among them
        ann = read_annotations(ECG_ID / f"{record}.atr")
        ref = wfdb.rdann(str(ECG_ID / record), "atr")
        assert ann.sample.tolist() == ref.sample.tolist(), record
        assert ann.symbol == list(ref.symbol), record
        assert ann.num.tolist() == ref.num.tolist(), record
        assert ann.fs_hz == ref.fs, record


# --- broken files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cut, reason",
    [
        (2, "without its end-of-file word"),  # the EOF word gone
        (1, "odd byte count"),
    ],
)
def test_truncated_real_file_names_the_file(tmp_path, cut, reason):
    data = _ecg_id_atr().read_bytes()
    path = tmp_path / "rec_1.atr"
    path.write_bytes(data[:-cut])
    with pytest.raises(FormatError, match=reason) as info:
        read_annotations(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "data, reason",
    [
        (RESOLUTION[:10], "AUX at byte 2 announces 23 bytes"),
        (word(1, 5) + skip(70000)[:4], "SKIP at byte 2 is cut short"),
        (word(1, 5) + EOF + word(1, 5), "bytes after the end-of-file word"),
        (word(60, 3) + word(1, 5) + EOF, "precedes any annotation"),
        (b"", "without its end-of-file word"),
    ],
)
def test_broken_bytes_raise_format_error(tmp_path, data, reason):
    path = tmp_path / "broken.atr"
    path.write_bytes(data)
    with pytest.raises(FormatError, match=reason) as info:
        read_annotation_samples(path)
    assert info.value.path == str(path)


def test_missing_file_raises_format_error(tmp_path):
    with pytest.raises(FormatError, match="unreadable"):
        read_annotations(tmp_path / "absent.atr")
