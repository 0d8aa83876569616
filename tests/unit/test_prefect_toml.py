"""The repository's prefect.toml: written for the embedded server, never over a lab's own."""

from __future__ import annotations

import tomllib

from ecg_pipeline.stack.prefect_toml import (
    remove_prefect_toml,
    repository_root,
    write_prefect_toml,
)


def test_written_read_by_toml_and_removed(tmp_path):
    assert write_prefect_toml("http://127.0.0.1:4211/api", tmp_path) is None
    saved = tomllib.loads((tmp_path / "prefect.toml").read_text())
    assert saved == {"api": {"url": "http://127.0.0.1:4211/api"}}
    # A restart on another port rewrites our own file.
    write_prefect_toml("http://127.0.0.1:4300/api", tmp_path)
    assert "4300" in (tmp_path / "prefect.toml").read_text()
    assert remove_prefect_toml(tmp_path) and not (tmp_path / "prefect.toml").exists()
    assert remove_prefect_toml(tmp_path) is False


def test_a_labs_own_prefect_toml_is_kept_and_a_different_server_warned_about(tmp_path):
    own = '[api]\nurl = "https://prefect.lab.example/api"\n'
    (tmp_path / "prefect.toml").write_text(own)
    warning = write_prefect_toml("http://127.0.0.1:4200/api", tmp_path)
    assert "prefect.lab.example" in warning and "127.0.0.1:4200" in warning
    assert remove_prefect_toml(tmp_path) is False
    assert (tmp_path / "prefect.toml").read_text() == own
    # Naming the same server, or no server, is nothing to warn about.
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:4200/api"\n')
    assert write_prefect_toml("http://127.0.0.1:4200/api", tmp_path) is None


def test_the_repository_is_where_the_flows_are():
    root = repository_root()
    assert root is not None and (root / "flows" / "serve.py").is_file()
