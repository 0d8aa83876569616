"""Where a run spends its time and what it reads: named stages and counters, for benchmarks.

The library marks its stages (``with stage("plan"):``) and counts the work that must not be
done twice (``count("store.footers_read", n)``). Nothing is recorded unless a caller asks::

    with recording() as rec:
        ingest_folder(folder, config)
    rec.seconds["process"], rec.counts["store.footers_read"]

so the benchmarks time stages through this hook instead of patching private names. Recording
is process-wide (a flow's tasks run in worker threads) and costs one list check when off.
Imports nothing of the project.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_active: list[Recorder] = []
_lock = threading.Lock()


@dataclass
class Recorder:
    """Seconds per stage (inclusive: a stage inside another counts in both) and counters."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict:
        return {
            "seconds": dict(self.seconds),
            "calls": dict(self.calls),
            "counts": dict(self.counts),
        }


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record every stage and counter of this process until the block ends."""
    recorder = Recorder()
    with _lock:
        _active.append(recorder)
    try:
        yield recorder
    finally:
        with _lock:
            _active.remove(recorder)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block as stage ``name`` for every active recorder."""
    if not _active:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - t0
        with _lock:
            for recorder in _active:
                recorder.seconds[name] += elapsed
                recorder.calls[name] += 1


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` for every active recorder."""
    if not _active:
        return
    with _lock:
        for recorder in _active:
            recorder.counts[name] += n
