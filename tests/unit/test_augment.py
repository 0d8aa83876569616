"""Training-window augmentations: shapes, determinism, strengths, and no effect when off."""

import pytest
import torch

from ecg_pipeline.config import AugmentSettings
from ecg_pipeline.training.augment import (
    augment_batch,
    baseline_wander,
    gaussian_noise,
    random_gain_offset,
    random_shift,
)


def _batch(b=64, t=300):
    time = torch.arange(t, dtype=torch.float32) / 100.0
    return (0.5 + 0.4 * torch.sin(2 * torch.pi * 1.2 * time)).repeat(b, 1, 1)  # (B, 1, T)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_off_returns_the_batch_itself():
    x = _batch()
    assert augment_batch(x, AugmentSettings(), 100.0, _gen()) is x


def test_on_is_deterministic_per_generator_and_leaves_the_input_untouched():
    x = _batch()
    before = x.clone()
    settings = AugmentSettings(enabled=True)
    a = augment_batch(x, settings, 100.0, _gen(3))
    b = augment_batch(x, settings, 100.0, _gen(3))
    c = augment_batch(x, settings, 100.0, _gen(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(x, before)


def test_gain_and_offset_stay_within_their_bounds():
    x = torch.ones(1000, 1, 10)
    y = random_gain_offset(x, 0.2, 0.1, _gen())
    per_window = y[:, 0, 0]
    assert torch.all(y == per_window[:, None, None])  # one draw per window
    assert per_window.min() >= 0.8 - 0.1 - 1e-6 and per_window.max() <= 1.2 + 0.1 + 1e-6
    assert per_window.std() > 0.05


def test_noise_has_the_asked_standard_deviation():
    x = torch.zeros(200, 1, 300)
    assert gaussian_noise(x, 0.02, _gen()).std().item() == pytest.approx(0.02, rel=0.05)


def test_wander_is_slow_and_bounded():
    x = torch.zeros(100, 1, 300)
    y = baseline_wander(x, 0.1, 100.0, _gen(), max_hz=0.5)
    assert y.abs().max() <= 0.1 + 1e-6
    # At most 0.5 Hz: adjacent samples at 100 Hz differ by at most 2*pi*0.5*0.1/100.
    assert (y[..., 1:] - y[..., :-1]).abs().max() <= 2 * torch.pi * 0.5 * 0.1 / 100 + 1e-6


def test_shift_moves_whole_windows_and_pads_with_the_edge():
    x = torch.arange(10, dtype=torch.float32).repeat(500, 1, 1)  # (500, 1, 10)
    y = random_shift(x, 3, _gen())
    for row in y[:, 0]:
        start = int(row[0]) if row[0] > 0 else -int((row == 0).sum() - 1)
        # Inside the window the samples are a contiguous run of the original ones.
        interior = row[(row > 0) & (row < 9)]
        assert torch.all(interior[1:] - interior[:-1] == 1)
        assert -3 <= start <= 3
    assert len({tuple(r.tolist()) for r in y[:, 0]}) == 7  # every shift in -3..3 drawn
    assert random_shift(x, 0, _gen()) is x
