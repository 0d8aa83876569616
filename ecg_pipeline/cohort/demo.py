"""Write the synthetic demo cohort as real AcqKnowledge ``.acq`` files.

One file per subject x condition, named ``S01_rest.acq`` (or, for the event-marker layout, one
file per subject, ``S01.acq``, its conditions one after another), laid out as the lab's BIOPAC MP160
writes them: channel 0 the ECG from an ECG100C amplifier (mV, int16), channel 1 a respiration
belt through an RSP100C (Volts, int16, at a lower rate).

Every file's randomness derives from ``(seed, subject, condition)`` alone through
``numpy.random.SeedSequence``, so a file written on its own has the same bytes as the same file
written within the whole cohort, and a cohort with more subjects or conditions leaves the
existing files unchanged. Demo data only: never evidence of accuracy on real recordings.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecg_pipeline.cohort.synthetic import (
    CONDITIONS,
    SubjectMorphology,
    draw_subject_morphology,
    synthesise_components,
)
from ecg_pipeline.config import DEFAULT_MAINS_HZ, DemoSettings, StudyConfig
from ecg_pipeline.io.acq_writer import AcqChannel, AcqMarker, write_acq

# The defaults of every demo function: the configuration's (one source of truth).
_DEMO = DemoSettings()

ECG_CHANNEL_NAME = "ECG - ECG100C"
RESP_CHANNEL_NAME = "RESP - RSP100C"

# The MP160 digitises +-10 V in 16 bits. The ECG100C's gain maps electrode millivolts onto that
# range; at gain 1000 it covers +-10 mV with 0.305 uV per count, four times the largest synthetic
# excursion (R <= 2.3 mV with respiratory axis swing, wander <= 0.4 mV, noise), so nothing clips.
# Gain 2000 (+-5 mV) would also fit; 1000 is the amplifier's usual setting for surface ECG.
MP160_RANGE_V = 10.0
ECG100C_GAIN = 1000
ECG_MV_PER_COUNT = MP160_RANGE_V / 32768 / ECG100C_GAIN * 1000.0  # 3.0517578125e-04 mV
# The RSP100C's output is what the MP160 sees, so its belt signal is stored at the input scale.
RESP_V_PER_COUNT = MP160_RANGE_V / 32768  # 3.0517578125e-04 V

_INT16_MIN, _INT16_MAX = -32768, 32767


def _subject_index(subject: int) -> int:
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise ValueError(f"subject index must be an int >= 1, not {subject!r}")
    return int(subject)


def subject_id(subject: int | str) -> str:
    """``"S01"`` for subject 1 (1-based, zero-padded to 2 digits); an ``"S.."`` id is kept."""
    if isinstance(subject, str):
        if len(subject) < 2 or subject[0] != "S" or not subject[1:].isdigit():
            raise ValueError(f"subject id must look like 'S01', not {subject!r}")
        return subject
    return f"S{_subject_index(subject):02d}"


def demo_file_name(subject: int | str, condition: str) -> str:
    """File name of one demo recording, e.g. ``demo_file_name(1, "rest") == "S01_rest.acq"``."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")
    return f"{subject_id(subject)}_{condition}.acq"


def _seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, not {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=key)


def demo_subject_morphology(subject_index: int, *, seed: int = 0) -> SubjectMorphology:
    """The beat shape of subject ``subject_index`` (1-based), shared by all its conditions."""
    key = (_subject_index(subject_index), 0)
    return draw_subject_morphology(np.random.default_rng(_seed_sequence(seed, *key)))


def synthesise_demo_recording(
    subject_index: int,
    condition: str,
    *,
    duration_s: float = _DEMO.duration_s,
    fs_hz: float = _DEMO.fs_hz,
    mains_hz: float = DEFAULT_MAINS_HZ,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The (ecg_mV, respiration_V) that the demo file of this subject and condition holds.

    Both are at ``fs_hz`` and before int16 quantisation; the file keeps every
    ``resp_divider``-th respiration sample, ``len // resp_divider`` of them.
    """
    morphology = demo_subject_morphology(subject_index, seed=seed)
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")
    # crc32 of the name, not its position in CONDITIONS or Python's salted hash(): stable
    # across runs, platforms and any reordering of the condition list.
    key = (_subject_index(subject_index), 1, zlib.crc32(condition.encode("ascii")))
    rng = np.random.default_rng(_seed_sequence(seed, *key))
    parts = synthesise_components(morphology, condition, duration_s, fs_hz, rng, mains_hz=mains_hz)
    return parts.ecg_mV, parts.respiration_V


def _int16_range(values: np.ndarray, per_count: float) -> np.ndarray:
    # An amplifier saturates at the ends of its range rather than wrapping around.
    return np.clip(values, _INT16_MIN * per_count, _INT16_MAX * per_count)


def _check_divider(resp_divider: int) -> None:
    if (
        isinstance(resp_divider, bool)
        or not isinstance(resp_divider, (int, np.integer))
        or resp_divider < 1
    ):
        raise ValueError(f"resp_divider must be an int >= 1, not {resp_divider!r}")


def write_demo_recording(
    out_dir: str | os.PathLike,
    subject_index: int,
    condition: str,
    *,
    duration_s: float = _DEMO.duration_s,
    fs_hz: float = _DEMO.fs_hz,
    resp_divider: int = _DEMO.resp_divider,
    mains_hz: float = DEFAULT_MAINS_HZ,
    seed: int = _DEMO.seed,
) -> Path:
    """Write one demo file into ``out_dir`` (atomically) and return its path."""
    _check_divider(resp_divider)
    path = Path(out_dir) / demo_file_name(subject_index, condition)
    ecg_mV, resp_V = synthesise_demo_recording(
        subject_index, condition, duration_s=duration_s, fs_hz=fs_hz, mains_hz=mains_hz, seed=seed
    )
    return write_acq(path, _demo_channels(ecg_mV, resp_V, resp_divider), fs_hz)


def _demo_channels(ecg_mV: np.ndarray, resp_V: np.ndarray, resp_divider: int) -> list:
    # Keeping every n-th sample needs no anti-alias filter: breathing is below 1 Hz and the
    # belt's white noise stays white at the lower rate. AcqKnowledge stores floor(ticks / divider)
    # samples of a divided channel (at least one here, as a file needs one).
    resp_kept = resp_V[::resp_divider][: max(1, len(resp_V) // resp_divider)]
    return [
        AcqChannel(
            ECG_CHANNEL_NAME, "mV", _int16_range(ecg_mV, ECG_MV_PER_COUNT), scale=ECG_MV_PER_COUNT
        ),
        AcqChannel(
            RESP_CHANNEL_NAME,
            "Volts",
            _int16_range(resp_kept, RESP_V_PER_COUNT),
            divider=int(resp_divider),
            scale=RESP_V_PER_COUNT,
        ),
    ]


def write_demo_marker_recording(
    out_dir: str | os.PathLike,
    subject_index: int,
    phases: Sequence[tuple[str, str]],
    *,
    duration_s: float = _DEMO.duration_s,
    fs_hz: float = _DEMO.fs_hz,
    resp_divider: int = _DEMO.resp_divider,
    mains_hz: float = DEFAULT_MAINS_HZ,
    seed: int = _DEMO.seed,
) -> Path:
    """Write one subject's whole protocol as one file, ``S01.acq``, with an event marker at the
    start of each phase, as a lab records it in one session.

    Parameters
    ----------
    phases : sequence of (condition, marker text)
        In recording order, e.g. ``[("rest", "Rest"), ("exercise", "Post run")]``. Each phase
        holds exactly the signal of that subject's per-condition demo file (``duration_s`` long),
        so both layouts store the same windows.

    Other parameters are those of :func:`write_demo_recording`.
    """
    _check_divider(resp_divider)
    ecg, resp, markers, start = [], [], [], 0
    for condition, text in phases:
        ecg_mV, resp_V = synthesise_demo_recording(
            subject_index,
            condition,
            duration_s=duration_s,
            fs_hz=fs_hz,
            mains_hz=mains_hz,
            seed=seed,
        )
        markers.append(AcqMarker(start, text))
        ecg.append(ecg_mV)
        resp.append(resp_V[: len(ecg_mV)])
        start += len(ecg_mV)
    path = Path(out_dir) / f"{subject_id(subject_index)}.acq"
    channels = _demo_channels(np.concatenate(ecg), np.concatenate(resp), resp_divider)
    return write_acq(path, channels, fs_hz, markers=markers)


def write_study_cohort(out_dir: str | os.PathLike, config: StudyConfig) -> list[Path]:
    """The demo cohort a study's ``[demo]`` table describes, for its conditions.

    What ``make run``, ``ecg-pipeline demo`` and the benchmarks write: one file per subject x
    condition, or with ``[demo] layout = "one_file_with_markers"`` one file per subject whose
    phases carry the first marker text that ``[dataset.markers] phases`` gives each condition.
    """
    d = config.demo
    if d.layout == "one_file_with_markers":
        text_of: dict[str, str] = {}
        for text, condition in config.dataset.markers.phases.items():
            text_of.setdefault(condition, text)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return [
            write_demo_marker_recording(
                out,
                subject,
                [(c, text_of[c]) for c in config.dataset.conditions],
                duration_s=d.duration_s,
                fs_hz=d.fs_hz,
                resp_divider=d.resp_divider,
                mains_hz=config.demo_mains_hz,
                seed=d.seed,
            )
            for subject in range(1, d.n_subjects + 1)
        ]
    return write_demo_cohort(
        out_dir,
        n_subjects=d.n_subjects,
        conditions=config.dataset.conditions,
        duration_s=d.duration_s,
        fs_hz=d.fs_hz,
        resp_divider=d.resp_divider,
        mains_hz=config.demo_mains_hz,
        seed=d.seed,
    )


def write_demo_cohort(
    out_dir: str | os.PathLike,
    *,
    n_subjects: int = _DEMO.n_subjects,
    conditions: Sequence[str] = CONDITIONS,
    duration_s: float = _DEMO.duration_s,
    fs_hz: float = _DEMO.fs_hz,
    resp_divider: int = _DEMO.resp_divider,
    mains_hz: float = DEFAULT_MAINS_HZ,
    seed: int = _DEMO.seed,
) -> list[Path]:
    """Write ``n_subjects x len(conditions)`` demo files into ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Target folder, created if missing. Existing files of the same names are replaced.
    n_subjects : int, default ``[demo] n_subjects``
        Subjects ``S01`` to ``S{n_subjects:02d}``.
    conditions : sequence of str, default ("rest", "exercise", "deep_breathing")
        Conditions to write per subject; repeats are written once.
    duration_s, fs_hz : float, default ``[demo] duration_s``, ``fs_hz``
        Recording length and ECG (base) sampling rate.
    resp_divider : int, default ``[demo] resp_divider``
        The respiration channel runs at ``fs_hz / resp_divider``.
    mains_hz : float, default ``DEFAULT_MAINS_HZ`` (50 Hz)
        Mains interference frequency.
    seed : int, default ``[demo] seed``
        Cohort seed; each file depends only on (seed, subject, condition).

    Returns
    -------
    list of Path
        The files written, subject by subject, conditions in the given order.

    Raises
    ------
    ValueError
        For an unknown condition, ``n_subjects < 1`` or an invalid seed, divider or rate;
        checked before any file is written.
    """
    if (
        isinstance(n_subjects, bool)
        or not isinstance(n_subjects, (int, np.integer))
        or n_subjects < 1
    ):
        raise ValueError(f"n_subjects must be an int >= 1, not {n_subjects!r}")
    conditions = list(dict.fromkeys([conditions] if isinstance(conditions, str) else conditions))
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions:
        raise ValueError(
            f"unknown or no conditions {unknown or conditions}; expected from {CONDITIONS}"
        )
    _seed_sequence(seed)  # validate before writing anything
    _check_divider(resp_divider)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_demo_recording(
            out,
            subject,
            condition,
            duration_s=duration_s,
            fs_hz=fs_hz,
            resp_divider=resp_divider,
            mains_hz=mains_hz,
            seed=seed,
        )
        for subject in range(1, int(n_subjects) + 1)
        for condition in conditions
    ]
