"""The embedded Prefect and MLflow servers that ``make run`` uses: start, reuse, stop.

Both run as subprocesses of the venv's own ``prefect`` and ``mlflow`` commands. A pid file per
process under ``state_dir`` records what the project started (:mod:`.processes`, :mod:`.launch`),
so that a later command reuses a live server instead of starting a second one, and
:func:`stop_servers` stops exactly the processes the project started (these two, the deployment
server and the watcher of :mod:`.workers`) and nothing else.

Only the standard library is imported here: the servers are subprocesses, and a command line
that imports this module must stay fast.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_pipeline.stack.launch import (
    ServerError,
    ServerHandle,
    address_family,
    answers,
    answers_ok,
    is_loopback,
    launch,
)
from ecg_pipeline.stack.processes import STOP_TIMEOUT_S, read_pid_file, stop_group, stop_recorded
from ecg_pipeline.stack.workers import start_deployment_server, start_watcher

if TYPE_CHECKING:
    from ecg_pipeline.config import ServerSettings

__all__ = [
    "SERVER_NAMES",
    "ServerError",
    "ServerHandle",
    "answers_ok",
    "check_ports_before_starting",
    "free_port",
    "start_both",
    "start_deployment_server",
    "start_embedded",
    "start_mlflow",
    "start_stack",
    "start_prefect",
    "start_watcher",
    "stop",
    "stop_servers",
    "use_prefect_api",
]

# Stopped in this order: the watcher and the served flow before the servers they talk to.
SERVER_NAMES = ("watch", "serve", "prefect", "mlflow")


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

    check_ports_before_starting(settings, ("prefect", "mlflow"))
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
    started for it, and it must answer its health check. Every port is checked before anything
    starts, and when a later start fails, what this call started is stopped again.

    Raises
    ------
    ServerError
        As :func:`start_prefect` and :func:`start_mlflow`, or a configured server that does not
        answer.
    """
    wanted = []
    for name, external, health, start in (
        (
            "prefect",
            settings.prefect_api_url,
            f"{settings.prefect_api.rstrip('/')}/health",
            start_prefect,
        ),
        (
            "mlflow",
            settings.tracking_uri,
            f"{settings.mlflow_uri.rstrip('/')}/health",
            start_mlflow,
        ),
    ):
        if external is None:
            wanted.append((name, start))
        elif external.startswith(("http://", "https://")) and not answers(health):
            raise ServerError(f"the configured server {external} does not answer at {health}")
    # Every port first: a taken second port must not leave the first server running.
    check_ports_before_starting(settings, tuple(name for name, _ in wanted))
    handles: list[ServerHandle] = []
    try:
        for _, start in wanted:
            handles.append(start(settings))
    except BaseException:
        for handle in handles:  # only what this call started: a reused server stays up
            if handle.started:
                stop(handle)
        raise
    return handles


def start_stack(
    config_path: str | os.PathLike,
    settings: ServerSettings,
    *,
    serve: bool = True,
    watch: bool = False,
) -> list[ServerHandle]:
    """The embedded servers, then the deployment server and the watcher when asked; all or none.

    Once up, the embedded Prefect server's address goes into the repository's ``prefect.toml``
    (:mod:`.prefect_toml`), so Prefect commands typed in the repository need no export. When a
    later step fails (the deployment server does not come up), what this call started
    is stopped again, newest first, so no half-started stack is left behind; servers that were
    already running stay.

    Raises
    ------
    ServerError
        As :func:`start_embedded`, :func:`start_deployment_server` and :func:`start_watcher`.
    """
    from ecg_pipeline.stack.prefect_toml import write_prefect_toml

    handles = start_embedded(settings)
    try:
        if serve or watch:
            handles.append(start_deployment_server(config_path, settings))
        if watch:
            handles.append(start_watcher(config_path, settings))
    except BaseException:
        for handle in reversed(handles):
            if handle.started:
                stop(handle)
        raise
    if settings.prefect_toml and settings.prefect_api_url is None:  # for new shells
        warning = write_prefect_toml(settings.prefect_api)
        if warning:
            import warnings

            warnings.warn(warning, stacklevel=2)
    return handles


def check_ports_before_starting(settings: ServerSettings, names: tuple[str, ...]) -> None:
    """Refuse, before anything starts, when a server in ``names`` would need a port that is taken.

    A port held by the project's own live server of that name (its pid file names the port) is
    not taken: that server is reused.

    Raises
    ------
    ServerError
        A port is in use by something else (the message names it and the setting to change).
    """
    from ecg_pipeline.stack.processes import is_ours

    state = Path(settings.state_dir).resolve()
    for name, port, label, key in (
        ("prefect", settings.prefect_port, "Prefect", "prefect_port"),
        ("mlflow", settings.mlflow_port, "MLflow", "mlflow_port"),
    ):
        if name not in names:
            continue
        record = read_pid_file(state / f"{name}.pid")
        if record and is_ours(name, record.get("pid"), record.get("command")):
            continue  # ours: reused, or refused by its start with the port it runs on
        _check_port_free(settings.host, port, label, key)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now (the OS picks it; another may take it later)."""
    with socket.socket(address_family(host), socket.SOCK_STREAM) as s:
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
        ``<state_dir>/prefect``; ``prefect_database_url`` puts its database elsewhere.
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
    if settings.prefect_database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.prefect_database_url
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

    The store is ``<mlflow_dir>/mlflow.db`` (SQLite; ``mlflow_backend_uri``, e.g. PostgreSQL,
    when set) with artifacts proxied by the server into ``<mlflow_dir>/artifacts``, so clients
    never need the folder itself.

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
    backend = settings.mlflow_backend_uri or f"sqlite:///{store / 'mlflow.db'}"
    command += ["--backend-store-uri", backend]
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
    from ecg_pipeline.stack.prefect_toml import remove_prefect_toml

    paths = [(name, Path(state_dir) / f"{name}.pid") for name in SERVER_NAMES]
    stopped = [
        name for name, path in paths if path.exists() and stop_recorded(name, path, timeout_s)
    ]
    if "prefect" in stopped:
        remove_prefect_toml()  # it would send Prefect commands to a server that is gone
    return stopped


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
    return launch(
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


def _check_port_free(host: str, port: int, label: str, config_key: str) -> None:
    """Raise when something listens on ``host:port`` (bind like the servers do, then let go)."""
    try:
        with socket.socket(address_family(host), socket.SOCK_STREAM) as s:
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
    if is_loopback(host) or allow_remote:
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
