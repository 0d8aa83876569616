"""Random perturbations of training windows, applied to each batch on the training device.

The paper trains without augmentation; these are the departures that help a model meet new
electrodes or a new session (dp-motion-ecg's leave-one-session-out). Each one imitates a
nuisance that changes between recordings but not the person or the activity: gain and offset
(electrode contact, amplifier range), broadband noise (textile electrodes, EMG), baseline wander
(breathing, movement) and where the window starts relative to the heartbeat.

All functions take and return (B, C, T) tensors, draw from an explicit ``torch.Generator`` (so
training stays reproducible) and leave their input untouched.
"""

from __future__ import annotations

import math

import torch

from ecg_pipeline.config import AugmentSettings


def _uniform(shape, low: float, high: float, generator: torch.Generator, like: torch.Tensor):
    draw = torch.rand(shape, generator=generator, dtype=like.dtype)
    return (low + (high - low) * draw).to(like.device)


def random_gain_offset(
    x: torch.Tensor, gain: float, offset: float, generator: torch.Generator
) -> torch.Tensor:
    """Scale each window by a factor in ``[1 - gain, 1 + gain]`` and add an offset in ``±offset``."""
    b, c, _ = x.shape
    scale = _uniform((b, c, 1), 1.0 - gain, 1.0 + gain, generator, x)
    shift = _uniform((b, c, 1), -offset, offset, generator, x)
    return x * scale + shift


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Add white noise of standard deviation ``std`` (in the windows' normalised units)."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x + std * noise


def baseline_wander(
    x: torch.Tensor,
    amplitude: float,
    fs_hz: float,
    generator: torch.Generator,
    max_hz: float = 0.5,
) -> torch.Tensor:
    """Add a sinusoid of random frequency (0.05 to ``max_hz`` Hz), phase and amplitude (≤ ``amplitude``)."""
    b, c, t = x.shape
    freq = _uniform((b, c, 1), 0.05, max_hz, generator, x)
    phase = _uniform((b, c, 1), 0.0, 2 * math.pi, generator, x)
    amp = _uniform((b, c, 1), 0.0, amplitude, generator, x)
    time_s = torch.arange(t, dtype=x.dtype, device=x.device) / fs_hz  # (T,)
    return x + amp * torch.sin(2 * math.pi * freq * time_s + phase)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each window in time by up to ``max_shift`` samples, padding with its edge value.

    Unlike a circular roll this never joins the window's end to its start, which would draw a
    step no recording contains.
    """
    if max_shift <= 0:
        return x
    b, _, t = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b,), generator=generator).to(x.device)
    source = torch.arange(t, device=x.device)[None, :] - shifts[:, None]  # (B, T)
    source = source.clamp(0, t - 1)
    return torch.gather(x, 2, source[:, None, :].expand_as(x))


def augment_batch(
    x: torch.Tensor, settings: AugmentSettings, fs_hz: float, generator: torch.Generator
) -> torch.Tensor:
    """Apply the augmentations ``settings`` switches on, in a fixed order; a no-op when off.

    Parameters
    ----------
    x : torch.Tensor
        (B, C, T) training windows.
    settings : AugmentSettings
        Strengths; zero switches a perturbation off.
    fs_hz : float
        The windows' sampling rate (for the wander's frequency and the shift in seconds).
    generator : torch.Generator
        A CPU generator seeded by the training loop.
    """
    if not settings.enabled:
        return x
    x = random_shift(x, int(round(settings.shift_s * fs_hz)), generator)
    if settings.gain or settings.offset:
        x = random_gain_offset(x, settings.gain, settings.offset, generator)
    if settings.wander:
        x = baseline_wander(x, settings.wander, fs_hz, generator)
    if settings.noise_std:
        x = gaussian_noise(x, settings.noise_std, generator)
    return x
