"""A time limit on one file's reading and windowing, in whichever thread does it.

A corrupt header can make a reader loop for hours (bioread walks a marker count of two billion
one header at a time). Prefect's thread-pool task runner processes files in worker threads,
where no signal (SIGALRM) arrives, and a child process per file would cost a fork and a copy of
the windows for every good file. So one watchdog thread raises :class:`TimeLimitReached` *in
the thread that is over its limit* (CPython's ``PyThreadState_SetAsyncExc``, the mechanism
behind ``KeyboardInterrupt``). It arrives at the next Python bytecode that thread runs: it stops
the pure-Python loops where corrupt headers spin, not one long C call; the readers keep every
C call short by refusing, before they allocate, sizes the file cannot hold.

Use::

    with time_limit(300):
        ...  # raises TimeLimitReached (a BaseException) once 300 s have passed
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator


class TimeLimitReached(BaseException):
    """The time limit of :func:`time_limit` passed.

    A ``BaseException``, like ``KeyboardInterrupt``: a library's ``except Exception`` (bioread's
    header loops have some) must not swallow it and carry on.
    """


class _Entry:
    __slots__ = ("deadline", "fired")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False


_cond = threading.Condition()
_entries: dict[int, _Entry] = {}  # thread id -> its limit
_watchdog: threading.Thread | None = None
_next_wake = 0.0  # when the watchdog wakes next by itself (monotonic; inf: only when notified)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimitReached` in this thread once ``seconds`` have passed inside.

    ``None`` or 0 means no limit. Nested limits in one thread keep the outer one.
    """
    thread = threading.get_ident()
    if not seconds or seconds <= 0 or thread in _entries:
        yield
        return
    entry = _Entry(time.monotonic() + seconds)
    with _cond:
        _entries[thread] = entry
        _start_watchdog()
        if entry.deadline < _next_wake:
            # Wake the watchdog only when it would sleep past this deadline: a batch's files
            # come one after another with later deadlines, and waking it for each would cost a
            # thread switch per file.
            _cond.notify()
    try:
        yield
    finally:
        _forget(thread, entry)


def _forget(thread: int, entry: _Entry) -> None:
    """Remove this thread's limit and any exception fired but not yet delivered to it."""
    while True:
        try:
            with _cond:
                if _entries.get(thread) is entry:
                    del _entries[thread]
                if entry.fired:
                    # The body may have finished just as the watchdog fired: clear the pending
                    # exception so it cannot surface later in unrelated code.
                    _set_async_exc(thread, None)
            return
        except TimeLimitReached:  # delivered here, after the body ended: the body's result stands
            continue


def _start_watchdog() -> None:
    global _watchdog
    if _watchdog is None or not _watchdog.is_alive():
        _watchdog = threading.Thread(target=_watch, name="ecg-pipeline-time-limit", daemon=True)
        _watchdog.start()


def _watch() -> None:
    global _next_wake
    with _cond:
        while True:
            pending = [e.deadline for e in _entries.values() if not e.fired]
            _next_wake = min(pending) if pending else float("inf")
            now = time.monotonic()
            _cond.wait(timeout=_next_wake - now if pending else None)
            now = time.monotonic()
            for thread, entry in _entries.items():
                if not entry.fired and entry.deadline <= now:
                    entry.fired = True
                    _set_async_exc(thread, TimeLimitReached)


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None
    )
