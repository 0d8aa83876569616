"""How long the signal-quality report of the demo cohort takes to write (target: under 5 s).

The report is built from the store alone (footers plus each recording's worst and best
window), so the figure is measured on a store as ``ecg-pipeline ingest`` leaves it: by default
the demo cohort (``configs/demo.toml``: 15 subjects x 3 conditions x 180 s) is written and
ingested into a temporary folder first (minutes, not timed); ``--store ROOT`` times the report
of an existing store instead. The page is written ``--repeat`` times, the process's first
call included (it pays matplotlib's import); the median and the first are printed.

Usage: ``python bench/quality_report.py [--store ROOT] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ecg_pipeline.config import load_config
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.tracking.quality_report import write_quality_report

REPO = Path(__file__).resolve().parents[1]


def demo_store(root: Path, config) -> WindowStore:
    """Write the demo cohort under ``root`` and ingest it (not timed)."""
    from ecg_pipeline.cohort.demo import write_study_cohort
    from ecg_pipeline.ingest import ingest_folder

    inbox = root / "inbox"
    write_study_cohort(inbox, config)
    settled = config.with_overrides({"discovery.settle_s": 0.0})
    report = ingest_folder(inbox, settled, store_root=root / "store")
    print(f"ingested the demo cohort: {report.counts}")
    return WindowStore(root / "store", config.dataset.name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing store root (default: ingest)")
    parser.add_argument("--config", type=Path, default=REPO / "configs/demo.toml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as tmp:
        if args.store is None:
            store = demo_store(Path(tmp), config)
        else:
            store = WindowStore(args.store, config.dataset.name)
        times = []
        for _ in range(max(args.repeat, 1)):
            started = time.perf_counter()
            page = write_quality_report(store, Path(tmp) / "report.html")
            times.append(time.perf_counter() - started)
        n = len(store.catalog_rows())
        size_kib = page.stat().st_size / 1024
        print(
            f"quality report of {n} recordings: {statistics.median(times):.2f} s median of "
            f"{len(times)} (first call {times[0]:.2f} s, with matplotlib's import); "
            f"{size_kib:.0f} KiB; target under 5 s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
