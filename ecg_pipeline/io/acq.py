"""Reading BIOPAC AcqKnowledge files with bioread: structural checks, ECG channel choice.

Public functions: :func:`list_channels` (headers only) and :func:`read_acq` (one ECG channel).
Parts of bioread's reader below its public API (``Reader._read_headers``, ``_read_data``,
``data_reader.chunk_byte_pattern``) are used so that a file is parsed once and only the ECG
channel is read; the bioread version is pinned in constraints.txt and the tests compare every
channel of every shared file with ``bioread.read``.
Files are opened read-only and read once; every failure becomes an error from
:mod:`ecg_pipeline.errors` naming the file and what is wrong.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_pipeline.config import ChannelSettings
from ecg_pipeline.errors import (
    AmbiguousChannelError,
    ChannelSelectionError,
    NoEcgChannelError,
    NotAcqFileError,
    TruncatedFileError,
)
from ecg_pipeline.io.recording import EventMarker, RawRecording, Segment


@dataclass(frozen=True)
class ChannelInfo:
    """What the header says about one channel."""

    index: int
    name: str
    units: str
    fs_hz: float
    n_samples: int


def _read_headers(fileobj, path: Path):
    """Parse the headers with bioread's reader, turning its silent failures into errors."""
    from bioread.reader import Reader

    size = os.fstat(fileobj.fileno()).st_size
    if size == 0:
        raise NotAcqFileError(path, "empty file (0 bytes)")
    _bound_bioread_header_counts()
    _quiet_bioread()
    reader = Reader(fileobj)
    try:
        reader._read_headers()
    except Exception as exc:  # bioread raises many types on garbage; all mean "not readable"
        if reader.channel_headers and reader.graph_header is not None:
            # The graph and channel headers parsed: a real file whose later headers (markers,
            # journal, compression headers at the end of compressed files) are cut off.
            if reader.data_length is not None and not reader.is_compressed:
                _check_data_fits(reader, size, path)  # the specific reason, when it is that
            raise TruncatedFileError(
                path,
                f"AcqKnowledge file (revision {reader.file_revision}, "
                f"{len(reader.channel_headers)} channels) ends inside its headers: truncated "
                f"or corrupt ({type(exc).__name__}: {exc})",
            ) from exc
        raise NotAcqFileError(path, _describe_unreadable(fileobj, exc)) from exc
    if reader.datafile is None or not reader.channel_headers:
        raise NotAcqFileError(path, "not an AcqKnowledge file: no channel headers found")
    _check_data_fits(reader, size, path)
    return reader


def _quiet_bioread() -> None:
    """Keep bioread's log lines off the console: every failure it logs and carries on from
    becomes one of our errors instead. bioread adds a console handler of its own on import;
    it is replaced once (idempotent), never toggled, so that threads reading files side by
    side cannot race on it."""
    log = logging.getLogger("bioread")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        for handler in list(log.handlers):
            log.removeHandler(handler)
        log.addHandler(logging.NullHandler())
        log.propagate = False


def _bound_bioread_header_counts() -> None:
    """Make bioread refuse a header count the file's bytes cannot hold, before it loops.

    bioread reads as many marker, channel or padding headers as a count in the file says, one
    Python object each: a corrupt marker count of 2**31 keeps it reading (and allocating about
    90 MB/s) for hours. Each header occupies at least its structure's bytes, so a count whose
    structures do not fit between its offset and the end of the file is corrupt; refusing it
    bounds both the time and the memory of parsing by the file's size. bioread's reader looks
    its ``HeaderReader`` up in its module, so the bounded subclass is installed there once (the
    version is pinned; valid files read exactly as before, which the reader tests check).
    """
    import bioread.reader

    if not getattr(bioread.reader.HeaderReader, "bounded_by_ecg_pipeline", False):
        bioread.reader.HeaderReader = _bounded_header_reader(bioread.reader.HeaderReader)


_STRUCT_LENGTHS: dict[tuple, int] = {}


def _bounded_header_reader(base: type) -> type:
    class BoundedHeaderReader(base):
        bounded_by_ecg_pipeline = True

        def multi_headers(self, num, start_offset, h_class):
            length = self._struct_length(h_class)
            room = max(os.fstat(self.acq_file.fileno()).st_size - start_offset, 0)
            if num < 0 or num * max(length, 1) > room:
                raise ValueError(
                    f"header claims {num} {h_class.__name__} structures of {length} bytes at "
                    f"byte {start_offset}, but only {room} bytes follow"
                )
            if h_class.__name__ == "ChannelDTypeHeader":
                return self._dtype_headers_until_invalid(num, start_offset, h_class)
            return super().multi_headers(num, start_offset, h_class)

        def _struct_length(self, h_class) -> int:
            # Cached: bioread builds a ctypes structure class each time it is asked a header's
            # length (its cache attribute is name-mangled away), about 50 us a time.
            key = (h_class, self.file_revision, self.byte_order_char, self.encoding)
            if key not in _STRUCT_LENGTHS:
                header = h_class.for_revision(
                    self.file_revision, self.byte_order_char, encoding=self.encoding
                )
                _STRUCT_LENGTHS[key] = int(header.struct_length)
            return _STRUCT_LENGTHS[key]

        def _dtype_headers_until_invalid(self, num, start_offset, h_class):
            # bioread scans up to 4096 offsets for the data type headers, reading all `num`
            # at each and keeping them only if all are plausible: stopping at the first
            # implausible one gives the same answer without 4096 x num header objects.
            headers, offset = [], start_offset
            for _ in range(num):
                (header,) = super().multi_headers(1, offset, h_class)
                headers.append(header)
                if not header.possibly_valid:
                    break
                offset += header.effective_len_bytes
            return headers

    return BoundedHeaderReader


def _describe_unreadable(fileobj, exc: Exception) -> str:
    """Say what the bytes look like, so a person knows whether the file is blank, text or garbage."""
    fileobj.seek(0)
    head = fileobj.read(512)
    if not head.strip(b"\0"):
        kind = "all bytes are zero (a blank or preallocated file)"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        # A short prefix only: the message goes to the rejections table and to MLflow.
        kind = f"it looks like a text file (starts {head[:8].decode('ascii')!r})"
    else:
        kind = "its header is not an AcqKnowledge graph header"
    return f"not an AcqKnowledge file: {kind} ({type(exc).__name__}: {exc})"


def _check_data_fits(reader, file_size: int, path: Path) -> None:
    """Refuse a header that claims more samples than the file holds, before allocating."""
    channels = reader.datafile.channels
    if reader.is_compressed:
        for ch, cch in zip(channels, reader.channel_compression_headers):
            end = cch.compressed_data_offset + cch.compressed_data_len
            if end > file_size:
                raise TruncatedFileError(
                    path,
                    f"compressed data of channel {ch.name!r} ends at byte {end}, "
                    f"but the file has {file_size} bytes (truncated)",
                )
            claimed = ch.point_count * ch.sample_size
            if claimed > cch._struct.lUncompressedLen:
                raise TruncatedFileError(
                    path,
                    f"header claims {ch.point_count} samples for channel {ch.name!r}, "
                    f"but its compressed block inflates to {cch._struct.lUncompressedLen} bytes",
                )
        return
    dividers = [int(ch.frequency_divider) for ch in channels]
    if min(dividers) < 1:
        raise NotAcqFileError(path, f"corrupt header: channel frequency dividers {dividers}")
    # Samples interleave in a period of lcm(dividers) base ticks; one period must fit in the
    # data, or reading would build a pattern array larger than the file.
    period_ticks = math.lcm(*dividers)
    period_bytes = sum(ch.sample_size * (period_ticks // d) for ch, d in zip(channels, dividers))
    if period_bytes > max(reader.data_length, 1):
        raise NotAcqFileError(
            path,
            f"corrupt header: frequency dividers {dividers} interleave samples in periods of "
            f"{period_bytes} bytes, longer than the {reader.data_length}-byte data block",
        )
    available = file_size - reader.data_start_offset
    if reader.data_length > available:
        claimed = sum(ch.point_count for ch in channels)
        raise TruncatedFileError(
            path,
            f"header claims {claimed} samples ({reader.data_length} bytes of data) but only "
            f"{max(available, 0)} bytes follow the header (truncated or corrupt)",
        )


def _channel_infos(reader) -> list[ChannelInfo]:
    return [
        ChannelInfo(i, ch.name, ch.units, float(ch.samples_per_second), int(ch.point_count))
        for i, ch in enumerate(reader.datafile.channels)
    ]


def list_channels(path: str | os.PathLike) -> list[ChannelInfo]:
    """Channel names, units, rates and lengths from the headers alone (no sample is read)."""
    path = Path(path)
    with open(path, "rb") as f:
        return _channel_infos(_read_headers(f, path))


def choose_ecg_channel(
    channels: list[ChannelInfo], settings: ChannelSettings, path: str | os.PathLike
) -> int:
    """Pick the ECG channel: configured index, else configured name, else the name pattern.

    Raises
    ------
    ChannelSelectionError
        The configured index or name is not in the file, or a name is shared by channels.
    NoEcgChannelError
        No channel name matches the pattern; the message lists the channels found.
    AmbiguousChannelError
        Several channels match; the message lists them and how to choose.
    """
    found = ", ".join(f"[{c.index}] {c.name!r}" for c in channels)
    if settings.index is not None:
        if settings.index >= len(channels):
            raise ChannelSelectionError(
                path, f"configured channel index {settings.index} not in file; channels: {found}"
            )
        return settings.index
    if settings.name is not None:
        hits = [c.index for c in channels if c.name == settings.name]
        if not hits:
            raise ChannelSelectionError(
                path, f"no channel named {settings.name!r}; channels: {found}"
            )
        if len(hits) > 1:
            raise AmbiguousChannelError(
                path,
                f"{len(hits)} channels are named {settings.name!r} (indexes {hits}); "
                "set [ingest.channel] index to choose one",
            )
        return hits[0]
    pattern = re.compile(settings.pattern)
    hits = [c.index for c in channels if pattern.search(c.name)]
    if not hits:
        raise NoEcgChannelError(
            path,
            f"no ECG channel (no name matches {settings.pattern!r}); channels found: {found}. "
            "Set [ingest.channel] index or name to choose one",
        )
    if len(hits) > 1:
        names = ", ".join(f"[{i}] {channels[i].name!r}" for i in hits)
        raise AmbiguousChannelError(
            path,
            f"{len(hits)} channels look like ECG: {names}; "
            "set [ingest.channel] index or name to choose one",
        )
    return hits[0]


def read_acq(path: str | os.PathLike, channel: ChannelSettings | None = None) -> RawRecording:
    """Read the ECG channel of an AcqKnowledge file, and only that channel.

    Parameters
    ----------
    path : path-like
        The ``.acq`` file; opened read-only, never modified.
    channel : ChannelSettings, optional
        How to choose the channel (index, name or name pattern); default: the one channel whose
        name matches ECG/EKG.

    Returns
    -------
    RawRecording
        One segment at the channel's own rate, float64 in native byte order, physical units.

    Raises
    ------
    IngestError
        A subclass naming the file and the reason: not an AcqKnowledge file, truncated, no or
        ambiguous ECG channel.
    """
    path = Path(path)
    channel = channel or ChannelSettings()
    with open(path, "rb") as f:
        reader = _read_headers(f, path)
        infos = _channel_infos(reader)
        index = choose_ecg_channel(infos, channel, path)
        ch = reader.datafile.channels[index]
        try:
            if reader.is_compressed:
                reader._read_data([index])
                samples = np.asarray(ch.data, dtype=np.float64)
            else:
                samples = _scaled(ch, _read_interleaved_channel(path, reader, index))
        except Exception as exc:  # ValueError, TypeError, zlib.error on cut data blocks
            raise TruncatedFileError(
                path, f"data block unreadable ({type(exc).__name__}: {exc}); truncated or corrupt"
            ) from exc
    name, units, fs_hz, revision = (
        ch.name,
        ch.units,
        float(ch.samples_per_second),
        reader.file_revision,
    )
    markers = _event_markers(reader)
    _release(reader)
    if samples.shape[0] != infos[index].n_samples:
        raise TruncatedFileError(
            path, f"channel {name!r}: read {samples.shape[0]} of {infos[index].n_samples} samples"
        )
    return RawRecording(
        source_path=str(path),
        channel_name=name,
        units=units,
        segments=[Segment(samples, fs_hz, 0.0)],
        header={"file_revision": str(revision), "channel_index": str(index)},
        markers=markers,
    )


def _event_markers(reader) -> tuple[EventMarker, ...]:
    """The file's event markers, already parsed with the headers (no further read).

    bioread counts a marker's position in ticks of the graph's base rate, whatever channel it
    is attached to, so seconds are ticks x the base sample time.
    """
    tick_s = float(reader.graph_header.sample_time) / 1000.0
    markers = []
    for m in getattr(reader, "event_markers", None) or []:
        channel, number = getattr(m, "channel", None), getattr(m, "channel_number", None)
        if channel is not None:
            where = str(channel.name)
        else:  # a channel the file no longer holds, or a global marker
            where = None if number is None else f"channel number {number}"
        markers.append(
            EventMarker(str(m.text or "").strip(), float(m.sample_index) * tick_s, where)
        )
    return tuple(markers)


def _read_interleaved_channel(path: Path, reader, index: int) -> np.ndarray:
    """The raw samples of one channel of an uncompressed file, read through a memory map.

    Samples of all channels are interleaved in a pattern that repeats every least common multiple
    of the frequency dividers (bioread's ``chunk_byte_pattern`` gives one period). Whole periods
    are gathered with one strided copy of this channel's bytes, so neither the other channels nor
    bioread's chunk buffers are ever materialised. Each channel stops after its own point count,
    which changes the pattern near the end: once a channel is exhausted it drops out of the
    period, and a partial period keeps each channel's first remaining bytes (bioread's rule).
    """
    from bioread.data_reader import chunk_byte_pattern

    channels = reader.datafile.channels
    period = chunk_byte_pattern(channels, 1).astype(np.int64)
    remaining = np.array([c.point_count * c.sample_size for c in channels], dtype=np.int64)
    data = np.memmap(
        path,
        dtype=np.uint8,
        mode="r",
        offset=reader.data_start_offset,
        shape=(int(remaining.sum()),),
    )
    pieces, pos = [], 0
    while remaining[index] > 0:
        pattern = period[remaining[period] > 0]  # exhausted channels drop out
        per_period = np.bincount(pattern, minlength=len(channels))
        active = per_period > 0
        full = int((remaining[active] // per_period[active]).min())
        if full:
            block = data[pos : pos + full * len(pattern)].reshape(full, len(pattern))
            pieces.append(block[:, pattern == index].reshape(-1))
            pos += full * len(pattern)
            remaining -= per_period * full
            continue
        # A partial period: each channel writes only the bytes it has left.
        rank = np.zeros_like(pattern)
        for ch in np.flatnonzero(active):
            where = pattern == ch
            rank[where] = np.arange(where.sum())
        tail = pattern[rank < remaining[pattern]]
        taken = data[pos : pos + len(tail)]
        pieces.append(taken[tail == index])
        pos += len(tail)
        remaining -= np.bincount(tail, minlength=len(channels))
    raw = np.concatenate(pieces) if pieces else np.empty(0, np.uint8)
    del data
    return raw.view(channels[index].dtype)


def _scaled(ch, raw: np.ndarray) -> np.ndarray:
    """Physical values exactly as bioread computes them (integers scaled, floats as stored)."""
    out = raw.astype(np.float64)  # native order, whatever the file's byte order
    if raw.dtype.kind != "f":
        # In place, in bioread's order of operations (so values are bit-identical), without
        # the two temporaries that `raw * scale + offset` would allocate.
        out *= ch.raw_scale_factor
        out += ch.raw_offset
    return out


def _release(reader) -> None:
    """Break bioread's Datafile <-> Channel cycle so its buffers go now, not at the next GC."""
    for c in reader.datafile.channels:
        c.datafile = None
        c.raw_data = None
