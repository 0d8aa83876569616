"""What the benchmarks share: the machine's load, and writing their figures as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (Linux /proc/stat; 0 where unavailable).

    The machine is shared: a figure taken while other work ran is printed with this beside it.
    """

    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        (t0, i0), _ = sample(), time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def write_figures(path: Path, figures: dict) -> None:
    """Write a benchmark's figures as JSON (``--json PATH``) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=_plain) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _plain(value):
    # numpy scalars as numbers; paths and anything else as text
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
