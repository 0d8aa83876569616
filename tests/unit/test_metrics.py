"""Classification metrics against values worked out by hand (no scikit-learn)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ecg_pipeline.training.metrics import (
    classification_report,
    confusion_matrix,
    recording_accuracy,
    recording_predictions,
)

# Three classes, six samples:
#   true 0 0 0 1 1 2
#   pred 0 0 1 1 2 1
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 1])
#
#   confusion (rows true)   tp  predicted  support   P     R     F1 = 2tp/(pred+support)
#   0: [2, 1, 0]            2   2          3         1     2/3   4/5
#   1: [0, 1, 1]            1   3          2         1/3   1/2   2/5
#   2: [0, 1, 0]            0   1          1         0     0     0
CM = [[2, 1, 0], [0, 1, 1], [0, 1, 0]]
P = [1.0, 1 / 3, 0.0]
R = [2 / 3, 1 / 2, 0.0]
F1 = [4 / 5, 2 / 5, 0.0]
SUPPORT = [3, 2, 1]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == CM
    # A class absent from both gets a zero row and column.
    assert confusion_matrix(Y_TRUE, Y_PRED, 4).tolist() == [
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ]


def test_confusion_matrix_refuses_bad_input():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 1], [0, -1], 3)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix([0, 1], [0], 3)


def test_report_by_hand():
    report = classification_report(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert report["n_samples"] == 6
    assert report["accuracy"] == pytest.approx(3 / 6)
    # Macro: plain means over the three classes.
    assert report["precision_macro"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # 4/9
    assert report["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # 7/18
    assert report["f1_macro"] == pytest.approx((4 / 5 + 2 / 5 + 0) / 3)  # 2/5
    # Weighted by support 3, 2, 1 out of 6.
    assert report["precision_weighted"] == pytest.approx((3 * 1 + 2 / 3 + 0) / 6)  # 11/18
    assert report["recall_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 0) / 6)  # 1/2
    assert report["f1_weighted"] == pytest.approx((3 * 4 / 5 + 2 * 2 / 5 + 0) / 6)  # 8/15
    assert report["recall_weighted"] == pytest.approx(report["accuracy"])
    # Macro F1 is the mean of per-class F1, not the F1 of macro P and macro R.
    p, r = report["precision_macro"], report["recall_macro"]
    assert not math.isclose(report["f1_macro"], 2 * p * r / (p + r))
    assert report["labels"] == ["a", "b", "c"]
    assert report["confusion_matrix"] == CM
    for k, name in enumerate("abc"):
        per = report["per_class"][name]
        assert per["precision"] == pytest.approx(P[k])
        assert per["recall"] == pytest.approx(R[k])
        assert per["f1"] == pytest.approx(F1[k])
        assert per["support"] == SUPPORT[k]
    json.dumps(report)  # plain Python values throughout


def test_report_leaves_a_class_absent_from_both_out_of_the_macro_average():
    # A person not in this test fold (and never predicted) must not pull macro F1 down.
    report = classification_report(Y_TRUE, Y_PRED, 4)
    assert report["labels"] == ["0", "1", "2", "3"]
    assert report["per_class"]["3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    three = classification_report(Y_TRUE, Y_PRED, 3)
    for key in ("precision_macro", "recall_macro", "f1_macro"):
        assert report[key] == pytest.approx(three[key])
    assert report["f1_macro"] == pytest.approx((4 / 5 + 2 / 5 + 0) / 3)
    # Support 0 means weight 0: weighted scores do not move.
    assert report["precision_weighted"] == pytest.approx(11 / 18)
    assert report["f1_weighted"] == pytest.approx(8 / 15)


def test_report_from_confusion_equals_the_report_from_predictions():
    from ecg_pipeline.training.metrics import report_from_confusion

    report = classification_report(Y_TRUE, Y_PRED, 4)
    assert report_from_confusion(report["confusion_matrix"], 4) == report
    with pytest.raises(ValueError, match="shape"):
        report_from_confusion([[1, 0], [0, 1]], 3)


def test_report_zero_division_is_zero():
    # Class 1 is predicted once but never true: precision 0/1, recall 0/0 -> 0, F1 0/1.
    # Class 0: P = 1/1, R = 1/2, F1 = 2/3.
    report = classification_report(np.array([0, 0]), np.array([0, 1]), 2)
    assert report["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["per_class"]["0"]["f1"] == pytest.approx(2 / 3)
    assert report["precision_macro"] == pytest.approx(1 / 2)
    assert report["recall_macro"] == pytest.approx(1 / 4)
    assert report["recall_weighted"] == pytest.approx(report["accuracy"]) == 0.5
    # Nothing predicted for a true class: its precision is 0/0 -> 0, not NaN.
    report = classification_report(np.array([0, 1]), np.array([0, 0]), 2)
    assert report["per_class"]["1"]["precision"] == 0.0
    assert all(not math.isnan(v) for v in report.values() if isinstance(v, float))


def test_report_accepts_label_names_and_perfect_predictions():
    names = ["rest", "walk", "run"]
    y = np.array(["rest", "run", "walk", "run"])
    report = classification_report(y, y, names)
    assert report["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted"):
        assert report[key] == 1.0
    with pytest.raises(ValueError, match="not among"):
        classification_report(y, np.array(["rest", "run", "walk", "swim"]), names)
    with pytest.raises(ValueError, match="no samples"):
        classification_report(np.array([], int), np.array([], int), 3)
    with pytest.raises(ValueError, match="duplicate"):
        classification_report(y, y, ["rest", "rest", "run"])


@pytest.mark.parametrize("seed", range(20))
def test_weighted_recall_equals_accuracy(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 12))
    n = int(rng.integers(1, 300))
    # Skewed true labels and a predictor that is right about half the time, so classes are
    # unbalanced, some missing on one side or the other.
    y_true = rng.choice(n_classes, size=n, p=rng.dirichlet(np.ones(n_classes) * 0.5))
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, n_classes, size=n))
    report = classification_report(y_true, y_pred, n_classes)
    assert report["recall_weighted"] == pytest.approx(report["accuracy"], abs=1e-12)
    assert report["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    for per in report["per_class"].values():
        p, r, f = per["precision"], per["recall"], per["f1"]
        assert f == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
    assert np.sum(report["confusion_matrix"]) == n


# --------------------------------------------------------------------------------------------
# recording level: highest mean probability (predict's rule) and majority vote

# Three recordings, three classes; the network's logits are log(PROBA), so softmax gives PROBA.
#   A: argmax 0, 0, 1       mean (0.50, 0.33, 0.17)   -> 0 by both rules; true 0 -> right
#   B: argmax 1, 2 (tied)   mean (0.15, 0.475, 0.375) -> 1 by both (the vote's tie-break is the
#                           mean of the tied classes); true labels 2, 2 -> wrong
#   C: argmax 1, 2 (tied)   mean (0.40, 0.275, 0.325) -> 0 by mean probability (no window
#                           voted for it); the vote's tie-break among 1 and 2 gives 2; true 2
PROBA = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.6, 0.3],
        [0.2, 0.35, 0.45],
        [0.35, 0.5, 0.15],
        [0.45, 0.05, 0.5],
    ]
)
LOGITS = np.log(PROBA)
RECORDINGS = np.array(["A", "A", "A", "B", "B", "C", "C"])
Y_WINDOWS = np.array([0, 0, 0, 2, 2, 2, 2])


def test_recording_rules_by_hand():
    table = recording_predictions(Y_WINDOWS, LOGITS, RECORDINGS)
    assert table["recording_id"].tolist() == ["A", "B", "C"]
    assert table["n_windows"].tolist() == [3, 2, 2]
    assert table["y_true"].tolist() == [0, 2, 2]
    assert table["y_pred"].tolist() == [0, 1, 0]
    assert table["confidence"].tolist() == pytest.approx([0.5, 0.475, 0.40])
    assert table["y_vote"].tolist() == [0, 1, 2]
    assert recording_accuracy(Y_WINDOWS, LOGITS, RECORDINGS) == pytest.approx(1 / 3)
    assert recording_accuracy(Y_WINDOWS, LOGITS, RECORDINGS, rule="vote") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="rule"):
        recording_accuracy(Y_WINDOWS, LOGITS, RECORDINGS, rule="median")


def test_recording_rule_is_what_predict_answers():
    # The evaluation's per-recording class is predict's: decide() over mean_probabilities().
    from ecg_pipeline.training.aggregate import decide, mean_probabilities, softmax

    table = recording_predictions(Y_WINDOWS, LOGITS, RECORDINGS)
    keys, means = mean_probabilities(softmax(LOGITS), RECORDINGS)
    labels, _, confidence = decide(means, ["0", "1", "2"])
    by_key = dict(zip(keys, labels, strict=True))
    assert [int(by_key[k]) for k in table["recording_id"]] == table["y_pred"].tolist()
    assert sorted(confidence) == pytest.approx(sorted(table["confidence"]))


def test_recording_rules_shift_invariant():
    # softmax(z + c) == softmax(z): shifted logits give the same decisions.
    a = recording_predictions(Y_WINDOWS, LOGITS, RECORDINGS)
    b = recording_predictions(Y_WINDOWS, LOGITS + 3.0, RECORDINGS)
    assert a.drop(columns="confidence").equals(b.drop(columns="confidence"))
    assert a["confidence"].tolist() == pytest.approx(b["confidence"].tolist())


def test_recording_true_label_is_the_mode_and_each_recording_counts_once():
    # A: 100 windows, all right; B: one window, wrong -> 1/2, not 100/101.
    logits = np.log(np.vstack([np.tile([0.9, 0.1], (100, 1)), [[0.9, 0.1]]]))
    ids = np.array(["A"] * 100 + ["B"])
    y = np.array([0] * 99 + [1] + [1])  # one stray label in A: its mode is still 0
    assert recording_accuracy(y, logits, ids) == pytest.approx(0.5)
    assert recording_accuracy(y, logits, ids, rule="vote") == pytest.approx(0.5)


def test_recording_vote_refuses_bad_shapes():
    with pytest.raises(ValueError, match="n_windows, n_classes"):
        recording_accuracy(Y_WINDOWS, LOGITS[:, 0], RECORDINGS)
    with pytest.raises(ValueError, match="lengths differ"):
        recording_accuracy(Y_WINDOWS[:-1], LOGITS, RECORDINGS)
    with pytest.raises(ValueError, match="outside"):
        recording_accuracy(Y_WINDOWS + 1, LOGITS, RECORDINGS)
