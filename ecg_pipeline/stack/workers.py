"""The project's own long-running processes: the deployment server and the inbox watcher.

Each runs as ``python -m <module> --config <file>`` of this interpreter (``flows.serve`` and
``ecg_pipeline.stack.watch``, both installed with the package), records its pid beside the
servers' and is ready once its log says so. See :func:`ecg_pipeline.stack.launch.launch`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_pipeline.stack.launch import ServerHandle, launch

if TYPE_CHECKING:
    from ecg_pipeline.config import ServerSettings

# What flow.serve prints once its deployments are registered, just before it starts polling.
SERVE_READY_MARKER = "being served and polling"
WATCH_READY_MARKER = "watching "


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
    """Watch the configuration's inbox (``python -m ecg_pipeline.stack.watch``) in the background.

    Parameters and errors as :func:`start_deployment_server`; ready once it watches.
    """
    config_path = Path(config_path).resolve()
    return _start_worker(
        "watch",
        "inbox watcher",
        "ecg_pipeline.stack.watch",
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
    }

    def ready(offset: int) -> bool:
        try:
            with open(log_path, "rb") as f:
                f.seek(offset)
                return marker in f.read().decode("utf-8", "replace")
        except OSError:
            return False

    return launch(
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
