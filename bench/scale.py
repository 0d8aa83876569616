"""How ingest's cost grows with the number of recordings and of Dask workers.

For each cohort size (synthetic demo recordings, ``--duration-s`` each, distinct subjects and
the three conditions) and each number of Dask workers, the ``ingest-train`` flow runs with
``[flow] task_runner = "dask"`` (a local cluster of that many single-threaded worker processes)
and ``train = false`` into a fresh store, in a child process of its own, against a temporary
Prefect API. Printed per run: wall time, recordings per second, seconds per recording, the
peak resident memory of the flow's process and of its largest child process (a Dask worker, or
the temporary Prefect server the flow starts: ``worker_peak_bytes`` in the JSON), and the
store's size;
then the slope of time and memory against the number of recordings for each worker count.

Run: ``.venv/bin/python bench/scale.py [--sizes 45 450 4500] [--workers 1 2 4]
[--duration-s 60] [--json PATH]``. The machine has 2 cores: beyond 2 workers the figures show
contention, not scaling; what they show on every machine is how cost grows with the cohort.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from ecg_pipeline.config import load_config
    from flows.ingest_train import ingest_train_for

    if __name__ == "__main__":
        config_path = sys.argv[1]
        cfg = load_config(config_path)
        started = time.perf_counter()
        summary = ingest_train_for(cfg)(config=config_path, train=False)
        seconds = time.perf_counter() - started
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print("RESULT " + json.dumps({"seconds": seconds, "counts": summary["counts"],
                                       "flow_peak_bytes": own, "worker_peak_bytes": workers}))
    """
)


def write_cohort(folder: Path, n: int, duration_s: float) -> None:
    from ecg_pipeline.cohort.demo import write_demo_recording

    conditions = ("rest", "exercise", "deep_breathing")
    for i in range(n):
        write_demo_recording(folder, 1 + i // 3, conditions[i % 3], duration_s=duration_s)


def run_once(root: Path, inbox: Path, n: int, workers: int) -> dict:
    store = root / f"store-{n}-{workers}"
    config = root / f"study-{n}-{workers}.toml"
    config.write_text(
        f'[discovery]\nsettle_s = 0.0\n[store]\nroot = "{store}"\n[demo]\ninbox = "{inbox}"\n'
        f'[flow]\ntask_runner = "dask"\nread_workers = {workers}\n'
    )
    script = root / "child.py"
    script.write_text(CHILD)
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(root / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    # A temporary API of its own: empty wins over a prefect.toml of a running stack.
    env["PREFECT_API_URL"] = ""
    done = subprocess.run(
        [sys.executable, str(script), str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=6 * 3600,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    result = json.loads(line[len("RESULT ") :])
    result["store_bytes"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    result.update(recordings=n, workers=workers)
    return result


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y on x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[45, 450, 4500])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in args.sizes:
            inbox = root / f"inbox-{n}"
            started = time.perf_counter()
            write_cohort(inbox, n, args.duration_s)
            print(
                f"{n} recordings of {args.duration_s:g} s written in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
            for w in args.workers:
                r = run_once(root, inbox, n, w)
                r["per_recording_s"] = r["seconds"] / n
                results.append(r)
                print(
                    f"  {n:>5} recordings, {w} worker(s): {r['seconds']:7.1f} s "
                    f"({n / r['seconds']:.1f}/s, {1000 * r['per_recording_s']:.0f} ms each), "
                    f"flow peak {r['flow_peak_bytes'] / 2**20:.0f} MiB, largest child "
                    f"{r['worker_peak_bytes'] / 2**20:.0f} MiB, store "
                    f"{r['store_bytes'] / 2**20:.1f} MiB, {r['counts']}",
                    flush=True,
                )
                if args.json:  # after every run: a long sweep stopped midway keeps what it measured
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(results, indent=1))
    print("\nslopes against the number of recordings:")
    for w in args.workers:
        mine = [r for r in results if r["workers"] == w]
        if len(mine) > 1:
            t = slope([(r["recordings"], r["seconds"]) for r in mine])
            m = slope([(r["recordings"], r["flow_peak_bytes"] / 2**20) for r in mine])
            print(
                f"  {w} worker(s): {1000 * t:.0f} ms per recording, "
                f"flow peak memory {1024 * m:.1f} KiB per recording"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
