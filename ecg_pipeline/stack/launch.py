"""Start a background process once and reuse it: the pid-file record, readiness, identity.

:func:`launch` is what every process of the embedded stack goes through (the Prefect and MLflow
servers in :mod:`.servers`, the deployment server and the watcher in :mod:`.workers`): a live
process the project started earlier with the same identity (host and port, or the configuration
it serves) is reused; anything else is checked, spawned, recorded and waited for. Only the
standard library is imported.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecg_pipeline.stack.processes import (
    STOP_TIMEOUT_S,
    is_ours,
    locked,
    log_tail,
    read_pid_file,
    spawn_recorded,
    stop_group,
    wait_until,
)


class ServerError(RuntimeError):
    """A server cannot start: port taken, another of ours elsewhere, or it never got healthy."""


@dataclass(frozen=True)
class ServerHandle:
    """A running server, started now (``started=True``) or found and reused.

    Attributes
    ----------
    name : str
        ``"prefect"`` or ``"mlflow"``.
    pid : int
        The server's process id, also its process group id.
    host, port : str, int
        Where it listens.
    url : str
        What clients use: the Prefect API (``http://H:P/api``) or the MLflow tracking URI.
    ui_url : str
        The web UI, for people.
    log_path : Path
        Its stdout and stderr.
    started : bool
        False when a live server started earlier by the project was reused.
    """

    name: str
    pid: int
    host: str
    port: int
    url: str
    ui_url: str
    log_path: Path
    started: bool

    @property
    def pid_path(self) -> Path:
        """The pid file, beside the log."""
        return self.log_path.with_suffix(".pid")


def launch(
    *,
    name: str,
    label: str,
    command: list[str],
    env: dict[str, str],
    unset: tuple[str, ...],
    state_dir: Path,
    cwd: Path,
    handle: Callable[[int, bool], ServerHandle],
    ready: Callable[[int], bool],
    ready_what: str,
    identity: dict,
    mismatch_hint: str,
    check_free: Callable[[], None] = lambda: None,
    timeout_s: float,
) -> ServerHandle:
    """Reuse our live process if it matches ``identity``, or check, spawn, record and wait.

    ``ready(log_offset)`` says whether a process is ready to use (``log_offset``: where this
    start's lines begin in its log); ``identity`` (host and port, or the config served) must
    match the record of a live process for it to be reused.
    """
    pid_path = state_dir / f"{name}.pid"
    log_path = state_dir / f"{name}.log"

    def wait(pid: int, offset: int) -> None:
        problem = wait_until(lambda: ready(offset), pid, timeout_s)
        if problem is not None:
            raise ServerError(
                f"The {label} (pid {pid}) {problem}: {ready_what}. "
                f"Last lines of {log_path}:\n{log_tail(log_path, offset)}"
            )

    with locked(state_dir / f"{name}.lock"):
        record = read_pid_file(pid_path)
        if record and is_ours(name, record.get("pid"), record.get("command")):
            pid = record["pid"]
            found = {key: record.get(key) for key in identity}
            if found != identity:
                raise ServerError(
                    f"The {label} the project started earlier (pid {pid}) still runs with "
                    f"{found}, not {identity}. Stop it first (`ecg-pipeline servers stop`, or "
                    f"ecg_pipeline.stack.servers.stop_servers({str(state_dir)!r})){mismatch_hint}."
                )
            # Ours and the same: it may still be starting (another command started it). Its own
            # start's log lines only: an earlier start's ready line must not count.
            offset = record.get("log_offset")
            wait(pid, offset if isinstance(offset, int) else 0)
            return handle(pid, False)
        pid_path.unlink(missing_ok=True)  # absent, unreadable, or a dead / reused pid

        check_free()
        child_env = {k: v for k, v in os.environ.items() if k not in unset} | env
        pid, offset = spawn_recorded(
            name,
            command,
            env=child_env,
            cwd=cwd,
            pid_path=pid_path,
            log_path=log_path,
            record=identity,
        )
        try:
            wait(pid, offset)
        except BaseException:
            stop_group(name, pid, command, STOP_TIMEOUT_S)
            pid_path.unlink(missing_ok=True)
            raise
        return handle(pid, True)


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200 now (a health check)."""
    return http_status(url) == 200


def answers(url: str) -> bool:
    """Whether a server answers at all: an HTTP error (401 behind an auth proxy) still counts."""
    return http_status(url) is not None


def http_status(url: str) -> int | None:
    """The HTTP status ``url`` answers with now; None when nothing answers."""
    host = urllib.parse.urlsplit(url).hostname or ""
    # Loopback without proxies: an http_proxy in the environment must not carry a request to
    # this machine away. A lab's own server may well sit behind its proxy.
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
