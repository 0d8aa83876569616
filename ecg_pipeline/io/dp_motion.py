"""Reader for the dp-motion-ecg CSVs (kalouskova/DP): timestamped raw ADC samples, one lead.

One reader per format (about 400 lines, most of them the timing evidence behind each rule).

Each file ``data/ID/ID_ELECTRODE_ACTIVITY.csv`` holds lines ``YYYY-MM-DD HH:MM:SS.ffffff ; ADC``.
The timestamps are host receive times, not sample times, and what they show shaped this reader
(measured on all 150 files, 4.68 million intervals):

* **Jitter, not loss.** The median interval is 2.005 ms and 99.8 % lie in 1.67-2.37 ms, but
  some intervals up to 55.6 ms (05_02_beh) occur. Each is followed by a burst of near-zero
  intervals, and over the 400 samples around it the timestamps are only 0.5-5.6 ms behind the
  local rate: the samples were delivered late, none were lost. Regressing time on sample index
  leaves residuals of about -1 to +1 ms apart from these delays (at most +54 ms; two files
  wander by +-11 ms), so the sample clock is steady, at 495.9-498.6 Hz depending on the file.
* **Real gaps.** Only three intervals are true losses (the timestamps stay behind by the whole
  interval): 22.5 s (06_01_chodza), 9.2 s (10_01_klud), 5.9 s (10_03_drepy).
* **One clock step.** In 02_03_klud the timestamp goes back by 80.5 ms at line 23471 while the
  ADC values run on smoothly (1976, 1992, 2002, 2012) and the rate fitted before and after the
  step agrees to 0.02 Hz: the host clock was stepped, the samples are consecutive.

Hence:

1. Split at intervals longer than ``max_gap_s`` (default 0.1 s: about twice the longest delay,
   60 times shorter than the shortest real gap); nothing is interpolated across a gap.
2. Fit the sample clock: one period for the whole file and one offset per piece (the file cut at
   gaps and at backward steps), by least squares of time on sample index, refitted without the
   late samples so that delays do not tilt it (:func:`fit_sample_clock`).
3. Undo backward steps: the piece after a step continues where the fitted clock of the piece
   before ends. Dropping the samples after the step would cut 40 real samples out of the ECG;
   splitting there would give two segments overlapping in time.
4. Resample each stretch from its fitted clock onto a uniform ``nominal_fs_hz`` grid (cubic
   spline). Interpolating on the raw timestamps instead would draw a straight line across every
   delayed burst (27 samples of ramp in 05_02_beh, up to 79 ADC counts off) and squash the
   burst into one grid step.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_pipeline.errors import FormatError
from ecg_pipeline.io.recording import RawRecording, Segment

DP_MOTION_FILE = re.compile(
    r"^(?P<subject>[0-9]{2})_(?P<session>[0-9]{2})_(?P<activity>[A-Za-z]+)\.csv$"
)

# A fitted rate further than this from the nominal rate means the configured rate is wrong
# (or the file is not what it claims): resampling would then silently change the signal's time
# scale, so it is refused instead.
MAX_RATE_MISMATCH = 0.05
# The cubic B-spline's prefilter forgets an edge by a factor 0.27 per sample: 16 samples of
# padding put the ends' influence below 1e-9.
_SPLINE_PAD = 16


@dataclass(frozen=True)
class DpMotionName:
    """What a dp-motion-ecg file name says.

    Attributes
    ----------
    subject : str
        Two-digit subject id, e.g. ``"01"``.
    session : str
        Two-digit electrode type, one session each: ``"01"`` Ag/AgCl, ``"02"`` chrome-nickel,
        ``"03"`` textile.
    activity : str
        The raw (Slovak) token, e.g. ``"klud"``; configuration maps it to a condition.
    """

    subject: str
    session: str
    activity: str


def parse_dp_motion_name(path: str | os.PathLike) -> DpMotionName:
    """Split ``ID_ELECTRODE_ACTIVITY.csv`` into subject, session and activity.

    Raises
    ------
    FormatError
        The name does not have that form, or the subject disagrees with its two-digit folder.
    """
    path = Path(path)
    m = DP_MOTION_FILE.match(path.name)
    if m is None:
        raise FormatError(
            path,
            f"file name {path.name!r} is not of the form ID_ELECTRODE_ACTIVITY.csv "
            "(e.g. 01_02_klud.csv)",
        )
    name = DpMotionName(m["subject"], m["session"], m["activity"])
    folder = path.parent.name
    if re.fullmatch(r"[0-9]{2}", folder) and folder != name.subject:
        raise FormatError(
            path, f"file of subject {name.subject!r} lies in the folder of subject {folder!r}"
        )
    return name


def discover_dp_motion(root: str | os.PathLike) -> list[Path]:
    """The recording CSVs under ``root`` (the dataset folder or its ``data/``), sorted.

    Artefact label files (``labels/*_2.csv``) and other CSVs are left out.
    """
    root = Path(root)
    return sorted(
        p
        for p in root.rglob("*.csv")
        if p.is_file()
        and "labels" not in p.relative_to(root).parts
        and DP_MOTION_FILE.match(p.name)
    )


def _read_timestamped_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (s since the first line) and values of a ``timestamp ; value`` CSV.

    One C-engine ``read_csv`` and one vectorised ISO-8601 parse (about 6 ms for 30 000 lines);
    bad lines are located afterwards, so the fast path pays nothing for the error messages.
    """
    import pandas as pd

    try:
        with warnings.catch_warnings():
            # More fields on line 1 than names: pandas would drop them with only a warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(
                path,
                sep=";",
                header=None,
                names=["t", "v"],
                index_col=False,  # never take the timestamps as an index
                dtype={"t": str},
                skip_blank_lines=False,  # keep row i == line i + 1 for error messages
                quoting=csv.QUOTE_NONE,
                engine="c",
            )
    except pd.errors.ParserWarning as exc:
        raise FormatError(
            path, f"line 1: more than 2 ';'-separated fields, found {_line_text(path, 1)}"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise FormatError(path, "empty file: no 'timestamp ; value' lines") from exc
    except pd.errors.ParserError as exc:
        # pandas names the line: "Expected 2 fields in line 7, saw 3"
        raise FormatError(path, f"not a 'timestamp ; value' CSV: {str(exc).strip()}") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not a text file ({exc})") from exc

    blank = df["t"].isna() & df["v"].isna()
    if blank.any():  # blank lines (often one at the end) carry nothing
        df = df[~blank]
    if len(df) < 2:
        raise FormatError(path, f"{len(df)} data line(s); at least 2 are needed")

    values = pd.to_numeric(df["v"], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        line = df.index[row] + 1
        raise FormatError(
            path,
            f"line {line}: expected 'timestamp ; ADC value' with a number after ';', "
            f"found {_line_text(path, line)}",
        )

    try:
        stamps = pd.to_datetime(df["t"].str.strip(), format="ISO8601", errors="coerce")
    except (ValueError, TypeError) as exc:  # e.g. mixed time zones
        raise FormatError(path, f"timestamps not parseable as one clock: {exc}") from exc
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        line = df.index[row] + 1
        raise FormatError(
            path,
            f"line {line}: timestamp is not of the form YYYY-MM-DD HH:MM:SS.ffffff, "
            f"found {_line_text(path, line)}",
        )
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    t = stamps.to_numpy()
    t_s = (t - t[0]) / np.timedelta64(1, "s")
    return t_s.astype(np.float64), values.to_numpy(dtype=np.float64)


def _line_text(path: Path, line: int, limit: int = 60) -> str:
    """Line ``line`` (1-based) of the file, quoted and shortened, for an error message."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, text in enumerate(f, start=1):
            if i == line:
                text = text.rstrip("\r\n")
                return repr(text if len(text) <= limit else text[:limit] + "...")
    return "''"


def index_ranges(cuts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of ``range(n)`` cut before each index in ``cuts``."""
    bounds = np.unique(np.concatenate([[0], np.asarray(cuts, dtype=np.int64), [n]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass(frozen=True)
class SampleClock:
    """The sample clock fitted to a file's timestamps.

    Attributes
    ----------
    period_s : float
        One sample period, common to the whole file.
    pieces : list of (int, int)
        Index ranges with one clock offset each: the file cut at gaps and backward steps.
    start_s : np.ndarray
        Fitted time of each piece's first sample, in the file's timestamp seconds.
    """

    period_s: float
    pieces: list[tuple[int, int]]
    start_s: np.ndarray


def fit_sample_clock(
    t_s: np.ndarray, pieces: list[tuple[int, int]], late_mads: float = 3.0
) -> SampleClock:
    """Fit ``t = start_s[piece] + period_s * k`` (k counts samples within a piece).

    Least squares twice: the second fit leaves out samples more than ``late_mads`` robust
    standard deviations late, so delivery delays (late, never early) do not tilt the slope.
    One period for all pieces lets short pieces between gaps use the whole file's clock.
    """
    n = len(t_s)
    piece_of = np.repeat(np.arange(len(pieces)), [b - a for a, b in pieces])
    first = np.array([a for a, _ in pieces], dtype=np.float64)
    k = np.arange(n, dtype=np.float64) - first[piece_of]
    weight = np.ones(n)
    period_s, start_s = float("nan"), np.full(len(pieces), np.nan)
    for _ in range(2):
        w_sum = np.bincount(piece_of, weight, len(pieces))
        # A piece that lost (nearly) all samples to the trimming keeps all of them.
        weight = np.where(w_sum[piece_of] < 2, 1.0, weight)
        w_sum = np.bincount(piece_of, weight, len(pieces))
        k_mean = np.bincount(piece_of, weight * k, len(pieces)) / w_sum
        t_mean = np.bincount(piece_of, weight * t_s, len(pieces)) / w_sum
        dk = k - k_mean[piece_of]
        den = float(np.sum(weight * dk * dk))
        if den <= 0:
            break
        period_s = float(np.sum(weight * dk * (t_s - t_mean[piece_of]))) / den
        start_s = t_mean - period_s * k_mean
        residual_s = t_s - start_s[piece_of] - period_s * k
        centre = np.median(residual_s)
        spread = 1.4826 * np.median(np.abs(residual_s - centre))
        weight = (residual_s <= centre + late_mads * spread + 1e-9).astype(np.float64)
    return SampleClock(period_s, pieces, start_s)


def stretch_starts_s(clock: SampleClock, stretches: list[tuple[int, int]]) -> np.ndarray:
    """Start of each gap-free stretch, in seconds from the file's first sample, steps undone.

    Within a stretch the samples are consecutive, so a backward clock step only moves the
    timestamps: the piece after it is placed where the fitted clock of the piece before ends,
    and everything later moves with it. Across a gap the timestamps are trusted, since only they
    measure the gap.
    """
    stretch_first = {a for a, _ in stretches}
    corrected = np.empty(len(clock.pieces))
    shift_s = 0.0
    for j, (a, _) in enumerate(clock.pieces):
        if j > 0 and a not in stretch_first:  # a backward step inside a stretch
            prev_a, prev_b = clock.pieces[j - 1]
            prev_end_s = clock.start_s[j - 1] + (prev_b - prev_a) * clock.period_s
            shift_s += prev_end_s - clock.start_s[j]
        corrected[j] = clock.start_s[j] + shift_s
    first_piece = {a: j for j, (a, _) in enumerate(clock.pieces)}
    return np.array([corrected[first_piece[a]] for a, _ in stretches]) - corrected[0]


def resample_uniform(x: np.ndarray, period_s: float, fs_hz: float) -> np.ndarray:
    """Resample samples spaced ``period_s`` apart onto a ``1 / fs_hz`` grid from the first sample.

    Cubic B-spline interpolation: unlike linear interpolation it does not low-pass the QRS by a
    varying amount as the grid slides against the samples (a beat-to-beat amplitude ripple), and
    the rate ratio here is within 1 % of 1, so no anti-alias filter is needed. The output is
    held within the input's range. The ends are extended by point reflection (keeps the slope;
    plain mirroring would flatten it and bend the last samples). The grid stops at the last
    input sample: nothing is extrapolated.
    """
    from scipy import ndimage

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 2:
        return x.copy()
    pad = min(_SPLINE_PAD, n - 1)
    padded = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2 : -pad - 2 : -1]])
    n_out = int(np.floor((n - 1) * period_s * fs_hz + 1e-9)) + 1
    position = np.minimum(np.arange(n_out) / (fs_hz * period_s), n - 1)  # in input samples
    y = ndimage.map_coordinates(padded, (position + pad)[np.newaxis, :], order=3, mode="mirror")
    # A cubic overshoots next to clipped stretches (the ADC saturates during running); values
    # beyond what the ADC gave would be invented, so they are held at its range.
    return np.clip(y, x.min(), x.max())


def read_dp_motion_csv(
    path: str | os.PathLike,
    *,
    nominal_fs_hz: float = 500.0,
    max_gap_s: float = 0.1,
    min_segment_s: float = 1.0,
) -> RawRecording:
    """Read one dp-motion-ecg CSV as gap-free segments on a uniform ``nominal_fs_hz`` grid.

    Parameters
    ----------
    path : path-like
        ``ID_ELECTRODE_ACTIVITY.csv``, read in place.
    nominal_fs_hz : float
        Rate of the output grid (the dataset's nominal 500 Hz).
    max_gap_s : float
        Intervals longer than this split the recording; nothing is interpolated across them.
        Default 0.1 s: the longest delivery delay in the dataset is 55.6 ms, the shortest real
        gap 5.9 s (see the module docstring).
    min_segment_s : float
        Gap-free stretches shorter than this are dropped (counted in the header): under one
        second holds at most one beat at rest, and never a whole window.

    Returns
    -------
    RawRecording
        Channel ``"ECG"`` in ``"adc"`` counts; one :class:`Segment` per kept stretch, each at
        ``nominal_fs_hz``. ``start_s`` is measured from the file's first sample on the fitted
        clock (within a millisecond of its timestamp): the segment holding it starts at 0, a
        segment after a gap starts after the gap. ``header`` holds only facts about the timing
        (no dates or times of day): ``n_samples_raw``, ``measured_fs_hz``,
        ``median_interval_ms``, ``largest_interval_s``, ``n_gaps``, ``gaps_total_s``,
        ``largest_gap_s``, ``n_clock_steps``, ``clock_steps_total_s`` (negative),
        ``n_dropped_segments``, ``dropped_s``.

    Raises
    ------
    FormatError
        Unparseable line (the message names it), fewer than 2 samples, or a fitted rate more
        than 5 % away from ``nominal_fs_hz``.
    """
    path = Path(path)
    if nominal_fs_hz <= 0 or max_gap_s <= 0 or min_segment_s < 0:
        raise ValueError("nominal_fs_hz and max_gap_s must be > 0, min_segment_s >= 0")
    t_s, x = _read_timestamped_csv(path)
    dt = np.diff(t_s)
    gap_at = np.flatnonzero(dt > max_gap_s) + 1
    step_at = np.flatnonzero(dt < 0) + 1  # the host clock stepped back (02_03_klud)
    stretches = index_ranges(gap_at, len(t_s))
    clock = fit_sample_clock(t_s, index_ranges(np.concatenate([gap_at, step_at]), len(t_s)))
    if not clock.period_s > 0:
        raise FormatError(path, "timestamps do not advance: no sample rate can be measured")
    measured_fs_hz = 1.0 / clock.period_s
    if abs(measured_fs_hz / nominal_fs_hz - 1.0) > MAX_RATE_MISMATCH:
        raise FormatError(
            path,
            f"timestamps give {measured_fs_hz:.1f} Hz, not the nominal {nominal_fs_hz:g} Hz; "
            "check [ingest.timestamps] nominal_fs_hz",
        )

    segments: list[Segment] = []
    dropped_s = 0.0
    for (a, b), start_s in zip(stretches, stretch_starts_s(clock, stretches), strict=True):
        span_s = (b - a) * clock.period_s
        if span_s < min_segment_s:
            dropped_s += span_s
            continue
        samples = resample_uniform(x[a:b], clock.period_s, nominal_fs_hz)
        segments.append(Segment(samples, float(nominal_fs_hz), float(start_s)))

    gaps_s = dt[gap_at - 1]
    steps_s = dt[step_at - 1]
    header = {
        "n_samples_raw": str(len(x)),
        "measured_fs_hz": f"{measured_fs_hz:.3f}",
        "median_interval_ms": f"{np.median(dt) * 1e3:.3f}",
        "largest_interval_s": f"{dt.max():.4f}",
        "n_gaps": str(len(gaps_s)),
        "gaps_total_s": f"{gaps_s.sum():.4f}",
        "largest_gap_s": f"{gaps_s.max() if len(gaps_s) else 0.0:.4f}",
        "n_clock_steps": str(len(steps_s)),
        "clock_steps_total_s": f"{steps_s.sum():.4f}",
        "n_dropped_segments": str(len(stretches) - len(segments)),
        "dropped_s": f"{dropped_s:.3f}",
    }
    return RawRecording(
        source_path=str(path),
        channel_name="ECG",
        units="adc",
        segments=segments,
        header=header,
    )
