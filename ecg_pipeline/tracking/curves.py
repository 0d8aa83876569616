"""The label-scarcity curve: what pre-training buys when few training recordings have labels.

A row of the evaluation table named ``<base>-labels-<percent>`` (``[training] label_fraction``
below 1) is a point of the curve of ``<base>``, and the row ``<base>`` itself, trained with every
label, is that curve's 100 % point (so ``dp-motion/loso-ecgsl-labels-10`` and
``dp-motion/loso-ecgsl`` draw one line). Drawn as window accuracy against the share of labelled
training recordings actually kept (``labelled_share``: one recording per person is the floor, so
it can exceed the asked fraction), one line per base row and task, from the stored
``summary.json`` files; optionally logged to MLflow as a run of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

_CURVE_ROW = re.compile(r"^(?P<base>.+)-labels-(?P<percent>\d+)$")


def curve_points(summaries: list[dict]) -> list[dict]:
    """``{"series", "task", "fraction", "mean", "sd"}`` for every curve row and task."""
    by_name = {s["name"]: s for s in summaries}
    members: list[tuple[str, dict]] = []
    for s in summaries:
        found = _CURVE_ROW.match(s["name"])
        if found:
            members.append((found.group("base"), s))
    for base in sorted({b for b, _ in members}):
        if base in by_name:
            members.append((base, by_name[base]))
    points = []
    for base, s in members:
        # The share actually kept, not the one asked.
        fraction = float(
            s.get("labelled_share", s["config"]["training"].get("label_fraction", 1.0))
        )
        for task, m in s["tasks"].items():
            points.append(
                {
                    "series": base,
                    "task": task,
                    "fraction": fraction,
                    "mean": m["accuracy"],
                    "sd": m["accuracy_std"],
                }
            )
    return points


def write_label_curve(summaries: list[dict], out: Path, *, tracking_uri: str | None = None) -> Path:
    """Draw the curve to ``out`` (PNG); with ``tracking_uri``, log it to MLflow too.

    Raises
    ------
    ValueError
        No row of the table is a curve row.
    """
    from ecg_pipeline.tracking.plots import label_scarcity_curve

    points = curve_points(summaries)
    if not points:
        raise ValueError("no rows named <base>-labels-<percent> among the summaries")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = label_scarcity_curve(points, title="fine-tuning with fewer labelled recordings")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    if tracking_uri:
        import mlflow
        from ecg_pipeline.tracking.mlflow_log import experiment_id
        from ecg_pipeline.tracking.registry import using_tracking_uri

        with using_tracking_uri(tracking_uri):
            client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            exp = experiment_id(client, "label-scarcity")
            run = client.create_run(exp, run_name="label-scarcity", tags={"kind": "curve"})
            client.log_artifact(run.info.run_id, str(out), "plots")
            for p in points:
                key = f"{p['series'].replace(' ', '_')}/{p['task']}_acc_at_{round(100 * p['fraction'])}"
                client.log_metric(run.info.run_id, key, p["mean"])
            client.set_terminated(run.info.run_id)
    return out
