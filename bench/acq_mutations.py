"""Seeded, structure-aware mutations of real AcqKnowledge files, for fuzzing the reader and ingest.

Each mutant is a real ``.acq`` file (``../shared/acq``) changed in one of the ways a disk, a
copy or a hostile folder changes files. Where to change is found with bioread's own header
parse of the original: the graph and channel headers end at ``data_start_offset``, the sample
data follows (``data_length`` bytes when uncompressed; compressed streams otherwise), and the
marker and journal areas come after it.

Kinds
-----
truncate        cut at a random offset (inside headers, data or the tail)
header_flip     1-8 random bytes of the headers changed
header_int      an extreme 32-bit integer (0, -1, 2**31-1, 2**30, a random one) written over a
                random header field, little- or big-endian
claims_huge     a channel header's sample count set to a huge, zero or negative number
data_flip       1-64 bytes of the sample data (or compressed streams) changed
tail_flip       1-16 bytes of the marker/journal area changed (or of the data's end)
shift           1-64 bytes inserted into, or deleted from, a random place
splice          a block overwritten with bytes of another source file
zero_block      a block zeroed (a sparse or preallocated region)
extend          random bytes (up to 64 KiB) appended after the file's end

Used by ``tests/integration/test_fuzz_acq.py`` (2,000 mutants) and ``bench/fuzz_acq.py``
(20,000). Deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = (
    "truncate",
    "header_flip",
    "header_int",
    "claims_huge",
    "data_flip",
    "tail_flip",
    "shift",
    "splice",
    "zero_block",
    "extend",
)
EXTREME_INTS = (0, -1, 2**31 - 1, 2**30, -(2**31), 1)


@dataclass(frozen=True)
class Source:
    """A real file and the layout bioread reads from it."""

    path: Path
    data: bytes
    data_start: int
    data_end: int
    compressed: bool
    channel_headers: tuple[tuple[int, int, int], ...]  # (offset, length, point_count)


def load_source(path: Path) -> Source:
    from bioread.reader import Reader

    data = path.read_bytes()
    with open(path, "rb") as handle:
        reader = Reader(handle)
        reader._read_headers()
    start = int(reader.data_start_offset)
    end = len(data) if reader.is_compressed else start + int(reader.data_length)
    channels = tuple(
        (int(h.offset), int(h.struct_length), int(h.point_count)) for h in reader.channel_headers
    )
    return Source(path, data, start, min(end, len(data)), bool(reader.is_compressed), channels)


def mutate(source: Source, kind: str, rng: np.random.Generator, other: Source) -> bytes:
    """One mutant of ``source`` (``other`` lends bytes to ``splice``)."""
    data = bytearray(source.data)
    size = len(data)

    def flip(lo: int, hi: int, count: int) -> None:
        hi = max(hi, lo + 1)
        for at in rng.integers(lo, min(hi, size), size=count):
            data[at] = int(rng.integers(0, 256))

    if kind == "truncate":
        return bytes(data[: int(rng.integers(1, size))])
    if kind == "header_flip":
        flip(0, source.data_start, int(rng.integers(1, 9)))
    elif kind == "header_int":
        at = int(rng.integers(0, max(source.data_start - 4, 1))) & ~1
        value = (
            int(rng.choice(EXTREME_INTS))
            if rng.random() < 0.7
            else int(rng.integers(-(2**31), 2**31))
        )
        data[at : at + 4] = struct.pack("<i" if rng.random() < 0.5 else ">i", value)
    elif kind == "claims_huge":
        offset, length, count = source.channel_headers[
            int(rng.integers(len(source.channel_headers)))
        ]
        needle = struct.pack("<i", count)
        where = bytes(data[offset : offset + length]).find(needle)
        value = int(rng.choice([2**30, 2**31 - 1, 0, -1, count * 1000, count + 1]))
        if where >= 0:
            data[offset + where : offset + where + 4] = struct.pack("<i", value)
        else:  # a big-endian file or a moved field: fall back to a random header integer
            data[offset : offset + 4] = struct.pack("<i", value)
    elif kind == "data_flip":
        flip(source.data_start, source.data_end, int(rng.integers(1, 65)))
    elif kind == "tail_flip":
        lo = source.data_end if source.data_end < size - 1 else max(source.data_start, size - 64)
        flip(lo, size, int(rng.integers(1, 17)))
    elif kind == "shift":
        at = int(rng.integers(0, size))
        n = int(rng.integers(1, 65))
        if rng.random() < 0.5:
            data[at:at] = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        else:
            del data[at : at + n]
    elif kind == "splice":
        n = int(rng.integers(16, 4097))
        at = int(rng.integers(0, max(size - n, 1)))
        src = int(rng.integers(0, max(len(other.data) - n, 1)))
        data[at : at + n] = other.data[src : src + n][: len(data[at : at + n])]
    elif kind == "zero_block":
        n = int(rng.integers(16, 8193))
        at = int(rng.integers(0, max(size - n, 1)))
        data[at : at + n] = bytes(len(data[at : at + n]))
    elif kind == "extend":
        data += rng.integers(0, 256, size=int(rng.integers(1, 65537)), dtype=np.uint8).tobytes()
    else:
        raise ValueError(f"unknown mutation {kind!r}")
    return bytes(data)


def mutants(sources: list[Source], n: int, seed: int = 0) -> Iterator[tuple[str, str, bytes]]:
    """``n`` mutants as (source file name, kind, bytes), kinds and sources taken in turn."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        source = sources[i % len(sources)]
        kind = KINDS[(i // len(sources)) % len(KINDS)]
        other = sources[(i + 1) % len(sources)]
        yield source.path.name, kind, mutate(source, kind, rng, other)


@dataclass(frozen=True)
class Outcome:
    """What ingest's read-and-window step made of one file, measured in a child process."""

    result: str  # "windows", an IngestError subclass name, or "crash: ..." / "killed: ..."
    reason: str
    seconds: float
    peak_growth_bytes: int  # the child's peak resident memory above the parent's at fork
    n_windows: int
    finite: bool


def outcome_in_child(path: Path, config, hard_limit_s: float = 120.0) -> Outcome:
    """Run ``read_windows`` on ``path`` in a forked child and measure it.

    A child per file gives each file its own peak-memory figure (the child's peak resident
    set, reset at the fork, above its resident set then) and lets a file that crashed the interpreter or ran past
    ``hard_limit_s`` (the product's own ``[limits] file_time_s`` should stop it long before)
    be reported instead of taking the fuzzing run down. Warm the parent up first (one
    ``read_windows`` call) so that the children do not each import the detector.
    """
    import json
    import os
    import signal
    import time

    from ecg_pipeline.errors import IngestError
    from ecg_pipeline.ingest.process import read_windows

    read_end, write_end = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        base = _reset_peak_rss()
        signal.alarm(int(hard_limit_s) + 1)
        try:
            _, windows = read_windows(path, config)
            report = ["windows", "", len(windows.samples), _all_finite(windows)]
        except IngestError as exc:
            report = [type(exc).__name__, exc.reason, 0, True]
        except BaseException as exc:  # noqa: BLE001 - the point is to see it
            report = [f"crash: {type(exc).__name__}", str(exc)[:300], 0, True]
        peak = _status_bytes("VmHWM")
        os.write(write_end, json.dumps(report + [peak - base]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - started
    if not message:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {status}"
        return Outcome(f"killed: {how}", "", seconds, 0, 0, True)
    result, reason, n, finite, growth = json.loads(message)
    return Outcome(result, reason, seconds, max(growth, 0), n, finite)


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset this process's peak resident set to its current one (Linux: clear_refs 5) and
    return it; a forked child would otherwise report its parent's peak."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def _all_finite(windows) -> bool:
    """Samples, R-peak times and beat segments finite; RR intervals finite or NaN (the
    documented "no beat before this one" of a segment's first beat), never infinite."""
    arrays = [windows.samples]
    if windows.beats is not None:
        arrays += list(windows.beats.peak_s) + list(windows.beats.segments)
        for rr in windows.beats.rr_s:
            if np.isinf(np.asarray(rr, dtype=np.float64)).any():
                return False
    return all(bool(np.isfinite(np.asarray(a, dtype=np.float64)).all()) for a in arrays)
