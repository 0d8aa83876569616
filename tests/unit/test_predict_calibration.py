"""The identity threshold and the per-recording aggregation: pure numpy, exact numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_pipeline.training.aggregate import UNKNOWN, decide, mean_probabilities, softmax
from ecg_pipeline.training.calibration import (
    IdentityThreshold,
    calibrate_identity_threshold,
    recording_confidences,
    threshold_from_validation,
)


# --- calibration -------------------------------------------------------------------------------
def test_threshold_is_the_k_plus_first_lowest_confidence():
    rng = np.random.default_rng(3)
    confidences = rng.permutation(np.linspace(0.40, 0.97, 20))
    t = calibrate_identity_threshold(confidences, 0.10)
    ordered = np.sort(confidences)
    # k = floor(0.1 * 20) = 2: the third lowest, with exactly two recordings below it.
    assert t.value == ordered[2]
    assert int((confidences < t.value).sum()) == 2
    assert t.validation_reject_rate == pytest.approx(0.10)
    assert (t.n_recordings, t.method, t.warning) == (20, "recording_quantile", "")


@pytest.mark.parametrize(
    ("n", "rate", "k"), [(20, 0.05, 1), (40, 0.05, 2), (39, 0.05, 1), (100, 0.57, 57), (7, 0.5, 3)]
)
def test_never_more_than_the_rate_is_refused_and_exactly_it_when_whole(n, rate, k):
    confidences = np.linspace(0.2, 0.99, n)
    t = calibrate_identity_threshold(confidences, rate)
    refused = int((confidences < t.value).sum())
    assert refused == k <= rate * n + 1e-9
    assert t.value == confidences[k]


def test_few_validation_recordings_give_the_lowest_confidence_and_say_why():
    t = calibrate_identity_threshold([0.9, 0.6, 0.8], 0.05)
    assert t.value == 0.6 and t.validation_reject_rate == 0.0
    assert "only 3 validation recording(s)" in t.warning and "at least 20" in t.warning


def test_rate_zero_is_the_lowest_confidence_without_a_warning():
    t = calibrate_identity_threshold([0.9, 0.6, 0.8], 0.0)
    assert t.value == 0.6 and t.warning == ""


def test_ties_at_the_threshold_are_not_refused():
    confidences = [0.5, 0.7, 0.7, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    t = calibrate_identity_threshold(confidences, 0.2)  # k = 2: the third lowest is 0.7
    assert t.value == 0.7
    assert sum(c < t.value for c in confidences) == 1  # fewer than k when confidences tie


def test_no_validation_recordings_fall_back_to_zero_with_a_warning():
    t = calibrate_identity_threshold([], 0.05)
    assert (t.value, t.n_recordings, t.method) == (0.0, 0, "no_validation")
    assert "every recording is called a known subject" in t.warning
    empty = threshold_from_validation(np.empty((0, 4)), [], 0.05)
    assert empty == t


@pytest.mark.parametrize("bad", [[0.5, np.nan], [1.2], [-0.1]])
def test_confidences_must_be_probabilities(bad):
    with pytest.raises(ValueError, match="finite probabilities"):
        calibrate_identity_threshold(bad, 0.05)


@pytest.mark.parametrize("rate", [-0.01, 1.0])
def test_rate_must_be_in_zero_one(rate):
    with pytest.raises(ValueError, match="known_reject_rate"):
        calibrate_identity_threshold([0.5], rate)


def test_from_validation_groups_windows_by_recording():
    # Recording "a": two windows, mean softmax [0.5, 0.5] -> 0.5; "b": one sure window.
    logits = np.array([[np.log(0.9), np.log(0.1)], [np.log(0.1), np.log(0.9)], [5.0, -5.0]])
    t = threshold_from_validation(logits, ["a", "a", "b"], 0.5)
    keys, conf = recording_confidences(softmax(logits), ["a", "a", "b"])
    assert list(keys) == ["a", "b"] and conf[0] == pytest.approx(0.5)
    assert t.n_recordings == 2 and t.n_windows == 3
    assert t.value == pytest.approx(conf[1])  # k = floor(0.5 * 2) = 1: the higher one


def test_threshold_round_trips_through_json_values():
    t = calibrate_identity_threshold([0.3, 0.9], 0.5)
    import json

    again = IdentityThreshold.from_dict(json.loads(json.dumps(t.as_dict())))
    assert again == t
    assert IdentityThreshold.from_dict(None) is None


# --- aggregation and decision ------------------------------------------------------------------
def test_softmax_is_stable_for_large_logits():
    p = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), -np.inf]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]], atol=1e-12)


def test_mean_probabilities_per_recording_in_order_of_appearance():
    p = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.4, 0.6]])
    keys, means = mean_probabilities(p, ["r2", "r1", "r2", "r1"])
    assert list(keys) == ["r2", "r1"]
    np.testing.assert_allclose(means, [[0.6, 0.4], [0.5, 0.5]])


def test_mean_probabilities_refuses_misaligned_groups():
    with pytest.raises(ValueError, match="one group per window"):
        mean_probabilities(np.ones((3, 2)) / 2, ["a", "b"])


def test_decide_calls_unknown_strictly_below_the_threshold():
    means = np.array([[0.70, 0.20, 0.10], [0.30, 0.60, 0.10], [0.34, 0.33, 0.33]])
    labels, best, conf = decide(means, ["S01", "S02", "S03"], threshold=0.6)
    assert best == ["S01", "S02", "S01"]
    assert labels == ["S01", "S02", UNKNOWN]  # 0.60 is not below 0.6
    np.testing.assert_allclose(conf, [0.70, 0.60, 0.34])
    assert decide(means, ["S01", "S02", "S03"], threshold=None)[0] == best


def test_decide_checks_the_class_count():
    with pytest.raises(ValueError, match="3 classes"):
        decide(np.ones((1, 2)) / 2, ["a", "b", "c"])
