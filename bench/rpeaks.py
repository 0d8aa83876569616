"""R peaks: how well NeuroKit2's detectors agree with the R-peak annotations ECG-ID ships.

For every method in ``ecg_pipeline.signal.beats.R_PEAK_METHODS``, over ECG-ID's records
(``RECORDS``: 90 persons, 310 records of 20 s at 500 Hz):

1. the raw lead "ECG I" (``read_wfdb_record``, the channel ``configs/ecg-id.toml`` names) is
   filtered at its native rate by the pipeline's own filter (``design_ecg_filter`` +
   ``zero_phase_filter`` with the config's ``[ingest.filters]``), and ``detect_r_peaks`` runs
   on the whole filtered record, as ingest runs it;
2. the detections are matched one-to-one to the ``.atr`` file's beat annotations (``N``), the
   closest pairs first, within +-75 ms (the ANSI/AAMI EC57 150-ms matching window);
3. scoring covers the *annotated span* only. ECG-ID's ``.atr`` files mark the R and T peaks
   (``N``, ``t``) of the first 10 beats of each record only, about the first 5 to 12 s; the
   span runs from the first annotated beat (less the tolerance) to the last annotation, and
   never within 0.5 s of the record's start or end (edge effects of the filter and the
   detectors). Detections outside it are neither right nor wrong and are not counted. A matched
   pair whose annotation is in the span is a TP, an unmatched annotation in the span a miss
   (FN), an unmatched detection in the span a false detection (FP);
4. per method: sensitivity Se = TP/(TP+FN), positive predictivity +P = TP/(TP+FP), F1 (their
   harmonic mean), and the timing of matched pairs, detected minus annotated, in ms: the median
   and mean of its absolute value and its signed median; the same per record;
5. cost: seconds spent in ``detect_r_peaks`` alone (stdout captured: promac prints its failing
   members), summed over the records and divided by the recorded hours (whole records, as the
   detector sees them), after one untimed warm-up call per method.

The best method has the highest F1, then the smallest median |dt|. Its 10 records of least
agreement (lowest F1, then largest median |dt|) get one sentence each on who is plausibly wrong,
from the signal itself: a flat raw lead under annotations, an artefact far larger than the QRS,
the QRS amplitude against the high-frequency noise, false detections on annotated T waves or in
annotation gaps of two RR intervals, whether the other methods find what this one misses, and
detections a constant distance from the annotation (a fiducial-point convention, not an error).
The annotations are unaudited (``ANNOTATORS``: "from an automated detector").

Two supplements, reported apart and never eligible as "best": (a) the same methods on a copy of
the filtered signal low-passed at 40 Hz (Butterworth order 2, zero phase) for the detector only:
the pipeline's filter keeps the raw lead's high-frequency noise, which derivative-based
detectors amplify; (b) NeuroKit2 methods outside ``R_PEAK_METHODS`` that could replace one,
run through ``detect_r_peaks`` itself (its method list widened for the call).

Run: ``.venv/bin/python bench/rpeaks.py [--quick] [--json PATH] [--no-supplements]``
(``--quick``: the first 20 records; the full run takes about 7 minutes on the idle 2-core CPU,
``--no-supplements`` about 3). Figures go to ``results/rpeaks/ecg-id.json`` unless ``--json``
says otherwise. The data are read in place from ``../shared/datasets/ecg-id`` (or
``$ECG_SHARED_DIR/datasets/ecg-id``). It needs the dev extras (``neurokit2``). Timings are noisy
on the shared machine: compare methods from the same run (the CPU load before it is stored).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import scipy
from scipy import signal as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, run as a script

from machine import cpu_busy, write_figures  # noqa: E402

import ecg_pipeline.signal.beats as beats_mod  # noqa: E402
from ecg_pipeline.config import StudyConfig, load_config  # noqa: E402
from ecg_pipeline.io.wfdb_annotations import read_annotations  # noqa: E402
from ecg_pipeline.io.wfdb_records import read_wfdb_record  # noqa: E402
from ecg_pipeline.signal.beats import R_PEAK_METHODS, detect_r_peaks  # noqa: E402
from ecg_pipeline.signal.filters import design_ecg_filter, zero_phase_filter  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import neurokit2 as nk

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared"))
ECG_ID = SHARED / "datasets" / "ecg-id"
CONFIG = REPO / "configs" / "ecg-id.toml"
DEFAULT_JSON = REPO / "results" / "rpeaks" / "ecg-id.json"
TOLERANCE_S = 0.075  # +-75 ms: the ANSI/AAMI EC57 150-ms matching window
EDGE_S = 0.5  # nothing within 0.5 s of a record's start or end is scored
N_WORST = 10
QUICK_RECORDS = 20
# Supplement (a): a detection-only low-pass over the pipeline's filtered signal.
LOWPASS_HZ = 40.0
LOWPASS_ORDER = 2
# Supplement (b): NeuroKit2 methods outside R_PEAK_METHODS that did well in a first look
# (zong2003 is left out: detect_r_peaks passes the rate as a float, on which it raises on every
# record after ~0.2 s of work; promac's printed failures show it).
CANDIDATES = ("christov2004", "manikandan2012", "martinez2004")
# For the notes on the worst records.
FLAT_MV = 0.02  # raw peak-to-peak within +-0.2 s below this: a flat (disconnected) lead
NOISY_RATIO = 15.0  # QRS peak-to-peak over high-frequency noise below this: a noisy record
ARTEFACT_RATIO = 10.0  # |filtered| this many times the QRS: an artefact
PAIR_S = 0.12  # a miss and a false detection this close (one QRS width): the same beat
SMALL_QRS = 0.5  # a missed beat's peak-to-peak below this share of the record's QRS, or
STANDS_OUT = 2.0  # below this many times the record's typical peak-to-peak: no QRS there


# --- inputs -------------------------------------------------------------------------------------
@dataclass
class Record:
    """One ECG-ID record, filtered, with its annotations and scored span (in samples)."""

    name: str  # Person_01/rec_1
    fs_hz: float
    raw: np.ndarray  # "ECG I" as read
    ecg: np.ndarray  # ... filtered by the pipeline's filter
    beats: np.ndarray  # annotated R peaks (beat annotations)
    twaves: np.ndarray  # annotated T peaks ("t")
    lo: int  # scored span [lo, hi], inclusive
    hi: int

    @property
    def duration_s(self) -> float:
        return len(self.ecg) / self.fs_hz

    @property
    def in_span(self) -> np.ndarray:
        return (self.beats >= self.lo) & (self.beats <= self.hi)


def load_record(root: Path, name: str, config: StudyConfig) -> Record:
    rec = read_wfdb_record(root / f"{name}.hea", channel=config.ingest.channel.name)
    (segment,) = rec.segments
    fs = segment.fs_hz
    design = design_ecg_filter(fs, **config.ingest.filters.model_dump())
    ecg = np.array(zero_phase_filter(segment.samples, design))  # a copy, not a padded view
    ann = read_annotations(root / f"{name}.atr")
    if ann.fs_hz is not None and ann.fs_hz != fs:
        raise ValueError(f"{name}: annotations at {ann.fs_hz} Hz, signal at {fs} Hz")
    beats = ann.sample[ann.is_beat]
    twaves = ann.sample[np.array([s == "t" for s in ann.symbol], dtype=bool)]
    edge = int(np.ceil(EDGE_S * fs))
    tol = int(round(TOLERANCE_S * fs))
    first = int(beats[0]) - tol if len(beats) else edge
    last = int(ann.sample.max()) if len(ann) else len(ecg) - 1
    lo, hi = max(edge, first), min(last, len(ecg) - 1 - edge)
    return Record(name, fs, segment.samples, ecg, beats, twaves, lo, hi)


def lowpassed(rec: Record) -> np.ndarray:
    """Supplement (a): the filtered signal low-passed for the detector only."""
    sos = sps.butter(LOWPASS_ORDER, LOWPASS_HZ, btype="lowpass", fs=rec.fs_hz, output="sos")
    return sps.sosfiltfilt(sos, rec.ecg)


# --- scoring ------------------------------------------------------------------------------------
def match_peaks(ref: np.ndarray, det: np.ndarray, tol: int) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs within ``tol`` samples, the closest pairs first.

    Returns
    -------
    ref_index, det_index : np.ndarray
        Indices into ``ref`` and ``det`` of the matched pairs, ordered by ``ref``.
    """
    ref, det = np.asarray(ref, np.int64), np.asarray(det, np.int64)
    if len(ref) == 0 or len(det) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i, j = np.nonzero(np.abs(ref[:, None] - det[None, :]) <= tol)
    order = np.argsort(np.abs(ref[i] - det[j]), kind="stable")
    used_ref, used_det, pairs = set(), set(), []
    for k in order:
        if i[k] not in used_ref and j[k] not in used_det:
            used_ref.add(i[k])
            used_det.add(j[k])
            pairs.append((i[k], j[k]))
    pairs.sort()
    out = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return out[:, 0], out[:, 1]


@dataclass
class Scored:
    """A method's detections on one record, against the annotations (samples)."""

    det: np.ndarray  # every detection
    tp_ref: np.ndarray  # annotated peaks matched, in the span
    tp_det: np.ndarray  # their detections
    fn: np.ndarray  # annotated peaks in the span with no detection
    fp: np.ndarray  # detections in the span matching no annotation
    detect_s: float

    @property
    def dt(self) -> np.ndarray:
        return (self.tp_det - self.tp_ref).astype(np.float64)


def score(rec: Record, det: np.ndarray, detect_s: float = 0.0) -> Scored:
    ri, di = match_peaks(rec.beats, det, int(round(TOLERANCE_S * rec.fs_hz)))
    in_det = (det >= rec.lo) & (det <= rec.hi)
    matched_ref = np.zeros(len(rec.beats), bool)
    matched_ref[ri] = True
    matched_det = np.zeros(len(det), bool)
    matched_det[di] = True
    keep = rec.in_span[ri]
    return Scored(
        det=det,
        tp_ref=rec.beats[ri[keep]],
        tp_det=det[di[keep]],
        fn=rec.beats[rec.in_span & ~matched_ref],
        fp=det[in_det & ~matched_det],
        detect_s=detect_s,
    )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def figures(tp: int, fp: int, fn: int, dt_ms: np.ndarray) -> dict:
    se, ppv = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
    has = len(dt_ms) > 0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "se": se,
        "ppv": ppv,
        "f1": 2 * se * ppv / (se + ppv) if se and ppv else 0.0,
        "dt_abs_median_ms": float(np.median(np.abs(dt_ms))) if has else None,
        "dt_abs_mean_ms": float(np.mean(np.abs(dt_ms))) if has else None,
        "dt_signed_median_ms": float(np.median(dt_ms)) if has else None,
    }


def record_row(rec: Record, s: Scored) -> dict:
    return {
        "record": rec.name,
        "n_annotated": int(rec.in_span.sum()),
        **figures(len(s.tp_ref), len(s.fp), len(s.fn), s.dt * 1e3 / rec.fs_hz),
        "detect_ms": s.detect_s * 1e3,
    }


# --- detection ----------------------------------------------------------------------------------
def run_method(
    records: list[Record], method: str, inputs: list[np.ndarray] | None = None
) -> tuple[list[Scored], dict]:
    """Detect on every record (``inputs``: other signals than ``rec.ecg``, one per record).

    Only the ``detect_r_peaks`` call is timed; what it prints is kept, and an exception is a
    finding (counted per record), not the end of the benchmark.
    """
    signals = inputs if inputs is not None else [r.ecg for r in records]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        detect_r_peaks(signals[0], records[0].fs_hz, method=method)  # warm-up, untimed
    scored, printed, errors = [], {}, {}
    for rec, x in zip(records, signals, strict=True):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                t0 = time.perf_counter()
                det = detect_r_peaks(x, rec.fs_hz, method=method)
                dt = time.perf_counter() - t0
        except Exception as exc:
            errors[rec.name] = f"{type(exc).__name__}: {exc}"
            det, dt = np.empty(0, np.int64), time.perf_counter() - t0
        text = out.getvalue().strip()
        if text:
            printed[text] = printed.get(text, 0) + 1
        scored.append(score(rec, det, dt))
    return scored, {"printed": printed, "errors": errors}


def method_totals(records: list[Record], scored: list[Scored], extra: dict) -> dict:
    dt = np.concatenate([s.dt * 1e3 / r.fs_hz for r, s in zip(records, scored)])
    tp = sum(len(s.tp_ref) for s in scored)
    fp = sum(len(s.fp) for s in scored)
    fn = sum(len(s.fn) for s in scored)
    detect_s = sum(s.detect_s for s in scored)
    hours = sum(r.duration_s for r in records) / 3600
    rows = [record_row(r, s) for r, s in zip(records, scored)]
    errors = extra["errors"]
    kinds: dict[str, int] = {}
    for text in errors.values():
        kinds[text] = kinds.get(text, 0) + 1
    return {
        **figures(tp, fp, fn, dt),
        "dt_abs_p95_ms": float(np.percentile(np.abs(dt), 95)) if len(dt) else None,
        "records_all_agree": sum(r["fp"] == 0 and r["fn"] == 0 for r in rows),
        "records_with_fn": sum(r["fn"] > 0 for r in rows),
        "records_with_fp": sum(r["fp"] > 0 for r in rows),
        "records_no_detection": sum(len(s.det) == 0 for s in scored),
        "detect_s": detect_s,
        "recording_hours": hours,
        "detect_s_per_recording_hour": detect_s / hours,
        "records_raising": len(errors),
        "exceptions": kinds,
        "exception_records": sorted(errors),
        "printed": extra["printed"],
    }


def rank_key(t: dict) -> tuple:
    dt = t["dt_abs_median_ms"]
    return (-t["f1"], dt if dt is not None else np.inf)


def run_set(records, methods, inputs=None, label=""):
    scored, totals = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        scored[method], extra = run_method(records, method, inputs)
        totals[method] = method_totals(records, scored[method], extra)
        print(f"  {label}{method}: {time.perf_counter() - t0:.1f} s", flush=True)
    return scored, totals


# --- the worst records: who is plausibly wrong --------------------------------------------------
def _found_by(at: int, others: dict[str, np.ndarray], tol: int) -> int:
    return sum(bool(np.any(np.abs(d - at) <= tol)) for d in others.values())


def _window(x: np.ndarray, at: int, half: int) -> np.ndarray:
    return x[max(at - half, 0) : at + half + 1]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def explain(rec: Record, s: Scored, others: dict[str, np.ndarray]) -> str:
    """One sentence on a record's disagreements (``others``: the other methods' detections)."""
    fs = rec.fs_hz
    tol, ms = int(round(TOLERANCE_S * fs)), 1e3 / fs
    n_others = len(others)
    beats = rec.beats[rec.in_span]
    flat = {int(a) for a in beats if np.ptp(_window(rec.raw, int(a), int(0.2 * fs))) < FLAT_MV}
    live = [int(a) for a in rec.beats if int(a) not in flat]
    qrs = float(np.median([np.ptp(_window(rec.ecg, a, tol // 2)) for a in live])) if live else 0
    d = np.diff(rec.ecg)
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2)
    rr = np.diff(rec.beats[[int(a) not in flat for a in rec.beats]]) * ms
    rr_med = float(np.median(rr)) if len(rr) else np.nan
    clauses: list[str] = []

    if flat:
        t = sorted(flat)
        clauses.append(
            f"the raw lead is flat (no signal at all) around {_plural(len(flat), 'annotated beat')} "
            f"({t[0] / fs:.1f}-{t[-1] / fs:.1f} s): those annotations are wrong, no QRS is there"
        )
    big = int(np.argmax(np.abs(rec.ecg)))
    if qrs and abs(rec.ecg[big]) > ARTEFACT_RATIO * qrs:
        clauses.append(
            f"an artefact of {rec.ecg[big]:+.0f} mV at {big / fs:.1f} s "
            f"({abs(rec.ecg[big]) / qrs:.0f}x the QRS) upsets the detector's thresholds"
        )
    if qrs and qrs / noise < NOISY_RATIO:
        clauses.append(
            f"the QRS ({qrs:.2f} mV peak-to-peak) is only {qrs / noise:.0f}x the "
            f"high-frequency noise ({noise * 1e3:.0f} uV)"
        )

    # A miss and a false detection close together: the same beat, marked at another point.
    fn = [int(a) for a in s.fn if int(a) not in flat]
    pairs = []
    if fn and len(s.fp):
        ri, di = match_peaks(np.array(fn), s.fp, int(round(PAIR_S * fs)))
        pairs = [(fn[a], int(s.fp[b])) for a, b in zip(ri, di)]
    if pairs:
        lag = float(np.median([(b - a) * ms for a, b in pairs]))
        off_peak = [
            abs(rec.ecg[a]) < 0.35 * np.max(np.abs(_window(rec.ecg, a, int(0.1 * fs))))
            for a, _ in pairs
        ]
        where = (
            "the annotation sits off the QRS's main deflection, so plausibly the annotation is "
            "misplaced"
            if np.mean(off_peak) > 0.5
            else "both sit on QRS deflections: a fiducial-point disagreement, not a missed beat"
        )
        clauses.append(
            f"{_plural(len(pairs), 'beat')} detected {abs(lag):.0f} ms "
            f"{'after' if lag > 0 else 'before'} the annotation, beyond the 75-ms window "
            f"(a miss plus a false detection): {where}"
        )
    paired_fn = {a for a, _ in pairs}
    paired_fp = {b for _, b in pairs}

    rest_fn = [a for a in fn if a not in paired_fn]
    found = [a for a in rest_fn if _found_by(a, others, tol) >= 2]
    unfound = [a for a in rest_fn if a not in found]
    # The typical peak-to-peak of a QRS-long stretch (most stretches hold no QRS): the floor a
    # QRS must stand out of.
    w = 2 * (tol // 2) + 1
    floor = float(np.median(np.ptp(rec.ecg[: len(rec.ecg) // w * w].reshape(-1, w), axis=1)))
    need = max(SMALL_QRS * qrs, STANDS_OUT * floor)
    small = [a for a in unfound if np.ptp(_window(rec.ecg, a, tol // 2)) < need]
    if found:
        clauses.append(
            f"it misses {_plural(len(found), 'annotated beat')} that at least 2 of the "
            f"{n_others} other methods find: a detector error"
        )
    if small:
        clauses.append(
            f"{_plural(len(small), 'annotated beat')} that no other method finds either, where "
            "nothing stands out of the signal's background: the annotation is doubtful"
        )
    if len(unfound) > len(small):
        clauses.append(
            f"{_plural(len(unfound) - len(small), 'annotated beat')} that no other method "
            "finds either, though a QRS-sized spike stands out there: the detectors fail"
        )

    on_t, in_gap, inside = [], [], []
    for b in (int(x) for x in s.fp if int(x) not in paired_fp):
        before, after = rec.beats[rec.beats < b], rec.beats[rec.beats > b]
        if len(rec.twaves) and np.min(np.abs(rec.twaves - b)) <= tol:
            on_t.append(b)
        elif (
            len(before)
            and len(after)
            and (after[0] - before[-1]) * ms > 1.6 * rr_med
            and abs((b - before[-1]) / (after[0] - before[-1]) - 0.5) < 0.2
        ):
            in_gap.append(b)
        else:
            inside.append(b)
    if on_t:
        clauses.append(f"{_plural(len(on_t), 'false detection')} on annotated T waves")
    if in_gap:
        clauses.append(
            f"{_plural(len(in_gap), 'detection')} mid-way in a gap of two annotated RR "
            "intervals: the annotation plausibly leaves out a beat"
        )
    if inside:
        shared = sum(_found_by(b, others, tol) >= 2 for b in inside)
        clauses.append(
            f"{_plural(len(inside), 'false detection')} inside normal RR intervals, on noise or "
            f"a T wave ({shared} of them also made by 2 or more other methods)"
        )

    dt = s.dt * ms
    if not (s.fn.size or s.fp.size) and len(dt):
        iqr = float(np.subtract(*np.percentile(dt, [75, 25])))
        med = float(np.median(dt))
        if abs(med) >= 10 and iqr <= 10:
            clauses.append(
                f"every beat is found {abs(med):.0f} ms {'after' if med > 0 else 'before'} the "
                f"annotation (IQR {iqr:.0f} ms): a constant fiducial-point offset, not an error"
            )
        else:
            clauses.append(
                f"every beat is found; the timing spreads (median {med:+.0f} ms, IQR {iqr:.0f} ms)"
            )
    text = "; ".join(clauses) or "no disagreement in the span"
    return text[0].upper() + text[1:] + "."


def worst_records(records, scored, best, methods) -> list[dict]:
    rows = [record_row(r, s) for r, s in zip(records, scored[best])]
    order = sorted(
        range(len(rows)), key=lambda i: (rows[i]["f1"], -(rows[i]["dt_abs_median_ms"] or 0.0))
    )
    out = []
    for i in order[:N_WORST]:
        rec, s = records[i], scored[best][i]
        others = {m: scored[m][i].det for m in methods if m != best}
        ms = 1e3 / rec.fs_hz
        in_span = s.det[(s.det >= rec.lo) & (s.det <= rec.hi)]
        out.append(
            {
                **rows[i],
                "span_s": [round(rec.lo / rec.fs_hz, 3), round(rec.hi / rec.fs_hz, 3)],
                "fn_s": [round(float(x) / rec.fs_hz, 3) for x in s.fn],
                "fp_s": [round(float(x) / rec.fs_hz, 3) for x in s.fp],
                "annotated_rr_ms": [round(float(x)) for x in np.diff(rec.beats) * ms],
                "detected_rr_ms_in_span": [round(float(x)) for x in np.diff(in_span) * ms],
                "other_methods_f1": {
                    m: round(record_row(rec, scored[m][i])["f1"], 3) for m in others
                },
                "notes": explain(rec, s, others),
            }
        )
    return out


# --- report -------------------------------------------------------------------------------------
def environment() -> dict:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    beats_src = Path(beats_mod.__file__).read_bytes()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "neurokit2": nk.__version__,
        # detect_r_peaks's code is part of what is measured
        "beats_py_sha1": hashlib.sha1(beats_src).hexdigest()[:12],
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def print_totals(title: str, totals: dict[str, dict], best: str | None = None) -> None:
    print(f"\n== {title} ==")
    print(
        f"  {'method':<17}{'Se %':>8}{'+P %':>8}{'F1 %':>8}{'TP':>6}{'FN':>5}{'FP':>6}"
        f"{'|dt| med':>10}{'|dt| mean':>10}{'dt med':>8}{'s/rec-h':>9}{'raised':>8}"
    )
    for m, t in totals.items():
        mark = " *" if m == best else ""
        print(
            f"  {m + mark:<17}{_pct(t['se']):>8}{_pct(t['ppv']):>8}{_pct(t['f1']):>8}"
            f"{t['tp']:>6}{t['fn']:>5}{t['fp']:>6}{_num(t['dt_abs_median_ms']):>10}"
            f"{_num(t['dt_abs_mean_ms']):>10}{_num(t['dt_signed_median_ms'], '+.1f'):>8}"
            f"{t['detect_s_per_recording_hour']:>9.2f}{t['records_raising']:>8}"
        )
    for m, t in totals.items():
        for text, n in t["printed"].items():
            print(f"  note: {m} printed {text} on {n} record(s)")
        for text, n in t["exceptions"].items():
            print(f"  note: {m} raised {text[:100]!r} on {n} record(s)")


def print_worst(worst: list[dict], best: str) -> None:
    print(f"\n== the {len(worst)} records where {best} disagrees most with the annotations ==")
    print(f"  {'record':<20}{'Se %':>8}{'+P %':>8}{'FN':>4}{'FP':>4}{'|dt| med':>10}{'dt med':>8}")
    for w in worst:
        print(
            f"  {w['record']:<20}{_pct(w['se']):>8}{_pct(w['ppv']):>8}{w['fn']:>4}{w['fp']:>4}"
            f"{_num(w['dt_abs_median_ms']):>10}{_num(w['dt_signed_median_ms'], '+.0f'):>8}"
        )
        print(f"      {w['notes']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"the first {QUICK_RECORDS} records")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the figures here")
    ap.add_argument("--root", type=Path, default=ECG_ID, help="the ECG-ID folder (RECORDS)")
    ap.add_argument(
        "--no-supplements",
        action="store_true",
        help="skip the low-passed input and the candidate methods",
    )
    args = ap.parse_args(argv)
    if not (args.root / "RECORDS").is_file():
        print(f"{args.root}/RECORDS: not found (set ECG_SHARED_DIR)", file=sys.stderr)
        return 2

    config = load_config(CONFIG)
    names = (args.root / "RECORDS").read_text().split()
    if args.quick:
        names = names[:QUICK_RECORDS]
    env = environment()
    busy = cpu_busy()
    print("ecg-pipeline R-peak benchmark: NeuroKit2's detectors against ECG-ID's annotations")
    print("  " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "platform"))
    print(
        f"  CPUs busy before the run: {busy:.0%}" + ("  (timings inflated)" if busy > 0.3 else "")
    )

    records = [load_record(args.root, n, config) for n in names]
    hours = sum(r.duration_s for r in records) / 3600
    n_scored = sum(int(r.in_span.sum()) for r in records)
    print(
        f"  {len(records)} records, {hours:.3f} recording-h; {n_scored} annotated beats in the "
        f"scored spans; tolerance +-{TOLERANCE_S * 1e3:.0f} ms, edges {EDGE_S:g} s"
    )

    scored, totals = run_set(records, R_PEAK_METHODS)
    ranking = sorted(R_PEAK_METHODS, key=lambda m: rank_key(totals[m]))
    best = ranking[0]
    print_totals("the pipeline's input: ECG I filtered by [ingest.filters]", totals, best)
    print("  (dt: detected minus annotated, ms; s/rec-h: detection seconds per recording-hour)")
    print(f"  best by F1, then median |dt|: {best}  (ranking: {', '.join(ranking)})")
    worst = worst_records(records, scored, best, R_PEAK_METHODS)
    print_worst(worst, best)

    supplements = None
    if not args.no_supplements:
        low = [lowpassed(r) for r in records]
        _, low_totals = run_set(records, R_PEAK_METHODS, low, "low-passed: ")
        low_ranking = sorted(R_PEAK_METHODS, key=lambda m: rank_key(low_totals[m]))
        print_totals(
            f"supplement (a): the same, low-passed at {LOWPASS_HZ:g} Hz for the detector",
            low_totals,
            low_ranking[0],
        )
        # detect_r_peaks refuses methods outside R_PEAK_METHODS; widen the list for the call so
        # the candidates run the product's own code path (polarity, clipping, caught errors).
        with mock.patch.object(beats_mod, "R_PEAK_METHODS", R_PEAK_METHODS + CANDIDATES):
            _, cand_totals = run_set(records, CANDIDATES, None, "candidate: ")
        print_totals("supplement (b): candidates, the pipeline's input", cand_totals)
        supplements = {
            "lowpass": {
                "what": (
                    "the pipeline's filtered signal, low-passed (Butterworth, zero phase) for the "
                    "detector only; annotations and scoring unchanged"
                ),
                "lowpass_hz": LOWPASS_HZ,
                "order": LOWPASS_ORDER,
                "totals": low_totals,
                "ranking": low_ranking,
            },
            "candidates": {
                "what": (
                    "NeuroKit2 methods outside R_PEAK_METHODS, through detect_r_peaks with its "
                    "method list widened"
                ),
                "methods": list(CANDIDATES),
                "totals": cand_totals,
            },
        }

    out = {
        "benchmark": "rpeaks",
        "dataset": "ecg-id",
        "data": {
            "root": str(args.root),
            "n_records": len(records),
            "channel": config.ingest.channel.name,
            "fs_hz": sorted({r.fs_hz for r in records}),
            "filter": config.ingest.filters.model_dump(),
            "recording_hours": hours,
            "annotated_beats_scored": n_scored,
            "annotations": (
                "the .atr files: unaudited R- ('N') and T-peak ('t') annotations from an "
                "automated detector (ANNOTATORS), of the first 10 beats of each record only"
            ),
        },
        "quick": args.quick,
        "methods": list(R_PEAK_METHODS),
        "tolerance_ms": TOLERANCE_S * 1e3,
        "edge_s": EDGE_S,
        "scored_span": (
            "from the first annotated beat less the tolerance to the last annotation, and never "
            "within edge_s of the record's start or end; detections outside are not scored"
        ),
        "matching": "one-to-one, closest pairs first, |detected - annotated| <= tolerance",
        "timing": "dt = detected minus annotated, ms, over matched pairs in the span",
        "cost": (
            "seconds in detect_r_peaks alone, summed over records, per recorded hour (whole "
            "records); one untimed warm-up call per method first"
        ),
        "best_rule": "highest F1, then smallest median |dt|",
        "cpu_busy_before": busy,
        "totals": totals,
        "ranking": ranking,
        "best_method": best,
        "records": [record_row(r, s) for r, s in zip(records, scored[best])],
        "f1_by_method": {
            m: {r.name: round(record_row(r, s)["f1"], 4) for r, s in zip(records, scored[m])}
            for m in R_PEAK_METHODS
        },
        "worst_records": worst,
        "supplements": supplements,
        "environment": env,
    }
    write_figures(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
