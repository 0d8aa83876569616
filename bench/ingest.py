"""Ingest speed and memory: the bare floor, the full ingest path and NeuroKit2's path, side by side.

Measured in one run, interleaved, on the same files:

(a) floor    ``bioread.read(path, channel_indexes=[ecg])`` + ``design_ecg_filter`` +
             ``zero_phase_filter`` + ``resample_to`` + ``detect_r_peaks`` + the beat segments
             (``resample_to`` the segment rate, ``cut_segments``) + the quality account's
             costly parts (``heartbeat_evidence``, ``window_quality`` on the windows ingest
             scores) as bare calls (no hashing, validation or writing);
(b) full     ``ingest_folder(folder, config, store_root=<fresh empty store>)`` over the batch;
(c) NeuroKit2 ``nk.read_acqknowledge`` + ``nk.ecg_clean`` + ``nk.ecg_peaks`` (the same
             detector) + ``nk.ecg_quality`` (both methods, as much signal as ingest scores) +
             ``nk.signal_resample`` to 100 Hz.

The R-peak detector alone is also timed on each file: its cost in seconds per recording-hour.

Rows: N byte-distinct copies of ``physio-4.4.0.acq`` (62 s, ECG at 1000 Hz; the last byte, in the
journal after the sample data, is changed so the store does not skip them as identical bytes;
the ECG channel is checked to be unchanged), the synthetic demo cohort (180-s recordings), and the
same demo signals as one file per subject split at its event markers (540 s, three phases): its
ratio to the floor shows that splitting by markers adds no second read of the file.
Speed is recording-seconds per wall-second (median over repetitions). Memory is the tracemalloc
peak (numpy allocations included) of ``process_file`` on one file of each row and on one long demo
recording (``--long-s``), against the decoded float64 ECG array; the floor's peak is shown beside.

Targets (issue, speed section): (b)/(a) >= 0.7, (b)/(c) >= 2, memory per file <= 3x the ECG array.

Run: ``.venv/bin/python bench/ingest.py [--quick] [--json PATH]`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from dataclasses import dataclass
from pathlib import Path

import bioread
import numpy as np
import scipy

import ecg_pipeline.ingest as ingest_mod
from ecg_pipeline.cohort.demo import (
    write_demo_cohort,
    write_demo_marker_recording,
    write_demo_recording,
)
from ecg_pipeline.cohort.labels import Labels
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest.quality import scored_windows
from ecg_pipeline.instrument import Recorder, recording
from ecg_pipeline.io.acq import choose_ecg_channel, list_channels
from ecg_pipeline.signal import design_ecg_filter, resample_to, zero_phase_filter
from ecg_pipeline.signal.beats import cut_segments, detect_r_peaks
from ecg_pipeline.signal.heartbeat import heartbeat_evidence
from ecg_pipeline.signal.sqi import window_quality

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import neurokit2 as nk

SHARED = Path(os.environ.get("ECG_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
PHYSIO = SHARED / "acq" / "physio-4.4.0.acq"
TARGET_FULL_VS_FLOOR = 0.7
TARGET_FULL_VS_NK = 2.0
TARGET_MEMORY_RATIO = 3.0


# --- inputs -------------------------------------------------------------------------------------
@dataclass
class BenchFile:
    path: Path
    ecg_index: int
    ecg_name: str
    fs_hz: float
    n_samples: int

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz

    @property
    def ecg_nbytes(self) -> int:  # the decoded channel as float64
        return self.n_samples * 8


@dataclass
class Row:
    name: str
    folder: Path
    files: list[BenchFile]
    recordings_per_file: int = 1  # a marker-split file stores one recording per phase

    @property
    def recording_s(self) -> float:
        return sum(f.duration_s for f in self.files)


def _describe(path: Path, config: StudyConfig) -> BenchFile:
    infos = list_channels(path)
    i = choose_ecg_channel(infos, config.ingest.channel, path)
    return BenchFile(path, i, infos[i].name, infos[i].fs_hz, infos[i].n_samples)


def _settle(paths: list[Path]) -> None:
    """Date the files an hour back, so discovery does not defer them as still being written."""
    past = time.time() - 3600
    for p in paths:
        os.utime(p, (past, past))


def make_physio_variants(source: Path, folder: Path, n: int, config: StudyConfig) -> Row:
    """``S01_rest.acq`` ... : copies of ``source`` whose last byte differs, ECG unchanged."""
    if not 1 <= n <= 255:
        raise ValueError("between 1 and 255 variants")
    folder.mkdir(parents=True)
    data = bytearray(source.read_bytes())
    info = _describe(source, config)
    i = info.ecg_index
    ref = np.asarray(bioread.read(source, channel_indexes=[i]).channels[i].data)
    last = data[-1]
    paths = []
    for k in range(1, n + 1):
        data[-1] = last ^ k
        p = folder / f"S{k:02d}_rest.acq"
        p.write_bytes(data)
        paths.append(p)
    # The change must leave the ECG channel (and the file's readability) as it was.
    for p in (paths[0], paths[-1]):
        got = bioread.read(p, channel_indexes=[i]).channels[i].data
        if not np.array_equal(np.asarray(got), ref):
            raise RuntimeError(f"{p}: ECG channel changed by the byte edit")
    _settle(paths)
    return Row(f"{source.name} x {n} byte variants", folder, [_describe(p, config) for p in paths])


def make_demo_cohort(folder: Path, n_subjects: int, config: StudyConfig) -> Row:
    paths = write_demo_cohort(folder, n_subjects=n_subjects)
    _settle(paths)
    files = [_describe(p, config) for p in paths]
    return Row(f"demo cohort, {len(files)} files of {files[0].duration_s:g} s", folder, files)


def make_demo_marker_cohort(folder: Path, n_subjects: int, config: StudyConfig) -> Row:
    """The same demo signals, one file per subject with a marker at each phase (``S01.acq``):
    the full path splits them at the markers it read with the headers, the floor does not."""
    folder.mkdir(parents=True)
    text_of = {c: t for t, c in reversed(list(config.dataset.markers.phases.items()))}
    conditions = config.dataset.conditions
    paths = [
        write_demo_marker_recording(folder, s, [(c, text_of[c]) for c in conditions])
        for s in range(1, n_subjects + 1)
    ]
    _settle(paths)
    files = [_describe(p, config) for p in paths]
    return Row(
        f"demo, {len(files)} marker files of {files[0].duration_s:g} s",
        folder,
        files,
        recordings_per_file=len(conditions),
    )


# --- the three paths ----------------------------------------------------------------------------
def _filtered_ecg(f: BenchFile, config: StudyConfig) -> tuple[np.ndarray, float]:
    """Bare calls: read the ECG channel and filter it at its native rate."""
    ch = bioread.read(f.path, channel_indexes=[f.ecg_index]).channels[f.ecg_index]
    fs = float(ch.samples_per_second)
    s = config.ingest.filters
    design = design_ecg_filter(
        fs,
        highpass_hz=s.highpass_hz,
        highpass_order=s.highpass_order,
        mains_hz=s.mains_hz,
        notch_quality=s.notch_quality,
    )
    return zero_phase_filter(np.asarray(ch.data, dtype=np.float64), design), fs


def floor_one(f: BenchFile, config: StudyConfig, phases: int = 1) -> np.ndarray:
    """(a) bare calls: read, filter at the native rate, R peaks and beat segments, resample,
    and the quality account's two costly parts (the heartbeat test, NeuroKit2's two methods on
    the sample of windows ingest scores)."""
    filtered, fs = _filtered_ecg(f, config)
    b = config.ingest.beats
    heartbeat_evidence(filtered, fs)
    peak_s = detect_r_peaks(filtered, fs, method=b.method, lowpass_hz=b.detector_lowpass_hz) / fs
    at_beat_rate = resample_to(filtered, fs, b.segment_fs_hz, allow_upsampling=True)
    cut_segments(at_beat_rate, b.segment_fs_hz, peak_s, before_s=b.before_s, after_s=b.after_s)
    target_fs = config.ingest.windows.target_fs_hz
    resampled = resample_to(filtered, fs, target_fs)
    q, window_s = config.ingest.quality, config.ingest.windows.window_s
    n = int(len(resampled) // (window_s * target_fs))
    # A marker file's phases are scored each (the sample is per stored recording).
    per_phase = n // phases
    chosen = np.concatenate(
        [k * per_phase + scored_windows(per_phase, q.neurokit_max_windows) for k in range(phases)]
    )
    length = int(round(window_s * target_fs))
    windows = np.stack([resampled[i * length : (i + 1) * length] for i in chosen])
    starts = chosen * window_s
    peaks = [peak_s[(peak_s >= a) & (peak_s < a + window_s)] - a for a in starts]
    window_quality(windows, target_fs, peaks, q.neurokit_methods)
    return resampled


def rpeaks_seconds(f: BenchFile, config: StudyConfig) -> float:
    """The detector alone on one file's filtered ECG (seconds)."""
    filtered, fs = _filtered_ecg(f, config)
    b = config.ingest.beats
    t0 = time.perf_counter()
    detect_r_peaks(filtered, fs, method=b.method, lowpass_hz=b.detector_lowpass_hz)
    return time.perf_counter() - t0


def nk_one(f: BenchFile, config: StudyConfig) -> np.ndarray:
    """(c) NeuroKit2's path for the same file: read, clean, peaks, resample, and its two
    ``ecg_quality`` methods over as many windows' worth of signal as ingest scores."""
    df, fs = nk.read_acqknowledge(str(f.path))
    clean = nk.ecg_clean(df[f.ecg_name], sampling_rate=fs)
    _, info = nk.ecg_peaks(clean, sampling_rate=fs, method=config.ingest.beats.method)
    q = config.ingest.quality
    span = int(q.neurokit_max_windows * config.ingest.windows.window_s * fs) or len(clean)
    peaks = info["ECG_R_Peaks"][info["ECG_R_Peaks"] < span]
    for method in q.neurokit_methods:
        if len(peaks) >= 2:
            nk.ecg_quality(clean[:span], rpeaks=peaks, sampling_rate=fs, method=method)
    return nk.signal_resample(
        clean, sampling_rate=fs, desired_sampling_rate=config.ingest.windows.target_fs_hz
    )


class StoreDirs:
    """Fresh empty store roots, made and removed outside the timed region."""

    def __init__(self, base: Path):
        self.base = base
        self.count = 0

    def fresh(self) -> Path:
        self.count += 1
        p = self.base / f"store-{self.count:04d}"
        p.mkdir(parents=True)
        return p


def run_full(row: Row, config: StudyConfig, store_root: Path):
    summary = ingest_mod.ingest_folder(row.folder, config, store_root=store_root)
    return summary


def check_full(summary, row: Row) -> None:
    written = summary.count("written")
    if written != len(row.files) * row.recordings_per_file:
        bad = [
            (r.path, r.status, r.note or (r.error and r.error.reason))
            for r in summary.results
            if r.status != "written"
        ]
        raise RuntimeError(f"full path wrote {written} of {len(row.files)} files: {bad[:3]}")


# --- per-stage breakdown: the stages the library marks (ecg_pipeline.instrument) -------------
def stages_of(raw: dict[str, float], total: float) -> dict[str, float]:
    """Exclusive seconds per stage, in the order ingest_folder runs them."""
    g = raw.get
    out = {
        "discover + label": g("discover", 0.0),
        "validate labels (pandera)": g("validate labels", 0.0),
        "plan: store catalog (footers)": g("plan: store catalog", 0.0),
        "plan: sha256 of each file": g("plan: sha256", 0.0),
        "plan: decisions (excl. hash, catalog)": g("plan", 0.0)
        - g("plan: sha256", 0.0)
        - g("plan: store catalog", 0.0),
        "process: read ECG": g("process: read ECG", 0.0),
        "process: heartbeat test": g("process: heartbeat", 0.0),
        "process: filter+resample+window": g("process: filter + resample + window", 0.0),
        "process: quality (NeuroKit2 + spans)": g("process: quality", 0.0),
        "process: rest": g("process", 0.0)
        - g("process: read ECG", 0.0)
        - g("process: heartbeat", 0.0)
        - g("process: filter + resample + window", 0.0)
        - g("process: quality", 0.0),
        "validate contracts (pandera, once)": g("validate contracts", 0.0),
        "write (atomic Parquet)": g("write", 0.0),
        "finish: store catalog (cached footers)": g("finish: store catalog", 0.0),
        "finish: CSVs + cohort report": g("finish", 0.0) - g("finish: store catalog", 0.0),
    }
    out["unaccounted (glue)"] = total - sum(out.values())
    return out


# --- timing -------------------------------------------------------------------------------------
def timed(fn) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_row(row: Row, config: StudyConfig, reps: int, stores: StoreDirs) -> dict:
    def a():
        for f in row.files:
            floor_one(f, config, row.recordings_per_file)

    def c():
        for f in row.files:
            nk_one(f, config)

    def b_once(timer: Recorder | None = None) -> float:
        root = stores.fresh()
        try:
            gc.collect()
            if timer is None:
                t0 = time.perf_counter()
                summary = run_full(row, config, root)
                dt = time.perf_counter() - t0
            else:
                with recording() as recorded:
                    t0 = time.perf_counter()
                    summary = run_full(row, config, root)
                    dt = time.perf_counter() - t0
                timer.seconds.update(recorded.seconds)
            check_full(summary, row)
            return dt
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # Warm-up: imports (pandera, pyarrow), page cache, scipy's first calls.
    a()
    b_once()
    c()

    times = {"a": [], "b": [], "c": []}
    stage_runs: list[dict[str, float]] = []
    stage_totals: list[float] = []
    jobs = ["a", "b", "c", "b_stages"]
    for r in range(reps):
        for job in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:  # rotate the order per rep
            if job == "a":
                times["a"].append(timed(a))
            elif job == "c":
                times["c"].append(timed(c))
            elif job == "b":
                times["b"].append(b_once())
            else:
                timer = Recorder()
                total = b_once(timer)
                stage_totals.append(total)
                stage_runs.append(stages_of(timer.seconds, total))

    n = len(row.files)
    rec_s = row.recording_s
    paths = {}
    for key, label in (
        ("a", "(a) floor: read+filter+peaks+resample"),
        ("b", "(b) full: ingest_folder"),
        ("c", "(c) NeuroKit2 read+clean+peaks+resample"),
    ):
        med = statistics.median(times[key])
        paths[key] = {
            "label": label,
            "batch_s_median": med,
            "batch_s_all": times[key],
            "ms_per_file": med / n * 1e3,
            "recording_s_per_wall_s": rec_s / med,
        }
    stage_names = list(stage_runs[0])
    stages = {s: statistics.median(run[s] for run in stage_runs) for s in stage_names}
    speed = {k: v["recording_s_per_wall_s"] for k, v in paths.items()}
    best = {k: rec_s / min(times[k]) for k in times}  # best-of-reps: less sensitive to noise
    return {
        "row": row.name,
        "n_files": n,
        "recording_s": rec_s,
        "reps": reps,
        "paths": paths,
        "ratio_full_vs_floor": speed["b"] / speed["a"],
        "ratio_full_vs_neurokit2": speed["b"] / speed["c"],
        "ratio_full_vs_floor_best_of_reps": best["b"] / best["a"],
        "ratio_full_vs_neurokit2_best_of_reps": best["b"] / best["c"],
        "stages_s_median": stages,
        "instrumented_total_s_median": statistics.median(stage_totals),
        "rpeaks_method": config.ingest.beats.method,
        # The detector alone (median of reps), per hour of recording.
        "rpeaks_s_per_recording_hour": statistics.median(
            sum(rpeaks_seconds(f, config) for f in row.files) for _ in range(max(1, reps // 2))
        )
        / (rec_s / 3600),
    }


# --- memory -------------------------------------------------------------------------------------
def peak_bytes(fn) -> int:
    """tracemalloc peak above the starting level while ``fn`` runs (numpy buffers included)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak - base


def memory_one(f: BenchFile, config: StudyConfig, label: str) -> dict:
    labels = Labels(str(f.path), "S01", config.dataset.conditions[0])
    plan = ingest_mod.PlannedFile(labels, "0" * 64)
    ingest_mod.process_file(plan, config)  # warm
    floor_one(f, config)
    full = peak_bytes(lambda: ingest_mod.process_file(plan, config))
    floor = peak_bytes(lambda: floor_one(f, config))
    return {
        "file": label,
        "path": f.path.name,
        "duration_s": f.duration_s,
        "ecg_nbytes": f.ecg_nbytes,
        "process_file_peak_bytes": full,
        "process_file_ratio": full / f.ecg_nbytes,
        "floor_peak_bytes": floor,
        "floor_ratio": floor / f.ecg_nbytes,
    }


# --- report -------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def environment() -> dict:
    import pandas
    import pandera
    import pyarrow

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "pandera": pandera.__version__,
        "pyarrow": pyarrow.__version__,
        "bioread": bioread.__version__,
        "neurokit2": nk.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
    }


def print_row(res: dict) -> None:
    print(
        f"\n== {res['row']}: {res['n_files']} files, {res['recording_s']:.1f} s of ECG; "
        f"median of {res['reps']} reps =="
    )
    print(
        f"  {'path':<38}{'rec-s/wall-s':>13}{'ms/file':>10}{'ms/batch':>10}"
        f"{'min..max ms/batch':>20}"
    )
    for p in res["paths"].values():
        lo, hi = min(p["batch_s_all"]) * 1e3, max(p["batch_s_all"]) * 1e3
        print(
            f"  {p['label']:<38}{p['recording_s_per_wall_s']:>13.0f}{p['ms_per_file']:>10.2f}"
            f"{p['batch_s_median'] * 1e3:>10.1f}{f'{lo:.1f}..{hi:.1f}':>20}"
        )
    r1, r2 = res["ratio_full_vs_floor"], res["ratio_full_vs_neurokit2"]
    ok1, ok2 = r1 >= TARGET_FULL_VS_FLOOR, r2 >= TARGET_FULL_VS_NK
    print(f"  (b)/(a) = {r1:.2f}   target >= {TARGET_FULL_VS_FLOOR:g}   {verdict(ok1)}")
    print(f"  (b)/(c) = {r2:.2f}   target >= {TARGET_FULL_VS_NK:g}     {verdict(ok2)}")
    print(
        f"  R-peak detector ({res.get('rpeaks_method', 'configured')}) alone: "
        f"{res['rpeaks_s_per_recording_hour']:.2f} s per recording-hour"
    )
    b1 = res["ratio_full_vs_floor_best_of_reps"]
    b2 = res["ratio_full_vs_neurokit2_best_of_reps"]
    print(f"  best-of-reps ratios, for noise: (b)/(a) {b1:.2f}, (b)/(c) {b2:.2f}")
    total = res["instrumented_total_s_median"]
    n = res["n_files"]
    print(f"  stages of (b), instrumented run (median total {total * 1e3:.1f} ms per batch):")
    print(f"    {'stage':<38}{'ms/batch':>10}{'ms/file':>10}{'share':>8}")
    for name, s in res["stages_s_median"].items():
        print(f"    {name:<38}{s * 1e3:>10.2f}{s / n * 1e3:>10.2f}{s / total:>8.1%}")
    floor_ms = res["paths"]["a"]["ms_per_file"]
    print(f"    {'(a) floor, for comparison':<38}{floor_ms * n:>10.2f}{floor_ms:>10.2f}")


def print_memory(mem: list[dict]) -> None:
    print("\n== memory per file: tracemalloc peak (numpy included) / decoded float64 ECG array ==")
    print(
        f"  {'file':<32}{'ECG array':>11}{'process_file peak':>19}{'x':>7}"
        f"{'floor peak':>12}{'x':>7}"
        f"   target <= {TARGET_MEMORY_RATIO:g}"
    )
    for m in mem:
        ok = m["process_file_ratio"] <= TARGET_MEMORY_RATIO
        name = f"{m['file']} ({m['duration_s']:g} s)"
        print(
            f"  {name:<32}{m['ecg_nbytes'] / 1e6:>9.2f}MB"
            f"{m['process_file_peak_bytes'] / 1e6:>17.2f}MB{m['process_file_ratio']:>7.2f}"
            f"{m['floor_peak_bytes'] / 1e6:>10.2f}MB{m['floor_ratio']:>7.2f}"
            f"   {verdict(ok)}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: 5 files, 2 repetitions")
    ap.add_argument("--files", type=int, default=None, help="physio variants (default 20; quick 5)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 2)")
    ap.add_argument("--demo-subjects", type=int, default=3, help="demo cohort subjects (x3 files)")
    ap.add_argument(
        "--long-s",
        type=float,
        default=1800.0,
        help="also measure memory on one demo recording this long (0: skip)",
    )
    ap.add_argument("--source", type=Path, default=PHYSIO, help="the .acq file to vary")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = ap.parse_args(argv)
    n_files = args.files or (5 if args.quick else 20)
    reps = args.reps or (2 if args.quick else 5)
    if not args.source.is_file():
        print(
            f"{args.source}: not found (the real test recordings live in ../shared/acq; set ECG_SHARED_DIR)",
            file=sys.stderr,
        )
        return 2

    # The lab's marker map (configs/demo.toml): it splits the marker row's files and changes
    # nothing else (it is not part of the [ingest] hash).
    config = StudyConfig().with_overrides(
        {
            "dataset.markers.phases": {
                "Rest": "rest",
                "Post run": "exercise",
                "Deep breathing": "deep_breathing",
            }
        }
    )
    env = environment()
    print("ecg-pipeline ingest benchmark: (a) bare floor, (b) full ingest path, (c) NeuroKit2")
    print("  " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "platform"))

    with tempfile.TemporaryDirectory(prefix="ecg-bench-") as tmp:
        tmp = Path(tmp)
        rows = [
            make_physio_variants(args.source, tmp / "physio", n_files, config),
            make_demo_cohort(tmp / "demo", args.demo_subjects, config),
            make_demo_marker_cohort(tmp / "demo-markers", args.demo_subjects, config),
        ]
        stores = StoreDirs(tmp / "stores")
        results = []
        for row in rows:
            res = bench_row(row, config, reps, stores)
            print_row(res)
            results.append(res)
        memory = [
            memory_one(rows[0].files[0], config, f"{args.source.name} copy"),
            memory_one(rows[1].files[0], config, f"demo {rows[1].files[0].path.name}"),
        ]
        if args.long_s > 0:  # memory only: does the ratio hold, or grow, for long files?
            (tmp / "long").mkdir()
            long_path = write_demo_recording(tmp / "long", 1, "rest", duration_s=args.long_s)
            memory.append(memory_one(_describe(long_path, config), config, "demo, long"))
        print_memory(memory)

    targets_met = {
        "full_vs_floor": all(r["ratio_full_vs_floor"] >= TARGET_FULL_VS_FLOOR for r in results),
        "full_vs_neurokit2": all(
            r["ratio_full_vs_neurokit2"] >= TARGET_FULL_VS_NK for r in results
        ),
        "memory": all(m["process_file_ratio"] <= TARGET_MEMORY_RATIO for m in memory),
    }
    print("\ntargets: " + ", ".join(f"{k} {verdict(v)}" for k, v in targets_met.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "environment": env,
            "quick": args.quick,
            "targets": {
                "full_vs_floor_min": TARGET_FULL_VS_FLOOR,
                "full_vs_neurokit2_min": TARGET_FULL_VS_NK,
                "memory_ratio_max": TARGET_MEMORY_RATIO,
            },
            "targets_met": targets_met,
            "rows": results,
            "memory": memory,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
