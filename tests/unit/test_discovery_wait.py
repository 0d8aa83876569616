"""Waiting for files still being copied, with a clock the test controls."""

from __future__ import annotations

import os

from ecg_pipeline.cohort.labels import wait_until_settled
from ecg_pipeline.config import StudyConfig


class FakeTime:
    def __init__(self, start: float):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _config(settle_s: float) -> StudyConfig:
    return StudyConfig().with_overrides({"discovery.settle_s": settle_s})


def test_waits_until_the_youngest_file_settles_and_says_so_once(tmp_path):
    t = FakeTime(1_000_000.0)
    for name, age in (("S01_rest.acq", 1.0), ("S02_rest.acq", 4.0), ("S03_rest.acq", 60.0)):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (t.now - age, t.now - age))
    told = []
    waited = wait_until_settled(
        tmp_path,
        _config(5.0),
        max_wait_s=120,
        on_wait=lambda n, bound: told.append((n, bound)),
        clock=t.clock,
        sleep=t.sleep,
    )
    assert told == [(2, 120)]
    assert 4.0 <= waited <= 4.5 and len(t.sleeps) == 1  # the 1-s-old file needed 4 s more


def test_a_file_that_keeps_changing_is_waited_for_at_most_the_bound(tmp_path):
    t = FakeTime(2_000_000.0)
    path = tmp_path / "S01_rest.acq"
    path.write_bytes(b"x")

    def sleep_while_copying(seconds: float) -> None:
        t.sleep(seconds)
        os.utime(path, (t.now, t.now))  # the copy goes on

    os.utime(path, (t.now, t.now))
    waited = wait_until_settled(
        tmp_path, _config(5.0), max_wait_s=12, clock=t.clock, sleep=sleep_while_copying
    )
    assert waited == 12


def test_settled_files_cost_no_wait(tmp_path):
    t = FakeTime(3_000_000.0)
    (tmp_path / "S01_rest.acq").write_bytes(b"x")
    os.utime(tmp_path / "S01_rest.acq", (t.now - 60, t.now - 60))
    assert (
        wait_until_settled(tmp_path, _config(5.0), max_wait_s=60, clock=t.clock, sleep=t.sleep) == 0
    )
    assert t.sleeps == []
