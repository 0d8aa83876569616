"""Reading BIOPAC AcqKnowledge files with bioread: structural checks, ECG channel choice.

Public functions: :func:`list_channels` (headers only) and :func:`read_acq` (one ECG channel).
Files are opened read-only and read once; every failure becomes an error from
:mod:`ecg_pipeline.errors` naming the file and what is wrong.
"""

from __future__ import annotations

import logging
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
from ecg_pipeline.io.recording import RawRecording, Segment


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
    reader = Reader(fileobj)
    # bioread logs header problems and carries on; we want them as one clear refusal.
    logging.getLogger("bioread").disabled = True
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
    finally:
        logging.getLogger("bioread").disabled = False
    if reader.datafile is None or not reader.channel_headers:
        raise NotAcqFileError(path, "not an AcqKnowledge file: no channel headers found")
    _check_data_fits(reader, size, path)
    return reader


def _describe_unreadable(fileobj, exc: Exception) -> str:
    """Say what the bytes look like, so a person knows whether the file is blank, text or garbage."""
    fileobj.seek(0)
    head = fileobj.read(512)
    if not head.strip(b"\0"):
        kind = "all bytes are zero (a blank or preallocated file)"
    elif all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        kind = f"it looks like a text file (starts {head[:24].decode('ascii')!r})"
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
        try:
            reader._read_data([index])
        except Exception as exc:  # ValueError, TypeError, zlib.error on cut data blocks
            raise TruncatedFileError(
                path, f"data block unreadable ({type(exc).__name__}: {exc}); truncated or corrupt"
            ) from exc
    ch = reader.datafile.channels[index]
    # Big-endian files give '>f8'; downstream (scipy, pyarrow, torch) wants native order.
    samples = np.asarray(ch.data, dtype=np.float64)
    if samples.shape[0] != infos[index].n_samples:
        raise TruncatedFileError(
            path, f"channel {ch.name!r}: read {samples.shape[0]} of {infos[index].n_samples} samples"
        )
    return RawRecording(
        source_path=str(path),
        channel_name=ch.name,
        units=ch.units,
        segments=[Segment(samples, float(ch.samples_per_second), 0.0)],
        header={"file_revision": str(reader.file_revision), "channel_index": str(index)},
    )
