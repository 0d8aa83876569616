"""Classification metrics for the identity and activity tasks, in numpy.

Labels are integer class codes ``0 .. n_classes - 1`` (the position of the label in the task's
label list); :func:`classification_report` also accepts label names when it is given them.

Conventions, chosen to match scikit-learn's ``precision_recall_fscore_support(...,
labels=range(n_classes), zero_division=0)`` without depending on it:

* Precision of a class never predicted, recall of a class absent from ``y_true`` and F1 of a
  class with neither are **0**, not NaN. The macro average is over the classes that occur in
  ``y_true`` or in ``y_pred`` (scikit-learn's default label set): a class the model predicts
  wrongly, or never predicts although it is there, pulls it down, but a class absent from both
  (a person not in this test fold, e.g. ECG-ID's later-date hold-out) does not.
* Weighted averages weight each class by its support (its count in ``y_true``). Weighted
  recall is therefore ``sum_k (n_k / N) * (tp_k / n_k) = sum_k tp_k / N``, the accuracy. The
  DT4ECG paper reports recall equal to accuracy, which says its recall is the weighted one.
* F1 per class is ``2 tp / (2 tp + fp + fn)``, which equals ``2 P R / (P + R)`` wherever that
  is defined and is 0 where ``tp == 0``. Macro F1 is the mean of per-class F1, not the F1 of
  macro precision and macro recall.

:func:`recording_accuracy` scores whole recordings by the rule ``predict`` answers with (the
class of highest mean probability over a recording's windows), or by the majority vote.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "confusion_matrix",
    "classification_report",
    "report_from_confusion",
    "recording_predictions",
    "recording_accuracy",
    "mean_and_sd",
    "SUMMARY_METRICS",
]


# --------------------------------------------------------------------------------------------
# small helpers


def _label_names(labels: Sequence[str] | int) -> list[str]:
    """The class names: the given names, or ``"0" .. "n-1"`` for a class count."""
    if isinstance(labels, (int, np.integer)):
        if labels < 1:
            raise ValueError(f"need at least one class, got {labels}")
        return [str(k) for k in range(int(labels))]
    names = [str(x) for x in labels]
    if not names:
        raise ValueError("labels is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate label names in {names}")
    return names


def _as_codes(y, names: Sequence[str], what: str) -> np.ndarray:
    """``y`` as int64 class codes in ``[0, len(names))``.

    Integer arrays (and floats holding whole numbers, as a cast tensor may give) are taken as
    codes; anything else is looked up by name, so string labels work when names are known.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind in "iub":
        codes = y.astype(np.int64)
    else:
        index = {name: k for k, name in enumerate(names)}
        unknown = sorted({str(v) for v in y} - index.keys())
        if unknown:
            raise ValueError(f"{what} holds labels {unknown[:5]} not among {list(names)}")
        codes = np.array([index[str(v)] for v in y], dtype=np.int64)
    bad = (codes < 0) | (codes >= len(names))
    if bad.any():
        raise ValueError(
            f"{what} holds class codes outside [0, {len(names)}): e.g. {codes[bad][:5].tolist()}"
        )
    return codes


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ``numerator / denominator`` with 0 where the denominator is 0.

    Zero rather than NaN follows scikit-learn's ``zero_division=0`` and keeps averages finite.
    """
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows true)."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)  # how often each class is true
    predicted = cm.sum(axis=0)  # how often each class is predicted
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    # 2tp / (2tp + fp + fn), with fp = predicted - tp and fn = support - tp.
    f1 = _safe_divide(2 * tp, predicted + support)
    return precision, recall, f1, support


# --------------------------------------------------------------------------------------------
# window-level metrics


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) class pairs.

    Parameters
    ----------
    y_true, y_pred : array_like of int
        Class codes in ``[0, n_classes)``, same length.
    n_classes : int

    Returns
    -------
    numpy.ndarray
        Shape (n_classes, n_classes), int64; ``cm[i, j]`` counts samples of true class ``i``
        predicted as ``j`` (rows true, columns predicted, as scikit-learn). Classes absent from
        both give a row and column of zeros.

    Raises
    ------
    ValueError
        Different lengths, or codes out of range.
    """
    names = _label_names(n_classes)
    t = _as_codes(y_true, names, "y_true")
    p = _as_codes(y_pred, names, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length: {len(t)} != {len(p)}")
    # One bincount over the flattened (true, pred) pair is a single pass, no Python loop.
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def classification_report(y_true, y_pred, labels: Sequence[str] | int) -> dict:
    """Accuracy, macro and weighted precision / recall / F1, per-class scores and the matrix.

    Parameters
    ----------
    y_true, y_pred : numpy.ndarray
        Class codes in ``[0, n_classes)`` or, when ``labels`` are names, those names.
    labels : sequence of str or int
        The class names in code order, or the number of classes (names become ``"0"``, ...).
        Classes absent from both ``y_true`` and ``y_pred`` are left out of the macro average.

    Returns
    -------
    dict
        Plain Python values (JSON- and ``mlflow.log_metrics``-friendly)::

            {
              "n_samples": int,
              "accuracy": float,
              "precision_macro": float, "recall_macro": float, "f1_macro": float,
              "precision_weighted": float, "recall_weighted": float, "f1_weighted": float,
              "labels": [str, ...],
              "per_class": {name: {"precision": float, "recall": float, "f1": float,
                                   "support": int}},
              "confusion_matrix": [[int, ...], ...],   # n x n, rows true, columns predicted
            }

        Divisions by zero give 0 (see the module docstring). ``recall_weighted`` equals
        ``accuracy`` up to rounding.

    Raises
    ------
    ValueError
        Empty inputs, different lengths, unknown labels or codes out of range.
    """
    names = _label_names(labels)
    t = _as_codes(y_true, names, "y_true")
    p = _as_codes(y_pred, names, "y_pred")
    if len(t) == 0:
        raise ValueError("no samples to score")
    return report_from_confusion(confusion_matrix(t, p, len(names)), names)


def report_from_confusion(matrix, labels: Sequence[str] | int) -> dict:
    """:func:`classification_report` computed from a confusion matrix (rows true, columns predicted).

    Lets stored results be re-scored without the predictions.
    """
    names = _label_names(labels)
    cm = np.asarray(matrix, dtype=np.int64)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {len(names)} labels")
    precision, recall, f1, support = _per_class(cm)
    n = int(support.sum())
    if n == 0:
        raise ValueError("no samples to score")
    weights = support / n
    present = (support > 0) | (cm.sum(axis=0) > 0)
    return {
        "n_samples": n,
        "accuracy": float(np.trace(cm) / n),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "precision_weighted": float(weights @ precision),
        "recall_weighted": float(weights @ recall),
        "f1_weighted": float(weights @ f1),
        "labels": list(names),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
    }


# --------------------------------------------------------------------------------------------
# recording level: the product's rule (highest mean probability) and the majority vote


def _vote(probabilities: np.ndarray) -> int:
    """One recording's majority-vote class: most window argmax votes, ties to the highest mean
    probability among the tied classes (then to the lowest class code)."""
    n_classes = probabilities.shape[1]
    counts = np.bincount(probabilities.argmax(axis=1), minlength=n_classes)
    tied = counts == counts.max()
    return int(np.argmax(np.where(tied, probabilities.mean(axis=0), -np.inf)))


def recording_predictions(y_true, logits, recording_ids) -> pd.DataFrame:
    """One decision per recording from its windows' logits, by the rule ``predict`` uses.

    A recording's class is the one with the highest mean softmax probability over its windows
    (:mod:`ecg_pipeline.training.aggregate`, the same functions ``predict`` calls); its
    confidence is that mean probability. The majority vote of the windows' argmax classes is
    given beside it (``y_vote``).

    Parameters
    ----------
    y_true : array_like of int, shape (n_windows,)
        Class codes of the windows.
    logits : array_like of float, shape (n_windows, n_classes)
        Per-window logits (the network's outputs; one softmax is applied here).
    recording_ids : array_like, shape (n_windows,)
        Which recording each window belongs to.

    Returns
    -------
    pandas.DataFrame
        One row per recording, sorted by id: ``recording_id``, ``n_windows``, ``y_true`` (the
        mode of its windows' labels; ties to the lowest code), ``y_pred`` (highest mean
        probability), ``confidence`` and ``y_vote`` (majority vote).
    """
    from ecg_pipeline.training.aggregate import mean_probabilities, softmax

    scores = np.asarray(logits, dtype=float)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores must be (n_windows, n_classes), got shape {scores.shape}")
    n_windows, n_classes = scores.shape
    t = _as_codes(y_true, _label_names(n_classes), "y_true")
    ids = np.asarray(recording_ids, dtype=object)
    if not len(t) == len(ids) == n_windows:
        raise ValueError(
            f"lengths differ: y_true {len(t)}, scores {n_windows}, recording_ids {len(ids)}"
        )
    if pd.isna(ids).any():
        raise ValueError("recording_ids holds nulls")
    probabilities = softmax(scores)
    keys, means = mean_probabilities(probabilities, ids)
    positions = pd.Series(ids).groupby(ids, sort=False).indices
    rows = []
    for key, mean in zip(keys, means, strict=True):
        where = positions[key]
        rows.append(
            {
                "recording_id": key,
                "n_windows": len(where),
                # The label is constant within a recording in this pipeline; the mode makes a
                # stray window label harmless instead of an error.
                "y_true": int(np.bincount(t[where], minlength=n_classes).argmax()),
                "y_pred": int(mean.argmax()),
                "confidence": float(mean.max()),
                "y_vote": _vote(probabilities[where]),
            }
        )
    return pd.DataFrame(rows).sort_values("recording_id", ignore_index=True)


def recording_accuracy(y_true, logits, recording_ids, *, rule: str = "mean_probability") -> float:
    """Share of recordings whose decision equals their true label; each counts once.

    Parameters
    ----------
    y_true, logits, recording_ids
        As :func:`recording_predictions`.
    rule : {"mean_probability", "vote"}
        The product's rule (highest mean probability, what ``predict`` answers) or the
        majority vote of the windows.
    """
    if rule not in ("mean_probability", "vote"):
        raise ValueError(f"rule must be 'mean_probability' or 'vote', got {rule!r}")
    per_recording = recording_predictions(y_true, logits, recording_ids)
    column = "y_pred" if rule == "mean_probability" else "y_vote"
    return float((per_recording["y_true"] == per_recording[column]).mean())


# --------------------------------------------------------------------------------------------
# statistics over folds and seeds

# The test metrics summarised per task (means and standard deviations over folds and seeds).
SUMMARY_METRICS = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "recording_accuracy",
    "recording_accuracy_vote",
)


def mean_and_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and **sample** standard deviation (``ddof=1``; 0 for a single value).

    Folds and seeds are a few draws, not the whole population; this is the one convention of
    every spread the project reports (``results.json``, ``summary.json``, the README table,
    MLflow).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0
