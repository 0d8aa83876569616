"""The per-file time limit stops a Python loop in any thread, and leaves no trace once lifted."""

import threading
import time

import pytest

from ecg_pipeline.io.time_limit import TimeLimitReached, time_limit


def _spin(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def test_a_loop_past_its_limit_is_stopped():
    started = time.monotonic()
    with pytest.raises(TimeLimitReached):
        with time_limit(0.2):
            _spin(30)
    assert time.monotonic() - started < 5


def test_the_limit_reaches_a_worker_thread_and_only_it():
    # Prefect's thread-pool task runner reads files in worker threads, where no signal arrives.
    outcome = {}

    def worker():
        try:
            with time_limit(0.2):
                _spin(30)
            outcome["worker"] = "finished"
        except TimeLimitReached:
            outcome["worker"] = "stopped"

    thread = threading.Thread(target=worker)
    thread.start()
    with time_limit(5):
        _spin(0.5)  # this thread's own, longer limit is not touched
    thread.join(10)
    assert outcome == {"worker": "stopped"}


def test_library_catch_alls_do_not_swallow_it():
    with pytest.raises(TimeLimitReached):
        with time_limit(0.2):
            for _ in range(300):
                try:
                    _spin(0.1)
                except Exception:  # what bioread's header loops do
                    pass


def test_a_body_that_ends_in_time_leaves_nothing_pending():
    with time_limit(0.05):
        pass
    _spin(0.3)  # past the lifted deadline: nothing may arrive
    with time_limit(0.2):
        _spin(0.05)
    _spin(0.4)


def test_no_limit_and_nested_limits():
    with time_limit(None):
        _spin(0.05)
    with time_limit(0):
        _spin(0.05)
    with pytest.raises(TimeLimitReached):
        with time_limit(0.2):
            with time_limit(60):  # the outer, shorter limit still holds
                _spin(30)
