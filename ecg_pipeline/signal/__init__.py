"""Pure signal functions over numpy arrays: filters, resampling, windows, quality.

Every function takes the sampling rate explicitly (``fs_hz``) and imports neither torch, prefect
nor mlflow.
"""

from ecg_pipeline.signal.filters import design_ecg_filter, filter_ecg, zero_phase_filter
from ecg_pipeline.signal.quality import flat_window_mask
from ecg_pipeline.signal.resample import resample_to
from ecg_pipeline.signal.windows import minmax_normalise, sliding_windows, window_count

__all__ = [
    "design_ecg_filter",
    "filter_ecg",
    "zero_phase_filter",
    "resample_to",
    "sliding_windows",
    "window_count",
    "minmax_normalise",
    "flat_window_mask",
]
