"""``ecg-pipeline status``: what runs, where its UIs are, and what the store holds.

Read-only: pid files and health checks for the processes the project starts, the store's
footers (no samples read) and its rejections history. Nothing is started or stopped.
"""

from __future__ import annotations

from pathlib import Path

from ecg_pipeline.config import StudyConfig

__all__ = ["status_lines"]


def status_lines(config: StudyConfig) -> list[str]:
    """Lines a person reads: each process of the stack, then the dataset's store."""
    return [*_process_lines(config), "", *_store_lines(config)]


def _process_lines(config: StudyConfig) -> list[str]:
    from ecg_pipeline.stack.launch import answers_ok
    from ecg_pipeline.stack.processes import is_ours, read_pid_file

    s = config.servers
    state = Path(s.state_dir).resolve()
    where = {
        "prefect": (s.prefect_api.rstrip("/").removesuffix("/api"), f"{s.prefect_api}/health"),
        "mlflow": (s.mlflow_uri, f"{s.mlflow_uri.rstrip('/')}/health"),
        "serve": (f"{s.prefect_api.rstrip('/').removesuffix('/api')}/deployments", None),
        "watch": (str(Path(config.watch.folder or config.demo.inbox).resolve()), None),
    }
    lines = [f"processes (pid files in {state}):"]
    for name in ("prefect", "mlflow", "serve", "watch"):  # in starting order
        record = read_pid_file(state / f"{name}.pid")
        ui, health = where[name]
        if record and is_ours(name, record.get("pid"), record.get("command")):
            ok = "" if health is None or answers_ok(health) else ", NOT answering its health check"
            lines.append(f"  {name:<8} running (pid {record['pid']}{ok})  {ui}")
        else:
            lines.append(f"  {name:<8} not running")
    external = [u for u in (s.prefect_api_url, s.tracking_uri) if u]
    if external:
        lines.append(f"  configured servers of the lab's own: {', '.join(external)}")
    return lines


def _store_lines(config: StudyConfig) -> list[str]:
    from ecg_pipeline.ingest.write import HISTORY_FILE
    from ecg_pipeline.io.store import WindowStore

    store = WindowStore(config.store.root, config.dataset.name)
    path = Path(store.path).resolve()
    if not path.is_dir():
        return [f"store {path}: empty (nothing ingested yet)"]
    catalog = store.catalog()
    hashes = sorted(set(catalog["ingest_hash"].astype(str))) if len(catalog) else []
    current = config.ingest_hash()
    lines = [
        f"store {path}: {len(catalog)} recordings, {int(catalog['n_windows'].sum())} windows, "
        f"{catalog['subject'].nunique()} subjects x {catalog['condition'].nunique()} conditions"
    ]
    if hashes and hashes != [current]:
        lines.append(
            f"  written with [ingest] hash {', '.join(hashes)}; this configuration's is {current}:"
            " the next ingest rewrites them"
        )
    history = path / HISTORY_FILE
    if history.is_file():
        import pandas as pd

        refused = pd.read_csv(history, dtype=str, keep_default_na=False)
        lines.append(f"  {refused['file'].nunique()} file(s) ever refused ({history})")
    return lines
