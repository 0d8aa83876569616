"""From per-window logits to one answer per recording: mean softmax, argmax, "unknown".

A recording's answer for a task is the class with the largest mean probability over its
windows, and its confidence is that mean probability. Averaging probabilities (not logits or
votes) keeps one confidently wrong window from outweighing many moderately right ones.
Pure numpy: the same functions score the validation part at training time and new recordings
at prediction time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["UNKNOWN", "decide", "mean_probabilities", "softmax"]

# The identity given to a recording whose confidence is below the calibrated threshold.
UNKNOWN = "unknown"


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from logits, shifted by the maximum so large logits cannot overflow.

    Parameters
    ----------
    logits : np.ndarray
        (n_windows, n_classes), any float dtype.
    axis : int
        The class axis.

    Returns
    -------
    np.ndarray
        float64, the shape of ``logits``, summing to 1 along ``axis``.
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def mean_probabilities(
    probabilities: np.ndarray, groups: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean class probabilities of each group of windows (a group is a recording).

    Parameters
    ----------
    probabilities : np.ndarray
        (n_windows, n_classes) softmax outputs.
    groups : sequence
        (n_windows,) the recording of each window.

    Returns
    -------
    keys : np.ndarray
        (n_groups,) the groups, in order of first appearance.
    means : np.ndarray
        (n_groups, n_classes) float64.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    groups = np.asarray(groups)
    if p.ndim != 2 or len(groups) != len(p):
        raise ValueError(
            f"expected (n_windows, n_classes) probabilities and one group per window, "
            f"got {p.shape} and {groups.shape}"
        )
    keys, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    sums = np.zeros((len(keys), p.shape[1]))
    np.add.at(sums, inverse, p)
    means = sums / np.bincount(inverse, minlength=len(keys))[:, None]
    order = np.argsort(first, kind="stable")
    return keys[order], means[order]


def decide(
    means: np.ndarray, classes: Sequence[str], threshold: float | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Each recording's class, best class and confidence; "unknown" below ``threshold``.

    Parameters
    ----------
    means : np.ndarray
        (n_recordings, n_classes) mean probabilities (:func:`mean_probabilities`).
    classes : sequence of str
        Class names in the model's output order.
    threshold : float, optional
        A recording whose confidence is strictly below it is :data:`UNKNOWN`; None: never
        (activity, or a model logged before thresholds were calibrated).

    Returns
    -------
    labels : list of str
        The class, or :data:`UNKNOWN`.
    best : list of str
        The class with the largest mean probability, whatever the threshold.
    confidence : np.ndarray
        (n_recordings,) that largest mean probability.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] != len(classes):
        raise ValueError(f"{means.shape} probabilities for {len(classes)} classes")
    index = means.argmax(axis=1)
    confidence = means[np.arange(len(means)), index]
    best = [str(classes[i]) for i in index]
    if threshold is None:
        return list(best), best, confidence
    labels = [b if c >= threshold else UNKNOWN for b, c in zip(best, confidence, strict=True)]
    return labels, best, confidence
