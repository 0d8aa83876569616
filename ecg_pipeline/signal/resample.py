"""Anti-aliased rational resampling to the target rate."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

# The polyphase filter has about 20 x max(up, down) taps: every integer rate up to 10 kHz (and
# BIOPAC's fractional ones, 1000 / divider) stays under this; a rate like 968.1087 Hz (a
# corrupt header) would need a 10^8-tap filter (gigabytes) and is refused instead.
MAX_POLYPHASE_FACTOR = 10_000


def resampling_ratio(fs_hz: float, target_fs_hz: float, max_denominator: int = 10_000) -> Fraction:
    """The ratio ``target_fs_hz / fs_hz`` as a small fraction ``up / down``."""
    return Fraction(target_fs_hz).limit_denominator(max_denominator) / Fraction(
        fs_hz
    ).limit_denominator(max_denominator)


def resampling_problem(fs_hz: float, target_fs_hz: float) -> str | None:
    """Why ``fs_hz`` cannot be resampled to ``target_fs_hz`` (None: it can)."""
    if not (np.isfinite(fs_hz) and fs_hz > 0):
        return f"native rate {fs_hz!r} Hz is not a positive number"
    ratio = resampling_ratio(fs_hz, target_fs_hz)
    if max(ratio.numerator, ratio.denominator) > MAX_POLYPHASE_FACTOR:
        return (
            f"native rate {fs_hz:.10g} Hz has no resampling ratio to {target_fs_hz:g} Hz with "
            f"polyphase factors up to {MAX_POLYPHASE_FACTOR:,} (it needs {ratio.numerator} / "
            f"{ratio.denominator}): not a rate a recorder uses"
        )
    return None


def resample_to(
    x: np.ndarray, fs_hz: float, target_fs_hz: float, *, allow_upsampling: bool = False
) -> np.ndarray:
    """Resample ``x`` from ``fs_hz`` down to ``target_fs_hz`` with a polyphase FIR.

    The FIR (Kaiser window, scipy's default) low-passes below the new Nyquist frequency before
    decimating, so components above it are removed instead of folding back.

    Parameters
    ----------
    x : np.ndarray
        1-D signal at ``fs_hz``.
    fs_hz : float
        Native rate.
    target_fs_hz : float
        New rate; must not exceed ``fs_hz``: upsampling invents no information, so it is refused.
    allow_upsampling : bool
        Interpolate (band-limited) when ``target_fs_hz > fs_hz`` instead of refusing: for beat
        segments, which must all have one length whatever a recording's rate.

    Returns
    -------
    np.ndarray
        float64 signal of ``ceil(len(x) * target_fs_hz / fs_hz)`` samples.

    Raises
    ------
    ValueError
        If ``target_fs_hz > fs_hz``, or the rates need polyphase factors above
        :data:`MAX_POLYPHASE_FACTOR` (see :func:`resampling_problem`).
    """
    if target_fs_hz > fs_hz and not allow_upsampling:
        raise ValueError(
            f"native rate {fs_hz:g} Hz is below the target rate {target_fs_hz:g} Hz; "
            "upsampling would invent signal"
        )
    problem = resampling_problem(fs_hz, target_fs_hz)
    if problem:
        raise ValueError(problem)
    ratio = resampling_ratio(fs_hz, target_fs_hz)
    if ratio == 1:
        return np.asarray(x, dtype=np.float64)
    return sps.resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator)
