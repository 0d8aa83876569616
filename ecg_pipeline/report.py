"""Plain-text summaries of an ingest batch, a flow run and a training, for people to read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_pipeline.ingest import BatchReport

if TYPE_CHECKING:
    from ecg_pipeline.training.run import RunResult


def render_summary(summary: BatchReport) -> str:
    lines = [
        f"dataset {summary.dataset}: windows in {summary.store_path} ([ingest] hash {summary.ingest_hash})",
        "files: "
        + ", ".join(
            f"{summary.count(s)} {s}"
            for s in ("written", "replaced", "unchanged", "rejected", "deferred")
        ),
    ]
    per_file = Counter(r.path for r in summary.results if r.error is None and r.recording_id)
    split = {path for path, n in per_file.items() if n > 1}
    if split:
        phases = sum(per_file[path] for path in split)
        lines.append(f"({len(split)} file(s) split at their event markers into {phases} phases)")
    counts = summary.window_counts()
    if not counts.empty:
        lines += ["", "windows per subject and condition (whole store):", counts.to_string()]
        lines.append(
            f"total: {int(counts.to_numpy().sum())} windows from {len(summary.catalog)} recordings"
        )
    notes = [r for r in summary.results if r.note and r.error is None]
    if notes:
        lines += ["", "notes:"] + [f"  {r.path}: {r.note}" for r in notes]
    rejected = summary.rejections
    if len(rejected):
        lines += ["", f"refused or deferred ({len(rejected)}; table in {summary.rejections_file}):"]
        lines += [f"  [{r.status}/{r.stage}] {r.file}: {r.reason}" for r in rejected.itertuples()]
    this_batch = set(rejected["file"]) if len(rejected) else set()
    earlier = [r for r in summary.still_refused.itertuples() if r.file not in this_batch]
    if earlier:
        lines += [
            "",
            f"still refused from earlier batches ({len(earlier)}; every refusal in "
            f"{summary.store_path / '_rejections_history.csv'}):",
        ]
        lines += [f"  [{r.stage}] {r.file}: {r.reason} (last {r.last_seen})" for r in earlier]
    cohort = summary.cohort.lines()
    if cohort:
        lines += ["", "cohort checks:"] + [f"  {line}" for line in cohort]
    return "\n".join(lines)


def render_flow_summary(summary: dict) -> str:
    """The ``ingest-train`` flow's summary (its JSON-able result) as lines a person reads: what
    happened to the files, every refusal and why, and where the model and its metrics are.

    Used at the end of the flow's log (which ``prefect deployment run --watch`` shows), by
    ``make run`` and by the watcher.
    """
    counts = summary.get("counts", {})
    order = ("written", "replaced", "unchanged", "rejected", "deferred")
    said = ", ".join(
        f"{counts[k]} {'refused' if k == 'rejected' else k}" for k in order if counts.get(k)
    )
    lines = [f"files in {summary.get('folder', '?')}: {said or 'none'}"]
    rejected = summary.get("rejected") or []
    if rejected:
        lines.append(
            f"refused or deferred ({len(rejected)}; history in {summary.get('rejections_file')}):"
        )
        lines += [f"  {r['file']}: {r['reason']} ({r['error']})" for r in rejected]
    if not summary.get("trained"):
        lines.append(f"not trained: {summary.get('note') or 'training was not asked for'}")
        return "\n".join(lines)
    for task, m in (summary.get("metrics") or {}).items():
        lines.append(
            f"{task:<9} test accuracy {m['accuracy']:.3f} per window, "
            f"{m.get('recording_accuracy', float('nan')):.3f} per recording "
            f"(F1 macro {m['f1_macro']:.3f})"
        )
    if summary.get("mlflow_run_url"):
        lines.append(f"MLflow run: {summary['mlflow_run_url']}")
    if summary.get("model_version") is not None:
        champion = " (the champion)" if summary.get("is_champion") else ""
        name = summary.get("registered_model") or summary.get("model_uri")
        lines.append(f"model: {name} version {summary['model_version']}{champion}")
    return "\n".join(lines)


def render_training(run: RunResult, config) -> str:
    """Per-fold and mean test metrics of a training run, as a small table."""
    t = config.training
    lines = [
        f"{config.dataset.name}: {config.model.name}, split {t.split}, seed {t.seed}, "
        f"{t.epochs} epochs, weighting {t.weighting}; results in {run.run_dir}",
        f"{'fold':<16} {'task':<10} {'best ep':>7} {'acc':>7} {'F1 mac':>7} {'F1 wt':>7} "
        f"{'rec acc':>7} {'rec vote':>8}",
    ]
    for fold in run.folds:
        for task, m in (fold.metrics or {}).items():
            lines.append(
                f"{fold.name:<16} {task:<10} {fold.best_epoch:>7} {m['accuracy']:>7.4f} "
                f"{m['f1_macro']:>7.4f} {m['f1_weighted']:>7.4f} "
                f"{m.get('recording_accuracy', float('nan')):>7.4f} "
                f"{m.get('recording_accuracy_vote', float('nan')):>8.4f}"
            )
    if len(run.folds) > 1:
        for task, s in run.summary().items():
            lines.append(
                f"{'mean +- sd':<16} {task:<10} {'':>7} {s['accuracy']:.4f}+-{s['accuracy_std']:.4f}"
            )
    return "\n".join(lines)


def render_experiment(runs, summary: dict, config) -> str:
    """Every seed's table, then the mean +- sd over seeds and folds when there is more than one run."""
    parts = [
        render_training(
            run,
            config.with_overrides({"training.seed": seed}),
        )
        for seed, run in runs
    ]
    if len(runs) > 1:
        lines = [f"over {summary['n_seeds']} seeds x {summary['n_folds']} fold(s):"]
        for task, m in summary["tasks"].items():
            lines.append(
                f"  {task:<10} accuracy {m['accuracy']:.4f} +- {m['accuracy_std']:.4f}   "
                f"F1 macro {m['f1_macro']:.4f} +- {m['f1_macro_std']:.4f}   "
                f"recording accuracy {m['recording_accuracy']:.4f} +- {m['recording_accuracy_std']:.4f} "
                f"(majority vote {m['recording_accuracy_vote']:.4f})"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _pct(task: dict | None, key: str) -> str:
    if task is None or key not in task:
        return "–"
    return f"{100 * task[key]:.1f} ± {100 * task[key + '_std']:.1f}"


def choices_made_on(summary: dict) -> str:
    """On which data a row's recipe, model and pre-training were chosen (never its test side,
    except where said)."""
    if summary.get("chosen"):
        picks = ", ".join(f"{n} {c}x" for n, c in summary["chosen"].items())
        return f"inner folds of each training side ({picks})"
    pretrained = summary.get("pretrained")
    beats = summary.get("config", {}).get("ingest", {}).get("beats", {})
    # The 100-Hz rows followed a 20-epoch comparison of rates on validation; the 250-Hz rows ran
    # at the default set before any comparison (which 50-epoch validation later kept).
    rate = " and rate (20 epochs)" if beats.get("segment_fs_hz") == 100.0 else ""
    if pretrained:
        seen = "; pre-training read the test side (transductive)" if pretrained["sees_test"] else ""
        return (
            f"segment pooling{rate} on ECG-ID last_record validation; "
            f"{pretrained['objective']} pre-training epoch on its pool's validation{seen}"
        )
    if summary["model"] == "ecg_sl":
        pooling = summary["config"]["model"].get("segment_pooling", "mean")
        if pooling == "flatten":
            return (
                f"segment pooling{rate} on ECG-ID last_record validation "
                "(training records' last blocks)"
            )
        return "fixed defaults, set before any run"
    if summary.get("departures"):
        return "dp-motion LOSO test scores, seed 0 (optimistic)"
    return "none: the paper's recipe"


def render_results_table(summaries: list[dict]) -> str:
    """A Markdown table of experiment summaries (``summary.json``), one row per experiment.

    Window accuracy, macro F1 and two recording-level accuracies per task: by the rule
    ``predict`` answers with (highest mean probability over a recording's windows; "–" for
    results stored before it was measured) and by majority vote; each as mean ± sample sd over
    every (seed, fold) pair. The recipe is
    "paper" when no training setting departs from the paper's, else the departures are listed
    under the table.
    """
    header = (
        "| row | dataset | split (folds) | model | weighting | recipe | seeds | "
        "identity acc | identity F1 macro | identity rec. acc | identity rec. vote | "
        "activity acc | activity F1 macro | activity rec. acc | activity rec. vote | "
        "choices made on |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for s in summaries:
        training = s["config"]["training"]
        split = s["split"]
        if split == "group":
            split = f"group: {training['group_column']}"
        model = s["model"] + (f" ({s['attention']})" if s.get("attention") else "")
        if s["model"] == "ecg_sl":  # the beat segments' rate
            model += f", beats {s['config']['ingest']['beats']['segment_fs_hz']:g} Hz"
        recipe = "paper" if not s.get("departures") else "tuned"
        if s.get("chosen"):
            recipe = "chosen"
        if s.get("pretrained"):
            recipe += f" + {s['pretrained']['objective']}"
            if s["pretrained"]["sees_test"]:
                recipe += " (transductive)"
        cells = []
        for task in ("identity", "activity"):
            m = s["tasks"].get(task)
            cells += [
                _pct(m, "accuracy"),
                _pct(m, "f1_macro"),
                _pct(m, "recording_accuracy"),
                _pct(m, "recording_accuracy_vote"),
            ]
        rows.append(
            f"| {s['name']} | {s['dataset']} | {split} ({s['n_folds']}) | {model} | "
            f"{s['weighting']} | {recipe} | {s['n_seeds']} | "
            + " | ".join(cells)
            + f" | {choices_made_on(s)} |"
        )
    return "\n".join([header, *rows])


def render_validation_table(summaries: list[dict], folder: str | Path) -> str:
    """A Markdown table of what model selection saw: each experiment's validation accuracy per
    task at the epoch it kept (the best validation score), mean ± sample sd over every (seed,
    fold) pair, read from ``seed*/results.json`` under ``folder``.

    The figures a choice is made on (segment pooling, segment rate, ...): never test scores.
    """
    from ecg_pipeline.training.metrics import mean_and_sd
    from ecg_pipeline.training.results import RunResult

    header = (
        "| row | dataset | split (folds) | model | epochs | seeds | "
        "identity val acc | activity val acc |\n|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for s in summaries:
        base = Path(folder) / s["name"]
        per_task: dict[str, list[float]] = {"identity": [], "activity": []}
        for seed in s["seeds"]:
            for fold in RunResult.load(base / f"seed{seed}").folds:
                kept = next(h for h in fold.history if h["epoch"] == fold.best_epoch)
                for task, values in per_task.items():
                    if f"{task}_val_acc" in kept:
                        values.append(kept[f"{task}_val_acc"])
        cells = []
        for task in ("identity", "activity"):
            values = per_task[task]
            if not values:
                cells.append("–")
                continue
            mean, sd = mean_and_sd(values)
            cells.append(f"{100 * mean:.1f} ± {100 * sd:.1f}")
        training = s["config"]["training"]
        split = s["split"] + (f": {training['group_column']}" if s["split"] == "group" else "")
        rows.append(
            f"| {s['name']} | {s['dataset']} | {split} ({s['n_folds']}) | {s['model']} | "
            f"{s['epochs']} | {s['n_seeds']} | " + " | ".join(cells) + " |"
        )
    return "\n".join([header, *rows])
