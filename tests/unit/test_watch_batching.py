"""The watcher's batching, its startup scan and a real watchfiles watch, without any server.

Fast (a few seconds); kept beside the end-to-end test that runs the watcher as a process.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.stack.watch import Batcher, is_candidate, unstored_files, watch_inbox


def _old_file(path: Path, size: int = 10, age_s: float = 60.0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return str(path)


def test_candidates_skip_dot_files_dot_folders_and_other_suffixes(tmp_path):
    ok = [tmp_path / "S01_rest.acq", tmp_path / "sub" / "S02_rest.ACQ"]
    bad = [
        tmp_path / ".S01_rest.acq",
        tmp_path / ".partial" / "S01_rest.acq",
        tmp_path / "notes.txt",
        tmp_path.parent / "S01_rest.acq",
    ]
    assert all(is_candidate(p, tmp_path, (".acq",)) for p in ok)
    assert not any(is_candidate(p, tmp_path, (".acq",)) for p in bad)


def test_a_burst_is_reported_once_after_the_quiet_period(tmp_path):
    files = [_old_file(tmp_path / f"S0{i}_rest.acq") for i in range(1, 4)]
    b = Batcher(settle_s=1.0, debounce_s=2.0)
    b.add(files[:2], now=0.0)
    assert b.ready(now=0.5) == []  # first sight: sizes not yet compared
    b.add(files[2:], now=1.0)
    assert b.ready(now=2.5) == []  # quiet for 1.5 s only
    assert b.ready(now=3.1) == sorted(files)
    assert b.ready(now=10.0) == [] and len(b) == 0  # reported once


def test_a_growing_or_fresh_file_holds_the_burst_and_a_deleted_one_leaves_it(tmp_path):
    grow = _old_file(tmp_path / "S01_rest.acq")
    gone = _old_file(tmp_path / "S02_rest.acq")
    b = Batcher(settle_s=1.0, debounce_s=1.0)
    b.add([grow, gone], now=0.0)
    b.ready(now=0.1)
    _old_file(Path(grow), size=20)  # still being copied
    Path(gone).unlink()
    assert b.ready(now=5.0) == []  # the growth restarted the quiet period
    assert b.ready(now=5.5) == []
    assert b.ready(now=6.1) == [grow]
    fresh = tmp_path / "S03_rest.acq"
    fresh.write_bytes(b"x")  # modified just now: younger than settle_s
    b.add([str(fresh)], now=7.0)
    b.ready(now=7.1)
    assert b.ready(now=9.0, wall_now=time.time()) == []
    assert b.ready(now=9.1, wall_now=time.time() + 2) == [str(fresh)]


def test_startup_scan_lists_only_bytes_the_store_lacks(tmp_path, config):
    inbox = tmp_path / "inbox"
    stored = write_demo_recording(inbox, 1, "rest", duration_s=20.0)
    assert ingest_folder(inbox, config).count("written") == 1
    new = write_demo_recording(inbox, 2, "rest", duration_s=20.0)
    (inbox / ".S03_rest.acq").write_bytes(new.read_bytes() + b"partial")
    assert unstored_files(inbox, config) == [str(new.resolve())]
    assert str(stored.resolve()) not in unstored_files(inbox, config)


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_watch_emits_one_event_for_files_renamed_in_and_the_startup_scan(tmp_path, force_polling):
    inbox = tmp_path / "inbox"
    waiting = _old_file(inbox / "S01_rest.acq")  # arrived while the watcher was down
    events: list[list[str]] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_inbox,
        args=(inbox,),
        kwargs=dict(
            settle_s=0.5,
            debounce_s=0.5,
            tick_s=0.1,
            startup_files=lambda: [waiting],
            force_polling=force_polling or None,
            poll_delay_ms=100,
            emit=lambda folder, files: events.append(files),
            stop_event=stop,
            log=lambda _: None,
        ),
    )
    thread.start()
    try:
        time.sleep(0.3)
        for name in ("S02_rest.acq", "S02_exercise.acq"):
            staged = _old_file(tmp_path / "staging" / name)
            os.replace(staged, inbox / name)
        deadline = time.monotonic() + 15
        while not events and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a second event would come within debounce + a few ticks
    finally:
        stop.set()
        thread.join(timeout=10)
    resolved = inbox.resolve()
    names = ("S01_rest.acq", "S02_exercise.acq", "S02_rest.acq")
    assert events == [[str(resolved / n) for n in names]]


def test_a_burst_the_api_could_not_take_is_offered_again(tmp_path):
    """Prefect down when the burst is ready: the files are kept and emitted on the next try."""
    inbox = tmp_path / "inbox"
    waiting = _old_file(inbox / "S01_rest.acq")
    calls: list[list[str]] = []
    lines: list[str] = []

    def flaky_emit(folder, files):
        calls.append(files)
        if len(calls) == 1:
            raise ConnectionError("the Prefect API at http://127.0.0.1:9 does not answer")

    stop = threading.Event()
    thread = threading.Thread(
        target=watch_inbox,
        args=(inbox,),
        kwargs=dict(
            settle_s=0.2,
            debounce_s=0.3,
            tick_s=0.1,
            startup_files=lambda: [waiting],
            emit=flaky_emit,
            stop_event=stop,
            log=lines.append,
        ),
    )
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert calls == [[str(waiting)]] * 2
    assert any("does not answer: 1 file(s) kept" in line for line in lines)
    assert any(line.startswith("emitted") for line in lines)


def test_watch_settings_come_from_the_config(tmp_path):
    from ecg_pipeline.config import load_config

    share = tmp_path / "share.toml"
    share.write_text(
        '[watch]\nfolder = "/mnt/lab-share/inbox"\nforce_polling = true\ndebounce_s = 10\n'
    )
    w = load_config(share).watch
    assert w.force_polling and w.debounce_s == 10 and str(w.folder) == "/mnt/lab-share/inbox"
    assert not load_config().watch.force_polling and load_config().watch.folder is None


def test_the_watcher_learns_which_announced_files_were_stored_or_refused(tmp_path, config):
    """A refusal reaches the watcher's log, not only the rejections table."""
    from ecg_pipeline.stack.watch import Outcomes

    inbox = tmp_path / "inbox"
    good = write_demo_recording(inbox, 1, "rest", duration_s=20.0).resolve()
    os.utime(good, (time.time() - 600,) * 2)
    bad = Path(_old_file(inbox / "S02_rest.acq", size=500)).resolve()
    late = Path(_old_file(tmp_path / "elsewhere" / "S03_rest.acq", size=500)).resolve()
    outcomes = Outcomes(config.store.root / config.dataset.name, give_up_s=600)
    announced = time.time()
    outcomes.expect([str(good), str(bad)], announced)
    assert outcomes.lines(announced) == []  # nothing ingested yet: nothing known
    outcomes.expect([str(late)], announced - 3600)  # long ago, never ingested
    report = ingest_folder(inbox, config)
    assert report.count("written") == 1 and report.count("rejected") == 1
    lines = outcomes.lines(announced + 1)
    assert "stored S01_rest.acq" in lines
    assert any(x.startswith("refused S02_rest.acq: ") and "AcqKnowledge" in x for x in lines), lines
    assert any(x.startswith("no outcome for S03_rest.acq") for x in lines), lines
    assert len(outcomes) == 0 and outcomes.lines() == []
