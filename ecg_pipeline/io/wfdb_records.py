"""Reader for WFDB records (PhysioNet), with the ECG-ID database's layout and header comments.

ECG-ID (ecgiddb 1.0.0): ``Person_NN/rec_K.hea/.dat/.atr``, 20 s at 500 Hz, two signals in mV
("ECG I" raw, "ECG I filtered" the database's own filtered copy), and header comments
``# Age: 25``, ``# Sex: male``, ``# ECG date: 07.12.2004`` (day.month.year).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ecg_pipeline.config import ECG_CHANNEL_PATTERN, ChannelSettings
from ecg_pipeline.errors import ChannelSelectionError, FormatError
from ecg_pipeline.io.acq import ChannelInfo, choose_ecg_channel
from ecg_pipeline.io.recording import RawRecording, Segment

ECG_ID_PERSON = re.compile(r"^Person_(?P<person>[0-9]+)$")
ECG_ID_RECORD = re.compile(r"^rec_(?P<record>[0-9]+)\.hea$")

# Header-comment keys renamed on the way in; the rest keep their snake_case key.
_COMMENT_KEYS = {"ecg_date": "date"}
# Day-first formats: ECG-ID writes 07.12.2004 for 7 December 2004.
_DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y")


@dataclass(frozen=True)
class EcgIdName:
    """What an ECG-ID path says.

    Attributes
    ----------
    person : str
        Two-digit person id as in the folder name (``Person_01`` -> ``"01"``).
    record : str
        Record number as in the file name (``rec_10.hea`` -> ``"10"``).
    """

    person: str
    record: str


def parse_ecg_id_name(path: str | os.PathLike) -> EcgIdName:
    """Person and record number from ``.../Person_NN/rec_K.hea``.

    Raises
    ------
    FormatError
        The file is not ``rec_K.hea`` or its folder is not ``Person_NN``.
    """
    path = Path(path)
    rec = ECG_ID_RECORD.match(path.name)
    person = ECG_ID_PERSON.match(path.parent.name)
    if rec is None or person is None:
        raise FormatError(
            path,
            f"{path.parent.name}/{path.name} is not of the form Person_NN/rec_K.hea "
            "(ECG-ID layout, e.g. Person_01/rec_1.hea)",
        )
    return EcgIdName(person["person"].zfill(2), str(int(rec["record"])))


def _natural_key(path: Path) -> list:
    """Sort key that orders digit runs by value: rec_2 before rec_10."""
    parts = re.split(r"([0-9]+)", path.as_posix())
    return [int(part) if part.isdigit() else part for part in parts]


def discover_ecg_id(root: str | os.PathLike) -> list[Path]:
    """The record headers ``Person_NN/rec_K.hea`` under ``root``, in natural order.

    ``root`` is the database folder or one ``Person_NN`` folder of it.
    """
    root = Path(root)
    pattern = "rec_*.hea" if ECG_ID_PERSON.match(root.name) else "Person_*/rec_*.hea"
    found = (
        p
        for p in root.glob(pattern)
        if p.is_file() and ECG_ID_PERSON.match(p.parent.name) and ECG_ID_RECORD.match(p.name)
    )
    return sorted(found, key=_natural_key)


def _record_name(path: Path) -> str:
    """The record path wfdb wants: without the ``.hea`` suffix."""
    return str(path.with_suffix("")) if path.suffix == ".hea" else str(path)


def parse_date(value: str) -> str:
    """A header date as ISO ``YYYY-MM-DD``; ``ValueError`` if no known format fits."""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"date {value!r} is none of {', '.join(_DATE_FORMATS)}")


def parse_header_comments(comments: list[str], path: str | os.PathLike = "") -> dict[str, str]:
    """``Key: value`` comment lines as ``{"key": "value"}``, dates made ISO.

    Keys are lower snake_case (``ECG date`` -> ``date``). Lines without ``key: value`` (free text,
    as in MIT-BIH) are skipped: nothing downstream reads them.

    Raises
    ------
    FormatError
        A date comment that is not a date.
    """
    header: dict[str, str] = {}
    for line in comments:
        m = re.match(r"^\s*#?\s*([A-Za-z][A-Za-z0-9 _-]*?)\s*:\s*(.*?)\s*$", line)
        if m is None:
            continue
        key = re.sub(r"[^a-z0-9]+", "_", m[1].lower()).strip("_")
        key = _COMMENT_KEYS.get(key, key)
        value = m[2]
        if key == "date" or key.endswith("_date"):
            try:
                value = parse_date(value)
            except ValueError as exc:
                raise FormatError(path, f"header comment {line.strip()!r}: {exc}") from exc
        header[key] = value
    return header


def _channel_settings(channel: int | str | None, channel_pattern: str) -> ChannelSettings:
    if isinstance(channel, bool) or not isinstance(channel, (int, str, type(None))):
        raise TypeError(f"channel must be an index, a name or None, not {channel!r}")
    if isinstance(channel, int):
        return ChannelSettings(index=channel, pattern=channel_pattern)
    return ChannelSettings(name=channel, pattern=channel_pattern)


def signal_files(path: str | os.PathLike) -> list[Path]:
    """The signal files a record's header names (ECG-ID: ``rec_1.dat``), beside the header.

    Read from the header's text, so no sample is touched; a header that cannot be parsed gives
    no files here and is refused with the reason when the record is read.
    """
    path = Path(path)
    header = path if path.suffix == ".hea" else path.with_suffix(".hea")
    try:
        lines = header.read_text(encoding="latin-1").splitlines()
    except OSError:
        return []
    names: list[str] = []
    signal_lines = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")][1:]
    for line in signal_lines:
        name = line.split()[0]
        if name not in names and name != "~" and "/" not in name and "\\" not in name:
            names.append(name)
    return [header.parent / n for n in names]


def read_wfdb_record(
    path: str | os.PathLike,
    *,
    channel: int | str | None = None,
    channel_pattern: str = ECG_CHANNEL_PATTERN,
) -> RawRecording:
    """Read one channel of a WFDB record in physical units.

    Parameters
    ----------
    path : path-like
        The record's ``.hea`` file (or the record path without suffix); read in place.
    channel : int or str, optional
        Index, or exact signal name (``"ECG I"`` selects that signal, never
        ``"ECG I filtered"``). ``None``: the one signal whose name matches ``channel_pattern``.
    channel_pattern : str
        Regular expression searched in signal names when ``channel`` is ``None``.

    Returns
    -------
    RawRecording
        One segment at the record's rate, float64, in the signal's units (mV for ECG-ID).
        ``header`` holds the ``key: value`` header comments (ECG-ID: ``age``, ``sex`` and
        ``date`` as ``YYYY-MM-DD``; these are personal and must stay in the ingest summary) and
        the chosen ``channel_index``.

    Raises
    ------
    FormatError
        The header or signal file is missing or unreadable, or a date comment is not a date.
    ChannelSelectionError
        The index or name is not in the record (the message lists the signals).
    NoEcgChannelError, AmbiguousChannelError
        With ``channel=None``: no signal name, or several, match the pattern (ECG-ID matches
        twice, so its configuration names ``"ECG I"``).
    """
    import wfdb

    path = Path(path)
    name = _record_name(path)
    try:
        head = wfdb.rdheader(name)
    except Exception as exc:  # wfdb raises FileNotFoundError, ValueError, IndexError, ...
        raise FormatError(path, f"WFDB header unreadable ({type(exc).__name__}: {exc})") from exc
    if getattr(head, "n_seg", None) is not None:
        raise FormatError(path, "multi-segment WFDB records are not supported")
    names = list(head.sig_name or [])
    if not names:
        raise FormatError(path, "WFDB header lists no signals")

    if isinstance(channel, int) and not isinstance(channel, bool) and channel < 0:
        found = ", ".join(f"[{i}] {n!r}" for i, n in enumerate(names))
        raise ChannelSelectionError(path, f"channel index {channel} is negative; channels: {found}")
    units = list(head.units or []) + [""] * len(names)
    infos = [
        ChannelInfo(i, n, units[i], float(head.fs), int(head.sig_len or 0))
        for i, n in enumerate(names)
    ]
    index = choose_ecg_channel(infos, _channel_settings(channel, channel_pattern), path)

    try:
        record = wfdb.rdrecord(name, channels=[index], physical=True)
    except Exception as exc:
        raise FormatError(
            path, f"WFDB signal file unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    samples = np.ascontiguousarray(record.p_signal[:, 0], dtype=np.float64)
    if len(samples) == 0:
        raise FormatError(path, "WFDB record holds no samples")
    if head.sig_len and len(samples) != head.sig_len:
        raise FormatError(
            path, f"read {len(samples)} of the {head.sig_len} samples the header announces"
        )

    header = parse_header_comments(list(record.comments or []), path)
    header["channel_index"] = str(index)
    return RawRecording(
        source_path=str(path),
        channel_name=record.sig_name[0],
        units=record.units[0] if record.units else "",
        segments=[Segment(samples, float(record.fs), 0.0)],
        header=header,
    )
