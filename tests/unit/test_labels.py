"""File-name and manifest labels, their pandera contract, and discovery with a settle time."""

import os
import time

import pytest

from ecg_pipeline.cohort.labels import (
    Labels,
    discover,
    label_files,
    labels_from_name,
    read_manifest,
    validate_labels,
)
from ecg_pipeline.errors import FormatError, MetadataError, StillBeingWrittenError


def touch(path, age_s=60.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_name_split_at_first_underscore(tmp_path, config):
    lab = labels_from_name(tmp_path / "S07_deep_breathing.acq", config)
    assert (lab.subject, lab.condition, lab.session) == ("S07", "deep_breathing", None)


@pytest.mark.parametrize("name", ["S07.acq", "_rest.acq", "S07_.acq"])
def test_name_without_both_parts_is_unknown_subject_or_condition(tmp_path, config, name):
    with pytest.raises(MetadataError, match="unknown subject or condition.*<subject>_<condition>"):
        labels_from_name(tmp_path / name, config)


def test_unknown_condition_names_file_and_field(tmp_path, config):
    labels = [
        Labels(str(tmp_path / "S01_rest.acq"), "S01", "rest"),
        Labels(str(tmp_path / "S01_jogging.acq"), "S01", "jogging"),
    ]
    ok, errors = validate_labels(labels, config)
    assert [lab.condition for lab in ok] == ["rest"]
    (err,) = errors
    assert err.path.endswith("S01_jogging.acq")
    assert "field 'condition' = 'jogging'" in err.reason
    assert "allowed conditions: rest, exercise, deep_breathing" in err.reason


def test_subject_outside_the_configured_list_is_refused(tmp_path, config):
    config = config.with_overrides({"dataset.subjects": ("S01", "S02")})
    labels = [Labels(str(tmp_path / "S03_rest.acq"), "S03", "rest")]
    ok, (err,) = validate_labels(labels, config)
    assert not ok and "field 'subject' = 'S03'" in err.reason


def test_subject_with_bad_characters_is_refused(tmp_path, config):
    labels = [Labels(str(tmp_path / "x.acq"), "S 01/", "rest")]
    _, (err,) = validate_labels(labels, config)
    assert "field 'subject'" in err.reason


def test_manifest_labels_win_and_keep_leading_zeros(tmp_path, config):
    rec = touch(tmp_path / "in" / "recording-a.acq")
    (tmp_path / "in" / "manifest.csv").write_text(
        "file,subject,condition,session,date\nrecording-a.acq,007,exercise,2,2026-01-05\n"
    )
    manifest = read_manifest(tmp_path / "in" / "manifest.csv")
    (lab,), errors = label_files([rec], config, manifest)
    assert not errors
    assert (lab.subject, lab.condition, lab.session, lab.date) == (
        "007",
        "exercise",
        "2",
        "2026-01-05",
    )


def test_file_missing_from_manifest_is_refused(tmp_path, config):
    rec = touch(tmp_path / "S01_rest.acq")
    (tmp_path / "manifest.csv").write_text("file,subject,condition\nother.acq,S02,rest\n")
    _, (err, missing) = label_files([rec], config, read_manifest(tmp_path / "manifest.csv"))
    assert isinstance(err, MetadataError) and "not listed in the manifest" in err.reason
    assert missing.path == str(tmp_path / "other.acq")
    assert "listed in the manifest, but no such file" in missing.reason


def test_manifest_with_extra_columns_bom_crlf_and_backslashes(tmp_path, config):
    rec = touch(tmp_path / "day 1" / "Über.acq")
    (tmp_path / "manifest.csv").write_bytes(
        "\ufefffile,subject,condition,notes,age\r\nday 1\\Über.acq,S01,rest,ok,31\r\n".encode()
    )
    manifest = read_manifest(tmp_path / "manifest.csv")
    # the labels, and the file cell as written (to refuse '..' and absolute paths by it)
    assert list(manifest.columns) == [
        "file",
        "subject",
        "condition",
        "session",
        "date",
        "listed_as",
    ]
    assert manifest["listed_as"].tolist() == ["day 1\\Über.acq"]
    (lab,), errors = label_files([rec.resolve()], config, manifest)
    assert not errors and (lab.subject, lab.condition) == ("S01", "rest")


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,subject\na.acq,S01\n", r"lacks column\(s\) \['condition'\]"),
        ("file,subject,condition\na.acq,S01,rest\na.acq,S02,rest\n", "more than once"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(tmp_path, text, message):
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(FormatError, match=message):
        read_manifest(tmp_path / "manifest.csv")


def test_bad_date_in_manifest_is_a_field_error(tmp_path, config):
    labels = [Labels(str(tmp_path / "a.acq"), "S01", "rest", None, "05.01.2026")]
    _, (err,) = validate_labels(labels, config)
    assert "field 'date'" in err.reason


def test_discover_defers_files_inside_the_settle_time(tmp_path, config):
    config = config.with_overrides({"discovery.settle_s": 5.0})
    old = touch(tmp_path / "S01_rest.acq", age_s=60)
    new = touch(tmp_path / "S02_rest.acq", age_s=0.5)
    touch(tmp_path / ".S03_rest.acq.part", age_s=60)  # a copy in progress under a dot name
    touch(tmp_path / ".hidden" / "S04_rest.acq", age_s=60)
    touch(tmp_path / "notes.txt", age_s=60)
    future = touch(tmp_path / "S05_rest.acq", age_s=-7200)  # a share whose clock runs ahead
    ready, deferred = discover(tmp_path, config)
    assert ready == [old, future]
    (d,) = deferred
    assert isinstance(d, StillBeingWrittenError) and d.path == str(new)
    assert "may still be copying" in d.reason


def test_discover_finds_recordings_in_subfolders(tmp_path, config):
    a = touch(tmp_path / "day1" / "S01_rest.acq")
    b = touch(tmp_path / "day2" / "S01_exercise.ACQ")
    ready, _ = discover(tmp_path, config)
    assert ready == sorted([a, b])


def test_missing_folder_is_a_clear_error(tmp_path, config):
    with pytest.raises(FileNotFoundError, match="recordings folder not found"):
        discover(tmp_path / "nope", config)


def test_aliases_map_raw_tokens(tmp_path, config):
    config = config.with_overrides({"dataset.condition_aliases": {"ex": "exercise"}})
    assert labels_from_name(tmp_path / "S01_ex.acq", config).condition == "exercise"
