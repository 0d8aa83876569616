"""Start and stop the embedded stack that ``make run`` uses: servers, the served flow, the watcher.

The Prefect server and the MLflow tracking server run as subprocesses of the venv's own
``prefect`` and ``mlflow`` commands; the deployment server (``python -m flows.serve``) and the
inbox watcher (``python -m ecg_pipeline.watch``) run as subprocesses of this interpreter. A pid
file per process under ``state_dir`` records what the project started (see
:mod:`ecg_pipeline.processes`), so that a later command reuses a live process instead of
starting a second one, and :func:`stop_servers` stops exactly those processes and nothing else.

Only the standard library is imported here: the servers are subprocesses, and a command line
that imports this module must stay fast.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_pipeline.processes import (
    STOP_TIMEOUT_S,
    is_ours,
    locked,
    log_tail,
    read_pid_file,
    spawn_recorded,
    stop_group,
    stop_recorded,
    wait_until,
)

if TYPE_CHECKING:
    from ecg_pipeline.config import ServerSettings

# Stopped in this order: the watcher and the served flow before the servers they talk to.
SERVER_NAMES = ("watch", "serve", "prefect", "mlflow")
# What flow.serve prints once its deployments are registered, just before it starts polling.
SERVE_READY_MARKER = "being served and polling"
WATCH_READY_MARKER = "watching "


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


def use_prefect_api(settings: ServerSettings) -> None:
    """Point this process's Prefect client at the configured API, before prefect is imported.

    The configuration wins over an exported ``PREFECT_API_URL``: the deployment server, the
    watcher and ``make run`` must all talk to the one server the study names.
    """
    os.environ["PREFECT_API_URL"] = settings.prefect_api
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Flow results (the JSON summaries) stay with the project's state, not in ~/.prefect.
    results = Path(settings.state_dir).resolve() / "prefect-results"
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(results)
    # Models are only ever loaded without pickles in the project's processes.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"


def start_both(
    settings: ServerSettings, timeout_s: float = 180
) -> tuple[ServerHandle, ServerHandle]:
    """Start the Prefect and MLflow servers at once (each takes 10-20 s); both or neither.

    Returns
    -------
    (ServerHandle, ServerHandle)
        Prefect's and MLflow's.

    Raises
    ------
    ServerError, ValueError
        As :func:`start_prefect` and :func:`start_mlflow`; whichever did start is stopped.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        starts = [
            pool.submit(start_prefect, settings, timeout_s=timeout_s),
            pool.submit(start_mlflow, settings, timeout_s=timeout_s),
        ]
        try:
            prefect, mlflow = (f.result() for f in starts)
        except BaseException:
            pool.shutdown(wait=True)  # let the other start finish, so that it can be stopped
            for f in starts:  # only what this call started: a reused server stays up
                if f.exception() is None and f.result().started:
                    stop(f.result())
            raise
    return prefect, mlflow


def start_embedded(settings: ServerSettings) -> list[ServerHandle]:
    """Start (or reuse) the embedded servers the configuration does not replace.

    A configured ``prefect_api_url`` or ``tracking_uri`` names a lab's own server: nothing is
    started for it, and it must answer its health check.

    Raises
    ------
    ServerError
        As :func:`start_prefect` and :func:`start_mlflow`, or a configured server that does not
        answer.
    """
    handles = []
    for external, health, start in (
        (settings.prefect_api_url, f"{settings.prefect_api.rstrip('/')}/health", start_prefect),
        (settings.tracking_uri, f"{settings.mlflow_uri.rstrip('/')}/health", start_mlflow),
    ):
        if external is None:
            handles.append(start(settings))
        elif external.startswith(("http://", "https://")) and not _answers(health):
            raise ServerError(f"the configured server {external} does not answer at {health}")
    return handles


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
    env = {
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI asks the server's /ui-settings where its API is; unset, that is always
        # 127.0.0.1:4200, whatever port the server listens on.
        "PREFECT_UI_API_URL": f"{base}/api",
    }
    command = [_venv_bin("prefect"), "server", "start", "--analytics-off"]
    command += ["--host", host, "--port", str(port)]
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    return _start_server(
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
    return _start_server(
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
    record = read_pid_file(handle.pid_path)
    command = record.get("command") if record and record.get("pid") == handle.pid else None
    stopped = stop_group(handle.name, handle.pid, command, timeout_s)
    if record is None or record.get("pid") == handle.pid:
        handle.pid_path.unlink(missing_ok=True)
    return stopped


def stop_servers(state_dir: str | os.PathLike, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop every process the project started whose pid file lies in ``state_dir``.

    A pid file whose process is gone, or whose pid now belongs to another program, is removed
    without signalling anything.

    Returns
    -------
    list of str
        The names of the processes that were running and were stopped, in stopping order.
    """
    paths = [(name, Path(state_dir) / f"{name}.pid") for name in SERVER_NAMES]
    return [name for name, path in paths if path.exists() and stop_recorded(name, path, timeout_s)]


# --- starting ------------------------------------------------------------------------------
def _start_server(
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
    """A server on ``host:port``: ready when ``health_url`` answers 200."""
    return _start(
        name=name,
        label=f"{label} server",
        command=command,
        env=env,
        unset=unset,
        state_dir=state_dir,
        cwd=state_dir,  # anything a server drops in its working folder stays with its state
        handle=lambda pid, started: ServerHandle(
            name, pid, host, port, url, ui_url, state_dir / f"{name}.log", started
        ),
        ready=lambda _offset: answers_ok(health_url),
        ready_what=f"GET {health_url} did not answer 200",
        identity={"host": host, "port": port},
        mismatch_hint=f" or set `[servers] {config_key}` to the port it runs on",
        check_free=lambda: _check_port_free(host, port, label, config_key),
        timeout_s=timeout_s,
    )


def start_deployment_server(
    config_path: str | os.PathLike, settings: ServerSettings, *, timeout_s: float = 120
) -> ServerHandle:
    """Serve the project's deployments (``python -m flows.serve``) in the background.

    Parameters
    ----------
    config_path : path-like
        The study configuration every run of ``ingest-train/default`` gets.
    settings : ServerSettings
        The Prefect API to register with and poll (``prefect_api``), and ``state_dir`` for the
        pid and log files.
    timeout_s : float
        How long to wait for the deployments to be registered.

    Returns
    -------
    ServerHandle
        ``url`` is the Prefect API it polls; ``ui_url`` the UI's deployments page.

    Raises
    ------
    ServerError
        It exited or never registered (the message holds its log's tail), or a deployment
        server the project started earlier serves another configuration.
    """
    config_path = Path(config_path).resolve()
    return _start_worker(
        "serve",
        "deployment server",
        "flows.serve",
        config_path,
        settings,
        SERVE_READY_MARKER,
        "/deployments",
        timeout_s,
    )


def start_watcher(
    config_path: str | os.PathLike, settings: ServerSettings, *, timeout_s: float = 60
) -> ServerHandle:
    """Watch the configuration's inbox (``python -m ecg_pipeline.watch``) in the background.

    Parameters and errors as :func:`start_deployment_server`; ready once it watches.
    """
    config_path = Path(config_path).resolve()
    return _start_worker(
        "watch",
        "inbox watcher",
        "ecg_pipeline.watch",
        config_path,
        settings,
        WATCH_READY_MARKER,
        "/events",
        timeout_s,
    )


def _start_worker(
    name: str,
    label: str,
    module: str,
    config_path: Path,
    settings: ServerSettings,
    marker: str,
    ui_page: str,
    timeout_s: float,
) -> ServerHandle:
    """A ``python -m <module> --config <file>`` process, ready once its log shows ``marker``."""
    state = Path(settings.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / f"{name}.log"
    api = settings.prefect_api
    ui = api.removesuffix("/").removesuffix("/api")
    env = {
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": _with_project_root(os.environ.get("PYTHONPATH")),
    }

    def ready(offset: int) -> bool:
        try:
            with open(log_path, "rb") as f:
                f.seek(offset)
                return marker in f.read().decode("utf-8", "replace")
        except OSError:
            return False

    return _start(
        name=name,
        label=label,
        command=[sys.executable, "-m", module, "--config", str(config_path)],
        # The caller's folder: relative paths in the config (data/windows, data/inbox) mean the
        # same to the served runs and the watcher as to the command that started them.
        env=env,
        unset=(),
        state_dir=state,
        cwd=Path.cwd(),
        handle=lambda pid, started: ServerHandle(
            name, pid, settings.host, settings.prefect_port, api, ui + ui_page, log_path, started
        ),
        ready=ready,
        ready_what=f"its log never said {marker.strip()!r}",
        identity={"config": str(config_path), "prefect_api": api, "cwd": str(Path.cwd())},
        mismatch_hint="",
        timeout_s=timeout_s,
    )


def _project_root() -> Path:
    """The checkout holding ``flows/`` (the package is installed editable from it)."""
    return Path(__file__).resolve().parents[1]


def _with_project_root(pythonpath: str | None) -> str:
    return os.pathsep.join([str(_project_root()), *([pythonpath] if pythonpath else [])])


def _start(
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
                    f"ecg_pipeline.servers.stop_servers({str(state_dir)!r})){mismatch_hint}."
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
    return _http_status(url) == 200


def _answers(url: str) -> bool:
    """Whether a server answers at all: an HTTP error (401 behind an auth proxy) still counts."""
    return _http_status(url) is not None


def _http_status(url: str) -> int | None:
    """The HTTP status ``url`` answers with now; None when nothing answers."""
    host = urllib.parse.urlsplit(url).hostname or ""
    # Loopback without proxies: an http_proxy in the environment must not carry a request to
    # this machine away. A lab's own server may well sit behind its proxy.
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
    try:
        with urllib.request.build_opener(*handlers).open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
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
    if _is_loopback(host) or allow_remote:
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
