"""How alike each R-peak detector's beats are, over every recording of a dataset without annotations.

dp-motion-ecg holds no R-peak annotations, and most of it is recorded in motion (walking,
running, squats), where ECG-ID's resting records (``bench/rpeaks.py``) say little. What can be
measured without annotations is whether a detector's beats look like heartbeats of one person:
the median Pearson correlation of each beat segment with the recording's median beat
(``signal.beats.template_correlation``, the same figure ingest's no-heartbeat check uses;
a clean resting ECG scores above 0.9, peaks found in noise about 0.1). Peaks that land on
motion artefacts, or miss the QRS by tens of milliseconds, pull it down.

For each detector, with and without the 40-Hz detector low-pass: the median and 10th
percentile over recordings, the number of recordings below the refusal threshold
(``[ingest.beats] min_template_correlation``) and below 0.5, and the median per activity. The
product's choice (``method`` with ``fallback_method``) is shown as its own row.

Run: ``.venv/bin/python bench/beat_consistency.py [--quick] [--json PATH]`` (about a minute on
one core). Figures go to ``results/rpeaks/dp-motion-consistency.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ecg_pipeline.config import load_config  # noqa: E402
from ecg_pipeline.ingest.process import read_raw  # noqa: E402
from ecg_pipeline.io.dp_motion import discover_dp_motion, parse_dp_motion_name  # noqa: E402
from ecg_pipeline.signal import design_ecg_filter, resample_to, zero_phase_filter  # noqa: E402
from ecg_pipeline.signal.beats import (  # noqa: E402
    cut_segments,
    detect_r_peaks,
    template_correlation,
)

DATA = REPO.parent / "shared" / "datasets" / "dp-motion-ecg"
DEFAULT_JSON = REPO / "results" / "rpeaks" / "dp-motion-consistency.json"
DETECTORS = ("neurokit", "elgendi2010", "kalidas2017", "pantompkins1985")
PRODUCT = "product (method, then fallback_method)"


def consistency(filtered: np.ndarray, fs_hz: float, method: str, lowpass_hz, beats) -> float:
    """Median correlation of one detector's beat segments with their median beat."""
    peak_s = detect_r_peaks(filtered, fs_hz, method=method, lowpass_hz=lowpass_hz) / fs_hz
    at_rate = resample_to(filtered, fs_hz, beats.segment_fs_hz, allow_upsampling=True)
    segments, _ = cut_segments(
        at_rate, beats.segment_fs_hz, peak_s, before_s=beats.before_s, after_s=beats.after_s
    )
    return float(np.median(template_correlation(segments))) if len(segments) else 0.0


def _label(method: str, lowpass_hz: float | None) -> str:
    return f"{method}, {lowpass_hz:g}-Hz low-pass" if lowpass_hz else f"{method}, no low-pass"


def measure(paths: list[Path], config) -> dict[str, dict]:
    """Per recording (file name): the consistency of every detector x low-pass, the product's,
    and the activity."""
    f, b = config.ingest.filters, config.ingest.beats
    rows = {}
    for path in paths:
        segment = max(read_raw(path, config).segments, key=lambda s: s.duration_s)
        design = design_ecg_filter(
            segment.fs_hz,
            highpass_hz=f.highpass_hz,
            highpass_order=f.highpass_order,
            mains_hz=f.mains_hz,
            notch_quality=f.notch_quality,
        )
        x = zero_phase_filter(segment.samples, design)
        row = {
            _label(m, lp): consistency(x, segment.fs_hz, m, lp, b)
            for m in DETECTORS
            for lp in (b.detector_lowpass_hz, None)
        }
        first = row[_label(b.method, b.detector_lowpass_hz)]
        fallback = (
            row[_label(b.fallback_method, b.detector_lowpass_hz)]
            if b.fallback_method and first < b.min_template_correlation
            else first
        )
        row[PRODUCT] = max(first, fallback)
        row["activity"] = parse_dp_motion_name(path).activity
        rows[path.name] = row
    return rows


def totals(rows: dict[str, dict], threshold: float) -> dict[str, dict]:
    out = {}
    for key in [k for k in next(iter(rows.values())) if k != "activity"]:
        values = np.array([r[key] for r in rows.values()])
        by_activity = defaultdict(list)
        for r in rows.values():
            by_activity[r["activity"]].append(r[key])
        out[key] = {
            "median": float(np.median(values)),
            "p10": float(np.percentile(values, 10)),
            "below_threshold": int((values < threshold).sum()),
            "below_0.5": int((values < 0.5).sum()),
            "median_by_activity": {a: float(np.median(v)) for a, v in sorted(by_activity.items())},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first 15 recordings")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--data", type=Path, default=DATA, help="the dp-motion-ecg folder")
    args = ap.parse_args(argv)
    config = load_config(REPO / "configs" / "dp-motion.toml")
    paths = discover_dp_motion(args.data)[: 15 if args.quick else None]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = measure(paths, config)
    threshold = config.ingest.beats.min_template_correlation
    table = totals(rows, threshold)
    print(f"{len(rows)} dp-motion-ecg recordings, {time.perf_counter() - started:.0f} s")
    print(f"| detector | median | 10th pct | below {threshold:g} | below 0.5 | by activity |")
    print("|---|---|---|---|---|---|")
    for key, t in sorted(table.items(), key=lambda kv: -kv[1]["median"]):
        acts = ", ".join(f"{a} {v:.2f}" for a, v in t["median_by_activity"].items())
        print(
            f"| {key} | {t['median']:.3f} | {t['p10']:.2f} | {t['below_threshold']} | "
            f"{t['below_0.5']} | {acts} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "dataset": "dp-motion-ecg",
        "recordings": len(rows),
        "threshold": threshold,
        "python": platform.python_version(),
        "totals": table,
        "per_recording": rows,
    }
    args.json.write_text(json.dumps(payload, indent=1))
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
