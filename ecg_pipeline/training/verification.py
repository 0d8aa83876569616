"""Verifying people by their embeddings: scores, error rates and the "unknown" threshold.

Pure numpy, no model: the callers turn windows into backbone features
(:meth:`ecg_pipeline.training.model_handle.Model.embeddings`).

* A window's embedding is its backbone feature (the shared representation before the heads),
  L2-normalised; a recording's is the mean of its windows' embeddings, normalised again
  (:func:`recording_embeddings`); a person's template is the mean of their enrolment
  recordings' embeddings, normalised (:func:`person_templates`).
* A score is the cosine similarity of a recording and a template (:func:`cosine_scores`), in
  [-1, 1]: a claim (1:1) is accepted when its score reaches the threshold; an open-set answer
  (1:N, what ``predict`` gives) is the best-scoring template, or "unknown" below the threshold.
* Error rates at a threshold ``t``: FAR, the share of impostor scores ``>= t``; FRR, the share
  of genuine scores ``< t`` (:func:`error_rates`). The equal error rate, FAR at a fixed FRR and
  FRR at a fixed FAR are read off every distinct threshold (:func:`roc_points`).
* The threshold is calibrated on strangers only (people left out of training, never the test
  strangers): the lowest value at which at most ``stranger_accept_rate`` of their recordings
  match any template (:func:`calibrate_stranger_threshold`).

Examples
--------
>>> genuine, impostor = np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.3, 0.2, 0.1])
>>> error_rates(genuine, impostor, 0.45)
(0.25, 0.3333333333333333)
>>> round(equal_error_rate(genuine, impostor)[0], 4)
0.2917
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ecg_pipeline.training.aggregate import mean_probabilities

__all__ = [
    "StrangerThreshold",
    "calibrate_stranger_threshold",
    "cosine_scores",
    "equal_error_rate",
    "error_rates",
    "far_at_frr",
    "frr_at_far",
    "l2_normalise",
    "open_set_rates",
    "person_templates",
    "recording_embeddings",
    "roc_points",
]


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit length along ``axis`` (a zero vector stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _group_means(vectors: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    # The per-recording mean that prediction averages probabilities with, made unit length.
    keys, means = mean_probabilities(vectors, groups)
    return keys, l2_normalise(means)


def recording_embeddings(
    features: np.ndarray, recordings: Sequence
) -> tuple[np.ndarray, np.ndarray]:
    """One unit vector per recording: the mean of its windows' unit-length features.

    Parameters
    ----------
    features : np.ndarray
        (n_windows, d) backbone features.
    recordings : sequence
        (n_windows,) the recording of each window.

    Returns
    -------
    keys : np.ndarray
        The recordings, in order of first appearance.
    embeddings : np.ndarray
        (n_recordings, d) float64, unit length.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(recordings):
        raise ValueError(
            f"features must be (n_windows, d) with one recording each, got {features.shape} "
            f"for {len(recordings)} recordings"
        )
    return _group_means(l2_normalise(features), recordings)


def person_templates(embeddings: np.ndarray, people: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """One template per person: the mean of their recordings' embeddings, unit length.

    Returns
    -------
    names : np.ndarray
        The people, in order of first appearance.
    templates : np.ndarray
        (n_people, d) float64.
    """
    return _group_means(l2_normalise(embeddings), people)


def cosine_scores(probes: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(n_probes, n_templates) cosine similarities of unit-length rows."""
    return l2_normalise(np.atleast_2d(probes)) @ l2_normalise(np.atleast_2d(templates)).T


def _scores(values) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    return s


def error_rates(genuine, impostor, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at ``threshold``: impostor scores ``>= threshold``, genuine ones below it.

    An empty side gives NaN for its rate.
    """
    g, i = _scores(genuine), _scores(impostor)
    far = float(np.mean(i >= threshold)) if len(i) else math.nan
    frr = float(np.mean(g < threshold)) if len(g) else math.nan
    return far, frr


def roc_points(genuine, impostor) -> dict[str, np.ndarray]:
    """FAR and FRR at every distinct score used as the threshold, and one above them all.

    Returns
    -------
    dict
        ``threshold`` (ascending), ``far`` (falling from 1 to 0) and ``frr`` (rising from 0 to
        1), each an array of the same length.

    Raises
    ------
    ValueError
        No genuine or no impostor scores.
    """
    g, i = _scores(genuine), _scores(impostor)
    if not len(g) or not len(i):
        raise ValueError(
            f"an error-rate curve needs genuine and impostor scores, got {len(g)} and {len(i)}"
        )
    thresholds = np.unique(np.concatenate([g, i]))
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    g_sorted, i_sorted = np.sort(g), np.sort(i)
    frr = np.searchsorted(g_sorted, thresholds, side="left") / len(g)
    far = 1.0 - np.searchsorted(i_sorted, thresholds, side="left") / len(i)
    return {"threshold": thresholds, "far": far, "frr": frr}


def equal_error_rate(genuine, impostor) -> tuple[float, float]:
    """(EER, threshold): the threshold where FAR and FRR are closest, and their mean there.

    Among thresholds equally close, the lowest is taken.
    """
    roc = roc_points(genuine, impostor)
    k = int(np.argmin(np.abs(roc["far"] - roc["frr"])))
    return float((roc["far"][k] + roc["frr"][k]) / 2), float(roc["threshold"][k])


def far_at_frr(genuine, impostor, frr: float) -> tuple[float, float]:
    """(FAR, threshold): the lowest FAR among thresholds that refuse at most ``frr`` genuine."""
    roc = roc_points(genuine, impostor)
    ok = np.flatnonzero(roc["frr"] <= frr + 1e-12)
    k = ok[np.argmin(roc["far"][ok])]  # FRR 0 is always reachable (the lowest threshold)
    return float(roc["far"][k]), float(roc["threshold"][k])


def frr_at_far(genuine, impostor, far: float) -> tuple[float, float]:
    """(FRR, threshold): the lowest FRR among thresholds that accept at most ``far`` impostors."""
    roc = roc_points(genuine, impostor)
    ok = np.flatnonzero(roc["far"] <= far + 1e-12)
    k = ok[np.argmin(roc["frr"][ok])]  # FAR 0 is always reachable (above every score)
    return float(roc["frr"][k]), float(roc["threshold"][k])


@dataclass(frozen=True)
class StrangerThreshold:
    """A verification threshold and what it was calibrated on.

    Attributes
    ----------
    value : float
        Cosine similarity below which a recording is "unknown".
    stranger_accept_rate : float
        The share of strangers' recordings it was asked to accept at most.
    calibration_accept_rate : float
        The share of the calibration strangers' recordings at or above ``value``.
    n_recordings, n_people : int
        Calibration strangers' recordings and people.
    warning : str
        What limits it (too few recordings for the rate), empty otherwise.
    """

    value: float
    stranger_accept_rate: float
    calibration_accept_rate: float
    n_recordings: int
    n_people: int
    warning: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values) -> StrangerThreshold | None:
        if not values:
            return None
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def calibrate_stranger_threshold(
    best_scores, stranger_accept_rate: float, *, n_people: int = 0
) -> StrangerThreshold:
    """The lowest threshold at which at most ``stranger_accept_rate`` of strangers match.

    Parameters
    ----------
    best_scores : sequence of float
        Each calibration stranger recording's best score over the enrolled templates.
    stranger_accept_rate : float
        In [0, 1).
    n_people : int
        Strangers behind the recordings (recorded only).

    Returns
    -------
    StrangerThreshold
        With ``k = floor(rate * n)`` and the scores sorted from the highest, ``value`` is the
        next float above the ``(k + 1)``-th highest score: at most ``k`` scores reach it (fewer
        when scores tie).

    Raises
    ------
    ValueError
        No scores, or a rate outside [0, 1).
    """
    if not 0.0 <= stranger_accept_rate < 1.0:
        raise ValueError(f"stranger_accept_rate must be in [0, 1), got {stranger_accept_rate}")
    s = np.sort(_scores(best_scores))[::-1]
    n = len(s)
    if n == 0:
        raise ValueError(
            "no stranger recordings to calibrate on: train with [training] holdout_people > 0"
        )
    k = math.floor(stranger_accept_rate * n + 1e-9)
    value = float(np.nextafter(s[k], np.inf))
    warning = ""
    if k == 0 and stranger_accept_rate > 0:
        warning = (
            f"only {n} stranger recording(s): a {stranger_accept_rate:g} accept rate needs "
            f"{math.ceil(1 / stranger_accept_rate - 1e-9)}; the threshold is above every one"
        )
    accepted = float(np.mean(s >= value))
    return StrangerThreshold(value, stranger_accept_rate, accepted, n, int(n_people), warning)


def open_set_rates(
    scores: np.ndarray, template_people: Sequence, probe_people: Sequence, threshold: float
) -> dict[str, float]:
    """What an open-set answer (best template, or "unknown" below ``threshold``) gets right.

    Parameters
    ----------
    scores : np.ndarray
        (n_probes, n_templates) from :func:`cosine_scores`.
    template_people : sequence
        The person of each template (column).
    probe_people : sequence
        The person of each probe (row); a person with no template is a stranger.

    Returns
    -------
    dict
        ``stranger_accepted``: share of strangers' probes answered with someone;
        ``known_rejected``: share of enrolled people's probes answered "unknown";
        ``known_misidentified``: share answered with someone else; ``known_correct``: share
        answered with themselves; ``n_strangers``, ``n_known``: probes of each kind. A rate
        with no probes is NaN.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    names = np.asarray([str(p) for p in template_people], dtype=object)
    people = np.asarray([str(p) for p in probe_people], dtype=object)
    best = scores.argmax(axis=1)
    accepted = scores[np.arange(len(scores)), best] >= threshold
    known = np.isin(people, names)
    right = names[best] == people

    def share(mask, of):
        return float(np.mean(mask[of])) if of.any() else math.nan

    return {
        "stranger_accepted": share(accepted, ~known),
        "known_rejected": share(~accepted, known),
        "known_misidentified": share(accepted & ~right, known),
        "known_correct": share(accepted & right, known),
        "n_strangers": int((~known).sum()),
        "n_known": int(known.sum()),
    }
