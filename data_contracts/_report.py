"""Turning pandera's failure cases into one message per offending file."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd


def failures_by_row(errors, df: pd.DataFrame) -> dict[object, list[str]]:
    """Map each failing row's index to messages naming the field, the check and the value.

    Parameters
    ----------
    errors : pandera.errors.SchemaErrors
        Raised by ``schema.validate(df, lazy=True)``.
    df : pandas.DataFrame
        The validated frame (to read the offending values back).

    Returns
    -------
    dict
        Row index to a list of ``"field 'x' = 'value': check"`` strings. Failures not tied to a
        row (a missing column, a wrong dtype) are reported under the key ``None``.
    """
    out: dict[object, list[str]] = defaultdict(list)
    for case in errors.failure_cases.itertuples(index=False):
        column = case.column if isinstance(case.column, str) else None
        row = case.index
        if row is None or pd.isna(row):
            out[None].append(f"field {column!r}: {case.check}")
            continue
        row = int(row) if isinstance(row, float) else row
        value = case.failure_case
        out[row].append(f"field {column!r} = {value!r} fails {case.check}")
    return dict(out)
