"""Synthetic single-lead ECG and respiration for the demo cohort.

One module (over 400 lines) because it is one generative model: beat shapes, heart-rate
dynamics, respiration and noise share their parameters and are tested as a whole.

The beat model is ECGSYN-like (McSharry et al., 2003): every beat is a sum of five Gaussians
(P, Q, R, S, T). Instead of integrating ECGSYN's ODE, beats are placed at precomputed R-peak
times and all Gaussians of one wave are added in a single ``np.bincount``, so three minutes at
1000 Hz take a few tens of milliseconds.

What is modelled, and why:

* per-subject morphology (amplitudes, widths, intervals, electrical axis), spread widely enough
  that identity is learnable from 3-s windows at 100 Hz, within healthy-adult ranges;
* a heart-rate trajectory per condition (rest; recovery, recorded 1 min after a 3-min run;
  paced deep breathing at 0.1 Hz with respiratory sinus arrhythmia) that sets the beat times;
* rate-dependent repolarisation (Fridericia QT, shorter PR, larger T in early recovery) and
  respiratory rotation of the electrical axis (R/S amplitude modulation);
* the artefacts a BIOPAC ECG100C recording has: baseline wander, mains interference, EMG.

Everything is seeded through the ``rng`` argument. This is demo data: nothing measured on it
says anything about accuracy on real recordings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONDITIONS: tuple[str, ...] = ("rest", "exercise", "deep_breathing")


@dataclass(frozen=True)
class SubjectMorphology:
    """Per-subject beat shape, as seen in one lead, at a heart rate of 60 bpm.

    Attributes
    ----------
    p_amp_mV, q_amp_mV, r_amp_mV, s_amp_mV, t_amp_mV : float
        Peak amplitudes of the waves; Q and S are negative, ``t_amp_mV`` is a magnitude whose
        sign is ``t_polarity``. R, S and T are at the neutral (mid-breath) axis.
    p_sigma_s, t_sigma_s : float
        Gaussian standard deviations of the P and T waves (a wave lasts about 5 sigma).
    pr_interval_s : float
        P onset to QRS onset.
    qrs_width_s : float
        QRS onset to QRS offset; the Q, R and S Gaussians are laid out in fixed proportions of it.
    qt_at_60bpm_s : float
        QRS onset to T offset at 60 bpm, i.e. the subject's QTc.
    axis_factor : float
        Projection of the mean QRS vector on the lead, 0.3 (far off the lead axis) to 1 (along
        it). A lower value gave a deeper S at draw time and makes breathing, which rotates the
        heart, modulate R and S more strongly.
    t_polarity : int
        +1 (upright T) or -1 (inverted T, e.g. a lead placed like lead III).
    """

    p_amp_mV: float
    q_amp_mV: float
    r_amp_mV: float
    s_amp_mV: float
    t_amp_mV: float
    p_sigma_s: float
    t_sigma_s: float
    pr_interval_s: float
    qrs_width_s: float
    qt_at_60bpm_s: float
    axis_factor: float
    t_polarity: int


@dataclass(frozen=True)
class SyntheticRecording:
    """All parts of one synthetic recording, each sampled at ``fs_hz``.

    ``ecg_mV = clean_ecg_mV + baseline_mV + mains_mV + emg_mV``; the parts are kept so that tests
    can check each one against what it is meant to model.
    """

    fs_hz: float
    ecg_mV: np.ndarray
    clean_ecg_mV: np.ndarray
    baseline_mV: np.ndarray
    mains_mV: np.ndarray
    emg_mV: np.ndarray
    respiration_V: np.ndarray
    lung_volume: np.ndarray  # normalised, ~0 at end-expiration, ~1 at end-inspiration
    heart_rate_bpm: np.ndarray  # instantaneous rate that set the beat times
    r_peak_times_s: np.ndarray  # R peaks inside the recording


# Q/R/S layout as fractions of the QRS width, R peak at 0. Calibrated so that the span where the
# isolated complex exceeds 1 % of its peak is ``qrs_width_s`` to within about 5 %.
_QRS_ONSET_FRAC = -0.5
_Q_CENTER_FRAC, _Q_SIGMA_FRAC = -0.34, 0.08
_R_SIGMA_FRAC = 0.12
_S_CENTER_FRAC, _S_SIGMA_FRAC = 0.32, 0.09
_WAVE_EDGE_SIGMAS = 2.5  # a Gaussian wave's onset/offset, in sigmas from its centre


def draw_subject_morphology(rng: np.random.Generator) -> SubjectMorphology:
    """Draw one subject's beat shape from healthy-adult ranges.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same subject.

    Returns
    -------
    SubjectMorphology
        R 0.6-2.0 mV, S -0.05 to -0.6 mV, T 0.1-0.6 mV, QRS 75-105 ms, PR 120-200 ms,
        QTc 370-430 ms.
    """
    axis_factor = rng.uniform(0.3, 1.0)
    r_amp = rng.uniform(0.6, 2.0)
    # A QRS vector pointing away from the lead leaves a deeper S: the axis sets the R/S balance.
    s_amp = -(rng.uniform(0.05, 0.2) + (1.0 - axis_factor) * rng.uniform(0.2, 0.55))
    q_amp = -r_amp * rng.uniform(0.02, 0.15)  # septal q, well under the 25 % of R that is abnormal
    # T scales with R (T/R about 1/6 to 2/5 in healthy leads), so T never outgrows R.
    t_amp = float(np.clip(r_amp * rng.uniform(0.15, 0.4), 0.1, 0.6))
    # Inverted T is rare in a lead-II-like placement; kept so that polarity is a subject trait.
    t_polarity = -1 if rng.random() < 0.1 else 1
    return SubjectMorphology(
        p_amp_mV=float(rng.uniform(0.06, 0.25)),
        q_amp_mV=float(q_amp),
        r_amp_mV=float(r_amp),
        s_amp_mV=float(s_amp),
        t_amp_mV=float(t_amp),
        p_sigma_s=float(rng.uniform(0.016, 0.024)),
        t_sigma_s=float(rng.uniform(0.032, 0.048)),
        pr_interval_s=float(rng.uniform(0.12, 0.20)),
        qrs_width_s=float(rng.uniform(0.075, 0.105)),
        qt_at_60bpm_s=float(rng.uniform(0.37, 0.43)),
        axis_factor=float(axis_factor),
        t_polarity=t_polarity,
    )


def _check_condition(condition: str) -> None:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")


def _slow_sines(
    t_s: np.ndarray,
    rng: np.random.Generator,
    f_lo_hz: float,
    f_hi_hz: float,
    amplitude: float,
    n_terms: int = 3,
) -> np.ndarray:
    """A smooth random drift: a few sines whose amplitudes add up to ``amplitude`` (its bound)."""
    freqs = rng.uniform(f_lo_hz, f_hi_hz, n_terms)
    phases = rng.uniform(0.0, 2 * np.pi, n_terms)
    weights = rng.uniform(0.5, 1.0, n_terms)
    weights *= amplitude / weights.sum()
    return (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t_s + phases[:, None])).sum(0)


def lung_volume(
    condition: str, n_samples: int, fs_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """Normalised lung volume: 0 at end-expiration, about 1 at end-inspiration.

    Rest breathes at 12-20 breaths/min, recovery from running at 20-30 (falling), deep breathing
    is paced at exactly 6/min with 5 s in and 5 s out. Breath depth varies a little per breath.
    """
    _check_condition(condition)
    t = np.arange(n_samples) / fs_hz
    if condition == "rest":
        rate = rng.uniform(12.5, 17.5) + _slow_sines(t, rng, 0.005, 0.03, 1.5)
        rate, ie_frac, depth_sd = np.clip(rate, 12.0, 20.0), 0.4, 0.1
    elif condition == "exercise":
        start, end = rng.uniform(26.0, 30.0), rng.uniform(20.0, 23.0)
        tau_s = rng.uniform(60.0, 120.0)
        rate = end + (start - end) * np.exp(-t / tau_s) + _slow_sines(t, rng, 0.005, 0.03, 0.8)
        rate, ie_frac, depth_sd = np.clip(rate, 20.0, 30.0), 0.45, 0.1
    else:
        rate, ie_frac, depth_sd = np.full(n_samples, 6.0), 0.5, 0.05
    # Breath phase in cycles; the fractional part is warped so inspiration takes ie_frac of a
    # breath (spontaneous breathing inhales faster than it exhales; paced breathing is 1:1).
    phase = rng.uniform(0.0, 1.0) + np.cumsum(rate / 60.0) / fs_hz
    cycle = np.floor(phase).astype(np.int64)
    frac = phase - cycle
    u = np.where(
        frac < ie_frac, 0.5 * frac / ie_frac, 0.5 + 0.5 * (frac - ie_frac) / (1.0 - ie_frac)
    )
    depth = np.clip(1.0 + depth_sd * rng.standard_normal(cycle[-1] - cycle[0] + 1), 0.6, 1.4)
    # The shape is 0 at every cycle boundary, so per-breath depth changes stay continuous.
    return depth[cycle - cycle[0]] * 0.5 * (1.0 - np.cos(2 * np.pi * u))


def respiration_belt_V(
    volume: np.ndarray, condition: str, fs_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """A respiration-belt (RSP100C-like) signal in Volts, rising on inspiration, about 0.4-2 V."""
    _check_condition(condition)
    t = np.arange(len(volume)) / fs_hz
    tidal_V = {"rest": (0.25, 0.45), "exercise": (0.45, 0.7), "deep_breathing": (0.75, 1.0)}[
        condition
    ]
    offset_V = rng.uniform(0.4, 0.8)
    belt = offset_V + rng.uniform(*tidal_V) * volume + _slow_sines(t, rng, 0.003, 0.02, 0.05)
    return belt + 0.003 * rng.standard_normal(len(volume))


def heart_rate_bpm(
    condition: str, volume: np.ndarray, fs_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """Instantaneous heart rate per sample, coupled to breathing through ``volume``.

    rest: mean 62-72 bpm, RSA 1.5-3.5 bpm, a Mayer wave near 0.1 Hz and a slow drift.
    exercise: 112-138 bpm at the start, exponential recovery (tau 45-90 s) towards 80-92 bpm.
    deep_breathing: mean 67-78 bpm, RSA 8-15 bpm in phase with lung volume (rate rises on
    inspiration, peaks at end-inspiration), the deep-breathing test's E/I response.
    """
    _check_condition(condition)
    t = np.arange(len(volume)) / fs_hz
    breath = 2.0 * volume - 1.0  # about -1 at end-expiration, +1 at end-inspiration
    drift = _slow_sines(t, rng, 0.003, 0.03, 1.0)
    if condition == "rest":
        mean, rsa = rng.uniform(62.0, 72.0), rng.uniform(1.5, 3.5)
        mayer = rng.uniform(0.5, 1.5) * np.sin(
            2 * np.pi * rng.uniform(0.085, 0.115) * t + rng.uniform(0, 2 * np.pi)
        )
        return mean + rsa * breath + mayer + drift
    if condition == "exercise":
        start, end = rng.uniform(112.0, 138.0), rng.uniform(80.0, 92.0)
        tau_s = rng.uniform(45.0, 90.0)
        # Vagal tone is still withdrawn in early recovery, hence a small RSA.
        return end + (start - end) * np.exp(-t / tau_s) + rng.uniform(0.5, 1.5) * breath + drift
    return rng.uniform(67.0, 78.0) + rng.uniform(8.0, 15.0) * breath + drift


def r_peak_times_s(
    hr_bpm: np.ndarray, fs_hz: float, rng: np.random.Generator, *, jitter_s: float = 0.003
) -> np.ndarray:
    """Beat times from an instantaneous rate, including one beat before and after the record.

    A beat fires each time the integral of the rate (in beats) crosses an integer, as in an
    integrate-and-fire model of the sinus node. The extra edge beats let the waves of beats just
    outside the recording (a T wave before the first R, a P wave after the last) appear in it.
    """
    n = len(hr_bpm)
    t = np.arange(n) / fs_hz
    phase = rng.uniform(0.0, 1.0) + np.concatenate([[0.0], np.cumsum(hr_bpm[:-1])]) / (60.0 * fs_hz)
    targets = np.arange(np.floor(phase[0]) - 1, np.ceil(phase[-1]) + 2)
    times = np.interp(targets, phase, t)
    # Outside the recording, extrapolate with the rate at the edge.
    before, after = targets < phase[0], targets > phase[-1]
    times[before] = t[0] - (phase[0] - targets[before]) * 60.0 / hr_bpm[0]
    times[after] = t[-1] + (targets[after] - phase[-1]) * 60.0 / hr_bpm[-1]
    return times + jitter_s * rng.standard_normal(len(times))


def _sum_gaussians(
    n_samples: int, fs_hz: float, centers_s: np.ndarray, sigmas_s: np.ndarray, amps: np.ndarray
) -> np.ndarray:
    """Add one Gaussian per beat into an ``n_samples`` signal, all beats at once."""
    half = int(np.ceil(4.0 * sigmas_s.max() * fs_hz)) + 1
    idx = np.rint(centers_s * fs_hz).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    z = (idx / fs_hz - centers_s[:, None]) / sigmas_s[:, None]
    values = amps[:, None] * np.exp(-0.5 * z * z)
    keep = (idx >= 0) & (idx < n_samples)
    return np.bincount(idx[keep], weights=values[keep], minlength=n_samples)


def synthesise_clean_ecg_mV(
    morphology: SubjectMorphology,
    r_times_s: np.ndarray,
    hr_at_beats_bpm: np.ndarray,
    volume_at_beats: np.ndarray,
    n_samples: int,
    fs_hz: float,
    *,
    sympathetic_drive: np.ndarray | None = None,
) -> np.ndarray:
    """Noise-free ECG in mV: five Gaussians per beat, shaped by the rate and the breath phase.

    Parameters
    ----------
    morphology : SubjectMorphology
        The subject's beat shape at 60 bpm.
    r_times_s, hr_at_beats_bpm, volume_at_beats : np.ndarray
        Per beat: R-peak time, heart rate and normalised lung volume.
    n_samples, fs_hz : int, float
        Output length and sampling rate.
    sympathetic_drive : np.ndarray, optional
        Per beat, 0 (none) to 1 (early recovery from running): enlarges P and T. Defaults to 0;
        a fast rate alone (e.g. on deep inspiration, which is vagal) does not change them.
    """
    m = morphology
    rr_s = 60.0 / np.asarray(hr_at_beats_bpm, dtype=float)
    # Repolarisation shortens with rate (Fridericia, QT ~ RR^(1/3)); the T wave narrows with it.
    qt_s = m.qt_at_60bpm_s * np.cbrt(rr_s)
    t_sigma = m.t_sigma_s * qt_s / m.qt_at_60bpm_s
    pr_s = m.pr_interval_s * rr_s**0.15  # AV conduction is faster at faster rates
    drive = (
        np.zeros_like(rr_s)
        if sympathetic_drive is None
        else np.asarray(sympathetic_drive, dtype=float)
    )
    # Breathing rotates the heart, hence the axis: R grows as S shrinks and vice versa, more so
    # when the QRS vector is already off the lead axis.
    tilt = (0.1 + 0.2 * (1.0 - m.axis_factor)) * (np.asarray(volume_at_beats) - 0.5)
    w = m.qrs_width_s
    onset = r_times_s + _QRS_ONSET_FRAC * w
    ones = np.ones_like(r_times_s)
    waves = [  # (centre, sigma, amplitude) per beat
        (
            onset - pr_s + _WAVE_EDGE_SIGMAS * m.p_sigma_s,
            m.p_sigma_s * ones,
            m.p_amp_mV * (1.0 + 0.3 * drive),
        ),
        (r_times_s + _Q_CENTER_FRAC * w, _Q_SIGMA_FRAC * w * ones, m.q_amp_mV * ones),
        (r_times_s, _R_SIGMA_FRAC * w * ones, m.r_amp_mV * (1.0 + tilt)),
        (r_times_s + _S_CENTER_FRAC * w, _S_SIGMA_FRAC * w * ones, m.s_amp_mV * (1.0 - tilt)),
        (
            onset + qt_s - _WAVE_EDGE_SIGMAS * t_sigma,
            t_sigma,
            m.t_polarity * m.t_amp_mV * (1.0 + 0.35 * drive),
        ),
    ]
    ecg = np.zeros(n_samples)
    for centers, sigmas, amps in waves:
        ecg += _sum_gaussians(n_samples, fs_hz, centers, sigmas, amps)
    return ecg


def baseline_wander_mV(
    volume: np.ndarray, fs_hz: float, rng: np.random.Generator, *, resp_mV: float, drift_mV: float
) -> np.ndarray:
    """Breathing-linked wander (chest movement under the electrodes) plus a slow electrode drift."""
    t = np.arange(len(volume)) / fs_hz
    return resp_mV * 2.0 * (volume - volume.mean()) + _slow_sines(t, rng, 0.01, 0.08, drift_mV)


def mains_interference_mV(
    n_samples: int, fs_hz: float, mains_hz: float, rng: np.random.Generator, *, amplitude_mV: float
) -> np.ndarray:
    """Mains hum at ``mains_hz`` and its 3rd harmonic, with a slow +-10 % amplitude change.

    Components at or above Nyquist are left out, as the acquisition's anti-alias filter would.
    """
    t = np.arange(n_samples) / fs_hz
    envelope = 1.0 + _slow_sines(t, rng, 0.01, 0.05, 0.1, n_terms=2)
    hum = np.zeros(n_samples)
    for harmonic, rel in ((1, 1.0), (3, rng.uniform(0.05, 0.25))):
        phase = rng.uniform(0.0, 2 * np.pi)
        if harmonic * mains_hz < fs_hz / 2:
            hum += rel * np.sin(2 * np.pi * harmonic * mains_hz * t + phase)
    return amplitude_mV * envelope * hum


def emg_noise_mV(
    n_samples: int,
    fs_hz: float,
    rng: np.random.Generator,
    *,
    rms_mV: float,
    envelope: np.ndarray | None = None,
    band_hz: tuple[float, float] = (20.0, 450.0),
) -> np.ndarray:
    """Muscle noise: white noise band-limited to the surface-EMG band, with an optional envelope."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1.0 / fs_hz)
    spectrum[(freqs < band_hz[0]) | (freqs > min(band_hz[1], 0.45 * fs_hz))] = 0.0
    noise = np.fft.irfft(spectrum, n_samples)
    if envelope is not None:
        noise *= envelope
    rms = np.sqrt(np.mean(noise * noise))
    return noise * (rms_mV / rms) if rms > 0 else noise


# Per-condition noise ranges, mV: respiratory wander, electrode drift, EMG rms. Exercise has
# sweaty skin and heavy breathing; deep breathing recruits accessory respiratory muscles.
_NOISE_MV = {
    "rest": ((0.03, 0.1), (0.05, 0.12), (0.004, 0.012)),
    "exercise": ((0.04, 0.1), (0.06, 0.14), (0.02, 0.05)),
    "deep_breathing": ((0.05, 0.15), (0.05, 0.12), (0.006, 0.015)),
}


def synthesise_components(
    morphology: SubjectMorphology,
    condition: str,
    duration_s: float,
    fs_hz: float,
    rng: np.random.Generator,
    *,
    mains_hz: float = 50.0,
) -> SyntheticRecording:
    """Synthesise one recording and keep its parts (see :func:`synthesise_recording`)."""
    _check_condition(condition)
    n = round(duration_s * fs_hz)
    if fs_hz <= 0 or n < 2:
        raise ValueError(f"need fs_hz > 0 and at least 2 samples, got {duration_s=} {fs_hz=}")
    if mains_hz <= 0:
        raise ValueError(f"mains_hz must be positive, got {mains_hz}")
    # Independent streams, so the clean ECG does not depend on how the noise is drawn.
    breath_rng, heart_rng, noise_rng = rng.spawn(3)
    volume = lung_volume(condition, n, fs_hz, breath_rng)
    respiration = respiration_belt_V(volume, condition, fs_hz, breath_rng)
    hr = heart_rate_bpm(condition, volume, fs_hz, heart_rng)
    beats = r_peak_times_s(hr, fs_hz, heart_rng)
    t = np.arange(n) / fs_hz
    hr_beats = np.interp(beats, t, hr)
    # Early recovery is sympathetic: P and T are larger while the rate is still high (0 at
    # <= 70 bpm, 1 at >= 130 bpm). At rest and in deep breathing the rate swings are vagal.
    drive = np.clip((hr_beats - 70.0) / 60.0, 0.0, 1.0) * (condition == "exercise")
    clean = synthesise_clean_ecg_mV(
        morphology, beats, hr_beats, np.interp(beats, t, volume), n, fs_hz, sympathetic_drive=drive
    )
    (resp_lo, resp_hi), (drift_lo, drift_hi), (emg_lo, emg_hi) = _NOISE_MV[condition]
    resp_mV, drift_mV = noise_rng.uniform(resp_lo, resp_hi), noise_rng.uniform(drift_lo, drift_hi)
    baseline = baseline_wander_mV(volume, fs_hz, noise_rng, resp_mV=resp_mV, drift_mV=drift_mV)
    mains = mains_interference_mV(
        n, fs_hz, mains_hz, noise_rng, amplitude_mV=noise_rng.uniform(0.02, 0.1)
    )
    # Breathing effort adds muscle activity on inspiration, except in quiet resting breathing.
    emg_envelope = 1.0 + (0.0 if condition == "rest" else 0.6) * volume
    emg = emg_noise_mV(
        n, fs_hz, noise_rng, rms_mV=noise_rng.uniform(emg_lo, emg_hi), envelope=emg_envelope
    )
    inside = (beats >= 0.0) & (beats < n / fs_hz)
    return SyntheticRecording(
        fs_hz=float(fs_hz),
        ecg_mV=clean + baseline + mains + emg,
        clean_ecg_mV=clean,
        baseline_mV=baseline,
        mains_mV=mains,
        emg_mV=emg,
        respiration_V=respiration,
        lung_volume=volume,
        heart_rate_bpm=hr,
        r_peak_times_s=beats[inside],
    )


def synthesise_recording(
    morphology: SubjectMorphology,
    condition: str,
    duration_s: float,
    fs_hz: float,
    rng: np.random.Generator,
    *,
    mains_hz: float = 50.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one ECG recording with its respiration signal.

    Parameters
    ----------
    morphology : SubjectMorphology
        The subject's beat shape (:func:`draw_subject_morphology`).
    condition : {"rest", "exercise", "deep_breathing"}
        Sets the heart-rate trajectory, breathing pattern and noise levels.
    duration_s, fs_hz : float
        Length and sampling rate; both outputs have ``round(duration_s * fs_hz)`` samples.
    rng : numpy.random.Generator
        Source of all randomness; the same state gives identical arrays.
    mains_hz : float, default 50.0
        Mains frequency of the interference (60.0 in the Americas).

    Returns
    -------
    ecg_mV : np.ndarray
        ECG in mV, with baseline wander, mains interference and EMG noise.
    respiration_V : np.ndarray
        Respiration-belt signal in Volts, rising on inspiration.

    Raises
    ------
    ValueError
        For an unknown condition, a non-positive rate or mains frequency, or under 2 samples.
    """
    parts = synthesise_components(morphology, condition, duration_s, fs_hz, rng, mains_hz=mains_hz)
    return parts.ecg_mV, parts.respiration_V
