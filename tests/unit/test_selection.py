"""Choices made on validation only: inner folds never hold a test-side window, and a run that
chooses among candidates records the choice and reads the test side only to score it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecg_pipeline.config import TrainingSettings
from ecg_pipeline.training.run import configured_splits
from ecg_pipeline.training.selection import inner_splits
from ecg_pipeline.training.splits import add_holdout_columns


def _meta(n_subjects=4, sessions=("01", "02", "03"), conditions=("rest", "run"), n_windows=6):
    rows = []
    for s in range(n_subjects):
        for k, session in enumerate(sessions):
            for c in conditions:
                rid = f"{s}{k}{c}"
                for w in range(n_windows):
                    rows.append(
                        {
                            "recording_id": rid,
                            "subject": f"S{s}",
                            "condition": c,
                            "session": session,
                            "date": f"2020-01-0{k + 1}",
                            "window_index": w,
                        }
                    )
    return add_holdout_columns(pd.DataFrame(rows))


@pytest.mark.parametrize(
    "settings",
    [
        TrainingSettings(split="group", group_column="session"),
        TrainingSettings(split="group", group_column="last_record", test_groups=("yes",)),
        TrainingSettings(split="group", group_column="later_date", test_groups=("yes",)),
        TrainingSettings(split="time_block"),
        TrainingSettings(split="window"),
    ],
    ids=["loso", "last_record", "later_date", "time_block", "window"],
)
def test_inner_folds_never_hold_a_test_window(settings):
    meta = _meta(n_windows=20)
    for outer in configured_splits(meta, settings):
        test = set(outer.test.tolist())
        inner = inner_splits(meta, outer, settings)
        assert inner, f"{outer.name}: no inner fold"
        for split in inner:
            used = set(split.train.tolist()) | set(split.val.tolist()) | set(split.test.tolist())
            assert not used & test, f"{outer.name} / {split.name} reads the test side"
            assert len(split.test) and len(split.train)


def test_inner_leave_one_session_out_rotates_over_the_training_sessions():
    meta = _meta()
    settings = TrainingSettings(split="group", group_column="session")
    outer = next(s for s in configured_splits(meta, settings) if s.name == "session=03")
    inner = inner_splits(meta, outer, settings)
    held = [set(meta["session"].iloc[s.test]) for s in inner]
    assert held == [{"01"}, {"02"}]


def test_inner_last_record_is_recomputed_on_the_training_side():
    meta = _meta(conditions=("rest",))  # ECG-ID: one recording per person and session
    settings = TrainingSettings(split="group", group_column="last_record", test_groups=("yes",))
    (outer,) = configured_splits(meta, settings)
    (inner,) = inner_splits(meta, outer, settings)
    # The outer test holds each subject's session 03; the inner one each subject's session 02.
    assert set(meta["session"].iloc[outer.test]) == {"03"}
    assert set(meta["session"].iloc[inner.test]) == {"02"}


def test_a_run_with_candidates_never_trains_or_scores_on_the_test_side(monkeypatch, tmp_path):
    """Every fit during selection is recorded: none is given a test-side window."""
    import ecg_pipeline.training.loop as loop
    import ecg_pipeline.training.selection as selection
    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.training.data import WindowData
    from ecg_pipeline.training.run import train_run

    meta = _meta(n_subjects=3).assign(fs_hz=100.0)
    n = len(meta)
    rng = np.random.default_rng(0)
    labels = {
        "identity": pd.Categorical(meta["subject"]).codes.astype(np.int64),
        "activity": pd.Categorical(meta["condition"]).codes.astype(np.int64),
    }
    data = WindowData(
        rng.random((n, 1, 300), dtype=np.float32),
        labels,
        {"identity": ["S0", "S1", "S2"], "activity": ["rest", "run"]},
        meta,
    )
    base = StudyConfig().with_overrides(
        {
            "training.split": "group",
            "training.group_column": "session",
            "training.epochs": 1,
            "training.out_dir": tmp_path,
        }
    )
    outer = configured_splits(meta, base.training)
    seen: list[tuple[set, set]] = []
    real_fit = loop.fit

    def recording_fit(model, x, labels, train_idx, val_idx, settings, **kw):
        seen.append((set(train_idx.tolist()), set(val_idx.tolist())))
        return real_fit(model, x, labels, train_idx, val_idx, settings, **kw)

    monkeypatch.setattr(loop, "fit", recording_fit)
    monkeypatch.setattr("ecg_pipeline.training.run._load", lambda c, *a, **k: (data, outer))
    scored: list[set] = []
    real_score = selection._fold_score

    def recording_score(config, d, split):
        scored.append(set(split.test.tolist()))
        return real_score(config, d, split)

    monkeypatch.setattr(selection, "_fold_score", recording_score)
    candidates = {"paper": base, "equal": base.with_overrides({"training.weighting": "equal"})}
    run = train_run(base, candidates=candidates, evaluate=True)
    assert [f.name for f in run.folds] == [s.name for s in outer]
    n_inner = 2 * len(candidates) * len(outer)  # two inner sessions per outer fold
    assert len(scored) == n_inner and len(seen) == n_inner + len(outer)
    for k, split in enumerate(outer):
        test = set(split.test.tolist())
        fold_fits = seen[k * (2 * len(candidates) + 1) : (k + 1) * (2 * len(candidates) + 1)]
        fold_scores = scored[k * 2 * len(candidates) : (k + 1) * 2 * len(candidates)]
        assert all(not (tr | va) & test for tr, va in fold_fits)
        assert all(not s & test for s in fold_scores)
        chosen = run.folds[k].selection
        assert chosen["chosen"] in candidates and set(chosen["scores"]) == set(candidates)
        assert run.folds[k].metrics is not None  # scored on its test side after the choice


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 1.0])
def test_label_scarcity_drops_whole_training_recordings(fraction):
    from ecg_pipeline.training.splits import fewer_training_recordings

    meta = _meta(n_subjects=4, sessions=("01", "02", "03", "04"), n_windows=8)
    settings = TrainingSettings(split="group", group_column="session")
    for outer in configured_splits(meta, settings):
        fewer = fewer_training_recordings(outer, meta, fraction, seed=0)
        assert np.array_equal(fewer.val, outer.val) and np.array_equal(fewer.test, outer.test)
        kept = meta.iloc[fewer.train]
        full = meta.iloc[outer.train]
        # Whole recordings: every kept recording keeps all its training windows.
        assert (
            kept.groupby("recording_id")
            .size()
            .equals(
                full[full["recording_id"].isin(kept["recording_id"])].groupby("recording_id").size()
            )
        )
        per_subject = kept.drop_duplicates("recording_id").groupby("subject").size()
        n_full = full.drop_duplicates("recording_id").groupby("subject").size()
        # Every person keeps a recording; the rest is spread evenly over people.
        assert (per_subject >= 1).all() and set(per_subject.index) == set(n_full.index)
        assert per_subject.max() - per_subject.min() <= 1
        wanted = max(len(n_full), int(np.floor(fraction * n_full.sum() + 0.5)))
        assert per_subject.sum() == min(wanted, n_full.sum())


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_scarcity_keeps_every_activity_and_person(fraction, seed):
    """dp-motion's shape: a training side of one recording per person x activity.

    10 % asked keeps one recording per person (20 %), and fractions that differ keep different
    numbers; each activity keeps its share, so none vanishes from training.
    """
    from ecg_pipeline.training.splits import Split, fewer_training_recordings, recording_count

    conditions = ("rest", "arms", "walk", "run", "squats")
    meta = _meta(n_subjects=10, sessions=("01",), conditions=conditions, n_windows=4)
    everything = Split("all", np.arange(len(meta)), np.array([], int), np.array([], int))
    fewer = fewer_training_recordings(everything, meta, fraction, seed=seed)
    kept = meta.iloc[fewer.train].drop_duplicates("recording_id")
    assert recording_count(fewer.train, meta) == {0.1: 10, 0.25: 13, 0.5: 25}[fraction]
    assert kept["subject"].nunique() == 10
    per_activity = kept.groupby("condition").size().reindex(conditions, fill_value=0)
    assert per_activity.min() >= 1 and per_activity.max() - per_activity.min() <= 1


def test_the_label_curve_is_drawn_from_curve_rows(tmp_path):
    from ecg_pipeline.tracking.curves import curve_points, write_label_curve

    def row(name, fraction, acc):
        return {
            "name": name,
            "dataset": "ecg-id",
            "config": {"training": {"label_fraction": fraction}},
            "tasks": {"identity": {"accuracy": acc, "accuracy_std": 0.01}},
        }

    summaries = [
        row("ecg-id/scratch-labels-10", 0.1, 0.3),
        row("ecg-id/scratch", 1.0, 0.6),  # the 100 % point of its curve
        {**row("ecg-id/masked-labels-10", 0.1, 0.4), "labelled_share": 0.2},
        row("ecg-id/last-record-paper", 1.0, 0.9),  # not a curve row
    ]
    points = curve_points(summaries)
    # The share kept is drawn where it differs from the one asked.
    assert {(p["series"], p["fraction"]) for p in points} == {
        ("ecg-id/scratch", 0.1),
        ("ecg-id/scratch", 1.0),
        ("ecg-id/masked", 0.2),
    }
    out = write_label_curve(summaries, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no rows named"):
        write_label_curve(summaries[-1:], tmp_path / "none.png")
