"""Fuzz ingest's reader with mutated real AcqKnowledge files and print what became of them.

Each mutant (``bench/acq_mutations.py``: truncations, header bytes and integers, sample counts
that claim gigabytes, data and marker/journal bytes, shifts, splices, zeroed blocks, appended
garbage) of the real files in ``../shared/acq`` plus one synthetic ECG file is read and windowed
by ``ecg_pipeline.ingest.read_windows`` in a forked child, so that every file gets its own time
and peak-memory figure. Printed: the counts by outcome (windows, or the error type that refused
the file; anything else is a defect), the slowest files, and the largest memory growth against
the file's size.

Usage::

    .venv/bin/python bench/fuzz_acq.py                 # 20,000 mutants, seed 0
    .venv/bin/python bench/fuzz_acq.py --n 2000 --seed 3 --json results/fuzz.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from acq_mutations import load_source, mutants, outcome_in_child  # noqa: E402

# Resident memory one file may add: a fixed allowance (filter designs, NeuroKit's work arrays)
# plus a multiple of the file's size (float64 copies of 16-bit samples through filtering,
# resampling and windowing). A file over it, or over its time limit, is a defect.
MEMORY_FIXED_BYTES = 64 * 2**20
MEMORY_PER_FILE_BYTE = 32
# Time a refused-for-time file may take beyond [limits] file_time_s (the fork, the exception's
# unwinding); anything slower was not stopped by the limit.
TIME_SLACK_S = 5.0

# Anything else means a file took the reader somewhere nobody foresaw.
NAMED_REFUSALS = {
    "NotAcqFileError",
    "TruncatedFileError",
    "NoEcgChannelError",
    "AmbiguousChannelError",
    "ChannelSelectionError",
    "SamplingRateError",
    "TooShortError",
    "SignalQualityError",
    "NoBeatsError",
    "NoHeartbeatError",
    "LowQualityError",
    "FileTimeLimitError",
    "UnreadableFileError",
}


def sources(work: Path) -> list:
    from ecg_pipeline.cohort.demo import write_demo_recording

    real = sorted((REPO.parent / "shared" / "acq").glob("*.acq"))
    demo = write_demo_recording(work, 1, "rest", duration_s=30.0)
    return [load_source(p) for p in real + [demo]]


def defect(out, file_bytes: int, time_limit_s: float) -> list[str]:
    """What is wrong with one outcome (nothing, for a file windowed or refused by name)."""
    problems = []
    if out.result not in NAMED_REFUSALS | {"windows"}:
        problems.append(f"not a named refusal: {out.result}")
    if not out.finite:
        problems.append("non-finite windows")
    if out.seconds > time_limit_s + TIME_SLACK_S:
        problems.append(f"took {out.seconds:.1f} s")
    bound = MEMORY_FIXED_BYTES + MEMORY_PER_FILE_BYTE * file_bytes
    if out.peak_growth_bytes > bound:
        problems.append(f"grew {out.peak_growth_bytes / 2**20:.0f} MiB (bound {bound / 2**20:.0f})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit-s", type=float, default=10.0, help="[limits] file_time_s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only", type=int, nargs="+", help="run only these mutants (a defect's index, again)"
    )
    args = parser.parse_args(argv)

    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.ingest.process import read_windows

    config = StudyConfig().with_overrides({"limits.file_time_s": args.time_limit_s})
    counts: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    slowest, defects, growth = [], [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        srcs = sources(work)
        read_windows(srcs[-1].path, config)  # warm up: the children inherit the imports
        path = work / "mutant.acq"
        for i, (name, kind, data) in enumerate(mutants(srcs, args.n, args.seed)):
            if args.only and i not in args.only:
                continue
            path.write_bytes(data)
            out = outcome_in_child(path, config, hard_limit_s=args.time_limit_s * 3)
            counts[out.result] += 1
            by_kind[kind][out.result] += 1
            slowest.append((out.seconds, i, name, kind, out.result))
            growth.append((out.peak_growth_bytes, len(data), i, name, kind, out.result))
            problems = defect(out, len(data), args.time_limit_s)
            if problems:
                defects.append(
                    {
                        "i": i,
                        "source": name,
                        "kind": kind,
                        "result": out.result,
                        "reason": out.reason,
                        "problems": problems,
                    }
                )
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1} files, {time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    slowest.sort(reverse=True)
    growth.sort(reverse=True)
    ratio = max(growth, key=lambda g: g[0] / g[1])

    done = len(slowest)
    print(
        f"\n{done} mutants (seed {args.seed}) of {len(srcs)} files in {elapsed:.0f} s "
        f"({1000 * elapsed / done:.1f} ms per file, a fork each)"
    )
    for result, n in counts.most_common():
        print(f"  {result:<24} {n:>6}")
    print("by mutation:")
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind:<12} " + ", ".join(f"{r} {n}" for r, n in c.most_common()))
    print("slowest files:")
    for s, i, name, kind, result in slowest[:5]:
        print(f"  {s:7.3f} s  #{i} {kind} of {name}: {result}")
    g, size, i, name, kind, result = growth[0]
    print(
        f"largest memory growth: {g / 2**20:.1f} MiB (#{i} {kind} of {name}, "
        f"{size / 2**20:.2f} MiB file, {result})"
    )
    g, size, i, name, kind, result = ratio
    print(f"largest growth per file byte: {g / size:.1f}x (#{i} {kind} of {name}, {result})")
    print(
        f"memory bound per file: {MEMORY_FIXED_BYTES / 2**20:.0f} MiB + "
        f"{MEMORY_PER_FILE_BYTE} x its size; time bound: {args.time_limit_s:g} s + "
        f"{TIME_SLACK_S:g} s"
    )
    print(f"defects (crashes, unnamed errors, non-finite windows, over a bound): {len(defects)}")
    for d in defects[:20]:
        print("  ", d)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "seed": args.seed,
                    "seconds": elapsed,
                    "counts": dict(counts),
                    "by_kind": {k: dict(v) for k, v in by_kind.items()},
                    "slowest": [
                        dict(zip(("seconds", "i", "source", "kind", "result"), s))
                        for s in slowest[:10]
                    ],
                    "max_growth_bytes": growth[0][0],
                    "max_growth_per_file_byte": ratio[0] / ratio[1],
                    "max_seconds": slowest[0][0],
                    "defects": defects,
                },
                indent=1,
            )
        )
    return 1 if defects else 0


if __name__ == "__main__":
    raise SystemExit(main())
