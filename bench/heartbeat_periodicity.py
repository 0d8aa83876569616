"""The heartbeat test's measure on every real recording in ../shared, refused or not.

``[ingest.quality] min_heartbeat_periodicity`` must sit between the channels named ECG that
hold no heartbeat and every real ECG. This reads each file's ECG channel as ingest does
(``read_raw`` with the dataset's configuration) and measures ``recording_evidence`` (the QRS
band's envelope periodicity, median over 10-s blocks): the BIOPAC files of ``../shared/acq`` and
``../shared/acq-public`` (those with a channel named ECG), the 310 ECG-ID records and the 150
dp-motion-ecg recordings. Prints the lowest of each group and writes every value to
``results/quality/heartbeat_periodicity.json``.

Usage: ``python bench/heartbeat_periodicity.py [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ecg_pipeline.config import load_config
from ecg_pipeline.errors import IngestError
from ecg_pipeline.ingest.process import read_raw
from ecg_pipeline.ingest.quality import recording_evidence

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def measure(files, config) -> dict[str, dict]:
    out = {}
    for f in files:
        try:
            raw = read_raw(f, config)
        except IngestError:  # no ECG channel, not a recording: nothing to measure
            continue
        ev = recording_evidence(raw)
        out[f.name if f.suffix else f"{f.parent.name}/{f.name}"] = {
            "channel": raw.channel_name,
            "periodicity": round(ev.periodicity, 3),
            "pace_bpm": None if not np.isfinite(ev.pace_bpm) else round(ev.pace_bpm, 1),
            "mains_fraction": round(ev.mains_fraction, 3),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "results/quality/heartbeat_periodicity.json"
    )
    args = parser.parse_args(argv)
    demo = load_config(REPO / "configs/demo.toml")
    groups = {
        "acq": measure(sorted((SHARED / "acq").glob("*.acq")), demo),
        "acq-public": measure(sorted((SHARED / "acq-public").glob("*.acq")), demo),
        "ecg-id": measure(
            [
                p.with_suffix("")
                for p in sorted((SHARED / "datasets/ecg-id").glob("Person_*/rec_*.hea"))
            ],
            load_config(REPO / "configs/ecg-id.toml"),
        ),
        "dp-motion-ecg": measure(
            sorted((SHARED / "datasets/dp-motion-ecg/data").glob("*/*.csv")),
            load_config(REPO / "configs/dp-motion.toml"),
        ),
    }
    threshold = demo.ingest.quality.min_heartbeat_periodicity
    for name, values in groups.items():
        ordered = sorted(values.items(), key=lambda kv: kv[1]["periodicity"])
        low = ", ".join(f"{k} {v['periodicity']:.2f}" for k, v in ordered[:4])
        below = sum(v["periodicity"] < threshold for v in values.values())
        print(f"{name}: {len(values)} recordings, {below} below {threshold:g}; lowest: {low}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"min_heartbeat_periodicity": threshold, **groups}, indent=1) + "\n",
        encoding="utf-8",
    )
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
