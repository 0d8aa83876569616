"""Small JSON requests to the Prefect and MLflow REST APIs with urllib (no client library).

What the end-to-end tests and ``bench/orchestration.py`` use to start and watch runs the way a
person's scripts would: ``call`` a URL, list a deployment's ``flow_runs``, ``wait_for`` a state.
"""

from __future__ import annotations

import json
import time
import urllib.request

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Loopback servers: a proxy from the environment must not sit in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, body: dict | None = None) -> dict | list:
    """GET ``url`` (or POST ``body`` as JSON) and return the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=30) as response:
        return json.loads(response.read())


def flow_runs(api: str, deployment_id: str) -> list[dict]:
    """The deployment's flow runs, oldest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return call(f"{api}/flow_runs/filter", body)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
