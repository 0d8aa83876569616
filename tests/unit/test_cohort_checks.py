import pandas as pd

from ecg_pipeline.cohort.checks import cohort_report

CONDITIONS = ("rest", "exercise", "deep_breathing")


def catalog(rows):
    return pd.DataFrame(rows, columns=["subject", "condition", "session"])


def test_missing_pairs_over_every_subject_seen():
    cat = catalog([("S01", "rest", None), ("S01", "exercise", None), ("S02", "rest", None)])
    report = cohort_report(cat, CONDITIONS)
    assert report.missing == [
        ("S01", "deep_breathing"),
        ("S02", "exercise"),
        ("S02", "deep_breathing"),
    ]
    assert "missing subject/condition pairs (3)" in report.lines()[0]


def test_duplicates_stored_or_offered_and_too_short():
    cat = catalog([("S01", "rest", "1"), ("S01", "rest", "1"), ("S01", "rest", "2")])
    report = cohort_report(cat, ("rest",), [("S03", "rest", None)], ["/in/S04_rest.acq"])
    assert report.duplicates == [("S01", "rest", "1"), ("S03", "rest", None)]
    assert report.too_short == ["/in/S04_rest.acq"]
    text = "\n".join(report.lines())
    assert "S01/rest/1" in text and "shorter than one window: /in/S04_rest.acq" in text


def test_complete_cohort_reports_nothing():
    cat = catalog([("S01", c, None) for c in CONDITIONS])
    assert cohort_report(cat, CONDITIONS).lines() == []
    assert cohort_report(catalog([]), CONDITIONS).lines() == []


def test_expected_subjects_without_any_stored_recording_are_missing():
    cat = catalog([("S01", c, None) for c in CONDITIONS])
    report = cohort_report(cat, ("rest",), expected_subjects=["S01", "S09"])
    assert report.missing == [("S09", "rest")]
