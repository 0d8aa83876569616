"""People left out of training entirely: the strangers that verification is measured on.

A closed-set classifier cannot say how often it accepts a person it never saw; only people it
never saw can. ``[training] holdout_people`` removes that many people from the windows before
the labels are encoded (the identity head has no class for them) and before the splits are
made, so no window of theirs is trained, validated or tested on.

Who is held out is fixed by the seed and the data alone (so ``verify`` finds the same people
without any record of them): the people are shuffled with the seed, and those with no window
on the test side of the configured split come first, so that every held-out record of a known
person (ECG-ID ``later_date``) stays a genuine probe. The first ``calibration_share`` of them
calibrate the "unknown" threshold; the rest measure it (:func:`impostor_roles`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

__all__ = ["HeldOutPeople", "choose_holdout_people", "impostor_roles", "without_people"]


@dataclass(frozen=True)
class HeldOutPeople:
    """The people left out of training, in their seeded order, split by role.

    Attributes
    ----------
    calibration : tuple of str
        Strangers who calibrate the "unknown" threshold (training side of the choice).
    test : tuple of str
        Strangers who measure it (never used to choose anything).
    """

    calibration: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.calibration + self.test

    def as_dict(self) -> dict:
        return {"calibration": list(self.calibration), "test": list(self.test)}


def choose_holdout_people(
    subjects: Sequence[str], n: int, seed: int, avoid: Sequence[str] = ()
) -> list[str]:
    """``n`` people to leave out, shuffled by ``seed``, those not in ``avoid`` first.

    Parameters
    ----------
    subjects : sequence of str
        Every person in the data (duplicates ignored).
    n : int
        How many to leave out.
    seed : int
        Seeds the shuffle.
    avoid : sequence of str
        People taken only when the others run out (those with test-side recordings).

    Returns
    -------
    list of str
        In the seeded order.

    Raises
    ------
    ValueError
        When fewer than two people would be left to train on.

    Examples
    --------
    >>> choose_holdout_people(["01", "02", "03", "04"], 2, seed=0, avoid=["01", "02"])
    ['03', '04']
    """
    people = sorted({str(s) for s in subjects})
    if n > len(people) - 2:
        raise ValueError(
            f"holdout_people = {n} leaves {len(people) - n} of {len(people)} people to train "
            "on; identity needs at least two: hold out fewer people"
        )
    order = np.random.default_rng(seed).permutation(people).tolist()
    avoided = {str(a) for a in avoid}
    order = [p for p in order if p not in avoided] + [p for p in order if p in avoided]
    return order[:n]


def impostor_roles(people: Sequence[str], calibration_share: float) -> HeldOutPeople:
    """The first ``ceil(share * n)`` people calibrate, the rest test (at least one each when
    there are two or more)."""
    people = [str(p) for p in people]
    n_cal = math.ceil(calibration_share * len(people) - 1e-9)
    if len(people) >= 2:
        n_cal = min(max(n_cal, 1), len(people) - 1)
    return HeldOutPeople(tuple(people[:n_cal]), tuple(people[n_cal:]))


def without_people(data, people: Sequence[str]):
    """``data`` (a :class:`~ecg_pipeline.training.data.WindowData`) without these people.

    The identity labels are encoded again over the people left, so the head has no class for
    the held-out ones; other tasks keep their classes (a held-out person's activity is still an
    activity). Returns a new object; the arrays given are not modified.
    """
    from ecg_pipeline.training.data import TASK_COLUMNS

    if not len(people):
        return data
    keep = ~data.meta["subject"].astype(str).isin([str(p) for p in people]).to_numpy()
    meta = data.meta[keep].reset_index(drop=True)
    labels, classes = {}, {}
    for task, names in data.classes.items():
        if task == "identity":
            values = meta[TASK_COLUMNS[task]].astype(str)
            names = sorted(values.unique())
            labels[task] = pd.Categorical(values, categories=names).codes.astype(np.int64)
        else:
            labels[task] = data.labels[task][keep]
        classes[task] = list(names)
    return replace(data, x=data.x[keep], labels=labels, classes=classes, meta=meta)
