"""The REST helper retries a server's transient answers (Prefect's 503 on a locked SQLite) and
nothing else, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecg_pipeline.stack import rest


def _server(answers: list[int]):
    """A loopback server answering each request with the next status of ``answers``."""
    seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            status = answers.pop(0)
            body = json.dumps({"status": status}).encode()
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_503_is_retried_with_the_same_body_until_it_succeeds():
    server, seen = _server([503, 503, 200])
    try:
        answer = rest.call(f"http://127.0.0.1:{server.server_port}/x", {"a": 1}, backoff_s=0.01)
    finally:
        server.shutdown()
    assert answer == {"status": 200}
    assert [json.loads(b) for b in seen] == [{"a": 1}] * 3


def test_a_client_error_is_raised_at_once():
    server, seen = _server([404, 200])
    try:
        with pytest.raises(urllib.error.HTTPError) as raised:
            rest.call(f"http://127.0.0.1:{server.server_port}/x", {"a": 1}, backoff_s=0.01)
    finally:
        server.shutdown()
    assert raised.value.code == 404 and len(seen) == 1


def test_retries_are_bounded():
    server, seen = _server([503] * 3)
    try:
        with pytest.raises(urllib.error.HTTPError) as raised:
            rest.call(f"http://127.0.0.1:{server.server_port}/x", {}, retries=2, backoff_s=0.01)
    finally:
        server.shutdown()
    assert raised.value.code == 503 and len(seen) == 3
