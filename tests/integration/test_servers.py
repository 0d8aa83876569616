"""The embedded Prefect and MLflow servers, started for real on free ports in temp folders.

Each server takes 10-20 s to start, so one module-scoped pair serves every test, both started
at once; the tests that need no running server use a folder of their own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ecg_pipeline.config import ServerSettings
from ecg_pipeline.stack.servers import (
    ServerError,
    free_port,
    start_both,
    start_mlflow,
    start_prefect,
    start_watcher,
    stop,
    stop_servers,
)

pytestmark = pytest.mark.integration


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.status


def _gone(pid: int) -> bool:
    # A zombie still has a /proc entry; ours are reaped by the module, so the entry must vanish.
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both servers on free ports, with state and store in a temp folder; stopped at the end."""
    root = tmp_path_factory.mktemp("servers")
    settings = ServerSettings(
        prefect_port=free_port(),
        mlflow_port=free_port(),
        state_dir=root / "state",
        mlflow_dir=root / "mlflow",
    )
    prefect, mlflow = start_both(settings, timeout_s=60)
    handles = {"prefect": prefect, "mlflow": mlflow}
    yield settings, handles
    stop_servers(settings.state_dir)


def test_servers_answer_health(servers):
    settings, h = servers
    assert h["prefect"].started and h["mlflow"].started
    assert h["prefect"].url == f"http://127.0.0.1:{settings.prefect_port}/api"
    assert h["mlflow"].url == f"http://127.0.0.1:{settings.mlflow_port}"
    assert _get(h["prefect"].url + "/health") == 200
    assert _get(h["mlflow"].url + "/health") == 200
    assert (settings.state_dir / "prefect" / "prefect.db").exists()
    assert (settings.mlflow_dir / "mlflow.db").exists()


def _listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds, read
    from the kernel's socket table (/proc/net/tcp, tcp6) by the sockets' inodes."""
    import ipaddress

    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def test_servers_listen_on_loopback_only_by_the_socket_table(servers):
    from ecg_pipeline.stack.processes import group_members

    settings, h = servers
    for name, handle in h.items():
        pids = group_members(os.getpgid(handle.pid)) or [handle.pid]
        addresses = _listening_addresses(pids)
        assert addresses, f"{name}: no listening socket found for pids {pids}"
        assert {a for a, _ in addresses} == {"127.0.0.1"}, (name, addresses)
        assert handle.port in {p for _, p in addresses}


def test_pid_files_name_the_servers(servers):
    settings, h = servers
    for name, handle in h.items():
        record = json.loads((settings.state_dir / f"{name}.pid").read_text())
        assert record["pid"] == handle.pid
        assert (record["host"], record["port"]) == ("127.0.0.1", handle.port)
        assert record["command"][0].endswith(f"/bin/{name}") and record["started_at"]
        assert name in Path(f"/proc/{handle.pid}/cmdline").read_text()
        assert handle.log_path.exists()


def test_second_start_reuses_the_running_server(servers):
    settings, h = servers
    prefect, mlflow = start_prefect(settings), start_mlflow(settings)
    assert (prefect.started, prefect.pid) == (False, h["prefect"].pid)
    assert (mlflow.started, mlflow.pid) == (False, h["mlflow"].pid)


def test_start_on_another_port_while_ours_runs_is_refused(servers):
    settings, h = servers
    with pytest.raises(ServerError, match=f"pid {h['prefect'].pid}.*prefect_port"):
        start_prefect(settings, port=free_port())


def test_taken_port_gives_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = ServerSettings(state_dir=tmp_path / "state", mlflow_dir=tmp_path / "mlflow")
        with pytest.raises(ServerError, match=rf"Port {port}\b.*Prefect.*\[servers\] prefect_port"):
            start_prefect(settings, port=port)
        with pytest.raises(ServerError, match=rf"Port {port}\b.*MLflow.*\[servers\] mlflow_port"):
            start_mlflow(settings, port=port)
    assert not (tmp_path / "state" / "prefect.pid").exists()


def test_a_taken_second_port_starts_nothing(tmp_path):
    """One port free, the other taken: refused before Prefect starts, not after."""
    from ecg_pipeline.stack.servers import start_embedded

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        settings = ServerSettings(
            prefect_port=free_port(),
            mlflow_port=holder.getsockname()[1],
            state_dir=tmp_path / "state",
            mlflow_dir=tmp_path / "mlflow",
        )
        with pytest.raises(ServerError, match=r"MLflow.*\[servers\] mlflow_port"):
            start_embedded(settings)
        with pytest.raises(ServerError, match=r"MLflow.*\[servers\] mlflow_port"):
            start_both(settings)
    assert not (tmp_path / "state" / "prefect.pid").exists()
    with socket.socket() as probe:  # nothing listens on Prefect's port
        assert probe.connect_ex(("127.0.0.1", settings.prefect_port)) != 0


def test_a_failed_later_step_stops_the_servers_started_before_it(tmp_path, monkeypatch):
    from ecg_pipeline.stack import servers
    from ecg_pipeline.stack.launch import ServerHandle

    started = ServerHandle("prefect", 1, "127.0.0.1", 1, "u", "u", tmp_path / "log", True)
    stopped = []
    monkeypatch.setattr(servers, "start_prefect", lambda settings: started)

    def mlflow_fails(settings):
        raise ServerError("the MLflow server never became healthy")

    monkeypatch.setattr(servers, "start_mlflow", mlflow_fails)
    monkeypatch.setattr(servers, "stop", stopped.append)
    settings = ServerSettings(
        prefect_port=free_port(), mlflow_port=free_port(), state_dir=tmp_path / "state"
    )
    with pytest.raises(ServerError, match="never became healthy"):
        servers.start_embedded(settings)
    assert stopped == [started]

    # The same when the deployment server, a later step of the stack, fails: the servers this
    # call started are stopped, newest first; one that was already running stays.
    stopped.clear()
    reused = ServerHandle("mlflow", 2, "127.0.0.1", 2, "u", "u", tmp_path / "log", False)
    monkeypatch.setattr(servers, "start_mlflow", lambda settings: reused)

    def serve_fails(config_path, settings):
        raise ServerError("the deployment server exited")

    monkeypatch.setattr(servers, "start_deployment_server", serve_fails)
    with pytest.raises(ServerError, match="deployment server exited"):
        servers.start_stack(tmp_path / "study.toml", settings, serve=True)
    assert stopped == [started]


def test_a_started_stack_names_its_prefect_api_in_prefect_toml_unless_told_not_to(
    tmp_path, monkeypatch
):
    from ecg_pipeline.stack import prefect_toml, servers

    written = []
    monkeypatch.setattr(servers, "start_embedded", lambda settings: [])
    monkeypatch.setattr(prefect_toml, "write_prefect_toml", lambda url: written.append(url))
    settings = ServerSettings(prefect_port=4321, state_dir=tmp_path / "state")
    servers.start_stack(tmp_path / "study.toml", settings, serve=False)
    assert written == ["http://127.0.0.1:4321/api"]
    servers.start_stack(
        tmp_path / "study.toml", settings.model_copy(update={"prefect_toml": False}), serve=False
    )
    assert written == ["http://127.0.0.1:4321/api"]


def test_server_that_never_gets_healthy_is_stopped(tmp_path):
    settings = ServerSettings(prefect_port=free_port(), state_dir=tmp_path)
    with pytest.raises(ServerError, match="not ready within 0.5 s.*prefect.log") as info:
        start_prefect(settings, timeout_s=0.5)
    pid = int(re.search(r"\(pid (\d+)\)", str(info.value)).group(1))
    assert _gone(pid)
    assert not (tmp_path / "prefect.pid").exists()


def test_stale_and_reused_pid_files_are_removed_without_signalling(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "prefect.pid").write_text(json.dumps({"pid": dead.pid, "port": 1}))
    # A live process that is no server of ours, as after pid reuse: it must survive.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "mlflow.pid").write_text(json.dumps({"pid": stranger.pid, "port": 1}))
        assert stop_servers(tmp_path) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert not list(tmp_path.glob("*.pid"))


@pytest.mark.parametrize("host", ["192.168.1.10", "example.org", "0.0.0.0", "::"])
def test_non_loopback_host_is_refused(tmp_path, host):
    settings = ServerSettings(host=host, state_dir=tmp_path)
    with pytest.raises(ValueError, match="loopback|every network interface"):
        start_prefect(settings)
    with pytest.raises(ValueError, match="loopback|every network interface"):
        start_mlflow(settings, mlflow_dir=tmp_path)
    if host in ("0.0.0.0", "::"):  # a wildcard is refused even when remote hosts are allowed
        with pytest.raises(ValueError, match="every network interface"):
            start_prefect(settings, allow_remote=True)
    assert not list(tmp_path.iterdir())


def test_watcher_starts_once_refuses_another_config_and_stops_first(servers, tmp_path):
    """The background watcher (make watch): ready once it watches, reused by a second start,
    refused for another configuration while it runs, stopped before the servers."""
    settings, h = servers
    config = tmp_path / "study.toml"
    config.write_text(
        f'[demo]\ninbox = "{tmp_path / "inbox"}"\n[servers]\n'
        f"prefect_port = {settings.prefect_port}\n"
    )
    (tmp_path / "inbox").mkdir()
    watcher = start_watcher(config, settings)
    assert watcher.started and "watching" in watcher.log_path.read_text()
    record = json.loads(watcher.pid_path.read_text())
    assert (
        record["config"] == str(config.resolve()) and record["prefect_api"] == settings.prefect_api
    )
    again = start_watcher(config, settings)
    assert (again.started, again.pid) == (False, watcher.pid)
    other = tmp_path / "other.toml"
    other.write_text(config.read_text())
    with pytest.raises(ServerError, match=f"inbox watcher.*pid {watcher.pid}.*Stop it first"):
        start_watcher(other, settings)
    assert stop(watcher) is True and _gone(watcher.pid)


def test_stop_and_stop_servers_end_the_process_groups(servers):
    # Last in the module: it stops the shared servers (the fixture's own stop is then a no-op).
    settings, h = servers
    assert stop(h["prefect"]) is True
    assert stop_servers(settings.state_dir) == ["mlflow"]
    for handle in h.values():
        assert _gone(handle.pid)
        assert not handle.pid_path.exists()
        with socket.socket() as s:  # the port is free again (TIME_WAIT aside, as for a server)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", handle.port))
    out = subprocess.run(["ps", "-eo", "pgid="], capture_output=True, text=True).stdout.split()
    assert not {str(handle.pid) for handle in h.values()} & set(out)
    assert stop_servers(settings.state_dir) == []
