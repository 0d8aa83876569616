"""Train / validation / test splits over the windows table.

One module (over 400 lines) because every split kind shares the leakage rules (gaps between
sides, disjoint groups, label coverage checks) that make their figures comparable.

Every split is a set of positional row indices (``iloc``) into the windows metadata frame: one
row per 3-s window with at least ``recording_id``, ``subject``, ``window_index`` and, where the
dataset has one, ``condition`` (the activity label) and ``session``.

Three kinds, from most to least optimistic:

``window``
    The DT4ECG paper's protocol: a random 7:3 split over windows, stratified by subject and
    condition. Windows of one recording land on both sides, so neighbouring (or, with
    overlapping windows, sample-sharing) windows are in train and test alike. This is kept to
    reproduce the paper's numbers only; it says little about new recordings.
``time_block``
    Every recording contributes its beginning to train and its end to test, with
    ``gap_windows`` windows dropped at each boundary so that no train window borders a
    validation or test window. Every recording is on every side, but no moment of signal is.
``group``
    Whole groups of a recording-level column (``session``, ``subject``, ``recording_id``,
    ``date``) are held out: no recording is on two sides at all. Leave-one-group-out by default.

Fractions are always of all the windows of a stratum (``window``) or of a recording
(``time_block``), so the defaults give roughly 55 % train, 15 % validation and 30 % test.

Typical use::

    splits = split_windows(meta, kind="group", group_column="session")
    for split in splits:
        split.check_disjoint()
        if not labels_covered(split, meta, "subject"):
            ...  # identity cannot be scored on this fold
        print(split.name, leak_report(split, meta))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ecg_pipeline.config import TrainingSettings

__all__ = [
    "Split",
    "SplitKind",
    "split_windows",
    "labels_covered",
    "uncovered_labels",
    "leak_report",
    "add_holdout_columns",
    "fewer_training_recordings",
    "recording_count",
]

SplitKind = Literal["window", "time_block", "group"]

_RECORDING = "recording_id"
_POSITION = "window_index"
_CONDITION = "condition"


@dataclass(frozen=True)
class Split:
    """One train / validation / test partition of the windows table.

    Attributes
    ----------
    name : str
        ``"window"``, ``"time_block"`` or, for group splits, ``"<column>=<held-out value>"``
        (several held-out values joined by ``+``).
    train, val, test : numpy.ndarray
        Sorted positional row indices (int64) into the metadata frame the split was made from;
        use them with ``meta.iloc[...]`` or to index the samples array. ``val`` may be empty.
        Windows dropped by a gap are on no side.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        # Normalise once here so callers can pass lists and every consumer sees the same dtype
        # and order; frozen dataclasses need object.__setattr__ for that.
        for side in ("train", "val", "test"):
            object.__setattr__(self, side, np.sort(np.asarray(getattr(self, side), dtype=np.int64)))

    def check_disjoint(self) -> None:
        """Raise ``ValueError`` if a row index is on more than one side (or twice on one).

        Raises
        ------
        ValueError
            Naming the pair of sides and the first few shared indices.
        """
        for side in ("train", "val", "test"):
            values = getattr(self, side)
            if len(np.unique(values)) != len(values):
                raise ValueError(f"split {self.name!r}: duplicate indices within {side}")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = np.intersect1d(getattr(self, a), getattr(self, b))
            if shared.size:
                raise ValueError(
                    f"split {self.name!r}: {shared.size} indices on both {a} and {b}, "
                    f"e.g. {shared[:5].tolist()}"
                )


# The defaults of the keyword arguments below are [training]'s (one source of truth).
_DEFAULTS = TrainingSettings()


def split_windows(
    meta: pd.DataFrame,
    *,
    kind: SplitKind,
    seed: int = _DEFAULTS.seed,
    test_fraction: float = _DEFAULTS.test_fraction,
    val_fraction: float = _DEFAULTS.val_fraction,
    gap_windows: int = _DEFAULTS.gap_windows,
    group_column: str | None = None,
    test_groups: Sequence[str] | None = None,
    stratify_column: str = "subject",
    group_validation: str = _DEFAULTS.group_validation,
) -> list[Split]:
    """Split the windows table into train, validation and test row indices.

    Parameters
    ----------
    meta : pandas.DataFrame
        One row per window. Needs ``recording_id`` and ``window_index`` (``time_block``, and
        ``group`` when it falls back to time blocks), ``stratify_column`` (``window``) or
        ``group_column`` (``group``). ``condition`` joins the strata when present. The frame's
        index is ignored: results are positions.
    kind : {"window", "time_block", "group"}
        See the module docstring.
    seed : int
        ``window``: seeds the shuffles. ``group``: rotates which training group validates.
        ``time_block`` is deterministic and ignores it.
    test_fraction : float
        Share of each stratum (``window``) or recording (``time_block``) that goes to test.
        Unused by ``group``, whose test set is whole groups.
    val_fraction : float
        Share of each stratum or recording that goes to validation (of all its windows, not of
        the training part). ``group`` uses it only in its one-training-group fallback.
    gap_windows : int
        Windows dropped at each time-block boundary (train|val and val|test). With overlapping
        windows (hop < window) use at least ``ceil(window / hop) - 1`` so that no sample is
        shared across a boundary. Unused by ``window`` and by ``group`` with >= 2 training
        groups (whole recordings are apart there).
    group_column : str, optional
        ``group`` only: the recording-level column whose values are held out.
    test_groups : sequence of str, optional
        ``group`` only: hold out exactly these values (one fold). Default: one fold per
        distinct value (leave-one-group-out). Values are compared as strings.
    stratify_column : str
        ``window`` only: the label to stratify on (with ``condition`` when present).
    group_validation : {"one_group", "time_block"}
        ``group`` only: validate on one whole training group (the default), or on the last
        ``val_fraction`` block of every training recording so that every training group also
        trains (always the case when only one group is left for training).

    Returns
    -------
    list of Split
        One split for ``window`` and ``time_block``; one per fold for ``group``, in sorted
        order of the held-out value.

    Raises
    ------
    ValueError
        Bad fractions or kind; missing columns; a recording too short to keep a training
        window after the test block and the gaps; for ``group``: a missing ``group_column``,
        null group values, a group value that changes within a recording, unknown
        ``test_groups``, or no group left for training.
    """
    _check_fractions(test_fraction, val_fraction)
    if gap_windows < 0:
        raise ValueError(f"gap_windows must be >= 0, got {gap_windows}")
    if kind != "group" and (group_column is not None or test_groups is not None):
        raise ValueError("group_column and test_groups apply to kind='group' only")
    if len(meta) == 0:
        raise ValueError("meta is empty: nothing to split")

    if kind == "window":
        _require_columns(meta, [stratify_column])
        return [_window_split(meta, seed, test_fraction, val_fraction, stratify_column)]
    if kind == "time_block":
        _require_columns(meta, [_RECORDING, _POSITION])
        return [_time_block_split(meta, test_fraction, val_fraction, gap_windows)]
    if kind == "group":
        if group_column is None:
            raise ValueError("kind='group' needs group_column (e.g. 'session' or 'subject')")
        _require_columns(meta, [group_column, _RECORDING])
        if group_validation not in ("one_group", "time_block"):
            raise ValueError(f"unknown group_validation {group_validation!r}")
        return _group_splits(
            meta, group_column, test_groups, seed, val_fraction, gap_windows, group_validation
        )
    raise ValueError(f"unknown split kind {kind!r}: expected 'window', 'time_block' or 'group'")


# --------------------------------------------------------------------------------------------
# checks and small helpers


def _check_fractions(test_fraction: float, val_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + val_fraction must leave room for training, got "
            f"{test_fraction} + {val_fraction}"
        )


def _require_columns(meta: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks column(s) {missing}; has {list(meta.columns)}")


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even (round(2.5) == 2); half-up is easier to state and
    # to check by hand. The epsilon absorbs float noise such as 20 * 0.3 = 6.000000000000001.
    return int(np.floor(x + 0.5 + 1e-9))


def _block_sizes(n: int, test_fraction: float, val_fraction: float) -> tuple[int, int]:
    """Test and validation sizes for ``n`` windows, leaving at least one for training.

    The test block is trimmed before validation would be, and validation before training, so
    a tiny stratum still teaches its label; a stratum of one window goes wholly to train.
    """
    n_test = min(_round_half_up(n * test_fraction), max(n - 1, 0))
    n_val = min(_round_half_up(n * val_fraction), max(n - 1 - n_test, 0))
    return n_test, n_val


def _strata(meta: pd.DataFrame, stratify_column: str) -> pd.Series:
    """One key per row: the stratify label, joined with the condition when there is one."""
    columns = [stratify_column]
    if (
        _CONDITION in meta.columns
        and stratify_column != _CONDITION
        and meta[_CONDITION].notna().any()
    ):
        columns.append(_CONDITION)
    # Nulls become their own stratum rather than being dropped by groupby; the unit separator
    # does not occur in subject or condition names, so distinct label pairs give distinct keys.
    parts = [meta[c].astype("string").fillna("<NA>").to_numpy(dtype=object) for c in columns]
    return pd.Series(["\x1f".join(p) for p in zip(*parts)], dtype=object)


# --------------------------------------------------------------------------------------------
# window


def _window_split(
    meta: pd.DataFrame,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    stratify_column: str,
) -> Split:
    """The paper's random stratified split; validation is a stratified draw from the rest."""
    rng = np.random.default_rng(seed)
    strata = _strata(meta, stratify_column)
    train, val, test = [], [], []
    # Sorted strata and positions make the result depend on the seed and the rows only, not on
    # the frame's order of appearance of labels.
    for _, positions in sorted(strata.groupby(strata, sort=False).indices.items()):
        order = rng.permutation(np.sort(positions))
        n_test, n_val = _block_sizes(len(order), test_fraction, val_fraction)
        test.append(order[:n_test])
        val.append(order[n_test : n_test + n_val])
        train.append(order[n_test + n_val :])
    return Split("window", np.concatenate(train), np.concatenate(val), np.concatenate(test))


# --------------------------------------------------------------------------------------------
# time_block


def _recording_positions(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """Each recording's row positions, ordered by ``window_index`` (time), recordings sorted."""
    window_index = meta[_POSITION].to_numpy()
    out = []
    groups = meta[_RECORDING].astype("string").fillna("<NA>").to_numpy(dtype=object)
    for rid, positions in sorted(pd.Series(groups).groupby(groups, sort=False).indices.items()):
        # A stable sort keeps duplicated window indices (not allowed by the contract) in row
        # order instead of failing here; check_disjoint does not care about them.
        out.append((rid, positions[np.argsort(window_index[positions], kind="stable")]))
    return out


def _time_blocks(
    ordered: np.ndarray, n_test: int, n_val: int, gap: int, recording: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one recording's time-ordered positions into train | gap | val | gap | test.

    A gap is only put where there is a boundary: no test block, no gap before it; no
    validation block, no second gap.
    """
    n = len(ordered)
    gap_test = gap if n_test else 0
    gap_val = gap if n_val else 0
    n_train = n - n_test - gap_test - n_val - gap_val
    if n_train < 1:
        raise ValueError(
            f"recording {recording}: {n} windows cannot hold {n_test} test + {n_val} val "
            f"windows, {gap_test + gap_val} gap windows and one training window; lower the "
            f"fractions or gap_windows, or drop recordings this short"
        )
    train = ordered[:n_train]
    val = ordered[n_train + gap_val : n_train + gap_val + n_val]
    test = ordered[n - n_test :]
    return train, val, test


def _time_block_split(
    meta: pd.DataFrame, test_fraction: float, val_fraction: float, gap_windows: int
) -> Split:
    train, val, test = [], [], []
    for rid, ordered in _recording_positions(meta):
        n_test, n_val = _block_sizes(len(ordered), test_fraction, val_fraction)
        tr, va, te = _time_blocks(ordered, n_test, n_val, gap_windows, rid)
        train.append(tr)
        val.append(va)
        test.append(te)
    return Split("time_block", np.concatenate(train), np.concatenate(val), np.concatenate(test))


# --------------------------------------------------------------------------------------------
# group


def _group_keys(meta: pd.DataFrame, group_column: str) -> np.ndarray:
    """The group column as strings, refusing nulls and groups that cut through a recording."""
    values = meta[group_column]
    if values.isna().any():
        raise ValueError(
            f"{int(values.isna().sum())} windows have no {group_column!r}: filter them out or "
            f"group on another column"
        )
    keys = values.astype(str).to_numpy(dtype=object)
    # A group split promises that no recording is on two sides; that only holds if the group
    # is constant within each recording.
    per_recording = pd.Series(keys).groupby(meta[_RECORDING].to_numpy()).nunique()
    split_recordings = per_recording[per_recording > 1]
    if len(split_recordings):
        raise ValueError(
            f"{group_column!r} changes within {len(split_recordings)} recording(s), e.g. "
            f"{split_recordings.index[0]}: group on a recording-level column"
        )
    return keys


def _validation_group(groups: list[str], test: set[str], seed: int) -> str:
    """The training group that validates: the ``seed``-th one after the test groups, cyclically.

    Starting after the (last) test group means that leave-one-group-out folds with seed 0
    validate on the next group, so every group validates exactly once across the folds.
    """
    last_test = max(groups.index(g) for g in test)
    cyclic = groups[last_test + 1 :] + groups[: last_test + 1]
    candidates = [g for g in cyclic if g not in test]
    return candidates[seed % len(candidates)]


def _group_fold(
    meta: pd.DataFrame,
    keys: np.ndarray,
    groups: list[str],
    test_set: set[str],
    name: str,
    seed: int,
    val_fraction: float,
    gap_windows: int,
    group_validation: str = "one_group",
) -> Split:
    is_test = np.isin(keys, list(test_set))
    test = np.flatnonzero(is_test)
    remaining = [g for g in groups if g not in test_set]
    if not remaining:
        raise ValueError(f"fold {name!r}: every group is held out, none left for training")
    if len(remaining) >= 2 and group_validation == "one_group":
        val_group = _validation_group(groups, test_set, seed)
        val = np.flatnonzero(keys == val_group)
        train = np.flatnonzero(~is_test & (keys != val_group))
        return Split(name, train, val, test)
    # One training group (holding it out for validation would leave nothing to train on), or
    # time-block validation asked for: validation becomes the last block of every training recording, as in time_block (without
    # a test block, so only the gap before validation is dropped).
    train, val = [], []
    kept = np.flatnonzero(~is_test)
    for rid, ordered in _recording_positions(meta.iloc[kept]):
        positions = kept[ordered]  # back from the sub-frame's positions to meta's
        _, n_val = _block_sizes(len(positions), 0.0, val_fraction)
        tr, va, _ = _time_blocks(positions, 0, n_val, gap_windows, rid)
        train.append(tr)
        val.append(va)
    return Split(name, np.concatenate(train), np.concatenate(val), test)


def _group_splits(
    meta: pd.DataFrame,
    group_column: str,
    test_groups: Sequence[str] | None,
    seed: int,
    val_fraction: float,
    gap_windows: int,
    group_validation: str = "one_group",
) -> list[Split]:
    if _POSITION not in meta.columns:
        # Only the one-training-group fallback orders by time; fail early with a clear message
        # rather than on some folds only.
        raise ValueError(f"meta lacks column {_POSITION!r}")
    keys = _group_keys(meta, group_column)
    groups = sorted(set(keys))
    if test_groups is not None:
        if isinstance(test_groups, str):
            # A bare string would be iterated character by character.
            test_groups = [test_groups]
        wanted = [str(g) for g in test_groups]
        unknown = sorted(set(wanted) - set(groups))
        if unknown or not wanted:
            raise ValueError(f"test_groups {unknown or wanted} not among {group_column} {groups}")
        name = f"{group_column}={'+'.join(sorted(set(wanted)))}"
        folds = [(name, set(wanted))]
    else:
        if len(groups) < 2:
            raise ValueError(
                f"leave-one-group-out needs >= 2 values of {group_column!r}, found {groups}"
            )
        folds = [(f"{group_column}={g}", {g}) for g in groups]
    return [
        _group_fold(
            meta, keys, groups, test_set, name, seed, val_fraction, gap_windows, group_validation
        )
        for name, test_set in folds
    ]


# --------------------------------------------------------------------------------------------
# checks on a split


def uncovered_labels(split: Split, meta: pd.DataFrame, column: str) -> list[str]:
    """Labels of ``column`` that occur in test but never in train, sorted.

    Parameters
    ----------
    split : Split
    meta : pandas.DataFrame
        The frame the split was made from.
    column : str
        The task's label column: ``"subject"`` for identity, ``"condition"`` for activity.

    Returns
    -------
    list of str
        Empty when every test label was seen in training.
    """
    labels = meta[column].astype("string").fillna("<NA>").to_numpy(dtype=object)
    return sorted(set(labels[split.test]) - set(labels[split.train]))


def labels_covered(split: Split, meta: pd.DataFrame, column: str) -> bool:
    """Whether every test label of ``column`` occurs in train.

    A classifier cannot predict a class it never saw, so a fold where this is ``False`` cannot
    score that task: e.g. identity (``"subject"``) under leave-one-subject-out. Leave-one-
    session-out keeps identity scoreable when every subject has every session.

    Parameters
    ----------
    split : Split
    meta : pandas.DataFrame
    column : str

    Returns
    -------
    bool
    """
    return not uncovered_labels(split, meta, column)


def leak_report(split: Split, meta: pd.DataFrame) -> dict[str, int]:
    """How many recordings, and windows, are on more than one side of a split.

    Parameters
    ----------
    split : Split
    meta : pandas.DataFrame
        The frame the split was made from; needs ``recording_id``.

    Returns
    -------
    dict of str to int
        ``n_recordings``: recordings with a window on any side. ``train_val``, ``train_test``,
        ``val_test``: recordings with windows on both of those sides. ``multi_side``:
        recordings on two or more sides. ``shared_windows``: row indices on two or more sides
        (0 for any split this module makes). Expect ``multi_side == 0`` for ``group`` splits,
        and every recording on every side for ``time_block`` (by design: disjoint time blocks)
        and, almost surely, for ``window``.
    """
    recordings = meta[_RECORDING].to_numpy(dtype=object)
    sides = {s: set(recordings[getattr(split, s)]) for s in ("train", "val", "test")}
    every = sides["train"] | sides["val"] | sides["test"]
    multi = {r for r in every if sum(r in s for s in sides.values()) >= 2}
    windows = np.concatenate([split.train, split.val, split.test])
    return {
        "n_recordings": len(every),
        "train_val": len(sides["train"] & sides["val"]),
        "train_test": len(sides["train"] & sides["test"]),
        "val_test": len(sides["val"] & sides["test"]),
        "multi_side": len(multi),
        "shared_windows": int(len(windows) - len(np.unique(windows))),
    }


# --------------------------------------------------------------------------------------------
# derived hold-out columns


def _natural_key(value: str) -> tuple:
    # Record numbers are strings ("2" < "10" must hold); non-numeric values sort after numbers.
    return (0, int(value), "") if str(value).isdigit() else (1, 0, str(value))


def add_holdout_columns(meta: pd.DataFrame) -> pd.DataFrame:
    """Add recording-level ``last_record`` and ``later_date`` columns ("yes" / "no").

    They make two ECG-ID protocols ordinary ``group`` splits (``test_groups = ["yes"]``):

    ``last_record``
        "yes" on the recording with the highest ``session`` (record number, compared as a
        number) of every subject that has two or more recordings.
    ``later_date``
        "yes" on the recordings from a subject's latest ``date``, for subjects recorded on two
        or more dates; other subjects stay wholly on the training side.

    Parameters
    ----------
    meta : pandas.DataFrame
        One row per window with ``subject`` and ``recording_id``; ``session`` and ``date`` are
        used when present (a missing one gives "no" everywhere).

    Returns
    -------
    pandas.DataFrame
        A copy of ``meta`` with the two columns added.
    """
    _require_columns(meta, ["subject", _RECORDING])
    out = meta.copy()
    recordings = meta.drop_duplicates(_RECORDING).set_index(_RECORDING)
    last = pd.Series("no", index=recordings.index, dtype=object)
    later = pd.Series("no", index=recordings.index, dtype=object)
    for _, rec in recordings.groupby("subject", sort=True):
        if "session" in rec and len(rec) >= 2 and rec["session"].notna().all():
            last[max(rec.index, key=lambda r: _natural_key(rec.at[r, "session"]))] = "yes"
        if "date" in rec and rec["date"].notna().all() and rec["date"].nunique() >= 2:
            latest = rec["date"].astype(str).max()  # ISO dates sort as strings
            later[rec.index[rec["date"].astype(str) == latest]] = "yes"
    out["last_record"] = last.reindex(meta[_RECORDING]).to_numpy()
    out["later_date"] = later.reindex(meta[_RECORDING]).to_numpy()
    return out


def fewer_training_recordings(
    split: Split, meta: pd.DataFrame, fraction: float, seed: int
) -> Split:
    """``split`` with its training side cut to a share of its recordings (label scarcity).

    Whole recordings are kept or dropped (never some windows of one): ``round(fraction * n)``
    of the ``n`` training recordings, but at least one per subject, since identity cannot be
    learnt for a person with no labelled recording (so the share kept can exceed ``fraction``:
    with 5 training recordings per person, 10 % keeps one each, 20 %). The kept recordings are spread evenly over subjects (their
    counts differ by at most one) and, within that, over conditions, so no activity vanishes
    from training while another keeps all its recordings; ties are broken with ``seed``.
    Validation and test are unchanged, so figures at every fraction score the same windows.
    """
    if fraction >= 1.0:
        return split
    train_meta = meta.iloc[split.train]
    recordings = train_meta.drop_duplicates(_RECORDING)
    rng = np.random.default_rng(seed)
    by_subject = {str(subject): rec for subject, rec in recordings.groupby("subject", sort=True)}
    quota = _even_quota(
        {s: len(rec) for s, rec in by_subject.items()},
        max(len(by_subject), _round_half_up(fraction * len(recordings))),
        rng,
    )
    condition_count: dict[str, int] = {}
    keep: set[str] = set()
    # Subjects in a seeded order, each taking the recordings of the conditions kept least so
    # far across subjects: a balanced subject x condition design whatever the fraction.
    for subject in rng.permutation(sorted(by_subject)).tolist():
        rec = by_subject[subject]
        ids = rec[_RECORDING].astype(str).to_numpy()
        conditions = (
            rec[_CONDITION].astype(str).to_numpy()
            if _CONDITION in rec.columns
            else np.full(len(ids), "")
        )
        tiebreak = rng.permutation(len(ids))
        taken_here: dict[str, int] = {}
        remaining = list(range(len(ids)))
        for _ in range(quota[subject]):
            best = min(
                remaining,
                key=lambda i: (
                    taken_here.get(conditions[i], 0),
                    condition_count.get(conditions[i], 0),
                    tiebreak[i],
                ),
            )
            remaining.remove(best)
            keep.add(ids[best])
            taken_here[conditions[best]] = taken_here.get(conditions[best], 0) + 1
            condition_count[conditions[best]] = condition_count.get(conditions[best], 0) + 1
    kept = train_meta[_RECORDING].astype(str).isin(keep).to_numpy()
    return Split(split.name, split.train[kept], split.val, split.test)


def recording_count(positions: np.ndarray, meta: pd.DataFrame) -> int:
    """How many recordings the windows at ``positions`` of ``meta`` come from."""
    return int(meta.iloc[positions][_RECORDING].nunique())


def _even_quota(available: dict[str, int], total: int, rng: np.random.Generator) -> dict[str, int]:
    """``total`` spread over the keys as evenly as ``available`` allows (seeded remainders)."""
    quota = dict.fromkeys(available, 0)
    left = min(total, sum(available.values()))
    order = rng.permutation(sorted(available)).tolist()
    while left:
        for key in order:
            if left and quota[key] < available[key]:
                quota[key] += 1
                left -= 1
    return quota
