"""Watch an inbox folder and emit one Prefect event per burst of settled recordings.

The served ``ingest-train`` deployment (``flows/serve.py``) starts a run on each
``ecg.recordings.arrived`` event whose resource is ``ecg.inbox.<resolved folder>``; the payload is
``{"folder": ..., "files": [...]}``. A burst of files (a whole session copied in) gives one event
once the folder has been quiet for ``debounce_s`` and every file has settled: its size unchanged
and its modification time at least ``settle_s`` old, the rule ingest itself uses to defer files
still being copied. Files that arrived while the watcher was down are found by a scan at start.

Run ``python -m ecg_pipeline.stack.watch --config configs/demo.toml``. It imports prefect only
when an event is sent (``stack/`` and ``flows/`` are the only importers of prefect).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ecg_pipeline.config import DiscoverySettings, WatchSettings

EVENT = "ecg.recordings.arrived"
RESOURCE_PREFIX = "ecg.inbox."


def inbox_resource_id(folder: str | os.PathLike) -> str:
    """The event resource of an inbox: its resolved path, so that a deployment served for one
    study's inbox is never started by a watcher of another folder with the same name."""
    return f"{RESOURCE_PREFIX}{Path(folder).resolve()}"


def is_candidate(path: str | os.PathLike, folder: Path, suffixes: Sequence[str]) -> bool:
    """A recording file by its suffix, outside any dot-file or dot-folder (copies in progress)."""
    path = Path(path)
    try:
        parts = path.relative_to(folder).parts
    except ValueError:
        return False
    return path.suffix.lower() in {s.lower() for s in suffixes} and not any(
        part.startswith(".") for part in parts
    )


class Batcher:
    """Collect arrived files and say when a burst is over and every file has settled.

    Pure bookkeeping over ``os.stat``, so that it is tested without a watcher or a server.

    Parameters
    ----------
    settle_s : float
        A file is settled when its size did not change since the last check and its
        modification time is at least this old (``[discovery] settle_s``).
    debounce_s : float
        Quiet time after the last change before a burst is reported.
    """

    def __init__(self, settle_s: float, debounce_s: float):
        self.settle_s = settle_s
        self.debounce_s = debounce_s
        self._seen: dict[str, tuple[int, int] | None] = {}  # path -> (size, mtime_ns)
        self._last_change = -float("inf")

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, paths: Iterable[str], now: float) -> None:
        """Note changed or new files; a change restarts the quiet period."""
        paths = list(paths)
        for p in paths:
            self._seen.setdefault(str(p), None)
        if paths:
            self._last_change = now

    def discard(self, paths: Iterable[str]) -> None:
        for p in paths:
            self._seen.pop(str(p), None)

    def ready(self, now: float, wall_now: float | None = None) -> list[str]:
        """The whole burst, sorted, once quiet and settled (and then forgotten); else ``[]``."""
        wall_now = time.time() if wall_now is None else wall_now
        settled = True
        for path, before in list(self._seen.items()):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._seen.pop(path)  # moved away or deleted: nothing to ingest
                continue
            signature = (st.st_size, st.st_mtime_ns)
            if signature != before:
                self._seen[path] = signature
                if before is not None:
                    self._last_change = now  # still growing: the burst goes on
                settled = False
            elif 0 <= wall_now - st.st_mtime < self.settle_s:
                settled = False
        if not self._seen or not settled or now - self._last_change < self.debounce_s:
            return []
        files, self._seen = sorted(self._seen), {}
        return files


class Outcomes:
    """What became of the files the watcher announced: stored, or refused and why.

    The watcher starts runs but does not run them; it learns each file's end from the store
    (the catalog's source paths) and the rejections history, so a refusal shows up in the
    watcher's log too. Files with no outcome after ``give_up_s`` are reported as such.
    """

    def __init__(self, store_path: str | os.PathLike, give_up_s: float = 3600.0):
        self.store_path = Path(store_path)
        self.give_up_s = give_up_s
        self._pending: dict[str, float] = {}  # path -> wall time announced

    def expect(self, files: Iterable[str], wall_now: float) -> None:
        for f in files:
            self._pending[str(f)] = wall_now

    def __len__(self) -> int:
        return len(self._pending)

    def lines(self, wall_now: float | None = None) -> list[str]:
        """A line per file whose outcome is now known (then forgotten)."""
        import datetime as dt

        if not self._pending:
            return []
        wall_now = time.time() if wall_now is None else wall_now
        refused = _refusals_since(self.store_path, min(self._pending.values()))
        stored = _stored_paths(self.store_path)
        out = []
        for path, announced in list(self._pending.items()):
            name = Path(path).name
            found = [r for r in refused.get(path, []) if r[0] >= announced - 1]
            if found:
                out.append(f"refused {name}: {found[-1][1]}")
            elif path in stored:
                out.append(f"stored {name}")
            elif wall_now - announced > self.give_up_s:
                since = dt.datetime.fromtimestamp(announced).isoformat(timespec="seconds")
                out.append(f"no outcome for {name} (announced {since}): is the deployment served?")
            else:
                continue
            del self._pending[path]
        return out


def _refusals_since(store_path: Path, since: float) -> dict[str, list[tuple[float, str]]]:
    """``{file: [(last refused, "reason (stage)")]}`` from the store's rejections history."""
    import csv
    import datetime as dt

    from ecg_pipeline.ingest.write import HISTORY_FILE

    path = store_path / HISTORY_FILE
    if not path.is_file() or path.stat().st_mtime < since - 1:
        return {}
    out: dict[str, list[tuple[float, str]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                when = dt.datetime.fromisoformat(row["last_seen"]).timestamp()
            except (KeyError, ValueError):
                continue
            reason = f"{row.get('reason', '')} ({row.get('stage', '')})"
            out.setdefault(row.get("file", ""), []).append((when, reason))
    return out


def _stored_paths(store_path: Path) -> set[str]:
    from ecg_pipeline.io.store import WindowStore

    if not store_path.is_dir():
        return set()
    catalog = WindowStore(store_path.parent, store_path.name).catalog()
    return set(catalog["source_path"].astype(str))


def unstored_files(folder: str | os.PathLike, config) -> list[str]:
    """Recording files under ``folder`` whose bytes the dataset's store does not hold yet.

    A recording is identified as ingest identifies it: by all of its files (a WFDB record's
    ``.hea`` and the signal files it names), so a stored record never looks new.
    """
    from ecg_pipeline.io.readers import recording_files, sha256_files
    from ecg_pipeline.io.store import WindowStore

    folder = Path(folder).resolve()
    suffixes = config.discovery.suffixes
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and is_candidate(p, folder, suffixes)
    )
    stored = set(WindowStore(config.store.root, config.dataset.name).catalog()["sha256"])
    out = []
    for p in files:
        try:
            if sha256_files(recording_files(p, config.dataset.format)) not in stored:
                out.append(str(p))
        except OSError:
            continue  # vanished or unreadable: ingest will say so if it comes back
    return out


def emit_arrival(folder: Path, files: list[str]) -> None:
    """Send ``ecg.recordings.arrived`` for ``folder`` to the Prefect API (``PREFECT_API_URL``).

    Raises
    ------
    ConnectionError
        The API does not answer. Prefect sends events in the background and drops what it
        cannot deliver, so the check comes first: the caller keeps the files for a later try.
    """
    from ecg_pipeline.stack.servers import answers_ok

    api = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if api and not answers_ok(f"{api}/health"):
        raise ConnectionError(f"the Prefect API at {api} does not answer")
    from prefect.events import emit_event

    emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": inbox_resource_id(folder),
            "prefect.resource.name": folder.name,
        },
        payload={"folder": str(folder), "files": files},
    )


# Keyword defaults are the configuration's ([discovery], [watch]): one source of truth.
_DISCOVERY, _WATCH = DiscoverySettings(), WatchSettings()


def watch_inbox(
    folder: str | os.PathLike,
    *,
    suffixes: Sequence[str] = _DISCOVERY.suffixes,
    settle_s: float = _DISCOVERY.settle_s,
    debounce_s: float = _WATCH.debounce_s,
    force_polling: bool | None = None,
    poll_delay_ms: int = _WATCH.poll_delay_ms,
    startup_files: Callable[[], list[str]] | None = None,
    emit: Callable[[Path, list[str]], None] = emit_arrival,
    stop_event: threading.Event | None = None,
    tick_s: float = 0.25,
    log: Callable[[str], None] = print,
    outcomes: Outcomes | None = None,
) -> None:
    """Watch ``folder`` until ``stop_event`` is set, emitting one event per settled burst.

    Parameters
    ----------
    folder : path-like
        The inbox, watched recursively.
    suffixes : sequence of str
        Recording suffixes (``[discovery] suffixes``); other files and dot-files are ignored.
    settle_s, debounce_s : float
        See :class:`Batcher`.
    force_polling, poll_delay_ms :
        watchfiles' polling switch and interval: network shares (SMB, NFS) deliver no
        inotify events, so a lab's share needs polling.
    startup_files : callable, optional
        Called once the watch is live; its files join the first burst (files that arrived
        while the watcher was down). Calling it only then leaves no gap between scan and watch.
    emit : callable
        ``emit(folder, files)``; :func:`emit_arrival` by default. When it raises
        ``ConnectionError`` the files are kept and offered again after the next quiet period.
    stop_event : threading.Event, optional
        Set it to stop.
    tick_s : float
        How often the burst is checked when nothing happens.
    log : callable
        Where one line per event goes.
    outcomes : Outcomes, optional
        Follows the announced files to their end (stored, or refused and why) and logs it.
    """
    from watchfiles import Change, watch

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    batcher = Batcher(settle_s, debounce_s)
    started = False
    last_followed = -float("inf")
    for changes in watch(
        folder,
        watch_filter=lambda change, path: is_candidate(path, folder, suffixes),
        debounce=max(1, int(debounce_s * 1000)),
        rust_timeout=max(1, int(tick_s * 1000)),
        yield_on_timeout=True,  # an empty set every tick: quiet periods end without events
        stop_event=stop_event,
        force_polling=force_polling,
        poll_delay_ms=poll_delay_ms,
        raise_interrupt=False,
    ):
        now = time.monotonic()
        if outcomes is not None and now - last_followed >= 2.0:
            last_followed = now
            for line in outcomes.lines():
                log(line)
        if not started:
            started = True
            found = startup_files() if startup_files else []
            batcher.add(found, now)
            log(f"watching {folder} ({len(found)} file(s) not yet stored)")
        batcher.discard(p for c, p in changes if c == Change.deleted)
        batcher.add((p for c, p in changes if c != Change.deleted), now)
        files = batcher.ready(now)
        if files:
            try:
                emit(folder, files)
            except ConnectionError as exc:
                # Kept, not lost: the burst is offered again after the next quiet period.
                batcher.add(files, now)
                log(f"{exc}: {len(files)} file(s) kept, tried again in {debounce_s:g} s")
                continue
            names = ", ".join(Path(f).name for f in files)
            log(f"emitted {EVENT} for {len(files)} file(s): {names}")
            if outcomes is not None:
                outcomes.expect(files, time.time())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecg_pipeline.stack.watch",
        description="Watch the inbox and emit ecg.recordings.arrived per settled burst of files.",
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    parser.add_argument(
        "--folder", type=Path, help="inbox to watch (default: [watch] folder, else [demo] inbox)"
    )
    parser.add_argument(
        "--debounce-s", type=float, help="quiet time before an event (default: [watch] debounce_s)"
    )
    parser.add_argument(
        "--force-polling",
        action="store_true",
        help="poll (network shares; default: [watch] force_polling)",
    )
    parser.add_argument(
        "--poll-delay-ms", type=int, help="polling interval (default: [watch] poll_delay_ms)"
    )
    args = parser.parse_args(argv)

    from ecg_pipeline.config import load_config
    from ecg_pipeline.stack.servers import use_prefect_api

    config = load_config(args.config)
    use_prefect_api(config.servers)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    w = config.watch
    folder = args.folder or w.folder or config.demo.inbox
    configured = Path(w.folder or config.demo.inbox).resolve()
    if Path(folder).resolve() != configured:
        print(
            f"warning: watching {folder}, but the deployment served with this configuration "
            f"starts only on events for {configured}",
            flush=True,
        )
    debounce_s = args.debounce_s if args.debounce_s is not None else w.debounce_s
    poll_delay_ms = args.poll_delay_ms if args.poll_delay_ms is not None else w.poll_delay_ms
    force_polling = args.force_polling or w.force_polling

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        watch_inbox(
            folder,
            suffixes=config.discovery.suffixes,
            settle_s=config.discovery.settle_s,
            debounce_s=debounce_s,
            force_polling=force_polling or None,
            poll_delay_ms=poll_delay_ms,
            startup_files=lambda: unstored_files(folder, config),
            stop_event=stop,
            log=log,
            outcomes=Outcomes(Path(config.store.root) / config.dataset.name),
        )
    finally:
        if "prefect" in sys.modules:  # send what is queued before leaving
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
