"""A training stopped after an epoch and resumed ends exactly as one never stopped (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_pipeline.config import TrainingSettings
from ecg_pipeline.models import DT4ECG
from ecg_pipeline.training.loop import fit

T = 300


class Stop(Exception):
    """Stands for the process being killed right after an epoch's state was saved."""


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, T), dtype=np.float32)
    labels = {"identity": np.arange(40) % 4, "activity": (np.arange(40) // 4) % 2}
    return x, labels, np.arange(32), np.arange(32, 40)


def _train(settings, resume_file=None, stop_after=None):
    x, labels, train, val = _data()
    torch.manual_seed(123)  # the model's initial weights: the same for every call
    model = DT4ECG(in_channels=1, n_samples=T, heads={"identity": 4, "activity": 2})

    def on_epoch(row):
        if stop_after is not None and row["epoch"] == stop_after:
            raise Stop

    result = fit(model, x, labels, train, val, settings, on_epoch=on_epoch, resume_file=resume_file)
    return result, model


@pytest.mark.parametrize(
    "recipe",
    [
        {},
        # Everything with a state of its own: cosine schedule, AdamW, augmentation streams.
        {"schedule": "cosine", "weight_decay": 0.01, "augment": {"enabled": True}},
    ],
    ids=["paper", "tuned-like"],
)
def test_a_resumed_training_is_bit_identical_to_an_uninterrupted_one(tmp_path, recipe):
    settings = TrainingSettings(epochs=5, batch_size=8, cpu_threads=1, **recipe)
    whole, whole_model = _train(settings)
    state = tmp_path / "resume.pt"
    with pytest.raises(Stop):
        _train(settings, state, stop_after=2)
    assert state.is_file()
    resumed, resumed_model = _train(settings, state)
    assert len(resumed.history) == 5
    assert resumed.history == whole.history  # same batches, losses, weights, learning rates
    assert resumed.best_epoch == whole.best_epoch
    for key, value in whole_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    for key, value in whole.weighting_state.items():
        assert torch.equal(value, resumed.weighting_state[key]), key


def test_a_saved_state_of_other_settings_is_refused(tmp_path):
    state = tmp_path / "resume.pt"
    with pytest.raises(Stop):
        _train(TrainingSettings(epochs=3, batch_size=8, cpu_threads=1), state, stop_after=1)
    with pytest.raises(ValueError, match="training.batch_size: saved 8, now 16"):
        _train(TrainingSettings(epochs=3, batch_size=16, cpu_threads=1), state)
    # Threads are not a setting the result depends on.
    _train(TrainingSettings(epochs=3, batch_size=8, cpu_threads=2), state)


def test_a_state_saved_by_another_model_family_is_refused_naming_it(tmp_path):
    from ecg_pipeline.models import build_model

    state = tmp_path / "resume.pt"
    settings = TrainingSettings(epochs=3, batch_size=8, cpu_threads=1)
    with pytest.raises(Stop):
        _train(settings, state, stop_after=1)
    x, labels, train, val = _data()
    other = build_model(
        "resnet1d", in_channels=1, n_samples=T, heads={"identity": 4, "activity": 2}
    )
    with pytest.raises(ValueError, match="network: saved 'DT4ECG', now 'MultiTaskNet'"):
        fit(other, x, labels, train, val, settings, resume_file=state)


def test_a_run_stored_before_later_settings_existed_compares_equal_at_their_defaults():
    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.training.run import training_part

    today = StudyConfig()
    stored = today.model_dump(mode="json")
    # What a results.json written before these settings holds: none of them.
    del stored["training"]["holdout_people"]
    del stored["dataset"]["markers"]
    for key in ("min_heartbeat_periodicity", "neurokit_methods", "neurokit_max_windows"):
        del stored["ingest"]["quality"][key]
    assert training_part(stored) == training_part(today)
    assert training_part(stored) != training_part(
        today.with_overrides({"training.holdout_people": 4})
    )
    assert training_part(stored) != training_part(
        today.with_overrides({"ingest.quality.min_heartbeat_periodicity": 0.3})
    )


def test_where_a_store_lies_is_not_part_of_what_a_run_trained_on():
    """The 250-Hz rows' store moved to its own folder: their runs still resume from it (the
    data signature says what the store holds); its normalisation still counts."""
    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.training.run import training_part

    config = StudyConfig()
    moved = config.with_overrides({"store.root": "data/windows-segment-250hz"})
    assert training_part(moved) == training_part(config)
    assert training_part(config.with_overrides({"store.normalisation": "window_zscore"})) != (
        training_part(config)
    )
