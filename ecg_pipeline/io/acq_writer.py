"""Write BIOPAC AcqKnowledge ``.acq`` files (uncompressed, post-4.0 layout).

No Python package writes ``.acq`` files, so synthetic recordings for tests and demos are written
here from the byte layout that ``bioread`` reads (see ``shared/notes/acq-format.md``). Only the
fields a reader needs are filled in; every other header byte is zero.

File layout, in order::

    graph header          2398 bytes (2400 from revision 124: + hExpectedPaddings = 0)
    channel headers       154 bytes each (post-4 struct), one per channel
    foreign-data header   int32 length = 4: no foreign data follows
    data-type headers     (nSize, nType) int16 pairs: (2, 2) int16, (8, 1) float64
    interleaved samples   base tick by base tick, channels in header order
    marker header         25 / 33 / 41 bytes by revision, then per marker an item header
                          (16 / 24 / 32 bytes by revision) and its NUL-terminated UTF-8 text
    journal length        int32 = 4: shorter than a journal header, so "no journal"
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ecg_pipeline.io.atomic import atomic_write_bytes

# File revisions (AcqKnowledge versions) at which the written layout changes.
REV_4_0 = 61  # first post-4.0 layout; earlier files use other structs (and Latin-1 text)
REV_4_2X = 121  # marker header and marker items grow by 8 bytes
REV_4_3 = 124  # graph header gains hExpectedPaddings (int16)
REV_4_4 = 128  # marker header grows by 8 more bytes; marker items gain llDateCreated
# Readers guess the byte order by reading lVersion both ways and keeping the smaller value; any
# revision below 2**16 is unambiguous, larger ones could read smaller byte-swapped.
MAX_REVISION = 0xFFFF

GRAPH_HEADER_LEN = 2398
CHANNEL_HEADER_LEN = 154
NAME_FIELD_LEN = 40  # szCommentText; one byte is kept for the terminating NUL
UNITS_FIELD_LEN = 20  # szUnitsText; likewise
MAX_DIVIDER = 0x7FFF  # nVarSampleDivider is an int16
MAX_POINTS = 0x7FFFFFFF  # lBufLength is an int32
# Readers (bioread) build one period of the interleaving pattern, lcm(dividers) ticks x channels,
# in memory: refuse files whose period would make reading them slow or memory-hungry.
# AcqKnowledge's dividers are powers of two, so its period is just the largest divider.
MAX_PATTERN_TICKS = 1 << 20

INT16_MIN, INT16_MAX = -32768, 32767
MAX_MARKER_SAMPLE = 0xFFFFFFFF  # lSample is a uint32
MAX_MARKER_TEXT_BYTES = INT16_MAX - 1  # nTextLength (int16) counts the text plus its NUL
MAX_MARKER_DATE_MS = 2**64 - 1  # llDateCreated is a uint64
# scale=None maps the largest |value - offset| to this raw count: about 8 % headroom below
# full scale, as a real amplifier range would leave, and never an overflow after rounding.
AUTO_SCALE_PEAK_COUNTS = 30000

# (nSize, nType) of the data-type header and the numpy kind of each encoding. AcqKnowledge
# writes nType 1 for float64; bioread accepts 0 or 1.
_DTYPE_CODES = {"int16": (2, 2), "float64": (8, 1)}
_NUMPY_KIND = {"int16": "i2", "float64": "f8"}


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays with == is ambiguous
class AcqChannel:
    """One channel to write.

    Attributes
    ----------
    name : str
        Channel name, e.g. ``"ECG - ECG100C"``; at most 39 bytes in UTF-8.
    units : str
        Physical units, e.g. ``"mV"``; at most 19 bytes in UTF-8.
    data : np.ndarray
        1-D samples in physical units, all finite, at least one.
    divider : int
        Frequency divider: the channel rate is ``base_rate_hz / divider`` (1 to 32767).
    encoding : {"int16", "float64"}
        Sample type in the file. int16 stores ``raw`` with ``value = raw * scale + offset``.
    scale : float or None
        int16 only: physical units per count. None picks one from the data range; a given scale
        (e.g. the ECG100C value ``10 / 32768 / gain * 1000`` mV) must fit the data.
    offset : float
        int16 only: physical value of raw count 0.
    """

    name: str
    units: str
    data: np.ndarray
    divider: int = 1
    encoding: Literal["int16", "float64"] = "int16"
    scale: float | None = None
    offset: float = 0.0


@dataclass(frozen=True)
class AcqMarker:
    """One event marker to write; fields named as bioread's ``EventMarker`` reports them.

    Attributes
    ----------
    sample_index : int
        Position in base-rate ticks (1 / base_rate_hz each) from 0, also for channel markers: on
        a channel with divider d it is that channel's sample ``sample_index // d``.
    text : str
        Label, e.g. ``"rest"``, possibly empty; at most 32766 bytes in UTF-8, no NUL.
    channel_index : int or None
        None for a global marker, else the 0-based index of its channel in write_acq's channels.
        The file holds that channel's nChanOrder, written as index + 1, which bioread reports as
        ``channel_number`` (a key of ``datafile.channel_order_map``).
    type_code : str
        Style, four ASCII characters as in bioread's ``MARKER_TYPE_MAP``: ``"defl"`` (Default),
        ``"flag"``, ``"apnd"`` (new segment), space-padded ones such as ``"max "``.
    date_created_ms : int
        Creation time in ms since 1970-01-01 UTC, stored from revision 128 (4.4) on; bioread
        reads the default 0 as 1970-01-01, and None below revision 128.
    """

    sample_index: int
    text: str
    channel_index: int | None = None
    type_code: str = "defl"
    date_created_ms: int = 0


def write_acq(
    path: str | os.PathLike,
    channels: Sequence[AcqChannel],
    base_rate_hz: float,
    *,
    revision: int = 132,
    byte_order: Literal["<", ">"] = ">",
    markers: Sequence[AcqMarker] = (),
) -> Path:
    """Write channels to an uncompressed AcqKnowledge ``.acq`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file. It is replaced in one step (temporary file in the same folder, fsync,
        ``os.replace``), so it never holds a partial file.
    channels : sequence of AcqChannel
        Channels in file order. Each may have its own divider and length.
    base_rate_hz : float
        Base sampling rate of the file (the rate of a divider-1 channel). Stored as
        ``1000 / base_rate_hz`` milliseconds per tick, so readers get back ``1000 / (1000 / r)``,
        which equals ``r`` exactly for the usual rates (500, 1000, 2000 Hz).
    revision : int
        File revision to claim, 61 (AcqKnowledge 4.0) or above; 132 is what AcqKnowledge 5 writes.
        The graph and marker header sizes follow the revision.
    byte_order : {"<", ">"}
        Little- or big-endian. AcqKnowledge 4.4+ on both platforms writes big-endian.
    markers : sequence of AcqMarker
        Event markers, stored in the given order (AcqKnowledge sorts its own by position).
        Empty (the default): bioread reads ``event_markers == []``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        Invalid arguments: no channels, a revision below 61, a non-positive or non-finite base
        rate, a name or units too long, data that are not 1-D, empty or not finite, a divider out
        of range, dividers whose interleaving period exceeds 2**20 ticks, or int16 data that do
        not fit the given scale; a marker past the longest channel (``len(data) * divider``
        ticks), with a text too long or holding a NUL, a channel_index out of range, a type_code
        not four ASCII characters, or a date below revision 128. Nothing is written then.
    """
    target = Path(path)
    bo, channels, base_rate_hz = _validate_file_args(channels, base_rate_hz, revision, byte_order)
    # Encode everything before touching the file system: a bad channel leaves no trace.
    encoded = [_encode_channel(i, ch, bo) for i, ch in enumerate(channels)]
    dividers = [ch.divider for ch in channels]
    if math.lcm(*dividers) > MAX_PATTERN_TICKS:
        raise ValueError(
            f"dividers {dividers} repeat only every {math.lcm(*dividers)} ticks; readers hold "
            f"one period in memory, so at most {MAX_PATTERN_TICKS} ticks are accepted (use "
            f"dividers that divide each other, e.g. powers of two)"
        )
    header = b"".join(
        [
            _pack_graph_header(bo, revision, len(channels), 1000.0 / base_rate_hz),
            *(
                _pack_channel_header(bo, i, ch, scale, offset, len(raw))
                for i, (ch, (raw, scale, offset)) in enumerate(zip(channels, encoded))
            ),
            _pack_foreign_header(bo),
            *(_pack_dtype_header(bo, ch.encoding) for ch in channels),
        ]
    )
    # Markers may sit on any tick the recording spans: channel c covers len * divider ticks.
    n_ticks = max(len(raw) * d for (raw, _, _), d in zip(encoded, dividers))
    items = [
        _pack_marker_item(bo, revision, m, _validate_marker(i, m, n_ticks, len(channels), revision))
        for i, m in enumerate(markers)
    ]
    data = _interleave([raw for raw, _, _ in encoded], dividers)
    trailer = _pack_marker_header(bo, revision, items) + _pack_no_journal(bo)
    atomic_write_bytes(target, (header, data, trailer))
    return target


# --- validation and encoding --------------------------------------------------------------------


def _validate_file_args(channels, base_rate_hz, revision, byte_order):
    if byte_order not in ("<", ">"):
        raise ValueError(f"byte_order must be '<' or '>', not {byte_order!r}")
    if isinstance(revision, bool) or not isinstance(revision, (int, np.integer)):
        raise ValueError(f"revision must be an int, not {revision!r}")
    if not REV_4_0 <= revision <= MAX_REVISION:
        raise ValueError(
            f"revision {revision} not supported: only the post-4.0 layout (revision "
            f"{REV_4_0} to {MAX_REVISION}) is written"
        )
    try:
        rate = float(base_rate_hz)
    except (TypeError, ValueError):
        raise ValueError(f"base_rate_hz must be a number, not {base_rate_hz!r}") from None
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"base_rate_hz must be finite and > 0, not {base_rate_hz!r}")
    channels = list(channels)
    if not channels:
        raise ValueError("no channels to write: an .acq file needs at least one")
    if len(channels) > 0x7FFF:  # nChannels is an int16
        raise ValueError(f"too many channels ({len(channels)}); at most 32767")
    for i, ch in enumerate(channels):
        if not isinstance(ch, AcqChannel):
            raise ValueError(f"channel {i} is a {type(ch).__name__}, not an AcqChannel")
    return byte_order, channels, rate


def _text_field(i: int, ch: AcqChannel, what: str, value: str, field_len: int) -> bytes:
    """UTF-8 bytes of a name or units, refused if readers would cut or misread them."""
    if not isinstance(value, str):
        raise ValueError(f"channel {i} ({ch.name!r}): {what} must be a str, not {value!r}")
    raw = value.encode("utf-8")
    if b"\0" in raw:  # readers stop at the first NUL
        raise ValueError(f"channel {i} ({ch.name!r}): {what} {value!r} contains a NUL character")
    if len(raw) > field_len - 1:
        raise ValueError(
            f"channel {i} ({ch.name!r}): {what} {value!r} is {len(raw)} bytes in UTF-8; "
            f"at most {field_len - 1} fit"
        )
    return raw


def _encode_channel(i: int, ch: AcqChannel, bo: str) -> tuple[np.ndarray, float, float]:
    """Validate one channel; return (samples in file dtype and byte order, scale, offset)."""
    label = f"channel {i} ({ch.name!r})"
    _text_field(i, ch, "name", ch.name, NAME_FIELD_LEN)
    _text_field(i, ch, "units", ch.units, UNITS_FIELD_LEN)
    if isinstance(ch.divider, bool) or not isinstance(ch.divider, (int, np.integer)):
        raise ValueError(f"{label}: divider must be an int, not {ch.divider!r}")
    if not 1 <= ch.divider <= MAX_DIVIDER:
        raise ValueError(f"{label}: divider must be 1 to {MAX_DIVIDER}, not {ch.divider}")
    if ch.encoding not in _DTYPE_CODES:
        raise ValueError(f"{label}: encoding must be 'int16' or 'float64', not {ch.encoding!r}")

    data = np.asarray(ch.data)
    if data.ndim != 1:
        raise ValueError(f"{label}: data must be 1-D, got shape {data.shape}")
    if data.dtype.kind not in "iuf":
        raise ValueError(f"{label}: data must be real numbers, got dtype {data.dtype}")
    if not 1 <= data.size <= MAX_POINTS:
        raise ValueError(f"{label}: data must hold 1 to {MAX_POINTS} samples, got {data.size}")
    values = data.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{label}: data must be finite; sample {bad} is {values[bad]}")
    file_dtype = np.dtype(bo + _NUMPY_KIND[ch.encoding])

    if ch.encoding == "float64":
        # Readers ignore scale and offset for float channels, so a given one would be lost.
        if ch.scale is not None or ch.offset != 0.0:
            raise ValueError(f"{label}: scale and offset apply to int16 channels only")
        return values.astype(file_dtype), 1.0, 0.0

    offset = _finite_float(label, "offset", ch.offset)
    centred = values - offset
    peak = float(np.max(np.abs(centred)))
    if ch.scale is None:
        scale = peak / AUTO_SCALE_PEAK_COUNTS or 1.0  # 1.0 for an all-constant channel
    else:
        scale = _finite_float(label, "scale", ch.scale)
        if scale <= 0:
            raise ValueError(f"{label}: scale must be > 0, not {ch.scale!r}")
    counts = np.rint(centred / scale)
    if counts.min() < INT16_MIN or counts.max() > INT16_MAX:
        raise ValueError(
            f"{label}: data do not fit int16 with scale {scale!r} and offset {offset!r}: "
            f"values span {float(values.min())!r} to {float(values.max())!r}, int16 covers "
            f"{offset + INT16_MIN * scale!r} to {offset + INT16_MAX * scale!r}; "
            f"use a larger scale, scale=None or float64"
        )
    return counts.astype(file_dtype), scale, offset


def _finite_float(label: str, what: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: {what} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{label}: {what} must be finite, not {value!r}")
    return number


def _validate_marker(i: int, m: AcqMarker, n_ticks: int, n_channels: int, revision: int) -> bytes:
    """Validate one marker against the recording; return its text as UTF-8 bytes."""
    if not isinstance(m, AcqMarker) or not isinstance(m.text, str):
        raise ValueError(f"marker {i} must be an AcqMarker with a str text, not {m!r}")
    label, text = f"marker {i} ({m.text!r})", m.text.encode("utf-8")
    if b"\0" in text:  # AcqKnowledge reads C strings: the text would end there
        raise ValueError(f"{label}: text contains a NUL character")
    if len(text) > MAX_MARKER_TEXT_BYTES:
        raise ValueError(f"{label}: text is {len(text)} bytes in UTF-8; at most 32766 fit")
    last = min(n_ticks, MAX_MARKER_SAMPLE + 1) - 1
    if not (_is_int(m.sample_index) and 0 <= m.sample_index <= last):
        raise ValueError(
            f"{label}: sample_index must be an int in the recording, base ticks 0 to {last}, "
            f"not {m.sample_index!r}"
        )
    chan = m.channel_index
    if chan is not None and not (_is_int(chan) and 0 <= chan < n_channels):
        raise ValueError(
            f"{label}: channel_index must be None (global) or 0 to {n_channels - 1}, not {chan!r}"
        )
    # bioread decodes the style as text and stops at a NUL: four printable ASCII characters.
    code = m.type_code
    if not (isinstance(code, str) and len(code) == 4 and code.isascii() and code.isprintable()):
        raise ValueError(f"{label}: type_code must be 4 printable ASCII characters, not {code!r}")
    date = m.date_created_ms
    # Below revision 128 there is no field for the date: a given one would be lost.
    if not (_is_int(date) and 0 <= date <= MAX_MARKER_DATE_MS) or (date and revision < REV_4_4):
        raise ValueError(
            f"{label}: date_created_ms must be an int from 0 to 2**64 - 1, and 0 below "
            f"revision {REV_4_4} (revision {revision}), not {date!r}"
        )
    return text


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# --- header packing -----------------------------------------------------------------------------


def _graph_header_len(revision: int) -> int:
    return GRAPH_HEADER_LEN + (2 if revision >= REV_4_3 else 0)


def _pack_graph_header(bo: str, revision: int, n_channels: int, sample_time_ms: float) -> bytes:
    """Graph header: revision, where the channel headers start, channel count, tick length."""
    size = _graph_header_len(revision)
    buf = bytearray(size)
    struct.pack_into(bo + "i", buf, 2, revision)  # lVersion
    # lExtItemHeaderLen: offset of the first channel header (or padding header); since
    # hExpectedPaddings (offset 2398, revision 124+) stays 0, the channel headers come next.
    struct.pack_into(bo + "i", buf, 6, size)
    struct.pack_into(bo + "h", buf, 10, n_channels)  # nChannels
    struct.pack_into(bo + "d", buf, 16, sample_time_ms)  # dSampleTime, ms per base tick
    # bCompressed (offset 972) stays 0: the data are stored uncompressed and interleaved.
    return bytes(buf)


def _pack_channel_header(
    bo: str, index: int, ch: AcqChannel, scale: float, offset: float, n_points: int
) -> bytes:
    """Post-4.0 channel header: name, units, point count, int16 scaling and divider."""
    buf = bytearray(CHANNEL_HEADER_LEN)
    # lChanHeaderLen is the stride to the next header; readers use the first one for all.
    struct.pack_into(bo + "i", buf, 0, CHANNEL_HEADER_LEN)
    struct.pack_into(bo + "h", buf, 4, index + 1)  # nNum, 1-based like AcqKnowledge
    buf[6 : 6 + NAME_FIELD_LEN] = ch.name.encode("utf-8").ljust(NAME_FIELD_LEN, b"\0")
    buf[68 : 68 + UNITS_FIELD_LEN] = ch.units.encode("utf-8").ljust(UNITS_FIELD_LEN, b"\0")
    struct.pack_into(bo + "i", buf, 88, n_points)  # lBufLength
    struct.pack_into(bo + "d", buf, 92, scale)  # dAmplScale
    struct.pack_into(bo + "d", buf, 100, offset)  # dAmplOffset
    # nChanOrder keys readers' channel-order map (used by per-channel markers): keep it unique.
    struct.pack_into(bo + "h", buf, 108, index + 1)
    struct.pack_into(bo + "h", buf, 152, ch.divider)  # nVarSampleDivider
    return bytes(buf)


def _pack_foreign_header(bo: str) -> bytes:
    """Foreign-data header whose length (4) covers only itself: the type headers follow."""
    return struct.pack(bo + "i", 4)


def _pack_dtype_header(bo: str, encoding: str) -> bytes:
    """(nSize, nType) of one channel; readers check that the pair is consistent."""
    return struct.pack(bo + "hh", *_DTYPE_CODES[encoding])


def _marker_header_len(revision: int) -> int:
    return 25 + (8 if revision >= REV_4_2X else 0) + (8 if revision >= REV_4_4 else 0)


def _pack_marker_header(bo: str, revision: int, items: list[bytes]) -> bytes:
    """Marker header, then the packed marker items (none: an empty marker list).

    Readers expect the header right after the data, even with no markers; without it they log an
    error and report no markers at all (None) instead of an empty list.
    """
    size = _marker_header_len(revision)
    total = size + sum(len(item) for item in items)
    if total > 0x7FFFFFFF:  # lLength is an int32
        raise ValueError(f"markers take {total} bytes; at most 2**31 - 1 fit")
    buf = bytearray(size)
    struct.pack_into(bo + "i", buf, 0, total)  # lLength: header plus marker items
    struct.pack_into(bo + "i", buf, 4, len(items) + 1)  # lMarkersExtra: the count is this - 1
    # lMarkers: ignored by readers; AcqKnowledge's is not always the count (5 for 10 markers).
    struct.pack_into(bo + "i", buf, 8, len(items))
    return b"".join([bytes(buf), *items])


def _marker_item_len(revision: int) -> int:
    return 16 + (8 if revision >= REV_4_2X else 0) + (8 if revision >= REV_4_4 else 0)


def _pack_marker_item(bo: str, revision: int, m: AcqMarker, text: bytes) -> bytes:
    """One post-4.0 marker item: position, channel, style, date (4.4+), then the text.

    Layout: lSample uint32 | 4 unknown bytes | nChannel int16 | sMarkerStyle char[4] |
    llDateCreated uint64 (4.4+) | 8 unknown bytes (4.2x+) | nTextLength int16 | text + NUL.
    """
    size = _marker_item_len(revision)
    buf = bytearray(size)
    struct.pack_into(bo + "I", buf, 0, m.sample_index)
    # nChannel: -1 for a global marker, else the channel's nChanOrder (index + 1 as written).
    struct.pack_into(bo + "h", buf, 8, -1 if m.channel_index is None else m.channel_index + 1)
    buf[10:14] = m.type_code.encode("ascii")
    if revision >= REV_4_4:
        struct.pack_into(bo + "Q", buf, 14, m.date_created_ms)
    struct.pack_into(bo + "h", buf, size - 2, len(text) + 1)  # nTextLength, NUL included
    return bytes(buf) + text + b"\0"


def _pack_no_journal(bo: str) -> bytes:
    """Journal length covering only itself, smaller than a journal header: no journal."""
    return struct.pack(bo + "i", 4)


# --- data ---------------------------------------------------------------------------------------


def _interleave(samples: list[np.ndarray], dividers: list[int]) -> bytes:
    """Interleave channels the way AcqKnowledge streams them.

    At base tick t, each channel (in header order) with ``t % divider == 0`` writes its next
    sample, until it has written all of its samples. Rather than walking the ticks, compute
    where each sample lands: sample k of channel c sits at tick t = k * d_c, after every
    sample of an earlier channel at ticks <= t and of a later channel at ticks < t.
    All sizes are multiples of 2 bytes, so positions are counted in 2-byte words.
    """
    counts = np.array([len(s) for s in samples], dtype=np.int64)
    divs = np.array(dividers, dtype=np.int64)
    words = np.array([s.dtype.itemsize // 2 for s in samples], dtype=np.int64)
    out = np.empty(int(np.dot(counts, words)), dtype=np.uint16)
    for c, raw in enumerate(samples):
        ticks = np.arange(counts[c], dtype=np.int64) * divs[c]
        pos = np.arange(counts[c], dtype=np.int64) * words[c]  # own earlier samples
        for o in range(len(samples)):
            if o == c:
                continue
            if o < c:  # samples of channel o at ticks <= t
                before = ticks // divs[o] + 1
            else:  # samples of channel o at ticks < t
                before = (ticks + divs[o] - 1) // divs[o]
            pos += np.minimum(before, counts[o]) * words[o]
        # Raw bytes, already in file byte order, viewed as words; never interpreted as numbers.
        chunks = raw.view(np.uint16).reshape(len(raw), int(words[c]))
        out[pos[:, None] + np.arange(words[c])] = chunks
    return out.tobytes()
