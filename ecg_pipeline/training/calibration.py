"""The identity threshold: below it, a recording is called "unknown" rather than a subject.

How it is calibrated
--------------------
After training, the best epoch's model scores the validation part, which holds known subjects
only. The windows of each validation recording are averaged into one mean softmax; the
recording's *confidence* is its largest mean probability (:mod:`.aggregate`). With ``n`` such
recordings sorted by confidence and ``k = floor(known_reject_rate * n)``, the threshold is the
``(k + 1)``-th lowest confidence (0-based index ``k``). Exactly ``k`` validation recordings
lie strictly below it (fewer when confidences tie), so the share of known subjects' validation
recordings called "unknown" is ``k / n``: never above ``known_reject_rate``, and equal to it
when ``known_reject_rate * n`` is a whole number.

Limits, stated where the threshold is stored (``warning``) and in the README
--------------------------------------------------------------------------------------
* A validation "recording" is the validation block of a recording (``time_block``: about 15 %
  of its windows), so its mean is over fewer windows than a whole new recording's. Averages
  over more windows vary less, so the confidences of new recordings of known subjects spread
  less than the calibration assumed.
* Validation windows come from the same sessions as training windows and chose the best epoch,
  so they are easier than a known subject's recording from another day: on such recordings
  more than ``known_reject_rate`` may be called "unknown".
* Only known subjects are in the validation part: the threshold bounds how often a known
  subject is refused, and says nothing about how often an unknown person is accepted as
  someone (no unknown people were seen).
* With fewer than ``1 / known_reject_rate`` validation recordings (20 for 5 %), ``k`` is 0:
  the threshold is the lowest validation confidence and no validation recording is refused.
* With no validation windows at all (``val_fraction`` too small for the recordings), there is
  nothing to calibrate on: the threshold is 0, so every recording is called a known subject,
  and the ``warning`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ecg_pipeline.training.aggregate import mean_probabilities, softmax

__all__ = [
    "IdentityThreshold",
    "calibrate_identity_threshold",
    "recording_confidences",
    "threshold_from_validation",
]

METHOD = "recording_quantile"
NO_VALIDATION = "no_validation"


@dataclass(frozen=True)
class IdentityThreshold:
    """A calibrated identity threshold and what it was calibrated on.

    Attributes
    ----------
    value : float
        Confidence below which a recording is "unknown" (0: never).
    known_reject_rate : float
        The share of known subjects' recordings it was asked to refuse.
    validation_reject_rate : float
        The share of validation recordings strictly below ``value`` (``k / n``).
    n_recordings : int
        Validation recordings it was calibrated on.
    n_windows : int
        Validation windows in them.
    method : str
        ``"recording_quantile"``, or ``"no_validation"`` when there was nothing to calibrate on.
    warning : str
        What limits this threshold; empty when nothing does beyond the documented limits.
    """

    value: float
    known_reject_rate: float
    validation_reject_rate: float
    n_recordings: int
    n_windows: int
    method: str
    warning: str = ""

    def as_dict(self) -> dict:
        """Plain JSON values, for ``model.json``, ``results.json`` and the model's metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping | None) -> IdentityThreshold | None:
        """The threshold stored by :meth:`as_dict`; None for None (an older checkpoint)."""
        if not values:
            return None
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in fields})


def recording_confidences(
    probabilities: np.ndarray, groups: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each recording's identity confidence: the largest class probability of its mean softmax.

    Returns
    -------
    keys : np.ndarray
        The recordings, in order of first appearance.
    confidences : np.ndarray
        (n_recordings,) float64.
    """
    keys, means = mean_probabilities(probabilities, groups)
    return keys, means.max(axis=1) if len(means) else np.empty(0)


def calibrate_identity_threshold(
    confidences: Sequence[float] | np.ndarray, known_reject_rate: float, *, n_windows: int = 0
) -> IdentityThreshold:
    """The ``(k + 1)``-th lowest confidence, ``k = floor(known_reject_rate * n)``.

    Parameters
    ----------
    confidences : sequence of float
        One per validation recording (known subjects), in [0, 1].
    known_reject_rate : float
        In [0, 1): the share of known subjects' recordings to call "unknown".
    n_windows : int
        Validation windows behind the confidences (recorded, not used).

    Returns
    -------
    IdentityThreshold
        ``value`` 0 and method ``"no_validation"`` when ``confidences`` is empty.

    Raises
    ------
    ValueError
        A rate outside [0, 1), or a confidence that is not a finite number in [0, 1].
    """
    if not 0.0 <= known_reject_rate < 1.0:
        raise ValueError(f"known_reject_rate must be in [0, 1), got {known_reject_rate}")
    c = np.sort(np.asarray(confidences, dtype=np.float64).ravel())
    if not np.all(np.isfinite(c)) or (len(c) and (c[0] < 0 or c[-1] > 1)):
        raise ValueError("confidences must be finite probabilities in [0, 1]")
    n = len(c)
    if n == 0:
        return IdentityThreshold(
            0.0,
            known_reject_rate,
            0.0,
            0,
            int(n_windows),
            NO_VALIDATION,
            "no validation recordings to calibrate on: threshold 0, every recording is "
            "called a known subject",
        )
    # The epsilon absorbs float noise such as 0.57 * 100 = 56.99999999999999.
    k = math.floor(known_reject_rate * n + 1e-9)
    warning = ""
    if k == 0 and known_reject_rate > 0:
        warning = (
            f"only {n} validation recording(s): a {known_reject_rate:g} reject rate needs at "
            f"least {math.ceil(1 / known_reject_rate - 1e-9)}; the threshold is the lowest "
            "validation confidence, so no validation recording is refused"
        )
    return IdentityThreshold(
        float(c[k]), known_reject_rate, k / n, n, int(n_windows), METHOD, warning
    )


def threshold_from_validation(
    identity_logits: np.ndarray, recording_ids: Sequence | np.ndarray, known_reject_rate: float
) -> IdentityThreshold:
    """Calibrate on the validation part's identity logits, grouped by recording.

    Parameters
    ----------
    identity_logits : np.ndarray
        (n_val_windows, n_subjects); may have no rows.
    recording_ids : sequence
        (n_val_windows,) the recording of each validation window.
    known_reject_rate : float
        ``[predict] known_reject_rate``.
    """
    logits = np.asarray(identity_logits, dtype=np.float64)
    if len(logits) == 0:
        return calibrate_identity_threshold([], known_reject_rate)
    _, confidences = recording_confidences(softmax(logits), recording_ids)
    return calibrate_identity_threshold(confidences, known_reject_rate, n_windows=len(logits))
