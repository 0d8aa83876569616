"""Small JSON requests to the Prefect and MLflow REST APIs with urllib (no client library).

What the end-to-end tests and ``bench/orchestration.py`` use to start and watch runs the way a
person's scripts would: ``call`` a URL, list a deployment's ``flow_runs``, ``wait_for`` a state.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Loopback servers: a proxy from the environment must not sit in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Prefect's server answers 503 when its SQLite database is briefly locked (the request's
# transaction was rolled back, so sending it again is safe); its own client retries these.
RETRYABLE_STATUS = {429, 502, 503}


def call(
    url: str, body: dict | None = None, retries: int = 6, backoff_s: float = 0.5
) -> dict | list:
    """GET ``url`` (or POST ``body`` as JSON) and return the decoded JSON answer.

    A 429/502/503 answer is retried up to ``retries`` times, waiting ``Retry-After`` when the
    server names it, else ``backoff_s`` doubling each time; any other error is raised at once.
    """
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(retries + 1):
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUS or attempt == retries:
                raise
            time.sleep(_wait_s(error.headers.get("Retry-After"), backoff_s * 2**attempt))
    raise AssertionError("unreachable")  # the loop returns or raises


def _wait_s(retry_after: str | None, default_s: float) -> float:
    """Seconds to wait before a retry: the server's ``Retry-After`` (capped at 10 s) or the default."""
    try:
        return min(float(retry_after), 10.0) if retry_after else default_s
    except ValueError:  # an HTTP date instead of seconds: fall back to our own backoff
        return default_s


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
