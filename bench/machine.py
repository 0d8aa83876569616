"""What the benchmarks share about the machine they run on."""

from __future__ import annotations

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
