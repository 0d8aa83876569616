"""CSV tables the project writes for people to open: safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets; a file name or a quoted reason that starts so
(``=cmd|' /C calc'!A0.acq``) would run when a person opens ``_rejections.csv``. Such cells are
written with a leading apostrophe, which spreadsheets show as text (OWASP, "CSV injection").
Numbers are left alone: only text cells are changed.
"""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells cannot start a spreadsheet formula."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(_neutralise)
    return out


def _neutralise(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_safe_csv(table: pd.DataFrame) -> str:
    """``table`` as CSV text, with formula-like cells neutralised."""
    return spreadsheet_safe(table).to_csv(index=False)
