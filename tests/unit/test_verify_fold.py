"""One fold's verification figures on a hand-made network whose features are its input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ecg_pipeline.config import VerifySettings
from ecg_pipeline.training.data import WindowData
from ecg_pipeline.training.holdout import HeldOutPeople, without_people
from ecg_pipeline.training.model_handle import Model
from ecg_pipeline.training.splits import Split
from ecg_pipeline.training.verify_run import verify_fold


class InputIsFeature(torch.nn.Module):
    """features(x) = x flattened: each window's embedding is chosen by the test."""

    def features(self, x):
        return x.flatten(1)


def _model(network=None):
    return Model(network or InputIsFeature(), ("identity",), {}, None, None, None, 3, 100.0, "m")


# Person -> (recording, window vectors). A and B are known; C calibrates, D tests.
E1, E2, E3 = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
WINDOWS = [
    ("A", "A1", E1),
    ("A", "A1", [2.0, 0, 0]),  # longer, same direction: the same embedding
    ("A", "A2", E1),
    ("B", "B1", E2),
    ("B", "B2", E2),
    ("C", "C1", [1.0, 1.0, 0]),  # 0.707 from A and from B
    ("D", "D1", E3),  # orthogonal to both
]


@pytest.fixture
def fold():
    meta = pd.DataFrame(
        {
            "subject": [w[0] for w in WINDOWS],
            "recording_id": [w[1] for w in WINDOWS],
            "window_index": range(len(WINDOWS)),
        }
    )
    x = np.array([w[2] for w in WINDOWS], dtype=np.float32)[:, None, :]
    everyone = WindowData(
        x, {"identity": pd.factorize(meta["subject"])[0]}, {"identity": list("ABCD")}, meta
    )
    data = without_people(everyone, ["C", "D"])
    # A1, B1 enrol (A1's first window validates), A2 and B2 are the held-out records.
    split = Split("f", train=[1, 3], val=[0], test=[2, 4])
    return everyone, data, split, HeldOutPeople(("C",), ("D",))


def test_verify_fold_by_hand(fold):
    result = verify_fold(_model(), *fold, VerifySettings())
    r = result.results
    assert r["enrolled_people"] == 2 and r["genuine_recordings"] == 2
    assert (r["calibration_recordings"], r["test_stranger_recordings"]) == (1, 1)
    # One calibration stranger at 0.707: at 5 % none may pass, so the threshold is just above.
    assert r["threshold"] == np.nextafter(math.sqrt(0.5), 1.0)
    assert "only 1" in r["threshold_info"]["warning"]
    assert r["eer"] == 0.0 and r["impostor_pairs"] == 2
    assert r["stranger_accepted"] == 0.0 and r["known_rejected"] == 0.0
    assert r["known_correct"] == 1.0 and r["training_recordings_refused"] == 0.0
    assert (r["far_at_threshold"], r["frr_at_threshold"]) == (0.0, 0.0)
    assert sorted(result.templates) == ["A", "B"]
    np.testing.assert_allclose(result.templates["A"]["template"], E1)
    assert result.templates["A"]["n_recordings"] == 1


def test_verify_fold_needs_strangers_and_features(fold):
    everyone, data, split, _ = fold
    with pytest.raises(ValueError, match="holdout_people"):
        verify_fold(_model(), everyone, data, split, HeldOutPeople((), ("D",)), VerifySettings())
    with pytest.raises(ValueError, match="checkpoint folder"):
        verify_fold(_model(torch.nn.Identity()), *fold, VerifySettings())
