"""Long-running processes the project starts in the background, recorded by pid file.

Each process runs in a session of its own, so stopping it stops its whole process group (the
MLflow CLI starts a uvicorn child; a served flow starts a process per flow run). A JSON pid file
records what the project started: its pid and command line. A later command reuses a live
process instead of starting a second one, and stopping signals exactly the recorded process
group and nothing else, even when the pid has since been reused by another program.

Only the standard library is imported here: command lines that import this module stay fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ecg_pipeline.io.atomic import atomic_write_text

STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 30

# Processes started by this process, by pid: polling them reaps them once they exit, so that a
# stopped process does not linger as a zombie (which would still look alive to a pid check).
_CHILDREN: dict[int, subprocess.Popen] = {}


def spawn_recorded(
    name: str,
    command: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    pid_path: Path,
    log_path: Path,
    record: dict,
) -> tuple[int, int]:
    """Start ``command`` in its own session, its output appended to ``log_path``, and record it.

    Returns
    -------
    (int, int)
        The pid (also its process group id) and the log's offset where this start's lines begin.
    """
    with open(log_path, "ab") as log:
        log.write(f"\n=== {utc_now()} {' '.join(command)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: stopped as one, spared Ctrl-C
        )
    _CHILDREN[proc.pid] = proc
    payload = {
        "pid": proc.pid,
        "started_at": utc_now(),
        "command": command,
        "log_offset": offset,
        **record,
    }
    atomic_write_text(pid_path, json.dumps(payload, indent=2, default=str) + "\n")
    return proc.pid, offset


def wait_until(
    ready: Callable[[], bool], pid: int, timeout_s: float, interval_s: float = 0.25
) -> str | None:
    """Poll ``ready`` until it holds; return None then, or why it never did.

    Fails early when the process ``pid`` exits.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return None
        if not alive(pid):
            return "exited before it was ready"
        if time.monotonic() >= deadline:
            return f"was not ready within {timeout_s:g} s"
        time.sleep(interval_s)


def stop_recorded(name: str, pid_path: Path, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the process recorded in ``pid_path`` if it is still ours, and remove the file.

    Returns
    -------
    bool
        True when a process was signalled.
    """
    record = read_pid_file(pid_path) or {}
    pid = record.get("pid")
    stopped = isinstance(pid, int) and stop_group(name, pid, record.get("command"), timeout_s)
    pid_path.unlink(missing_ok=True)
    return stopped


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if need be) for the ``with`` block.

    One start at a time per server: a second command waits here, then finds the first one's pid
    file and reuses that server instead of racing it for the port.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
        yield


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def log_tail(path: Path, offset: int) -> str:
    """The last lines written to ``path`` since ``offset`` (this start's lines only)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty)"


def read_pid_file(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def stop_group(name: str, pid: int, command: list[str] | None, timeout_s: float) -> bool:
    """SIGTERM the process group ``pid`` if it is ours, then SIGKILL what is left after a wait.

    The leader's command line must still name the server (a reused pid is left alone). When the
    leader is gone but members of its group live on (say uvicorn after the MLflow CLI died), the
    group is still ours: the system never hands out a pid that is still some group's id.
    """
    if not is_ours(name, pid, command):
        members = [p for p in group_members(pid) if name in cmdline(p)]
        if alive(pid) or not members:
            return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while (running := group_members(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not running:
            break
    _CHILDREN.pop(pid, None)
    return True


def is_ours(name: str, pid: object, command: list[str] | None) -> bool:
    """``pid`` is alive and still runs the server that was recorded for it."""
    if not isinstance(pid, int) or pid <= 0 or not alive(pid):
        return False
    argv = cmdline(pid).split("\0")
    if not any(name in arg for arg in argv):
        return False
    # Console scripts run as `python <script> <args>`: the recorded args end the command line.
    args = list(command[1:]) if command else []
    return not args or argv[-len(args) :] == args


def alive(pid: int) -> bool:
    """The process still runs: our own child until it is reaped, another while a thread runs."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None  # reaps it once it has exited, so no zombie is left behind
    # A process whose main thread has exited shows as a zombie while its other threads are still
    # being torn down (and holding its sockets): it is gone only when every thread is.
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return any(_stat(f"/proc/{pid}/task/{tid}/stat") not in (None, "Z", "X") for tid in threads)


def group_members(pgid: int) -> list[int]:
    """Running processes of the process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _pgid(int(entry.name)) == pgid and alive(int(entry.name)):
            members.append(int(entry.name))
    return members


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _stat(path: str) -> str | None:
    """The state letter (R, S, Z...) in a ``/proc/.../stat`` file; None when it is gone."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the state follows the last ')'.
    return text[text.rindex(")") + 2 :].split()[0]


def cmdline(pid: int) -> str:
    """The NUL-separated command line of ``pid`` (empty when gone or a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").rstrip("\0")
    except OSError:
        return ""
