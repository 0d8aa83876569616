"""What ``bench/orchestration.py`` builds on: small helpers (Prefect timestamps, medians, the
CPU-load line), study configuration files written as TOML and read back, SIGTERM raised as
Ctrl-C (so that everything is stopped), the temp Prefect and MLflow servers, and a flow run's
seconds per task kind from the Prefect API. The REST helpers (``call``, ``wait_for``,
``flow_runs``) are the library's (:mod:`ecg_pipeline.stack.rest`), which the e2e tests use too.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from machine import cpu_busy  # bench/machine.py: the script's folder is on sys.path

from ecg_pipeline.config import StudyConfig, load_config
from ecg_pipeline.stack.rest import TERMINAL, call, flow_runs, wait_for  # noqa: F401 (re-exported)
from ecg_pipeline.stack.servers import free_port, start_both

REPO = Path(__file__).resolve().parents[1]


# --- small helpers ------------------------------------------------------------------------------
def ts(text: str | None) -> float | None:
    """A Prefect API timestamp (ISO 8601, UTC) as epoch seconds."""
    return None if not text else datetime.fromisoformat(text).timestamp()


def median(values) -> float:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else float("nan")


def spread(values) -> str:
    values = [v for v in values if v is not None]
    return ", ".join(f"{v:.2f}" for v in values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def settle(paths) -> None:
    """Date files an hour back, so discovery does not defer them as still being written."""
    past = time.time() - 3600
    for p in paths:
        os.utime(p, (past, past))


def load_line(label: str) -> str:
    busy = cpu_busy()
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = float("nan")
    warn = "  (busy: figures below carry other work's noise)" if busy > 0.25 else ""
    return f"{label}: CPUs {busy:.0%} busy over 1 s, load average {load1:.2f}{warn}"


# --- study configuration files ------------------------------------------------------------------
def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v)  # JSON numbers and strings are valid TOML ones
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = (f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(tables: dict) -> str:
    """A nested dict as TOML (None values left out: TOML has no null)."""
    lines: list[str] = []

    def table(prefix: str, t: dict) -> None:
        subs = {k: v for k, v in t.items() if isinstance(v, dict) and v}
        if prefix:
            lines.append(f"\n[{prefix}]")
        for k, v in t.items():
            if k not in subs and v is not None:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs.items():
            table(f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k), v)

    table("", tables)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_study(path: Path, base: StudyConfig, changes: dict[str, object]) -> StudyConfig:
    """``base`` with dotted-key ``changes`` (None: the default) written to ``path``, read back.

    Both the plain script and the flow read this one file, so they run the same settings.
    """
    raw = base.model_dump(mode="json")
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        t = raw
        for p in parents:
            t = t[p]
        t[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(raw), encoding="utf-8")
    config = load_config(path)
    if config.model_dump(mode="json") != raw:
        raise RuntimeError(f"{path}: the configuration does not read back as written")
    return config


def server_changes(settings) -> dict[str, object]:
    return {
        "servers.host": settings.host,
        "servers.prefect_port": settings.prefect_port,
        "servers.mlflow_port": settings.mlflow_port,
        "servers.prefect_api_url": None,
        "servers.tracking_uri": None,
        "servers.state_dir": str(settings.state_dir),
        "servers.mlflow_dir": str(settings.mlflow_dir),
    }


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --- servers ------------------------------------------------------------------------------------
def start_servers(root: Path):
    from ecg_pipeline.config import ServerSettings

    settings = ServerSettings(
        prefect_port=free_port(),
        mlflow_port=free_port(),
        state_dir=root / "state",
        mlflow_dir=root / "mlflow",
    )
    prefect, mlflow = start_both(settings)
    return settings, prefect, mlflow


def task_spans(api: str, flow_run_id: str) -> dict[str, float]:
    """Seconds per task kind of a flow run, from its task runs' start and end times."""
    runs = call(
        f"{api}/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
    )
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        start, end = ts(r.get("start_time")), ts(r.get("end_time"))
        if start is None or end is None:
            continue
        name = r["name"]
        kind = next(
            (
                k
                for k in (
                    "discover",
                    "validate-labels",
                    "plan",
                    "record-batch",
                    "train",
                    "evaluate",
                    "log-mlflow",
                )
                if name.startswith(f"{k}-")
            ),
            None,
        )
        kind = kind or ("ingest-file" if name.startswith("ingest-") else name)
        by[kind].append((start, end))
    out = {k: max(e for _, e in v) - min(s for s, _ in v) for k, v in by.items()}
    out["ingest-file (sum of tasks)"] = sum(e - s for s, e in by.get("ingest-file", []))
    out["n_ingest_file"] = len(by.get("ingest-file", []))
    model_kinds = [k for k in ("train", "evaluate") if k in by]
    if model_kinds:  # train's start to evaluate's end: what the plain script's one call does
        out["train-evaluate"] = max(e for k in model_kinds for _, e in by[k]) - min(
            s for k in model_kinds for s, _ in by[k]
        )
    ingest_kinds = [
        k for k in ("discover", "validate-labels", "plan", "ingest-file", "record-batch") if k in by
    ]
    if ingest_kinds:  # discover's start to record-batch's end: the flow's whole ingest
        out["ingest"] = max(e for k in ingest_kinds for _, e in by[k]) - min(
            s for k in ingest_kinds for s, _ in by[k]
        )
    return out
