"""Signal quality: how well the ingest's window grade agrees with dp-motion-ecg's manual grades.

dp-motion-ecg ships a manual artefact grade for every 2-s segment of its 150 recordings
(``labels/*_2.csv``: 1 little or no artefact, 2 some, 3 and 4 heavy). For each recording:

1. the file is read and windowed as ``ecg-pipeline ingest`` reads it (``configs/dp-motion.toml``,
   ``read_raw`` + ``segments_to_windows``), with 2-s windows instead of 3-s ones so that each
   window is one graded segment (the label grid starts at the first sample, as the windows do);
2. ``assess_recording`` grades each window as ingest does: *good* when NeuroKit2's
   ``templatematch`` reaches ``[ingest.quality] min_window_score`` and its beats are not flagged,
   *poor* otherwise; dropped (flat or railed) windows are poor;
3. a label segment is matched to the window it overlaps most, at least half a window (the
   labels' sample indices are turned into seconds with the file's own timestamps); a segment
   with no such window (a timestamp gap, the last partial window) is left out and counted;
4. the manual grade is made binary: 1-2 acceptable, 3-4 artefact.

Printed: the confusion table, Cohen's kappa, the agreement, and the same for the
``templatematch`` grade alone and per activity; written to ``results/quality/agreement.json``.
The threshold ``min_window_score`` is the configuration's (0.6); it was not tuned on these
grades (the JSON also lists kappa over thresholds, for information only).

Usage: ``python bench/quality_agreement.py [--limit N] [--out results/quality/agreement.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ecg_pipeline.config import load_config
from ecg_pipeline.errors import IngestError
from ecg_pipeline.ingest.process import read_raw, segments_to_windows
from ecg_pipeline.ingest.quality import assess_recording

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "dp-motion-ecg" / "data"
# A graded segment is 1000 samples; the recordings run at 496-499 Hz, so a segment lasts
# 2.00-2.02 s and drifts against 2-s windows: each is matched to the window it overlaps most,
# if that is at least half a window.
MIN_OVERLAP = 0.5


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two label arrays (any hashable labels)."""
    a, b = np.asarray(a), np.asarray(b)
    labels = np.union1d(a, b)
    observed = float(np.mean(a == b))
    expected = float(sum(np.mean(a == k) * np.mean(b == k) for k in labels))
    return (observed - expected) / (1.0 - expected) if expected < 1 else 1.0


def recording_rows(csv_path: Path, config) -> tuple[list[dict], int]:
    """One row per graded 2-s segment matched to a window: manual grade, our grade, score."""
    labels_path = csv_path.parent / "labels" / f"{csv_path.stem}_2.csv"
    labels = pd.read_csv(labels_path, sep=";")
    stamps = pd.to_datetime(pd.read_csv(csv_path, sep=";", header=None, usecols=[0])[0].str.strip())
    seconds = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()
    raw = read_raw(csv_path, config)
    window_s = config.ingest.windows.window_s
    try:
        windows = segments_to_windows(raw.segments, config.ingest, units=raw.units)
        account = assess_recording(raw, windows, config.ingest)
    except IngestError as exc:  # a refused recording: every segment poor
        windows, account = None, {"error": type(exc).__name__}
    rows, unmatched = [], 0
    if windows is not None:
        w = account["windows"]
        starts = np.asarray(w["start_s"], dtype=float)
        flat = account["spans_s"]["flat"] + account["spans_s"]["railed"]
    for lab in labels.itertuples(index=False):
        t0 = seconds[min(int(lab.start), len(seconds) - 1)]
        row = {
            "file": csv_path.stem,
            "activity": csv_path.stem.split("_")[2],
            "manual": int(lab.artifact),
            "start_s": t0,
        }
        if windows is None:
            rows.append(row | {"good": False, "templatematch": np.nan})
            continue
        t1 = seconds[min(int(lab.end), len(seconds)) - 1]
        overlap = np.minimum(starts + window_s, t1) - np.maximum(starts, t0)
        k = int(np.argmax(overlap)) if len(starts) else -1
        if k >= 0 and overlap[k] >= MIN_OVERLAP * window_s:
            tm = w["templatematch"][k]
            rows.append(
                row | {"good": bool(w["good"][k]), "templatematch": np.nan if tm is None else tm}
            )
        elif any(a <= (t0 + t1) / 2 <= b for a, b in flat):
            rows.append(row | {"good": False, "templatematch": np.nan})  # dropped: flat/railed
        else:
            unmatched += 1
    return rows, unmatched


def confusion(manual_artefact: np.ndarray, ours_poor: np.ndarray) -> dict:
    return {
        "manual acceptable (1-2)": {
            "ours good": int(np.sum(~manual_artefact & ~ours_poor)),
            "ours poor": int(np.sum(~manual_artefact & ours_poor)),
        },
        "manual artefact (3-4)": {
            "ours good": int(np.sum(manual_artefact & ~ours_poor)),
            "ours poor": int(np.sum(manual_artefact & ours_poor)),
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N recordings only")
    parser.add_argument("--out", type=Path, default=REPO / "results/quality/agreement.json")
    args = parser.parse_args(argv)
    # Every window scored (ingest scores a sample of them): each graded segment needs its own.
    config = load_config(REPO / "configs/dp-motion.toml").with_overrides(
        {"ingest.windows.window_s": 2.0, "ingest.quality.neurokit_max_windows": 0}
    )
    files = sorted(p for p in DATA.glob("[0-9][0-9]/*.csv"))[: args.limit]
    started = time.perf_counter()
    rows, unmatched = [], 0
    for f in files:
        got, missed = recording_rows(f, config)
        rows += got
        unmatched += missed
    table = pd.DataFrame(rows)
    artefact = table["manual"].to_numpy() >= 3
    poor = ~table["good"].to_numpy(dtype=bool)
    tm = table["templatematch"].to_numpy(dtype=float)
    threshold = config.ingest.quality.min_window_score
    tm_poor = ~(np.nan_to_num(tm, nan=-1.0) >= threshold)
    result = {
        "dataset": "dp-motion-ecg",
        "recordings": len(files),
        "segments_compared": len(table),
        "segments_without_a_window": unmatched,
        "manual_grades": {
            str(k): int(v) for k, v in table["manual"].value_counts().sort_index().items()
        },
        "min_window_score": threshold,
        "grade": "good: templatematch >= min_window_score and beats not flagged",
        "confusion": confusion(artefact, poor),
        "kappa": round(cohen_kappa(artefact, poor), 3),
        "agreement": round(float(np.mean(artefact == poor)), 3),
        "templatematch_only": {
            "confusion": confusion(artefact, tm_poor),
            "kappa": round(cohen_kappa(artefact, tm_poor), 3),
        },
        "kappa_by_activity": {
            act: round(cohen_kappa(artefact[m], poor[m]), 3)
            for act in sorted(table["activity"].unique())
            for m in [table["activity"].to_numpy() == act]
        },
        "artefact_share_by_activity": {
            act: {
                "manual": round(float(artefact[m].mean()), 3),
                "ours": round(float(poor[m].mean()), 3),
            }
            for act in sorted(table["activity"].unique())
            for m in [table["activity"].to_numpy() == act]
        },
        "kappa_over_thresholds_for_information": {
            f"{t:.1f}": round(cohen_kappa(artefact, ~(np.nan_to_num(tm, nan=-1.0) >= t)), 3)
            for t in np.arange(0.3, 0.95, 0.1)
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    c = result["confusion"]
    print(f"{len(table)} graded 2-s segments of {len(files)} recordings ({unmatched} unmatched)")
    print(f"{'':26s}{'ours good':>10s}{'ours poor':>10s}")
    for name, cells in c.items():
        print(f"{name:26s}{cells['ours good']:>10d}{cells['ours poor']:>10d}")
    print(f"Cohen's kappa {result['kappa']:.3f}, agreement {result['agreement']:.1%}")
    print(f"templatematch alone: kappa {result['templatematch_only']['kappa']:.3f}")
    print("kappa by activity:", result["kappa_by_activity"])
    print(f"written {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
