"""Train / validation / test splits over a synthetic windows table.

Two frames: the paper's study shape (3 subjects x 3 conditions, one recording each, 20
windows) and a dp-motion-like one (3 subjects x 3 electrode sessions x 2 activities). Both are
shuffled and re-indexed, so the tests also check that splits are positions, not labels of the
index, and that time order comes from ``window_index``, not from row order.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest

from ecg_pipeline.training.splits import (
    Split,
    add_holdout_columns,
    labels_covered,
    leak_report,
    split_windows,
    uncovered_labels,
)

N_WINDOWS = 20


def _recording_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _frame(rows: list[dict], seed: int = 0) -> pd.DataFrame:
    """Rows in a shuffled order with a non-positional index."""
    meta = pd.DataFrame(rows)
    meta = meta.sample(frac=1.0, random_state=seed)
    meta.index = meta.index * 7 + 1000  # anything but 0..n-1
    return meta


def paper_meta(n_windows: int = N_WINDOWS) -> pd.DataFrame:
    rows = []
    for subject, condition in itertools.product(["S01", "S02", "S03"], ["rest", "walk", "run"]):
        rid = _recording_id(subject, condition)
        for w in range(n_windows):
            rows.append(
                {
                    "dataset": "lab",
                    "recording_id": rid,
                    "subject": subject,
                    "condition": condition,
                    "session": None,
                    "window_index": w,
                    "start_s": 3.0 * w,
                    "source_path": f"/data/{subject}_{condition}.acq",
                }
            )
    return _frame(rows)


def dp_meta(sessions=("01", "02", "03")) -> pd.DataFrame:
    rows = []
    for subject, session, activity in itertools.product(
        ["01", "02", "03"], sessions, ["sit", "walk"]
    ):
        rid = _recording_id(subject, session, activity)
        for w in range(N_WINDOWS):
            rows.append(
                {
                    "dataset": "dp-motion",
                    "recording_id": rid,
                    "subject": subject,
                    "condition": activity,
                    "session": session,
                    "window_index": w,
                    "start_s": 3.0 * w,
                    "source_path": f"/data/{subject}_{session}_{activity}.csv",
                }
            )
    return _frame(rows, seed=1)


def _all_splits() -> list[tuple[str, pd.DataFrame, Split]]:
    out = []
    for name, meta in (("paper", paper_meta()), ("dp", dp_meta())):
        for kind in ("window", "time_block"):
            out += [(f"{name}-{s.name}", meta, s) for s in split_windows(meta, kind=kind)]
    meta = dp_meta()
    for column in ("session", "subject", "recording_id"):
        splits = split_windows(meta, kind="group", group_column=column)
        out += [(f"dp-{s.name}", meta, s) for s in splits]
    return out


ALL_SPLITS = _all_splits()


# --------------------------------------------------------------------------------------------
# every kind


@pytest.mark.parametrize("label, meta, split", ALL_SPLITS, ids=[a for a, _, _ in ALL_SPLITS])
def test_every_split_is_disjoint_positions_in_range(label, meta, split):
    split.check_disjoint()
    for side in (split.train, split.val, split.test):
        assert side.dtype == np.int64
        assert np.all(np.diff(side) > 0)  # sorted, no duplicates
        assert side.size == 0 or (side.min() >= 0 and side.max() < len(meta))
    assert split.train.size and split.val.size and split.test.size
    assert leak_report(split, meta)["shared_windows"] == 0


def test_check_disjoint_raises_on_overlap():
    with pytest.raises(ValueError, match="train and test"):
        Split("bad", np.array([0, 1, 2]), np.array([3]), np.array([2, 4])).check_disjoint()
    with pytest.raises(ValueError, match="duplicate"):
        Split("bad", np.array([0, 0]), np.array([]), np.array([1])).check_disjoint()
    Split("ok", [0, 1], [], [2]).check_disjoint()


def test_bad_arguments():
    meta = paper_meta()
    with pytest.raises(ValueError, match="unknown split kind"):
        split_windows(meta, kind="random")
    with pytest.raises(ValueError, match="test_fraction"):
        split_windows(meta, kind="window", test_fraction=0.0)
    with pytest.raises(ValueError, match="room for training"):
        split_windows(meta, kind="window", test_fraction=0.6, val_fraction=0.4)
    with pytest.raises(ValueError, match="gap_windows"):
        split_windows(meta, kind="time_block", gap_windows=-1)
    with pytest.raises(ValueError, match="kind='group' only"):
        split_windows(meta, kind="window", group_column="subject")
    with pytest.raises(ValueError, match="lacks column"):
        split_windows(meta.drop(columns="window_index"), kind="time_block")
    with pytest.raises(ValueError, match="empty"):
        split_windows(meta.iloc[:0], kind="window")


# --------------------------------------------------------------------------------------------
# window


def _strata(meta: pd.DataFrame) -> np.ndarray:
    return meta["subject"].to_numpy() + "/" + meta["condition"].to_numpy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_window_split_is_70_30_per_stratum(seed):
    meta = paper_meta()
    (split,) = split_windows(meta, kind="window", seed=seed)
    assert split.name == "window"
    strata = _strata(meta)
    # Every window is somewhere: the window split drops nothing.
    assert len(split.train) + len(split.val) + len(split.test) == len(meta)
    for stratum in np.unique(strata):
        n = int((strata == stratum).sum())
        n_test = int((strata[split.test] == stratum).sum())
        n_val = int((strata[split.val] == stratum).sum())
        n_train_and_val = n - n_test
        assert abs(n_test - 0.3 * n) <= 1
        assert abs(n_train_and_val - 0.7 * n) <= 1
        assert abs(n_val - 0.15 * n) <= 1
    assert (n_test, n_val) == (6, 3)  # 20 windows: 30 % and 15 %, rounded half up


def test_window_split_is_deterministic_per_seed():
    meta = paper_meta()
    a = split_windows(meta, kind="window", seed=7)[0]
    b = split_windows(meta, kind="window", seed=7)[0]
    c = split_windows(meta, kind="window", seed=8)[0]
    for side in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, side), getattr(b, side))
    assert not np.array_equal(a.test, c.test)


def test_window_split_stratifies_on_subject_alone_without_condition():
    meta = paper_meta().drop(columns="condition")
    (split,) = split_windows(meta, kind="window")
    subjects = meta["subject"].to_numpy()
    for subject in np.unique(subjects):
        n = int((subjects == subject).sum())  # 60
        assert abs(int((subjects[split.test] == subject).sum()) - 0.3 * n) <= 1


def test_window_split_leaks_recordings_by_design():
    meta = paper_meta()
    (split,) = split_windows(meta, kind="window")
    report = leak_report(split, meta)
    assert report["n_recordings"] == 9
    assert report["train_test"] == 9  # every recording is on both sides: reproduction only
    assert labels_covered(split, meta, "subject") and labels_covered(split, meta, "condition")


def test_window_split_keeps_a_one_window_stratum_in_train():
    meta = paper_meta()
    lone = meta.iloc[[0]].assign(subject="S99", recording_id=_recording_id("lone"))
    meta = pd.concat([meta, lone])
    (split,) = split_windows(meta, kind="window")
    assert len(meta) - 1 in split.train


# --------------------------------------------------------------------------------------------
# time_block


def _per_recording(meta, split):
    """For each recording: its window indices on each side, and all of its window indices."""
    rid = meta["recording_id"].to_numpy()
    wi = meta["window_index"].to_numpy()
    for r in np.unique(rid):
        sides = {}
        for side in ("train", "val", "test"):
            positions = getattr(split, side)
            sides[side] = np.sort(wi[positions][rid[positions] == r])
        yield r, sides, np.sort(wi[rid == r])


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_time_block_orders_blocks_in_time_with_gaps(gap):
    meta = dp_meta()
    (split,) = split_windows(meta, kind="time_block", gap_windows=gap)
    assert split.name == "time_block"
    for _, sides, every in _per_recording(meta, split):
        train, val, test = sides["train"], sides["val"], sides["test"]
        assert (len(test), len(val)) == (6, 3)  # 30 % and 15 % of 20
        assert len(train) == N_WINDOWS - 9 - 2 * gap
        # Contiguous blocks in time order, and `gap` windows between neighbouring blocks.
        for block in (train, val, test):
            assert np.all(np.diff(block) == 1)
        assert train[0] == every[0] and test[-1] == every[-1]
        assert val.min() - train.max() - 1 == gap
        assert test.min() - val.max() - 1 == gap
        assert train.max() < val.min() and val.max() < test.min()
    # What is on no side is exactly the gaps.
    dropped = len(meta) - len(split.train) - len(split.val) - len(split.test)
    assert dropped == meta["recording_id"].nunique() * 2 * gap


def test_time_block_uses_window_index_not_row_order_and_allows_holes():
    meta = paper_meta()
    # Quality control may drop windows: keep only even indices, then reverse the rows.
    meta = meta[meta["window_index"] % 2 == 0].iloc[::-1]
    (split,) = split_windows(meta, kind="time_block", gap_windows=1)
    for _, sides, every in _per_recording(meta, split):
        assert len(every) == 10
        assert (len(sides["test"]), len(sides["val"]), len(sides["train"])) == (3, 2, 3)
        # One *window* of gap (index step 2 here), counted on what exists, not on index values.
        assert sides["train"].tolist() == [0, 2, 4]
        assert sides["val"].tolist() == [8, 10]
        assert sides["test"].tolist() == [14, 16, 18]


def test_time_block_puts_every_recording_on_every_side_without_sharing_windows():
    meta = paper_meta()
    (split,) = split_windows(meta, kind="time_block")
    report = leak_report(split, meta)
    # By design: every recording is on every side, in disjoint time blocks.
    assert report["multi_side"] == report["n_recordings"] == 9
    assert report["shared_windows"] == 0


def test_time_block_is_independent_of_seed():
    meta = paper_meta()
    a = split_windows(meta, kind="time_block", seed=0)[0]
    b = split_windows(meta, kind="time_block", seed=5)[0]
    np.testing.assert_array_equal(a.test, b.test)


def test_time_block_refuses_a_recording_too_short():
    meta = paper_meta(n_windows=4)  # test 1, val 1, two gaps: nothing left to train on
    with pytest.raises(ValueError, match="cannot hold"):
        split_windows(meta, kind="time_block", gap_windows=1)
    (split,) = split_windows(meta, kind="time_block", gap_windows=0)
    split.check_disjoint()


# --------------------------------------------------------------------------------------------
# group


def _values(meta, column, positions):
    return set(meta[column].to_numpy()[positions])


def test_group_leave_one_session_out():
    meta = dp_meta()
    splits = split_windows(meta, kind="group", group_column="session")
    assert [s.name for s in splits] == ["session=01", "session=02", "session=03"]
    for held_out, split in zip(["01", "02", "03"], splits):
        assert _values(meta, "session", split.test) == {held_out}
        # The whole held-out group is in test, nothing is dropped.
        assert len(split.test) == int((meta["session"] == held_out).sum())
        assert len(split.train) + len(split.val) + len(split.test) == len(meta)
        val_groups = _values(meta, "session", split.val)
        assert len(val_groups) == 1 and held_out not in val_groups
        assert _values(meta, "session", split.train).isdisjoint(val_groups | {held_out})
        report = leak_report(split, meta)
        assert report["multi_side"] == report["train_test"] == report["val_test"] == 0
        # Every subject has every session: identity stays scoreable.
        assert labels_covered(split, meta, "subject")
        assert labels_covered(split, meta, "condition")
    # Seed 0: the next group cyclically validates, so each group validates once.
    assert [_values(meta, "session", s.val) for s in splits] == [{"02"}, {"03"}, {"01"}]


def test_group_seed_rotates_the_validation_group():
    meta = dp_meta()
    split = split_windows(meta, kind="group", group_column="session", seed=1)[0]
    assert _values(meta, "session", split.val) == {"03"}
    again = split_windows(meta, kind="group", group_column="session", seed=1)[0]
    np.testing.assert_array_equal(split.val, again.val)


def test_group_leave_one_subject_out_cannot_score_identity():
    meta = dp_meta()
    splits = split_windows(meta, kind="group", group_column="subject")
    assert len(splits) == 3
    for split in splits:
        (held_out,) = _values(meta, "subject", split.test)
        assert not labels_covered(split, meta, "subject")
        assert uncovered_labels(split, meta, "subject") == [held_out]
        assert labels_covered(split, meta, "condition")  # activity still can be
        assert leak_report(split, meta)["multi_side"] == 0


def test_group_explicit_test_groups_make_one_fold():
    meta = dp_meta()
    (split,) = split_windows(meta, kind="group", group_column="session", test_groups=["03"])
    assert split.name == "session=03"
    assert _values(meta, "session", split.test) == {"03"}
    assert _values(meta, "session", split.val) == {"01"}  # cyclically after 03
    (same,) = split_windows(meta, kind="group", group_column="session", test_groups="03")
    np.testing.assert_array_equal(split.test, same.test)
    (two,) = split_windows(
        meta,
        kind="group",
        group_column="recording_id",
        test_groups=sorted(meta["recording_id"].unique())[:2],
    )
    assert len(_values(meta, "recording_id", two.test)) == 2
    assert "+" in two.name


def test_group_with_one_training_group_falls_back_to_time_block_validation():
    meta = dp_meta(sessions=("01", "02"))
    splits = split_windows(meta, kind="group", group_column="session", gap_windows=1)
    assert len(splits) == 2
    for held_out, split in zip(["01", "02"], splits):
        split.check_disjoint()
        assert _values(meta, "session", split.test) == {held_out}
        assert _values(meta, "session", split.val) == _values(meta, "session", split.train)
        assert held_out not in _values(meta, "session", split.val)
        for _, sides, every in _per_recording(meta, split):
            if sides["test"].size:  # a held-out recording: wholly in test
                assert sides["test"].tolist() == every.tolist()
                continue
            # A training recording: 15 % of it, at its end, after a one-window gap.
            assert sides["val"].tolist() == [17, 18, 19]
            assert sides["train"].tolist() == list(range(16))
        assert leak_report(split, meta)["train_test"] == 0


def test_group_refusals():
    meta = dp_meta()
    with pytest.raises(ValueError, match="needs group_column"):
        split_windows(meta, kind="group")
    with pytest.raises(ValueError, match="lacks column"):
        split_windows(meta, kind="group", group_column="date")
    with pytest.raises(ValueError, match="not among"):
        split_windows(meta, kind="group", group_column="session", test_groups=["09"])
    with pytest.raises(ValueError, match="none left"):
        split_windows(meta, kind="group", group_column="session", test_groups=["01", "02", "03"])
    with pytest.raises(ValueError, match=">= 2 values"):
        split_windows(meta[meta["session"] == "01"], kind="group", group_column="session")
    with pytest.raises(ValueError, match="have no 'session'"):
        split_windows(paper_meta(), kind="group", group_column="session")
    with pytest.raises(ValueError, match="changes within"):
        split_windows(meta, kind="group", group_column="window_index")


def test_group_on_dates_compares_as_strings():
    meta = dp_meta()
    meta["date"] = pd.to_datetime("2024-01-0" + meta["session"].str[-1])
    splits = split_windows(meta, kind="group", group_column="date")
    assert [s.name for s in splits] == [f"date=2024-01-0{k}" for k in (1, 2, 3)]
    (one,) = split_windows(meta, kind="group", group_column="date", test_groups=["2024-01-02"])
    assert _values(meta, "session", one.test) == {"02"}


def test_group_time_block_validation_trains_on_every_training_group():
    meta = dp_meta()
    splits = split_windows(
        meta, kind="group", group_column="session", group_validation="time_block"
    )
    for held_out, split in zip(["01", "02", "03"], splits):
        split.check_disjoint()
        others = {"01", "02", "03"} - {held_out}
        assert _values(meta, "session", split.train) == others
        assert _values(meta, "session", split.val) == others
        assert leak_report(split, meta)["train_test"] == leak_report(split, meta)["val_test"] == 0
        for _, sides, _every in _per_recording(meta, split):
            if not sides["test"].size:
                assert sides["val"].tolist() == [17, 18, 19]
    with pytest.raises(ValueError, match="group_validation"):
        split_windows(meta, kind="group", group_column="session", group_validation="random")


def _ecg_id_like() -> pd.DataFrame:
    """Person 01: records 1, 2, 10 on two dates; 02: records 1, 2 on one date; 03: one record."""
    records = [
        ("01", "1", "2004-01-01"),
        ("01", "2", "2004-01-01"),
        ("01", "10", "2004-03-01"),
        ("02", "1", "2004-02-01"),
        ("02", "2", "2004-02-01"),
        ("03", "1", "2004-02-02"),
    ]
    rows = [
        {
            "recording_id": _recording_id(s, r),
            "subject": s,
            "condition": "unknown",
            "session": r,
            "date": d,
            "window_index": w,
        }
        for s, r, d in records
        for w in range(6)
    ]
    return _frame(rows)


def test_holdout_columns_mark_the_last_record_and_the_latest_date():
    meta = add_holdout_columns(_ecg_id_like())
    per_record = meta.drop_duplicates("recording_id").set_index(["subject", "session"])
    last = per_record["last_record"].to_dict()
    # "10" is after "2" as a number; a person with one record keeps it for training.
    assert last == {
        ("01", "1"): "no",
        ("01", "2"): "no",
        ("01", "10"): "yes",
        ("02", "1"): "no",
        ("02", "2"): "yes",
        ("03", "1"): "no",
    }
    later = per_record["later_date"].to_dict()
    assert [k for k, v in later.items() if v == "yes"] == [("01", "10")]
    # Both become ordinary one-fold group splits; the one training group validates on time blocks.
    (split,) = split_windows(meta, kind="group", group_column="last_record", test_groups=["yes"])
    assert _values(meta, "session", split.test) == {"10", "2"}
    report = leak_report(split, meta)
    assert report["train_test"] == report["val_test"] == 0
    assert labels_covered(split, meta, "subject")
    (split,) = split_windows(meta, kind="group", group_column="later_date", test_groups=["yes"])
    assert _values(meta, "subject", split.test) == {"01"}


def test_holdout_columns_without_session_or_date_are_all_no():
    meta = add_holdout_columns(paper_meta().drop(columns=["session"]))
    assert set(meta["last_record"]) == {"no"} and set(meta["later_date"]) == {"no"}
