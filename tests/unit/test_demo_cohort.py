"""The demo cohort on disk, read back with the real bioread (no mocks)."""

from __future__ import annotations

from pathlib import Path

import bioread
import numpy as np
import pytest

from ecg_pipeline.cohort.demo import (
    ECG_CHANNEL_NAME,
    ECG_MV_PER_COUNT,
    RESP_CHANNEL_NAME,
    RESP_V_PER_COUNT,
    demo_file_name,
    synthesise_demo_recording,
    write_demo_cohort,
)

SMALL = {"n_subjects": 2, "duration_s": 20.0, "fs_hz": 1000.0, "resp_divider": 10, "seed": 0}
NAMES = [
    "S01_rest.acq",
    "S01_exercise.acq",
    "S01_deep_breathing.acq",
    "S02_rest.acq",
    "S02_exercise.acq",
    "S02_deep_breathing.acq",
]


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> list[Path]:
    return write_demo_cohort(tmp_path_factory.mktemp("cohort"), **SMALL)


def test_file_names():
    assert demo_file_name(1, "rest") == "S01_rest.acq"
    assert demo_file_name(15, "deep_breathing") == "S15_deep_breathing.acq"
    assert demo_file_name("S07", "exercise") == "S07_exercise.acq"
    assert demo_file_name(123, "rest") == "S123_rest.acq"
    for bad in [(0, "rest"), (1, "walk"), ("7", "rest"), (True, "rest")]:
        with pytest.raises(ValueError):
            demo_file_name(*bad)


def test_writes_one_file_per_subject_and_condition(small_cohort):
    assert [p.name for p in small_cohort] == NAMES
    folder = small_cohort[0].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no temp files left


def test_channels_names_units_and_rates(small_cohort):
    for path in small_cohort:
        data = bioread.read(str(path))
        assert data.samples_per_second == 1000.0
        ecg, resp = data.channels
        assert (ecg.name, ecg.units, ecg.samples_per_second) == (ECG_CHANNEL_NAME, "mV", 1000.0)
        assert (resp.name, resp.units, resp.samples_per_second) == (
            RESP_CHANNEL_NAME,
            "Volts",
            100.0,
        )
        assert len(ecg.data) == 20_000 and len(resp.data) == 2_000


def test_values_match_the_synthesis_within_int16_quantisation(small_cohort):
    assert ECG_MV_PER_COUNT == 10 / 32768 / 1000 * 1000 == 3.0517578125e-04  # ECG100C, gain 1000
    for path in small_cohort:
        subject, condition = int(path.stem[1:3]), path.stem[4:]
        ecg_mV, resp_V = synthesise_demo_recording(
            subject, condition, duration_s=20.0, fs_hz=1000.0
        )
        data = bioread.read(str(path))
        np.testing.assert_allclose(
            data.channels[0].data, ecg_mV, rtol=0, atol=ECG_MV_PER_COUNT / 2 * 1.001
        )
        np.testing.assert_allclose(
            data.channels[1].data, resp_V[::10], rtol=0, atol=RESP_V_PER_COUNT / 2 * 1.001
        )
        # Stored as counts: every value is a whole number of counts.
        counts = data.channels[0].data / ECG_MV_PER_COUNT
        np.testing.assert_allclose(counts, np.rint(counts), atol=1e-6)
        assert np.ptp(ecg_mV) > 0.5  # a real ECG, not a flat line


def test_subjects_and_conditions_are_different_recordings(small_cohort):
    ecgs = [bioread.read(str(p)).channels[0].data for p in small_cohort]
    for i in range(len(ecgs)):
        for j in range(i + 1, len(ecgs)):
            assert not np.allclose(ecgs[i], ecgs[j]), (small_cohort[i].name, small_cohort[j].name)


def test_rewrite_is_byte_identical(small_cohort, tmp_path):
    again = write_demo_cohort(tmp_path, **SMALL)
    for a, b in zip(small_cohort, again):
        assert a.read_bytes() == b.read_bytes(), a.name
    # Rewriting in place replaces the files with the same bytes.
    before = [p.read_bytes() for p in again]
    write_demo_cohort(tmp_path, **SMALL)
    assert [p.read_bytes() for p in again] == before


def test_one_file_alone_equals_the_same_file_in_the_cohort(small_cohort, tmp_path):
    alone = write_demo_cohort(
        tmp_path, **{**SMALL, "n_subjects": 2}, conditions=("deep_breathing",)
    )
    assert [p.name for p in alone] == ["S01_deep_breathing.acq", "S02_deep_breathing.acq"]
    by_name = {p.name: p for p in small_cohort}
    for p in alone:
        assert p.read_bytes() == by_name[p.name].read_bytes(), p.name


def test_other_seed_other_bytes(small_cohort, tmp_path):
    other = write_demo_cohort(tmp_path, **{**SMALL, "n_subjects": 1, "seed": 1})
    assert other[0].read_bytes() != small_cohort[0].read_bytes()


def test_rejects_bad_arguments_before_writing(tmp_path):
    for bad in [
        {"conditions": ("rest", "walk")},
        {"n_subjects": 0},
        {"seed": -1},
        {"resp_divider": 0},
        {"conditions": ()},
    ]:
        with pytest.raises(ValueError):
            write_demo_cohort(tmp_path / "out", **{**SMALL, **bad})
        assert not any((tmp_path / "out").glob("*.acq")), bad
