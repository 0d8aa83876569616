"""Plain-text summary of an ingest batch, for the command line."""

from __future__ import annotations

from ecg_pipeline.ingest import IngestSummary


def render_summary(summary: IngestSummary) -> str:
    lines = [
        f"dataset {summary.dataset}: windows in {summary.store_path} (config hash {summary.config_hash})",
        "files: "
        + ", ".join(
            f"{summary.count(s)} {s}"
            for s in ("written", "replaced", "unchanged", "rejected", "deferred")
        ),
    ]
    counts = summary.window_counts()
    if not counts.empty:
        lines += ["", "windows per subject and condition (whole store):", counts.to_string()]
        lines.append(f"total: {int(counts.to_numpy().sum())} windows from {len(summary.catalog)} recordings")
    notes = [r for r in summary.results if r.note and r.error is None]
    if notes:
        lines += ["", "notes:"] + [f"  {r.path}: {r.note}" for r in notes]
    rejected = summary.rejections
    if len(rejected):
        lines += ["", f"refused or deferred ({len(rejected)}; table in {summary.rejections_file}):"]
        lines += [f"  [{r.status}/{r.stage}] {r.file}: {r.reason}" for r in rejected.itertuples()]
    cohort = summary.cohort.lines()
    if cohort:
        lines += ["", "cohort checks:"] + [f"  {line}" for line in cohort]
    return "\n".join(lines)
