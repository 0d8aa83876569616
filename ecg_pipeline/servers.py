"""Start and stop the embedded Prefect server and MLflow tracking server that ``make run`` uses.

Both servers run as subprocesses of the venv's own ``prefect`` and ``mlflow`` commands, each in a
session of its own so that stopping one stops its whole process group (MLflow's CLI process
starts a uvicorn child). A JSON pid file per server under ``state_dir`` records what the project
started, so that a later command reuses a live server instead of starting a second one, and
:func:`stop_servers` stops exactly those processes and nothing else.

Only the standard library is imported here: the servers are subprocesses, and a command line
that imports this module must stay fast.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_pipeline.io.atomic import atomic_write_text

if TYPE_CHECKING:
    from ecg_pipeline.config import ServerSettings

SERVER_NAMES = ("prefect", "mlflow")
STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 30

# Servers started by this process, by pid: polling them reaps them once they exit, so that a
# stopped server does not linger as a zombie (which would still look alive to a pid check).
_CHILDREN: dict[int, subprocess.Popen] = {}


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now (the OS picks it; another may take it later)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_prefect(
    settings: ServerSettings,
    *,
    port: int | None = None,
    state_dir: str | os.PathLike | None = None,
    timeout_s: float = 60,
    allow_remote: bool = False,
) -> ServerHandle:
    """Start the embedded Prefect server, or reuse the one the project started earlier.

    Parameters
    ----------
    settings : ServerSettings
        ``host``, ``prefect_port`` and ``state_dir``; the Prefect home (``prefect.db``) is
        ``<state_dir>/prefect``.
    port, state_dir : optional
        Override the settings (tests use free ports and temp folders).
    timeout_s : float
        How long to wait for ``GET /api/health`` to answer 200.
    allow_remote : bool
        Allow a host that is not loopback. The Prefect server does not check who is asking.

    Returns
    -------
    ServerHandle
        ``url`` is the API URL to use as ``PREFECT_API_URL``.

    Raises
    ------
    ValueError
        The host is not loopback and ``allow_remote`` is False, or it is a wildcard address.
    ServerError
        The port is taken, a server of ours runs elsewhere, or the server never became healthy
        (the message holds the tail of its log; the process is stopped).
    """
    host = settings.host
    port = settings.prefect_port if port is None else port
    state = Path(settings.state_dir if state_dir is None else state_dir).resolve()
    _check_host(host, allow_remote)
    base = f"http://{_url_host(host)}:{port}"
    env = {"PREFECT_HOME": str(state / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [_venv_bin("prefect"), "server", "start", "--analytics-off"]
    command += ["--host", host, "--port", str(port)]
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    return _start(
        name="prefect",
        label="Prefect",
        config_key="prefect_port",
        command=command,
        env=env,
        # The server must not talk to itself (or another server) through an inherited API URL.
        unset=("PREFECT_API_URL",),
        host=host,
        port=port,
        state_dir=state,
        url=f"{base}/api",
        ui_url=base,
        health_url=f"{base}/api/health",
        timeout_s=timeout_s,
    )


def start_mlflow(
    settings: ServerSettings,
    *,
    port: int | None = None,
    state_dir: str | os.PathLike | None = None,
    mlflow_dir: str | os.PathLike | None = None,
    timeout_s: float = 90,
    allow_remote: bool = False,
) -> ServerHandle:
    """Start the embedded MLflow tracking server, or reuse the one the project started earlier.

    The store is ``<mlflow_dir>/mlflow.db`` (SQLite) with artifacts proxied by the server into
    ``<mlflow_dir>/artifacts``, so clients never need the folder itself.

    Parameters
    ----------
    settings : ServerSettings
        ``host``, ``mlflow_port``, ``state_dir`` (pid and log files) and ``mlflow_dir``.
    port, state_dir, mlflow_dir : optional
        Override the settings.
    timeout_s : float
        How long to wait for ``GET /health`` to answer 200 (15-20 s on a new database).
    allow_remote : bool
        Allow a host that is not loopback.

    Returns
    -------
    ServerHandle
        ``url`` is the tracking URI.

    Raises
    ------
    ValueError, ServerError
        As :func:`start_prefect`.
    """
    host = settings.host
    port = settings.mlflow_port if port is None else port
    state = Path(settings.state_dir if state_dir is None else state_dir).resolve()
    store = Path(settings.mlflow_dir if mlflow_dir is None else mlflow_dir).resolve()
    _check_host(host, allow_remote)
    base = f"http://{_url_host(host)}:{port}"
    command = [_venv_bin("mlflow"), "server", "--host", host, "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(store / "artifacts")]
    (store / "artifacts").mkdir(parents=True, exist_ok=True)
    return _start(
        name="mlflow",
        label="MLflow",
        config_key="mlflow_port",
        command=command,
        # Without the first, MLflow starts a job runner of 7 processes (about 2 GB) we never use.
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"},
        unset=(),
        host=host,
        port=port,
        state_dir=state,
        url=base,
        ui_url=base,
        health_url=f"{base}/health",
        timeout_s=timeout_s,
    )


def stop(handle: ServerHandle, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the server of ``handle`` (its process group) and remove its pid file.

    Returns
    -------
    bool
        True when a process was signalled; False when it was already gone or the pid now
        belongs to an unrelated process (which is left alone).
    """
    record = _read_pid_file(handle.pid_path)
    command = record.get("command") if record and record.get("pid") == handle.pid else None
    stopped = _stop_group(handle.name, handle.pid, command, timeout_s)
    if record is None or record.get("pid") == handle.pid:
        handle.pid_path.unlink(missing_ok=True)
    return stopped


def stop_servers(state_dir: str | os.PathLike, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop every server the project started whose pid file lies in ``state_dir``.

    A pid file whose process is gone, or whose pid now belongs to another program, is removed
    without signalling anything.

    Returns
    -------
    list of str
        The names of the servers that were running and were stopped.
    """
    stopped = []
    for name in SERVER_NAMES:
        path = Path(state_dir) / f"{name}.pid"
        if not path.exists():
            continue
        record = _read_pid_file(path) or {}
        pid = record.get("pid")
        if isinstance(pid, int) and _stop_group(name, pid, record.get("command"), timeout_s):
            stopped.append(name)
        path.unlink(missing_ok=True)
    return stopped


# --- starting ------------------------------------------------------------------------------


def _start(
    *,
    name: str,
    label: str,
    config_key: str,
    command: list[str],
    env: dict[str, str],
    unset: tuple[str, ...],
    host: str,
    port: int,
    state_dir: Path,
    url: str,
    ui_url: str,
    health_url: str,
    timeout_s: float,
) -> ServerHandle:
    """Reuse our live server on ``host:port``, or check the port, spawn, record and wait."""
    pid_path = state_dir / f"{name}.pid"
    log_path = state_dir / f"{name}.log"

    def handle(pid: int, started: bool) -> ServerHandle:
        return ServerHandle(name, pid, host, port, url, ui_url, log_path, started)

    with _lock(state_dir / f"{name}.lock"):
        record = _read_pid_file(pid_path)
        if record and _is_ours(name, record.get("pid"), record.get("command")):
            pid = record["pid"]
            if (record.get("host"), record.get("port")) != (host, port):
                raise ServerError(
                    f"The {label} server the project started earlier (pid {pid}) still runs on "
                    f"{record.get('host')}:{record.get('port')}, not {host}:{port}. Stop it first "
                    f"(ecg_pipeline.servers.stop_servers({str(state_dir)!r})) or set "
                    f"`[servers] {config_key} = {record.get('port')}`."
                )
            # Ours and on the right port: it may still be starting (another command started it).
            _wait_healthy(label, pid, health_url, timeout_s, log_path, 0)
            return handle(pid, started=False)
        pid_path.unlink(missing_ok=True)  # absent, unreadable, or a dead / reused pid

        _check_port_free(host, port, label, config_key)
        child_env = {k: v for k, v in os.environ.items() if k not in unset} | env
        with open(log_path, "ab") as log:
            log.write(f"\n=== {_now()} {' '.join(command)}\n".encode())
            log.flush()
            log_offset = log.tell()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=state_dir,  # anything a server drops in its working folder stays with its state
                start_new_session=True,  # its own process group: stopped as one, spared Ctrl-C
            )
        _CHILDREN[proc.pid] = proc
        record = {
            "pid": proc.pid,
            "port": port,
            "host": host,
            "started_at": _now(),
            "command": command,
        }
        atomic_write_text(pid_path, json.dumps(record, indent=2) + "\n")
        try:
            _wait_healthy(label, proc.pid, health_url, timeout_s, log_path, log_offset)
        except BaseException:
            _stop_group(name, proc.pid, command, STOP_TIMEOUT_S)
            pid_path.unlink(missing_ok=True)
            raise
        return handle(proc.pid, started=True)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if need be) for the ``with`` block.

    One start at a time per server: a second command waits here, then finds the first one's pid
    file and reuses that server instead of racing it for the port.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _wait_healthy(
    label: str, pid: int, health_url: str, timeout_s: float, log_path: Path, log_offset: int
) -> None:
    """Poll ``health_url`` until it answers 200; fail early if the server process exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if _healthy(health_url):
            return
        if not _alive(pid):
            problem = "exited before it answered"
            break
        if time.monotonic() >= deadline:
            problem = f"did not answer within {timeout_s:g} s"
            break
        time.sleep(0.25)
    raise ServerError(
        f"The {label} server (pid {pid}) {problem} at {health_url}. "
        f"Last lines of {log_path}:\n{_log_tail(log_path, log_offset)}"
    )


def _healthy(url: str) -> bool:
    # No proxies: an http_proxy in the environment must not carry a loopback request away.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _check_port_free(host: str, port: int, label: str, config_key: str) -> None:
    """Raise when something listens on ``host:port`` (bind like the servers do, then let go)."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            # As uvicorn does: connections in TIME_WAIT from a stopped server do not count.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise ServerError(
            f"Port {port} on {host} is already in use ({exc.strerror}), so the {label} server "
            f"cannot start there. Stop whatever holds it, or choose a free port with "
            f"`[servers] {config_key} = ...` in the configuration file."
        ) from exc


def _check_host(host: str, allow_remote: bool) -> None:
    """Refuse wildcard addresses always, and non-loopback hosts unless ``allow_remote``."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        raise ValueError(
            f"host {host!r} would listen on every network interface; name one address instead "
            "(127.0.0.1 keeps the servers on this machine)"
        )
    if host == "localhost" or (ip is not None and ip.is_loopback) or allow_remote:
        return
    raise ValueError(
        f"host {host!r} is not a loopback address: neither the Prefect server nor the MLflow "
        "server asks who is connecting, so anyone who can reach it could read and change runs. "
        "Use 127.0.0.1, or pass allow_remote=True on a trusted network."
    )


def _venv_bin(program: str) -> str:
    """The console script beside the running interpreter, so the venv's own version runs."""
    path = Path(sys.executable).parent / program
    if not path.exists():
        raise ServerError(f"{path} not found: is {program} installed in this environment?")
    return str(path)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _log_tail(path: Path, offset: int) -> str:
    """The last lines written to ``path`` since ``offset`` (this start's lines only)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty)"


def _read_pid_file(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --- processes -----------------------------------------------------------------------------


def _stop_group(name: str, pid: int, command: list[str] | None, timeout_s: float) -> bool:
    """SIGTERM the process group ``pid`` if it is ours, then SIGKILL what is left after a wait.

    The leader's command line must still name the server (a reused pid is left alone). When the
    leader is gone but members of its group live on (say uvicorn after the MLflow CLI died), the
    group is still ours: the system never hands out a pid that is still some group's id.
    """
    if not _is_ours(name, pid, command):
        members = [p for p in _group_members(pid) if name in _cmdline(p)]
        if _alive(pid) or not members:
            return False
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while (running := _group_members(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not running:
            break
    _CHILDREN.pop(pid, None)
    return True


def _is_ours(name: str, pid: object, command: list[str] | None) -> bool:
    """``pid`` is alive and still runs the server that was recorded for it."""
    if not isinstance(pid, int) or pid <= 0 or not _alive(pid):
        return False
    argv = _cmdline(pid).split("\0")
    if not any(name in arg for arg in argv):
        return False
    # Console scripts run as `python <script> <args>`: the recorded args end the command line.
    args = list(command[1:]) if command else []
    return not args or argv[-len(args) :] == args


def _alive(pid: int) -> bool:
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


def _group_members(pgid: int) -> list[int]:
    """Running processes of the process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _pgid(int(entry.name)) == pgid and _alive(int(entry.name)):
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


def _cmdline(pid: int) -> str:
    """The NUL-separated command line of ``pid`` (empty when gone or a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").rstrip("\0")
    except OSError:
        return ""
