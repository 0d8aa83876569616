"""Load: hundreds of recordings, good and bad mixed, dropped into the watched folder at once.

Starts a Prefect server and an MLflow server on free loopback ports (temp state), serves the
deployments and starts the watcher as ``make serve`` and ``make watch`` do, then moves N files
into the inbox in one burst (written in a staging folder, then renamed in): about 70 % good
demo recordings (20 s, distinct subjects) and 30 % bad ones, in turn an empty file, a text
file, a truncated recording, a copy of a good file's bytes under another name, and a file
whose name carries no subject. It waits until the runs the burst started have all finished
and nothing new starts, then checks and prints: every good file's windows stored exactly
once, every bad file in the rejections history, no file missed; the number of runs started
and the time from the drop to the last run's end. Every process it started is stopped by pid.

Run: ``.venv/bin/python bench/load.py [--files 500] [--json PATH]`` (a few minutes on the
2-core machine). ``tests/e2e/test_load_e2e.py`` runs the same drop and checks with 100 files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BAD_KINDS = ("empty", "text", "truncated", "copy", "unlabelled")


def write_mixed_batch(staging: Path, n_files: int, first_subject: int = 101) -> dict[str, str]:
    """Write ``n_files`` recordings into ``staging``; returns file name -> "good" or a bad kind.

    Of every 10 files, 7 are good and 3 bad (the kinds of :data:`BAD_KINDS` in turn).
    """
    from ecg_pipeline.cohort.demo import write_demo_recording

    staging.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    subject, bad, last_good = first_subject, 0, None
    conditions = ("rest", "exercise", "deep_breathing")
    for i in range(n_files):
        if i % 10 < 7 or last_good is None:
            path = write_demo_recording(staging, subject, conditions[i % 3], duration_s=20.0)
            kinds[path.name], last_good = "good", path
            subject += 1
            continue
        kind = BAD_KINDS[bad % len(BAD_KINDS)]
        bad += 1
        name = f"S{subject:03d}_rest.acq" if kind != "unlabelled" else f"notes-{bad}.acq"
        subject += 1
        target = staging / name
        if kind == "empty":
            target.write_bytes(b"")
        elif kind == "text":
            target.write_text("subject,condition\nS01,rest\n")
        elif kind == "truncated":
            data = last_good.read_bytes()
            target.write_bytes(data[: len(data) // 2])
        elif kind == "copy":
            target.write_bytes(last_good.read_bytes())
        else:  # unlabelled: a good recording whose name carries no subject
            target.write_bytes(last_good.read_bytes()[:-1] + b"\x01")
        kinds[name] = kind
    return kinds


def drop(staging: Path, inbox: Path) -> float:
    """Move every staged file into the inbox at once; returns the wall time of the drop."""
    inbox.mkdir(parents=True, exist_ok=True)
    dropped = time.time()
    for f in sorted(staging.iterdir()):
        os.replace(f, inbox / f.name)
    return dropped


def check_outcome(kinds: dict[str, str], store_path: Path, catalog: pd.DataFrame) -> dict:
    """What became of each dropped file: stored once, refused in the history, or missed."""
    stored = catalog["source_path"].map(lambda p: Path(p).name)
    history_file = store_path / "_rejections_history.csv"
    history = (
        pd.read_csv(history_file, dtype=str, keep_default_na=False)
        if history_file.exists()
        else pd.DataFrame(columns=["file", "error"])
    )
    refused = set(history["file"].map(lambda p: Path(p.lstrip("'")).name))
    good = {n for n, k in kinds.items() if k == "good"}
    bad = set(kinds) - good
    counts = stored[stored.isin(set(kinds))].value_counts()
    return {
        "files": len(kinds),
        "good": len(good),
        "bad": len(bad),
        "good_stored_once": int(sum(counts.get(n, 0) == 1 for n in good)),
        "stored_twice": sorted(n for n, c in counts.items() if c > 1),
        "good_missing": sorted(good - set(counts.index)),
        "bad_in_history": int(len(bad & refused)),
        "bad_missing": sorted(bad - refused),
        "bad_stored": sorted(bad & set(counts.index)),
    }


def runs_settled(runs: list[dict], before: set, terminal, quiet_s: float = 10.0):
    """The runs not in ``before``, once all have ended and none ended in the last ``quiet_s``
    (longer than the watcher's debounce and settle time: no further run is coming)."""
    new = [r for r in runs if r["id"] not in before]
    if not new or not all(r["state_type"] in terminal for r in new):
        return None
    last_end = max(pd.Timestamp(r["end_time"]).timestamp() for r in new)
    return new if time.time() - last_end > quiet_s else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from orchestration_support import server_changes, start_servers, write_study

    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.stack.rest import TERMINAL, call, flow_runs, wait_for
    from ecg_pipeline.stack.servers import start_deployment_server, start_watcher, stop_servers

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings, prefect, _ = start_servers(root)
        try:
            config_path = root / "study.toml"
            config = write_study(
                config_path,
                StudyConfig(),
                {
                    **server_changes(settings),
                    "store.root": str(root / "store"),
                    "demo.inbox": str(root / "inbox"),
                    "discovery.settle_s": 1.0,
                    "watch.debounce_s": 2.0,
                    "training.epochs": 1,
                    "training.cpu_threads": 1,
                    "training.out_dir": str(root / "runs"),
                },
            )
            start_deployment_server(config_path, settings)
            watcher = start_watcher(config_path, settings)
            dep = call(f"{prefect.url}/deployments/name/ingest-train/{config.flow.deployment}")
            kinds = write_mixed_batch(root / "staging", args.files)
            dropped = drop(root / "staging", root / "inbox")

            def settled():
                return runs_settled(flow_runs(prefect.url, dep["id"]), set(), TERMINAL)

            runs = wait_for(settled, 3600, "the burst's runs", 2.0)
            store = WindowStore(config.store.root, config.dataset.name)
            outcome = check_outcome(kinds, store.path, store.catalog())
            ends = [r["end_time"] for r in runs]
            last_end = pd.Timestamp(max(ends)).timestamp()
            figures = {
                **outcome,
                "runs_started": len(runs),
                "runs_completed": sum(r["state_type"] == "COMPLETED" for r in runs),
                "seconds_to_last_run_end": round(last_end - dropped, 1),
                "watcher_events": watcher.log_path.read_text().count("emitted "),
            }
        finally:
            stop_servers(settings.state_dir)
    for key, value in figures.items():
        print(f"{key:<26} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    ok = not (figures["stored_twice"] or figures["good_missing"] or figures["bad_missing"])
    return 0 if ok and not figures["bad_stored"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
