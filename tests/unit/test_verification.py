"""Verification scores, error rates and the stranger threshold, against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecg_pipeline.training.holdout import choose_holdout_people, impostor_roles, without_people
from ecg_pipeline.training.verification import (
    StrangerThreshold,
    calibrate_stranger_threshold,
    cosine_scores,
    equal_error_rate,
    error_rates,
    far_at_frr,
    frr_at_far,
    open_set_rates,
    person_templates,
    recording_embeddings,
    roc_points,
)

GENUINE = [0.9, 0.8, 0.4]
IMPOSTOR = [0.5, 0.3, 0.2, 0.1]


def test_recording_embedding_is_the_mean_of_unit_windows():
    # Window lengths must not weigh: (3, 0) and (0, 1) average to (0.5, 0.5) once normalised.
    keys, emb = recording_embeddings(
        np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0]]), ["a", "a", "b"]
    )
    assert keys.tolist() == ["a", "b"]
    np.testing.assert_allclose(emb, [[math.sqrt(0.5), math.sqrt(0.5)], [0.0, 1.0]])


def test_templates_follow_first_appearance_and_have_unit_length():
    names, t = person_templates(np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), ["p2", "p1", "p2"])
    assert names.tolist() == ["p2", "p1"]
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0)
    np.testing.assert_allclose(cosine_scores(np.array([[1.0, 0.0]]), t), [[math.sqrt(0.5), 1.0]])


def test_error_rates_by_hand():
    assert error_rates(GENUINE, IMPOSTOR, 0.45) == (0.25, pytest.approx(1 / 3))
    assert error_rates(GENUINE, IMPOSTOR, 0.5) == (0.25, pytest.approx(1 / 3))  # >= accepts
    assert error_rates(GENUINE, IMPOSTOR, 0.0) == (1.0, 0.0)
    assert math.isnan(error_rates([], IMPOSTOR, 0.5)[1])


def test_roc_points_span_both_ends():
    roc = roc_points(GENUINE, IMPOSTOR)
    assert roc["far"][0] == 1.0 and roc["frr"][0] == 0.0
    assert roc["far"][-1] == 0.0 and roc["frr"][-1] == 1.0
    assert np.all(np.diff(roc["far"]) <= 0) and np.all(np.diff(roc["frr"]) >= 0)
    with pytest.raises(ValueError, match="genuine and impostor"):
        roc_points([], IMPOSTOR)


def test_equal_error_rate_by_hand():
    # At 0.5: FAR 1/4, FRR 1/3 (the closest pair); the EER is their mean.
    eer, t = equal_error_rate(GENUINE, IMPOSTOR)
    assert eer == pytest.approx((0.25 + 1 / 3) / 2) and t == 0.5
    # Separated scores: no error at a threshold between them.
    assert equal_error_rate([0.9, 0.8], [0.1, 0.2])[0] == 0.0


def test_fixed_operating_points_by_hand():
    # FRR <= 0: thresholds up to 0.4, the lowest FAR among them 1/4.
    assert far_at_frr(GENUINE, IMPOSTOR, 0.0) == (0.25, 0.4)
    # FAR <= 0: thresholds above 0.5, the lowest FRR 1/3 (at 0.8).
    assert frr_at_far(GENUINE, IMPOSTOR, 0.0) == (pytest.approx(1 / 3), 0.8)
    assert frr_at_far(GENUINE, IMPOSTOR, 0.25)[0] == 0.0


def test_stranger_threshold_accepts_at_most_the_rate():
    scores = np.linspace(0.0, 0.95, 20)  # 20 strangers: 5 % is one
    t = calibrate_stranger_threshold(scores, 0.05, n_people=4)
    assert scores[-2] < t.value <= np.nextafter(scores[-2], 1)  # only 0.95 reaches it
    assert t.calibration_accept_rate == 0.05 and t.n_recordings == 20 and not t.warning
    assert StrangerThreshold.from_dict(t.as_dict()) == t
    few = calibrate_stranger_threshold([0.2, 0.7], 0.05)
    assert few.value > 0.7 and few.calibration_accept_rate == 0.0 and "only 2" in few.warning
    with pytest.raises(ValueError, match="holdout_people"):
        calibrate_stranger_threshold([], 0.05)


def test_open_set_rates_by_hand():
    scores = np.array(
        [
            [0.9, 0.1],  # A, right and accepted
            [0.3, 0.4],  # A, best is B but below the threshold: unknown
            [0.2, 0.8],  # A, best is B and accepted: misidentified
            [0.7, 0.1],  # stranger accepted
            [0.1, 0.2],  # stranger refused
        ]
    )
    rates = open_set_rates(scores, ["A", "B"], ["A", "A", "A", "X", "Y"], 0.5)
    assert rates["known_correct"] == pytest.approx(1 / 3)
    assert rates["known_rejected"] == pytest.approx(1 / 3)
    assert rates["known_misidentified"] == pytest.approx(1 / 3)
    assert rates["stranger_accepted"] == 0.5
    assert (rates["n_known"], rates["n_strangers"]) == (3, 2)


def test_holdout_people_prefer_those_without_test_recordings_and_follow_the_seed():
    people = [f"{i:02d}" for i in range(10)]
    avoid = people[:6]
    chosen = choose_holdout_people(people, 4, seed=0, avoid=avoid)
    assert sorted(chosen) == people[6:]
    assert choose_holdout_people(people, 4, seed=0, avoid=avoid) == chosen
    assert choose_holdout_people(people, 6, seed=1) != choose_holdout_people(people, 6, seed=2)
    with pytest.raises(ValueError, match="at least two"):
        choose_holdout_people(people, 9, seed=0)
    roles = impostor_roles(chosen, 0.5)
    assert roles.calibration == tuple(chosen[:2]) and roles.test == tuple(chosen[2:])
    assert impostor_roles(["a", "b"], 0.9).test == ("b",)  # one of each whatever the share


def test_without_people_encodes_identity_again():
    from ecg_pipeline.training.data import WindowData

    meta = pd.DataFrame({"subject": ["a", "b", "c", "c"], "condition": ["r", "w", "r", "w"]})
    data = WindowData(
        np.arange(4, dtype=np.float32)[:, None, None],
        {"identity": np.array([0, 1, 2, 2]), "activity": np.array([0, 1, 0, 1])},
        {"identity": ["a", "b", "c"], "activity": ["r", "w"]},
        meta,
    )
    left = without_people(data, ["b"])
    assert left.classes["identity"] == ["a", "c"]
    assert left.labels["identity"].tolist() == [0, 1, 1]
    assert left.labels["activity"].tolist() == [0, 0, 1]
    assert left.x.ravel().tolist() == [0, 2, 3]
    assert data.classes["identity"] == ["a", "b", "c"]  # the original is unchanged


def test_verification_curves_draw_roc_and_det():
    from ecg_pipeline.tracking.plots import verification_curves

    roc = roc_points(GENUINE, IMPOSTOR)
    curve = {"label": "seed 0", "far": roc["far"], "frr": roc["frr"], "at_threshold": (0.0, 0.5)}
    fig = verification_curves([curve], title="t")
    assert [ax.get_title() for ax in fig.axes] == ["ROC", "DET (o: threshold)"]
    with pytest.raises(ValueError, match="no curves"):
        verification_curves([])
