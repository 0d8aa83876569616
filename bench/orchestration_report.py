"""What ``bench/orchestration.py`` prints from its figures: the environment they were taken in
(versions, CPUs, platform) and the lines of (1) latency (arrival to RUNNING, where the time beyond
the debounce goes), (2) the Prefect DAG overhead (medians per stage of the plain script and the
flow, the ratio, where the flow's extra time lies) and (3) MLflow logging time (warm, cold, the
flow's task), judged against the issue's targets, which are defined here.
"""

from __future__ import annotations

import os
import platform

from orchestration_support import spread, verdict

TARGET_LATENCY_S = 5.0
TARGET_OVERHEAD = 0.15


# --- report -------------------------------------------------------------------------------------
def environment() -> dict:
    import numpy
    import prefect
    import torch

    import mlflow

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "prefect": prefect.__version__,
        "mlflow": mlflow.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def report_latency(lat: dict) -> list[str]:
    t = lat["trials"]
    ok = lat["beyond_median_s"] < TARGET_LATENCY_S
    lines = [
        "    (seconds after the rename into the inbox; 'beyond' = RUNNING - max(debounce, "
        f"settle_s) = RUNNING - {lat['by_design_s']:g} s; 'run' = the flow run's own duration)",
        f"    median arrival -> RUNNING {lat['raw_median_s']:.2f} s raw, "
        f"{lat['beyond_median_s']:.2f} s beyond the debounce  target < {TARGET_LATENCY_S:g} s  "
        f"{verdict(ok)}",
        "    where the time beyond goes (median over trials; each trial's value after '|'):",
    ]
    for k, v in lat["gaps_median_s"].items():
        lines.append(f"      {k:<56}{v:6.2f} s  | {spread(lat['gaps_all_s'][k])}")
    lines.append(
        f"    runner poll interval {lat['runner_poll_s']} s ({lat['runner_poll_from']}); "
        f"{lat['events_emitted']} event(s) emitted for {len(t)} arrivals; served deployment "
        f"ready {lat['serve_ready_s']:.1f} s after flows.serve started"
    )
    if lat["running_vs_state_max_ms"] is not None:
        lines.append(
            f"    start_time and the RUNNING state's timestamp differ by at most "
            f"{lat['running_vs_state_max_ms']:.0f} ms; trial 1 includes the watcher's first "
            "import of prefect (it imports it on its first event)"
        )
    return lines


def report_overhead(ov: dict) -> list[str]:
    st = ov["stages_s"]
    c = ov["cohort"]
    ok = ov["overhead"] < TARGET_OVERHEAD
    ingest_text = (
        f"discover/plan + per-file process/validate/write in a thread pool of {ov['workers']}"
        if ov["plain_ingest"] == "threads"
        else "ingest_folder (sequential)"
    )
    lines = [
        f"    cohort {c['files']} files ({c['subjects']} subjects x {c['conditions']} conditions x "
        f"{c['duration_s']:g} s, written in {c['write_s']:.1f} s), {ov['epochs']} epochs, "
        f"torch threads {ov['torch_threads']}, fresh store per run",
        f"    (a) plain ingest: {ingest_text}; (b) flow task runner {ov['flow_task_runner']}"
        + (
            f", [flow] read_workers = {ov['workers']} in its config"
            if ov["flow_table_written"]
            else ""
        ),
        f"    median of {ov['reps']} interleaved runs each"
        + (
            f" after a warm-up of each (plain {ov['warmup']['plain']:.2f} s, flow "
            f"{ov['warmup']['flow']:.2f} s)"
            if ov["warmup"]
            else " (no warm-up)"
        ),
        f"    {'(medians per column)':32}{'ingest':>8}{'train':>8}{'log':>8}{'other':>8}"
        f"{'total':>8}",
    ]
    for kind, label in (("plain", "(a) plain script"), ("flow", "(b) flow, task-run spans")):
        s = st[kind]
        lines.append(
            f"    {label:<32}{s['ingest']:8.2f}{s['train']:8.2f}{s['log']:8.2f}"
            f"{s['other']:8.2f}{s['total']:8.2f}"
        )
    lines += [
        f"    every run, total s: plain {spread(ov['plain_all_s'])}; "
        f"flow {spread(ov['flow_all_s'])}",
        f"    overhead (b - a) / a {ov['overhead']:+.1%} ({ov['flow_s'] - ov['plain_s']:+.2f} s; "
        f"from the extremes of the runs {ov['overhead_min_max'][0]:+.1%} to "
        f"{ov['overhead_min_max'][1]:+.1%})  target < {TARGET_OVERHEAD:.0%}  {verdict(ok)}",
        f"    flow's ingest {st['flow']['ingest']:.2f} s = discover + plan "
        f"{ov['flow_discover_plan_s']:.2f} s, {ov['flow_n_ingest_file']} ingest-file tasks "
        f"(their times sum to {ov['flow_ingest_file_task_sum_s']:.2f} s), record-batch "
        f"{ov['flow_record_batch_s']:.2f} s, and the gaps between",
        f"    flow's 'other' {st['flow']['other']:.2f} s: {ov['flow_outside_running_s']:.2f} s "
        f"outside RUNNING ({ov['flow_before_running_s']:.2f} s from the call to RUNNING, "
        f"{ov['flow_after_running_s']:.2f} s from the final state to the return), the rest "
        "between tasks (medians: they need not add up)",
        "    (the return waits for Prefect's flow-heartbeat thread, which sleeps in 1-s steps "
        "from the flow's start: a flow call's wall time is rounded up to whole seconds)",
        f"    (b) up to its final state, without that wait: {ov['flow_to_final_s']:.2f} s "
        f"(runs {spread(ov['flow_to_final_all_s'])}), "
        f"{ov['flow_to_final_s'] / ov['plain_s'] - 1:+.1%} over (a)",
    ]
    work = ov.get("work")
    if work:
        on, off = work["caches_on"] or {}, work["caches_off"] or {}
        lines += [
            f"    work in one ingest-train run ({work['files']} files; library counters):"
            f"{'caches off':>14}{'caches on':>12}",
            f"      {'footers parsed for the catalog':<44}{off.get('store.footers_read', 0):>8}"
            f"{on.get('store.footers_read', 0):>12}",
            f"      {'catalog calls':<44}{off.get('store.catalog_calls', 0):>8}"
            f"{on.get('store.catalog_calls', 0):>12}",
            f"      {'full reads of the windows':<44}{off.get('store.window_reads', 0):>8}"
            f"{on.get('store.window_reads', 0):>12}",
            f"      {'train + evaluate tasks, s':<44}{work['train_evaluate_s_caches_off']:>8.2f}"
            f"{work['train_evaluate_s_caches_on']:>12.2f}",
            f"      {'whole flow run, s':<44}{work['flow_s_caches_off']:>8.2f}"
            f"{work['flow_s_caches_on']:>12.2f}",
        ]
    return lines


def report_mlflow(ov: dict, lat: dict | None) -> list[str]:
    lines = [
        f"    log_training_run in the plain script, warm process: median "
        f"{ov['log_warm_s']:.2f} s (runs {spread(ov['log_warm_all_s'])})"
    ]
    cold = ov.get("log_cold_parts_s") or {}
    for k, v in ov["log_parts_s"].items():
        extra = f"   cold {cold[k]:6.2f} s" if k in cold else ""
        lines.append(f"      {k:<44}{v:6.2f} s{extra}")
    if ov.get("log_cold_s") is not None:
        lines.append(
            f"    first call in the process (cold: mlflow, matplotlib and torch.export "
            f"warm-up): {ov['log_cold_s']:.2f} s"
        )
    lines.append(
        f"    the flow's log-mlflow task (warm process): median {ov['flow_log_task_s']:.2f} s"
    )
    if lat:
        served = [t["log_mlflow_s"] for t in lat["trials"]]
        lines.append(
            f"    served runs' log-mlflow task (fresh process per run, tiny cohort): "
            f"{spread(served)} s"
        )
    return lines
