"""Cohort checks over what is stored: missing and duplicate subject x condition pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class CohortReport:
    """What a person should look at before training on the cohort.

    Attributes
    ----------
    missing : list of (subject, condition)
        Pairs with no stored recording, over every subject seen and every configured condition.
    duplicates : list of (subject, condition, session)
        Pairs offered more than once (rejected, or stored twice).
    too_short : list of str
        Files refused because they hold less than one window.
    """

    missing: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str, str | None]] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.missing:
            pairs = ", ".join(f"{s}/{c}" for s, c in self.missing)
            out.append(f"missing subject/condition pairs ({len(self.missing)}): {pairs}")
        if self.duplicates:
            pairs = ", ".join(
                f"{s}/{c}" + (f"/{sess}" if sess else "") for s, c, sess in self.duplicates
            )
            out.append(f"duplicate recordings offered for: {pairs}")
        if self.too_short:
            out.append(f"shorter than one window: {', '.join(self.too_short)}")
        return out


def cohort_report(
    catalog: pd.DataFrame,
    conditions: Sequence[str],
    duplicate_offers: Sequence[tuple[str, str, str | None]] = (),
    too_short_files: Sequence[str] = (),
    expected_subjects: Sequence[str] = (),
) -> CohortReport:
    """Check the stored cohort for completeness.

    Parameters
    ----------
    catalog : DataFrame
        The store's catalog (columns subject, condition, session).
    conditions : sequence of str
        Every condition each subject should have.
    duplicate_offers : sequence of (subject, condition, session)
        Pairs the batch refused as duplicates.
    too_short_files : sequence of str
        Files the batch refused as shorter than one window.
    expected_subjects : sequence of str
        Subjects expected beside those stored (configured, or offered but refused).
    """
    have = set(zip(catalog["subject"], catalog["condition"])) if len(catalog) else set()
    subjects = set(expected_subjects) | ({s for s, _ in have})
    missing = [(s, c) for s in sorted(subjects) for c in conditions if (s, c) not in have]
    dupes = set(duplicate_offers)
    if len(catalog):
        keyed = catalog.assign(session=catalog["session"].fillna(""))
        counts = keyed.groupby(["subject", "condition", "session"]).size()
        dupes |= {(s, c, sess or None) for (s, c, sess), n in counts.items() if n > 1}
    dupes = sorted(dupes, key=lambda t: tuple("" if v is None else str(v) for v in t))
    return CohortReport(missing, dupes, sorted(too_short_files))
