"""What a model reads, built from stored or freshly cut windows: one array per window.

Window models read (N, 1, T) samples; beat models (ECG-SL) read (N, K, L + 2) beat sequences
(segments, then the RR interval and a mask column; see ``ecg_pipeline.models.ecg_sl``). Training
(``training/data.py``) and prediction (``ecg_pipeline.predict``) both build their input here, so
the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ecg_pipeline.signal.beats import normalise_beats, pad_beats
from ecg_pipeline.signal.windows import normalise_windows


def window_input(
    samples: np.ndarray, normalisation: str, groups: np.ndarray | None = None
) -> np.ndarray:
    """(N, T) stored windows -> (N, 1, T) float32, scaled as ``[store] normalisation`` says."""
    return normalise_windows(samples, normalisation, groups)[:, None, :]


def beat_input(
    segments: Sequence[np.ndarray],
    rr_s: Sequence[np.ndarray],
    normalisation: str,
    max_beats: int,
    segment_samples: int,
) -> np.ndarray:
    """Per-window beat segments and RR intervals -> (N, K, L + 2) float32.

    Each window's beats are scaled together (:func:`~ecg_pipeline.signal.beats.normalise_beats`)
    and padded or cut to ``max_beats`` (K); the last two columns are the RR interval in seconds
    (0 where unknown) and 1 for a real beat, 0 for padding.
    """
    beats, rr, mask = pad_beats(list(segments), list(rr_s), max_beats, segment_samples)
    beats = normalise_beats(beats, mask, normalisation)
    return np.concatenate(
        [beats, rr[..., None], mask[..., None].astype(np.float32)], axis=-1
    ).astype(np.float32)
