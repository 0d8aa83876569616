"""Fixtures shared by the integration modules that need a tracking server."""

from __future__ import annotations

import pytest

from ecg_pipeline.config import ServerSettings
from ecg_pipeline.stack.servers import free_port, start_mlflow, stop

SERVER_START_S = 120.0  # 15-20 s on a new database when idle; much more on busy cores


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow server on a free loopback port, started and stopped by the project's code.

    One per module: each module's registry starts empty, so version numbers are its own.
    """
    root = tmp_path_factory.mktemp("mlflow")
    settings = ServerSettings(mlflow_port=free_port(), state_dir=root / "state", mlflow_dir=root)
    handle = start_mlflow(settings, timeout_s=SERVER_START_S)
    try:
        yield handle.url
    finally:
        stop(handle)
