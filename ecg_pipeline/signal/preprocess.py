"""The whole per-recording chain: filter at the native rate, resample, cut, drop flat windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ecg_pipeline.config import IngestSettings
from ecg_pipeline.errors import SamplingRateError, SignalQualityError, TooShortError
from ecg_pipeline.io.recording import Segment
from ecg_pipeline.signal.filters import design_ecg_filter, zero_phase_filter
from ecg_pipeline.signal.quality import flat_raw_windows
from ecg_pipeline.signal.resample import resample_to
from ecg_pipeline.signal.windows import sliding_windows


@dataclass(frozen=True)
class Windows:
    """Filtered, resampled windows of one recording, in physical units.

    Attributes
    ----------
    samples : np.ndarray
        (n_windows, window_samples) float32.
    start_s : np.ndarray
        (n_windows,) start of each window from the start of the recording.
    window_index : np.ndarray
        (n_windows,) position among all whole windows of the recording, flat ones included, so a
        dropped window leaves a gap in the numbering.
    fs_hz : float
        The target rate.
    n_flat_dropped : int
        Windows dropped as flat (disconnected lead).
    warnings : list of str
        Things a person should know (a notch skipped, a segment too short to use).
    """

    samples: np.ndarray
    start_s: np.ndarray
    window_index: np.ndarray
    fs_hz: float
    n_flat_dropped: int = 0
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


def segments_to_windows(segments: Sequence[Segment], settings: IngestSettings) -> Windows:
    """Turn the gap-free segments of one recording into stored windows.

    Each segment is filtered at its native rate (so the mains notch sits below that rate's
    Nyquist frequency), resampled to the target rate with an anti-aliasing filter, and cut into
    whole windows; no window straddles two segments.

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
    chunks, starts, flat, warnings = [], [], [], []
    designs: dict[float, object] = {}
    for seg in segments:
        if seg.fs_hz < target_fs:
            raise SamplingRateError(
                None,
                f"native rate {seg.fs_hz:g} Hz is below the target rate {target_fs:g} Hz "
                "(upsampling would invent signal)",
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
        resampled = resample_to(
            zero_phase_filter(seg.samples, designs[seg.fs_hz]), seg.fs_hz, target_fs
        )
        windows = sliding_windows(resampled, window_n, hop_n)
        hop_s = hop_n / target_fs
        flat.append(
            flat_raw_windows(
                seg.samples,
                seg.fs_hz,
                win.window_s,
                hop_s,
                len(windows),
                settings.quality.min_window_std,
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

    flat = np.concatenate(flat)
    n_flat = int(flat.sum())
    if n_flat and n_flat / len(samples) > settings.quality.max_flat_fraction:
        raise SignalQualityError(
            None,
            f"flat or disconnected lead: {n_flat} of {len(samples)} windows are flat (standard "
            f"deviation below {settings.quality.min_window_std:g} channel units) or railed (more "
            f"than {settings.quality.max_extreme_fraction:.0%} of samples at the window's extremes)",
        )
    if n_flat:
        warnings.append(f"{n_flat} flat window(s) dropped")
        keep = ~flat
        samples, start_s, index = samples[keep], start_s[keep], index[keep]
    if not np.isfinite(samples).all():
        raise SignalQualityError(None, "non-finite samples after filtering")
    return Windows(samples, start_s, index, target_fs, n_flat, warnings)
