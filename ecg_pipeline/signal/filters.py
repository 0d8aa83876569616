"""Baseline and mains filters, designed for the native rate and applied with zero phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import signal as sps


@dataclass(frozen=True)
class FilterDesign:
    """Second-order sections of the whole cascade, and why any stage was left out.

    Attributes
    ----------
    sos : np.ndarray
        Shape (n_sections, 6); high-pass sections then notch sections.
    fs_hz : float
        The rate the filter was designed for.
    settle_samples : int
        Edge padding long enough for the slowest stage (the high-pass) to settle.
    warnings : list of str
        Stages skipped, e.g. a notch at or above the Nyquist frequency.
    """

    sos: np.ndarray
    fs_hz: float
    settle_samples: int
    warnings: list[str] = field(default_factory=list)


def design_ecg_filter(
    fs_hz: float,
    *,
    highpass_hz: float = 0.5,
    highpass_order: int = 2,
    mains_hz: float | None = 50.0,
    notch_quality: float = 30.0,
) -> FilterDesign:
    """Design a Butterworth high-pass followed by a mains notch, as one SOS cascade.

    Parameters
    ----------
    fs_hz : float
        Native sampling rate of the signal to be filtered.
    highpass_hz : float
        High-pass cutoff; 0.5 Hz removes baseline wander but keeps the ST segment.
    highpass_order : int
        Butterworth order per pass. Applied forwards and backwards, the magnitude is squared:
        order 2 gives -6 dB at the cutoff and 80 dB/decade below it.
    mains_hz : float or None
        Mains frequency to notch out, or ``None`` for no notch.
    notch_quality : float
        Quality factor of the notch (centre frequency over -3 dB bandwidth).

    Returns
    -------
    FilterDesign
        The cascade; ``warnings`` says when the notch was skipped because ``mains_hz`` is at or
        above the Nyquist frequency (it would then alias rather than remove anything). Designs are
        cached per argument set: a batch at one rate designs its filter once.
    """
    return _design(
        float(fs_hz),
        float(highpass_hz),
        int(highpass_order),
        None if mains_hz is None else float(mains_hz),
        float(notch_quality),
    )


@lru_cache(maxsize=64)
def _design(fs_hz, highpass_hz, highpass_order, mains_hz, notch_quality) -> FilterDesign:
    nyquist_hz = fs_hz / 2
    if not 0 < highpass_hz < nyquist_hz:
        raise ValueError(f"high-pass cutoff {highpass_hz} Hz must lie in (0, {nyquist_hz}) Hz")
    sections = [sps.butter(highpass_order, highpass_hz, btype="highpass", fs=fs_hz, output="sos")]
    warnings: list[str] = []
    if mains_hz is not None:
        if mains_hz >= nyquist_hz:
            warnings.append(
                f"notch at {mains_hz:g} Hz skipped: not below the Nyquist frequency "
                f"({nyquist_hz:g} Hz) of the native rate {fs_hz:g} Hz"
            )
        else:
            b, a = sps.iirnotch(mains_hz, notch_quality, fs=fs_hz)
            sections.append(sps.tf2sos(b, a))
    # One period of the cutoff is enough for a 2nd-order high-pass to settle at the edges.
    settle_samples = int(np.ceil(fs_hz / highpass_hz))
    # Shared by every caller of the cache: treat as read-only (scipy's sosfilt needs a writable
    # buffer, so the flag itself cannot be set).
    return FilterDesign(np.vstack(sections), fs_hz, settle_samples, warnings)


# Block length for the in-place passes: long enough to amortise the call, short enough that
# sosfilt's output buffer stays small.
_BLOCK_SAMPLES = 1 << 13


def zero_phase_filter(x: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Apply a designed cascade forwards and backwards (no phase shift, squared magnitude).

    The result equals ``scipy.signal.sosfiltfilt(design.sos, x, padtype="odd",
    padlen=design.settle_samples)``, but both passes run in place over one padded buffer, block
    by block with the filter state carried across, so memory stays near one copy of the signal
    instead of three.

    Parameters
    ----------
    x : np.ndarray
        1-D signal sampled at ``design.fs_hz``.
    design : FilterDesign
        From :func:`design_ecg_filter`.

    Returns
    -------
    np.ndarray
        Filtered float64 signal of the same length (a view into the padded buffer).
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {x.shape}")
    n = len(x)
    pad = max(min(design.settle_samples, n - 1), 0)
    buf = np.empty(n + 2 * pad, dtype=np.float64)
    buf[pad : pad + n] = x
    if pad:  # odd extension, as sosfiltfilt's padtype="odd"
        buf[:pad] = 2 * x[0] - x[pad:0:-1]
        buf[pad + n :] = 2 * x[-1] - x[-2 : -pad - 2 : -1]
    zi = sps.sosfilt_zi(design.sos)
    _sosfilt_in_place(design.sos, buf, zi * buf[0])
    backwards = buf[::-1]
    _sosfilt_in_place(design.sos, backwards, zi * backwards[0])
    return buf[pad : pad + n]


def _sosfilt_in_place(sos: np.ndarray, buf: np.ndarray, zi: np.ndarray) -> None:
    for start in range(0, len(buf), _BLOCK_SAMPLES):
        block = buf[start : start + _BLOCK_SAMPLES]
        block[...], zi = sps.sosfilt(sos, block, zi=zi)


def filter_ecg(
    x: np.ndarray,
    fs_hz: float,
    *,
    highpass_hz: float = 0.5,
    highpass_order: int = 2,
    mains_hz: float | None = 50.0,
    notch_quality: float = 30.0,
) -> tuple[np.ndarray, list[str]]:
    """High-pass and notch ``x`` at its native rate with zero phase.

    Returns
    -------
    filtered : np.ndarray
        float64, same length as ``x``.
    warnings : list of str
        Stages skipped (see :func:`design_ecg_filter`).
    """
    design = design_ecg_filter(
        fs_hz,
        highpass_hz=highpass_hz,
        highpass_order=highpass_order,
        mains_hz=mains_hz,
        notch_quality=notch_quality,
    )
    return zero_phase_filter(x, design), list(design.warnings)
