"""Step 4 of a batch: one file's ECG channel, read once, into windows (nothing is written).

The chain is shared with prediction (:func:`read_windows`), so a model sees new recordings
exactly as it saw its training windows: read the ECG channel, filter each gap-free segment at its
native rate, resample, cut whole windows, drop flat ones. The signal steps are the pure
functions of :mod:`ecg_pipeline.signal`; this module applies the ``[ingest]`` settings to them
and turns what they find into typed errors naming the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ecg_pipeline.cohort.markers import split_phases
from ecg_pipeline.config import IngestSettings, StudyConfig
from ecg_pipeline.errors import (
    FileTimeLimitError,
    IngestError,
    NoBeatsError,
    PhaseNotKeptError,
    SamplingRateError,
    SignalQualityError,
    TooShortError,
    UnexpectedIngestError,
    UnreadableFileError,
)
from ecg_pipeline.ingest.plan import PlannedFile
from ecg_pipeline.ingest.quality import assess_recording, check_heartbeat
from ecg_pipeline.instrument import stage
from ecg_pipeline.io.readers import read_recording
from ecg_pipeline.io.recording import RawRecording, Segment
from ecg_pipeline.io.store import phase_recording_id, recording_id_of
from ecg_pipeline.io.time_limit import TimeLimitReached, time_limit
from ecg_pipeline.signal.beats import (
    FLAG_IMPLAUSIBLE_RR,
    FLAG_TOO_FEW_BEATS,
    WindowBeats,
    beats_per_window,
    cut_segments,
    detect_r_peaks,
    rr_intervals_s,
    template_correlation,
)
from ecg_pipeline.signal.filters import design_ecg_filter, zero_phase_filter
from ecg_pipeline.signal.quality import flat_raw_windows, millivolts_per_unit
from ecg_pipeline.signal.resample import resample_to, resampling_problem
from ecg_pipeline.signal.windows import Windows, sliding_windows


@dataclass
class ProcessedFile:
    """One recording ready to be written: a whole file, or one phase of a marker-split file
    (then ``plan.labels`` carries the phase's condition)."""

    plan: PlannedFile
    manifest_row: dict
    windows: Windows
    recording_id: str = ""

    def __post_init__(self) -> None:
        if not self.recording_id:
            self.recording_id = recording_id_of(self.plan.sha256)


def read_windows(path: str | os.PathLike, config: StudyConfig) -> tuple[RawRecording, Windows]:
    """Read one file's ECG channel once and cut it into windows as ``[ingest]`` says.

    The chain shared by ingest and prediction (``ecg_pipeline.predict``), so that a model sees
    new recordings exactly as it saw its training windows. Needs no labels.

    Raises
    ------
    IngestError
        A subclass naming the file and the reason; unexpected failures are wrapped too, so that
        one bad file never stops a batch.
    """
    with _named_errors(path, config.limits.file_time_s), time_limit(config.limits.file_time_s):
        raw = read_raw(path, config)
        with stage("process: heartbeat"):
            check_heartbeat(raw, config.ingest)
        with stage("process: filter + resample + window"):
            return raw, segments_to_windows(raw.segments, config.ingest, units=raw.units)


def read_raw(path: str | os.PathLike, config: StudyConfig) -> RawRecording:
    """Read one file's ECG channel (only that channel), as ``[ingest.channel]`` chooses it.

    Raises
    ------
    IngestError
        As :func:`read_windows`.
    """
    with _named_errors(path), stage("process: read ECG"):
        return read_recording(str(path), config)


@contextlib.contextmanager
def _named_errors(path: str | os.PathLike, time_limit_s: float | None = None) -> Iterator[None]:
    """Every failure inside as an :class:`IngestError` naming ``path``."""
    path = str(path)
    try:
        yield
    except TimeLimitReached as exc:
        raise FileTimeLimitError(
            path,
            f"reading and windowing took longer than {time_limit_s:g} s ([limits] file_time_s): "
            "a corrupt header can make a reader loop; raise the limit for very long recordings",
        ) from exc
    except IngestError as exc:
        if exc.path:
            raise
        raise type(exc)(path, exc.reason) from exc
    except MemoryError as exc:
        raise UnreadableFileError(path, "not enough memory to read this file") from exc
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read file: {exc}") from exc
    except Exception as exc:  # a reader bug or an unforeseen layout: report, do not crash
        raise UnexpectedIngestError(path, f"unexpected {type(exc).__name__}: {exc}") from exc


def process_file(plan: PlannedFile, config: StudyConfig) -> ProcessedFile:
    """Read one file's ECG channel once and turn it into windows (nothing is written).

    For a file labelled with its condition; :func:`process_planned` also splits files by their
    event markers.

    Raises
    ------
    IngestError
        See :func:`read_windows`.
    """
    path = plan.labels.source_path
    raw, windows = read_windows(path, config)
    with _named_errors(path), stage("process: quality"):
        windows = dataclasses.replace(
            windows, quality=assess_recording(raw, windows, config.ingest)
        )
    return ProcessedFile(plan, _manifest_row(plan, raw, windows, raw.duration_s), windows)


def process_planned(
    plan: PlannedFile, config: StudyConfig
) -> tuple[list[ProcessedFile], list[IngestError]]:
    """Read one planned file once: one recording, or one per protocol phase of a file labelled
    without a condition, cut at its event markers (:func:`ecg_pipeline.cohort.markers.split_phases`).

    Returns
    -------
    processed : list of ProcessedFile
        The recordings to write, in time order.
    refused : list of IngestError
        The phases not kept, each naming the file, the phase and why (the others are kept).

    Raises
    ------
    IngestError
        The whole file is refused (unreadable, no phase markers, an ambiguous marker, ...).
    """
    if not plan.labels.by_markers:
        return [process_file(plan, config)], []
    path = plan.labels.source_path
    limit_s = config.limits.file_time_s
    processed, refused = [], []
    with _named_errors(path, limit_s), time_limit(limit_s):
        raw = read_raw(path, config)
        with stage("process: heartbeat"):
            check_heartbeat(raw, config.ingest)  # the whole file's channel, once
        split = split_phases(
            raw.markers,
            raw.duration_s,
            config.dataset.markers,
            min_length_s=config.ingest.windows.window_s,
        )
        refused += [PhaseNotKeptError(path, reason) for reason in split.dropped]
        markers_hash = config.markers_hash()
        for phase in split.phases:
            phase_raw = dataclasses.replace(
                raw, segments=phase_segments(raw.segments, phase.start_s, phase.end_s)
            )
            try:
                with stage("process: filter + resample + window"):
                    windows = segments_to_windows(
                        phase_raw.segments, config.ingest, units=raw.units
                    )
                with stage("process: quality"):
                    windows = dataclasses.replace(
                        windows, quality=assess_recording(phase_raw, windows, config.ingest)
                    )
            except IngestError as exc:
                # One bad phase (a lead off during exercise) does not cost the others.
                refused.append(type(exc)(path, f"phase {phase.describe()}: {exc.reason}"))
                continue
            windows.warnings[:0] = split.notes
            phase_plan = PlannedFile(
                dataclasses.replace(plan.labels, condition=phase.condition),
                plan.sha256,
                plan.replaces,
            )
            row = _manifest_row(phase_plan, raw, windows, phase.duration_s)
            row |= {
                "marker": phase.marker,
                "phase_start_s": phase.start_s,
                "phase_end_s": phase.end_s,
                "markers_hash": markers_hash,
            }
            rid = phase_recording_id(plan.sha256, phase.condition)
            processed.append(ProcessedFile(phase_plan, row, windows, rid))
    return processed, refused


def phase_segments(segments: Sequence[Segment], start_s: float, end_s: float) -> list[Segment]:
    """The parts of ``segments`` between ``start_s`` and ``end_s`` (seconds from the start of
    the recording), as views: nothing is copied, and times stay the file's."""
    parts = []
    for seg in segments:
        first = max(int(np.ceil((start_s - seg.start_s) * seg.fs_hz - 1e-9)), 0)
        stop = min(int(np.floor((end_s - seg.start_s) * seg.fs_hz + 1e-9)), len(seg.samples))
        if stop > first:
            parts.append(
                Segment(seg.samples[first:stop], seg.fs_hz, seg.start_s + first / seg.fs_hz)
            )
    return parts


def _manifest_row(
    plan: PlannedFile, raw: RawRecording, windows: Windows, duration_s: float
) -> dict:
    lab = plan.labels
    return {
        "source_path": lab.source_path,
        "subject": lab.subject,
        "condition": lab.condition,
        "session": lab.session,
        "date": lab.date or raw.header.get("date"),
        "sha256": plan.sha256,
        "channel": raw.channel_name,
        "native_fs_hz": float(raw.native_fs_hz),
        "duration_s": float(duration_s),
        "n_windows": len(windows),
        "n_beats": sum(len(p) for p in windows.beats.peak_s),
        "n_beat_flagged": int((windows.beats.flags != "").sum()),
        "marker": None,
        "phase_start_s": None,
        "phase_end_s": None,
        "markers_hash": None,
    }


def segments_to_windows(
    segments: Sequence[Segment], settings: IngestSettings, *, units: str | None = "mV"
) -> Windows:
    """Turn the gap-free segments of one recording into stored windows.

    Each segment is filtered at its native rate (so the mains notch sits below that rate's
    Nyquist frequency), resampled to the target rate with an anti-aliasing filter, and cut into
    whole windows; no window straddles two segments. ``units`` is the channel's declared unit:
    the flat-lead threshold ``[ingest.quality] min_window_std`` is in millivolts for a voltage
    (V, mV, µV) and in the channel's own units otherwise (ADC counts).

    Raises
    ------
    SamplingRateError
        A segment's native rate is below the target rate.
    TooShortError
        Not one whole window in the recording.
    SignalQualityError
        More than ``quality.max_flat_fraction`` of the windows are flat.
    """
    win = settings.windows
    target_fs = win.target_fs_hz
    window_n = win.window_samples
    hop_n = round(win.effective_hop_s * target_fs)
    chunks, starts, flat, warnings, beats = [], [], [], [], []
    designs: dict[float, object] = {}
    to_mv = millivolts_per_unit(units)
    min_std = settings.quality.min_window_std / to_mv if to_mv else settings.quality.min_window_std
    threshold_text = (
        f"{settings.quality.min_window_std:g} mV"
        if to_mv
        else f"{settings.quality.min_window_std:g} {units or 'channel units'}"
    )
    for seg in segments:
        for rate in (target_fs, settings.beats.segment_fs_hz):
            problem = resampling_problem(seg.fs_hz, rate)
            if problem:
                raise SamplingRateError(None, problem)
        if seg.fs_hz < target_fs:
            raise SamplingRateError(
                None,
                f"native rate {seg.fs_hz:g} Hz is below the target rate {target_fs:g} Hz "
                "(upsampling would invent signal)",
            )
        if seg.fs_hz < settings.beats.segment_fs_hz and not any(
            "interpolated" in w for w in warnings
        ):
            # Every stored segment has one length, so a slower recording's beats are
            # band-limited interpolations: usable, but they hold nothing above its Nyquist.
            warnings.append(
                f"beat segments interpolated from {seg.fs_hz:g} Hz to "
                f"{settings.beats.segment_fs_hz:g} Hz (no detail above {seg.fs_hz / 2:g} Hz)"
            )
        if seg.duration_s < win.window_s:
            if len(segments) > 1:
                warnings.append(
                    f"segment at {seg.start_s:.2f} s skipped: {seg.duration_s:.2f} s is "
                    f"shorter than one {win.window_s:g}-s window"
                )
            continue
        if seg.fs_hz not in designs:
            f = settings.filters
            designs[seg.fs_hz] = design_ecg_filter(
                seg.fs_hz,
                highpass_hz=f.highpass_hz,
                highpass_order=f.highpass_order,
                mains_hz=f.mains_hz,
                notch_quality=f.notch_quality,
            )
            warnings.extend(designs[seg.fs_hz].warnings)
        filtered = zero_phase_filter(seg.samples, designs[seg.fs_hz])
        resampled = resample_to(filtered, seg.fs_hz, target_fs)
        windows = sliding_windows(resampled, window_n, hop_n)
        hop_s = hop_n / target_fs
        segment_beats, note = _segment_beats(filtered, seg.fs_hz, hop_s, len(windows), settings)
        beats.append(segment_beats)
        if note:
            warnings.append(
                f"segment at {seg.start_s:.2f} s: {note}" if len(segments) > 1 else note
            )
        flat.append(
            flat_raw_windows(
                seg.samples,
                seg.fs_hz,
                win.window_s,
                hop_s,
                len(windows),
                min_std,
                settings.quality.max_extreme_fraction,
            )
        )
        chunks.append(windows.astype(np.float32))
        starts.append(seg.start_s + np.arange(len(windows)) * hop_s)

    total_s = sum(s.duration_s for s in segments)
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise TooShortError(
            None,
            f"{total_s:.2f} s of signal holds no whole {win.window_s:g}-s window",
        )
    samples = np.concatenate(chunks)
    start_s = np.concatenate(starts)
    index = np.arange(len(samples), dtype=np.int32)
    window_beats = _concat_beats(beats)

    flat = np.concatenate(flat)
    n_flat = int(flat.sum())
    if n_flat and n_flat / len(samples) > settings.quality.max_flat_fraction:
        raise SignalQualityError(
            None,
            f"flat or disconnected lead: {n_flat} of {len(samples)} windows are flat (standard "
            f"deviation below {threshold_text}) or railed (more "
            f"than {settings.quality.max_extreme_fraction:.0%} of samples at the window's extremes)",
        )
    if n_flat:
        warnings.append(f"{n_flat} flat window(s) dropped")
        keep = ~flat
        samples, start_s, index = samples[keep], start_s[keep], index[keep]
        window_beats = _select_beats(window_beats, keep)
    if not np.isfinite(samples).all():
        raise SignalQualityError(None, "non-finite samples after filtering")
    warnings.extend(check_beats(window_beats, settings))
    return Windows(
        samples,
        start_s,
        index,
        target_fs,
        n_flat,
        warnings,
        beats=window_beats,
        beat_fs_hz=settings.beats.segment_fs_hz,
    )


def _segment_beats(
    filtered: np.ndarray, fs_hz: float, hop_s: float, n_windows: int, settings: IngestSettings
) -> tuple[WindowBeats, str | None]:
    """The beats of one gap-free segment, per window (window starts relative to the segment),
    and a note when the fallback detector's beats were kept."""
    b = settings.beats
    with stage("process: R peaks + beat segments"):
        at_segment_rate = resample_to(filtered, fs_hz, b.segment_fs_hz, allow_upsampling=True)

        def beats_by(method: str) -> tuple[WindowBeats, float]:
            peak_s = detect_r_peaks(
                filtered, fs_hz, method=method, lowpass_hz=b.detector_lowpass_hz
            )
            peak_s = peak_s / fs_hz
            rr_s = rr_intervals_s(peak_s)
            segments, kept = cut_segments(
                at_segment_rate, b.segment_fs_hz, peak_s, before_s=b.before_s, after_s=b.after_s
            )
            beats = beats_per_window(
                peak_s[kept],
                rr_s[kept],
                segments,
                np.arange(n_windows) * hop_s,
                settings.windows.window_s,
                min_beats=b.min_beats,
                rr_min_s=b.rr_min_s,
                rr_max_s=b.rr_max_s,
            )
            alike = float(np.median(template_correlation(segments))) if len(segments) else 0.0
            return beats, alike

        beats, alike = beats_by(b.method)
        if b.fallback_method is None or alike >= b.min_template_correlation:
            return beats, None
        # Motion can make one detector lock onto artefacts where another still finds the QRS.
        other, other_alike = beats_by(b.fallback_method)
        if other_alike <= alike:
            return beats, None
        return other, (
            f"R peaks by the fallback detector {b.fallback_method!r} (median beat correlation "
            f"{other_alike:.2f}; {b.method!r} found peaks that do not resemble each other: "
            f"{alike:.2f})"
        )


def _concat_beats(parts: Sequence[WindowBeats]) -> WindowBeats:
    return WindowBeats(
        [p for part in parts for p in part.peak_s],
        [r for part in parts for r in part.rr_s],
        [s for part in parts for s in part.segments],
        np.concatenate([part.flags for part in parts]) if parts else np.empty(0, object),
    )


def _select_beats(beats: WindowBeats, keep: np.ndarray) -> WindowBeats:
    rows = np.flatnonzero(keep)
    return WindowBeats(
        [beats.peak_s[i] for i in rows],
        [beats.rr_s[i] for i in rows],
        [beats.segments[i] for i in rows],
        beats.flags[rows],
    )


def check_beats(beats: WindowBeats, settings: IngestSettings) -> list[str]:
    """Refuse a recording without heartbeats; count the flagged windows of the others.

    Raises
    ------
    NoBeatsError
        No beat at all, beats that do not resemble each other (peaks found in noise), or more
        flagged windows than ``[ingest.beats] max_flagged_fraction``.
    """
    b = settings.beats
    detector = f"R-peak detector {b.method!r} on the filtered ECG" + (
        f", then {b.fallback_method!r}" if b.fallback_method else ""
    )
    n_beats = sum(len(p) for p in beats.peak_s)
    if n_beats == 0:
        raise NoBeatsError(
            None,
            f"no heartbeat found in {len(beats)} window(s) ({detector}): a lead off, or a "
            "channel that holds no ECG",
        )
    similarity = float(np.median(template_correlation(np.concatenate(beats.segments))))
    if similarity < b.min_template_correlation:
        raise NoBeatsError(
            None,
            f"no heartbeat: the {n_beats} peaks found ({detector}) do not resemble each other "
            f"(median correlation {similarity:.2f} with their median beat, below "
            f"{b.min_template_correlation:g}): noise, or a channel that holds no ECG",
        )
    counts = {
        flag: int((beats.flags == flag).sum()) for flag in (FLAG_TOO_FEW_BEATS, FLAG_IMPLAUSIBLE_RR)
    }
    n_flagged = sum(counts.values())
    if n_flagged > b.max_flagged_fraction * len(beats):
        raise NoBeatsError(
            None,
            f"no steady heartbeat: {n_flagged} of {len(beats)} windows have fewer than "
            f"{b.min_beats} beats or an RR interval outside {b.rr_min_s:g}-{b.rr_max_s:g} s "
            f"(more than {b.max_flagged_fraction:.0%}; {detector})",
        )
    why = {
        FLAG_TOO_FEW_BEATS: f"fewer than {b.min_beats} beats",
        FLAG_IMPLAUSIBLE_RR: f"an RR interval outside {b.rr_min_s:g}-{b.rr_max_s:g} s",
    }
    return [
        f"{n} window(s) flagged {flag}: {why[flag]} (kept, flagged in the store)"
        for flag, n in counts.items()
        if n
    ]
